package hamt

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/multiformats/go-multicodec"
	"pgregory.net/rapid"
)

// TestShardedOneMetadataBlockUnderBothNamesListsEachArrayByItsOwn: one block may be the .zarray
// of one array and the zarr.json of another (it has the fields of both) and names chunks
// differently to each (a dimension_separator "/" for the first, the default v3 encoding for the
// second). The encoding cache was keyed by CID alone, so whichever array was listed first named
// the other's chunks: "0/b/c/1/1" was listed (exported, converted) as "0/b/1/1", where a Zarr v3
// reader of 0/b finds nothing.
func TestShardedOneMetadataBlockUnderBothNamesListsEachArrayByItsOwn(t *testing.T) {
	ctx := context.Background()
	doc := `{"zarr_format":3,"node_type":"array","shape":[4,4],"chunks":[2,2],"dtype":"|u1","dimension_separator":"/",` +
		`"data_type":"uint8","chunk_grid":{"name":"regular","configuration":{"chunk_shape":[2,2]}},"fill_value":0,"codecs":[{"name":"bytes"}]}`
	group := `{"zarr_format":3,"node_type":"group","attributes":{}}`
	for _, order := range [][]string{{"0/a/.zarray", "0/b/zarr.json"}, {"0/b/zarr.json", "0/a/.zarray"}} {
		cas := NewMemoryCAS()
		w := newV2Store(t, cas, "zarr.json", group, "0/zarr.json", group, order[0], doc, order[1], doc, "0/a/1/1", "A", "0/b/c/1/1", "B")
		root, err := w.Flush(ctx)
		if err != nil {
			t.Fatal(err)
		}
		s, err := OpenShardedZarrStore(ctx, cas, root, WithShardedReadOnly())
		if err != nil {
			t.Fatal(err)
		}
		for name, z := range map[string]*ShardedZarrStore{"written": w, "reopened": s} {
			keys := collectKeys(t, z.List(ctx))
			if !slices.Contains(keys, "0/a/1/1") || !slices.Contains(keys, "0/b/c/1/1") {
				t.Errorf("%v, %s: lists %q; want 0/a/1/1 and 0/b/c/1/1", order, name, keys)
			}
		}
	}
}

// TestShardedClassicChunkKeysDoNotSortEveryArray: a zarr-v2 style key ("0/big/1/1") was matched
// against the registered arrays by cloning and sorting all their paths, for every key: a Get, and
// each name a listing checks. A root of 20,000 arrays made a listing of 10,000 chunks take 9.5 s
// (9.5 ms now) and every Get allocate a copy of the paths. The paths that can fit are the key's
// own prefixes; a Get now allocates the same whatever the number of arrays.
func TestShardedClassicChunkKeysDoNotSortEveryArray(t *testing.T) {
	ctx := context.Background()
	perGet := func(arrays int) uint64 {
		cas := NewMemoryCAS()
		chunk, err := cas.Save(ctx, []byte("x"), multicodec.Raw)
		if err != nil {
			t.Fatal(err)
		}
		sb, err := DagCBOR.Encode([]any{chunk, chunk, chunk, chunk})
		if err != nil {
			t.Fatal(err)
		}
		shard, err := cas.Save(ctx, sb, multicodec.DagCbor)
		if err != nil {
			t.Fatal(err)
		}
		index := func(n int64, shard any) map[string]any {
			return map[string]any{"array_shape": []any{n, n}, "chunk_shape": []any{int64(1), int64(1)}, "shard_cids": []any{shard},
				"sharding_config": map[string]any{"chunks_per_shard": int64(4), "order": "C"}}
		}
		m := map[string]any{"0/big": index(2, shard)}
		for i := range arrays {
			m[fmt.Sprintf("0/a%d", i)] = index(1, nil)
		}
		root, err := cas.Save(ctx, rootBlock(t, map[string]any{"manifest_version": "sharded_zarr_v2", "metadata": map[string]any{}, "arrays": m}), multicodec.DagCbor)
		if err != nil {
			t.Fatal(err)
		}
		s, err := OpenShardedZarrStore(ctx, cas, root, WithShardedReadOnly())
		if err != nil {
			t.Fatal(err)
		}
		get := func() {
			if b, err := s.Get(ctx, "0/big/1/1", ByteRange{}); err != nil || string(b) != "x" {
				t.Fatalf("Get(0/big/1/1) = %q, %v", b, err)
			}
		}
		get() // the shard is cached
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		const n = 50
		for range n {
			get()
		}
		runtime.ReadMemStats(&after)
		return (after.TotalAlloc - before.TotalAlloc) / n
	}
	few, many := perGet(1), perGet(20000)
	if many > few+4096 {
		t.Errorf("a Get allocates %d bytes on a root of 20,001 arrays, %d on one of 2", many, few)
	}
}

