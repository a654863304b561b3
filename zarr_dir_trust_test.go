//go:build unix

package hamt_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/hamt-go/hamt"
)

// zarrOf returns a ZarrStore on a new in-memory map holding files (keys are set on the map, which
// checks nothing but UTF-8, so that they may be paths no file system takes).
func zarrOf(t testing.TB, files map[string][]byte) *hamt.ZarrStore {
	t.Helper()
	ctx := context.Background()
	m, err := hamt.New(ctx, hamt.NewMemoryCAS(), hamt.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range files {
		if err := m.Set(ctx, k, v); err != nil {
			t.Fatal(err)
		}
	}
	s, err := hamt.NewZarrStore(m)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// goodFiles is n small Zarr-like chunk files, enough that an export writes several before it
// reaches a bad key.
func goodFiles(n int) map[string][]byte {
	files := map[string][]byte{"zarr.json": []byte(`{"zarr_format": 3}`)}
	for i := range n {
		files[fmt.Sprintf("arr/c/%d/%d", i/10, i%10)] = fmt.Appendf(nil, "chunk %d", i)
	}
	return files
}

// entries lists every entry under dir (files, directories, links) by slash-separated relative
// path, with a letter for its type: f, d, l or ?.
func entries(t testing.TB, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == dir {
			return nil
		}
		rel, _ := filepath.Rel(dir, p)
		kind := "?"
		switch {
		case d.Type().IsRegular():
			kind = "f"
		case d.IsDir():
			kind = "d"
		case d.Type()&fs.ModeSymlink != 0:
			kind = "l"
		}
		out = append(out, kind+" "+filepath.ToSlash(rel))
		return nil
	})
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		t.Fatal(err)
	}
	slices.Sort(out)
	return out
}

// treeOf is the entries an export of files must make: every key as a file, every prefix as a
// directory.
func treeOf(files map[string][]byte) []string {
	seen := map[string]bool{}
	var out []string
	for k := range files {
		out = append(out, "f "+k)
		for i := range len(k) {
			if k[i] == '/' && !seen[k[:i]] {
				seen[k[:i]] = true
				out = append(out, "d "+k[:i])
			}
		}
	}
	slices.Sort(out)
	return out
}

