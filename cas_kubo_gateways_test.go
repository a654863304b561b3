package hamt_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hamt-go/hamt"
	"github.com/hamt-go/hamt/internal/kubotest"
	"github.com/ipfs/go-cid"
	"github.com/multiformats/go-multicodec"
)

// gatewayFleet starts n Kubo look-alikes that serve the blocks of the first one, each with its own
// faults and accounting: one daemon's dataset behind several gateways.
func gatewayFleet(t testing.TB, n int) []*kubotest.Server {
	t.Helper()
	first := kubotest.New(t)
	fleet := []*kubotest.Server{first}
	for range n - 1 {
		fleet = append(fleet, kubotest.New(t, kubotest.WithBlockstore(first.Blockstore())))
	}
	return fleet
}

// newFleetKubo is a KuboCAS that writes through rpc and reads from gateways, in that order, with
// quick retries, closed at the end of the test.
func newFleetKubo(t testing.TB, rpc *kubotest.Server, gateways []*kubotest.Server, opts ...hamt.KuboOption) *hamt.KuboCAS {
	t.Helper()
	var urls []string
	for _, g := range gateways {
		urls = append(urls, g.GatewayURL())
	}
	base := []hamt.KuboOption{
		hamt.WithKuboRPC(rpc.RPCURL()), hamt.WithKuboGateways(urls...),
		hamt.WithKuboRetries(1, time.Millisecond, time.Millisecond),
	}
	k, err := hamt.NewKuboCAS(append(base, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { k.Close() })
	return k
}

// waitFor polls cond until it holds or 5 s have passed.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("still not %s after 5 s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestKuboReadsSurviveDownMissingCorruptAndSlowGateways: of four gateways, tried in this order,
// one is down, one lacks the dataset, one serves corrupt bytes and the last is slow; every Load,
// ranged load (WithKuboVerifiedRanges), ReadFile of a 3 MB file, and a Map opened on the store,
// still return the right bytes, verified, with hedging and without. Without hedging (where the
// order of requests does not depend on timing) the bad gateways are seen to fail 3 reads each,
// then rest: later reads go to the slow one first and they are asked no more.
func TestKuboReadsSurviveDownMissingCorruptAndSlowGateways(t *testing.T) {
	for _, hedging := range []bool{false, true} {
		t.Run(fmt.Sprintf("hedging=%v", hedging), func(t *testing.T) {
			opt := hamt.WithKuboHedging(0, 1)
			if hedging {
				opt = hamt.WithKuboHedging(0, 2)
			}
			readsSurviveBadGateways(t, opt, !hedging)
		})
	}
}

func readsSurviveBadGateways(t *testing.T, hedging hamt.KuboOption, countRequests bool) {
	t.Helper()
	fleet := gatewayFleet(t, 4)
	down, corrupt, slow := fleet[1], fleet[2], fleet[3]
	missing := kubotest.New(t) // a blockstore of its own, empty: 404 for everything
	k := newFleetKubo(t, fleet[0], []*kubotest.Server{down, missing, corrupt, slow}, hamt.WithKuboVerifiedRanges(true), hedging)
	ctx := context.Background()

	small, big := patterned(10_000), patterned(3_000_000)
	smallID, err := k.Save(ctx, small, multicodec.Raw)
	if err != nil {
		t.Fatal(err)
	}
	bigID, err := k.Save(ctx, big, multicodec.Raw)
	if err != nil {
		t.Fatal(err)
	}
	m, err := hamt.New(ctx, k, hamt.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		if err := m.Set(ctx, fmt.Sprintf("key-%d", i), patterned(100+i)); err != nil {
			t.Fatal(err)
		}
	}
	root, err := m.Flush(ctx)
	if err != nil {
		t.Fatal(err)
	}

	down.Stop()
	corrupt.Inject(kubotest.Fault{Endpoint: kubotest.Gateway, Corrupt: true, Times: -1})
	slow.Inject(kubotest.Fault{Endpoint: kubotest.Gateway, Delay: 20 * time.Millisecond, Times: -1})

	if b, err := k.Load(ctx, smallID); err != nil || !bytes.Equal(b, small) {
		t.Errorf("Load: %d bytes, %v", len(b), err)
	}
	for _, r := range []hamt.ByteRange{hamt.RangeBetween(10, 500), hamt.RangeFrom(9_000), hamt.RangeSuffix(77)} {
		if b, err := k.LoadRange(ctx, smallID, r); err != nil || !bytes.Equal(b, r.Slice(small)) {
			t.Errorf("LoadRange(%s): %d bytes, %v", r, len(b), err)
		}
	}
	for _, r := range []hamt.ByteRange{{}, hamt.RangeBetween(1<<20-10, 1<<20+10), hamt.RangeSuffix(5)} {
		if b, err := k.ReadFile(ctx, bigID, r); err != nil || !bytes.Equal(b, r.Slice(big)) {
			t.Errorf("ReadFile(%s): %d bytes, %v", r, len(b), err)
		}
	}
	ro, err := hamt.Open(ctx, k, hamt.Bytes, root)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		if v, err := ro.Get(ctx, fmt.Sprintf("key-%d", i)); err != nil || !bytes.Equal(v, patterned(100+i)) {
			t.Errorf("Get key-%d: %d bytes, %v", i, len(v), err)
		}
	}
	if !countRequests {
		return
	}
	if n := missing.Total(kubotest.Gateway); n != hamt.DefaultKuboBreakerFailures {
		t.Errorf("the gateway without the dataset was asked %d times, want %d (then it rests)", n, hamt.DefaultKuboBreakerFailures)
	}
	if n := corrupt.Total(kubotest.Gateway); n != hamt.DefaultKuboBreakerFailures {
		t.Errorf("the corrupting gateway was asked %d times, want %d (then it rests)", n, hamt.DefaultKuboBreakerFailures)
	}
}

