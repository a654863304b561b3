package hamt

import (
	"context"
	"fmt"
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
// In read-only mode, values the read cache keeps (see WithCacheBytes) are not loaded again: after
// Gets of the keys, or a first walk of the whole map, the next All reads no value block from the
// store. A first All over a map not walked before keeps nothing: a map iterated once (the common
// case) does not pay to copy values it will not read again. Small kept values yielded in one
// iteration may share an allocation; each is its own copy, which the caller may change.
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
			var keep func(i int, raw []byte)
			if b.refs != nil {
				keep = func(i int, raw []byte) {
					if vt := b.refs[i].vt; vt != nil {
						vt.keep(b.refs[i].n, b.refs[i].j, raw, 0)
					}
				}
			}
			i, err := m.values(ctx, b.keys, b.ids, b.vals, keep)
			if err != nil && (b.err == nil || i < b.errAt) {
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
		// done: the caller stopped, or a failure was yielded; halt: the walk must stop (done, or a
		// failure is queued).
		done, halt := false, false
		// send starts loading cur, first yielding the oldest batches to make room for it; a batch
		// loaded in place is yielded at once, once those before it are.
		send := func() {
			for ra.full(len(cur.keys)) {
				if !emit(ra.take()) {
					done, halt = true, true
					return
				}
			}
			b := cur
			cur = nil
			if b.err != nil {
				halt = true
			}
			ra.start(b, load)
			if b.done == nil {
				for ra.pending() && ra.queue[0].done == nil {
					if !emit(ra.take()) {
						done, halt = true, true
						return
					}
				}
			}
		}
		var copies []byte // where kept values are copied for the caller, a chunk at a time
		// add queues key for loading, or decodes its kept value (raw, not nil) from a copy.
		add := func(key string, id cidBytes, ref valueRef, raw []byte) bool {
			var v V
			var err error
			if raw != nil {
				if len(copies) < len(raw) {
					copies = make([]byte, max(len(raw), 1<<10))
				}
				c := copies[:len(raw):len(raw)]
				copies = copies[len(raw):]
				copy(c, raw)
				if v, err = m.decode(key, id, c); err == nil && cur == nil && !ra.pending() {
					if !yield(Entry[V]{Key: key, Value: v}, nil) {
						done, halt = true, true
					}
					return !halt
				}
				id = "" // nothing to load
			}
			if cur == nil {
				n := ra.batchLen()
				cur = &valueBatch[V]{keys: make([]string, 0, n), ids: make([]cidBytes, 0, n), vals: make([]V, 0, n)}
				if ref.vt != nil || raw != nil {
					cur.refs = make([]valueRef, 0, n)
				}
			}
			if err != nil && cur.err == nil {
				cur.err, cur.errAt = err, len(cur.keys)
			}
			cur.keys = append(cur.keys, key)
			cur.ids = append(cur.ids, id)
			cur.vals = append(cur.vals, v)
			if cur.refs != nil {
				cur.refs = append(cur.refs, ref)
			}
			if len(cur.keys) >= cap(cur.keys) || cur.err != nil {
				send()
			}
			return !halt
		}

		var err error
		if st := m.state.Load(); st.r != nil {
			// Values are kept for the next reader once the map has been walked whole before:
			// one walk over a map (the common case) does not pay to keep what it never reads
			// again, nor reads each value's bytes to copy them.
			again := st.r.walked.Load() > 0
			err = st.r.walkNodes(ctx, m.hasher, m.walkAhead(), func(n *frozenNode) bool {
				vt := n.vals.Load()
				if again {
					vt = n.valueTable()
				} else if vt == valuesLeft {
					vt = nil
				}
				j := 0
				return n.eachEntry(func(key string, id cidBytes) bool {
					ref := valueRef{n, vt, j}
					var raw []byte
					if vt != nil {
						raw = vt.get(j)
					}
					j++
					return add(key, id, ref, raw)
				})
			})
		} else {
			var snapshot []entry
			err = st.w.walkEntries(ctx, m.hasher, m.walkAhead(), func(key string, id cidBytes) bool {
				snapshot = append(snapshot, entry{key: key, value: id})
				return true
			})
			for _, e := range snapshot {
				if !add(e.key, e.value, valueRef{}, nil) {
					break
				}
			}
		}
		if !halt && cur != nil {
			send()
		}
		if done {
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
func (r *readStore) walkEntries(ctx context.Context, hasher keyHasher, ahead walkAhead, yield func(key string, id cidBytes) bool) error {
	return r.walkNodes(ctx, hasher, ahead, func(n *frozenNode) bool { return n.eachEntry(yield) })
}

// walkNodes visits every node in keys() order, through walkTree and its checks, loading nodes
// ahead as ahead allows. It stops when visit returns false or ctx is done.
func (r *readStore) walkNodes(ctx context.Context, hasher keyHasher, ahead walkAhead, visit func(n *frozenNode) bool) error {
	t, err := newTreeCheck(hasher, int(r.walked.Load()))
	if err != nil {
		return err
	}
	child := func(ctx context.Context, n *frozenNode, k, depth int) (*frozenNode, cidBytes, error) {
		c, err := r.child(ctx, n, k, depth)
		return c, n.linkAt(k), err
	}
	// Loads ahead go through the cache as the walk's own do (r.child is safe for concurrent use),
	// so a node loaded ahead is also kept for later walks, within the budget.
	pre := newPrefetcher(ctx, ahead, r.child,
		func(n *frozenNode, k int) bool { return n.kids[k].Load() != nil },
		func(n *frozenNode, k int, c *frozenNode) (*frozenNode, cidBytes) { return c, n.linkAt(k) })
	defer pre.stop()
	err = walkTree(ctx, t, r.rootNode, cidKey(r.root), child, func(n *frozenNode, _ int) error {
		if !visit(n) {
			return errStop
		}
		return nil
	}, pre)
	if met := int64(len(t.seen)); err == nil && met > r.walked.Load() {
		r.walked.Store(met)
	}
	return err
}

// walkEntries is walkKeys with each key's value CID, under the lock: yield must not call back
// into the map.
func (w *writeStore) walkEntries(ctx context.Context, hasher keyHasher, ahead walkAhead, yield func(key string, id cidBytes) bool) error {
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
		l := n.slots[k].link()
		c, err := w.child(ctx, l, depth)
		if err != nil || c.dirty {
			return c, "", err // a changed node's CID is not known until the next flush
		}
		return c, l.id, nil
	}
	// A node not in memory (never loaded, or dropped by vacate) is clean and its link's CID is
	// all it needs: loads ahead decode it on their goroutines (w.loadNode touches nothing the
	// walk holds the lock for), and the walk, under the lock, hangs it on its link.
	pre := newPrefetcher(ctx, ahead,
		func(ctx context.Context, n *node, k, depth int) (*node, error) {
			c, err := w.loadNode(ctx, n.slots[k].link().id)
			if err != nil {
				return nil, fmt.Errorf("depth %d: %w", depth, err)
			}
			return c, nil
		},
		func(n *node, k int) bool { return n.slots[k].link().node != nil },
		func(n *node, k int, c *node) (*node, cidBytes) {
			l := n.slots[k].link()
			if l.node == nil {
				l.node = c
			}
			if l.node.dirty {
				return l.node, ""
			}
			return l.node, l.id
		})
	defer pre.stop()
	rootID := w.rootID
	if root.dirty {
		rootID = ""
	}
	return walkTree(ctx, t, root, rootID, child, func(n *node, _ int) error {
		if !eachNodeEntry(n, yield) {
			return errStop
		}
		return nil
	}, pre)
}
