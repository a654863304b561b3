package hamt

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"iter"
	"slices"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/multiformats/go-multicodec"
)

// This file reads flushed trees block by block, straight from a CAS, for tools: statistics, diffs
// and CAR export/import. Every node block is verified against its CID and decoded strictly.

// blockNode is a node the tools read straight from the store, with its CID and block.
type blockNode struct {
	node
	id    cid.Cid
	block []byte
}

// loadNodeBlock loads, verifies (unless the store does) and decodes the node block id. lat, when
// not nil, learns how long the store took.
func loadNodeBlock(ctx context.Context, cas CAS, id cid.Cid, lat *latency) (*blockNode, error) {
	if id.Prefix().Codec != uint64(multicodec.DagCbor) {
		return nil, fmt.Errorf("%w: node %s is not dag-cbor", ErrMalformedNode, id)
	}
	t := time.Now()
	b, err := loadBlock(ctx, cas, id)
	if err != nil {
		return nil, fmt.Errorf("node %s: %w", id, missingBlock(err))
	}
	if lat != nil {
		lat.since(t)
	}
	if !storeVerifies(cas) {
		if err := verifyBlock(id, b); err != nil {
			return nil, err
		}
	}
	n, err := decodeNode(b)
	if err != nil {
		return nil, fmt.Errorf("node %s: %w", id, err)
	}
	return &blockNode{node: *n, id: id, block: b}, nil
}

// walkStored is walkTree over the flushed tree at root, read straight from cas with every block
// verified, loading nodes ahead on a store with latency. The hash function is the one opts give
// (WithHash; Blake3 by default), the parallelism WithWalkParallelism's; other options are ignored.
func walkStored(ctx context.Context, cas CAS, root cid.Cid, opts []Option, visit func(n *blockNode, depth int) error) error {
	return walkStoredAhead(ctx, cas, root, opts, toolAhead(opts), visit)
}

// walkStoredAhead is walkStored timing the store's loads with ahead, which the caller can then
// ask whether they are slow.
func walkStoredAhead(ctx context.Context, cas CAS, root cid.Cid, opts []Option, ahead walkAhead, visit func(n *blockNode, depth int) error) error {
	t, err := toolCheck(opts)
	if err != nil {
		return err
	}
	return walkStoredChecked(ctx, cas, root, t, ahead, visit)
}

// walkStoredChecked is walkStoredAhead with the walk's checks t (toolCheck) made by the caller,
// who may set its hooks (treeCheck.skip) and read its path during a visit.
func walkStoredChecked(ctx context.Context, cas CAS, root cid.Cid, t *treeCheck, ahead walkAhead, visit func(n *blockNode, depth int) error) error {
	n, err := loadNodeBlock(ctx, cas, root, ahead.lat)
	if err != nil {
		return err
	}
	pre := blockPrefetcher(ctx, cas, ahead)
	defer pre.stop()
	return walkTree(ctx, t, n, cidKey(root), blockChild(cas, ahead.lat), visit, pre)
}

// blockPrefetcher loads blockNodes ahead of a tool's walk (see walk_prefetch.go), or is nil.
func blockPrefetcher(ctx context.Context, cas CAS, ahead walkAhead) *prefetcher[*blockNode] {
	load := blockChild(cas, ahead.lat)
	return newPrefetcher(ctx, ahead,
		func(ctx context.Context, n *blockNode, k, depth int) (*blockNode, error) {
			c, _, err := load(ctx, n, k, depth)
			return c, err
		}, nil,
		func(n *blockNode, k int, c *blockNode) (*blockNode, cidBytes) { return c, n.slots[k].link().id })
}

// toolCheck is the tree check for a tool's options.
func toolCheck(opts []Option) (*treeCheck, error) {
	o, err := buildOptions(opts)
	if err != nil {
		return nil, fmt.Errorf("hamt: %w", err)
	}
	return newTreeCheck(keyHasher{custom: o.hash}, 0)
}