func mustWrite(t testing.TB, p string, b []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestExportNeverWritesThroughLinksInTheTarget: the repro. A target holding DIR/link ->
// /elsewhere and DIR/f -> /elsewhere/victim is refused as not empty; replacing it removes the
// links themselves and writes real files, and /elsewhere is untouched either way.
func TestExportNeverWritesThroughLinksInTheTarget(t *testing.T) {
	ctx := context.Background()
	base := t.TempDir()
	elsewhere, dir := filepath.Join(base, "elsewhere"), filepath.Join(base, "dir")
	mustWrite(t, filepath.Join(elsewhere, "victim"), []byte("precious"))
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(elsewhere, filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(elsewhere, "victim"), filepath.Join(dir, "f")); err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{"link/x": []byte("x"), "f": []byte("overwritten")}
	src := zarrOf(t, files)
	wantElsewhere := []string{"f victim"}

	_, err := hamt.ExportDir(ctx, src, dir)
	if !errors.Is(err, hamt.ErrDirNotEmpty) {
		t.Errorf("export into a directory holding links: %v, want ErrDirNotEmpty", err)
	}
	if got := entries(t, dir); !slices.Equal(got, []string{"l f", "l link"}) {
		t.Errorf("the refused target now holds %v", got)
	}
	if got := entries(t, elsewhere); !slices.Equal(got, wantElsewhere) {
		t.Errorf("after the refused export, elsewhere holds %v, want %v", got, wantElsewhere)
	}

	if _, err := hamt.ExportDir(ctx, src, dir, hamt.WithReplace()); err != nil {
		t.Fatal(err)
	}
	if got, want := entries(t, dir), treeOf(files); !slices.Equal(got, want) {
		t.Errorf("the replaced target holds %v, want %v", got, want)
	}
	assertSameTree(t, readTree(t, dir), files)
	if got := entries(t, elsewhere); !slices.Equal(got, wantElsewhere) {
		t.Errorf("after the replacing export, elsewhere holds %v, want %v", got, wantElsewhere)
	}
	if b, _ := os.ReadFile(filepath.Join(elsewhere, "victim")); string(b) != "precious" {
		t.Errorf("victim holds %q", b)
	}
}

// TestExportChecksEveryKeyBeforeWriting: a key that passes as a path but cannot be a file (or
// is no relative path at all) fails the export with ErrUnexportableKey and an error naming the
// key and the reason, before a single file or directory is made.
func TestExportChecksEveryKeyBeforeWriting(t *testing.T) {
	long := strings.Repeat("n", 300)
	for _, c := range []struct {
		name string
		keys []string
		why  string
	}{
		{"a NUL byte", []string{"arr/c/9/\x00"}, "NUL byte"},
		{"a file that another key needs as a directory", []string{"good", "good/k1"}, `key "good" is a file, but key "good/k1" needs it to be a directory`},
		{"a 300-byte element", []string{"arr/" + long}, "path element of 300 bytes"},
		{"a dot-dot element", []string{"../x"}, `".." path element`},
		{"a dot element", []string{"a/./b"}, `"." path element`},
		{"an absolute path", []string{"/abs"}, "absolute path"},
		{"a doubled slash", []string{"a//b"}, "empty path element"},
		{"a trailing slash", []string{"arr/"}, "empty path element"},
		{"an empty key", []string{""}, "is empty"},
		{"a key of 2,500 elements, longer than a path may be", []string{strings.Repeat("d/", 2500) + "x"}, "5001 bytes long"},
	} {
		t.Run(c.name, func(t *testing.T) {
			files := goodFiles(40)
			for _, k := range c.keys {
				files[k] = []byte("bad")
			}
			out := filepath.Join(t.TempDir(), "out")
			_, err := hamt.ExportDir(context.Background(), zarrOf(t, files), out, hamt.WithDirWorkers(1))
			if !errors.Is(err, hamt.ErrUnexportableKey) || !strings.Contains(err.Error(), c.why) || strings.Contains(err.Error(), "UTF-8") {
				t.Errorf("keys %q: %v; want ErrUnexportableKey saying %q", c.keys, err, c.why)
			}
			if err != nil && !strings.Contains(err.Error(), fmt.Sprintf("%q", c.keys[len(c.keys)-1])) {
				t.Errorf("the error does not name the key %q: %v", c.keys[len(c.keys)-1], err)
			}
			if _, serr := os.Lstat(out); !errors.Is(serr, fs.ErrNotExist) {
				t.Errorf("export made %s before failing: %v", out, entries(t, out))
			}
		})
	}
}

// TestExportRefusesANonEmptyTarget: exporting a new root over an older export is refused, so the
// older chunks cannot be read as the new dataset's; with WithReplace the directory then holds
// exactly the new export (the chunk the new root lacks is gone, so a reader sees a fill value).
func TestExportRefusesANonEmptyTarget(t *testing.T) {
	ctx := context.Background()
	out := t.TempDir() // an existing empty directory is fine
	older := goodFiles(20)
	if _, err := hamt.ExportDir(ctx, zarrOf(t, older), out); err != nil {
		t.Fatal(err)
	}
	newer := goodFiles(10)
	newer["arr/c/0/0"] = []byte("rewritten")
	if _, err := hamt.ExportDir(ctx, zarrOf(t, newer), out); !errors.Is(err, hamt.ErrDirNotEmpty) {
		t.Errorf("export over an older export: %v, want ErrDirNotEmpty", err)
	}
	assertSameTree(t, readTree(t, out), older)
	st, err := hamt.ExportDir(ctx, zarrOf(t, newer), out, hamt.WithReplace())
	if err != nil {
		t.Fatal(err)
	}
	if st.Files != len(newer) {
		t.Errorf("stats %+v, want %d files", st, len(newer))
	}
	if got, want := entries(t, out), treeOf(newer); !slices.Equal(got, want) {
		t.Errorf("replaced export holds %v, want %v", got, want)
	}
	assertSameTree(t, readTree(t, out), newer)

	// A file where the directory should be is refused, with or without WithReplace.
	file := filepath.Join(t.TempDir(), "file")
	mustWrite(t, file, []byte("keep"))
	for _, opts := range [][]hamt.DirOption{nil, {hamt.WithReplace()}} {
		if _, err := hamt.ExportDir(ctx, zarrOf(t, newer), file, opts...); err == nil || !strings.Contains(err.Error(), "not a directory") {
			t.Errorf("export onto a file: %v, want 'not a directory'", err)
		}
	}
	if b, _ := os.ReadFile(file); string(b) != "keep" {
		t.Errorf("the file now holds %q", b)
	}
}

// TestExportFollowsOnlyTheNamedLink: a target that is itself a symbolic link to a directory is
// followed (the caller named it); the export lands in the directory it points to.
func TestExportFollowsOnlyTheNamedLink(t *testing.T) {
	base := t.TempDir()
	real, link := filepath.Join(base, "real"), filepath.Join(base, "link")
	if err := os.Mkdir(real, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(real, link); err != nil {
		t.Fatal(err)
	}
	files := goodFiles(3)
	if _, err := hamt.ExportDir(context.Background(), zarrOf(t, files), link); err != nil {
		t.Fatal(err)
	}
	assertSameTree(t, readTree(t, real), files)
	if fi, err := os.Lstat(link); err != nil || fi.Mode()&fs.ModeSymlink == 0 {
		t.Errorf("the link is no longer a link: %v %v", fi, err)
	}
}

// TestExportThatFailsMidwayLeavesTheTargetAsItWas: an export cancelled after some files were
// written removes them: a new target is not left behind, an empty one stays empty, and a
// replaced one keeps its old contents.
func TestExportThatFailsMidwayLeavesTheTargetAsItWas(t *testing.T) {
	files := goodFiles(60)
	cancelAfter := func(n int) (context.Context, hamt.DirOption) {
		ctx, cancel := context.WithCancel(context.Background())
		t.Cleanup(cancel)
		return ctx, hamt.WithProgress(func(p hamt.Progress) {
			if p.Files == n {
				cancel()
			}
		})
	}
	check := func(name, out string, want []string) {
		t.Helper()
		ctx, opt := cancelAfter(10)
		_, err := hamt.ExportDir(ctx, zarrOf(t, files), out, opt, hamt.WithDirWorkers(2), hamt.WithReplace())
		if !errors.Is(err, context.Canceled) {
			t.Errorf("%s: %v, want context.Canceled", name, err)
		}
		if got := entries(t, out); !slices.Equal(got, want) {
			t.Errorf("%s: a failed export left %v, want %v", name, got, want)
		}
	}
	fresh := filepath.Join(t.TempDir(), "new")
	check("new directory", fresh, nil)
	if _, err := os.Lstat(fresh); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a failed export left %s behind: %v", fresh, err)
	}
	check("empty directory", t.TempDir(), nil)
	old := t.TempDir()
	mustWrite(t, filepath.Join(old, "zarr.json"), []byte("old"))
	mustWrite(t, filepath.Join(old, "arr", "c", "0", "0"), []byte("old chunk"))
	check("replaced directory", old, []string{"d arr", "d arr/c", "d arr/c/0", "f arr/c/0/0", "f zarr.json"})
	if b, _ := os.ReadFile(filepath.Join(old, "arr", "c", "0", "0")); string(b) != "old chunk" {
		t.Errorf("the old chunk now holds %q", b)
	}
}

// TestExportKeepsKeysThatACaseFoldingFileSystemWouldMerge: on a file system that folds case
// (macOS, Windows), "A" and "a" would be one file and a key lost; the export fails instead and
// leaves nothing. Skipped where the temporary directory is case-sensitive.
func TestExportKeepsKeysThatACaseFoldingFileSystemWouldMerge(t *testing.T) {
	probe := t.TempDir()
	mustWrite(t, filepath.Join(probe, "x"), nil)
	if _, err := os.Stat(filepath.Join(probe, "X")); err != nil {
		t.Skip("the temporary directory is case-sensitive")
	}
	for _, keys := range [][]string{{"A", "a"}, {"D/x", "d/y"}, {"F", "f/y"}} {
		out := filepath.Join(t.TempDir(), "out")
		files := map[string][]byte{keys[0]: []byte("0"), keys[1]: []byte("1")}
		if _, err := hamt.ExportDir(context.Background(), zarrOf(t, files), out); err == nil {
			t.Errorf("keys %q exported to %v", keys, entries(t, out))
		}
		if _, err := os.Lstat(out); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("keys %q: a failed export left %v", keys, entries(t, out))
		}
	}
}

