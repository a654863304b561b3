package hamt_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"path"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/fstest"

	"github.com/hamt-go/hamt"
	"github.com/ipfs/go-cid"
)

// servedTestdata imports testdata/zarr, reopens it read-only and serves it on 127.0.0.1.
func servedTestdata(t *testing.T) (*httptest.Server, *hamt.ZarrStore, map[string][]byte) {
	t.Helper()
	cas := hamt.NewMemoryCAS()
	store, _ := importTree(t, cas, zarrTestdata)
	rs := reopen(t, cas, store)
	srv := httptest.NewServer(rs.Handler())
	t.Cleanup(srv.Close)
	return srv, rs, readTree(t, zarrTestdata)
}

// do sends one request with the given headers and returns the response with its body read.
func do(t *testing.T, method, url string, hdr ...string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	// Ask for gzip ourselves: the transport then hands back the body as sent, so a
	// Content-Encoding would show.
	tr := &http.Transport{DisableCompression: true}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, body
}

// TestZarrHTTPRanges checks statuses, bodies and headers for whole values and every kind of
// Range, on GET and HEAD.
func TestZarrHTTPRanges(t *testing.T) {
	srv, rs, files := servedTestdata(t)
	const key = "sharded/c/0/0" // 100 bytes: inner chunks then the index
	val := files[key]
	size := len(val)
	id, err := rs.Map().GetPointer(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}
	etag := `"` + id.String() + `"`
	cases := []struct {
		name, rng  string
		status     int
		start, end int // expected body val[start:end]
	}{
		{"whole", "", 200, 0, size},
		{"bounded", "bytes=2-5", 206, 2, 6},
		{"one byte", "bytes=0-0", 206, 0, 1},
		{"open", "bytes=90-", 206, 90, size},
		{"suffix (shard index)", "bytes=-68", 206, size - 68, size},
		{"end clipped", "bytes=95-1000", 206, 95, size},
		{"suffix longer than value", "bytes=-1000", 206, 0, size},
		{"huge end", "bytes=0-9223372036854775807", 206, 0, size},
		{"start at size", "bytes=100-", 416, 0, 0},
		{"start past size", "bytes=200-300", 416, 0, 0},
		{"suffix 0", "bytes=-0", 416, 0, 0},
		{"several ranges: whole value", "bytes=0-1,4-5", 200, 0, size},
		{"malformed: ignored", "bytes=x-y", 200, 0, size},
		{"end before start: ignored", "bytes=5-2", 200, 0, size},
		{"other unit: ignored", "items=0-1", 200, 0, size},
	}
	for _, c := range cases {
		for _, method := range []string{"GET", "HEAD"} {
			t.Run(c.name+"/"+method, func(t *testing.T) {
				hdr := []string{"Accept-Encoding", "gzip"}
				if c.rng != "" {
					hdr = append(hdr, "Range", c.rng)
				}
				resp, body := do(t, method, srv.URL+"/"+key, hdr...)
				if resp.StatusCode != c.status {
					t.Fatalf("status %d, want %d", resp.StatusCode, c.status)
				}
				if ce := resp.Header.Get("Content-Encoding"); ce != "" {
					t.Errorf("Content-Encoding %q", ce)
				}
				if c.status == 416 {
					if got := resp.Header.Get("Content-Range"); got != fmt.Sprintf("bytes */%d", size) {
						t.Errorf("Content-Range %q", got)
					}
					return
				}
				want := val[c.start:c.end]
				if cl := resp.Header.Get("Content-Length"); cl != strconv.Itoa(len(want)) {
					t.Errorf("Content-Length %q, want %d", cl, len(want))
				}
				if method == "GET" && !bytes.Equal(body, want) {
					t.Errorf("body %x, want %x", body, want)
				}
				if method == "HEAD" && len(body) != 0 {
					t.Errorf("HEAD body of %d bytes", len(body))
				}
				wantCR := ""
				if c.status == 206 {
					wantCR = fmt.Sprintf("bytes %d-%d/%d", c.start, c.end-1, size)
				}
				if got := resp.Header.Get("Content-Range"); got != wantCR {
					t.Errorf("Content-Range %q, want %q", got, wantCR)
				}
				for h, want := range map[string]string{
					"ETag":                        etag,
					"Accept-Ranges":               "bytes",
					"Content-Type":                "application/octet-stream",
					"Access-Control-Allow-Origin": "*",
				} {
					if got := resp.Header.Get(h); got != want {
						t.Errorf("%s %q, want %q", h, got, want)
					}
				}
				if cc := resp.Header.Get("Cache-Control"); !strings.Contains(cc, "immutable") {
					t.Errorf("Cache-Control %q lacks immutable", cc)
				}
			})
		}
	}
}

