package hamt

import (
	"context"
	"encoding/binary"
	"fmt"

	"github.com/ipfs/go-cid"
	"github.com/multiformats/go-multicodec"
	"github.com/multiformats/go-multihash"
	"github.com/multiformats/go-varint"
)

// This file writes values. A value of at most one chunk is one raw block; a larger one is the
// UnixFS file Kubo's add makes of it (a balanced DAG of dag-pb nodes, at most fileMaxLinks links
// each, over chunk-sized raw leaves, every CID v1 with the store's hash), laid out here through
// the plain CAS interface. So a value has the same CID in every store, and a dataset one root
// wherever it was written: in memory, in bbolt, through Kubo, or in a store of your own.

// DefaultFileChunk is the leaf size of the UnixFS files values larger than it are stored as,
// the N of Kubo's default chunker size-N (DefaultKuboChunker). A store that cuts files itself
// says its own through FileSaver.
const DefaultFileChunk = 1 << 20

// fileMaxLinks is the most links a node of a balanced UnixFS file holds: boxo's
// helpers.DefaultLinksPerBlock, what Kubo's add uses.
const fileMaxLinks = 174

// FileSaver is a CAS that stores a value larger than one chunk as a UnixFS file itself, in one
// call, as KuboCAS does with one add. The core uses it when present; any other CAS gets the same
// file block by block through Save.
type FileSaver interface {
	// FileChunkSize returns N when the store cuts files into N-byte raw leaves (a size-N
	// chunker), so that values of at most N bytes are one raw block and larger ones go to
	// SaveFile; 0 when its leaves are not of one size (rabin, buzhash): every value then goes
	// through Save whole, and the CIDs of large values are the store's own, not those other
	// stores give.
	FileChunkSize() int
	// SaveFile stores data, longer than FileChunkSize, as a balanced UnixFS file (raw leaves of
	// FileChunkSize bytes, at most 174 links per node, CIDv1) and returns its dag-pb root. The
	// core lays the same file out locally and refuses a root that differs (ErrCorrupt) whenever
	// it can compute the root's hash function.
	SaveFile(ctx context.Context, data []byte) (cid.Cid, error)
}

// saveValue stores the value bytes data in cas and returns the CID Kubo's add gives them with the
// store's hash and chunk size: CIDv1(raw) of data up to one chunk, the root of a balanced UnixFS
// file over it otherwise. Every write of a value goes through here.
func saveValue(ctx context.Context, cas CAS, data []byte) (cid.Cid, error) {
	chunk := DefaultFileChunk
	fs, saver := cas.(FileSaver)
	if saver {
		chunk = fs.FileChunkSize()
	}
	if chunk <= 0 || len(data) <= chunk {
		id, err := cas.Save(ctx, data, multicodec.Raw)
		if err == nil && saver && chunk > 0 && id.Prefix().Codec != uint64(multicodec.Raw) {
			return cid.Undef, fmt.Errorf("%w: store answered %s for a %d-byte value, which its %d-byte chunk keeps as one raw block", ErrCorrupt, id, len(data), chunk)
		}
		return id, err
	}
	if !saver {
		return writeFile(ctx, data, chunk, cas.Save)
	}
	// The local layout is hashed while the store works (Kubo's add is a request over the
	// network), with the store's usual hash; the answer's own decides in the rare other case.
	local := make(chan cid.Cid, 1)
	go func() {
		id, _ := writeFile(ctx, data, chunk, hashOnly(multihash.BLAKE3))
		local <- id
	}()
	root, err := fs.SaveFile(ctx, data)
	want := <-local
	if err != nil {
		return cid.Undef, err
	}
	if err := checkFileRoot(ctx, root, want, data, chunk); err != nil {
		return cid.Undef, err
	}
	return root, nil
}

// checkFileRoot checks that root, which a FileSaver answered for data, is the root of data's
// balanced layout with chunk-byte leaves (blake3, the layout computed as the store worked, when
// root's hash is blake3), computed with root's hash function when go-multihash can compute it. A
// mismatch (another chunker, another layout, a proxy answering for other bytes) is ErrCorrupt.
func checkFileRoot(ctx context.Context, root, blake3Root cid.Cid, data []byte, chunk int) error {
	p := root.Prefix()
	if p.Version != 1 || p.Codec != uint64(multicodec.DagPb) {
		return fmt.Errorf("%w: store answered %s for a %d-byte value, want a CIDv1 dag-pb file root", ErrCorrupt, root, len(data))
	}
	want := blake3Root
	if p.MhType != multihash.BLAKE3 || !want.Defined() {
		if _, err := multihash.Sum(nil, p.MhType, -1); err != nil {
			return nil // a hash function we cannot compute: the store's answer stands
		}
		var err error
		if want, err = writeFile(ctx, data, chunk, hashOnly(p.MhType)); err != nil {
			return err
		}
	}
	if !want.Equals(root) {
		return fmt.Errorf("%w: store answered %s for a %d-byte value, its balanced UnixFS file with %d-byte leaves is %s", ErrCorrupt, root, len(data), chunk, want)
	}
	return nil
}