// blockChild is walkTree's child for blockNodes: it loads the link in n's k-th occupied slot,
// timing the store with lat (nil: not timed).
func blockChild(cas CAS, lat *latency) func(ctx context.Context, n *blockNode, k, depth int) (*blockNode, cidBytes, error) {
	return func(ctx context.Context, n *blockNode, k, depth int) (*blockNode, cidBytes, error) {
		id := n.slots[k].link().id
		c, err := loadNodeBlock(ctx, cas, id.cid(), lat)
		if err != nil {
			return nil, id, fmt.Errorf("depth %d: %w", depth, err)
		}
		return c, id, nil
	}
}

// TreeStats describes the shape of a flushed map.
type TreeStats struct {
	Keys         int     // keys in the map
	Nodes        int     // node blocks
	NodesAtDepth []int   // nodes at each depth; the root is depth 0
	Links        int     // slots holding a link to a child node
	Buckets      int     // slots holding a bucket
	BucketFill   []int   // BucketFill[n]: buckets holding n keys (index 0 unused)
	NodeBytes    int64   // bytes of all node blocks
	ValueBytes   int64   // bytes of all values, each distinct value once (-1 when not asked for)
	Values       int     // distinct value blocks
	MaxBucket    int     // keys in the fullest bucket
	AvgFill      float64 // mean keys per bucket
}

// Inspect walks the tree at root and describes it. With valueSizes it also sums the sizes of the
// distinct values, asking the CAS for each (cheap when it is a BlockSizer); a value stored as a
// UnixFS file (dag-pb) counts its file's size, read from its root node. Options: WithHash names the
// hash function the map was written with (default Blake3), which the walk checks every key
// against, and WithWalkParallelism how many nodes (and value sizes) it loads at once from a store
// with latency; other options are ignored. A node reached twice or a key off its hash path is
// ErrMalformedNode (see walkTree).
func Inspect(ctx context.Context, cas CAS, root cid.Cid, valueSizes bool, opts ...Option) (TreeStats, error) {
	st := TreeStats{ValueBytes: -1}
	values := map[cidBytes]struct{}{}
	ahead := toolAhead(opts)
	err := walkStoredAhead(ctx, cas, root, opts, ahead, func(n *blockNode, depth int) error {
		st.Nodes++
		st.NodeBytes += int64(len(n.block))
		for len(st.NodesAtDepth) <= depth {
			st.NodesAtDepth = append(st.NodesAtDepth, 0)
		}
		st.NodesAtDepth[depth]++
		for i := range n.slots {
			s := &n.slots[i]
			if s.link() != nil {
				st.Links++
				continue
			}
			count := bucketCount(s.bucket())
			st.Buckets++
			st.Keys += count
			for len(st.BucketFill) <= count {
				st.BucketFill = append(st.BucketFill, 0)
			}
			st.BucketFill[count]++
			st.MaxBucket = max(st.MaxBucket, count)
			eachEntry(s.bucket(), 0, func(_ string, value cidBytes) bool {
				values[value] = struct{}{}
				return true
			})
		}
		return nil
	})
	if err != nil {
		return st, err
	}
	st.Values = len(values)
	if st.Buckets > 0 {
		st.AvgFill = float64(st.Keys) / float64(st.Buckets)
	}
	if valueSizes {
		n, err := sumValueSizes(ctx, cas, values, ahead)
		if err != nil {
			return st, err
		}
		st.ValueBytes = n
	}
	return st, nil
}

// ChangeKind says how a key differs between two maps.
type ChangeKind uint8

// The kinds of change Diff reports.
const (
	Added    ChangeKind = iota + 1 // in the second map only
	Removed                        // in the first map only
	Modified                       // in both, pointing at different values
)

func (k ChangeKind) String() string {
	switch k {
	case Added:
		return "added"
	case Removed:
		return "removed"
	case Modified:
		return "changed"
	}
	return fmt.Sprintf("ChangeKind(%d)", uint8(k))
}

