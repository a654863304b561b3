package hamt_test

// Benchmarks of KuboCAS against the in-process Kubo look-alike (internal/kubotest: boxo's
// importer, blockstore and gateway on 127.0.0.1). Run, for example:
//
//	go test -run XXX -bench 'Kubo' -benchtime 2s .

import (
	"context"
	"fmt"
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
				var n atomic.Uint64
				base := patterned(size)
				b.SetBytes(int64(size))
				runClients(b, par, func() error {
					v := append([]byte(nil), base...)
					i := n.Add(1)
					for j := range 8 {
						v[j] = byte(i >> (8 * j))
					}
					_, err := k.Save(context.Background(), v, multicodec.Raw)
					return err
				})
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
