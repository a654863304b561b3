package hamt

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/multiformats/go-multicodec"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	mnoop "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/trace"
	tnoop "go.opentelemetry.io/otel/trace/noop"
)

// Telemetry sends the traces and metrics of maps, stores and Zarr handlers to OpenTelemetry
// providers. Make one per process with NewTelemetry and hand it to what you want watched:
// WithTelemetry (a Map), WithBoltTelemetry (a BoltCAS), WithKuboTelemetry (a KuboCAS),
// WithHandlerTelemetry (NewZarrHandler). Without it nothing is recorded and nothing is called:
// the package uses only the OpenTelemetry API and never the global providers, so a program
// chooses its SDK and exporters (or none) itself.
//
// Spans: hamt.cas.load, hamt.cas.load_many, hamt.cas.save, hamt.cas.save_many and hamt.cas.flush
// around BoltCAS and KuboCAS operations (with events for a Kubo retry and a gateway failover),
// hamt.node.load for each node a map loads from its store (a cache miss), hamt.flush for
// Map.Flush, MakeReadOnly and CacheVacate, and an HTTP server span per request of a Zarr handler.
// The metrics are listed in the README (Observability); their names follow py-hamt's
// (py_hamt.cas.load.requests is hamt.cas.load.requests here) and, for HTTP, OpenTelemetry's
// semantic conventions.
//
// A Telemetry is safe for concurrent use. Counts are aggregated over every map and store it is
// given to; attributes tell stores apart (hamt.cas.store = bolt or kubo).
type Telemetry struct {
	tracer trace.Tracer
	reg    metric.Registration

	casLoads, casLoadBytes, casLoadRetries metric.Int64Counter
	casLoadDur                             metric.Float64Histogram
	casSaves, casSaveBytes, casSaveRetries metric.Int64Counter
	casSaveDur, casFlushDur                metric.Float64Histogram
	failovers, hedges                      metric.Int64Counter

	nodeLoadDur      metric.Float64Histogram
	nodeLoadBytes    metric.Int64Counter
	flushDur         metric.Float64Histogram
	flushNodes       metric.Int64Counter
	httpDur          metric.Float64Histogram
	httpBodySize     metric.Int64Histogram
	cache            cacheStats
	loadSets         [2][casStatuses][2]metric.MeasurementOption // by store, status, ranged
	saveSets         [2][casStatuses]metric.MeasurementOption    // by store, status
	nodeSets         [casStatuses]metric.MeasurementOption
	flushSets        [casStatuses]metric.MeasurementOption
	storeAttrs       [2]attribute.KeyValue
	boltFlushOptions metric.MeasurementOption
}

// instrumentationScope names the tracer and meter: the module's import path, as Go
// instrumentation libraries do.
const instrumentationScope = "github.com/hamt-go/hamt"

