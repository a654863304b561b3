package hamt

import (
	"bytes"
	"net"
	"net/http"
	"sync/atomic"
)

// CORSListener returns ln wrapped so that the answers srv writes by itself, before any handler
// runs, carry the CORS headers of ZarrStore.Handler and NewZarrHandler
// (Access-Control-Allow-Origin: * and the same Access-Control-Expose-Headers). net/http's HTTP/1
// server answers on its own a malformed request (400), headers over srv.MaxHeaderBytes (431 — a
// browser sends those with large cookies), an unknown Transfer-Encoding (501), an unsupported
// HTTP version (505) and, under ServeTLS, plain HTTP sent to the TLS port (400); without CORS
// headers a page's script sees an opaque network error instead of the status.
//
// Serve with srv.Serve(CORSListener(srv, ln)) or srv.ServeTLS(CORSListener(srv, ln), ...). It
// sets srv.ConnState, calling the hook that was there, so call it before serving. Only such an
// answer, written where a response starts, is changed, by adding the two header lines after
// its status line; every other byte, a handler's answers included, passes through unchanged.
// Under ServeTLS the other error answers are encrypted, and stay without CORS headers.
func CORSListener(srv *http.Server, ln net.Listener) net.Listener {
	prev := srv.ConnState
	srv.ConnState = func(nc net.Conn, s http.ConnState) {
		if c, ok := nc.(*corsConn); ok {
			switch s {
			case http.StateIdle: // the last answer is written whole: the next write starts one
				c.atStart.Store(true)
			case http.StateHijacked: // the handler owns the bytes
				c.atStart.Store(false)
			}
		}
		if prev != nil {
			prev(nc, s)
		}
	}
	return corsListener{ln}
}

type corsListener struct{ net.Listener }

func (l corsListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	cc := &corsConn{Conn: c}
	cc.atStart.Store(true)
	return cc, nil
}

// corsConn adds the CORS header lines to an error answer net/http writes by itself. Such an
// answer is one Write, at the start of a response: on a new connection or after the last answer
// was written whole (ConnState StateIdle), before the next request's answer. atStart marks that
// place and the first Write clears it, so the bytes of a response, which follow its start, are
// never looked at.
type corsConn struct {
	net.Conn
	atStart atomic.Bool
}

// corsErrorFields are the header lines an error answer of net/http's server gets.
const corsErrorFields = corsAllowOrigin + ": " + corsAnyOrigin + "\r\n" +
	corsExposeHeaders + ": " + corsExposed + "\r\n"

func (c *corsConn) Write(p []byte) (int, error) {
	if len(p) == 0 || !c.atStart.Load() {
		return c.Conn.Write(p)
	}
	c.atStart.Store(false)
	i := serverErrorFields(p)
	if i < 0 {
		return c.Conn.Write(p)
	}
	b := make([]byte, 0, len(p)+len(corsErrorFields))
	b = append(append(append(b, p[:i]...), corsErrorFields...), p[i:]...)
	n, err := c.Conn.Write(b)
	switch { // the count of p's bytes written
	case n > i+len(corsErrorFields):
		n -= len(corsErrorFields)
	case n > i:
		n = i
	}
	return n, err
}

// CloseWrite lets net/http half-close the connection after a 431, as it does a bare TCP one, so
// the client reads the answer before the connection closes.
func (c *corsConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// The header blocks of net/http's error answers, with the empty line that ends them: its
// server.go writes "HTTP/1.1 " + status + "\r\n" + netHTTPErrorHeader + text, and to plain HTTP
// on a TLS port "HTTP/1.0 400 Bad Request\r\n" + netHTTPTLSHeader + text.
const (
	netHTTPErrorHeader = "Content-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n"
	netHTTPTLSHeader   = "\r\n"
)

// maxStatusLine bounds the search for the end of a status line: net/http's are under 100 bytes.
const maxStatusLine = 256

// serverErrorFields returns where the header lines of p start when p is an error answer as
// net/http's server writes it — an HTTP/1.0 or 1.1 status line with a 4xx or 5xx status, then
// exactly one of the header blocks above — or -1.
func serverErrorFields(p []byte) int {
	if len(p) < len("HTTP/1.1 400 \r\n\r\n") || string(p[:len("HTTP/1.")]) != "HTTP/1." ||
		(p[7] != '0' && p[7] != '1') || p[8] != ' ' || (p[9] != '4' && p[9] != '5') ||
		!isDigit(p[10]) || !isDigit(p[11]) || p[12] != ' ' {
		return -1
	}
	end := bytes.IndexByte(p[:min(len(p), maxStatusLine)], '\n')
	if end < 0 || p[end-1] != '\r' || bytes.IndexByte(p[:end-1], '\r') >= 0 {
		return -1
	}
	i := end + 1
	if hasPrefix(p[i:], netHTTPErrorHeader) || hasPrefix(p[i:], netHTTPTLSHeader) {
		return i
	}
	return -1
}

func hasPrefix(p []byte, s string) bool { return len(p) >= len(s) && string(p[:len(s)]) == s }

func isDigit(b byte) bool { return '0' <= b && b <= '9' }