// fakeClock is a time source a test moves by hand.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// TestKuboBreakerOpensRestsAndCloses: a gateway that fails 3 reads in a row rests for 30 s at the
// back of the order (reads skip it); after the rest one read probes it again, and a failed probe
// means another rest, a successful one puts it back first.
func TestKuboBreakerOpensRestsAndCloses(t *testing.T) {
	fleet := gatewayFleet(t, 2)
	first, second := fleet[0], fleet[1]
	k := newFleetKubo(t, first, fleet, hamt.WithKuboHedging(0, 1))
	clock := &fakeClock{now: time.Unix(1_000_000, 0)}
	hamt.SetKuboClock(k, clock.Now)
	ctx := context.Background()
	data := []byte("breaker")
	id, err := k.Save(ctx, data, multicodec.Raw)
	if err != nil {
		t.Fatal(err)
	}
	load := func(step string, wantFirst, wantSecond int) {
		t.Helper()
		first.ResetCounters()
		second.ResetCounters()
		if b, err := k.Load(ctx, id); err != nil || !bytes.Equal(b, data) {
			t.Fatalf("%s: %q, %v", step, b, err)
		}
		if a, b := first.Total(kubotest.Gateway), second.Total(kubotest.Gateway); a != wantFirst || b != wantSecond {
			t.Errorf("%s: first gateway asked %d times, second %d; want %d and %d", step, a, b, wantFirst, wantSecond)
		}
	}
	first.Inject(kubotest.Fault{Endpoint: kubotest.Gateway, Status: http.StatusNotFound, Times: -1})
	for i := range 3 {
		load(fmt.Sprintf("failure %d", i+1), 1, 1)
	}
	load("resting", 0, 1)
	clock.Advance(29 * time.Second)
	load("29 s into the rest", 0, 1)
	clock.Advance(2 * time.Second)
	load("failed probe", 1, 1)
	load("after the failed probe", 0, 1)
	clock.Advance(31 * time.Second)
	first.ClearFaults()
	load("successful probe", 1, 0)
	load("closed again", 1, 0)
}

