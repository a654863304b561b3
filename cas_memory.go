package hamt

import (
	"context"
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
// Small blocks are packed into large slabs and indexed by pointer-free references, so a store of
// millions of blocks costs the garbage collector almost nothing to scan.
type MemoryCAS struct {
	shards [memoryShards]memoryShard
}

const (
	memoryShards = 64
	slabSize     = 256 << 10 // blocks up to slabSize/4 are packed; larger ones get a slab each
)

type memoryShard struct {
	mu     sync.RWMutex
	blake3 map[[32]byte]blockRef // blocks addressed by blake3-256, the common case
	other  map[string]blockRef   // blocks put with any other multihash, by multihash bytes
	slabs  [][]byte              // append-only; a block never moves once written
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
		m.shards[i].blake3 = make(map[[32]byte]blockRef)
		m.shards[i].other = make(map[string]blockRef)
	}
	return m
}

// store copies data into the shard's slabs. Callers hold s.mu.
func (s *memoryShard) store(data []byte) blockRef {
	s.bytes += int64(len(data))
	if len(data) > slabSize/4 {
		s.slabs = append(s.slabs, append([]byte(nil), data...))
		return blockRef{slab: uint32(len(s.slabs) - 1), n: uint32(len(data))}
	}
	last := len(s.slabs) - 1
	if last < 0 || cap(s.slabs[last])-len(s.slabs[last]) < len(data) || cap(s.slabs[last]) != slabSize {
		s.slabs = append(s.slabs, make([]byte, 0, slabSize))
		last++
	}
	off := len(s.slabs[last])
	s.slabs[last] = append(s.slabs[last], data...)
	return blockRef{slab: uint32(last), off: uint32(off), n: uint32(len(data))}
}

// putOnce stores data under k unless a block is already there. Callers hold s.mu.
func putOnce[K comparable](s *memoryShard, m map[K]blockRef, k K, data []byte) {
	if _, ok := m[k]; !ok {
		m[k] = s.store(data)
	}
}

// bytesOf returns a copy of the block r. Callers hold s.mu (read).
func (s *memoryShard) bytesOf(r blockRef) []byte {
	return append(make([]byte, 0, r.n), s.slabs[r.slab][r.off:r.off+r.n]...)
}

// Save stores a copy of data and returns CIDv1(codec, blake3-256(data)).
func (m *MemoryCAS) Save(ctx context.Context, data []byte, codec multicodec.Code) (cid.Cid, error) {
	if err := ctx.Err(); err != nil {
		return cid.Undef, err
	}
	d := blake3.Sum256(data)
	s := &m.shards[d[0]%memoryShards]
	s.mu.Lock()
	putOnce(s, s.blake3, d, data)
	s.mu.Unlock()
	return cidFromDigest(codec, d), nil
}

// Put stores data under id, whatever its hash function, after checking that data hashes to id
// (ErrCorrupt otherwise). It is how blocks made elsewhere, such as those of a CAR file, enter the
// store.
func (m *MemoryCAS) Put(ctx context.Context, id cid.Cid, data []byte) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := verifyBlock(id, data); err != nil {
		return err
	}
	if d, ok := blake3Digest(id); ok {
		s := &m.shards[d[0]%memoryShards]
		s.mu.Lock()
		putOnce(s, s.blake3, d, data)
		s.mu.Unlock()
		return nil
	}
	k := string(id.Hash())
	s := &m.shards[k[len(k)-1]%memoryShards]
	s.mu.Lock()
	putOnce(s, s.other, k, data)
	s.mu.Unlock()
	return nil
}

// Load returns a copy of the block id, or ErrNotFound.
func (m *MemoryCAS) Load(ctx context.Context, id cid.Cid) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s, r, ok := m.find(id)
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
	s, _, ok := m.find(id)
	if ok {
		s.mu.RUnlock()
	}
	return ok, nil
}

// find looks id up and, when found, returns with its shard read-locked.
func (m *MemoryCAS) find(id cid.Cid) (*memoryShard, blockRef, bool) {
	if !id.Defined() {
		return nil, blockRef{}, false
	}
	var s *memoryShard
	var r blockRef
	var ok bool
	if d, isB3 := blake3Digest(id); isB3 {
		s = &m.shards[d[0]%memoryShards]
		s.mu.RLock()
		r, ok = s.blake3[d]
	} else {
		k := string(id.Hash())
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
		n += len(s.blake3) + len(s.other)
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
