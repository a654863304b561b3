package main

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hamt-go/hamt"
	"github.com/hamt-go/hamt/internal/testdag"
)

func TestVerifyCommandPassesAnImportedDataset(t *testing.T) {
	store := filepath.Join(t.TempDir(), "store.bolt")
	root := inProcess(t, nil, "--store", store, "import", filepath.Join("..", "..", "testdata", "zarr")).lastLine()
	r := inProcess(t, nil, "--store", store, "verify", root)
	if r.code != 0 || !strings.HasPrefix(r.lastLine(), "ok: hamt layout") || !strings.Contains(r.stdout, "0 problems, 0 warnings") {
		t.Fatalf("exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	r = inProcess(t, nil, "--store", store, "verify", "--json", root)
	var rep verifyJSON
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil || r.code != 0 {
		t.Fatalf("exit %d, %v: %s", r.code, err, r.stdout)
	}
	files := len(zarrFiles(t))
	if !rep.OK || rep.Root != root || rep.Layout != "hamt" || rep.Keys != files || rep.Values == 0 || rep.Nodes == 0 || rep.Bytes == 0 ||
		rep.Problems == nil || len(rep.Problems) != 0 || rep.Truncated != 0 {
		t.Fatalf("report %+v (want %d keys)", rep, files)
	}
}

// verifyHostileStore is a bbolt store holding a root node with n keys each in the wrong slot,
// and its root.
func verifyHostileStore(t *testing.T, n int) (string, string) {
	t.Helper()
	var blocks testdag.Blocks
	slots := map[int][]byte{}
	for i := range n {
		k := string(rune('a' + i))
		slots[int(hamt.Blake3([]byte(k))[0]+1)] = testdag.KeyBucket(t, &blocks, k)
	}
	root := testdag.SaveNode(t, &blocks, slots)
	store := filepath.Join(t.TempDir(), "store.bolt")
	walkPutBlocks(t, store, blocks)
	return store, root.String()
}

func TestVerifyCommandExitsWithProblemsAndSaysWhereAsJSON(t *testing.T) {
	store, root := verifyHostileStore(t, 5)
	r := inProcess(t, nil, "--store", store, "verify", "--json", "--max-problems", "2", root)
	var rep verifyJSON
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
		t.Fatalf("%v: %s", err, r.stdout)
	}
	if r.code != exitProblems || rep.OK || len(rep.Problems) != 2 || rep.Truncated != 3 || strings.Count(r.stdout, "\n") != 1 {
		t.Fatalf("exit %d, report %+v", r.code, rep)
	}
	p := rep.Problems[0]
	if p.Kind != "key_off_path" || len(p.Path) != 1 || p.CID != root || p.Message == "" {
		t.Fatalf("problem %+v", p)
	}
	if !strings.HasPrefix(r.stderr, "hamt: verify: 5 problems") {
		t.Fatalf("stderr %q", r.stderr)
	}

	r = inProcess(t, nil, "--store", store, "verify", root)
	if r.code != exitProblems || strings.Count(r.stdout, "problem key_off_path at ") != 5 || !strings.HasPrefix(r.lastLine(), "FAILED: hamt layout") {
		t.Fatalf("exit %d\n%s", r.code, r.stdout)
	}
}

func TestVerifyCommandExitStatusesForAMissingRootAndBadFlags(t *testing.T) {
	store, _ := verifyHostileStore(t, 1)
	var elsewhere testdag.Blocks
	missing := testdag.SaveNode(t, &elsewhere, nil)
	if r := inProcess(t, nil, "--store", store, "verify", missing.String()); r.code != exitNotFound || !strings.Contains(r.stderr, "not in the store") {
		t.Fatalf("missing root: exit %d, %s", r.code, r.stderr)
	}
	for _, args := range [][]string{
		{"verify"},
		{"verify", "not:a:cid"},
		{"verify", "--max-problems", "-1", missing.String()},
		{"verify", "--bucket-size", "0", missing.String()},
	} {
		if r := inProcess(t, nil, append([]string{"--store", store}, args...)...); r.code != exitUsage {
			t.Fatalf("%v: exit %d, %s", args, r.code, r.stderr)
		}
	}
}