// TestKuboCredentialsStayWithTheirOrigins: the store-wide bearer token and header go to the RPC
// and the first gateway only; a WithKuboOriginHeader header only to its gateway; a gateway that
// redirects to another one does not hand the credentials over (Go's client would: it keeps
// Authorization across ports of one host and every other header everywhere).
func TestKuboCredentialsStayWithTheirOrigins(t *testing.T) {
	private := kubotest.New(t, kubotest.WithBearerToken("s3cret"))
	public := kubotest.New(t, kubotest.WithBlockstore(private.Blockstore()))
	third := kubotest.New(t, kubotest.WithBlockstore(private.Blockstore()))
	k := newFleetKubo(t, private, []*kubotest.Server{private, public, third}, hamt.WithKuboHedging(0, 1),
		hamt.WithKuboBearerToken("s3cret"), hamt.WithKuboHeader("X-API-Key", "key"),
		hamt.WithKuboOriginHeader(third.GatewayURL()+"/ipfs/", "X-Gateway-Token", "third-only"))
	ctx := context.Background()
	id, err := k.Save(ctx, []byte("secret data"), multicodec.Raw)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := k.Load(ctx, id); err != nil {
		t.Fatal(err)
	}
	private.Inject(kubotest.Fault{Endpoint: kubotest.Gateway, Status: http.StatusNotFound})
	if _, err := k.Load(ctx, id); err != nil {
		t.Fatal(err)
	}
	private.Inject(kubotest.Fault{Endpoint: kubotest.Gateway, Status: http.StatusNotFound})
	public.Inject(kubotest.Fault{Endpoint: kubotest.Gateway, Status: http.StatusNotFound})
	if _, err := k.Load(ctx, id); err != nil {
		t.Fatal(err)
	}
	private.Inject(kubotest.Fault{Endpoint: kubotest.Gateway, Redirect: public.GatewayURL()})
	if _, err := k.Load(ctx, id); err != nil {
		t.Fatal(err)
	}
	check := func(name string, s *kubotest.Server, wantRPC, wantGateway int, want map[string]string) {
		t.Helper()
		if got := s.Total(kubotest.RPC); got != wantRPC {
			t.Errorf("%s RPC: %d requests, want %d", name, got, wantRPC)
		}
		if got := s.Total(kubotest.Gateway); got != wantGateway {
			t.Errorf("%s gateway: %d requests, want %d", name, got, wantGateway)
		}
		for _, r := range s.Log() {
			for _, h := range []string{"Authorization", "X-API-Key", "X-Gateway-Token"} {
				if got := r.Header.Get(h); got != want[h] {
					t.Errorf("%s %s %s: %s %q, want %q", name, r.Method, r.Path, h, got, want[h])
				}
			}
		}
	}
	owner := map[string]string{"Authorization": "Bearer s3cret", "X-API-Key": "key"}
	check("private", private, 1, 4, owner)
	check("public", public, 0, 3, nil) // two after 404s, one through the redirect
	check("third", third, 0, 1, map[string]string{"X-Gateway-Token": "third-only"})

	if _, err := hamt.NewKuboCAS(hamt.WithKuboOriginHeader("http://elsewhere:1234", "X-Token", "t")); err == nil ||
		!strings.Contains(err.Error(), "neither the RPC nor a gateway") {
		t.Errorf("a header for an origin the store never talks to: %v", err)
	}
}

