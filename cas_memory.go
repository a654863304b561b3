package hamt

import (
	"context"
	"encoding/binary"
	"fmt"
	"sync"

	"github.com/ipfs/go-cid"
	"github.com/multiformats/go-multicodec"
	"github.com/zeebo/blake3"
)

// MemoryCAS is a CAS in memory. Save computes CIDv1(codec, blake3-256) locally, as py-hamt's
// stores and Kubo do. Blocks are kept by multihash, so the same bytes saved as raw and as dag-cbor
// are stored once and load under either CID, as in an IPFS blockstore. It is safe for concurrent
// use; the zero value is not usable, call NewMemoryCAS.
//
// Small blocks are packed into large slabs and indexed by pointer-free tables, so a store of
// millions of blocks costs the garbage collector almost nothing to scan, and a lookup touches two
// places in memory: one slot of the index and the block, whose digest sits just before it.
type MemoryCAS struct {
	shards [memoryShards]memoryShard
}

const (
	memoryShards = 64
	slabSize     = 256 << 10 // blocks up to slabSize/4 are packed; larger ones get a slab each
)

// memoryShard holds the blocks whose digest starts with one value modulo memoryShards.
type memoryShard struct {
	mu     sync.RWMutex
	blake3 blockIndex          // blocks addressed by blake3-256, the common case
	other  map[string]blockRef // blocks put with any other multihash, by multihash bytes
	slabs  [][]byte            // append-only; a block never moves once written
	bytes  int64
}

// blockRef locates a block's bytes: slabs[slab][off:off+n].
type blockRef struct {
	slab, off, n uint32
}

// NewMemoryCAS returns an empty MemoryCAS.
func NewMemoryCAS() *MemoryCAS {
	m := &MemoryCAS{}
	for i := range m.shards {
		m.shards[i].other = make(map[string]blockRef)
	}
	return m
}

// blockIndex is an open-addressing hash table (linear probing) from blake3 digests to the blocks
// of one shard. It holds no pointers. A slot keeps 32 bits of the digest, enough to place it and
// to skip almost every other digest while probing; the whole digest is kept in the slab right
// before the block's bytes, and a match is confirmed against it.
//
// Invariants: len(slots) is zero or a power of two; fewer than 7/8 of the slots are used, so every
// probe ends at an empty slot; blocks are never removed.
type blockIndex struct {
	slots []indexSlot
	count int
}

// indexSlot is one slot of a blockIndex. slab is the block's slab index plus one, so the zero
// slot is empty.
type indexSlot struct {
	hash uint32
	slab uint32
	off  uint32
	n    uint32
}

// digestHash is the 32 bits of d that place it in a shard's index. d[0] chose the shard.
func digestHash(d *[32]byte) uint32 { return binary.LittleEndian.Uint32(d[1:5]) }

// find returns the location of the block with digest d.
func (x *blockIndex) find(slabs [][]byte, d *[32]byte) (blockRef, bool) {
	if len(x.slots) == 0 {
		return blockRef{}, false
	}
	h := digestHash(d)
	mask := uint32(len(x.slots) - 1)
	for i := h & mask; ; i = (i + 1) & mask {
		s := &x.slots[i]
		if s.slab == 0 {
			return blockRef{}, false
		}
		if s.hash == h {
			slab := slabs[s.slab-1]
			if string(slab[s.off-32:s.off]) == string(d[:]) {
				return blockRef{slab: s.slab - 1, off: s.off, n: s.n}, true
			}
		}
	}
}

// add records that the block with digest d is at r; d must not be in the index yet.
func (x *blockIndex) add(d *[32]byte, r blockRef) {
	if (x.count+1)*8 > len(x.slots)*7 {
		x.grow()
	}
	x.place(indexSlot{hash: digestHash(d), slab: r.slab + 1, off: r.off, n: r.n})
	x.count++
}

// place puts s in the first empty slot of its probe sequence.
func (x *blockIndex) place(s indexSlot) {
	mask := uint32(len(x.slots) - 1)
	i := s.hash & mask
	for x.slots[i].slab != 0 {
		i = (i + 1) & mask
	}
	x.slots[i] = s
}

// grow doubles the table. The 32 bits kept in each slot are enough to place it again.
func (x *blockIndex) grow() {
	old := x.slots
	x.slots = make([]indexSlot, max(64, 2*len(old)))
	for _, s := range old {
		if s.slab != 0 {
			x.place(s)
		}
	}
}

// store copies prefix and then data into the shard's slabs, contiguously, and returns where data
// is. Callers hold s.mu.
func (s *memoryShard) store(prefix, data []byte) blockRef {
	s.bytes += int64(len(data))
	size := len(prefix) + len(data)
	if size > slabSize/4 {
		slab := make([]byte, 0, size)
		s.slabs = append(s.slabs, append(append(slab, prefix...), data...))
		return blockRef{slab: uint32(len(s.slabs) - 1), off: uint32(len(prefix)), n: uint32(len(data))}
	}
	last := len(s.slabs) - 1
	if last < 0 || cap(s.slabs[last])-len(s.slabs[last]) < size || cap(s.slabs[last]) != slabSize {
		s.slabs = append(s.slabs, make([]byte, 0, slabSize))
		last++
	}
	off := len(s.slabs[last]) + len(prefix)
	s.slabs[last] = append(append(s.slabs[last], prefix...), data...)
	return blockRef{slab: uint32(last), off: uint32(off), n: uint32(len(data))}
}

