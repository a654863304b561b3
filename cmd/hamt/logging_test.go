package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// serveLogged answers raw, one HTTP/1.1 request written as is on a connection, with handler
// behind logRequests, and returns what was logged.
func serveLogged(t *testing.T, newHandler func(*bytes.Buffer) slog.Handler, handler http.Handler, raw string) string {
	t.Helper()
	var logged bytes.Buffer
	srv := httptest.NewServer(logRequests(slog.New(newHandler(&logged)), handler))
	c, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Write([]byte(raw)); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	c.Close()
	srv.Close() // waits for the handler, and so for its record
	return logged.String()
}

func textLog(b *bytes.Buffer) slog.Handler { return slog.NewTextHandler(b, nil) }
func jsonLog(b *bytes.Buffer) slog.Handler { return slog.NewJSONHandler(b, nil) }

// fiveBytes answers 206 with five bytes.
var fiveBytes = http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
	w.WriteHeader(http.StatusPartialContent)
	fmt.Fprint(w, "01234")
})

// TestRequestLogJSONHasEveryField: a request's JSON record, parsed, gives the client, method,
// path, Range asked for, status, bytes sent and duration.
func TestRequestLogJSONHasEveryField(t *testing.T) {
	out := serveLogged(t, jsonLog, fiveBytes, "GET /a/c/0 HTTP/1.1\r\nHost: x\r\nRange: bytes=2-6\r\nConnection: close\r\n\r\n")
	var rec struct {
		Level, Msg, Client, Method, Path, Range string
		Status                                  int
		Bytes                                   int64
		Duration                                time.Duration
		Aborted                                 *bool
	}
	if strings.Count(out, "\n") != 1 {
		t.Fatalf("want one record, got %q", out)
	}
	if err := json.Unmarshal([]byte(out), &rec); err != nil {
		t.Fatalf("%v: %q", err, out)
	}
	host, _, err := net.SplitHostPort(rec.Client)
	if rec.Level != "INFO" || rec.Msg != "request" || err != nil || host != "127.0.0.1" || rec.Method != "GET" || rec.Path != "/a/c/0" ||
		rec.Range != "bytes=2-6" || rec.Status != 206 || rec.Bytes != 5 || rec.Duration <= 0 || rec.Aborted != nil {
		t.Errorf("record %+v from %q", rec, out)
	}
}

// TestRequestLogCannotBeForgedByAClient: a path with newlines, a carriage return and terminal
// escapes (percent-encoded, as a client may send them) stays inside one quoted value of one text
// record: no line a log reader would take for another record, no raw control character.
func TestRequestLogCannotBeForgedByAClient(t *testing.T) {
	path := "/x%0Atime=2026-01-01T00:00:00Z%20level=ERROR%20msg=forged%0D%1B[31mred%00%E2%80%A8"
	out := serveLogged(t, textLog, http.NotFoundHandler(), "GET "+path+" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
	if strings.Count(out, "\n") != 1 || !strings.HasSuffix(out, "\n") {
		t.Fatalf("want exactly one line, got %q", out)
	}
	for _, r := range strings.TrimSuffix(out, "\n") {
		if r < 0x20 || r == 0x7f || r == '\u2028' {
			t.Fatalf("control character %U in the log line %q", r, out)
		}
	}
	if !strings.Contains(out, `path="/x\ntime=2026-01-01T00:00:00Z level=ERROR msg=forged\r\x1b[31mred\x00\u2028"`) || !strings.Contains(out, "status=404") {
		t.Errorf("the path is not one quoted value: %q", out)
	}
	if strings.Count(out, "level=") != 2 { // the record's own, and the quoted one inside path
		t.Errorf("log line %q", out)
	}
}

// TestRequestLogMarksAbortedAnswers: an answer cut off after its status (the handler panics with
// http.ErrAbortHandler) is logged at warn level with aborted=true and the bytes that were sent.
func TestRequestLogMarksAbortedAnswers(t *testing.T) {
	var logged bytes.Buffer
	srv := httptest.NewServer(logRequests(slog.New(slog.NewTextHandler(&logged, nil)), http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Length", "10")
		fmt.Fprint(w, "012")
		w.(http.Flusher).Flush()
		panic(http.ErrAbortHandler)
	})))
	resp, err := http.Get(srv.URL + "/v")
	if err == nil {
		_, err = bufio.NewReader(resp.Body).ReadString(0)
		resp.Body.Close()
	}
	srv.Close()
	out := logged.String()
	if err == nil || !strings.Contains(out, "level=WARN msg=request") || !strings.Contains(out, "status=200 bytes=3") || !strings.Contains(out, "aborted=true") {
		t.Errorf("client error %v; logged %q", err, out)
	}
}

// TestLogFlags: --log-format json makes standard error JSON records only (with --log-level debug,
// the command and the store), standard output keeps the root as its last line; a failure is still
// one "hamt: " line; values the flags do not know are usage errors.
func TestLogFlags(t *testing.T) {
	store := filepath.Join(t.TempDir(), "s.bolt")
	data := filepath.Join("..", "..", "testdata", "zarr")
	plain := inProcess(t, nil, "--store", store, "import", data)
	r := inProcess(t, nil, "--store", store, "--log-level", "debug", "--log-format", "json", "stats", plain.lastLine())
	if r.code != 0 || !strings.Contains(r.stdout, "keys") {
		t.Fatalf("stats with JSON logs: exit %d, %q, %q", r.code, r.stdout, r.stderr)
	}
	msgs := map[string]bool{}
	for _, line := range strings.Split(strings.TrimSuffix(r.stderr, "\n"), "\n") {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("standard error line %q is not a JSON record: %v", line, err)
		}
		msgs[fmt.Sprint(rec["msg"])] = rec["level"] == "DEBUG"
	}
	if !msgs["command"] || !msgs["store"] {
		t.Errorf("debug records %v, want command and store", msgs)
	}
	quiet := inProcess(t, nil, "--store", store, "stats", plain.lastLine())
	if quiet.code != 0 || quiet.stderr != "" {
		t.Errorf("at the default level a command logs nothing: %q", quiet.stderr)
	}
	fail := inProcess(t, nil, "--store", store, "--log-format", "json", "--log-level", "warn", "get", plain.lastLine(), "no/such/key")
	if fail.code == 0 || strings.Count(fail.stderr, "\n") != 1 || !strings.HasPrefix(fail.stderr, "hamt: ") {
		t.Errorf("a failure with JSON logs: exit %d, stderr %q; want one hamt: line", fail.code, fail.stderr)
	}
	for _, bad := range [][]string{{"--log-level", "loud"}, {"--log-level", "info+2"}, {"--log-format", "xml"}} {
		r := inProcess(t, nil, append(append([]string{"--store", store}, bad...), "stats", plain.lastLine())...)
		if r.code != exitUsage || !strings.Contains(r.stderr, bad[0]) {
			t.Errorf("%v: exit %d, %q; want a usage error", bad, r.code, r.stderr)
		}
	}
}
