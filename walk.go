package hamt

import (
	"context"
	"errors"
	"fmt"
	"math/bits"
)

// Every traversal of a whole tree (Keys and Len in both modes, and so the Zarr listings, the FS
// view and ExportDir; Inspect, Diff and WriteCAR) goes through walkTree, which checks what the
// node decoder cannot see in one block. In a valid HAMT:
//
//   - No node is reached twice. Two subtrees at different positions hold different keys, so their
//     CIDs differ: the tree is a tree, not a DAG. A node met twice in one walk is a DAG built to
//     make walks exponential (a node whose 256 slots all link to one child, five levels deep, is
//     256^4 walks of that child from 5 blocks).
//   - Every key sits on its own hash path: a key in a bucket in slot s of a node at depth d, which
//     the walk reached through slots p[0] … p[d-1], hashes to p[0] … p[d-1] s. A key elsewhere is
//     listed but can never be found by Get.
//   - No node below the root is empty (a delete removes the nodes it empties), and no node is deeper
//     than the hash is long (the slot at depth d is byte d of the hash).
//
// A walk that finds otherwise stops with ErrMalformedNode, naming the node, depth and key; or, in
// Verify's walk (treeCheck.report), reports it and goes on, around the subtree where it must. The
// checks cost a set of the CIDs met (memory of the order of the walk's own) and one hash per key.
//
// Both are skipped for a node that remembers having passed them at the same position (see
// walkable.walkChecked), so a warm walk of a read-only map hashes nothing and keeps no set. That
// loses nothing: a node reached at two positions P and Q has, somewhere below it at P+r and Q+r,
// a node with a bucket (no node below the root is empty, none is deeper than the hash), whose
// keys would have to hash to both positions. If neither position is a prefix of the other, they
// differ at some depth, where a hash has one byte; if P+r is a prefix of Q+r, the key's slot at
// that depth is a bucket at P+r but a link on the way to Q+r. So the second visit fails the key
// check, or the set, whichever it meets; and a node remembered at its position was checked there.

// walkable is a node as walkTree sees it: *node (write mode), *frozenNode (read mode) or
// *blockNode (the tools' nodes, read straight from the store).
type walkable interface {
	// empty reports whether the node has no occupied slot.
	empty() bool
	// bucketFrom returns the first bucket slot at or after slot, and the bucket's encoding at
	// s[p:]; slot -1 when there is none. (Index-based rather than a callback, so a walk makes no
	// closure per node.)
	bucketFrom(slot int) (next int, s string, p int)
	// linkBelow returns the highest link slot below slot and its rank k among the occupied slots;
	// slot -1 when there is none. From numSlots down, that is the order py-hamt's keys()
	// descends in.
	linkBelow(slot int) (next, k int)
	// walkChecked reports whether the node's keys were found on their hash paths when the node
	// was at position pos (see treeCheck.position); setWalkChecked records it.
	walkChecked(pos uint64) bool
	setWalkChecked(pos uint64)
	// linkID returns the CID the k-th occupied slot, a link, links to.
	linkID(k int) cidBytes
}

// treeCheck is one walk's state for the checks: the CIDs met so far and the slots that led to
// the current node. Diff keeps one per tree.
type treeCheck struct {
	hasher  keyHasher
	hashLen int                   // length of the hash; nodes exist at depths 0 … hashLen-1
	seen    map[cidBytes]struct{} // made on first use: a warm walk may need none
	hint    int                   // how many nodes seen is made for
	path    []byte                // path[d] is the slot taken at depth d to reach the current node
	buf     [32]byte
	// report, when set (Verify), is told of every check that fails and of every child that fails
	// to load, and the walk goes on: past a key off its hash path or an empty node, around the
	// subtree of a node reached twice, too deep, or not loaded. It returns false for a failure it
	// does not take as a finding (a load that failed for I/O), which then ends the walk.
	report func(f walkFailure) bool
	// skip, when set (GC's mark), is asked before each child is loaded whether the walk may leave
	// out the subtree at id, reached through t.path at position pos (see position; 0 past depth
	// 7): it then neither loads, checks nor visits it, and goes on with its siblings. Only the
	// walk's goroutine calls it; loads ahead (walk_prefetch.go) do not ask it, so a walk with skip
	// should not load ahead (they would load what it skips; harmless, wasted).
	skip func(id cidBytes, pos uint64) bool
}