// TestImportRefusesWhatIsNotADirectory: a regular file is no dataset (it used to import as a
// map with the key "."), and a missing path says so.
func TestImportRefusesWhatIsNotADirectory(t *testing.T) {
	ctx := context.Background()
	file := filepath.Join(t.TempDir(), "zarr.json")
	mustWrite(t, file, []byte("{}"))
	m, err := hamt.New(ctx, hamt.NewMemoryCAS(), hamt.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := hamt.ImportDir(ctx, m, file); err == nil || !strings.Contains(err.Error(), "not a directory") {
		t.Errorf("import of a regular file: %v, want 'not a directory'", err)
	}
	if n, _ := m.Len(ctx); n != 0 {
		t.Errorf("the map holds %d keys", n)
	}
	if _, err := hamt.ImportDir(ctx, m, filepath.Join(t.TempDir(), "absent")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("import of nothing: %v, want fs.ErrNotExist", err)
	}
	if _, err := hamt.ImportDir(ctx, m, zarrTestdata, hamt.WithReplace()); err == nil {
		t.Error("ImportDir took WithReplace")
	}
}

// TestImportFollowsTheNamedLinkOnly: DIR that is a symbolic link to a dataset imports the dataset
// (it used to give an empty map); links below DIR are still skipped.
func TestImportFollowsTheNamedLinkOnly(t *testing.T) {
	ctx := context.Background()
	base := t.TempDir()
	abs, err := filepath.Abs(zarrTestdata)
	if err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(base, "dataset")
	if err := os.Symlink(abs, link); err != nil {
		t.Fatal(err)
	}
	store, stats := importTree(t, hamt.NewMemoryCAS(), link)
	want := readTree(t, zarrTestdata)
	if stats.Files != len(want) || stats.Skipped != 0 {
		t.Errorf("stats %+v, want %d files", stats, len(want))
	}
	if n, _ := store.Map().Len(ctx); n != len(want) {
		t.Errorf("the map holds %d keys, want %d", n, len(want))
	}
}

// swapOnFirstSet is a Setter that, on its first Set, runs swap: with one worker, the import has
// listed every file and read only the first, so swap changes the others between listing and
// reading, deterministically.
type swapOnFirstSet struct {
	hamt.Setter
	calls atomic.Int64
	swap  func()
}

func (s *swapOnFirstSet) Set(ctx context.Context, key string, v []byte) error {
	if s.calls.Add(1) == 1 {
		s.swap()
	}
	return s.Setter.Set(ctx, key, v)
}

// TestImportNeverReadsAFileSwappedForALink: files replaced by symbolic links (to a secret outside
// DIR, or to another file inside it) or by a pipe after the listing fail the import with
// ErrFileChanged naming the file; the link targets' bytes are never stored, and a pipe does not
// hang the import.
func TestImportNeverReadsAFileSwappedForALink(t *testing.T) {
	ctx := context.Background()
	base := t.TempDir()
	secret := filepath.Join(base, "secret")
	mustWrite(t, secret, []byte("SECRET"))
	for _, c := range []struct {
		name    string
		replace func(p string) error
	}{
		{"link out of DIR", func(p string) error { return os.Symlink(secret, p) }},
		{"link inside DIR", func(p string) error { return os.Symlink("a0", p) }},
		{"relative link out of DIR", func(p string) error { return os.Symlink("../../secret", p) }},
		{"pipe", func(p string) error { return syscall.Mkfifo(p, 0o644) }},
		{"removed", func(p string) error { return nil }},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := filepath.Join(base, strings.ReplaceAll(c.name, " ", "-"), "ds")
			for i := range 5 {
				mustWrite(t, filepath.Join(dir, fmt.Sprintf("a%d", i)), []byte("inside"))
			}
			m, err := hamt.New(ctx, hamt.NewMemoryCAS(), hamt.Bytes)
			if err != nil {
				t.Fatal(err)
			}
			dst := &swapOnFirstSet{Setter: m, swap: func() {
				for i := 1; i < 5; i++ {
					p := filepath.Join(dir, fmt.Sprintf("a%d", i))
					if err := os.Remove(p); err != nil {
						t.Error(err)
					}
					if err := c.replace(p); err != nil {
						t.Error(err)
					}
				}
			}}
			done := make(chan error, 1)
			go func() {
				_, err := hamt.ImportDir(ctx, dst, dir, hamt.WithDirWorkers(1))
				done <- err
			}()
			select {
			case err = <-done:
			case <-time.After(30 * time.Second): // only a hung import takes this long
				t.Fatal("the import hangs")
			}
			if !errors.Is(err, hamt.ErrFileChanged) || !strings.Contains(err.Error(), `"a1"`) {
				t.Errorf("import: %v, want ErrFileChanged naming a1", err)
			}
			for k, err := range m.Keys(ctx) {
				if err != nil {
					t.Fatal(err)
				}
				if v, _ := m.Get(ctx, k); !bytes.Equal(v, []byte("inside")) {
					t.Errorf("stored %s = %q", k, v)
				}
			}
		})
	}
}

