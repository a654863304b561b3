package hamt_test

// Tests that the answers net/http's server gives by itself, before the Zarr handler runs, carry
// the handler's CORS headers when it listens through CORSListener, and that the handler's own
// answers pass through it byte for byte. The clients are raw TCP connections on 127.0.0.1 to a
// real server.

import (
	"bufio"
	"bytes"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/hamt-go/hamt"
)

// serverError is an error answer exactly as net/http's server writes it (Go 1.26): stored as a
// value, it must come back unchanged.
const serverError = "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n400 Bad Request"

// corsServer serves a small Zarr store on 127.0.0.1, through CORSListener when cors is set, with
// headers limited to 4 KiB (net/http reads 4 KiB more before it answers 431).
func corsServer(t *testing.T, cors, tls bool) (*httptest.Server, *hamt.ZarrStore) {
	t.Helper()
	store := zarrNewStore(t, hamt.NewMemoryCAS())
	zarrMustSet(t, store, "zarr.json", []byte(`{"zarr_format":3,"node_type":"group"}`))
	zarrMustSet(t, store, "err", []byte(serverError))
	zarrMustSet(t, store, "big", bytes.Repeat([]byte(serverError+"\r\n"), 5000))
	srv := httptest.NewUnstartedServer(store.Handler())
	srv.Config.MaxHeaderBytes = 4 << 10
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the TLS handshake errors the tests cause
	if cors {
		srv.Listener = hamt.CORSListener(srv.Config, srv.Listener)
	}
	if tls {
		srv.StartTLS()
	} else {
		srv.Start()
	}
	t.Cleanup(srv.Close)
	return srv, store
}

// exchange sends each of reqs on one connection to addr, in turn, reading the answers that
// came in between for a moment, then reads until the server closes, and returns all it read.
func exchange(t *testing.T, addr string, reqs ...string) []byte {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	got := make(chan []byte, 1)
	go func() {
		b, _ := io.ReadAll(c)
		got <- b
	}()
	for _, r := range reqs {
		if _, err := io.WriteString(c, r); err != nil {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond) // lets the server answer before the next request comes
	}
	return <-got
}

// readAnswers parses the answers in raw, in order.
func readAnswers(t *testing.T, raw []byte, methods ...string) []*http.Response {
	t.Helper()
	rd := bytes.NewReader(raw)
	br := bufio.NewReader(rd)
	var out []*http.Response
	for _, m := range methods {
		at := len(raw) - rd.Len() - br.Buffered()
		resp, err := http.ReadResponse(br, &http.Request{Method: m})
		if err != nil {
			t.Fatalf("answer %d, at byte %d of %d: %q…: %.200v", len(out)+1, at, len(raw), raw[at:min(len(raw), at+300)], err)
		}
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatalf("answer %d, at byte %d of %d: %q…: body: %v", len(out)+1, at, len(raw), raw[at:min(len(raw), at+300)], err)
		}
		resp.Body = io.NopCloser(bytes.NewReader(body))
		out = append(out, resp)
	}
	if rest, _ := io.ReadAll(br); len(rest) > 0 {
		t.Errorf("%d bytes after the answers: %q…", len(rest), rest[:min(len(rest), 300)])
	}
	return out
}

// handlerCORS is what the handler itself sends for the two CORS headers, read off an answer.
func handlerCORS(t *testing.T, srv *httptest.Server) http.Header {
	t.Helper()
	resp := readAnswers(t, exchange(t, srv.Listener.Addr().String(), "GET /zarr.json HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"), "GET")[0]
	h := http.Header{}
	for _, k := range []string{"Access-Control-Allow-Origin", "Access-Control-Expose-Headers"} {
		if len(resp.Header[k]) != 1 {
			t.Fatalf("the handler sent %s %q", k, resp.Header[k])
		}
		h[k] = resp.Header[k]
	}
	return h
}

func TestServerErrorAnswersCarryTheHandlersCORSHeaders(t *testing.T) {
	srv, _ := corsServer(t, true, false)
	want := handlerCORS(t, srv)
	const get = "GET /zarr.json HTTP/1.1\r\nHost: a\r\n\r\n"
	// Headers over the limit, twice what net/http reads before it answers 431 (MaxHeaderBytes and
	// 4 KiB, after what it had buffered): the client reads all the while, so the reset the
	// server's close sends, with these bytes unread, comes after the answer was read.
	over := "GET /zarr.json HTTP/1.1\r\nHost: a\r\nCookie: " + strings.Repeat("c", 16<<10)
	for _, c := range []struct {
		name    string
		reqs    []string
		methods []string // of the requests answered, the last by net/http itself
		status  []int
	}{
		{"headers over MaxHeaderBytes get 431", []string{over}, []string{"GET"}, []int{431}},
		{"a garbage request line gets 400", []string{"GARBAGE\r\n\r\n"}, []string{"GET"}, []int{400}},
		{"a malformed header line gets 400", []string{"GET / HTTP/1.1\r\nHost: a\r\nno colon\r\n\r\n"}, []string{"GET"}, []int{400}},
		{"HTTP/1.1 without Host gets 400", []string{"GET / HTTP/1.1\r\n\r\n"}, []string{"GET"}, []int{400}},
		{"an unknown transfer coding gets 501", []string{"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: zip\r\n\r\n"}, []string{"POST"}, []int{501}},
		{"HTTP/3.0 gets 505", []string{"GET / HTTP/3.0\r\nHost: a\r\n\r\n"}, []string{"GET"}, []int{505}},
		{"garbage after kept-alive requests gets 400", []string{get, get, "GARBAGE\r\n\r\n"}, []string{"GET", "GET", "GET"}, []int{200, 200, 400}},
		{"garbage pipelined behind requests gets 400", []string{get + "HEAD /zarr.json HTTP/1.1\r\nHost: a\r\n\r\nGARBAGE\r\n\r\n"}, []string{"GET", "HEAD", "GET"}, []int{200, 200, 400}},
		{"headers over the limit after a kept-alive request get 431", []string{get, over}, []string{"GET", "GET"}, []int{200, 431}},
	} {
		t.Run(c.name, func(t *testing.T) {
			answers := readAnswers(t, exchange(t, srv.Listener.Addr().String(), c.reqs...), c.methods...)
			for i, resp := range answers {
				if resp.StatusCode != c.status[i] {
					t.Errorf("answer %d: status %q, want %d", i+1, resp.Status, c.status[i])
				}
				for k, v := range want {
					if got := resp.Header[k]; len(got) != 1 || got[0] != v[0] {
						t.Errorf("answer %d (%d): %s %q, want %q", i+1, resp.StatusCode, k, got, v[0])
					}
				}
			}
			last := answers[len(answers)-1]
			body, _ := io.ReadAll(last.Body)
			if len(body) == 0 || last.Header.Get("Content-Type") != "text/plain; charset=utf-8" || !last.Close {
				t.Errorf("net/http's own answer lost its header or body: %q %v %q", last.Status, last.Header, body)
			}
		})
	}
}

