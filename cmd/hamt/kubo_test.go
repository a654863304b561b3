package main

import (
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/hamt-go/hamt/internal/kubotest"
	"github.com/ipfs/go-cid"
)

// maddrOf is the multiaddr of an http://127.0.0.1:PORT URL, as a daemon writes it.
func maddrOf(t *testing.T, u string) string {
	t.Helper()
	p, err := url.Parse(u)
	if err != nil {
		t.Fatal(err)
	}
	return "/ip4/" + p.Hostname() + "/tcp/" + p.Port()
}

// pins is what `hamt pin ls` prints, as a sorted list.
func pins(t *testing.T, kubo []string) []string {
	t.Helper()
	out := strings.Fields(ok(t, "", nil, append(kubo, "pin", "ls")...).stdout)
	slices.Sort(out)
	return out
}

// TestKuboRootsArePinnedAndPinsMove: an import through Kubo adds its blocks unpinned and pins the
// root once; set and rm move that pin to their new root with one pin/update; --pin=false leaves
// pins alone; convert of an unpinned root pins the new one; pin add/rm/ls manage the rest.
func TestKuboRootsArePinnedAndPinsMove(t *testing.T) {
	srv := kubotest.New(t)
	kubo := []string{"--kubo-rpc", srv.RPCURL(), "--kubo-gateway", srv.GatewayURL()}
	data := filepath.Join("..", "..", "testdata", "zarr")
	root := ok(t, "", nil, append(kubo, "import", data)...).lastLine()
	if got := pins(t, kubo); !slices.Equal(got, []string{root}) {
		t.Fatalf("pins after import: %q, want only the root %s", got, root)
	}
	if n := srv.Requests("/api/v0/pin/add"); n != 1 {
		t.Errorf("%d pin/add requests for one import, want 1", n)
	}

	srv.ResetCounters()
	set := ok(t, "", []byte("new"), append(kubo, "set", root, "extra", "-")...).lastLine()
	if got := pins(t, kubo); !slices.Equal(got, []string{set}) {
		t.Errorf("pins after set: %q, want only the new root %s", got, set)
	}
	if srv.Requests("/api/v0/pin/update") != 1 || srv.Requests("/api/v0/pin/add") != 0 {
		t.Errorf("set: %d pin/update, %d pin/add; want one update", srv.Requests("/api/v0/pin/update"), srv.Requests("/api/v0/pin/add"))
	}
	rm := ok(t, "", nil, append(kubo, "rm", set, "extra")...).lastLine()
	if rm != root {
		t.Errorf("rm of the key set gave %s, want the import's root %s", rm, root)
	}
	if got := pins(t, kubo); !slices.Equal(got, []string{root}) {
		t.Errorf("pins after rm: %q, want only %s", got, root)
	}

	unpinned := ok(t, "", []byte("other"), append(kubo, "--pin=false", "set", root, "extra", "-")...).lastLine()
	if got := pins(t, kubo); !slices.Equal(got, []string{root}) {
		t.Errorf("pins after set --pin=false: %q, want still only %s", got, root)
	}
	conv := ok(t, "", nil, append(kubo, "convert", unpinned, "--to", "hamt", "--bucket-size", "3")...).lastLine()
	if got, want := pins(t, kubo), sorted(root, conv); !slices.Equal(got, want) {
		t.Errorf("pins after convert of an unpinned root: %q, want %q", got, want)
	}

	ok(t, "", nil, append(kubo, "pin", "rm", conv)...)
	ok(t, "", nil, append(kubo, "pin", "add", unpinned)...)
	if got, want := pins(t, kubo), sorted(root, unpinned); !slices.Equal(got, want) {
		t.Errorf("pins after pin rm and pin add: %q, want %q", got, want)
	}
	id, _ := cid.Decode(unpinned)
	if srv.Pinned(id) != "recursive" {
		t.Errorf("pin add: %s is pinned %q", unpinned, srv.Pinned(id))
	}
	if r := hamtRun(t, filepath.Join(t.TempDir(), "s.bolt"), nil, "pin", "ls"); r.code != exitUsage || !strings.Contains(r.stderr, "--kubo") {
		t.Errorf("pin ls on a bbolt store: exit %d, %s", r.code, r.stderr)
	}
}

func sorted(s ...string) []string { slices.Sort(s); return s }

