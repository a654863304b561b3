package kubotest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Endpoint names one of the two servers, or both.
type Endpoint uint8

const (
	// RPC is the Kubo RPC server (/api/v0/...).
	RPC Endpoint = 1 << iota
	// Gateway is the HTTP gateway (/ipfs/...).
	Gateway
)

// AnyEndpoint matches both servers.
const AnyEndpoint = RPC | Gateway

// String names the endpoint.
func (e Endpoint) String() string {
	switch e {
	case RPC:
		return "rpc"
	case Gateway:
		return "gateway"
	case AnyEndpoint, 0:
		return "any"
	}
	return fmt.Sprintf("Endpoint(%d)", uint8(e))
}

// Fault is a failure injected into matching requests, before authentication and before the request
// reaches Kubo's code. The delay comes first; then at most one of Drop, Redirect, Status, Truncate
// or Corrupt acts, in that order of precedence; with none of them the request is served normally
// after the delay. IgnoreRange applies before the others.
type Fault struct {
	// Endpoint is the server it applies to; zero means both.
	Endpoint Endpoint
	// Path is a URL path prefix ("/api/v0/add", "/ipfs/"); empty matches every path.
	Path string
	// Method, when not empty, limits the fault to one HTTP method.
	Method string
	// Times is how many matching requests it applies to: 0 or 1 for one, -1 for every one.
	Times int
	// Chance, when between 0 and 1 (exclusive), makes the fault apply to a matching request
	// only with this probability (latency spikes, flaky answers); a request it spares does not
	// use one of its Times and is not matched against later faults.
	Chance float64

	// Delay holds the request before anything else happens. It ends early, without an answer,
	// when the client cancels or times out.
	Delay time.Duration
	// Drop closes the connection without sending any response.
	Drop bool
	// Redirect answers 307 Temporary Redirect to this base URL followed by the request's path and
	// query (a gateway sending its client to another one).
	Redirect string
	// Status answers with this HTTP status and a body shaped as Kubo would send it: for the RPC,
	// 500 is a JSON {"Message","Code","Type"} error and the others are text/plain; for the gateway,
	// text/plain as boxo's gateway writes errors. 429 and 503 carry "Retry-After: 1". With Header
	// or Body set, the answer is exactly that status, those headers and that body instead (a
	// canned answer: a 206 with a wrong Content-Range, a 204, a 416 "bytes */N").
	Status int
	// Header and Body make a Status answer a canned one.
	Header http.Header
	Body   []byte
	// IgnoreRange serves the request as if it had no Range header, as a gateway or proxy that
	// answers a range request with 200 and the whole body does.
	IgnoreRange bool
	// Truncate sends the real status, headers (with the full Content-Length) and the first half of
	// the real body, then closes the connection.
	Truncate bool
	// Corrupt serves the real response with one byte of its body flipped (the middle one).
	Corrupt bool
}

// Inject adds a fault. Faults are matched in the order they were injected; the first one that
// matches a request and has uses left applies to it.
func (s *Server) Inject(f Fault) {
	s.faults.mu.Lock()
	defer s.faults.mu.Unlock()
	left := f.Times
	if left == 0 {
		left = 1
	}
	s.faults.list = append(s.faults.list, &activeFault{Fault: f, left: left})
}

// ClearFaults removes every injected fault.
func (s *Server) ClearFaults() {
	s.faults.mu.Lock()
	defer s.faults.mu.Unlock()
	s.faults.list = nil
}

type faultList struct {
	mu   sync.Mutex
	list []*activeFault
}

type activeFault struct {
	Fault
	left int // -1: forever
}

// take returns the fault that applies to a request, using one of its times.
func (l *faultList) take(e Endpoint, r *http.Request) (Fault, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for i, f := range l.list {
		if f.Endpoint != 0 && f.Endpoint&e == 0 ||
			!strings.HasPrefix(r.URL.Path, f.Path) ||
			f.Method != "" && f.Method != r.Method {
			continue
		}
		if f.Chance > 0 && f.Chance < 1 && rand.Float64() >= f.Chance {
			return Fault{}, false
		}
		if f.left > 0 {
			f.left--
			if f.left == 0 {
				l.list = append(l.list[:i:i], l.list[i+1:]...)
			}
		}
		return f.Fault, true
	}
	return Fault{}, false
}

