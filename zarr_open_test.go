package hamt_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/hamt-go/hamt"
	"github.com/ipfs/go-cid"
	"github.com/multiformats/go-multicodec"
	"pgregory.net/rapid"
)

// hamtDataset imports testdata/zarr into a new HAMT-layout dataset on cas and returns its root.
func hamtDataset(t *testing.T, cas hamt.CAS, opts ...hamt.Option) cid.Cid {
	t.Helper()
	ctx := context.Background()
	z, err := hamt.NewZarr(ctx, cas, hamt.LayoutHAMT, hamt.WithMapOptions(opts...))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := hamt.ImportDir(ctx, z, filepath.Join("testdata", "zarr")); err != nil {
		t.Fatal(err)
	}
	root, err := z.Flush(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return root
}

func TestDetectLayoutTellsAHAMTRootFromOtherBlocks(t *testing.T) {
	ctx := context.Background()
	cas := hamt.NewMemoryCAS()
	root := hamtDataset(t, cas)
	value, _ := cas.Save(ctx, []byte(`{"zarr_format":3}`), multicodec.Raw)
	mapBlock, _ := hamt.DagCBOR.Encode(map[string]any{"manifest": "sharded_zarr_v2"})
	noManifest, _ := cas.Save(ctx, mapBlock, multicodec.DagCbor)
	listBlock, _ := hamt.DagCBOR.Encode([]any{nil, nil})
	shortList, _ := cas.Save(ctx, listBlock, multicodec.DagCbor)
	missing, _ := hamt.NewMemoryCAS().Save(ctx, []byte("elsewhere"), multicodec.Raw)

	if l, err := hamt.DetectLayout(ctx, cas, root); err != nil || l != hamt.LayoutHAMT {
		t.Errorf("HAMT root: %v, %v; want hamt", l, err)
	}
	for name, c := range map[string]struct {
		id   cid.Cid
		want error
		says string
	}{
		"a raw value":              {value, hamt.ErrUnknownLayout, "neither a list nor a map"},
		"a map without a manifest": {noManifest, hamt.ErrUnknownLayout, "map without a manifest_version"},
		"a list of 2":              {shortList, hamt.ErrUnknownLayout, "not 256 slots long"},
		"a missing block":          {missing, hamt.ErrMissingBlock, ""},
	} {
		l, err := hamt.DetectLayout(ctx, cas, c.id)
		if !errors.Is(err, c.want) || !strings.Contains(fmt.Sprint(err), c.says) {
			t.Errorf("%s: %v, %v; want %v saying %q", name, l, err, c.want, c.says)
		}
		if _, err := hamt.OpenZarr(ctx, cas, c.id); !errors.Is(err, c.want) {
			t.Errorf("OpenZarr of %s: %v, want %v", name, err, c.want)
		}
	}
}

func TestOpenZarrOfAHAMTRootIsReadOnlyUnlessAskedToWrite(t *testing.T) {
	ctx := context.Background()
	cas := hamt.NewMemoryCAS()
	root := hamtDataset(t, cas)
	z, err := hamt.OpenZarr(ctx, cas, root)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := z.(*hamt.ZarrStore); !ok || !z.ReadOnly() {
		t.Fatalf("OpenZarr gave %T, read-only %v; want a read-only *ZarrStore", z, z.ReadOnly())
	}
	if err := z.Set(ctx, "k", []byte("v")); !errors.Is(err, hamt.ErrReadOnly) {
		t.Errorf("Set on a read-only dataset: %v", err)
	}
	w, err := hamt.OpenZarr(ctx, cas, root, hamt.WithZarrWrite())
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Set(ctx, "k", []byte("v")); err != nil {
		t.Fatal(err)
	}
	r2, err := w.Flush(ctx)
	if err != nil || r2.Equals(root) {
		t.Fatalf("flush after a set: %s, %v", r2, err)
	}
	back, err := hamt.OpenZarr(ctx, cas, r2)
	if err != nil {
		t.Fatal(err)
	}
	if b, err := back.Get(ctx, "k", hamt.ByteRange{}); err != nil || string(b) != "v" {
		t.Errorf("reopened: %q, %v", b, err)
	}
}

func newRecordingZarr(t *testing.T, cas hamt.CAS) (*recordingSetter, hamt.ZarrDataset) {
	z, err := hamt.NewZarr(context.Background(), cas, hamt.LayoutHAMT)
	if err != nil {
		t.Fatal(err)
	}
	return &recordingSetter{Setter: z}, z
}

func TestCopyZarrSetsMetadataFirstAndCopiesEveryKey(t *testing.T) {
	ctx := context.Background()
	cas := hamt.NewMemoryCAS()
	root := hamtDataset(t, cas)
	src, err := hamt.OpenZarr(ctx, cas, root)
	if err != nil {
		t.Fatal(err)
	}
	rec, dst := newRecordingZarr(t, cas)
	var last hamt.Progress
	st, err := hamt.CopyZarr(ctx, recordingZarr{rec, dst}, src, hamt.WithDirWorkers(4), hamt.WithProgress(func(p hamt.Progress) { last = p }))
	if err != nil {
		t.Fatal(err)
	}
	checkMetadataFirst(t, rec.keys)
	if st.Files != 25 || last.Files != 25 || last.TotalFiles != 25 || st.Bytes != last.Bytes {
		t.Errorf("stats %+v, last progress %+v", st, last)
	}
	got, err := dst.Flush(ctx)
	if err != nil || !got.Equals(root) {
		t.Errorf("copy's root %s (%v), want the source's %s", got, err, root)
	}
}

func TestConvertZarrWithinTheHAMTLayoutRebucketsAndComesBack(t *testing.T) {
	ctx := context.Background()
	cas := hamt.NewMemoryCAS()
	root := hamtDataset(t, cas)
	b1, err := hamt.ConvertZarr(ctx, cas, root, hamt.LayoutHAMT, hamt.WithMapOptions(hamt.WithBucketSize(1)))
	if err != nil {
		t.Fatal(err)
	}
	if want := hamtDataset(t, hamt.NewMemoryCAS(), hamt.WithBucketSize(1)); !b1.Equals(want) {
		t.Errorf("converted to bucket size 1: %s, want a fresh import's %s", b1, want)
	}
	back, err := hamt.ConvertZarr(ctx, cas, b1, hamt.LayoutHAMT)
	if err != nil || !back.Equals(root) {
		t.Errorf("converted back: %s (%v), want %s", back, err, root)
	}
	if _, err := hamt.ConvertZarr(ctx, cas, root, hamt.Layout(9)); err == nil {
		t.Error("an unknown layout converted")
	}
}

// recordingZarr is a Zarr whose Sets go through a recordingSetter.
type recordingZarr struct {
	rec *recordingSetter
	hamt.ZarrDataset
}

func (r recordingZarr) Set(ctx context.Context, key string, v []byte) error {
	return r.rec.Set(ctx, key, v)
}

// TestDiffZarrAgreesWithDiffOnHAMTRoots: for random pairs of maps, the listing diff and the
// structural one report the same changes.
func TestDiffZarrAgreesWithDiffOnHAMTRoots(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		ctx := context.Background()
		cas := hamt.NewMemoryCAS()
		key := rapid.SampledFrom([]string{"zarr.json", "a/zarr.json", "a/c/0", "a/c/1", "b/c/0/0", "b/c/0/1", "x"})
		build := func(label string) (cid.Cid, hamt.ZarrDataset) {
			z, err := hamt.NewZarr(ctx, cas, hamt.LayoutHAMT, hamt.WithMapOptions(hamt.WithBucketSize(1)))
			if err != nil {
				rt.Fatal(err)
			}
			for k, v := range rapid.MapOf(key, rapid.SampledFrom([]string{"1", "2"})).Draw(rt, label) {
				if err := z.Set(ctx, k, []byte(v)); err != nil {
					rt.Fatal(err)
				}
			}
			root, err := z.Flush(ctx)
			if err != nil {
				rt.Fatal(err)
			}
			return root, z
		}
		ra, za := build("a")
		rb, zb := build("b")
		collect := func(seq func(func(hamt.Change, error) bool)) []hamt.Change {
			var out []hamt.Change
			for c, err := range seq {
				if err != nil {
					rt.Fatal(err)
				}
				out = append(out, c)
			}
			slices.SortFunc(out, func(x, y hamt.Change) int { return strings.Compare(x.Key, y.Key) })
			return out
		}
		want := collect(hamt.Diff(ctx, cas, ra, rb))
		got := collect(hamt.DiffZarr(ctx, za, zb))
		if !slices.EqualFunc(got, want, func(x, y hamt.Change) bool {
			return x.Key == y.Key && x.Kind == y.Kind && x.Old.Equals(y.Old) && x.New.Equals(y.New)
		}) {
			rt.Fatalf("DiffZarr %v\nDiff     %v", got, want)
		}
	})
}

