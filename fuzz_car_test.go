package hamt

// Fuzz targets for the readers of untrusted imports: a UnixFS file's dag-pb blocks (readFile,
// fileSize, eachFileBlock) and a whole CAR (ReadCAR). Run them with, for example:
//
//	go test -run XXX -fuzz '^FuzzUnixFSFile$' -fuzztime 5m -parallel 1 .
//	go test -run XXX -fuzz '^FuzzReadCAR$' -fuzztime 5m -parallel 1 .

import (
	"bytes"
	"context"
	"errors"
	"io"
	"testing"

	"github.com/hamt-go/hamt/internal/testdag"
	"github.com/ipfs/boxo/ipld/merkledag"
	"github.com/ipfs/boxo/ipld/unixfs"
	unixfspb "github.com/ipfs/boxo/ipld/unixfs/pb"
	"github.com/ipfs/go-cid"
	format "github.com/ipfs/go-ipld-format"
	carv2 "github.com/ipld/go-car/v2"
	"github.com/multiformats/go-multicodec"
	"github.com/multiformats/go-multihash"
)

// fuzzFileNode encodes a UnixFS file node (CIDv1, blake3) holding data and linking to children,
// each with its blocksize.
func fuzzFileNode(t testing.TB, typ unixfspb.Data_DataType, data []byte, children []cid.Cid, sizes []uint64) (cid.Cid, []byte) {
	fsn := unixfs.NewFSNode(typ)
	fsn.SetData(data)
	for _, s := range sizes {
		fsn.AddBlockSize(s)
	}
	b, err := fsn.GetBytes()
	if err != nil {
		t.Fatal(err)
	}
	pn := merkledag.NodeWithData(b)
	prefix, _ := merkledag.PrefixForCidVersion(1)
	prefix.MhType, prefix.MhLength = multihash.BLAKE3, -1
	if err := pn.SetCidBuilder(prefix); err != nil {
		t.Fatal(err)
	}
	for i, c := range children {
		if err := pn.AddRawLink("", &format.Link{Cid: c, Size: sizes[i]}); err != nil {
			t.Fatal(err)
		}
	}
	raw := pn.RawData()
	return blake3CID(multicodec.DagPb, raw), raw
}

// fuzzFilePool is the blocks a fuzzed root may link to: two raw leaves and an inner node over them.
type fuzzFilePool struct {
	cas               *MemoryCAS
	leafA, leafB, mid cid.Cid
	seeds             [][]byte // root blocks over the pool
}

func newFuzzFilePool(t testing.TB) fuzzFilePool {
	ctx := context.Background()
	p := fuzzFilePool{cas: NewMemoryCAS()}
	put := func(id cid.Cid, b []byte) {
		if err := p.cas.Put(ctx, id, b); err != nil {
			t.Fatal(err)
		}
	}
	a, b := []byte("0123456789"), []byte("abcdefg")
	p.leafA, p.leafB = blake3CID(multicodec.Raw, a), blake3CID(multicodec.Raw, b)
	put(p.leafA, a)
	put(p.leafB, b)
	var mid []byte
	p.mid, mid = fuzzFileNode(t, unixfspb.Data_File, nil, []cid.Cid{p.leafA, p.leafB, p.leafA}, []uint64{10, 7, 10})
	put(p.mid, mid)
	// An empty file whose nodes link 174 times to the one below, 6 levels over an empty leaf:
	// 174^6 empty subtrees in 7 blocks.
	empty := blake3CID(multicodec.Raw, nil)
	put(empty, nil)
	for range 6 {
		kids, sizes := make([]cid.Cid, fileMaxLinks), make([]uint64, fileMaxLinks)
		for i := range kids {
			kids[i] = empty
		}
		var node []byte
		empty, node = fuzzFileNode(t, unixfspb.Data_File, nil, kids, sizes)
		put(empty, node)
	}
	for _, s := range []struct {
		typ      unixfspb.Data_DataType
		data     []byte
		children []cid.Cid
		sizes    []uint64
	}{
		{unixfspb.Data_File, nil, []cid.Cid{p.mid, p.leafB, p.mid}, []uint64{27, 7, 27}},
		{unixfspb.Data_File, []byte("head"), []cid.Cid{p.leafA}, []uint64{10}},
		{unixfspb.Data_File, nil, nil, nil},
		{unixfspb.Data_Raw, []byte("raw node"), nil, nil},
		{unixfspb.Data_File, nil, []cid.Cid{p.mid}, []uint64{1 << 62}},          // a lie about the size
		{unixfspb.Data_Directory, nil, []cid.Cid{p.leafA}, []uint64{10}},        // not a file
		{unixfspb.Data_File, nil, []cid.Cid{p.leafA, p.leafB}, []uint64{7, 10}}, // sizes swapped
		{unixfspb.Data_File, nil, []cid.Cid{p.leafA, empty, p.leafB}, []uint64{10, 0, 7}},
	} {
		_, raw := fuzzFileNode(t, s.typ, s.data, s.children, s.sizes)
		p.seeds = append(p.seeds, raw)
	}
	return p
}

