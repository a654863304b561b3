package hamt_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"testing"

	"github.com/hamt-go/hamt"
	"github.com/hamt-go/hamt/internal/kubotest"
	"github.com/ipfs/go-cid"
)

// catDataset writes kuboDataset plus n small raw values to a kubotest daemon and opens it over a
// KuboCAS.
func catDataset(t *testing.T, n int) (*kubotest.Server, cid.Cid, map[string][]byte, hamt.ZarrDataset) {
	t.Helper()
	srv := kubotest.New(t)
	values := bulkValues()
	values["three MB"] = patterned(3_000_000) // a UnixFS file: read the usual way
	for i := range n {
		values[fmt.Sprintf("more/c/%d", i)] = patterned(50 + i)
	}
	root := writeMap(t, newKubo(t, srv), values)
	z, err := hamt.OpenZarr(context.Background(), newKubo(t, srv), root)
	if err != nil {
		t.Fatal(err)
	}
	return srv, root, values, z
}

// checkExported fails unless dir holds exactly values.
func checkExported(t *testing.T, dir string, values map[string][]byte) {
	t.Helper()
	for key, v := range values {
		b, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(key)))
		if err != nil || string(b) != string(v) {
			t.Fatalf("file %q: %d bytes, %v; want %d bytes", key, len(b), err, len(v))
		}
	}
}

// TestExportDirFromKuboByCat: ExportDir from a KuboCAS reads the raw values in a few cat requests
// (500 blocks each, sizes from as many dag/stat requests) rather than a gateway GET each, and
// writes exactly the dataset, the UnixFS file and the empty value included.
func TestExportDirFromKuboByCat(t *testing.T) {
	srv, _, values, z := catDataset(t, 700)
	srv.ResetCounters()
	dir := filepath.Join(t.TempDir(), "out")
	st, err := hamt.ExportDir(context.Background(), z, dir)
	if err != nil {
		t.Fatal(err)
	}
	if st.Files != len(values) {
		t.Errorf("exported %d files, want %d", st.Files, len(values))
	}
	checkExported(t, dir, values)
	// 900 raw values (the empty one is an identity CID, read from its CID): two batches.
	if c, s := srv.Requests("/api/v0/cat"), srv.Requests("/api/v0/dag/stat"); c != 2 || s != 2 {
		t.Errorf("%d cat and %d dag/stat requests, want 2 and 2", c, s)
	}
	if g := srv.Total(kubotest.Gateway); g > 100 {
		t.Errorf("%d gateway requests: the values were loaded one by one", g)
	}
}

// TestExportDirFromKuboByCatUntrusted: a value the daemon serves with other bytes (ErrCorrupt),
// does not have (ErrMissingBlock), or a cat answer with bytes past the blocks (ErrUnexpectedBlock)
// or cut short fails the export, which leaves no directory and no file behind.
func TestExportDirFromKuboByCatUntrusted(t *testing.T) {
	for _, tc := range []struct {
		name  string
		spoil func(srv *kubotest.Server, victim cid.Cid)
		want  error
	}{
		{"corrupt block", func(srv *kubotest.Server, v cid.Cid) {
			b, _ := srv.Get(v)
			srv.Delete(v) // a blockstore keeps a block it has
			srv.PutRaw(v, append([]byte{b[0] ^ 1}, b[1:]...))
		}, hamt.ErrCorrupt},
		{"missing block", func(srv *kubotest.Server, v cid.Cid) { srv.Delete(v) }, hamt.ErrMissingBlock},
		{"answer flipped", func(srv *kubotest.Server, _ cid.Cid) {
			srv.Inject(kubotest.Fault{Endpoint: kubotest.RPC, Path: "/api/v0/cat", Corrupt: true})
		}, hamt.ErrCorrupt},
		{"answer cut short", func(srv *kubotest.Server, _ cid.Cid) {
			srv.Inject(kubotest.Fault{Endpoint: kubotest.RPC, Path: "/api/v0/cat", Truncate: true})
		}, hamt.ErrMissingBlock},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv, _, values, z := catDataset(t, 0)
			victim := blake3CID(0x55, values["temp/c/3/7"])
			tc.spoil(srv, victim)
			dir := filepath.Join(t.TempDir(), "out")
			_, err := hamt.ExportDir(context.Background(), z, dir)
			if !errors.Is(err, tc.want) {
				t.Fatalf("export: %v, want %v", err, tc.want)
			}
			if _, serr := os.Stat(dir); !errors.Is(serr, os.ErrNotExist) {
				t.Errorf("the failed export left %s: %v", dir, serr)
			}
		})
	}
}

