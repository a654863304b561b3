package main

import (
	"net"
	"path/filepath"
	"sync/atomic"
	"testing"

	"github.com/hamt-go/hamt/internal/kubotest"
)

// TestKuboExportGatewayOnlyProbesOnce: an export from a gateway-only setup (the RPC address drops
// every connection) asks the RPC API once whether it reads raw blocks, then reads the gateway's
// CAR; the probe retried a dropped connection five times, seconds of backoff before the export.
func TestKuboExportGatewayOnlyProbesOnce(t *testing.T) {
	srv := kubotest.New(t)
	kubo := []string{"--kubo-rpc", srv.RPCURL(), "--kubo-gateway", srv.GatewayURL()}
	root := ok(t, "", nil, append(kubo, "import", filepath.Join("..", "..", "testdata", "zarr"))...).lastLine()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var dials atomic.Int64
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			dials.Add(1)
			c.Close()
		}
	}()
	out := filepath.Join(t.TempDir(), "out")
	ok(t, "", nil, "--kubo-rpc", "http://"+ln.Addr().String(), "--kubo-gateway", srv.GatewayURL(), "export", root, out)
	if n := dials.Load(); n != 1 {
		t.Errorf("%d connections to the RPC address that drops them; want 1, the probe", n)
	}
}
