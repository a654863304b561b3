package main

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/hamt-go/hamt"
	"github.com/hamt-go/hamt/internal/testdag"
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

// TestDiffExitCodeFailureIsNotDiffer: with --exit-code, status 1 says "the datasets differ"; a
// failure exited 1 too (a store path mistyped, a node block missing), so a script took trouble
// for a difference. A missing block or root is 4, any other failure 2.
func TestDiffExitCodeFailureIsNotDiffer(t *testing.T) {
	dir := t.TempDir()
	store := filepath.Join(dir, "s.bolt")
	good := okIn(t, store, "import", "--no-progress", testdataZarr).lastLine()
	b, err := hamt.OpenBoltCAS(store)
	if err != nil {
		t.Fatal(err)
	}
	h := hamt.Blake3([]byte("k"))
	var lost testdag.Blocks
	child := testdag.SaveNode(t, &lost, map[int][]byte{int(h[1]): testdag.KeyBucket(t, b, "k")})
	broken := testdag.SaveNode(t, b, map[int][]byte{int(h[0]): testdag.LinkSlot(child)})
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	wantExit(t, in(t, store, "diff", "--exit-code", good, broken.String()), exitNotFound, "missing")
	wantExit(t, in(t, filepath.Join(dir, "typo.bolt"), "diff", "--exit-code", good, good), exitDiffFail, "no store")
	// Without --exit-code a failure is 1, as for every command.
	wantExit(t, in(t, store, "diff", good, broken.String()), exitFailure, "missing")
}
