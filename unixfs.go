package hamt

import (
	"context"
	"fmt"
	"math"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/multiformats/go-multicodec"
)

// This file reads a value stored as a UnixFS file: Kubo keeps a value larger than one chunk as a
// DAG of dag-pb nodes over raw leaves and the map points at its dag-pb root, and every store gets
// the same file (unixfs_write.go writes it). The file is read
// through any CAS, block by block (CAS.Load gives each block's own bytes, verified by the store),
// and its structure is checked on the way: links are raw or dag-pb, the tree is at most
// maxFileDepth deep, every node's filesize is its data plus its children's blocksizes, every child
// is exactly the size its parent says, and a range reads only the leaves that hold it. Memory
// grows with the bytes the blocks actually give, never with what a node claims.

// maxFileDepth bounds the depth of a UnixFS file: a balanced DAG of 174-link nodes over 1-byte
// leaves is 174^8 bytes at depth 8; a trickle DAG is deeper but far from this.
const maxFileDepth = 64

// FileReader is a CAS that can read a UnixFS file (the value a dag-pb CID names) in fewer round
// trips than block by block, as KuboCAS does with one CAR request. The core uses it when present
// and otherwise reads the file through Load.
type FileReader interface {
	// ReadFile returns the bytes that r (valid) selects of the UnixFS file rooted at dag-pb block
	// id, resolved as ByteRange.Bounds describes. Every block it reads must be verified against its
	// CID and the file's structure checked: a mismatch is ErrCorrupt, a block the store does not
	// hold ErrNotFound or ErrMissingBlock.
	ReadFile(ctx context.Context, id cid.Cid, r ByteRange) ([]byte, error)
}

// isDagPb reports whether the binary CID c names a dag-pb block: a CIDv1 with codec 0x70, or a
// CIDv0 (a bare sha2-256 multihash, always dag-pb).
func isDagPb(c cidBytes) bool {
	if len(c) == 34 && c[0] == 0x12 && c[1] == 0x20 {
		return true
	}
	return len(c) > 2 && c[0] == 1 && c[1] == byte(multicodec.DagPb)
}

// fileNode is one decoded dag-pb node of a UnixFS file.
type fileNode struct {
	data   []byte   // file bytes held in the node itself, before its children's
	sizes  []uint64 // blocksizes: the file bytes under each link
	links  []cid.Cid
	size   uint64 // filesize: data plus every child's bytes
	encLen int    // length of the block
}

// fileBlocks reads the blocks of UnixFS files through a CAS.
type fileBlocks struct {
	cas    CAS
	verify bool // hash each block again (Map's WithVerifyBlocks); stores verify what they load
}

// load returns block id's bytes, verified when asked.
func (f fileBlocks) load(ctx context.Context, id cid.Cid) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	b, err := loadBlock(ctx, f.cas, id)
	if err != nil {
		return nil, fmt.Errorf("file block %s: %w", id, missingBlock(err))
	}
	if f.verify {
		if err := verifyBlock(id, b); err != nil {
			return nil, err
		}
	}
	return b, nil
}

// node loads and decodes the dag-pb node id, checking that it is a file node whose sizes add up.
func (f fileBlocks) node(ctx context.Context, id cid.Cid) (*fileNode, []byte, error) {
	b, err := f.load(ctx, id)
	if err != nil {
		return nil, nil, err
	}
	n, err := decodeFileNode(id, b)
	return n, b, err
}

// decodeFileNode decodes the bytes b of dag-pb block id as a UnixFS file node and checks it.
func decodeFileNode(id cid.Cid, b []byte) (*fileNode, error) {
	pn, err := decodePBNode(b)
	if err != nil {
		return nil, fmt.Errorf("%w: file node %s: %v", ErrCorrupt, id, err)
	}
	fsn, err := decodeUnixFSData(pn.data)
	if err != nil {
		return nil, fmt.Errorf("%w: file node %s: %v", ErrCorrupt, id, err)
	}
	if fsn.typ != unixfsFile && fsn.typ != unixfsRaw {
		return nil, fmt.Errorf("%w: dag-pb block %s is a UnixFS %s, not a file", ErrCorrupt, id, unixfsTypeName(fsn.typ))
	}
	n := &fileNode{data: fsn.data, sizes: fsn.blocksizes, size: fsn.filesize, encLen: len(b)}
	links := pn.links
	if len(links) != len(n.sizes) {
		return nil, fmt.Errorf("%w: file node %s has %d links and %d blocksizes", ErrCorrupt, id, len(links), len(n.sizes))
	}
	total := uint64(len(n.data))
	n.links = make([]cid.Cid, len(links))
	for i, l := range links {
		switch l.Prefix().Codec {
		case uint64(multicodec.Raw), uint64(multicodec.DagPb):
		default:
			return nil, fmt.Errorf("%w: file node %s links to %s, neither raw nor dag-pb", ErrCorrupt, id, l)
		}
		n.links[i] = l
		if n.sizes[i] > math.MaxInt64-total {
			return nil, fmt.Errorf("%w: file node %s: blocksizes overflow", ErrCorrupt, id)
		}
		total += n.sizes[i]
	}
	if total != n.size {
		return nil, fmt.Errorf("%w: file node %s says %d bytes, its data and blocksizes add up to %d", ErrCorrupt, id, n.size, total)
	}
	return n, nil
}

