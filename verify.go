package hamt

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/ipfs/go-cid"
	"github.com/multiformats/go-multicodec"
)

// This file checks a whole stored dataset, block by block, and reports what is wrong with it
// rather than stopping at the first fault. The HAMT walk is walkTree's (walk.go), with its checks
// turned into findings (treeCheck.report) and its loads ahead on a store with latency; the checks
// only a verify makes (canonical bytes, bucket size, canonical shape, values) are made on each node
// it visits. Values are checked by workers beside the walk. Memory: the walk's own (a set of the
// node CIDs met, the path), a bounded set of the value CIDs checked, and at most MaxProblems
// problems and as many warnings; the rest are counted.

// ProblemKind names a kind of fault Verify finds. The strings are stable: scripts match them.
type ProblemKind string

// The kinds of problem Verify reports. ProblemUncollapsedSubtree is only ever a warning.
const (
	// ProblemMissingBlock: a block the dataset reaches (node, value, file block, shard, chunk) is
	// not in the store.
	ProblemMissingBlock ProblemKind = "missing_block"
	// ProblemHashMismatch: a block's bytes do not hash to its CID.
	ProblemHashMismatch ProblemKind = "hash_mismatch"
	// ProblemMalformedNode: a HAMT node block is not a node (wrong shape, bad CBOR, bad link).
	ProblemMalformedNode ProblemKind = "malformed_node"
	// ProblemNotCanonical: a block decodes but is not the canonical DAG-CBOR of what it holds
	// (a non-minimal or indefinite length; bytes that re-encode differently).
	ProblemNotCanonical ProblemKind = "noncanonical_encoding"
	// ProblemUnsortedBucket: a bucket's keys are not in canonical order (length, then bytes), or
	// a key is there twice.
	ProblemUnsortedBucket ProblemKind = "unsorted_bucket"
	// ProblemKeyOffPath: a key sits where its hash does not lead: Get can never find it.
	ProblemKeyOffPath ProblemKind = "key_off_path"
	// ProblemReachedTwice: a node is reached twice (a DAG sharing a subtree, or a cycle); its
	// subtree is checked once.
	ProblemReachedTwice ProblemKind = "node_reached_twice"
	// ProblemEmptyNode: a node below the root has no occupied slot.
	ProblemEmptyNode ProblemKind = "empty_node"
	// ProblemTooDeep: a node is deeper than the hash has bytes.
	ProblemTooDeep ProblemKind = "node_too_deep"
	// ProblemBucketTooLarge: a bucket holds more keys than the bucket size.
	ProblemBucketTooLarge ProblemKind = "bucket_too_large"
	// ProblemUncollapsedSubtree (a warning): a subtree holds at most bucket-size keys, so a
	// canonical delete (py-hamt ≥ 3.5, this library's default) would have folded it into a bucket
	// of its parent. Legacy trees (py-hamt ≤ 3.4, WithLegacyDeletes) have them after deletes; they
	// read correctly but their root is not the one a fresh build of their keys gives.
	ProblemUncollapsedSubtree ProblemKind = "uncollapsed_subtree"
	// ProblemMalformedValue: a value stored as a UnixFS file (dag-pb) whose structure or sizes
	// are wrong.
	ProblemMalformedValue ProblemKind = "malformed_value"
	// ProblemMalformedRoot: a sharded root that is not what py-hamt writes (fields, types,
	// geometry, a shard count that does not match the array's grid).
	ProblemMalformedRoot ProblemKind = "malformed_root"
	// ProblemMalformedShard: a shard block that is not a list of chunks-per-shard CIDs or nulls.
	ProblemMalformedShard ProblemKind = "malformed_shard"
	// ProblemChunkOutOfGrid: a shard entry past the array's last chunk (the padding of the last
	// shard) is not null.
	ProblemChunkOutOfGrid ProblemKind = "chunk_out_of_grid"
)

// VerifyProblem is one fault Verify found.
type VerifyProblem struct {
	Kind ProblemKind
	// Path says where: the key, for a key's value or a key off its path; for a HAMT node or
	// bucket, the slots that lead to it from the root ("/" is the root, "/3/250" the node or
	// bucket in slot 250 of the node in slot 3 of the root); for a sharded dataset, the key, or
	// "array PATH shard N" for a shard.
	Path string
	// CID is the block at fault (cid.Undef when there is none).
	CID cid.Cid
	// Message says what is wrong, in words.
	Message string
	// Warning marks a finding that does not fail the verify (ProblemUncollapsedSubtree).
	Warning bool
}

