package hamt_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hamt-go/hamt"
	"github.com/hamt-go/hamt/internal/testdag"
	"github.com/ipfs/go-cid"
	carv2 "github.com/ipld/go-car/v2"
	"github.com/multiformats/go-multicodec"
	"github.com/multiformats/go-varint"
)

// carFixture is a map of 40 small values and one 3-leaf UnixFS file value, and its blocks in the
// order `ipfs dag export` gives them (root first).
type carFixture struct {
	root   cid.Cid
	blocks []testdag.Block
	file   cid.Cid // the file value's dag-pb root
	leaf   cid.Cid // one of its raw leaves
}

func newCARFixture(t testing.TB) carFixture {
	t.Helper()
	ctx := context.Background()
	src := newKuboLike(100, 174)
	m, err := hamt.New(ctx, src, hamt.Bytes, hamt.WithBucketSize(1))
	if err != nil {
		t.Fatal(err)
	}
	for i := range 40 { // with buckets of 1, some keys share a slot: the root has children
		if err := m.Set(ctx, fmt.Sprint("k", i), []byte(strings.Repeat("v", i+1))); err != nil {
			t.Fatal(err)
		}
	}
	if err := m.Set(ctx, "file", patterned(250)); err != nil {
		t.Fatal(err)
	}
	root, err := m.Flush(ctx)
	if err != nil {
		t.Fatal(err)
	}
	f := carFixture{root: root}
	f.file, _ = m.GetPointer(ctx, "file")
	// Every block once, root first, as dag export gives them (not through WriteCAR).
	f.blocks = []testdag.Block{{ID: root, Data: mustLoad(t, src, root)}}
	seen := map[string]bool{root.KeyString(): true}
	for _, b := range src.Blocks() {
		if !seen[b.ID.KeyString()] {
			seen[b.ID.KeyString()] = true
			f.blocks = append(f.blocks, b)
		}
		if b.ID.Prefix().Codec == uint64(multicodec.Raw) && len(b.Data) == 100 {
			f.leaf = b.ID
		}
	}
	if len(f.blocks) < 10 || !f.leaf.Defined() {
		t.Fatalf("fixture: %d blocks, leaf %s", len(f.blocks), f.leaf)
	}
	return f
}

func (f carFixture) car(t testing.TB) []byte { return testdag.CAR(t, []cid.Cid{f.root}, f.blocks) }

// without returns the fixture's blocks less the one named id.
func (f carFixture) without(id cid.Cid) []testdag.Block {
	var out []testdag.Block
	for _, b := range f.blocks {
		if !b.ID.Equals(id) {
			out = append(out, b)
		}
	}
	return out
}

