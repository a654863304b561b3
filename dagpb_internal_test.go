package hamt

import (
	"bytes"
	"encoding/binary"
	"slices"
	"testing"

	"github.com/ipfs/boxo/ipld/merkledag"
	"github.com/ipfs/boxo/ipld/unixfs"
	unixfspb "github.com/ipfs/boxo/ipld/unixfs/pb"
	"github.com/ipfs/go-cid"
	"github.com/multiformats/go-multicodec"
)

// The dag-pb and UnixFS decoders of dagpb.go are judged by the libraries they replace: boxo's
// merkledag.DecodeProtobuf (go-codec-dagpb) and unixfs.FSNodeFromBytes (protobuf-go).

// boxoFileView is what the file reader takes from a dag-pb block, as boxo decodes it.
type boxoFileView struct {
	pbErr, fsErr error
	links        []cid.Cid
	typ          int32
	data         []byte
	filesize     uint64
	blocksizes   []uint64
}

func boxoDecode(b []byte) boxoFileView {
	var v boxoFileView
	pn, err := merkledag.DecodeProtobuf(b)
	if err != nil {
		v.pbErr = err
		return v
	}
	for _, l := range pn.Links() {
		v.links = append(v.links, l.Cid)
	}
	fsn, err := unixfs.FSNodeFromBytes(pn.Data())
	if err != nil {
		v.fsErr = err
		return v
	}
	v.typ, v.data, v.filesize, v.blocksizes = int32(fsn.Type()), fsn.Data(), fsn.FileSize(), fsn.BlockSizes()
	return v
}

// checkDagPBAgrees fails unless decodePBNode and decodeUnixFSData accept b exactly when boxo does
// and give the same links, type, data and sizes.
func checkDagPBAgrees(t *testing.T, b []byte) {
	t.Helper()
	want := boxoDecode(b)
	pn, err := decodePBNode(b)
	if (err != nil) != (want.pbErr != nil) {
		t.Fatalf("decodePBNode(%x): %v; boxo: %v", b, err, want.pbErr)
	}
	if err != nil {
		return
	}
	if !slices.EqualFunc(pn.links, want.links, cid.Cid.Equals) {
		t.Fatalf("decodePBNode(%x): links %v; boxo %v", b, pn.links, want.links)
	}
	fs, err := decodeUnixFSData(pn.data)
	if (err != nil) != (want.fsErr != nil) {
		t.Fatalf("decodeUnixFSData(%x): %v; boxo: %v", pn.data, err, want.fsErr)
	}
	if err != nil {
		return
	}
	if fs.typ != unixfsFile && fs.typ != unixfsRaw {
		fs.filesize, want.filesize = 0, 0 // the file reader refuses these; boxo's FileSize varies with the type
	}
	if fs.typ != want.typ || !bytes.Equal(fs.data, want.data) || fs.filesize != want.filesize || !slices.Equal(fs.blocksizes, want.blocksizes) {
		t.Fatalf("decodeUnixFSData(%x) = %+v; boxo: type %d, data %x, filesize %d, blocksizes %v",
			pn.data, fs, want.typ, want.data, want.filesize, want.blocksizes)
	}
}

// pbField appends a protobuf field: its tag and, for a varint, v; for bytes, data.
func pbField(b []byte, num uint64, typ int, v uint64, data []byte) []byte {
	b = binary.AppendUvarint(b, num<<3|uint64(typ))
	switch typ {
	case wireVarint:
		return binary.AppendUvarint(b, v)
	case wireBytes:
		b = binary.AppendUvarint(b, uint64(len(data)))
		return append(b, data...)
	case wireFixed32:
		return binary.LittleEndian.AppendUint32(b, uint32(v))
	case wireFixed64:
		return binary.LittleEndian.AppendUint64(b, v)
	}
	return b
}

