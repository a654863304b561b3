package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// names runs one command line in this process on the store file store.
func names(t *testing.T, store string, args ...string) result {
	t.Helper()
	return inProcess(t, nil, append([]string{"--store", store}, args...)...)
}

// TestNamedRootsFollowSetRmAndConvertAndGCKeepsTheirHistory: import --name names the root, every
// ROOT takes the name, set, rm and convert move it (the old roots in its history), gc keeps the
// history until it is dropped, and the dataset reads the same throughout.
func TestNamedRootsFollowSetRmAndConvertAndGCKeepsTheirHistory(t *testing.T) {
	dir := t.TempDir()
	store := filepath.Join(dir, "s.bolt")
	value := filepath.Join(dir, "v")
	if err := os.WriteFile(value, []byte("a new value"), 0o644); err != nil {
		t.Fatal(err)
	}
	imported := names(t, store, "import", "--no-progress", "--name", "ds", filepath.Join("..", "..", "testdata", "zarr"))
	if imported.code != 0 {
		t.Fatalf("import: %d %s", imported.code, imported.stderr)
	}
	root0 := imported.lastLine()
	set := names(t, store, "set", "ds", "extra", value)
	rm := names(t, store, "rm", "ds", "extra")
	conv := names(t, store, "convert", "--no-progress", "--to", "sharded", "ds")
	for _, r := range []result{set, rm, conv} {
		if r.code != 0 {
			t.Fatalf("exit %d: %s", r.code, r.stderr)
		}
	}
	if got := names(t, store, "get", "ds", "extra"); got.code != exitNotFound || !strings.Contains(got.stderr, "no key") {
		t.Fatalf("get of the removed key through the name: %+v", got)
	}
	if got := names(t, store, "get", set.lastLine(), "extra"); got.stdout != "a new value" {
		t.Fatalf("get from the set's root: %+v", got)
	}
	list := names(t, store, "roots", "--json", "--history")
	var r rootJSON
	if err := json.Unmarshal([]byte(list.stdout), &r); err != nil {
		t.Fatalf("roots --json: %v: %q", err, list.stdout)
	}
	var history []string
	for _, h := range r.History {
		history = append(history, h.Root)
	}
	want := []string{rm.lastLine(), set.lastLine(), root0}
	if r.Name != "ds" || r.Root != conv.lastLine() || strings.Join(history, " ") != strings.Join(want, " ") {
		t.Fatalf("roots: %+v; want root %s, history %v", r, conv.lastLine(), want)
	}

	gc := names(t, store, "gc", "--json")
	var rep gcJSON
	if err := json.Unmarshal([]byte(gc.stdout), &rep); err != nil || gc.code != 0 {
		t.Fatalf("gc: %v %+v", err, gc)
	}
	if rep.Roots != 3 { // rm gave back the imported root: three distinct roots
		t.Fatalf("gc kept %d roots: %+v", rep.Roots, rep)
	}
	if got := names(t, store, "get", set.lastLine(), "extra"); got.stdout != "a new value" {
		t.Fatalf("get from the set's root, in the history, after gc: %+v", got)
	}
	if r := names(t, store, "roots", "drop-history", "ds"); r.code != 0 {
		t.Fatal(r.stderr)
	}
	gc = names(t, store, "gc", "--json", root0) // root0 given: kept too
	if err := json.Unmarshal([]byte(gc.stdout), &rep); err != nil || gc.code != 0 {
		t.Fatalf("gc: %v %+v", err, gc)
	}
	if rep.Roots != 2 || rep.BlocksRemoved == 0 || rep.BlocksAfter != rep.BlocksBefore-rep.BlocksRemoved {
		t.Fatalf("gc after drop-history: %+v", rep)
	}
	for _, root := range []string{"ds", root0} {
		if got := names(t, store, "get", root, "zarr.json"); got.code != 0 || !strings.Contains(got.stdout, "zarr_format") {
			t.Fatalf("get %s zarr.json after gc: %+v", root, got)
		}
	}
	if got := names(t, store, "get", set.lastLine(), "extra"); got.code == 0 {
		t.Fatalf("the set's root, dropped from the history, survived gc: %+v", got)
	}
	// The sharded dataset the name points at reads whole: every file as imported.
	out := filepath.Join(dir, "out")
	if r := names(t, store, "export", "--no-progress", "ds", out); r.code != 0 {
		t.Fatalf("export after gc: %+v", r)
	}
	src := filepath.Join("..", "..", "testdata", "zarr")
	n := 0
	err := filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(src, path)
		want, _ := os.ReadFile(path)
		got, err := os.ReadFile(filepath.Join(out, rel))
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s after gc: %v", rel, err)
		}
		n++
		return nil
	})
	if err != nil || n == 0 {
		t.Fatalf("compared %d files: %v", n, err)
	}
}

func TestNameCommandsExitStatuses(t *testing.T) {
	dir := t.TempDir()
	store := filepath.Join(dir, "s.bolt")
	root := names(t, store, "import", "--no-progress", filepath.Join("..", "..", "testdata", "zarr")).lastLine()
	for _, tc := range []struct {
		args []string
		code int
	}{
		{[]string{"roots", "set", "x", root}, 0},
		{[]string{"roots", "set", "y", "x"}, 0},                 // a name as ROOT
		{[]string{"get", "missing", "zarr.json"}, exitNotFound}, // no such name
		{[]string{"roots", "rm", "missing"}, exitNotFound},      // no such name
		{[]string{"roots", "drop-history", "missing"}, exitNotFound},
		{[]string{"roots", "set", root, root}, exitUsage},       // a CID is no name
		{[]string{"roots", "set", "bad name", root}, exitUsage}, // nor is this
		{[]string{"import", "--name", root, "."}, exitUsage},    // checked before importing
		{[]string{"get", "bad name!", "k"}, exitUsage},          // neither CID nor name
		{[]string{"gc", "missing"}, exitNotFound},
		{[]string{"roots", "rm", "x", "y"}, 0},
	} {
		if got := names(t, store, tc.args...); got.code != tc.code {
			t.Errorf("hamt %s: exit %d (%s), want %d", strings.Join(tc.args, " "), got.code, got.stderr, tc.code)
		}
	}
	if got := names(t, store, "roots"); got.stdout != "" {
		t.Errorf("roots after removing both names: %q", got.stdout)
	}
}

// failingWriter fails every write, as a full disk or a closed pipe.
type failingWriter struct{}

func (failingWriter) Write([]byte) (int, error) { return 0, errors.New("write failed") }

// TestGCReportsAFailedWrite: gc whose report cannot be written (standard output full or closed)
// fails, as the other commands do, in text and in JSON; it exited 0 having said nothing.
func TestGCReportsAFailedWrite(t *testing.T) {
	store := filepath.Join(t.TempDir(), "s.bolt")
	imported := names(t, store, "import", "--no-progress", "--name", "ds", filepath.Join("..", "..", "testdata", "zarr"))
	if imported.code != 0 {
		t.Fatalf("import: %d %s", imported.code, imported.stderr)
	}
	for _, args := range [][]string{{"gc", "--dry-run"}, {"gc", "--dry-run", "--json"}} {
		var errb bytes.Buffer
		if code := run(context.Background(), append([]string{"--store", store}, args...), nil, failingWriter{}, &errb); code == 0 {
			t.Errorf("%v to a failing writer: exit 0; stderr %q", args, errb.String())
		}
	}
}
