package hamt_test

import (
	"bytes"
	"context"
	"errors"
	"testing"

	"github.com/hamt-go/hamt"
	"github.com/hamt-go/hamt/internal/kubotest"
	"github.com/multiformats/go-multicodec"
)

// TestKuboFileValuesThroughAMap (item 3, on Kubo): a 3 MB value Kubo stored as a UnixFS file reads
// back through Map.Get and every kind of Zarr range with one gateway request each, a CAR of the
// blocks that hold the bytes (verified), never the Range form; Load of the root gives the root
// block, as in every store; WriteCAR over Kubo writes every block of the file, and that CAR
// imported into a MemoryCAS reads the same. A gateway that fails the CAR request is read block by
// block; a corrupt block is ErrCorrupt.
func TestKuboFileValuesThroughAMap(t *testing.T) {
	srv := kubotest.New(t)
	k := newKubo(t, srv)
	ctx := context.Background()
	data := patterned(3_000_000)
	m, err := hamt.New(ctx, k, hamt.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Set(ctx, "arr/c/0", data); err != nil {
		t.Fatal(err)
	}
	root, err := m.Flush(ctx)
	if err != nil {
		t.Fatal(err)
	}
	id, _ := m.GetPointer(ctx, "arr/c/0")
	if id.Prefix().Codec != uint64(multicodec.DagPb) {
		t.Fatalf("value CID %s is not dag-pb", id)
	}
	if b, err := k.Load(ctx, id); err != nil || !blake3CID(multicodec.DagPb, b).Equals(id) {
		t.Fatalf("Load of the file's root: %d bytes, %v; want the root block", len(b), err)
	}
	ro, err := hamt.Open(ctx, k, hamt.Bytes, root)
	if err != nil {
		t.Fatal(err)
	}
	s, err := hamt.NewZarrStore(ro)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ro.GetPointer(ctx, "arr/c/0"); err != nil { // the root node, cached from here on
		t.Fatal(err)
	}
	srv.ResetCounters()
	if got, err := ro.Get(ctx, "arr/c/0"); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("Get: %d bytes, %v", len(got), err)
	}
	if n := srv.Total(kubotest.Gateway); n != 1 {
		t.Errorf("Get made %d gateway requests, want 1", n)
	}
	for _, r := range []hamt.ByteRange{
		hamt.RangeBetween(1<<20-5, 1<<20+5), hamt.RangeBetween(0, 3_000_000), hamt.RangeFrom(2 << 20),
		hamt.RangeSuffix(100), hamt.RangeSuffix(4_000_000), hamt.RangeFrom(3_000_000), hamt.RangeBetween(10, 10),
	} {
		srv.ResetCounters()
		got, err := s.Get(ctx, "arr/c/0", r)
		if err != nil || !bytes.Equal(got, r.Slice(data)) {
			t.Errorf("Zarr Get %s: %d bytes, %v; want %d", r, len(got), err, len(r.Slice(data)))
		}
		last, _ := srv.LastRequest(kubotest.Gateway)
		if last.Header.Get("Range") != "" {
			t.Errorf("Zarr Get %s used an unverifiable Range request", r)
		}
		if n := srv.Total(kubotest.Gateway); n != 1 && !r.Empty() {
			t.Errorf("Zarr Get %s made %d gateway requests, want 1", r, n)
		}
	}
	if n, err := s.GetSize(ctx, "arr/c/0"); err != nil || n != int64(len(data)) {
		t.Errorf("GetSize: %d, %v", n, err)
	}

	var car bytes.Buffer
	if _, err := hamt.WriteCAR(ctx, k, root, &car); err != nil {
		t.Fatal(err)
	}
	mem := hamt.NewMemoryCAS()
	if _, n, err := hamt.ReadCAR(ctx, mem, bytes.NewReader(car.Bytes())); err != nil || n != 1+1+3 { // node, file root, 3 leaves
		t.Fatalf("ReadCAR of WriteCAR over Kubo: %d blocks, %v", n, err)
	}
	if mm, err := hamt.Open(ctx, mem, hamt.Bytes, root); err != nil {
		t.Fatal(err)
	} else if got, err := mm.Get(ctx, "arr/c/0"); err != nil || !bytes.Equal(got, data) {
		t.Errorf("Get from the imported CAR: %d bytes, %v", len(got), err)
	}

	// The CAR form failing (400 is not retried) falls back to reading block by block.
	srv.Inject(kubotest.Fault{Endpoint: kubotest.Gateway, Status: 400, Times: 1, Path: "/ipfs/" + id.String()})
	srv.ResetCounters()
	if got, err := k.ReadFile(ctx, id, hamt.RangeFrom(1<<20)); err != nil || !bytes.Equal(got, data[1<<20:]) {
		t.Errorf("ReadFile without the CAR form: %d bytes, %v", len(got), err)
	}
	if n := srv.Total(kubotest.Gateway); n != 1+1+2 { // the refused CAR, the root, two leaves
		t.Errorf("ReadFile without the CAR form made %d gateway requests, want 4", n)
	}
	srv.ClearFaults()
	srv.Inject(kubotest.Fault{Endpoint: kubotest.Gateway, Corrupt: true, Times: -1})
	if got, err := ro.Get(ctx, "arr/c/0"); !errors.Is(err, hamt.ErrCorrupt) {
		t.Errorf("corrupt gateway: Get %d bytes, %v; want ErrCorrupt", len(got), err)
	}
	srv.ClearFaults()
}
