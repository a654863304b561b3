package hamt

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestShardedRootWithManyShardsReopens: an index of 200,000 shards (within MaxShards) is written
// by Flush and must open again. The DAG-CBOR decoder refused lists over 131,072 items, so such a
// root was written but never readable.
func TestShardedRootWithManyShardsReopens(t *testing.T) {
	ctx := context.Background()
	cas := NewMemoryCAS()
	s, err := NewShardedZarrStore(cas, WithChunksPerShard(1))
	if err != nil {
		t.Fatal(err)
	}
	const meta = `{"zarr_format":3,"node_type":"array","shape":[200000],"data_type":"uint8","chunk_grid":{"name":"regular","configuration":{"chunk_shape":[1]}},"fill_value":0,"codecs":[{"name":"bytes"}]}`
	for _, kv := range [][2]string{{"0/zarr.json", `{"zarr_format":3,"node_type":"group"}`}, {"0/a/zarr.json", meta}, {"0/a/c/199999", "last"}} {
		if err := s.Set(ctx, kv[0], []byte(kv[1])); err != nil {
			t.Fatal(err)
		}
	}
	root, err := s.Flush(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ro, err := OpenShardedZarrStore(ctx, cas, root, WithShardedReadOnly())
	if err != nil {
		t.Fatalf("reopen the root Flush wrote: %v", err)
	}
	if b, err := ro.Get(ctx, "0/a/c/199999", ByteRange{}); err != nil || string(b) != "last" {
		t.Fatalf("get the last chunk: %q, %v", b, err)
	}
	if n, err := ro.ChunkCount(ctx, "0/a"); err != nil || n != 1 {
		t.Fatalf("chunk count %d, %v; want 1", n, err)
	}
}

// TestShardedListingStopsWhenCancelled: listing chunks checks its context at every shard, so a
// command interrupted while it lists an index of many shards (all cached, or a store that ignores
// contexts, as MemoryCAS does) stops instead of running on.
func TestShardedListingStopsWhenCancelled(t *testing.T) {
	ctx := context.Background()
	s := newV2Store(t, NewMemoryCAS(), "0/zarr.json", `{"zarr_format":3,"node_type":"group"}`, "0/temp/zarr.json", temp4x6,
		"0/temp/c/0/0", "a", "0/temp/c/1/2", "b")
	if _, err := s.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	var err error
	for _, e := range s.List(cancelled) {
		if e != nil {
			err = e
			break
		}
	}
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("List with a cancelled context: %v, want context.Canceled", err)
	}
	if _, err := s.ChunkCount(cancelled, "0/temp"); !errors.Is(err, context.Canceled) {
		t.Fatalf("ChunkCount with a cancelled context: %v, want context.Canceled", err)
	}
}

// TestImportDirFailsWhenTheLayoutDropsAFile: the sharded layout ignores a chunk outside its
// array's grid, as py-hamt does; an import of such a file must fail naming it, not report every
// file imported.
func TestImportDirFailsWhenTheLayoutDropsAFile(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	files := map[string]string{
		"zarr.json":        `{"zarr_format":3,"node_type":"group"}`,
		"0/zarr.json":      `{"zarr_format":3,"node_type":"group"}`,
		"0/temp/zarr.json": temp4x6,
		"0/temp/c/0/0":     "in the grid",
		"0/temp/c/9/9":     "outside the grid",
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
	s, err := NewShardedZarrStore(NewMemoryCAS())
	if err != nil {
		t.Fatal(err)
	}
	_, err = ImportDir(ctx, s, dir)
	if !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "0/temp/c/9/9") {
		t.Fatalf("import with a chunk outside the grid: %v, want ErrNotFound naming 0/temp/c/9/9", err)
	}
}

// TestLayoutOfAMalformedMapSaysSo: a root map that does not decode (here its keys are out of
// canonical order) is reported as such, not as a map "without a manifest_version" when it has one.
func TestLayoutOfAMalformedMapSaysSo(t *testing.T) {
	b := append([]byte{0xa2, 0x70}, "manifest_version"...)
	b = append(b, 0x61, 'x', 0x61, 'a', 0x01)
	_, err := layoutOf(b)
	if !errors.Is(err, ErrUnknownLayout) || strings.Contains(err.Error(), "without a manifest_version") || !strings.Contains(err.Error(), "not valid DAG-CBOR") {
		t.Fatalf("layout of a non-canonical sharded root: %v", err)
	}
}
