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

// boltBenchSizes are the block sizes the BoltCAS benchmarks use: a small value or node, and a
// value of one Kubo chunk.
var boltBenchSizes = []struct {
	name string
	size int
}{{"1KiB", 1 << 10}, {"1MiB", 1 << 20}}

// boltReportBlocks adds a blocks/s metric over the benchmark's measured time.
func boltReportBlocks(b *testing.B) {
	if s := b.Elapsed().Seconds(); s > 0 {
		b.ReportMetric(float64(b.N)/s, "blocks/s")
	}
}

// BenchmarkBoltSave saves distinct blocks into a fresh file. "buffered" uses the default batches
// and counts the final Flush; "unbuffered" commits (and fsyncs) every block before Save returns.
func BenchmarkBoltSave(b *testing.B) {
	ctx := context.Background()
	for _, sz := range boltBenchSizes {
		for _, mode := range []struct {
			name string
			opts []hamt.BoltOption
		}{
			{"buffered", nil},
			{"unbuffered", []hamt.BoltOption{hamt.WithBoltBatchSize(1)}},
		} {
			b.Run(fmt.Sprintf("%s/%s", sz.name, mode.name), func(b *testing.B) {
				cas := boltOpen(b, boltTempPath(b), mode.opts...)
				data := make([]byte, sz.size)
				b.SetBytes(int64(sz.size))
				b.ReportAllocs()
				b.ResetTimer()
				// Not b.Loop: it would stop the timer before the final Flush, which is counted.
				for i := range b.N {
					binary.LittleEndian.PutUint64(data, uint64(i)) // a new block each time
					if _, err := cas.Save(ctx, data, multicodec.Raw); err != nil {
						b.Fatal(err)
					}
				}
				if err := cas.Flush(ctx); err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				boltReportBlocks(b)
			})
		}
	}
}

// BenchmarkBoltLoad loads blocks from the file (none buffered); every block is verified.
func BenchmarkBoltLoad(b *testing.B) {
	ctx := context.Background()
	for _, sz := range boltBenchSizes {
		b.Run(sz.name, func(b *testing.B) {
			path := boltTempPath(b)
			const blocks = 256
			cas := boltOpen(b, path)
			ids := make([]cid.Cid, blocks)
			data := make([]byte, sz.size)
			for i := range ids {
				binary.LittleEndian.PutUint64(data, uint64(i))
				id, err := cas.Save(ctx, data, multicodec.Raw)
				if err != nil {
					b.Fatal(err)
				}
				ids[i] = id
			}
			if err := cas.CloseStrict(); err != nil {
				b.Fatal(err)
			}
			cas = boltOpen(b, path, hamt.WithBoltReadOnly())
			b.SetBytes(int64(sz.size))
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				if _, err := cas.Load(ctx, ids[i%blocks]); err != nil {
					b.Fatal(err)
				}
			}
			boltReportBlocks(b)
		})
	}
}