// TestKuboRPCAloneAsksTheDaemonForItsGateway: with --kubo-rpc and no --kubo-gateway, reads go to
// the gateway the daemon's config names (it used to be 127.0.0.1:8080, whatever the daemon);
// a daemon whose config names no gateway is a usage error asking for --kubo-gateway.
func TestKuboRPCAloneAsksTheDaemonForItsGateway(t *testing.T) {
	srv := kubotest.New(t)
	data := filepath.Join("..", "..", "testdata", "zarr")
	root := ok(t, "", nil, "--kubo-rpc", srv.RPCURL(), "import", data).lastLine()
	files := zarrFiles(t)
	if got := ok(t, "", nil, "--kubo-rpc", srv.RPCURL(), "get", root, "zarr.json").stdout; got != string(files["zarr.json"]) {
		t.Errorf("get through the daemon's gateway: %q", got)
	}
	if srv.Requests("/api/v0/config") == 0 || srv.Requests("/ipfs/") == 0 {
		t.Errorf("%d config requests, %d gateway reads", srv.Requests("/api/v0/config"), srv.Requests("/ipfs/"))
	}
	none := kubotest.New(t, kubotest.WithBlockstore(srv.Blockstore()), kubotest.WithGatewayConfig([]string{}))
	r := hamtRun(t, "", nil, "--kubo-rpc", none.RPCURL(), "get", root, "zarr.json")
	if r.code != exitUsage || !strings.Contains(r.stderr, "--kubo-gateway") {
		t.Errorf("a daemon without a gateway: exit %d, %s", r.code, r.stderr)
	}
}

// TestKuboFoundThroughIPFSPath: --kubo finds the daemon as ipfs does, from the api file in
// $IPFS_PATH and the gateway in its config (not asking the daemon, whose answer here is useless);
// --api takes the multiaddr itself; no api file is a clear failure.
func TestKuboFoundThroughIPFSPath(t *testing.T) {
	srv := kubotest.New(t, kubotest.WithGatewayConfig([]string{}))
	repo := t.TempDir()
	t.Setenv("IPFS_PATH", repo)
	data := filepath.Join("..", "..", "testdata", "zarr")
	if r := hamtRun(t, "", nil, "--kubo", "import", data); r.code != exitFailure || !strings.Contains(r.stderr, "no Kubo daemon found") {
		t.Errorf("no api file: exit %d, %s", r.code, r.stderr)
	}
	write := func(name, s string) {
		if err := os.WriteFile(filepath.Join(repo, name), []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("api", maddrOf(t, srv.RPCURL())+"\n")
	gw := strings.Replace(maddrOf(t, srv.GatewayURL()), "127.0.0.1", "0.0.0.0", 1)
	write("config", `{"Addresses":{"API":"/ip4/127.0.0.1/tcp/5001","Gateway":["`+gw+`"]},"Identity":{"PeerID":"x"}}`)

	root := ok(t, "", nil, "--kubo", "import", data).lastLine()
	files := zarrFiles(t)
	if got := ok(t, "", nil, "--kubo", "get", root, "zarr.json").stdout; got != string(files["zarr.json"]) {
		t.Errorf("get with --kubo: %q", got)
	}
	if got := pins(t, []string{"--kubo"}); !slices.Equal(got, []string{root}) {
		t.Errorf("pins: %q", got)
	}
	if n := srv.Requests("/api/v0/config"); n != 0 {
		t.Errorf("%d config requests: the repository's config names the gateway", n)
	}
	api := []string{"--api", maddrOf(t, srv.RPCURL()), "--kubo-gateway", srv.GatewayURL()}
	if got := ok(t, "", nil, append(api, "get", root, "zarr.json")...).stdout; got != string(files["zarr.json"]) {
		t.Errorf("get with --api: %q", got)
	}
	for _, bad := range [][]string{
		{"--api", "http://127.0.0.1:5001", "ls", root},
		{"--api", maddrOf(t, srv.RPCURL()), "--kubo-rpc", srv.RPCURL(), "ls", root},
		{"--store", "x.bolt", "--kubo", "ls", root},
	} {
		if r := hamtRun(t, "", nil, bad...); r.code == 0 {
			t.Errorf("hamt %q succeeded", bad)
		}
	}
}

// TestKuboBulkPathsPinOnlyWhenAsked: import and car import through Kubo stream their blocks to
// dag/import and pin what they print, unless --pin=false: then nothing is pinned.
func TestKuboBulkPathsPinOnlyWhenAsked(t *testing.T) {
	srv := kubotest.New(t)
	kubo := []string{"--kubo-rpc", srv.RPCURL(), "--kubo-gateway", srv.GatewayURL()}
	data := filepath.Join("..", "..", "testdata", "zarr")
	root := ok(t, "", nil, append(kubo, "--pin=false", "import", data)...).lastLine()
	if got := pins(t, kubo); len(got) != 0 {
		t.Fatalf("pins after import --pin=false: %q, want none", got)
	}
	if n := srv.Requests("/api/v0/dag/import"); n == 0 {
		t.Errorf("import made no dag/import request")
	}
	car := filepath.Join(t.TempDir(), "ds.car")
	ok(t, "", nil, append(kubo, "car", "export", root, car)...)

	other := kubotest.New(t)
	okubo := []string{"--kubo-rpc", other.RPCURL(), "--kubo-gateway", other.GatewayURL()}
	ok(t, "", nil, append(okubo, "--pin=false", "car", "import", car)...)
	if got := pins(t, okubo); len(got) != 0 {
		t.Errorf("pins after car import --pin=false: %q, want none", got)
	}
	ok(t, "", nil, append(okubo, "car", "import", car)...)
	if got := pins(t, okubo); !slices.Equal(got, []string{root}) {
		t.Errorf("pins after car import: %q, want only %s", got, root)
	}
}
