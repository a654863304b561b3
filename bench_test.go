package hamt_test

// Benchmarks of the workloads in the core issue: keys "key-%d" with 32-byte random values on a
// MemoryCAS, at 10k/100k/1M keys and bucket sizes 1, 4, 8, 16. One iteration runs the whole
// workload; the per-key numbers (ns/key, allocs/key) are what to compare. Run, for example:
//
//	go test -run XXX -bench 'Bulk/keys=1000000/bucket=4' -benchtime 1x -count 5 .
//
// The read benchmarks give the map a cache large enough for the whole tree (1 GiB) so that "warm"
// means every node is cached.

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

var (
	benchSizes   = []int{10_000, 100_000, 1_000_000}
	benchBuckets = []int{1, 4, 8, 16}
)

const benchCache = 1 << 30

// heapObjectsMetric is runtime.MemStats.HeapAlloc as a runtime/metrics name: the bytes of heap
// objects, live or not yet swept.
const heapObjectsMetric = "/memory/classes/heap/objects:bytes"

func benchKeys(n int) []string {
	keys := make([]string, n)
	for i := range keys {
		keys[i] = fmt.Sprintf("key-%d", i)
	}
	return keys
}

func benchValues(n int) [][]byte {
	r := rand.New(rand.NewPCG(1, 2))
	vals := make([][]byte, n)
	for i := range vals {
		v := make([]byte, 32)
		for j := range v {
			v[j] = byte(r.Uint32())
		}
		vals[i] = v
	}
	return vals
}

func shuffled(keys []string, seed uint64) []string {
	out := append([]string(nil), keys...)
	rand.New(rand.NewPCG(seed, 7)).Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	return out
}

// fixture is a flushed map shared by the read benchmarks of one size and bucket size.
type fixture struct {
	cas  *hamt.MemoryCAS
	root cid.Cid
	keys []string
	vals [][]byte
}

var (
	fixturesMu sync.Mutex
	fixtures   = map[[2]int]*fixture{}
)

func getFixture(b *testing.B, n, bucket int) *fixture {
	fixturesMu.Lock()
	defer fixturesMu.Unlock()
	if f, ok := fixtures[[2]int{n, bucket}]; ok {
		return f
	}
	f := &fixture{cas: hamt.NewMemoryCAS(), keys: benchKeys(n), vals: benchValues(n)}
	_, f.root = buildMap(b, f.cas, bucket, f.keys, f.vals)
	fixtures[[2]int{n, bucket}] = f
	return f
}

// buildMap sets every key in a new map on cas and flushes it.
func buildMap(b *testing.B, cas hamt.CAS, bucket int, keys []string, vals [][]byte) (*hamt.Map[[]byte], cid.Cid) {
	return buildMapOpts(b, cas, keys, vals, hamt.WithBucketSize(bucket))
}

// buildMapOpts sets every key in New(cas, opts...) and flushes it.
func buildMapOpts(b *testing.B, cas hamt.CAS, keys []string, vals [][]byte, opts ...hamt.Option) (*hamt.Map[[]byte], cid.Cid) {
	ctx := context.Background()
	m, err := hamt.New(ctx, cas, hamt.Bytes, opts...)
	if err != nil {
		b.Fatal(err)
	}
	for i, k := range keys {
		if err := m.Set(ctx, k, vals[i]); err != nil {
			b.Fatal(err)
		}
	}
	root, err := m.Flush(ctx)
	if err != nil {
		b.Fatal(err)
	}
	return m, root
}

// openWritable opens the fixture's root and enables writes.
func openWritable(b *testing.B, f *fixture) *hamt.Map[[]byte] {
	ctx := context.Background()
	m, err := hamt.Open(ctx, f.cas, hamt.Bytes, f.root)
	if err != nil {
		b.Fatal(err)
	}
	if err := m.EnableWrite(ctx); err != nil {
		b.Fatal(err)
	}
	return m
}

// perKey runs fn b.N times and reports time and allocations per key.
func perKey(b *testing.B, keys int, fn func()) {
	b.Helper()
	b.ReportAllocs()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	b.ResetTimer()
	for b.Loop() {
		fn()
	}
	b.StopTimer()
	runtime.ReadMemStats(&after)
	total := float64(b.N * keys)
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/total, "ns/key")
	b.ReportMetric(float64(after.Mallocs-before.Mallocs)/total, "allocs/key")
}

func forSizes(b *testing.B, fn func(b *testing.B, n, bucket int)) {
	for _, n := range benchSizes {
		for _, bucket := range benchBuckets {
			b.Run(fmt.Sprintf("keys=%d/bucket=%d", n, bucket), func(b *testing.B) { fn(b, n, bucket) })
		}
	}
}