// TestKuboAllGatewaysFailingIsOneErrorNamingEach: when every gateway fails, the error names each
// gateway's failure; it is ErrNotFound only if every gateway answered 404, ErrCorrupt if one
// served wrong bytes, and a *KuboError of each can be had with errors.As.
func TestKuboAllGatewaysFailingIsOneErrorNamingEach(t *testing.T) {
	fleet := gatewayFleet(t, 3)
	k := newFleetKubo(t, fleet[0], fleet, hamt.WithKuboHedging(0, 1), hamt.WithKuboBreaker(100, time.Second))
	ctx := context.Background()
	id, err := k.Save(ctx, []byte("everywhere"), multicodec.Raw)
	if err != nil {
		t.Fatal(err)
	}
	absent := blake3CID(multicodec.Raw, []byte("nowhere"))
	_, err = k.Load(ctx, absent)
	if !errors.Is(err, hamt.ErrNotFound) {
		t.Errorf("absent everywhere: %v, want ErrNotFound", err)
	}
	for _, g := range fleet {
		if err == nil || !strings.Contains(err.Error(), g.GatewayURL()) {
			t.Errorf("the error does not name %s: %v", g.GatewayURL(), err)
		}
	}
	fleet[1].Inject(kubotest.Fault{Endpoint: kubotest.Gateway, Status: http.StatusForbidden})
	var ke *hamt.KuboError
	if _, err := k.Load(ctx, absent); errors.Is(err, hamt.ErrNotFound) || !errors.As(err, &ke) {
		t.Errorf("404, 403, 404: %v, want a KuboError and not ErrNotFound (the 403 may hide the block)", err)
	}
	for _, g := range fleet {
		g.Inject(kubotest.Fault{Endpoint: kubotest.Gateway, Corrupt: true})
	}
	if _, err := k.Load(ctx, id); !errors.Is(err, hamt.ErrCorrupt) || errors.Is(err, hamt.ErrNotFound) {
		t.Errorf("corrupt everywhere: %v, want ErrCorrupt", err)
	}
}

// TestKuboBadRangeAnswersFailOver: a gateway whose answer to a Range request is not the range
// (a 206 with another window, a 206 without Content-Range, a 204) hands the read to the next
// gateway; one that answers 200 with the whole block is verified and sliced; a 416 "bytes */N"
// for a range past the end is no bytes.
func TestKuboBadRangeAnswersFailOver(t *testing.T) {
	fleet := gatewayFleet(t, 2)
	k := newFleetKubo(t, fleet[0], fleet, hamt.WithKuboHedging(0, 1), hamt.WithKuboBreaker(100, time.Second))
	ctx := context.Background()
	data := []byte("hello")
	id, err := k.Save(ctx, data, multicodec.Raw)
	if err != nil {
		t.Fatal(err)
	}
	r := hamt.RangeBetween(1, 3)
	for _, c := range []struct {
		name  string
		fault kubotest.Fault
		next  int // requests the second gateway gets
	}{
		{"206 with another window", kubotest.Fault{Status: 206, Header: http.Header{"Content-Range": {"bytes 0-1/5"}}, Body: []byte("he")}, 1},
		{"206 without Content-Range", kubotest.Fault{Status: 206, Header: http.Header{}, Body: []byte("el")}, 1},
		{"206 announcing more than it sends", kubotest.Fault{Status: 206, Header: http.Header{"Content-Range": {"bytes 1-2/5"}}, Body: []byte("e")}, 1},
		{"204", kubotest.Fault{Status: 204, Header: http.Header{}}, 1},
		{"200 with the whole block", kubotest.Fault{IgnoreRange: true}, 0},
		{"200 with the whole block, corrupt", kubotest.Fault{IgnoreRange: true, Corrupt: true}, 1},
	} {
		for _, g := range fleet {
			g.ClearFaults()
			g.ResetCounters()
		}
		c.fault.Endpoint = kubotest.Gateway
		fleet[0].Inject(c.fault)
		if b, err := k.LoadRange(ctx, id, r); err != nil || string(b) != "el" {
			t.Errorf("%s: %q, %v", c.name, b, err)
		}
		if n := fleet[1].Total(kubotest.Gateway); n != c.next {
			t.Errorf("%s: the next gateway was asked %d times, want %d", c.name, n, c.next)
		}
	}
	for _, g := range fleet {
		g.ClearFaults()
		g.ResetCounters()
	}
	if b, err := k.LoadRange(ctx, id, hamt.RangeFrom(9)); err != nil || len(b) != 0 || fleet[0].Total(kubotest.Gateway) != 1 {
		t.Errorf("past the end: %q, %v after %d requests", b, err, fleet[0].Total(kubotest.Gateway))
	}
	fleet[0].Inject(kubotest.Fault{Endpoint: kubotest.Gateway, Status: 416, Header: http.Header{"Content-Range": {"bytes */9"}}})
	if b, err := k.LoadRange(ctx, id, hamt.RangeFrom(2)); err != nil || string(b) != "llo" || fleet[1].Total(kubotest.Gateway) != 1 {
		t.Errorf("a 416 that contradicts the range: %q, %v; want the next gateway's answer", b, err)
	}
}

