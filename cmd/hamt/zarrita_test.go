package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// zarritaDir is where zarrita and @zarrita/storage are installed (a directory holding their
// node_modules); .ci/run installs them there with npm and sets HAMT_ZARRITA_DIR. Without it the
// zarrita tests are skipped, except in CI, where they must run.
func zarritaDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("HAMT_ZARRITA_DIR")
	if dir == "" {
		if os.Getenv("CI") != "" {
			t.Fatal("CI without HAMT_ZARRITA_DIR: .ci/run installs zarrita and sets it")
		}
		t.Skip("HAMT_ZARRITA_DIR is not set: install zarrita with npm (see internal/zarrgen/zarrita_check.mjs) to run")
	}
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "zarrita")); err != nil {
		t.Fatalf("HAMT_ZARRITA_DIR=%s holds no node_modules/zarrita: %v", dir, err)
	}
	return dir
}

// zarritaCheck runs internal/zarrgen/zarrita_check.mjs, zarrita's reading of the bundled
// hierarchy checked element by element, against url, and fails the test unless it passes.
func zarritaCheck(t *testing.T, url string) {
	t.Helper()
	dir := zarritaDir(t)
	// ES modules resolve packages from the script's own directory up: put the script beside a
	// link to the installed node_modules.
	work := t.TempDir()
	script, err := os.ReadFile(filepath.Join("..", "..", "internal", "zarrgen", "zarrita_check.mjs"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(work, "zarrita_check.mjs"), script, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(dir, "node_modules"), filepath.Join(work, "node_modules")); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", "zarrita_check.mjs", url)
	cmd.Dir = work
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "OK: zarrita read every array as generated") {
		t.Fatalf("zarrita on %s: %v\n%s", url, err, out)
	}
}

// groupedZarr copies the bundled hierarchy under the group 0 of a new directory and returns it:
// the sharded layout, as py-hamt's, wants arrays under a group, not at the top level.
func groupedZarr(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for k, v := range zarrFiles(t) {
		p := filepath.Join(dir, "0", filepath.FromSlash(k))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, v, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// TestZarritaReadsServedHAMTDataset: zarrita's FetchStore reads every array of a HAMT dataset
// through `hamt serve` as generated.
func TestZarritaReadsServedHAMTDataset(t *testing.T) {
	zarritaDir(t)
	store := filepath.Join(t.TempDir(), "store.bolt")
	root := ok(t, store, nil, "import", filepath.Join("..", "..", "testdata", "zarr")).lastLine()
	s := startServe(t, store, root)
	zarritaCheck(t, "http://"+s.addr+"/")
}

// TestZarritaReadsServedShardedDataset: the same through `hamt serve` of a dataset imported in
// the sharded layout (under group 0, a few chunks per shard so that arrays span several shards).
func TestZarritaReadsServedShardedDataset(t *testing.T) {
	zarritaDir(t)
	store := filepath.Join(t.TempDir(), "store.bolt")
	root := ok(t, store, nil, "import", "--layout", "sharded", "--chunks-per-shard", "3", groupedZarr(t)).lastLine()
	s := startServe(t, store, root)
	zarritaCheck(t, "http://"+s.addr+"/0/")
}
