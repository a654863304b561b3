package hamt

import (
	"fmt"
	"math"

	"github.com/ipfs/go-cid"
)

// A shard is one block of a sharded Zarr store's chunk index (SHARDED.md §4): entry k of shard s is
// the CID of the chunk at linear index s·chunks_per_shard + k, or null where there is none. As an
// IPLD schema:
//
//	type Shard [nullable &Any]   # always chunks_per_shard items, the last shard padded with null
//
// Bytes: a minimal list head, then per entry `f6` (null) or a link `d8 2a 58 25 00 <cid>` (tag 42
// over 0x00 || cid; the byte-string head is `58 25` for the usual 36-byte CIDv1 raw blake3-256). A
// full shard of n such CIDs is 3 + 41·n bytes for 256 ≤ n < 65536.
//
// Readers: decodeShard gives every entry as a cid.Cid (the writer's form), shardEntry one entry
// without building the others, and parseShard a compact checked view that a cache can keep. All
// three go through shardNext, so they accept and reject exactly the same blocks.

// encodeShard returns the block of a shard holding entries; cid.Undef is written as null. It is the
// exact canonical DAG-CBOR py-hamt's dag_cbor writes for the same list.
func encodeShard(entries []cid.Cid) ([]byte, error) {
	if len(entries) == 0 {
		return nil, fmt.Errorf("encode shard: a shard has at least one entry")
	}
	size := headerLen(uint64(len(entries)))
	for _, c := range entries {
		if !c.Defined() {
			size++
			continue
		}
		size += linkLen(cidKey(c))
	}
	out := appendHeader(make([]byte, 0, size), majorArray, uint64(len(entries)))
	for _, c := range entries {
		if !c.Defined() {
			out = append(out, cborNull)
			continue
		}
		out = appendLink(out, cidKey(c))
	}
	return out, nil
}

// cborNull is the one-byte CBOR null, an empty entry of a shard.
const cborNull = 0xf6

// decodeShard parses a shard block that must hold exactly want entries. A null entry is cid.Undef.
// Anything but the canonical encoding of such a list (see encodeShard) is ErrMalformedValue.
func decodeShard(b []byte, want int) ([]cid.Cid, error) {
	n, pos, err := shardHead(b)
	if err != nil {
		return nil, err
	}
	if n != want {
		return nil, fmt.Errorf("%w: shard holds %d entries, want %d", ErrMalformedValue, n, want)
	}
	// shardHead checked n against the block's length, so this allocation is bounded by it.
	out := make([]cid.Cid, n)
	for k := range out {
		start, end, next, err := shardNext(b, pos, k)
		if err != nil {
			return nil, err
		}
		if start < end {
			if out[k], err = cid.Cast(b[start:end]); err != nil {
				return nil, shardError(k, start, "invalid CID: %v", err)
			}
		}
		pos = next
	}
	if pos != len(b) {
		return nil, fmt.Errorf("%w: %d trailing bytes after the shard", ErrMalformedValue, len(b)-pos)
	}
	return out, nil
}

// shardEntry returns entry k of the shard block b (cid.Undef for null) without building the other
// entries: they are only checked, by their heads and CID prefixes, so that a block decodeShard
// rejects is rejected here too. An out-of-range k is ErrMalformedValue: the shard is shorter than
// its index says.
func shardEntry(b []byte, k int) (cid.Cid, error) {
	n, pos, err := shardHead(b)
	if err != nil {
		return cid.Undef, err
	}
	if k < 0 || k >= n {
		return cid.Undef, fmt.Errorf("%w: entry %d of a shard of %d entries", ErrMalformedValue, k, n)
	}
	var start, end int
	for i := range n {
		s, e, next, err := shardNext(b, pos, i)
		if err != nil {
			return cid.Undef, err
		}
		if i == k {
			start, end = s, e
		}
		pos = next
	}
	if pos != len(b) {
		return cid.Undef, fmt.Errorf("%w: %d trailing bytes after the shard", ErrMalformedValue, len(b)-pos)
	}
	if start == end {
		return cid.Undef, nil
	}
	c, err := cid.Cast(b[start:end])
	if err != nil {
		return cid.Undef, shardError(k, start, "invalid CID: %v", err)
	}
	return c, nil
}

// shard is a checked shard block kept for lookups: its bytes and where each entry's CID lies. When
// all entries have one size (a full shard of same-length CIDs, or an empty one) the position of
// entry k is computed, and offs is nil; otherwise offs[k] is where entry k starts. Either way a
// cached shard costs about its block's size, and a lookup allocates only the CID it returns.
type shard struct {
	block  []byte
	n      int
	first  int      // where entry 0 starts
	stride int      // the size of every entry, when offs is nil
	offs   []uint32 // entry k starts at offs[k], and ends at offs[k+1]; nil when strided
}

