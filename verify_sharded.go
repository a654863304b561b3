package hamt

import (
	"bytes"
	"fmt"
	"maps"
	"slices"

	"github.com/ipfs/go-cid"
)

// sharded verifies the sharded dataset at root, whose block (loaded and hashed) is block: the
// root canonical and consistent, then each metadata value, then each array's shards and chunks
// (SHARDED.md).
func (v *verifier) sharded(root cid.Cid, block []byte) error {
	v.nodes++
	if doc, err := DagCBOR.Decode(block); err == nil {
		if enc, err := DagCBOR.Encode(doc); err != nil || !bytes.Equal(enc, block) {
			v.add(VerifyProblem{Kind: ProblemNotCanonical, Path: "/", CID: root,
				Message: fmt.Sprintf("sharded root %s decodes but does not re-encode to its own bytes", root)})
		}
	}
	r, err := decodeShardedRoot(block)
	if err != nil {
		v.add(VerifyProblem{Kind: ProblemMalformedRoot, Path: "/", CID: root, Message: fmt.Sprintf("root %s: %v", root, err)})
		return nil
	}
	for _, key := range slices.Sorted(maps.Keys(r.metadata)) {
		v.keys++
		if err := v.value(key, cidKey(r.metadata[key])); err != nil {
			return err
		}
	}
	for _, path := range slices.Sorted(maps.Keys(r.arrays)) {
		a := r.arrays[path]
		keyPath := path
		if r.version == 1 {
			keyPath = r.primary
		}
		for i, sid := range a.shards {
			if err := v.ctx.Err(); err != nil {
				return err
			}
			if sid.Defined() {
				if err := v.shard(a, keyPath, i, sid); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// shard verifies shard i (CID id) of array a, whose chunk keys start with keyPath, and queues its
// chunks for checking.
func (v *verifier) shard(a *arrayIndex, keyPath string, i int, id cid.Cid) error {
	where := fmt.Sprintf("array %q shard %d", a.path, i)
	v.nodes++
	// A shard verified already, here wholly within the grid: its chunks were queued (and are
	// checked once whatever keys name them); count them again, read nothing.
	seen := shardSeen{cidKey(id), a.cps}
	if n, ok := v.shardsDone[seen]; ok && int64(i+1)*int64(a.cps) <= a.total {
		if n < 0 {
			v.add(VerifyProblem{Kind: ProblemMalformedShard, Path: where, CID: id, Message: fmt.Sprintf("%s: %s: malformed, as where it was met first", where, id)})
			return nil
		}
		v.keys += n
		return nil
	}
	b, err := loadValue(v.ctx, v.cas, id, ByteRange{}, false) // hashed by v.cas; a dag-pb shard is read whole
	if err != nil {
		return v.found(fmt.Errorf("%s: block %s: %w", where, id, missingBlock(err)), where, id)
	}
	entries, err := decodeShard(b, a.cps)
	if err != nil {
		v.shardsDone[seen] = -1
		v.add(VerifyProblem{Kind: ProblemMalformedShard, Path: where, CID: id, Message: fmt.Sprintf("%s: %s: %v", where, id, err)})
		return nil
	}
	defined := 0
	for _, c := range entries {
		if c.Defined() {
			defined++
		}
	}
	v.shardsDone[seen] = defined
	for k, c := range entries {
		if !c.Defined() {
			continue
		}
		lin := int64(i)*int64(a.cps) + int64(k)
		if lin >= a.total {
			v.add(VerifyProblem{Kind: ProblemChunkOutOfGrid, Path: where, CID: id,
				Message: fmt.Sprintf("%s: entry %d (chunk %d) is past the array's %d chunks but not null", where, k, lin, a.total)})
			continue
		}
		v.keys++
		if err := v.value(chunkKeyOf(keyPath, coordsIn(lin, a.perDim)), cidKey(c)); err != nil {
			return err
		}
	}
	return nil
}

// shardSeen is a shard verified: its CID and the chunks per shard it was decoded with.
type shardSeen struct {
	id  cidBytes
	cps int
}
