package hamt_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hamt-go/hamt"
	"github.com/ipfs/go-cid"
)

// The b_sharded_v2 vector (testdata/pyhamt35, copied unchanged from the shared py-hamt 3.5
// vectors): five roots py-hamt 3.5 wrote, step by step, with 4 chunks per shard.

// shardedVectorCAS loads every block of the b_sharded_v2 CAR into a MemoryCAS and returns it with
// the roots of the vector's steps.
func shardedVectorCAS(t *testing.T) (*hamt.MemoryCAS, []cid.Cid) {
	t.Helper()
	cas := vectorCAS(t, "b_sharded_v2_8f8f13cd.car")
	raw, err := os.ReadFile(filepath.Join("testdata", "pyhamt35", "b_sharded_v2_8f8f13cd.json"))
	if err != nil {
		t.Fatal(err)
	}
	var v struct {
		StepRoots []string `json:"step_roots"`
	}
	if err := json.Unmarshal(raw, &v); err != nil {
		t.Fatal(err)
	}
	var roots []cid.Cid
	for _, s := range v.StepRoots {
		roots = append(roots, cid.MustParse(s))
	}
	return cas, roots
}

func TestDetectLayoutOfPyHamtShardedRoots(t *testing.T) {
	ctx := context.Background()
	cas, roots := shardedVectorCAS(t)
	for i, root := range roots {
		l, err := hamt.DetectLayout(ctx, cas, root)
		if err != nil || l != hamt.LayoutSharded {
			t.Errorf("step %d root %s: %v, %v; want sharded", i+1, root, l, err)
		}
		z, err := hamt.OpenZarr(ctx, cas, root)
		if err != nil {
			t.Fatalf("step %d: %v", i+1, err)
		}
		if s, ok := z.(*hamt.ShardedZarrStore); !ok || !s.ReadOnly() || s.Version() != 2 {
			t.Errorf("step %d: OpenZarr gave %T (read-only %v)", i+1, z, z.ReadOnly())
		}
	}
}

// TestConvertPyHamtShardedRootsToHAMTAndBack: each of py-hamt's roots, converted to the HAMT
// layout and back with its 4 chunks per shard, is the root py-hamt wrote, except the last, whose
// deletes left an all-null shard block (a copy writes null there); its HAMT holds the same keys
// and values all the same.
func TestConvertPyHamtShardedRootsToHAMTAndBack(t *testing.T) {
	ctx := context.Background()
	cas, roots := shardedVectorCAS(t)
	cps := hamt.WithShardedOptions(hamt.WithChunksPerShard(4))
	for i, root := range roots {
		h, err := hamt.ConvertZarr(ctx, cas, root, hamt.LayoutHAMT)
		if err != nil {
			t.Fatalf("step %d to hamt: %v", i+1, err)
		}
		if l, err := hamt.DetectLayout(ctx, cas, h); err != nil || l != hamt.LayoutHAMT {
			t.Errorf("step %d: converted root is %v, %v", i+1, l, err)
		}
		src, err := hamt.OpenZarr(ctx, cas, root)
		if err != nil {
			t.Fatal(err)
		}
		hz, err := hamt.OpenZarr(ctx, cas, h)
		if err != nil {
			t.Fatal(err)
		}
		for c, err := range hamt.DiffZarr(ctx, src, hz) {
			t.Errorf("step %d: sharded and HAMT differ: %+v, %v", i+1, c, err)
		}
		back, err := hamt.ConvertZarr(ctx, cas, h, hamt.LayoutSharded, cps)
		if err != nil {
			t.Fatalf("step %d back to sharded: %v", i+1, err)
		}
		if last := i == len(roots)-1; back.Equals(root) == last {
			t.Errorf("step %d: back to sharded %s, py-hamt's %s (equal expected: %v)", i+1, back, root, !last)
		}
		again, err := hamt.ConvertZarr(ctx, cas, back, hamt.LayoutHAMT)
		if err != nil || !again.Equals(h) {
			t.Errorf("step %d: HAMT -> sharded -> HAMT gave %s (%v), want %s", i+1, again, err, h)
		}
	}
}

// TestConvertToShardedFailsOnAKeyTheLayoutDrops: the sharded layout ignores a chunk outside its
// array's grid, as py-hamt does; a conversion that would lose one fails, naming it.
func TestConvertToShardedFailsOnAKeyTheLayoutDrops(t *testing.T) {
	ctx := context.Background()
	cas, roots := shardedVectorCAS(t)
	h, err := hamt.ConvertZarr(ctx, cas, roots[0], hamt.LayoutHAMT)
	if err != nil {
		t.Fatal(err)
	}
	w, err := hamt.OpenZarr(ctx, cas, h, hamt.WithZarrWrite())
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Set(ctx, "0/lat/c/9", []byte("stale chunk past the grid")); err != nil {
		t.Fatal(err)
	}
	h2, err := w.Flush(ctx)
	if err != nil {
		t.Fatal(err)
	}
	_, err = hamt.ConvertZarr(ctx, cas, h2, hamt.LayoutSharded, hamt.WithShardedOptions(hamt.WithChunksPerShard(4)))
	if !errors.Is(err, hamt.ErrNotFound) || !strings.Contains(err.Error(), `"0/lat/c/9"`) {
		t.Errorf("converting a HAMT with a chunk past the grid: %v", err)
	}
}

