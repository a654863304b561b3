package hamt_test

// Property tests: random operation sequences against a plain Go map as the model, mirroring
// py-hamt's hypothesis suite.

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

// prefixHash keeps only a few distinct first bytes, so many keys share hash prefixes and the trie
// grows deep even with few keys.
func prefixHash(b []byte) []byte {
	h := hamt.Blake3(b)
	h[0], h[1] = h[0]&1, 0
	return h
}

// keyGen draws keys that stress the format: empty, ASCII, any unicode, and look-alike prefixes.
func keyGen() *rapid.Generator[string] {
	return rapid.OneOf(
		rapid.Just(""),
		rapid.StringMatching(`[a-z]{1,3}`),
		rapid.StringMatching(`temp/c/[0-9]/[0-9]`),
		rapid.String(),
		rapid.SampledFrom([]string{"🌍", "é", "e\u0301", "zarr.json", "日本語"}),
	)
}

// mapMachine is the model-based state machine: m must always agree with model.
type mapMachine struct {
	ctx    context.Context
	cas    *hamt.MemoryCAS
	m      *hamt.Map[[]byte]
	model  map[string][]byte
	hash   []hamt.Option
	bucket int
}

func (mm *mapMachine) open(t *rapid.T, root cid.Cid) {
	m, err := hamt.Open(mm.ctx, mm.cas, hamt.Bytes, root, append(mm.hash, hamt.WithBucketSize(mm.bucket), hamt.WithCacheBytes(4<<10))...)
	if err != nil {
		t.Fatalf("Open(%s): %v", root, err)
	}
	mm.m = m
}

func (mm *mapMachine) key(t *rapid.T) string {
	if len(mm.model) > 0 && rapid.Bool().Draw(t, "existing") {
		return rapid.SampledFrom(slices.Sorted(maps.Keys(mm.model))).Draw(t, "key")
	}
	return keyGen().Draw(t, "key")
}

func (mm *mapMachine) Set(t *rapid.T) {
	k, v := mm.key(t), rapid.SliceOfN(rapid.Byte(), 0, 8).Draw(t, "value")
	err := mm.m.Set(mm.ctx, k, v)
	if mm.m.ReadOnly() {
		if !errors.Is(err, hamt.ErrReadOnly) {
			t.Fatalf("Set on a read-only map: %v, want ErrReadOnly", err)
		}
		return
	}
	if err != nil {
		t.Fatalf("Set(%q): %v", k, err)
	}
	mm.model[k] = v
}

func (mm *mapMachine) Get(t *rapid.T) {
	k := mm.key(t)
	got, err := mm.m.Get(mm.ctx, k)
	want, ok := mm.model[k]
	if !ok {
		if !errors.Is(err, hamt.ErrNotFound) {
			t.Fatalf("Get(%q) of a missing key: %v, want ErrNotFound", k, err)
		}
		return
	}
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("Get(%q) = %x, %v; want %x", k, got, err, want)
	}
}

func (mm *mapMachine) Delete(t *rapid.T) {
	k := mm.key(t)
	err := mm.m.Delete(mm.ctx, k)
	_, ok := mm.model[k]
	switch {
	case mm.m.ReadOnly():
		if !errors.Is(err, hamt.ErrReadOnly) {
			t.Fatalf("Delete on a read-only map: %v, want ErrReadOnly", err)
		}
	case !ok:
		if !errors.Is(err, hamt.ErrNotFound) {
			t.Fatalf("Delete(%q) of a missing key: %v, want ErrNotFound", k, err)
		}
	case err != nil:
		t.Fatalf("Delete(%q): %v", k, err)
	default:
		delete(mm.model, k)
	}
}

func (mm *mapMachine) Flush(t *rapid.T) {
	root, err := mm.m.Flush(mm.ctx)
	if err != nil {
		t.Fatal(err)
	}
	if r, err := mm.m.Root(); err != nil || !r.Equals(root) {
		t.Fatalf("Root after Flush = %s, %v; Flush gave %s", r, err, root)
	}
}

func (mm *mapMachine) MakeReadOnly(t *rapid.T) {
	if err := mm.m.MakeReadOnly(mm.ctx); err != nil || !mm.m.ReadOnly() {
		t.Fatalf("MakeReadOnly: %v", err)
	}
}

func (mm *mapMachine) EnableWrite(t *rapid.T) {
	if err := mm.m.EnableWrite(mm.ctx); err != nil || mm.m.ReadOnly() {
		t.Fatalf("EnableWrite: %v", err)
	}
}

