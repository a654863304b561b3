package hamt

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Handler returns an http.Handler that serves the store's keys read-only, for Zarr clients that
// read over HTTP (zarr-python's FsspecStore, zarrita's FetchStore): the URL path without its
// leading slash is the key (mount it elsewhere with http.StripPrefix).
//
//   - GET answers 200 with the exact bytes, or 206 for a single Range ("bytes=a-b", "bytes=a-",
//     "bytes=-n"), read from the CAS as a range when it can; an unsatisfiable range is 416, a
//     multi-range request gets the whole value (200).
//   - A body is read and sent in pieces of at most 1 MiB, so a response holds that much memory
//     whatever the value's size (an encrypted value, which opens only whole, is held whole). A
//     piece that cannot be read once the status is sent aborts the response: the client sees a
//     cut connection, never a short 200.
//   - Deadlines: the http.Server's WriteTimeout applies to each piece rather than the whole
//     response, so a slow download that keeps reading goes on and a client that stops reading is
//     dropped. Its ReadTimeout bounds reading the request only (net/http lifts the read
//     deadline once the request is read), so it does not cut a long download short either.
//   - HEAD gives the same headers with the correct Content-Length and no body.
//   - 404 only for a missing key, which Zarr clients read as "absent"; a failure to read is 500
//     (the body says why), so a lost block is never mistaken for a fill value.
//   - ETag is the value's CID, so If-None-Match gives 304 and If-Range works; Cache-Control marks
//     the bytes immutable; no Content-Encoding is ever applied; CORS allows any origin to read
//     (GET, HEAD and the Range header), as IPFS gateways do. The answers net/http's server gives
//     before any handler runs (400 for a malformed request, 431 for headers over MaxHeaderBytes)
//     carry the CORS headers too when the server listens through CORSListener.
//   - Other methods are 405.
func (s *ZarrStore) Handler() http.Handler {
	return NewZarrHandler(s)
}

// The CORS headers on every answer of the handler, and through CORSListener on the answers
// net/http's server writes by itself.
const (
	corsAllowOrigin   = "Access-Control-Allow-Origin"
	corsAnyOrigin     = "*"
	corsExposeHeaders = "Access-Control-Expose-Headers"
	corsExposed       = "Content-Length, Content-Range, ETag, Accept-Ranges"
)

// NewZarrHandler returns an http.Handler that serves z's keys read-only, as ZarrStore.Handler
// describes, whatever z's layout.
func NewZarrHandler(z Zarr, opts ...HandlerOption) http.Handler {
	var o handlerOptions
	for _, opt := range opts {
		opt(&o)
	}
	if o.tel != nil {
		return o.tel.handler(zarrHandler{z})
	}
	return zarrHandler{z}
}

// zarrHandler serves a Zarr store over HTTP.
type zarrHandler struct{ z Zarr }

func (s zarrHandler) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	h := w.Header()
	h.Set(corsAllowOrigin, corsAnyOrigin)
	h.Set(corsExposeHeaders, corsExposed)
	switch req.Method {
	case http.MethodGet, http.MethodHead:
	case http.MethodOptions:
		h.Set("Access-Control-Allow-Methods", "GET, HEAD, OPTIONS")
		h.Set("Access-Control-Allow-Headers", "Range, If-None-Match, If-Range")
		h.Set("Access-Control-Max-Age", "86400")
		w.WriteHeader(http.StatusNoContent)
		return
	default:
		h.Set("Allow", "GET, HEAD, OPTIONS")
		http.Error(w, "read-only store: method not allowed", http.StatusMethodNotAllowed)
		return
	}
	ctx := req.Context()
	key := strings.TrimPrefix(req.URL.Path, "/")
	// The size comes first, even for the whole value: the body is sent in pieces, so the value
	// is never loaded whole just to learn its length.
	v, err := s.z.Open(ctx, key)
	if err != nil {
		httpError(w, key, err)
		return
	}
	etag := `"` + v.CID().String() + `"`
	h.Set("ETag", etag)
	h.Set("Cache-Control", "public, max-age=31536000, immutable")
	h.Set("Accept-Ranges", "bytes")
	if isMetadataKey(key) {
		h.Set("Content-Type", "application/json")
	} else {
		h.Set("Content-Type", "application/octet-stream")
	}
	if etagMatch(req.Header.Get("If-None-Match"), etag) {
		w.WriteHeader(http.StatusNotModified)
		return
	}

	spec := req.Header.Get("Range")
	if !ifRangeHolds(req.Header.Get("If-Range"), etag) {
		spec = ""
	}
	size := v.Size()
	status, r := http.StatusOK, ByteRange{}
	if spec != "" {
		rng, ok, satisfiable := parseRange(spec, size)
		switch {
		case ok && !satisfiable:
			h.Set("Content-Range", fmt.Sprintf("bytes */%d", size))
			http.Error(w, "range not satisfiable", http.StatusRequestedRangeNotSatisfiable)
			return
		case ok:
			status, r = http.StatusPartialContent, rng
		}
	}
	start, end := r.Bounds(size)
	if status == http.StatusPartialContent {
		h.Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", start, end-1, size))
	}
	h.Set("Content-Length", strconv.FormatInt(end-start, 10))
	if req.Method == http.MethodHead {
		w.WriteHeader(status)
		return
	}
	sendValue(w, req, key, v, status, r, start, end)
}

