package hamt

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash"
	"io"
	"iter"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/multiformats/go-multicodec"
	"github.com/multiformats/go-multihash"
	"github.com/zeebo/blake3"
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
	if !ifRangeHolds(req.Header.Get("If-Range"), etag) {
		spec = ""
	}
	// The size comes first, even for the whole value: the body is sent in pieces, so the value
	// is never loaded whole just to learn its length.
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
	s.sendValue(w, req, key, id, status, r, start, end)
}

// sendValue answers status with the bytes [start, end) of the value in block id (r, resolved), in
// the pieces valuePieces reads.
//
// The first piece is read before the status is sent, so a value that cannot be read at all is a
// 500. A later failure cannot change the status any more: the response is aborted
// (http.ErrAbortHandler), so the client sees a cut connection, never a short 200 it could cache.
func (s *ZarrStore) sendValue(w http.ResponseWriter, req *http.Request, key string, id cid.Cid, status int, r ByteRange, start, end int64) {
	out := newPieceWriter(w, req)
	first := true
	for body, err := range s.valuePieces(req.Context(), key, id, r, start, end) {
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

// WriteValue writes the bytes r selects of key's value to w and returns how many it wrote. The
// value is read in pieces of at most 1 MiB, each by range just before it is written, so memory
// stays bounded whatever the value's size (an encrypted value, which opens only whole, is the
// exception). A value that cannot be read fails before anything is written; a failure later (a
// block lost or corrupt further on) returns the error after a prefix of the bytes was written. A
// map opened WithVerifyBlocks hashes a value read in pieces as it goes and returns ErrCorrupt
// instead of writing its last piece when the hash does not match.
func (s *ZarrStore) WriteValue(ctx context.Context, w io.Writer, key string, r ByteRange) (int64, error) {
	if err := r.Validate(); err != nil {
		return 0, fmt.Errorf("zarr get %q: %w", key, err)
	}
	id, size, err := s.stat(ctx, key)
	if err != nil {
		return 0, err
	}
	start, end := r.Bounds(size)
	var n int64
	for piece, err := range s.valuePieces(ctx, key, id, r, start, end) {
		if err != nil {
			return n, err
		}
		m, err := w.Write(piece)
		n += int64(m)
		if err != nil {
			return n, fmt.Errorf("zarr get %q: %w", key, err)
		}
	}
	return n, nil
}

// servePiece is the most the handler (and WriteValue) reads of a value at once: the memory one
// response holds, whatever the value's size, and the amount the server's WriteTimeout is given to
// send.
const servePiece = 1 << 20

// valuePieces yields the bytes [start, end) of the value in block id (r, resolved) in pieces of at
// most servePiece bytes, each read by range just before it is yielded; at least one piece, empty
// for no bytes. An encrypted value can only be opened whole: it is read once and yielded as one
// piece. After an error nothing more is yielded.
func (s *ZarrStore) valuePieces(ctx context.Context, key string, id cid.Cid, r ByteRange, start, end int64) iter.Seq2[[]byte, error] {
	return func(yield func([]byte, error) bool) {
		step := int64(servePiece)
		if s.box != nil {
			step = max(end-start, 1)
		}
		// A map that verifies blocks verified a whole value when it was loaded whole; read in
		// pieces, it is hashed as it goes, and its last piece is held back until the hash matches.
		var check *pieceCheck
		if s.m.opts.verifyBlocks && r.IsFull() && end-start > step {
			var err error
			if check, err = newPieceCheck(id); err != nil {
				yield(nil, fmt.Errorf("zarr get %q: %w", key, err))
				return
			}
		}
		for from := start; ; {
			to := min(from+step, end)
			part := RangeBetween(from, to)
			if from == start && to == end {
				part = r // one read of all that was asked: a whole load when the value is wanted whole
			}
			b, err := s.readBlock(ctx, key, id, part)
			if err == nil && int64(len(b)) != to-from {
				err = fmt.Errorf("zarr get %q: %w: read %d bytes of [%d, %d) of %s", key, ErrCorrupt, len(b), from, to, id)
			}
			if err == nil && check != nil {
				check.h.Write(b)
				if to == end {
					err = check.verify()
				}
			}
			if err != nil {
				yield(nil, err)
				return
			}
			if !yield(b, nil) || to == end {
				return
			}
			from = to
		}
	}
}

// pieceCheck hashes a value read in pieces, to compare with its CID at the end; nil for a dag-pb
// block, whose CID names a UnixFS file's root rather than the value's bytes.
type pieceCheck struct {
	id     cid.Cid
	h      hash.Hash
	digest []byte
}

func newPieceCheck(id cid.Cid) (*pieceCheck, error) {
	if id.Prefix().Codec == uint64(multicodec.DagPb) {
		return nil, nil
	}
	dec, err := multihash.Decode(id.Hash())
	if err != nil {
		return nil, fmt.Errorf("verify block %s: %w", id, err)
	}
	var h hash.Hash
	if dec.Code == multihash.BLAKE3 {
		h = blake3.New()
	} else if h, err = multihash.GetHasher(dec.Code); err != nil {
		return nil, fmt.Errorf("verify block %s: %w", id, err)
	}
	return &pieceCheck{id: id, h: h, digest: dec.Digest}, nil
}

func (c *pieceCheck) verify() error {
	if sum := c.h.Sum(nil); len(c.digest) > len(sum) || !bytes.Equal(sum[:len(c.digest)], c.digest) {
		return fmt.Errorf("%w: block %s does not hash to its CID", ErrCorrupt, c.id)
	}
	return nil
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
