package hamt_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"iter"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/hamt-go/hamt"
)

// zarrTestdata is the Zarr v3 hierarchy made by internal/zarrgen (go generate ./...).
const zarrTestdata = "testdata/zarr"

// readTree returns every regular file under dir by slash-separated relative path.
func readTree(t testing.TB, dir string) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		out[filepath.ToSlash(rel)] = b
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// assertSameTree fails unless got and want hold the same paths with the same bytes.
func assertSameTree(t testing.TB, got, want map[string][]byte) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("%d files, want %d", len(got), len(want))
	}
	for k, w := range want {
		g, ok := got[k]
		switch {
		case !ok:
			t.Errorf("%s missing", k)
		case !bytes.Equal(g, w):
			t.Errorf("%s: %d bytes differ from the original's %d", k, len(g), len(w))
		}
	}
}

// importTree imports dir into a new map on cas and returns the flushed map and its store.
func importTree(t testing.TB, cas hamt.CAS, dir string, opts ...hamt.DirOption) (*hamt.ZarrStore, hamt.DirStats) {
	t.Helper()
	ctx := context.Background()
	store := zarrNewStore(t, cas)
	stats, err := hamt.ImportDir(ctx, store, dir, opts...)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := store.Map().Flush(ctx); err != nil {
		t.Fatal(err)
	}
	return store, stats
}

// reopen returns a read-only store on the flushed root of s's map.
func reopen(t testing.TB, cas hamt.CAS, s *hamt.ZarrStore, opts ...hamt.Option) *hamt.ZarrStore {
	t.Helper()
	root, err := s.Map().Root()
	if err != nil {
		t.Fatal(err)
	}
	m, err := hamt.Open(context.Background(), cas, hamt.Bytes, root, opts...)
	if err != nil {
		t.Fatal(err)
	}
	rs, err := hamt.NewZarrStore(m)
	if err != nil {
		t.Fatal(err)
	}
	return rs
}

// TestImportExportTestdata: the bundled hierarchy survives import, flush, a read-only reopen and
// export byte for byte, and the keys are the slash-separated relative paths.
func TestImportExportTestdata(t *testing.T) {
	ctx := context.Background()
	want := readTree(t, zarrTestdata)
	if len(want) < 10 {
		t.Fatalf("testdata/zarr has %d files: run go generate ./...", len(want))
	}
	cas := hamt.NewMemoryCAS()
	store, stats := importTree(t, cas, zarrTestdata)
	var total int64
	for _, b := range want {
		total += int64(len(b))
	}
	if stats.Files != len(want) || stats.Bytes != total || stats.Skipped != 0 {
		t.Errorf("stats %+v, want %d files of %d bytes, none skipped", stats, len(want), total)
	}
	rs := reopen(t, cas, store)
	for k, w := range want {
		got, err := rs.Get(ctx, k, hamt.ByteRange{})
		if err != nil || !bytes.Equal(got, w) {
			t.Fatalf("Get(%q) = %d bytes, %v; want the file's %d bytes", k, len(got), err, len(w))
		}
	}
	out := t.TempDir()
	es, err := hamt.ExportDir(ctx, rs, out)
	if err != nil {
		t.Fatal(err)
	}
	if es.Files != len(want) || es.Bytes != total {
		t.Errorf("export stats %+v, want %d files of %d bytes", es, len(want), total)
	}
	assertSameTree(t, readTree(t, out), want)
}

