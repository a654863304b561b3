package hamt_test

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"sync"
	"testing"

	"github.com/hamt-go/hamt"
)

// recordingSetter is a Setter that records the order of its Sets before passing them on.
type recordingSetter struct {
	hamt.Setter
	mu   sync.Mutex
	keys []string
}

func (r *recordingSetter) Set(ctx context.Context, key string, v []byte) error {
	r.mu.Lock()
	r.keys = append(r.keys, key)
	r.mu.Unlock()
	return r.Setter.Set(ctx, key, v)
}

// checkMetadataFirst fails unless every metadata document in keys comes before every other key,
// parents before children.
func checkMetadataFirst(t *testing.T, keys []string) {
	t.Helper()
	isMeta := func(k string) bool { return filepath.Base(k) == "zarr.json" }
	firstData := slices.IndexFunc(keys, func(k string) bool { return !isMeta(k) })
	if firstData < 0 {
		t.Fatalf("no data key among %q", keys)
	}
	if i := slices.IndexFunc(keys[firstData:], isMeta); i >= 0 {
		t.Errorf("metadata %q set after data %q: %q", keys[firstData+i], keys[firstData], keys)
	}
	for i, k := range keys[:firstData] {
		for _, earlier := range keys[:i] {
			parent := filepath.Dir(filepath.Dir(earlier)) + "/zarr.json"
			if earlier != "zarr.json" && (k == parent || parent == "./zarr.json" && k == "zarr.json") {
				t.Errorf("%q (a child) set before %q", earlier, k)
			}
		}
	}
}

func TestImportDirSetsMetadataFirstParentsBeforeChildren(t *testing.T) {
	for _, workers := range []int{1, 8} {
		t.Run(fmt.Sprint(workers, " workers"), func(t *testing.T) {
			m, err := hamt.New(context.Background(), hamt.NewMemoryCAS(), hamt.Bytes)
			if err != nil {
				t.Fatal(err)
			}
			rec := &recordingSetter{Setter: m}
			if _, err := hamt.ImportDir(context.Background(), rec, filepath.Join("testdata", "zarr"), hamt.WithDirWorkers(workers)); err != nil {
				t.Fatal(err)
			}
			if len(rec.keys) != 25 {
				t.Fatalf("%d keys set, want 25", len(rec.keys))
			}
			checkMetadataFirst(t, rec.keys)
			if i, j := slices.Index(rec.keys, "surface/zarr.json"), slices.Index(rec.keys, "surface/temp/zarr.json"); i > j {
				t.Errorf("surface/zarr.json set after surface/temp/zarr.json: %q", rec.keys)
			}
		})
	}
}
