package main

import (
	"context"
	"fmt"

	"github.com/hamt-go/hamt"
	"github.com/ipfs/go-cid"
)

// removeAll is rm -r: it removes the directory dir ("" for every key) from z, the dataset at root
// on st, and prints the new root; a directory with no key is exitNotFound.
func (a *app) removeAll(ctx context.Context, z hamt.ZarrDataset, st *store, root cid.Cid, dir string) error {
	n, err := hamt.RemoveAll(ctx, z, dir)
	switch {
	case err != nil:
		return err
	case n == 0 && dir == "":
		return notFound(fmt.Errorf("no key in %s: nothing to remove", root))
	case n == 0:
		return notFound(fmt.Errorf("no key under %q in %s", dir, root))
	}
	fmt.Fprintf(a.stderr, "removed %d %s\n", n, plural(n, "key", "keys"))
	return a.printFlushed(ctx, z, st, root)
}

// plural is one if n is 1, else many.
func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
