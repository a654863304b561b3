package main

// serve --metrics-listen: the Prometheus metrics of a running `hamt serve`, on a listener of its
// own. The OpenTelemetry SDK and its Prometheus exporter are imported here only: the library
// speaks the OpenTelemetry API and leaves the choice of an SDK to the program (hamt.Telemetry).

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/hamt-go/hamt"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel/attribute"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"
)

// metricsPath is where the metrics listener answers.
const metricsPath = "/metrics"

// metricsGrace is how long a scrape in flight may take to finish once serve stops.
const metricsGrace = time.Second

// maxScrapes bounds the scrapes answered at once; more get 503.
const maxScrapes = 4

// Histogram bucket bounds. The store's operations take from tens of microseconds (a bbolt
// read) to seconds (a Kubo gateway), wider than the SDK's default bounds, made for milliseconds;
// body sizes go from a few bytes (zarr.json) to the 1 MiB and more of a chunk.
var (
	storeSecondsBuckets = []float64{0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}
	bodyBytesBuckets    = []float64{0, 256, 1024, 4096, 16384, 65536, 262144, 1 << 20, 4 << 20, 16 << 20, 64 << 20}
)

// metricsServer is the metrics of one run of serve: an OpenTelemetry meter provider whose
// Prometheus exporter is registered on a registry of its own (never the global one), the
// hamt.Telemetry that records into it, and the HTTP server that answers scrapes.
type metricsServer struct {
	tel      *hamt.Telemetry
	provider *sdkmetric.MeterProvider
	registry *prometheus.Registry
	log      *slog.Logger
	srv      *http.Server
	stopped  chan struct{} // closed when the server's Serve returns; nil until start
	err      error         // what Serve returned, once stopped is closed
	closed   bool
}

// checkMetricsAddr refuses, as a usage error, an address --metrics-listen cannot name: not
// host:port, a port that is neither a number up to 65535 nor a service name, or the address
// --listen names (both servers cannot have it).
func checkMetricsAddr(addr, listen string) error {
	host, port, err := net.SplitHostPort(addr)
	if err == nil && port == "" {
		err = errors.New("no port")
	}
	if err == nil {
		_, err = net.LookupPort("tcp", port)
	}
	if err != nil {
		return &usageError{fmt.Errorf("--metrics-listen %s: want host:port, e.g. 127.0.0.1:9464: %w", shorten(addr), err)}
	}
	if lh, lp, lerr := net.SplitHostPort(listen); lerr == nil && lh == host && lp == port && port != "0" {
		return &usageError{fmt.Errorf("--metrics-listen %s is the address serve listens on (--listen): give another", shorten(addr))}
	}
	return nil
}

// newMetrics makes the meter provider, its exporter and registry, and the Telemetry that records
// into them. Close releases them.
func newMetrics(ctx context.Context, log *slog.Logger) (*metricsServer, error) {
	reg := prometheus.NewRegistry()
	// The process's own: CPU, memory, open files, goroutines, GC.
	if err := reg.Register(collectors.NewGoCollector()); err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	if err := reg.Register(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})); err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	exp, err := otelprom.New(otelprom.WithRegisterer(reg), otelprom.WithoutScopeInfo()) // one scope: hamt's
	if err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	// service.name and service.version label the target_info metric; OTEL_SERVICE_NAME and
	// OTEL_RESOURCE_ATTRIBUTES override them, as in any OpenTelemetry SDK.
	res, err := resource.New(ctx,
		resource.WithAttributes(attribute.String("service.name", "hamt"), attribute.String("service.version", buildVersion().Version)),
		resource.WithFromEnv(), resource.WithTelemetrySDK())
	if err != nil && res == nil { // a partial resource comes with an error worth no failure
		return nil, fmt.Errorf("metrics: %w", err)
	}
	provider := sdkmetric.NewMeterProvider(
		sdkmetric.WithReader(exp),
		sdkmetric.WithResource(res),
		sdkmetric.WithView(
			sdkmetric.NewView(sdkmetric.Instrument{Name: "hamt.*", Unit: "s", Kind: sdkmetric.InstrumentKindHistogram},
				sdkmetric.Stream{Aggregation: sdkmetric.AggregationExplicitBucketHistogram{Boundaries: storeSecondsBuckets}}),
			sdkmetric.NewView(sdkmetric.Instrument{Name: "http.server.response.body.size", Kind: sdkmetric.InstrumentKindHistogram},
				sdkmetric.Stream{Aggregation: sdkmetric.AggregationExplicitBucketHistogram{Boundaries: bodyBytesBuckets}}),
		))
	tel, err := hamt.NewTelemetry(nil, provider)
	if err != nil {
		_ = provider.Shutdown(ctx)
		return nil, err
	}
	return &metricsServer{tel: tel, provider: provider, registry: reg, log: log}, nil
}

// telemetry is what the run's stores, map and handler record with: nil (nothing) for no metrics.
func (m *metricsServer) telemetry() *hamt.Telemetry {
	if m == nil {
		return nil
	}
	return m.tel
}

// start listens on addr and answers scrapes at /metrics with a server made by newServer (serve's
// own timeouts, so a client that stalls is dropped as on serve's listener). It returns the
// address listened on.
func (m *metricsServer) start(addr string, newServer func(http.Handler) *http.Server) (net.Addr, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	h := promhttp.InstrumentMetricHandler(m.registry, promhttp.HandlerFor(m.registry, promhttp.HandlerOpts{
		ErrorLog:            slog.NewLogLogger(m.log.Handler(), slog.LevelError),
		ErrorHandling:       promhttp.ContinueOnError,
		Registry:            m.registry,
		MaxRequestsInFlight: maxScrapes,
	}))
	mux := http.NewServeMux()
	mux.Handle("GET "+metricsPath, h) // GET also answers HEAD
	m.srv = newServer(mux)
	m.stopped = make(chan struct{})
	go func() {
		m.err = m.srv.Serve(ln)
		close(m.stopped)
	}()
	return ln.Addr(), nil
}

// stoppedEarly is closed if the metrics server stops before Close (its listener failed: Err
// says how); a nil channel, never ready, when it is not running.
func (m *metricsServer) stoppedEarly() <-chan struct{} {
	if m == nil {
		return nil
	}
	return m.stopped
}

// Err is what stopped the metrics server, once stoppedEarly is closed.
func (m *metricsServer) Err() error { return fmt.Errorf("metrics: %w", m.err) }

// Close stops the metrics server (scrapes in flight get metricsGrace to finish, then their
// connections are closed), waits for it to end, and shuts the meter provider down. A second call
// does nothing. Nothing of it runs afterwards: no goroutine, no listener.
func (m *metricsServer) Close() error {
	if m == nil || m.closed {
		return nil
	}
	m.closed = true
	var errs []error
	if m.srv != nil {
		ctx, cancel := context.WithTimeout(context.Background(), metricsGrace)
		if err := m.srv.Shutdown(ctx); err != nil {
			_ = m.srv.Close()
		}
		cancel()
		<-m.stopped // an early stop's error is Err's to report
	}
	errs = append(errs, m.tel.Close(), m.provider.Shutdown(context.Background()))
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("metrics: %w", err)
	}
	return nil
}