// fileSize returns the size of the UnixFS file rooted at dag-pb block id, from its root alone.
func fileSize(ctx context.Context, cas CAS, id cid.Cid, verify bool) (int64, error) {
	n, _, err := fileBlocks{cas, verify}.node(ctx, id)
	if err != nil {
		return 0, err
	}
	return int64(n.size), nil
}

// readFile returns the bytes r (valid) selects of the UnixFS file rooted at dag-pb block id,
// loading only the nodes and leaves that hold them.
func readFile(ctx context.Context, cas CAS, id cid.Cid, r ByteRange, verify bool) ([]byte, error) {
	f := fileBlocks{cas, verify}
	root, _, err := f.node(ctx, id)
	if err != nil {
		return nil, err
	}
	start, end := r.Bounds(int64(root.size))
	// The whole file reads every child, even one its parent says is empty, so that every block is
	// checked; a range trusts the blocksizes of the subtrees it skips.
	fr := fileRange{fileBlocks: f, start: start, end: end, all: start == 0 && end == int64(root.size)}
	if err := fr.read(ctx, id, root, 0, 0); err != nil {
		return nil, err
	}
	if fr.n != end-start {
		return nil, fmt.Errorf("%w: file %s gave %d bytes of [%d, %d)", ErrCorrupt, id, fr.n, start, end)
	}
	// The root's claim is never trusted for an allocation: the parts are blocks already read, and
	// only now, their sizes proven, are they joined (a range within one leaf is that leaf's slice).
	switch len(fr.parts) {
	case 0:
		return []byte{}, nil
	case 1:
		return fr.parts[0], nil
	}
	out := make([]byte, 0, fr.n)
	for _, p := range fr.parts {
		out = append(out, p...)
	}
	return out, nil
}

// fileRange collects the file bytes [start, end) while walking a file's tree.
type fileRange struct {
	fileBlocks
	start, end int64
	all        bool     // read every child, whatever its size
	parts      [][]byte // the range's bytes in order: slices of the blocks read
	n          int64    // bytes in parts
	tail       bool     // the last part is the reader's own copy of small pieces, with room left
	// empty holds the subtrees of no bytes read and checked already: read again they give
	// nothing, and a hostile file linking 174 times to one such node a level, 8 levels deep, has
	// 174^8 of them in 9 blocks.
	empty map[cidBytes]bool
}

// Small pieces of a file (tiny leaves, a node's own data) are copied into parts of their own of
// up to fileTailPart bytes, so that a part's slice header (24 bytes) is not the most of what a
// file of 1-byte leaves holds: memory stays about the bytes returned.
const (
	fileSmallPiece = 4 << 10
	fileTailPart   = 64 << 10
)

// take keeps the part of b, which is the file bytes [at, at+len(b)), that falls in the range.
func (fr *fileRange) take(b []byte, at int64) {
	lo, hi := max(fr.start, at), min(fr.end, at+int64(len(b)))
	if lo >= hi {
		return
	}
	p := b[lo-at : hi-at]
	fr.n += hi - lo
	if len(p) >= fileSmallPiece {
		fr.parts, fr.tail = append(fr.parts, p), false
		return
	}
	if k := len(fr.parts) - 1; fr.tail && len(fr.parts[k])+len(p) <= cap(fr.parts[k]) {
		fr.parts[k] = append(fr.parts[k], p...)
		return
	}
	// The range's end bounds the part (a claim, but the part is at most fileTailPart).
	part := make([]byte, 0, max(int64(len(p)), min(fileTailPart, fr.end-lo)))
	fr.parts, fr.tail = append(fr.parts, append(part, p...)), true
}

