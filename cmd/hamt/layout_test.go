package main

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hamt-go/hamt"
	"github.com/multiformats/go-multicodec"
)

// TestConvertWithinTheHAMTLayout: convert --to hamt lays a root out again with another bucket size
// (the root a fresh import with that size gives), and back.
func TestConvertWithinTheHAMTLayout(t *testing.T) {
	dir := t.TempDir()
	store := filepath.Join(dir, "store.bolt")
	data := filepath.Join("..", "..", "testdata", "zarr")
	root := ok(t, store, nil, "import", data).lastLine()
	want1 := ok(t, store, nil, "import", "--bucket-size", "1", data).lastLine()
	conv := ok(t, store, nil, "convert", root, "--to", "hamt", "--bucket-size", "1")
	if got := conv.lastLine(); got != want1 {
		t.Errorf("convert --bucket-size 1: %s, want %s", got, want1)
	}
	if !strings.Contains(conv.stderr, "converted 25 keys") {
		t.Errorf("convert's summary: %q", conv.stderr)
	}
	if back := ok(t, store, nil, "convert", want1, "--to", "hamt").lastLine(); back != root {
		t.Errorf("converted back: %s, want %s", back, root)
	}
}

// TestLayoutFlagsAreChecked: a layout flag that does not fit is a usage error, before any store
// is opened; a CID that is no dataset's root says so.
func TestLayoutFlagsAreChecked(t *testing.T) {
	dir := t.TempDir()
	store := filepath.Join(dir, "store.bolt")
	data := filepath.Join("..", "..", "testdata", "zarr")
	root := ok(t, store, nil, "import", data).lastLine()
	ok(t, store, []byte("v"), "set", root, "v", "-")
	id, err := hamt.NewMemoryCAS().Save(context.Background(), []byte("v"), multicodec.Raw)
	if err != nil {
		t.Fatal(err)
	}
	value := id.String() // in the store, but a value, not a root
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"import", "--layout", "tree", data}, 2, `unknown layout "tree"`},
		{[]string{"import", "--chunks-per-shard", "8", data}, 2, "--chunks-per-shard is for --layout sharded"},
		{[]string{"import", "--layout", "sharded", "--bucket-size", "3", data}, 2, "--bucket-size is for --layout hamt"},
		{[]string{"import", "--layout", "sharded", "--chunks-per-shard", "0", data}, 2, "--chunks-per-shard must be at least 1"},
		{[]string{"convert", root}, 2, "convert needs --to"},
		{[]string{"convert", root, "--to", "btree"}, 2, `unknown layout "btree"`},
		{[]string{"convert", root, "--to", "hamt", "--chunks-per-shard", "4"}, 2, "--chunks-per-shard is for --layout sharded"},
		{[]string{"convert", root, "--to", "hamt", "--layout", "hamt"}, 2, "unknown flag"},
		{[]string{"convert", "--store", filepath.Join(dir, "none.bolt"), root, "--to", "hamt"}, 1, "no store at"},
		{[]string{"stats", value}, 1, "not the root of a Zarr layout"},
		{[]string{"ls", value}, 1, "not the root of a Zarr layout"},
	} {
		r := hamtRun(t, store, nil, c.args...)
		if r.code != c.code || !strings.Contains(r.stderr, c.want) || strings.Count(r.stderr, "\n") != 1 {
			t.Errorf("hamt %v: exit %d, stderr %q; want exit %d and one line with %q", c.args, r.code, r.stderr, c.code, c.want)
		}
	}
}
