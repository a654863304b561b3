package hamt

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/multiformats/go-multicodec"
)

// TestBoltCloseStopsTheFlusher: the background flusher of a store runs while it is open and has
// returned when Close returns. It watches this store's own flusher (its done channel), not a count
// of flusher goroutines in the process, which other tests' stores could change at any moment.
func TestBoltCloseStopsTheFlusher(t *testing.T) {
	b, err := OpenBoltCAS(filepath.Join(t.TempDir(), "blocks.bolt"), WithBoltFlushInterval(time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Save(context.Background(), []byte("x"), multicodec.Raw); err != nil {
		t.Fatal(err)
	}
	time.Sleep(5 * time.Millisecond) // a few ticks: the flusher commits and keeps running
	select {
	case <-b.done:
		t.Fatal("the flusher returned while the store is open")
	default:
	}
	if err := b.CloseStrict(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-b.done:
	default:
		t.Fatal("the flusher is still running after Close returned")
	}
}