// TestImportNeverReadsThroughADirectorySwappedForALink: a directory replaced after the listing
// by a link (out of DIR, or to another directory inside it) holding a file of the same name fails
// the import with ErrFileChanged; the file behind the link is not stored.
func TestImportNeverReadsThroughADirectorySwappedForALink(t *testing.T) {
	ctx := context.Background()
	outside := filepath.Join(t.TempDir(), "outside")
	mustWrite(t, filepath.Join(outside, "c0"), []byte("SECRET"))
	for _, c := range []struct{ name, target string }{{"out of DIR", outside}, {"inside DIR", "other"}} {
		t.Run(c.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "ds")
			mustWrite(t, filepath.Join(dir, "a"), []byte("inside"))
			mustWrite(t, filepath.Join(dir, "other", "c0"), []byte("other"))
			mustWrite(t, filepath.Join(dir, "sub", "c0"), []byte("inside"))
			m, err := hamt.New(ctx, hamt.NewMemoryCAS(), hamt.Bytes)
			if err != nil {
				t.Fatal(err)
			}
			dst := &swapOnFirstSet{Setter: m, swap: func() { // after "a" is read, before "sub/c0"
				if err := os.Rename(filepath.Join(dir, "sub"), dir+"-sub"); err != nil {
					t.Error(err)
				}
				if err := os.Symlink(c.target, filepath.Join(dir, "sub")); err != nil {
					t.Error(err)
				}
			}}
			_, err = hamt.ImportDir(ctx, dst, dir, hamt.WithDirWorkers(1))
			if !errors.Is(err, hamt.ErrFileChanged) || !strings.Contains(err.Error(), `"sub/c0"`) {
				t.Errorf("import: %v, want ErrFileChanged naming sub/c0", err)
			}
			if _, err := m.Get(ctx, "sub/c0"); !errors.Is(err, hamt.ErrNotFound) {
				t.Errorf("sub/c0 was stored: %v", err)
			}
		})
	}
}

