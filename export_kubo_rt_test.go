package hamt_test

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/hamt-go/hamt"
	"github.com/hamt-go/hamt/internal/kubotest"
)

// TestExportDirFromKuboWithoutCatInParallel: when the RPC API will not stream the values (a
// gateway-only setup, a proxy refusing dag/stat), ExportDir loads them WithDirWorkers at once, as
// it did before it read values by cat; the fallback loaded them one at a time, one round trip
// after the other.
func TestExportDirFromKuboWithoutCatInParallel(t *testing.T) {
	srv := kubotest.New(t)
	values := map[string][]byte{"zarr.json": []byte(`{"zarr_format":3,"node_type":"group"}`)}
	for i := range 24 {
		values[fmt.Sprintf("a/c/%d", i)] = patterned(100 + i) // raw blocks
	}
	root := writeMap(t, newKubo(t, srv), values)
	z, err := hamt.OpenZarr(context.Background(), newKubo(t, srv), root)
	if err != nil {
		t.Fatal(err)
	}
	srv.Inject(kubotest.Fault{Endpoint: kubotest.RPC, Path: "/api/v0/dag/stat", Status: 404, Times: -1})
	srv.Inject(kubotest.Fault{Endpoint: kubotest.Gateway, Path: "/ipfs/", Delay: 20 * time.Millisecond, Times: -1})
	srv.ResetCounters()
	dir := filepath.Join(t.TempDir(), "out")
	if _, err := hamt.ExportDir(context.Background(), z, dir, hamt.WithDirWorkers(8)); err != nil {
		t.Fatal(err)
	}
	checkExported(t, dir, values)
	if n := srv.MaxInFlight(); n < 2 {
		t.Errorf("at most %d request in flight: the values were loaded one at a time, not 8", n)
	}
}
