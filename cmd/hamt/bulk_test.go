package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hamt-go/hamt/internal/kubotest"
	"github.com/ipfs/go-cid"
)

// TestKuboBulkPaths: through Kubo, import streams the dataset to dag/import and pins its root,
// car export and export read it in one CAR stream from the gateway, and car import goes through
// dag/import: a handful of requests each, not one per block.
func TestKuboBulkPaths(t *testing.T) {
	srv := kubotest.New(t)
	data := filepath.Join("..", "..", "testdata", "zarr")
	kubo := []string{"--kubo-rpc", srv.RPCURL(), "--kubo-gateway", srv.GatewayURL()}
	root := ok(t, "", nil, append(kubo, "import", data)...).lastLine()
	if want := ok(t, filepath.Join(t.TempDir(), "s.bolt"), nil, "import", data).lastLine(); root != want {
		t.Errorf("root through dag/import %s, on bbolt %s", root, want)
	}
	imports, adds, pins := srv.Requests("/api/v0/dag/import"), srv.Requests("/api/v0/add"), srv.Requests("/api/v0/pin/add")
	if imports != 2 || adds != 0 || pins != 1 {
		t.Errorf("import: %d dag/import, %d add, %d pin/add; want 2 (probe, stream), 0, 1", imports, adds, pins)
	}
	id, _ := cid.Decode(root)
	if srv.Pinned(id) != "recursive" {
		t.Error("import did not pin its root")
	}

	srv.ResetCounters()
	dir := t.TempDir()
	car := filepath.Join(dir, "d.car")
	ok(t, "", nil, append(kubo, "car", "export", root, car)...)
	// Opening the dataset reads its root block twice (its layout, then the map), then one CAR.
	if n := srv.Total(kubotest.Gateway); n > 3 {
		t.Errorf("car export: %d gateway requests, want the root and one CAR", n)
	}
	if got := ok(t, filepath.Join(dir, "c.bolt"), nil, "car", "import", car).lastLine(); got != root {
		t.Errorf("the exported CAR imports as %s, want %s", got, root)
	}

	files := zarrFiles(t)
	exported := func(out string) {
		t.Helper()
		for name, want := range files {
			if got, err := os.ReadFile(filepath.Join(out, filepath.FromSlash(name))); err != nil || !bytes.Equal(got, want) {
				t.Errorf("exported %s: %v", name, err)
			}
		}
	}
	cars := func() (n int) {
		for _, r := range srv.Log() {
			if strings.Contains(r.RawQuery, "format=car") {
				n++
			}
		}
		return n
	}
	// The map's nodes are read from the gateway, the values in one cat from the RPC API (its sizes
	// from dag/stat, asked once more as the probe).
	srv.ResetCounters()
	out := filepath.Join(dir, "out")
	ok(t, "", nil, append(kubo, "export", root, out)...)
	if n, c, s := srv.Total(kubotest.Gateway), srv.Requests("/api/v0/cat"), srv.Requests("/api/v0/dag/stat"); cars() != 0 || n >= len(files) || c != 1 || s != 2 {
		t.Errorf("export: %d gateway requests, %d of them CARs, %d cat, %d dag/stat, for %d files; want no value read alone, 1 cat, 2 dag/stat",
			n, cars(), c, s, len(files))
	}
	exported(out)
	// Without dag/stat on the RPC API: one CAR stream; the map's nodes may be read ahead of it one
	// by one, the values never.
	srv.ResetCounters()
	srv.Inject(kubotest.Fault{Endpoint: kubotest.RPC, Path: "/api/v0/dag/stat", Status: 404, Times: -1})
	out = filepath.Join(dir, "out2")
	ok(t, "", nil, append(kubo, "export", root, out)...)
	if n := srv.Total(kubotest.Gateway); cars() != 1 || n >= len(files) {
		t.Errorf("export: %d gateway requests, %d of them CARs, for %d files; want one CAR and no value read alone", n, cars(), len(files))
	}
	exported(out)
	srv.ClearFaults()

	fresh := kubotest.New(t)
	fk := []string{"--kubo-rpc", fresh.RPCURL(), "--kubo-gateway", fresh.GatewayURL()}
	if got := ok(t, "", nil, append(fk, "car", "import", car)...).lastLine(); got != root {
		t.Errorf("car import onto Kubo printed %s, want %s", got, root)
	}
	if n, a := fresh.Requests("/api/v0/dag/import"), fresh.Requests("/api/v0/add"); n != 2 || a != 0 {
		t.Errorf("car import onto Kubo: %d dag/import, %d add; want 2, 0", n, a)
	}
	if fresh.Pinned(id) != "recursive" {
		t.Error("car import onto Kubo did not pin the root")
	}
}
