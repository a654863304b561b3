package hamt_test

import (
	"bytes"
	"context"
	"fmt"
	"testing"

	"github.com/hamt-go/hamt"
	"github.com/hamt-go/hamt/internal/testdag"
	"github.com/ipfs/go-cid"
)

// BenchmarkReadCAR imports a 20 MB CAR (256 values of 64 KiB and one 4 MB UnixFS file value)
// into a MemoryCAS: check (every block hashed, everything the root reaches read again) and store.
func BenchmarkReadCAR(b *testing.B) {
	ctx := context.Background()
	src := newKuboLike(1<<20, 174)
	m, err := hamt.New(ctx, src, hamt.Bytes)
	if err != nil {
		b.Fatal(err)
	}
	for i := range 256 {
		if err := m.Set(ctx, fmt.Sprint("arr/c/", i), patterned(64<<10+i)); err != nil {
			b.Fatal(err)
		}
	}
	if err := m.Set(ctx, "big", patterned(4_000_000)); err != nil {
		b.Fatal(err)
	}
	root, err := m.Flush(ctx)
	if err != nil {
		b.Fatal(err)
	}
	car := testdag.CAR(b, []cid.Cid{root}, append([]testdag.Block{{ID: root, Data: mustLoad(b, src, root)}}, src.Blocks()...))
	b.SetBytes(int64(len(car)))
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, _, err := hamt.ReadCAR(ctx, hamt.NewMemoryCAS(), bytes.NewReader(car)); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkGetFileValue reads a 3 MB value stored as a UnixFS file (a dag-pb root over three raw
// leaves) and, for comparison, the same bytes stored as one raw block, from a MemoryCAS.
func BenchmarkGetFileValue(b *testing.B) {
	ctx := context.Background()
	data := patterned(3_000_000)
	for _, c := range []struct {
		name  string
		chunk int64
	}{{"file", 1 << 20}, {"one block", 4 << 20}} {
		b.Run(c.name, func(b *testing.B) {
			src := newKuboLike(c.chunk, 174)
			m, err := hamt.New(ctx, src, hamt.Bytes)
			if err != nil {
				b.Fatal(err)
			}
			if err := m.Set(ctx, "v", data); err != nil {
				b.Fatal(err)
			}
			b.SetBytes(int64(len(data)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := m.Get(ctx, "v"); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
