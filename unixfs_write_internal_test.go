package hamt

import (
	"bytes"
	"context"
	"errors"
	"testing"

	"github.com/hamt-go/hamt/internal/testdag"
	"github.com/ipfs/boxo/ipld/merkledag"
	"github.com/ipfs/boxo/ipld/unixfs"
	"github.com/ipfs/go-cid"
	ipld "github.com/ipfs/go-ipld-format"
	"github.com/multiformats/go-multicodec"
	"github.com/multiformats/go-multihash"
	"pgregory.net/rapid"
)

// recordingSave is a Save that stores nothing but records every block it is given.
type recordingSave map[cid.Cid][]byte

func (r recordingSave) save(_ context.Context, data []byte, codec multicodec.Code) (cid.Cid, error) {
	id := blake3CID(codec, data)
	r[id] = bytes.Clone(data)
	return id, nil
}

// sameFileAsBoxo lays data out with writeFile and with boxo's balanced importer (through
// testdag.ImportFile: RawLeaves, Maxlinks 174, CIDv1 blake3, a size-chunk splitter) and fails
// unless both give the same root and the same blocks, byte for byte.
func sameFileAsBoxo(t *testing.T, data []byte, chunk int) {
	t.Helper()
	ctx := context.Background()
	got := recordingSave{}
	root, err := writeFile(ctx, data, chunk, got.save)
	if err != nil {
		t.Fatal(err)
	}
	want, blocks, err := testdag.ImportFile(ctx, data, int64(chunk), fileMaxLinks)
	if err != nil {
		t.Fatal(err)
	}
	if !root.Equals(want) {
		t.Fatalf("%d bytes in %d-byte leaves: root %s, boxo's %s", len(data), chunk, root, want)
	}
	if len(got) != len(blocks) {
		t.Errorf("%d bytes in %d-byte leaves: %d distinct blocks, boxo's %d", len(data), chunk, len(got), len(blocks))
	}
	for _, b := range blocks {
		if !bytes.Equal(got[b.ID], b.Data) {
			t.Errorf("%d bytes in %d-byte leaves: block %s differs from boxo's", len(data), chunk, b.ID)
		}
	}
}

// TestFileLayoutIsBoxosBalancedImporter: the files values become are the ones Kubo's add makes,
// at Kubo's chunk size and, to reach two and three levels cheaply, at a tiny one (the layout does
// not depend on the leaf size).
func TestFileLayoutIsBoxosBalancedImporter(t *testing.T) {
	for _, c := range []struct {
		name        string
		size, chunk int
	}{
		{"one chunk and a byte is two leaves under one node", 1<<20 + 1, 1 << 20},
		{"3 MB is three leaves under one node", 3_000_000, 1 << 20},
		{"174 leaves fill one node", 174 * 16, 16},
		{"175 leaves make two levels, the last subtree one leaf under its own node", 174*16 + 1, 16},
		{"a short last leaf", 1000*16 + 5, 16},
	} {
		t.Run(c.name, func(t *testing.T) {
			sameFileAsBoxo(t, testPattern(c.size), c.chunk)
		})
	}
}

// TestDeepFilesAreBoxosLayout: a value of 174 MiB and a byte, past what one node of 1 MiB leaves
// holds, lays out as boxo's two-level file; 174² + 1 tiny leaves as its three-level one. The big
// value's leaves repeat one 1 MiB pattern, so the blocks kept are few, but the value itself is
// 174 MiB of memory (0.4 s, 1.5 s with -race); the three levels are 30,277 blocks (0.2 s, 2 s).
func TestDeepFilesAreBoxosLayout(t *testing.T) {
	if testing.Short() {
		t.Skip("a 174 MiB value and a 30,277-block file")
	}
	sameFileAsBoxo(t, bytes.Repeat(testPattern(1<<20), 175)[:174<<20+1], 1<<20)
	sameFileAsBoxo(t, testPattern(174*174*16+1), 16)
}

// testPattern is n bytes that do not repeat within a leaf.
func testPattern(n int) []byte {
	b := make([]byte, n)
	x := uint32(2463534242)
	for i := range b {
		x ^= x << 13
		x ^= x >> 17
		x ^= x << 5
		b[i] = byte(x)
	}
	return b
}

// TestFileNodeEncodingIsBoxos: for any links (raw or dag-pb children, any sizes), encodeFileNode
// gives the bytes boxo's merkledag and unixfs packages give the same node, and the reader
// (decodeFileNode) reads them back.
func TestFileNodeEncodingIsBoxos(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		n := rapid.IntRange(1, fileMaxLinks).Draw(t, "links")
		links := make([]fileLink, n)
		nd := new(merkledag.ProtoNode)
		fsn := unixfs.NewFSNode(unixfs.TFile)
		for i := range links {
			codec := rapid.SampledFrom([]multicodec.Code{multicodec.Raw, multicodec.DagPb}).Draw(t, "codec")
			mh := rapid.SampledFrom([]uint64{multihash.BLAKE3, multihash.SHA2_256}).Draw(t, "hash")
			id, err := cid.Prefix{Version: 1, Codec: uint64(codec), MhType: mh, MhLength: -1}.Sum(rapid.SliceOf(rapid.Byte()).Draw(t, "child"))
			if err != nil {
				t.Fatal(err)
			}
			size := rapid.Uint64Range(0, 1<<40).Draw(t, "size")
			tsize := size + rapid.Uint64Range(0, 1<<20).Draw(t, "overhead")
			links[i] = fileLink{id: id, size: size, tsize: tsize}
			if err := nd.AddRawLink("", &ipld.Link{Cid: id, Size: tsize}); err != nil {
				t.Fatal(err)
			}
			fsn.AddBlockSize(size)
		}
		data, err := fsn.GetBytes()
		if err != nil {
			t.Fatal(err)
		}
		nd.SetData(data)
		want, err := nd.EncodeProtobuf(true)
		if err != nil {
			t.Fatal(err)
		}
		got := encodeFileNode(links)
		if !bytes.Equal(got, want) {
			t.Fatalf("encodeFileNode:\n got %x\nwant %x", got, want)
		}
		id := blake3CID(multicodec.DagPb, got)
		back, err := decodeFileNode(id, got)
		if err != nil {
			t.Fatal(err)
		}
		if len(back.links) != n || back.size != fsn.FileSize() {
			t.Fatalf("read back %d links, %d bytes; want %d, %d", len(back.links), back.size, n, fsn.FileSize())
		}
	})
}

