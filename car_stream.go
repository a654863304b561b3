package hamt

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/ipfs/go-cid"
	"github.com/multiformats/go-multicodec"
	"github.com/multiformats/go-multihash"
)

// This file reads a CAR stream of one DAG from an untrusted source (a trustless gateway's
// ?format=car&dag-scope=all answer) and verifies it block by block as it arrives.

// ErrUnexpectedBlock is a CAR stream of a DAG holding a block the DAG did not lead to: one that
// no block before it links to (nor is the root), one sent twice, or a child sent before its
// parent. A stream that ends before every linked block came is ErrMissingBlock and
// io.ErrUnexpectedEOF; a block that does not hash to its CID is ErrCorrupt.
var ErrUnexpectedBlock = errors.New("unexpected block in CAR stream")

// dagStream reads a CARv1 stream of the DAG at root, parents before children (the order of a
// gateway's depth-first answer, with dups=n), and checks each block as it comes: it hashes to its
// CID, it is the root or linked from a block already read and not read before, and when the
// stream ends every block linked was read. What it keeps is what it must: the blocks still
// expected, and where each block read lies in the stream (its offset and size, about 100 bytes a
// block, which also tells a block sent twice). Block data is never kept.
type dagStream struct {
	cr      *countingReader
	br      *carReader
	root    cid.Cid
	pending map[cidBytes]struct{}    // linked, not read yet
	locs    map[cidBytes]carBlockLoc // read: where in the stream
	order   []cidBytes               // read, in stream order
	pos     int64                    // the end of the last whole section
	buf     []byte                   // the data of the block last read

	// For readers on other goroutines (FetchedDAG): locs and order change under mu, and
	// arrived is called, under mu, after each block.
	mu      *sync.RWMutex
	arrived func()
}

// newDAGStream reads the header of the CAR stream r, which must be a CARv1 naming root as its
// only root.
func newDAGStream(r io.Reader, root cid.Cid) (*dagStream, error) {
	cr := &countingReader{r: bufio.NewReaderSize(r, 64<<10)}
	br, err := newCARReader(cr)
	if err != nil {
		return nil, fmt.Errorf("CAR header: %w", carError(err))
	}
	if br.version != 1 {
		return nil, fmt.Errorf("CAR stream: version %d, want 1", br.version)
	}
	if len(br.roots) != 1 || !br.roots[0].Equals(root) {
		return nil, fmt.Errorf("%w: CAR stream for %s names roots %v", ErrUnexpectedBlock, root, br.roots)
	}
	s := &dagStream{cr: cr, br: br, root: root, pos: cr.n,
		pending: map[cidBytes]struct{}{cidKey(root): {}}, locs: map[cidBytes]carBlockLoc{}}
	return s, nil
}

// next returns the next block, verified, or io.EOF when the stream ended with the whole DAG read.
// The block's data is valid until the next call: one buffer serves every block, so that a stream
// of terabytes does not allocate each block anew (the garbage collector's work, which was a tenth
// of an export's CPU).
func (s *dagStream) next() (cid.Cid, []byte, error) {
	id, data, err := s.section()
	if errors.Is(err, io.EOF) {
		if s.cr.n != s.pos {
			return cid.Undef, nil, fmt.Errorf("block %d: %w: the CAR ends inside a section", len(s.order), io.ErrUnexpectedEOF)
		}
		if len(s.pending) > 0 {
			var some cidBytes
			for some = range s.pending {
				break
			}
			return cid.Undef, nil, fmt.Errorf("%w: %w: the CAR stream ended with %d linked blocks not sent (%s among them)",
				ErrMissingBlock, io.ErrUnexpectedEOF, len(s.pending), some)
		}
		return cid.Undef, nil, io.EOF
	}
	if err != nil {
		// A stream that does not parse where linked blocks are still due broke off before them
		// (boxo's gateway ends a stream it cannot finish with an error text in place of a block).
		return cid.Undef, nil, fmt.Errorf("block %d: %w (%w: %d linked blocks not sent)", len(s.order), carError(err), ErrMissingBlock, len(s.pending))
	}
	key := cidKey(id)
	if _, ok := s.pending[key]; !ok {
		why := "no block before it links to it"
		if _, ok := s.locs[key]; ok {
			why = "it was sent before"
		}
		return cid.Undef, nil, fmt.Errorf("%w: block %d, %s: %s", ErrUnexpectedBlock, len(s.order), id, why)
	}
	if err := verifyBlock(id, data); err != nil {
		return cid.Undef, nil, fmt.Errorf("block %d: %w", len(s.order), err)
	}
	links, err := blockLinks(id, data)
	if err != nil {
		return cid.Undef, nil, fmt.Errorf("block %d, %s: %w", len(s.order), id, err)
	}
	delete(s.pending, key)
	s.pos = s.cr.n
	if s.mu != nil {
		s.mu.Lock()
	}
	s.locs[key] = carBlockLoc{off: s.pos - int64(len(data)), n: int64(len(data))}
	s.order = append(s.order, key)
	if s.mu != nil {
		s.arrived()
		s.mu.Unlock()
	}
	for _, l := range links {
		if l.Prefix().MhType == multihash.IDENTITY {
			continue // its data is in the CID: never a block of its own
		}
		lk := cidKey(l)
		if _, ok := s.locs[lk]; !ok {
			s.pending[lk] = struct{}{}
		}
	}
	return id, data, nil
}

// section reads the next section of the stream, its block's data into s.buf: what carReader.next
// reads, with its limit on a block's size, without allocating the data.
func (s *dagStream) section() (cid.Cid, []byte, error) {
	id, n, err := s.br.nextHeader()
	if err != nil {
		return cid.Undef, nil, err
	}
	if n > carMaxSection {
		return cid.Undef, nil, fmt.Errorf("a section of %d bytes, more than the %d a block may take", n, carMaxSection)
	}
	if uint64(cap(s.buf)) < n {
		s.buf = make([]byte, n)
	}
	data := s.buf[:n]
	if _, err := io.ReadFull(s.br.data, data); err != nil {
		return cid.Undef, nil, carCut(err)
	}
	return id, data, nil
}

// blockLinks returns the CIDs a block links to: none for raw, the links of a dag-pb node, every
// CID in a dag-cbor block. Other codecs are refused: their links cannot be followed.
func blockLinks(id cid.Cid, data []byte) ([]cid.Cid, error) {
	switch multicodec.Code(id.Prefix().Codec) {
	case multicodec.Raw:
		return nil, nil
	case multicodec.DagPb:
		pn, err := decodePBNode(data)
		if err != nil {
			return nil, fmt.Errorf("%w: dag-pb: %v", ErrCorrupt, err)
		}
		return pn.links, nil
	case multicodec.DagCbor:
		var raw any
		if err := dagDec.Unmarshal(data, &raw); err != nil {
			return nil, fmt.Errorf("%w: %v", ErrMalformedValue, err)
		}
		v, err := fromCBOR(raw)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrMalformedValue, err)
		}
		return appendLinks(nil, v), nil
	}
	return nil, fmt.Errorf("%w: codec %s: its links cannot be followed", ErrUnexpectedBlock, multicodec.Code(id.Prefix().Codec))
}

// appendLinks appends every CID in a decoded DAG-CBOR value.
func appendLinks(links []cid.Cid, v any) []cid.Cid {
	switch x := v.(type) {
	case cid.Cid:
		return append(links, x)
	case []any:
		for _, e := range x {
			links = appendLinks(links, e)
		}
	case map[string]any:
		for _, e := range x {
			links = appendLinks(links, e)
		}
	}
	return links
}
