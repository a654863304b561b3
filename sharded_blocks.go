package hamt

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"

	"github.com/ipfs/go-cid"
	"github.com/multiformats/go-multicodec"
)

// This file walks every block a sharded Zarr root reaches, for CAR export and import: the root,
// its metadata values, its shards and their chunks.

// shardedWalk visits the blocks of one sharded dataset, each once.
type shardedWalk struct {
	cas    CAS
	verify bool // hash blocks loaded whole (the CAS does not)
	seen   map[cidBytes]struct{}
	shards map[cidBytes]struct{}               // the shards whose chunks were walked
	visit  func(id cid.Cid, data []byte) error // nil: only check that the blocks are there
}

// walkSharded visits root (whose block, already loaded, is rootBlock) and every block it reaches,
// each once: the root, each metadata value, then each array's non-null shards, each followed by
// its chunks. A value or shard stored as a UnixFS file (dag-pb) is visited as every block of the
// file, its structure checked. A shard is decoded strictly against its array's chunks per shard
// (ErrMalformedValue); each distinct shard is read once, so the work is bounded by the blocks
// there are, whatever the root repeats. A block missing is ErrMissingBlock. With a nil visit the
// walk only checks: a raw value is then sized (BlockSizer), not loaded.
func walkSharded(ctx context.Context, cas CAS, root cid.Cid, rootBlock []byte, visit func(id cid.Cid, data []byte) error) error {
	return walkShardedSeen(ctx, cas, root, rootBlock, map[cidBytes]struct{}{}, nil, visit)
}

// walkShardedSeen is walkSharded taking the blocks in seen as visited already, and adding to it
// those it visits: walks of several roots sharing one seen (GC's mark) visit each block once.
// shards (nil: a new set) holds the shards whose chunks were walked, which share it too: a block
// in seen was visited, but not necessarily as a shard (another map's value may be its bytes).
func walkShardedSeen(ctx context.Context, cas CAS, root cid.Cid, rootBlock []byte, seen, shards map[cidBytes]struct{}, visit func(id cid.Cid, data []byte) error) error {
	r, err := decodeShardedRoot(rootBlock)
	if err != nil {
		return fmt.Errorf("sharded root %s: %w", root, err)
	}
	if shards == nil {
		shards = map[cidBytes]struct{}{}
	}
	w := &shardedWalk{cas: cas, verify: !storeVerifies(cas), seen: seen, shards: shards, visit: visit}
	if err := w.put(root, rootBlock); err != nil {
		return err
	}
	// Maps in key order: the CAR's block order must not change from one export to the next.
	for _, key := range slices.Sorted(maps.Keys(r.metadata)) {
		if err := w.value(ctx, r.metadata[key]); err != nil {
			return fmt.Errorf("metadata %q: %w", key, err)
		}
	}
	for _, path := range slices.Sorted(maps.Keys(r.arrays)) {
		a := r.arrays[path]
		for i, sid := range a.shards {
			if err := ctx.Err(); err != nil {
				return err
			}
			if !sid.Defined() {
				continue
			}
			if err := w.shard(ctx, sid, a.cps); err != nil {
				return fmt.Errorf("array %q shard %d: %w", path, i, err)
			}
		}
	}
	return nil
}

func (w *shardedWalk) put(id cid.Cid, data []byte) error {
	w.seen[cidKey(id)] = struct{}{}
	return w.visitBlock(id, data)
}

// putLeaf is put for a block visited as a value, whose links (if its codec has any) are not
// followed: seen records it under its raw CID (leafKey), so that the same block reached as a
// root or a node is still walked.
func (w *shardedWalk) putLeaf(id cid.Cid, data []byte) error {
	w.seen[leafKey(id)] = struct{}{}
	return w.visitBlock(id, data)
}

func (w *shardedWalk) visitBlock(id cid.Cid, data []byte) error {
	if w.visit == nil {
		return nil
	}
	return w.visit(id, data)
}

func (w *shardedWalk) done(id cid.Cid) bool { _, ok := w.seen[cidKey(id)]; return ok }

