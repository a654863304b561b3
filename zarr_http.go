package hamt

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/ipfs/go-cid"
)

// stat returns the CID of key's stored value and the size of its (plaintext) value.
func (s *ZarrStore) stat(ctx context.Context, key string) (cid.Cid, int64, error) {
	id, err := s.m.GetPointer(ctx, key)
	if err != nil {
		return cid.Undef, 0, err
	}
	n, err := s.size(ctx, key, id)
	return id, n, err
}

// size returns the size of the (plaintext) value stored in block id, without loading it when the
// CAS is a BlockSizer.
func (s *ZarrStore) size(ctx context.Context, key string, id cid.Cid) (int64, error) {
	n, err := valueSize(ctx, s.m.cas, id, s.m.opts.verifyBlocks)
	if err != nil {
		return 0, fmt.Errorf("zarr size %q: %s: %w", key, id, missingBlock(err))
	}
	if s.box != nil {
		if n < sealOverhead {
			return 0, fmt.Errorf("zarr size %q: %w: value of %d bytes is shorter than its header", key, ErrDecrypt, n)
		}
		n -= sealOverhead
	}
	return n, nil
}

// readBlock returns the part r of the (plaintext) value stored at id: by range from the CAS
// when the value is not encrypted, otherwise whole, opened, then sliced. A dag-pb value is read as
// the UnixFS file it heads, a range reading only the leaves that hold it.
func (s *ZarrStore) readBlock(ctx context.Context, key string, id cid.Cid, r ByteRange) ([]byte, error) {
	if s.box == nil && !r.IsFull() {
		b, err := loadValue(ctx, s.m.cas, id, r, s.m.opts.verifyBlocks)
		if err != nil {
			return nil, fmt.Errorf("zarr get %q: load %s of %s: %w", key, r, id, missingBlock(err))
		}
		return b, nil
	}
	b, err := loadValue(ctx, s.m.cas, id, ByteRange{}, s.m.opts.verifyBlocks)
	if err != nil {
		return nil, fmt.Errorf("zarr get %q: load %s: %w", key, id, missingBlock(err))
	}
	if s.box != nil {
		if b, err = s.box.open(b); err != nil {
			return nil, fmt.Errorf("zarr get %q: %w", key, err)
		}
	}
	return r.Slice(b), nil
}

// Handler returns an http.Handler that serves the store's keys read-only, for Zarr clients that
// read over HTTP (zarr-python's FsspecStore, zarrita's FetchStore): the URL path without its
// leading slash is the key (mount it elsewhere with http.StripPrefix).
//
//   - GET answers 200 with the exact bytes, or 206 for a single Range ("bytes=a-b", "bytes=a-",
//     "bytes=-n"), read from the CAS as a range when it can; an unsatisfiable range is 416, a
//     multi-range request gets the whole value (200).
//   - HEAD gives the same headers with the correct Content-Length and no body.
//   - 404 only for a missing key, which Zarr clients read as "absent"; a failure to read is 500
//     (the body says why), so a lost block is never mistaken for a fill value.
//   - ETag is the value's CID, so If-None-Match gives 304 and If-Range works; Cache-Control marks
//     the bytes immutable; no Content-Encoding is ever applied; CORS allows any origin to read
//     (GET, HEAD and the Range header), as IPFS gateways do.
//   - Other methods are 405.
func (s *ZarrStore) Handler() http.Handler {
	return http.HandlerFunc(s.serveHTTP)
}

func (s *ZarrStore) serveHTTP(w http.ResponseWriter, req *http.Request) {
	h := w.Header()
	h.Set("Access-Control-Allow-Origin", "*")
	h.Set("Access-Control-Expose-Headers", "Content-Length, Content-Range, ETag, Accept-Ranges")
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
	id, err := s.m.GetPointer(ctx, key)
	if err != nil {
		httpError(w, key, err)
		return
	}
	etag := `"` + id.String() + `"`
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
	if spec == "" || !ifRangeHolds(req.Header.Get("If-Range"), etag) {
		spec = ""
		if req.Method == http.MethodGet {
			// The whole value: its length is the size, so no separate size lookup (for Kubo, a
			// HEAD request) is needed.
			body, err := s.readBlock(ctx, key, id, ByteRange{})
			if err != nil {
				failAfterHeaders(w, key, err)
				return
			}
			h.Set("Content-Length", strconv.Itoa(len(body)))
			w.WriteHeader(http.StatusOK)
			_, _ = w.Write(body) // a client that went away is not our error
			return
		}
	}
	size, err := s.size(ctx, key, id)
	if err != nil {
		failAfterHeaders(w, key, err)
		return
	}
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
	body, err := s.readBlock(ctx, key, id, r)
	if err == nil && int64(len(body)) != end-start {
		err = fmt.Errorf("zarr get %q: %w: read %d bytes of %d", key, ErrCorrupt, len(body), end-start)
	}
	if err != nil {
		failAfterHeaders(w, key, err)
		return
	}
	w.WriteHeader(status)
	_, _ = w.Write(body) // a client that went away is not our error
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

// etagMatch reports whether an If-None-Match header lists etag (or is "*"). Weak tags compare
// equal to their strong form, as RFC 9110 prescribes for If-None-Match.
func etagMatch(header, etag string) bool {
	for t := range strings.SplitSeq(header, ",") {
		t = strings.TrimPrefix(strings.TrimSpace(t), "W/")
		if t == "*" || t == etag {
			return true
		}
	}
	return false
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