// BenchmarkBulk: Set every key into a new map, then Flush. Also reports the peak heap seen
// during the run (sampled every millisecond) and the live heap after it, MemoryCAS included.
func BenchmarkBulk(b *testing.B) {
	forSizes(b, func(b *testing.B, n, bucket int) {
		keys, vals := benchKeys(n), benchValues(n)
		runtime.GC()
		var base runtime.MemStats
		runtime.ReadMemStats(&base)
		var peak atomic.Uint64
		stop := make(chan struct{})
		done := make(chan struct{})
		go func() {
			defer close(done)
			t := time.NewTicker(time.Millisecond)
			defer t.Stop()
			// runtime/metrics, unlike runtime.ReadMemStats, does not stop the world: a
			// ReadMemStats every millisecond made the write itself about 7.5 % slower.
			sample := []metrics.Sample{{Name: heapObjectsMetric}}
			for {
				select {
				case <-stop:
					return
				case <-t.C:
					metrics.Read(sample)
					if v := sample[0].Value.Uint64(); v > peak.Load() {
						peak.Store(v)
					}
				}
			}
		}()
		var live uint64
		perKey(b, n, func() {
			m, _ := buildMap(b, hamt.NewMemoryCAS(), bucket, keys, vals)
			b.StopTimer()
			runtime.GC()
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			live = ms.HeapAlloc
			runtime.KeepAlive(m)
			b.StartTimer()
		})
		close(stop)
		<-done
		const mib = 1 << 20
		b.ReportMetric(float64(peak.Load()-min(peak.Load(), base.HeapAlloc))/mib, "peak-heap-MiB")
		b.ReportMetric(float64(live-min(live, base.HeapAlloc))/mib, "live-heap-MiB")
	})
}

// BenchmarkGetCold: a fresh Open of the root, then every key once in random order.
func BenchmarkGetCold(b *testing.B) {
	forSizes(b, func(b *testing.B, n, bucket int) {
		ctx := context.Background()
		f := getFixture(b, n, bucket)
		order := shuffled(f.keys, 3)
		perKey(b, n, func() {
			m, err := hamt.Open(ctx, f.cas, hamt.Bytes, f.root, hamt.WithCacheBytes(benchCache))
			if err != nil {
				b.Fatal(err)
			}
			getAll(b, m, order)
		})
	})
}

// BenchmarkGetWarm: every key once in random order, every node already cached.
func BenchmarkGetWarm(b *testing.B) {
	forSizes(b, func(b *testing.B, n, bucket int) {
		ctx := context.Background()
		f := getFixture(b, n, bucket)
		order := shuffled(f.keys, 3)
		m, err := hamt.Open(ctx, f.cas, hamt.Bytes, f.root, hamt.WithCacheBytes(benchCache))
		if err != nil {
			b.Fatal(err)
		}
		getAll(b, m, order)
		perKey(b, n, func() {
			getAll(b, m, order)
		})
	})
}

// getAll gets every key of order.
func getAll(b *testing.B, m *hamt.Map[[]byte], order []string) {
	ctx := context.Background()
	for _, k := range order {
		if _, err := m.Get(ctx, k); err != nil {
			b.Fatal(err)
		}
	}
}

func countKeys(b *testing.B, m *hamt.Map[[]byte], want int) {
	ctx := context.Background()
	n := 0
	for _, err := range m.Keys(ctx) {
		if err != nil {
			b.Fatal(err)
		}
		n++
	}
	if n != want {
		b.Fatalf("Keys yielded %d, want %d", n, want)
	}
}

// BenchmarkKeysCold: a fresh Open, then iterate every key.
func BenchmarkKeysCold(b *testing.B) {
	forSizes(b, func(b *testing.B, n, bucket int) {
		f := getFixture(b, n, bucket)
		perKey(b, n, func() {
			m, err := hamt.Open(context.Background(), f.cas, hamt.Bytes, f.root, hamt.WithCacheBytes(benchCache))
			if err != nil {
				b.Fatal(err)
			}
			countKeys(b, m, n)
		})
	})
}

// BenchmarkKeysWarm: iterate every key with every node cached.
func BenchmarkKeysWarm(b *testing.B) {
	forSizes(b, func(b *testing.B, n, bucket int) {
		f := getFixture(b, n, bucket)
		m, err := hamt.Open(context.Background(), f.cas, hamt.Bytes, f.root, hamt.WithCacheBytes(benchCache))
		if err != nil {
			b.Fatal(err)
		}
		countKeys(b, m, n)
		perKey(b, n, func() { countKeys(b, m, n) })
	})
}

