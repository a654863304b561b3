package main

// Tests that the answers net/http gives by itself in `hamt serve`, before the handler runs, let a
// page of any origin read them: a browser sends headers over the 1 MiB limit when its cookies
// grow, and its page should see the 431, not an opaque network error. The clients are raw TCP
// connections on 127.0.0.1 to the built binary.

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// rawExchange sends raw on a new connection to addr, reads until the server closes it and returns
// the last answer.
func rawExchange(t *testing.T, addr, raw string) *http.Response {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	got := make(chan []byte, 1)
	go func() { // reads while the request goes out: net/http answers 431 before reading it all
		b, _ := io.ReadAll(c)
		got <- b
	}()
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatal(err)
	}
	b := <-got
	br := bufio.NewReader(bytes.NewReader(b))
	for {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("%q…: %v", b[:min(len(b), 300)], err)
		}
		if _, err := io.Copy(io.Discard, resp.Body); err != nil {
			t.Fatal(err)
		}
		if br.Buffered() == 0 {
			return resp
		}
	}
}

func TestServeErrorAnswersOfNetHTTPCarryCORSHeaders(t *testing.T) {
	store := filepath.Join(t.TempDir(), "store.bolt")
	root := ok(t, store, nil, "import", filepath.Join("..", "..", "testdata", "zarr")).lastLine()
	s := startServe(t, store, root)
	get := rawExchange(t, s.addr, "GET /zarr.json HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
	expose := get.Header.Get("Access-Control-Expose-Headers")
	if get.StatusCode != 200 || get.Header.Get("Access-Control-Allow-Origin") != "*" || expose == "" {
		t.Fatalf("GET: %q %v", get.Status, get.Header)
	}
	// Headers just over net/http's default limit, 1 MiB (and 4 KiB it reads beyond).
	over := "GET /zarr.json HTTP/1.1\r\nHost: a\r\nCookie: " + strings.Repeat("c", 1<<20+16<<10) + "\r\n\r\n"
	for _, c := range []struct {
		name, raw string
		status    int
	}{
		{"headers over 1 MiB", over, 431},
		{"a garbage request line", "GARBAGE\r\n\r\n", 400},
		{"kept alive, then a garbage request line", "GET /zarr.json HTTP/1.1\r\nHost: a\r\n\r\nGARBAGE\r\n\r\n", 400},
	} {
		resp := rawExchange(t, s.addr, c.raw)
		if resp.StatusCode != c.status || resp.Header.Get("Access-Control-Allow-Origin") != "*" ||
			resp.Header.Get("Access-Control-Expose-Headers") != expose {
			t.Errorf("%s: %q %v, want %d with the CORS headers of a GET", c.name, resp.Status, resp.Header, c.status)
		}
	}
}
