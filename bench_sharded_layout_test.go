package hamt_test

// BenchmarkZarrLayouts: the sharded layout against the HAMT layout on the same dataset, an array
// of n chunks of 1 KiB in a MemoryCAS. Run, for example:
//
//	go test -run XXX -bench ZarrLayouts -benchtime 3x .
//
// Per layout and size: write (Set of every chunk, chunks/s), flush (ms), cold read (a store just
// opened from the root reads every chunk once in random order, chunks/s), warm read (the same store
// reads them all again, chunks/s), warm reads of random chunks from 32 goroutines (chunks/s), and
// the peak heap while writing and flushing beyond the bytes the MemoryCAS holds (MB). The stores
// run with their default caches; the sharded one with its default chunks per shard.

import (
	"context"
	"fmt"
	"math/rand/v2"
	"runtime"
	"runtime/metrics"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hamt-go/hamt"
	"github.com/ipfs/go-cid"
)

// loadCountingCAS counts the Loads of the CAS it wraps.
type loadCountingCAS struct {
	hamt.CAS
	loads atomic.Int64
}

func (c *loadCountingCAS) Load(ctx context.Context, id cid.Cid) ([]byte, error) {
	c.loads.Add(1)
	return c.CAS.Load(ctx, id)
}

// benchLayout is one way to store a Zarr dataset.
type benchLayout struct {
	name   string
	create func(cas hamt.CAS) (hamt.Zarr, func(context.Context) (cid.Cid, error), error)
	open   func(ctx context.Context, cas hamt.CAS, root cid.Cid) (hamt.Zarr, error)
}

var benchLayouts = []benchLayout{
	{
		name: "hamt",
		create: func(cas hamt.CAS) (hamt.Zarr, func(context.Context) (cid.Cid, error), error) {
			m, err := hamt.New(context.Background(), cas, hamt.Bytes)
			if err != nil {
				return nil, nil, err
			}
			z, err := hamt.NewZarrStore(m)
			return z, m.Flush, err
		},
		open: func(ctx context.Context, cas hamt.CAS, root cid.Cid) (hamt.Zarr, error) {
			m, err := hamt.Open(ctx, cas, hamt.Bytes, root)
			if err != nil {
				return nil, err
			}
			return hamt.NewZarrStore(m)
		},
	},
	{
		name: "sharded",
		create: func(cas hamt.CAS) (hamt.Zarr, func(context.Context) (cid.Cid, error), error) {
			s, err := hamt.NewShardedZarrStore(cas)
			if err != nil {
				return nil, nil, err
			}
			return s, s.Flush, nil
		},
		open: func(ctx context.Context, cas hamt.CAS, root cid.Cid) (hamt.Zarr, error) {
			return hamt.OpenShardedZarrStore(ctx, cas, root, hamt.WithShardedReadOnly())
		},
	},
}

// benchDataset is an array "g/v" of n chunks (n/100 × 100 of them) and its chunk keys, with the
// metadata both layouts need.
func benchDataset(n int) (meta map[string][]byte, keys []string) {
	rows := n / 100
	meta = map[string][]byte{
		"zarr.json":   []byte(`{"zarr_format":3,"node_type":"group","attributes":{}}`),
		"g/zarr.json": []byte(`{"zarr_format":3,"node_type":"group","attributes":{}}`),
		"g/v/zarr.json": fmt.Appendf(nil, `{"zarr_format":3,"node_type":"array","shape":[%d,3200],"data_type":"uint8",`+
			`"chunk_grid":{"name":"regular","configuration":{"chunk_shape":[32,32]}},`+
			`"chunk_key_encoding":{"name":"default","configuration":{"separator":"/"}},"fill_value":0,`+
			`"codecs":[{"name":"bytes"}],"attributes":{},"dimension_names":["y","x"]}`, rows*32),
	}
	keys = make([]string, 0, rows*100)
	for i := range rows {
		for j := range 100 {
			keys = append(keys, fmt.Sprintf("g/v/c/%d/%d", i, j))
		}
	}
	return meta, keys
}

// benchChunkValue is chunk i's 1 KiB, distinct per chunk.
func benchChunkValue(i int) []byte {
	v := make([]byte, 1024)
	r := rand.New(rand.NewPCG(uint64(i), 7))
	for j := 0; j < len(v); j += 8 {
		x := r.Uint64()
		for k := range 8 {
			v[j+k] = byte(x >> (8 * k))
		}
	}
	return v
}

// heapPeak samples the heap's live-object bytes until stop is called, which returns the peak.
func heapPeak() (stop func() uint64) {
	sample := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	var peak atomic.Uint64
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(time.Millisecond)
		defer t.Stop()
		for {
			metrics.Read(sample)
			if v := sample[0].Value.Uint64(); v > peak.Load() {
				peak.Store(v)
			}
			select {
			case <-done:
				return
			case <-t.C:
			}
		}
	}()
	return func() uint64 {
		close(done)
		wg.Wait()
		return peak.Load()
	}
}

