package hamt

import (
	"net"
	"net/http"
	"strconv"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"
)

// HandlerOption configures NewZarrHandler.
type HandlerOption func(*handlerOptions)

type handlerOptions struct {
	tel *Telemetry
}

// WithHandlerTelemetry makes the handler record a span and the metrics
// http.server.request.duration and http.server.response.body.size for every request, named and
// attributed as OpenTelemetry's semantic conventions for HTTP servers say (a span named by the
// method, http.request.method, url.path, http.response.status_code, client.address, …, and the
// Range asked for as http.request.header.range). The span is the parent of the spans of the
// store's loads that answer the request; it starts a trace of its own, since the handler reads
// no trace context from the request (wrap the handler with otelhttp for that). nil records
// nothing (the default).
func WithHandlerTelemetry(t *Telemetry) HandlerOption {
	return func(o *handlerOptions) { o.tel = t }
}

// Keys of the semantic conventions for HTTP servers (semconv 1.26 and later, stable).
const (
	attrHTTPMethod         = attribute.Key("http.request.method")
	attrHTTPMethodOriginal = attribute.Key("http.request.method_original")
	attrHTTPStatus         = attribute.Key("http.response.status_code")
	attrHTTPBodySize       = attribute.Key("http.response.body.size")
	attrHTTPRange          = attribute.Key("http.request.header.range")
	attrURLPath            = attribute.Key("url.path")
	attrURLScheme          = attribute.Key("url.scheme")
	attrServerAddress      = attribute.Key("server.address")
	attrClientAddress      = attribute.Key("client.address")
	attrClientPort         = attribute.Key("client.port")
	attrUserAgent          = attribute.Key("user_agent.original")
	attrProtocolVersion    = attribute.Key("network.protocol.version")
	attrErrorType          = attribute.Key("error.type")
)

// knownMethods are the methods the conventions name; any other is "_OTHER", so that a client
// cannot grow the metrics' attribute sets without bound.
var knownMethods = map[string]bool{
	http.MethodGet: true, http.MethodHead: true, http.MethodOptions: true, http.MethodPost: true,
	http.MethodPut: true, http.MethodDelete: true, http.MethodPatch: true, http.MethodConnect: true,
	http.MethodTrace: true, "QUERY": true,
}

// handler wraps next with the span and metrics of WithHandlerTelemetry.
func (t *Telemetry) handler(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		start := time.Now()
		method := req.Method
		if !knownMethods[method] {
			method = "_OTHER"
		}
		scheme := "http"
		if req.TLS != nil {
			scheme = "https"
		}
		proto := strconv.Itoa(req.ProtoMajor)
		if req.ProtoMajor == 1 {
			proto += "." + strconv.Itoa(req.ProtoMinor)
		}
		name := method
		if method == "_OTHER" {
			name = "HTTP"
		}
		ctx, span := t.tracer.Start(req.Context(), name, trace.WithSpanKind(trace.SpanKindServer))
		if span.IsRecording() {
			attrs := []attribute.KeyValue{attrHTTPMethod.String(method), attrURLPath.String(req.URL.Path),
				attrURLScheme.String(scheme), attrServerAddress.String(req.Host), attrProtocolVersion.String(proto)}
			if method != req.Method {
				attrs = append(attrs, attrHTTPMethodOriginal.String(req.Method))
			}
			if host, port, err := net.SplitHostPort(req.RemoteAddr); err == nil {
				attrs = append(attrs, attrClientAddress.String(host))
				if p, err := strconv.Atoi(port); err == nil {
					attrs = append(attrs, attrClientPort.Int(p))
				}
			}
			if ua := req.UserAgent(); ua != "" {
				attrs = append(attrs, attrUserAgent.String(ua))
			}
			if r := req.Header.Values("Range"); len(r) > 0 {
				attrs = append(attrs, attrHTTPRange.StringSlice(r))
			}
			span.SetAttributes(attrs...)
		}
		sw := &telemetryWriter{ResponseWriter: w, status: http.StatusOK}
		aborted := true
		defer func() { // also when the handler aborts by panicking with http.ErrAbortHandler
			errType := ""
			switch {
			case aborted:
				errType = "aborted"
			case sw.status >= 500:
				errType = strconv.Itoa(sw.status)
			}
			attrs := []attribute.KeyValue{attrHTTPMethod.String(method), attrHTTPStatus.Int(sw.status),
				attrURLScheme.String(scheme), attrProtocolVersion.String(proto)}
			if errType != "" {
				attrs = append(attrs, attrErrorType.String(errType))
			}
			set := metric.WithAttributeSet(attribute.NewSet(attrs...))
			t.httpDur.Record(ctx, time.Since(start).Seconds(), set)
			t.httpBodySize.Record(ctx, sw.bytes, set)
			if span.IsRecording() {
				span.SetAttributes(attrHTTPStatus.Int(sw.status), attrHTTPBodySize.Int64(sw.bytes))
				if errType != "" {
					// A server span is an error for a 5xx or an answer cut off, not for a 4xx.
					span.SetAttributes(attrErrorType.String(errType))
					span.SetStatus(codes.Error, errType)
				}
			}
			span.End()
		}()
		next.ServeHTTP(sw, req.WithContext(ctx))
		aborted = false
	})
}

// telemetryWriter remembers the status and body size of a response.
type telemetryWriter struct {
	http.ResponseWriter
	status int
	bytes  int64
	wrote  bool
}

func (w *telemetryWriter) WriteHeader(s int) {
	if !w.wrote && s >= 200 { // a 1xx is not the answer's status
		w.status, w.wrote = s, true
	}
	w.ResponseWriter.WriteHeader(s)
}

func (w *telemetryWriter) Write(b []byte) (int, error) {
	w.wrote = true
	n, err := w.ResponseWriter.Write(b)
	w.bytes += int64(n)
	return n, err
}

// Unwrap gives http.ResponseController the connection's writer, for the handler's deadlines.
func (w *telemetryWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
