package hamt

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/ipfs/go-cid"
	"github.com/multiformats/go-multicodec"
)

// This file imports a CAR: check all of it first, then store it, so a bad CAR leaves nothing.

// BlockPutter is a CAS that stores a block under a CID it is given (after checking the bytes
// against it): MemoryCAS and BoltCAS.
type BlockPutter interface {
	Put(ctx context.Context, id cid.Cid, data []byte) error
}

// ReadCAR stores the blocks of a CAR (v1 or v2) in dst and returns the CAR's roots and the number
// of distinct blocks stored. Nothing is stored until the whole CAR has been checked:
//
//   - it is complete: a CAR cut anywhere, even right after a section's length, is an error
//     (wrapping io.ErrUnexpectedEOF);
//   - every block hashes to its CID (ErrCorrupt);
//   - it names at least one root, and every root is in it (ErrMissingBlock);
//   - everything a root reaches is in it: a dag-cbor root is read as a map (every node, every
//     value, and every block of a value stored as a UnixFS file) or, when it is a sharded Zarr
//     root, as that (metadata values, shards, chunks), a dag-pb root as a UnixFS file;
//     a block missing is ErrMissingBlock, a node that is not a map node ErrMalformedNode, a file
//     whose structure does not hold ErrCorrupt.
//
// A CAR that fails a check stores nothing. To keep memory bounded for CARs of many gigabytes the
// CAR is read twice, once to check and once to store, holding only an index of its blocks (about
// 100 bytes each, not their data): r is read in place when it is an io.ReaderAt and io.Seeker
// whose position can be found (an *os.File of a regular file, a bytes.Reader); any other reader
// (a pipe, a network stream) is first copied to a temporary file, removed before ReadCAR returns.
// A CAR that changes while it is read is an error. When dst is a Flusher (BoltCAS) it is flushed
// before ReadCAR returns, so the roots it returns are durable. Should dst fail, or ctx end, while the blocks
// are being stored, some of them stay stored: each is a checked block of the CAR, and importing the
// CAR again completes it.
func ReadCAR(ctx context.Context, dst BlockPutter, r io.Reader) ([]cid.Cid, int, error) {
	src, cleanup, err := carSource(ctx, r)
	if err != nil {
		return nil, 0, fmt.Errorf("read car: %w", err)
	}
	defer cleanup()
	c, err := indexCAR(ctx, src)
	if err != nil {
		return c.roots, 0, fmt.Errorf("read car: %w", err)
	}
	if len(c.roots) == 0 {
		return nil, 0, errors.New("read car: CAR has no roots")
	}
	for _, root := range c.roots {
		if err := c.checkComplete(ctx, root); err != nil {
			return c.roots, 0, fmt.Errorf("read car: root %s: %w", root, err)
		}
	}
	n, err := c.store(ctx, dst)
	if err != nil {
		return c.roots, n, fmt.Errorf("read car: %w", err)
	}
	if f, ok := dst.(Flusher); ok {
		if err := f.Flush(ctx); err != nil {
			return c.roots, n, fmt.Errorf("read car: %w", err)
		}
	}
	return c.roots, n, nil
}

// carSource gives random access to the CAR read from r: r itself when it can seek and read at an
// offset, otherwise a temporary copy. cleanup removes the copy.
func carSource(ctx context.Context, r io.Reader) (*io.SectionReader, func(), error) {
	if ra, ok := r.(interface {
		io.ReaderAt
		io.Seeker
	}); ok {
		if start, err := ra.Seek(0, io.SeekCurrent); err == nil {
			if end, err := ra.Seek(0, io.SeekEnd); err == nil && end >= start {
				return io.NewSectionReader(ra, start, end-start), func() {}, nil
			}
		}
	}
	f, err := os.CreateTemp("", "hamt-car-*")
	if err != nil {
		return nil, nil, fmt.Errorf("copy the CAR to a temporary file: %w", err)
	}
	cleanup := func() {
		f.Close()
		os.Remove(f.Name())
	}
	n, err := io.Copy(f, ctxReader{ctx, r})
	if err != nil {
		cleanup()
		return nil, nil, fmt.Errorf("copy the CAR to a temporary file: %w", err)
	}
	return io.NewSectionReader(f, 0, n), cleanup, nil
}

