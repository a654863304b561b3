package hamt_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/hamt-go/hamt"
	"github.com/hamt-go/hamt/internal/kubotest"
	"github.com/multiformats/go-multicodec"
)

// kuboMaddr is the multiaddr of an http://127.0.0.1:PORT URL, as a daemon writes it.
func kuboMaddr(t *testing.T, u string) string {
	t.Helper()
	p, err := url.Parse(u)
	if err != nil {
		t.Fatal(err)
	}
	return "/ip4/" + p.Hostname() + "/tcp/" + p.Port()
}

// TestKuboRepoPathIsIPFSPathElseHome: as ipfs, $IPFS_PATH, else ~/.ipfs.
func TestKuboRepoPathIsIPFSPathElseHome(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("IPFS_PATH", dir)
	if got, err := hamt.KuboRepoPath(); err != nil || got != dir {
		t.Errorf("with IPFS_PATH set: %q, %v", got, err)
	}
	t.Setenv("IPFS_PATH", "")
	t.Setenv("HOME", dir)
	t.Setenv("USERPROFILE", dir)
	if got, err := hamt.KuboRepoPath(); err != nil || got != filepath.Join(dir, ".ipfs") {
		t.Errorf("without IPFS_PATH: %q, %v", got, err)
	}
}

// TestKuboRepoAPIReadsTheAPIFile: the multiaddr a running daemon writes, trimmed;
// ErrKuboNotRunning without the file; a file that is not a multiaddr, or over Kubo's 2 KiB, fails.
func TestKuboRepoAPIReadsTheAPIFile(t *testing.T) {
	repo := t.TempDir()
	if _, err := hamt.KuboRepoAPI(repo); !errors.Is(err, hamt.ErrKuboNotRunning) {
		t.Errorf("no api file: %v, want ErrKuboNotRunning", err)
	}
	api := filepath.Join(repo, "api")
	write := func(s string) {
		if err := os.WriteFile(api, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("/ip4/127.0.0.1/tcp/5001\n")
	if got, err := hamt.KuboRepoAPI(repo); err != nil || got != "/ip4/127.0.0.1/tcp/5001" {
		t.Errorf("api file: %q, %v", got, err)
	}
	for _, bad := range []string{"http://127.0.0.1:5001", "", "/ip4/127.0.0.1/tcp/" + strings.Repeat("1", 2048)} {
		write(bad)
		if got, err := hamt.KuboRepoAPI(repo); err == nil {
			t.Errorf("api file %.40q: %q, want an error", bad, got)
		}
	}
}

// TestKuboRepoGatewaysReadsTheConfig: Addresses.Gateway of the repository's config, one address
// or a list, 0.0.0.0 read as loopback.
func TestKuboRepoGatewaysReadsTheConfig(t *testing.T) {
	repo := t.TempDir()
	if _, err := hamt.KuboRepoGateways(repo); err == nil {
		t.Error("no config file: no error")
	}
	for _, tc := range []struct {
		config string
		want   []string
	}{
		{`{"Identity":{"PeerID":"x"},"Addresses":{"API":"/ip4/127.0.0.1/tcp/5001","Gateway":"/ip4/127.0.0.1/tcp/8080"}}`, []string{"http://127.0.0.1:8080"}},
		{`{"Addresses":{"Gateway":["/ip4/0.0.0.0/tcp/8081","/unix/run/gw.sock"]}}`, []string{"http://127.0.0.1:8081"}},
		{`{"Addresses":{"Gateway":[]}}`, nil},
		{`{"Addresses":{}}`, nil},
		{`not json`, nil},
	} {
		if err := os.WriteFile(filepath.Join(repo, "config"), []byte(tc.config), 0o600); err != nil {
			t.Fatal(err)
		}
		got, err := hamt.KuboRepoGateways(repo)
		if tc.want == nil && err == nil || tc.want != nil && (err != nil || !slices.Equal(got, tc.want)) {
			t.Errorf("config %s: %q, %v; want %q", tc.config, got, err, tc.want)
		}
	}
}

// TestDaemonGatewaysAsksTheDaemon: a store that knows only the RPC API finds the gateway the
// daemon's config names.
func TestDaemonGatewaysAsksTheDaemon(t *testing.T) {
	ctx := context.Background()
	srv := kubotest.New(t)
	k, err := hamt.NewKuboCAS(hamt.WithKuboRPC(srv.RPCURL()))
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()
	if got, err := k.DaemonGateways(ctx); err != nil || !slices.Equal(got, []string{srv.GatewayURL()}) {
		t.Errorf("DaemonGateways = %q, %v; want [%s]", got, err, srv.GatewayURL())
	}
	for _, tc := range []struct {
		config any
		want   []string
	}{
		{[]string{"/ip4/0.0.0.0/tcp/8088", "/ip6/::1/tcp/8089"}, []string{"http://127.0.0.1:8088", "http://[::1]:8089"}},
		{[]string{}, nil},
		{nil, nil}, // a config without the key: Kubo answers 500
	} {
		srv := kubotest.New(t, kubotest.WithGatewayConfig(tc.config))
		k, err := hamt.NewKuboCAS(hamt.WithKuboRPC(srv.RPCURL()), hamt.WithKuboRetries(0, 1, 1))
		if err != nil {
			t.Fatal(err)
		}
		got, err := k.DaemonGateways(ctx)
		if tc.want == nil && err == nil || tc.want != nil && (err != nil || !slices.Equal(got, tc.want)) {
			t.Errorf("Addresses.Gateway %v: %q, %v; want %q", tc.config, got, err, tc.want)
		}
		k.Close()
	}
}

// TestWithKuboAPIWritesThroughTheMultiaddr: a store set up by the daemon's multiaddr (an
// unspecified address dialled as loopback, as Kubo's client does) adds and pins there.
func TestWithKuboAPIWritesThroughTheMultiaddr(t *testing.T) {
	ctx := context.Background()
	srv := kubotest.New(t)
	port := strings.TrimPrefix(kuboMaddr(t, srv.RPCURL()), "/ip4/127.0.0.1")
	for _, addr := range []string{kuboMaddr(t, srv.RPCURL()), "/ip4/0.0.0.0" + port, "/ip4/127.0.0.1" + port + "/http"} {
		k, err := hamt.NewKuboCAS(hamt.WithKuboAPI(addr), hamt.WithKuboGateway(srv.GatewayURL()))
		if err != nil {
			t.Fatal(err)
		}
		id, err := k.Save(ctx, []byte("through "+addr), multicodec.Raw)
		if err == nil {
			err = k.Pin(ctx, id)
		}
		if err != nil || srv.Pinned(id) != "recursive" {
			t.Errorf("--api %s: %v, pinned %q", addr, err, srv.Pinned(id))
		}
		k.Close()
	}
	if _, err := hamt.NewKuboCAS(hamt.WithKuboAPI("http://127.0.0.1:5001")); err == nil {
		t.Error("a URL was taken for a multiaddr")
	}
}

// TestWithKuboAPIOnAUnixSocket: an API on /unix/PATH is dialled on the socket (here a reverse
// proxy to the test daemon's RPC); the gateway is still reached over TCP.
func TestWithKuboAPIOnAUnixSocket(t *testing.T) {
	ctx := context.Background()
	srv := kubotest.New(t)
	dir, err := os.MkdirTemp("", "kubo") // short: a socket path has at most about 100 bytes
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "api.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Skipf("no Unix sockets here: %v", err)
	}
	target, _ := url.Parse(srv.RPCURL())
	hs := &http.Server{Handler: httputil.NewSingleHostReverseProxy(target)}
	go hs.Serve(ln)
	t.Cleanup(func() { hs.Close() })

	k, err := hamt.NewKuboCAS(hamt.WithKuboAPI("/unix"+filepath.ToSlash(sock)), hamt.WithKuboGateway(srv.GatewayURL()))
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()
	id, err := k.Save(ctx, []byte("over a unix socket"), multicodec.Raw)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := k.Load(ctx, id); err != nil || string(got) != "over a unix socket" {
		t.Errorf("load through the gateway: %q, %v", got, err)
	}
	if gws, err := k.DaemonGateways(ctx); err != nil || !slices.Equal(gws, []string{srv.GatewayURL()}) {
		t.Errorf("DaemonGateways over the socket: %q, %v", gws, err)
	}
	if _, err := hamt.NewKuboCAS(hamt.WithKuboAPI("/unix"+sock), hamt.WithKuboHTTPClient(http.DefaultClient)); err == nil {
		t.Error("a Unix socket API with the caller's client was accepted")
	}
}

// TestKuboRealDaemonFoundThroughIPFSPath checks discovery and pins against a real daemon: its
// api file and config name the RPC API and gateway given, the daemon answers the same, and a
// root's pin moves with PinUpdate.
func TestKuboRealDaemonFoundThroughIPFSPath(t *testing.T) {
	rpc, gw, repo := os.Getenv("HAMT_KUBO_RPC"), os.Getenv("HAMT_KUBO_GATEWAY"), os.Getenv("IPFS_PATH")
	if rpc == "" || gw == "" || repo == "" {
		t.Skip("no real daemon: run with HAMT_KUBO_RPC, HAMT_KUBO_GATEWAY and the daemon's IPFS_PATH (start.sh's state file has it)")
	}
	ctx := context.Background()
	api, err := hamt.KuboRepoAPI(repo)
	if err != nil || api != kuboMaddr(t, rpc) {
		t.Fatalf("api file: %q, %v; want %s", api, err, kuboMaddr(t, rpc))
	}
	if gws, err := hamt.KuboRepoGateways(repo); err != nil || !slices.Equal(gws, []string{gw}) {
		t.Errorf("config gateways: %q, %v; want [%s]", gws, err, gw)
	}
	k, err := hamt.NewKuboCAS(hamt.WithKuboAPI(api), hamt.WithKuboGateway(gw))
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()
	if gws, err := k.DaemonGateways(ctx); err != nil || !slices.Equal(gws, []string{gw}) {
		t.Errorf("daemon's gateways: %q, %v; want [%s]", gws, err, gw)
	}
	a, err := k.Save(ctx, []byte("real pin a"), multicodec.Raw)
	if err != nil {
		t.Fatal(err)
	}
	b, err := k.Save(ctx, []byte("real pin b"), multicodec.Raw)
	if err != nil {
		t.Fatal(err)
	}
	if err := k.Pin(ctx, a); err != nil {
		t.Fatal(err)
	}
	if err := k.PinUpdate(ctx, a, b); err != nil {
		t.Fatal(err)
	}
	pins, err := k.ListPins(ctx)
	if err != nil || slices.Contains(pins, a) || !slices.Contains(pins, b) {
		t.Errorf("pins after moving a's to b: %v, %v", pins, err)
	}
	var ke *hamt.KuboError
	if err := k.PinUpdate(ctx, a, b); !errors.As(err, &ke) {
		t.Errorf("pin update from an unpinned root: %v, want a KuboError (the CLI then pins)", err)
	}
	if err := k.Unpin(ctx, b); err != nil {
		t.Error(err)
	}
}
