// Package testdag builds HAMT blocks and DAGs by hand for the tests of package hamt and of the
// hamt command, which cannot share unexported test helpers: node blocks written byte by byte
// (independent of the library's encoder, so tests built on them check the decoder rather than
// restate it), trees of them including hostile ones, values laid out as Kubo stores them, and CARs
// of given blocks.
//
// It must not import package hamt: package hamt's own tests import it.
package testdag

import (
	"bytes"
	"context"
	"testing"

	"github.com/ipfs/go-cid"
	carv2 "github.com/ipld/go-car/v2"
	"github.com/ipld/go-car/v2/storage"
	"github.com/multiformats/go-multicodec"
	"github.com/multiformats/go-multihash"
	"github.com/zeebo/blake3"
)

// Block is a block of a hand-built DAG: its CID and its bytes.
type Block struct {
	ID   cid.Cid
	Data []byte
}

// CID is CIDv1(codec, blake3-256(data)), the CID the library gives a block it saves.
func CID(codec multicodec.Code, data []byte) cid.Cid {
	sum := blake3.Sum256(data)
	mh, err := multihash.Encode(sum[:], multihash.BLAKE3)
	if err != nil {
		panic(err) // blake3 is a known multihash code: never
	}
	return cid.NewCidV1(uint64(codec), mh)
}

// Blocks is a Saver that keeps every block it is given, in order, for a CAR.
type Blocks []Block

// Save appends data as a block and returns its CID.
func (b *Blocks) Save(_ context.Context, data []byte, codec multicodec.Code) (cid.Cid, error) {
	id := CID(codec, data)
	*b = append(*b, Block{id, bytes.Clone(data)})
	return id, nil
}

// CAR is a CARv1 with the given roots holding blocks in the order given (a block given twice is
// written twice), as `ipfs dag export` writes one.
func CAR(t testing.TB, roots []cid.Cid, blocks []Block) []byte {
	t.Helper()
	var buf bytes.Buffer
	w, err := storage.NewWritable(&buf, roots, carv2.WriteAsCarV1(true), carv2.AllowDuplicatePuts(true))
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range blocks {
		if err := w.Put(context.Background(), b.ID.KeyString(), b.Data); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Finalize(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}
