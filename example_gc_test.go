package hamt_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/hamt-go/hamt"
	"github.com/ipfs/go-cid"
)

// Name a root, move the name to a new root (the old one stays in the name's history), then
// collect the garbage: the blocks of a map nobody named.
func ExampleBoltCAS_GC() {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "hamt-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	store, err := hamt.OpenBoltCAS(filepath.Join(dir, "store.bolt"))
	if err != nil {
		log.Fatal(err)
	}
	defer store.Close()

	save := func(kv map[string]string) (root string) {
		m, err := hamt.New(ctx, store, hamt.Bytes)
		if err != nil {
			log.Fatal(err)
		}
		for k, v := range kv {
			if err := m.Set(ctx, k, []byte(v)); err != nil {
				log.Fatal(err)
			}
		}
		id, err := m.Flush(ctx)
		if err != nil {
			log.Fatal(err)
		}
		return id.String()
	}
	v1 := save(map[string]string{"zarr.json": "{}", "c/0": "first"})
	v2 := save(map[string]string{"zarr.json": "{}", "c/0": "second"})
	save(map[string]string{"scratch": "nobody names this"})

	for _, r := range []string{v1, v2} {
		n, err := store.Name(ctx, "era5")
		old := n.Root
		if err != nil && !errors.Is(err, hamt.ErrNameNotFound) {
			log.Fatal(err)
		}
		if err := store.SwapName(ctx, "era5", old, cid.MustParse(r)); err != nil {
			log.Fatal(err)
		}
	}
	n, err := store.Name(ctx, "era5")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(n.Root.String() == v2, len(n.History), n.History[0].Root.String() == v1)

	rep, err := store.GC(ctx)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("removed", rep.BlocksRemoved, "blocks, kept", rep.BlocksAfter, "for", rep.Roots, "roots")
	// Output:
	// true 1 true
	// removed 2 blocks, kept 5 for 2 roots
}
