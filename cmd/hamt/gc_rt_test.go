package main

import (
	"path/filepath"
	"strings"
	"testing"
)

// TestGCWithNothingKeptRefuses: a store with no named root (one made before names, or whose
// names were all removed) and no ROOT given: gc would remove every block. It refuses, removes
// nothing, and says how to keep roots; a name makes it run.
func TestGCWithNothingKeptRefuses(t *testing.T) {
	store := filepath.Join(t.TempDir(), "s.bolt")
	root := names(t, store, "import", "--no-progress", filepath.Join("..", "..", "testdata", "zarr")).lastLine()
	for _, args := range [][]string{{"gc"}, {"gc", "--dry-run"}, {"gc", "--json"}} {
		got := names(t, store, args...)
		if got.code != 1 || !strings.Contains(got.stderr, "no named roots") || got.stdout != "" {
			t.Fatalf("hamt %s on a store with no names: %+v", strings.Join(args, " "), got)
		}
	}
	if got := names(t, store, "get", root, "zarr.json"); got.code != 0 || !strings.Contains(got.stdout, "zarr_format") {
		t.Fatalf("the unnamed root after the refused gc: %+v", got)
	}
	if got := names(t, store, "gc", root); got.code != 0 {
		t.Fatalf("gc ROOT: %+v", got)
	}
	if got := names(t, store, "roots", "set", "ds", root); got.code != 0 {
		t.Fatal(got.stderr)
	}
	if got := names(t, store, "gc"); got.code != 0 {
		t.Fatalf("gc with a name: %+v", got)
	}
	if got := names(t, store, "get", "ds", "zarr.json"); got.code != 0 {
		t.Fatalf("the named root after gc: %+v", got)
	}
}
