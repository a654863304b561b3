package hamt_test

import (
	"context"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/hamt-go/hamt"
	"github.com/hamt-go/hamt/internal/kubotest"
)

// TestDaemonGatewaysOfARemoteDaemonAreItsOwn is a regression test: the gateway addresses a daemon
// on another host answers are that host's. DaemonGateways read an unspecified address (0.0.0.0)
// and a loopback one as this machine's loopback, so `hamt --kubo-rpc http://remote:5001 get`
// silently read from whatever listened on this machine's :8080, the very thing issue 14 forbids.
// The "remote" daemon here is the test server under a name only the test's dialer resolves.
func TestDaemonGatewaysOfARemoteDaemonAreItsOwn(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name   string
		config any
		want   []string // nil: an error
	}{
		{"unspecified addresses are the daemon's host", []string{"/ip4/0.0.0.0/tcp/8088", "/ip6/::/tcp/8089"},
			[]string{"http://daemon.test:8088", "http://daemon.test:8089"}},
		{"loopback addresses are left out", []string{"/ip4/127.0.0.1/tcp/8080", "/ip4/0.0.0.0/tcp/8088", "/dns/localhost/tcp/8081"},
			[]string{"http://daemon.test:8088"}},
		{"only the daemon's loopback", "/ip4/127.0.0.1/tcp/8080", nil},
		{"another host it names stays", "/dns4/gw.example/tcp/80", []string{"http://gw.example:80"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := kubotest.New(t, kubotest.WithGatewayConfig(tc.config))
			rpc, _ := url.Parse(srv.RPCURL())
			tr := http.DefaultTransport.(*http.Transport).Clone()
			tr.Proxy = nil
			tr.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
				var d net.Dialer
				if strings.HasPrefix(addr, "daemon.test:") {
					return d.DialContext(ctx, network, rpc.Host)
				}
				return nil, &net.OpError{Op: "dial", Net: network, Err: net.UnknownNetworkError("test: only daemon.test")}
			}
			client := &http.Client{Transport: tr}
			defer tr.CloseIdleConnections()
			k, err := hamt.NewKuboCAS(hamt.WithKuboRPC("http://daemon.test:"+rpc.Port()), hamt.WithKuboHTTPClient(client), hamt.WithKuboRetries(0, 1, 1))
			if err != nil {
				t.Fatal(err)
			}
			defer k.Close()
			got, err := k.DaemonGateways(ctx)
			if tc.want == nil && err == nil || tc.want != nil && (err != nil || !slices.Equal(got, tc.want)) {
				t.Errorf("Addresses.Gateway %v: %q, %v; want %q", tc.config, got, err, tc.want)
			}
		})
	}
	// A daemon on this machine keeps its loopback gateway, whether its RPC API is named by a
	// loopback or by an unspecified address (which dials loopback).
	srv := kubotest.New(t, kubotest.WithGatewayConfig([]string{"/ip4/0.0.0.0/tcp/8088", "/ip4/127.0.0.1/tcp/8089"}))
	for _, rpc := range []string{srv.RPCURL(), strings.Replace(srv.RPCURL(), "127.0.0.1", "0.0.0.0", 1)} {
		k, err := hamt.NewKuboCAS(hamt.WithKuboRPC(rpc))
		if err != nil {
			t.Fatal(err)
		}
		if got, err := k.DaemonGateways(ctx); err != nil || !slices.Equal(got, []string{"http://127.0.0.1:8088", "http://127.0.0.1:8089"}) {
			t.Errorf("a local daemon at %s: %q, %v", rpc, got, err)
		}
		k.Close()
	}
}
