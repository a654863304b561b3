package hamt

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/ipfs/go-cid"
	"github.com/multiformats/go-multicodec"
)

// loadFunc fetches the block of node id, verified if the map was asked to. Each node store decodes
// it in its own form: decodeNode for writing, decodeFrozen for reading.
type loadFunc func(ctx context.Context, id cidBytes) ([]byte, error)

// loadNode returns node id for writing: a node the read store held, or one loaded and decoded.
func (w *writeStore) loadNode(ctx context.Context, id cidBytes) (*node, error) {
	if w.held != nil {
		if f := w.held(id); f != nil {
			return f.thaw(), nil
		}
	}
	b, err := w.load(ctx, id)
	if err != nil {
		return nil, err
	}
	n, err := decodeLoadedNode(b)
	if err != nil {
		return nil, fmt.Errorf("node %s: %w", id, err)
	}
	return n, nil
}

// writeStore holds a write-mode map's nodes in memory. Nodes are loaded from the CAS on first use
// and kept; changed nodes are marked dirty and saved only by flush. Everything is guarded by mu.
//
// Invariant: the ancestors of a dirty node are dirty, so a flush finds every changed node by
// following dirty links from the root, and saves nothing unreachable.
type writeStore struct {
	mu     sync.Mutex
	load   loadFunc
	root   *node    // nil until first needed when the store starts from a saved root
	rootID cidBytes // the root's CID while the root is not dirty
	closed bool     // set when the map switched to read-only; the store must not be used again
	// held, when set, gives the nodes a read store holds, to use instead of loading them
	// (EnableWrite). The next flush drops it, and with it the read store's cache.
	held func(id cidBytes) *frozenNode
	tel  *Telemetry // counts the nodes a flush saves; nil: not counted
}

func newWriteStore(load loadFunc, root *node, rootID cid.Cid) *writeStore {
	return &writeStore{load: load, root: root, rootID: cidKey(rootID)}
}

// rootNode returns the root, loading it if needed.
func (w *writeStore) rootNode(ctx context.Context) (*node, error) {
	if w.root == nil {
		n, err := w.loadNode(ctx, w.rootID)
		if err != nil {
			return nil, fmt.Errorf("root: %w", err)
		}
		w.root = n
	}
	return w.root, nil
}

// child returns the node l points to, loading and keeping it if needed.
func (w *writeStore) child(ctx context.Context, l *link, depth int) (*node, error) {
	if l.node == nil {
		n, err := w.loadNode(ctx, l.id)
		if err != nil {
			return nil, fmt.Errorf("depth %d: %w", depth, err)
		}
		l.node = n
	}
	return l.node, nil
}

// lookup finds key's value CID ("" when absent).
func (w *writeStore) lookup(ctx context.Context, key string, h []byte) (cidBytes, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	n, err := w.rootNode(ctx)
	if err != nil {
		return "", err
	}
	for depth := 0; ; depth++ {
		id, next, err := find(n, key, h, depth)
		if err != nil || next == nil {
			return id, err
		}
		if n, err = w.child(ctx, next, depth+1); err != nil {
			return "", err
		}
	}
}

// walkKeys yields every key in keys() order under the lock, loading what is not in memory. yield
// must not call back into the map. The walk is walkTree's, so a node reached twice or a key off
// its hash path (for hasher) is ErrMalformedNode.
func (w *writeStore) walkKeys(ctx context.Context, hasher keyHasher, ahead walkAhead, yield func(string) bool) error {
	return w.walkEntries(ctx, hasher, ahead, func(key string, _ cidBytes) bool { return yield(key) })
}

// frozenRoot returns the root in read form for a read store, without going to the store:
// re-encoding the just-flushed root and decoding it again. nil if the root was never loaded.
// Callers hold mu.
func (w *writeStore) frozenRoot() (*frozenNode, error) {
	if w.root == nil {
		return nil, nil
	}
	b, err := w.root.encode()
	if err != nil {
		return nil, err
	}
	return decodeFrozen(b)
}

// currentRoot is the root CID if nothing changed since the last flush.
func (w *writeStore) currentRoot() (cid.Cid, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.root != nil && w.root.dirty {
		return cid.Undef, ErrUnflushed
	}
	return w.rootID.cid(), nil
}

// pendingNode is a dirty node to save and the link (nil for the root) that must learn its CID.
type pendingNode struct {
	n  *node
	up *link
}

