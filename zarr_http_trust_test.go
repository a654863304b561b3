package hamt_test

// Tests that the Zarr HTTP handler cannot be held down by clients: values go out in bounded
// pieces, a client that stops reading is dropped while a slow one that keeps reading is served,
// and a failure after the status was sent never passes for a complete answer. The clients are
// real TCP connections on 127.0.0.1 to a real server over a real bbolt file.

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"runtime"
	"runtime/metrics"
	"strings"
	"testing"
	"time"

	"github.com/hamt-go/hamt"
	"github.com/ipfs/go-cid"
	"github.com/multiformats/go-multicodec"
)

// bigValueStore returns a read-only Zarr store over a bbolt file holding key with size random
// bytes, and those bytes.
func bigValueStore(t testing.TB, key string, size int) (*hamt.ZarrStore, []byte) {
	t.Helper()
	ctx := context.Background()
	cas, err := hamt.OpenBoltCAS(filepath.Join(t.TempDir(), "store.bolt"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cas.Close() })
	val := make([]byte, size)
	_, _ = rand.NewChaCha8([32]byte{byte(size), 11}).Read(val)
	store := zarrNewStore(t, cas)
	if err := store.Set(ctx, key, val); err != nil {
		t.Fatal(err)
	}
	if _, err := store.Map().Flush(ctx); err != nil {
		t.Fatal(err)
	}
	return reopen(t, cas, store), val
}

// setRawBlock points key at val saved as one raw block, as stores written before values over one
// chunk became UnixFS files (and py-hamt's own stores) hold it: a value read from one block in
// pieces, by range.
func setRawBlock(t testing.TB, cas hamt.CAS, store *hamt.ZarrStore, key string, val []byte) {
	t.Helper()
	id, err := cas.Save(context.Background(), val, multicodec.Raw)
	if err != nil {
		t.Fatal(err)
	}
	if err := store.SetCID(context.Background(), key, id); err != nil {
		t.Fatal(err)
	}
}

// startServer serves h on 127.0.0.1 with the given write and read timeouts; the server's side of
// each connection gets a small send buffer, so that a client that stops reading blocks the
// handler after some 100 KB rather than after what the kernel would buffer (megabytes on loopback).
func startServer(t testing.TB, h http.Handler, write, read time.Duration) *httptest.Server {
	t.Helper()
	srv := httptest.NewUnstartedServer(h)
	srv.Config.WriteTimeout = write
	srv.Config.ReadTimeout = read
	srv.Config.ConnState = func(c net.Conn, s http.ConnState) {
		if tc, ok := c.(*net.TCPConn); s == http.StateNew && ok {
			_ = tc.SetWriteBuffer(128 << 10)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	return srv
}

// stalledGet opens a connection with a small receive buffer, sends a GET for path with the extra
// header lines, reads the status line and headers, and returns the connection unread past them,
// with the status line.
func stalledGet(t testing.TB, addr, path string, extra ...string) (net.Conn, *bufio.Reader, string) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	_ = c.(*net.TCPConn).SetReadBuffer(16 << 10)
	req := "GET " + path + " HTTP/1.1\r\nHost: test\r\n" + strings.Join(extra, "") + "\r\n"
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReaderSize(c, 4<<10)
	_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
	status, err := br.ReadString('\n')
	if err != nil {
		t.Fatalf("reading the status of %s: %v", path, err)
	}
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("reading the headers of %s: %v", path, err)
		}
		if line == "\r\n" {
			break
		}
	}
	_ = c.SetReadDeadline(time.Time{})
	return c, br, strings.TrimSpace(status)
}

// heapMetrics are the runtime/metrics samples the memory test reads.
var heapMetrics = []metrics.Sample{
	{Name: "/gc/heap/live:bytes"},                 // live heap after the last GC
	{Name: "/memory/classes/total:bytes"},         // all memory the runtime mapped...
	{Name: "/memory/classes/heap/released:bytes"}, // ...minus what it gave back: what stays resident
}

