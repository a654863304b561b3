package main

// Tests of serve --metrics-listen: the Prometheus metrics of a running serve, scraped and parsed
// as Prometheus does, count what the test did; the listener refuses bad addresses, drops clients
// that stall, and is gone when serve stops.

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/hamt-go/hamt/internal/kubotest"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// servingInProcess is a serve run in this process by run(), stopped by cancelling its context.
type servingInProcess struct {
	addr, metrics string // host:port of serve and the URL of its metrics
	lines         chan string
	cancel        context.CancelFunc
	code          chan int
}

// serveInProcess runs `hamt --store STORE serve ROOT --listen 127.0.0.1:0 FLAGS` in this process
// and waits for it to print its addresses. Cleanup stops it.
func serveInProcess(t *testing.T, store, root string, flags ...string) *servingInProcess {
	t.Helper()
	return serveInProcessWith(t, []string{"--store", store}, root, flags...)
}

// serveInProcessWith is serveInProcess on the store the global flags name.
func serveInProcessWith(t *testing.T, global []string, root string, flags ...string) *servingInProcess {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	s := &servingInProcess{lines: make(chan string, 1000), cancel: cancel, code: make(chan int, 1)}
	go func() {
		args := append(append(global[:len(global):len(global)], "serve", root, "--listen", "127.0.0.1:0"), flags...)
		s.code <- run(ctx, args, nil, io.Discard, pw)
		pw.Close()
	}()
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			s.lines <- sc.Text()
		}
		close(s.lines)
	}()
	t.Cleanup(func() { s.stop(t) })
	serving := regexp.MustCompile(`^serving \S+ on http://(127\.0\.0\.1:\d+)/$`)
	metrics := regexp.MustCompile(`^metrics on (http://127\.0\.0\.1:\d+/metrics)$`)
	for s.metrics == "" {
		select {
		case l, open := <-s.lines:
			if !open {
				t.Fatalf("serve ended before it printed its addresses (exit %d)", <-s.code)
			}
			if m := serving.FindStringSubmatch(l); m != nil {
				s.addr = m[1]
			} else if m := metrics.FindStringSubmatch(l); m != nil && s.addr != "" {
				s.metrics = m[1]
			} else {
				t.Fatalf("serve printed %q; want the serving line, then the metrics line", l)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("serve did not start")
		}
	}
	return s
}

// stop cancels the run and returns its exit status; later calls return -1.
func (s *servingInProcess) stop(t *testing.T) int {
	t.Helper()
	if s.cancel == nil {
		return -1
	}
	s.cancel()
	s.cancel = nil
	select {
	case code := <-s.code:
		for range s.lines { // its last words: "stopped"
		}
		return code
	case <-time.After(15 * time.Second):
		t.Fatal("serve did not stop")
		return -1
	}
}

// noKeepAlive is a client that leaves no connection open behind it.
var noKeepAlive = &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 10 * time.Second}

// httpGet gets url (with a Range header when rng is not empty) and returns the status and body.
func httpGet(t *testing.T, url, rng string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if rng != "" {
		req.Header.Set("Range", rng)
	}
	resp, err := noKeepAlive.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, b
}

// scrape gets url and parses it as Prometheus's text format.
func scrape(t *testing.T, url string) scraped {
	t.Helper()
	status, body := httpGet(t, url, "")
	if status != http.StatusOK {
		t.Fatalf("GET %s: %d %s", url, status, body)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(string(body)))
	if err != nil {
		t.Fatalf("scrape of %s does not parse: %v\n%s", url, err, body)
	}
	return fams
}

// scraped is a scrape's metric families by name.
type scraped map[string]*dto.MetricFamily

// sum is the total, over the series of family name whose labels include want, of a counter's
// value, a gauge's, or a histogram's count (the Prometheus _count) and sum.
func (s scraped) sum(name string, want map[string]string) (value, hsum float64) {
	f := s[name]
	if f == nil {
		return 0, 0
	}
series:
	for _, m := range f.GetMetric() {
		labels := map[string]string{}
		for _, l := range m.GetLabel() {
			labels[l.GetName()] = l.GetValue()
		}
		for k, v := range want {
			if labels[k] != v {
				continue series
			}
		}
		switch {
		case m.Counter != nil:
			value += m.GetCounter().GetValue()
		case m.Gauge != nil:
			value += m.GetGauge().GetValue()
		case m.Histogram != nil:
			value += float64(m.GetHistogram().GetSampleCount())
			hsum += m.GetHistogram().GetSampleSum()
		}
	}
	return value, hsum
}

