package hamt

import (
	"context"
	"errors"
	"fmt"

	"github.com/ipfs/go-cid"
)

// This file reads identity CIDs: a CID whose multihash has code 0x00 (identity) holds the block
// itself as its "digest". Kubo makes them (`ipfs add --inline`), CAR writers leave them out (ours
// and go-car's), and no store holds them: every read of a block (Load, LoadRange, BlockSize, Has,
// in every store and in the map's and the tools' own reads through any CAS) answers one from the
// CID. This library never makes one (py-hamt does not); a Put of one stores nothing.

// MaxIdentityDigest is the most bytes an identity CID may hold: boxo's
// verifcid.DefaultMaxIdentityDigestSize, which Kubo enforces on every CID it handles. A larger
// one is ErrIdentityTooLarge.
const MaxIdentityDigest = 128

// ErrIdentityTooLarge reports an identity CID holding more than MaxIdentityDigest bytes. The
// errors that carry it also wrap ErrCorrupt: a dataset linking one is unreadable to Kubo.
var ErrIdentityTooLarge = errors.New("identity CID holds too many bytes")

// identityDigest returns the bytes the binary CID c holds when it is an identity CID (ok), a
// view of c. An identity CID over MaxIdentityDigest is an error. c must be a valid CID.
func identityDigest(c cidBytes) (data string, ok bool, err error) {
	// A CIDv1: 0x01, the codec, the multihash code (0x00 is one byte), its length, the digest.
	// The usual CID, whose codec is one byte, is told apart by its third byte alone.
	if len(c) < 4 || c[0] != 1 || (c[1] < 0x80 && c[2] != 0) {
		return "", false, nil
	}
	i := 1
	for i < len(c) && c[i] >= 0x80 { // codec
		i++
	}
	i++
	if i >= len(c) || c[i] != 0 {
		return "", false, nil
	}
	i++
	var n uint64
	for shift := 0; i < len(c) && shift < 64; shift += 7 { // digest length
		b := c[i]
		i++
		n |= uint64(b&0x7f) << shift
		if b < 0x80 {
			break
		}
	}
	if n != uint64(len(c)-i) {
		return "", true, fmt.Errorf("%w: identity CID says %d bytes and holds %d", ErrCorrupt, n, len(c)-i)
	}
	if n > MaxIdentityDigest {
		return "", true, fmt.Errorf("%w: %w: %d bytes, more than the %d Kubo and boxo accept", ErrCorrupt, ErrIdentityTooLarge, n, MaxIdentityDigest)
	}
	return string(c[i:]), true, nil
}

// isIdentity reports whether the binary CID c is an identity CID, of any size.
func isIdentity(c cidBytes) bool {
	_, ok, _ := identityDigest(c)
	return ok
}

// identityBlock returns a copy of the bytes id holds when it is an identity CID (ok); an identity
// CID over MaxIdentityDigest is an error (with ok true).
func identityBlock(id cid.Cid) (data []byte, ok bool, err error) {
	d, ok, err := identityDigest(cidKey(id))
	if !ok || err != nil {
		return nil, ok, err
	}
	return append([]byte{}, d...), true, nil // never nil: a present block, even empty
}

// loadBlock is cas.Load, answering an identity CID itself: every read of a whole block through
// a CAS the caller did not write (the map's, the tools') goes through it, so that a store of
// one's own need not know identity CIDs.
func loadBlock(ctx context.Context, cas CAS, id cid.Cid) ([]byte, error) {
	if b, ok, err := identityBlock(id); ok {
		return b, err
	}
	return cas.Load(ctx, id)
}

// putIdentity is the Put of a block id that is an identity CID (ok): nothing to store once data
// is checked to be what id holds (ErrCorrupt otherwise).
func putIdentity(id cid.Cid, data []byte) (ok bool, err error) {
	d, ok, err := identityDigest(cidKey(id))
	if !ok || err != nil {
		return ok, err
	}
	if d != string(data) {
		return true, fmt.Errorf("%w: block %s does not hash to its CID", ErrCorrupt, id)
	}
	return true, nil
}
