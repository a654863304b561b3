package main

import (
	"bytes"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/hamt-go/hamt/internal/kubotest"
)

// autoGroup is the group document the sharded layout adds for a parent without one (py-hamt's
// bytes: Python's default JSON spacing).
const autoGroup = `{"zarr_format": 3, "node_type": "group", "attributes": {}}`

// TestShardedWorkflow runs a dataset's life through the binary in the sharded layout: import,
// stats, ls, get, set, rm, diff, convert both ways, export, serve, car export and import.
func TestShardedWorkflow(t *testing.T) {
	dir := t.TempDir()
	store := filepath.Join(dir, "store.bolt")
	files := zarrFiles(t)
	want := map[string][]byte{"zarr.json": []byte(autoGroup)}
	for k, v := range files {
		want["0/"+k] = v
	}
	keys := slices.Sorted(func(y func(string) bool) {
		for k := range want {
			if !y(k) {
				return
			}
		}
	})

	imp := ok(t, store, nil, "import", "--layout", "sharded", "--chunks-per-shard", "3", "--stats", groupedZarr(t))
	root := imp.lastLine()
	if !cidLine.MatchString(root) {
		t.Fatalf("import printed %q last", root)
	}
	for _, line := range []string{
		"layout        sharded v2",
		"arrays        5",
		`"0/surface/temp" shape [6 10], chunks [3 5], 3 chunks per shard, shards 2 (2 non-null), chunks 4 of 4`,
		`"0/sparse"`,
	} {
		if !strings.Contains(imp.stdout, line) {
			t.Errorf("import --stats lacks %q:\n%s", line, imp.stdout)
		}
	}
	if stats := ok(t, store, nil, "stats", root).stdout; stats+root+"\n" != imp.stdout {
		t.Errorf("stats:\n%s\nimport --stats:\n%s", stats, imp.stdout)
	}
	if got := strings.Fields(ok(t, store, nil, "ls", root).stdout); !slices.Equal(got, keys) {
		t.Errorf("ls: %q, want %q", got, keys)
	}
	for k, v := range want {
		if got := ok(t, store, nil, "get", root, k).stdout; got != string(v) {
			t.Errorf("get %s: %d bytes, want %d", k, len(got), len(v))
		}
	}

	root2 := ok(t, store, []byte("new chunk"), "set", root, "0/sparse/c/1/0", "-").lastLine()
	root3 := ok(t, store, nil, "rm", root2, "0/mask/c/0/0").lastLine()
	if got := ok(t, store, nil, "get", root3, "0/sparse/c/1/0").stdout; got != "new chunk" {
		t.Errorf("get after set: %q", got)
	}
	if r := hamtRun(t, store, nil, "rm", root3, "0/mask/c/0/0"); r.code != 4 || !strings.Contains(r.stderr, `no key "0/mask/c/0/0"`) {
		t.Errorf("rm of a removed key: %d %q", r.code, r.stderr)
	}
	if r := hamtRun(t, store, []byte("x"), "set", root, "0/nope/c/0", "-"); r.code != 1 || !strings.Contains(r.stderr, "0/nope") {
		t.Errorf("set of a chunk of no array: %d %q", r.code, r.stderr)
	}
	if got, want := ok(t, store, nil, "diff", root, root3).stdout, "- 0/mask/c/0/0\n+ 0/sparse/c/1/0\n"; got != want {
		t.Errorf("diff:\n%s\nwant:\n%s", got, want)
	}

	h := ok(t, store, nil, "convert", root, "--to", "hamt").lastLine()
	if got := ok(t, store, nil, "diff", root, h).stdout; got != "" {
		t.Errorf("diff of a sharded root and its HAMT conversion: %q", got)
	}
	if stats := ok(t, store, nil, "stats", h).stdout; !strings.Contains(stats, "keys          26") {
		t.Errorf("stats of the HAMT conversion:\n%s", stats)
	}
	if back := ok(t, store, nil, "convert", h, "--to", "sharded", "--chunks-per-shard", "3").lastLine(); back != root {
		t.Errorf("sharded -> hamt -> sharded: %s, want %s", back, root)
	}
	if other := ok(t, store, nil, "convert", root, "--to", "sharded", "--chunks-per-shard", "2").lastLine(); other == root {
		t.Error("re-sharded with 2 chunks per shard: the same root as with 3")
	}

	out := filepath.Join(dir, "exported")
	ok(t, store, nil, "export", root, out)
	for k, v := range want {
		if got, err := os.ReadFile(filepath.Join(out, filepath.FromSlash(k))); err != nil || !bytes.Equal(got, v) {
			t.Errorf("exported %s: %v", k, err)
		}
	}

	s := startServe(t, store, root)
	resp, err := http.Get("http://" + s.addr + "/0/surface/temp/zarr.json")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !bytes.Equal(body, want["0/surface/temp/zarr.json"]) {
		t.Errorf("serve: %d %q", resp.StatusCode, body)
	}
	if code, _, _ := s.stop(t, syscall.SIGINT); code != 0 {
		t.Errorf("serve exited %d", code)
	}

	car := filepath.Join(dir, "ds.car")
	ok(t, store, nil, "car", "export", root3, car)
	fresh := filepath.Join(dir, "fresh.bolt")
	if got := ok(t, fresh, nil, "car", "import", car).lastLine(); got != root3 {
		t.Errorf("car import printed %s, want %s", got, root3)
	}
	if got := ok(t, fresh, nil, "ls", root3).stdout; got != ok(t, store, nil, "ls", root3).stdout {
		t.Error("the fresh store lists other keys")
	}
	if got := ok(t, fresh, nil, "get", root3, "0/sparse/c/1/0").stdout; got != "new chunk" {
		t.Errorf("get from the fresh store: %q", got)
	}
}

