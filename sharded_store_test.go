package hamt

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/hamt-go/hamt/internal/testdag"
	"github.com/ipfs/go-cid"
	"github.com/multiformats/go-multicodec"
)

// temp4x6 is the metadata of py-hamt's vector array 0/temp: 4×6 in 2×2 chunks.
const temp4x6 = `{"zarr_format":3,"node_type":"array","shape":[4,6],"data_type":"uint8","chunk_grid":{"name":"regular","configuration":{"chunk_shape":[2,2]}},"fill_value":0,"codecs":[{"name":"bytes"}]}`

func newV2Store(t *testing.T, cas CAS, kv ...string) *ShardedZarrStore {
	t.Helper()
	s, err := NewShardedZarrStore(cas, WithChunksPerShard(4))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < len(kv); i += 2 {
		if err := s.Set(context.Background(), kv[i], []byte(kv[i+1])); err != nil {
			t.Fatalf("set %q: %v", kv[i], err)
		}
	}
	return s
}

// The error probes of b_sharded_v2 (error_probes_separate_store), on a store of our own.
func TestShardedV2ErrorsAreThoseOfPyHamt(t *testing.T) {
	ctx := context.Background()
	cas := NewMemoryCAS()
	s := newV2Store(t, cas, "0/zarr.json", `{"zarr_format":3,"node_type":"group"}`, "0/temp/zarr.json", temp4x6)

	for _, key := range []string{"0/temp/c/9/9", "0/temp/c/a/b"} {
		before := cas.Len()
		if err := s.Set(ctx, key, []byte("x")); err != nil {
			t.Errorf("set %q: %v; py-hamt ignores it", key, err)
		}
		if cas.Len() != before {
			t.Errorf("set %q saved %d blocks; py-hamt saves none", key, cas.Len()-before)
		}
	}
	before := cas.Len()
	if err := s.Set(ctx, "0/nope/c/0", []byte("y")); !errors.Is(err, ErrUnregisteredArray) {
		t.Errorf("set of a chunk of an unregistered array: %v", err)
	}
	if cas.Len() != before+1 {
		t.Errorf("set of a chunk of an unregistered array saved %d blocks; py-hamt saves its block", cas.Len()-before)
	}
	other := bytes.Replace([]byte(temp4x6), []byte(`"chunk_shape":[2,2]`), []byte(`"chunk_shape":[3,3]`), 1)
	if err := s.Set(ctx, "0/temp/zarr.json", other); !errors.Is(err, ErrChunkShapeChanged) {
		t.Errorf("a changed chunk shape: %v", err)
	}

	fresh := newV2Store(t, NewMemoryCAS(), "zarr.json", `{"zarr_format":3,"node_type":"group"}`)
	if err := fresh.Set(ctx, "temp/zarr.json", []byte(temp4x6)); !errors.Is(err, ErrGroupRequired) {
		t.Errorf("a top-level array after the root group: %v", err)
	}

	root, err := s.Flush(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ro, err := OpenShardedZarrStore(ctx, cas, root, WithShardedReadOnly())
	if err != nil {
		t.Fatal(err)
	}
	for name, write := range map[string]func() error{
		"set":             func() error { return ro.Set(ctx, "0/temp/c/0/0", []byte("z")) },
		"set cid":         func() error { return ro.SetCID(ctx, "0/temp/c/0/0", root) },
		"delete":          func() error { return ro.Delete(ctx, "0/temp/zarr.json") },
		"delete dir":      func() error { return ro.DeleteDir(ctx, "0") },
		"resize":          func() error { return ro.Resize(ctx, "0/temp", []int64{8, 6}) },
		"resize variable": func() error { return ro.ResizeVariable(ctx, "0/temp", []int64{8, 6}) },
		"graft":           func() error { return ro.Graft(ctx, root, []int64{0, 0}, "0/temp", "") },
		"migrate": func() error {
			_, err := ro.MigrateToV2(ctx, "temp")
			return err
		},
	} {
		if err := write(); !errors.Is(err, ErrReadOnly) {
			t.Errorf("%s on a read-only store: %v", name, err)
		}
	}
	if _, err := NewShardedZarrStore(cas, WithShardedReadOnly()); err == nil {
		t.Error("a new read-only store was made; py-hamt needs a root for one")
	}
}

func TestShardedV2WithTwoTopLevelGroupsNeedsAGroupToReadTheRoot(t *testing.T) {
	ctx := context.Background()
	cas := NewMemoryCAS()
	s := newV2Store(t, cas, "0/temp/zarr.json", temp4x6, "1/temp/zarr.json", temp4x6, "0/temp/c/0/0", "chunk")
	got, err := s.ListDir(ctx, "")
	if err != nil || !slices.Equal(got, []string{"0", "1", "zarr.json"}) {
		t.Errorf("writable list dir \"\" = %q, %v", got, err)
	}
	root, err := s.Flush(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ro, err := OpenShardedZarrStore(ctx, cas, root, WithShardedReadOnly())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ro.ListDir(ctx, ""); !errors.Is(err, ErrGroupRequired) {
		t.Errorf("read-only list dir \"\": %v", err)
	}
	if _, err := ro.Get(ctx, "temp/c/0/0", ByteRange{}); !errors.Is(err, ErrNotFound) {
		t.Errorf("get without a group: %v (no default group to read from)", err)
	}
	if b, err := ro.Get(ctx, "0/temp/c/0/0", ByteRange{}); err != nil || string(b) != "chunk" {
		t.Errorf("get in group 0 = %q, %v", b, err)
	}
	if got, err := ro.ListDir(ctx, "1"); err != nil || !slices.Equal(got, []string{"temp", "zarr.json"}) {
		t.Errorf("list dir 1 = %q, %v", got, err)
	}
}

// rootBlock encodes a root model for a test.
func rootBlock(t *testing.T, m map[string]any) []byte {
	t.Helper()
	b, err := DagCBOR.Encode(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestShardedRootsNotAsPyHamtWritesThemAreMalformed(t *testing.T) {
	link := blake3CID(multicodec.Raw, []byte("v"))
	v2 := func(edit func(m, arr map[string]any)) map[string]any {
		arr := map[string]any{
			"array_shape": []any{int64(4)}, "chunk_shape": []any{int64(2)},
			"sharding_config": map[string]any{"chunks_per_shard": int64(4), "order": "C"},
			"shard_cids":      []any{nil},
		}
		m := map[string]any{
			"manifest_version": "sharded_zarr_v2", "metadata": map[string]any{"zarr.json": link},
			"arrays": map[string]any{"a": arr},
		}
		edit(m, arr)
		return m
	}
	v1 := func(edit func(m, chunks map[string]any)) map[string]any {
		chunks := map[string]any{
			"array_shape": []any{int64(4)}, "chunk_shape": []any{int64(2)},
			"sharding_config": map[string]any{"chunks_per_shard": int64(4)},
			"shard_cids":      []any{nil},
		}
		m := map[string]any{"manifest_version": "sharded_zarr_v1", "metadata": map[string]any{}, "chunks": chunks}
		edit(m, chunks)
		return m
	}
	cases := map[string]any{
		"a list":                        []any{int64(1)},
		"another manifest version":      v2(func(m, _ map[string]any) { m["manifest_version"] = "sharded_zarr_v3" }),
		"no manifest version":           v2(func(m, _ map[string]any) { delete(m, "manifest_version") }),
		"metadata not links":            v2(func(m, _ map[string]any) { m["metadata"] = map[string]any{"zarr.json": "x"} }),
		"no metadata":                   v2(func(m, _ map[string]any) { delete(m, "metadata") }),
		"v2 without arrays":             v2(func(m, _ map[string]any) { delete(m, "arrays") }),
		"too many shards":               v2(func(_, a map[string]any) { a["shard_cids"] = []any{nil, nil} }),
		"a shard neither link nor null": v2(func(_, a map[string]any) { a["shard_cids"] = []any{"x"} }),
		"a chunk dimension of 0":        v2(func(_, a map[string]any) { a["chunk_shape"] = []any{int64(0)} }),
		"a negative dimension":          v2(func(_, a map[string]any) { a["array_shape"] = []any{int64(-4)} }),
		"ranks that differ":             v2(func(_, a map[string]any) { a["chunk_shape"] = []any{int64(2), int64(2)} }),
		"order F":                       v2(func(_, a map[string]any) { a["sharding_config"].(map[string]any)["order"] = "F" }),
		"no chunks_per_shard":           v2(func(_, a map[string]any) { a["sharding_config"] = map[string]any{} }),
		"too many chunks per shard": v2(func(_, a map[string]any) {
			a["sharding_config"].(map[string]any)["chunks_per_shard"] = int64(MaxChunksPerShard + 1)
		}),
		"a path with a slash":     v2(func(m, a map[string]any) { m["arrays"] = map[string]any{"/a": a} }),
		"a float shape":           v2(func(_, a map[string]any) { a["array_shape"] = []any{4.0} }),
		"v1 without chunks":       v1(func(m, _ map[string]any) { delete(m, "chunks") }),
		"v1 primary not a string": v1(func(_, c map[string]any) { c["primary_array_path"] = int64(1) }),
		"v1 too few shards":       v1(func(_, c map[string]any) { c["shard_cids"] = []any{} }),
		"a grid beyond MaxShards": v1(func(_, c map[string]any) {
			c["array_shape"] = []any{int64(1) << 40}
			c["chunk_shape"] = []any{int64(1)}
		}),
	}
	ctx := context.Background()
	for name, root := range cases {
		var b []byte
		if l, ok := root.([]any); ok {
			b, _ = DagCBOR.Encode(l)
		} else {
			b = rootBlock(t, root.(map[string]any))
		}
		cas := NewMemoryCAS()
		id, _ := cas.Save(ctx, b, multicodec.DagCbor)
		if _, err := OpenShardedZarrStore(ctx, cas, id); !errors.Is(err, ErrMalformedValue) {
			t.Errorf("%s: %v", name, err)
		}
	}
	// Not canonical: chunks_per_shard written with a two-byte head.
	good := rootBlock(t, v1(func(_, _ map[string]any) {}))
	long := bytes.Replace(good, []byte("chunks_per_shard\x04"), []byte("chunks_per_shard\x18\x04"), 1)
	if bytes.Equal(long, good) {
		t.Fatal("the test's root has no chunks_per_shard 4")
	}
	cas := NewMemoryCAS()
	id, _ := cas.Save(ctx, long, multicodec.DagCbor)
	if _, err := OpenShardedZarrStore(ctx, cas, id); !errors.Is(err, ErrMalformedValue) {
		t.Errorf("a root in non-canonical DAG-CBOR: %v", err)
	}
}

func TestShardedRootKeepsFieldsItDoesNotKnow(t *testing.T) {
	ctx := context.Background()
	link := blake3CID(multicodec.Raw, []byte("v"))
	m := map[string]any{
		"manifest_version": "sharded_zarr_v1", "metadata": map[string]any{}, "note": "kept",
		"chunks": map[string]any{
			"array_shape": []any{int64(4)}, "chunk_shape": []any{int64(2)}, "extra": []any{link},
			"sharding_config": map[string]any{"chunks_per_shard": int64(4), "also": true},
			"shard_cids":      []any{nil},
		},
	}
	b := rootBlock(t, m)
	cas := NewMemoryCAS()
	id, _ := cas.Save(ctx, b, multicodec.DagCbor)
	s, err := OpenShardedZarrStore(ctx, cas, id)
	if err != nil {
		t.Fatal(err)
	}
	// "c/1" of an unrecorded v1 root is a metadata key; "/c/1" is the index's chunk 1, and the
	// first one written records the primary: "", the root array.
	if err := s.Set(ctx, "/c/1", []byte("chunk")); err != nil {
		t.Fatal(err)
	}
	root, err := s.Flush(ctx)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := cas.Load(ctx, root)
	v, err := DagCBOR.Decode(got)
	if err != nil {
		t.Fatal(err)
	}
	gm := v.(map[string]any)
	chunks := gm["chunks"].(map[string]any)
	if gm["note"] != "kept" || chunks["extra"] == nil || chunks["sharding_config"].(map[string]any)["also"] != true {
		t.Errorf("unknown fields lost: %v", gm)
	}
	if chunks["primary_array_path"] != "" {
		t.Errorf("primary_array_path = %v, want \"\"", chunks["primary_array_path"])
	}
	if b, err := s.Get(ctx, "c/1", ByteRange{}); err != nil || string(b) != "chunk" {
		t.Errorf("get c/1 = %q, %v", b, err)
	}
}

func TestIsShardedRootTellsLayoutsApart(t *testing.T) {
	v := loadShardedVector(t, "b_sharded_v2_8f8f13cd")
	if !IsShardedRoot(mustHex(t, v.Steps[0].RootHex)) {
		t.Error("a v2 root is not recognised")
	}
	c := loadShardedVector(t, "c_sharded_v1_8f8f13cd")
	if !IsShardedRoot(mustHex(t, c.Steps[2].RootHex)) {
		t.Error("a legacy v1 root is not recognised")
	}
	empty := testdag.Node(nil) // an empty HAMT node: 256 slots
	m, _ := DagCBOR.Encode(map[string]any{"metadata": map[string]any{}})
	for name, b := range map[string][]byte{"a HAMT node": empty, "a map without manifest_version": m, "nothing": nil, "garbage": []byte("\xa1\x61")} {
		if IsShardedRoot(b) {
			t.Errorf("%s is taken for a sharded root", name)
		}
	}
}

// kuboLikeCAS saves any block over chunk bytes as a UnixFS file, as Kubo's add does: a shard or a
// root can come back as a dag-pb CID.
type kuboLikeCAS struct {
	*MemoryCAS
	chunk int64
}

func (k kuboLikeCAS) Save(ctx context.Context, data []byte, codec multicodec.Code) (cid.Cid, error) {
	if int64(len(data)) <= k.chunk {
		return k.MemoryCAS.Save(ctx, data, codec)
	}
	root, blocks, err := testdag.ImportFile(ctx, data, k.chunk, 8)
	if err != nil {
		return cid.Undef, err
	}
	for _, b := range blocks {
		if err := k.Put(ctx, b.ID, b.Data); err != nil {
			return cid.Undef, err
		}
	}
	return root, nil
}

func TestShardedStoreReadsShardsAndRootsStoredAsUnixFSFiles(t *testing.T) {
	ctx := context.Background()
	cas := kuboLikeCAS{NewMemoryCAS(), 256}
	s, err := NewShardedZarrStore(cas, WithChunksPerShard(64)) // a full shard is 2,627 bytes
	if err != nil {
		t.Fatal(err)
	}
	meta := `{"zarr_format":3,"node_type":"array","shape":[64,64],"chunk_grid":{"name":"regular","configuration":{"chunk_shape":[8,8]}}}`
	if err := s.Set(ctx, "g/a/zarr.json", []byte(meta)); err != nil {
		t.Fatal(err)
	}
	for i := range 8 {
		for j := range 8 {
			if err := s.Set(ctx, fmt.Sprintf("g/a/c/%d/%d", i, j), []byte(fmt.Sprint(i, j))); err != nil {
				t.Fatal(err)
			}
		}
	}
	root, err := s.Flush(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if root.Prefix().Codec != uint64(multicodec.DagPb) {
		t.Fatalf("the root is %s, not a file: the test does not test files", root)
	}
	ro, err := OpenShardedZarrStore(ctx, cas, root, WithShardedReadOnly(), WithShardedVerifyBlocks())
	if err != nil {
		t.Fatal(err)
	}
	if a := ro.Arrays(); len(a) != 1 || a[0].StoredShards != 1 || a[0].Shards != 1 {
		t.Fatalf("arrays %+v", a)
	}
	if id := ro.root.arrays["g/a"].shards[0]; id.Prefix().Codec != uint64(multicodec.DagPb) {
		t.Fatalf("the shard is %s, not a file", id)
	}
	if b, err := ro.Get(ctx, "g/a/c/7/3", ByteRange{}); err != nil || string(b) != "7 3" {
		t.Errorf("get = %q, %v", b, err)
	}
	if n, err := ro.ChunkCount(ctx, "g/a"); err != nil || n != 64 {
		t.Errorf("chunk count %d, %v", n, err)
	}
}

func TestShardedV1InferredPrimaryIsExclusiveAndRecordedByAWritableOpen(t *testing.T) {
	ctx := context.Background()
	cas := NewMemoryCAS()
	// A 3.3-style root: chunks in the index, no primary_array_path, and temp's metadata declaring
	// the index's geometry.
	meta := []byte(`{"zarr_format":3,"node_type":"array","shape":[4,6],"chunk_grid":{"configuration":{"chunk_shape":[2.0,2]}}}`)
	metaID, _ := cas.Save(ctx, meta, multicodec.Raw)
	chunkID, _ := cas.Save(ctx, []byte("c00"), multicodec.Raw)
	shard, err := encodeShard([]cid.Cid{chunkID, cid.Undef, cid.Undef, cid.Undef})
	if err != nil {
		t.Fatal(err)
	}
	shardID, _ := cas.Save(ctx, shard, multicodec.DagCbor)
	legacy := rootBlock(t, map[string]any{
		"manifest_version": "sharded_zarr_v1",
		"metadata":         map[string]any{"temp/zarr.json": metaID},
		"chunks": map[string]any{
			"array_shape": []any{int64(4), int64(6)}, "chunk_shape": []any{int64(2), int64(2)},
			"sharding_config": map[string]any{"chunks_per_shard": int64(4)},
			"shard_cids":      []any{shardID, nil},
		},
	})
	root, _ := cas.Save(ctx, legacy, multicodec.DagCbor)

	ro, err := OpenShardedZarrStore(ctx, cas, root, WithShardedReadOnly())
	if err != nil {
		t.Fatal(err)
	}
	if b, err := ro.Get(ctx, "temp/c/0/0", ByteRange{}); err != nil || string(b) != "c00" {
		t.Errorf("get temp/c/0/0 = %q, %v", b, err)
	}
	// Without inference, any name would read the index (as c3a shows); inferred, only temp does.
	if _, err := ro.Get(ctx, "other/c/0/0", ByteRange{}); !errors.Is(err, ErrNotFound) {
		t.Errorf("get other/c/0/0 = %v; the inferred primary is exclusive", err)
	}
	if keys := collectKeys(t, ro.List(ctx)); !slices.Equal(keys, []string{"temp/zarr.json", "temp/c/0/0"}) {
		t.Errorf("list = %q", keys)
	}

	rw, err := OpenShardedZarrStore(ctx, cas, root)
	if err != nil {
		t.Fatal(err)
	}
	again, err := rw.Flush(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if again == root {
		t.Fatal("a writable open did not record the inferred primary")
	}
	b, _ := cas.Load(ctx, again)
	r, err := decodeShardedRoot(b)
	if err != nil || !r.v1Recorded || r.recorded != "temp" {
		t.Errorf("recorded primary %q (%v), want temp", r.recorded, err)
	}
}

func TestShardedGraftOutsideTheTargetGraftsNothing(t *testing.T) {
	ctx := context.Background()
	cas := NewMemoryCAS()
	src := newV2Store(t, cas, "0/temp/zarr.json", temp4x6, "0/temp/c/0/0", "a", "0/temp/c/0/2", "b")
	srcRoot, err := src.Flush(ctx)
	if err != nil {
		t.Fatal(err)
	}
	dst := newV2Store(t, cas, "0/temp/zarr.json", temp4x6)
	before, err := dst.Flush(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := dst.Graft(ctx, srcRoot, []int64{1, 1}, "", ""); !errors.Is(err, ErrInvalidChunkKey) {
		t.Fatalf("graft of (0,2) to (1,3) in a 2×3 grid: %v", err)
	}
	if after, _ := dst.Flush(ctx); after != before {
		t.Error("a failed graft changed the store")
	}
	if err := dst.Graft(ctx, srcRoot, []int64{1, 0}, "0/temp", "0/temp"); err != nil {
		t.Fatal(err)
	}
	if b, err := dst.Get(ctx, "0/temp/c/1/0", ByteRange{}); err != nil || string(b) != "a" {
		t.Errorf("grafted chunk = %q, %v", b, err)
	}
	if err := dst.Graft(ctx, srcRoot, []int64{0}, "", ""); !errors.Is(err, ErrInvalidShape) {
		t.Errorf("an offset of the wrong rank: %v", err)
	}
	if err := dst.Graft(ctx, srcRoot, []int64{0, 0}, "0/nope", ""); !errors.Is(err, ErrUnregisteredArray) {
		t.Errorf("an unknown source array: %v", err)
	}
}

func TestShardedSetCIDPointsAtBlocksWithoutSavingThem(t *testing.T) {
	ctx := context.Background()
	cas := NewMemoryCAS()
	meta, _ := cas.Save(ctx, []byte(temp4x6), multicodec.Raw)
	chunk, _ := cas.Save(ctx, []byte("chunk"), multicodec.Raw)
	s := newV2Store(t, cas)
	if err := s.SetCID(ctx, "0/temp/zarr.json", meta); err != nil {
		t.Fatal(err)
	}
	before := cas.Len()
	if err := s.SetCID(ctx, "0/temp/c/1/2", chunk); err != nil {
		t.Fatal(err)
	}
	if cas.Len() != before {
		t.Error("SetCID of a chunk saved a block")
	}
	if b, err := s.Get(ctx, "0/temp/c/1/2", ByteRange{}); err != nil || string(b) != "chunk" {
		t.Errorf("get = %q, %v", b, err)
	}
	if ok, err := s.Exists(ctx, "0/zarr.json"); err != nil || !ok {
		t.Errorf("the parent group was not created: %v, %v", ok, err)
	}
	if a := s.Arrays(); len(a) != 1 || a[0].Path != "0/temp" || a[0].DirtyShards != 1 || !slices.Equal(a[0].ChunkGrid, []int64{2, 3}) {
		t.Errorf("arrays %+v", a)
	}
}

// failingCAS fails every dag-cbor Save while fail is set.
type failingCAS struct {
	*MemoryCAS
	fail atomic.Bool
}

func (f *failingCAS) Save(ctx context.Context, data []byte, codec multicodec.Code) (cid.Cid, error) {
	if f.fail.Load() && codec == multicodec.DagCbor {
		return cid.Undef, errors.New("store down")
	}
	return f.MemoryCAS.Save(ctx, data, codec)
}

func TestShardedFailedFlushCanBeRetried(t *testing.T) {
	ctx := context.Background()
	want, err := newV2Store(t, NewMemoryCAS(), "0/temp/zarr.json", temp4x6, "0/temp/c/1/1", "x").Flush(ctx)
	if err != nil {
		t.Fatal(err)
	}
	cas := &failingCAS{MemoryCAS: NewMemoryCAS()}
	s := newV2Store(t, cas, "0/temp/zarr.json", temp4x6, "0/temp/c/1/1", "x")
	cas.fail.Store(true)
	if _, err := s.Flush(ctx); err == nil {
		t.Fatal("flush succeeded on a failing store")
	}
	cas.fail.Store(false)
	if got, err := s.Flush(ctx); err != nil || got != want {
		t.Errorf("retried flush = %s, %v; want %s", got, err, want)
	}
}

// Many goroutines write and read chunks and flush at once (run with -race); afterwards every
// chunk reads back, from the store and from a reopen of its root.
func TestShardedConcurrentReadersAndWriters(t *testing.T) {
	ctx := context.Background()
	cas := NewMemoryCAS()
	meta := `{"zarr_format":3,"node_type":"array","shape":[32,32],"chunk_grid":{"configuration":{"chunk_shape":[2,2]}}}`
	s := newV2Store(t, cas, "g/a/zarr.json", meta)
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(2)
		go func() { // writer: its own rows
			defer wg.Done()
			for i := w * 4; i < w*4+4; i++ {
				for j := range 16 {
					if err := s.Set(ctx, fmt.Sprintf("g/a/c/%d/%d", i, j), []byte(fmt.Sprint(i, "/", j))); err != nil {
						t.Error(err)
						return
					}
				}
				if _, err := s.Flush(ctx); err != nil {
					t.Error(err)
				}
			}
		}()
		go func() { // reader: whatever is there must be right
			defer wg.Done()
			for n := range 200 {
				i, j := (n*7+w)%16, (n*3)%16
				b, err := s.Get(ctx, fmt.Sprintf("g/a/c/%d/%d", i, j), ByteRange{})
				if err != nil && !errors.Is(err, ErrNotFound) {
					t.Error(err)
					return
				}
				if err == nil && string(b) != fmt.Sprint(i, "/", j) {
					t.Errorf("chunk %d/%d = %q", i, j, b)
				}
				if _, err := s.ListDir(ctx, "g/a/c"); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	root, err := s.Flush(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ro, err := OpenShardedZarrStore(ctx, cas, root, WithShardedReadOnly())
	if err != nil {
		t.Fatal(err)
	}
	for _, st := range []*ShardedZarrStore{s, ro} {
		if n, err := st.ChunkCount(ctx, "g/a"); err != nil || n != 256 {
			t.Fatalf("%d chunks, %v", n, err)
		}
		for i := range 16 {
			for j := range 16 {
				if b, err := st.Get(ctx, fmt.Sprintf("g/a/c/%d/%d", i, j), ByteRange{}); err != nil || string(b) != fmt.Sprint(i, "/", j) {
					t.Fatalf("chunk %d/%d = %q, %v", i, j, b, err)
				}
			}
		}
	}
}

func TestShardedDeleteDir(t *testing.T) {
	ctx := context.Background()
	cas := NewMemoryCAS()
	s := newV2Store(t, cas, "0/temp/zarr.json", temp4x6, "0/temp/c/0/0", "a", "0/lat/zarr.json", `{"shape":[4],"chunks":[4]}`)
	if _, err := s.Flush(ctx); err != nil { // the shards are read back through the cache from here on
		t.Fatal(err)
	}
	if err := s.DeleteDir(ctx, "0/temp/"); err != nil {
		t.Fatal(err)
	}
	if keys := collectKeys(t, s.List(ctx)); !slices.Equal(sortedCopy(keys), []string{"0/lat/zarr.json", "0/zarr.json", "zarr.json"}) {
		t.Errorf("after delete dir 0/temp: %q", keys)
	}
	if a := s.Arrays(); len(a) != 1 || a[0].Path != "0/lat" {
		t.Errorf("arrays %+v", a)
	}
	if err := s.DeleteDir(ctx, ""); err != nil {
		t.Fatal(err)
	}
	if keys := collectKeys(t, s.List(ctx)); len(keys) != 0 || len(s.Arrays()) != 0 {
		t.Errorf("after delete dir \"\": %q, %d arrays", keys, len(s.Arrays()))
	}
	if st := s.cache.stats(); st.Shards != 0 {
		t.Errorf("%d shards still cached after the store was cleared", st.Shards)
	}
	// The store's default chunks per shard survives, as in py-hamt.
	if err := s.Set(ctx, "0/temp/zarr.json", []byte(temp4x6)); err != nil {
		t.Fatal(err)
	}
	if a := s.Arrays(); len(a) != 1 || a[0].ChunksPerShard != 4 {
		t.Errorf("arrays %+v", a)
	}

	v1, err := NewShardedZarrStoreV1(cas, []int64{4, 6}, []int64{2, 2}, WithChunksPerShard(4))
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"temp/zarr.json", "temp/c/0/0", "temp/c/1/1", "lat/c/0", "tempo/zarr.json"} {
		if err := v1.Set(ctx, k, []byte(`{"x":1}`)); err != nil {
			t.Fatal(err)
		}
	}
	if err := v1.DeleteDir(ctx, "temp"); err != nil {
		t.Fatal(err)
	}
	if keys := collectKeys(t, v1.List(ctx)); !slices.Equal(sortedCopy(keys), []string{"lat/c/0", "tempo/zarr.json"}) {
		t.Errorf("v1 after delete dir temp: %q", keys)
	}
}

func TestShardedZarrV2MetadataRegistersAndCreatesZgroups(t *testing.T) {
	ctx := context.Background()
	cas := NewMemoryCAS()
	s := newV2Store(t, cas, "g/h/a/.zarray", `{"zarr_format":2,"shape":[5,5],"chunks":[2,2],"dtype":"<u1"}`)
	for _, k := range []string{".zgroup", "g/.zgroup", "g/h/.zgroup"} {
		b, err := s.Get(ctx, k, ByteRange{})
		if err != nil || string(b) != `{"zarr_format": 2}` {
			t.Errorf("%s = %q, %v", k, b, err)
		}
	}
	if ok, _ := s.Exists(ctx, "zarr.json"); ok {
		t.Error("zarr v2 metadata created a v3 group")
	}
	// Zarr v2 chunk keys, dotted and slashed, name chunks of registered arrays.
	if err := s.Set(ctx, "g/h/a/2.1", []byte("dotted")); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"g/h/a/2.1", "g/h/a/2/1", "g/h/a/c/2/1", "h/a/2.1"} {
		if b, err := s.Get(ctx, k, ByteRange{}); err != nil || string(b) != "dotted" {
			t.Errorf("get %q = %q, %v", k, b, err)
		}
	}
	// Listed as the array's metadata names them (a .zarray without dimension_separator: "."),
	// not in the v3 form py-hamt lists, which a Zarr reader of this array never asks for.
	if keys := collectKeys(t, s.List(ctx)); !slices.Contains(keys, "g/h/a/2.1") || slices.Contains(keys, "g/h/a/c/2/1") {
		t.Errorf("list gives chunks in v3 form: %q", keys)
	}
	if err := s.Set(ctx, "g/h/a/3.0", []byte("outside")); err != nil { // row 3 of a 3×3 grid
		t.Errorf("set outside the grid: %v", err)
	}
	if got, err := s.ListDir(ctx, "g/h/a"); err != nil || !slices.Equal(got, []string{".zarray", "2.1"}) {
		t.Errorf("list dir = %q, %v", got, err)
	}
}

func TestShardedResizeDropsChunksOutsideTheGridAndNullsEmptyShards(t *testing.T) {
	ctx := context.Background()
	cas := NewMemoryCAS()
	// 4×6 in 2×2 chunks: a 2×3 grid, shards of 4: shard 0 = (0,0) (0,1) (0,2) (1,0), shard 1 = (1,1) (1,2).
	s := newV2Store(t, cas, "0/temp/zarr.json", temp4x6, "0/temp/c/0/0", "a", "0/temp/c/1/2", "b")
	if _, err := s.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	stored := func() []bool {
		var out []bool
		for _, id := range s.root.arrays["0/temp"].shards {
			out = append(out, id.Defined())
		}
		return out
	}
	// 4×4: a 2×2 grid, one shard: (1,2) falls outside, (0,0) stays.
	if err := s.Resize(ctx, "0/temp", []int64{4, 4}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(ctx, "0/temp/c/1/2", ByteRange{}); !errors.Is(err, ErrNotFound) {
		t.Errorf("a chunk outside the new grid: %v", err)
	}
	if b, err := s.Get(ctx, "0/temp/c/0/0", ByteRange{}); err != nil || string(b) != "a" {
		t.Errorf("chunk (0,0) = %q, %v", b, err)
	}
	if _, err := s.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if got := stored(); !slices.Equal(got, []bool{true}) {
		t.Errorf("shards stored %v", got)
	}
	// 2×2 → 6×2: the first dimension grows (fast path), nothing moves, new shards are null.
	if err := s.Resize(ctx, "0/temp", []int64{12, 4}); err != nil {
		t.Fatal(err)
	}
	if got := stored(); !slices.Equal(got, []bool{true, false, false}) {
		t.Errorf("shards stored after growing %v", got)
	}
	// Moving (0,0) out of a grid without it leaves only null shards.
	if err := s.Delete(ctx, "0/temp/c/0/0"); err != nil {
		t.Fatal(err)
	}
	if err := s.Resize(ctx, "0/temp", []int64{12, 2}); err != nil {
		t.Fatal(err)
	}
	if got := stored(); !slices.Equal(got, []bool{false, false}) {
		t.Errorf("shards stored after emptying %v: resize nulls all-null shards", got)
	}
	if err := s.Resize(ctx, "0/temp", []int64{4}); !errors.Is(err, ErrInvalidShape) {
		t.Errorf("a resize to another rank: %v", err)
	}

	// v1: metadata of any array with a shape of the index's rank resizes the index.
	v1, err := NewShardedZarrStoreV1(cas, []int64{4, 6}, []int64{2, 2}, WithChunksPerShard(4))
	if err != nil {
		t.Fatal(err)
	}
	if err := v1.Set(ctx, "temp/zarr.json", []byte(`{"shape":[8,6]}`)); err != nil {
		t.Fatal(err)
	}
	if a := v1.Arrays(); !slices.Equal(a[0].Shape, []int64{8, 6}) || a[0].Shards != 3 {
		t.Errorf("v1 index after metadata of shape 8×6: %+v", a[0])
	}
}

func TestShardedMigrationOfANestedPrimaryAddsItsGroups(t *testing.T) {
	ctx := context.Background()
	cas := NewMemoryCAS()
	v1, err := NewShardedZarrStoreV1(cas, []int64{4}, []int64{2}, WithChunksPerShard(2))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range map[string]string{
		"zarr.json":      `{"zarr_format":3,"node_type":"group","consolidated_metadata":{"kind":"inline"}}`,
		"temp/zarr.json": `{"zarr_format":3,"node_type":"array","shape":[4]}`,
		"temp/c/1":       "chunk",
		"lat/zarr.json":  `{"zarr_format":3,"node_type":"array","shape":[4]}`,
	} {
		if err := v1.Set(ctx, k, []byte(v)); err != nil {
			t.Fatal(err)
		}
	}
	root, err := v1.MigrateToV2(ctx, "grp/temp")
	if err != nil {
		t.Fatal(err)
	}
	ro, err := OpenShardedZarrStore(ctx, cas, root, WithShardedReadOnly())
	if err != nil {
		t.Fatal(err)
	}
	keys := sortedCopy(collectKeys(t, ro.List(ctx)))
	want := []string{"grp/lat/zarr.json", "grp/temp/c/1", "grp/temp/zarr.json", "grp/zarr.json", "zarr.json"}
	if !slices.Equal(keys, want) {
		t.Errorf("keys after migration %q\nwant %q", keys, want)
	}
	if b, err := ro.Get(ctx, "temp/c/1", ByteRange{}); err != nil || string(b) != "chunk" {
		t.Errorf("chunk through the read redirect = %q, %v", b, err)
	}
	if b, _ := ro.Get(ctx, "zarr.json", ByteRange{}); string(b) != `{"zarr_format": 3, "node_type": "group"}` {
		t.Errorf("the root group keeps consolidated_metadata: %s", b)
	}
	if _, err := ro.MigrateToV2(ctx, "x"); !errors.Is(err, ErrReadOnly) {
		t.Errorf("migrate of a read-only store: %v", err)
	}
	rw, _ := OpenShardedZarrStore(ctx, cas, root)
	if _, err := rw.MigrateToV2(ctx, "x"); err == nil {
		t.Error("a v2 store migrated again")
	}
}