// TestImportExportManyFiles round-trips a generated tree of 5,000 small files (some empty) in
// nested directories, with progress reported once per file and totals known from the start.
func TestImportExportManyFiles(t *testing.T) {
	n := 5_000 // 20,000 took 16-34 s of the suite and found nothing 5,000 does not
	if testing.Short() {
		n = 2_000
	}
	dir := t.TempDir()
	r := rand.New(rand.NewPCG(5, 6))
	want := map[string][]byte{}
	made := map[string]bool{}
	var total int64
	for i := range n {
		key := fmt.Sprintf("g%d/arr%d/c/%d/%d", i%7, i%13, i/100, i%100)
		b := make([]byte, r.IntN(600))
		for j := range b {
			b[j] = byte(r.Uint32())
		}
		p := filepath.Join(dir, filepath.FromSlash(key))
		if !made[filepath.Dir(p)] {
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				t.Fatal(err)
			}
			made[filepath.Dir(p)] = true
		}
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		want[key] = b
		total += int64(len(b))
	}
	var calls, scans int
	var found int64
	var last hamt.Progress
	cas := hamt.NewMemoryCAS()
	store, stats := importTree(t, cas, dir, hamt.WithDirWorkers(8), hamt.WithProgress(func(p hamt.Progress) {
		if p.Scanning { // the listing, file by file, before any copy
			scans++
			if calls > 0 || p.TotalFiles != scans || p.TotalBytes < found || p.Files != 0 {
				t.Errorf("scanning progress %+v at scan %d after %d copies", p, scans, calls)
			}
			found = p.TotalBytes
			return
		}
		calls++ // serialized by ImportDir: -race would catch a concurrent call
		if p.TotalFiles != n || p.TotalBytes != total || p.Files != calls {
			t.Errorf("progress %+v at call %d, want totals %d files %d bytes", p, calls, n, total)
		}
		last = p
	}))
	if scans != n || found != total {
		t.Errorf("scanning reported %d files, %d bytes; want %d, %d", scans, found, n, total)
	}
	if calls != n || last.Files != n || last.Bytes != total || stats.Files != n {
		t.Errorf("%d progress calls, last %+v, stats %+v; want %d files, %d bytes", calls, last, stats, n, total)
	}
	if got, _ := store.Map().Len(context.Background()); got != n {
		t.Errorf("map holds %d keys, want %d", got, n)
	}
	out := filepath.Join(t.TempDir(), "new", "dir")
	var listed, written int
	if _, err := hamt.ExportDir(context.Background(), reopen(t, cas, store), out, hamt.WithDirWorkers(4), hamt.WithProgress(func(p hamt.Progress) {
		if p.Scanning {
			listed++
			if written > 0 || p.TotalFiles != listed || p.TotalBytes != -1 {
				t.Errorf("export scanning progress %+v at key %d", p, listed)
			}
		} else {
			written++
		}
	})); err != nil {
		t.Fatal(err)
	}
	if listed != n || written != n {
		t.Errorf("export reported %d keys listed, %d written; want %d", listed, written, n)
	}
	assertSameTree(t, readTree(t, out), want)
}

// TestImportSkipsNonRegular: symlinks (to files and to directories) are counted as skipped and
// not followed; everything else is imported.
func TestImportSkipsNonRegular(t *testing.T) {
	dir := t.TempDir()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(dir, "a", "b"), 0o755))
	must(os.WriteFile(filepath.Join(dir, "a", "b", "x"), []byte("x"), 0o644))
	must(os.WriteFile(filepath.Join(dir, "y"), nil, 0o644))
	must(os.Symlink(filepath.Join(dir, "y"), filepath.Join(dir, "link-to-file")))
	must(os.Symlink(filepath.Join(dir, "a"), filepath.Join(dir, "link-to-dir")))
	store, stats := importTree(t, hamt.NewMemoryCAS(), dir)
	if stats.Files != 2 || stats.Skipped != 2 || stats.Bytes != 1 {
		t.Errorf("stats %+v, want 2 files of 1 byte, 2 skipped", stats)
	}
	got := listSorted(t, store.List(context.Background()))
	if strings.Join(got, ",") != "a/b/x,y" {
		t.Errorf("keys %v, want [a/b/x y]", got)
	}
}

