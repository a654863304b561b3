package main

import (
	"bytes"
	"context"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hamt-go/hamt"
	chunk "github.com/ipfs/boxo/chunker"
	"github.com/ipfs/boxo/ipld/merkledag"
	mdtest "github.com/ipfs/boxo/ipld/merkledag/test"
	"github.com/ipfs/boxo/ipld/unixfs/importer/balanced"
	"github.com/ipfs/boxo/ipld/unixfs/importer/helpers"
	"github.com/ipfs/go-cid"
	carv2 "github.com/ipld/go-car/v2"
	"github.com/ipld/go-car/v2/storage"
	"github.com/multiformats/go-multicodec"
	"github.com/multiformats/go-multihash"
)

// kuboFiles is a CAS that stores a value over one MiB as Kubo does (ipfs add --hash=blake3
// --chunker=size-1048576: a balanced UnixFS DAG over raw leaves, the dag-pb root as the value's
// CID) and records every block it stores, root first per value, for a CAR as `ipfs dag export`
// writes it.
type kuboFiles struct {
	*hamt.MemoryCAS
	blocks []block
}

type block struct {
	id   cid.Cid
	data []byte
}

func (k *kuboFiles) Save(ctx context.Context, data []byte, codec multicodec.Code) (cid.Cid, error) {
	if len(data) <= 1<<20 || codec != multicodec.Raw {
		id, err := k.MemoryCAS.Save(ctx, data, codec)
		k.blocks = append(k.blocks, block{id, bytes.Clone(data)})
		return id, err
	}
	prefix, _ := merkledag.PrefixForCidVersion(1)
	prefix.MhType, prefix.MhLength = multihash.BLAKE3, -1
	dserv := mdtest.Mock()
	params := helpers.DagBuilderParams{Dagserv: dserv, RawLeaves: true, Maxlinks: helpers.DefaultLinksPerBlock, CidBuilder: prefix}
	db, err := params.New(chunk.NewSizeSplitter(bytes.NewReader(data), 1<<20))
	if err != nil {
		return cid.Undef, err
	}
	root, err := balanced.Layout(db)
	if err != nil {
		return cid.Undef, err
	}
	var walk func(id cid.Cid) error
	walk = func(id cid.Cid) error {
		nd, err := dserv.Get(ctx, id)
		if err != nil {
			return err
		}
		k.blocks = append(k.blocks, block{id, nd.RawData()})
		for _, l := range nd.Links() {
			if err := walk(l.Cid); err != nil {
				return err
			}
		}
		return nil
	}
	return root.Cid(), walk(root.Cid())
}

// carOf writes blocks as a CARv1 with the given roots.
func carOf(t *testing.T, roots []cid.Cid, blocks []block) []byte {
	t.Helper()
	var buf bytes.Buffer
	w, err := storage.NewWritable(&buf, roots, carv2.WriteAsCarV1(true), carv2.AllowDuplicatePuts(true))
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range blocks {
		if err := w.Put(context.Background(), b.id.KeyString(), b.data); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Finalize(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// kuboDatasetCAR is the dataset: zarr.json and arr/c/0, a 1,048,577-byte chunk that Kubo
// stores as a UnixFS file, exported as `ipfs dag export ROOT` gives it.
func kuboDatasetCAR(t *testing.T) (root string, value []byte, car []byte, blocks []block) {
	t.Helper()
	ctx := context.Background()
	src := &kuboFiles{MemoryCAS: hamt.NewMemoryCAS()}
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
	blocks = append([]block{{id, rootBytes}}, src.blocks...)
	return id.String(), value, carOf(t, []cid.Cid{id}, blocks), blocks
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
	sixth := carOf(t, []cid.Cid{blocks[0].id}, blocks[:6])
	corrupt := bytes.Clone(good)
	corrupt[len(sixth)-1] ^= 0xff
	var lacking []block
	for _, b := range blocks {
		if b.id.Prefix().Codec != uint64(multicodec.Raw) || len(b.data) != 1 { // drop the file's 1-byte leaf
			lacking = append(lacking, b)
		}
	}
	for _, c := range []struct {
		name, msg string
		car       []byte
	}{
		{"cut right after a section's length", "unexpected EOF", good[:len(good)-last.id.ByteLen()-len(last.data)]},
		{"the 6th block corrupt", "does not hash to its CID", corrupt},
		{"no roots", "CAR has no roots", carOf(t, nil, blocks)},
		{"a leaf of a file value missing", "block missing", carOf(t, []cid.Cid{blocks[0].id}, lacking)},
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
