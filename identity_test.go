package hamt_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/hamt-go/hamt"
	"github.com/hamt-go/hamt/internal/kubotest"
	"github.com/hamt-go/hamt/internal/testdag"
	"github.com/ipfs/go-cid"
	carv2 "github.com/ipld/go-car/v2"
	"github.com/multiformats/go-multicodec"
	"github.com/multiformats/go-multihash"
)

// identityCID is the identity CID of data: its multihash is data itself (Kubo's --inline).
func identityCID(codec multicodec.Code, data []byte) cid.Cid {
	mh, err := multihash.Sum(data, multihash.IDENTITY, -1)
	if err != nil {
		panic(err)
	}
	return cid.NewCidV1(uint64(codec), mh)
}

// identityDataset is a Zarr dataset whose values Kubo's `ipfs add --inline` would give: raw
// values that are identity CIDs (one empty, one of MaxIdentityDigest bytes), a UnixFS file over
// leaves one of which is an identity CID, and a small file whose root itself is one. Its blocks
// are in src, which holds no identity block (no store does).
func identityDataset(t *testing.T) (src *hamt.MemoryCAS, root cid.Cid, values map[string][]byte) {
	t.Helper()
	ctx := context.Background()
	src = hamt.NewMemoryCAS()
	m, err := hamt.New(ctx, src, hamt.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	z, err := hamt.NewZarrStore(m)
	if err != nil {
		t.Fatal(err)
	}
	values = map[string][]byte{"plain": []byte("a value stored as usual, blake3")}
	if err := z.Set(ctx, "plain", values["plain"]); err != nil {
		t.Fatal(err)
	}
	for key, v := range map[string][]byte{
		"inline/small": []byte("tiny"),
		"inline/empty": {},
		"inline/max":   bytes.Repeat([]byte{7}, hamt.MaxIdentityDigest),
	} {
		values[key] = v
		if err := z.SetCID(ctx, key, identityCID(multicodec.Raw, v)); err != nil {
			t.Fatal(err)
		}
	}
	file := make([]byte, 100) // leaves of 48, 48 and 4 bytes: the last is inlined
	for i := range file {
		file[i] = byte(i * 7)
	}
	tiny := []byte("hi!") // leaves of 1 byte under a node of a few dozen bytes: all inlined
	for key, f := range map[string]struct {
		data        []byte
		chunk       int64
		rootInlined bool
		limit       int
		blocks      int // blocks not inlined
	}{"file": {file, 48, false, 32, 3}, "tinyfile": {tiny, 1, true, hamt.MaxIdentityDigest, 0}} {
		id, blocks, err := testdag.ImportFileInline(ctx, f.data, f.chunk, testdag.KuboMaxLinks, f.limit)
		if err != nil {
			t.Fatal(err)
		}
		if got := id.Prefix().MhType == multihash.IDENTITY; got != f.rootInlined || id.Prefix().Codec != uint64(multicodec.DagPb) {
			t.Fatalf("%s: root %s, want a dag-pb root inlined: %v", key, id, f.rootInlined)
		}
		if len(blocks) != f.blocks {
			t.Fatalf("%s: %d blocks not inlined, want %d", key, len(blocks), f.blocks)
		}
		for _, b := range blocks {
			if err := src.Put(ctx, b.ID, b.Data); err != nil {
				t.Fatal(err)
			}
		}
		values[key] = f.data
		if err := z.SetCID(ctx, key, id); err != nil {
			t.Fatal(err)
		}
	}
	if root, err = z.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	return src, root, values
}

// checkIdentityDataset reads every value of the dataset at root in cas whole, by ranges, in one
// GetMany, and exported to a directory, and verifies it.
func checkIdentityDataset(t *testing.T, cas hamt.CAS, root cid.Cid, values map[string][]byte) {
	t.Helper()
	ctx := context.Background()
	m, err := hamt.Open(ctx, cas, hamt.Bytes, root)
	if err != nil {
		t.Fatal(err)
	}
	z, err := hamt.NewZarrStore(m)
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for key, want := range values {
		keys = append(keys, key)
		if got, err := m.Get(ctx, key); err != nil || !bytes.Equal(got, want) {
			t.Errorf("Get %q: %q, %v; want %q", key, got, err, want)
		}
		for _, r := range []hamt.ByteRange{hamt.RangeBetween(1, 3), hamt.RangeFrom(2), hamt.RangeSuffix(5), hamt.RangeBetween(45, 60)} {
			if got, err := z.Get(ctx, key, r); err != nil || !bytes.Equal(got, r.Slice(want)) {
				t.Errorf("zarr Get %q %s: %q, %v; want %q", key, r, got, err, r.Slice(want))
			}
		}
		if n, err := z.GetSize(ctx, key); err != nil || n != int64(len(want)) {
			t.Errorf("GetSize %q: %d, %v; want %d", key, n, err, len(want))
		}
	}
	got, found, err := m.GetMany(ctx, keys) // BoltCAS: one LoadMany, which identity CIDs skip
	if err != nil {
		t.Fatal(err)
	}
	for i, key := range keys {
		if !found[i] || !bytes.Equal(got[i], values[key]) {
			t.Errorf("GetMany %q: %q, %v; want %q", key, got[i], found[i], values[key])
		}
	}
	dir := filepath.Join(t.TempDir(), "export")
	if _, err := hamt.ExportDir(ctx, z, dir); err != nil {
		t.Fatal(err)
	}
	for key, want := range values {
		if b, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(key))); err != nil || !bytes.Equal(b, want) {
			t.Errorf("exported %q: %q, %v; want %q", key, b, err, want)
		}
	}
	rep, err := hamt.Verify(ctx, cas, root)
	if err != nil || !rep.OK() {
		t.Errorf("Verify: %v, %+v", err, rep.Problems)
	}
}

