package hamt

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/ipfs/go-cid"
	"github.com/multiformats/go-multicodec"
)

// TestShardedRootWithHostileNamesIsRefused: a root whose metadata keys, array paths or v1
// primary_array_path are not Zarr paths ("..", "/abs", "a//b") is not what py-hamt writes through
// a Zarr client, and its names would escape the dataset when exported or converted; opening it
// is ErrMalformedValue. (It used to open, and `hamt convert --to hamt` copied "../x" with exit 0.)
func TestShardedRootWithHostileNamesIsRefused(t *testing.T) {
	ctx := context.Background()
	cas := NewMemoryCAS()
	link, err := cas.Save(ctx, []byte("v"), multicodec.Raw)
	if err != nil {
		t.Fatal(err)
	}
	index := func() map[string]any {
		return map[string]any{"array_shape": []any{int64(4)}, "chunk_shape": []any{int64(2)}, "shard_cids": []any{nil},
			"sharding_config": map[string]any{"chunks_per_shard": int64(2), "order": "C"}}
	}
	v2 := func(meta map[string]any, arrays map[string]any) map[string]any {
		return map[string]any{"manifest_version": "sharded_zarr_v2", "metadata": meta, "arrays": arrays}
	}
	v1 := func(primary string) map[string]any {
		c := index()
		c["primary_array_path"] = primary
		return map[string]any{"manifest_version": "sharded_zarr_v1", "metadata": map[string]any{"zarr.json": link}, "chunks": c}
	}
	for name, m := range map[string]map[string]any{
		"metadata key ..":       v2(map[string]any{"../zarr.json": link}, map[string]any{}),
		"metadata key /abs":     v2(map[string]any{"/etc/zarr.json": link}, map[string]any{}),
		"metadata key a//b":     v2(map[string]any{"a//zarr.json": link}, map[string]any{}),
		"metadata key a/./b":    v2(map[string]any{"a/./zarr.json": link}, map[string]any{}),
		"metadata key empty":    v2(map[string]any{"": link}, map[string]any{}),
		"metadata key NUL":      v2(map[string]any{"a\x00/zarr.json": link}, map[string]any{}),
		"array path 0//a":       v2(map[string]any{}, map[string]any{"0//a": index()}),
		"array path ../a":       v2(map[string]any{}, map[string]any{"../a": index()}),
		"v1 primary ../x":       v1("../x"),
		"v1 primary a//b":       v1("a//b"),
		"v1 primary with slash": v1("/a/./b/"),
	} {
		t.Run(name, func(t *testing.T) {
			_, err := OpenShardedZarrStore(ctx, cas, saveRoot(t, cas, m), WithShardedReadOnly())
			if !errors.Is(err, ErrMalformedValue) {
				t.Fatalf("open: %v, want ErrMalformedValue", err)
			}
		})
	}
	// The names py-hamt does write still open: the root array "", a recorded "" or "/" primary.
	for name, m := range map[string]map[string]any{
		"root array":       v2(map[string]any{"zarr.json": link}, map[string]any{"": index()}),
		"v1 primary empty": v1(""),
		"v1 primary /t/":   v1("/t/"),
	} {
		if _, err := OpenShardedZarrStore(ctx, cas, saveRoot(t, cas, m), WithShardedReadOnly()); err != nil {
			t.Errorf("%s: open: %v", name, err)
		}
	}
}

