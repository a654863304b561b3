package hamt_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"

	"github.com/hamt-go/hamt"
	"github.com/hamt-go/hamt/internal/testdag"
	"github.com/ipfs/boxo/ipld/merkledag"
	"github.com/ipfs/boxo/ipld/unixfs"
	"github.com/ipfs/go-cid"
	"github.com/multiformats/go-multicodec"
)

// kuboLike is a testdag.Kubo over a MemoryCAS (values stored as Kubo stores them, every block
// recorded for a CAR) that keeps the MemoryCAS's range reads, so values read back through it take
// the paths they take in a MemoryCAS.
type kuboLike struct {
	*testdag.Kubo
	hamt.RangeLoader
	hamt.BlockSizer
}

// newKuboLike is a kuboLike over a new MemoryCAS, with the given chunk size and links a node.
func newKuboLike(chunk int64, maxLinks int) *kuboLike {
	mem := hamt.NewMemoryCAS()
	return &kuboLike{testdag.NewKubo(mem, chunk, maxLinks), mem, mem}
}

// fileValues are the dag-pb values of the tests: each is stored by a kuboLike with its chunk size.
type fileValue struct {
	name     string
	data     []byte
	chunk    int64
	maxLinks int
}

func fileValues() []fileValue {
	zeros := make([]byte, 5000)
	return []fileValue{
		{"one chunk (a raw leaf, not a file)", patterned(1 << 20), 1 << 20, 174},
		{"one chunk and a byte", patterned(1<<20 + 1), 1 << 20, 174},
		{"3 MB", patterned(3_000_000), 1 << 20, 174},
		{"two levels (200 leaves of 64 bytes)", patterned(200*64 - 3), 64, 174},
		{"three levels (small nodes of 4 links)", patterned(4*4*4*10 + 7), 10, 4},
		{"zeros (every leaf the same block)", zeros, 100, 174},
	}
}

// TestFileValuesFromACARReadAsTheirBytes is the repro (item 3): a map whose values over one
// chunk are UnixFS files, exported as `ipfs dag export` gives it, imported with ReadCAR into a
// MemoryCAS and a BoltCAS, reads back every value byte-exact through Get, the Zarr store's ranges
// (every kind, across leaf boundaries) and GetSize, and its stats count file sizes.
func TestFileValuesFromACARReadAsTheirBytes(t *testing.T) {
	ctx := context.Background()
	for _, fv := range fileValues() {
		t.Run(fv.name, func(t *testing.T) {
			src := newKuboLike(fv.chunk, fv.maxLinks)
			m, err := hamt.New(ctx, src, hamt.Bytes)
			if err != nil {
				t.Fatal(err)
			}
			if err := m.Set(ctx, "zarr.json", []byte(`{"zarr_format":3}`)); err != nil {
				t.Fatal(err)
			}
			if err := m.Set(ctx, "arr/c/0", fv.data); err != nil {
				t.Fatal(err)
			}
			root, err := m.Flush(ctx)
			if err != nil {
				t.Fatal(err)
			}
			id, _ := m.GetPointer(ctx, "arr/c/0")
			if wantFile := int64(len(fv.data)) > fv.chunk; (id.Prefix().Codec == uint64(multicodec.DagPb)) != wantFile {
				t.Fatalf("value CID %s: dag-pb %v, want %v", id, !wantFile, wantFile)
			}
			// The map's nodes were saved after the values: put them first, as dag export does.
			car := testdag.CAR(t, []cid.Cid{root}, append([]testdag.Block{{ID: root, Data: mustLoad(t, src, root)}}, src.Blocks()...))

			bolt, err := hamt.OpenBoltCAS(filepath.Join(t.TempDir(), "s.db"))
			if err != nil {
				t.Fatal(err)
			}
			defer bolt.Close()
			for _, dst := range []struct {
				name string
				cas  interface {
					hamt.CAS
					hamt.BlockPutter
				}
			}{{"memory", hamt.NewMemoryCAS()}, {"bolt", bolt}} {
				t.Run(dst.name, func(t *testing.T) {
					roots, _, err := hamt.ReadCAR(ctx, dst.cas, bytes.NewReader(car))
					if err != nil || len(roots) != 1 || !roots[0].Equals(root) {
						t.Fatalf("ReadCAR: %v, %v", roots, err)
					}
					checkFileValue(t, dst.cas, root, fv.data, fv.chunk)
				})
			}
		})
	}
}

