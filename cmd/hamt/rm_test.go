package main

import (
	"os"
	"path/filepath"
	"testing"
)

// TestRmFoldsAsPyHamt35AndLegacyDeletesDoNot: the keys 5, 15, 123, 317 and 349 share their first
// hash byte, so with the default bucket size the five need a node of their own and four fit in a
// bucket. rm of one of them gives the root an import of the other four gives; with
// --legacy-deletes the node stays, as py-hamt 3.3.2 leaves it.
func TestRmFoldsAsPyHamt35AndLegacyDeletesDoNot(t *testing.T) {
	dir := t.TempDir()
	store := filepath.Join(dir, "store.bolt")
	write := func(name string, keys ...string) string { return keyFiles(t, dir, name, keys...) }
	five := ok(t, store, nil, "import", write("five", "5", "15", "123", "317", "349")).lastLine()
	four := ok(t, store, nil, "import", write("four", "5", "15", "123", "317")).lastLine()

	if got := ok(t, store, nil, "rm", five, "349").lastLine(); got != four {
		t.Errorf("rm: root %s, want %s as an import of the other four keys", got, four)
	}
	legacy := ok(t, store, nil, "rm", "--legacy-deletes", five, "349").lastLine()
	if !cidLine.MatchString(legacy) || legacy == four {
		t.Errorf("rm --legacy-deletes: root %q, want a root other than the folded %s", legacy, four)
	}
	if got := ok(t, store, nil, "get", legacy, "317").stdout; got != "value of 317" {
		t.Errorf("get after rm --legacy-deletes: %q", got)
	}
}

// TestSetAndRmTakeTheDatasetsBucketSize: a root does not record its bucket size, so set and rm
// take --bucket-size; with the size the dataset was imported with, rm gives the root of an import
// of the remaining files and set the root of an import with the new one (with the default 4 they
// do not: 5, 15 and 123 share their first hash byte, which bucket size 1 splits and 4 folds).
func TestSetAndRmTakeTheDatasetsBucketSize(t *testing.T) {
	dir := t.TempDir()
	store := filepath.Join(dir, "store.bolt")
	write := func(name string, keys ...string) string { return keyFiles(t, dir, name, keys...) }
	three := ok(t, store, nil, "import", "--bucket-size", "1", write("three", "5", "15", "123")).lastLine()
	two := ok(t, store, nil, "import", "--bucket-size", "1", write("two", "5", "15")).lastLine()
	if got := ok(t, store, nil, "rm", "--bucket-size", "1", three, "123").lastLine(); got != two {
		t.Errorf("rm --bucket-size 1: root %s, want %s as an import of the other two keys", got, two)
	}
	if got := ok(t, store, nil, "rm", three, "123").lastLine(); got == two {
		t.Errorf("rm with the default bucket size gave the bucket-size-1 root %s: the test tests nothing", got)
	}
	one := ok(t, store, nil, "import", "--bucket-size", "1", write("one", "5")).lastLine()
	value := filepath.Join(dir, "value")
	if err := os.WriteFile(value, []byte("value of 15"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := ok(t, store, nil, "set", "--bucket-size", "1", one, "15", value).lastLine(); got != two {
		t.Errorf("set --bucket-size 1: root %s, want %s as an import of the two keys", got, two)
	}
	if got := ok(t, store, nil, "set", one, "15", value).lastLine(); got == two {
		t.Errorf("set with the default bucket size gave the bucket-size-1 root %s: the test tests nothing", got)
	}
}

// keyFiles makes the directory dir/name holding a file per key, its value "value of KEY".
func keyFiles(t *testing.T, dir, name string, keys ...string) string {
	t.Helper()
	d := filepath.Join(dir, name)
	if err := os.Mkdir(d, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		if err := os.WriteFile(filepath.Join(d, k), []byte("value of "+k), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return d
}
