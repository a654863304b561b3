package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hamt-go/hamt/internal/kubotest"
)

// TestKuboExportShardedInOneStream: a sharded dataset on a Kubo whose RPC API serves dag/stat is
// exported from one CAR stream, as without dag/stat: only a HAMT dataset's values are read by cat,
// and the sharded one read each chunk with a gateway request of its own (64 for 25 files).
func TestKuboExportShardedInOneStream(t *testing.T) {
	srv := kubotest.New(t)
	kubo := []string{"--kubo-rpc", srv.RPCURL(), "--kubo-gateway", srv.GatewayURL()}
	root := ok(t, "", nil, append(kubo, "import", "--layout", "sharded", groupedZarr(t))...).lastLine()
	srv.ResetCounters()
	out := filepath.Join(t.TempDir(), "out")
	ok(t, "", nil, append(kubo, "export", root, out)...)
	cars := 0
	for _, r := range srv.Log() {
		if strings.Contains(r.RawQuery, "format=car") {
			cars++
		}
	}
	files := zarrFiles(t)
	if n := srv.Total(kubotest.Gateway); cars != 1 || n >= len(files) {
		t.Errorf("export of a sharded dataset: %d gateway requests, %d of them CARs, for %d files; want one CAR", n, cars, len(files))
	}
	for name, want := range files {
		if got, err := os.ReadFile(filepath.Join(out, "0", filepath.FromSlash(name))); err != nil || !bytes.Equal(got, want) {
			t.Errorf("exported %s: %v", name, err)
		}
	}
}
