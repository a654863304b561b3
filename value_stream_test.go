package hamt_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hamt-go/hamt"
	"github.com/hamt-go/hamt/internal/testdag"
	"github.com/zeebo/blake3"
)

// bombMap is a map whose key "bomb" holds a UnixFS file of leafSize × fanout^levels bytes of 'b'
// made of levels+1 blocks (Kubo dedups identical chunks, so such a file is valid and cheap to
// store).
func bombMap(t *testing.T, leafSize, fanout, levels int) (*hamt.ZarrStore, int64) {
	t.Helper()
	ctx := context.Background()
	cas := hamt.NewMemoryCAS()
	root, blocks, err := testdag.Bomb(leafSize, 'b', fanout, levels)
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range blocks {
		if err := cas.Put(ctx, b.ID, b.Data); err != nil {
			t.Fatal(err)
		}
	}
	// The map is one node holding "bomb" in its slot: the library cannot set a key to a CID it
	// did not save, as Kubo's add does.
	h := blake3.Sum256([]byte("bomb"))
	mapRoot := testdag.SaveNode(t, cas, map[int][]byte{int(h[0]): testdag.Bucket(testdag.Entry("bomb", root))})
	m, err := hamt.Open(ctx, cas, hamt.Bytes, mapRoot)
	if err != nil {
		t.Fatal(err)
	}
	zs, err := hamt.NewZarrStore(m)
	if err != nil {
		t.Fatal(err)
	}
	size := int64(leafSize)
	for range levels {
		size *= int64(fanout)
	}
	return zs, size
}

// totalAlloc is the bytes allocated so far by the process.
func totalAlloc() uint64 {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.TotalAlloc
}

var errEnough = errors.New("enough")

// stopAfter accepts n bytes, then fails.
type stopAfter struct {
	n, got int64
}

func (w *stopAfter) Write(p []byte) (int, error) {
	if w.got+int64(len(p)) > w.n {
		k := w.n - w.got
		w.got = w.n
		return int(k), errEnough
	}
	for _, c := range p {
		if c != 'b' {
			return 0, errors.New("wrong byte")
		}
	}
	w.got += int64(len(p))
	return len(p), nil
}

// TestWriteValueStreamsAHugeFileInBoundedMemory: a 16 GiB file of four blocks is written piece by
// piece; a reader that stops after 8 MiB has cost a few MiB, not the file.
func TestWriteValueStreamsAHugeFileInBoundedMemory(t *testing.T) {
	zs, size := bombMap(t, 64<<10, 512, 2)
	if size != 16<<30 {
		t.Fatalf("bomb of %d bytes", size)
	}
	if got, err := zs.GetSize(context.Background(), "bomb"); err != nil || got != size {
		t.Fatalf("GetSize = %d, %v; want %d", got, err, size)
	}
	before := totalAlloc()
	w := &stopAfter{n: 8 << 20}
	n, err := zs.WriteValue(context.Background(), w, "bomb", hamt.ByteRange{})
	if !errors.Is(err, errEnough) || n != 8<<20 {
		t.Fatalf("WriteValue = %d, %v; want 8 MiB, then the writer's error", n, err)
	}
	if used := totalAlloc() - before; used > 64<<20 {
		t.Fatalf("writing 8 MiB of the value allocated %d MiB", used>>20)
	}
	// A range in the middle is the same bytes.
	var buf bytes.Buffer
	if n, err := zs.WriteValue(context.Background(), &buf, "bomb", hamt.RangeBetween(size/2-3, size/2+3)); err != nil || n != 6 || buf.String() != "bbbbbb" {
		t.Fatalf("WriteValue of a range = %d, %q, %v", n, buf.String(), err)
	}
	if _, err := zs.WriteValue(context.Background(), &buf, "missing", hamt.ByteRange{}); !errors.Is(err, hamt.ErrNotFound) {
		t.Fatalf("WriteValue of a missing key: %v, want ErrNotFound", err)
	}
}

// TestExportDirStreamsValues: exporting a value of 127 MiB holds a few MiB of it at a time, not
// the value.
func TestExportDirStreamsValues(t *testing.T) {
	zs, size := bombMap(t, 64<<10, 45, 2)
	dir := filepath.Join(t.TempDir(), "out")
	runtime.GC()
	peak := watchHeap(t)
	st, err := hamt.ExportDir(context.Background(), zs, dir, hamt.WithDirWorkers(1))
	if err != nil {
		t.Fatal(err)
	}
	grew := peak()
	t.Logf("grew %d KiB", grew>>10)
	if grew > 32<<20 {
		t.Fatalf("exporting a value of %d MiB grew the heap by %d MiB", size>>20, grew>>20)
	}
	fi, err := os.Stat(filepath.Join(dir, "bomb"))
	if err != nil || fi.Size() != size || st.Files != 1 {
		t.Fatalf("exported %+v, bomb %v, %v; want 1 file, %d bytes", st, fi, err, size)
	}
}

// watchHeap samples the heap every millisecond until the function it returns is called, which
// gives the most it grew above where it started. Meanwhile the collector runs at GOGC=10, so that
// garbage, which at the default GOGC may pile up to the size of whatever else the test process
// holds live, does not count as growth (the bound flaked at 33 MiB when other tests left a big
// live heap).
func watchHeap(t *testing.T) func() uint64 {
	t.Helper()
	gcPercent := debug.SetGCPercent(10)
	sample := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	read := func() uint64 { metrics.Read(sample); return sample[0].Value.Uint64() }
	base := read()
	var top atomic.Uint64
	done, stopped := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(stopped)
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		for {
			if h := read(); h > top.Load() {
				top.Store(h)
			}
			select {
			case <-done:
				return
			case <-tick.C:
			}
		}
	}()
	return func() uint64 {
		close(done)
		<-stopped
		debug.SetGCPercent(gcPercent)
		return max(top.Load(), base) - base
	}
}