// TestShardedOnKubo: the sharded layout gives the same root on IPFS through Kubo as on bbolt.
func TestShardedOnKubo(t *testing.T) {
	srv := kubotest.New(t)
	data := groupedZarr(t)
	kubo := []string{"--kubo-rpc", srv.RPCURL(), "--kubo-gateway", srv.GatewayURL()}
	root := ok(t, "", nil, append(kubo, "import", "--layout", "sharded", data)...).lastLine()
	if want := ok(t, filepath.Join(t.TempDir(), "s.bolt"), nil, "import", "--layout", "sharded", data).lastLine(); root != want {
		t.Errorf("root on Kubo %s, on bbolt %s", root, want)
	}
	files := zarrFiles(t)
	if got := ok(t, "", nil, append(kubo, "get", root, "0/counts/c/1")...).stdout; got != string(files["counts/c/1"]) {
		t.Errorf("get over Kubo: %q", got)
	}
}

// TestShardedV1Root: a py-hamt sharded_zarr_v1 root (the c_sharded_v1 vector, imported from its
// CAR) is described by stats, listed, and migrated to v2 by convert --to sharded as py-hamt does.
func TestShardedV1Root(t *testing.T) {
	store := filepath.Join(t.TempDir(), "store.bolt")
	const c2, c4 = "bafyr4icphmg2xa6p6e6ltqthe2j36oy2t544345bhjwbdgzkhmreyeumxq", "bafyr4ia7rfrrdedla7jhojhthbnefycntoscqubj7gapqsrfr5t5ls5a5i"
	ok(t, store, nil, "car", "import", filepath.Join("..", "..", "testdata", "pyhamt35", "c_sharded_v1_8f8f13cd.car"))
	stats := ok(t, store, nil, "stats", c2).stdout
	for _, want := range []string{"layout        sharded v1", `"temp" shape [4 6], chunks [2 2], 4 chunks per shard, shards 2 (2 non-null), chunks 6 of 6`} {
		if !strings.Contains(stats, want) {
			t.Errorf("stats lacks %q:\n%s", want, stats)
		}
	}
	if ls := ok(t, store, nil, "ls", c2, "precip/").stdout; ls != "precip/c/0/0\nprecip/zarr.json\n" {
		t.Errorf("ls precip/: %q", ls)
	}
	if got := ok(t, store, nil, "convert", c2, "--to", "sharded").lastLine(); got != c4 {
		t.Errorf("convert --to sharded of a v1 root: %s, want py-hamt's migration %s", got, c4)
	}
}

// TestSetOfAChunkTheShardedLayoutDropsFails: the sharded layout ignores a chunk outside its
// array's grid (py-hamt does too); set must say so and fail, not print the unchanged root.
func TestSetOfAChunkTheShardedLayoutDropsFails(t *testing.T) {
	store := filepath.Join(t.TempDir(), "store.bolt")
	root := ok(t, store, nil, "import", "--layout", "sharded", groupedZarr(t)).lastLine()
	r := hamtRun(t, store, []byte("x"), "set", root, "0/counts/c/99", "-")
	if r.code != 1 || !strings.Contains(r.stderr, "did not store") {
		t.Fatalf("set of a chunk outside the grid: exit %d, stdout %q, stderr %q; want exit 1 saying it was not stored", r.code, r.stdout, r.stderr)
	}
	if got := ok(t, store, []byte("y"), "set", root, "0/counts/c/1", "-").lastLine(); got == root || !cidLine.MatchString(got) {
		t.Fatalf("set of a chunk in the grid: %q, want a new root", got)
	}
}