// TestZarrHTTPStatuses: 404 only for a missing key, 304 on a matching If-None-Match, If-Range,
// 405 for writes, the CORS preflight, and metadata served as JSON.
func TestZarrHTTPStatuses(t *testing.T) {
	srv, rs, files := servedTestdata(t)
	id, _ := rs.Map().GetPointer(context.Background(), "zarr.json")
	etag := `"` + id.String() + `"`

	resp, body := do(t, "GET", srv.URL+"/zarr.json")
	if resp.StatusCode != 200 || !bytes.Equal(body, files["zarr.json"]) || resp.Header.Get("Content-Type") != "application/json" {
		t.Errorf("zarr.json: %d %q %q", resp.StatusCode, resp.Header.Get("Content-Type"), body)
	}
	for _, missing := range []string{"/sparse/c/1/0", "/nope", "/", "/surface", "/surface/"} {
		if resp, _ := do(t, "GET", srv.URL+missing); resp.StatusCode != 404 {
			t.Errorf("GET %s: %d, want 404", missing, resp.StatusCode)
		}
		if resp, _ := do(t, "HEAD", srv.URL+missing); resp.StatusCode != 404 {
			t.Errorf("HEAD %s: %d, want 404", missing, resp.StatusCode)
		}
	}
	for _, inm := range []string{etag, "W/" + etag, `"other", ` + etag, "*"} {
		if resp, body := do(t, "GET", srv.URL+"/zarr.json", "If-None-Match", inm); resp.StatusCode != 304 || len(body) != 0 {
			t.Errorf("If-None-Match %s: %d with %d bytes, want 304", inm, resp.StatusCode, len(body))
		}
	}
	if resp, _ := do(t, "GET", srv.URL+"/zarr.json", "If-None-Match", `"other"`); resp.StatusCode != 200 {
		t.Errorf("non-matching If-None-Match: %d", resp.StatusCode)
	}
	if resp, _ := do(t, "GET", srv.URL+"/zarr.json", "Range", "bytes=0-1", "If-Range", etag); resp.StatusCode != 206 {
		t.Errorf("If-Range with our ETag: %d, want 206", resp.StatusCode)
	}
	if resp, body := do(t, "GET", srv.URL+"/zarr.json", "Range", "bytes=0-1", "If-Range", `"stale"`); resp.StatusCode != 200 || len(body) != len(files["zarr.json"]) {
		t.Errorf("If-Range with another ETag: %d, %d bytes; want the whole value", resp.StatusCode, len(body))
	}
	for _, m := range []string{"PUT", "POST", "DELETE", "PATCH"} {
		if resp, _ := do(t, m, srv.URL+"/zarr.json"); resp.StatusCode != 405 || resp.Header.Get("Allow") == "" {
			t.Errorf("%s: %d (Allow %q), want 405", m, resp.StatusCode, resp.Header.Get("Allow"))
		}
	}
	resp, _ = do(t, "OPTIONS", srv.URL+"/zarr.json", "Origin", "http://example.test", "Access-Control-Request-Headers", "range")
	if resp.StatusCode != 204 || !strings.Contains(resp.Header.Get("Access-Control-Allow-Headers"), "Range") || resp.Header.Get("Access-Control-Allow-Origin") != "*" {
		t.Errorf("preflight: %d %v", resp.StatusCode, resp.Header)
	}
	// Keys that need escaping in a URL.
	store := zarrNewStore(t, hamt.NewMemoryCAS())
	ctx := context.Background()
	for _, k := range []string{"a b/c%d", "ünï/ç"} {
		if err := store.Set(ctx, k, []byte(k)); err != nil {
			t.Fatal(err)
		}
	}
	srv2 := httptest.NewServer(store.Handler())
	defer srv2.Close()
	for _, k := range []string{"a b/c%d", "ünï/ç"} {
		u := srv2.URL + "/" + (&urlPath{k}).escaped()
		if resp, body := do(t, "GET", u); resp.StatusCode != 200 || string(body) != k {
			t.Errorf("GET %s: %d %q", u, resp.StatusCode, body)
		}
	}
}