// walkFailure is one failed check or failed load of a walk that reports them (treeCheck.report).
type walkFailure struct {
	kind  ProblemKind // "" for a failed load: err says why
	id    cidBytes    // the node's CID (for a failed load, the child's)
	depth int         // the node's depth
	path  []byte      // the slots from the root to the node
	key   string      // the key that failed, for a key check
	err   error
}

// errSkipSubtree tells walkFrom to leave a node's subtree and go on with its siblings: a check
// that failed, or a load, was reported (treeCheck.report).
var errSkipSubtree = errors.New("subtree skipped")

// fail is a check of kind that failed with err on node id at depth (key: the key that failed):
// err itself when the walk stops at the first, else reported and then (nil: the walk goes on,
// errSkipSubtree: it leaves the node's subtree).
func (t *treeCheck) fail(kind ProblemKind, id cidBytes, depth int, key string, then, err error) error {
	if t.report == nil {
		return err
	}
	if !t.report(walkFailure{kind: kind, id: id, depth: depth, path: t.path[:depth], key: key, err: err}) {
		return err
	}
	return then
}

// loadFailed is a child (CID id) at depth that did not load, with err: err itself when the walk
// stops at the first failure or report does not take it, else errSkipSubtree.
func (t *treeCheck) loadFailed(id cidBytes, depth, slot int, err error) error {
	if t.report == nil {
		return err
	}
	path := append(t.path[:depth-1:depth-1], byte(slot))
	if !t.report(walkFailure{id: id, depth: depth, path: path, err: err}) {
		return err
	}
	return errSkipSubtree
}

// newTreeCheck starts a walk that may meet about nodes nodes it has not checked before (a hint;
// 0 when unknown).
func newTreeCheck(h keyHasher, nodes int) (*treeCheck, error) {
	n := 32 // Blake3
	if h.custom != nil {
		if n = len(h.custom(nil)); n == 0 {
			return nil, errors.New("hash function gives an empty digest")
		}
	}
	return &treeCheck{hasher: h, hashLen: n, hint: nodes}, nil
}

// enter records that the walk reached node id (empty: a node made in memory, which has no CID
// yet) at depth, through the slots in t.path.
func (t *treeCheck) enter(id cidBytes, depth int, empty bool) error {
	if depth >= t.hashLen {
		return t.fail(ProblemTooDeep, id, depth, "", errSkipSubtree, fmt.Errorf("%w: node %s at depth %d is deeper than the %d-byte hash allows", ErrMalformedNode, id, depth, t.hashLen))
	}
	if depth > 0 && empty {
		err := t.fail(ProblemEmptyNode, id, depth, "", nil, fmt.Errorf("%w: node %s at depth %d (slots %v) is empty", ErrMalformedNode, id, depth, t.path[:depth]))
		if err != nil {
			return err
		}
	}
	if id == "" {
		return nil
	}
	if t.seen == nil {
		t.seen = make(map[cidBytes]struct{}, t.hint)
	}
	if _, ok := t.seen[id]; ok {
		return t.fail(ProblemReachedTwice, id, depth, "", errSkipSubtree,
			fmt.Errorf("%w: node %s is reached twice, again at depth %d through slots %v", ErrMalformedNode, id, depth, t.path[:depth]))
	}
	t.seen[id] = struct{}{}
	return nil
}

// position packs the path to a node at depth into one number, for walkChecked: the depth plus one
// in the top byte and the slots below it. Zero (never checked) for depths past 7, which a map
// reaches only through more than 256^7 nodes.
func (t *treeCheck) position(depth int) uint64 {
	if depth > 7 {
		return 0
	}
	pos := uint64(depth+1) << 56
	for d, s := range t.path[:depth] {
		pos |= uint64(s) << (8 * d)
	}
	return pos
}

