package hamt

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ipfs/go-cid"
)

// A KuboCAS reads from one gateway or several. This file is how it chooses among them: the order
// of health, the circuit breaker, hedged reads, and the one error that says what each gateway did
// when all of them failed. It also scopes credentials to their origins.

// Defaults of the gateway machinery (WithKuboBreaker, WithKuboHedging).
const (
	// DefaultKuboBreakerFailures is how many reads in a row a gateway may fail before it rests.
	DefaultKuboBreakerFailures = 3
	// DefaultKuboBreakerRest is how long a gateway rests after DefaultKuboBreakerFailures.
	DefaultKuboBreakerRest = 30 * time.Second
	// DefaultKuboHedgeMax is how many gateways one read may ask at once.
	DefaultKuboHedgeMax = 2
)

// The adaptive hedge delay: the 95th percentile of a gateway's last hedgeWindow answer times, no
// less than hedgeFloor; hedgeInitial until it has answered hedgeMinSamples times.
const (
	hedgeWindow     = 64
	hedgeMinSamples = 8
	hedgeFloor      = 10 * time.Millisecond
	hedgeInitial    = 200 * time.Millisecond
)

// kuboEndpoint is one server the store sends requests to: the RPC API or a gateway.
type kuboEndpoint struct {
	base    string      // no trailing slash; a gateway's without /ipfs
	header  http.Header // sent with every request to it: the headers scoped to its origin
	gateway bool
}

// kuboGateway is a gateway with its health: a circuit breaker and its recent answer times.
type kuboGateway struct {
	kuboEndpoint
	breaker breaker
	latency latencyWindow
}

// breaker is a gateway's circuit breaker. Closed, the gateway is tried in its configured place;
// after limit failed reads in a row it opens and rests: it goes to the back of the order, tried
// only when every other gateway has failed. When the rest is over it is half-open: one read (the
// probe) tries it in its place again; a success closes it, a failure opens it for another rest.
type breaker struct {
	mu        sync.Mutex
	failures  int       // failed reads in a row
	openUntil time.Time // while failures ≥ limit: the end of the rest
	probing   bool      // half-open: a read holds the probe
}

// admit reports whether a read may try the gateway in its configured place, and whether that
// read is the half-open gateway's probe (which it must give back through done).
func (b *breaker) admit(now time.Time, limit int) (ok, probe bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch {
	case b.failures < limit:
		return true, false
	case now.Before(b.openUntil) || b.probing:
		return false, false
	}
	b.probing = true
	return true, true
}

// outcome is how one read's try of a gateway ended, for its breaker.
type outcome uint8

const (
	abandoned outcome = iota // not tried, or cancelled: says nothing of the gateway
	succeeded
	failed
)

// done records a read's outcome; probe says whether that read held the probe.
func (b *breaker) done(o outcome, probe bool, now time.Time, limit int, rest time.Duration) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if probe {
		b.probing = false
	}
	switch o {
	case succeeded:
		b.failures, b.openUntil = 0, time.Time{}
	case failed:
		b.failures++
		if b.failures >= limit {
			b.openUntil = now.Add(rest)
		}
	}
}

// latencyWindow keeps a gateway's last answer times (from a request to its answer's headers), in
// arrival order and sorted, for their 95th percentile: the delay after which a read asks the next
// gateway too.
type latencyWindow struct {
	mu     sync.Mutex
	ring   [hedgeWindow]time.Duration
	next   int             // where the next answer time goes in ring
	sorted []time.Duration // the same answer times, sorted
}

func (w *latencyWindow) add(d time.Duration) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.sorted == nil {
		w.sorted = make([]time.Duration, 0, hedgeWindow)
	}
	if len(w.sorted) == hedgeWindow {
		i, _ := slices.BinarySearch(w.sorted, w.ring[w.next])
		w.sorted = slices.Delete(w.sorted, i, i+1)
	}
	w.ring[w.next] = d
	w.next = (w.next + 1) % hedgeWindow
	i, _ := slices.BinarySearch(w.sorted, d)
	w.sorted = slices.Insert(w.sorted, i, d)
}

// delay is the hedge delay the window gives: its p95, at least hedgeFloor, or hedgeInitial until
// it holds hedgeMinSamples answers.
func (w *latencyWindow) delay() time.Duration {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := len(w.sorted)
	if n < hedgeMinSamples {
		return hedgeInitial
	}
	return max(w.sorted[(n*95+99)/100-1], hedgeFloor)
}

// gatewayTurn is a gateway in one read's order, and whether the read holds its probe.
type gatewayTurn struct {
	g     *kuboGateway
	probe bool
}