// TestShardedKeyBesideTheGroupReadsItsOwnValue: a store whose arrays sit under one group "0"
// reads "t/zarr.json" as "0/t/zarr.json" (py-hamt's redirect), but when it holds "t/zarr.json"
// itself, that key is listed under its own name and must read its own bytes. It read the
// group's: HAMT -> sharded -> HAMT gave another root, and an export or a serve gave the array's
// metadata for the other group's, all without an error. ListDir("t") lists what is beside the
// group too.
func TestShardedKeyBesideTheGroupReadsItsOwnValue(t *testing.T) {
	ctx := context.Background()
	group := `{"zarr_format":3,"node_type":"group","attributes":{}}`
	files := map[string]string{
		"zarr.json": group, "0/zarr.json": group, "0/t/zarr.json": arrayDoc(`{"name":"default"}`), "0/t/c/1/2": "chunk",
		"t/zarr.json": `{"zarr_format":3,"node_type":"group","attributes":{"beside":1}}`, "t/x/zarr.json": group,
	}
	cas := NewMemoryCAS()
	h := hamtDataset(t, cas, files)
	sh, err := ConvertZarr(ctx, cas, h, LayoutSharded)
	if err != nil {
		t.Fatal(err)
	}
	s, err := OpenShardedZarrStore(ctx, cas, sh, WithShardedReadOnly())
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range files {
		if b, err := s.Get(ctx, k, ByteRange{}); err != nil || string(b) != v {
			t.Errorf("Get(%q) = %q, %v; want %q", k, b, err, v)
		}
	}
	// The redirect still reads the group's keys the store does not hold beside it.
	if b, err := s.Get(ctx, "t/c/1/2", ByteRange{}); err != nil || string(b) != "chunk" {
		t.Errorf("Get(t/c/1/2) = %q, %v", b, err)
	}
	if got, want := mustListDir(t, s, "t"), []string{"c", "x", "zarr.json"}; !slices.Equal(got, want) {
		t.Errorf("ListDir(t) = %q, want %q", got, want)
	}
	back, err := ConvertZarr(ctx, cas, sh, LayoutHAMT)
	if err != nil {
		t.Fatal(err)
	}
	if back != h {
		t.Errorf("HAMT -> sharded -> HAMT gave %s, want the original %s", back, h)
	}
}

func mustListDir(t *testing.T, z Zarr, prefix string) []string {
	t.Helper()
	got, err := z.ListDir(context.Background(), prefix)
	if err != nil {
		t.Fatalf("ListDir(%q): %v", prefix, err)
	}
	return got
}