// TestKuboSuffixLongerThanTheBlockIsReadWholeAtOnce: boxo's gateway answers a suffix longer than
// the block with 500; that is not retried (py-hamt retries a gateway's 5xx): the block is read
// whole at once, in two requests.
func TestKuboSuffixLongerThanTheBlockIsReadWholeAtOnce(t *testing.T) {
	srv := kubotest.New(t)
	k := newKubo(t, srv)
	ctx := context.Background()
	id, err := k.Save(ctx, []byte("hello"), multicodec.Raw)
	if err != nil {
		t.Fatal(err)
	}
	srv.ResetCounters()
	if b, err := k.LoadRange(ctx, id, hamt.RangeSuffix(9)); err != nil || string(b) != "hello" {
		t.Errorf("suffix 9 of 5 bytes: %q, %v", b, err)
	}
	if n := srv.Total(kubotest.Gateway); n != 2 {
		t.Errorf("%d requests, want 2 (the range, then the block)", n)
	}
}

// TestKuboHedgedReadTakesTheFasterGateway: the first gateway holds every request for 10 s; with
// hedging after 20 ms the second one answers, the first one's request is cancelled (it leaves
// the server), and the first gateway does not count the cancellation as a failure: it stays
// first.
func TestKuboHedgedReadTakesTheFasterGateway(t *testing.T) {
	fleet := gatewayFleet(t, 2)
	stuck, fast := fleet[0], fleet[1]
	k := newFleetKubo(t, stuck, fleet, hamt.WithKuboHedging(20*time.Millisecond, 2))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	data := []byte("hedged")
	id, err := k.Save(ctx, data, multicodec.Raw)
	if err != nil {
		t.Fatal(err)
	}
	stuck.Inject(kubotest.Fault{Endpoint: kubotest.Gateway, Delay: 10 * time.Second, Times: -1})
	for i := range 5 {
		if b, err := k.Load(ctx, id); err != nil || !bytes.Equal(b, data) {
			t.Fatalf("load %d: %q, %v", i, b, err)
		}
	}
	waitFor(t, "cancelled on the slow gateway", func() bool { return stuck.InFlight() == 0 })
	if a, b := stuck.Total(kubotest.Gateway), fast.Total(kubotest.Gateway); a != 5 || b != 5 {
		t.Errorf("slow gateway asked %d times, fast %d; want 5 and 5 (hedged, the slow one still first)", a, b)
	}
}

// TestKuboHedgeTakesTheFirstVerifiedAnswer: the hedge's quick answer is corrupt; the read waits
// for the slower, right one.
func TestKuboHedgeTakesTheFirstVerifiedAnswer(t *testing.T) {
	fleet := gatewayFleet(t, 2)
	k := newFleetKubo(t, fleet[0], fleet, hamt.WithKuboHedging(10*time.Millisecond, 2))
	ctx := context.Background()
	data := patterned(1000)
	id, err := k.Save(ctx, data, multicodec.Raw)
	if err != nil {
		t.Fatal(err)
	}
	fleet[0].Inject(kubotest.Fault{Endpoint: kubotest.Gateway, Delay: 200 * time.Millisecond})
	fleet[1].Inject(kubotest.Fault{Endpoint: kubotest.Gateway, Corrupt: true})
	if b, err := k.Load(ctx, id); err != nil || !bytes.Equal(b, data) {
		t.Errorf("%d bytes, %v", len(b), err)
	}
	if n := fleet[1].Total(kubotest.Gateway); n != 1 {
		t.Errorf("the hedge was asked %d times, want 1", n)
	}
}

