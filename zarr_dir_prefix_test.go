package hamt_test

import (
	"bytes"
	"context"
	"errors"
	"maps"
	"os"
	"path/filepath"
	"testing"

	"github.com/hamt-go/hamt"
)

// writeTree writes files (slash-separated paths) under a new temporary directory and returns it.
func writeTree(t testing.TB, files map[string][]byte) string {
	t.Helper()
	dir := t.TempDir()
	for k, v := range files {
		p := filepath.Join(dir, filepath.FromSlash(k))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, v, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// TestImportDirWithKeyPrefixAppendsToADataset: importing a directory under a prefix into an
// opened dataset stores its files under that prefix, counts the keys it overwrote, and gives the
// root of a dataset made of the union from the start.
func TestImportDirWithKeyPrefixAppendsToADataset(t *testing.T) {
	ctx := context.Background()
	cas := hamt.NewMemoryCAS()
	files := readTree(t, zarrTestdata)
	root, err := flushedZarr(t, cas, files).Flush(ctx)
	if err != nil {
		t.Fatal(err)
	}
	slice := map[string][]byte{
		"zarr.json": []byte(`{"zarr_format": 3, "node_type": "array", "shape": [9, 10]}`),
		"c/0/0":     []byte("rewritten chunk"),
		"c/2/0":     []byte("new chunk"),
		"c/2/1":     []byte("new chunk too"),
	}
	union := maps.Clone(files)
	for k, v := range slice {
		union["surface/temp/"+k] = v
	}

	for _, prefix := range []string{"surface/temp", "surface/temp/"} {
		z, err := hamt.OpenZarr(ctx, cas, root, hamt.WithZarrWrite())
		if err != nil {
			t.Fatal(err)
		}
		st, err := hamt.ImportDir(ctx, z, writeTree(t, slice), hamt.WithKeyPrefix(prefix))
		if err != nil {
			t.Fatal(err)
		}
		if st.Files != 4 || st.Replaced != 2 {
			t.Errorf("prefix %q: %d files, %d replaced; want 4 and 2 (zarr.json and c/0/0)", prefix, st.Files, st.Replaced)
		}
		got, err := z.Flush(ctx)
		if err != nil {
			t.Fatal(err)
		}
		want, err := flushedZarr(t, cas, union).Flush(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if got != want {
			t.Errorf("prefix %q: root %s, want %s as a dataset of the union", prefix, got, want)
		}
	}

	// A Map is a Setter that tells through Has; a fresh import replaces nothing.
	m, err := hamt.Open(ctx, cas, hamt.Bytes, root)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.EnableWrite(ctx); err != nil {
		t.Fatal(err)
	}
	if st, err := hamt.ImportDir(ctx, m, writeTree(t, slice), hamt.WithKeyPrefix("surface/temp")); err != nil || st.Replaced != 2 {
		t.Errorf("into a Map: %+v, %v; want 2 replaced", st, err)
	}
	if _, st := importTree(t, cas, zarrTestdata); st.Replaced != 0 || st.Files != len(files) {
		t.Errorf("a fresh import: %+v, want %d files and none replaced", st, len(files))
	}
}

// TestWithKeyPrefixRefusesWhatIsNotAZarrPath: a prefix that would make keys outside the dataset
// or with empty elements is ErrInvalidKey, before anything is stored; ExportDir and CopyZarr
// refuse the option.
func TestWithKeyPrefixRefusesWhatIsNotAZarrPath(t *testing.T) {
	ctx := context.Background()
	cas := hamt.NewMemoryCAS()
	dir := writeTree(t, map[string][]byte{"k": []byte("v")})
	for _, prefix := range []string{"/abs", "a//b", "..", "a/../b", "./a", "a\x00b"} {
		s := zarrNewStore(t, cas)
		if _, err := hamt.ImportDir(ctx, s, dir, hamt.WithKeyPrefix(prefix)); !errors.Is(err, hamt.ErrInvalidKey) {
			t.Errorf("WithKeyPrefix(%q): %v, want ErrInvalidKey", prefix, err)
		}
		if n, _ := s.Map().Len(ctx); n != 0 {
			t.Errorf("WithKeyPrefix(%q) stored %d keys", prefix, n)
		}
	}
	s := zarrNewStore(t, cas)
	if _, err := hamt.ImportDir(ctx, s, dir, hamt.WithKeyPrefix("/")); err != nil {
		t.Fatal(err)
	}
	if v, err := s.Get(ctx, "k", hamt.ByteRange{}); err != nil || !bytes.Equal(v, []byte("v")) {
		t.Errorf("WithKeyPrefix(\"/\") is the root: Get(k) = %q, %v", v, err)
	}
	if _, err := hamt.ExportDir(ctx, s, t.TempDir(), hamt.WithKeyPrefix("a")); err == nil {
		t.Error("ExportDir took WithKeyPrefix")
	}
	if _, err := hamt.CopyZarr(ctx, zarrNewStore(t, cas), s, hamt.WithKeyPrefix("a")); err == nil {
		t.Error("CopyZarr took WithKeyPrefix")
	}
}

// TestImportDirWithKeyPrefixGrowsAShardedArray: a time slice appended to an array of a sharded
// dataset (its zarr.json with the grown shape, and the new chunk) resizes the array's index
// (metadata is stored first) and stores the chunk, which the old grid had no place for.
func TestImportDirWithKeyPrefixGrowsAShardedArray(t *testing.T) {
	ctx := context.Background()
	cas := hamt.NewMemoryCAS()
	files := map[string][]byte{}
	for k, v := range readTree(t, zarrTestdata) {
		files["0/"+k] = v
	}
	h, err := flushedZarr(t, cas, files).Flush(ctx)
	if err != nil {
		t.Fatal(err)
	}
	root, err := hamt.ConvertZarr(ctx, cas, h, hamt.LayoutSharded)
	if err != nil {
		t.Fatal(err)
	}
	grown := bytes.Replace(files["0/counts/zarr.json"], []byte("20"), []byte("28"), 1)
	if bytes.Equal(grown, files["0/counts/zarr.json"]) {
		t.Fatal("counts/zarr.json has no shape 20 to grow")
	}
	slice := map[string][]byte{"zarr.json": grown, "c/3": bytes.Repeat([]byte{7}, 64)}
	z, err := hamt.OpenZarr(ctx, cas, root, hamt.WithZarrWrite())
	if err != nil {
		t.Fatal(err)
	}
	st, err := hamt.ImportDir(ctx, z, writeTree(t, slice), hamt.WithKeyPrefix("0/counts"))
	if err != nil {
		t.Fatal(err)
	}
	if st.Files != 2 || st.Replaced != 1 {
		t.Errorf("%+v, want 2 files, 1 replaced (zarr.json)", st)
	}
	newRoot, err := z.Flush(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ro, err := hamt.OpenZarr(ctx, cas, newRoot)
	if err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string][]byte{"0/counts/c/3": slice["c/3"], "0/counts/zarr.json": grown, "0/counts/c/0": files["0/counts/c/0"]} {
		if got, err := ro.Get(ctx, k, hamt.ByteRange{}); err != nil || !bytes.Equal(got, want) {
			t.Errorf("Get(%s) after the append: %d bytes, %v", k, len(got), err)
		}
	}
}