// NewTelemetry returns a Telemetry that records spans with tp and metrics with mp. A nil provider
// records nothing of its kind. To use the global providers a program set with the otel package,
// pass otel.GetTracerProvider() and otel.GetMeterProvider().
//
// The cache counters (hamt.cache.hits, hamt.cache.misses) are observable counters read by one
// callback registered with mp; Close unregisters it.
func NewTelemetry(tp trace.TracerProvider, mp metric.MeterProvider) (*Telemetry, error) {
	if tp == nil {
		tp = tnoop.NewTracerProvider()
	}
	if mp == nil {
		mp = mnoop.NewMeterProvider()
	}
	t := &Telemetry{tracer: tp.Tracer(instrumentationScope)}
	m := mp.Meter(instrumentationScope)
	var errs []error
	counter := func(name, unit, desc string) metric.Int64Counter {
		c, err := m.Int64Counter(name, metric.WithUnit(unit), metric.WithDescription(desc))
		errs = append(errs, err)
		return c
	}
	seconds := func(name, desc string) metric.Float64Histogram {
		h, err := m.Float64Histogram(name, metric.WithUnit("s"), metric.WithDescription(desc))
		errs = append(errs, err)
		return h
	}
	t.casLoads = counter("hamt.cas.load.requests", "{request}", "Block loads from a store (BoltCAS, KuboCAS), by store, status and whether a range was asked.")
	t.casLoadBytes = counter("hamt.cas.load.response_bytes", "By", "Bytes returned by block loads.")
	t.casLoadRetries = counter("hamt.cas.load.retries", "{retry}", "Retries of transient failures made by block loads (KuboCAS).")
	t.casLoadDur = seconds("hamt.cas.load.duration", "Duration of a block load, retries and gateway failovers included.")
	t.casSaves = counter("hamt.cas.save.requests", "{request}", "Block saves to a store, by store and status.")
	t.casSaveBytes = counter("hamt.cas.save.bytes", "By", "Bytes given to block saves.")
	t.casSaveRetries = counter("hamt.cas.save.retries", "{retry}", "Retries of transient failures made by block saves (KuboCAS).")
	t.casSaveDur = seconds("hamt.cas.save.duration", "Duration of a block save.")
	t.casFlushDur = seconds("hamt.cas.flush.duration", "Duration of a store flush (BoltCAS: a commit and its fsync).")
	t.failovers = counter("hamt.kubo.gateway.failovers", "{failover}", "Reads handed to the next gateway after one failed, by the gateway that failed.")
	t.hedges = counter("hamt.kubo.gateway.hedges", "{request}", "Reads that asked the next gateway too because one was slow to answer, by the slow gateway.")
	t.nodeLoadDur = seconds("hamt.node.load.duration", "Duration of a map's load of a node from its store (a cache miss), by status.")
	t.nodeLoadBytes = counter("hamt.node.load.bytes", "By", "Bytes of the nodes maps loaded from their stores.")
	t.flushDur = seconds("hamt.flush.duration", "Duration of a map flush (Flush, MakeReadOnly, CacheVacate), the store's flush included.")
	t.flushNodes = counter("hamt.flush.nodes", "{node}", "Nodes saved by map flushes.")
	var err error
	t.httpDur, err = m.Float64Histogram("http.server.request.duration", metric.WithUnit("s"),
		metric.WithDescription("Duration of HTTP server requests."),
		metric.WithExplicitBucketBoundaries(0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10))
	errs = append(errs, err)
	t.httpBodySize, err = m.Int64Histogram("http.server.response.body.size", metric.WithUnit("By"),
		metric.WithDescription("Size of HTTP server response bodies."))
	errs = append(errs, err)
	hits, err := m.Int64ObservableCounter("hamt.cache.hits", metric.WithUnit("{lookup}"),
		metric.WithDescription("Lookups the read cache of read-only maps answered, by kind: node (a node in memory) or value (a kept value block)."))
	errs = append(errs, err)
	misses, err := m.Int64ObservableCounter("hamt.cache.misses", metric.WithUnit("{lookup}"),
		metric.WithDescription("Lookups the read cache of read-only maps did not answer, which went to the store, by kind: node or value."))
	errs = append(errs, err)
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("hamt: telemetry: %w", err)
	}
	node := metric.WithAttributeSet(attribute.NewSet(attrCacheKind.String("node")))
	value := metric.WithAttributeSet(attribute.NewSet(attrCacheKind.String("value")))
	t.reg, err = m.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		c := &t.cache
		o.ObserveInt64(hits, c.nodeHits.Load(), node)
		o.ObserveInt64(misses, c.nodeMisses.Load(), node)
		o.ObserveInt64(hits, c.valueHits.Load(), value)
		o.ObserveInt64(misses, c.valueMisses.Load(), value)
		return nil
	}, hits, misses)
	if err != nil {
		return nil, fmt.Errorf("hamt: telemetry: %w", err)
	}
	// The attribute sets of the measurements, made once: a measurement then allocates nothing.
	for s, name := range [2]string{"bolt", "kubo"} {
		t.storeAttrs[s] = attrStore.String(name)
		for st := range casStatus(0).all() {
			t.saveSets[s][st] = metric.WithAttributeSet(attribute.NewSet(t.storeAttrs[s], attrStatus.String(st.String())))
			for r, ranged := range [2]bool{false, true} {
				t.loadSets[s][st][r] = metric.WithAttributeSet(attribute.NewSet(t.storeAttrs[s], attrStatus.String(st.String()), attrHasRange.Bool(ranged)))
			}
		}
	}
	for st := range casStatus(0).all() {
		t.nodeSets[st] = metric.WithAttributeSet(attribute.NewSet(attrStatus.String(st.String())))
		t.flushSets[st] = t.nodeSets[st]
	}
	t.boltFlushOptions = metric.WithAttributeSet(attribute.NewSet(t.storeAttrs[boltStore]))
	return t, nil
}

// Close unregisters the callback of the cache counters from the meter provider. The Telemetry
// still records spans and the other metrics afterwards.
func (t *Telemetry) Close() error {
	if t == nil || t.reg == nil {
		return nil
	}
	return t.reg.Unregister()
}