func liveHeap() uint64 {
	runtime.GC()
	sample := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	metrics.Read(sample)
	return sample[0].Value.Uint64()
}

func BenchmarkZarrLayouts(b *testing.B) {
	ctx := context.Background()
	for _, n := range []int{10_000, 100_000} {
		meta, keys := benchDataset(n)
		values := make([][]byte, len(keys))
		for i := range values {
			values[i] = benchChunkValue(i)
		}
		order := rand.New(rand.NewPCG(3, 3)).Perm(len(keys))
		for _, l := range benchLayouts {
			// write stores the dataset in a new MemoryCAS, reporting the time and memory it took.
			write := func(b *testing.B) (*hamt.MemoryCAS, cid.Cid) {
				cas := hamt.NewMemoryCAS()
				base := liveHeap()
				stop := heapPeak()
				z, flush, err := l.create(cas)
				if err != nil {
					b.Fatal(err)
				}
				start := time.Now()
				for k, v := range meta {
					if err := z.Set(ctx, k, v); err != nil {
						b.Fatal(err)
					}
				}
				for i, k := range keys {
					if err := z.Set(ctx, k, values[i]); err != nil {
						b.Fatal(err)
					}
				}
				wrote := time.Since(start)
				root, err := flush(ctx)
				if err != nil {
					b.Fatal(err)
				}
				flushed := time.Since(start) - wrote
				peak := stop()
				b.ReportMetric(float64(len(keys))/wrote.Seconds(), "write-chunks/s")
				b.ReportMetric(float64(flushed.Microseconds())/1000, "flush-ms")
				b.ReportMetric(float64(int64(peak)-int64(base)-cas.Bytes())/1e6, "peak-heap-beyond-cas-MB")
				b.ReportMetric(float64(cas.Bytes())/1e6, "cas-MB")
				return cas, root
			}
			b.Run(fmt.Sprintf("%s/chunks=%d/write", l.name, n), func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					write(b)
				}
			})
			// The reads share one written dataset, made on first use.
			var cas *hamt.MemoryCAS
			var root cid.Cid
			dataset := func(b *testing.B) (*hamt.MemoryCAS, cid.Cid) {
				if cas == nil {
					cas, root = write(b)
				}
				return cas, root
			}
			readAll := func(b *testing.B, z hamt.Zarr) {
				for _, i := range order {
					v, err := z.Get(ctx, keys[i], hamt.ByteRange{})
					if err != nil || len(v) != len(values[i]) {
						b.Fatalf("%s: %d bytes, %v", keys[i], len(v), err)
					}
				}
			}
			b.Run(fmt.Sprintf("%s/chunks=%d/read-cold", l.name, n), func(b *testing.B) {
				b.ReportAllocs()
				cas, root := dataset(b)
				b.ResetTimer()
				for b.Loop() {
					z, err := l.open(ctx, cas, root)
					if err != nil {
						b.Fatal(err)
					}
					readAll(b, z)
				}
				b.ReportMetric(float64(b.N*len(keys))/b.Elapsed().Seconds(), "chunks/s")
				// What a cold read costs over a network: the index blocks (nodes or shards and the
				// root) loaded beside the chunks themselves, counted once, untimed.
				b.StopTimer()
				counted := &loadCountingCAS{CAS: cas}
				z, err := l.open(ctx, counted, root)
				if err != nil {
					b.Fatal(err)
				}
				readAll(b, z)
				b.ReportMetric(float64(counted.loads.Load()-int64(len(keys))), "index-blocks-loaded")
			})
			b.Run(fmt.Sprintf("%s/chunks=%d/read-warm", l.name, n), func(b *testing.B) {
				cas, root := dataset(b)
				z, err := l.open(ctx, cas, root)
				if err != nil {
					b.Fatal(err)
				}
				readAll(b, z)
				b.ReportAllocs()
				b.ResetTimer()
				for b.Loop() {
					readAll(b, z)
				}
				b.ReportMetric(float64(b.N*len(keys))/b.Elapsed().Seconds(), "chunks/s")
			})
			b.Run(fmt.Sprintf("%s/chunks=%d/read-warm-parallel", l.name, n), func(b *testing.B) {
				cas, root := dataset(b)
				z, err := l.open(ctx, cas, root)
				if err != nil {
					b.Fatal(err)
				}
				readAll(b, z)
				b.ReportAllocs()
				b.SetParallelism(16) // 16 × GOMAXPROCS readers of random chunks
				var seed atomic.Uint64
				b.ResetTimer()
				b.RunParallel(func(pb *testing.PB) {
					r := rand.New(rand.NewPCG(seed.Add(1), 5))
					for pb.Next() {
						i := r.IntN(len(keys))
						v, err := z.Get(ctx, keys[i], hamt.ByteRange{})
						if err != nil || len(v) != len(values[i]) {
							b.Errorf("%s: %d bytes, %v", keys[i], len(v), err)
							return
						}
					}
				})
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "chunks/s")
			})
		}
	}
}