func (mm *mapMachine) CacheVacate(t *rapid.T) {
	if err := mm.m.CacheVacate(mm.ctx); err != nil {
		t.Fatal(err)
	}
}

// Reopen continues from the flushed root with a new bucket size, possibly smaller than the one
// the existing buckets were filled with: every key must stay reachable (py-hamt loses keys here).
func (mm *mapMachine) Reopen(t *rapid.T) {
	root, err := mm.m.Flush(mm.ctx)
	if err != nil {
		t.Fatal(err)
	}
	mm.bucket = rapid.IntRange(1, 10).Draw(t, "bucket")
	mm.open(t, root)
	if rapid.Bool().Draw(t, "writable") {
		mm.EnableWrite(t)
	}
}

// Check runs after every action.
func (mm *mapMachine) Check(t *rapid.T) {
	n, err := mm.m.Len(mm.ctx)
	if err != nil || n != len(mm.model) {
		t.Fatalf("Len = %d, %v; model has %d", n, err, len(mm.model))
	}
	seen := map[string]bool{}
	for k, err := range mm.m.Keys(mm.ctx) {
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := mm.model[k]; !ok || seen[k] {
			t.Fatalf("Keys yielded %q (in model: %v, twice: %v)", k, ok, seen[k])
		}
		seen[k] = true
	}
}

func runMachine(t *rapid.T, hash []hamt.Option) *mapMachine {
	mm := &mapMachine{ctx: context.Background(), cas: hamt.NewMemoryCAS(), model: map[string][]byte{},
		hash: hash, bucket: rapid.IntRange(1, 10).Draw(t, "bucket")}
	m, err := hamt.New(mm.ctx, mm.cas, hamt.Bytes, append(hash, hamt.WithBucketSize(mm.bucket))...)
	if err != nil {
		t.Fatal(err)
	}
	mm.m = m
	t.Repeat(rapid.StateMachineActions(mm))
	// Finally, a map reopened from the root sees exactly the model.
	root, err := mm.m.Flush(mm.ctx)
	if err != nil {
		t.Fatal(err)
	}
	mm.open(t, root)
	for k, v := range mm.model {
		got, err := mm.m.Get(mm.ctx, k)
		if err != nil || !bytes.Equal(got, v) {
			t.Fatalf("reopened Get(%q) = %x, %v; want %x", k, got, err, v)
		}
	}
	mm.Check(t)
	return mm
}

func TestMapAgreesWithAGoMapUnderRandomOperations(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) { runMachine(t, nil) })
}

func TestMapAgreesWithAGoMapWhenKeysShareHashPrefixes(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) { runMachine(t, []hamt.Option{hamt.WithHash(prefixHash)}) })
}

func TestRootIndependentOfInsertionOrder(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		ctx := context.Background()
		kv := rapid.MapOfN(keyGen(), rapid.SliceOfN(rapid.Byte(), 0, 4), 0, 200).Draw(t, "kv")
		keys := slices.Sorted(maps.Keys(kv))
		bucket := rapid.IntRange(1, 10).Draw(t, "bucket")
		weak := rapid.Bool().Draw(t, "weak hash")
		build := func(order []string, flushEvery int) cid.Cid {
			opts := []hamt.Option{hamt.WithBucketSize(bucket)}
			if weak {
				opts = append(opts, hamt.WithHash(prefixHash))
			}
			m, err := hamt.New(ctx, hamt.NewMemoryCAS(), hamt.Bytes, opts...)
			if err != nil {
				t.Fatal(err)
			}
			for i, k := range order {
				if err := m.Set(ctx, k, kv[k]); err != nil {
					t.Fatal(err)
				}
				if flushEvery > 0 && i%flushEvery == 0 {
					if _, err := m.Flush(ctx); err != nil {
						t.Fatal(err)
					}
				}
			}
			root, err := m.Flush(ctx)
			if err != nil {
				t.Fatal(err)
			}
			return root
		}
		want := build(keys, 0)
		shuffled := rapid.Permutation(keys).Draw(t, "order")
		if got := build(shuffled, rapid.IntRange(0, 50).Draw(t, "flush every")); !got.Equals(want) {
			t.Fatalf("root %s after a shuffled insert, %s in sorted order", got, want)
		}
	})
}

