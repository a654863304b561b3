package hamt_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/hamt-go/hamt"
)

// TestEnableWriteKeepsTheNodesReadsLoaded: an update of a map that was just read fetches no node
// the reads brought in (over Kubo each would be a round trip). Before, EnableWrite dropped the
// read cache and every Set reloaded its path from the store. The update's root is the one a fresh
// write of the same keys gives, and after the flush the map still reads every key.
func TestEnableWriteKeepsTheNodesReadsLoaded(t *testing.T) {
	ctx := context.Background()
	cas := &countingCAS{CAS: hamt.NewMemoryCAS()}
	w, err := hamt.New(ctx, cas, hamt.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	const n = 3000
	for i := range n {
		if err := w.Set(ctx, fmt.Sprint("k", i), []byte{byte(i)}); err != nil {
			t.Fatal(err)
		}
	}
	root, err := w.Flush(ctx)
	if err != nil {
		t.Fatal(err)
	}
	m, err := hamt.Open(ctx, cas, hamt.Bytes, root)
	if err != nil {
		t.Fatal(err)
	}
	for i := range n { // warm the read cache with the whole tree
		if _, err := m.Get(ctx, fmt.Sprint("k", i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := m.EnableWrite(ctx); err != nil {
		t.Fatal(err)
	}
	before := cas.loads.Load()
	for i := 0; i < n; i += 7 {
		if err := m.Set(ctx, fmt.Sprint("k", i), []byte{byte(i), 1}); err != nil {
			t.Fatal(err)
		}
	}
	if got := cas.loads.Load() - before; got != 0 {
		t.Errorf("the update loaded %d blocks from the store, want 0 (every node was cached)", got)
	}
	updated, err := m.Flush(ctx)
	if err != nil {
		t.Fatal(err)
	}
	fresh, err := hamt.New(ctx, hamt.NewMemoryCAS(), hamt.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		v := []byte{byte(i)}
		if i%7 == 0 {
			v = append(v, 1)
		}
		if err := fresh.Set(ctx, fmt.Sprint("k", i), v); err != nil {
			t.Fatal(err)
		}
	}
	want, err := fresh.Flush(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !updated.Equals(want) {
		t.Fatalf("root after the update %s, a fresh write gives %s", updated, want)
	}
	for i := range n {
		v, err := m.Get(ctx, fmt.Sprint("k", i))
		if err != nil || v[0] != byte(i) || (i%7 == 0) != (len(v) == 2) {
			t.Fatalf("Get(k%d) = %x, %v", i, v, err)
		}
	}
}
