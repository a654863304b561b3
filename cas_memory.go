package hamt

import (
	"context"
	"fmt"
	"sync"

	"github.com/ipfs/go-cid"
	"github.com/multiformats/go-multicodec"
)

// MemoryCAS is a CAS in memory. Save computes CIDv1(codec, blake3-256) locally, as py-hamt's
// stores and Kubo do. Blocks are kept by multihash, so the same bytes saved as raw and as dag-cbor
// are stored once and load under either CID, as in an IPFS blockstore. It is safe for concurrent
// use; the zero value is not usable, call NewMemoryCAS.
type MemoryCAS struct {
	shards [memoryShards]memoryShard
}

const memoryShards = 64

type memoryShard struct {
	mu     sync.RWMutex
	blake3 map[[32]byte][]byte // blocks addressed by blake3-256, the common case
	other  map[string][]byte   // blocks put with any other multihash, by multihash bytes
	bytes  int64
}

// NewMemoryCAS returns an empty MemoryCAS.
func NewMemoryCAS() *MemoryCAS {
	m := &MemoryCAS{}
	for i := range m.shards {
		m.shards[i].blake3 = make(map[[32]byte][]byte)
		m.shards[i].other = make(map[string][]byte)
	}
	return m
}

// Save stores a copy of data and returns CIDv1(codec, blake3-256(data)).
func (m *MemoryCAS) Save(ctx context.Context, data []byte, codec multicodec.Code) (cid.Cid, error) {
	if err := ctx.Err(); err != nil {
		return cid.Undef, err
	}
	id := blake3CID(codec, data)
	d, _ := blake3Digest(id)
	s := &m.shards[d[0]%memoryShards]
	s.mu.Lock()
	if _, ok := s.blake3[d]; !ok {
		s.blake3[d] = append([]byte(nil), data...)
		s.bytes += int64(len(data))
	}
	s.mu.Unlock()
	return id, nil
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
		if _, ok := s.blake3[d]; !ok {
			s.blake3[d] = append([]byte(nil), data...)
			s.bytes += int64(len(data))
		}
		s.mu.Unlock()
		return nil
	}
	k := string(id.Hash())
	s := &m.shards[k[len(k)-1]%memoryShards]
	s.mu.Lock()
	if _, ok := s.other[k]; !ok {
		s.other[k] = append([]byte(nil), data...)
		s.bytes += int64(len(data))
	}
	s.mu.Unlock()
	return nil
}

// Load returns a copy of the block id, or ErrNotFound.
func (m *MemoryCAS) Load(ctx context.Context, id cid.Cid) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	b, ok := m.get(id)
	if !ok {
		return nil, fmt.Errorf("load %s: %w", id, ErrNotFound)
	}
	return append(make([]byte, 0, len(b)), b...), nil
}

// Has reports whether the store holds block id.
func (m *MemoryCAS) Has(ctx context.Context, id cid.Cid) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, err
	}
	_, ok := m.get(id)
	return ok, nil
}

func (m *MemoryCAS) get(id cid.Cid) ([]byte, bool) {
	if !id.Defined() {
		return nil, false
	}
	if d, ok := blake3Digest(id); ok {
		s := &m.shards[d[0]%memoryShards]
		s.mu.RLock()
		b, ok := s.blake3[d]
		s.mu.RUnlock()
		return b, ok
	}
	k := string(id.Hash())
	s := &m.shards[k[len(k)-1]%memoryShards]
	s.mu.RLock()
	b, ok := s.other[k]
	s.mu.RUnlock()
	return b, ok
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
