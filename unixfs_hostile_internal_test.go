package hamt

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/multiformats/go-multicodec"
)

// emptyFileBomb stores in cas a UnixFS file of no bytes whose every node links fileMaxLinks
// times to the one node below it, depth levels over an empty raw leaf: depth+1 blocks that a
// walk following every link reads 174^depth times.
func emptyFileBomb(t *testing.T, cas CAS, depth int) cid.Cid {
	t.Helper()
	ctx := context.Background()
	id, err := cas.Save(ctx, nil, multicodec.Raw)
	if err != nil {
		t.Fatal(err)
	}
	for range depth {
		links := make([]fileLink, fileMaxLinks)
		for i := range links {
			links[i] = fileLink{id: id}
		}
		if id, err = cas.Save(ctx, encodeFileNode(links), multicodec.DagPb); err != nil {
			t.Fatal(err)
		}
	}
	return id
}

// TestFileReadOfEmptySubtreesLinkedManyTimesLoadsEachOnce is a regression test: readFile read
// every child of a whole file "so that every block is checked", even one its parent says is empty,
// so 9 blocks (an empty file whose nodes link 174 times to the one below) made Get, a range or the
// Zarr handler load 174^8 blocks: it ran until its context ended, forever without one. An empty
// subtree is now checked once.
func TestFileReadOfEmptySubtreesLinkedManyTimesLoadsEachOnce(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second) // the old code: a hang
	defer cancel()
	mem := NewMemoryCAS()
	bomb := emptyFileBomb(t, mem, 8)
	// The same subtrees under a file that has bytes: a range reads the empty children within it.
	data := []byte("0123456789")
	leaf, err := mem.Save(ctx, data, multicodec.Raw)
	if err != nil {
		t.Fatal(err)
	}
	links := []fileLink{{id: leaf, size: uint64(len(data))}}
	for range fileMaxLinks - 2 {
		links = append(links, fileLink{id: bomb})
	}
	links = append(links, fileLink{id: leaf, size: uint64(len(data))})
	mixed, err := mem.Save(ctx, encodeFileNode(links), multicodec.DagPb)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		root cid.Cid
		r    ByteRange
		want string
	}{
		{"empty file", bomb, ByteRange{}, ""},
		{"empty file, a range", bomb, RangeFrom(0), ""},
		{"file with bytes", mixed, ByteRange{}, "01234567890123456789"},
		{"file with bytes, a range over the empty subtrees", mixed, RangeBetween(5, 15), "5678901234"},
	} {
		t.Run(c.name, func(t *testing.T) {
			cas := &countingCAS{MemoryCAS: mem}
			got, err := loadValue(ctx, cas, c.root, c.r, true)
			if err != nil || string(got) != c.want {
				t.Fatalf("loadValue: %q, %v; want %q", got, err, c.want)
			}
			if n := cas.loads.Load(); n > 20 {
				t.Errorf("read the file in %d loads; it has 11 blocks", n)
			}
		})
	}
}

// TestFileOfTinyLeavesHoldsAboutItsBytes is a regression test: readFile kept every piece of a
// file as a slice of its block until the end, 24 bytes of slice header per piece, so a file of
// 1-byte leaves (a hostile one: 3 blocks, a leaf linked 174 times from a node linked 174 times;
// or Kubo's size-1 chunker) held 24 times its size before it was joined. Small pieces are now
// copied into parts of up to 64 KiB.
func TestFileOfTinyLeavesHoldsAboutItsBytes(t *testing.T) {
	ctx := context.Background()
	mem := NewMemoryCAS()
	id, err := mem.Save(ctx, []byte("x"), multicodec.Raw)
	if err != nil {
		t.Fatal(err)
	}
	size := uint64(1)
	for range 2 {
		links := make([]fileLink, fileMaxLinks)
		for i := range links {
			links[i] = fileLink{id: id, size: size}
		}
		if id, err = mem.Save(ctx, encodeFileNode(links), multicodec.DagPb); err != nil {
			t.Fatal(err)
		}
		size *= fileMaxLinks
	}
	want := strings.Repeat("x", int(size))
	for _, r := range []ByteRange{{}, RangeBetween(100, 20_000)} {
		got, err := readFile(ctx, mem, id, r, true)
		if err != nil || string(got) != string(r.Slice([]byte(want))) {
			t.Fatalf("readFile %s: %d bytes, %v", r, len(got), err)
		}
		f := fileBlocks{mem, true}
		root, _, err := f.node(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		start, end := r.Bounds(int64(root.size))
		fr := fileRange{fileBlocks: f, start: start, end: end, all: r.IsFull()}
		if err := fr.read(ctx, id, root, 0, 0); err != nil {
			t.Fatal(err)
		}
		if len(fr.parts) > 1 {
			t.Errorf("%s: %d parts held for %d bytes", r, len(fr.parts), fr.n)
		}
	}
}