// TestServeMetrics: serve --metrics-listen serves, at /metrics, the requests answered (count,
// duration and body size by method and status), the store's loads (by store, status and range),
// the nodes the map loaded and the hits and misses of its node cache, with the values the
// requests the test makes imply. A tree of buckets of one entry makes every key one node or more
// below the root: the first GET of a key loads those nodes (misses), the second finds them (hits).
func TestServeMetrics(t *testing.T) {
	store := filepath.Join(t.TempDir(), "store.bolt")
	imp := inProcess(t, nil, "--store", store, "import", "--bucket-size", "1", filepath.Join("..", "..", "testdata", "zarr"))
	if imp.code != 0 {
		t.Fatalf("import: %d %s", imp.code, imp.stderr)
	}
	root := imp.lastLine()
	files := zarrFiles(t)
	s := serveInProcess(t, store, root, "--metrics-listen", "127.0.0.1:0")
	base := "http://" + s.addr + "/"

	before := scrape(t, s.metrics)
	if v, _ := before.sum("target_info", map[string]string{"service_name": "hamt"}); v != 1 {
		t.Errorf("target_info{service_name=hamt} = %v, want 1", v)
	}
	if v, _ := before.sum("go_goroutines", nil); v < 1 {
		t.Errorf("go_goroutines = %v: the Go collector is missing", v)
	}
	const key = "surface/temp/zarr.json"
	for range 2 {
		if status, b := httpGet(t, base+key, ""); status != 200 || string(b) != string(files[key]) {
			t.Fatalf("GET %s: %d, %d bytes", key, status, len(b))
		}
	}
	if status, b := httpGet(t, base+"counts/c/0", "bytes=0-9"); status != 206 || len(b) != 10 {
		t.Fatalf("ranged GET: %d, %d bytes", status, len(b))
	}
	if status, _ := httpGet(t, base+"no/such/key", ""); status != 404 {
		t.Fatalf("GET of a missing key: %d", status)
	}
	after := scrape(t, s.metrics)
	delta := func(name string, labels map[string]string) (float64, float64) {
		v0, s0 := before.sum(name, labels)
		v1, s1 := after.sum(name, labels)
		return v1 - v0, s1 - s0
	}

	// The requests, by status, with their bodies' sizes.
	for _, c := range []struct {
		status      string
		count, size float64
	}{{"200", 2, float64(2 * len(files[key]))}, {"206", 1, 10}, {"404", 1, -1}} {
		labels := map[string]string{"http_request_method": "GET", "http_response_status_code": c.status}
		n, secs := delta("http_server_request_duration_seconds", labels)
		if n != c.count || secs <= 0 {
			t.Errorf("http_server_request_duration_seconds{status=%s}: count %v, sum %v; want count %v and a positive sum", c.status, n, secs, c.count)
		}
		n, size := delta("http_server_response_body_size_bytes", labels)
		if n != c.count || c.size >= 0 && size != c.size {
			t.Errorf("http_server_response_body_size_bytes{status=%s}: count %v, sum %v; want %v, %v", c.status, n, size, c.count, c.size)
		}
	}
	// The node cache: the first GET missed every node below the root on the key's path, the
	// second found each of them.
	bolt := map[string]string{"hamt_cas_store": "bolt", "hamt_cas_status": "ok"}
	misses, _ := delta("hamt_cache_misses_total", map[string]string{"hamt_cache_kind": "node"})
	hits, _ := delta("hamt_cache_hits_total", map[string]string{"hamt_cache_kind": "node"})
	if misses < 1 || hits != misses {
		t.Errorf("node cache: %v misses, %v hits; want as many hits as misses, at least one", misses, hits)
	}
	// Each miss is a node load from the store; each GET loads its value from the store (bbolt
	// has no cache): whole for the two GETs of zarr.json, a range for counts/c/0.
	if n, _ := delta("hamt_node_load_duration_seconds", map[string]string{"hamt_cas_status": "ok"}); n != misses {
		t.Errorf("hamt_node_load_duration_seconds count %v, want %v (one per miss)", n, misses)
	}
	if n, secs := delta("hamt_cas_load_duration_seconds", bolt); n != misses+3 || secs <= 0 {
		t.Errorf("hamt_cas_load_duration_seconds: count %v, sum %v; want %v and a positive sum", n, secs, misses+3)
	}
	whole := map[string]string{"hamt_cas_store": "bolt", "hamt_cas_status": "ok", "hamt_cas_has_range": "false"}
	if n, _ := delta("hamt_cas_load_requests_total", whole); n != misses+2 {
		t.Errorf("hamt_cas_load_requests_total{has_range=false} grew by %v, want %v (nodes and two values)", n, misses+2)
	}
	ranged := map[string]string{"hamt_cas_store": "bolt", "hamt_cas_status": "ok", "hamt_cas_has_range": "true"}
	if n, _ := delta("hamt_cas_load_requests_total", ranged); n != 1 {
		t.Errorf("hamt_cas_load_requests_total{has_range=true} grew by %v, want 1", n)
	}
	if n, _ := delta("hamt_cas_load_response_bytes_total", ranged); n != 10 {
		t.Errorf("hamt_cas_load_response_bytes_total{has_range=true} grew by %v, want 10", n)
	}
	if n, _ := delta("hamt_cas_load_requests_total", map[string]string{"hamt_cas_status": "not_found"}); n != 0 {
		t.Errorf("%v loads not found: a missing key is found missing in the map, not the store", n)
	}

	// Stopped, serve leaves no metrics listener and no goroutine of it behind.
	if code := s.stop(t); code != 0 {
		t.Fatalf("serve exited %d", code)
	}
	if c, err := net.DialTimeout("tcp", strings.TrimSuffix(strings.TrimPrefix(s.metrics, "http://"), "/metrics"), time.Second); err == nil {
		c.Close()
		t.Error("the metrics listener still takes connections after serve stopped")
	}
	buf := make([]byte, 1<<20)
	if stacks := string(buf[:runtime.Stack(buf, true)]); strings.Contains(stacks, "metricsServer") {
		t.Errorf("a goroutine of the metrics server is left:\n%s", stacks)
	}
}