// Change is one key that differs between two maps: Old is its value's CID in the first map
// (undefined when Added), New in the second (undefined when Removed).
type Change struct {
	Key      string
	Kind     ChangeKind
	Old, New cid.Cid
}

// Diff yields the keys that differ between the flushed maps at a and b, both on cas and hashed
// with the same function: Blake3, unless WithHash names another (WithWalkParallelism bounds the
// nodes loaded at once from a store with latency; other options are ignored). It
// walks only the subtrees whose CIDs differ, so two versions of a large dataset compare in time
// proportional to what changed. Changes come in slot order, each node's in key order. On the
// paths it walks, a node reached twice in one tree or a key off its hash path is ErrMalformedNode
// (see walkTree).
func Diff(ctx context.Context, cas CAS, a, b cid.Cid, opts ...Option) iter.Seq2[Change, error] {
	return func(yield func(Change, error) bool) {
		if a.Equals(b) {
			return
		}
		d := differ{ctx: ctx, cas: cas, yield: yield}
		defer func() { d.pre.stop() }()
		err := d.start(a, b, opts)
		if err != nil && !errors.Is(err, errStop) {
			yield(Change{}, err)
		}
	}
}

// errStop ends a walk whose consumer stopped asking.
var errStop = errors.New("stopped")

// differ walks two trees side by side, one treeCheck each, loading the nodes it will compare
// ahead on a store with latency (pre, nil otherwise).
type differ struct {
	ctx   context.Context
	cas   CAS
	yield func(Change, error) bool
	a, b  *treeCheck
	load  func(ctx context.Context, n *blockNode, k, depth int) (*blockNode, cidBytes, error)
	pre   *prefetcher[*blockNode]
}

// start compares the trees at roots a and b.
func (d *differ) start(a, b cid.Cid, opts []Option) error {
	var err error
	if d.a, err = toolCheck(opts); err != nil {
		return err
	}
	if d.b, err = toolCheck(opts); err != nil {
		return err
	}
	ahead := toolAhead(opts)
	d.load = blockChild(d.cas, ahead.lat)
	na, err := loadNodeBlock(d.ctx, d.cas, a, ahead.lat)
	if err != nil {
		return err
	}
	nb, err := loadNodeBlock(d.ctx, d.cas, b, ahead.lat)
	if err != nil {
		return err
	}
	d.pre = blockPrefetcher(d.ctx, d.cas, ahead)
	return d.nodes(na, nb, 0, 0, "")
}

// child loads the node linked from n's k-th occupied slot, at depth: the next of the loads queued
// ahead (*ahead), when it is that one. It also gives the loads of the node's children, if queued,
// and the node's key.
func (d *differ) child(n *blockNode, k, depth int, ahead *[]*fetch[*blockNode]) (*blockNode, []*fetch[*blockNode], string, error) {
	if fs := *ahead; len(fs) > 0 && fs[0].parent == n && fs[0].k == k {
		*ahead = fs[1:]
		c, _, kids, err := d.pre.take(d.ctx, fs[0], d.load)
		return c, kids, fs[0].key, err
	}
	c, _, err := d.load(d.ctx, n, k, depth)
	return c, nil, "", err
}

// plan queues ahead the children nodes will load under na and nb, at depth, whose pair has key,
// in the order it loads them: by slot, na's before nb's, skipping the subtrees the two share. A
// child compared with a bucket is walked whole, so its subtree is loaded ahead too. nil when
// loads are fast.
func (d *differ) plan(na, nb *blockNode, depth int, key string) []*fetch[*blockNode] {
	if !d.pre.slow() {
		return nil
	}
	var fs []*fetch[*blockNode]
	for i := range numSlots {
		ka, oka := na.index(i)
		kb, okb := nb.index(i)
		la, lb := oka && na.slots[ka].link() != nil, okb && nb.slots[kb].link() != nil
		if la && lb && na.slots[ka].link().id == nb.slots[kb].link().id {
			continue
		}
		if la {
			fs = append(fs, &fetch[*blockNode]{parent: na, k: ka, depth: depth + 1, key: childKey(childKey(key, i), 0), expand: !lb})
		}
		if lb {
			fs = append(fs, &fetch[*blockNode]{parent: nb, k: kb, depth: depth + 1, key: childKey(childKey(key, i), 1), expand: !la})
		}
	}
	d.pre.queue(fs)
	return fs
}