func mustLoad(t testing.TB, cas hamt.CAS, id cid.Cid) []byte {
	t.Helper()
	b, err := cas.Load(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// checkFileValue reads key arr/c/0 of the map at root every way there is and compares with want.
func checkFileValue(t *testing.T, cas hamt.CAS, root cid.Cid, want []byte, chunk int64) {
	t.Helper()
	ctx := context.Background()
	for _, verify := range []bool{false, true} {
		var opts []hamt.Option
		if verify {
			opts = append(opts, hamt.WithVerifyBlocks())
		}
		m, err := hamt.Open(ctx, cas, hamt.Bytes, root, opts...)
		if err != nil {
			t.Fatal(err)
		}
		got, err := m.Get(ctx, "arr/c/0")
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("Get (verify %v): %d bytes, %v; want %d", verify, len(got), err, len(want))
		}
		s, err := hamt.NewZarrStore(m)
		if err != nil {
			t.Fatal(err)
		}
		n := int64(len(want))
		if size, err := s.GetSize(ctx, "arr/c/0"); err != nil || size != n {
			t.Errorf("GetSize: %d, %v; want %d", size, err, n)
		}
		for _, r := range []hamt.ByteRange{
			{}, hamt.RangeBetween(0, 1), hamt.RangeBetween(chunk-3, chunk+3), hamt.RangeBetween(chunk, 2*chunk),
			hamt.RangeBetween(1, n-1), hamt.RangeBetween(n-5, n+100), hamt.RangeBetween(n, n+1), hamt.RangeBetween(4, 4),
			hamt.RangeFrom(0), hamt.RangeFrom(chunk - 1), hamt.RangeFrom(n / 2), hamt.RangeFrom(n), hamt.RangeFrom(n + 5),
			hamt.RangeSuffix(1), hamt.RangeSuffix(chunk + 1), hamt.RangeSuffix(n), hamt.RangeSuffix(n + 9), hamt.RangeSuffix(0),
		} {
			got, err := s.Get(ctx, "arr/c/0", r)
			if exp := r.Slice(want); err != nil || !bytes.Equal(got, exp) {
				t.Errorf("Zarr Get %s (verify %v): %d bytes, %v; want %d", r, verify, len(got), err, len(exp))
			}
		}
		st, err := hamt.Inspect(ctx, cas, root, true)
		if err != nil || st.ValueBytes != n+int64(len(`{"zarr_format":3}`)) {
			t.Errorf("Inspect: value bytes %d, %v; want %d", st.ValueBytes, err, n+17)
		}
	}
}

// TestFileValueWithALostOrDamagedBlockIsAnError: a file whose leaf (or inner node) is missing from
// the store is ErrMissingBlock, one whose leaf comes back changed is ErrCorrupt — never short or
// wrong bytes — through Get, ranges over the damaged part, and WriteCAR.
func TestFileValueWithALostOrDamagedBlockIsAnError(t *testing.T) {
	ctx := context.Background()
	src := newKuboLike(64, 4)
	data := patterned(64*4*4 + 10) // three levels: root, inner nodes, leaves
	m, err := hamt.New(ctx, src, hamt.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Set(ctx, "v", data); err != nil {
		t.Fatal(err)
	}
	root, err := m.Flush(ctx)
	if err != nil {
		t.Fatal(err)
	}
	file, _ := m.GetPointer(ctx, "v")
	_, blocks, err := testdag.ImportFile(ctx, data, 64, 4)
	if err != nil {
		t.Fatal(err)
	}
	var inner, leaf cid.Cid
	for _, b := range blocks[1:] {
		switch b.ID.Prefix().Codec {
		case uint64(multicodec.DagPb):
			inner = b.ID
		case uint64(multicodec.Raw):
			leaf = b.ID
		}
	}
	for _, c := range []struct {
		name    string
		cas     hamt.CAS
		verify  bool
		wantErr error
	}{
		{"missing leaf", without{src, leaf}, false, hamt.ErrMissingBlock},
		{"missing inner node", without{src, inner}, false, hamt.ErrMissingBlock},
		{"leaf one byte short", damaged{src, leaf, func(b []byte) []byte { return b[:len(b)-1] }}, false, hamt.ErrCorrupt},
		{"leaf one byte long", damaged{src, leaf, func(b []byte) []byte { return append(b, 0) }}, false, hamt.ErrCorrupt},
		{"leaf with a byte flipped, verified", damaged{src, leaf, flip}, true, hamt.ErrCorrupt},
		{"inner node with a byte flipped, verified", damaged{src, inner, flip}, true, hamt.ErrCorrupt},
		{"root claims a byte more", damaged{src, file, growFilesize}, false, hamt.ErrCorrupt},
	} {
		t.Run(c.name, func(t *testing.T) {
			opts := []hamt.Option{}
			if c.verify {
				opts = append(opts, hamt.WithVerifyBlocks())
			}
			m, err := hamt.Open(ctx, c.cas, hamt.Bytes, root, opts...)
			if err != nil {
				t.Fatal(err)
			}
			if got, err := m.Get(ctx, "v"); !errors.Is(err, c.wantErr) {
				t.Errorf("Get: %d bytes, %v; want %v", len(got), err, c.wantErr)
			}
			s, _ := hamt.NewZarrStore(m)
			if got, err := s.Get(ctx, "v", hamt.RangeFrom(0)); !errors.Is(err, c.wantErr) {
				t.Errorf("Zarr range: %d bytes, %v; want %v", len(got), err, c.wantErr)
			}
			if _, err := hamt.WriteCAR(ctx, c.cas, root, &bytes.Buffer{}); err == nil {
				t.Errorf("WriteCAR of a damaged file succeeded")
			}
		})
	}
}

// without is a store that has lost one block.
type without struct {
	hamt.CAS
	lost cid.Cid
}

func (w without) Load(ctx context.Context, id cid.Cid) ([]byte, error) {
	if id.Equals(w.lost) {
		return nil, fmt.Errorf("load %s: %w", id, hamt.ErrNotFound)
	}
	return w.CAS.Load(ctx, id)
}

// damaged is a store whose copy of one block has changed.
type damaged struct {
	hamt.CAS
	bad    cid.Cid
	change func([]byte) []byte
}

func (d damaged) Load(ctx context.Context, id cid.Cid) ([]byte, error) {
	b, err := d.CAS.Load(ctx, id)
	if err == nil && id.Equals(d.bad) {
		b = d.change(bytes.Clone(b))
	}
	return b, err
}

func flip(b []byte) []byte { b[len(b)/2] ^= 1; return b }

// growFilesize re-encodes a UnixFS root with its filesize one more than its blocks hold.
func growFilesize(b []byte) []byte {
	pn, err := merkledag.DecodeProtobuf(b)
	if err != nil {
		panic(err)
	}
	fsn, err := unixfs.FSNodeFromBytes(pn.Data())
	if err != nil {
		panic(err)
	}
	fsn.UpdateFilesize(1)
	data, err := fsn.GetBytes()
	if err != nil {
		panic(err)
	}
	pn.SetData(data)
	out, err := pn.EncodeProtobuf(true)
	if err != nil {
		panic(err)
	}
	return out
}

// TestHandlerServesTheFileOfAFileValue: the HTTP handler answers a UnixFS file value with its
// file's bytes, whole (200) and by range across a leaf boundary (206), with the right lengths.
func TestHandlerServesTheFileOfAFileValue(t *testing.T) {
	ctx := context.Background()
	src := newKuboLike(64, 174)
	data := patterned(200*64 - 3)
	m, err := hamt.New(ctx, src, hamt.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Set(ctx, "arr/c/0", data); err != nil {
		t.Fatal(err)
	}
	if err := m.MakeReadOnly(ctx); err != nil {
		t.Fatal(err)
	}
	s, err := hamt.NewZarrStore(m)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(s.Handler())
	defer srv.Close()
	for _, c := range []struct {
		rng    string
		status int
		want   []byte
	}{{"", 200, data}, {"bytes=60-70", 206, data[60:71]}, {"bytes=-100", 206, data[len(data)-100:]}} {
		req, _ := http.NewRequest(http.MethodGet, srv.URL+"/arr/c/0", nil)
		if c.rng != "" {
			req.Header.Set("Range", c.rng)
		}
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != c.status || !bytes.Equal(body, c.want) || resp.ContentLength != int64(len(c.want)) {
			t.Errorf("GET %q: %d, %d bytes (Content-Length %d), %v; want %d with %d", c.rng, resp.StatusCode, len(body), resp.ContentLength, err, c.status, len(c.want))
		}
	}
}