func (s *Server) withFaults(e Endpoint, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f, ok := s.faults.take(e, r)
		if !ok {
			next.ServeHTTP(w, r)
			return
		}
		if f.Delay > 0 {
			// Take the body first: the server notices a client that goes away (and cancels
			// r.Context()) only once the request body has been read.
			body, err := io.ReadAll(r.Body)
			if err != nil {
				return
			}
			r.Body = io.NopCloser(bytes.NewReader(body))
			t := time.NewTimer(f.Delay)
			select {
			case <-t.C:
			case <-r.Context().Done():
				t.Stop()
				return // the client is gone: nobody to answer
			}
		}
		if f.IgnoreRange {
			r.Header.Del("Range")
		}
		switch {
		case f.Drop:
			dropConnection(w)
		case f.Redirect != "":
			http.Redirect(w, r, f.Redirect+r.URL.RequestURI(), http.StatusTemporaryRedirect)
		case f.Status != 0 && (f.Header != nil || f.Body != nil):
			for k, v := range f.Header {
				w.Header()[k] = v
			}
			w.WriteHeader(f.Status)
			_, _ = w.Write(f.Body)
		case f.Status != 0:
			writeFaultStatus(w, e, f.Status)
		case f.Truncate || f.Corrupt:
			rec := newRecorder()
			next.ServeHTTP(rec, r)
			body := rec.body.Bytes()
			for k, v := range rec.header {
				w.Header()[k] = v
			}
			if f.Truncate {
				w.Header().Set("Content-Length", strconv.Itoa(len(body)))
				w.WriteHeader(rec.status)
				_, _ = w.Write(body[:len(body)/2])
				if fl, ok := w.(http.Flusher); ok {
					fl.Flush()
				}
				panic(http.ErrAbortHandler) // net/http closes the connection mid-body
			}
			if len(body) > 0 {
				body[len(body)/2] ^= 0xff
			}
			w.WriteHeader(rec.status)
			_, _ = w.Write(body)
		default:
			next.ServeHTTP(w, r)
		}
	})
}

// dropConnection closes the client's connection without a response.
func dropConnection(w http.ResponseWriter) {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		panic(http.ErrAbortHandler) // HTTP/2: abort the stream instead
	}
	_ = conn.Close()
}

// writeFaultStatus answers status with the body Kubo (or a proxy in front of it) would send.
func writeFaultStatus(w http.ResponseWriter, e Endpoint, status int) {
	if status == http.StatusTooManyRequests || status == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", "1")
	}
	msg := fmt.Sprintf("kubotest: injected %d %s", status, http.StatusText(status))
	if e == RPC && status == http.StatusInternalServerError {
		writeCmdsError(w, msg)
		return
	}
	// Other RPC statuses come from go-ipfs-cmds' front door or a proxy, and boxo's gateway writes
	// errors for non-browser clients the same way: text/plain, the message and a newline.
	http.Error(w, msg, status)
}

// writeCmdsError writes a go-ipfs-cmds error: HTTP 500 with {"Message","Code":0,"Type":"error"}.
func writeCmdsError(w http.ResponseWriter, msg string) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusInternalServerError)
	_ = json.NewEncoder(w).Encode(cmdsError{Message: msg, Code: 0, Type: "error"})
}

type cmdsError struct {
	Message string
	Code    int
	Type    string
}

// recorder buffers a whole response so a fault can change it before it is sent.
type recorder struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func newRecorder() *recorder { return &recorder{header: http.Header{}} }

func (r *recorder) Header() http.Header { return r.header }

func (r *recorder) WriteHeader(status int) {
	if r.status == 0 {
		r.status = status
	}
}

func (r *recorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	return r.body.Write(b)
}

// Flush is a no-op: everything is sent at once when the handler returns.
func (r *recorder) Flush() {}

// Request is what the server recorded of one request it received.
type Request struct {
	Endpoint Endpoint
	Method   string
	Host     string // the Host header
	Path     string
	RawQuery string // the query as sent, in the client's order
	Query    url.Values
	Header   http.Header
	Body     []byte // only with WithRequestBodies
}

type accounting struct {
	mu          sync.Mutex
	total       map[Endpoint]int
	inFlight    int
	maxInFlight int
	log         []Request
}