// doneLeaf reports whether block id was visited, as a value or otherwise.
func (w *shardedWalk) doneLeaf(id cid.Cid) bool {
	_, ok := w.seen[leafKey(id)]
	return ok || w.done(id)
}

// leafKey is the key of block id in seen when it was visited as a value (see putLeaf): the raw
// CID of its multihash, a block that links nothing.
func leafKey(id cid.Cid) cidBytes {
	if id.Prefix().Codec == uint64(multicodec.Raw) {
		return cidKey(id)
	}
	return cidKey(cid.NewCidV1(uint64(multicodec.Raw), id.Hash()))
}

// load loads block id whole, verified unless the store verifies.
func (w *shardedWalk) load(ctx context.Context, id cid.Cid) ([]byte, error) {
	b, err := loadBlock(ctx, w.cas, id)
	if err != nil {
		return nil, fmt.Errorf("block %s: %w", id, missingBlock(err))
	}
	if w.verify {
		if err := verifyBlock(id, b); err != nil {
			return nil, err
		}
	}
	return b, nil
}

// value visits the blocks of a value: its block, or every block of its UnixFS file.
func (w *shardedWalk) value(ctx context.Context, id cid.Cid) error {
	if isDagPb(cidKey(id)) {
		if w.done(id) { // walked as a file (a raw block of its bytes is not)
			return nil
		}
		err := eachFileBlock(ctx, w.cas, id, w.verify, w.done, w.put)
		if errors.Is(err, ErrNotFound) && !errors.Is(err, ErrMissingBlock) {
			err = fmt.Errorf("%w: %v", ErrMissingBlock, err)
		}
		return err
	}
	if w.doneLeaf(id) {
		return nil
	}
	if w.visit == nil {
		if _, err := blockSize(ctx, w.cas, id); err != nil {
			return fmt.Errorf("block %s: %w", id, missingBlock(err))
		}
		return w.putLeaf(id, nil)
	}
	b, err := w.load(ctx, id)
	if err != nil {
		return err
	}
	return w.putLeaf(id, b)
}

// shard visits a shard's blocks and then its chunks'.
func (w *shardedWalk) shard(ctx context.Context, id cid.Cid, cps int) error {
	if _, ok := w.shards[cidKey(id)]; ok {
		return nil
	}
	w.shards[cidKey(id)] = struct{}{}
	if err := w.value(ctx, id); err != nil {
		return err
	}
	b, err := loadValue(ctx, w.cas, id, ByteRange{}, false) // verified by value, just now
	if err != nil {
		return fmt.Errorf("shard %s: %w", id, missingBlock(err))
	}
	entries, err := decodeShard(b, cps)
	if err != nil {
		return fmt.Errorf("shard %s: %w", id, err)
	}
	for _, c := range entries {
		if c.Defined() {
			if err := w.value(ctx, c); err != nil {
				return fmt.Errorf("chunk %s: %w", c, err)
			}
		}
	}
	return nil
}

// shardedRootBlock loads root and returns its block when it is a sharded root (a dag-cbor block
// IsShardedRoot accepts), or nil.
func shardedRootBlock(ctx context.Context, cas CAS, root cid.Cid) ([]byte, error) {
	if root.Prefix().Codec != uint64(multicodec.DagCbor) {
		return nil, nil
	}
	b, err := loadBlock(ctx, cas, root)
	if err != nil {
		return nil, fmt.Errorf("root %s: %w", root, missingBlock(err))
	}
	if !IsShardedRoot(b) {
		return nil, nil
	}
	if !storeVerifies(cas) {
		if err := verifyBlock(root, b); err != nil {
			return nil, err
		}
	}
	return b, nil
}

// writeShardedCAR is WriteCAR for a sharded root whose block is rootBlock.
func writeShardedCAR(ctx context.Context, cas CAS, root cid.Cid, rootBlock []byte, w io.Writer) (int, error) {
	car, err := newCARWriter(w, []cid.Cid{root})
	if err != nil {
		return 0, err
	}
	n := 0
	err = walkSharded(ctx, cas, root, rootBlock, func(id cid.Cid, data []byte) error {
		n++
		return car.put(id, data)
	})
	if err != nil {
		return n, err
	}
	return n, nil
}