// storeLen counts the blocks in a MemoryCAS or BoltCAS.
func storeLen(t testing.TB, s hamt.BlockPutter) int {
	t.Helper()
	switch s := s.(type) {
	case *hamt.MemoryCAS:
		return s.Len()
	case *hamt.BoltCAS:
		n, err := s.Len(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	t.Fatalf("storeLen: %T", s)
	return 0
}

// TestReadCARRejectsBadCARsAndStoresNothing (item 2): a truncated CAR (cut right after a section's
// length, a header with a length and nothing, cut anywhere), a corrupt block, a CAR without roots,
// a root or a reachable node, value or file leaf missing: each is an error and leaves the store
// as it was, in a MemoryCAS and in a BoltCAS, read in place or from a pipe.
func TestReadCARRejectsBadCARsAndStoresNothing(t *testing.T) {
	ctx := context.Background()
	f := newCARFixture(t)
	good := f.car(t)
	header := testdag.CAR(t, []cid.Cid{f.root}, nil)

	// The last section's length varint, then nothing.
	last := f.blocks[len(f.blocks)-1]
	lastLen := varint.UvarintSize(uint64(last.ID.ByteLen() + len(last.Data)))
	cutAfterLength := good[:len(good)-last.ID.ByteLen()-len(last.Data)]

	corrupt := bytes.Clone(good)
	// The 6th block's last byte: the CAR stays well formed, the block no longer hashes to its CID.
	sixth := testdag.CAR(t, []cid.Cid{f.root}, f.blocks[:6])
	corrupt[len(sixth)-1] ^= 0xff

	var node cid.Cid // a node below the root
	for _, b := range f.blocks[1:] {
		if b.ID.Prefix().Codec == uint64(multicodec.DagCbor) {
			node = b.ID
			break
		}
	}
	if !node.Defined() {
		t.Fatal("the fixture's root has no child node")
	}
	small := blake3CID(multicodec.Raw, []byte("vvv"))

	cases := []struct {
		name string
		car  []byte
		want error  // errors.Is, or nil to match msg only
		msg  string // in the error
	}{
		{"cut right after the last section's length", cutAfterLength, io.ErrUnexpectedEOF, "ends inside a section"},
		{"a header, a length and nothing", append(bytes.Clone(header), good[len(header):len(header)+lastLen]...), io.ErrUnexpectedEOF, ""},
		{"cut inside the last block", good[:len(good)-1], io.ErrUnexpectedEOF, ""},
		{"cut inside a length", append(bytes.Clone(header), 0x80), io.ErrUnexpectedEOF, ""},
		{"the 6th block corrupt", corrupt, hamt.ErrCorrupt, ""},
		{"no roots", testdag.CAR(t, nil, f.blocks), nil, "CAR has no roots"},
		{"the root missing", testdag.CAR(t, []cid.Cid{f.root}, f.without(f.root)), hamt.ErrMissingBlock, "root"},
		{"a second root missing", testdag.CAR(t, []cid.Cid{f.root, small, blake3CID(multicodec.Raw, []byte("absent"))}, f.blocks), hamt.ErrMissingBlock, ""},
		{"a node missing", testdag.CAR(t, []cid.Cid{f.root}, f.without(node)), hamt.ErrMissingBlock, ""},
		{"a value missing", testdag.CAR(t, []cid.Cid{f.root}, f.without(small)), hamt.ErrMissingBlock, ""},
		{"the file's root missing", testdag.CAR(t, []cid.Cid{f.root}, f.without(f.file)), hamt.ErrMissingBlock, ""},
		{"a leaf of the file missing", testdag.CAR(t, []cid.Cid{f.root}, f.without(f.leaf)), hamt.ErrMissingBlock, ""},
		{"a file root with its leaves missing", testdag.CAR(t, []cid.Cid{f.file}, []testdag.Block{{ID: f.file, Data: mustBlock(f, f.file)}}), hamt.ErrMissingBlock, ""},
		{"empty", nil, nil, "read car"},
		{"only a header's length", header[:1], io.ErrUnexpectedEOF, ""},
	}
	bolt, err := hamt.OpenBoltCAS(filepath.Join(t.TempDir(), "s.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer bolt.Close()
	// The BoltCAS holds an unrelated block already: it must be all that is there afterwards.
	if _, err := bolt.Save(ctx, []byte("already here"), multicodec.Raw); err != nil {
		t.Fatal(err)
	}
	for _, c := range cases {
		for _, dst := range []hamt.BlockPutter{hamt.NewMemoryCAS(), bolt} {
			for _, pipe := range []bool{false, true} {
				before := storeLen(t, dst)
				var r io.Reader = bytes.NewReader(c.car)
				if pipe {
					r = io.MultiReader(r) // not seekable: ReadCAR copies it to a temporary file
				}
				roots, n, err := hamt.ReadCAR(ctx, dst, r)
				if err == nil || (c.want != nil && !errors.Is(err, c.want)) || !strings.Contains(err.Error(), c.msg) {
					t.Errorf("%s (%T, pipe %v): roots %v, %d blocks, %v; want %v %q", c.name, dst, pipe, roots, n, err, c.want, c.msg)
				}
				if after := storeLen(t, dst); after != before || n != 0 {
					t.Errorf("%s (%T, pipe %v): store went from %d to %d blocks (%d reported)", c.name, dst, pipe, before, after, n)
				}
			}
		}
	}

	// Cut anywhere, the CAR is an error and stores nothing.
	for cut := range len(good) {
		mem := hamt.NewMemoryCAS()
		if _, _, err := hamt.ReadCAR(ctx, mem, bytes.NewReader(good[:cut])); err == nil || mem.Len() != 0 {
			t.Fatalf("CAR cut at %d of %d: %v, %d blocks stored", cut, len(good), err, mem.Len())
		}
	}

	// The whole CAR, as v1 and as v2, read in place and from a pipe, stores every block.
	var v2 bytes.Buffer
	if err := carv2.WrapV1(bytes.NewReader(good), &v2); err != nil {
		t.Fatal(err)
	}
	for name, car := range map[string][]byte{"v1": good, "v2": v2.Bytes()} {
		for _, pipe := range []bool{false, true} {
			mem := hamt.NewMemoryCAS()
			var r io.Reader = bytes.NewReader(car)
			if pipe {
				r = io.MultiReader(r)
			}
			roots, n, err := hamt.ReadCAR(ctx, mem, r)
			if err != nil || len(roots) != 1 || !roots[0].Equals(f.root) || n != len(f.blocks) || mem.Len() != len(f.blocks) {
				t.Errorf("%s (pipe %v): roots %v, %d blocks (%d stored), %v; want %d", name, pipe, roots, n, mem.Len(), err, len(f.blocks))
			}
		}
		if name == "v2" {
			// A CARv2 whose data stops at a section boundary short of what its header says.
			mem := hamt.NewMemoryCAS()
			cut := car[:carv2.PragmaSize+carv2.HeaderSize+len(sixth)]
			if _, _, err := hamt.ReadCAR(ctx, mem, bytes.NewReader(cut)); !errors.Is(err, io.ErrUnexpectedEOF) || mem.Len() != 0 {
				t.Errorf("v2 cut at a section: %v, %d blocks stored", err, mem.Len())
			}
		}
	}
}

func mustBlock(f carFixture, id cid.Cid) []byte {
	for _, b := range f.blocks {
		if b.ID.Equals(id) {
			return b.Data
		}
	}
	panic("no block " + id.String())
}

// TestReadCAROfAnEmptyValue: a map holding an empty value writes a CAR whose last section is an
// empty raw block; ReadCAR read it back as "unexpected EOF" (a zero-length read at the end of
// the CAR), so a dataset with an empty chunk could be exported but not imported again. Both a
// file and an in-memory CAR are read back, the empty block last and in the middle.
func TestReadCAROfAnEmptyValue(t *testing.T) {
	ctx := context.Background()
	for _, keys := range [][]string{{"empty"}, {"empty", "full"}} {
		src := hamt.NewMemoryCAS()
		m, err := hamt.New(ctx, src, hamt.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		want := map[string][]byte{}
		for _, k := range keys {
			want[k] = []byte{}
			if k != "empty" {
				want[k] = []byte("bytes of " + k)
			}
			if err := m.Set(ctx, k, want[k]); err != nil {
				t.Fatal(err)
			}
		}
		root, err := m.Flush(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var car bytes.Buffer
		if _, err := hamt.WriteCAR(ctx, src, root, &car); err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(t.TempDir(), "empty.car")
		if err := os.WriteFile(path, car.Bytes(), 0o600); err != nil {
			t.Fatal(err)
		}
		f, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		for name, r := range map[string]io.Reader{"file": f, "stream": bytes.NewReader(car.Bytes())} {
			dst := hamt.NewMemoryCAS()
			roots, _, err := hamt.ReadCAR(ctx, dst, r)
			if err != nil || len(roots) != 1 || roots[0] != root {
				t.Fatalf("%v, %s: ReadCAR = %v, %v", keys, name, roots, err)
			}
			got, err := hamt.Open(ctx, dst, hamt.Bytes, root)
			if err != nil {
				t.Fatal(err)
			}
			for k, v := range want {
				if b, err := got.Get(ctx, k); err != nil || !bytes.Equal(b, v) {
					t.Fatalf("%v, %s: Get(%q) = %q, %v; want %q", keys, name, k, b, err, v)
				}
			}
		}
	}
}