// hashOnly returns a Save that stores nothing and gives CIDv1(codec, mh(data)).
func hashOnly(mh uint64) func(context.Context, []byte, multicodec.Code) (cid.Cid, error) {
	if mh == multihash.BLAKE3 {
		return func(_ context.Context, data []byte, codec multicodec.Code) (cid.Cid, error) {
			return blake3CID(codec, data), nil
		}
	}
	return func(_ context.Context, data []byte, codec multicodec.Code) (cid.Cid, error) {
		return cid.Prefix{Version: 1, Codec: uint64(codec), MhType: mh, MhLength: -1}.Sum(data)
	}
}

// fileLink is a link of a UnixFS file node: the child, the file bytes under it (its blocksize)
// and its Tsize (the bytes of every block under it, itself included).
type fileLink struct {
	id          cid.Cid
	size, tsize uint64
}

// writeFile stores data (longer than chunk) through save as boxo's balanced importer lays it out
// (balanced.Layout with RawLeaves and Maxlinks 174): chunk-byte raw leaves in order; the root is
// the shallowest node whose subtree can hold them all, 174^depth leaves; every node at depth d > 0
// has as many children as it needs, each a full-height subtree of depth d-1, even the last and
// partial one (boxo never collapses it).
func writeFile(ctx context.Context, data []byte, chunk int, save func(context.Context, []byte, multicodec.Code) (cid.Cid, error)) (cid.Cid, error) {
	leaves := (len(data) + chunk - 1) / chunk
	depth, span := 1, fileMaxLinks
	for span < leaves {
		depth, span = depth+1, span*fileMaxLinks
	}
	w := fileWriter{data: data, chunk: chunk, save: save}
	l, err := w.node(ctx, depth)
	if err != nil {
		return cid.Undef, fmt.Errorf("save %d-byte value as a UnixFS file: %w", len(data), err)
	}
	return l.id, nil
}

// fileWriter stores the blocks of one file, leaves in order from off.
type fileWriter struct {
	data  []byte
	chunk int
	off   int
	save  func(context.Context, []byte, multicodec.Code) (cid.Cid, error)
}

// node stores the next node of the given depth (≥ 1) and everything under it.
func (w *fileWriter) node(ctx context.Context, depth int) (fileLink, error) {
	links := make([]fileLink, 0, min(fileMaxLinks, (len(w.data)-w.off+w.chunk-1)/w.chunk))
	for len(links) < fileMaxLinks && w.off < len(w.data) {
		var l fileLink
		var err error
		if depth == 1 {
			l, err = w.leaf(ctx)
		} else {
			l, err = w.node(ctx, depth-1)
		}
		if err != nil {
			return fileLink{}, err
		}
		links = append(links, l)
	}
	b := encodeFileNode(links)
	id, err := w.save(ctx, b, multicodec.DagPb)
	if err != nil {
		return fileLink{}, err
	}
	l := fileLink{id: id, tsize: uint64(len(b))}
	for _, c := range links {
		l.size += c.size
		l.tsize += c.tsize
	}
	return l, nil
}

// leaf stores the next chunk as a raw block.
func (w *fileWriter) leaf(ctx context.Context) (fileLink, error) {
	if err := ctx.Err(); err != nil {
		return fileLink{}, err
	}
	b := w.data[w.off:min(w.off+w.chunk, len(w.data))]
	w.off += len(b)
	id, err := w.save(ctx, b, multicodec.Raw)
	if err != nil {
		return fileLink{}, err
	}
	return fileLink{id: id, size: uint64(len(b)), tsize: uint64(len(b))}, nil
}

// encodeFileNode returns the dag-pb block of a UnixFS file node without data of its own over
// links, byte for byte as boxo encodes it. In protobuf (dag-pb writes the links first):
//
//	PBNode { repeated PBLink Links = 2; bytes Data = 1 }
//	PBLink { bytes Hash = 1; string Name = 2 (always written, empty); uint64 Tsize = 3 }
//	Data   { Type = 1 (File = 2); filesize = 3; repeated blocksizes = 4 (not packed) }
func encodeFileNode(links []fileLink) []byte {
	var size uint64
	for _, l := range links {
		size += l.size
	}
	fsData := make([]byte, 0, 2+1+binary.MaxVarintLen64*(1+len(links)))
	fsData = append(fsData, 0x08, 2, 0x18)
	fsData = binary.AppendUvarint(fsData, size)
	for _, l := range links {
		fsData = append(fsData, 0x20)
		fsData = binary.AppendUvarint(fsData, l.size)
	}
	b := make([]byte, 0, len(links)*(2*binary.MaxVarintLen64+48)+len(fsData)+binary.MaxVarintLen64+1)
	for _, l := range links {
		id := l.id.Bytes()
		n := 1 + varint.UvarintSize(uint64(len(id))) + len(id) + 2 + 1 + varint.UvarintSize(l.tsize)
		b = append(b, 0x12)
		b = binary.AppendUvarint(b, uint64(n))
		b = append(b, 0x0a)
		b = binary.AppendUvarint(b, uint64(len(id)))
		b = append(b, id...)
		b = append(b, 0x12, 0, 0x18)
		b = binary.AppendUvarint(b, l.tsize)
	}
	b = append(b, 0x0a)
	b = binary.AppendUvarint(b, uint64(len(fsData)))
	return append(b, fsData...)
}
