package hamt

import (
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/multiformats/go-multicodec"
)

// FuzzVerifyShardedRoot verifies random bytes as a root over a store holding every block of the
// py-hamt 3.5 sharded vectors (so the seeds' shards and chunks are there). Verify never fails
// (the store is memory) and gives each problem a known kind, a path and a message; a root the
// store refuses is a malformed root to Verify; and a root Verify passes reads whole: every key
// the store lists gets its value.
func FuzzVerifyShardedRoot(f *testing.F) {
	for _, s := range shardedRootSeeds(f) {
		f.Add(s)
	}
	_, blocks := readCARFile(f, pyhamt35("b_sharded_v2_8f8f13cd.car"))
	_, v1 := readCARFile(f, pyhamt35("c_sharded_v1_8f8f13cd.car"))
	for id, b := range v1 {
		blocks[id] = b
	}
	known := []ProblemKind{ProblemMissingBlock, ProblemHashMismatch, ProblemNotCanonical, ProblemMalformedValue,
		ProblemMalformedRoot, ProblemMalformedShard, ProblemChunkOutOfGrid, ProblemMalformedNode, ProblemUnsortedBucket,
		ProblemKeyOffPath, ProblemEmptyNode, ProblemBucketTooLarge, ProblemReachedTwice, ProblemTooDeep}
	cas := casWith(f, blocks) // the roots the fuzzer adds reach only what they reach
	f.Fuzz(func(t *testing.T, data []byte) {
		ctx := context.Background()
		id := blake3CID(multicodec.DagCbor, data)
		if err := cas.Put(ctx, id, data); err != nil {
			t.Fatal(err)
		}
		rep, err := Verify(ctx, cas, id)
		if err != nil {
			t.Fatalf("Verify over a memory store: %v", err)
		}
		for _, p := range rep.Problems {
			if !slices.Contains(known, p.Kind) || p.Path == "" || p.Message == "" {
				t.Fatalf("problem %+v", p)
			}
		}
		if !IsShardedRoot(data) {
			return
		}
		s, err := OpenShardedZarrStore(ctx, cas, id, WithShardedReadOnly())
		if err != nil {
			if !slices.Contains(kinds(rep.Problems), ProblemMalformedRoot) {
				t.Fatalf("the store refuses the root (%v), Verify finds %v", err, rep.Problems)
			}
			return
		}
		if !rep.OK() {
			return
		}
		for key, err := range s.List(ctx) {
			if err != nil {
				t.Fatalf("Verify passes a root whose listing fails: %v", err)
			}
			if _, err := s.Get(ctx, key, ByteRange{}); err != nil && !errors.Is(err, ErrNotFound) {
				t.Fatalf("Verify passes a root whose key %q does not read: %v", key, err)
			}
		}
	})
}
