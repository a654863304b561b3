package main

import (
	"context"

	"github.com/hamt-go/hamt"
	"github.com/ipfs/go-cid"
)

// bulkWrite is where a command that writes many blocks writes them: the store itself, or on Kubo
// a bulk session (hamt.KuboBulk), which streams the blocks to dag/import in a few requests
// instead of an add per block.
type bulkWrite struct {
	cas  hamt.CAS
	bulk *hamt.KuboBulk
}

// bulkWriter opens the bulk session of st when it is a Kubo store.
func bulkWriter(ctx context.Context, st *store) (*bulkWrite, error) {
	k, ok := st.cas.(*hamt.KuboCAS)
	if !ok {
		return &bulkWrite{cas: st.cas}, nil
	}
	b, err := k.Bulk(ctx)
	if err != nil {
		return nil, err
	}
	return &bulkWrite{cas: b, bulk: b}, nil
}

// commit makes what was written durable and, on Kubo, pins roots.
func (w *bulkWrite) commit(ctx context.Context, roots ...cid.Cid) error {
	if w.bulk == nil {
		return nil
	}
	return w.bulk.Commit(ctx, roots...)
}

// close ends a bulk session (one not committed is abandoned).
func (w *bulkWrite) close() {
	if w.bulk != nil {
		_ = w.bulk.Close()
	}
}
