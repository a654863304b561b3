package hamt_test

import (
	"bytes"
	"context"
	"errors"
	"testing"

	"github.com/hamt-go/hamt"
	"github.com/hamt-go/hamt/internal/kubotest"
	"github.com/multiformats/go-multicodec"
)

// TestKuboSaveOfANodeOverTheChunkIsRefused: Kubo's add cuts a dag-cbor block over its chunk size
// into a UnixFS file; Save says so (ErrBlockTooLarge) rather than hand back the file's dag-pb CID
// as the node's, which the map could not read back as a node.
func TestKuboSaveOfANodeOverTheChunkIsRefused(t *testing.T) {
	k := newKubo(t, kubotest.New(t), hamt.WithKuboChunker("size-1024"))
	node := bytes.Repeat([]byte{0x40}, 3000)
	id, err := k.Save(context.Background(), node, multicodec.DagCbor)
	if !errors.Is(err, hamt.ErrBlockTooLarge) {
		t.Fatalf("Save of a 3000-byte dag-cbor block over a 1024-byte chunker: %s, %v; want ErrBlockTooLarge", id, err)
	}
	if id, err := k.Save(context.Background(), node[:1000], multicodec.DagCbor); err != nil || id.Type() != uint64(multicodec.DagCbor) {
		t.Fatalf("Save of a 1000-byte dag-cbor block: %s, %v", id, err)
	}
}
