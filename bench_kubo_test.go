package hamt_test

// Benchmarks of KuboCAS against the in-process Kubo look-alike (internal/kubotest: boxo's
// importer, blockstore and gateway on 127.0.0.1). Run, for example:
//
//	go test -run XXX -bench 'Kubo' -benchtime 2s .

import (
	"context"
	"fmt"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hamt-go/hamt"
	"github.com/hamt-go/hamt/internal/kubotest"
	"github.com/ipfs/go-cid"
	"github.com/multiformats/go-multicodec"
)

// BenchmarkKuboSave and BenchmarkKuboLoad: one value per op, 1 KB and 1 MB, sequential and from
// 32 goroutines. Each saved value is distinct (its first 8 bytes are a counter).
func BenchmarkKuboSave(b *testing.B) {
	for _, size := range []int{1 << 10, 1 << 20} {
		for _, par := range []int{1, 32} {
			b.Run(fmt.Sprintf("size=%d/clients=%d", size, par), func(b *testing.B) {
				srv := kubotest.New(b)
				k := newKubo(b, srv)
				saveDistinct(b, par, size, k.Save)
			})
		}
	}
}

func BenchmarkKuboLoad(b *testing.B) {
	for _, size := range []int{1 << 10, 1 << 20} {
		for _, par := range []int{1, 32} {
			b.Run(fmt.Sprintf("size=%d/clients=%d", size, par), func(b *testing.B) {
				srv := kubotest.New(b)
				k := newKubo(b, srv)
				ids := make([]cid.Cid, 64)
				for i := range ids {
					v := patterned(size)
					v[0], v[1] = byte(i), 0xfe
					id, err := k.Save(context.Background(), v, multicodec.Raw)
					if err != nil {
						b.Fatal(err)
					}
					ids[i] = id
				}
				var n atomic.Uint64
				b.SetBytes(int64(size))
				runClients(b, par, func() error {
					_, err := k.Load(context.Background(), ids[n.Add(1)%uint64(len(ids))])
					return err
				})
			})
		}
	}
}

// runClients runs op b.N times from par goroutines and reports ops/s.
func runClients(b *testing.B, par int, op func() error) {
	b.Helper()
	b.ReportAllocs()
	b.ResetTimer()
	if par == 1 {
		for b.Loop() {
			if err := op(); err != nil {
				b.Fatal(err)
			}
		}
	} else {
		b.SetParallelism((par + 1) / 2) // × GOMAXPROCS (2 here)
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if err := op(); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "ops/s")
}

// BenchmarkKuboMap100k: 100,000 keys (32-byte values) set into a map on KuboCAS from 32
// goroutines, then flushed. Reports seconds per whole run and the requests sent.
func BenchmarkKuboMap100k(b *testing.B) {
	const n = 100_000
	keys, vals := benchKeys(n), benchValues(n)
	for b.Loop() {
		b.StopTimer()
		srv := kubotest.New(b)
		k := newKubo(b, srv)
		b.StartTimer()
		start := time.Now()
		ctx := context.Background()
		m, err := hamt.New(ctx, k, hamt.Bytes)
		if err != nil {
			b.Fatal(err)
		}
		var next atomic.Int64
		errs := make(chan error, 32)
		for range 32 {
			go func() {
				for {
					i := next.Add(1) - 1
					if i >= n {
						errs <- nil
						return
					}
					if err := m.Set(ctx, keys[i], vals[i]); err != nil {
						errs <- err
						return
					}
				}
			}()
		}
		for range 32 {
			if err := <-errs; err != nil {
				b.Fatal(err)
			}
		}
		if _, err := m.Flush(ctx); err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(time.Since(start).Seconds(), "s/map")
		b.ReportMetric(float64(srv.Total(kubotest.AnyEndpoint)), "requests")
		b.StopTimer()
		srv.Close()
		b.StartTimer()
	}
}