func TestZarrStoreSetCIDPointsAtABlockAndRefusesEncryption(t *testing.T) {
	ctx := context.Background()
	cas := hamt.NewMemoryCAS()
	m, err := hamt.New(ctx, cas, hamt.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	z, err := hamt.NewZarrStore(m)
	if err != nil {
		t.Fatal(err)
	}
	if err := z.Set(ctx, "a/zarr.json", []byte("old")); err != nil {
		t.Fatal(err)
	}
	if _, err := z.Get(ctx, "a/zarr.json", hamt.ByteRange{}); err != nil { // cached now
		t.Fatal(err)
	}
	id, _ := cas.Save(ctx, []byte("new"), multicodec.Raw)
	if err := z.SetCID(ctx, "a/zarr.json", id); err != nil {
		t.Fatal(err)
	}
	if b, err := z.Get(ctx, "a/zarr.json", hamt.ByteRange{}); err != nil || string(b) != "new" {
		t.Errorf("after SetCID: %q, %v (a stale cached document?)", b, err)
	}
	if err := z.SetCID(ctx, "\xff", id); !errors.Is(err, hamt.ErrInvalidKey) {
		t.Errorf("SetCID of an invalid key: %v", err)
	}
	em, _ := hamt.New(ctx, cas, hamt.Bytes)
	enc, err := hamt.NewEncryptedZarrStore(em, make([]byte, 32), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := enc.SetCID(ctx, "k", id); !errors.Is(err, errors.ErrUnsupported) {
		t.Errorf("SetCID on an encrypted store: %v", err)
	}
}
