package hamt

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"unicode/utf8"

	"github.com/multiformats/go-multicodec"
)

// shardedRootSeeds are the roots py-hamt wrote in the vectors, and a few made here.
func shardedRootSeeds(t testing.TB) [][]byte {
	var seeds [][]byte
	for _, name := range []string{"b_sharded_v2_8f8f13cd", "c_sharded_v1_8f8f13cd"} {
		v := loadShardedVector(t, name)
		for _, st := range v.Steps {
			seeds = append(seeds, mustHex(t, st.RootHex))
		}
	}
	link := blake3CID(multicodec.Raw, []byte("v"))
	for _, m := range []map[string]any{
		{"manifest_version": "sharded_zarr_v2", "metadata": map[string]any{}, "arrays": map[string]any{}},
		{"manifest_version": "sharded_zarr_v2", "metadata": map[string]any{"zarr.json": link}, "arrays": map[string]any{
			"": map[string]any{"array_shape": []any{}, "chunk_shape": []any{}, "shard_cids": []any{nil},
				"sharding_config": map[string]any{"chunks_per_shard": int64(1)}},
			"g/a": map[string]any{"array_shape": []any{int64(0), int64(5)}, "chunk_shape": []any{int64(1), int64(2)}, "shard_cids": []any{},
				"sharding_config": map[string]any{"chunks_per_shard": int64(3), "order": "C"}},
		}},
		{"manifest_version": "sharded_zarr_v1", "metadata": map[string]any{"t/zarr.json": link, "c/0": link}, "chunks": map[string]any{
			"array_shape": []any{int64(5)}, "chunk_shape": []any{int64(2)}, "shard_cids": []any{link, nil},
			"sharding_config": map[string]any{"chunks_per_shard": int64(2)}, "primary_array_path": "t"}},
	} {
		b, err := DagCBOR.Encode(m)
		if err != nil {
			t.Fatal(err)
		}
		seeds = append(seeds, b)
	}
	return seeds
}

// FuzzShardedRoot opens random bytes as a sharded root. It never panics; a root it refuses is
// ErrMalformedValue; one it accepts is a sharded root by IsShardedRoot, its model encodes to a
// root that decodes to the same model, a flush without changes gives the root back, and after a
// write to every index (and a resize) the store flushes a root that opens again.
func FuzzShardedRoot(f *testing.F) {
	for _, s := range shardedRootSeeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		ctx := context.Background()
		cas := NewMemoryCAS()
		id := blake3CID(multicodec.DagCbor, data)
		if err := cas.Put(ctx, id, data); err != nil {
			t.Fatal(err)
		}
		s, err := OpenShardedZarrStore(ctx, cas, id)
		if err != nil {
			if !errors.Is(err, ErrMalformedValue) {
				t.Fatalf("a refused root is not ErrMalformedValue: %v", err)
			}
			return
		}
		if !IsShardedRoot(data) {
			t.Fatal("an accepted root is not a sharded root to IsShardedRoot")
		}
		r, err := decodeShardedRoot(data)
		if err != nil {
			t.Fatal(err)
		}
		once, err := r.encode()
		if err != nil {
			t.Fatalf("an accepted root does not encode: %v", err)
		}
		r2, err := decodeShardedRoot(once)
		if err != nil {
			t.Fatalf("the encoded root does not decode: %v", err)
		}
		if twice, err := r2.encode(); err != nil || string(twice) != string(once) {
			t.Fatalf("encode∘decode is not stable: %v", err)
		}
		if got, err := s.Flush(ctx); err != nil || got != id {
			t.Fatalf("flush without changes = %s, %v; want %s", got, err, id)
		}
		// Reads may fail (the root's blocks are not there) but never panic.
		for k, err := range s.List(ctx) {
			if err != nil {
				break
			}
			_, _ = s.Get(ctx, k, RangeSuffix(1))
		}
		_, _ = s.ListDir(ctx, "")
		_, _ = s.Exists(ctx, "c/0")

		for _, a := range s.Arrays() {
			if int64(a.ChunksPerShard)*int64(a.Shards) > 1<<16 {
				return // too large to rewrite quickly
			}
		}
		for _, a := range s.Arrays() {
			key := chunkKeyOf(a.Path, make([]int64, len(a.Shape)))
			if s.Version() == 1 {
				key = chunkKeyOf(a.Primary, make([]int64, len(a.Shape)))
			}
			_ = s.Set(ctx, key, []byte("chunk"))
			if len(a.Shape) > 0 {
				grown := append([]int64{a.Shape[0] + 1}, a.Shape[1:]...)
				_ = s.Resize(ctx, a.Path, grown)
			}
		}
		_ = s.Set(ctx, "f/zarr.json", []byte(`{"shape":[3],"chunks":[2]}`))
		root, err := s.Flush(ctx)
		if err != nil {
			if errors.Is(err, ErrMissingBlock) || errors.Is(err, ErrNotFound) {
				return // a shard of the root is not in the store
			}
			t.Fatalf("flush: %v", err)
		}
		if _, err := OpenShardedZarrStore(ctx, cas, root, WithShardedReadOnly()); err != nil {
			t.Fatalf("the store wrote a root it cannot open: %v", err)
		}
	})
}