// dagPBSeeds are dag-pb blocks of every shape the decoders must judge as boxo does: boxo's own
// nodes, this package's file nodes, and hand-made edge cases of both messages.
func dagPBSeeds(t testing.TB) [][]byte {
	leaf := blake3CID(multicodec.Raw, []byte("leaf"))
	v0, _ := cid.Decode("QmdfTbBqBPQ7VNxZEYEj14VmRuZBkqFbiwReogJgS1zR1n")
	link := pbField(nil, 1, wireBytes, 0, leaf.Bytes())
	link = pbField(link, 2, wireBytes, 0, []byte("name"))
	link = pbField(link, 3, wireVarint, 4, nil)
	fsFile := pbField(nil, 1, wireVarint, 2, nil)
	fsFile = pbField(fsFile, 3, wireVarint, 4, nil)
	fsFile = pbField(fsFile, 4, wireVarint, 4, nil)
	node := func(fs []byte, links ...[]byte) []byte {
		var b []byte
		for _, l := range links {
			b = pbField(b, 2, wireBytes, 0, l)
		}
		if fs != nil {
			b = pbField(b, 1, wireBytes, 0, fs)
		}
		return b
	}
	seeds := [][]byte{
		{},
		node(fsFile, link),
		append(pbField(nil, 1, wireBytes, 0, fsFile), pbField(nil, 2, wireBytes, 0, link)...),    // Data first
		node(fsFile, pbField(nil, 1, wireBytes, 0, v0.Bytes())),                                  // a CIDv0 link
		node(fsFile, append(pbField(nil, 1, wireBytes, 0, append(leaf.Bytes(), 0xff)), 0x18, 1)), // bytes after the CID
		node(fsFile, pbField(nil, 2, wireBytes, 0, []byte("no hash"))),
		node(fsFile, append(pbField(nil, 3, wireVarint, 1, nil), pbField(nil, 1, wireBytes, 0, leaf.Bytes())...)), // Tsize first
		append(append(pbField(nil, 2, wireBytes, 0, link), pbField(nil, 1, wireBytes, 0, fsFile)...), pbField(nil, 2, wireBytes, 0, link)...),
		append(node(fsFile), node(fsFile)...),               // two Data
		append(node(fsFile), pbField(nil, 3, 0, 1, nil)...), // an unknown PBNode field
		{0x0a},             // cut short
		{0x0a, 0x05, 0x08}, // cut short
		{0x02, 0x00},       // field 0
		node(nil),          // no Data
		node([]byte{}),     // empty Data: no Type
		node(pbField(nil, 1, wireVarint, 1<<32|2, nil)),                                           // Type truncated to int32
		node(append(pbField(nil, 1, wireVarint, 2, nil), pbField(nil, 1, wireVarint, 7, nil)...)), // last Type wins
		node(append(pbField(nil, 1, wireBytes, 0, []byte{2}), pbField(nil, 1, wireVarint, 0, nil)...)),
		node(append(fsFile, pbField(nil, 2, wireBytes, 0, []byte("data"))...)),
		node(append(fsFile, pbField(nil, 4, wireBytes, 0, []byte{1, 2, 0x80, 1})...)), // packed blocksizes
		node(append(fsFile, pbField(nil, 4, wireBytes, 0, []byte{0x80})...)),          // a bad packed varint
		node(append(fsFile, pbField(nil, 8, wireBytes, 0, pbField(nil, 1, wireVarint, 5, nil))...)),
		node(append(fsFile, pbField(nil, 8, wireBytes, 0, pbField(nil, 2, wireFixed32, 5, nil))...)), // mtime, no seconds
		node(append(fsFile, pbField(nil, 8, wireBytes, 0, nil)...)),
		node(append(fsFile, pbField(nil, 9, wireFixed64, 5, nil)...)), // unknown field
		node(append(fsFile, pbField(nil, 3, wireFixed32, 5, nil)...)), // a known field, wrong wire type
		node(append(fsFile, 0x1b, 0x08, 0x01, 0x1c)),                  // a group
		node(append(fsFile, 0x1b, 0x08, 0x01, 0x24)),                  // a group ended by another field
		node(append(fsFile, 0x1c)),                                                             // an end group alone
		node(append(fsFile, 0x1e, 0x00)),                                                       // wire type 6
		node(append(fsFile, 0xf8, 0xff, 0xff, 0xff, 0x0f, 0x00)),                               // field 2^29-1... and beyond
		node(append(fsFile, 0x80, 0x80, 0x80, 0x80, 0x10, 0x00)),                               // field 2^29
		node(append(fsFile, pbField(nil, 5, wireVarint, 1<<63, nil)...)),                       // 10-byte varint
		node(append(fsFile, 0x28, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02)), // overflow
	}
	// boxo's own nodes.
	for _, typ := range []unixfspb.Data_DataType{unixfspb.Data_File, unixfspb.Data_Raw, unixfspb.Data_Directory} {
		fsn := unixfs.NewFSNode(typ)
		fsn.SetData([]byte("data"))
		fsn.AddBlockSize(4)
		fb, err := fsn.GetBytes()
		if err != nil {
			t.Fatal(err)
		}
		pn := merkledag.NodeWithData(fb)
		if err := pn.AddNodeLink("x", merkledag.NewRawNode([]byte("leaf"))); err != nil {
			t.Fatal(err)
		}
		b, err := pn.EncodeProtobuf(false)
		if err != nil {
			t.Fatal(err)
		}
		seeds = append(seeds, b)
	}
	// This package's file nodes.
	seeds = append(seeds, encodeFileNode([]fileLink{{id: leaf, size: 4, tsize: 4}, {id: leaf, size: 4, tsize: 4}}))
	return seeds
}

func TestDagPBDecodersAgreeWithBoxo(t *testing.T) {
	for _, b := range dagPBSeeds(t) {
		checkDagPBAgrees(t, b)
	}
}

// FuzzDagPBAgreesWithBoxo: on any bytes, the dag-pb and UnixFS decoders accept what boxo accepts,
// refuse what it refuses, and read the same links, type, data and sizes.
func FuzzDagPBAgreesWithBoxo(f *testing.F) {
	for _, s := range dagPBSeeds(f) {
		f.Add(s)
	}
	for _, s := range newFuzzFilePool(f).seeds {
		f.Add(s)
	}
	f.Fuzz(checkDagPBAgrees)
}