// TestConvertMovesCIDsNotBytes: a conversion on one store loads no chunk: the new dataset points
// at the old one's value blocks; only metadata documents are read, for the sharded layout to
// register its arrays.
func TestConvertMovesCIDsNotBytes(t *testing.T) {
	ctx := context.Background()
	vec, roots := shardedVectorCAS(t)
	cas := newZarrCountingCAS()
	cas.inner = vec
	root := roots[3]
	h, err := hamt.ConvertZarr(ctx, cas, root, hamt.LayoutHAMT)
	if err != nil {
		t.Fatal(err)
	}
	// One metadata document per array is read: it says how the array names its chunks.
	if n, m := cas.valueLoads.Load(), cas.sizes.Load(); n > 3 || m != 0 {
		t.Errorf("sharded -> hamt loaded %d value blocks and sized %d, want at most the 3 arrays' metadata", n, m)
	}
	cas.reset()
	if _, err := hamt.ConvertZarr(ctx, cas, h, hamt.LayoutSharded, hamt.WithShardedOptions(hamt.WithChunksPerShard(4))); err != nil {
		t.Fatal(err)
	}
	z, err := hamt.OpenZarr(ctx, cas, h)
	if err != nil {
		t.Fatal(err)
	}
	meta := 0
	for k, err := range z.List(ctx) {
		if err != nil {
			t.Fatal(err)
		}
		if strings.HasSuffix(k, "zarr.json") {
			meta++
		}
	}
	if n := cas.valueLoads.Load(); n > int64(meta) {
		t.Errorf("hamt -> sharded loaded %d value blocks, more than the %d metadata documents", n, meta)
	}
}

// TestConvertPyHamtV1Roots: py-hamt's sharded_zarr_v1 roots (c_sharded_v1) open as version 1 and
// convert to the HAMT layout with every key and value, and to the sharded layout by migration.
func TestConvertPyHamtV1Roots(t *testing.T) {
	ctx := context.Background()
	cas := vectorCAS(t, "c_sharded_v1_8f8f13cd.car")
	raw, err := os.ReadFile(filepath.Join("testdata", "pyhamt35", "c_sharded_v1_8f8f13cd.json"))
	if err != nil {
		t.Fatal(err)
	}
	var v struct {
		Steps []struct {
			Step    string `json:"step"`
			RootCID string `json:"root_cid"`
		} `json:"steps"`
	}
	if err := json.Unmarshal(raw, &v); err != nil {
		t.Fatal(err)
	}
	for _, st := range v.Steps[:4] { // c4 is the migration to v2
		root := cid.MustParse(st.RootCID)
		src, err := hamt.OpenZarr(ctx, cas, root)
		if err != nil {
			t.Fatalf("%s: %v", st.Step, err)
		}
		if s, ok := src.(*hamt.ShardedZarrStore); !ok || s.Version() != 1 {
			t.Fatalf("%s: opened as %T", st.Step, src)
		}
		h, err := hamt.ConvertZarr(ctx, cas, root, hamt.LayoutHAMT)
		if err != nil {
			t.Fatalf("%s to hamt: %v", st.Step, err)
		}
		hz, err := hamt.OpenZarr(ctx, cas, h)
		if err != nil {
			t.Fatal(err)
		}
		if sameValues(t, st.Step, src, hz) == 0 {
			t.Errorf("%s: no keys", st.Step)
		}
	}
	// To the sharded layout, a v1 root is migrated: c2's gives py-hamt's migrate_v1_to_v2("temp")
	// root, c4; c3a's records no primary and cannot be inferred.
	c2, c3a, c4 := cid.MustParse(v.Steps[1].RootCID), cid.MustParse(v.Steps[2].RootCID), cid.MustParse(v.Steps[4].RootCID)
	if got, err := hamt.ConvertZarr(ctx, cas, c2, hamt.LayoutSharded); err != nil || !got.Equals(c4) {
		t.Errorf("c2 converted to sharded: %s, %v; want py-hamt's migration %s", got, err, c4)
	}
	if _, err := hamt.ConvertZarr(ctx, cas, c3a, hamt.LayoutSharded); err == nil || !strings.Contains(err.Error(), "MigrateToV2") {
		t.Errorf("c3a converted to sharded: %v", err)
	}
}

// vectorCAS stores every block of the CAR testdata/pyhamt35/name in a new MemoryCAS (with ReadCAR,
// which also checks each block against its CID).
func vectorCAS(t *testing.T, name string) *hamt.MemoryCAS {
	t.Helper()
	f, err := os.Open(filepath.Join("testdata", "pyhamt35", name))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cas := hamt.NewMemoryCAS()
	if _, _, err := hamt.ReadCAR(context.Background(), cas, f); err != nil {
		t.Fatal(err)
	}
	return cas
}

// sameValues checks that every key src lists reads the same from dst, and returns how many keys
// src listed; what names the case in errors.
func sameValues(t *testing.T, what string, src, dst hamt.Zarr) int {
	t.Helper()
	ctx := context.Background()
	n := 0
	for k, err := range src.List(ctx) {
		if err != nil {
			t.Fatal(err)
		}
		want, err1 := src.Get(ctx, k, hamt.ByteRange{})
		got, err2 := dst.Get(ctx, k, hamt.ByteRange{})
		if err1 != nil || err2 != nil || !bytes.Equal(got, want) {
			t.Errorf("%s: %q: %v %v", what, k, err1, err2)
		}
		n++
	}
	return n
}
