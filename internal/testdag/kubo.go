package testdag

import (
	"bytes"
	"context"
	"sync"

	chunk "github.com/ipfs/boxo/chunker"
	"github.com/ipfs/boxo/ipld/merkledag"
	mdtest "github.com/ipfs/boxo/ipld/merkledag/test"
	"github.com/ipfs/boxo/ipld/unixfs"
	"github.com/ipfs/boxo/ipld/unixfs/importer/balanced"
	"github.com/ipfs/boxo/ipld/unixfs/importer/helpers"
	unixfspb "github.com/ipfs/boxo/ipld/unixfs/pb"
	"github.com/ipfs/go-cid"
	"github.com/ipfs/go-cidutil"
	ipld "github.com/ipfs/go-ipld-format"
	"github.com/multiformats/go-multicodec"
	"github.com/multiformats/go-multihash"
)

// Kubo's layout for `ipfs add --chunker=size-1048576`: the chunk size asked for and the links a
// node of the balanced layout holds at most (boxo's helpers.DefaultLinksPerBlock).
const (
	KuboChunk    = 1 << 20
	KuboMaxLinks = 174
)

// ImportFile lays data out as Kubo's adder does with --hash=blake3 --chunker=size-chunkSize (a
// balanced UnixFS DAG of CIDv1 blocks over raw leaves, at most maxLinks links a node) and returns
// the root and every distinct block, root first, depth first.
func ImportFile(ctx context.Context, data []byte, chunkSize int64, maxLinks int) (cid.Cid, []Block, error) {
	return ImportFileInline(ctx, data, chunkSize, maxLinks, 0)
}

// ImportFileInline is ImportFile with Kubo's `--inline --inline-limit=inlineLimit` (none when
// 0): a block of at most inlineLimit bytes, leaf or node, gets an identity CID, which holds the
// block itself. Identity blocks are not returned: no store holds them.
func ImportFileInline(ctx context.Context, data []byte, chunkSize int64, maxLinks, inlineLimit int) (cid.Cid, []Block, error) {
	prefix, err := merkledag.PrefixForCidVersion(1)
	if err != nil {
		return cid.Undef, nil, err
	}
	prefix.MhType, prefix.MhLength = multihash.BLAKE3, -1
	var builder cid.Builder = prefix
	if inlineLimit > 0 {
		builder = cidutil.InlineBuilder{Builder: prefix, Limit: inlineLimit}
	}
	dserv := mdtest.Mock()
	params := helpers.DagBuilderParams{Dagserv: dserv, RawLeaves: true, Maxlinks: maxLinks, CidBuilder: builder}
	db, err := params.New(chunk.NewSizeSplitter(bytes.NewReader(data), chunkSize))
	if err != nil {
		return cid.Undef, nil, err
	}
	root, err := balanced.Layout(db)
	if err != nil {
		return cid.Undef, nil, err
	}
	var out []Block
	seen := map[string]bool{}
	var walk func(id cid.Cid) error
	walk = func(id cid.Cid) error {
		if seen[id.KeyString()] {
			return nil
		}
		seen[id.KeyString()] = true
		nd, err := dserv.Get(ctx, id)
		if err != nil {
			return err
		}
		if id.Prefix().MhType != multihash.IDENTITY {
			out = append(out, Block{id, nd.RawData()})
		}
		for _, l := range nd.Links() {
			if err := walk(l.Cid); err != nil {
				return err
			}
		}
		return nil
	}
	return root.Cid(), out, walk(root.Cid())
}

// Store is what a Kubo keeps its blocks in: a hamt.CAS that takes blocks by CID too, such as
// *hamt.MemoryCAS.
type Store interface {
	Saver
	Load(ctx context.Context, id cid.Cid) ([]byte, error)
	Put(ctx context.Context, id cid.Cid, data []byte) error
}

// Kubo is a CAS over a Store that stores values as Kubo does (ipfs add --hash=blake3
// --chunker=size-N): a value of more than one chunk becomes a UnixFS file laid out by ImportFile,
// whose dag-pb root is the value's CID; nodes and smaller values are saved whole. Every block it
// stores is recorded, in order, so that a test can write the CAR `ipfs dag export` would give
// without going through the library's WriteCAR.
type Kubo struct {
	Store
	chunk    int64
	maxLinks int
	mu       sync.Mutex // guards blocks: a CAS is used by concurrent flush workers
	blocks   []Block
}

// NewKubo is a Kubo over s with the given chunk size and links a node.
func NewKubo(s Store, chunk int64, maxLinks int) *Kubo {
	return &Kubo{Store: s, chunk: chunk, maxLinks: maxLinks}
}

// Save stores data as Kubo would and returns its CID.
func (k *Kubo) Save(ctx context.Context, data []byte, codec multicodec.Code) (cid.Cid, error) {
	if int64(len(data)) <= k.chunk || codec != multicodec.Raw { // nodes stay whole, even over a test's tiny chunk
		id, err := k.Store.Save(ctx, data, codec)
		k.record(Block{id, bytes.Clone(data)})
		return id, err
	}
	root, blocks, err := ImportFile(ctx, data, k.chunk, k.maxLinks)
	if err != nil {
		return cid.Undef, err
	}
	for _, b := range blocks {
		if err := k.Put(ctx, b.ID, b.Data); err != nil {
			return cid.Undef, err
		}
	}
	k.record(blocks...)
	return root, nil
}

// record appends blocks to the record of what k stored.
func (k *Kubo) record(blocks ...Block) {
	k.mu.Lock()
	k.blocks = append(k.blocks, blocks...)
	k.mu.Unlock()
}

// Blocks returns every block stored so far, in the order stored (a file's root first).
func (k *Kubo) Blocks() []Block {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.blocks[:len(k.blocks):len(k.blocks)]
}

// Bomb is a valid UnixFS file, as small in a store as it is huge when read: one raw leaf of
// leafSize bytes of fill, linked fanout times from each of levels dag-pb nodes stacked above it, so
// that levels+1 blocks make a file of leafSize × fanout^levels bytes. It returns the root and the
// blocks, root first.
func Bomb(leafSize int, fill byte, fanout, levels int) (cid.Cid, []Block, error) {
	prefix, err := merkledag.PrefixForCidVersion(1)
	if err != nil {
		return cid.Undef, nil, err
	}
	prefix.MhType, prefix.MhLength = multihash.BLAKE3, -1
	leaf := bytes.Repeat([]byte{fill}, leafSize)
	child, size := CID(multicodec.Raw, leaf), uint64(leafSize)
	blocks := []Block{{child, leaf}}
	for range levels {
		fsn := unixfs.NewFSNode(unixfspb.Data_File)
		nd := &merkledag.ProtoNode{}
		if err := nd.SetCidBuilder(prefix); err != nil {
			return cid.Undef, nil, err
		}
		for range fanout {
			if err := nd.AddRawLink("", &ipld.Link{Cid: child, Size: size}); err != nil {
				return cid.Undef, nil, err
			}
			fsn.AddBlockSize(size)
		}
		data, err := fsn.GetBytes()
		if err != nil {
			return cid.Undef, nil, err
		}
		nd.SetData(data)
		child, size = nd.Cid(), fsn.FileSize()
		blocks = append([]Block{{child, nd.RawData()}}, blocks...)
	}
	return child, blocks, nil
}
