package hamt_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/hamt-go/hamt"
)

// TestSplitOrderIndependent builds the same keys in two orders for bucket sizes around the
// default and past eight (where a split re-inserts entry by entry instead of building the new
// node's buckets at once): the roots must be equal and every key must read back. Splits that
// overflow a slot of the new node (bucket size 1) take the general path too.
func TestSplitOrderIndependent(t *testing.T) {
	ctx := context.Background()
	keys := make([]string, 3000)
	for i := range keys {
		keys[i] = fmt.Sprintf("k%d", i)
	}
	shuffled := append([]string(nil), keys...)
	rand.New(rand.NewPCG(1, 2)).Shuffle(len(shuffled), func(i, j int) {
		shuffled[i], shuffled[j] = shuffled[j], shuffled[i]
	})
	for _, size := range []int{1, 2, 3, 4, 7, 8, 9} {
		t.Run(fmt.Sprint("bucket=", size), func(t *testing.T) {
			cas := hamt.NewMemoryCAS()
			build := func(order []string) *hamt.Map[[]byte] {
				m, err := hamt.New[[]byte](ctx, cas, hamt.Bytes, hamt.WithBucketSize(size))
				if err != nil {
					t.Fatal(err)
				}
				for _, k := range order {
					if err := m.Set(ctx, k, []byte("v"+k)); err != nil {
						t.Fatal(err)
					}
				}
				return m
			}
			a, b := build(keys), build(shuffled)
			ra, err := a.Flush(ctx)
			if err != nil {
				t.Fatal(err)
			}
			rb, err := b.Flush(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if ra != rb {
				t.Fatalf("roots differ by insertion order: %s and %s", ra, rb)
			}
			for _, k := range keys {
				v, err := b.Get(ctx, k)
				if err != nil || string(v) != "v"+k {
					t.Fatalf("get %q = %q, %v", k, v, err)
				}
			}
		})
	}
}
