package hamt

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/multiformats/go-multicodec"
)

// TestSetNameMakesItsRootDurableFirst: SetName accepts a root still in the store's write buffer
// (Has sees it) and makes the name durable at once; the root's block must be in the file before
// the name is, or a crash between the two leaves a name pointing at nothing (and every later GC
// refusing to run).
func TestSetNameMakesItsRootDurableFirst(t *testing.T) {
	ctx := context.Background()
	b, err := OpenBoltCAS(filepath.Join(t.TempDir(), "s.bolt"), WithBoltBatchSize(1000), WithBoltFlushInterval(0))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	root, err := b.Save(ctx, []byte("a value"), multicodec.Raw)
	if err != nil {
		t.Fatal(err)
	}
	buffered := func() int {
		b.mu.RLock()
		defer b.mu.RUnlock()
		return len(b.pending)
	}
	if err := b.SetName(ctx, "v", root); err != nil {
		t.Fatal(err)
	}
	if n := buffered(); n != 0 {
		t.Fatalf("SetName: the name is durable and %d blocks, its root among them, are only buffered", n)
	}
	next, err := b.Save(ctx, []byte("another value"), multicodec.Raw)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.SwapName(ctx, "v", root, next); err != nil {
		t.Fatal(err)
	}
	if n := buffered(); n != 0 {
		t.Fatalf("SwapName: the name is durable and %d blocks, its root among them, are only buffered", n)
	}
}