func TestBucketSizeBelowOneIsRefused(t *testing.T) {
	ctx := context.Background()
	for _, n := range []int{0, -1, -100} {
		if _, err := hamt.New(ctx, hamt.NewMemoryCAS(), hamt.Bytes, hamt.WithBucketSize(n)); err == nil {
			t.Errorf("New with bucket size %d succeeded", n)
		}
	}
	m, _ := hamt.New(ctx, hamt.NewMemoryCAS(), hamt.Bytes)
	root, _ := m.Flush(ctx)
	if _, err := hamt.Open(ctx, hamt.NewMemoryCAS(), hamt.Bytes, root, hamt.WithBucketSize(0)); err == nil {
		t.Error("Open with bucket size 0 succeeded")
	}
}

func TestKeysSharingTheirWholeHashBeyondBucketSizeGiveErrMaxDepthAndChangeNothing(t *testing.T) {
	ctx := context.Background()
	// A one-byte hash: keys with equal byte sums collide completely.
	sum := func(b []byte) []byte {
		var s byte
		for _, c := range b {
			s += c
		}
		return []byte{s}
	}
	m, err := hamt.New(ctx, hamt.NewMemoryCAS(), hamt.Bytes, hamt.WithHash(sum), hamt.WithBucketSize(2))
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"ab", "ba", "x"} {
		if err := m.Set(ctx, k, []byte(k)); err != nil {
			t.Fatal(err)
		}
	}
	before, err := m.Flush(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// "ab", "ba" and "\x00ab" all sum to the same byte: three keys, bucket size two.
	if err := m.Set(ctx, "\x00ab", []byte("c")); !errors.Is(err, hamt.ErrMaxDepth) {
		t.Fatalf("Set of a third full collision: %v, want ErrMaxDepth", err)
	}
	if after, err := m.Flush(ctx); err != nil || !after.Equals(before) {
		t.Fatalf("root changed after a failed Set: %s, %v; was %s", after, err, before)
	}
	for _, k := range []string{"ab", "ba", "x"} {
		if v, err := m.Get(ctx, k); err != nil || string(v) != k {
			t.Fatalf("Get(%q) = %q, %v", k, v, err)
		}
	}
}

func TestXXH64IsTheBigEndianDigestAndWorksAsTheMapHash(t *testing.T) {
	// xxHash64("") = 0xef46db3751d8e999, the reference value of the algorithm.
	if got := hamt.XXH64(nil); !bytes.Equal(got, []byte{0xef, 0x46, 0xdb, 0x37, 0x51, 0xd8, 0xe9, 0x99}) {
		t.Fatalf("XXH64(\"\") = %x", got)
	}
	ctx := context.Background()
	cas := hamt.NewMemoryCAS()
	m, err := hamt.New(ctx, cas, hamt.Bytes, hamt.WithHash(hamt.XXH64), hamt.WithBucketSize(1))
	if err != nil {
		t.Fatal(err)
	}
	for i := range 500 {
		if err := m.Set(ctx, fmt.Sprint(i), []byte{byte(i)}); err != nil {
			t.Fatal(err)
		}
	}
	root, err := m.Flush(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// A reader must use the writer's hash: with it every key is found.
	r, err := hamt.Open(ctx, cas, hamt.Bytes, root, hamt.WithHash(hamt.XXH64))
	if err != nil {
		t.Fatal(err)
	}
	for i := range 500 {
		if v, err := r.Get(ctx, fmt.Sprint(i)); err != nil || !bytes.Equal(v, []byte{byte(i)}) {
			t.Fatalf("Get(%d) = %x, %v", i, v, err)
		}
	}
}

// countingCAS counts loads.
type countingCAS struct {
	hamt.CAS
	loads atomic.Int64
}

func (c *countingCAS) Load(ctx context.Context, id cid.Cid) ([]byte, error) {
	c.loads.Add(1)
	return c.CAS.Load(ctx, id)
}

func TestMakeReadOnlyUsesTheFlushedRootWithoutLoadingIt(t *testing.T) {
	ctx := context.Background()
	cas := &countingCAS{CAS: hamt.NewMemoryCAS()}
	m, _ := hamt.New(ctx, cas, hamt.Bytes, hamt.WithBucketSize(1))
	for i := range 300 {
		if err := m.Set(ctx, fmt.Sprint(i), []byte{byte(i)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := m.MakeReadOnly(ctx); err != nil {
		t.Fatal(err)
	}
	if n := cas.loads.Load(); n != 0 {
		t.Fatalf("MakeReadOnly loaded %d blocks; the root was in memory", n)
	}
	for i := range 300 {
		if v, err := m.Get(ctx, fmt.Sprint(i)); err != nil || !bytes.Equal(v, []byte{byte(i)}) {
			t.Fatalf("Get(%d) = %x, %v", i, v, err)
		}
	}
}