// fileSaverCAS is a MemoryCAS that says it makes files of chunk-byte leaves itself and answers
// SaveFile with root, or with the layout of its own chunk when root is undefined.
type fileSaverCAS struct {
	*MemoryCAS
	chunk int
	root  cid.Cid
	calls int
}

func (f *fileSaverCAS) FileChunkSize() int { return f.chunk }

func (f *fileSaverCAS) SaveFile(ctx context.Context, data []byte) (cid.Cid, error) {
	f.calls++
	if f.root.Defined() {
		return f.root, nil
	}
	return writeFile(ctx, data, f.chunk, f.Save)
}

// TestFileSaverRootIsChecked: a store that makes files itself is asked once per large value, with
// its own chunk size (values up to it stay one block), and a root other than the local layout's
// (another chunker, a proxy answering for other bytes) is ErrCorrupt; a root with a hash the core
// cannot compute stands.
func TestFileSaverRootIsChecked(t *testing.T) {
	ctx := context.Background()
	data := testPattern(3000)
	good := &fileSaverCAS{MemoryCAS: NewMemoryCAS(), chunk: 1024}
	id, err := saveValue(ctx, good, data)
	if err != nil || good.calls != 1 {
		t.Fatalf("saveValue: %s, %v after %d SaveFile calls", id, err, good.calls)
	}
	if want, _, _ := testdag.ImportFile(ctx, data, 1024, fileMaxLinks); !id.Equals(want) {
		t.Errorf("root %s, boxo's at the store's chunk %s", id, want)
	}
	if id, err := saveValue(ctx, good, data[:1024]); err != nil || good.calls != 1 || !id.Equals(blake3CID(multicodec.Raw, data[:1024])) {
		t.Errorf("a value of one chunk: %s, %v, %d SaveFile calls; want one raw block", id, err, good.calls)
	}

	other, _ := writeFile(ctx, data, 512, NewMemoryCAS().Save)
	v0, _ := writeFile(ctx, data, 1024, hashOnly(multihash.SHA2_256))
	mh, _ := multihash.Encode(make([]byte, 32), 0x300001) // a code no hasher is registered for
	unknown := cid.NewCidV1(uint64(multicodec.DagPb), mh)
	for _, c := range []struct {
		name string
		root cid.Cid
		ok   bool
	}{
		{"another chunker's root", other, false},
		{"a raw block", blake3CID(multicodec.Raw, data), false},
		{"the right file as a CIDv0", cid.NewCidV0(v0.Hash()), false},
		{"a hash the core cannot compute", unknown, true},
	} {
		bad := &fileSaverCAS{MemoryCAS: NewMemoryCAS(), chunk: 1024, root: c.root}
		_, err := saveValue(ctx, bad, data)
		if c.ok && err != nil || !c.ok && !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: %v", c.name, err)
		}
	}

	whole := &fileSaverCAS{MemoryCAS: NewMemoryCAS(), chunk: 0}
	if id, err := saveValue(ctx, whole, data); err != nil || whole.calls != 0 || !id.Equals(blake3CID(multicodec.Raw, data)) {
		t.Errorf("a store without fixed-size leaves: %s, %v, %d SaveFile calls; want the value saved whole", id, err, whole.calls)
	}
}

// TestFilesRoundTripAtAnySize: for any value longer than its chunk (tiny chunks, so files of one
// or two levels), the file writeFile stores is boxo's and reads back whole and by any range.
func TestFilesRoundTripAtAnySize(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		ctx := context.Background()
		chunk := rapid.IntRange(1, 64).Draw(t, "chunk")
		data := rapid.SliceOfN(rapid.Byte(), chunk+1, 12_000).Draw(t, "data")
		cas := NewMemoryCAS()
		root, err := writeFile(ctx, data, chunk, cas.Save)
		if err != nil {
			t.Fatal(err)
		}
		if want, _, err := testdag.ImportFile(ctx, data, int64(chunk), fileMaxLinks); err != nil || !root.Equals(want) {
			t.Fatalf("%d bytes in %d-byte leaves: %s, boxo's %s (%v)", len(data), chunk, root, want, err)
		}
		got, err := readFile(ctx, cas, root, ByteRange{}, true)
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("readFile: %d bytes, %v", len(got), err)
		}
		from := rapid.IntRange(0, len(data)).Draw(t, "from")
		to := rapid.IntRange(from, len(data)).Draw(t, "to")
		r := RangeBetween(int64(from), int64(to))
		if got, err := readFile(ctx, cas, root, r, true); err != nil || !bytes.Equal(got, data[from:to]) {
			t.Fatalf("readFile %s: %d bytes, %v", r, len(got), err)
		}
	})
}
