package hamt

import (
	"encoding/binary"
	"fmt"
	"unsafe"

	"github.com/cespare/xxhash/v2"
	"github.com/zeebo/blake3"
)

// HashFunc maps a key's UTF-8 bytes to the hash that places it in the trie. The digest must be at
// least one byte long and always the same length; each byte selects the slot at one depth, so the
// maximum depth of the trie is the digest length.
type HashFunc func([]byte) []byte

// Blake3 is the default HashFunc: the 32-byte BLAKE3 digest, as py-hamt's blake3_hashfn.
func Blake3(b []byte) []byte {
	sum := blake3.Sum256(b)
	return sum[:]
}

// XXH64 is a HashFunc giving the 64-bit xxHash of b as 8 big-endian bytes. It is much faster than
// Blake3 but limits the trie to depth 8 and gives an adversary easy collisions: use it only for keys
// you control.
func XXH64(b []byte) []byte {
	return binary.BigEndian.AppendUint64(make([]byte, 0, 8), xxhash.Sum64(b))
}

// keyHasher hashes keys for one Map. The default BLAKE3 hash is computed into a caller's array, so
// the hot paths (Get, Set) do not allocate for it.
type keyHasher struct {
	custom HashFunc // nil for the default BLAKE3
}

// hash returns the hash of key. For the default hash the result aliases buf.
func (h keyHasher) hash(key string, buf *[32]byte) ([]byte, error) {
	// The key's bytes are only read, never kept, so viewing the string's memory is safe.
	kb := unsafe.Slice(unsafe.StringData(key), len(key))
	if h.custom == nil {
		*buf = blake3.Sum256(kb)
		return buf[:], nil
	}
	sum := h.custom(kb)
	if len(sum) == 0 {
		return nil, fmt.Errorf("hash of key %q is empty", key)
	}
	return sum, nil
}

// slotAt is the slot a key with hash h takes in a node at depth d: byte d of the hash, as py-hamt's
// extract_bits(h, d, 8). Past the end of the hash there is nowhere left to go: ErrMaxDepth.
func slotAt(h []byte, depth int) (int, error) {
	if depth >= len(h) {
		return 0, fmt.Errorf("%w: depth %d with a %d-byte hash", ErrMaxDepth, depth, len(h))
	}
	return int(h[depth]), nil
}
