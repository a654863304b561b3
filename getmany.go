package hamt

import (
	"context"
	"errors"
)

// GetMany returns the values of many keys at once: values[i] is the value of keys[i] when
// found[i], the zero V when keys[i] is not in the map (an absent key does not fail the batch). It
// is what a Get per key does (same lookups, same value reads), with the keys' lookups and loads
// overlapping on a store with latency: up to the map's read-ahead (WithReadAhead, default 32) at
// once, on goroutines. On a store that answers in microseconds (memory, bbolt), where a goroutine
// costs more than it saves, the keys are read in place, one batch after another. Lookups share
// the nodes they cross through the map's cache. A key given twice is looked up and loaded twice:
// each position owns its value. Safe for concurrent use with every other method, as Get is.
//
// Any failure but an absent key (a missing block, ErrMalformedNode, a value the codec rejects, ctx
// done) stops the batch: GetMany cancels the loads in flight and returns the first failure, with
// nil slices. It returns once every load it started has ended.
func (m *Map[V]) GetMany(ctx context.Context, keys []string) (values []V, found []bool, err error) {
	values, found = make([]V, len(keys)), make([]bool, len(keys))
	if err := m.getMany(ctx, keys, values, found, m.readAheadWindow()); err != nil {
		return nil, nil, err
	}
	return values, found, nil
}

// getMany is GetMany into values and found (as long as keys), with at most window keys in flight.
func (m *Map[V]) getMany(ctx context.Context, keys []string, values []V, found []bool, window int) error {
	ra := newReadAhead[V](ctx, window)
	defer ra.stop()
	load := func(ctx context.Context, b *valueBatch[V]) {
		ids := make([]cidBytes, len(b.keys))
		n := len(b.keys) // the keys looked up
		var err error
		for i, key := range b.keys {
			ids[i], err = m.pointer(ctx, key)
			if errors.Is(err, ErrNotFound) {
				err = nil
			} else if err != nil {
				n = i
				break
			}
		}
		if i, verr := m.values(ctx, b.keys[:n], ids[:n], b.vals[:n], nil); verr != nil {
			err, n = verr, i
		}
		if err != nil {
			b.err, b.errAt = err, n
			ra.cancel() // the batch fails whatever the others find
			return
		}
		for i, id := range ids {
			b.found[i] = id != ""
		}
	}
	var first error // the failure that came first in time; the batches it cancelled fail after it
	check := func(b *valueBatch[V]) {
		if b.err != nil && (first == nil || errors.Is(first, context.Canceled) && !errors.Is(b.err, context.Canceled)) {
			first = b.err
		}
	}
	lo := 0
	for lo < len(keys) && first == nil && ra.ctx.Err() == nil {
		hi := min(lo+ra.batchLen(), len(keys))
		for ra.full(hi - lo) {
			check(ra.take())
		}
		ra.start(&valueBatch[V]{keys: keys[lo:hi], vals: values[lo:hi], found: found[lo:hi]}, load)
		lo = hi
	}
	for ra.pending() {
		check(ra.take())
	}
	if first == nil && lo < len(keys) {
		return ctx.Err() // done before every key was started
	}
	return first
}