// BenchmarkDelete: open the root for writing, delete 10% of the keys in random order, Flush.
// ns/key is per deleted key.
func BenchmarkDelete(b *testing.B) {
	forSizes(b, func(b *testing.B, n, bucket int) {
		ctx := context.Background()
		f := getFixture(b, n, bucket)
		victims := shuffled(f.keys, 5)[:n/10]
		perKey(b, len(victims), func() {
			m := openWritable(b, f)
			for _, k := range victims {
				if err := m.Delete(ctx, k); err != nil {
					b.Fatal(err)
				}
			}
			if _, err := m.Flush(ctx); err != nil {
				b.Fatal(err)
			}
		})
	})
}

// BenchmarkDeleteMost: open the root for writing, delete 90% of the keys in random order, Flush.
// As the map shrinks, most subtrees on the delete paths end up small enough to fold back into
// buckets, so this measures what folding costs. ns/key is per deleted key.
func BenchmarkDeleteMost(b *testing.B) {
	forSizes(b, func(b *testing.B, n, bucket int) {
		ctx := context.Background()
		f := getFixture(b, n, bucket)
		victims := shuffled(f.keys, 6)[:n-n/10]
		perKey(b, len(victims), func() {
			m := openWritable(b, f)
			for _, k := range victims {
				if err := m.Delete(ctx, k); err != nil {
					b.Fatal(err)
				}
			}
			if _, err := m.Flush(ctx); err != nil {
				b.Fatal(err)
			}
		})
	})
}

// BenchmarkUpdate1Percent: open the root for writing, give 1% of the keys (random) new values,
// Flush. ns/op is the whole update and flush.
func BenchmarkUpdate1Percent(b *testing.B) {
	forSizes(b, func(b *testing.B, n, bucket int) {
		ctx := context.Background()
		f := getFixture(b, n, bucket)
		victims := shuffled(f.keys, 9)[:n/100]
		fresh := benchValues(len(victims) + 1)[1:]
		b.ReportAllocs()
		for b.Loop() {
			m := openWritable(b, f)
			for i, k := range victims {
				if err := m.Set(ctx, k, fresh[i]); err != nil {
					b.Fatal(err)
				}
			}
			if _, err := m.Flush(ctx); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkCalibration measures what one random access costs on this machine, to read the Get
// numbers against: a lookup in a Go map of 1M entries, a MemoryCAS.Load of one of 1M blocks, and
// the BLAKE3 of a key, each in random order. ns/op is per lookup. PointerChase is the latency of
// one dependent read from memory: each read's address comes from the previous one, over a random
// cycle through 4 to 256 MiB, as the steps of one Get depend on each other. The sizes show where
// the CPU caches end; a 1M-key map, its store and its read cache touch over 200 MiB at random.
func BenchmarkCalibration(b *testing.B) {
	for _, mib := range []int{4, 16, 32, 256} {
		b.Run(fmt.Sprintf("PointerChase/%dMiB", mib), func(b *testing.B) {
			lines := mib << 20 / 64 // one pointer per 64-byte cache line
			next := make([]int32, lines*16)
			perm := rand.New(rand.NewPCG(17, 7)).Perm(lines)
			for i, p := range perm {
				next[p*16] = int32(perm[(i+1)%lines] * 16)
			}
			p := int32(0)
			b.ResetTimer()
			for b.Loop() {
				p = next[p]
			}
			runtime.KeepAlive(p)
		})
	}
	const n = 1_000_000
	keys := shuffled(benchKeys(n), 11)
	vals := benchValues(n)
	b.Run("GoMapGet", func(b *testing.B) {
		m := make(map[string][]byte, n)
		for i, k := range keys {
			m[k] = vals[i]
		}
		order := shuffled(keys, 12)
		b.ResetTimer()
		for i := 0; b.Loop(); i++ {
			if m[order[i%n]] == nil {
				b.Fatal("missing")
			}
		}
	})
	b.Run("MemoryCASLoad", func(b *testing.B) {
		ctx := context.Background()
		cas := hamt.NewMemoryCAS()
		ids := make([]cid.Cid, n)
		for i := range ids {
			var err error
			if ids[i], err = cas.Save(ctx, vals[i], 0x55); err != nil {
				b.Fatal(err)
			}
		}
		rand.New(rand.NewPCG(13, 7)).Shuffle(n, func(i, j int) { ids[i], ids[j] = ids[j], ids[i] })
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; b.Loop(); i++ {
			if _, err := cas.Load(ctx, ids[i%n]); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("Blake3Key", func(b *testing.B) {
		for i := 0; b.Loop(); i++ {
			if len(hamt.Blake3([]byte(keys[i%n]))) != 32 {
				b.Fatal("short digest")
			}
		}
	})
}