// ctxReader stops a copy when its context ends.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// carBlock locates one block's data in a CAR.
type carBlockLoc struct{ off, n int64 }

// carIndex is a checked CAR: its roots and where each distinct block's data lies, in order. It is
// a CAS (read only) over those blocks, for checking what the roots reach before storing anything.
type carIndex struct {
	src   *io.SectionReader
	roots []cid.Cid
	// locs is keyed by multihash (carLocKey), as stores and Kubo key blocks: a CAR writer,
	// ours and go-car's, writes a multihash once, under the first CID that named it, and the
	// other CIDs of the same bytes (a raw value with a node's bytes) find it there.
	locs  map[string]carBlockLoc
	order []cidBytes // distinct blocks in the order of the CAR, by the CID they came under
}

// carLocKey is the key of block id in carIndex.locs: its multihash.
func carLocKey(id cid.Cid) string { return string(id.Hash()) }

// countingReader counts the bytes the CAR reader consumed, to know where each block lies and
// whether the CAR ended inside a section.
type countingReader struct {
	r *bufio.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

func (c *countingReader) ReadByte() (byte, error) {
	b, err := c.r.ReadByte()
	if err == nil {
		c.n++
	}
	return b, err
}

// indexCAR reads the CAR in src once, checking that it is complete and that every block hashes
// to its CID, and indexes its blocks.
func indexCAR(ctx context.Context, src *io.SectionReader) (*carIndex, error) {
	c := &carIndex{src: src, locs: map[string]carBlockLoc{}}
	cr := &countingReader{r: bufio.NewReaderSize(io.NewSectionReader(src, 0, src.Size()), 1<<20)}
	br, err := newCARReader(cr)
	if err != nil {
		return c, carError(err)
	}
	c.roots = br.roots
	end := int64(-1) // where the blocks end: the file's end for a CARv1, the header's for a CARv2
	if br.version == 2 {
		end = br.dataEnd
		if end > src.Size() || end < 0 {
			return c, fmt.Errorf("%w: CARv2 data ends at %d, past the end of the file (%d)", io.ErrUnexpectedEOF, end, src.Size())
		}
	}
	pos := cr.n // the end of the last whole section
	for i := 0; ; i++ {
		if err := ctx.Err(); err != nil {
			return c, err
		}
		id, data, err := br.next()
		if errors.Is(err, io.EOF) {
			if cr.n != pos || (end >= 0 && pos != end) {
				return c, fmt.Errorf("block %d: %w: the CAR ends inside a section", i, io.ErrUnexpectedEOF)
			}
			return c, nil
		}
		if err != nil {
			return c, fmt.Errorf("block %d: %w", i, carError(err))
		}
		if err := verifyBlock(id, data); err != nil {
			return c, fmt.Errorf("block %d: %w", i, err)
		}
		pos = cr.n
		if ok, err := putIdentity(id, data); ok {
			// Its bytes are its CID: nothing to index or store (go-car's writer, and ours,
			// leave such sections out; Kubo's refuses one over MaxIdentityDigest).
			if err != nil {
				return c, fmt.Errorf("block %d: %w", i, err)
			}
			continue
		}
		key := carLocKey(id)
		if _, ok := c.locs[key]; !ok {
			c.locs[key] = carBlockLoc{off: pos - int64(len(data)), n: int64(len(data))}
			c.order = append(c.order, cidKey(id))
		}
	}
}

// carError marks a CAR reader's EOF in the middle of something as unexpected.
func carError(err error) error {
	if errors.Is(err, io.EOF) {
		return fmt.Errorf("%w: %v", io.ErrUnexpectedEOF, err)
	}
	return err
}

// checkComplete checks that the CAR holds root and everything it reaches.
func (c *carIndex) checkComplete(ctx context.Context, root cid.Cid) error {
	if _, ok, err := identityBlock(root); ok {
		if err != nil {
			return err
		}
	} else if _, ok := c.locs[carLocKey(root)]; !ok {
		return fmt.Errorf("%w: the root is not in the CAR", ErrMissingBlock)
	}
	switch root.Prefix().Codec {
	case uint64(multicodec.DagCbor):
		if b, err := shardedRootBlock(ctx, c, root); err != nil {
			return err
		} else if b != nil {
			return walkSharded(ctx, c, root, b, nil)
		}
		// The shared walker reads every node (rejecting diamonds and keys off their hash path);
		// a raw value only needs to be in the index, which verified it already, and a file value
		// is walked for its structure.
		return walkStored(ctx, c, root, nil, func(n *blockNode, _ int) error {
			return n.eachValue(func(key string, value cidBytes) error { return c.checkValue(ctx, key, value) })
		})
	case uint64(multicodec.DagPb):
		return c.checkFile(ctx, root)
	}
	return nil
}

// checkValue checks that the CAR holds the value of key: its block, or every block of its file.
func (c *carIndex) checkValue(ctx context.Context, key string, value cidBytes) error {
	if isDagPb(value) {
		if err := c.checkFile(ctx, value.cid()); err != nil {
			return fmt.Errorf("value of %q: %w", key, err)
		}
		return nil
	}
	if _, ok, err := identityDigest(value); ok {
		if err != nil {
			return fmt.Errorf("value of %q: %w", key, err)
		}
		return nil // its bytes are its CID
	}
	if _, ok := c.locs[carLocKey(value.cid())]; !ok {
		return fmt.Errorf("value of %q: %w: block %s is not in the CAR", key, ErrMissingBlock, value)
	}
	return nil
}

// checkFile walks the UnixFS file at id for its structure and completeness; its blocks were
// verified when the CAR was indexed.
func (c *carIndex) checkFile(ctx context.Context, id cid.Cid) error {
	err := eachFileBlock(ctx, c, id, false, nil, func(cid.Cid, []byte) error { return nil })
	if errors.Is(err, ErrNotFound) && !errors.Is(err, ErrMissingBlock) {
		return fmt.Errorf("%w: %v", ErrMissingBlock, err)
	}
	return err
}

// verifiesLoads marks a carIndex as verified: every block was hashed when the CAR was indexed
// (and is hashed again by the store it goes into).
func (c *carIndex) verifiesLoads() {}

// Save is not supported: a carIndex is read only.
func (c *carIndex) Save(context.Context, []byte, multicodec.Code) (cid.Cid, error) {
	return cid.Undef, errors.New("a CAR being imported is read only")
}

// Load reads block id from the CAR, or ErrNotFound.
func (c *carIndex) Load(ctx context.Context, id cid.Cid) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if b, ok, err := identityBlock(id); ok {
		return b, err
	}
	loc, ok := c.locs[carLocKey(id)]
	if !ok {
		return nil, fmt.Errorf("block %s is not in the CAR: %w", id, ErrNotFound)
	}
	return c.read(loc)
}

