package hamt_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"strings"
	"testing"

	"github.com/hamt-go/hamt"
	"github.com/hamt-go/hamt/internal/kubotest"
	"github.com/ipfs/go-cid"
)

// kuboDataset writes bulkValues (a value over one chunk among them, a UnixFS file on Kubo)
// to srv and returns its root.
func kuboDataset(t *testing.T, srv *kubotest.Server) (cid.Cid, map[string][]byte) {
	values := bulkValues()
	values["three MB"] = patterned(3_000_000) // a file of three leaves
	return writeMap(t, newKubo(t, srv), values), values
}

// TestKuboExportCARInOneRequest: the CAR of a dataset with values over a chunk comes from the
// gateway in one request, holds every block the per-block export holds, and imports back.
func TestKuboExportCARInOneRequest(t *testing.T) {
	srv := kubotest.New(t)
	root, values := kuboDataset(t, srv)
	k := newKubo(t, srv)
	ctx := context.Background()
	var perBlock bytes.Buffer
	want, err := hamt.WriteCAR(ctx, k, root, &perBlock)
	if err != nil {
		t.Fatal(err)
	}
	srv.ResetCounters()
	var car bytes.Buffer
	n, err := k.ExportCAR(ctx, root, &car)
	if err != nil {
		t.Fatal(err)
	}
	if n != want || srv.Total(kubotest.Gateway) != 1 {
		t.Errorf("%d blocks in %d gateway requests; want %d in 1", n, srv.Total(kubotest.Gateway), want)
	}
	mem := hamt.NewMemoryCAS()
	roots, stored, err := hamt.ReadCAR(ctx, mem, &car)
	if err != nil || len(roots) != 1 || !roots[0].Equals(root) || stored != n {
		t.Fatalf("ReadCAR of the export: %v, %d blocks, %v", roots, stored, err)
	}
	checkMap(t, mem, root, values)
}

// TestKuboFetchDAG: a dataset fetched in one request reads whole from the local copy, which Close
// removes.
func TestKuboFetchDAG(t *testing.T) {
	srv := kubotest.New(t)
	root, values := kuboDataset(t, srv)
	k := newKubo(t, srv)
	ctx := context.Background()
	srv.ResetCounters()
	dir := t.TempDir()
	d, err := k.FetchDAG(ctx, root, dir)
	if err != nil {
		t.Fatal(err)
	}
	checkMap(t, d, root, values)
	if err := d.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	// One CAR stream, and the nodes a walk asked for before the stream brought them: no value.
	cars, raws := 0, 0
	for _, r := range srv.Log() {
		switch {
		case strings.Contains(r.RawQuery, "format=car"):
			cars++
		case r.Endpoint == kubotest.Gateway:
			raws++
		}
	}
	if cars != 1 || raws > 20 {
		t.Errorf("%d CAR requests and %d block requests, want 1 CAR and at most the map's nodes", cars, raws)
	}
	if d.Blocks() == 0 || !d.Has(root) {
		t.Errorf("after the stream: %d blocks, root held %v", d.Blocks(), d.Has(root))
	}
	if _, err := d.Save(ctx, nil, 0x55); !errors.Is(err, hamt.ErrReadOnly) {
		t.Errorf("Save: %v, want ErrReadOnly", err)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if left, _ := os.ReadDir(dir); len(left) != 0 {
		t.Errorf("Close left %d files", len(left))
	}

	// A value the gateway lacks fails the read that waits for it, and Wait, instead of hanging.
	srv.Delete(blake3CID(0x55, values["temp/c/3/7"]))
	d, err = k.FetchDAG(ctx, root, dir)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	m, err := hamt.Open(ctx, d, hamt.Bytes, root)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.Get(ctx, "temp/c/3/7"); !errors.Is(err, hamt.ErrMissingBlock) {
		t.Errorf("Get of a value the stream lacks: %v, want ErrMissingBlock", err)
	}
	if err := d.Wait(ctx); !errors.Is(err, hamt.ErrMissingBlock) {
		t.Errorf("Wait: %v, want ErrMissingBlock", err)
	}
}

// TestKuboExportCARRefusesBadStreams: a gateway answer cut short, or lacking a block, is an error
// a caller can tell (io.ErrUnexpectedEOF, ErrMissingBlock); a gateway that fails before it answers
// hands the export to the next.
func TestKuboExportCARRefusesBadStreams(t *testing.T) {
	srv := kubotest.New(t)
	root, values := kuboDataset(t, srv)
	k := newKubo(t, srv)
	ctx := context.Background()

	srv.Inject(kubotest.Fault{Endpoint: kubotest.Gateway, Truncate: true})
	if _, err := k.ExportCAR(ctx, root, io.Discard); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("a truncated answer: %v, want io.ErrUnexpectedEOF", err)
	}

	down := kubotest.New(t, kubotest.WithBlockstore(srv.Blockstore()))
	down.Stop()
	two := newKubo(t, srv, hamt.WithKuboGateways(down.GatewayURL(), srv.GatewayURL()))
	if n, err := two.ExportCAR(ctx, root, io.Discard); err != nil || n == 0 {
		t.Errorf("with the first gateway down: %d blocks, %v", n, err)
	}

	leaf := blake3CID(0x55, values["temp/c/3/7"])
	srv.Delete(leaf)
	if _, err := k.ExportCAR(ctx, root, io.Discard); !errors.Is(err, hamt.ErrMissingBlock) {
		t.Errorf("a block missing on the gateway: %v, want ErrMissingBlock", err)
	}
}
