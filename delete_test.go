package hamt_test

// Tests of canonical deletes (delete.go): any history of sets and deletes gives the root of a
// fresh build of the surviving keys, and a delete that fails half-way changes nothing.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync/atomic"
	"testing"

	"github.com/hamt-go/hamt"
	"github.com/ipfs/go-cid"
	"pgregory.net/rapid"
)

// delMineKeys returns n keys "<prefix><i>" whose blake3 hashes start with the given bytes.
func delMineKeys(prefix string, hashPrefix []byte, n int) []string {
	var keys []string
	for i := 0; len(keys) < n; i++ {
		k := fmt.Sprint(prefix, i)
		if bytes.HasPrefix(hamt.Blake3([]byte(k)), hashPrefix) {
			keys = append(keys, k)
		}
	}
	return keys
}

// delKeyPool is a small pool of keys that collide often: plain keys, keys sharing blake3's first
// byte, and keys sharing its first two bytes, so histories grow and empty subtrees two and three
// levels deep.
func delKeyPool() []string {
	pool := []string{"", "a", "b", "zarr.json", "temp/c/0/0", "日本語"}
	for i := range 10 {
		pool = append(pool, fmt.Sprint("plain-", i))
	}
	pool = append(pool, delMineKeys("one-", []byte{0x42}, 12)...)
	return append(pool, delMineKeys("two-", []byte{0x42, 0x17}, 5)...)
}

