package main

// Tests of issue 11's store items through the binary: an empty, damaged or bit-rotted store file
// gives one line on standard error and exit 1, never a crash or wrong bytes.

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// failsWith runs the binary and fails the test unless it exits 1 with one line on standard error
// that holds want.
func failsWith(t *testing.T, store, want string, args ...string) {
	t.Helper()
	r := hamtRun(t, store, nil, args...)
	lines := strings.Split(strings.TrimRight(r.stderr, "\n"), "\n")
	if r.code != 1 || len(lines) != 1 || !strings.Contains(r.stderr, want) {
		t.Errorf("hamt %v: exit %d, stderr %q; want exit 1 and one line with %q", args, r.code, r.stderr, want)
	}
}

func TestEmptyStoreFileIsNotAStore(t *testing.T) {
	store := filepath.Join(t.TempDir(), "empty.bolt")
	if err := os.WriteFile(store, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	root := "bafyr4igb3js3dqlnsvmbi533lhghfet3l4r35vbi7mlrvxjb6f3n5wkc3m"
	for _, args := range [][]string{{"ls", root}, {"get", root, "k"}, {"stats", root}} {
		failsWith(t, store, "is empty: not a hamt store", args...)
	}
}
