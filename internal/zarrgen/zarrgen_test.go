package main

// Tests that the checked-in testdata/zarr is exactly what the generator writes, and that what it
// writes decodes, with nothing but the standard library, to the values main.go's doc promises.

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"encoding/json"
	"errors"
	"hash/crc32"
	"io"
	"io/fs"
	"maps"
	"math"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// checkedIn is testdata/zarr at the repository root, seen from this package's directory.
const checkedIn = "../../testdata/zarr"

// generated runs the generator into a fresh temporary directory and returns it.
func generated(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "zarr")
	if err := writeHierarchy(dir); err != nil {
		t.Fatalf("writeHierarchy: %v", err)
	}
	return dir
}

// readTree returns every regular file under root by its slash-separated relative path.
func readTree(t *testing.T, root string) map[string][]byte {
	t.Helper()
	files := map[string][]byte{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		b, err := os.ReadFile(p)
		files[filepath.ToSlash(rel)] = b
		return err
	})
	if err != nil {
		t.Fatalf("read %s: %v", root, err)
	}
	return files
}

func readFile(t *testing.T, dir, key string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(key)))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestCheckedInTreeIsWhatTheGeneratorWrites(t *testing.T) {
	want := readTree(t, generated(t))
	got := readTree(t, checkedIn)
	for _, name := range slices.Sorted(maps.Keys(want)) {
		b, ok := got[name]
		switch {
		case !ok:
			t.Errorf("%s: generated but not checked in", name)
		case !sameChunk(t, b, want[name]):
			t.Errorf("%s: checked-in bytes differ from the generator's", name)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(got)) {
		if _, ok := want[name]; !ok {
			t.Errorf("%s: checked in but not generated", name)
		}
	}
	if t.Failed() {
		t.Log("run `go generate ./...` from the repository root and commit testdata/zarr")
	}
}

// sameChunk reports whether two files are equal: byte for byte, or, for gzip members, in what
// they decompress to. Another Go release may compress the same data to other bytes; the data,
// not compress/flate's choices, is what the checked-in tree must keep.
func sameChunk(t *testing.T, a, b []byte) bool {
	t.Helper()
	if bytes.Equal(a, b) {
		return true
	}
	if !bytes.HasPrefix(a, []byte{0x1f, 0x8b}) || !bytes.HasPrefix(b, []byte{0x1f, 0x8b}) {
		return false
	}
	inflate := func(z []byte) []byte {
		r, err := gzip.NewReader(bytes.NewReader(z))
		if err != nil {
			t.Fatal(err)
		}
		out, err := io.ReadAll(r)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	return bytes.Equal(inflate(a), inflate(b))
}

func TestGeneratorRerunsGiveIdenticalTrees(t *testing.T) {
	dir := generated(t)
	first := readTree(t, dir)
	if err := writeHierarchy(dir); err != nil { // over its own output
		t.Fatal(err)
	}
	second := readTree(t, dir)
	if len(first) != len(second) {
		t.Fatalf("rerun wrote %d files, first run %d", len(second), len(first))
	}
	for name, b := range first {
		if !bytes.Equal(b, second[name]) {
			t.Errorf("%s differs between runs", name)
		}
	}
}

func TestGeneratorRefusesToClearADirectoryThatIsNotAHierarchy(t *testing.T) {
	dir := t.TempDir()
	precious := filepath.Join(dir, "precious.txt")
	if err := os.WriteFile(precious, []byte("keep me"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := writeHierarchy(dir); err == nil {
		t.Fatal("writeHierarchy cleared a directory without zarr.json")
	}
	if _, err := os.Stat(precious); err != nil {
		t.Fatalf("precious file gone: %v", err)
	}
}

func TestGzipChunkHoldsTheTemperatureFormula(t *testing.T) {
	dir := generated(t)
	// Chunk (1,1) of a [6 10] array in [3 5] chunks: rows 3–5, columns 5–9.
	b := readFile(t, dir, "surface/temp/c/1/1")
	if len(b) < 10 || b[0] != 0x1f || b[1] != 0x8b || b[2] != 8 {
		t.Fatalf("not an RFC 1952 deflate member: % x", b[:min(len(b), 10)])
	}
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	raw, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	if len(raw) != 3*5*4 {
		t.Fatalf("decompressed %d bytes, want 60", len(raw))
	}
	for k := range 15 {
		y, x := 3+k/5, 5+k%5
		got := math.Float32frombits(binary.LittleEndian.Uint32(raw[4*k:]))
		want := float32(15 + 0.5*float64(y) - 0.25*float64(x))
		if got != want {
			t.Errorf("temp[%d][%d] = %v, want %v", y, x, got, want)
		}
	}
	if got := math.Float32frombits(binary.LittleEndian.Uint32(raw)); got != 15.25 {
		t.Errorf("temp[3][5] = %v, want 15.25", got)
	}
}

func TestEdgeChunkIsPaddedWithTheFillValue(t *testing.T) {
	// counts has 20 elements in chunks of 8: chunk 2 holds counts[16..19] and four fill zeros.
	raw := readFile(t, generated(t), "counts/c/2")
	if len(raw) != 8*8 {
		t.Fatalf("edge chunk is %d bytes, want a full chunk of 64", len(raw))
	}
	for k := range 8 {
		got := int64(binary.LittleEndian.Uint64(raw[8*k:]))
		want := int64(0)
		if i := int64(16 + k); i < 20 {
			want = (i-7)*3_000_000_000 + i
		}
		if got != want {
			t.Errorf("element %d of counts/c/2 = %d, want %d", k, got, want)
		}
	}
}

func TestShardIndexChecksumsAndPointsAtItsInnerChunks(t *testing.T) {
	// Shard (0,1) covers rows 0–3, columns 4–7 in [2 2] inner chunks; inner chunk (1,1),
	// rows 2–3 × columns 6–7, is all fill and must be an empty index entry.
	shard := readFile(t, generated(t), "sharded/c/0/1")
	const entries, indexLen = 4, 4*16 + 4
	if len(shard) < indexLen {
		t.Fatalf("shard is %d bytes, shorter than its index", len(shard))
	}
	index := shard[len(shard)-indexLen : len(shard)-4]
	sum := binary.LittleEndian.Uint32(shard[len(shard)-4:])
	if want := crc32.Checksum(index, crc32.MakeTable(crc32.Castagnoli)); sum != want {
		t.Fatalf("index crc32c = %#08x, want %#08x", sum, want)
	}
	for k := range entries {
		offset := binary.LittleEndian.Uint64(index[16*k:])
		nbytes := binary.LittleEndian.Uint64(index[16*k+8:])
		ci, cj := k/2, k%2
		if ci == 1 && cj == 1 {
			if offset != math.MaxUint64 || nbytes != math.MaxUint64 {
				t.Errorf("inner chunk (1,1): entry (%d, %d), want empty (2^64-1, 2^64-1)", offset, nbytes)
			}
			continue
		}
		if nbytes != 2*2*2 || offset+nbytes > uint64(len(shard)-indexLen) {
			t.Errorf("inner chunk (%d,%d): entry (%d, %d) outside the shard's data", ci, cj, offset, nbytes)
			continue
		}
		chunk := shard[offset : offset+nbytes]
		for e := range 4 {
			i, j := 2*ci+e/2, 4+2*cj+e%2
			if got, want := binary.LittleEndian.Uint16(chunk[2*e:]), uint16(1000*(8*i+j+1)); got != want {
				t.Errorf("sharded[%d][%d] = %d, want %d", i, j, got, want)
			}
		}
	}
}

func TestChunkHoldingOnlyTheFillValueIsNotStored(t *testing.T) {
	dir := generated(t)
	_, err := os.Stat(filepath.Join(dir, "sparse", "c", "1", "0"))
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("sparse/c/1/0: stat error %v, want not exist", err)
	}
	for _, key := range []string{"sparse/c/0/0", "sparse/c/0/1", "sparse/c/1/1"} {
		readFile(t, dir, key)
	}
	var meta struct {
		FillValue any `json:"fill_value"`
	}
	if err := json.Unmarshal(readFile(t, dir, "sparse/zarr.json"), &meta); err != nil {
		t.Fatal(err)
	}
	if meta.FillValue != "NaN" {
		t.Errorf("sparse fill_value = %#v, want \"NaN\"", meta.FillValue)
	}
}

func TestEveryZarrJSONIsV3Metadata(t *testing.T) {
	files := readTree(t, generated(t))
	tests := []struct {
		key, nodeType, dataType string
	}{
		{"zarr.json", "group", ""},
		{"surface/zarr.json", "group", ""},
		{"surface/temp/zarr.json", "array", "float32"},
		{"counts/zarr.json", "array", "int64"},
		{"mask/zarr.json", "array", "uint8"},
		{"sparse/zarr.json", "array", "float64"},
		{"sharded/zarr.json", "array", "uint16"},
	}
	seen := 0
	for name := range files {
		if filepath.Base(name) == "zarr.json" {
			seen++
		}
	}
	if seen != len(tests) {
		t.Errorf("%d zarr.json files, want %d", seen, len(tests))
	}
	for _, tt := range tests {
		t.Run(tt.key, func(t *testing.T) {
			b, ok := files[tt.key]
			if !ok {
				t.Fatal("missing")
			}
			if !bytes.HasSuffix(b, []byte("}\n")) {
				t.Error("does not end in a newline")
			}
			var meta map[string]any
			if err := json.Unmarshal(b, &meta); err != nil {
				t.Fatal(err)
			}
			if meta["zarr_format"] != 3.0 || meta["node_type"] != tt.nodeType {
				t.Errorf("zarr_format %v, node_type %v", meta["zarr_format"], meta["node_type"])
			}
			if tt.nodeType == "group" {
				return
			}
			if meta["data_type"] != tt.dataType {
				t.Errorf("data_type %v, want %s", meta["data_type"], tt.dataType)
			}
			required := []string{"shape", "chunk_grid", "chunk_key_encoding", "fill_value", "codecs"}
			for _, field := range required {
				if _, ok := meta[field]; !ok {
					t.Errorf("no %s", field)
				}
			}
			cke, _ := meta["chunk_key_encoding"].(map[string]any)
			cfg, _ := cke["configuration"].(map[string]any)
			if cke["name"] != "default" || cfg["separator"] != "/" {
				t.Errorf("chunk_key_encoding %v, want default with separator /", cke)
			}
		})
	}
}