// parseShard checks b as decodeShard does and returns it as a shard. b is kept, not copied.
func parseShard(b []byte, want int) (*shard, error) {
	n, pos, err := shardHead(b)
	if err != nil {
		return nil, err
	}
	if n != want {
		return nil, fmt.Errorf("%w: shard holds %d entries, want %d", ErrMalformedValue, n, want)
	}
	if uint64(len(b)) > math.MaxUint32 {
		return nil, fmt.Errorf("%w: shard block of %d bytes", ErrMalformedValue, len(b))
	}
	s := &shard{block: b, n: n, first: pos}
	for k := range n {
		_, _, next, err := shardNext(b, pos, k)
		if err != nil {
			return nil, err
		}
		size := next - pos
		switch {
		case k == 0:
			s.stride = size
		case s.offs == nil && size != s.stride:
			// The first entry of another size: record every start from here on.
			s.offs = make([]uint32, n+1)
			for i := 0; i <= k; i++ {
				s.offs[i] = uint32(s.first + i*s.stride)
			}
		}
		if s.offs != nil {
			s.offs[k+1] = uint32(next)
		}
		pos = next
	}
	if pos != len(b) {
		return nil, fmt.Errorf("%w: %d trailing bytes after the shard", ErrMalformedValue, len(b)-pos)
	}
	return s, nil
}

// len is the number of entries.
func (s *shard) len() int { return s.n }

// entry returns entry k, cid.Undef for null. An out-of-range k is ErrMalformedValue, as in
// shardEntry.
func (s *shard) entry(k int) (cid.Cid, error) {
	if k < 0 || k >= s.n {
		return cid.Undef, fmt.Errorf("%w: entry %d of a shard of %d entries", ErrMalformedValue, k, s.n)
	}
	start := s.first + k*s.stride
	if s.offs != nil {
		start = int(s.offs[k])
	}
	// parseShard checked the entry; this only finds its CID again.
	from, end, _, err := shardNext(s.block, start, k)
	if err != nil || from == end {
		return cid.Undef, err
	}
	c, err := cid.Cast(s.block[from:end])
	if err != nil {
		return cid.Undef, shardError(k, start, "invalid CID: %v", err)
	}
	return c, nil
}

// memSize approximates the memory s holds: the block's array, the offsets and the struct.
func (s *shard) memSize() int64 { return int64(cap(s.block)) + 4*int64(cap(s.offs)) + 96 }

// shardHead reads the list head of a shard block and returns its entry count and where entry 0
// starts. The count is at most the bytes left (each entry takes one at least), so callers may
// allocate by it.
func shardHead(b []byte) (n, pos int, err error) {
	major, arg, pos, err := cborHead(b, 0, true)
	if err != nil {
		return 0, 0, fmt.Errorf("%w: shard head: %v", ErrMalformedValue, err)
	}
	if major != majorArray {
		return 0, 0, fmt.Errorf("%w: a shard is a list, got CBOR major type %d", ErrMalformedValue, major)
	}
	if arg == 0 {
		return 0, 0, fmt.Errorf("%w: empty shard", ErrMalformedValue)
	}
	if arg > uint64(len(b)-pos) {
		return 0, 0, fmt.Errorf("%w: shard says %d entries but has %d bytes left", ErrMalformedValue, arg, len(b)-pos)
	}
	return int(arg), pos, nil
}

// shardLinkPrefix is how almost every link of a shard starts: tag 42, a 37-byte string, the
// multibase prefix, CID version 1. Then come a one-byte codec and the blake3-256 multihash prefix.
const shardLinkPrefix = "\xd8\x2a\x58\x25\x00\x01"

// shardNext checks entry k, which starts at pos, and returns where its CID's bytes are (start ==
// end for null) and where the next entry starts. A link must be tag 42 over a minimal-head byte
// string 0x00 || cid holding exactly one CID (as parseCID checks it); anything else is
// ErrMalformedValue.
func shardNext(b []byte, pos, k int) (start, end, next int, err error) {
	if pos >= len(b) {
		return 0, 0, 0, shardError(k, pos, "unexpected end of block")
	}
	if b[pos] == cborNull {
		return pos + 1, pos + 1, pos + 1, nil
	}
	// The common link, a CIDv1 with a one-byte codec and a blake3-256 multihash, is recognised by
	// its fixed bytes; parseCID would accept exactly the same.
	if len(b)-pos >= 41 && string(b[pos:pos+6]) == shardLinkPrefix && b[pos+6] < 0x80 &&
		b[pos+7] == 0x1e && b[pos+8] == 0x20 {
		return pos + 5, pos + 41, pos + 41, nil
	}
	major, tag, p, err := cborHead(b, pos, true)
	if err != nil {
		return 0, 0, 0, shardError(k, pos, "%v", err)
	}
	if major != majorTag || tag != cidTag {
		return 0, 0, 0, shardError(k, pos, "want a CID link (tag 42) or null, got major type %d value %d", major, tag)
	}
	major, n, p, err := cborHead(b, p, true)
	if err != nil {
		return 0, 0, 0, shardError(k, pos, "%v", err)
	}
	if major != majorBytes || n < 2 {
		return 0, 0, 0, shardError(k, pos, "a CID link must hold a byte string 0x00 || cid")
	}
	if n > uint64(len(b)-p) {
		return 0, 0, 0, shardError(k, pos, "CID of %d bytes runs past the end of the block", n)
	}
	if b[p] != 0 {
		return 0, 0, 0, shardError(k, pos, "CID link does not start with the identity multibase prefix 0x00")
	}
	end = p + int(n)
	if _, err := parseCID(b[p+1 : end]); err != nil {
		return 0, 0, 0, shardError(k, pos, "invalid CID: %v", err)
	}
	return p + 1, end, end, nil
}

// shardError reports a malformed entry k at byte pos.
func shardError(k, pos int, format string, args ...any) error {
	return fmt.Errorf("%w: shard entry %d at byte %d: %s", ErrMalformedValue, k, pos, fmt.Sprintf(format, args...))
}