// TestPyJSONWideObjectsAreIndexed: an object's keys were found by a linear search, so decoding
// an object of n keys made n²/2 comparisons (each converting a key to a string): a hostile
// zarr.json of 40,000 keys (429 KB) took 22 s to read for its chunk key encoding, on every
// listing, import or conversion of the dataset (4 MB: over half an hour). Wide objects keep a
// map of their keys; lookups, replacements and removals agree with the order-keeping list.
func TestPyJSONWideObjectsAreIndexed(t *testing.T) {
	const n = 40000
	var b []byte
	b = append(b, `{"zarr_format":3`...)
	for i := range n {
		b = fmt.Appendf(b, `,"k%d":%d`, i, i)
	}
	b = append(b, `,"k7":"again","chunk_key_encoding":{"name":"v2","configuration":{"separator":"/"}}}`...)
	d, err := decodePyJSONObject(b)
	if err != nil {
		t.Fatal(err)
	}
	if d.idx == nil || len(d.idx) != len(d.keys) {
		t.Fatalf("an object of %d keys has an index of %d", len(d.keys), len(d.idx))
	}
	if len(d.keys) != n+2 || !d.get("k7").isStr("again") || d.index("k7") != 8 || d.get("k39999").num != "39999" {
		t.Fatalf("%d keys, k7 = %v at %d", len(d.keys), d.get("k7"), d.index("k7"))
	}
	if !d.pop("k0") || d.get("k0") != nil || d.index("k7") != 7 || d.pop("k0") {
		t.Fatalf("after pop(k0): k7 at %d", d.index("k7"))
	}
	if enc := chunkEncodingOf(false, b); !enc.v2 || enc.sep != '/' {
		t.Fatalf("encoding %+v", enc)
	}
	// Python's dict: a key given twice keeps its first place and its last value.
	small, err := decodePyJSONObject([]byte(`{"a":1,"b":2,"a":3}`))
	if err != nil || small.idx != nil || small.index("a") != 0 || small.get("a").num != "3" || len(small.keys) != 2 {
		t.Fatalf("small object: %+v, %v", small, err)
	}
}

