package hamt_test

// Benchmarks of whole-tree walks over a store with latency, and of the same walks on the fast local
// stores, which prefetching must not slow down (issue 14 part 3). Run:
//
//	go test -run XXX -bench 'WalkLatency' -benchtime 3x .
//	go test -run XXX -bench 'WalkLocal' -count 6 .

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/hamt-go/hamt"
	"github.com/hamt-go/hamt/internal/kubotest"
	"github.com/ipfs/go-cid"
	"github.com/multiformats/go-multicodec"
)

// nodeRecorder keeps the CID and a copy of every node block (dag-cbor) loaded through it, in the
// order they were loaded.
type nodeRecorder struct {
	hamt.CAS
	mu     sync.Mutex
	ids    []cid.Cid
	blocks [][]byte
}

func (c *nodeRecorder) Load(ctx context.Context, id cid.Cid) ([]byte, error) {
	b, err := c.CAS.Load(ctx, id)
	if err == nil && id.Type() == uint64(multicodec.DagCbor) {
		c.mu.Lock()
		c.ids = append(c.ids, id)
		c.blocks = append(c.blocks, bytes.Clone(b))
		c.mu.Unlock()
	}
	return b, err
}

// walkBenchKeys is the map the latency benchmarks walk: 60,000 keys, default options (408 nodes).
const walkBenchKeys = 60_000

// walkBenchLatency is the store's latency per node load: a remote gateway's round trip.
const walkBenchLatency = 10 * time.Millisecond

var walkBenchOnce = sync.OnceValues(func() (*hamt.MemoryCAS, cid.Cid) {
	mem := hamt.NewMemoryCAS()
	ctx := context.Background()
	m, err := hamt.New(ctx, mem, hamt.Bytes)
	if err != nil {
		panic(err)
	}
	keys, vals := benchKeys(walkBenchKeys), benchValues(walkBenchKeys)
	for i, k := range keys {
		if err := m.Set(ctx, k, vals[i]); err != nil {
			panic(err)
		}
	}
	root, err := m.Flush(ctx)
	if err != nil {
		panic(err)
	}
	return mem, root
})

// walkBenchRuns are the walks the benchmarks time, each over a map opened afresh (nothing cached).
var walkBenchRuns = []struct {
	name string
	run  func(ctx context.Context, cas hamt.CAS, root cid.Cid) (int, error)
}{
	{"Keys", func(ctx context.Context, cas hamt.CAS, root cid.Cid) (int, error) {
		m, err := hamt.Open(ctx, cas, hamt.Bytes, root)
		if err != nil {
			return 0, err
		}
		return walkKeysOf(m.Keys(ctx))
	}},
	{"All", func(ctx context.Context, cas hamt.CAS, root cid.Cid) (int, error) {
		m, err := hamt.Open(ctx, cas, hamt.Bytes, root)
		if err != nil {
			return 0, err
		}
		n := 0
		for _, err := range m.All(ctx) {
			if err != nil {
				return n, err
			}
			n++
		}
		return n, nil
	}},
	{"Len", func(ctx context.Context, cas hamt.CAS, root cid.Cid) (int, error) {
		m, err := hamt.Open(ctx, cas, hamt.Bytes, root)
		if err != nil {
			return 0, err
		}
		return m.Len(ctx)
	}},
	{"Inspect", func(ctx context.Context, cas hamt.CAS, root cid.Cid) (int, error) {
		st, err := hamt.Inspect(ctx, cas, root, false)
		return st.Keys, err
	}},
	{"WriteCAR", func(ctx context.Context, cas hamt.CAS, root cid.Cid) (int, error) {
		n, err := hamt.WriteCAR(ctx, cas, root, io.Discard)
		return n, err // blocks: every node and every (distinct) value
	}},
}