// TestShardedSetRefusesKeysItCouldNotReopen: a write that would put a non-Zarr path in the root
// (as a metadata key, an array path or a v1 primary) is ErrInvalidKey, so the store never flushes
// a root that it, and TestShardedRootWithHostileNamesIsRefused, would refuse.
func TestShardedSetRefusesKeysItCouldNotReopen(t *testing.T) {
	ctx := context.Background()
	cas := NewMemoryCAS()
	s := newV2Store(t, cas, "0/zarr.json", `{"zarr_format":3,"node_type":"group"}`, "0/temp/zarr.json", temp4x6)
	id, err := cas.Save(ctx, []byte("x"), multicodec.Raw)
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{"../x", "/abs", "0//zarr.json", "0/./temp/zarr.json", "a/../b", "", "0//a/c/0/0", "x\x00y"} {
		if err := s.Set(ctx, key, []byte("x")); !errors.Is(err, ErrInvalidKey) {
			t.Errorf("Set(%q): %v, want ErrInvalidKey", key, err)
		}
		if err := s.SetCID(ctx, key, id); !errors.Is(err, ErrInvalidKey) {
			t.Errorf("SetCID(%q): %v, want ErrInvalidKey", key, err)
		}
	}
	if err := s.Set(ctx, "0/temp/c/1/2", []byte("ok")); err != nil {
		t.Fatal(err)
	}
	root, err := s.Flush(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := OpenShardedZarrStore(ctx, cas, root); err != nil {
		t.Fatalf("reopen: %v", err)
	}

	v1, err := NewShardedZarrStoreV1(cas, []int64{4}, []int64{2}, WithChunksPerShard(2))
	if err != nil {
		t.Fatal(err)
	}
	if err := v1.Set(ctx, "a//b/c/0", []byte("x")); !errors.Is(err, ErrInvalidKey) {
		t.Errorf("v1 Set of a chunk whose path is not a Zarr path: %v, want ErrInvalidKey", err)
	}
	if _, err := v1.MigrateToV2(ctx, "a/../b"); !errors.Is(err, ErrInvalidKey) {
		t.Errorf("MigrateToV2(a/../b): %v, want ErrInvalidKey", err)
	}
}

// TestShardedKeysBesideTheReadGroupRead: a v2 store whose arrays all sit under group "0" reads
// keys outside it in "0" (py-hamt's redirect); the metadata of another top-level group without
// arrays ("1/zarr.json") is listed, and must read too. It was listed but unreadable, so a
// directory imported into the sharded layout could not be exported again.
func TestShardedKeysBesideTheReadGroupRead(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	group := `{"zarr_format":3,"node_type":"group"}`
	files := map[string]string{
		"zarr.json": group, "0/zarr.json": group, "0/temp/zarr.json": temp4x6, "0/temp/c/1/2": "chunk",
		"1/zarr.json": `{"zarr_format":3,"node_type":"group","attributes":{"other":1}}`,
	}
	for k, v := range files {
		p := filepath.Join(dir, filepath.FromSlash(k))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(v), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cas := NewMemoryCAS()
	w, err := NewShardedZarrStore(cas)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ImportDir(ctx, w, dir); err != nil {
		t.Fatal(err)
	}
	root, err := w.Flush(ctx)
	if err != nil {
		t.Fatal(err)
	}
	s, err := OpenShardedZarrStore(ctx, cas, root, WithShardedReadOnly())
	if err != nil {
		t.Fatal(err)
	}
	if b, err := s.Get(ctx, "1/zarr.json", ByteRange{}); err != nil || string(b) != files["1/zarr.json"] {
		t.Fatalf("Get(1/zarr.json) = %q, %v", b, err)
	}
	if ok, err := s.Exists(ctx, "1/zarr.json"); !ok || err != nil {
		t.Fatalf("Exists(1/zarr.json) = %v, %v", ok, err)
	}
	if got, err := s.ListDir(ctx, "1"); err != nil || !slices.Equal(got, []string{"zarr.json"}) {
		t.Fatalf("ListDir(1) = %q, %v", got, err)
	}
	// py-hamt's redirect still applies where the group has the key.
	if b, err := s.Get(ctx, "temp/c/1/2", ByteRange{}); err != nil || string(b) != "chunk" {
		t.Fatalf("Get(temp/c/1/2) = %q, %v", b, err)
	}
	if got, err := s.ListDir(ctx, "temp"); err != nil || !slices.Equal(got, []string{"c", "zarr.json"}) {
		t.Fatalf("ListDir(temp) = %q, %v", got, err)
	}
	if _, err := s.Get(ctx, "2/zarr.json", ByteRange{}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get(2/zarr.json): %v, want ErrNotFound", err)
	}
	out := t.TempDir()
	if _, err := ExportDir(ctx, s, out, WithReplace()); err != nil {
		t.Fatalf("export: %v", err)
	}
	for k, v := range files {
		b, err := os.ReadFile(filepath.Join(out, filepath.FromSlash(k)))
		if err != nil || string(b) != v {
			t.Errorf("exported %s = %q, %v; want %q", k, b, err, v)
		}
	}
}

// arrayDoc is the zarr.json of a 4×6 uint8 array in 2×2 chunks with the chunk_key_encoding enc.
func arrayDoc(enc string) string {
	return `{"zarr_format":3,"node_type":"array","shape":[4,6],"data_type":"uint8","chunk_grid":{"name":"regular","configuration":{"chunk_shape":[2,2]}},"chunk_key_encoding":` + enc + `,"fill_value":0,"codecs":[{"name":"bytes"}]}`
}

// TestShardedListsChunksAsTheirArrayNamesThem: chunks of an array whose metadata names them the
// zarr v2 way ("v2" chunk_key_encoding, or a .zarray) are listed under those names, so that a
// conversion or an export gives a dataset a Zarr reader finds its chunks in. They were listed as
// "path/c/i/j" whatever the array's encoding, so a HAMT dataset converted to the sharded layout
// and back, or exported from it, read as all fill values.
func TestShardedListsChunksAsTheirArrayNamesThem(t *testing.T) {
	ctx := context.Background()
	group := `{"zarr_format":3,"node_type":"group","attributes":{}}`
	files := map[string]string{
		"zarr.json": group, "0/zarr.json": group,
		// What the layout adds for the .zarray arrays' parents, as py-hamt does.
		".zgroup": `{"zarr_format": 2}`, "0/.zgroup": `{"zarr_format": 2}`,
		"0/dot/zarr.json":   arrayDoc(`{"name":"v2","configuration":{"separator":"."}}`),
		"0/dot/1.2":         "dot",
		"0/dot/0.0":         "dot0",
		"0/nosep/zarr.json": arrayDoc(`{"name":"v2"}`),
		"0/nosep/1.1":       "nosep",
		"0/slash/zarr.json": arrayDoc(`{"name":"v2","configuration":{"separator":"/"}}`),
		"0/slash/1/2":       "slash",
		"0/v3/zarr.json":    arrayDoc(`{"name":"default","configuration":{"separator":"/"}}`),
		"0/v3/c/1/2":        "v3",
		"0/old/.zarray":     `{"zarr_format":2,"shape":[4,6],"chunks":[2,2],"dtype":"|u1","dimension_separator":"/"}`,
		"0/old/1/0":         "old",
		"0/older/.zarray":   `{"zarr_format":2,"shape":[4,6],"chunks":[2,2],"dtype":"|u1"}`,
		"0/older/0.1":       "older",
	}
	cas := NewMemoryCAS()
	h := hamtDataset(t, cas, files)
	sh, err := ConvertZarr(ctx, cas, h, LayoutSharded, WithShardedOptions(WithChunksPerShard(4)))
	if err != nil {
		t.Fatalf("HAMT -> sharded: %v", err)
	}
	s, err := OpenShardedZarrStore(ctx, cas, sh, WithShardedReadOnly())
	if err != nil {
		t.Fatal(err)
	}
	listed := collectKeys(t, s.List(ctx))
	slices.Sort(listed)
	want := make([]string, 0, len(files))
	for k := range files {
		want = append(want, k)
	}
	slices.Sort(want)
	if !slices.Equal(listed, want) {
		t.Fatalf("sharded store lists\n%q\nwant\n%q", listed, want)
	}
	for _, k := range listed {
		if b, err := s.Get(ctx, k, ByteRange{}); err != nil || string(b) != files[k] {
			t.Errorf("Get(%q) = %q, %v", k, b, err)
		}
	}
	for dir, want := range map[string][]string{
		"0/dot": {"0.0", "1.2", "zarr.json"}, "0/slash": {"1", "zarr.json"}, "0/slash/1": {"2"},
		"0/v3": {"c", "zarr.json"}, "0/v3/c/1": {"2"}, "0/old": {".zarray", "1"}, "0/dot/c": nil,
	} {
		if got, err := s.ListDir(ctx, dir); err != nil || !slices.Equal(got, want) {
			t.Errorf("ListDir(%q) = %q, %v; want %q", dir, got, err, want)
		}
	}
	back, err := ConvertZarr(ctx, cas, sh, LayoutHAMT)
	if err != nil {
		t.Fatalf("sharded -> HAMT: %v", err)
	}
	if back != h {
		t.Errorf("HAMT -> sharded -> HAMT gave %s, want the original %s", back, h)
	}
	out := t.TempDir()
	if _, err := ExportDir(ctx, s, out, WithReplace()); err != nil {
		t.Fatal(err)
	}
	for k, v := range files {
		if b, err := os.ReadFile(filepath.Join(out, filepath.FromSlash(k))); err != nil || string(b) != v {
			t.Errorf("exported %s = %q, %v", k, b, err)
		}
	}
}

// TestShardedCopyFailsOnAChunkListedUnderAnotherName: a copy into the sharded layout checks that
// the new store lists every key it copied, not only that each key reads: a chunk written as
// "0/t/c/1/2" of an array whose metadata names chunks "0/t/1.2" reads under both names, but the
// new dataset would list (and export) only the second.
func TestShardedCopyFailsOnAChunkListedUnderAnotherName(t *testing.T) {
	ctx := context.Background()
	cas := NewMemoryCAS()
	h := hamtDataset(t, cas, map[string]string{
		"0/zarr.json":   `{"zarr_format":3,"node_type":"group","attributes":{}}`,
		"0/t/zarr.json": arrayDoc(`{"name":"v2","configuration":{"separator":"."}}`),
		"0/t/c/1/2":     "named the v3 way",
	})
	_, err := ConvertZarr(ctx, cas, h, LayoutSharded)
	if !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), `"0/t/c/1/2"`) || !strings.Contains(err.Error(), "another name") {
		t.Fatalf("convert: %v; want ErrNotFound naming 0/t/c/1/2", err)
	}
}

// hamtDataset writes files (key → value) as a HAMT-layout dataset on cas and returns its root.
func hamtDataset(t testing.TB, cas CAS, files map[string]string) cid.Cid {
	t.Helper()
	ctx := context.Background()
	hz, err := NewZarr(ctx, cas, LayoutHAMT)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range files {
		if err := hz.Set(ctx, k, []byte(v)); err != nil {
			t.Fatal(err)
		}
	}
	h, err := hz.Flush(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// saveRoot saves m as a DAG-CBOR block on cas and returns its CID.
func saveRoot(t testing.TB, cas CAS, m map[string]any) cid.Cid {
	t.Helper()
	b, err := DagCBOR.Encode(m)
	if err != nil {
		t.Fatal(err)
	}
	root, err := cas.Save(context.Background(), b, multicodec.DagCbor)
	if err != nil {
		t.Fatal(err)
	}
	return root
}
