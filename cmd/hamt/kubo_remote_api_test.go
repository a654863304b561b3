package main

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/hamt-go/hamt/internal/kubotest"
)

// TestKuboAPIFileOfAnotherHostIsNotReadWithTheLocalConfig is a regression test: with an api file
// naming a daemon on another host (as ipfs allows, to drive a remote node), --kubo took the
// gateway from the local repository's config, which is this machine's node's, and read from it.
// The daemon is asked instead (here under a context already ended, so nothing leaves the
// machine: the old code did not ask, and succeeded); an api file on loopback still reads the
// config without a request.
func TestKuboAPIFileOfAnotherHostIsNotReadWithTheLocalConfig(t *testing.T) {
	srv := kubotest.New(t)
	repo := t.TempDir()
	t.Setenv("IPFS_PATH", repo)
	write := func(name, s string) {
		if err := os.WriteFile(filepath.Join(repo, name), []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("config", `{"Addresses":{"Gateway":"`+maddrOf(t, srv.GatewayURL())+`"}}`)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	for _, c := range []struct {
		api   string
		local bool
	}{
		{"/dns4/daemon.example/tcp/5001", false},
		{"/ip4/192.0.2.7/tcp/5001", false},
		{maddrOf(t, srv.RPCURL()), true},
		{"/dns/localhost/tcp/5001", true},
		{"/unix/" + filepath.Join(repo, "api.sock"), true},
	} {
		write("api", c.api)
		a := newApp(nil, io.Discard, io.Discard)
		a.kubo = true
		_, err := a.kuboOptions(ctx, true)
		if c.local && err != nil {
			t.Errorf("api %s: %v; want the config's gateway", c.api, err)
		}
		if !c.local && err == nil {
			t.Errorf("api %s: the local config's gateway was taken for the remote daemon's", c.api)
		}
	}
	if n := srv.Total(kubotest.RPC) + srv.Total(kubotest.Gateway); n != 0 {
		t.Errorf("%d requests", n)
	}
}