// TestImportDetectsAFileWrittenWhileRead: a file that grows, shrinks or is rewritten (same size,
// new modification time) while the import reads it fails the import with ErrFileChanged naming
// it, rather than storing torn bytes.
func TestImportDetectsAFileWrittenWhileRead(t *testing.T) {
	ctx := context.Background()
	for _, c := range []struct {
		name  string
		write func(p string) error
	}{
		{"grown", func(p string) error {
			f, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND, 0)
			if err != nil {
				return err
			}
			_, err = f.Write([]byte("more"))
			f.Close()
			return err
		}},
		{"shrunk", func(p string) error { return os.Truncate(p, 3) }},
		{"rewritten in place", func(p string) error {
			if err := os.WriteFile(p, []byte("torn-"), 0o644); err != nil {
				return err
			}
			later := time.Now().Add(time.Hour)
			return os.Chtimes(p, later, later)
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			mustWrite(t, filepath.Join(dir, "c", "0"), []byte("whole"))
			mustWrite(t, filepath.Join(dir, "c", "1"), []byte("whole"))
			hamt.SetImportReadHook(t, func(key string) {
				if key == "c/1" {
					if err := c.write(filepath.Join(dir, "c", "1")); err != nil {
						t.Error(err)
					}
				}
			})
			m, err := hamt.New(ctx, hamt.NewMemoryCAS(), hamt.Bytes)
			if err != nil {
				t.Fatal(err)
			}
			_, err = hamt.ImportDir(ctx, m, dir, hamt.WithDirWorkers(1))
			if !errors.Is(err, hamt.ErrFileChanged) || !strings.Contains(err.Error(), `"c/1"`) {
				t.Errorf("import: %v, want ErrFileChanged naming c/1", err)
			}
			if _, err := m.Get(ctx, "c/1"); !errors.Is(err, hamt.ErrNotFound) {
				t.Errorf("c/1 was stored: %v", err)
			}
		})
	}
}

