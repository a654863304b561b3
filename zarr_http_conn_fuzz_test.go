package hamt

// A fuzz target for the one reader of bytes in CORSListener: the recogniser of net/http's own
// error answers among what a server writes. Run it with:
//
//	go test -run XXX -fuzz '^FuzzCORSConnWrites$' -fuzztime 60s .

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"net/http"
	"testing"
)

// FuzzCORSConnWrites writes stream through a CORSListener connection in the chunks plan gives
// (each two bytes, big-endian: the low 15 bits are the chunk's length less one; the high bit says
// the server went idle before it, so a response starts there). What comes out is stream with at
// most the CORS header lines added, each time right after the status line of a chunk that starts
// a response — and only when that chunk is a whole error answer with no CORS header of its own,
// as net/http's are. So a handler's answer, which always has one, passes unchanged however it is
// cut, whatever its body holds.
func FuzzCORSConnWrites(f *testing.F) {
	const handlerHead = "HTTP/1.1 200 OK\r\nAccept-Ranges: bytes\r\n" + corsErrorFields + "Content-Length: 122\r\nContent-Type: application/octet-stream\r\n\r\n"
	const netHTTP400 = "HTTP/1.1 400 Bad Request\r\n" + netHTTPErrorHeader + "400 Bad Request"
	const netHTTP431 = "HTTP/1.1 431 Request Header Fields Too Large\r\n" + netHTTPErrorHeader + "431 Request Header Fields Too Large"
	const tls400 = "HTTP/1.0 400 Bad Request\r\n\r\nClient sent an HTTP request to an HTTPS server.\n"
	const idle = 0x8000
	plan := func(chunks ...int) string {
		var b []byte
		for _, c := range chunks {
			n := c&^idle - 1
			b = append(b, byte(n>>8)|byte(c&idle>>8), byte(n))
		}
		return string(b)
	}
	for _, s := range []struct{ stream, plan string }{
		{netHTTP400, ""},
		{netHTTP431, ""},
		{tls400, ""},
		{"HTTP/1.1 505 HTTP Version Not Supported: unsupported protocol version\r\n" + netHTTPErrorHeader + "505", ""},
		{handlerHead + netHTTP400 + netHTTP431, ""},
		{handlerHead + netHTTP400 + netHTTP431, plan(len(handlerHead), len(netHTTP400))},
		{handlerHead + netHTTP400 + netHTTP431, plan(len(handlerHead), idle|len(netHTTP400), idle|len(netHTTP431))},
		{handlerHead + tls400, plan(len(handlerHead), idle|len(tls400))},
		{netHTTP400 + netHTTP431, plan(3, idle|len(netHTTP400)-3)},
		{"HTTP/1.1 400 Bad Request\r\n" + corsErrorFields + netHTTPErrorHeader, ""},
		{"HTTP/1.1 200 OK\r\n" + netHTTPErrorHeader, ""},
		{"HTTP/1.1 400 Bad\rRequest\r\n\r\n", ""},
		{"HTTP/1.1 400 Bad Request\n\r\n", ""},
	} {
		f.Add([]byte(s.stream), []byte(s.plan))
	}
	f.Fuzz(func(t *testing.T, stream, plan []byte) {
		srv := &http.Server{}
		CORSListener(srv, nil)
		local, remote := net.Pipe()
		c := &corsConn{Conn: local}
		c.atStart.Store(true)
		out := make(chan []byte, 1)
		go func() {
			b, _ := io.ReadAll(remote)
			out <- b
		}()
		// The chunks, grouped by the response each starts at.
		var segments [][][]byte
		for rest, i := stream, 0; len(rest) > 0; i += 2 {
			n, idle := len(rest), false
			if i+1 < len(plan) {
				n, idle = min(n, int(plan[i]&0x7f)<<8|int(plan[i+1])+1), plan[i]&0x80 != 0
			}
			if idle {
				srv.ConnState(c, http.StateIdle)
			}
			if idle || len(segments) == 0 {
				segments = append(segments, nil)
			}
			segments[len(segments)-1] = append(segments[len(segments)-1], rest[:n])
			if m, err := c.Write(rest[:n]); m != n || err != nil {
				t.Fatalf("Write of %d bytes: %d, %v", n, m, err)
			}
			rest = rest[n:]
		}
		local.Close()
		got := <-out

		for _, seg := range segments {
			first, whole := seg[0], bytes.Join(seg, nil)
			i := bytes.Index(first, []byte("\r\n")) + 2
			if bytes.HasPrefix(got, whole) {
				// net/http's own error answers must get the header lines.
				if isBareErrorAnswer(first) && i <= maxStatusLine && first[len("HTTP/1.1 400")] == ' ' && !bytes.ContainsRune(first[:i-2], '\r') &&
					(bytes.HasPrefix(first[i:], []byte(netHTTPErrorHeader)) || bytes.HasPrefix(first[i:], []byte("\r\n"))) {
					t.Fatalf("no CORS header lines added to %q", first)
				}
				got = got[len(whole):]
				continue
			}
			with := append(append(append([]byte(nil), first[:i]...), corsErrorFields...), whole[i:]...)
			if i < 2 || !bytes.HasPrefix(got, with) {
				t.Fatalf("the answer starting %q came out as %q", whole[:min(len(whole), 200)], got[:min(len(got), 200)])
			}
			got = got[len(with):]
			if !isBareErrorAnswer(first) {
				t.Fatalf("CORS header lines added to %q", first)
			}
			resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(with)), nil)
			if err != nil || len(resp.Header.Values(corsAllowOrigin)) != 1 || resp.Header.Get(corsExposeHeaders) != corsExposed {
				t.Fatalf("%q with CORS header lines: %v, %v", first, resp, err)
			}
		}
		if len(got) > 0 {
			t.Fatalf("%d bytes more than were written: %q", len(got), got[:min(len(got), 200)])
		}
	})
}

// isBareErrorAnswer reports whether p is a whole error answer as net/http reads one: an HTTP/1.x
// status line with a 4xx or 5xx status, CRLF line ends, no CORS header, "Connection: close".
// It is the judge of FuzzCORSConnWrites, written apart from serverErrorFields.
func isBareErrorAnswer(p []byte) bool {
	head, _, found := bytes.Cut(p, []byte("\r\n\r\n"))
	if !found || bytes.Contains(head, []byte("\n\n")) || bytes.Count(head, []byte("\n")) != bytes.Count(head, []byte("\r\n")) {
		return false
	}
	resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(p)), nil)
	return err == nil && resp.ProtoMajor == 1 && resp.StatusCode >= 400 && resp.StatusCode < 600 &&
		resp.Header.Get(corsAllowOrigin) == "" && (resp.Close || resp.ProtoMinor == 0)
}