// Attribute keys of the spans and metrics.
const (
	attrCID           = attribute.Key("hamt.cid")
	attrStore         = attribute.Key("hamt.cas.store")
	attrStatus        = attribute.Key("hamt.cas.status")
	attrHasRange      = attribute.Key("hamt.cas.has_range")
	attrResponseBytes = attribute.Key("hamt.cas.response_bytes")
	attrBytes         = attribute.Key("hamt.cas.bytes")
	attrCodec         = attribute.Key("hamt.cas.codec")
	attrBlocks        = attribute.Key("hamt.cas.blocks")
	attrRetries       = attribute.Key("hamt.cas.retries")
	attrFailovers     = attribute.Key("hamt.cas.failovers")
	attrCacheKind     = attribute.Key("hamt.cache.kind")
	attrGateway       = attribute.Key("hamt.kubo.gateway")
	attrKuboOp        = attribute.Key("hamt.kubo.op")
	attrAttempt       = attribute.Key("hamt.kubo.attempt")
	attrFlushOp       = attribute.Key("hamt.flush.op")
	attrFlushNodes    = attribute.Key("hamt.flush.nodes")
	attrRoot          = attribute.Key("hamt.root")
	attrNodeBytes     = attribute.Key("hamt.node.bytes")
)

// storeKind indexes the measurement options of a store.
type storeKind int

const (
	boltStore storeKind = iota
	kuboStore
)

// casStatus is how a store operation ended: the hamt.cas.status attribute, py-hamt's name for it.
type casStatus int

const (
	statusOK casStatus = iota
	statusNotFound
	statusCorrupt
	statusCanceled
	statusError
	casStatuses // how many there are
)

func (s casStatus) String() string {
	return [...]string{"ok", "not_found", "corrupt", "canceled", "error"}[s]
}

// all yields every status.
func (casStatus) all() func(func(casStatus) bool) {
	return func(yield func(casStatus) bool) {
		for s := range casStatuses {
			if !yield(s) {
				return
			}
		}
	}
}

// statusOf classifies err.
func statusOf(err error) casStatus {
	switch {
	case err == nil:
		return statusOK
	case errors.Is(err, ErrNotFound), errors.Is(err, ErrMissingBlock):
		return statusNotFound
	case errors.Is(err, ErrCorrupt):
		return statusCorrupt
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return statusCanceled
	}
	return statusError
}

// fail marks span as failed with err.
func fail(span trace.Span, err error) {
	span.RecordError(err)
	span.SetStatus(codes.Error, err.Error())
}

// casOp counts what happens inside one observed store operation: the retries of KuboCAS.call and
// the gateway failovers of readGateways, which find it in the context.
type casOp struct {
	retries, failovers atomic.Int64
}

type casOpKey struct{}

// casOpFrom returns the operation ctx is inside of, or nil when it is not observed.
func casOpFrom(ctx context.Context) *casOp {
	op, _ := ctx.Value(casOpKey{}).(*casOp)
	return op
}

// load observes one block load from a store: the hamt.cas.load span and metrics around fn.
func (t *Telemetry) load(ctx context.Context, s storeKind, id cid.Cid, ranged bool, fn func(context.Context) ([]byte, error)) ([]byte, error) {
	start := time.Now()
	ctx, span := t.tracer.Start(ctx, "hamt.cas.load")
	op := &casOp{}
	if s == kuboStore { // only KuboCAS retries and fails over
		ctx = context.WithValue(ctx, casOpKey{}, op)
	}
	b, err := fn(ctx)
	st := statusOf(err)
	r := 0
	if ranged {
		r = 1
	}
	set := t.loadSets[s][st][r]
	t.casLoads.Add(ctx, 1, set)
	t.casLoadBytes.Add(ctx, int64(len(b)), set)
	t.casLoadDur.Record(ctx, time.Since(start).Seconds(), set)
	retries := op.retries.Load()
	if retries > 0 {
		t.casLoadRetries.Add(ctx, retries, set)
	}
	if span.IsRecording() {
		span.SetAttributes(attrCID.String(id.String()), t.storeAttrs[s], attrHasRange.Bool(ranged),
			attrStatus.String(st.String()), attrResponseBytes.Int(len(b)))
		if s == kuboStore {
			span.SetAttributes(attrRetries.Int64(retries), attrFailovers.Int64(op.failovers.Load()))
		}
		if err != nil {
			fail(span, err)
		}
	}
	span.End()
	return b, err
}