// TestExportDirFromKuboWithoutCat: an RPC API that does not serve cat (a proxy answering 404)
// leaves the export to load each value, and it still writes exactly the dataset.
// An answer that cannot be read (Kubo 0.42 cuts dag/stat short with an X-Stream-Error when all
// the blocks asked are empty) does the same.
func TestExportDirFromKuboWithoutCat(t *testing.T) {
	for _, f := range []kubotest.Fault{
		{Endpoint: kubotest.RPC, Path: "/api/v0/dag/stat", Status: 404, Times: -1},
		{Endpoint: kubotest.RPC, Path: "/api/v0/dag/stat", Status: 200, Times: -1,
			Header: http.Header{"Content-Type": {"application/json"}}, Body: []byte(`{"UniqueBlocks":1,`)},
	} {
		srv, _, values, z := catDataset(t, 0)
		srv.Inject(f)
		dir := filepath.Join(t.TempDir(), "out")
		if _, err := hamt.ExportDir(context.Background(), z, dir); err != nil {
			t.Fatal(err)
		}
		checkExported(t, dir, values)
		if c := srv.Requests("/api/v0/cat"); c != 0 {
			t.Errorf("%d cat requests after dag/stat answered %d %q", c, f.Status, f.Body)
		}
	}
}

// TestKuboReadsRawBlocks: the probe says yes to a daemon with dag/stat, no to one answering 404.
func TestKuboReadsRawBlocks(t *testing.T) {
	srv := kubotest.New(t)
	k := newKubo(t, srv)
	ctx := context.Background()
	if !k.ReadsRawBlocks(ctx) {
		t.Fatal("ReadsRawBlocks: false on a daemon with dag/stat")
	}
	srv.Inject(kubotest.Fault{Endpoint: kubotest.RPC, Path: "/api/v0/dag/stat", Status: 404})
	if k.ReadsRawBlocks(ctx) {
		t.Fatal("ReadsRawBlocks: true after a 404")
	}
}

// TestExportDirFromKuboWithoutRPC: a KuboCAS whose RPC API is not there (a gateway-only setup)
// still exports, loading each value from the gateway.
func TestExportDirFromKuboWithoutRPC(t *testing.T) {
	srv, root, values, _ := catDataset(t, 0)
	gone := kubotest.New(t)
	rpc := gone.RPCURL()
	gone.Close()
	k := newKubo(t, srv, hamt.WithKuboRPC(rpc))
	z, err := hamt.OpenZarr(context.Background(), k, root)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "out")
	if _, err := hamt.ExportDir(context.Background(), z, dir); err != nil {
		t.Fatal(err)
	}
	checkExported(t, dir, values)
}

// TestKuboRealDaemonExportByCat: against a real Kubo (HAMT_KUBO_RPC, HAMT_KUBO_GATEWAY), the
// daemon answers dag/stat and cat as kubotest does, and an export through them writes exactly the
// dataset.
func TestKuboRealDaemonExportByCat(t *testing.T) {
	rpc, gw := os.Getenv("HAMT_KUBO_RPC"), os.Getenv("HAMT_KUBO_GATEWAY")
	if rpc == "" || gw == "" {
		t.Skip("no real daemon: run with HAMT_KUBO_RPC=http://127.0.0.1:5001 HAMT_KUBO_GATEWAY=http://127.0.0.1:8080 to test against one")
	}
	k, err := hamt.NewKuboCAS(hamt.WithKuboRPC(rpc), hamt.WithKuboGateway(gw))
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()
	ctx := context.Background()
	if !k.ReadsRawBlocks(ctx) {
		t.Fatal("ReadsRawBlocks: false on a real daemon")
	}
	values := bulkValues()
	values["three MB"] = patterned(3_000_000)
	for i := range 600 {
		values[fmt.Sprintf("more/c/%d", i)] = patterned(50 + i)
	}
	root := writeMap(t, k, values)
	z, err := hamt.OpenZarr(ctx, k, root)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "out")
	if _, err := hamt.ExportDir(ctx, z, dir); err != nil {
		t.Fatal(err)
	}
	checkExported(t, dir, values)
}