// gatewayOrder is the order in which one read tries the gateways: those whose breaker admits them,
// in configured order, then the resting ones, in configured order.
func (k *KuboCAS) gatewayOrder() []gatewayTurn {
	now := k.now()
	turns := make([]gatewayTurn, 0, len(k.gateways))
	var resting []gatewayTurn
	for _, g := range k.gateways {
		ok, probe := g.breaker.admit(now, k.breakerFailures)
		if ok {
			turns = append(turns, gatewayTurn{g, probe})
		} else {
			resting = append(resting, gatewayTurn{g, false})
		}
	}
	return append(turns, resting...)
}

// report gives the breaker of a turn its outcome.
func (k *KuboCAS) report(t gatewayTurn, o outcome) {
	t.g.breaker.done(o, t.probe, k.now(), k.breakerFailures, k.breakerRest)
}

// hedgeDelay is how long a read waits for g's answer before it asks the next gateway too.
func (k *KuboCAS) hedgeDelay(g *kuboGateway) time.Duration {
	if k.hedgeFixed > 0 {
		return k.hedgeFixed
	}
	return g.latency.delay()
}

// gatewayTry is one read from one gateway: verified bytes (or what the read yields), or the
// gateway's failure. It calls answered once the gateway's answer has begun (a success status
// and its headers), which stops the hedge timer and times the gateway.
type gatewayTry[T any] func(ctx context.Context, g *kuboGateway, answered func()) (T, error)

// readGateways makes one read through the gateways in the order of their health. A gateway's
// failure (after its own retries: a 404, an error, bytes that do not match their CID, an answer
// that is not the one asked for) moves the read to the next gateway at once; with hedging on, a
// gateway that has not answered within its hedge delay gets the next gateway asked too, up to
// hedgeMax at once, and the first verified answer wins: the others are cancelled and waited for.
// When every gateway fails, the error names each one's failure (see allGatewaysFailed).
func readGateways[T any](ctx context.Context, k *KuboCAS, op string, id cid.Cid, try gatewayTry[T]) (T, error) {
	var zero T
	if k.closed.Load() {
		return zero, fmt.Errorf("kubo %s: store closed", op)
	}
	turns := k.gatewayOrder()
	if len(turns) == 1 || k.hedgeMax == 1 {
		return readInTurn(ctx, k, op, id, turns, try)
	}

	type result struct {
		turn int
		v    T
		err  error
	}
	n := len(turns)
	results := make(chan result, n) // buffered: a try never blocks on a read that has returned
	answeredCh := make(chan int, n)
	cancels := make([]context.CancelFunc, n)
	starts := make([]time.Time, n)
	answered := make([]atomic.Bool, n)
	reported := make([]bool, n)
	launched, inFlight := 0, 0
	launch := func() int {
		i := launched
		launched++
		inFlight++
		tctx, cancel := context.WithCancel(ctx)
		cancels[i], starts[i] = cancel, time.Now()
		g, start := turns[i].g, starts[i]
		go func() {
			v, err := try(tctx, g, func() {
				if !answered[i].Swap(true) {
					g.latency.add(time.Since(start))
					answeredCh <- i
				}
			})
			results <- result{i, v, err}
		}()
		return i
	}
	// finish cancels the tries still running and waits for them: no goroutine outlives the read.
	// One cancelled before it answered is timed as slow as it was when cancelled (a lower bound),
	// so that a gateway that always loses is not left with no answer times at all.
	finish := func(won bool) {
		now := time.Now()
		for i := range launched {
			if won && !reported[i] && !answered[i].Load() {
				turns[i].g.latency.add(now.Sub(starts[i]))
			}
			cancels[i]()
		}
		for ; inFlight > 0; inFlight-- {
			<-results
		}
		for i := range n {
			if !reported[i] {
				k.report(turns[i], abandoned)
			}
		}
	}

	var errs []error
	var raw []error
	timer := time.NewTimer(k.hedgeDelay(turns[launch()].g))
	defer timer.Stop()
	timed := 0 // the turn the timer waits for
	for {
		select {
		case r := <-results:
			inFlight--
			if r.err == nil {
				k.report(turns[r.turn], succeeded)
				reported[r.turn] = true
				finish(true)
				return r.v, nil
			}
			if ctx.Err() != nil {
				finish(false)
				return zero, fmt.Errorf("kubo %s %s: %w", op, id, context.Cause(ctx))
			}
			k.report(turns[r.turn], failed)
			reported[r.turn] = true
			errs = append(errs, fmt.Errorf("gateway %s: %w", turns[r.turn].g.base, r.err))
			raw = append(raw, r.err)
			switch {
			case launched < n:
				k.failover(ctx, turns[r.turn].g, r.err)
				timed = launch()
				timer.Reset(k.hedgeDelay(turns[timed].g))
			case inFlight == 0:
				finish(false)
				return zero, allGatewaysFailed(op, id, errs, raw)
			}
		case i := <-answeredCh:
			if i == timed {
				timer.Stop()
			}
		case <-timer.C:
			if launched < n && inFlight < k.hedgeMax {
				k.hedged(ctx, turns[timed].g)
				timed = launch()
				timer.Reset(k.hedgeDelay(turns[timed].g))
			}
		case <-ctx.Done():
			finish(false)
			return zero, fmt.Errorf("kubo %s %s: %w", op, id, context.Cause(ctx))
		}
	}
}