// TestShardedResizeToALargeGridAllocatesForTheChunksItHolds: a resize that moves chunks (any
// dimension but the first changes) made every new shard, cps entries each, before placing the
// few chunks there were: one zarr.json of 218 bytes asking for a 4 × 4e9 grid had `hamt set`,
// an import or a conversion allocate 256 GB and be killed. Only shards that hold a chunk are
// made now; here 16,000 shards of 1,000 cost 256 MB before, under 2 MB now.
func TestShardedResizeToALargeGridAllocatesForTheChunksItHolds(t *testing.T) {
	ctx := context.Background()
	cas := NewMemoryCAS()
	s, err := NewShardedZarrStore(cas, WithChunksPerShard(1000))
	if err != nil {
		t.Fatal(err)
	}
	doc := func(shape string) []byte {
		return []byte(`{"zarr_format":3,"node_type":"array","shape":` + shape + `,"data_type":"uint8","chunk_grid":{"name":"regular","configuration":{"chunk_shape":[1,1]}},"fill_value":0,"codecs":[{"name":"bytes"}]}`)
	}
	for k, v := range map[string][]byte{"0/t/zarr.json": doc("[4,4]")} {
		if err := s.Set(ctx, k, v); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Set(ctx, "0/t/c/1/3", []byte("chunk")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	if err := s.Set(ctx, "0/t/zarr.json", doc("[4,4000000]")); err != nil {
		t.Fatal(err)
	}
	runtime.ReadMemStats(&after)
	if got := after.TotalAlloc - before.TotalAlloc; got > 2<<20 {
		t.Errorf("the resize allocated %d bytes", got)
	}
	if b, err := s.Get(ctx, "0/t/c/1/3", ByteRange{}); err != nil || string(b) != "chunk" {
		t.Fatalf("Get(0/t/c/1/3) after the resize = %q, %v", b, err)
	}
	a := s.Arrays()
	if len(a) != 1 || a[0].Shards != 16000 || a[0].DirtyShards != 1 {
		t.Fatalf("arrays %+v", a)
	}
	if n, err := s.ChunkCount(ctx, "0/t"); err != nil || n != 1 {
		t.Fatalf("ChunkCount = %d, %v", n, err)
	}
	// And back: the chunk returns to its place, the other shards are null.
	if err := s.Set(ctx, "0/t/zarr.json", doc("[4,4]")); err != nil {
		t.Fatal(err)
	}
	root, err := s.Flush(ctx)
	if err != nil {
		t.Fatal(err)
	}
	r, err := OpenShardedZarrStore(ctx, cas, root, WithShardedReadOnly())
	if err != nil {
		t.Fatal(err)
	}
	if keys := collectKeys(t, r.List(ctx)); !slices.Contains(keys, "0/t/c/1/3") {
		t.Fatalf("after resizing back: %q", keys)
	}
}

// TestShardedWritesBoundTheShardsOfAllArrays: MaxShards bounded each index, but not how many a
// store's writes registered: every array's metadata asking for a large grid (a few hundred bytes)
// cost 64 MB, and an import of ten such documents took 640 MB. The shards of all arrays together
// are bounded by MaxShards now, for registration and resize alike.
func TestShardedWritesBoundTheShardsOfAllArrays(t *testing.T) {
	ctx := context.Background()
	s, err := NewShardedZarrStore(NewMemoryCAS(), WithChunksPerShard(1))
	if err != nil {
		t.Fatal(err)
	}
	doc := func(n int) []byte {
		return fmt.Appendf(nil, `{"zarr_format":3,"node_type":"array","shape":[%d],"data_type":"uint8","chunk_grid":{"name":"regular","configuration":{"chunk_shape":[1]}},"fill_value":0,"codecs":[{"name":"bytes"}]}`, n)
	}
	for i, k := range []string{"0/a/zarr.json", "0/b/zarr.json"} {
		if err := s.Set(ctx, k, doc(MaxShards/2)); err != nil {
			t.Fatalf("array %d of %d shards: %v", i, MaxShards/2, err)
		}
	}
	if err := s.Set(ctx, "0/c/zarr.json", doc(1)); !errors.Is(err, ErrInvalidShape) {
		t.Fatalf("a third array past MaxShards together: %v, want ErrInvalidShape", err)
	}
	if err := s.Resize(ctx, "0/a", []int64{MaxShards/2 + 1}); !errors.Is(err, ErrInvalidShape) {
		t.Fatalf("growing an array past MaxShards together: %v, want ErrInvalidShape", err)
	}
	// Shrinking is always allowed, and makes room.
	if err := s.Set(ctx, "0/a/zarr.json", doc(10)); err != nil {
		t.Fatal(err)
	}
	if err := s.Set(ctx, "0/c/zarr.json", doc(10)); err != nil {
		t.Fatal(err)
	}
	if got := len(s.Arrays()); got != 3 {
		t.Fatalf("%d arrays", got)
	}
}

// TestShardedChunksReadUnderTheirArraysNames is a model test of the names chunks are listed
// under: arrays registered in any encoding (zarr.json default or "v2" with "." or "/", .zarray
// with either separator), chunks written under any of the names that reach their slot, metadata
// rewritten to another encoding, chunks deleted; then a Zarr reader, asking each chunk by the
// name the array's metadata gives it now, reads what the model says both from the store and
// from its conversion to the HAMT layout (which holds the keys the store lists), and the HAMT
// converts back to a store holding every key with its value.
func TestShardedChunksReadUnderTheirArraysNames(t *testing.T) {
	ctx := context.Background()
	paths := []string{"0/a", "0/t", "0/b/x", "0/1"}
	type meta struct {
		key, doc string
		v2       bool
		sep      string
	}
	encodings := func(p, shape, chunks string) []meta {
		arr := func(enc string) string {
			return `{"zarr_format":3,"node_type":"array","shape":` + shape + `,"data_type":"uint8","chunk_grid":{"name":"regular","configuration":{"chunk_shape":` + chunks + `}},"chunk_key_encoding":` + enc + `,"fill_value":0,"codecs":[{"name":"bytes"}]}`
		}
		zarray := func(ds string) string {
			return `{"zarr_format":2,"shape":` + shape + `,"chunks":` + chunks + `,"dtype":"|u1"` + ds + `}`
		}
		return []meta{
			{p + "/zarr.json", arr(`{"name":"default"}`), false, ""},
			{p + "/zarr.json", arr(`{"name":"v2","configuration":{"separator":"."}}`), true, "."},
			{p + "/zarr.json", arr(`{"name":"v2","configuration":{"separator":"/"}}`), true, "/"},
			{p + "/.zarray", zarray(""), true, "."},
			{p + "/.zarray", zarray(`,"dimension_separator":"/"`), true, "/"},
		}
	}
	name := func(p string, m meta, coords []string) string {
		if !m.v2 {
			return p + "/c/" + strings.Join(coords, "/")
		}
		return p + "/" + strings.Join(coords, m.sep)
	}
	rapid.Check(t, func(rt *rapid.T) {
		cas := NewMemoryCAS()
		s, err := NewShardedZarrStore(cas, WithChunksPerShard(2))
		if err != nil {
			rt.Fatal(err)
		}
		set := func(k, v string) error { return s.Set(ctx, k, []byte(v)) }
		group := `{"zarr_format":3,"node_type":"group","attributes":{}}`
		for _, k := range []string{"zarr.json", "0/zarr.json", "0/b/zarr.json"} {
			if err := set(k, group); err != nil {
				rt.Fatal(err)
			}
		}
		rank := map[string]int{}
		current := map[string]meta{}
		model := map[string]map[string]string{} // path -> "i,j" -> value
		grid := func(p string) (string, string) {
			if rank[p] == 1 {
				return "[4]", "[2]"
			}
			return "[4,4]", "[2,2]"
		}
		setMeta := func(p string, m meta) {
			if old, ok := current[p]; ok && old.key != m.key {
				if err := s.Delete(ctx, old.key); err != nil {
					rt.Fatal(err)
				}
			}
			if err := set(m.key, m.doc); err != nil {
				rt.Fatal(err)
			}
			current[p] = m
		}
		for _, p := range paths {
			if rapid.Bool().Draw(rt, "array") {
				rank[p] = rapid.IntRange(1, 2).Draw(rt, "rank")
				model[p] = map[string]string{}
				sh, ch := grid(p)
				setMeta(p, rapid.SampledFrom(encodings(p, sh, ch)).Draw(rt, "encoding"))
			}
		}
		if len(rank) == 0 {
			return
		}
		arrays := make([]string, 0, len(rank))
		for _, p := range paths {
			if _, ok := rank[p]; ok {
				arrays = append(arrays, p)
			}
		}
		for i := range rapid.IntRange(1, 30).Draw(rt, "ops") {
			p := rapid.SampledFrom(arrays).Draw(rt, "path")
			coords := make([]string, rank[p])
			for d := range coords {
				coords[d] = fmt.Sprint(rapid.IntRange(0, 1).Draw(rt, "coord"))
			}
			sh, ch := grid(p)
			switch rapid.IntRange(0, 3).Draw(rt, "op") {
			case 0:
				setMeta(p, rapid.SampledFrom(encodings(p, sh, ch)).Draw(rt, "encoding"))
			case 1, 2:
				// Any name that reaches the slot: the v3 one, or the array's v2 ones.
				forms := []string{p + "/c/" + strings.Join(coords, "/"), p + "/" + strings.Join(coords, ".")}
				if current[p].v2 && current[p].sep == "/" {
					forms = append(forms, p+"/"+strings.Join(coords, "/"))
				}
				v := fmt.Sprint("v", i)
				if err := set(rapid.SampledFrom(forms).Draw(rt, "name"), v); err != nil {
					rt.Fatal(err)
				}
				model[p][strings.Join(coords, ",")] = v
			case 3:
				if err := s.Delete(ctx, name(p, current[p], coords)); err != nil && !errors.Is(err, ErrNotFound) {
					rt.Fatal(err)
				}
				delete(model[p], strings.Join(coords, ","))
			}
		}
		root, err := s.Flush(ctx)
		if err != nil {
			rt.Fatal(err)
		}
		h, err := ConvertZarr(ctx, cas, root, LayoutHAMT)
		if err != nil {
			rt.Fatalf("sharded -> HAMT: %v", err)
		}
		hz, err := OpenZarr(ctx, cas, h)
		if err != nil {
			rt.Fatal(err)
		}
		for _, p := range arrays {
			for _, c := range [][]string{{"0"}, {"1"}, {"0", "0"}, {"0", "1"}, {"1", "0"}, {"1", "1"}} {
				if len(c) != rank[p] {
					continue
				}
				k := name(p, current[p], c)
				want, held := model[p][strings.Join(c, ",")]
				for what, z := range map[string]Zarr{"sharded": s, "HAMT": hz} {
					b, err := z.Get(ctx, k, ByteRange{})
					switch {
					case held && (err != nil || string(b) != want):
						rt.Fatalf("%s: Get(%q) = %q, %v; want %q", what, k, b, err, want)
					case !held && !errors.Is(err, ErrNotFound):
						rt.Fatalf("%s: Get(%q) = %q, %v; want ErrNotFound", what, k, b, err)
					}
				}
			}
		}
		back, err := ConvertZarr(ctx, cas, h, LayoutSharded, WithShardedOptions(WithChunksPerShard(2)))
		if err != nil {
			rt.Fatalf("HAMT -> sharded: %v", err)
		}
		b2, err := OpenShardedZarrStore(ctx, cas, back, WithShardedReadOnly())
		if err != nil {
			rt.Fatal(err)
		}
		for k, err := range hz.List(ctx) {
			if err != nil {
				rt.Fatal(err)
			}
			v1, err1 := hz.Get(ctx, k, ByteRange{})
			v2, err2 := b2.Get(ctx, k, ByteRange{})
			if err1 != nil || err2 != nil || string(v1) != string(v2) {
				rt.Fatalf("%q: HAMT %q, %v; back in the sharded layout %q, %v", k, v1, err1, v2, err2)
			}
		}
	})
}

// TestShardedRankZeroChunkInItsIndexReads: a root whose rank-0 array has its one slot set (py-hamt
// never sets it: it keeps "0/s/c" in the metadata, as we do) lists "0/s/c", which Get reads from
// the metadata and finds absent, so a conversion or an export fails on it ("zarr copy 0/s/c: not
// found"). Loud, and only for roots written elsewhere; reading the slot for "0/s/c" would change
// how a write of that key is stored (py-hamt's roots), so it is left open.
func TestShardedRankZeroChunkInItsIndexReads(t *testing.T) {
	t.Skip("open: a rank-0 index's chunk is listed as 'path/c' but not read from the index (see the comment)")
	ctx := context.Background()
	cas := NewMemoryCAS()
	chunk, err := cas.Save(ctx, []byte("x"), multicodec.Raw)
	if err != nil {
		t.Fatal(err)
	}
	sb, err := DagCBOR.Encode([]any{chunk})
	if err != nil {
		t.Fatal(err)
	}
	shard, err := cas.Save(ctx, sb, multicodec.DagCbor)
	if err != nil {
		t.Fatal(err)
	}
	meta, err := cas.Save(ctx, []byte(`{"zarr_format":3,"node_type":"array","shape":[],"data_type":"uint8","chunk_grid":{"name":"regular","configuration":{"chunk_shape":[]}},"fill_value":0,"codecs":[{"name":"bytes"}]}`), multicodec.Raw)
	if err != nil {
		t.Fatal(err)
	}
	idx := map[string]any{"array_shape": []any{}, "chunk_shape": []any{}, "shard_cids": []any{shard},
		"sharding_config": map[string]any{"chunks_per_shard": int64(1), "order": "C"}}
	root, err := cas.Save(ctx, rootBlock(t, map[string]any{"manifest_version": "sharded_zarr_v2",
		"metadata": map[string]any{"0/s/zarr.json": meta}, "arrays": map[string]any{"0/s": idx}}), multicodec.DagCbor)
	if err != nil {
		t.Fatal(err)
	}
	s, err := OpenShardedZarrStore(ctx, cas, root, WithShardedReadOnly())
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range collectKeys(t, s.List(ctx)) {
		if _, err := s.Get(ctx, k, ByteRange{}); err != nil {
			t.Errorf("listed %q does not read: %v", k, err)
		}
	}
	if _, err := ConvertZarr(ctx, cas, root, LayoutHAMT); err != nil {
		t.Errorf("convert: %v", err)
	}
}
