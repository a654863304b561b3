package main

import (
	"bytes"
	"context"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hamt-go/hamt"
	"github.com/hamt-go/hamt/internal/testdag"
	"github.com/ipfs/go-cid"
	"github.com/multiformats/go-multicodec"
)

// kuboDatasetCAR is the dataset: zarr.json and arr/c/0, a 1,048,577-byte chunk that Kubo
// stores as a UnixFS file, exported as `ipfs dag export ROOT` gives it.
func kuboDatasetCAR(t *testing.T) (root string, value []byte, car []byte, blocks []testdag.Block) {
	t.Helper()
	ctx := context.Background()
	src := testdag.NewKubo(hamt.NewMemoryCAS(), testdag.KuboChunk, testdag.KuboMaxLinks)
	m, err := hamt.New(ctx, src, hamt.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	value = make([]byte, 1<<20+1)
	r := rand.New(rand.NewPCG(1, 2))
	for i := range value {
		value[i] = byte(r.Uint32())
	}
	if err := m.Set(ctx, "zarr.json", []byte(`{"zarr_format":3,"node_type":"group"}`)); err != nil {
		t.Fatal(err)
	}
	if err := m.Set(ctx, "arr/c/0", value); err != nil {
		t.Fatal(err)
	}
	id, err := m.Flush(ctx)
	if err != nil {
		t.Fatal(err)
	}
	rootBytes, err := src.Load(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	blocks = append([]testdag.Block{{ID: id, Data: rootBytes}}, src.Blocks()...)
	return id.String(), value, testdag.CAR(t, []cid.Cid{id}, blocks), blocks
}

// TestCarImportOfKuboFileValues (item 3): `car import` of a map whose value is a UnixFS file, then
// `get` and `export` give the 1,048,577 bytes, not the 104-byte protobuf root; `car export` writes
// every block of the file, and that CAR imports into another store the same.
func TestCarImportOfKuboFileValues(t *testing.T) {
	dir := t.TempDir()
	store := filepath.Join(dir, "store.bolt")
	root, value, car, _ := kuboDatasetCAR(t)
	carFile := filepath.Join(dir, "d.car")
	if err := os.WriteFile(carFile, car, 0o644); err != nil {
		t.Fatal(err)
	}
	if got := ok(t, store, nil, "car", "import", carFile).lastLine(); got != root {
		t.Fatalf("car import printed %s, want %s", got, root)
	}
	if got := ok(t, store, nil, "get", root, "arr/c/0").stdout; got != string(value) {
		t.Errorf("get: %d bytes, want the %d of the value", len(got), len(value))
	}
	out := filepath.Join(dir, "out")
	ok(t, store, nil, "export", root, out)
	if got, err := os.ReadFile(filepath.Join(out, "arr", "c", "0")); err != nil || !bytes.Equal(got, value) {
		t.Errorf("export: %d bytes, %v; want %d", len(got), err, len(value))
	}
	again := filepath.Join(dir, "again.car")
	ok(t, store, nil, "car", "export", root, again)
	fresh := filepath.Join(dir, "fresh.bolt")
	ok(t, fresh, nil, "car", "import", again)
	if got := ok(t, fresh, nil, "get", root, "arr/c/0").stdout; got != string(value) {
		t.Errorf("get after car export and import: %d bytes, want %d", len(got), len(value))
	}
	if stats := ok(t, store, nil, "stats", root).stdout; !strings.Contains(stats, "values        2 distinct, 1.0 MB") {
		t.Errorf("stats do not count the file's size:\n%s", stats)
	}
}

// TestCarImportRefusesBadCARs (item 2): a truncated CAR (cut right after a section's length), one
// whose 6th block is corrupt, one without roots and one lacking a block its root reaches exit 1
// and leave the store as it was.
func TestCarImportRefusesBadCARs(t *testing.T) {
	dir := t.TempDir()
	_, _, good, blocks := kuboDatasetCAR(t)

	last := blocks[len(blocks)-1]
	sixth := testdag.CAR(t, []cid.Cid{blocks[0].ID}, blocks[:6])
	corrupt := bytes.Clone(good)
	corrupt[len(sixth)-1] ^= 0xff
	var lacking []testdag.Block
	for _, b := range blocks {
		if b.ID.Prefix().Codec != uint64(multicodec.Raw) || len(b.Data) != 1 { // drop the file's 1-byte leaf
			lacking = append(lacking, b)
		}
	}
	for _, c := range []struct {
		name, msg string
		car       []byte
	}{
		{"cut right after a section's length", "unexpected EOF", good[:len(good)-last.ID.ByteLen()-len(last.Data)]},
		{"the 6th block corrupt", "does not hash to its CID", corrupt},
		{"no roots", "CAR has no roots", testdag.CAR(t, nil, blocks)},
		{"a leaf of a file value missing", "block missing", testdag.CAR(t, []cid.Cid{blocks[0].ID}, lacking)},
	} {
		store := filepath.Join(t.TempDir(), "store.bolt")
		ok(t, store, nil, "import", filepath.Join("..", "..", "testdata", "zarr")) // a store with something in it
		before := blockCount(t, store)
		f := filepath.Join(dir, "bad.car")
		if err := os.WriteFile(f, c.car, 0o644); err != nil {
			t.Fatal(err)
		}
		r := hamtRun(t, store, nil, "car", "import", f)
		if r.code != 1 || !strings.Contains(r.stderr, c.msg) || r.stdout != "" {
			t.Errorf("%s: exit %d, stdout %q, stderr %q; want exit 1 with %q", c.name, r.code, r.stdout, r.stderr, c.msg)
		}
		if after := blockCount(t, store); after != before {
			t.Errorf("%s: the store went from %d to %d blocks", c.name, before, after)
		}
	}
}

// blockCount opens the bbolt store (no command holds it now) and counts its blocks.
func blockCount(t *testing.T, path string) int {
	t.Helper()
	s, err := hamt.OpenBoltCAS(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	n, err := s.Len(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestCarExportKeepsTheUmask: the CAR, written to a temporary file and renamed into place, gets
// the mode a plain create would give (0666 less the umask), not a fixed one.
func TestCarExportKeepsTheUmask(t *testing.T) {
	store, root := importZarr(t)
	out := filepath.Join(t.TempDir(), "ds.car")
	cmd := exec.Command("sh", "-c", `umask 077 && exec "$0" car export "$1" "$2"`, binary, root, out)
	cmd.Env = append(os.Environ(), "HAMT_STORE="+store)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("car export: %v\n%s", err, b)
	}
	fi, err := os.Stat(out)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("car export under umask 077 made a file of mode %v, want -rw-------", fi.Mode().Perm())
	}
}
