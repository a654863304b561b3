package hamt

import (
	"bytes"
	"context"
	"fmt"
	"hash"
	"io"
	"iter"

	"github.com/ipfs/go-cid"
	"github.com/multiformats/go-multicodec"
	"github.com/multiformats/go-multihash"
	"github.com/zeebo/blake3"
)

// Zarr is what a Zarr v3 store layout provides to the layers built on it: the HTTP handler
// (NewZarrHandler), the fs.FS view (NewZarrFS), ImportDir and ExportDir. ZarrStore (a HAMT of
// keys), EncryptedZarrStore and ShardedZarrStore implement it, so each of those layers works on
// any of them unchanged.
//
// Keys are Zarr keys ("temp/zarr.json", "temp/c/0/0"). A missing key is an error wrapping
// ErrNotFound, which Zarr clients read as "absent" (a fill value); every other error is a failure.
// Implementations are safe for concurrent use.
type Zarr interface {
	// Get returns the bytes of key that r selects (the zero ByteRange for all of them); the
	// caller owns the slice. An invalid range is ErrInvalidRange.
	Get(ctx context.Context, key string, r ByteRange) ([]byte, error)
	// Open locates key's value: the CID of the block that holds it and its size, without
	// loading it where the store can tell the size otherwise.
	Open(ctx context.Context, key string) (*ZarrValue, error)
	// Exists reports whether key is in the store.
	Exists(ctx context.Context, key string) (bool, error)
	// List yields every key once, in no particular order.
	List(ctx context.Context) iter.Seq2[string, error]
	// ListDir returns the immediate children of the directory prefix, sorted, each once ("" is
	// the root; a trailing slash is optional).
	ListDir(ctx context.Context, prefix string) ([]string, error)
	// Set stores value under key; the store keeps no reference to value.
	Set(ctx context.Context, key string, value []byte) error
	// Delete removes key; a missing key is not an error.
	Delete(ctx context.Context, key string) error
	// ReadOnly reports whether the store refuses Set and Delete (with ErrReadOnly).
	ReadOnly() bool
}

var (
	_ Zarr = (*ZarrStore)(nil)
	_ Zarr = (*EncryptedZarrStore)(nil)
)

// ZarrValue is one value of a Zarr store, located: the block that holds it and its size. Reads
// through it go to that block, so a value opened once reads consistently even if the key is
// set again meanwhile. Open a value with Zarr.Open.
type ZarrValue struct {
	key  string
	id   cid.Cid
	size int64
	src  valueSource
}

// valueSource is where a Zarr layout's value blocks are and how to read them.
type valueSource struct {
	cas    CAS
	verify bool     // hash what is loaded (the map's WithVerifyBlocks)
	box    *sealBox // nil: values are stored as they are
}

// CID returns the CID of the block holding the value (a dag-pb CID when it is stored as a UnixFS
// file); it names the stored bytes, so for an encrypted store it names the ciphertext.
func (v *ZarrValue) CID() cid.Cid { return v.id }

// Size returns the size of the value in bytes (the plaintext size for an encrypted store).
func (v *ZarrValue) Size() int64 { return v.size }

// Read returns the bytes of the value that r selects.
func (v *ZarrValue) Read(ctx context.Context, r ByteRange) ([]byte, error) {
	if err := r.Validate(); err != nil {
		return nil, fmt.Errorf("zarr get %q: %w", v.key, err)
	}
	return v.src.read(ctx, v.key, v.id, r)
}

// WriteTo writes the bytes r selects of the value to w and returns how many it wrote, reading
// the value in pieces of at most 1 MiB, each by range just before it is written, so memory stays
// bounded whatever the value's size (an encrypted value, which opens only whole, is the
// exception). A failure part way returns the error after a prefix of the bytes was written; a
// store that verifies blocks hashes a value read in pieces as it goes and returns ErrCorrupt
// instead of writing its last piece when the hash does not match.
func (v *ZarrValue) WriteTo(ctx context.Context, w io.Writer, r ByteRange) (int64, error) {
	if err := r.Validate(); err != nil {
		return 0, fmt.Errorf("zarr get %q: %w", v.key, err)
	}
	start, end := r.Bounds(v.size)
	if c, ok := v.src.cas.(blockCopier); ok && r.IsFull() && v.src.box == nil && !v.src.verify &&
		v.id.Prefix().Codec == uint64(multicodec.Raw) {
		n, handled, err := c.copyBlock(ctx, v.id, w)
		if handled {
			if err == nil && n != v.size {
				err = fmt.Errorf("%w: copied %d bytes of %s, want %d", ErrCorrupt, n, v.id, v.size)
			}
			if err != nil {
				return n, fmt.Errorf("zarr get %q: %w", v.key, err)
			}
			return n, nil
		}
	}
	var n int64
	for piece, err := range v.pieces(ctx, r, start, end) {
		if err != nil {
			return n, err
		}
		m, err := w.Write(piece)
		n += int64(m)
		if err != nil {
			return n, fmt.Errorf("zarr get %q: %w", v.key, err)
		}
	}
	return n, nil
}

// blockCopier is a CAS that writes a whole block to a writer itself, holding none of it (a
// FetchedDAG, from its file to an exported one in the kernel). handled is false, with nothing
// written, when it cannot for this block or writer.
type blockCopier interface {
	copyBlock(ctx context.Context, id cid.Cid, w io.Writer) (written int64, handled bool, err error)
}