func TestPlainHTTPToATLSPortGetsCORSHeaders(t *testing.T) {
	srv, _ := corsServer(t, true, true)
	resp := readAnswers(t, exchange(t, srv.Listener.Addr().String(), "GET /zarr.json HTTP/1.1\r\nHost: a\r\n\r\n"), "GET")[0]
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 400 || resp.Header.Get("Access-Control-Allow-Origin") != "*" ||
		!strings.Contains(string(body), "HTTP request to an HTTPS server") {
		t.Errorf("%q %v %q", resp.Status, resp.Header, body)
	}
	// And TLS itself still works through the wrapped connections.
	r, err := srv.Client().Get(srv.URL + "/err")
	if err != nil {
		t.Fatal(err)
	}
	defer r.Body.Close()
	if b, _ := io.ReadAll(r.Body); r.StatusCode != 200 || string(b) != serverError {
		t.Errorf("over TLS: %d %q", r.StatusCode, b)
	}
}

// date is the Date header, the one part of two answers to the same request that may differ.
var date = regexp.MustCompile(`\r\nDate: [^\r]*\r\n`)

func TestCORSListenerPassesHandlerAnswersByteForByte(t *testing.T) {
	plain, plainStore := corsServer(t, false, false)
	cors, corsStore := corsServer(t, true, false)
	// A value whose bytes, past the first 4 KiB of the answer that net/http buffers with its
	// head, start a write of their own with an error answer: found by where the head ends.
	const size = 64 << 10
	zarrMustSet(t, plainStore, "aligned", make([]byte, size))
	head := exchange(t, plain.Listener.Addr().String(), "HEAD /aligned HTTP/1.0\r\n\r\n")
	aligned := make([]byte, size)
	copy(aligned[4<<10-len(head):], serverError)
	for _, s := range []*hamt.ZarrStore{plainStore, corsStore} {
		zarrMustSet(t, s, "aligned", aligned)
	}
	reqs := []string{
		"GET /zarr.json HTTP/1.1\r\nHost: a\r\n\r\n",
		"HEAD /err HTTP/1.1\r\nHost: a\r\n\r\n",
		"GET /err HTTP/1.1\r\nHost: a\r\n\r\n",
		"GET /aligned HTTP/1.1\r\nHost: a\r\n\r\n",
		"GET /big HTTP/1.1\r\nHost: a\r\nRange: bytes=4000-\r\n\r\n",
		"GET /missing HTTP/1.1\r\nHost: a\r\n\r\nGET /big HTTP/1.1\r\nHost: a\r\n\r\n", // pipelined
		"OPTIONS /err HTTP/1.1\r\nHost: a\r\nOrigin: http://x.test\r\n\r\n",
		"DELETE /err HTTP/1.1\r\nHost: a\r\n\r\n",
		"GET /big HTTP/1.0\r\n\r\n", // closes
	}
	want := exchange(t, plain.Listener.Addr().String(), reqs...)
	got := exchange(t, cors.Listener.Addr().String(), reqs...)
	answers := readAnswers(t, got, "GET", "HEAD", "GET", "GET", "GET", "GET", "GET", "OPTIONS", "DELETE", "GET")
	if b, _ := io.ReadAll(answers[3].Body); !bytes.Equal(b, aligned) {
		t.Error("the value with an error answer inside came back changed")
	}
	want, got = date.ReplaceAll(want, []byte("\r\nDate: -\r\n")), date.ReplaceAll(got, []byte("\r\nDate: -\r\n"))
	if !bytes.Equal(got, want) {
		i := 0
		for i < min(len(got), len(want)) && got[i] == want[i] {
			i++
		}
		t.Fatalf("through CORSListener the answers differ from byte %d (of %d, want %d): %q, want %q",
			i, len(got), len(want), got[i:min(len(got), i+200)], want[i:min(len(want), i+200)])
	}
	if !bytes.Contains(got, []byte(serverError+"HTTP/1.1 200")) {
		t.Error("the value that reads as an error answer was not sent")
	}
}
