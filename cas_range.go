package hamt

import (
	"context"
	"errors"
	"fmt"

	"github.com/ipfs/go-cid"
)

// ErrInvalidRange reports a byte range that cannot be applied: a negative bound, or an end before
// its start.
var ErrInvalidRange = errors.New("invalid byte range")

// ByteRange selects part of a value, as Zarr's byte requests do. The zero ByteRange is the whole
// value; RangeBetween, RangeFrom and RangeSuffix make the others.
//
// A range is resolved against the value's size by the same rules everywhere (stores, the Zarr
// store, the HTTP handler): an end past the value is clipped, a start past it gives no bytes, a
// suffix longer than the value gives the whole value, and a suffix of 0 gives no bytes.
type ByteRange struct {
	kind rangeKind
	a, b int64
}

type rangeKind uint8

const (
	rangeFull rangeKind = iota
	rangeBetween
	rangeFrom
	rangeSuffix
)

// RangeBetween is the bytes [start, end).
func RangeBetween(start, end int64) ByteRange { return ByteRange{kind: rangeBetween, a: start, b: end} }

// RangeFrom is the bytes from offset to the end.
func RangeFrom(offset int64) ByteRange { return ByteRange{kind: rangeFrom, a: offset} }

// RangeSuffix is the last n bytes.
func RangeSuffix(n int64) ByteRange { return ByteRange{kind: rangeSuffix, a: n} }

// IsFull reports whether r is the whole value.
func (r ByteRange) IsFull() bool { return r.kind == rangeFull }

// Between returns the start and end of a RangeBetween and true, or false for other kinds.
func (r ByteRange) Between() (start, end int64, ok bool) { return r.a, r.b, r.kind == rangeBetween }

// From returns the offset of a RangeFrom and true, or false for other kinds.
func (r ByteRange) From() (offset int64, ok bool) { return r.a, r.kind == rangeFrom }

// Suffix returns the length of a RangeSuffix and true, or false for other kinds.
func (r ByteRange) Suffix() (n int64, ok bool) { return r.a, r.kind == rangeSuffix }

// String gives r in the form of an HTTP Range header's value ("bytes=2-4", "bytes=15-",
// "bytes=-3"), or "all" for the whole value. An empty [start, end) gives "bytes=start-start" and
// a suffix of 0 "bytes=-0"; neither is a valid header: callers answer those without a request.
func (r ByteRange) String() string {
	switch r.kind {
	case rangeBetween:
		return fmt.Sprintf("bytes=%d-%d", r.a, r.b-1)
	case rangeFrom:
		return fmt.Sprintf("bytes=%d-", r.a)
	case rangeSuffix:
		return fmt.Sprintf("bytes=-%d", r.a)
	}
	return "all"
}

// Validate reports ErrInvalidRange for a negative bound or an end before its start.
func (r ByteRange) Validate() error {
	switch {
	case r.kind == rangeBetween && (r.a < 0 || r.b < r.a):
		return fmt.Errorf("%w: [%d, %d)", ErrInvalidRange, r.a, r.b)
	case (r.kind == rangeFrom || r.kind == rangeSuffix) && r.a < 0:
		return fmt.Errorf("%w: %s", ErrInvalidRange, r)
	}
	return nil
}

// Bounds resolves r against a value of size bytes: the value's bytes [start, end). r must be
// valid.
func (r ByteRange) Bounds(size int64) (start, end int64) {
	switch r.kind {
	case rangeBetween:
		start, end = r.a, r.b
	case rangeFrom:
		start, end = r.a, size
	case rangeSuffix:
		start, end = size-r.a, size
	default:
		return 0, size
	}
	start = min(max(start, 0), size)
	end = min(max(end, start), size)
	return start, end
}

// Empty reports whether r selects no bytes whatever the value's size.
func (r ByteRange) Empty() bool {
	return (r.kind == rangeBetween && r.b <= r.a) || (r.kind == rangeSuffix && r.a == 0)
}

// Slice applies r to a whole value. r must be valid.
func (r ByteRange) Slice(b []byte) []byte {
	start, end := r.Bounds(int64(len(b)))
	return b[start:end]
}

// RangeLoader is a CAS that can read part of a block without fetching all of it (an HTTP Range
// request to a gateway, a slice of a block in memory). The Zarr store uses it for byte ranges.
// A range alone cannot be checked against the CID: BoltCAS hashes the whole block in place
// (a large one once in the store's lifetime), others verify only whole loads.
type RangeLoader interface {
	// LoadRange returns the bytes of block id that r selects, resolved as ByteRange.Bounds
	// describes; a block the store does not hold is ErrNotFound.
	LoadRange(ctx context.Context, id cid.Cid, r ByteRange) ([]byte, error)
}

// BlockSizer is a CAS that can tell a block's size without fetching it.
type BlockSizer interface {
	// BlockSize returns the size in bytes of block id, or ErrNotFound.
	BlockSize(ctx context.Context, id cid.Cid) (int64, error)
}

// loadRange reads r of block id from cas, by range when cas can, otherwise by loading it whole.
func loadRange(ctx context.Context, cas CAS, id cid.Cid, r ByteRange) ([]byte, error) {
	if err := r.Validate(); err != nil {
		return nil, err
	}
	if b, ok, err := identityBlock(id); ok {
		if err != nil {
			return nil, err
		}
		return r.Slice(b), nil
	}
	if rl, ok := cas.(RangeLoader); ok && !r.IsFull() {
		return rl.LoadRange(ctx, id, r)
	}
	b, err := cas.Load(ctx, id)
	if err != nil {
		return nil, err
	}
	return r.Slice(b), nil
}

// blockSize returns the size of block id, without loading it when cas can tell.
func blockSize(ctx context.Context, cas CAS, id cid.Cid) (int64, error) {
	if b, ok, err := identityBlock(id); ok {
		return int64(len(b)), err
	}
	if bs, ok := cas.(BlockSizer); ok {
		return bs.BlockSize(ctx, id)
	}
	b, err := cas.Load(ctx, id)
	if err != nil {
		return 0, err
	}
	return int64(len(b)), nil
}

// LoadRange returns a copy of the part of block id that r selects, or ErrNotFound.
func (m *MemoryCAS) LoadRange(ctx context.Context, id cid.Cid, r ByteRange) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := r.Validate(); err != nil {
		return nil, err
	}
	if b, ok, err := identityBlock(id); ok {
		if err != nil {
			return nil, fmt.Errorf("load: %w", err)
		}
		return r.Slice(b), nil
	}
	s, ref, ok := m.find(cidKey(id))
	if !ok {
		return nil, fmt.Errorf("load %s: %w", id, ErrNotFound)
	}
	defer s.mu.RUnlock()
	whole := s.view(ref)
	return append([]byte{}, r.Slice(whole)...), nil
}

// BlockSize returns the size of block id, or ErrNotFound.
func (m *MemoryCAS) BlockSize(ctx context.Context, id cid.Cid) (int64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	if b, ok, err := identityBlock(id); ok {
		if err != nil {
			return 0, fmt.Errorf("block size: %w", err)
		}
		return int64(len(b)), nil
	}
	s, ref, ok := m.find(cidKey(id))
	if !ok {
		return 0, fmt.Errorf("block size %s: %w", id, ErrNotFound)
	}
	defer s.mu.RUnlock()
	return int64(len(s.view(ref))), nil
}

// view returns block r's bytes in place. Callers hold s.mu (read) while they use them.
func (s *memoryShard) view(r blockRef) []byte {
	return s.slabs[r.slab][r.off : r.off+r.n]
}
