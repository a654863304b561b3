package hamt_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"slices"
	"testing"

	"github.com/hamt-go/hamt"
	"github.com/hamt-go/hamt/internal/kubotest"
	"github.com/ipfs/go-cid"
	"github.com/multiformats/go-multicodec"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

// observed is a Telemetry whose spans and metrics a test reads back: the SDK's in-memory span
// recorder and a manual metric reader.
type observed struct {
	tel    *hamt.Telemetry
	spans  *tracetest.SpanRecorder
	reader *sdkmetric.ManualReader
}

func newObserved(t *testing.T) *observed {
	t.Helper()
	o := &observed{spans: tracetest.NewSpanRecorder(), reader: sdkmetric.NewManualReader()}
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(o.spans))
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(o.reader))
	tel, err := hamt.NewTelemetry(tp, mp)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tel.Close(); _ = tp.Shutdown(context.Background()); _ = mp.Shutdown(context.Background()) })
	o.tel = tel
	return o
}

// ended returns the ended spans named name.
func (o *observed) ended(name string) []sdktrace.ReadOnlySpan {
	var out []sdktrace.ReadOnlySpan
	for _, s := range o.spans.Ended() {
		if s.Name() == name {
			out = append(out, s)
		}
	}
	return out
}

// metric returns the data points of the metric named name, collected now.
func (o *observed) metric(t *testing.T, name string) metricdata.Aggregation {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := o.reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	for _, sm := range rm.ScopeMetrics {
		if sm.Scope.Name != "github.com/hamt-go/hamt" {
			t.Errorf("instrumentation scope %q", sm.Scope.Name)
		}
		for _, m := range sm.Metrics {
			if m.Name == name {
				return m.Data
			}
		}
	}
	return nil
}

// sum is the value of the sum metric name at the point with exactly attrs (0 if none).
func (o *observed) sum(t *testing.T, name string, attrs ...attribute.KeyValue) int64 {
	t.Helper()
	want := attribute.NewSet(attrs...)
	s, ok := o.metric(t, name).(metricdata.Sum[int64])
	if !ok {
		return 0
	}
	for _, p := range s.DataPoints {
		if p.Attributes.Equals(&want) {
			return p.Value
		}
	}
	return 0
}

// histCount is how many values the float histogram name recorded at the point with attrs.
func (o *observed) histCount(t *testing.T, name string, attrs ...attribute.KeyValue) uint64 {
	t.Helper()
	want := attribute.NewSet(attrs...)
	h, ok := o.metric(t, name).(metricdata.Histogram[float64])
	if !ok {
		return 0
	}
	for _, p := range h.DataPoints {
		if p.Attributes.Equals(&want) {
			return p.Count
		}
	}
	return 0
}

// attr returns the value of key among a span's attributes.
func attr(s sdktrace.ReadOnlySpan, key string) (attribute.Value, bool) {
	for _, kv := range s.Attributes() {
		if string(kv.Key) == key {
			return kv.Value, true
		}
	}
	return attribute.Value{}, false
}

func nodeKind(kind string) attribute.KeyValue { return attribute.String("hamt.cache.kind", kind) }