// FuzzPyJSON decodes random bytes as CPython's json.loads would. It never panics; a refusal is
// errNotJSON or errJSONTooDeep; what it accepts is written back (both layouts) as bytes that
// decode to the same writing; and every document encoding/json finds valid (and is UTF-8) is
// accepted, as Python accepts every RFC 8259 document.
func FuzzPyJSON(f *testing.F) {
	for _, s := range []string{
		`{"a":[1,2.5,"x",null,true],"b":{}}`, `{"f":[1e16,1e-05,-0.0,NaN,-Infinity]}`, `"\ud800\udc00\ud800"`,
		`{"dup":1,"dup":2}`, `[]`, ` {"\u00e9" : "\/"} `, `{"a":1,}`, `01`, `{"a":"\x"}`, "\"\xff\"",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		v, err := decodePyJSON(data)
		if err != nil {
			if !errors.Is(err, errNotJSON) && !errors.Is(err, errJSONTooDeep) {
				t.Fatalf("unexpected error %v", err)
			}
			if errors.Is(err, errNotJSON) && json.Valid(data) && utf8.Valid(data) {
				t.Fatalf("valid JSON refused: %q", data)
			}
			return
		}
		for name, enc := range map[string]func(*pyJSON) []byte{
			"dumps":          encodePyJSON,
			"dumps indent 2": func(v *pyJSON) []byte { return encodePyJSONIndent(v, 2) },
		} {
			out := enc(v)
			again, err := decodePyJSON(out)
			if err != nil {
				t.Fatalf("%s wrote %q, which does not decode: %v", name, out, err)
			}
			if out2 := enc(again); string(out2) != string(out) {
				t.Fatalf("%s is not stable:\n %q\n %q", name, out, out2)
			}
		}
	})
}

// FuzzChunkEncodingOf reads random bytes as an array's metadata document for the name of its
// chunks: it never panics, and gives the default encoding or a v2 one with "." or "/".
func FuzzChunkEncodingOf(f *testing.F) {
	for _, s := range []string{
		arrayDoc(`{"name":"v2","configuration":{"separator":"."}}`), arrayDoc(`{"name":"v2"}`),
		arrayDoc(`{"name":"v2","configuration":{"separator":"/"}}`), arrayDoc(`{"name":"v2","configuration":{"separator":"-"}}`),
		arrayDoc(`{"name":"default"}`), `{"dimension_separator":"/"}`, `{"dimension_separator":null}`, `[]`, `{`,
	} {
		f.Add([]byte(s), false)
		f.Add([]byte(s), true)
	}
	f.Fuzz(func(t *testing.T, doc []byte, zarray bool) {
		enc := chunkEncodingOf(zarray, doc)
		if enc.v2 != (enc.sep == '.' || enc.sep == '/') || (!enc.v2 && enc.sep != 0) {
			t.Fatalf("encoding %+v", enc)
		}
		key := chunkKeyIn("a", []int64{1, 2}, enc)
		if want := map[byte]string{0: "a/c/1/2", '.': "a/1.2", '/': "a/1/2"}[enc.sep]; key != want {
			t.Fatalf("key %q, want %q", key, want)
		}
	})
}