// nodes compares two nodes at the same position, at depth through slot, slot by slot. key orders
// the loads ahead of the pair's children after the pair (see fetch.key).
func (d *differ) nodes(na, nb *blockNode, depth, slot int, key string) error {
	if err := d.a.check(na, cidKey(na.id), depth, slot); err != nil {
		return err
	}
	if err := d.b.check(nb, cidKey(nb.id), depth, slot); err != nil {
		return err
	}
	ahead := d.plan(na, nb, depth, key)
	for i := range numSlots {
		if err := d.ctx.Err(); err != nil {
			return err
		}
		sa, sb := na.slot(i), nb.slot(i)
		switch {
		case sa == nil && sb == nil:
			continue
		case sa != nil && sb != nil && sa.link() != nil && sb.link() != nil:
			if sa.link().id == sb.link().id {
				continue // the same subtree
			}
			ka, _ := na.index(i)
			ca, _, _, err := d.child(na, ka, depth+1, &ahead)
			if err != nil {
				return err
			}
			kb, _ := nb.index(i)
			cb, _, kbKey, err := d.child(nb, kb, depth+1, &ahead)
			if err != nil {
				return err
			}
			// The pair's children come after cb, the later of the two.
			if err := d.nodes(ca, cb, depth+1, i, kbKey); err != nil {
				return err
			}
			continue
		}
		ea, err := d.entries(d.a, na, depth, i, &ahead)
		if err != nil {
			return err
		}
		eb, err := d.entries(d.b, nb, depth, i, &ahead)
		if err != nil {
			return err
		}
		if err := d.compare(ea, eb); err != nil {
			return err
		}
	}
	return nil
}

// entries returns every key under slot i of n, a node at depth in t's tree (its bucket, or its
// whole subtree), sorted by key. ahead is nodes' queue of loads.
func (d *differ) entries(t *treeCheck, n *blockNode, depth, i int, ahead *[]*fetch[*blockNode]) ([]entry, error) {
	k, ok := n.index(i)
	if !ok {
		return nil, nil
	}
	s := &n.slots[k]
	if s.link() == nil {
		return slices.SortedFunc(slices.Values(appendEntries(nil, s.bucket())), func(a, b entry) int { return cmp.Compare(a.key, b.key) }), nil
	}
	c, kids, key, err := d.child(n, k, depth+1, ahead)
	if err != nil {
		return nil, err
	}
	var out []entry
	err = walkFrom(d.ctx, t, c, s.link().id, depth+1, i, d.load, func(n *blockNode, _ int) error {
		for j := range n.slots {
			if b := n.slots[j].bucket(); b != "" {
				out = appendEntries(out, b)
			}
		}
		return nil
	}, d.pre, key, kids)
	if err != nil {
		return nil, err
	}
	slices.SortFunc(out, func(a, b entry) int { return cmp.Compare(a.key, b.key) })
	return out, nil
}

