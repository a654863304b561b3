package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hamt-go/hamt"
	"github.com/hamt-go/hamt/internal/testdag"
	"github.com/ipfs/go-cid"
)

// TestHostileCARsFailQuickly: a CAR of 5 blocks whose every slot links to the node below (256^4
// paths to one leaf) imports, and then every command that walks the tree exits 1 at once with a
// malformed-node error, instead of running for minutes and listing one key billions of times; so
// does a tree holding a key in a slot that is not its own, which ls used to list although get
// could not find it.
func TestHostileCARsFailQuickly(t *testing.T) {
	var blocks testdag.Blocks
	diamond := testdag.Diamond(t, &blocks, "diamond", hamt.Blake3([]byte("diamond")), 4, testdag.AllSlots)
	good := testdag.SaveNode(t, &blocks, map[int][]byte{int(hamt.Blake3([]byte("good"))[0]): testdag.KeyBucket(t, &blocks, "good")})
	// And a key in a slot that is not its own: listed, but Get could never find it.
	offPath := testdag.SaveNode(t, &blocks, map[int][]byte{int(hamt.Blake3([]byte("lost"))[0]) ^ 1: testdag.KeyBucket(t, &blocks, "lost")})

	dir := t.TempDir()
	carPath := filepath.Join(dir, "diamond.car")
	if err := os.WriteFile(carPath, testdag.CAR(t, []cid.Cid{diamond, good, offPath}, blocks), 0o644); err != nil {
		t.Fatal(err)
	}
	store := filepath.Join(dir, "store.bolt")
	if r := hamtRunWithin(t, walkLimit, store, nil, "car", "import", carPath); r.code != 0 {
		// A car import that checks what its roots reach may refuse the tree itself; then it must
		// say why, and the blocks go in by the library for the commands below.
		if r.code != 1 || !strings.Contains(r.stderr, "malformed HAMT node") {
			t.Fatalf("car import: exit %d\n%s", r.code, r.stderr)
		}
		walkPutBlocks(t, store, blocks)
	}
	for _, bad := range []struct {
		name string
		root string
	}{{"diamond", diamond.String()}, {"key off its path", offPath.String()}} {
		for _, c := range []struct {
			name string
			args []string
		}{
			{"ls", []string{"ls", bad.root}},
			{"stats", []string{"stats", bad.root}},
			{"export", []string{"export", bad.root, filepath.Join(dir, "out")}},
			{"diff from a good root", []string{"diff", good.String(), bad.root}},
			{"diff to a good root", []string{"diff", bad.root, good.String()}},
			{"car export", []string{"car", "export", bad.root, filepath.Join(dir, "again.car")}},
		} {
			t.Run(bad.name+"/"+c.name, func(t *testing.T) {
				start := time.Now()
				r := hamtRunWithin(t, walkLimit, store, nil, c.args...)
				took := time.Since(start)
				if r.code != 1 || !strings.Contains(r.stderr, "malformed HAMT node") || len(r.stdout) > 0 {
					t.Fatalf("hamt %v: exit %d after %s, %d bytes of output\n%.300s", c.args, r.code, took, len(r.stdout), r.stderr)
				}
				if strings.Count(r.stderr, "\n") != 1 {
					t.Fatalf("want one line of error, got %q", r.stderr)
				}
				if c.name == "car export" {
					// The CAR is renamed into place only when complete: no partial file is left.
					if left, _ := filepath.Glob(filepath.Join(dir, "*again.car*")); len(left) > 0 {
						t.Fatalf("a failed car export left %v behind", left)
					}
				}
				t.Logf("exit 1 after %s: %s", took.Round(time.Millisecond), strings.TrimSpace(r.stderr))
			})
		}
	}
}

// walkLimit bounds each command: the commands here take milliseconds, where without the walk's
// checks they take minutes to hours.
const walkLimit = 60 * time.Second

// walkPutBlocks stores blocks in the bbolt store through the library.
func walkPutBlocks(t *testing.T, store string, blocks []testdag.Block) {
	t.Helper()
	b, err := hamt.OpenBoltCAS(store)
	if err != nil {
		t.Fatal(err)
	}
	for _, blk := range blocks {
		if err := b.Put(context.Background(), blk.ID, blk.Data); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
}
