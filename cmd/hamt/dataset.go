package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/hamt-go/hamt"
	"github.com/ipfs/go-cid"
)

// openZarr opens the dataset at root on st (hamt.OpenZarr); a root not in the store is
// exitNotFound (missingRoot).
func openZarr(ctx context.Context, st *store, root cid.Cid, opts ...hamt.LayoutOption) (hamt.ZarrDataset, error) {
	z, err := hamt.OpenZarr(ctx, st.cas, root, opts...)
	if err != nil {
		return nil, missingRoot(ctx, st, root, err)
	}
	return z, nil
}

// missingRoot is err, the failure of an operation on the dataset at root, or when root's own
// block is not in st, exitNotFound naming the store. A missing block further in (a value, a node,
// a sharded root's metadata) stays a failure: the store is incomplete, not the root absent.
func missingRoot(ctx context.Context, st *store, root cid.Cid, err error) error {
	if !errors.Is(err, hamt.ErrMissingBlock) {
		return err
	}
	if _, derr := hamt.DetectLayout(ctx, st.cas, root); errors.Is(derr, hamt.ErrMissingBlock) {
		return notFound(fmt.Errorf("no root %s in %s (%w)", root, st.where, hamt.ErrMissingBlock))
	}
	return err
}
