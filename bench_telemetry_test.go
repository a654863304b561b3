package hamt_test

import (
	"context"
	"encoding/binary"
	"fmt"
	"testing"

	"github.com/hamt-go/hamt"
	"github.com/ipfs/go-cid"
	"github.com/multiformats/go-multicodec"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// The benchmarks of the telemetry's cost. BenchmarkObsGetWarm and BenchmarkObsWriteFlush use only
// the API the package had before telemetry, so that the same file measures a commit without it
// (A/B, with BenchmarkBoltLoad); the Telemetry variants measure it switched on, with the SDK's
// providers (every span sampled, no exporter).

// sdkTelemetry is a Telemetry on the SDK's providers, shut down when b ends.
func sdkTelemetry(b *testing.B) *hamt.Telemetry {
	tp := sdktrace.NewTracerProvider()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader()))
	tel, err := hamt.NewTelemetry(tp, mp)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = tel.Close(); _ = tp.Shutdown(context.Background()); _ = mp.Shutdown(context.Background()) })
	return tel
}

// benchGetWarm: Get on a warm read-only map of 10,000 keys in memory.
func benchGetWarm(b *testing.B, opts ...hamt.Option) {
	ctx := context.Background()
	cas := hamt.NewMemoryCAS()
	w, _ := hamt.New(ctx, cas, hamt.Bytes)
	keys := make([]string, 10000)
	for i := range keys {
		keys[i] = fmt.Sprint("key/", i)
		if err := w.Set(ctx, keys[i], []byte(keys[i])); err != nil {
			b.Fatal(err)
		}
	}
	root, _ := w.Flush(ctx)
	m, err := hamt.Open(ctx, cas, hamt.Bytes, root, opts...)
	if err != nil {
		b.Fatal(err)
	}
	for _, k := range keys {
		if _, err := m.Get(ctx, k); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if _, err := m.Get(ctx, keys[i%len(keys)]); err != nil {
			b.Fatal(err)
		}
	}
}

// benchWriteFlush: 1,000 Sets into a new memory map, then Flush.
func benchWriteFlush(b *testing.B, opts ...hamt.Option) {
	ctx := context.Background()
	keys := make([]string, 1000)
	for i := range keys {
		keys[i] = fmt.Sprint("key/", i)
	}
	b.ReportAllocs()
	for b.Loop() {
		m, _ := hamt.New(ctx, hamt.NewMemoryCAS(), hamt.Bytes, opts...)
		for _, k := range keys {
			if err := m.Set(ctx, k, []byte(k)); err != nil {
				b.Fatal(err)
			}
		}
		if _, err := m.Flush(ctx); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkObsGetWarm(b *testing.B)    { benchGetWarm(b) }
func BenchmarkObsWriteFlush(b *testing.B) { benchWriteFlush(b) }

func BenchmarkTelemetryGetWarm(b *testing.B) { benchGetWarm(b, hamt.WithTelemetry(sdkTelemetry(b))) }
func BenchmarkTelemetryWriteFlush(b *testing.B) {
	benchWriteFlush(b, hamt.WithTelemetry(sdkTelemetry(b)))
}

// BenchmarkTelemetryBoltLoad is BenchmarkBoltLoad/1KiB with WithBoltTelemetry: a span and the
// load metrics per Load.
func BenchmarkTelemetryBoltLoad(b *testing.B) {
	ctx := context.Background()
	path := boltTempPath(b)
	const blocks = 256
	cas := boltOpen(b, path)
	ids := make([]cid.Cid, blocks)
	data := make([]byte, 1<<10)
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
	cas = boltOpen(b, path, hamt.WithBoltReadOnly(), hamt.WithBoltTelemetry(sdkTelemetry(b)))
	b.SetBytes(1 << 10)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if _, err := cas.Load(ctx, ids[i%blocks]); err != nil {
			b.Fatal(err)
		}
	}
}