// compare merges two key-sorted entry lists and yields their differences.
func (d *differ) compare(ea, eb []entry) error {
	emit := func(c Change) error {
		if !d.yield(c, nil) {
			return errStop
		}
		return nil
	}
	for len(ea) > 0 || len(eb) > 0 {
		var err error
		switch {
		case len(eb) == 0 || len(ea) > 0 && ea[0].key < eb[0].key:
			err = emit(Change{Key: ea[0].key, Kind: Removed, Old: ea[0].value.cid()})
			ea = ea[1:]
		case len(ea) == 0 || eb[0].key < ea[0].key:
			err = emit(Change{Key: eb[0].key, Kind: Added, New: eb[0].value.cid()})
			eb = eb[1:]
		default:
			if ea[0].value != eb[0].value {
				err = emit(Change{Key: ea[0].key, Kind: Modified, Old: ea[0].value.cid(), New: eb[0].value.cid()})
			}
			ea, eb = ea[1:], eb[1:]
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// WriteCAR writes the flushed map at root as a CARv1 (root in the header, then every reachable
// block once: nodes, then the values of each node's buckets), which `ipfs dag import` and
// ReadCAR load. It returns the number of blocks written. A value stored as a UnixFS file (dag-pb,
// a value over one chunk on Kubo) is written with every block of its file. Options: WithHash names
// the map's hash function (default Blake3), which the walk checks every key against, and
// WithWalkParallelism how many nodes, and value blocks, it loads at once from a store with
// latency (the blocks' order in the CAR is the same whatever it is); other options are ignored. A
// node reached twice or a key off its hash path is ErrMalformedNode (see walkTree), and the CAR is
// then incomplete. A sharded Zarr root (IsShardedRoot) is written with every block
// it reaches: the root, metadata values, shards and chunks.
func WriteCAR(ctx context.Context, cas CAS, root cid.Cid, w io.Writer, opts ...Option) (int, error) {
	if b, err := shardedRootBlock(ctx, cas, root); err != nil {
		return 0, err
	} else if b != nil {
		return writeShardedCAR(ctx, cas, root, b, w)
	}
	car, err := newCARWriter(w, []cid.Cid{root})
	if err != nil {
		return 0, err
	}
	seen := map[cidBytes]struct{}{}
	put := func(id cidBytes, data []byte) error {
		seen[id] = struct{}{}
		return car.put(id.cid(), data)
	}
	ahead := toolAhead(opts)
	c := &carAhead{ctx: ctx, cas: cas, ahead: ahead, vals: walkAhead{workers: ahead.workers, lat: new(latency)}, put: put, seen: seen}
	err = c.finish(walkStoredAhead(ctx, cas, root, opts, ahead, func(n *blockNode, _ int) error { return c.node(n) }))
	if err != nil {
		return len(seen), err
	}
	return len(seen), nil
}

// writeValues puts the value blocks of n's buckets that are not in seen yet, loading a UnixFS
// file's blocks ahead when ahead is slow.
func writeValues(ctx context.Context, cas CAS, n *node, seen map[cidBytes]struct{}, put func(cidBytes, []byte) error, ahead walkAhead) error {
	for i := range numSlots {
		s := n.slot(i)
		if s == nil || s.link() != nil {
			continue
		}
		for _, e := range appendEntries(nil, s.bucket()) {
			if err := writeValueBlocks(ctx, cas, e, seen, put, ahead); err != nil {
				return err
			}
		}
	}
	return nil
}

// writeValueBlocks puts the blocks of entry e's value that are not yet in seen, each loaded and
// verified: the value's block, or every block of the UnixFS file a dag-pb value heads (its blocks
// loaded ahead when ahead is slow).
func writeValueBlocks(ctx context.Context, cas CAS, e entry, seen map[cidBytes]struct{}, put func(cidBytes, []byte) error, ahead walkAhead) error {
	if _, ok := seen[e.value]; ok {
		return nil
	}
	v := e.value.cid()
	if isDagPb(e.value) {
		skip := func(id cid.Cid) bool { _, ok := seen[cidKey(id)]; return ok }
		err := eachFileBlockAhead(ctx, cas, v, true, skip, func(id cid.Cid, data []byte) error {
			return put(cidKey(id), data)
		}, ahead)
		if err != nil {
			return fmt.Errorf("value of %q: file %s: %w", e.key, v, err)
		}
		return nil
	}
	data, err := loadRawValue(ctx, cas, e.key, v, ahead)
	if err != nil {
		return err
	}
	return put(e.value, data)
}