// FuzzUnixFSFile feeds hostile root blocks of a UnixFS file (linking into a pool of real blocks)
// to the file reader: it never panics, fails only with ErrCorrupt or ErrMissingBlock, and when it
// reads the whole file every range reads the same bytes, the size is the root's, and the walk of
// every block agrees.
func FuzzUnixFSFile(f *testing.F) {
	pool := newFuzzFilePool(f)
	for _, s := range pool.seeds {
		f.Add(s)
	}
	f.Add([]byte{})
	f.Add([]byte{0x0a, 0x02, 0x08, 0x02})
	ctx := context.Background()
	f.Fuzz(func(t *testing.T, root []byte) {
		id := blake3CID(multicodec.DagPb, root)
		cas := carBlocks{blocks: map[cidBytes][]byte{cidKey(id): root}, rest: pool.cas}
		whole, err := readFile(ctx, cas, id, ByteRange{}, true)
		walkErr := eachFileBlock(ctx, cas, id, true, nil, func(cid.Cid, []byte) error { return nil })
		if err != nil {
			if !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrMissingBlock) {
				t.Fatalf("readFile: %v, want ErrCorrupt or ErrMissingBlock", err)
			}
			if walkErr == nil {
				t.Fatalf("readFile failed (%v) where the walk of every block passed", err)
			}
			return
		}
		if walkErr != nil {
			t.Fatalf("the walk of every block failed (%v) where readFile passed", walkErr)
		}
		size, err := fileSize(ctx, cas, id, true)
		if err != nil || size != int64(len(whole)) {
			t.Fatalf("fileSize %d, %v; the file has %d bytes", size, err, len(whole))
		}
		n := int64(len(whole))
		for _, r := range []ByteRange{
			RangeBetween(0, 1), RangeBetween(3, 12), RangeBetween(9, 30), RangeBetween(n-2, n+5),
			RangeFrom(5), RangeFrom(n), RangeSuffix(8), RangeSuffix(n + 1), RangeBetween(2, 2),
		} {
			got, err := readFile(ctx, cas, id, r, true)
			if err != nil || !bytes.Equal(got, r.Slice(whole)) {
				t.Fatalf("range %s: %q, %v; want %q", r, got, err, r.Slice(whole))
			}
		}
	})
}

