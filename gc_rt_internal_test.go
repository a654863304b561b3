package hamt

import (
	"context"
	"errors"
	"path/filepath"
	"testing"

	"github.com/hamt-go/hamt/internal/testdag"
)

// TestGCWalksAShardThatAnotherMapHasAsAValue: a map (named first) whose value links a shard of a
// named sharded dataset (a dag-cbor CID: such a map is made elsewhere, or made to do this) made
// GC take the shard as walked when the dataset's walk reached it: the shard's chunks were
// removed.
func TestGCWalksAShardThatAnotherMapHasAsAValue(t *testing.T) {
	ctx := context.Background()
	b, err := OpenBoltCAS(filepath.Join(t.TempDir(), "s.bolt"))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	s := newV2Store(t, b, "0/zarr.json", `{"zarr_format":3,"node_type":"group"}`, "0/temp/zarr.json", temp4x6,
		"0/temp/c/0/0", "chunk 0 0", "0/temp/c/1/2", "chunk 1 2")
	victim, err := s.Flush(ctx)
	if err != nil {
		t.Fatal(err)
	}
	block, err := b.Load(ctx, victim)
	if err != nil {
		t.Fatal(err)
	}
	r, err := decodeShardedRoot(block)
	if err != nil {
		t.Fatal(err)
	}
	shard := r.arrays["0/temp"].shards[0]
	h := Blake3([]byte("x"))
	odd := testdag.SaveNode(t, b, map[int][]byte{int(h[0]): testdag.Bucket(testdag.Entry("x", shard))})
	if err := b.SetName(ctx, "a-first", odd); err != nil {
		t.Fatal(err)
	}
	if err := b.SetName(ctx, "victim", victim); err != nil {
		t.Fatal(err)
	}
	if _, err := b.GC(ctx); err != nil {
		t.Fatal(err)
	}
	got, err := OpenShardedZarrStore(ctx, b, victim)
	if err != nil {
		t.Fatal(err)
	}
	for key, want := range map[string]string{"0/temp/c/0/0": "chunk 0 0", "0/temp/c/1/2": "chunk 1 2"} {
		v, err := got.Get(ctx, key, ByteRange{})
		if err != nil || string(v) != want {
			t.Fatalf("%s after GC = %q, %v; want %q", key, v, err, want)
		}
	}
	if _, err := Verify(ctx, b, victim); err != nil && !errors.Is(err, ErrNotFound) {
		t.Fatal(err)
	}
}