// sendValue answers status with the bytes [start, end) of the value v (r, resolved), in the
// pieces ZarrValue.pieces reads.
//
// The first piece is read before the status is sent, so a value that cannot be read at all is a
// 500. A later failure cannot change the status any more: the response is aborted
// (http.ErrAbortHandler), so the client sees a cut connection, never a short 200 it could cache.
func sendValue(w http.ResponseWriter, req *http.Request, key string, v *ZarrValue, status int, r ByteRange, start, end int64) {
	out := newPieceWriter(w, req)
	first := true
	for body, err := range v.pieces(req.Context(), r, start, end) {
		switch {
		case err != nil && first:
			failAfterHeaders(w, key, err)
			return
		case err != nil:
			panic(http.ErrAbortHandler)
		case first:
			w.WriteHeader(status)
			first = false
		}
		if err := out.write(body); err != nil {
			return // a client that went away or stopped reading is not our error
		}
	}
}

// pieceWriter writes a response body in pieces of at most servePiece bytes. When the server has a
// WriteTimeout, each piece gets that long from the moment it is handed over, rather than the whole
// response: a slow download that keeps reading goes on, a client that stops reading is dropped.
type pieceWriter struct {
	w       http.ResponseWriter
	rc      *http.ResponseController
	timeout time.Duration
}

func newPieceWriter(w http.ResponseWriter, req *http.Request) *pieceWriter {
	p := &pieceWriter{w: w, rc: http.NewResponseController(w)}
	if srv, ok := req.Context().Value(http.ServerContextKey).(*http.Server); ok {
		p.timeout = srv.WriteTimeout
	}
	return p
}

func (p *pieceWriter) write(b []byte) error {
	for len(b) > 0 {
		n := min(len(b), servePiece)
		if p.timeout > 0 {
			// ErrNotSupported (a ResponseWriter with no connection) leaves the server's deadline.
			_ = p.rc.SetWriteDeadline(time.Now().Add(p.timeout))
		}
		if _, err := p.w.Write(b[:n]); err != nil {
			return err
		}
		b = b[n:]
	}
	return nil
}

// failAfterHeaders answers err after the value's headers were set: those are dropped, so an error
// page never claims the value's length, range, ETag or caching.
func failAfterHeaders(w http.ResponseWriter, key string, err error) {
	for _, name := range []string{"Content-Length", "Content-Range", "ETag", "Cache-Control"} {
		w.Header().Del(name)
	}
	httpError(w, key, err)
}

// httpError answers 404 for a missing key and 500 for every other failure.
func httpError(w http.ResponseWriter, key string, err error) {
	if errors.Is(err, ErrNotFound) {
		http.Error(w, fmt.Sprintf("no key %q", key), http.StatusNotFound)
		return
	}
	http.Error(w, err.Error(), http.StatusInternalServerError)
}

// etagMatch reports whether an If-None-Match header matches etag: it is "*", or a list of entity
// tags one of which is etag. A weak tag compares equal to its strong form, as RFC 9110 prescribes
// for If-None-Match. "W/*" is not "*" but no entity tag at all, and like any malformed list it
// matches nothing past the point where it stops parsing.
func etagMatch(header, etag string) bool {
	list := strings.Trim(header, " \t")
	if list == "*" {
		return true
	}
	for {
		list = strings.TrimLeft(list, " \t,")
		if list == "" {
			return false
		}
		list = strings.TrimPrefix(list, "W/")
		if len(list) < 2 || list[0] != '"' {
			return false
		}
		end := strings.IndexByte(list[1:], '"') + 1
		if end == 0 {
			return false
		}
		if list[:end+1] == etag {
			return true
		}
		list = strings.TrimLeft(list[end+1:], " \t")
		if list != "" && list[0] != ',' {
			return false
		}
	}
}

// ifRangeHolds reports whether a Range header applies given If-Range: absent, or our strong ETag.
// A date is never a match: our values have no modification time.
func ifRangeHolds(header, etag string) bool {
	return header == "" || header == etag
}

// parseRange reads a Range header of one byte range against a value of size bytes. ok is false
// when the header is not one valid byte range (malformed, another unit, several ranges): the
// whole value is then served, as RFC 9110 allows. satisfiable is false when the range selects no
// byte of the value.
func parseRange(spec string, size int64) (r ByteRange, ok, satisfiable bool) {
	spec, found := strings.CutPrefix(spec, "bytes=")
	if !found || strings.Contains(spec, ",") {
		return r, false, false
	}
	first, last, found := strings.Cut(strings.TrimSpace(spec), "-")
	if !found {
		return r, false, false
	}
	if first == "" { // bytes=-n: the last n bytes
		n, err := strconv.ParseInt(last, 10, 64)
		if err != nil || n < 0 {
			return r, false, false
		}
		return RangeSuffix(n), true, n > 0 && size > 0
	}
	a, err := strconv.ParseInt(first, 10, 64)
	if err != nil || a < 0 {
		return r, false, false
	}
	if last == "" {
		return RangeFrom(a), true, a < size
	}
	b, err := strconv.ParseInt(last, 10, 64)
	if err != nil || b < a {
		return r, false, false
	}
	if b == 1<<63-1 {
		b-- // keep b+1 from overflowing; the range is clipped to the value anyway
	}
	return RangeBetween(a, b+1), true, a < size
}