// putBlake3 stores data under its blake3 digest d unless it is there already. Callers hold s.mu.
func (s *memoryShard) putBlake3(d *[32]byte, data []byte) {
	if _, ok := s.blake3.find(s.slabs, d); !ok {
		s.blake3.add(d, s.store(d[:], data))
	}
}

// bytesOf returns a copy of the block r. Callers hold s.mu (read).
func (s *memoryShard) bytesOf(r blockRef) []byte {
	return append(make([]byte, 0, r.n), s.slabs[r.slab][r.off:r.off+r.n]...)
}

// Save stores a copy of data and returns CIDv1(codec, blake3-256(data)).
func (m *MemoryCAS) Save(ctx context.Context, data []byte, codec multicodec.Code) (cid.Cid, error) {
	d, err := m.saveDigest(ctx, data)
	if err != nil {
		return cid.Undef, err
	}
	return cidFromDigest(codec, d), nil
}

// saveDigest stores a copy of data and returns its blake3-256 digest.
func (m *MemoryCAS) saveDigest(ctx context.Context, data []byte) ([32]byte, error) {
	if err := ctx.Err(); err != nil {
		return [32]byte{}, err
	}
	d := blake3.Sum256(data)
	s := &m.shards[d[0]%memoryShards]
	s.mu.Lock()
	s.putBlake3(&d, data)
	s.mu.Unlock()
	return d, nil
}

// Put stores data under id, whatever its hash function, after checking that data hashes to id
// (ErrCorrupt otherwise). It is how blocks made elsewhere, such as those of a CAR file, enter the
// store.
func (m *MemoryCAS) Put(ctx context.Context, id cid.Cid, data []byte) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if ok, err := putIdentity(id, data); ok {
		return err // its bytes are its CID: nothing to store
	}
	if err := verifyBlock(id, data); err != nil {
		return err
	}
	if d, ok := blake3Digest(id); ok {
		s := &m.shards[d[0]%memoryShards]
		s.mu.Lock()
		s.putBlake3(&d, data)
		s.mu.Unlock()
		return nil
	}
	k := string(id.Hash())
	s := &m.shards[k[len(k)-1]%memoryShards]
	s.mu.Lock()
	if _, ok := s.other[k]; !ok {
		s.other[k] = s.store(nil, data)
	}
	s.mu.Unlock()
	return nil
}

// Load returns a copy of the block id, or ErrNotFound.
func (m *MemoryCAS) Load(ctx context.Context, id cid.Cid) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if b, ok, err := identityBlock(id); ok {
		if err != nil {
			return nil, fmt.Errorf("load: %w", err)
		}
		return b, nil
	}
	s, r, ok := m.find(cidKey(id))
	if !ok {
		return nil, fmt.Errorf("load %s: %w", id, ErrNotFound)
	}
	b := s.bytesOf(r)
	s.mu.RUnlock()
	return b, nil
}

// Has reports whether the store holds block id.
func (m *MemoryCAS) Has(ctx context.Context, id cid.Cid) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, err
	}
	if _, ok, err := identityBlock(id); ok {
		return err == nil, err
	}
	s, _, ok := m.find(cidKey(id))
	if ok {
		s.mu.RUnlock()
	}
	return ok, nil
}

// find looks id (in binary form) up and, when found, returns with its shard read-locked.
func (m *MemoryCAS) find(id cidBytes) (*memoryShard, blockRef, bool) {
	if id == "" {
		return nil, blockRef{}, false
	}
	var s *memoryShard
	var r blockRef
	var ok bool
	if d, isB3 := blake3DigestOf(id); isB3 {
		s = &m.shards[d[0]%memoryShards]
		s.mu.RLock()
		r, ok = s.blake3.find(s.slabs, &d)
	} else {
		k := string(id.cid().Hash())
		s = &m.shards[k[len(k)-1]%memoryShards]
		s.mu.RLock()
		r, ok = s.other[k]
	}
	if !ok {
		s.mu.RUnlock()
	}
	return s, r, ok
}

// Len returns the number of blocks held.
func (m *MemoryCAS) Len() int {
	n := 0
	for i := range m.shards {
		s := &m.shards[i]
		s.mu.RLock()
		n += s.blake3.count + len(s.other)
		s.mu.RUnlock()
	}
	return n
}

// Bytes returns the total size of the blocks held.
func (m *MemoryCAS) Bytes() int64 {
	var n int64
	for i := range m.shards {
		s := &m.shards[i]
		s.mu.RLock()
		n += s.bytes
		s.mu.RUnlock()
	}
	return n
}
