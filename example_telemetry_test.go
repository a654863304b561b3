package hamt_test

import (
	"context"
	"fmt"

	"github.com/hamt-go/hamt"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

// A program hands the map (and its stores, and its HTTP handler) one Telemetry made from the
// providers it set up: here the SDK's, keeping spans in memory. A real program would give the
// SDK an exporter (OTLP, stdout) instead, or pass otel.GetTracerProvider() and
// otel.GetMeterProvider().
func ExampleNewTelemetry() {
	ctx := context.Background()
	spans := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans))
	defer tp.Shutdown(ctx)
	tel, err := hamt.NewTelemetry(tp, nil) // no metrics
	if err != nil {
		panic(err)
	}
	defer tel.Close()

	cas := hamt.NewMemoryCAS()
	m, _ := hamt.New(ctx, cas, hamt.Bytes, hamt.WithTelemetry(tel))
	_ = m.Set(ctx, "temp/zarr.json", []byte(`{"zarr_format":3}`))
	root, _ := m.Flush(ctx)
	r, _ := hamt.Open(ctx, cas, hamt.Bytes, root, hamt.WithTelemetry(tel))
	_, _ = r.Get(ctx, "temp/zarr.json")

	for _, s := range spans.Ended() {
		fmt.Println(s.Name())
	}
	// Output:
	// hamt.flush
	// hamt.node.load
}
