package hamt

import (
	"context"
	"iter"
)

// Entry is a key and its value, as All yields them.
type Entry[V any] struct {
	Key   string
	Value V
}

// All yields every key with its value, once each, in one walk of the tree: the order of Keys. It
// is what Keys followed by a Get per key does, without the second walk and the hash per key: the
// value blocks of the keys ahead are loaded before earlier entries are yielded, at most the map's
// read-ahead (WithReadAhead, default 32) at once, so memory stays bounded. On a store with latency
// (Kubo, a gateway) those loads run on goroutines and overlap; on one that answers in
// microseconds (memory, bbolt) they run in place, in batches, where a goroutine would cost more
// than it saves. Values are read as Get reads them (a UnixFS file whole, blocks verified when
// asked).
//
// In read-only mode the walk goes on as entries are yielded. In write mode, as Keys does, All
// takes a snapshot of the keys and their value CIDs when iteration starts (under the tree lock,
// which it then releases, so the loop body may use the map) and yields that snapshot's values:
// value blocks never change, so it is the map as it was when iteration started.
//
// A failure (a node or value block that cannot be loaded, a value the codec rejects, ctx done) is
// yielded as an error with a zero Entry, after the entries before it, and iteration stops; so is a
// tree that is not a HAMT (ErrMalformedNode, as for Keys), found before any key is yielded twice.
// Breaking out of the loop cancels the loads still in flight; All returns only once they ended.
func (m *Map[V]) All(ctx context.Context) iter.Seq2[Entry[V], error] {
	return func(yield func(Entry[V], error) bool) {
		ra := newReadAhead[V](ctx, m.readAheadWindow())
		defer ra.stop()
		load := func(ctx context.Context, b *valueBatch[V]) {
			if i, err := m.values(ctx, b.keys, b.ids, b.vals); err != nil {
				b.err, b.errAt = err, i
			}
		}
		// emit yields a finished batch's entries up to its failure, then the failure.
		emit := func(b *valueBatch[V]) bool {
			for i, key := range b.keys {
				if b.err != nil && i == b.errAt {
					yield(Entry[V]{}, b.err)
					return false
				}
				if !yield(Entry[V]{Key: key, Value: b.vals[i]}, nil) {
					return false
				}
			}
			return true
		}
		var cur *valueBatch[V]
		// send starts loading cur, first yielding the oldest batches to make room for it.
		send := func() bool {
			for ra.full(len(cur.keys)) {
				if !emit(ra.take()) {
					return false
				}
			}
			cur.vals = make([]V, len(cur.keys))
			ra.start(cur, load)
			cur = nil
			return true
		}
		stopped := false
		add := func(key string, id cidBytes) bool {
			if cur == nil {
				n := ra.batchLen()
				cur = &valueBatch[V]{keys: make([]string, 0, n), ids: make([]cidBytes, 0, n)}
			}
			cur.keys = append(cur.keys, key)
			cur.ids = append(cur.ids, id)
			if len(cur.keys) >= cap(cur.keys) && !send() {
				stopped = true
			}
			return !stopped
		}

		var err error
		if st := m.state.Load(); st.r != nil {
			err = st.r.walkEntries(ctx, m.hasher, add)
		} else {
			var snapshot []entry
			err = st.w.walkEntries(ctx, m.hasher, func(key string, id cidBytes) bool {
				snapshot = append(snapshot, entry{key: key, value: id})
				return true
			})
			for _, e := range snapshot {
				if !add(e.key, e.value) {
					break
				}
			}
		}
		if stopped || (cur != nil && !send()) {
			return
		}
		for ra.pending() {
			if !emit(ra.take()) {
				return
			}
		}
		if err != nil {
			yield(Entry[V]{}, err)
		}
	}
}

// eachNodeEntry calls yield with the key and value CID of every entry in n's buckets, in slot
// order (each bucket in canonical key order), until it returns false.
func eachNodeEntry[N walkable](n N, yield func(key string, id cidBytes) bool) bool {
	for slot, b, p := n.bucketFrom(0); slot >= 0; slot, b, p = n.bucketFrom(slot + 1) {
		if !eachEntry(b, p, yield) {
			return false
		}
	}
	return true
}

// walkEntries is walkKeys with each key's value CID: every entry in keys() order, through
// walkTree and its checks. It stops when yield returns false or ctx is done.
func (r *readStore) walkEntries(ctx context.Context, hasher keyHasher, yield func(key string, id cidBytes) bool) error {
	t, err := newTreeCheck(hasher, int(r.walked.Load()))
	if err != nil {
		return err
	}
	child := func(ctx context.Context, n *frozenNode, k, depth int) (*frozenNode, cidBytes, error) {
		c, err := r.child(ctx, n, k, depth)
		return c, n.linkAt(k), err
	}
	err = walkTree(ctx, t, r.rootNode, cidKey(r.root), child, func(n *frozenNode, _ int) error {
		if !n.eachEntry(yield) {
			return errStop
		}
		return nil
	})
	if met := int64(len(t.seen)); err == nil && met > r.walked.Load() {
		r.walked.Store(met)
	}
	return err
}

// walkEntries is walkKeys with each key's value CID, under the lock: yield must not call back
// into the map.
func (w *writeStore) walkEntries(ctx context.Context, hasher keyHasher, yield func(key string, id cidBytes) bool) error {
	t, err := newTreeCheck(hasher, 0)
	if err != nil {
		return err
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	root, err := w.rootNode(ctx)
	if err != nil {
		return err
	}
	child := func(ctx context.Context, n *node, k, depth int) (*node, cidBytes, error) {
		l := n.slots[k].link
		c, err := w.child(ctx, l, depth)
		if err != nil || c.dirty {
			return c, "", err // a changed node's CID is not known until the next flush
		}
		return c, l.id, nil
	}
	rootID := w.rootID
	if root.dirty {
		rootID = ""
	}
	return walkTree(ctx, t, root, rootID, child, func(n *node, _ int) error {
		if !eachNodeEntry(n, yield) {
			return errStop
		}
		return nil
	})
}