type urlPath struct{ p string }

func (u *urlPath) escaped() string {
	parts := strings.Split(u.p, "/")
	for i, p := range parts {
		parts[i] = strings.ReplaceAll(strings.ReplaceAll(p, "%", "%25"), " ", "%20")
	}
	return strings.Join(parts, "/")
}

// lossyCAS loses the blocks in lost: Load answers ErrNotFound for them, as a store that lost data
// would, and LoadRange does the same.
type lossyCAS struct {
	*hamt.MemoryCAS
	lost map[cid.Cid]bool
}

func (l *lossyCAS) Load(ctx context.Context, id cid.Cid) ([]byte, error) {
	if l.lost[id] {
		return nil, fmt.Errorf("lossy: %w", hamt.ErrNotFound)
	}
	return l.MemoryCAS.Load(ctx, id)
}

func (l *lossyCAS) LoadRange(ctx context.Context, id cid.Cid, r hamt.ByteRange) ([]byte, error) {
	if l.lost[id] {
		return nil, fmt.Errorf("lossy: %w", hamt.ErrNotFound)
	}
	return l.MemoryCAS.LoadRange(ctx, id, r)
}

// TestZarrHTTPLostBlockIs500: a key whose value block is gone answers 500, never 404 — a Zarr
// client would otherwise read lost data as fill values.
func TestZarrHTTPLostBlockIs500(t *testing.T) {
	ctx := context.Background()
	mem := hamt.NewMemoryCAS()
	store, _ := importTree(t, mem, zarrTestdata)
	lossy := &lossyCAS{MemoryCAS: mem, lost: map[cid.Cid]bool{}}
	rs := reopen(t, lossy, store)
	id, err := rs.Map().GetPointer(ctx, "counts/c/1")
	if err != nil {
		t.Fatal(err)
	}
	// BlockSize still answers (MemoryCAS has it); loading is what fails.
	lossy.lost[id] = true
	srv := httptest.NewServer(rs.Handler())
	defer srv.Close()
	for _, rng := range []string{"", "bytes=0-3"} {
		resp, body := do(t, "GET", srv.URL+"/counts/c/1", "Range", rng)
		if resp.StatusCode != 500 || !strings.Contains(string(body), "block missing") {
			t.Errorf("lost block, Range %q: %d %q, want 500 naming the missing block", rng, resp.StatusCode, body)
		}
	}
	if _, err := rs.Get(ctx, "counts/c/1", hamt.ByteRange{}); !errors.Is(err, hamt.ErrMissingBlock) || errors.Is(err, hamt.ErrNotFound) {
		t.Errorf("Get of a lost block: %v, want ErrMissingBlock and not ErrNotFound", err)
	}
}

