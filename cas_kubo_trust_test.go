package hamt_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hamt-go/hamt"
	"github.com/hamt-go/hamt/internal/kubotest"
	"github.com/multiformats/go-multicodec"
)

// countingClient is an HTTP client like the store's own whose transport counts the TCP connections
// it dials.
func countingClient(dials *atomic.Int64) *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 32 // as the store's own client (its concurrency)
	var d net.Dialer
	tr.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		dials.Add(1)
		return d.DialContext(ctx, network, addr)
	}
	return &http.Client{Transport: tr}
}

// TestKuboSequentialSavesReuseOneConnection: Save reads Kubo's streamed add answer to its end,
// so sequential saves keep one keep-alive connection instead of dialling for most of them.
func TestKuboSequentialSavesReuseOneConnection(t *testing.T) {
	srv := kubotest.New(t)
	var dials atomic.Int64
	k := newKubo(t, srv, hamt.WithKuboHTTPClient(countingClient(&dials)))
	ctx := context.Background()
	const saves = 500
	for i := range saves {
		if _, err := k.Save(ctx, fmt.Appendf(nil, "value %d", i), multicodec.Raw); err != nil {
			t.Fatal(err)
		}
	}
	if n := dials.Load(); n > 2 {
		t.Errorf("%d sequential saves dialled %d connections, want at most 2", saves, n)
	}
}

// TestKuboSaveReadsAStreamToItsEnd: real Kubo ends its add stream a moment after the line Save
// needs (the in-process server usually ends it at once, which hides the fault); Save still keeps
// the connection.
func TestKuboSaveReadsAStreamToItsEnd(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("X-Chunked-Output", "1")
		fmt.Fprintf(w, `{"Name":"upload","Hash":"%s","Size":"1"}`+"\n", blake3CID(multicodec.Raw, []byte("v")))
		w.(http.Flusher).Flush()
		time.Sleep(2 * time.Millisecond)
	}))
	t.Cleanup(srv.Close)
	var dials atomic.Int64
	k, err := hamt.NewKuboCAS(hamt.WithKuboRPC(srv.URL), hamt.WithKuboGateway(srv.URL), hamt.WithKuboHTTPClient(countingClient(&dials)))
	if err != nil {
		t.Fatal(err)
	}
	for range 50 {
		if _, err := k.Save(context.Background(), []byte("v"), multicodec.Raw); err != nil {
			t.Fatal(err)
		}
	}
	if n := dials.Load(); n > 2 {
		t.Errorf("50 sequential saves dialled %d connections, want at most 2", n)
	}
}

// TestKuboErrorAnswersKeepTheConnection: an error answer whose body is longer than the part
// quoted in the error is drained too, so a retry reuses the connection.
func TestKuboErrorAnswersKeepTheConnection(t *testing.T) {
	var calls atomic.Int64
	long := make([]byte, 32<<10)
	for i := range long {
		long[i] = 'x'
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		w.WriteHeader(http.StatusBadGateway)
		w.Write(long)
	}))
	t.Cleanup(srv.Close)
	var dials atomic.Int64
	k, err := hamt.NewKuboCAS(hamt.WithKuboRPC(srv.URL), hamt.WithKuboGateway(srv.URL),
		hamt.WithKuboRetries(20, time.Millisecond, time.Millisecond), hamt.WithKuboHTTPClient(countingClient(&dials)))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := k.Save(context.Background(), []byte("v"), multicodec.Raw); err == nil {
		t.Fatal("Save worked against a server answering 502")
	}
	if c, n := calls.Load(), dials.Load(); c != 21 || n > 2 {
		t.Errorf("%d attempts dialled %d connections, want 21 attempts on at most 2", c, n)
	}
}

// TestKuboRetryAfterHTTPDate: a Retry-After given as an HTTP date (RFC 9110 allows both forms)
// is honoured as the time left until that date.
func TestKuboRetryAfterHTTPDate(t *testing.T) {
	data := []byte("later")
	id := blake3CID(multicodec.Raw, data)
	var calls atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) == 1 {
			// HTTP dates have whole seconds: 3 s ahead is at least 2 s from now.
			w.Header().Set("Retry-After", time.Now().Add(3*time.Second).UTC().Format(http.TimeFormat))
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintf(w, `{"Name":"upload","Hash":"%s","Size":"%d"}`+"\n", id, len(data))
	}))
	t.Cleanup(srv.Close)
	k, err := hamt.NewKuboCAS(hamt.WithKuboRPC(srv.URL), hamt.WithKuboGateway(srv.URL),
		hamt.WithKuboRetries(3, time.Millisecond, 10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	got, err := k.Save(context.Background(), data, multicodec.Raw)
	if err != nil || got != id {
		t.Fatalf("Save: %v %v, want %v", got, err, id)
	}
	if waited := time.Since(start); waited < time.Second || calls.Load() != 2 {
		t.Errorf("retried after %v (%d calls): the Retry-After date was ignored", waited, calls.Load())
	}
}

// TestKuboSaveReportsAFailureAfterItsAnswer: Kubo reports a failure that follows the add's
// answer line (a pin that fails, with pin=true) in the X-Stream-Error trailer; Save reads the
// stream to its end and returns it instead of a CID.
func TestKuboSaveReportsAFailureAfterItsAnswer(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Trailer", "X-Stream-Error")
		w.Header().Set("X-Chunked-Output", "1")
		fmt.Fprintf(w, `{"Name":"upload","Hash":"%s","Size":"1"}`+"\n", blake3CID(multicodec.Raw, []byte("v")))
		w.(http.Flusher).Flush()
		w.Header().Set("X-Stream-Error", "pin: out of disk space")
	}))
	t.Cleanup(srv.Close)
	k, err := hamt.NewKuboCAS(hamt.WithKuboRPC(srv.URL), hamt.WithKuboGateway(srv.URL), hamt.WithKuboPinOnAdd(true))
	if err != nil {
		t.Fatal(err)
	}
	_, err = k.Save(context.Background(), []byte("v"), multicodec.Raw)
	var ke *hamt.KuboError
	if !errors.As(err, &ke) || !strings.Contains(err.Error(), "out of disk space") {
		t.Errorf("Save with a failure after its answer: %v, want a *KuboError naming it", err)
	}
}

// TestKuboDrainIsBounded: an error answer that trickles on after the part quoted is not waited
// for beyond a bound, even with no request timeout.
func TestKuboDrainIsBounded(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusForbidden)
		fmt.Fprint(w, "refused")
		w.(http.Flusher).Flush()
		select { // the rest never comes (until the test ends)
		case <-release:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(release) })
	k, err := hamt.NewKuboCAS(hamt.WithKuboRPC(srv.URL), hamt.WithKuboGateway(srv.URL), hamt.WithKuboTimeout(0))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := k.Save(context.Background(), []byte("v"), multicodec.Raw)
		done <- err
	}()
	select {
	case err := <-done:
		if !strings.Contains(fmt.Sprint(err), "403") {
			t.Errorf("Save against a 403: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Save waited for the rest of an error answer")
	}
}