// loadMany observes a batch load (LoadMany): one hamt.cas.load_many span; each block asked counts
// as a load request.
func (t *Telemetry) loadMany(ctx context.Context, s storeKind, ids []cid.Cid, fn func(context.Context) ([][]byte, error)) ([][]byte, error) {
	ctx, span := t.tracer.Start(ctx, "hamt.cas.load_many")
	out, err := fn(ctx)
	set := t.loadSets[s][statusOf(err)][0]
	total := 0
	for _, b := range out {
		total += len(b)
	}
	t.casLoads.Add(ctx, int64(len(ids)), set)
	t.casLoadBytes.Add(ctx, int64(total), set)
	if span.IsRecording() {
		span.SetAttributes(t.storeAttrs[s], attrBlocks.Int(len(ids)), attrResponseBytes.Int(total),
			attrStatus.String(statusOf(err).String()))
		if err != nil {
			fail(span, err)
		}
	}
	span.End()
	return out, err
}

// save observes one block save (name hamt.cas.save) or a batch (hamt.cas.save_many) of blocks
// blocks and size bytes.
func (t *Telemetry) save(ctx context.Context, s storeKind, name string, codec multicodec.Code, blocks, size int, fn func(context.Context) ([]cid.Cid, error)) ([]cid.Cid, error) {
	start := time.Now()
	ctx, span := t.tracer.Start(ctx, name)
	op := &casOp{}
	if s == kuboStore {
		ctx = context.WithValue(ctx, casOpKey{}, op)
	}
	ids, err := fn(ctx)
	st := statusOf(err)
	set := t.saveSets[s][st]
	t.casSaves.Add(ctx, int64(blocks), set)
	t.casSaveBytes.Add(ctx, int64(size), set)
	t.casSaveDur.Record(ctx, time.Since(start).Seconds(), set)
	retries := op.retries.Load()
	if retries > 0 {
		t.casSaveRetries.Add(ctx, retries, set)
	}
	if span.IsRecording() {
		span.SetAttributes(t.storeAttrs[s], attrCodec.String(codec.String()), attrBytes.Int(size), attrStatus.String(st.String()))
		if len(ids) == 1 {
			span.SetAttributes(attrCID.String(ids[0].String()))
		} else {
			span.SetAttributes(attrBlocks.Int(blocks))
		}
		if s == kuboStore {
			span.SetAttributes(attrRetries.Int64(retries))
		}
		if err != nil {
			fail(span, err)
		}
	}
	span.End()
	return ids, err
}

// saveOne is save for one block.
func (t *Telemetry) saveOne(ctx context.Context, s storeKind, codec multicodec.Code, size int, fn func(context.Context) (cid.Cid, error)) (cid.Cid, error) {
	var one [1]cid.Cid
	ids, err := t.save(ctx, s, "hamt.cas.save", codec, 1, size, func(ctx context.Context) ([]cid.Cid, error) {
		id, err := fn(ctx)
		if err != nil {
			return nil, err
		}
		one[0] = id
		return one[:], nil
	})
	if err != nil {
		return cid.Undef, err
	}
	return ids[0], nil
}

// storeFlush observes a store's flush (a BoltCAS commit).
func (t *Telemetry) storeFlush(ctx context.Context, fn func(context.Context) error) error {
	start := time.Now()
	ctx, span := t.tracer.Start(ctx, "hamt.cas.flush", trace.WithAttributes(t.storeAttrs[boltStore]))
	err := fn(ctx)
	t.casFlushDur.Record(ctx, time.Since(start).Seconds(), t.boltFlushOptions)
	if err != nil {
		fail(span, err)
	}
	span.End()
	return err
}

// retried records, on the operation and span ctx is inside of, that a Kubo request op is retried
// after failing with err (attempt is the one that failed, from 0).
func retried(ctx context.Context, op string, attempt int, err error) {
	o := casOpFrom(ctx)
	if o == nil {
		return
	}
	o.retries.Add(1)
	if span := trace.SpanFromContext(ctx); span.IsRecording() {
		span.AddEvent("retry", trace.WithAttributes(attrKuboOp.String(op), attrAttempt.Int(attempt),
			attribute.String("exception.message", err.Error())))
	}
}

// failover records that a read left gateway g after it failed with err, for the next one.
func (k *KuboCAS) failover(ctx context.Context, g *kuboGateway, err error) {
	if k.tel == nil {
		return
	}
	if o := casOpFrom(ctx); o != nil {
		o.failovers.Add(1)
	}
	k.tel.failovers.Add(ctx, 1, metric.WithAttributes(attrGateway.String(originOf(g.base))))
	if span := trace.SpanFromContext(ctx); span.IsRecording() {
		span.AddEvent("gateway failover", trace.WithAttributes(attrGateway.String(originOf(g.base)),
			attribute.String("exception.message", err.Error())))
	}
}