// TestZarrHTTPConcurrent: 32 clients each send 40 random whole and ranged GETs; every answer is
// checked against the files.
func TestZarrHTTPConcurrent(t *testing.T) {
	srv, _, files := servedTestdata(t)
	keys := slices.Sorted(func(yield func(string) bool) {
		for k := range files {
			if !yield(k) {
				return
			}
		}
	})
	var wg sync.WaitGroup
	errs := make(chan error, 32)
	for g := range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(g), 9))
			client := srv.Client()
			for range 40 {
				k := keys[r.IntN(len(keys))]
				val := files[k]
				req, _ := http.NewRequest("GET", srv.URL+"/"+k, nil)
				start, end := 0, len(val)
				if len(val) > 1 && r.IntN(2) == 0 {
					start = r.IntN(len(val))
					end = start + 1 + r.IntN(len(val)-start)
					req.Header.Set("Range", fmt.Sprintf("bytes=%d-%d", start, end-1))
				}
				resp, err := client.Do(req)
				if err != nil {
					errs <- err
					return
				}
				body, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if err != nil || !bytes.Equal(body, val[start:end]) {
					errs <- fmt.Errorf("%s [%d,%d): status %d, %d bytes, %v", k, start, end, resp.StatusCode, len(body), err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// TestZarrHTTPEncrypted: an encrypted store serves plaintext, with plaintext sizes and ranges.
func TestZarrHTTPEncrypted(t *testing.T) {
	ctx := context.Background()
	key := bytes.Repeat([]byte{1}, 32)
	m, err := hamt.New(ctx, hamt.NewMemoryCAS(), hamt.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	enc, err := hamt.NewEncryptedZarrStore(m, key, nil)
	if err != nil {
		t.Fatal(err)
	}
	val := []byte("0123456789abcdef")
	if err := enc.Set(ctx, "arr/c/0", val); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(enc.Handler())
	defer srv.Close()
	resp, body := do(t, "GET", srv.URL+"/arr/c/0")
	if resp.StatusCode != 200 || !bytes.Equal(body, val) || resp.ContentLength != int64(len(val)) {
		t.Errorf("GET: %d, %q, length %d", resp.StatusCode, body, resp.ContentLength)
	}
	resp, body = do(t, "GET", srv.URL+"/arr/c/0", "Range", "bytes=-4")
	if resp.StatusCode != 206 || string(body) != "cdef" || resp.Header.Get("Content-Range") != "bytes 12-15/16" {
		t.Errorf("suffix range: %d %q %q", resp.StatusCode, body, resp.Header.Get("Content-Range"))
	}
	// The same bytes read with the wrong key are a server error, not a missing key.
	bad, err := hamt.NewEncryptedZarrStore(m, bytes.Repeat([]byte{2}, 32), nil)
	if err != nil {
		t.Fatal(err)
	}
	srv2 := httptest.NewServer(bad.Handler())
	defer srv2.Close()
	if resp, _ := do(t, "GET", srv2.URL+"/arr/c/0"); resp.StatusCode != 500 {
		t.Errorf("wrong key: %d, want 500", resp.StatusCode)
	}
}

// TestZarrFS: the fs view passes testing/fstest, walks to exactly the imported files, serves them
// through http.FileServer, and maps missing names to fs.ErrNotExist.
func TestZarrFS(t *testing.T) {
	ctx := context.Background()
	_, rs, files := servedTestdata(t)
	fsys, err := rs.FS(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for k := range files {
		names = append(names, k)
	}
	if err := fstest.TestFS(fsys, names...); err != nil {
		t.Fatal(err)
	}
	walked := map[string]bool{}
	err = fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			walked[p] = true
			b, err := fs.ReadFile(fsys, p)
			if err != nil || !bytes.Equal(b, files[p]) {
				return fmt.Errorf("%s: %d bytes, %v", p, len(b), err)
			}
		}
		return nil
	})
	if err != nil || len(walked) != len(files) {
		t.Fatalf("WalkDir: %d files, %v; want %d", len(walked), err, len(files))
	}
	for _, missing := range []string{"nope", "sparse/c/1/0", "surface/temp/c/9"} {
		if _, err := fsys.Open(missing); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("Open(%q): %v, want fs.ErrNotExist", missing, err)
		}
		if _, err := fs.Stat(fsys, missing); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("Stat(%q): %v, want fs.ErrNotExist", missing, err)
		}
	}
	if _, err := fsys.Open("../x"); !errors.Is(err, fs.ErrInvalid) {
		t.Errorf("Open(../x): %v, want fs.ErrInvalid", err)
	}
	srv := httptest.NewServer(http.FileServerFS(fsys))
	defer srv.Close()
	resp, body := do(t, "GET", srv.URL+"/surface/temp/zarr.json")
	if resp.StatusCode != 200 || !bytes.Equal(body, files["surface/temp/zarr.json"]) {
		t.Errorf("FileServer: %d, %d bytes", resp.StatusCode, len(body))
	}
	resp, body = do(t, "GET", srv.URL+"/sharded/c/0/0", "Range", "bytes=-4")
	if v := files["sharded/c/0/0"]; resp.StatusCode != 206 || !bytes.Equal(body, v[len(v)-4:]) {
		t.Errorf("FileServer range: %d, %x", resp.StatusCode, body)
	}
}

