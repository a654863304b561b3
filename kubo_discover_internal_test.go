package hamt

import (
	"encoding/json"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"testing"
)

// TestKuboAddrURLReadsTheFormsKuboWrites: the multiaddrs of an api file, --api and
// Addresses.Gateway become the URLs Kubo's own client dials.
func TestKuboAddrURLReadsTheFormsKuboWrites(t *testing.T) {
	for _, tc := range []struct{ addr, url, socket string }{
		{"/ip4/127.0.0.1/tcp/5001", "http://127.0.0.1:5001", ""},
		{" /ip4/127.0.0.1/tcp/5001\n", "http://127.0.0.1:5001", ""},
		{"/ip4/0.0.0.0/tcp/8080", "http://127.0.0.1:8080", ""},
		{"/ip6/::/tcp/8080", "http://[::1]:8080", ""},
		{"/ip6/::1/tcp/5001", "http://[::1]:5001", ""},
		{"/ip4/10.1.2.3/tcp/5001/http", "http://10.1.2.3:5001", ""},
		{"/dns/kubo.example/tcp/443/https", "https://kubo.example:443", ""},
		{"/dns4/kubo.example/tcp/5001/tls/http", "https://kubo.example:5001", ""},
		{"/dns6/kubo.example/tcp/5001", "http://kubo.example:5001", ""},
		{"/unix/run/ipfs/api.sock", "http://unix", "/run/ipfs/api.sock"},
		{"/ip6zone/eth0/ip6/fe80::1/tcp/5001", "http://[fe80::1%25eth0]:5001", ""},
	} {
		u, socket, err := kuboAddrURL(tc.addr)
		if err != nil || u != tc.url || socket != tc.socket {
			t.Errorf("kuboAddrURL(%q) = %q, %q, %v; want %q, %q", tc.addr, u, socket, err, tc.url, tc.socket)
		}
	}
	for _, bad := range []string{"", "http://127.0.0.1:5001", "127.0.0.1:5001", "/ip4/127.0.0.1", "/ip4/127.0.0.1/udp/5001", "/ip4/127.0.0.1/tcp/99999", "/dns/a b/tcp/1", "/dns/u@h/tcp/1"} {
		if u, _, err := kuboAddrURL(bad); err == nil {
			t.Errorf("kuboAddrURL(%q) = %q, want an error", bad, u)
		}
	}
}

// TestGatewayURLsTakesOneAddressOrAList: Addresses.Gateway is a string or a list; Unix sockets
// are left out, and a config with no TCP gateway is an error.
func TestGatewayURLsTakesOneAddressOrAList(t *testing.T) {
	for _, tc := range []struct {
		raw  string
		want []string
	}{
		{`"/ip4/127.0.0.1/tcp/8080"`, []string{"http://127.0.0.1:8080"}},
		{`["/ip4/0.0.0.0/tcp/8080", "/ip6/::/tcp/8081"]`, []string{"http://127.0.0.1:8080", "http://[::1]:8081"}},
		{`["/unix/tmp/gw.sock", "/ip4/127.0.0.1/tcp/8080"]`, []string{"http://127.0.0.1:8080"}},
		{`[]`, nil},
		{`null`, nil},
		{`"/unix/tmp/gw.sock"`, nil},
		{`["/ip4/127.0.0.1/udp/8080"]`, nil},
		{`{"a":1}`, nil},
		{``, nil},
	} {
		got, err := gatewayURLs(json.RawMessage(tc.raw))
		if tc.want == nil {
			if err == nil {
				t.Errorf("gatewayURLs(%s) = %q, want an error", tc.raw, got)
			}
			continue
		}
		if err != nil || len(got) != len(tc.want) {
			t.Errorf("gatewayURLs(%s) = %q, %v; want %q", tc.raw, got, err, tc.want)
			continue
		}
		for i := range got {
			if got[i] != tc.want[i] {
				t.Errorf("gatewayURLs(%s) = %q, want %q", tc.raw, got, tc.want)
			}
		}
	}
}

