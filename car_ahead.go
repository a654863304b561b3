package hamt

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/ipfs/go-cid"
)

// WriteCAR and Inspect load the values a walk reaches ahead of where they are used, on a store
// whose loads are slow (the node loads of the walk measured so, walkAhead.slow, as the node
// prefetch of walk_prefetch.go judges it), with readAhead (readahead.go): up to
// WithWalkParallelism loads at once, and as many values held loaded or loading, so the memory they
// take is bounded too. The CAR's blocks are written in exactly the order of the one-at-a-time
// path: the walk queues, in that order, the node blocks it reaches and the values of each node's
// buckets; a value's load is started when it is queued (once per distinct raw value), and items
// are written from the front of the queue only, each checked against the blocks already written
// as the one-at-a-time path checks it. A load that fails is reported when its item is written, as
// the one-at-a-time path would report it there; an item already written by then (the same block
// reached earlier in another value's file) is skipped, its load's error with it. A UnixFS file
// value is written when it reaches the front, its blocks loaded ahead node by node
// (eachFileBlockAhead). On a fast store (memory, a local bbolt file) nothing is queued: the walk
// writes as it goes, as before.

// carAhead writes the node blocks and value blocks a WriteCAR walk reaches, in the walk's order,
// loading raw values ahead when the store is slow. Only the walk's goroutine uses it; finish (or
// stop, on every path) must be called.
type carAhead struct {
	ctx   context.Context
	cas   CAS
	ahead walkAhead // the walk's, timing its node loads
	// vals times the value loads (not ahead's: values that load fast must not stop the node
	// loads ahead of a store whose nodes are slow), with ahead's parallelism.
	vals walkAhead
	put  func(cidBytes, []byte) error
	seen map[cidBytes]struct{} // blocks written (put adds to it)
	// Loading ahead, made when the store is first found slow: the loads (nil until then), the raw
	// values whose load was started, and the items queued and not written yet, oldest first.
	ra      *readAhead[[]byte]
	started map[cidBytes]struct{}
	queue   []carItem
	err     error // the failure that stopped the writing: nothing is written after it
}

// carItem is a block WriteCAR writes: a node block, or the value of a bucket entry, whose load
// was started ahead (batch) or is done when it is written (batch nil).
type carItem struct {
	node  *blockNode
	e     entry
	batch *valueBatch[[]byte]
}

// node queues (or, on a fast store, writes) node n's block and the values of its buckets.
func (c *carAhead) node(n *blockNode) error {
	if c.ra == nil && !c.slow() {
		if err := c.put(cidKey(n.id), n.block); err != nil {
			return err
		}
		return writeValues(c.ctx, c.cas, &n.node, c.seen, c.put, c.vals)
	}
	if c.ra == nil {
		c.ra = newReadAhead[[]byte](c.ctx, c.vals.workers)
		// The loads' time so far: the values', else the nodes' (the same store's).
		c.ra.nsPerLoad.Store(max(c.vals.lat.ns.Load(), c.ahead.lat.ns.Load()))
		c.started = map[cidBytes]struct{}{}
	}
	if err := c.push(carItem{node: n}); err != nil {
		return err
	}
	for i := range numSlots {
		s := n.slot(i)
		if s == nil || s.link() != nil {
			continue
		}
		for _, e := range appendEntries(nil, s.bucket()) {
			it := carItem{e: e}
			_, done := c.seen[e.value]
			_, queued := c.started[e.value]
			if !done && !queued && !isDagPb(e.value) {
				for c.ra.full(1) {
					if err := c.writeOldest(); err != nil {
						return err
					}
				}
				c.started[e.value] = struct{}{}
				it.batch = &valueBatch[[]byte]{keys: []string{e.key}, ids: []cidBytes{e.value}, vals: make([][]byte, 1)}
				c.ra.start(it.batch, c.loadRaw)
			}
			if err := c.push(it); err != nil {
				return err
			}
		}
	}
	return nil
}

// slow reports whether values are to be loaded ahead: value loads are measured slow, or, before
// two are measured, node loads are.
func (c *carAhead) slow() bool {
	if c.vals.lat.samples.Load() >= 2 {
		return c.vals.slow()
	}
	return c.ahead.slow()
}

// push queues it, first writing the oldest items while more than a window's worth wait (node
// blocks and values already written or loaded when written hold no load).
func (c *carAhead) push(it carItem) error {
	for len(c.queue) >= 4*c.ahead.workers {
		if err := c.writeOldest(); err != nil {
			return err
		}
	}
	c.queue = append(c.queue, it)
	return nil
}