// readInTurn is readGateways without hedging: one gateway after the other, each asked only once
// the one before has failed.
func readInTurn[T any](ctx context.Context, k *KuboCAS, op string, id cid.Cid, turns []gatewayTurn, try gatewayTry[T]) (T, error) {
	var zero T
	var errs, raw []error
	for i, t := range turns {
		v, err := try(ctx, t.g, func() {})
		if err == nil {
			k.report(t, succeeded)
			for _, rest := range turns[i+1:] {
				k.report(rest, abandoned)
			}
			return v, nil
		}
		if ctx.Err() != nil {
			for _, rest := range turns[i:] {
				k.report(rest, abandoned)
			}
			if len(turns) == 1 {
				return zero, err
			}
			return zero, fmt.Errorf("kubo %s %s: %w", op, id, context.Cause(ctx))
		}
		k.report(t, failed)
		errs = append(errs, fmt.Errorf("gateway %s: %w", t.g.base, err))
		raw = append(raw, err)
		if i+1 < len(turns) {
			k.failover(ctx, t.g, err)
		}
	}
	if len(turns) == 1 {
		return zero, notFound(id, raw[0])
	}
	return zero, allGatewaysFailed(op, id, errs, raw)
}

// allGatewaysFailed is the error of a read every gateway failed: each gateway's failure, joined
// (errors.Is and errors.As see them all, so a read that any gateway answered with wrong bytes is
// ErrCorrupt). It is ErrNotFound only when every gateway answered 404: one that was down or
// refused may have the block.
func allGatewaysFailed(op string, id cid.Cid, errs, raw []error) error {
	joined := errors.Join(errs...)
	for _, err := range raw {
		var ke *KuboError
		if !errors.As(err, &ke) || ke.Status != http.StatusNotFound {
			return fmt.Errorf("kubo %s %s: all %d gateways failed: %w", op, id, len(errs), joined)
		}
	}
	return fmt.Errorf("kubo %s %s: %w: all %d gateways answered 404: %w", op, id, ErrNotFound, len(errs), joined)
}

// gatewayBase checks a gateway URL and trims it to the base the store adds /ipfs/CID to, as
// py-hamt 3.5 does: trailing slashes go, then one trailing /ipfs ("http://gw/ipfs/" is
// "http://gw", "https://gw/ipfs/ipfs" keeps one /ipfs, "https://gw:8443/sub" stays as it is).
func gatewayBase(s string) (string, error) {
	u, err := url.Parse(s)
	if err != nil {
		return "", err
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", fmt.Errorf("%q is not an http(s) URL", s)
	}
	if u.RawQuery != "" || u.Fragment != "" || u.ForceQuery {
		return "", fmt.Errorf("%q: a gateway URL has no query or fragment", s)
	}
	return strings.TrimSuffix(strings.TrimRight(s, "/"), "/ipfs"), nil
}

// urlOrigin is the origin of an http(s) URL, the unit credentials are scoped to:
// scheme://host:port, lower-cased, the scheme's default port made explicit.
func urlOrigin(u *url.URL) string {
	port := u.Port()
	if port == "" {
		port = "80"
		if strings.EqualFold(u.Scheme, "https") {
			port = "443"
		}
	}
	return strings.ToLower(u.Scheme) + "://" + net.JoinHostPort(strings.ToLower(u.Hostname()), port)
}

// originOf is urlOrigin of a URL string already checked by baseURL or gatewayBase.
func originOf(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return s
	}
	return urlOrigin(u)
}