// FuzzKuboGatewayConfig: a daemon's answer for Addresses.Gateway (or a config file's) never
// panics the reader, and every URL read from it is an http(s) base URL with a host and a port
// that a store takes as a gateway, an unspecified address made loopback.
func FuzzKuboGatewayConfig(f *testing.F) {
	for _, s := range []string{
		`"/ip4/127.0.0.1/tcp/8080"`, `["/ip4/0.0.0.0/tcp/8080","/ip6/::/tcp/8081"]`, `"/unix/tmp/gw.sock"`,
		`["/dns/gw.example/tcp/443/https"]`, `["/dns4/a/tcp/1/tls/http","/ip6zone/x/ip6/fe80::1/tcp/2"]`,
		`[]`, `null`, `7`, `["/ip4/1.2.3.4/udp/1/quic-v1"]`, `"/p2p/QmUNLLsPACCz1vLxQVkXqqLX5R1X345qqfHbsf67hvA3Nn"`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		urls, err := gatewayURLs(json.RawMessage(raw))
		if err != nil {
			return
		}
		if len(urls) == 0 {
			t.Fatalf("%q: no URL and no error", raw)
		}
		for _, u := range urls {
			p, err := url.Parse(u)
			if err != nil || p.Scheme != "http" && p.Scheme != "https" || p.Hostname() == "" || p.Port() == "" || p.Path != "" {
				t.Fatalf("%q gave %q, not a base URL: %v", raw, u, err)
			}
			if ip := net.ParseIP(p.Hostname()); ip != nil && ip.IsUnspecified() {
				t.Fatalf("%q gave %q, an unspecified address", raw, u)
			}
			if _, err := gatewayBase(u); err != nil {
				t.Fatalf("%q gave %q, which a store refuses: %v", raw, u, err)
			}
		}
		// The same answer from a daemon on another host: never this machine's loopback.
		remote, err := gatewayURLsOf(json.RawMessage(raw), "daemon.example")
		if err != nil {
			return
		}
		for _, u := range remote {
			p, err := url.Parse(u)
			if err != nil || remoteHost(u) == "" {
				t.Fatalf("%q from a remote daemon gave %q, on this machine: %v", raw, u, err)
			}
			if _, err := gatewayBase(u); err != nil || p.Port() == "" {
				t.Fatalf("%q from a remote daemon gave %q, which a store refuses: %v", raw, u, err)
			}
		}
	})
}

// FuzzKuboRepoAPI: whatever bytes a repository's api file holds, KuboRepoAPI gives an error or a
// multiaddr, and the address the CLI then dials is an error, a Unix socket, or a base URL a store
// takes — never a panic, a URL with a path, credentials or no host.
func FuzzKuboRepoAPI(f *testing.F) {
	for _, s := range []string{
		"/ip4/127.0.0.1/tcp/5001", "/ip4/127.0.0.1/tcp/5001\n", "/unix/tmp/api.sock", "/ip6/::/tcp/5001",
		"/dns/kubo.example/tcp/443/https", "/ip4/1.2.3.4/udp/1/quic-v1", "", "\x00\xff", "/dns/a b/tcp/1",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		repo := t.TempDir()
		if err := os.WriteFile(filepath.Join(repo, "api"), raw, 0o600); err != nil {
			t.Fatal(err)
		}
		addr, err := KuboRepoAPI(repo)
		if err != nil {
			return
		}
		base, socket, err := kuboAddrURL(addr)
		if err != nil {
			return
		}
		if socket != "" {
			if base != "http://"+unixHost {
				t.Fatalf("%q: socket %q with base %q", raw, socket, base)
			}
			return
		}
		p, err := url.Parse(base)
		if err != nil || p.Scheme != "http" && p.Scheme != "https" || p.Hostname() == "" || p.Port() == "" || p.Path != "" || p.User != nil {
			t.Fatalf("%q gave %q, not a base URL: %v", raw, base, err)
		}
	})
}
