package hamt_test

import (
	"context"
	"slices"
	"testing"

	"github.com/hamt-go/hamt"
)

// FuzzVerifyHostileTrees runs Verify over the small hostile DAGs of FuzzWalkHostileTrees (shared
// nodes, keys in any slot, empty nodes, nodes deeper than the hash) and checks it against the
// same judge: Verify never fails (the store is memory), finds no problem exactly when the judge
// says the tree is a HAMT, then counts its keys, and gives each problem it finds a kind, a path,
// a CID and a message.
func FuzzVerifyHostileTrees(f *testing.F) {
	addHostileTreeSeeds(f)
	walkKinds := []hamt.ProblemKind{hamt.ProblemKeyOffPath, hamt.ProblemReachedTwice, hamt.ProblemEmptyNode, hamt.ProblemTooDeep}
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) == 0 || len(data) > 600 {
			return
		}
		tree := walkParseFuzzTree(data)
		cas := hamt.NewMemoryCAS()
		root := tree.store(t, cas)
		wantKeys, valid := tree.valid()
		// Buckets of any size are the judge's; the bucket-size check is not its to judge.
		rep, err := hamt.Verify(context.Background(), cas, root, hamt.WithHash(walkFuzzHash), hamt.WithBucketSize(1<<20))
		if err != nil {
			t.Fatalf("Verify over a memory store: %v", err)
		}
		if rep.OK() != valid {
			t.Fatalf("Verify says ok %v, the judge %v: %+v", rep.OK(), valid, rep.Problems)
		}
		if valid && rep.Keys != len(wantKeys) {
			t.Fatalf("Verify counts %d keys, want %d", rep.Keys, len(wantKeys))
		}
		if rep.Truncated == 0 && rep.ProblemCount != len(rep.Problems) {
			t.Fatalf("%d problems counted, %d kept", rep.ProblemCount, len(rep.Problems))
		}
		for _, p := range rep.Problems {
			if !slices.Contains(walkKinds, p.Kind) || p.Path == "" || !p.CID.Defined() || p.Message == "" || p.Warning {
				t.Fatalf("problem %+v", p)
			}
		}
	})
}
