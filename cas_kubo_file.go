package hamt

import (
	"context"
	"fmt"

	"github.com/ipfs/go-cid"
	"github.com/multiformats/go-multicodec"
)

// KuboCAS is a FileSaver: a value larger than one chunk goes to Kubo in one add, which makes the
// file, and the core checks the root Kubo answers against its own layout.
var _ FileSaver = (*KuboCAS)(nil)

// FileChunkSize returns the N of the store's size-N chunker (WithKuboChunker), 0 for a chunker
// whose leaves are not of one size (rabin, buzhash): values then go to Kubo whole, and a large
// value's CID is what that chunker makes, not what the other stores give.
func (k *KuboCAS) FileChunkSize() int { return int(k.chunkSize) }

// SaveFile adds data, larger than one chunk, in one request and returns the dag-pb root of the
// UnixFS file Kubo made of it, which must carry the store's hash function (ErrCorrupt otherwise).
func (k *KuboCAS) SaveFile(ctx context.Context, data []byte) (cid.Cid, error) {
	root, err := k.Save(ctx, data, multicodec.Raw)
	if err != nil {
		return cid.Undef, err
	}
	if p := root.Prefix(); p.Codec != uint64(multicodec.DagPb) || p.MhType != k.hashCode {
		return cid.Undef, fmt.Errorf("%w: kubo add: answered %s for a %d-byte value, want a dag-pb file root with the store's hash", ErrCorrupt, root, len(data))
	}
	return root, nil
}