// heapNow collects garbage and returns the live heap and the memory the runtime holds.
func heapNow() (live, held uint64) {
	runtime.GC()
	metrics.Read(heapMetrics)
	return heapMetrics[0].Value.Uint64(), heapMetrics[1].Value.Uint64() - heapMetrics[2].Value.Uint64()
}

// TestZarrHTTPStalledClientsHoldBoundedMemory: 32 clients ask for a 16 MiB value (half of them by
// a Range covering almost all of it) and stop reading after the headers. The server's live heap
// may grow by about one 1 MiB piece per client, not by the value per client (512 MiB before the
// handler streamed), and comes back once they leave.
func TestZarrHTTPStalledClientsHoldBoundedMemory(t *testing.T) {
	const clients, size = 32, 16 << 20
	store, val := bigValueStore(t, "big/c/0", size)
	srv := startServer(t, store.Handler(), time.Minute, time.Minute)
	addr := srv.Listener.Addr().String()

	baseLive, baseHeld := heapNow()
	var conns []net.Conn
	for i := range clients {
		var extra []string
		if i%2 == 1 {
			extra = []string{"Range: bytes=1-\r\n"}
		}
		c, _, status := stalledGet(t, addr, "/big/c/0", extra...)
		if want := []string{"200", "206"}[i%2]; !strings.Contains(status, " "+want+" ") {
			t.Fatalf("client %d: %q, want %s", i, status, want)
		}
		conns = append(conns, c)
	}
	// Let every handler fill what its connection buffers and block on a write.
	time.Sleep(500 * time.Millisecond)
	live, held := heapNow()
	growth := int64(live) - int64(baseLive)
	t.Logf("%d stalled clients of a %d MiB value: live heap %d -> %d MiB (+%d MiB), runtime holds %d -> %d MiB",
		clients, size>>20, baseLive>>20, live>>20, growth>>20, baseHeld>>20, held>>20)
	if limit := int64(clients*2<<20 + 8<<20); growth > limit {
		t.Errorf("live heap grew by %d MiB with %d stalled clients; want at most %d MiB (about a 1 MiB piece each)",
			growth>>20, clients, limit>>20)
	}
	for _, c := range conns {
		c.Close()
	}
	// The handlers notice on their next write, and drop their pieces.
	deadline := time.Now().Add(10 * time.Second)
	for {
		live, held = heapNow()
		if int64(live)-int64(baseLive) < 8<<20 || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("after they left: live heap %d MiB, runtime holds %d MiB", live>>20, held>>20)
	if int64(live)-int64(baseLive) >= 8<<20 {
		t.Errorf("live heap still %d MiB above its start after the clients left", (int64(live)-int64(baseLive))>>20)
	}
	runtime.KeepAlive(val)
}

// TestZarrHTTPSlowDownloadOutlivesWriteTimeout: with a 1.5 s WriteTimeout and ReadTimeout, a
// client that reads a 16 MiB value 64 KiB at a time with a 10 ms pause after each (at least 2.56 s
// in all, some 0.2 s a MiB) gets every byte, while a client that stops reading is dropped: the
// timeout bounds each piece, not the whole answer.
func TestZarrHTTPSlowDownloadOutlivesWriteTimeout(t *testing.T) {
	const size = 16 << 20
	const timeout = 2 * time.Second // a 1 MiB piece drains in ~160 ms here, 2.56 s in all: margin both ways, even on a loaded machine
	store, val := bigValueStore(t, "big/c/0", size)
	srv := startServer(t, store.Handler(), timeout, timeout)
	addr := srv.Listener.Addr().String()

	stalled, stalledBody, _ := stalledGet(t, addr, "/big/c/0")
	defer stalled.Close()

	slow, body, status := stalledGet(t, addr, "/big/c/0")
	defer slow.Close()
	if !strings.Contains(status, " 200 ") {
		t.Fatalf("slow client: %q", status)
	}
	start := time.Now()
	var got bytes.Buffer
	buf := make([]byte, 64<<10)
	for got.Len() < size {
		n, err := io.ReadFull(body, buf[:min(len(buf), size-got.Len())])
		got.Write(buf[:n])
		if err != nil {
			t.Fatalf("slow client cut after %d of %d bytes in %s: %v", got.Len(), size, time.Since(start).Round(time.Millisecond), err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if took := time.Since(start); took < timeout {
		t.Fatalf("the slow download took %s, less than the %s timeout: it tests nothing", took, timeout)
	}
	if !bytes.Equal(got.Bytes(), val) {
		t.Error("slow client got other bytes")
	}

	// By now the stalled client has been dropped: what is left to read ends early.
	_ = stalled.SetReadDeadline(time.Now().Add(10 * time.Second))
	n, err := io.Copy(io.Discard, stalledBody)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("stalled client still connected after %d bytes: %v", n, err)
	}
	if n >= size {
		t.Errorf("stalled client got all %d bytes; want it dropped", n)
	}
}

// failingRangeCAS is a memory store whose range reads fail from byte failFrom of a block on.
type failingRangeCAS struct {
	*hamt.MemoryCAS
	failFrom int64
}

func (f *failingRangeCAS) LoadRange(ctx context.Context, id cid.Cid, r hamt.ByteRange) ([]byte, error) {
	if start, _, ok := r.Between(); ok && start >= f.failFrom {
		return nil, fmt.Errorf("failing range %s: %w", r, hamt.ErrNotFound)
	}
	return f.MemoryCAS.LoadRange(ctx, id, r)
}

// TestZarrHTTPFailureAfterStatusAbortsTheAnswer: when a piece past the first cannot be read, the
// status and length are already sent; the client must see the answer cut off (an error from the
// body), never a complete-looking 200 or 206 it could cache.
func TestZarrHTTPFailureAfterStatusAbortsTheAnswer(t *testing.T) {
	const size = 3<<20 + 5
	mem := hamt.NewMemoryCAS()
	store := zarrNewStore(t, mem)
	val := bytes.Repeat([]byte("0123456789abcdef"), size/16+1)[:size]
	setRawBlock(t, mem, store, "big/c/0", val)
	if _, err := store.Map().Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	rs := reopen(t, &failingRangeCAS{MemoryCAS: mem, failFrom: 1 << 20}, store)
	srv := startServer(t, rs.Handler(), 0, 0)
	for _, rng := range []string{"", "bytes=0-", "bytes=10-2097160"} {
		req, _ := http.NewRequest("GET", srv.URL+"/big/c/0", nil)
		if rng != "" {
			req.Header.Set("Range", rng)
		}
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatalf("Range %q: %v", rng, err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err == nil {
			t.Errorf("Range %q: %d with %d of %d bytes and no error; want the answer cut off",
				rng, resp.StatusCode, len(body), resp.ContentLength)
		}
	}
}

// TestZarrHTTPPiecesJoinUp: a value of several pieces comes back whole and by ranges that start,
// end and straddle piece boundaries, byte for byte.
func TestZarrHTTPPiecesJoinUp(t *testing.T) {
	const size = 3<<20 + 17
	store, val := bigValueStore(t, "big/c/0", size)
	srv := httptest.NewServer(store.Handler())
	defer srv.Close()
	const mib = 1 << 20
	for _, c := range []struct {
		rng        string
		start, end int
	}{
		{"", 0, size},
		{"bytes=0-", 0, size},
		{fmt.Sprintf("bytes=%d-%d", mib-3, 2*mib+2), mib - 3, 2*mib + 3},
		{fmt.Sprintf("bytes=%d-%d", mib, 2*mib-1), mib, 2 * mib},
		{fmt.Sprintf("bytes=%d-", 3*mib), 3 * mib, size},
		{"bytes=-5", size - 5, size},
	} {
		resp, body := do(t, "GET", srv.URL+"/big/c/0", "Range", c.rng)
		if resp.StatusCode/100 != 2 || !bytes.Equal(body, val[c.start:c.end]) {
			t.Errorf("Range %q: %d, %d bytes; want bytes [%d, %d)", c.rng, resp.StatusCode, len(body), c.start, c.end)
		}
	}
}

// TestZarrHTTPIfNoneMatch: If-None-Match follows RFC 9110: "*" matches, "W/*" and other malformed
// lists do not, a weak tag matches its strong form, a tag inside a longer one does not.
func TestZarrHTTPIfNoneMatch(t *testing.T) {
	srv, rs, _ := servedTestdata(t)
	id, err := rs.Map().GetPointer(context.Background(), "zarr.json")
	if err != nil {
		t.Fatal(err)
	}
	etag := `"` + id.String() + `"`
	for _, c := range []struct {
		header string
		status int
	}{
		{"*", 304},
		{" * ", 304},
		{etag, 304},
		{"W/" + etag, 304},
		{`"a", ` + etag, 304},
		{`"a",W/` + etag + ` , "b"`, 304},
		{"W/*", 200},
		{"w/*", 200},
		{`"a", *`, 200},
		{`"a"`, 200},
		{strings.Trim(etag, `"`), 200},
		{`"x` + strings.Trim(etag, `"`) + `"`, 200},
		{`"a" ` + etag, 200},
	} {
		if resp, _ := do(t, "GET", srv.URL+"/zarr.json", "If-None-Match", c.header); resp.StatusCode != c.status {
			t.Errorf("If-None-Match %s: %d, want %d", c.header, resp.StatusCode, c.status)
		}
	}
}

// rottenCAS is a memory store in which one block has one byte flipped, as bit rot would leave
// it: whole loads and range reads both see the flipped byte.
type rottenCAS struct {
	*hamt.MemoryCAS
	id cid.Cid
	at int64
}

func (c *rottenCAS) Load(ctx context.Context, id cid.Cid) ([]byte, error) {
	b, err := c.MemoryCAS.Load(ctx, id)
	if err != nil || id != c.id {
		return b, err
	}
	b = bytes.Clone(b)
	b[c.at] ^= 1
	return b, nil
}

func (c *rottenCAS) LoadRange(ctx context.Context, id cid.Cid, r hamt.ByteRange) ([]byte, error) {
	b, err := c.MemoryCAS.LoadRange(ctx, id, r)
	if err != nil || id != c.id {
		return b, err
	}
	size, _ := c.MemoryCAS.BlockSize(ctx, id)
	if start, end := r.Bounds(size); start <= c.at && c.at < end {
		b[c.at-start] ^= 1
	}
	return b, nil
}

// TestZarrHTTPVerifyingMapNeverServesRotInPieces: over a map that verifies blocks, a value sent in
// pieces is hashed on the way, so a flipped byte anywhere in it never reaches the client as a
// complete 200: before the status (a whole load, as before) it is a 500, after it the answer is
// cut off before its last piece.
func TestZarrHTTPVerifyingMapNeverServesRotInPieces(t *testing.T) {
	const size = 3<<20 + 5
	ctx := context.Background()
	mem := hamt.NewMemoryCAS()
	store := zarrNewStore(t, mem)
	val := bytes.Repeat([]byte("0123456789abcdef"), size/16+1)[:size]
	setRawBlock(t, mem, store, "big/c/0", val)
	if _, err := store.Map().Flush(ctx); err != nil {
		t.Fatal(err)
	}
	id, err := store.Map().GetPointer(ctx, "big/c/0")
	if err != nil {
		t.Fatal(err)
	}
	for _, at := range []int64{0, 1<<20 + 7, size - 1} {
		rs := reopen(t, &rottenCAS{MemoryCAS: mem, id: id, at: at}, store, hamt.WithVerifyBlocks())
		srv := startServer(t, rs.Handler(), 0, 0)
		resp, err := srv.Client().Get(srv.URL + "/big/c/0")
		if err != nil {
			t.Fatalf("rot at %d: %v", at, err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == 200 && err == nil {
			t.Errorf("rot at %d: 200 with %d of %d bytes, the same as stored: %v; want a 500 or a cut answer",
				at, len(body), size, bytes.Equal(body, val))
		}
	}
}