// BenchmarkKuboHedgedLoad: the tail latency hedged reads save. Two gateways serve the same
// blocks; the first one holds 2 % of its answers for 50 ms (a latency spike), the second is
// steady. Sequential Loads of 1 KiB blocks, without hedging, with the default adaptive delay
// (each gateway's p95, at least 10 ms) and with a fixed 2 ms delay. Reports the p50, p95 and p99 latency of one Load and how
// many requests per Load went to the second gateway (the price of hedging).
func BenchmarkKuboHedgedLoad(b *testing.B) {
	for _, c := range []struct {
		name string
		opt  hamt.KuboOption
	}{
		{"hedging=off", hamt.WithKuboHedging(0, 1)},
		{"hedging=adaptive", hamt.WithKuboHedging(0, hamt.DefaultKuboHedgeMax)},
		{"hedging=2ms", hamt.WithKuboHedging(2*time.Millisecond, hamt.DefaultKuboHedgeMax)},
	} {
		b.Run(c.name, func(b *testing.B) {
			fleet := gatewayFleet(b, 2)
			k := newFleetKubo(b, fleet[0], fleet, c.opt)
			ctx := context.Background()
			ids := make([]cid.Cid, 64)
			for i := range ids {
				v := patterned(1 << 10)
				v[0], v[1] = byte(i), 0xfd
				id, err := k.Save(ctx, v, multicodec.Raw)
				if err != nil {
					b.Fatal(err)
				}
				ids[i] = id
			}
			for _, id := range ids { // warm up: connections, and the gateways' answer times
				if _, err := k.Load(ctx, id); err != nil {
					b.Fatal(err)
				}
			}
			fleet[0].Inject(kubotest.Fault{Endpoint: kubotest.Gateway, Delay: 50 * time.Millisecond, Chance: 0.02, Times: -1})
			fleet[1].ResetCounters()
			var lat []time.Duration
			b.ReportAllocs()
			b.ResetTimer()
			i := 0
			for b.Loop() {
				start := time.Now()
				if _, err := k.Load(ctx, ids[i%len(ids)]); err != nil {
					b.Fatal(err)
				}
				lat = append(lat, time.Since(start))
				i++
			}
			slices.Sort(lat)
			at := func(q float64) float64 { return float64(lat[int(q*float64(len(lat)-1))].Microseconds()) / 1000 }
			b.ReportMetric(at(0.50), "p50-ms")
			b.ReportMetric(at(0.95), "p95-ms")
			b.ReportMetric(at(0.99), "p99-ms")
			b.ReportMetric(float64(fleet[1].Total(kubotest.Gateway))/float64(len(lat)), "hedges/op")
		})
	}
}

// BenchmarkKuboBulkSave: BenchmarkKuboSave's values through a bulk session (one dag/import
// stream, CIDs computed here) instead of an add each. It reports the RPC requests per op. The
// final Flush (waiting for Kubo to take what is still buffered, at most 256 KiB and the pipe) is
// outside the timing. Measured (2 cores, loaded): 1 KB values 6.7 µs/op against 97 µs/op for an
// add each, 1 MB values 2.0 ms/op against 1.8 ms/op (bandwidth either way).
func BenchmarkKuboBulkSave(b *testing.B) {
	for _, size := range []int{1 << 10, 1 << 20} {
		for _, par := range []int{1, 32} {
			b.Run(fmt.Sprintf("size=%d/clients=%d", size, par), func(b *testing.B) {
				srv := kubotest.New(b)
				k := newKubo(b, srv)
				bulk, err := k.Bulk(context.Background())
				if err != nil {
					b.Fatal(err)
				}
				defer bulk.Close()
				saveDistinct(b, par, size, bulk.Save)
				if err := bulk.Flush(context.Background()); err != nil {
					b.Fatal(err)
				}
				b.ReportMetric(float64(srv.Total(kubotest.RPC))/float64(b.N), "requests/op")
			})
		}
	}
}

// saveDistinct runs save from par clients on values of size bytes, each one different (its first
// eight bytes a counter), as raw blocks.
func saveDistinct(b *testing.B, par, size int, save func(context.Context, []byte, multicodec.Code) (cid.Cid, error)) {
	var n atomic.Uint64
	base := patterned(size)
	b.SetBytes(int64(size))
	runClients(b, par, func() error {
		v := append([]byte(nil), base...)
		i := n.Add(1)
		for j := range 8 {
			v[j] = byte(i >> (8 * j))
		}
		_, err := save(context.Background(), v, multicodec.Raw)
		return err
	})
}