// TestZarrFSOddKeys: keys that are not fs paths stay out of the view, and a key that is also a
// directory gives way to the directory.
func TestZarrFSOddKeys(t *testing.T) {
	ctx := context.Background()
	store := zarrNewStore(t, hamt.NewMemoryCAS())
	for _, k := range []string{"a", "a/b", "", "/abs", "x/../y", "c//d", "ok/f"} {
		if err := store.Set(ctx, k, []byte(k)); err != nil {
			t.Fatal(err)
		}
	}
	fsys, err := store.FS(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := fstest.TestFS(fsys, "a/b", "ok/f"); err != nil {
		t.Fatal(err)
	}
	var all []string
	_ = fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			all = append(all, p)
		}
		return err
	})
	if strings.Join(all, ",") != "a/b,ok/f" {
		t.Errorf("files %v, want [a/b ok/f]", all)
	}
	if fi, err := fs.Stat(fsys, "a"); err != nil || !fi.IsDir() || path.Base(fi.Name()) != "a" {
		t.Errorf("Stat(a) = %v, %v; want the directory", fi, err)
	}
}

// sizeCountingCAS counts BlockSize calls and whole loads.
type sizeCountingCAS struct {
	*hamt.MemoryCAS
	sizes, loads atomic.Int64
}

func (c *sizeCountingCAS) BlockSize(ctx context.Context, id cid.Cid) (int64, error) {
	c.sizes.Add(1)
	return c.MemoryCAS.BlockSize(ctx, id)
}

func (c *sizeCountingCAS) Load(ctx context.Context, id cid.Cid) ([]byte, error) {
	c.loads.Add(1)
	return c.MemoryCAS.Load(ctx, id)
}

// TestZarrHTTPStoreCalls: a plain GET of a small value asks its size (so that a large one is never
// loaded whole to learn it) and loads it whole once; a ranged GET and a HEAD ask the size and load
// no whole value.
func TestZarrHTTPStoreCalls(t *testing.T) {
	mem := hamt.NewMemoryCAS()
	store, _ := importTree(t, mem, zarrTestdata)
	cc := &sizeCountingCAS{MemoryCAS: mem}
	rs := reopen(t, cc, store)
	srv := httptest.NewServer(rs.Handler())
	defer srv.Close()
	for _, c := range []struct {
		method, rng  string
		sizes, loads int64
	}{
		{"GET", "", 1, 1},
		{"GET", "bytes=-4", 1, 0},
		{"HEAD", "", 1, 0},
	} {
		cc.sizes.Store(0)
		cc.loads.Store(0)
		resp, _ := do(t, c.method, srv.URL+"/counts/c/1", "Range", c.rng)
		if resp.StatusCode/100 != 2 || cc.sizes.Load() != c.sizes || cc.loads.Load() != c.loads {
			t.Errorf("%s %q: status %d, %d size lookups and %d whole loads; want %d and %d",
				c.method, c.rng, resp.StatusCode, cc.sizes.Load(), cc.loads.Load(), c.sizes, c.loads)
		}
	}
}
