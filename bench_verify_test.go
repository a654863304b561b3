package hamt_test

// Benchmarks of Verify over the 60k-key map of the walk benchmarks. Run:
//
//	go test -run XXX -bench 'Verify' -benchtime 5x .

import (
	"bytes"
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/hamt-go/hamt"
)

// BenchmarkVerify: Verify of a 60,000-key map (default options, every value read and hashed) on
// MemoryCAS, on a BoltCAS file, and on a store whose node loads take 10 ms and value loads 1 ms.
func BenchmarkVerify(b *testing.B) {
	mem, root := walkBenchOnce()
	ctx := context.Background()
	bolt, err := hamt.OpenBoltCAS(filepath.Join(b.TempDir(), "verify.bolt"))
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
	}{
		{"MemoryCAS", mem},
		{"BoltCAS", bolt},
		{"Latency", newLatencyCAS(mem, walkBenchLatency, time.Millisecond)},
	} {
		b.Run(store.name, func(b *testing.B) {
			b.ReportAllocs()
			var rep hamt.VerifyReport
			for b.Loop() {
				if rep, err = hamt.Verify(ctx, store.cas, root); err != nil || !rep.OK() || rep.Keys != walkBenchKeys {
					b.Fatalf("%d keys, %v, problems %v", rep.Keys, err, rep.Problems)
				}
			}
			b.ReportMetric(float64(rep.Bytes)/1e6, "MB-read")
		})
	}
}
