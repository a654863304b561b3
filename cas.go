package hamt

import (
	"context"
	"fmt"
	"unsafe"

	"github.com/ipfs/go-cid"
	"github.com/multiformats/go-multicodec"
	"github.com/multiformats/go-multihash"
	"github.com/multiformats/go-varint"
	"github.com/zeebo/blake3"
)

// CAS is a content-addressed block store: the only thing a Map needs to persist itself. Every
// implementation must be safe for concurrent use.
//
// Save stores data and returns its CID with the given codec (raw for values and the leaves of a
// value over one chunk, dag-pb for that value's UnixFS file nodes, dag-cbor for map nodes); it
// must not keep data after it returns. Load returns the bytes of the block id names, its own
// bytes whatever its codec (a dag-pb CID gives the node, not the UnixFS file it heads: the map
// reads such a value's file itself, through Load); the caller owns them and the store must not
// change them afterwards. A block the store does not hold is ErrNotFound.
//
// A store answers for the bytes it returns: BoltCAS and KuboCAS hash every block they read,
// MemoryCAS every block at Put (Save computes the CID itself). The map hashes what a store of your
// own loads only when opened WithVerifyBlocks, and never again what BoltCAS or KuboCAS loaded.
type CAS interface {
	Save(ctx context.Context, data []byte, codec multicodec.Code) (cid.Cid, error)
	Load(ctx context.Context, id cid.Cid) ([]byte, error)
}

// Flusher is a CAS that buffers writes: a block Save returned may not be durable yet, and Flush
// makes it so. When Flush returns without error, every block saved before it was called survives
// a crash of the process (and of the machine, as far as the store's storage promises). A failed
// Flush leaves the blocks buffered, to be retried.
//
// Map.Flush and Map.MakeReadOnly call Flush after saving a root's nodes, so the root they return
// is durable with everything it reaches. BoltCAS is a Flusher; MemoryCAS keeps nothing across a
// crash and KuboCAS hands each block to Kubo as it is saved, so neither is.
type Flusher interface {
	Flush(ctx context.Context) error
}

// flushStore makes what cas holds durable when it buffers writes (see Flusher).
func flushStore(ctx context.Context, cas CAS) error {
	if f, ok := cas.(Flusher); ok {
		return f.Flush(ctx)
	}
	return nil
}

// verifyingCAS is a CAS whose Load checks every block it returns against its CID (ErrCorrupt on a
// mismatch): BoltCAS and KuboCAS. The map's WithVerifyBlocks and the tools (Inspect, WriteCAR)
// then do not hash a block the store has just hashed.
type verifyingCAS interface{ verifiesLoads() }

// storeVerifies reports whether cas checks what it loads.
func storeVerifies(cas CAS) bool {
	_, ok := cas.(verifyingCAS)
	return ok
}

// blake3CID is CIDv1(codec, blake3-256(data)), the CID py-hamt and Kubo (with hash=blake3) give a
// block of at most one chunk.
func blake3CID(codec multicodec.Code, data []byte) cid.Cid {
	return cidFromDigest(codec, blake3.Sum256(data))
}

func cidFromDigest(codec multicodec.Code, digest [32]byte) cid.Cid {
	// The multihash is built on the stack; NewCidV1 copies it into the CID's string, the only
	// allocation.
	var mh [34]byte
	mh[0], mh[1] = byte(multihash.BLAKE3), 32 // code 0x1e fits in one varint byte
	copy(mh[2:], digest[:])
	return cid.NewCidV1(uint64(codec), mh[:])
}

// blake3Digest returns the digest of a CID whose multihash is blake3-256.
func blake3Digest(id cid.Cid) ([32]byte, bool) { return blake3DigestOf(cidKey(id)) }

// blake3DigestOf returns the digest of the binary CID c when it is a CIDv1 whose multihash is
// blake3-256: version and codec varints, then 0x1e 0x20 and the 32-byte digest.
func blake3DigestOf(c cidBytes) (d [32]byte, ok bool) {
	if len(c) < 2+34 || c[len(c)-34] != byte(multihash.BLAKE3) || c[len(c)-33] != 32 {
		return d, false
	}
	b := unsafe.Slice(unsafe.StringData(string(c)), len(c)) // only read
	version, n, err := varint.FromUvarint(b)
	if err != nil || version != 1 {
		return d, false
	}
	if _, m, err := varint.FromUvarint(b[n:]); err != nil || n+m != len(c)-34 {
		return d, false
	}
	copy(d[:], c[len(c)-32:])
	return d, true
}

// verifyBlock checks that data is what id names: its multihash is recomputed and compared.
// A mismatch is ErrCorrupt.
func verifyBlock(id cid.Cid, data []byte) error {
	if d, ok := blake3Digest(id); ok {
		if blake3.Sum256(data) != d {
			return fmt.Errorf("%w: block %s does not hash to its CID", ErrCorrupt, id)
		}
		return nil
	}
	p := id.Prefix()
	got, err := p.Sum(data)
	if err != nil {
		return fmt.Errorf("verify block %s: %w", id, err)
	}
	if !got.Equals(id) {
		return fmt.Errorf("%w: block %s does not hash to its CID", ErrCorrupt, id)
	}
	return nil
}

// view returns c as a cid.Cid sharing c's bytes, without the copy (an allocation) and the parse
// that cid.Cast makes: what Map hands a store's Load on every Get and node miss. c must be a CID
// that was validated when it entered a node (every cidBytes in a node is). A cid.Cid is a struct
// of one string, its binary form; TestCIDViewLayout checks that this still holds.
func (c cidBytes) view() cid.Cid {
	return *(*cid.Cid)(unsafe.Pointer(&c))
}