// openValue locates the value of key stored in block id: its size, without loading it when the
// CAS is a BlockSizer.
func (src valueSource) open(ctx context.Context, key string, id cid.Cid) (*ZarrValue, error) {
	n, err := valueSize(ctx, src.cas, id, src.verify)
	if err != nil {
		return nil, fmt.Errorf("zarr size %q: %s: %w", key, id, missingBlock(err))
	}
	if src.box != nil {
		if n < sealOverhead {
			return nil, fmt.Errorf("zarr size %q: %w: value of %d bytes is shorter than its header", key, ErrDecrypt, n)
		}
		n -= sealOverhead
	}
	return &ZarrValue{key: key, id: id, size: n, src: src}, nil
}

// read returns the part r of the (plaintext) value stored at id: by range from the CAS when the
// value is not encrypted, otherwise whole, opened, then sliced. A dag-pb value is read as the
// UnixFS file it heads, a range reading only the leaves that hold it.
func (src valueSource) read(ctx context.Context, key string, id cid.Cid, r ByteRange) ([]byte, error) {
	if src.box == nil && !r.IsFull() {
		b, err := loadValue(ctx, src.cas, id, r, src.verify)
		if err != nil {
			return nil, fmt.Errorf("zarr get %q: load %s of %s: %w", key, r, id, missingBlock(err))
		}
		return b, nil
	}
	b, err := loadValue(ctx, src.cas, id, ByteRange{}, src.verify)
	if err != nil {
		return nil, fmt.Errorf("zarr get %q: load %s: %w", key, id, missingBlock(err))
	}
	if src.box != nil {
		if b, err = src.box.open(b); err != nil {
			return nil, fmt.Errorf("zarr get %q: %w", key, err)
		}
	}
	return r.Slice(b), nil
}

// writeZarrValue is WriteValue for any layout: Open, then WriteTo.
func writeZarrValue(ctx context.Context, z Zarr, w io.Writer, key string, r ByteRange) (int64, error) {
	if err := r.Validate(); err != nil {
		return 0, fmt.Errorf("zarr get %q: %w", key, err)
	}
	v, err := z.Open(ctx, key)
	if err != nil {
		return 0, err
	}
	return v.WriteTo(ctx, w, r)
}

// servePiece is the most the handler (and WriteTo) reads of a value at once: the memory one
// response holds, whatever the value's size, and the amount the server's WriteTimeout is given to
// send.
const servePiece = 1 << 20

// pieces yields the bytes [start, end) of the value (r, resolved) in pieces of at most servePiece
// bytes, each read by range just before it is yielded; at least one piece, empty for no bytes. An
// encrypted value can only be opened whole: it is read once and yielded as one piece. After an
// error nothing more is yielded.
func (v *ZarrValue) pieces(ctx context.Context, r ByteRange, start, end int64) iter.Seq2[[]byte, error] {
	return func(yield func([]byte, error) bool) {
		step := int64(servePiece)
		if v.src.box != nil {
			step = max(end-start, 1)
		}
		// A store that verifies blocks verified a whole value when it was loaded whole; read in
		// pieces, it is hashed as it goes, and its last piece is held back until the hash matches.
		var check *pieceCheck
		if v.src.verify && r.IsFull() && end-start > step {
			var err error
			if check, err = newPieceCheck(v.id); err != nil {
				yield(nil, fmt.Errorf("zarr get %q: %w", v.key, err))
				return
			}
		}
		for from := start; ; {
			to := min(from+step, end)
			part := RangeBetween(from, to)
			if from == start && to == end {
				part = r // one read of all that was asked: a whole load when the value is wanted whole
			}
			b, err := v.src.read(ctx, v.key, v.id, part)
			if err == nil && int64(len(b)) != to-from {
				err = fmt.Errorf("zarr get %q: %w: read %d bytes of [%d, %d) of %s", v.key, ErrCorrupt, len(b), from, to, v.id)
			}
			if err == nil && check != nil {
				check.h.Write(b)
				if to == end {
					err = check.verify()
				}
			}
			if err != nil {
				yield(nil, err)
				return
			}
			if !yield(b, nil) || to == end {
				return
			}
			from = to
		}
	}
}

// pieceCheck hashes a value read in pieces, to compare with its CID at the end; nil for a dag-pb
// block, whose CID names a UnixFS file's root rather than the value's bytes.
type pieceCheck struct {
	id     cid.Cid
	h      hash.Hash
	digest []byte
}

func newPieceCheck(id cid.Cid) (*pieceCheck, error) {
	if id.Prefix().Codec == uint64(multicodec.DagPb) {
		return nil, nil
	}
	dec, err := multihash.Decode(id.Hash())
	if err != nil {
		return nil, fmt.Errorf("verify block %s: %w", id, err)
	}
	var h hash.Hash
	if dec.Code == multihash.BLAKE3 {
		h = blake3.New()
	} else if h, err = multihash.GetHasher(dec.Code); err != nil {
		return nil, fmt.Errorf("verify block %s: %w", id, err)
	}
	return &pieceCheck{id: id, h: h, digest: dec.Digest}, nil
}

func (c *pieceCheck) verify() error {
	if sum := c.h.Sum(nil); len(c.digest) > len(sum) || !bytes.Equal(sum[:len(c.digest)], c.digest) {
		return fmt.Errorf("%w: block %s does not hash to its CID", ErrCorrupt, c.id)
	}
	return nil
}