// flush saves every dirty node, deepest level first so children are saved (and their parents'
// links updated) before their parents are encoded; the nodes of one level are saved by up to
// workers goroutines at once. If a save fails, what was saved stays saved and the rest stays
// dirty, so a later flush finishes the job. Callers hold mu.
func (w *writeStore) flush(ctx context.Context, cas CAS, workers int) (cid.Cid, error) {
	w.held = nil
	if w.root == nil || !w.root.dirty {
		return w.rootID.cid(), nil
	}
	var levels [][]pendingNode
	var collect func(n *node, up *link, depth int)
	collect = func(n *node, up *link, depth int) {
		if depth == len(levels) {
			levels = append(levels, nil)
		}
		levels[depth] = append(levels[depth], pendingNode{n, up})
		for i := range n.slots {
			if l := n.slots[i].link(); l != nil && l.node != nil && l.node.dirty {
				collect(l.node, l, depth+1)
			}
		}
	}
	collect(w.root, nil, 0)
	var rootID cid.Cid
	for d := len(levels) - 1; d >= 0; d-- {
		err := saveNodes(ctx, cas, levels[d], workers, func(p pendingNode, id cid.Cid) {
			if p.up != nil {
				p.up.id = cidKey(id)
			} else {
				rootID = id
			}
		})
		if err != nil {
			return cid.Undef, fmt.Errorf("flush depth %d: %w", d, err)
		}
	}
	w.rootID = cidKey(rootID)
	if w.tel != nil {
		saved := 0
		for _, l := range levels {
			saved += len(l)
		}
		w.tel.flushed(ctx, saved)
	}
	return rootID, nil
}

// saveNodes encodes and saves nodes with up to workers goroutines, calling saved for each (from
// the goroutine that saved it; each pendingNode's link is its own, so these writes do not race).
func saveNodes(ctx context.Context, cas CAS, nodes []pendingNode, workers int, saved func(pendingNode, cid.Cid)) error {
	// Each goroutine encodes into one buffer of its own: Save does not keep the bytes it is given.
	save := func(p pendingNode, buf *[]byte) error {
		b, err := p.n.appendBlock((*buf)[:0])
		if err != nil {
			return err
		}
		*buf = b
		id, err := cas.Save(ctx, b, multicodec.DagCbor)
		if err != nil {
			return fmt.Errorf("save node: %w", err)
		}
		if id.Type() != uint64(multicodec.DagCbor) {
			return fmt.Errorf("save node: store returned %s, which is not a dag-cbor CID", id)
		}
		p.n.dirty = false
		saved(p, id)
		return nil
	}
	workers = min(workers, len(nodes))
	if workers <= 1 {
		var buf []byte
		for _, p := range nodes {
			if err := save(p, &buf); err != nil {
				return err
			}
		}
		return nil
	}
	var (
		next     atomic.Int64
		failed   atomic.Bool
		errOnce  sync.Once
		firstErr error
		wg       sync.WaitGroup
	)
	for range workers {
		wg.Go(func() {
			var buf []byte
			for !failed.Load() {
				j := int(next.Add(1) - 1)
				if j >= len(nodes) {
					return
				}
				if err := save(nodes[j], &buf); err != nil {
					errOnce.Do(func() { firstErr = err })
					failed.Store(true)
				}
			}
		})
	}
	wg.Wait()
	return firstErr
}

// vacate drops every node but the root from memory. Callers flush first: only clean nodes can be
// dropped, since their CIDs are all that is kept.
func (w *writeStore) vacate() {
	if w.root == nil {
		return
	}
	for i := range w.root.slots {
		if l := w.root.slots[i].link(); l != nil && l.node != nil {
			// The node may share its link's allocation (linkedNode), which outlives it: empty it,
			// so its subtree does not stay reachable. Nothing else refers to a write-mode node
			// or its slots.
			*l.node = node{}
			l.node = nil
		}
	}
}

// size is the approximate memory of the nodes in memory.
func (w *writeStore) size() int64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	var total int64
	var add func(n *node)
	add = func(n *node) {
		total += n.memSize()
		for i := range n.slots {
			if l := n.slots[i].link(); l != nil && l.node != nil {
				add(l.node)
			}
		}
	}
	if w.root != nil {
		add(w.root)
	}
	return total
}