// BlockSize returns the size of block id in the CAR, or ErrNotFound.
func (c *carIndex) BlockSize(_ context.Context, id cid.Cid) (int64, error) {
	if b, ok, err := identityBlock(id); ok {
		return int64(len(b)), err
	}
	loc, ok := c.locs[carLocKey(id)]
	if !ok {
		return 0, fmt.Errorf("block %s is not in the CAR: %w", id, ErrNotFound)
	}
	return loc.n, nil
}

func (c *carIndex) read(loc carBlockLoc) ([]byte, error) {
	b := make([]byte, loc.n)
	if err := readFullAt(c.src, b, loc.off); err != nil {
		return nil, fmt.Errorf("read the CAR again: %w", carError(err))
	}
	return b, nil
}

// readFullAt fills b from r at off. io.EOF with b filled is success: an io.SectionReader answers
// a read of an empty block at its very end (an empty value, last in a CAR) with 0, io.EOF.
func readFullAt(r io.ReaderAt, b []byte, off int64) error {
	n, err := r.ReadAt(b, off)
	if n == len(b) && errors.Is(err, io.EOF) {
		return nil
	}
	return err
}

// store puts every distinct block of the checked CAR into dst, in the CAR's order, and returns how
// many it stored. dst checks each block against its CID again, which also catches a CAR that
// changed since it was checked.
func (c *carIndex) store(ctx context.Context, dst BlockPutter) (int, error) {
	for i, key := range c.order {
		if err := ctx.Err(); err != nil {
			return i, err
		}
		b, err := c.read(c.locs[carLocKey(key.cid())])
		if err != nil {
			return i, err
		}
		if err := dst.Put(ctx, key.cid(), b); err != nil {
			return i, fmt.Errorf("block %s: %w", key, err)
		}
	}
	return len(c.order), nil
}
