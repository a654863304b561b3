package hamt_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/hamt-go/hamt"
	"github.com/ipfs/go-cid"
)

// convertBenchDataset is a HAMT-layout dataset on cas: one array 0/t of side×side chunks of 1 KiB,
// under group 0. It returns the root.
func convertBenchDataset(b *testing.B, cas hamt.CAS, side int) cid.Cid {
	b.Helper()
	ctx := context.Background()
	z, err := hamt.NewZarr(ctx, cas, hamt.LayoutHAMT)
	if err != nil {
		b.Fatal(err)
	}
	set := func(k string, v []byte) {
		if err := z.Set(ctx, k, v); err != nil {
			b.Fatal(err)
		}
	}
	set("zarr.json", []byte(`{"zarr_format": 3, "node_type": "group", "attributes": {}}`))
	set("0/zarr.json", []byte(`{"zarr_format":3,"node_type":"group","attributes":{}}`))
	set("0/t/zarr.json", []byte(fmt.Sprintf(`{"zarr_format":3,"node_type":"array","shape":[%d,%d],"data_type":"uint8",`+
		`"chunk_grid":{"name":"regular","configuration":{"chunk_shape":[32,32]}},"chunk_key_encoding":{"name":"default"},"fill_value":0,"codecs":[{"name":"bytes"}]}`, 32*side, 32*side)))
	chunk := make([]byte, 1024)
	for i := range side {
		for j := range side {
			chunk[0], chunk[1], chunk[2] = byte(i), byte(j), byte(i>>8)
			set(fmt.Sprintf("0/t/c/%d/%d", i, j), chunk)
		}
	}
	root, err := z.Flush(ctx)
	if err != nil {
		b.Fatal(err)
	}
	return root
}

// BenchmarkConvertZarr converts a dataset of 10,000 chunks between layouts on a MemoryCAS
// (chunks/s reported), by CID (ConvertZarr), and by bytes (CopyZarr into a new store) to compare.
func BenchmarkConvertZarr(b *testing.B) {
	const side = 100
	ctx := context.Background()
	cas := hamt.NewMemoryCAS()
	root := convertBenchDataset(b, cas, side)
	sharded, err := hamt.ConvertZarr(ctx, cas, root, hamt.LayoutSharded)
	if err != nil {
		b.Fatal(err)
	}
	report := func(b *testing.B) {
		b.ReportMetric(float64(side*side*b.N)/b.Elapsed().Seconds(), "chunks/s")
	}
	b.Run("hamt-to-sharded", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := hamt.ConvertZarr(ctx, cas, root, hamt.LayoutSharded); err != nil {
				b.Fatal(err)
			}
		}
		report(b)
	})
	b.Run("sharded-to-hamt", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := hamt.ConvertZarr(ctx, cas, sharded, hamt.LayoutHAMT); err != nil {
				b.Fatal(err)
			}
		}
		report(b)
	})
	b.Run("hamt-to-sharded-by-bytes", func(b *testing.B) {
		b.ReportAllocs()
		src, err := hamt.OpenZarr(ctx, cas, root)
		if err != nil {
			b.Fatal(err)
		}
		for b.Loop() {
			dst, err := hamt.NewZarr(ctx, cas, hamt.LayoutSharded)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := hamt.CopyZarr(ctx, dst, src); err != nil {
				b.Fatal(err)
			}
			if _, err := dst.Flush(ctx); err != nil {
				b.Fatal(err)
			}
		}
		report(b)
	})
}
