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
	write := func(name string, keys ...string) string {
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
