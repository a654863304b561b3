package hamt_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"

	"github.com/hamt-go/hamt"
	"github.com/hamt-go/hamt/internal/kubotest"
	"github.com/ipfs/go-cid"
)

var _ hamt.BlockSizer = (*hamt.FetchedDAG)(nil)

// TestFetchedDAGBlockSize: a fetched copy tells every value's size (waiting for it as Load does),
// so that an export reads each value from the copy once; a block the DAG lacks is ErrNotFound.
func TestFetchedDAGBlockSize(t *testing.T) {
	root, values, d := fetchedDataset(t)
	ctx := context.Background()
	for key, v := range values {
		id := blake3CID(0x55, v)
		if len(v) > 1<<20 {
			continue // a UnixFS file: its root is a dag-pb node, not the value's bytes
		}
		n, err := d.BlockSize(ctx, id)
		if err != nil || n != int64(len(v)) {
			t.Fatalf("BlockSize of %q = %d, %v; want %d", key, n, err, len(v))
		}
	}
	n, err := d.BlockSize(ctx, root)
	if b, lerr := d.Load(ctx, root); err != nil || lerr != nil || n != int64(len(b)) {
		t.Fatalf("BlockSize of the root = %d, %v; Load: %d bytes, %v", n, err, len(b), lerr)
	}
	if err := d.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	absent := blake3CID(0x55, []byte("not in the DAG"))
	if _, err := d.BlockSize(ctx, absent); !errors.Is(err, hamt.ErrNotFound) {
		t.Fatalf("BlockSize of a block not in the DAG: %v, want ErrNotFound", err)
	}
}

// openOrder is a Zarr that notes the order its values are opened in.
type openOrder struct {
	hamt.Zarr
	mu     sync.Mutex
	opened []string
}

func (o *openOrder) Open(ctx context.Context, key string) (*hamt.ZarrValue, error) {
	o.mu.Lock()
	o.opened = append(o.opened, key)
	o.mu.Unlock()
	return o.Zarr.Open(ctx, key)
}

// TestExportDirWritesInListingOrder: ExportDir writes the values in the order the store lists
// them (the order of the map's walk, which is the order a FetchedDAG's stream brings them in),
// not sorted, and still writes exactly the dataset.
func TestExportDirWritesInListingOrder(t *testing.T) {
	ctx := context.Background()
	values := bulkValues()
	cas := hamt.NewMemoryCAS()
	root := writeMap(t, cas, values)
	z, err := hamt.OpenZarr(ctx, cas, root)
	if err != nil {
		t.Fatal(err)
	}
	var listed []string
	for key, err := range z.List(ctx) {
		if err != nil {
			t.Fatal(err)
		}
		listed = append(listed, key)
	}
	if slices.IsSorted(listed) {
		t.Fatal("the map lists its keys sorted: the test cannot tell the orders apart")
	}
	src := &openOrder{Zarr: z}
	dir := filepath.Join(t.TempDir(), "out")
	if _, err := hamt.ExportDir(ctx, src, dir, hamt.WithDirWorkers(1)); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(src.opened, listed) {
		t.Errorf("values written in the order %q..., want the listing's %q...", src.opened[:3], listed[:3])
	}
	for key, v := range values {
		b, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(key)))
		if err != nil || string(b) != string(v) {
			t.Fatalf("file %q: %d bytes, %v; want %d bytes", key, len(b), err, len(v))
		}
	}
}

// TestExportDirFromFetchedDAG: an export from a fetched copy (whose raw values are copied file to
// file in the kernel where it can) writes exactly the dataset, values over a chunk and empty ones
// included.
func TestExportDirFromFetchedDAG(t *testing.T) {
	root, values, d := fetchedDataset(t)
	ctx := context.Background()
	z, err := hamt.OpenZarr(ctx, d, root)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "out")
	st, err := hamt.ExportDir(ctx, z, dir)
	if err != nil {
		t.Fatal(err)
	}
	if st.Files != len(values) {
		t.Errorf("exported %d files, want %d", st.Files, len(values))
	}
	for key, v := range values {
		b, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(key)))
		if err != nil || string(b) != string(v) {
			t.Fatalf("file %q: %d bytes, %v; want %d bytes", key, len(b), err, len(v))
		}
	}
	if err := d.Wait(ctx); err != nil {
		t.Fatal(err)
	}
}

// fetchedDataset writes kuboDataset to a kubotest daemon and fetches it back whole with FetchDAG,
// closed when the test ends.
func fetchedDataset(t *testing.T) (cid.Cid, map[string][]byte, *hamt.FetchedDAG) {
	t.Helper()
	srv := kubotest.New(t)
	root, values := kuboDataset(t, srv)
	d, err := newKubo(t, srv).FetchDAG(context.Background(), root, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return root, values, d
}