// checkKeys checks that every key in n's buckets hashes to the path that led to n, at depth, and
// to its bucket's slot.
func checkKeys(t *treeCheck, n walkable, id cidBytes, depth int) error {
	var err error
	for slot, b, p := n.bucketFrom(0); slot >= 0 && err == nil; slot, b, p = n.bucketFrom(slot + 1) {
		eachEntry(b, p, func(key string, _ cidBytes) bool {
			err = t.checkKey(key, id, depth, slot)
			return err == nil
		})
	}
	return err
}

// checkKey checks one key found in slot of a node at depth.
func (t *treeCheck) checkKey(key string, id cidBytes, depth, slot int) error {
	h, err := t.hasher.hash(key, &t.buf)
	if err != nil {
		return err
	}
	if len(h) > depth && int(h[depth]) == slot && string(h[:depth]) == string(t.path[:depth]) {
		return nil
	}
	return t.fail(ProblemKeyOffPath, id, depth, key, nil, fmt.Errorf("%w: key %.100q in slot %d of node %s at depth %d is off its hash path: reached through slots %v, its hash begins %v",
		ErrMalformedNode, key, slot, id, depth, append(t.path[:depth:depth], byte(slot)), h[:min(len(h), depth+1)]))
}

// walkTree visits root and every node below it once, depth first in py-hamt's keys() order: a
// node (visit), then its children from the highest slot down, each checked as the top of this
// file says before it is visited. child resolves the link in the k-th occupied slot of a node at
// depth-1 and gives the child's CID ("" for a node made in memory). visit returning errStop ends
// the walk without an error. Every error but errStop is returned as it is. pre, when not nil,
// loads children ahead of the walk (see walk_prefetch.go); the caller stops it.
func walkTree[N walkable](ctx context.Context, t *treeCheck, root N, rootID cidBytes,
	child func(ctx context.Context, parent N, k, depth int) (N, cidBytes, error), visit func(n N, depth int) error, pre *prefetcher[N]) error {
	err := walkFrom(ctx, t, root, rootID, 0, 0, child, visit, pre, "", nil)
	if errors.Is(err, errStop) {
		return nil
	}
	return err
}

// walkFrom is walkTree from node n (CID id), reached at depth through slot. With pre, key is n's
// place in the walk (fetch.key), and kids the loads of n's children already queued (nil: none).
func walkFrom[N walkable](ctx context.Context, t *treeCheck, n N, id cidBytes, depth, slot int,
	child func(ctx context.Context, parent N, k, depth int) (N, cidBytes, error), visit func(n N, depth int) error,
	pre *prefetcher[N], key string, kids []*fetch[N]) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := t.check(n, id, depth, slot); err != nil {
		if err == errSkipSubtree {
			pre.drop(kids)
			return nil
		}
		return err
	}
	// The children's loads start before the visit, so they overlap what the caller does with
	// this node's keys; or, when loads are found slow only later (the first loads of a walk
	// decide), from the child the walk has reached then.
	planned := kids != nil
	if !planned && pre.slow() {
		kids, planned = pre.plan(n, depth, key, 0), true
	}
	if err := visit(n, depth); err != nil {
		return err
	}
	i := 0
	for slot, k := n.linkBelow(numSlots); slot >= 0; slot, k = n.linkBelow(slot) {
		if t.skipped(n.linkID(k), depth+1, slot) {
			if kids != nil {
				pre.drop(kids[i : i+1])
			}
			i++
			continue
		}
		if !planned && pre.slow() {
			kids, planned = pre.plan(n, depth, key, i), true
		}
		var c N
		var cid cidBytes
		var grandkids []*fetch[N]
		var err error
		if kids != nil && kids[i] != nil {
			c, cid, grandkids, err = pre.take(ctx, kids[i], child)
		} else {
			c, cid, err = child(ctx, n, k, depth+1)
		}
		i++
		if err != nil {
			if err = t.loadFailed(n.linkID(k), depth+1, slot, err); err == errSkipSubtree {
				continue
			}
			return err
		}
		var ckey string
		if pre.slow() {
			ckey = childKey(key, numSlots-1-slot)
		}
		if err := walkFrom(ctx, t, c, cid, depth+1, slot, child, visit, pre, ckey, grandkids); err != nil {
			return err
		}
	}
	return nil
}

