package main

import (
	"context"
	"io"

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

// fetchedZarr is the dataset at root to read whole: on a Kubo store whose RPC API serves
// dag/stat, a dataset of the HAMT layout (a *hamt.ZarrStore) is z itself, whose raw values
// hamt.ExportDir then reads in a few cat requests; any other (sharded), or any on a daemon
// without dag/stat, is a local copy fetched in one verified CAR stream from the gateways
// (hamt.KuboCAS.FetchDAG, in a temporary file that done removes) instead of a request per block;
// on any other store z itself.
func fetchedZarr(ctx context.Context, root cid.Cid, z hamt.ZarrDataset, st *store) (hamt.ZarrDataset, func(), error) {
	k, ok := st.cas.(*hamt.KuboCAS)
	if !ok {
		return z, func() {}, nil
	}
	// Only a plain HAMT dataset's values are read by cat (see hamt.ExportDir): a sharded one would
	// otherwise read every chunk with a gateway request of its own.
	if _, plain := z.(*hamt.ZarrStore); plain && k.ReadsRawBlocks(ctx) {
		return z, func() {}, nil
	}
	d, err := k.FetchDAG(ctx, root, "")
	if err != nil {
		return nil, nil, err
	}
	fz, err := hamt.OpenZarr(ctx, d, root)
	if err != nil {
		d.Close()
		return nil, nil, err
	}
	return fz, func() { d.Close() }, nil
}

// writeCAR writes the CAR of the DAG at root: on Kubo the gateway's own, streamed in one request
// and checked block by block (hamt.KuboCAS.ExportCAR), elsewhere hamt.WriteCAR's.
func writeCAR(ctx context.Context, st *store, root cid.Cid, w io.Writer) (int, error) {
	if k, ok := st.cas.(*hamt.KuboCAS); ok {
		return k.ExportCAR(ctx, root, w)
	}
	return hamt.WriteCAR(ctx, st.cas, root, w)
}