// scopedRedirects wraps a client's CheckRedirect so that a redirect to another origin carries
// none of the headers the store scopes to origins (names): Go's client drops Authorization only
// when the host changes, keeps it across ports, and forwards every other header (X-API-Key, a
// custom token) wherever the redirect leads.
func scopedRedirects(names []string, next func(*http.Request, []*http.Request) error) func(*http.Request, []*http.Request) error {
	return func(req *http.Request, via []*http.Request) error {
		if urlOrigin(req.URL) != urlOrigin(via[0].URL) {
			for _, name := range names {
				req.Header.Del(name)
			}
		}
		if next != nil {
			return next(req, via)
		}
		if len(via) >= 10 {
			return errors.New("stopped after 10 redirects")
		}
		return nil
	}
}

// scopeHeaders gives each endpoint the headers meant for its origin: the store-wide ones
// (WithKuboHeader, WithKuboBasicAuth, WithKuboBearerToken) to the RPC's origin and the first
// gateway's, as py-hamt 3.5 does, and each WithKuboOriginHeader to its own. It returns every
// scoped header name, for scopedRedirects.
func scopeHeaders(global http.Header, perOrigin map[string]http.Header, rpc *kuboEndpoint, gateways []*kuboGateway) ([]string, error) {
	credentialed := map[string]bool{originOf(rpc.base): true, originOf(gateways[0].base): true}
	known := map[string]bool{}
	endpoints := []*kuboEndpoint{rpc}
	for _, g := range gateways {
		endpoints = append(endpoints, &g.kuboEndpoint)
	}
	for _, e := range endpoints {
		o := originOf(e.base)
		known[o] = true
		e.header = http.Header{}
		if credentialed[o] {
			for name, vs := range global {
				e.header[name] = slices.Clone(vs)
			}
		}
		for name, vs := range perOrigin[o] {
			e.header[name] = append(e.header[name], vs...)
		}
	}
	names := map[string]bool{}
	for name := range global {
		names[name] = true
	}
	for o, h := range perOrigin {
		if !known[o] {
			return nil, fmt.Errorf("WithKuboOriginHeader: %s is the origin of neither the RPC nor a gateway", o)
		}
		for name := range h {
			names[name] = true
		}
	}
	return slices.Sorted(func(yield func(string) bool) {
		for name := range names {
			if !yield(name) {
				return
			}
		}
	}), nil
}

// contentRangeMatches checks a 206 answer to a request for r: its Content-Range ("bytes s-e/N",
// N possibly "*") must be the window r selects and announce as many bytes as the body holds.
// py-hamt 3.5 rejects the same answers: a gateway that shifts or cuts the window would otherwise
// hand back bytes from elsewhere in the block, which no hash can catch.
func contentRangeMatches(header string, r ByteRange, n int) error {
	if header == "" {
		return errors.New("206 answer without a Content-Range")
	}
	bad := fmt.Errorf("malformed 206 Content-Range %q", header)
	spec, ok := strings.CutPrefix(header, "bytes ")
	if !ok {
		return bad
	}
	span, total, ok := strings.Cut(spec, "/")
	if !ok {
		return bad
	}
	first, last, ok := strings.Cut(span, "-")
	if !ok {
		return bad
	}
	s, err1 := strconv.ParseInt(first, 10, 64)
	e, err2 := strconv.ParseInt(last, 10, 64)
	if err1 != nil || err2 != nil || s < 0 || e < s {
		return bad
	}
	size := int64(-1)
	if total != "*" {
		var err error
		if size, err = strconv.ParseInt(total, 10, 64); err != nil || e >= size {
			return bad
		}
	}
	if e-s+1 != int64(n) {
		return fmt.Errorf("206 Content-Range %q announces %d bytes, the body holds %d", header, e-s+1, n)
	}
	var want bool
	if size >= 0 {
		ws, we := r.Bounds(size)
		want = s == ws && e+1 == we
	} else { // the size is unknown: only the bounds the request gives can be checked
		switch r.kind {
		case rangeBetween:
			want = s == r.a && e == r.b-1
		case rangeFrom:
			want = s == r.a
		case rangeSuffix:
			want = e-s+1 == r.a
		}
	}
	if !want {
		return fmt.Errorf("206 Content-Range %q does not match the requested %s", header, r)
	}
	return nil
}

// rangePastEnd reports whether a 416 answer to a request for r says what py-hamt 3.5 reads as
// "no bytes": a Content-Range "bytes */N" with the range starting at or past N (or N = 0).
func rangePastEnd(header string, r ByteRange) bool {
	total, ok := strings.CutPrefix(header, "bytes */")
	if !ok {
		return false
	}
	size, err := strconv.ParseInt(total, 10, 64)
	if err != nil || size < 0 {
		return false
	}
	start, end := r.Bounds(size)
	return start == end
}