// read walks node n (block id), which holds the file bytes from at, into the range.
func (fr *fileRange) read(ctx context.Context, id cid.Cid, n *fileNode, at int64, depth int) error {
	fr.take(n.data, at)
	at += int64(len(n.data))
	for i, child := range n.links {
		size := int64(n.sizes[i]) // decodeFileNode bounded the sum by MaxInt64
		if fr.all || at < fr.end && at+size > fr.start {
			if err := fr.child(ctx, id, child, size, at, depth+1); err != nil {
				return err
			}
		}
		at += size
	}
	return nil
}

// child reads the child block id of parent, which its parent says holds size bytes from at.
func (fr *fileRange) child(ctx context.Context, parent, id cid.Cid, size, at int64, depth int) error {
	if depth > maxFileDepth {
		return fmt.Errorf("%w: file tree under %s is deeper than %d", ErrCorrupt, parent, maxFileDepth)
	}
	if size == 0 {
		key := cidKey(id)
		if fr.empty[key] {
			return nil
		}
		if err := fr.subtree(ctx, parent, id, size, at, depth); err != nil {
			return err
		}
		if fr.empty == nil {
			fr.empty = map[cidBytes]bool{}
		}
		fr.empty[key] = true
		return nil
	}
	return fr.subtree(ctx, parent, id, size, at, depth)
}

// subtree reads child as child does, without looking at what was read before.
func (fr *fileRange) subtree(ctx context.Context, parent, id cid.Cid, size, at int64, depth int) error {
	if id.Prefix().Codec == uint64(multicodec.Raw) {
		b, err := fr.load(ctx, id)
		if err != nil {
			return err
		}
		if int64(len(b)) != size {
			return fmt.Errorf("%w: leaf %s has %d bytes, its parent %s says %d", ErrCorrupt, id, len(b), parent, size)
		}
		fr.take(b, at)
		return nil
	}
	n, _, err := fr.node(ctx, id)
	if err != nil {
		return err
	}
	if int64(n.size) != size {
		return fmt.Errorf("%w: file node %s has %d bytes, its parent %s says %d", ErrCorrupt, id, n.size, parent, size)
	}
	return fr.read(ctx, id, n, at, depth)
}

// eachFileBlock calls visit with every distinct block of the UnixFS file rooted at dag-pb block
// id (root first, then depth first), loading each once and checking the tree's structure as
// readFile does. A block shared by several parents (Kubo dedups identical chunks) is visited once,
// so a hostile "diamond" costs its distinct blocks, not its claimed size. skip, when not nil,
// says a block was already handled elsewhere (a CAR export's other values): it is neither loaded
// nor visited, and its size is taken on trust.
func eachFileBlock(ctx context.Context, cas CAS, id cid.Cid, verify bool, skip func(cid.Cid) bool, visit func(id cid.Cid, data []byte) error) error {
	return eachFileBlockAhead(ctx, cas, id, verify, skip, visit, walkAhead{})
}