// TestIdentityCIDsReadInEveryStore: a dataset whose values and file leaves are identity CIDs
// (Kubo's --inline) is written as a CAR without them (as go-car writes one), imported into
// MemoryCAS and a bbolt file, and reads back byte for byte; Verify passes, and GC keeps every
// block and removes only garbage. Before, every read of an identity CID was "block missing",
// Verify reported them and GC refused to run.
func TestIdentityCIDsReadInEveryStore(t *testing.T) {
	ctx := context.Background()
	src, root, values := identityDataset(t)
	var car bytes.Buffer
	if _, err := hamt.WriteCAR(ctx, src, root, &car); err != nil {
		t.Fatal(err)
	}
	br, err := carv2.NewBlockReader(bytes.NewReader(car.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	sections := 0
	for {
		b, err := br.Next()
		if err != nil {
			break
		}
		sections++
		if b.Cid().Prefix().MhType == multihash.IDENTITY {
			t.Errorf("the CAR holds identity block %s", b.Cid())
		}
	}

	mem := hamt.NewMemoryCAS()
	if _, n, err := hamt.ReadCAR(ctx, mem, bytes.NewReader(car.Bytes())); err != nil || n != sections {
		t.Fatalf("ReadCAR into memory: %d blocks, %v; want %d", n, err, sections)
	}
	checkIdentityDataset(t, mem, root, values)

	path := filepath.Join(t.TempDir(), "s.bolt")
	bolt, err := hamt.OpenBoltCAS(path)
	if err != nil {
		t.Fatal(err)
	}
	defer bolt.Close()
	if _, _, err := hamt.ReadCAR(ctx, bolt, bytes.NewReader(car.Bytes())); err != nil {
		t.Fatal(err)
	}
	checkIdentityDataset(t, bolt, root, values)
	if err := bolt.SetName(ctx, "inline", root); err != nil {
		t.Fatal(err)
	}
	if _, err := bolt.Save(ctx, []byte("garbage"), multicodec.Raw); err != nil {
		t.Fatal(err)
	}
	rep, err := bolt.GC(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if rep.BlocksRemoved != 1 || rep.BlocksAfter != sections {
		t.Errorf("GC removed %d blocks and kept %d; want 1 (the garbage) and %d", rep.BlocksRemoved, rep.BlocksAfter, sections)
	}
	checkIdentityDataset(t, bolt, root, values)
	// The same through a store that knows nothing of identity CIDs: the map answers them.
	checkIdentityDataset(t, inlineUnawareCAS{mem}, root, values)
}

// inlineUnawareCAS is a store written by a user that knows nothing of identity CIDs: only Save and
// Load, which finds nothing but what was saved.
type inlineUnawareCAS struct{ m *hamt.MemoryCAS }

func (p inlineUnawareCAS) Save(ctx context.Context, data []byte, codec multicodec.Code) (cid.Cid, error) {
	return p.m.Save(ctx, data, codec)
}

func (p inlineUnawareCAS) Load(ctx context.Context, id cid.Cid) ([]byte, error) {
	if id.Prefix().MhType == multihash.IDENTITY {
		return nil, fmt.Errorf("plain store: %w", hamt.ErrNotFound)
	}
	return p.m.Load(ctx, id)
}

// TestIdentityCIDsInStoreCalls: every store answers Load, LoadRange, BlockSize and Has of an
// identity CID from the CID (KuboCAS without a request), and a Put of one stores nothing.
func TestIdentityCIDsInStoreCalls(t *testing.T) {
	ctx := context.Background()
	bolt, err := hamt.OpenBoltCAS(filepath.Join(t.TempDir(), "s.bolt"))
	if err != nil {
		t.Fatal(err)
	}
	defer bolt.Close()
	srv := kubotest.New(t)
	kubo := newKubo(t, srv)
	data := []byte("inline me")
	id := identityCID(multicodec.Raw, data)
	type store interface {
		hamt.CAS
		hamt.RangeLoader
		hamt.BlockSizer
	}
	for name, s := range map[string]store{"memory": hamt.NewMemoryCAS(), "bolt": bolt, "kubo": kubo} {
		if b, err := s.Load(ctx, id); err != nil || !bytes.Equal(b, data) {
			t.Errorf("%s: Load: %q, %v", name, b, err)
		}
		if b, err := s.LoadRange(ctx, id, hamt.RangeBetween(2, 4)); err != nil || string(b) != "li" {
			t.Errorf("%s: LoadRange: %q, %v", name, b, err)
		}
		if n, err := s.BlockSize(ctx, id); err != nil || n != int64(len(data)) {
			t.Errorf("%s: BlockSize: %d, %v", name, n, err)
		}
		if h, ok := s.(interface {
			Has(context.Context, cid.Cid) (bool, error)
		}); ok {
			if found, err := h.Has(ctx, id); err != nil || !found {
				t.Errorf("%s: Has: %v, %v", name, found, err)
			}
		}
		if p, ok := s.(hamt.BlockPutter); ok {
			if err := p.Put(ctx, id, data); err != nil {
				t.Errorf("%s: Put: %v", name, err)
			}
			if err := p.Put(ctx, id, []byte("other")); !errors.Is(err, hamt.ErrCorrupt) {
				t.Errorf("%s: Put of other bytes: %v, want ErrCorrupt", name, err)
			}
		}
	}
	if n := srv.Total(kubotest.AnyEndpoint); n != 0 {
		t.Errorf("KuboCAS sent %d requests for an identity CID", n)
	}
	mem := hamt.NewMemoryCAS()
	if err := mem.Put(ctx, id, data); err != nil || mem.Len() != 0 {
		t.Errorf("MemoryCAS Put of an identity block: %v, %d blocks held; want none", err, mem.Len())
	}
	if err := bolt.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if n, err := bolt.Len(ctx); err != nil || n != 0 {
		t.Errorf("BoltCAS Put of an identity block: %d blocks held, %v; want none", n, err)
	}
}

// TestIdentityCIDOverTheLimit: an identity CID holding more than MaxIdentityDigest bytes (boxo's
// verifcid limit, which Kubo enforces) is ErrIdentityTooLarge, also ErrCorrupt, in a store, a
// map, Verify (a problem, not a failure) and ReadCAR (which stores nothing).
func TestIdentityCIDOverTheLimit(t *testing.T) {
	ctx := context.Background()
	big := bytes.Repeat([]byte{1}, hamt.MaxIdentityDigest+1)
	id := identityCID(multicodec.Raw, big)
	mem := hamt.NewMemoryCAS()
	if _, err := mem.Load(ctx, id); !errors.Is(err, hamt.ErrIdentityTooLarge) || !errors.Is(err, hamt.ErrCorrupt) {
		t.Errorf("MemoryCAS Load: %v; want ErrIdentityTooLarge and ErrCorrupt", err)
	}
	if err := mem.Put(ctx, id, big); !errors.Is(err, hamt.ErrIdentityTooLarge) {
		t.Errorf("MemoryCAS Put: %v; want ErrIdentityTooLarge", err)
	}
	m, err := hamt.New(ctx, mem, hamt.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	z, err := hamt.NewZarrStore(m)
	if err != nil {
		t.Fatal(err)
	}
	if err := z.SetCID(ctx, "big", id); err != nil {
		t.Fatal(err)
	}
	root, err := z.Flush(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.Get(ctx, "big"); !errors.Is(err, hamt.ErrIdentityTooLarge) {
		t.Errorf("Get: %v; want ErrIdentityTooLarge", err)
	}
	if _, err := z.Get(ctx, "big", hamt.RangeFrom(3)); !errors.Is(err, hamt.ErrIdentityTooLarge) {
		t.Errorf("zarr Get of a range: %v; want ErrIdentityTooLarge", err)
	}
	rep, err := hamt.Verify(ctx, mem, root)
	if err != nil || rep.OK() || rep.Problems[0].Path != "big" {
		t.Errorf("Verify: %v, %+v; want one problem at big", err, rep.Problems)
	}
	var car bytes.Buffer
	if _, err := hamt.WriteCAR(ctx, mem, root, &car); !errors.Is(err, hamt.ErrIdentityTooLarge) {
		t.Errorf("WriteCAR: %v; want ErrIdentityTooLarge", err)
	}
	// A CAR of the same written by hand: refused, nothing stored.
	node, err := mem.Load(ctx, root)
	if err != nil {
		t.Fatal(err)
	}
	into := hamt.NewMemoryCAS()
	data := testdag.CAR(t, []cid.Cid{root}, []testdag.Block{{ID: root, Data: node}})
	if _, _, err := hamt.ReadCAR(ctx, into, bytes.NewReader(data)); !errors.Is(err, hamt.ErrIdentityTooLarge) || into.Len() != 0 {
		t.Errorf("ReadCAR: %v, %d blocks stored; want ErrIdentityTooLarge, none", err, into.Len())
	}
}

// TestIdentityCIDsThroughKubo: the dataset served by a Kubo (its blocks only: Kubo stores no
// identity block) reads whole through a KuboCAS and through FetchedDAG's one CAR stream, which
// answers an identity CID at once, without waiting for the stream.
func TestIdentityCIDsThroughKubo(t *testing.T) {
	ctx := context.Background()
	src, root, values := identityDataset(t)
	var car bytes.Buffer
	if _, err := hamt.WriteCAR(ctx, src, root, &car); err != nil {
		t.Fatal(err)
	}
	srv := kubotest.New(t)
	br, err := carv2.NewBlockReader(bytes.NewReader(car.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	for {
		b, err := br.Next()
		if err != nil {
			break
		}
		srv.PutRaw(b.Cid(), b.RawData())
	}
	k := newKubo(t, srv)
	checkIdentityDataset(t, k, root, values)

	d, err := k.FetchDAG(ctx, root, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	id := identityCID(multicodec.Raw, []byte("tiny"))
	if b, err := d.Load(ctx, id); err != nil || string(b) != "tiny" || !d.Has(id) {
		t.Errorf("FetchedDAG Load of an identity CID: %q, %v", b, err)
	}
	if err := d.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	checkIdentityDataset(t, d, root, values)
}