// VerifyReport is what Verify found. The dataset passed when it has no problems (OK); warnings are
// allowed.
type VerifyReport struct {
	Root cid.Cid
	// Layout is "hamt", "sharded", or "" when the root could not be read.
	Layout string
	// Nodes counts the index blocks read: HAMT nodes, or a sharded root and its shards.
	Nodes int
	// Keys counts the keys found: the keys in a HAMT's buckets, or a sharded dataset's metadata
	// keys and chunks.
	Keys int
	// Values counts the distinct value blocks checked (values shared by keys once, as far as a
	// bounded memory of them allows).
	Values int
	// Bytes counts the bytes of every block read: nodes, values, files' blocks, shards.
	Bytes int64
	// Problems and Warnings are the first problems and warnings found, up to WithMaxProblems each.
	Problems, Warnings []VerifyProblem
	// ProblemCount and WarningCount count all of them; Truncated those not kept.
	ProblemCount, WarningCount, Truncated int
}

// OK reports whether the dataset passed: no problem found (warnings allowed).
func (r *VerifyReport) OK() bool { return r.ProblemCount == 0 }

// DefaultMaxProblems is how many problems, and how many warnings, a VerifyReport keeps by default.
const DefaultMaxProblems = 1000

// WithMaxProblems sets how many problems, and how many warnings, Verify keeps in its report
// (default 1000, DefaultMaxProblems; 0 keeps none); the others are counted (Truncated). Other calls
// ignore it.
func WithMaxProblems(n int) Option {
	return func(o *options) error {
		if n < 0 {
			return fmt.Errorf("WithMaxProblems(%d): must not be negative", n)
		}
		o.maxProblems = n
		return nil
	}
}

// WithProblemFunc has Verify call f with every problem and warning as it finds it, kept in the
// report or not: a way to stream them out of a large dataset. Calls do not overlap. Other calls
// ignore it.
func WithProblemFunc(f func(VerifyProblem)) Option {
	return func(o *options) error {
		o.onProblem = f
		return nil
	}
}

// maxValuesSeen bounds the set of value CIDs Verify remembers having checked: a value shared by
// keys is checked once while the set has room, and again (time, not memory) beyond it.
const maxValuesSeen = 1 << 18