// eachFileBlockAhead is eachFileBlock loading each node's children ahead, up to ahead.workers at
// once (a readAhead per node: at most that many blocks held per level of the file), when ahead is
// slow. Blocks are visited, and failures reported, in the same order; a block loaded ahead that is
// visited or skipped by the time the walk reaches it is dropped, its load's error with it.
func eachFileBlockAhead(ctx context.Context, cas CAS, id cid.Cid, verify bool, skip func(cid.Cid) bool, visit func(id cid.Cid, data []byte) error, ahead walkAhead) error {
	f := fileBlocks{cas, verify}
	timed := func(ctx context.Context, id cid.Cid) ([]byte, error) {
		t := time.Now()
		b, err := f.load(ctx, id)
		ahead.timeLoad(t, b, err)
		return b, err
	}
	sizes := map[cidBytes]uint64{} // blocks visited, with their file bytes
	done := func(id cid.Cid) bool {
		_, ok := sizes[cidKey(id)]
		return ok || skip != nil && skip(id)
	}
	var walk func(parent, id cid.Cid, want uint64, depth int, pre *valueBatch[[]byte]) error
	walk = func(parent, id cid.Cid, want uint64, depth int, pre *valueBatch[[]byte]) error {
		if depth > maxFileDepth {
			return fmt.Errorf("%w: file tree under %s is deeper than %d", ErrCorrupt, parent, maxFileDepth)
		}
		key := cidKey(id)
		if got, ok := sizes[key]; ok {
			if depth > 0 && got != want {
				return fmt.Errorf("%w: block %s has %d bytes, its parent %s says %d", ErrCorrupt, id, got, parent, want)
			}
			return nil
		}
		if skip != nil && skip(id) {
			return nil
		}
		load := timed
		if pre != nil { // loaded ahead
			load = func(context.Context, cid.Cid) ([]byte, error) { return pre.vals[0], pre.err }
		}
		if id.Prefix().Codec == uint64(multicodec.Raw) {
			b, err := load(ctx, id)
			if err != nil {
				return err
			}
			if uint64(len(b)) != want {
				return fmt.Errorf("%w: leaf %s has %d bytes, its parent %s says %d", ErrCorrupt, id, len(b), parent, want)
			}
			sizes[key] = want
			return visit(id, b)
		}
		b, err := load(ctx, id)
		if err != nil {
			return err
		}
		n, err := decodeFileNode(id, b)
		if err != nil {
			return err
		}
		if depth > 0 && n.size != want {
			return fmt.Errorf("%w: file node %s has %d bytes, its parent %s says %d", ErrCorrupt, id, n.size, parent, want)
		}
		sizes[key] = n.size
		if err := visit(id, b); err != nil {
			return err
		}
		if !ahead.slow() || len(n.links) < 2 {
			for i, child := range n.links {
				if err := walk(id, child, n.sizes[i], depth+1, nil); err != nil {
					return err
				}
			}
			return nil
		}
		ra := newReadAhead[[]byte](ctx, ahead.workers)
		defer ra.stop()
		ra.nsPerLoad.Store(ahead.lat.ns.Load())
		loads := make([]*valueBatch[[]byte], len(n.links)) // the children loaded ahead
		started := map[cidBytes]struct{}{}
		next := 0 // the children before next have been considered for loading ahead
		for i, child := range n.links {
			for ; next < len(n.links); next++ {
				c := n.links[next]
				if _, ok := started[cidKey(c)]; ok || done(c) {
					continue // loaded by the time it is reached
				}
				if ra.full(1) {
					break
				}
				started[cidKey(c)] = struct{}{}
				loads[next] = &valueBatch[[]byte]{keys: []string{""}, ids: []cidBytes{cidKey(c)}, vals: make([][]byte, 1)}
				ra.start(loads[next], func(ctx context.Context, b *valueBatch[[]byte]) {
					b.vals[0], b.err = timed(ctx, b.ids[0].cid())
				})
			}
			var pre *valueBatch[[]byte]
			if loads[i] != nil {
				pre, loads[i] = ra.take(), nil // the oldest load is child i's: started in order
			}
			if err := walk(id, child, n.sizes[i], depth+1, pre); err != nil {
				return err
			}
		}
		return nil
	}
	if id.Prefix().Codec != uint64(multicodec.DagPb) {
		return fmt.Errorf("%w: file root %s is not dag-pb", ErrCorrupt, id)
	}
	return walk(id, id, 0, 0, nil)
}

// loadValue returns the bytes r (valid) selects of value id: for a dag-pb block, the UnixFS file
// it heads (through the CAS's FileReader when it has one); otherwise the block itself, by range
// when the CAS can (unverified, as RangeLoader says) and verified when whole and asked.
func loadValue(ctx context.Context, cas CAS, id cid.Cid, r ByteRange, verify bool) ([]byte, error) {
	if isDagPb(cidKey(id)) {
		if fr, ok := cas.(FileReader); ok {
			return fr.ReadFile(ctx, id, r)
		}
		return readFile(ctx, cas, id, r, verify)
	}
	if !r.IsFull() {
		return loadRange(ctx, cas, id, r)
	}
	b, err := loadBlock(ctx, cas, id)
	if err != nil {
		return nil, err
	}
	if verify {
		if err := verifyBlock(id, b); err != nil {
			return nil, err
		}
	}
	return b, nil
}

// valueSize returns the size of value id: a dag-pb file's size from its root node, otherwise the
// block's size (without loading it when the CAS is a BlockSizer).
func valueSize(ctx context.Context, cas CAS, id cid.Cid, verify bool) (int64, error) {
	if isDagPb(cidKey(id)) {
		return fileSize(ctx, cas, id, verify)
	}
	return blockSize(ctx, cas, id)
}