// BenchmarkWalkLatency: each walk of a 60k-key map over a store whose node loads take 10 ms (value
// loads are immediate: this measures the walk; All's and GetMany's value read-ahead has its own
// benchmarks), except WriteCAR's, whose 60k value loads take 10 ms too (it reads every block).
// Before parallel walks every one took 408 round trips, about 4.2 s; WriteCAR, reading values
// one at a time, 60k round trips more.
func BenchmarkWalkLatency(b *testing.B) {
	mem, root := walkBenchOnce()
	ctx := context.Background()
	for _, w := range walkBenchRuns {
		b.Run(w.name, func(b *testing.B) {
			var valueDelay time.Duration
			if w.name == "WriteCAR" {
				valueDelay = walkBenchLatency
			}
			cas := newLatencyCAS(mem, walkBenchLatency, valueDelay)
			b.ReportAllocs()
			for b.Loop() {
				n, err := w.run(ctx, cas, root)
				if err != nil || n != walkBenchKeys && (w.name != "WriteCAR" || n < walkBenchKeys) {
					b.Fatalf("%s: %d keys, %v", w.name, n, err)
				}
			}
			b.ReportMetric(float64(cas.maxInFlight.Load()), "max-in-flight")
			if valueDelay > 0 {
				b.ReportMetric(float64(cas.maxValuesInFlight.Load()), "max-values-in-flight")
			}
		})
	}
}

// BenchmarkWalkLocal: Keys, All and Len of the same map on MemoryCAS and on a BoltCAS file, opened
// afresh for each run, and WriteCAR and Inspect with value sizes, where loads take microseconds
// and a walk must not pay for prefetching.
func BenchmarkWalkLocal(b *testing.B) {
	mem, root := walkBenchOnce()
	ctx := context.Background()
	bolt, err := hamt.OpenBoltCAS(filepath.Join(b.TempDir(), "walk.bolt"))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { bolt.Close() })
	var car bytes.Buffer
	if _, err := hamt.WriteCAR(ctx, mem, root, &car); err != nil {
		b.Fatal(err)
	}
	if _, _, err := hamt.ReadCAR(ctx, bolt, &car); err != nil {
		b.Fatal(err)
	}
	for _, store := range []struct {
		name string
		cas  hamt.CAS
	}{{"MemoryCAS", mem}, {"BoltCAS", bolt}} {
		for _, w := range walkBenchRuns[:3] {
			b.Run(store.name+"/"+w.name, func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					if n, err := w.run(ctx, store.cas, root); err != nil || n != walkBenchKeys {
						b.Fatalf("%s: %d keys, %v", w.name, n, err)
					}
				}
			})
		}
		// The tools that read values too: they must not pay for loading them ahead either.
		b.Run(store.name+"/WriteCAR", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if n, err := hamt.WriteCAR(ctx, store.cas, root, io.Discard); err != nil || n < walkBenchKeys {
					b.Fatalf("WriteCAR: %d blocks, %v", n, err)
				}
			}
		})
		b.Run(store.name+"/InspectValueSizes", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if st, err := hamt.Inspect(ctx, store.cas, root, true); err != nil || st.ValueBytes <= 0 {
					b.Fatalf("Inspect: %+v, %v", st, err)
				}
			}
		})
	}
}

// BenchmarkKuboWalkLatency: Keys of the 60k-key map through KuboCAS on the Kubo look-alike (a real
// HTTP server on 127.0.0.1, sharing the machine's cores with the client), its gateway answering
// every read at once or after 10 ms, one node at a time (WithWalkParallelism(1)) and by default.
func BenchmarkKuboWalkLatency(b *testing.B) {
	mem, root := walkBenchOnce()
	ctx := context.Background()
	srv := kubotest.New(b)
	k := newKubo(b, srv)
	// Keys reads nodes only: the look-alike gets the node blocks, not the 60k values.
	nodes := &nodeRecorder{CAS: mem}
	if _, err := walkKeysOf(mustOpen(b, ctx, nodes, root).Keys(ctx)); err != nil {
		b.Fatal(err)
	}
	for _, data := range nodes.blocks {
		if _, err := k.Save(ctx, data, multicodec.DagCbor); err != nil {
			b.Fatal(err)
		}
	}
	for _, delay := range []time.Duration{0, walkBenchLatency} {
		for _, par := range []int{1, hamt.DefaultWalkParallelism} {
			b.Run(fmt.Sprintf("delay=%v/parallelism=%d", delay, par), func(b *testing.B) {
				srv.ClearFaults()
				if delay > 0 {
					srv.Inject(kubotest.Fault{Endpoint: kubotest.Gateway, Path: "/ipfs/", Times: -1, Delay: delay})
				}
				b.ReportAllocs()
				for b.Loop() {
					m := mustOpen(b, ctx, k, root, hamt.WithWalkParallelism(par))
					if n, err := walkKeysOf(m.Keys(ctx)); err != nil || n != walkBenchKeys {
						b.Fatalf("Keys: %d keys, %v", n, err)
					}
				}
			})
		}
	}
}
