package hamt_test

import (
	"context"
	"encoding/binary"
	"fmt"
	"testing"

	"github.com/hamt-go/hamt"
	"github.com/ipfs/go-cid"
	"github.com/multiformats/go-multicodec"
)

// BenchmarkBoltLoadRange reads 64 KiB ranges, at offsets that move through the block, of one
// block in the file: a Zarr shard read by its chunks.
func BenchmarkBoltLoadRange(b *testing.B) {
	ctx := context.Background()
	for _, size := range []int{1 << 20, 64 << 20} {
		b.Run(fmt.Sprintf("%dMiB", size>>20), func(b *testing.B) {
			path := boltTempPath(b)
			cas := boltOpen(b, path)
			data := make([]byte, size)
			for i := range data {
				data[i] = byte(i * 31)
			}
			id, err := cas.Save(ctx, data, multicodec.Raw)
			if err != nil {
				b.Fatal(err)
			}
			if err := cas.CloseStrict(); err != nil {
				b.Fatal(err)
			}
			cas = boltOpen(b, path, hamt.WithBoltReadOnly())
			const part = 64 << 10
			b.SetBytes(part)
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				off := int64(i*part) % int64(size)
				if _, err := cas.LoadRange(ctx, id, hamt.RangeBetween(off, off+part)); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkBoltMapFlush sets 100 keys of 1 KiB in a map on a BoltCAS (default options) and
// flushes it, per iteration: what a Flush costs when its root must be on disk.
func BenchmarkBoltMapFlush(b *testing.B) {
	ctx := context.Background()
	cas := boltOpen(b, boltTempPath(b))
	m, err := hamt.New(ctx, cas, hamt.Bytes)
	if err != nil {
		b.Fatal(err)
	}
	val := make([]byte, 1024)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		for k := range 100 {
			binary.LittleEndian.PutUint64(val, uint64(i*100+k))
			if err := m.Set(ctx, fmt.Sprintf("k%d", i*100+k), val); err != nil {
				b.Fatal(err)
			}
		}
		if _, err := m.Flush(ctx); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkBoltLargeStore reads a store of 100,000 blocks of 1 KiB (a 3-level B+tree).
// "open-and-first-load" opens it read-only, loads one block and closes it, per iteration: a
// cold start, when the pages on the block's path are read and checked before bbolt descends
// them. "load" loads blocks in a scattered order from a store kept open, each loaded once
// before: the steady state, when every path is checked already.
func BenchmarkBoltLargeStore(b *testing.B) {
	ctx := context.Background()
	path := boltTempPath(b)
	cas := boltOpen(b, path)
	const blocks, chunk = 100_000, 10_000
	var ids []cid.Cid
	for from := 0; from < blocks; from += chunk {
		data := make([][]byte, chunk)
		for i := range data {
			data[i] = make([]byte, 1<<10)
			binary.LittleEndian.PutUint64(data[i], uint64(from+i))
		}
		got, err := cas.SaveMany(ctx, data, multicodec.Raw)
		if err != nil {
			b.Fatal(err)
		}
		ids = append(ids, got...)
	}
	if err := cas.CloseStrict(); err != nil {
		b.Fatal(err)
	}
	b.Run("open-and-first-load", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			cas, err := hamt.OpenBoltCAS(path, hamt.WithBoltReadOnly())
			if err != nil {
				b.Fatal(err)
			}
			if _, err := cas.Load(ctx, ids[i*7919%blocks]); err != nil {
				b.Fatal(err)
			}
			if err := cas.CloseStrict(); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("load", func(b *testing.B) {
		cas := boltOpen(b, path, hamt.WithBoltReadOnly())
		for _, id := range ids { // not timed: every path checked
			if _, err := cas.Load(ctx, id); err != nil {
				b.Fatal(err)
			}
		}
		b.SetBytes(1 << 10)
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			if _, err := cas.Load(ctx, ids[i*7919%blocks]); err != nil {
				b.Fatal(err)
			}
		}
	})
}