// TestImportRefusesANameThatIsNotUTF8BeforeStoringAnything: such a name cannot be a key; the
// import says so before it stores a single file.
func TestImportRefusesANameThatIsNotUTF8BeforeStoringAnything(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	for i := range 20 {
		mustWrite(t, filepath.Join(dir, fmt.Sprintf("a%02d", i)), []byte("v"))
	}
	bad := filepath.Join(dir, "z\xff")
	if err := os.WriteFile(bad, []byte("v"), 0o644); err != nil {
		t.Skip("this file system refuses the name:", err)
	}
	m, err := hamt.New(ctx, hamt.NewMemoryCAS(), hamt.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	_, err = hamt.ImportDir(ctx, m, dir, hamt.WithDirWorkers(1))
	if !errors.Is(err, hamt.ErrInvalidKey) || !strings.Contains(err.Error(), `"z\xff"`) {
		t.Errorf("import: %v, want ErrInvalidKey naming the file", err)
	}
	if n, _ := m.Len(ctx); n != 0 {
		t.Errorf("%d files stored before the failure", n)
	}
}

// FuzzExportKeys: for any set of keys (data split at 0xff, which no UTF-8 key holds) and any
// starting target (absent, empty, or holding links out of it and replaced), ExportDir either
// refuses a key with ErrUnexportableKey and leaves every file as it was, or writes exactly the
// keys' files inside the target (each holding its value) and nothing outside it.
func FuzzExportKeys(f *testing.F) {
	for _, s := range []string{
		"zarr.json\xffarr/zarr.json\xffarr/c/0/0",
		"good\xffgood/k1",
		"../x\xffok",
		"a\x00b",
		"a/./b\xffa/b",
		"/abs\xffa//b\xffa/\xff",
		strings.Repeat("n", 255) + "\xff" + strings.Repeat("n", 256),
		"A\xffa\xffB/x\xffb/x",
		"link/x\xfff\xffold",
		".hamt-export-0123456789abcdef\xff.hamt-replaced-x/y",
		"a b\xff\t\xff\\\xffcon\xffNUL.txt\xffé/ü\xff😀",
		"" + "\xff" + "x",
	} {
		for mode := range byte(3) {
			f.Add(mode, []byte(s))
		}
	}
	ctx := context.Background()
	f.Fuzz(func(t *testing.T, mode byte, data []byte) {
		if len(data) > 4096 {
			return
		}
		files := map[string][]byte{}
		for k := range bytes.SplitSeq(data, []byte{0xff}) {
			if len(files) < 24 && utf8.Valid(k) {
				files[string(k)] = append([]byte("v:"), k...)
			}
		}
		src := zarrOf(t, files)
		base := t.TempDir()
		outside := filepath.Join(base, "outside")
		mustWrite(t, filepath.Join(outside, "secret"), []byte("secret"))
		out := filepath.Join(base, "out")
		var opts []hamt.DirOption
		switch mode % 3 {
		case 1:
			if err := os.Mkdir(out, 0o755); err != nil {
				t.Fatal(err)
			}
		case 2:
			mustWrite(t, filepath.Join(out, "old"), []byte("old"))
			for name, target := range map[string]string{"link": outside, "f": filepath.Join(outside, "secret"), "rel": "../outside"} {
				if err := os.Symlink(target, filepath.Join(out, name)); err != nil {
					t.Fatal(err)
				}
			}
			opts = append(opts, hamt.WithReplace())
		}
		before := entries(t, base)
		_, err := hamt.ExportDir(ctx, src, out, append(opts, hamt.WithDirWorkers(3))...)
		if err != nil {
			if !errors.Is(err, hamt.ErrUnexportableKey) {
				t.Fatalf("keys %q: the export failed without refusing a key: %v", slices.Sorted(maps.Keys(files)), err)
			}
			if after := entries(t, base); !slices.Equal(after, before) {
				t.Fatalf("keys %q refused (%v), but the files changed from\n%q to\n%q", slices.Sorted(maps.Keys(files)), err, before, after)
			}
			return
		}
		want := []string{"d out", "d outside", "f outside/secret"}
		for _, e := range treeOf(files) {
			want = append(want, e[:2]+"out/"+e[2:])
		}
		slices.Sort(want)
		if got := entries(t, base); !slices.Equal(got, want) {
			t.Fatalf("keys %q exported as\n%q, want\n%q", slices.Sorted(maps.Keys(files)), got, want)
		}
		for k, v := range files {
			if b, err := os.ReadFile(filepath.Join(out, filepath.FromSlash(k))); err != nil || !bytes.Equal(b, v) {
				t.Fatalf("key %q: file holds %q (%v), want %q", k, b, err, v)
			}
		}
	})
}