// listSorted drains a key iterator and sorts the keys.
func listSorted(t testing.TB, seq iter.Seq2[string, error]) []string {
	t.Helper()
	var out []string
	for k, err := range seq {
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// failingSetter fails its nth Set.
type failingSetter struct {
	hamt.Setter
	n, calls atomic.Int64
}

var errSetFailed = errors.New("set failed on purpose")

func (f *failingSetter) Set(ctx context.Context, key string, v []byte) error {
	if f.calls.Add(1) == f.n.Load() {
		return errSetFailed
	}
	return f.Setter.Set(ctx, key, v)
}

// TestImportFailures: a failing Set, a missing directory and a cancelled context each stop the
// import with an error saying so.
func TestImportFailures(t *testing.T) {
	ctx := context.Background()
	m, err := hamt.New(ctx, hamt.NewMemoryCAS(), hamt.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	failing := &failingSetter{Setter: m}
	failing.n.Store(3)
	if _, err := hamt.ImportDir(ctx, failing, zarrTestdata, hamt.WithDirWorkers(2)); !errors.Is(err, errSetFailed) {
		t.Errorf("failing Set: %v, want errSetFailed", err)
	}
	if _, err := hamt.ImportDir(ctx, m, filepath.Join(t.TempDir(), "nope")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing dir: %v, want fs.ErrNotExist", err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := hamt.ImportDir(cctx, m, zarrTestdata); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: %v, want context.Canceled", err)
	}
	if _, err := hamt.ImportDir(ctx, m, zarrTestdata, hamt.WithDirWorkers(0)); err == nil {
		t.Error("0 workers accepted")
	}
	// A read-only map refuses the import with ErrReadOnly.
	if err := m.MakeReadOnly(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := hamt.ImportDir(ctx, m, zarrTestdata); !errors.Is(err, hamt.ErrReadOnly) {
		t.Errorf("read-only map: %v, want ErrReadOnly", err)
	}
}

// TestExportRefusesUnsafeKeys: a key that would escape the directory (or is not a path at all)
// makes the export fail before it writes anything.
func TestExportRefusesUnsafeKeys(t *testing.T) {
	ctx := context.Background()
	for _, bad := range []string{"../evil", "/abs", "a/../../b", "", "a//b", "./x"} {
		m, err := hamt.New(ctx, hamt.NewMemoryCAS(), hamt.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range []string{"ok/zarr.json", bad} {
			if err := m.Set(ctx, k, []byte("v")); err != nil {
				t.Fatal(err)
			}
		}
		store, err := hamt.NewZarrStore(m)
		if err != nil {
			t.Fatal(err)
		}
		out := filepath.Join(t.TempDir(), "out")
		if _, err := hamt.ExportDir(ctx, store, out); !errors.Is(err, hamt.ErrUnexportableKey) {
			t.Errorf("key %q: %v, want ErrUnexportableKey", bad, err)
		}
		if _, err := os.Stat(out); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("key %q: export wrote %s before failing (%v)", bad, out, err)
		}
	}
}

// TestImportExportEncrypted: importing into an encrypted store stores sealed values, and
// exporting from it (reopened read-only with the same key) gives back the plaintext files.
func TestImportExportEncrypted(t *testing.T) {
	ctx := context.Background()
	key := bytes.Repeat([]byte{7}, 32)
	cas := hamt.NewMemoryCAS()
	m, err := hamt.New(ctx, cas, hamt.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	enc, err := hamt.NewEncryptedZarrStore(m, key, []byte("hdr"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := hamt.ImportDir(ctx, enc, zarrTestdata); err != nil {
		t.Fatal(err)
	}
	root, err := m.Flush(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := readTree(t, zarrTestdata)
	raw, err := m.Get(ctx, "zarr.json")
	if err != nil || bytes.Contains(raw, want["zarr.json"][:10]) || len(raw) != len(want["zarr.json"])+40 {
		t.Errorf("stored zarr.json is %d bytes (%v), want sealed: %d bytes not containing the plaintext", len(raw), err, len(want["zarr.json"])+40)
	}
	ro, err := hamt.Open(ctx, cas, hamt.Bytes, root)
	if err != nil {
		t.Fatal(err)
	}
	dec, err := hamt.NewEncryptedZarrStore(ro, key, []byte("hdr"))
	if err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	if _, err := hamt.ExportDir(ctx, dec.ZarrStore, out); err != nil {
		t.Fatal(err)
	}
	assertSameTree(t, readTree(t, out), want)
}