// delFreshRoot is the root of a new map holding exactly kv, its keys set in the given order.
func delFreshRoot(t *rapid.T, kv map[string][]byte, order []string, opts []hamt.Option) cid.Cid {
	ctx := context.Background()
	m, err := hamt.New(ctx, hamt.NewMemoryCAS(), hamt.Bytes, opts...)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range order {
		if err := m.Set(ctx, k, kv[k]); err != nil {
			t.Fatal(err)
		}
	}
	root, err := m.Flush(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return root
}

func TestRootAfterAnyHistoryOfSetsAndDeletesIsTheRootOfAFreshBuildOfTheSurvivors(t *testing.T) {
	pool := delKeyPool()
	rapid.Check(t, func(t *rapid.T) {
		ctx := context.Background()
		opts := []hamt.Option{hamt.WithBucketSize(rapid.IntRange(1, 8).Draw(t, "bucket"))}
		if rapid.Bool().Draw(t, "weak hash") {
			opts = append(opts, hamt.WithHash(prefixHash))
		}
		m, err := hamt.New(ctx, hamt.NewMemoryCAS(), hamt.Bytes, opts...)
		if err != nil {
			t.Fatal(err)
		}
		model := map[string][]byte{}
		key := rapid.SampledFrom(pool)
		every := rapid.IntRange(1, 8).Draw(t, "check every")
		ops := rapid.IntRange(1, 150).Draw(t, "ops")
		for i := range ops {
			switch op := rapid.IntRange(0, 9).Draw(t, "op"); {
			case op < 5:
				k, v := key.Draw(t, "key"), rapid.SliceOfN(rapid.Byte(), 0, 4).Draw(t, "value")
				if err := m.Set(ctx, k, v); err != nil {
					t.Fatalf("Set(%q): %v", k, err)
				}
				model[k] = v
			case op < 9:
				k := key.Draw(t, "key")
				if len(model) > 0 && rapid.Bool().Draw(t, "a key that is there") {
					k = rapid.SampledFrom(slices.Sorted(maps.Keys(model))).Draw(t, "victim")
				}
				err := m.Delete(ctx, k)
				if _, ok := model[k]; !ok {
					if !errors.Is(err, hamt.ErrNotFound) {
						t.Fatalf("Delete(%q) of a missing key: %v, want ErrNotFound", k, err)
					}
					continue
				}
				if err != nil {
					t.Fatalf("Delete(%q): %v", k, err)
				}
				delete(model, k)
			default: // nodes leave memory, so later deletes load what they count
				if err := m.CacheVacate(ctx); err != nil {
					t.Fatal(err)
				}
			}
			if i%every != every-1 && i != ops-1 {
				continue
			}
			root, err := m.Flush(ctx)
			if err != nil {
				t.Fatal(err)
			}
			order := rapid.Permutation(slices.Sorted(maps.Keys(model))).Draw(t, "fresh order")
			if fresh := delFreshRoot(t, model, order, opts); !root.Equals(fresh) {
				t.Fatalf("after op %d: root %s, a fresh build of the %d survivors %s", i, root, len(model), fresh)
			}
			for _, k := range pool {
				got, err := m.Get(ctx, k)
				want, ok := model[k]
				if !ok && !errors.Is(err, hamt.ErrNotFound) || ok && (err != nil || !bytes.Equal(got, want)) {
					t.Fatalf("Get(%q) = %x, %v; model: %x, %v", k, got, err, want, ok)
				}
			}
			if n, err := m.Len(ctx); err != nil || n != len(model) {
				t.Fatalf("Len = %d, %v; model has %d", n, err, len(model))
			}
			var keys []string
			for k, err := range m.Keys(ctx) {
				if err != nil {
					t.Fatal(err)
				}
				keys = append(keys, k)
			}
			if slices.Sort(keys); !slices.Equal(keys, slices.Sorted(maps.Keys(model))) {
				t.Fatalf("Keys = %q, model %q", keys, slices.Sorted(maps.Keys(model)))
			}
		}
	})
}

var errDelInjectedLoad = errors.New("injected load failure")

// delFailingCAS fails the failAt-th Load counted from when it was armed (0: never), and counts
// the loads.
type delFailingCAS struct {
	hamt.CAS
	loads  atomic.Int64
	failAt atomic.Int64
}

func (c *delFailingCAS) arm(k int64) { c.loads.Store(0); c.failAt.Store(k) }

func (c *delFailingCAS) Load(ctx context.Context, id cid.Cid) ([]byte, error) {
	if n := c.loads.Add(1); n == c.failAt.Load() {
		return nil, errDelInjectedLoad
	}
	return c.CAS.Load(ctx, id)
}

// delFewSlotsHash keeps two values of the first hash byte and four of the second, so a few keys
// make nodes with several links each.
func delFewSlotsHash(b []byte) []byte {
	h := hamt.Blake3(b)
	h[0], h[1] = h[0]&1, h[1]&3
	return h
}

// TestDeleteThatFailsToLoadANodeWhileFoldingLeavesTheMapAsItWas: a tree written with bucket size
// 1 and edited with bucket size 8 has small subtrees side by side, so a delete must load and count
// sibling subtrees before it folds. Whichever load fails, the map is left exactly as it was (every
// key reads, the root is unchanged), and the same delete then succeeds on it.
func TestDeleteThatFailsToLoadANodeWhileFoldingLeavesTheMapAsItWas(t *testing.T) {
	ctx := context.Background()
	cas := &delFailingCAS{CAS: hamt.NewMemoryCAS()}
	hash := hamt.WithHash(delFewSlotsHash)
	w, err := hamt.New(ctx, cas, hamt.Bytes, hash, hamt.WithBucketSize(1))
	if err != nil {
		t.Fatal(err)
	}
	model := map[string][]byte{}
	for i := range 24 {
		k := fmt.Sprint("key-", i)
		model[k] = []byte(k)
		if err := w.Set(ctx, k, model[k]); err != nil {
			t.Fatal(err)
		}
	}
	before, err := w.Flush(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// open is the map a delete starts from: nothing but what the store holds.
	open := func(opts ...hamt.Option) *hamt.Map[[]byte] {
		cas.arm(0)
		m, err := hamt.Open(ctx, cas, hamt.Bytes, before, append([]hamt.Option{hash, hamt.WithBucketSize(8)}, opts...)...)
		if err != nil {
			t.Fatal(err)
		}
		if err := m.EnableWrite(ctx); err != nil {
			t.Fatal(err)
		}
		return m
	}

	// The victim: of the deletes that fold (their root differs from a legacy delete's), the one
	// that loads the most nodes beyond its own path.
	var victim string
	var extra int64
	var want cid.Cid
	for _, k := range slices.Sorted(maps.Keys(model)) {
		m := open()
		if _, err := m.Get(ctx, k); err != nil {
			t.Fatal(err)
		}
		path := cas.loads.Load() - 1 // the nodes on k's path, without its value
		m = open()
		if err := m.Delete(ctx, k); err != nil {
			t.Fatal(err)
		}
		n := cas.loads.Load() - path
		root, err := m.Flush(ctx)
		if err != nil {
			t.Fatal(err)
		}
		legacy := open(hamt.WithLegacyDeletes())
		if err := legacy.Delete(ctx, k); err != nil {
			t.Fatal(err)
		}
		if lr, err := legacy.Flush(ctx); err != nil || lr.Equals(root) {
			continue // nothing folded
		}
		if n > extra {
			victim, extra, want = k, n, root
		}
	}
	if extra < 2 {
		t.Fatalf("no folding delete loads more than %d node beyond its path: the test does not reach the counting", extra)
	}
	t.Logf("deleting %q loads %d nodes beyond its path", victim, extra)

	for k := int64(1); ; k++ {
		m := open()
		cas.arm(k)
		err := m.Delete(ctx, victim)
		cas.arm(0)
		if err == nil {
			if root, err := m.Flush(ctx); err != nil || !root.Equals(want) {
				t.Fatalf("delete with no failure: root %s, %v; want %s", root, err, want)
			}
			if k < 3 {
				t.Fatalf("the delete needed only %d loads", k-1)
			}
			break
		}
		if !errors.Is(err, errDelInjectedLoad) {
			t.Fatalf("load %d fails: Delete(%q) = %v, want the store's error", k, victim, err)
		}
		for key, v := range model {
			if got, err := m.Get(ctx, key); err != nil || !bytes.Equal(got, v) {
				t.Fatalf("load %d failed: Get(%q) = %q, %v; want %q", k, key, got, err, v)
			}
		}
		if n, err := m.Len(ctx); err != nil || n != len(model) {
			t.Fatalf("load %d failed: Len = %d, %v; want %d", k, n, err, len(model))
		}
		if root, err := m.Flush(ctx); err != nil || !root.Equals(before) {
			t.Fatalf("load %d failed: root %s, %v; want the root before, %s", k, root, err, before)
		}
		// The same map, with part of the tree now in memory, deletes correctly.
		if err := m.Delete(ctx, victim); err != nil {
			t.Fatal(err)
		}
		if root, err := m.Flush(ctx); err != nil || !root.Equals(want) {
			t.Fatalf("load %d failed, then the delete again: root %s, %v; want %s", k, root, err, want)
		}
	}
}

// TestDeleteCountsASiblingSubtreeOnlyUntilItExceedsTheBucketSize: deciding a fold never walks a
// large subtree. Node A holds a link to a subtree of two keys and one to a subtree of a thousand
// (written with bucket size 1, so it is hundreds of nodes). Deleting one of the two, with bucket
// size 4, folds the small subtree; to see that A itself must stay, the delete loads the large
// subtree's top node and stops there.
func TestDeleteCountsASiblingSubtreeOnlyUntilItExceedsTheBucketSize(t *testing.T) {
	ctx := context.Background()
	// Every key in root slot 0; "s-" keys in slot 0 of the next node, the others in slot 1.
	hash := hamt.WithHash(func(b []byte) []byte {
		h := hamt.Blake3(b)
		h[0], h[1] = 0, 1
		if bytes.HasPrefix(b, []byte("s-")) {
			h[1] = 0
		}
		return h
	})
	cas := &delFailingCAS{CAS: hamt.NewMemoryCAS()}
	w, err := hamt.New(ctx, cas, hamt.Bytes, hash, hamt.WithBucketSize(1))
	if err != nil {
		t.Fatal(err)
	}
	keys := []string{"s-0", "s-1"}
	for i := range 1000 {
		keys = append(keys, fmt.Sprint("h-", i))
	}
	for _, k := range keys {
		if err := w.Set(ctx, k, []byte(k)); err != nil {
			t.Fatal(err)
		}
	}
	root, err := w.Flush(ctx)
	if err != nil {
		t.Fatal(err)
	}
	m, err := hamt.Open(ctx, cas, hamt.Bytes, root, hash, hamt.WithBucketSize(4))
	if err != nil {
		t.Fatal(err)
	}
	if err := m.EnableWrite(ctx); err != nil {
		t.Fatal(err)
	}
	cas.arm(0)
	if err := m.Delete(ctx, "s-0"); err != nil {
		t.Fatal(err)
	}
	// A and the small subtree's node on the path, then the large subtree's top node (the root is
	// the one Open loaded: EnableWrite hands it over).
	if n := cas.loads.Load(); n != 3 {
		t.Errorf("the delete loaded %d nodes, want 3", n)
	}
	if _, err := m.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if v, err := m.Get(ctx, "s-1"); err != nil || string(v) != "s-1" {
		t.Fatalf("Get(s-1) = %q, %v", v, err)
	}
	if n, err := m.Len(ctx); err != nil || n != len(keys)-1 {
		t.Fatalf("Len = %d, %v; want %d", n, err, len(keys)-1)
	}
}
