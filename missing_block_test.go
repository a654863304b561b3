package hamt_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hamt-go/hamt"
	"github.com/multiformats/go-multicodec"
)

// TestMissingBlockNamesTheBlockOnce: a block the store lacks is ErrMissingBlock (not
// ErrNotFound, which means an absent key), and the error names its CID once: the map names it,
// the store's own "not found" message is not repeated (an identity CID can be 64 KB).
func TestMissingBlockNamesTheBlockOnce(t *testing.T) {
	ctx := context.Background()
	bolt, err := hamt.OpenBoltCAS(filepath.Join(t.TempDir(), "s.bolt"))
	if err != nil {
		t.Fatal(err)
	}
	defer bolt.Close()
	for name, cas := range map[string]hamt.CAS{"memory": hamt.NewMemoryCAS(), "bolt": bolt} {
		other := hamt.NewMemoryCAS()
		m, err := hamt.New(ctx, other, hamt.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		if err := m.Set(ctx, "k", []byte("v")); err != nil {
			t.Fatal(err)
		}
		root, err := m.Flush(ctx)
		if err != nil {
			t.Fatal(err)
		}
		_, err = hamt.Open(ctx, cas, hamt.Bytes, root)
		if !errors.Is(err, hamt.ErrMissingBlock) || errors.Is(err, hamt.ErrNotFound) || strings.Count(err.Error(), root.String()) != 1 {
			t.Errorf("%s: Open of a missing root: %v; want ErrMissingBlock naming %s once", name, err, root)
		}
		// The root node present, the value missing.
		node, _ := other.Load(ctx, root)
		if _, err := cas.Save(ctx, node, multicodec.DagCbor); err != nil {
			t.Fatal(err)
		}
		m2, err := hamt.Open(ctx, cas, hamt.Bytes, root)
		if err != nil {
			t.Fatal(err)
		}
		_, err = m2.Get(ctx, "k")
		value := blake3CID(multicodec.Raw, []byte("v")).String()
		if !errors.Is(err, hamt.ErrMissingBlock) || errors.Is(err, hamt.ErrNotFound) || strings.Count(fmt.Sprint(err), value) != 1 {
			t.Errorf("%s: Get of a missing value: %v; want ErrMissingBlock naming the value once", name, err)
		}
	}
}
