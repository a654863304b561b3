package hamt_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/hamt-go/hamt"
)

// BenchmarkObsGetWarm: Get on a warm read-only map of 10,000 keys in memory.
func BenchmarkObsGetWarm(b *testing.B) {
	ctx := context.Background()
	cas := hamt.NewMemoryCAS()
	w, _ := hamt.New(ctx, cas, hamt.Bytes)
	keys := make([]string, 10000)
	for i := range keys {
		keys[i] = fmt.Sprint("key/", i)
		if err := w.Set(ctx, keys[i], []byte(keys[i])); err != nil {
			b.Fatal(err)
		}
	}
	root, _ := w.Flush(ctx)
	m, err := hamt.Open(ctx, cas, hamt.Bytes, root)
	if err != nil {
		b.Fatal(err)
	}
	for _, k := range keys {
		m.Get(ctx, k)
	}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if _, err := m.Get(ctx, keys[i%len(keys)]); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkObsWriteFlush: 1,000 Sets into a new memory map, then Flush.
func BenchmarkObsWriteFlush(b *testing.B) {
	ctx := context.Background()
	keys := make([]string, 1000)
	for i := range keys {
		keys[i] = fmt.Sprint("key/", i)
	}
	b.ReportAllocs()
	for b.Loop() {
		m, _ := hamt.New(ctx, hamt.NewMemoryCAS(), hamt.Bytes)
		for _, k := range keys {
			if err := m.Set(ctx, k, []byte(k)); err != nil {
				b.Fatal(err)
			}
		}
		if _, err := m.Flush(ctx); err != nil {
			b.Fatal(err)
		}
	}
}