// loadRaw loads and verifies the raw value block of b, on a readAhead goroutine.
func (c *carAhead) loadRaw(ctx context.Context, b *valueBatch[[]byte]) {
	b.vals[0], b.err = loadRawValue(ctx, c.cas, b.keys[0], b.ids[0].cid(), c.vals)
}

// writeOldest writes the item at the front of the queue; after a failure, nothing more.
func (c *carAhead) writeOldest() error {
	if c.err == nil {
		c.err = c.write()
	}
	return c.err
}

// write writes the item at the front of the queue.
func (c *carAhead) write() error {
	it := c.queue[0]
	c.queue[0] = carItem{}
	c.queue = c.queue[1:]
	switch {
	case it.node != nil:
		return c.put(cidKey(it.node.id), it.node.block)
	case it.batch != nil:
		b := c.ra.take() // the oldest batch is it.batch: both are in the order they were started
		if _, ok := c.seen[it.e.value]; ok {
			return nil // written already, in a file before it: not loaded by the one-at-a-time path
		}
		if b.err != nil {
			return b.err
		}
		return c.put(it.e.value, b.vals[0])
	default:
		return writeValueBlocks(c.ctx, c.cas, it.e, c.seen, c.put, c.vals)
	}
}

// finish writes every item still queued, and reports the first failure in the walk's order:
// an item's, else walkErr, the walk's own (which came after every item it queued).
func (c *carAhead) finish(walkErr error) error {
	defer c.stop()
	for len(c.queue) > 0 {
		if err := c.writeOldest(); err != nil {
			return err
		}
	}
	return walkErr
}

// stop cancels the loads still going and waits for their goroutines.
func (c *carAhead) stop() {
	if c.ra != nil {
		c.ra.stop()
	}
}

// loadRawValue loads the raw value block id of key and verifies it (unless the store does),
// timing the load with ahead.
func loadRawValue(ctx context.Context, cas CAS, key string, id cid.Cid, ahead walkAhead) ([]byte, error) {
	t := time.Now()
	data, err := loadBlock(ctx, cas, id)
	ahead.timeLoad(t, data, err)
	if err != nil {
		return nil, fmt.Errorf("value of %q: %w", key, missingBlock(err))
	}
	if !storeVerifies(cas) {
		if err := verifyBlock(id, data); err != nil {
			return nil, err
		}
	}
	return data, nil
}

// sumValueSizes sums the sizes of values (valueSize of each), up to ahead.workers at once when the
// store is slow; the failure reported is the first in the order they are asked for (the map's,
// which is random: the one-at-a-time path's is too).
func sumValueSizes(ctx context.Context, cas CAS, set map[cidBytes]struct{}, ahead walkAhead) (int64, error) {
	var total int64
	if !ahead.slow() {
		for v := range set {
			n, err := valueSize(ctx, cas, v.cid(), false)
			if err != nil {
				return 0, fmt.Errorf("value %s: %w", v, missingBlock(err))
			}
			total += n
		}
		return total, nil
	}
	values := slices.Collect(maps.Keys(set))
	ra := newReadAhead[int64](ctx, ahead.workers)
	defer ra.stop()
	ra.nsPerLoad.Store(ahead.lat.ns.Load())
	load := func(ctx context.Context, b *valueBatch[int64]) {
		for i, v := range b.ids {
			n, err := valueSize(ctx, cas, v.cid(), false)
			if err != nil {
				b.err, b.errAt = fmt.Errorf("value %s: %w", v, missingBlock(err)), i
				return
			}
			b.vals[i] = n
		}
	}
	add := func(b *valueBatch[int64]) error {
		for _, n := range b.vals {
			total += n
		}
		return b.err
	}
	for lo := 0; lo < len(values); {
		hi := min(lo+ra.batchLen(), len(values))
		for ra.full(hi - lo) {
			if err := add(ra.take()); err != nil {
				return 0, err
			}
		}
		ra.start(&valueBatch[int64]{keys: make([]string, hi-lo), ids: values[lo:hi], vals: make([]int64, hi-lo)}, load)
		lo = hi
	}
	for ra.pending() {
		if err := add(ra.take()); err != nil {
			return 0, err
		}
	}
	return total, nil
}

// timedLoadMax is the largest block whose load times the store: a larger one (a file's 1 MiB
// leaf) takes long on any store, copying it.
const timedLoadMax = 64 << 10

// timeLoad folds the time since t, when the load of b (err: failed) started, into a's latency;
// a failed load, or one of a block over timedLoadMax, says nothing of the store's round trip.
func (a walkAhead) timeLoad(t time.Time, b []byte, err error) {
	if a.lat != nil && err == nil && len(b) <= timedLoadMax {
		a.lat.since(t)
	}
}
