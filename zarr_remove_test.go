package hamt_test

import (
	"context"
	"errors"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/hamt-go/hamt"
	"pgregory.net/rapid"
)

// flushedZarr sets files in a new HAMT dataset on cas and returns its root.
func flushedZarr(t testing.TB, cas hamt.CAS, files map[string][]byte) *hamt.ZarrStore {
	t.Helper()
	s := zarrNewStore(t, cas)
	for k, v := range files {
		zarrMustSet(t, s, k, v)
	}
	if _, err := s.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	return s
}

// TestRemoveAllRemovesADirectoryByPathElements: RemoveAll of "surface/temp" removes the
// directory's keys and nothing else (not "surface/temperature/..." beside it), and the root is the
// one a dataset of the remaining keys has from the start.
func TestRemoveAllRemovesADirectoryByPathElements(t *testing.T) {
	ctx := context.Background()
	cas := hamt.NewMemoryCAS()
	files := readTree(t, zarrTestdata)
	files["surface/temperature/c/0"] = []byte("beside")
	files["surface/temp.txt"] = []byte("a key that starts with the same bytes")
	s := flushedZarr(t, cas, files)

	for _, dir := range []string{"surface/temp", "surface/temp/"} {
		s := flushedZarr(t, cas, files)
		n, err := hamt.RemoveAll(ctx, s, dir)
		if err != nil {
			t.Fatal(err)
		}
		rest := maps.Clone(files)
		maps.DeleteFunc(rest, func(k string, _ []byte) bool { return strings.HasPrefix(k, "surface/temp/") })
		if n != len(files)-len(rest) || n != 5 {
			t.Errorf("RemoveAll(%q) removed %d keys, want 5", dir, n)
		}
		got, err := s.Flush(ctx)
		if err != nil {
			t.Fatal(err)
		}
		want, err := flushedZarr(t, cas, rest).Flush(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if got != want {
			t.Errorf("RemoveAll(%q): root %s, want %s as a dataset of the other keys", dir, got, want)
		}
	}

	// One key is a directory of its own name too.
	if n, err := hamt.RemoveAll(ctx, s, "surface/temp.txt"); err != nil || n != 1 {
		t.Errorf("RemoveAll of a key: %d, %v; want 1", n, err)
	}
	if n, err := hamt.RemoveAll(ctx, s, "nothing/here"); err != nil || n != 0 {
		t.Errorf("RemoveAll of a missing directory: %d, %v; want 0, nil", n, err)
	}
	if n, err := hamt.RemoveAll(ctx, s, ""); err != nil || n != len(files)-1 {
		t.Errorf("RemoveAll of the root: %d, %v; want %d", n, err, len(files)-1)
	}
	got, err := s.Flush(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if want, _ := zarrNewStore(t, cas).Flush(ctx); got != want {
		t.Errorf("RemoveAll(\"\"): root %s, want the empty map's %s", got, want)
	}

	ro := reopen(t, cas, flushedZarr(t, cas, files))
	if _, err := hamt.RemoveAll(ctx, ro, "surface"); !errors.Is(err, hamt.ErrReadOnly) {
		t.Errorf("RemoveAll on a read-only store: %v, want ErrReadOnly", err)
	}
}

// TestRemoveAllOnTheShardedLayout: removing an array's directory from a sharded dataset removes
// its chunks and metadata (chunks first: the array stays registered while they go), and the
// dataset then lists exactly the other keys, after a flush and a reopen too.
func TestRemoveAllOnTheShardedLayout(t *testing.T) {
	ctx := context.Background()
	cas := hamt.NewMemoryCAS()
	files := map[string][]byte{}
	for k, v := range readTree(t, zarrTestdata) {
		files["0/"+k] = v
	}
	h, err := flushedZarr(t, cas, files).Flush(ctx)
	if err != nil {
		t.Fatal(err)
	}
	root, err := hamt.ConvertZarr(ctx, cas, h, hamt.LayoutSharded)
	if err != nil {
		t.Fatal(err)
	}
	z, err := hamt.OpenZarr(ctx, cas, root, hamt.WithZarrWrite())
	if err != nil {
		t.Fatal(err)
	}
	before := listSorted(t, z.List(ctx))
	n, err := hamt.RemoveAll(ctx, z, "0/surface/temp")
	if err != nil {
		t.Fatal(err)
	}
	want := slices.DeleteFunc(slices.Clone(before), func(k string) bool { return strings.HasPrefix(k, "0/surface/temp/") })
	if n != len(before)-len(want) || n != 5 {
		t.Errorf("removed %d keys, want 5", n)
	}
	newRoot, err := z.Flush(ctx)
	if err != nil {
		t.Fatal(err)
	}
	again, err := hamt.OpenZarr(ctx, cas, newRoot)
	if err != nil {
		t.Fatal(err)
	}
	if got := listSorted(t, again.List(ctx)); !slices.Equal(got, want) {
		t.Errorf("after RemoveAll and a reopen: %q, want %q", got, want)
	}
}

// TestRemoveAllMatchesAMapModel: for random keys of a few path elements and a random directory,
// RemoveAll removes exactly the keys a Go map model says are the directory or under it.
func TestRemoveAllMatchesAMapModel(t *testing.T) {
	elems := []string{"a", "b", "ab", "c", "zarr.json"}
	rapid.Check(t, func(rt *rapid.T) {
		ctx := context.Background()
		keyGen := rapid.Custom(func(rt *rapid.T) string {
			return strings.Join(rapid.SliceOfN(rapid.SampledFrom(elems), 1, 3).Draw(rt, "elems"), "/")
		})
		model := map[string][]byte{}
		for _, k := range rapid.SliceOfN(keyGen, 0, 20).Draw(rt, "keys") {
			model[k] = []byte(k)
		}
		dir := strings.Join(rapid.SliceOfN(rapid.SampledFrom(elems), 0, 2).Draw(rt, "dir"), "/")
		s := flushedZarr(t, hamt.NewMemoryCAS(), model)
		n, err := hamt.RemoveAll(ctx, s, dir)
		if err != nil {
			rt.Fatal(err)
		}
		removed := 0
		for k := range model {
			if dir == "" || k == dir || strings.HasPrefix(k, dir+"/") {
				delete(model, k)
				removed++
			}
		}
		if n != removed {
			rt.Errorf("RemoveAll(%q) removed %d keys, the model %d", dir, n, removed)
		}
		if got, want := listSorted(t, s.List(ctx)), slices.Sorted(maps.Keys(model)); !slices.Equal(got, want) {
			rt.Errorf("RemoveAll(%q) left %q, the model %q", dir, got, want)
		}
	})
}
