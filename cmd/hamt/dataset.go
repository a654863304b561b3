package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/hamt-go/hamt"
	"github.com/ipfs/go-cid"
)

// openZarr opens the dataset at root on st (hamt.OpenZarr). A root whose own block is not in the
// store ends the command with exitNotFound, naming the store; a missing block further in (a
// sharded root's metadata, say) stays a failure: the store is incomplete, not the root absent.
func openZarr(ctx context.Context, st *store, root cid.Cid, opts ...hamt.LayoutOption) (hamt.ZarrDataset, error) {
	z, err := hamt.OpenZarr(ctx, st.cas, root, opts...)
	if err == nil || !errors.Is(err, hamt.ErrMissingBlock) {
		return z, err
	}
	if _, derr := hamt.DetectLayout(ctx, st.cas, root); errors.Is(derr, hamt.ErrMissingBlock) {
		return nil, notFound(fmt.Errorf("no root %s in %s (%w)", root, st.where, hamt.ErrMissingBlock))
	}
	return nil, err
}