// skipped reports whether the walk leaves out the subtree at id, a child reached at depth through
// slot (treeCheck.skip).
func (t *treeCheck) skipped(id cidBytes, depth, slot int) bool {
	if t.skip == nil {
		return false
	}
	t.path = append(t.path[:depth-1], byte(slot))
	return t.skip(id, t.position(depth))
}

// check runs every check on node n (CID id), reached at depth through slot, unless n remembers
// passing them at this position.
func (t *treeCheck) check(n walkable, id cidBytes, depth, slot int) error {
	if depth > 0 {
		t.path = append(t.path[:depth-1], byte(slot))
	}
	pos := t.position(depth)
	if pos != 0 && n.walkChecked(pos) {
		return nil
	}
	if err := t.enter(id, depth, n.empty()); err != nil {
		return err
	}
	if err := checkKeys(t, n, id, depth); err != nil {
		return err
	}
	if pos != 0 {
		n.setWalkChecked(pos)
	}
	return nil
}

// upTo is the mask of the bits 0 … i&63 of a bitmap word.
func upTo(i int) uint64 { return ^uint64(0) >> (63 - uint(i&63)) }

func (n *node) bucketFrom(slot int) (int, string, int) {
	for i := slot; i < numSlots; i = (i | 63) + 1 {
		for b := n.bitmap[i>>6] &^ (upTo(i) >> 1); b != 0; b &= b - 1 {
			j := i&^63 | bits.TrailingZeros64(b)
			if pos, _ := n.index(j); n.slots[pos].link() == nil {
				return j, n.slots[pos].bucket(), 0
			}
		}
	}
	return -1, "", 0
}

func (n *node) linkBelow(slot int) (int, int) {
	for i := slot - 1; i >= 0; i = i&^63 - 1 {
		for b := n.bitmap[i>>6] & upTo(i); b != 0; {
			top := 63 - bits.LeadingZeros64(b)
			b &^= 1 << uint(top)
			j := i&^63 | top
			if pos, _ := n.index(j); n.slots[pos].link() != nil {
				return j, pos
			}
		}
	}
	return -1, 0
}

func (n *node) linkID(k int) cidBytes { return n.slots[k].link().id }

// eachValue calls fn with every key and value in n's buckets, in slot order, until fn fails.
func (n *node) eachValue(fn func(key string, value cidBytes) error) error {
	var err error
	for i := 0; i < len(n.slots) && err == nil; i++ {
		if s := &n.slots[i]; s.link() == nil {
			eachEntry(s.bucket(), 0, func(key string, value cidBytes) bool {
				err = fn(key, value)
				return err == nil
			})
		}
	}
	return err
}

// A write-mode node has one position all its life: the position is not needed.
func (n *node) walkChecked(uint64) bool { return n.checked }
func (n *node) setWalkChecked(uint64)   { n.checked = true }

func (n *frozenNode) empty() bool { return n.occupied == [4]uint64{} }

func (n *frozenNode) bucketFrom(slot int) (int, string, int) {
	for i := slot; i < numSlots; i = (i | 63) + 1 {
		w := i >> 6
		if b := n.occupied[w] &^ n.links[w] &^ (upTo(i) >> 1); b != 0 {
			j := w<<6 | bits.TrailingZeros64(b)
			k, _ := n.find(j)
			return j, n.img, n.slotStart(k)
		}
	}
	return -1, "", 0
}

func (n *frozenNode) linkBelow(slot int) (int, int) {
	for i := slot - 1; i >= 0; i = i&^63 - 1 {
		if b := n.links[i>>6] & upTo(i); b != 0 {
			j := i&^63 | (63 - bits.LeadingZeros64(b))
			k, _ := n.find(j)
			return j, k
		}
	}
	return -1, 0
}

func (n *frozenNode) linkID(k int) cidBytes { return n.linkAt(k) }

func (n *frozenNode) walkChecked(pos uint64) bool { return n.checkedAt.Load() == pos }
func (n *frozenNode) setWalkChecked(pos uint64)   { n.checkedAt.Store(pos) }