// Verify reads the whole dataset at root, every block it reaches, and reports what is wrong with
// it. For a HAMT: every node present, hashing to its CID, a valid node in canonical DAG-CBOR
// (decoded strictly, and re-encoded to the same bytes), every bucket's keys in canonical order
// and at most the bucket size of them, every key on its own hash path, no node reached twice, no
// empty node below the root, none deeper than the hash; a subtree a canonical delete would have
// folded into its parent is a warning, not a problem (legacy trees, see
// ProblemUncollapsedSubtree). For a sharded Zarr root (IsShardedRoot): the root canonical and
// consistent (SHARDED.md: fields, geometry, one shard CID or null per shard of the grid), each
// shard present, hashing right, a canonical list of chunks-per-shard entries, nothing past the
// grid. For both, every value (metadata and chunks) present and hashing to its CID, and a value
// stored as a UnixFS file (dag-pb) with every block there and the sizes its nodes claim. Every
// block is hashed whatever the store is: by Verify, or by a store that verifies its loads
// (BoltCAS, KuboCAS), whose mismatch is then reported the same way.
//
// The error is only for what stops the verify: ctx done, a store failing (not a block missing),
// a bad option; problems in the data are in the report. Options: WithHash (the map's hash
// function, default Blake3), WithBucketSize (the size the map was written with, default 4: a
// root does not record it), WithWalkParallelism (loads at once from a store with latency: nodes
// ahead of the walk, and values), WithMaxProblems and WithProblemFunc; others are ignored.
func Verify(ctx context.Context, cas CAS, root cid.Cid, opts ...Option) (VerifyReport, error) {
	o, err := buildOptions(opts)
	if err != nil {
		return VerifyReport{Root: root}, fmt.Errorf("hamt: %w", err)
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	v := &verifier{
		ctx: ctx, cancel: cancel, cas: &hashedCAS{cas: cas}, bucketSize: o.bucketSize,
		rep: VerifyReport{Root: root}, max: o.maxProblems, each: o.onProblem,
		seenValues: map[cidBytes]struct{}{}, shardsDone: map[shardSeen]int{},
	}
	ahead := toolAhead(opts)
	v.startValues(ahead.workers)
	walked := false
	defer func() {
		if !walked { // a panic (a WithProblemFunc's, say) ends the walk: end the workers too
			cancel(nil)
			_ = v.finishValues()
		}
	}()
	err = v.root(root, opts, ahead)
	walked = true
	if verr := v.finishValues(); err == nil {
		err = verr
	}
	v.mu.Lock()
	rep := v.rep
	v.mu.Unlock()
	rep.Nodes, rep.Keys, rep.Values = v.nodes, v.keys, v.values
	rep.Bytes = v.cas.bytes.Load()
	if err != nil {
		if cause := context.Cause(ctx); errors.Is(err, context.Canceled) && cause != nil && !errors.Is(cause, context.Canceled) {
			err = cause // a value's load failed: that is why the walk stopped
		}
		return rep, err
	}
	return rep, nil
}

// verifier is one Verify's state. The walk's goroutine owns nodes, keys, values, shape and
// seenValues; the value workers share rep, under mu.
type verifier struct {
	ctx        context.Context
	cancel     context.CancelCauseFunc
	cas        *hashedCAS
	bucketSize int

	mu   sync.Mutex
	rep  VerifyReport
	max  int
	each func(VerifyProblem)

	nodes, keys, values int
	shape               []shapeFrame
	seenValues          map[cidBytes]struct{}
	// shardsDone holds the shards verified, by CID and chunks per shard, with the chunks each
	// holds: a shard repeated (all-equal chunks, or a root made to repeat one) is read once.
	shardsDone map[shardSeen]int

	jobs chan valueJob
	wg   sync.WaitGroup
}

// add records a problem or warning.
func (v *verifier) add(p VerifyProblem) {
	v.mu.Lock()
	defer v.mu.Unlock()
	list, count := &v.rep.Problems, &v.rep.ProblemCount
	if p.Warning {
		list, count = &v.rep.Warnings, &v.rep.WarningCount
	}
	*count++
	if len(*list) < v.max {
		*list = append(*list, p)
	} else {
		v.rep.Truncated++
	}
	if v.each != nil {
		v.each(p)
	}
}

// errHashMismatch marks a block whose bytes do not hash to its CID (beside ErrCorrupt), which
// problemKind tells from the other ErrCorrupt faults (a UnixFS file's structure).
var errHashMismatch = errors.New("block does not hash to its CID")

// hashMismatch is err (ErrCorrupt, which says so in words) marked as errHashMismatch.
type hashMismatch struct{ err error }

func (e hashMismatch) Error() string   { return e.err.Error() }
func (e hashMismatch) Unwrap() []error { return []error{errHashMismatch, e.err} }

// problemKind says which problem err, from loading or decoding a block, is; false when err is
// not a fault of the data (ctx done, a store failing) and should stop the verify.
func problemKind(err error) (ProblemKind, bool) {
	switch {
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return "", false
	case errors.Is(err, ErrMissingBlock), errors.Is(err, ErrNotFound):
		return ProblemMissingBlock, true
	case errors.Is(err, errHashMismatch):
		return ProblemHashMismatch, true
	case errors.Is(err, errKeyOrder):
		return ProblemUnsortedBucket, true
	case errors.Is(err, errNotCanonical):
		return ProblemNotCanonical, true
	case errors.Is(err, ErrMalformedNode):
		return ProblemMalformedNode, true
	case errors.Is(err, ErrCorrupt), errors.Is(err, ErrMalformedValue):
		return ProblemMalformedValue, true
	}
	return "", false
}

// found records err as a problem at path about block id when it is a fault of the data
// (problemKind), and returns nil; otherwise it returns err, which stops the verify.
func (v *verifier) found(err error, path string, id cid.Cid) error {
	kind, ok := problemKind(err)
	if !ok {
		return err
	}
	v.add(VerifyProblem{Kind: kind, Path: path, CID: id, Message: err.Error()})
	return nil
}

// hashedCAS is the store Verify reads through: every block it loads is hashed, by the store when
// it verifies its loads (its ErrCorrupt is then taken as a mismatch) or here, and counted.
type hashedCAS struct {
	cas   CAS
	bytes atomic.Int64
}

func (h *hashedCAS) Save(ctx context.Context, data []byte, codec multicodec.Code) (cid.Cid, error) {
	return h.cas.Save(ctx, data, codec)
}

func (h *hashedCAS) Load(ctx context.Context, id cid.Cid) ([]byte, error) {
	if b, ok, err := identityBlock(id); ok { // its bytes are its CID: nothing to hash
		return b, err
	}
	b, err := h.cas.Load(ctx, id)
	if err != nil {
		if errors.Is(err, ErrCorrupt) {
			return nil, hashMismatch{err}
		}
		return nil, err
	}
	h.bytes.Add(int64(len(b)))
	if !storeVerifies(h.cas) {
		if err := verifyBlock(id, b); err != nil {
			return nil, hashMismatch{err}
		}
	}
	return b, nil
}

// verifiesLoads: every load through a hashedCAS is hashed.
func (h *hashedCAS) verifiesLoads() {}

// root verifies the dataset at root, whichever its layout.
func (v *verifier) root(root cid.Cid, opts []Option, ahead walkAhead) error {
	b, err := v.cas.Load(v.ctx, root)
	if err != nil {
		return v.found(fmt.Errorf("root %s: %w", root, missingBlock(err)), "/", root)
	}
	if IsShardedRoot(b) {
		v.rep.Layout = "sharded"
		return v.sharded(root, b)
	}
	v.rep.Layout = "hamt"
	return v.hamt(root, opts, ahead)
}

// nodePath is the path of a HAMT node or bucket reached through slots.
func nodePath(slots []byte) string {
	if len(slots) == 0 {
		return "/"
	}
	var b strings.Builder
	for _, s := range slots {
		b.WriteByte('/')
		b.WriteString(strconv.Itoa(int(s)))
	}
	return b.String()
}

// hamt verifies the HAMT at root: walkTree's walk, its checks reported, and verify's own checks on
// each node (visit).
func (v *verifier) hamt(root cid.Cid, opts []Option, ahead walkAhead) error {
	t, err := toolCheck(opts)
	if err != nil {
		return err
	}
	t.report = v.walkFailed
	n, err := loadNodeBlock(v.ctx, v.cas, root, ahead.lat)
	if err != nil {
		return v.found(err, "/", root)
	}
	pre := blockPrefetcher(v.ctx, v.cas, ahead)
	defer pre.stop()
	err = walkTree(v.ctx, t, n, cidKey(root), blockChild(v.cas, ahead.lat), func(n *blockNode, depth int) error {
		return v.visit(n, depth, t.path[:depth])
	}, pre)
	if err != nil {
		return err
	}
	v.shapeReach(0)
	return nil
}

// walkFailed is the walk's report (treeCheck.report): a failed check or load becomes a problem.
func (v *verifier) walkFailed(f walkFailure) bool {
	kind := f.kind
	if kind == "" {
		k, ok := problemKind(f.err)
		if !ok {
			return false
		}
		kind = k
	}
	path := nodePath(f.path)
	if f.key != "" {
		path = f.key
	}
	var id cid.Cid
	if f.id != "" {
		id = f.id.cid()
	}
	v.add(VerifyProblem{Kind: kind, Path: path, CID: id, Message: f.err.Error()})
	if kind != ProblemKeyOffPath && kind != ProblemEmptyNode {
		// The subtree at f.depth is skipped: the subtrees holding it are not counted whole.
		v.shapeReach(f.depth)
		for i := range v.shape {
			v.shape[i].incomplete = true
		}
	}
	return true
}

// visit makes verify's own checks on node n at depth, reached through path.
func (v *verifier) visit(n *blockNode, depth int, path []byte) error {
	v.nodes++
	if enc, err := n.encode(); err != nil || !bytes.Equal(enc, n.block) {
		v.add(VerifyProblem{Kind: ProblemNotCanonical, Path: nodePath(path), CID: n.id,
			Message: fmt.Sprintf("node %s decodes but does not re-encode to its own bytes", n.id)})
	}
	v.shapeReach(depth)
	keys := 0
	for slot, b, p := n.bucketFrom(0); slot >= 0; slot, b, p = n.bucketFrom(slot + 1) {
		count := bucketCount(b[p:])
		keys += count
		if count > v.bucketSize {
			v.add(VerifyProblem{Kind: ProblemBucketTooLarge, Path: nodePath(append(path[:depth:depth], byte(slot))), CID: n.id,
				Message: fmt.Sprintf("bucket in slot %d of node %s holds %d keys, more than the bucket size %d", slot, n.id, count, v.bucketSize)})
		}
		var err error
		eachEntry(b, p, func(key string, value cidBytes) bool {
			err = v.value(key, value)
			return err == nil
		})
		if err != nil {
			return err
		}
	}
	v.keys += keys
	v.shape = append(v.shape, shapeFrame{depth: depth, id: n.id, path: string(path), keys: keys})
	return nil
}

// shapeFrame is a node on the walk's path, for the check of canonical shape: a subtree of at
// most bucket-size keys below the root is one that a canonical delete folds into its parent.
// Frames are pushed as the walk visits nodes (depth first) and closed once the walk is past their
// subtree.
type shapeFrame struct {
	depth      int
	id         cid.Cid
	path       string
	keys       int  // keys in the subtree seen so far
	incomplete bool // a node of the subtree was skipped (a problem): keys is not all of them
	// small are the node's children whose subtrees hold at most bucket-size keys; reported
	// unless the node is small itself, when its parent (or higher) is.
	small []shapeFrame
}

// shapeReach closes the frames of the subtrees the walk is past, now that it reaches a node at
// depth (0: the walk is over).
func (v *verifier) shapeReach(depth int) {
	for len(v.shape) > 0 && v.shape[len(v.shape)-1].depth >= depth {
		f := v.shape[len(v.shape)-1]
		v.shape = v.shape[:len(v.shape)-1]
		if len(v.shape) == 0 {
			v.foldable(f.small)
			continue
		}
		parent := &v.shape[len(v.shape)-1]
		parent.keys += f.keys
		parent.incomplete = parent.incomplete || f.incomplete
		if f.keys <= v.bucketSize && !f.incomplete {
			f.small = nil
			parent.small = append(parent.small, f)
			continue
		}
		v.foldable(f.small)
	}
}

// foldable warns of subtrees a canonical delete would have folded into their parents' buckets.
func (v *verifier) foldable(small []shapeFrame) {
	for _, f := range small {
		v.add(VerifyProblem{Kind: ProblemUncollapsedSubtree, Path: nodePath([]byte(f.path)), CID: f.id, Warning: true,
			Message: fmt.Sprintf("node %s at depth %d heads a subtree of %d keys, at most the bucket size %d: a canonical delete (py-hamt ≥ 3.5) folds it into its parent's bucket; a legacy one (py-hamt ≤ 3.4) leaves it",
				f.id, f.depth, f.keys, v.bucketSize)})
	}
}

// valueJob is a value to check: its CID, and a key that points at it.
type valueJob struct {
	key string
	id  cidBytes
}

// startValues starts the workers that check values.
func (v *verifier) startValues(workers int) {
	v.jobs = make(chan valueJob, 4*workers)
	for range workers {
		v.wg.Add(1)
		go func() {
			defer v.wg.Done()
			for j := range v.jobs {
				if v.ctx.Err() != nil {
					continue // drain: the verify is stopping
				}
				if err := v.checkValue(j.key, j.id.cid()); err != nil {
					v.cancel(err)
				}
			}
		}()
	}
}

// finishValues waits for the values queued to be checked, and returns what stopped a worker.
func (v *verifier) finishValues() error {
	close(v.jobs)
	v.wg.Wait()
	if err := context.Cause(v.ctx); err != nil && v.ctx.Err() != nil {
		return err
	}
	return nil
}

// value queues the value id of key for checking, unless it was checked already.
func (v *verifier) value(key string, id cidBytes) error {
	if _, ok := v.seenValues[id]; ok {
		return nil
	}
	if len(v.seenValues) < maxValuesSeen {
		v.seenValues[id] = struct{}{}
	}
	v.values++
	select {
	case v.jobs <- valueJob{key: key, id: id}:
		return nil
	case <-v.ctx.Done():
		return v.ctx.Err()
	}
}

// checkValue checks the value id of key: its block there and hashing right, or for a dag-pb CID
// every block of its UnixFS file, with the sizes its nodes claim.
func (v *verifier) checkValue(key string, id cid.Cid) error {
	var err error
	if isDagPb(cidKey(id)) {
		err = eachFileBlock(v.ctx, v.cas, id, false, nil, func(cid.Cid, []byte) error { return nil })
	} else if _, err = v.cas.Load(v.ctx, id); err != nil {
		err = fmt.Errorf("block %s: %w", id, missingBlock(err))
	}
	if err == nil {
		return nil
	}
	return v.found(fmt.Errorf("value of %q: %w", key, err), key, id)
}