// account records every request that reaches endpoint e, before faults and authentication.
func (s *Server) account(e Endpoint, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body []byte
		if s.cfg.bodies && r.Body != nil {
			var err error
			if body, err = io.ReadAll(r.Body); err != nil {
				return // the client went away mid-body
			}
			r.Body = io.NopCloser(bytes.NewReader(body))
		}
		a := &s.acct
		a.mu.Lock()
		if a.total == nil {
			a.total = map[Endpoint]int{}
		}
		a.total[e]++
		a.log = append(a.log, Request{
			Endpoint: e, Method: r.Method, Host: r.Host, Path: r.URL.Path, RawQuery: r.URL.RawQuery,
			Query: r.URL.Query(), Header: r.Header.Clone(), Body: body,
		})
		a.inFlight++
		a.maxInFlight = max(a.maxInFlight, a.inFlight)
		a.mu.Unlock()
		var once sync.Once
		done := func() {
			once.Do(func() {
				a.mu.Lock()
				a.inFlight--
				a.mu.Unlock()
			})
		}
		defer done()
		next.ServeHTTP(&answerWatcher{ResponseWriter: w, answered: done}, r)
	})
}

// answerWatcher calls answered when the response starts (its header is written), so a request
// counts as in flight from its arrival until the server begins to answer it: the span in which a
// client must still hold its concurrency slot. Counting until the handler returns instead would
// overlap a streamed answer with the client's next request.
type answerWatcher struct {
	http.ResponseWriter
	answered func()
}

func (w *answerWatcher) WriteHeader(status int) {
	w.answered()
	w.ResponseWriter.WriteHeader(status)
}

func (w *answerWatcher) Write(b []byte) (int, error) {
	w.answered()
	return w.ResponseWriter.Write(b)
}

// Flush forwards to the wrapped writer, for streamed answers (add's NDJSON).
func (w *answerWatcher) Flush() {
	w.answered()
	_ = http.NewResponseController(w.ResponseWriter).Flush()
}

// Unwrap lets http.ResponseController reach the connection (Hijack for dropped connections).
func (w *answerWatcher) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// Total is how many requests endpoint e has received (AnyEndpoint: both together). Every request
// counts, including those a fault answered or authentication refused.
func (s *Server) Total(e Endpoint) int {
	s.acct.mu.Lock()
	defer s.acct.mu.Unlock()
	n := 0
	for k, v := range s.acct.total {
		if k&e != 0 {
			n += v
		}
	}
	return n
}

// Requests is how many requests, on either server, had a URL path starting with prefix:
// Requests("/api/v0/add") counts adds, Requests("/ipfs/") gateway reads.
func (s *Server) Requests(prefix string) int {
	s.acct.mu.Lock()
	defer s.acct.mu.Unlock()
	n := 0
	for _, r := range s.acct.log {
		if strings.HasPrefix(r.Path, prefix) {
			n++
		}
	}
	return n
}

// Log returns every request received so far, oldest first.
func (s *Server) Log() []Request {
	s.acct.mu.Lock()
	defer s.acct.mu.Unlock()
	return append([]Request(nil), s.acct.log...)
}

// LastRequest returns the most recent request that endpoint e (or either, with AnyEndpoint)
// received; ok is false when there was none.
func (s *Server) LastRequest(e Endpoint) (r Request, ok bool) {
	s.acct.mu.Lock()
	defer s.acct.mu.Unlock()
	for i := len(s.acct.log) - 1; i >= 0; i-- {
		if s.acct.log[i].Endpoint&e != 0 {
			return s.acct.log[i], true
		}
	}
	return Request{}, false
}

// InFlight is how many requests both servers together have received and not yet begun to answer.
func (s *Server) InFlight() int {
	s.acct.mu.Lock()
	defer s.acct.mu.Unlock()
	return s.acct.inFlight
}

// MaxInFlight is the largest number of requests both servers together had received and not yet
// begun to answer at one time (a client's concurrency limit is shared by reads and writes, so
// they are counted together).
func (s *Server) MaxInFlight() int {
	s.acct.mu.Lock()
	defer s.acct.mu.Unlock()
	return s.acct.maxInFlight
}

// ResetCounters forgets the request log, the totals and the in-flight maximum (requests in
// progress stay counted as in flight).
func (s *Server) ResetCounters() {
	s.acct.mu.Lock()
	defer s.acct.mu.Unlock()
	s.acct.total = nil
	s.acct.log = nil
	s.acct.maxInFlight = s.acct.inFlight
}
