package hamt_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/hamt-go/hamt"
	"github.com/hamt-go/hamt/internal/kubotest"
	"github.com/ipfs/go-cid"
	"github.com/multiformats/go-multicodec"
)

// bulkValues is a dataset with values of every size class the bulk path meets: empty, small, one
// chunk exactly (streamed) and one byte over (added by Kubo as a UnixFS file).
func bulkValues() map[string][]byte {
	want := map[string][]byte{"zarr.json": []byte(`{"zarr_format":3}`), "empty": {}}
	for i := range 200 {
		want[fmt.Sprintf("temp/c/%d/%d", i/20, i%20)] = patterned(100 + i)
	}
	want["chunk"] = patterned(1 << 20)
	want["over"] = patterned(1<<20 + 1)
	return want
}

// writeMap sets every value into a new map over cas and flushes it.
func writeMap(t *testing.T, cas hamt.CAS, values map[string][]byte) cid.Cid {
	t.Helper()
	ctx := context.Background()
	m, err := hamt.New(ctx, cas, hamt.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range values {
		if err := m.Set(ctx, k, v); err != nil {
			t.Fatal(err)
		}
	}
	root, err := m.Flush(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return root
}

// checkMap reads every value of the map at root through cas.
func checkMap(t *testing.T, cas hamt.CAS, root cid.Cid, values map[string][]byte) {
	t.Helper()
	ctx := context.Background()
	m, err := hamt.Open(ctx, cas, hamt.Bytes, root)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range values {
		if got, err := m.Get(ctx, k); err != nil || !bytes.Equal(got, v) {
			t.Fatalf("Get(%q): %d bytes, %v", k, len(got), err)
		}
	}
}

// TestKuboBulkImportMatchesPerBlockPath: a map written through a bulk session has the root the
// per-block add path gives, for blake3 and sha2-256, in a handful of requests (a probe, one
// stream, one pin: the value over a chunk streams as its UnixFS file's blocks, which the map lays
// out itself), and reads back whole from the daemon.
func TestKuboBulkImportMatchesPerBlockPath(t *testing.T) {
	for _, hash := range []string{"blake3", "sha2-256"} {
		t.Run(hash, func(t *testing.T) {
			values := bulkValues()
			perBlock := writeMap(t, newKubo(t, kubotest.New(t), hamt.WithKuboHash(hash)), values)

			srv := kubotest.New(t)
			k := newKubo(t, srv, hamt.WithKuboHash(hash))
			ctx := context.Background()
			bulk, err := k.Bulk(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer bulk.Close()
			if !bulk.Streaming() {
				t.Fatal("the session does not stream to a server with dag/import")
			}
			root := writeMap(t, bulk, values)
			if !root.Equals(perBlock) {
				t.Fatalf("bulk root %s, per-block root %s", root, perBlock)
			}
			if err := bulk.Commit(ctx, root); err != nil {
				t.Fatal(err)
			}
			if got := srv.Pinned(root); got != "recursive" {
				t.Errorf("root pinned %q, want recursive", got)
			}
			imports, adds, pins := srv.Requests("/api/v0/dag/import"), srv.Requests("/api/v0/add"), srv.Requests("/api/v0/pin/add")
			if imports != 2 || adds != 0 || pins != 1 || srv.Total(kubotest.RPC) != 3 || srv.Total(kubotest.Gateway) != 0 {
				t.Errorf("requests: %d dag/import, %d add, %d pin/add, %d RPC, %d gateway; want 2, 0, 1, 3, 0",
					imports, adds, pins, srv.Total(kubotest.RPC), srv.Total(kubotest.Gateway))
			}
			if q, _ := srv.LastRequest(kubotest.RPC); q.Path != "/api/v0/pin/add" {
				t.Errorf("last RPC request %s, want the pin", q.Path)
			}
			checkMap(t, newKubo(t, srv, hamt.WithKuboHash(hash)), root, values)
		})
	}
}

// TestKuboBulkFallsBackWithoutDagImport: a daemon or proxy that answers dag/import 404 (or 405,
// 501) gets every block through add, with the same root.
func TestKuboBulkFallsBackWithoutDagImport(t *testing.T) {
	values := bulkValues()
	perBlock := writeMap(t, newKubo(t, kubotest.New(t)), values)
	for _, status := range []int{404, 405, 501} {
		t.Run(fmt.Sprint(status), func(t *testing.T) {
			srv := kubotest.New(t)
			srv.Inject(kubotest.Fault{Endpoint: kubotest.RPC, Path: "/api/v0/dag/import", Status: status, Times: -1})
			k := newKubo(t, srv)
			ctx := context.Background()
			bulk, err := k.Bulk(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer bulk.Close()
			if bulk.Streaming() {
				t.Fatal("the session streams to a server without dag/import")
			}
			root := writeMap(t, bulk, values)
			if !root.Equals(perBlock) {
				t.Fatalf("fallback root %s, per-block root %s", root, perBlock)
			}
			if err := bulk.Commit(ctx, root); err != nil {
				t.Fatal(err)
			}
			if n := srv.Requests("/api/v0/dag/import"); n != 1 {
				t.Errorf("%d dag/import requests, want the probe only", n)
			}
			if srv.Pinned(root) != "recursive" {
				t.Error("root not pinned")
			}
			checkMap(t, k, root, values)
		})
	}
}

// TestKuboBulkBrokenStream: a stream that breaks mid-import (the daemon goes away, or refuses the
// CAR) fails the Save or Flush that meets it and every later call with a clear error, and pins
// nothing.
func TestKuboBulkBrokenStream(t *testing.T) {
	ctx := context.Background()
	t.Run("daemon gone", func(t *testing.T) {
		srv := kubotest.New(t)
		k := newKubo(t, srv)
		bulk, err := k.Bulk(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer bulk.Close()
		m, err := hamt.New(ctx, bulk, hamt.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		for i := range 8 { // 2 MiB: past the stream's buffer, so Kubo has begun to read
			if err := m.Set(ctx, fmt.Sprint(i), patterned(256<<10+i)); err != nil {
				t.Fatal(err)
			}
		}
		srv.Stop()
		var failed error
		for i := 8; i < 40 && failed == nil; i++ {
			failed = m.Set(ctx, fmt.Sprint(i), patterned(256<<10+i))
		}
		if failed == nil {
			_, failed = m.Flush(ctx)
		}
		if failed == nil || !strings.Contains(failed.Error(), "dag/import") {
			t.Fatalf("import with the daemon gone: %v, want an error naming dag/import", failed)
		}
		if err := bulk.Commit(ctx, blake3CID(multicodec.Raw, nil)); err == nil || !strings.Contains(err.Error(), "dag/import") {
			t.Errorf("Commit after a broken stream: %v, want the stream's error", err)
		}
		if err := srv.Restart(); err != nil {
			t.Fatal(err)
		}
		if pins, err := k.ListPins(ctx); err != nil || len(pins) != 0 {
			t.Errorf("pins after a broken import: %v, %v; want none", pins, err)
		}
	})
	t.Run("CAR refused", func(t *testing.T) {
		srv := kubotest.New(t)
		k := newKubo(t, srv)
		bulk, err := k.Bulk(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer bulk.Close()
		srv.Inject(kubotest.Fault{Endpoint: kubotest.RPC, Path: "/api/v0/dag/import", Status: 500})
		root := writeMapErr(ctx, bulk, bulkValues())
		var ke *hamt.KuboError
		if !errors.As(root, &ke) || ke.Status != 500 || !strings.Contains(root.Error(), "dag/import") {
			t.Fatalf("import refused by Kubo: %v, want its 500", root)
		}
		if n := srv.Requests("/api/v0/pin/add"); n != 0 {
			t.Errorf("%d pin/add after a refused import", n)
		}
	})
}

// writeMapErr writes values into a new map over cas and flushes it, returning the first error.
func writeMapErr(ctx context.Context, cas hamt.CAS, values map[string][]byte) error {
	m, err := hamt.New(ctx, cas, hamt.Bytes)
	if err != nil {
		return err
	}
	for k, v := range values {
		if err := m.Set(ctx, k, v); err != nil {
			return err
		}
	}
	_, err = m.Flush(ctx)
	return err
}

// TestKuboBulkLoadsWhatItSaved: a node saved in the session loads from memory, with no request;
// a raw block still in the stream is loaded after the stream is flushed (one more dag/import).
func TestKuboBulkLoadsWhatItSaved(t *testing.T) {
	srv := kubotest.New(t)
	k := newKubo(t, srv)
	ctx := context.Background()
	bulk, err := k.Bulk(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer bulk.Close()
	node := []byte{0x80} // an empty DAG-CBOR list
	nid, err := bulk.Save(ctx, node, multicodec.DagCbor)
	if err != nil {
		t.Fatal(err)
	}
	raw := patterned(1000)
	rid, err := bulk.Save(ctx, raw, multicodec.Raw)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := bulk.Load(ctx, nid); err != nil || !bytes.Equal(got, node) {
		t.Fatalf("Load(node): %x, %v", got, err)
	}
	if n := srv.Total(kubotest.Gateway); n != 0 {
		t.Errorf("a held node was loaded with %d gateway requests", n)
	}
	if got, err := bulk.Load(ctx, rid); err != nil || !bytes.Equal(got, raw) {
		t.Fatalf("Load(raw): %d bytes, %v", len(got), err)
	}
	if bulk.Streams() != 1 || !srv.Has(rid) || !srv.Has(nid) {
		t.Errorf("after loading a block of the open stream: %d streams, stored %v %v", bulk.Streams(), srv.Has(rid), srv.Has(nid))
	}
	if _, err := bulk.Save(ctx, []byte("next"), multicodec.Raw); err != nil || bulk.Streams() != 2 {
		t.Errorf("a Save after the flush: %v, %d streams; want a second stream", err, bulk.Streams())
	}
	if err := bulk.Put(ctx, rid, []byte("not the block")); !errors.Is(err, hamt.ErrCorrupt) {
		t.Errorf("Put of bytes that are not the CID's: %v, want ErrCorrupt", err)
	}
}

// TestKuboBulkNoGoroutineLeak: a session closed with a stream open, one whose stream broke and one
// committed leave no goroutine behind.
func TestKuboBulkNoGoroutineLeak(t *testing.T) {
	srv := kubotest.New(t)
	ctx := context.Background()
	before := runtime.NumGoroutine()
	k, err := hamt.NewKuboCAS(hamt.WithKuboRPC(srv.RPCURL()), hamt.WithKuboGateway(srv.GatewayURL()),
		hamt.WithKuboRetries(1, time.Millisecond, time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	session := func(fault *kubotest.Fault, end func(*hamt.KuboBulk, cid.Cid) error) error {
		bulk, err := k.Bulk(ctx)
		if err != nil {
			return err
		}
		defer bulk.Close()
		if fault != nil {
			srv.Inject(*fault)
			defer srv.ClearFaults()
		}
		id, err := bulk.Save(ctx, patterned(300<<10), multicodec.Raw)
		if err != nil {
			return err
		}
		return end(bulk, id)
	}
	closed := func(*hamt.KuboBulk, cid.Cid) error { return nil }
	commit := func(b *hamt.KuboBulk, id cid.Cid) error { return b.Commit(ctx, id) }
	if err := session(nil, closed); err != nil {
		t.Errorf("a session closed with its stream open: %v", err)
	}
	if err := session(&kubotest.Fault{Endpoint: kubotest.RPC, Path: "/api/v0/dag/import", Drop: true, Times: -1}, commit); err == nil {
		t.Error("a session whose stream was dropped committed")
	}
	if err := session(nil, commit); err != nil {
		t.Errorf("a committed session: %v", err)
	}
	k.Close()
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before {
		buf := make([]byte, 1<<16)
		t.Errorf("%d goroutines after Close, %d before:\n%s", n, before, buf[:runtime.Stack(buf, true)])
	}
}