// TestTelemetryCountsCacheHitsAndMissesOfAKnownAccessPattern: the first Get of a key in a map just
// opened misses the cache once per node below the root on its path (each a hamt.node.load span);
// the same Get again hits it as many times and loads nothing. Values from a fast store (memory)
// are read from the store: misses.
func TestTelemetryCountsCacheHitsAndMissesOfAKnownAccessPattern(t *testing.T) {
	ctx := context.Background()
	cas := hamt.NewMemoryCAS()
	w, err := hamt.New(ctx, cas, hamt.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3000 {
		if err := w.Set(ctx, fmt.Sprint("k", i), []byte{byte(i)}); err != nil {
			t.Fatal(err)
		}
	}
	root, err := w.Flush(ctx)
	if err != nil {
		t.Fatal(err)
	}
	o := newObserved(t)
	m, err := hamt.Open(ctx, cas, hamt.Bytes, root, hamt.WithTelemetry(o.tel))
	if err != nil {
		t.Fatal(err)
	}
	rootLoads := len(o.ended("hamt.node.load")) // Open loads the root: not a cache lookup
	if rootLoads != 1 {
		t.Fatalf("Open made %d node loads, want 1 (the root)", rootLoads)
	}
	if _, err := m.Get(ctx, "k42"); err != nil {
		t.Fatal(err)
	}
	depth := o.sum(t, "hamt.cache.misses", nodeKind("node"))
	if depth < 1 || o.sum(t, "hamt.cache.hits", nodeKind("node")) != 0 {
		t.Fatalf("first Get: %d node misses, %d hits; want ≥ 1 and 0", depth, o.sum(t, "hamt.cache.hits", nodeKind("node")))
	}
	loads := o.ended("hamt.node.load")
	if int64(len(loads)-rootLoads) != depth {
		t.Errorf("first Get: %d hamt.node.load spans for %d misses", len(loads)-rootLoads, depth)
	}
	for _, s := range loads {
		if v, ok := attr(s, "hamt.cid"); !ok || !cid.MustParse(v.AsString()).Defined() {
			t.Errorf("hamt.node.load without its CID: %v", s.Attributes())
		}
	}
	if _, err := m.Get(ctx, "k42"); err != nil {
		t.Fatal(err)
	}
	if h, mi := o.sum(t, "hamt.cache.hits", nodeKind("node")), o.sum(t, "hamt.cache.misses", nodeKind("node")); h != depth || mi != depth {
		t.Errorf("second Get: %d node hits and %d misses, want %d and %d", h, mi, depth, depth)
	}
	if n := len(o.ended("hamt.node.load")); n != len(loads) {
		t.Errorf("second Get loaded %d nodes, want none", n-len(loads))
	}
	if mi := o.sum(t, "hamt.cache.misses", nodeKind("value")); mi != 2 {
		t.Errorf("value misses %d, want 2 (a memory store is read, not the cache)", mi)
	}
	if n := o.histCount(t, "hamt.node.load.duration", attribute.String("hamt.cas.status", "ok")); n != uint64(len(loads)) {
		t.Errorf("hamt.node.load.duration counted %d loads, want %d", n, len(loads))
	}
}

// TestTelemetryBoltSpansAndMetrics: BoltCAS records a span per save, flush and load, with the
// CID, status and sizes; a load of a block it lacks is an error span (not_found), counted apart.
// The node saves of a map's flush are children of its hamt.flush span, which says how many nodes
// it saved and the root.
func TestTelemetryBoltSpansAndMetrics(t *testing.T) {
	ctx := context.Background()
	o := newObserved(t)
	b, err := hamt.OpenBoltCAS(filepath.Join(t.TempDir(), "s.bolt"), hamt.WithBoltTelemetry(o.tel))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	m, err := hamt.New(ctx, b, hamt.Bytes, hamt.WithTelemetry(o.tel))
	if err != nil {
		t.Fatal(err)
	}
	for i := range 1000 {
		if err := m.Set(ctx, fmt.Sprint("key", i), []byte(fmt.Sprint("value", i))); err != nil {
			t.Fatal(err)
		}
	}
	root, err := m.Flush(ctx)
	if err != nil {
		t.Fatal(err)
	}
	flushes := o.ended("hamt.flush")
	if len(flushes) != 1 {
		t.Fatalf("%d hamt.flush spans, want 1", len(flushes))
	}
	f := flushes[0]
	nodes, _ := attr(f, "hamt.flush.nodes")
	if r, _ := attr(f, "hamt.root"); r.AsString() != root.String() || nodes.AsInt64() < 2 {
		t.Errorf("hamt.flush attributes %v; want root %s and the nodes saved", f.Attributes(), root)
	}
	var nodeSaves int64
	for _, s := range o.ended("hamt.cas.save") {
		if c, _ := attr(s, "hamt.cas.codec"); c.AsString() == multicodec.DagCbor.String() {
			nodeSaves++
			if s.Parent().SpanID() != f.SpanContext().SpanID() {
				t.Errorf("a node's hamt.cas.save is not a child of hamt.flush")
			}
		}
	}
	if nodeSaves != nodes.AsInt64() {
		t.Errorf("%d node saves under hamt.flush, which says %d", nodeSaves, nodes.AsInt64())
	}
	if cf := o.ended("hamt.cas.flush"); len(cf) != 1 || cf[0].Parent().SpanID() != f.SpanContext().SpanID() {
		t.Errorf("the store's flush: %d hamt.cas.flush spans, want 1 under hamt.flush", len(cf))
	}
	bolt := attribute.String("hamt.cas.store", "bolt")
	if n := o.sum(t, "hamt.cas.save.requests", bolt, attribute.String("hamt.cas.status", "ok")); n != 1000+nodes.AsInt64() {
		t.Errorf("hamt.cas.save.requests %d, want %d (1000 values, %d nodes)", n, 1000+nodes.AsInt64(), nodes.AsInt64())
	}

	value, err := b.Save(ctx, []byte("present"), multicodec.Raw)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := b.Load(ctx, value); err != nil || string(got) != "present" {
		t.Fatal(got, err)
	}
	absent := mustAbsent(t, value)
	if _, err := b.Load(ctx, absent); !errors.Is(err, hamt.ErrNotFound) {
		t.Fatalf("load of an absent block: %v", err)
	}
	loads := o.ended("hamt.cas.load")
	if len(loads) != 2 {
		t.Fatalf("%d hamt.cas.load spans, want 2", len(loads))
	}
	ok, bad := loads[0], loads[1]
	if c, _ := attr(ok, "hamt.cid"); c.AsString() != value.String() || ok.Status().Code == codes.Error {
		t.Errorf("load span %v %v", ok.Attributes(), ok.Status())
	}
	if n, _ := attr(ok, "hamt.cas.response_bytes"); n.AsInt64() != int64(len("present")) {
		t.Errorf("load span response bytes %v", n)
	}
	if st, _ := attr(bad, "hamt.cas.status"); bad.Status().Code != codes.Error || st.AsString() != "not_found" || len(bad.Events()) == 0 {
		t.Errorf("load of an absent block: status %v, %v, events %v; want an error span, not_found, the error recorded", bad.Status(), st, bad.Events())
	}
	whole := attribute.Bool("hamt.cas.has_range", false)
	if n := o.sum(t, "hamt.cas.load.requests", bolt, attribute.String("hamt.cas.status", "not_found"), whole); n != 1 {
		t.Errorf("not_found loads counted %d, want 1", n)
	}
	if n := o.sum(t, "hamt.cas.load.requests", bolt, attribute.String("hamt.cas.status", "ok"), whole); n != 1 {
		t.Errorf("ok loads counted %d, want 1", n)
	}
	if n := o.sum(t, "hamt.cas.load.response_bytes", bolt, attribute.String("hamt.cas.status", "ok"), whole); n != int64(len("present")) {
		t.Errorf("bytes counted %d", n)
	}
}

// mustAbsent is a CID of the same kind as id whose block no store holds.
func mustAbsent(t *testing.T, id cid.Cid) cid.Cid {
	t.Helper()
	c, err := hamt.NewMemoryCAS().Save(context.Background(), []byte("never saved "+id.String()), multicodec.Raw)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestTelemetryCountsKuboRetriesAndGatewayFailovers: a 503 from the gateway is retried (a retry
// event, hamt.cas.retries, hamt.cas.load.retries), and a 404 from the first of two gateways hands
// the read to the second (a failover event, hamt.cas.failovers, hamt.kubo.gateway.failovers
// naming the gateway that failed).
func TestTelemetryCountsKuboRetriesAndGatewayFailovers(t *testing.T) {
	ctx := context.Background()
	o := newObserved(t)
	fleet := gatewayFleet(t, 2)
	k := newFleetKubo(t, fleet[0], fleet, hamt.WithKuboHedging(0, 1), hamt.WithKuboTelemetry(o.tel))
	id, err := k.Save(ctx, []byte("a block"), multicodec.Raw)
	if err != nil {
		t.Fatal(err)
	}
	if s := o.ended("hamt.cas.save"); len(s) != 1 {
		t.Fatalf("%d hamt.cas.save spans, want 1", len(s))
	}

	fleet[0].Inject(kubotest.Fault{Endpoint: kubotest.Gateway, Status: http.StatusServiceUnavailable})
	if _, err := k.Load(ctx, id); err != nil {
		t.Fatal(err)
	}
	fleet[0].Inject(kubotest.Fault{Endpoint: kubotest.Gateway, Status: http.StatusNotFound})
	if _, err := k.Load(ctx, id); err != nil {
		t.Fatal(err)
	}
	loads := o.ended("hamt.cas.load")
	if len(loads) != 2 {
		t.Fatalf("%d hamt.cas.load spans, want 2", len(loads))
	}
	retry, failover := loads[0], loads[1]
	events := func(s sdktrace.ReadOnlySpan) (names []string) {
		for _, e := range s.Events() {
			names = append(names, e.Name)
		}
		return names
	}
	if r, _ := attr(retry, "hamt.cas.retries"); r.AsInt64() != 1 || !slices.Equal(events(retry), []string{"retry"}) {
		t.Errorf("a load retried once: retries %v, events %v", r, events(retry))
	}
	if f, _ := attr(failover, "hamt.cas.failovers"); f.AsInt64() != 1 || !slices.Equal(events(failover), []string{"gateway failover"}) {
		t.Errorf("a load that failed over: failovers %v, events %v", f, events(failover))
	}
	for _, s := range loads {
		if s.Status().Code == codes.Error {
			t.Errorf("a load that succeeded in the end is an error span: %v", s.Status())
		}
	}
	u, _ := url.Parse(fleet[0].GatewayURL())
	first := attribute.String("hamt.kubo.gateway", "http://"+u.Host)
	if n := o.sum(t, "hamt.kubo.gateway.failovers", first); n != 1 {
		t.Errorf("hamt.kubo.gateway.failovers{%v} = %d, want 1", first, n)
	}
	ok := []attribute.KeyValue{attribute.String("hamt.cas.store", "kubo"), attribute.String("hamt.cas.status", "ok"), attribute.Bool("hamt.cas.has_range", false)}
	if n := o.sum(t, "hamt.cas.load.retries", ok...); n != 1 {
		t.Errorf("hamt.cas.load.retries %d, want 1", n)
	}
	if n := o.sum(t, "hamt.cas.load.requests", ok...); n != 2 {
		t.Errorf("hamt.cas.load.requests %d, want 2", n)
	}
}

// TestTelemetryHTTPServerSpans: a Zarr handler with telemetry records a server span per request
// named by its method, with the semantic conventions' attributes (the Range asked for, the status,
// the bytes sent), and the store's loads that answer it as its children; a 404 is not an error
// span. http.server.request.duration counts the requests by method and status.
func TestTelemetryHTTPServerSpans(t *testing.T) {
	ctx := context.Background()
	o := newObserved(t)
	b, err := hamt.OpenBoltCAS(filepath.Join(t.TempDir(), "s.bolt"), hamt.WithBoltTelemetry(o.tel))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	m, err := hamt.New(ctx, b, hamt.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	z, err := hamt.NewZarrStore(m)
	if err != nil {
		t.Fatal(err)
	}
	if err := z.Set(ctx, "a/c/0", []byte("0123456789")); err != nil {
		t.Fatal(err)
	}
	if _, err := z.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(hamt.NewZarrHandler(z, hamt.WithHandlerTelemetry(o.tel)))
	defer srv.Close()
	get := func(path, rng string) int {
		req, _ := http.NewRequest(http.MethodGet, srv.URL+path, nil)
		if rng != "" {
			req.Header.Set("Range", rng)
		}
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	before := len(o.ended("hamt.cas.load"))
	if s := get("/a/c/0", "bytes=2-5"); s != http.StatusPartialContent {
		t.Fatalf("ranged GET: %d", s)
	}
	if s := get("/no/such/key", ""); s != http.StatusNotFound {
		t.Fatalf("GET of a missing key: %d", s)
	}
	var served []sdktrace.ReadOnlySpan
	waitFor(t, "both server spans ended", func() bool { served = o.ended("GET"); return len(served) == 2 })
	ranged, missing := served[0], served[1]
	want := map[string]any{"http.request.method": "GET", "url.path": "/a/c/0", "http.response.status_code": int64(206),
		"http.response.body.size": int64(4), "url.scheme": "http", "client.address": "127.0.0.1"}
	for k, v := range want {
		if got, _ := attr(ranged, k); got.AsInterface() != v {
			t.Errorf("ranged GET span: %s = %v, want %v", k, got.AsInterface(), v)
		}
	}
	if r, _ := attr(ranged, "http.request.header.range"); !slices.Equal(r.AsStringSlice(), []string{"bytes=2-5"}) {
		t.Errorf("ranged GET span: http.request.header.range = %v", r.AsStringSlice())
	}
	if ranged.SpanKind() != trace.SpanKindServer || ranged.Status().Code == codes.Error {
		t.Errorf("ranged GET span kind %v status %v", ranged.SpanKind(), ranged.Status())
	}
	if s, _ := attr(missing, "http.response.status_code"); s.AsInt64() != 404 || missing.Status().Code == codes.Error {
		t.Errorf("404: status attribute %v, span status %v; a 4xx is not a server error", s, missing.Status())
	}
	children := 0
	for _, l := range o.ended("hamt.cas.load")[before:] {
		if l.Parent().SpanID() == ranged.SpanContext().SpanID() {
			children++
		}
	}
	if children == 0 {
		t.Error("the store's loads for the ranged GET are not children of its server span")
	}
	for status, n := range map[int64]uint64{206: 1, 404: 1} {
		got := o.histCount(t, "http.server.request.duration", attribute.String("http.request.method", "GET"),
			attribute.Int64("http.response.status_code", status), attribute.String("url.scheme", "http"),
			attribute.String("network.protocol.version", "1.1"))
		if got != n {
			t.Errorf("http.server.request.duration{status %d} counted %d, want %d", status, got, n)
		}
	}
}

// TestNoTelemetryRecordsNothing: without WithTelemetry and the stores' options nothing reaches a
// provider, even the global one a program installed: the package never uses the global providers.
func TestNoTelemetryRecordsNothing(t *testing.T) {
	ctx := context.Background()
	spans := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans))
	prev := otel.GetTracerProvider()
	otel.SetTracerProvider(tp)
	defer otel.SetTracerProvider(prev)
	b, err := hamt.OpenBoltCAS(filepath.Join(t.TempDir(), "s.bolt"))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	m, err := hamt.New(ctx, b, hamt.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Set(ctx, "k", []byte("v")); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Load(ctx, mustAbsent(t, cid.Undef)); !errors.Is(err, hamt.ErrNotFound) {
		t.Fatal(err)
	}
	if n := len(spans.Ended()); n != 0 {
		t.Errorf("%d spans recorded without telemetry", n)
	}
}