// TestServeMetricsDropsStalledClients: a client that connects to the metrics listener and sends
// nothing is dropped after serve's --read-timeout, as on serve's own listener.
func TestServeMetricsDropsStalledClients(t *testing.T) {
	store := filepath.Join(t.TempDir(), "store.bolt")
	root := inProcess(t, nil, "--store", store, "import", filepath.Join("..", "..", "testdata", "zarr")).lastLine()
	s := serveInProcess(t, store, root, "--metrics-listen", "127.0.0.1:0", "--read-timeout", "200ms")
	c, err := net.Dial("tcp", strings.TrimSuffix(strings.TrimPrefix(s.metrics, "http://"), "/metrics"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := c.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
		t.Errorf("a client that sends nothing: read %d bytes, %v; want the server to close the connection", n, err)
	}
}

// TestServeMetricsAddressErrors: --metrics-listen that is no address, or the address of --listen,
// is a usage error (exit 2) before the store is opened; one that cannot be listened on fails
// (exit 1), and serve does not start.
func TestServeMetricsAddressErrors(t *testing.T) {
	store := filepath.Join(t.TempDir(), "store.bolt")
	root := inProcess(t, nil, "--store", store, "import", filepath.Join("..", "..", "testdata", "zarr")).lastLine()
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"--metrics-listen", "nonsense"}, 2, "--metrics-listen \"nonsense\": want host:port"},
		{[]string{"--metrics-listen", "127.0.0.1:99999"}, 2, "want host:port"},
		{[]string{"--metrics-listen", "127.0.0.1:"}, 2, "no port"},
		{[]string{"--listen", "127.0.0.1:8123", "--metrics-listen", "127.0.0.1:8123"}, 2, "is the address serve listens on"},
		{[]string{"--listen", "127.0.0.1:0", "--metrics-listen", busy.Addr().String()}, 1, "metrics: listen tcp"},
	} {
		r := inProcess(t, nil, append([]string{"--store", store, "serve", root}, c.args...)...)
		if r.code != c.code || !strings.Contains(r.stderr, c.want) || strings.Contains(r.stderr, "serving") {
			t.Errorf("serve %v: exit %d, stderr %q; want exit %d with %q", c.args, r.code, r.stderr, c.code, c.want)
		}
	}
}

// TestServeMetricsKubo: serving from Kubo, the store's loads are counted as the kubo store's, and
// what the gateway answered adds up to what was asked.
func TestServeMetricsKubo(t *testing.T) {
	srv := kubotest.New(t)
	kubo := []string{"--kubo-rpc", srv.RPCURL(), "--kubo-gateway", srv.GatewayURL()}
	imp := inProcess(t, nil, append(kubo, "import", filepath.Join("..", "..", "testdata", "zarr"))...)
	if imp.code != 0 {
		t.Fatalf("import: %d %s", imp.code, imp.stderr)
	}
	s := serveInProcessWith(t, kubo, imp.lastLine(), "--metrics-listen", "127.0.0.1:0")
	before := scrape(t, s.metrics)
	if status, b := httpGet(t, "http://"+s.addr+"/counts/c/0", "bytes=0-9"); status != 206 || len(b) != 10 {
		t.Fatalf("ranged GET: %d, %d bytes", status, len(b))
	}
	after := scrape(t, s.metrics)
	ranged := map[string]string{"hamt_cas_store": "kubo", "hamt_cas_status": "ok", "hamt_cas_has_range": "true"}
	n0, _ := before.sum("hamt_cas_load_requests_total", ranged)
	n1, _ := after.sum("hamt_cas_load_requests_total", ranged)
	b0, _ := before.sum("hamt_cas_load_response_bytes_total", ranged)
	b1, _ := after.sum("hamt_cas_load_response_bytes_total", ranged)
	if n1-n0 != 1 || b1-b0 != 10 {
		t.Errorf("kubo ranged loads grew by %v, %v bytes; want 1, 10", n1-n0, b1-b0)
	}
	if n, _ := after.sum("hamt_cas_load_requests_total", map[string]string{"hamt_cas_store": "bolt"}); n != 0 {
		t.Errorf("%v loads counted as bolt's", n)
	}
}