// fuzzCARSeeds are CARs of a small map (values inline and one UnixFS file value): whole, as a
// CARv2, cut at a few places, without roots.
func fuzzCARSeeds(t testing.TB) [][]byte {
	ctx := context.Background()
	pool := newFuzzFilePool(t)
	m, err := New(ctx, pool.cas, Bytes, WithBucketSize(1))
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"a", "b", "c", "d", "e", "f"} {
		if err := m.Set(ctx, k, []byte("value "+k)); err != nil {
			t.Fatal(err)
		}
	}
	if err := m.setPointer(ctx, "file", cidKey(pool.mid)); err != nil {
		t.Fatal(err)
	}
	root, err := m.Flush(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var good bytes.Buffer
	if _, err := WriteCAR(ctx, pool.cas, root, &good); err != nil {
		t.Fatal(err)
	}
	var v2 bytes.Buffer
	if err := carv2.WrapV1(bytes.NewReader(good.Bytes()), &v2); err != nil {
		t.Fatal(err)
	}
	noRoots := testdag.CAR(t, nil, []testdag.Block{{ID: pool.leafA, Data: []byte("0123456789")}})
	g := good.Bytes()
	sh := fuzzShardedCAR(t, pool)
	return append([][]byte{g, v2.Bytes(), noRoots, g[:len(g)-1], g[:len(g)/2], g[:60], sh, sh[:len(sh)-5]}, identityCARSeeds(t)...)
}

// fuzzShardedCAR is the CAR of a small sharded Zarr dataset: a group, an array of 2×2 chunks in
// shards of 3, two chunks stored, one of them a UnixFS file.
func fuzzShardedCAR(t testing.TB, pool fuzzFilePool) []byte {
	ctx := context.Background()
	s, err := NewShardedZarrStore(pool.cas, WithChunksPerShard(3))
	if err != nil {
		t.Fatal(err)
	}
	for _, kv := range [][2]string{
		{"0/zarr.json", `{"zarr_format":3,"node_type":"group","attributes":{}}`},
		{"0/a/zarr.json", `{"zarr_format":3,"node_type":"array","shape":[4,4],"data_type":"uint8","chunk_grid":{"name":"regular","configuration":{"chunk_shape":[2,2]}},"chunk_key_encoding":{"name":"default"},"fill_value":0,"codecs":[{"name":"bytes"}]}`},
		{"0/a/c/0/1", "abcd"},
	} {
		if err := s.Set(ctx, kv[0], []byte(kv[1])); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.SetCID(ctx, "0/a/c/1/1", pool.mid); err != nil {
		t.Fatal(err)
	}
	root, err := s.Flush(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var car bytes.Buffer
	if _, err := WriteCAR(ctx, pool.cas, root, &car); err != nil {
		t.Fatal(err)
	}
	return car.Bytes()
}

// FuzzReadCAR feeds arbitrary bytes to ReadCAR on a MemoryCAS: it never panics; when it fails it
// stores nothing; when it succeeds it stored every distinct block it counted, every root is
// there, and a dag-cbor root's whole map or sharded Zarr dataset (nodes, root, shards, values,
// file blocks) can be written out again.
func FuzzReadCAR(f *testing.F) {
	for _, s := range fuzzCARSeeds(f) {
		f.Add(s)
	}
	ctx := context.Background()
	f.Fuzz(func(t *testing.T, car []byte) {
		mem := NewMemoryCAS()
		roots, n, err := ReadCAR(ctx, mem, bytes.NewReader(car))
		if err != nil {
			if mem.Len() != 0 || n != 0 {
				t.Fatalf("failed (%v) but stored %d blocks (%d reported)", err, mem.Len(), n)
			}
			return
		}
		if len(roots) == 0 || n != mem.Len() {
			t.Fatalf("%d roots, %d blocks reported, %d stored", len(roots), n, mem.Len())
		}
		for _, root := range roots {
			if ok, _ := mem.Has(ctx, root); !ok {
				t.Fatalf("root %s not stored", root)
			}
			switch root.Prefix().Codec {
			case uint64(multicodec.DagCbor):
				if _, err := WriteCAR(ctx, mem, root, io.Discard); err != nil {
					t.Fatalf("root %s imported, but its map is not whole: %v", root, err)
				}
			case uint64(multicodec.DagPb):
				if _, err := readFile(ctx, mem, root, ByteRange{}, true); err != nil {
					t.Fatalf("file root %s imported, but the file does not read: %v", root, err)
				}
			}
		}
	})
}
