package main

import (
	"path/filepath"
	"testing"

	"github.com/hamt-go/hamt/internal/kubotest"
)

// TestKuboSeveralGateways: --kubo-gateway given twice; with the first gateway down, reads go to
// the second one, and a gateway that lacks the dataset is passed over too.
func TestKuboSeveralGateways(t *testing.T) {
	srv := kubotest.New(t)
	down := kubotest.New(t, kubotest.WithBlockstore(srv.Blockstore()))
	empty := kubotest.New(t) // its own blockstore: 404 for every block
	data := filepath.Join("..", "..", "testdata", "zarr")
	root := ok(t, "", nil, "--kubo-rpc", srv.RPCURL(), "--kubo-gateway", srv.GatewayURL(), "import", data).lastLine()
	down.Stop()
	files := zarrFiles(t)
	kubo := []string{"--kubo-rpc", srv.RPCURL(), "--kubo-gateway", down.GatewayURL(), "--kubo-gateway", empty.GatewayURL(), "--kubo-gateway", srv.GatewayURL()}
	if got := ok(t, "", nil, append(kubo, "get", root, "surface/zarr.json")...).stdout; got != string(files["surface/zarr.json"]) {
		t.Errorf("get through the third gateway: %q", got)
	}
	if empty.Total(kubotest.Gateway) == 0 || srv.Total(kubotest.Gateway) == 0 {
		t.Errorf("requests: %d to the empty gateway, %d to the good one", empty.Total(kubotest.Gateway), srv.Total(kubotest.Gateway))
	}
	if r := hamtRun(t, "", nil, "--kubo-gateway", "ftp://x", "get", root, "k"); r.code == 0 {
		t.Error("a bad gateway URL was accepted")
	}
}
