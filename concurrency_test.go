package hamt_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/hamt-go/hamt"
)

func TestManyGoroutinesSetAndGetAtOnceInWriteMode(t *testing.T) {
	ctx := context.Background()
	const writers, perWriter = 16, 300
	m, err := hamt.New(ctx, hamt.NewMemoryCAS(), hamt.Bytes, hamt.WithBucketSize(2))
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range perWriter {
				k := fmt.Sprintf("w%d/k%d", w, i)
				if err := m.Set(ctx, k, []byte(k)); err != nil {
					t.Error(err)
					return
				}
				// Read back our own key, and one another writer may or may not have set yet.
				if v, err := m.Get(ctx, k); err != nil || string(v) != k {
					t.Errorf("Get(%q) = %q, %v", k, v, err)
					return
				}
				other := fmt.Sprintf("w%d/k%d", (w+1)%writers, i)
				if v, err := m.Get(ctx, other); err == nil && string(v) != other {
					t.Errorf("Get(%q) = %q", other, v)
				} else if err != nil && !errors.Is(err, hamt.ErrNotFound) {
					t.Error(err)
				}
				if i%100 == 0 {
					if _, err := m.Flush(ctx); err != nil {
						t.Error(err)
					}
				}
			}
		})
	}
	wg.Wait()
	root, err := m.Flush(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// The same keys set by one goroutine give the same root.
	seq, _ := hamt.New(ctx, hamt.NewMemoryCAS(), hamt.Bytes, hamt.WithBucketSize(2))
	for w := range writers {
		for i := range perWriter {
			k := fmt.Sprintf("w%d/k%d", w, i)
			if err := seq.Set(ctx, k, []byte(k)); err != nil {
				t.Fatal(err)
			}
		}
	}
	want, _ := seq.Flush(ctx)
	if !root.Equals(want) {
		t.Fatalf("concurrent build root %s, sequential %s", root, want)
	}
	if n, err := m.Len(ctx); err != nil || n != writers*perWriter {
		t.Fatalf("Len = %d, %v", n, err)
	}
}

func TestReadOnlyReadsFrom32GoroutinesWhileTheCacheEvicts(t *testing.T) {
	ctx := context.Background()
	cas := hamt.NewMemoryCAS()
	w, _ := hamt.New(ctx, cas, hamt.Bytes, hamt.WithBucketSize(1))
	const keys = 3000
	for i := range keys {
		if err := w.Set(ctx, fmt.Sprint(i), []byte(fmt.Sprint("v", i))); err != nil {
			t.Fatal(err)
		}
	}
	root, _ := w.Flush(ctx)
	// 16 KiB holds a handful of nodes: nearly every read evicts something.
	m, err := hamt.Open(ctx, cas, hamt.Bytes, root, hamt.WithCacheBytes(16<<10))
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var reads atomic.Int64
	for g := range 32 {
		wg.Go(func() {
			for i := g; i < keys; i += 7 {
				v, err := m.Get(ctx, fmt.Sprint(i))
				if err != nil || !bytes.Equal(v, []byte(fmt.Sprint("v", i))) {
					t.Errorf("Get(%d) = %q, %v", i, v, err)
					return
				}
				reads.Add(1)
			}
			if g%8 == 0 {
				n := 0
				for _, err := range m.Keys(ctx) {
					if err != nil {
						t.Error(err)
						return
					}
					n++
				}
				if n != keys {
					t.Errorf("Keys yielded %d, want %d", n, keys)
				}
			}
		})
	}
	wg.Wait()
	if size := m.CacheSize(); size > 16<<10 {
		t.Errorf("CacheSize %d exceeds the 16 KiB budget", size)
	}
	if reads.Load() == 0 {
		t.Fatal("no reads ran")
	}
}

func TestWritesRacingMakeReadOnlyEitherLandOrGetErrReadOnly(t *testing.T) {
	ctx := context.Background()
	cas := hamt.NewMemoryCAS()
	m, _ := hamt.New(ctx, cas, hamt.Bytes)
	var wg sync.WaitGroup
	var landed sync.Map
	for g := range 8 {
		wg.Go(func() {
			for i := range 200 {
				k := fmt.Sprintf("%d-%d", g, i)
				err := m.Set(ctx, k, []byte(k))
				switch {
				case err == nil:
					landed.Store(k, true)
				case !errors.Is(err, hamt.ErrReadOnly):
					t.Error(err)
				}
			}
		})
	}
	if err := m.MakeReadOnly(ctx); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	// A Set that returned nil before the switch is in the flushed root; none after it can be.
	root, _ := m.Root()
	r, err := hamt.Open(ctx, cas, hamt.Bytes, root)
	if err != nil {
		t.Fatal(err)
	}
	want := 0
	landed.Range(func(k, _ any) bool {
		want++
		if _, err := r.Get(ctx, k.(string)); err != nil {
			t.Errorf("key %s was set but is not in the root: %v", k, err)
		}
		return true
	})
	if n, _ := r.Len(ctx); n != want {
		t.Fatalf("root has %d keys, %d Sets succeeded", n, want)
	}
}
