package kubotest_test

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/hamt-go/hamt/internal/kubotest"
)

// TestConfigAnswersTheNodesAddresses: config Addresses.API and Addresses.Gateway name the two
// servers as multiaddrs, WithGatewayConfig replaces the gateway's, and a key the config lacks is
// Kubo's 500.
func TestConfigAnswersTheNodesAddresses(t *testing.T) {
	s := kubotest.New(t)
	get := func(s *kubotest.Server, key string) (int, map[string]any) {
		t.Helper()
		resp, err := http.Post(s.RPCURL()+"/api/v0/config?arg="+key, "", nil)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		var v map[string]any
		if err := json.Unmarshal(b, &v); err != nil {
			t.Fatalf("config %s: %q", key, b)
		}
		return resp.StatusCode, v
	}
	maddr := func(u string) string {
		host, port, _ := strings.Cut(strings.TrimPrefix(u, "http://"), ":")
		return "/ip4/" + host + "/tcp/" + port
	}
	if code, v := get(s, "Addresses.API"); code != 200 || v["Key"] != "Addresses.API" || v["Value"] != maddr(s.RPCURL()) {
		t.Errorf("Addresses.API: %d %v, want %s", code, v, maddr(s.RPCURL()))
	}
	if code, v := get(s, "Addresses.Gateway"); code != 200 || v["Value"] != maddr(s.GatewayURL()) {
		t.Errorf("Addresses.Gateway: %d %v, want %s", code, v, maddr(s.GatewayURL()))
	}
	if code, v := get(s, "Addresses.Nope"); code != 500 || v["Message"] != `failed to get config value: "Addresses.Nope not found"` {
		t.Errorf("a missing key: %d %v", code, v)
	}
	list := kubotest.New(t, kubotest.WithGatewayConfig([]string{"/ip4/0.0.0.0/tcp/8080", "/unix/gw.sock"}))
	if code, v := get(list, "Addresses.Gateway"); code != 200 || len(v["Value"].([]any)) != 2 {
		t.Errorf("WithGatewayConfig: %d %v", code, v)
	}
}
