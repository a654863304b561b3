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
	"sync"
	"testing"

	"github.com/hamt-go/hamt"
	chunk "github.com/ipfs/boxo/chunker"
	"github.com/ipfs/boxo/ipld/merkledag"
	mdtest "github.com/ipfs/boxo/ipld/merkledag/test"
	"github.com/ipfs/boxo/ipld/unixfs"
	"github.com/ipfs/boxo/ipld/unixfs/importer/balanced"
	"github.com/ipfs/boxo/ipld/unixfs/importer/helpers"
	"github.com/ipfs/go-cid"
	carv2 "github.com/ipld/go-car/v2"
	"github.com/ipld/go-car/v2/storage"
	"github.com/multiformats/go-multicodec"
	"github.com/multiformats/go-multihash"
)

// kuboLike is a CAS that stores values as Kubo does (ipfs add --hash=blake3 --chunker=size-N): a
// value of more than one chunk becomes a UnixFS file laid out by boxo's balanced importer (raw
// leaves, CIDv1, at most maxLinks links per node) and its dag-pb root is the value's CID. Every
// block it stores is recorded, in order, so that a test can write the CAR `ipfs dag export` would
// give without going through WriteCAR.
type kuboLike struct {
	*hamt.MemoryCAS
	chunk    int64
	maxLinks int
	mu       sync.Mutex // guards blocks and files: a CAS is used by concurrent flush workers
	blocks   []carBlock
	files    map[string][]byte // dag-pb root → file bytes
}

type carBlock struct {
	id   cid.Cid
	data []byte
}

func newKuboLike(chunk int64, maxLinks int) *kuboLike {
	return &kuboLike{MemoryCAS: hamt.NewMemoryCAS(), chunk: chunk, maxLinks: maxLinks, files: map[string][]byte{}}
}

func (k *kuboLike) Save(ctx context.Context, data []byte, codec multicodec.Code) (cid.Cid, error) {
	if int64(len(data)) <= k.chunk || codec != multicodec.Raw { // nodes stay whole, even over a test's tiny chunk
		id, err := k.MemoryCAS.Save(ctx, data, codec)
		k.mu.Lock()
		k.blocks = append(k.blocks, carBlock{id, bytes.Clone(data)})
		k.mu.Unlock()
		return id, err
	}
	root, blocks, err := importFile(ctx, data, k.chunk, k.maxLinks)
	if err != nil {
		return cid.Undef, err
	}
	for _, b := range blocks {
		if err := k.Put(ctx, b.id, b.data); err != nil {
			return cid.Undef, err
		}
	}
	k.mu.Lock()
	k.blocks = append(k.blocks, blocks...)
	k.files[root.KeyString()] = bytes.Clone(data)
	k.mu.Unlock()
	return root, nil
}

// importFile lays data out as Kubo's adder does and returns the root and every distinct block,
// root first.
func importFile(ctx context.Context, data []byte, chunkSize int64, maxLinks int) (cid.Cid, []carBlock, error) {
	prefix, err := merkledag.PrefixForCidVersion(1)
	if err != nil {
		return cid.Undef, nil, err
	}
	prefix.MhType, prefix.MhLength = multihash.BLAKE3, -1
	dserv := mdtest.Mock()
	params := helpers.DagBuilderParams{Dagserv: dserv, RawLeaves: true, Maxlinks: maxLinks, CidBuilder: prefix}
	db, err := params.New(chunk.NewSizeSplitter(bytes.NewReader(data), chunkSize))
	if err != nil {
		return cid.Undef, nil, err
	}
	root, err := balanced.Layout(db)
	if err != nil {
		return cid.Undef, nil, err
	}
	var out []carBlock
	seen := map[string]bool{}
	var walk func(id cid.Cid) error
	walk = func(id cid.Cid) error {
		if seen[id.KeyString()] {
			return nil
		}
		seen[id.KeyString()] = true
		nd, err := dserv.Get(ctx, id)
		if err != nil {
			return err
		}
		out = append(out, carBlock{id, nd.RawData()})
		for _, l := range nd.Links() {
			if err := walk(l.Cid); err != nil {
				return err
			}
		}
		return nil
	}
	return root.Cid(), out, walk(root.Cid())
}

// writeCARv1 writes blocks as a CARv1 with the given roots, as `ipfs dag export` does.
func writeCARv1(t testing.TB, roots []cid.Cid, blocks []carBlock) []byte {
	t.Helper()
	var buf bytes.Buffer
	w, err := storage.NewWritable(&buf, roots, carv2.WriteAsCarV1(true), carv2.AllowDuplicatePuts(true))
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range blocks {
		if err := w.Put(context.Background(), b.id.KeyString(), b.data); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Finalize(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
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
			car := writeCARv1(t, []cid.Cid{root}, append([]carBlock{{root, mustLoad(t, src, root)}}, src.blocks...))

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
	_, blocks, err := importFile(ctx, data, 64, 4)
	if err != nil {
		t.Fatal(err)
	}
	var inner, leaf cid.Cid
	for _, b := range blocks[1:] {
		switch b.id.Prefix().Codec {
		case uint64(multicodec.DagPb):
			inner = b.id
		case uint64(multicodec.Raw):
			leaf = b.id
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
