package hamt_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/hamt-go/hamt"
	"github.com/hamt-go/hamt/internal/testdag"
	"github.com/ipfs/go-cid"
	"github.com/multiformats/go-multicodec"
)

// gcCARBlocks returns the blocks of root's CAR, by CID, from cas.
func gcCARBlocks(t *testing.T, cas hamt.CAS, root cid.Cid) map[cid.Cid][]byte {
	t.Helper()
	ctx := context.Background()
	var buf bytes.Buffer
	if _, err := hamt.WriteCAR(ctx, cas, root, &buf); err != nil {
		t.Fatal(err)
	}
	out := map[cid.Cid][]byte{}
	if _, _, err := hamt.ReadCAR(ctx, putterFunc(func(_ context.Context, id cid.Cid, data []byte) error {
		out[id] = append([]byte(nil), data...)
		return nil
	}), bytes.NewReader(buf.Bytes())); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestGCRefusesAMissingBlockUnderTheSecondRootOfASharedHistory: a name whose current root is
// whole and whose history entry shares all but a few paths with it, the history entry lacking
// a node (or a value) of its own: the mark leaves out the subtrees it shares with the current
// root, marked already, and still finds the block missing on the paths it does not share.
func TestGCRefusesAMissingBlockUnderTheSecondRootOfASharedHistory(t *testing.T) {
	ctx := context.Background()
	mem := hamt.NewMemoryCAS()
	m, err := hamt.New(ctx, mem, hamt.Bytes, hamt.WithBucketSize(1))
	if err != nil {
		t.Fatal(err)
	}
	for i := range 600 {
		if err := m.Set(ctx, fmt.Sprintf("k/%d", i), []byte(fmt.Sprintf("v%d", i))); err != nil {
			t.Fatal(err)
		}
	}
	older, err := m.Flush(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 5 { // new values for five keys: five paths differ
		if err := m.Set(ctx, fmt.Sprintf("k/%d", i*100), []byte("changed")); err != nil {
			t.Fatal(err)
		}
	}
	current, err := m.Flush(ctx)
	if err != nil {
		t.Fatal(err)
	}
	currentBlocks, olderBlocks := gcCARBlocks(t, mem, current), gcCARBlocks(t, mem, older)
	var ownNode, ownValue cid.Cid // blocks only the older root reaches
	for id := range olderBlocks {
		if _, shared := currentBlocks[id]; shared || id.Equals(older) {
			continue
		}
		if id.Prefix().Codec == uint64(multicodec.DagCbor) {
			ownNode = id
		} else {
			ownValue = id
		}
	}
	if !ownNode.Defined() || !ownValue.Defined() {
		t.Fatalf("the older root has no node (%v) or value (%v) of its own", ownNode, ownValue)
	}
	for _, lost := range []cid.Cid{ownNode, ownValue} {
		t.Run(fmt.Sprint(multicodec.Code(lost.Prefix().Codec)), func(t *testing.T) {
			b := boltOpen(t, boltTempPath(t))
			for _, blocks := range []map[cid.Cid][]byte{currentBlocks, olderBlocks} {
				for id, data := range blocks {
					if !id.Equals(lost) {
						if err := b.Put(ctx, id, data); err != nil {
							t.Fatal(err)
						}
					}
				}
			}
			garbage, err := b.Save(ctx, []byte("garbage"), 0x55)
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range []cid.Cid{older, current} {
				if err := b.SetName(ctx, "ds", r); err != nil {
					t.Fatal(err)
				}
			}
			before, _ := b.Len(ctx)
			_, err = b.GC(ctx)
			if !errors.Is(err, hamt.ErrMissingBlock) || !strings.Contains(err.Error(), "history entry 1") || !strings.Contains(err.Error(), lost.String()) {
				t.Fatalf("GC with a block of the history entry missing = %v, want ErrMissingBlock naming the entry and %s", err, lost)
			}
			if n, _ := b.Len(ctx); n != before {
				t.Fatalf("the refused GC removed %d blocks", before-n)
			}
			if ok, _ := b.Has(ctx, garbage); !ok {
				t.Fatal("the refused GC removed garbage")
			}
			// Without the entry, the current root alone is whole: GC runs.
			if _, err := b.DropHistory(ctx, "ds"); err != nil {
				t.Fatal(err)
			}
			if rep, err := b.GC(ctx); err != nil || rep.BlocksRemoved == 0 {
				t.Fatalf("GC of the whole current root = %+v, %v", rep, err)
			}
		})
	}
}

// TestGCRefusesASharedSubtreeMetElsewhere: a subtree the mark has marked under one root is left
// out only where another root links it at the same position. Linked at another position (its
// key off its hash path there), or twice in one tree, or a node of it linked again elsewhere, the
// mark walks and checks it, and GC refuses the malformed root as it did when it walked every root
// whole; the same subtree at the same position in a valid root is kept.
func TestGCRefusesASharedSubtreeMetElsewhere(t *testing.T) {
	ctx := context.Background()
	const key = "moved"
	h := hamt.Blake3([]byte(key))
	other := int(h[0]+1) % 256
	for _, tc := range []struct {
		name string
		// root makes the second root from the first's child (at slot h[0]) and grandchild.
		root func(t *testing.T, b *hamt.BoltCAS, child, leaf cid.Cid) cid.Cid
		ok   bool
	}{
		{"the same subtree at the same position, beside a bucket", func(t *testing.T, b *hamt.BoltCAS, child, _ cid.Cid) cid.Cid {
			return testdag.SaveNode(t, b, map[int][]byte{int(h[0]): testdag.LinkSlot(child), other: gcBucketFor(t, b, int(h[0]+1))})
		}, true},
		{"the subtree at another slot", func(t *testing.T, b *hamt.BoltCAS, child, _ cid.Cid) cid.Cid {
			return testdag.SaveNode(t, b, map[int][]byte{other: testdag.LinkSlot(child)})
		}, false},
		{"the subtree at its slot and at another", func(t *testing.T, b *hamt.BoltCAS, child, _ cid.Cid) cid.Cid {
			return testdag.SaveNode(t, b, map[int][]byte{int(h[0]): testdag.LinkSlot(child), other: testdag.LinkSlot(child)})
		}, false},
		{"the subtree, and a node of it at another slot", func(t *testing.T, b *hamt.BoltCAS, child, leaf cid.Cid) cid.Cid {
			return testdag.SaveNode(t, b, map[int][]byte{int(h[0]): testdag.LinkSlot(child), other: testdag.LinkSlot(leaf)})
		}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := boltOpen(t, boltTempPath(t))
			// The first root, valid: key in a leaf at depth 2, on its hash path.
			leaf := testdag.SaveNode(t, b, map[int][]byte{int(h[2]): testdag.KeyBucket(t, b, key)})
			child := testdag.SaveNode(t, b, map[int][]byte{int(h[1]): testdag.LinkSlot(leaf)})
			first := testdag.SaveNode(t, b, map[int][]byte{int(h[0]): testdag.LinkSlot(child)})
			second := tc.root(t, b, child, leaf)
			garbage, err := b.Save(ctx, []byte("garbage"), 0x55)
			if err != nil {
				t.Fatal(err)
			}
			for name, r := range map[string]cid.Cid{"a": first, "b": second} { // a is marked first
				if err := b.SetName(ctx, name, r); err != nil {
					t.Fatal(err)
				}
			}
			rep, err := b.GC(ctx)
			has, _ := b.Has(ctx, garbage)
			if tc.ok {
				if err != nil || has || rep.BlocksRemoved != 1 {
					t.Fatalf("GC = %+v, %v; garbage left: %v", rep, err, has)
				}
				for _, r := range []cid.Cid{first, second} {
					if rep, err := hamt.Verify(ctx, b, r); err != nil || !rep.OK() {
						t.Fatalf("Verify(%s) after GC = %+v, %v", r, rep, err)
					}
				}
				return
			}
			if !errors.Is(err, hamt.ErrMalformedNode) || !strings.Contains(err.Error(), `name "b"`) {
				t.Fatalf("GC = %v, want ErrMalformedNode for name b", err)
			}
			if !has {
				t.Fatal("the refused GC removed garbage")
			}
		})
	}
}

// gcBucketFor stores a value and returns a bucket of one key that hashes to slot at depth 0.
func gcBucketFor(t *testing.T, b *hamt.BoltCAS, slot int) []byte {
	t.Helper()
	for i := 0; ; i++ {
		k := fmt.Sprint("other ", i)
		if int(hamt.Blake3([]byte(k))[0]) == slot%256 {
			return testdag.KeyBucket(t, b, k)
		}
	}
}

// TestGCKeepsANamedRootThatIsAlsoAValue: a map one of whose values is another named map's root
// (ZarrStore.SetCID), marked first: a value's mark covers its block only, so the root is walked
// still. Before, the mark took the root as marked and GC removed every other block of its map.
func TestGCKeepsANamedRootThatIsAlsoAValue(t *testing.T) {
	ctx := context.Background()
	b := boltOpen(t, boltTempPath(t))
	innerKV := gcKV("inner", 300, 50)
	inner := gcMap(t, b, innerKV)
	m, err := hamt.New(ctx, b, hamt.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	z, err := hamt.NewZarrStore(m)
	if err != nil {
		t.Fatal(err)
	}
	if err := z.SetCID(ctx, "inner", inner); err != nil {
		t.Fatal(err)
	}
	outer, err := z.Flush(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for name, r := range map[string]cid.Cid{"a-outer": outer, "b-inner": inner} { // the outer map is marked first
		if err := b.SetName(ctx, name, r); err != nil {
			t.Fatal(err)
		}
	}
	rep, err := b.GC(ctx)
	if err != nil || rep.Roots != 2 {
		t.Fatalf("GC = %+v, %v", rep, err)
	}
	gcCheckMap(t, b, inner, innerKV)
}
