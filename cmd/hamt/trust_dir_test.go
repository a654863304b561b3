package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestExportRefusesANonEmptyDirUnlessReplace: exporting a new root over an older export fails
// with exit 1 and a hint at --replace, leaving the old files; with --replace the directory holds
// exactly the new root's files (a chunk the new root lacks is gone).
func TestExportRefusesANonEmptyDirUnlessReplace(t *testing.T) {
	dir := t.TempDir()
	store := filepath.Join(dir, "store.bolt")
	files := zarrFiles(t)
	root := ok(t, store, nil, "import", filepath.Join("..", "..", "testdata", "zarr")).lastLine()
	root2 := ok(t, store, nil, "rm", root, "mask/c/0/0").lastLine()
	out := filepath.Join(dir, "out")
	ok(t, store, nil, "export", root, out)

	r := hamtRun(t, store, nil, "export", root2, out)
	if r.code != 1 || !strings.Contains(r.stderr, "not empty") || !strings.Contains(r.stderr, "--replace") {
		t.Errorf("export over an older export: exit %d, %q; want exit 1, 'not empty' and a hint at --replace", r.code, r.stderr)
	}
	if _, err := os.Stat(filepath.Join(out, "mask", "c", "0", "0")); err != nil {
		t.Errorf("the refused export touched the old one: %v", err)
	}
	ok(t, store, nil, "export", "--replace", root2, out)
	if _, err := os.Stat(filepath.Join(out, "mask", "c", "0", "0")); err == nil {
		t.Error("the replaced export keeps the old chunk mask/c/0/0")
	}
	n := 0
	err := filepath.WalkDir(out, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		n++
		rel, _ := filepath.Rel(out, p)
		if b, err := os.ReadFile(p); err != nil || !bytes.Equal(b, files[filepath.ToSlash(rel)]) {
			t.Errorf("%s: %v", rel, err)
		}
		return nil
	})
	if err != nil || n != len(files)-1 {
		t.Errorf("the replaced export holds %d files (%v), want %d", n, err, len(files)-1)
	}
}

// TestExportDoesNotWriteThroughLinks: the repro through the binary. DIR/link ->
// elsewhere and DIR/f -> elsewhere/victim: export of keys link/x and f is refused, and with
// --replace the links themselves are replaced; elsewhere is untouched either way.
func TestExportDoesNotWriteThroughLinks(t *testing.T) {
	dir := t.TempDir()
	store := filepath.Join(dir, "store.bolt")
	src := filepath.Join(dir, "src")
	for k, v := range map[string]string{"link/x": "x", "f": "attack"} {
		p := filepath.Join(src, filepath.FromSlash(k))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(v), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	root := ok(t, store, nil, "import", src).lastLine()
	elsewhere, out := filepath.Join(dir, "elsewhere"), filepath.Join(dir, "out")
	for _, d := range []string{elsewhere, out} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	victim := filepath.Join(elsewhere, "victim")
	if err := os.WriteFile(victim, []byte("precious"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(elsewhere, filepath.Join(out, "link")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(victim, filepath.Join(out, "f")); err != nil {
		t.Fatal(err)
	}
	untouched := func(when string) {
		t.Helper()
		if b, err := os.ReadFile(victim); string(b) != "precious" {
			t.Errorf("%s: victim holds %q (%v)", when, b, err)
		}
		if _, err := os.Lstat(filepath.Join(elsewhere, "x")); err == nil {
			t.Errorf("%s: elsewhere/x was written", when)
		}
	}
	if r := hamtRun(t, store, nil, "export", root, out); r.code != 1 || !strings.Contains(r.stderr, "not empty") {
		t.Errorf("export into a directory of links: exit %d, %q", r.code, r.stderr)
	}
	untouched("refused export")
	ok(t, store, nil, "export", "--replace", root, out)
	untouched("replacing export")
	for k, v := range map[string]string{"link/x": "x", "f": "attack"} {
		p := filepath.Join(out, filepath.FromSlash(k))
		fi, err := os.Lstat(p)
		if b, _ := os.ReadFile(p); err != nil || !fi.Mode().IsRegular() || string(b) != v {
			t.Errorf("%s: %v, %v, %q; want a regular file holding %q", k, fi, err, b, v)
		}
	}
}

// TestExportNamesTheBadKey: a key "../x" fails the export with its real reason (it used to say
// "key is not valid UTF-8"), exit 1, and nothing is written.
func TestExportNamesTheBadKey(t *testing.T) {
	dir := t.TempDir()
	store := filepath.Join(dir, "store.bolt")
	root := ok(t, store, nil, "import", filepath.Join("..", "..", "testdata", "zarr")).lastLine()
	v := filepath.Join(dir, "v")
	if err := os.WriteFile(v, []byte("v"), 0o644); err != nil {
		t.Fatal(err)
	}
	root2 := ok(t, store, nil, "set", root, "../x", v).lastLine()
	out := filepath.Join(dir, "out")
	r := hamtRun(t, store, nil, "export", root2, out)
	if r.code != 1 || !strings.Contains(r.stderr, `key "../x" has a ".." path element`) || strings.Contains(r.stderr, "UTF-8") {
		t.Errorf("export of ../x: exit %d, %q", r.code, r.stderr)
	}
	if _, err := os.Lstat(out); err == nil {
		t.Error("the failed export made its directory")
	}
	if _, err := os.Lstat(filepath.Join(dir, "x")); err == nil {
		t.Error("the failed export wrote ../x")
	}
}

// TestImportTakesOnlyADirectory: importing a regular file fails with exit 1 (it used to make a
// map with the key "."); importing a symbolic link to a dataset imports the dataset (it used to
// make an empty map), the same root as the dataset's own directory.
func TestImportTakesOnlyADirectory(t *testing.T) {
	dir := t.TempDir()
	store := filepath.Join(dir, "store.bolt")
	data, err := filepath.Abs(filepath.Join("..", "..", "testdata", "zarr"))
	if err != nil {
		t.Fatal(err)
	}
	if r := hamtRun(t, store, nil, "import", filepath.Join(data, "zarr.json")); r.code != 1 || !strings.Contains(r.stderr, "not a directory") || r.stdout != "" {
		t.Errorf("import of a file: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	link := filepath.Join(dir, "dataset")
	if err := os.Symlink(data, link); err != nil {
		t.Fatal(err)
	}
	if got, want := ok(t, store, nil, "import", link).lastLine(), ok(t, store, nil, "import", data).lastLine(); got != want {
		t.Errorf("import through a link gave %s, want %s", got, want)
	}
}

// TestExportHelpSaysHowToReplace: export's help documents --replace and the safety rules.
func TestExportHelpSaysHowToReplace(t *testing.T) {
	r := ok(t, filepath.Join(t.TempDir(), "s.bolt"), nil, "export", "--help")
	for _, want := range []string{"--replace", "non-empty DIR", "symbolic link", "before anything is written"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("export --help lacks %q:\n%s", want, r.stdout)
		}
	}
}
