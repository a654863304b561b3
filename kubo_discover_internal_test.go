package hamt

import (
	"encoding/json"
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
	} {
		u, socket, err := kuboAddrURL(tc.addr)
		if err != nil || u != tc.url || socket != tc.socket {
			t.Errorf("kuboAddrURL(%q) = %q, %q, %v; want %q, %q", tc.addr, u, socket, err, tc.url, tc.socket)
		}
	}
	for _, bad := range []string{"", "http://127.0.0.1:5001", "127.0.0.1:5001", "/ip4/127.0.0.1", "/ip4/127.0.0.1/udp/5001", "/ip4/127.0.0.1/tcp/99999"} {
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