// TestKuboAdaptiveHedgeDelayFollowsTheGateway: with the default (adaptive) delay, a gateway that
// answered quickly so far and then holds a request for 10 s is hedged after its usual time (its
// p95, at least 10 ms), not waited for: the read ends well inside its 5 s deadline.
func TestKuboAdaptiveHedgeDelayFollowsTheGateway(t *testing.T) {
	fleet := gatewayFleet(t, 2)
	k := newFleetKubo(t, fleet[0], fleet)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	data := []byte("adaptive")
	id, err := k.Save(ctx, data, multicodec.Raw)
	if err != nil {
		t.Fatal(err)
	}
	for range 20 {
		if _, err := k.Load(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	fleet[1].ResetCounters()
	fleet[0].Inject(kubotest.Fault{Endpoint: kubotest.Gateway, Delay: 10 * time.Second})
	if b, err := k.Load(ctx, id); err != nil || !bytes.Equal(b, data) {
		t.Errorf("%q, %v; want the second gateway's answer well before 10 s", b, err)
	}
	if n := fleet[1].Total(kubotest.Gateway); n != 1 {
		t.Errorf("second gateway asked %d times for the held read, want 1", n)
	}
}

// TestKuboHedgeIsBounded: three gateways that never answer, hedging after 5 ms with at most 2 at
// once: a read asks two of them and not the third; cancelling it ends both requests.
func TestKuboHedgeIsBounded(t *testing.T) {
	fleet := gatewayFleet(t, 3)
	k := newFleetKubo(t, fleet[0], fleet, hamt.WithKuboHedging(5*time.Millisecond, 2))
	id, err := k.Save(context.Background(), []byte("bounded"), multicodec.Raw)
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range fleet {
		g.Inject(kubotest.Fault{Endpoint: kubotest.Gateway, Delay: 10 * time.Second, Times: -1})
	}
	asked := func() int {
		n := 0
		for _, g := range fleet {
			n += g.Total(kubotest.Gateway)
		}
		return n
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { _, err := k.Load(ctx, id); done <- err }()
	waitFor(t, "two gateways asked", func() bool { return asked() == 2 })
	time.Sleep(100 * time.Millisecond) // 20 hedge delays: time enough to ask a third, were it allowed
	if n := asked(); n != 2 || fleet[2].Total(kubotest.Gateway) != 0 {
		t.Errorf("%d gateways asked at once (the third %d times), want the first two", n, fleet[2].Total(kubotest.Gateway))
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled read: %v", err)
	}
	waitFor(t, "both requests ended", func() bool { return fleet[0].InFlight()+fleet[1].InFlight() == 0 })
}

// TestKuboHedgedReadsLeaveNoGoroutine: many concurrent hedged reads over flaky gateways (slow
// now and then, corrupt now and then), most of them with a loser to cancel, leave no goroutine
// behind once the store is closed.
func TestKuboHedgedReadsLeaveNoGoroutine(t *testing.T) {
	fleet := gatewayFleet(t, 3)
	before := runtime.NumGoroutine()
	k, err := hamt.NewKuboCAS(hamt.WithKuboRPC(fleet[0].RPCURL()),
		hamt.WithKuboGateways(fleet[0].GatewayURL(), fleet[1].GatewayURL(), fleet[2].GatewayURL()),
		hamt.WithKuboRetries(1, time.Millisecond, time.Millisecond), hamt.WithKuboHedging(2*time.Millisecond, 3),
		hamt.WithKuboBreaker(1000, time.Second))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	var ids []cid.Cid
	for i := range 8 {
		id, err := k.Save(ctx, patterned(1000+i), multicodec.Raw)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	fleet[0].Inject(kubotest.Fault{Endpoint: kubotest.Gateway, Delay: 30 * time.Millisecond, Chance: 0.7, Times: -1})
	fleet[1].Inject(kubotest.Fault{Endpoint: kubotest.Gateway, Corrupt: true, Chance: 0.5, Times: -1})
	var wg sync.WaitGroup
	for i := range 40 {
		wg.Go(func() {
			id := ids[i%len(ids)]
			if b, err := k.Load(ctx, id); err != nil || !bytes.Equal(b, patterned(1000+i%len(ids))) {
				t.Errorf("load %d: %d bytes, %v", i, len(b), err)
			}
			if b, err := k.LoadRange(ctx, id, hamt.RangeBetween(5, 50)); err != nil || len(b) != 45 {
				t.Errorf("ranged load %d: %d bytes, %v", i, len(b), err)
			}
		})
	}
	wg.Wait()
	k.Close()
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before {
		buf := make([]byte, 1<<16)
		t.Errorf("%d goroutines after Close, %d before:\n%s", n, before, buf[:runtime.Stack(buf, true)])
	}
}

// TestKuboGatewayOptionsValidated: the gateway options refuse what cannot work, naming
// themselves, before any request.
func TestKuboGatewayOptionsValidated(t *testing.T) {
	for name, opt := range map[string]hamt.KuboOption{
		"WithKuboGateways()":               hamt.WithKuboGateways(),
		"WithKuboBreaker(0, 1s)":           hamt.WithKuboBreaker(0, time.Second),
		"WithKuboBreaker(3, 0s)":           hamt.WithKuboBreaker(3, 0),
		"WithKuboHedging(-1ns, 2)":         hamt.WithKuboHedging(-1, 2),
		"WithKuboHedging(0s, 0)":           hamt.WithKuboHedging(0, 0),
		"WithKuboOriginHeader(Origin)":     hamt.WithKuboOriginHeader("http://127.0.0.1:8080", "origin", "x"),
		`WithKuboOriginHeader("gw:8080")`:  hamt.WithKuboOriginHeader("gw:8080", "X-Key", "x"),
		`WithKuboOriginHeader("ftp://gw")`: hamt.WithKuboOriginHeader("ftp://gw", "X-Key", "x"),
	} {
		if _, err := hamt.NewKuboCAS(opt); err == nil || !strings.HasPrefix(err.Error(), name) {
			t.Errorf("%s: error %v, want one starting with the option", name, err)
		}
	}
	for _, bad := range []string{"http://gw/?x=1", "gw:8080", "ftp://gw"} {
		if _, err := hamt.NewKuboCAS(hamt.WithKuboGateways("http://good", bad)); err == nil {
			t.Errorf("gateway %q accepted", bad)
		}
	}
	// Defaults: the RPC's origin and the default gateway's take origin headers; the same URL in
	// two forms counts once.
	k, err := hamt.NewKuboCAS(hamt.WithKuboOriginHeader(hamt.DefaultKuboGateway, "X-Key", "x"),
		hamt.WithKuboOriginHeader(hamt.DefaultKuboRPC+"/api/v0", "X-Key", "y"))
	if err != nil {
		t.Fatal(err)
	}
	k.Close()
	k, err = hamt.NewKuboCAS(hamt.WithKuboGateways("http://a:8080", "http://a:8080/ipfs/", "http://b", "http://a:8080/"))
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()
	if got := hamt.KuboGatewayBases(k); len(got) != 2 || got[0] != "http://a:8080" || got[1] != "http://b" {
		t.Errorf("gateways %q, want http://a:8080 and http://b", got)
	}
}