// hedged records that a read asked the next gateway too because g was slow to answer.
func (k *KuboCAS) hedged(ctx context.Context, g *kuboGateway) {
	if k.tel == nil {
		return
	}
	k.tel.hedges.Add(ctx, 1, metric.WithAttributes(attrGateway.String(originOf(g.base))))
	if span := trace.SpanFromContext(ctx); span.IsRecording() {
		span.AddEvent("gateway hedge", trace.WithAttributes(attrGateway.String(originOf(g.base))))
	}
}

// cacheStats counts the lookups of the read caches of the maps a Telemetry watches. Each count
// is an atomic add on the lookup's path, read by the observable counters' callback.
type cacheStats struct {
	nodeHits    atomic.Int64
	_           [56]byte // each counter on its own cache line: readers on several cores add to them
	nodeMisses  atomic.Int64
	_           [56]byte
	valueHits   atomic.Int64
	_           [56]byte
	valueMisses atomic.Int64
}

// count counts a Get's value as a hit or a miss of the read cache; c nil counts nothing.
func (c *cacheStats) count(hit bool) {
	if c == nil {
		return
	}
	if hit {
		c.valueHits.Add(1)
	} else {
		c.valueMisses.Add(1)
	}
}

// cacheStats returns where a map's read cache counts, or nil (t nil): not counted.
func (t *Telemetry) cacheStats() *cacheStats {
	if t == nil {
		return nil
	}
	return &t.cache
}

// nodeLoader wraps a map's node loads with the hamt.node.load span and metrics.
func (t *Telemetry) nodeLoader(load loadFunc) loadFunc {
	return func(ctx context.Context, id cidBytes) ([]byte, error) {
		start := time.Now()
		ctx, span := t.tracer.Start(ctx, "hamt.node.load")
		b, err := load(ctx, id)
		st := statusOf(err)
		t.nodeLoadDur.Record(ctx, time.Since(start).Seconds(), t.nodeSets[st])
		t.nodeLoadBytes.Add(ctx, int64(len(b)), t.nodeSets[st])
		if span.IsRecording() {
			span.SetAttributes(attrCID.String(id.view().String()), attrNodeBytes.Int(len(b)), attrStatus.String(st.String()))
			if err != nil {
				fail(span, err)
			}
		}
		span.End()
		return b, err
	}
}

// flush observes a map's flush (op: flush, make_read_only or cache_vacate): the hamt.flush span,
// to which writeStore.flush adds the nodes it saved (flushed).
func (t *Telemetry) flush(ctx context.Context, op string, fn func(context.Context) (cid.Cid, error)) (cid.Cid, error) {
	start := time.Now()
	ctx, span := t.tracer.Start(ctx, "hamt.flush", trace.WithAttributes(attrFlushOp.String(op)))
	root, err := fn(ctx)
	t.flushDur.Record(ctx, time.Since(start).Seconds(), t.flushSets[statusOf(err)])
	if span.IsRecording() {
		if root.Defined() {
			span.SetAttributes(attrRoot.String(root.String()))
		}
		if err != nil {
			fail(span, err)
		}
	}
	span.End()
	return root, err
}

// flushed records that a map's flush saved n nodes.
func (t *Telemetry) flushed(ctx context.Context, n int) {
	t.flushNodes.Add(ctx, int64(n))
	trace.SpanFromContext(ctx).SetAttributes(attrFlushNodes.Int(n))
}

// WithTelemetry makes the map record its node loads (hamt.node.load), its flushes (hamt.flush)
// and the hits and misses of its read cache (hamt.cache.hits, hamt.cache.misses) with t. nil
// records nothing (the default).
func WithTelemetry(t *Telemetry) Option {
	return func(o *options) error {
		o.tel = t
		return nil
	}
}

// WithBoltTelemetry makes the store record its loads, saves and flushes with t. nil records
// nothing (the default).
func WithBoltTelemetry(t *Telemetry) BoltOption {
	return func(o *boltOptions) error {
		o.tel = t
		return nil
	}
}

// WithKuboTelemetry makes the store record its loads and saves with t, with their retries and
// the reads handed from one gateway to the next (hamt.kubo.gateway.failovers) or hedged
// (hamt.kubo.gateway.hedges). nil records nothing (the default).
func WithKuboTelemetry(t *Telemetry) KuboOption {
	return func(o *kuboOptions) error {
		o.tel = t
		return nil
	}
}
