package hamt

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"mime/multipart"
	"net/http"
	"net/textproto"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/multiformats/go-multicodec"
	"github.com/multiformats/go-multihash"
)

// KuboCAS stores blocks on IPFS through a Kubo daemon: writes go to its RPC API (`add`), reads to
// one HTTP gateway or several (WithKuboGateways). It is safe for concurrent use; a semaphore
// bounds the requests in flight, reads and writes together (WithKuboConcurrency, default 32).
//
// Everything read by CID is verified: a block read whole is hashed and compared with its CID, a
// dag-pb file (a value larger than one chunk, read with ReadFile) comes as a CAR whose every block
// is verified before the file is reassembled, and a mismatch is ErrCorrupt, never data. Bytes of a
// raw block read by range (LoadRange) cannot be verified unless WithKuboVerifiedRanges makes it
// read whole blocks. A value saved whole is checked against the CID Kubo answers when that CID is
// a raw leaf.
//
// With several gateways a read tries them in the order of their health: a gateway that fails (a
// 404, an error left after its retries, bytes that do not match their CID, a 206 that is not the
// range asked for) hands the read to the next one, and after 3 failed reads in a row it rests for
// 30 s at the back of the order (a circuit breaker, WithKuboBreaker). Reads are hedged: when a
// gateway has not answered within its usual time (the 95th percentile of its recent answers), the
// next one is asked too and the first verified answer wins; the other is cancelled
// (WithKuboHedging). When every gateway fails, the error lists each one's failure.
//
// Transient failures (timeouts, refused or dropped connections, 429, 502, 503, 504; and any 5xx
// from a gateway or from add, as py-hamt 3.5 retries them) are retried with exponential backoff
// and jitter, honouring Retry-After (WithKuboRetries); other answers are not, and the error names
// the status and Kubo's message (*KuboError). A block no gateway has (each answered 404) is
// ErrNotFound. Credentials and headers go only to the origins they are meant for (WithKuboHeader,
// WithKuboOriginHeader), never to another gateway, not even through a redirect. Requests never
// carry an Origin header (Kubo's RPC refuses those).
type KuboCAS struct {
	rpc          kuboEndpoint
	gateways     []*kuboGateway // in configured order
	client       *http.Client
	ownClient    bool
	addQuery     string
	chunkSize    int64 // size-N chunker's N: values up to it come back as one raw leaf; 0 otherwise
	hashCode     uint64
	sem          chan struct{}
	timeout      time.Duration
	retries      int
	backoffMin   time.Duration
	backoffMax   time.Duration
	closed       atomic.Bool
	verifyRanges bool

	breakerFailures int
	breakerRest     time.Duration
	hedgeFixed      time.Duration // 0: each gateway's observed p95
	hedgeMax        int           // gateways asked at once by one read; 1: no hedging
	now             func() time.Time
	tel             *Telemetry // WithKuboTelemetry; nil: nothing recorded
}

// KuboOption configures a KuboCAS.
type KuboOption func(*kuboOptions) error

type kuboOptions struct {
	rpc                    string
	rpcSocket              string // a Unix socket the RPC API listens on (WithKuboAPI)
	gateways               []string
	client                 *http.Client
	header                 http.Header
	originHeader           map[string]http.Header // by origin, from WithKuboOriginHeader
	basicUser, basicPass   string
	basicSet               bool
	bearer                 string
	hash, chunker          string
	pin                    bool
	concurrency            int
	timeout                time.Duration
	retries                int
	backoffMin, backoffMax time.Duration
	breakerFailures        int
	breakerRest            time.Duration
	hedgeDelay             time.Duration
	hedgeMax               int
	verifyRanges           bool
	tel                    *Telemetry
}

// Defaults of a KuboCAS: those of py-hamt's KuboCAS and of a local Kubo daemon.
const (
	DefaultKuboRPC     = "http://127.0.0.1:5001"
	DefaultKuboGateway = "http://127.0.0.1:8080"
	DefaultKuboChunker = "size-1048576"
	DefaultKuboHash    = "blake3"
)

// WithKuboRPC sets the RPC API's base URL (default DefaultKuboRPC). WithKuboAPI sets it by
// multiaddr instead.
func WithKuboRPC(u string) KuboOption {
	return func(o *kuboOptions) error { o.rpc, o.rpcSocket = u, ""; return nil }
}

// WithKuboGateway sets the gateway's base URL (default DefaultKuboGateway): the same as
// WithKuboGateways(u).
func WithKuboGateway(u string) KuboOption {
	return WithKuboGateways(u)
}

// WithKuboGateways sets the gateways reads go to, replacing any set before, in the order they are
// preferred. A trailing /ipfs is cut, as py-hamt does ("http://gw:8080/ipfs/" is
// "http://gw:8080"); a URL given twice counts once. Reads fail over from one to the next and are
// hedged across them (see KuboCAS). The store-wide credentials and headers go to the first one
// only (and to the RPC); give the others theirs with WithKuboOriginHeader.
func WithKuboGateways(urls ...string) KuboOption {
	return func(o *kuboOptions) error {
		if len(urls) == 0 {
			return errors.New("WithKuboGateways(): need at least one gateway")
		}
		o.gateways = slices.Clone(urls)
		return nil
	}
}

// WithKuboOriginHeader adds a header sent only with requests to the origin (scheme, host and
// port) of u, which must be the RPC's or a gateway's: a gateway's own API key, or credentials for
// a second private gateway ("Authorization", "Bearer …"). Origin is refused, as by WithKuboHeader.
func WithKuboOriginHeader(u, name, value string) KuboOption {
	return func(o *kuboOptions) error {
		if http.CanonicalHeaderKey(name) == "Origin" {
			return errors.New("WithKuboOriginHeader(Origin): an Origin header makes Kubo's RPC refuse every request")
		}
		p, err := url.Parse(u)
		if err != nil || (p.Scheme != "http" && p.Scheme != "https") || p.Host == "" {
			return fmt.Errorf("WithKuboOriginHeader(%q): not an http(s) URL", u)
		}
		origin := urlOrigin(p)
		if o.originHeader[origin] == nil {
			o.originHeader[origin] = http.Header{}
		}
		o.originHeader[origin].Add(name, value)
		return nil
	}
}

// WithKuboBreaker sets each gateway's circuit breaker: after failures failed reads in a row
// (default DefaultKuboBreakerFailures) a gateway rests for rest (default
// DefaultKuboBreakerRest): it is tried only after every other gateway, until one read, the
// probe, finds it working again.
func WithKuboBreaker(failures int, rest time.Duration) KuboOption {
	return func(o *kuboOptions) error {
		if failures < 1 || rest <= 0 {
			return fmt.Errorf("WithKuboBreaker(%d, %v): want failures ≥ 1 and rest > 0", failures, rest)
		}
		o.breakerFailures, o.breakerRest = failures, rest
		return nil
	}
}

// WithKuboHedging sets hedged reads: a read whose gateway has not answered within delay asks the
// next gateway too, up to max gateways at once, and takes the first verified answer, cancelling
// the others. A delay of 0 (the default) is each gateway's own: the 95th percentile of its last
// 64 answer times, at least 10 ms, 200 ms until it has answered 8 times. max defaults to
// DefaultKuboHedgeMax; WithKuboHedging(0, 1) turns hedging off (a gateway is then asked only
// once the one before it has failed).
func WithKuboHedging(delay time.Duration, max int) KuboOption {
	return func(o *kuboOptions) error {
		if delay < 0 || max < 1 {
			return fmt.Errorf("WithKuboHedging(%v, %d): want delay ≥ 0 and max ≥ 1", delay, max)
		}
		o.hedgeDelay, o.hedgeMax = delay, max
		return nil
	}
}

// WithKuboVerifiedRanges makes LoadRange read the whole block, verify it against its CID and
// slice it, instead of sending a Range request whose partial answer no hash can check: a byte
// range then fails over from a gateway that serves wrong bytes like any other read. It costs the
// block's whole transfer (up to one chunk, 1 MiB by default) per range.
func WithKuboVerifiedRanges(on bool) KuboOption {
	return func(o *kuboOptions) error { o.verifyRanges = on; return nil }
}

// WithKuboHTTPClient makes the store send its requests with c, which it never closes (with
// credentials or headers configured, through a copy of c whose CheckRedirect first drops them on a
// redirect to another origin). Without it the store makes its own client, whose idle connections
// Close closes.
func WithKuboHTTPClient(c *http.Client) KuboOption {
	return func(o *kuboOptions) error {
		if c == nil {
			return errors.New("WithKuboHTTPClient(nil): need a client")
		}
		o.client = c
		return nil
	}
}

// WithKuboHeader adds a header to every request to the RPC and to the first gateway: the
// credentialed origins, as py-hamt 3.5 calls them. Other gateways never see it (give them theirs
// with WithKuboOriginHeader). Origin is refused: Kubo's RPC answers 403 to any request that has
// one.
func WithKuboHeader(name, value string) KuboOption {
	return func(o *kuboOptions) error {
		if http.CanonicalHeaderKey(name) == "Origin" {
			return errors.New("WithKuboHeader(Origin): an Origin header makes Kubo's RPC refuse every request")
		}
		o.header.Add(name, value)
		return nil
	}
}

// WithKuboBasicAuth sends HTTP basic authentication with every request to the RPC and to the
// first gateway (see WithKuboHeader).
func WithKuboBasicAuth(user, password string) KuboOption {
	return func(o *kuboOptions) error {
		o.basicUser, o.basicPass, o.basicSet = user, password, true
		return nil
	}
}

// WithKuboBearerToken sends "Authorization: Bearer token" with every request to the RPC and to
// the first gateway (see WithKuboHeader).
func WithKuboBearerToken(token string) KuboOption {
	return func(o *kuboOptions) error { o.bearer = token; return nil }
}

// WithKuboHash sets the multihash Kubo hashes blocks with, by its multihash table name (default
// "blake3", which py-hamt uses). Every add asks for cid-version=1, as py-hamt 3.5 does, so values
// come back as raw CIDv1 leaves with sha2-256 too.
func WithKuboHash(name string) KuboOption {
	return func(o *kuboOptions) error { o.hash = name; return nil }
}

// WithKuboChunker sets Kubo's chunker (default DefaultKuboChunker). It is checked before any
// request by the parser Kubo itself uses (boxo's): "size-N" with 1 ≤ N ≤ 2096896, "rabin",
// "rabin-AVG", "rabin-MIN-AVG-MAX", "buzhash".
func WithKuboChunker(spec string) KuboOption {
	return func(o *kuboOptions) error { o.chunker = spec; return nil }
}

// WithKuboPinOnAdd makes every Save pin what it adds (pin=true); by default nothing is pinned, and
// a user pins a flushed root with Pin. Each block saved so becomes a recursive pin of its own:
// thousands of pins for one map, left behind as it changes. One Pin of the flushed root (PinUpdate
// from the previous one) keeps the same blocks with one pin.
func WithKuboPinOnAdd(pin bool) KuboOption {
	return func(o *kuboOptions) error { o.pin = pin; return nil }
}

// WithKuboConcurrency bounds the requests in flight at once, reads and writes together (default
// 32).
func WithKuboConcurrency(n int) KuboOption {
	return func(o *kuboOptions) error {
		if n < 1 {
			return fmt.Errorf("WithKuboConcurrency(%d): need at least 1", n)
		}
		o.concurrency = n
		return nil
	}
}

// WithKuboTimeout bounds each request attempt, body included (default 60 s; 0 for none). A
// timed-out attempt is retried.
func WithKuboTimeout(d time.Duration) KuboOption {
	return func(o *kuboOptions) error {
		if d < 0 {
			return fmt.Errorf("WithKuboTimeout(%v): must not be negative", d)
		}
		o.timeout = d
		return nil
	}
}

// WithKuboRetries sets how many times a transient failure is retried (default 5; 0 for none) and
// the backoff between attempts: it starts at min and doubles up to max (defaults 100 ms and 10 s),
// each wait drawn at random between half of it and all of it. A 429 or 503 answer's Retry-After
// is honoured up to max.
func WithKuboRetries(n int, min, max time.Duration) KuboOption {
	return func(o *kuboOptions) error {
		if n < 0 || min <= 0 || max < min {
			return fmt.Errorf("WithKuboRetries(%d, %v, %v): want retries ≥ 0 and 0 < min ≤ max", n, min, max)
		}
		o.retries, o.backoffMin, o.backoffMax = n, min, max
		return nil
	}
}

// NewKuboCAS returns a store on the Kubo daemon the options name (by default the local one). It
// sends no request: a daemon that is down shows on the first Save or Load.
func NewKuboCAS(opts ...KuboOption) (*KuboCAS, error) {
	o := kuboOptions{
		rpc: DefaultKuboRPC, gateways: []string{DefaultKuboGateway}, header: http.Header{}, originHeader: map[string]http.Header{},
		hash: DefaultKuboHash, chunker: DefaultKuboChunker, concurrency: 32,
		timeout: 60 * time.Second, retries: 5, backoffMin: 100 * time.Millisecond, backoffMax: 10 * time.Second,
		breakerFailures: DefaultKuboBreakerFailures, breakerRest: DefaultKuboBreakerRest, hedgeMax: DefaultKuboHedgeMax,
	}
	for _, opt := range opts {
		if err := opt(&o); err != nil {
			return nil, err
		}
	}
	rpc, err := baseURL(o.rpc)
	if err != nil {
		return nil, fmt.Errorf("hamt: kubo rpc: %w", err)
	}
	var gateways []*kuboGateway
	seen := map[string]bool{}
	for _, u := range o.gateways {
		base, err := gatewayBase(u)
		if err != nil {
			return nil, fmt.Errorf("hamt: kubo gateway: %w", err)
		}
		if !seen[base] {
			seen[base] = true
			gateways = append(gateways, &kuboGateway{kuboEndpoint: kuboEndpoint{base: base, gateway: true}})
		}
	}
	if o.chunker == "" {
		return nil, errors.New("hamt: kubo chunker: empty, want e.g. " + DefaultKuboChunker)
	}
	if err := checkKuboChunker(o.chunker); err != nil {
		return nil, fmt.Errorf("hamt: kubo chunker %q: %w", o.chunker, err)
	}
	mh, ok := multihash.Names[o.hash]
	if !ok {
		return nil, fmt.Errorf("hamt: kubo hash %q is not a multihash name", o.hash)
	}
	if o.rpcSocket != "" && o.client != nil {
		return nil, errors.New("hamt: kubo: an RPC API on a Unix socket needs the store's own HTTP client, not WithKuboHTTPClient's")
	}
	if o.basicSet && o.bearer != "" {
		return nil, errors.New("hamt: kubo: basic auth and a bearer token both set")
	}
	k := &KuboCAS{
		rpc: kuboEndpoint{base: rpc}, gateways: gateways, client: o.client, hashCode: mh,
		sem: make(chan struct{}, o.concurrency), timeout: o.timeout, retries: o.retries,
		backoffMin: o.backoffMin, backoffMax: o.backoffMax, verifyRanges: o.verifyRanges,
		breakerFailures: o.breakerFailures, breakerRest: o.breakerRest,
		hedgeFixed: o.hedgeDelay, hedgeMax: o.hedgeMax, now: time.Now, tel: o.tel,
	}
	global := o.header.Clone()
	if o.basicSet {
		r := &http.Request{Header: http.Header{}}
		r.SetBasicAuth(o.basicUser, o.basicPass)
		global.Set("Authorization", r.Header.Get("Authorization"))
	} else if o.bearer != "" {
		global.Set("Authorization", "Bearer "+o.bearer)
	}
	scoped, err := scopeHeaders(global, o.originHeader, &k.rpc, gateways)
	if err != nil {
		return nil, fmt.Errorf("hamt: kubo: %w", err)
	}
	if k.client == nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.MaxIdleConnsPerHost = o.concurrency
		if o.rpcSocket != "" {
			dialUnixRPC(tr, o.rpcSocket)
		}
		k.client, k.ownClient = &http.Client{Transport: tr}, true
	}
	if len(scoped) > 0 {
		c := *k.client // a copy: the caller's client keeps its own CheckRedirect
		c.CheckRedirect = scopedRedirects(scoped, c.CheckRedirect)
		k.client = &c
	}
	if n, ok := strings.CutPrefix(o.chunker, "size-"); ok {
		k.chunkSize, _ = strconv.ParseInt(n, 10, 64)
	}
	// Built by hand, not url.Values.Encode (which sorts): the order py-hamt 3.5 sends.
	k.addQuery = "hash=" + url.QueryEscape(o.hash) + "&chunker=" + url.QueryEscape(o.chunker) + "&pin=" + strconv.FormatBool(o.pin) + "&cid-version=1"
	return k, nil
}

// baseURL checks an http(s) URL and trims it to a base (no trailing slash).
func baseURL(s string) (string, error) {
	u, err := url.Parse(s)
	if err != nil {
		return "", err
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", fmt.Errorf("%q is not an http(s) URL", s)
	}
	return strings.TrimRight(s, "/"), nil
}

// Close releases the store's own HTTP client's idle connections; a caller's client is left alone.
// Calls after Close fail.
func (k *KuboCAS) Close() error {
	if k.closed.Swap(true) {
		return nil
	}
	if k.ownClient {
		k.client.CloseIdleConnections()
	}
	return nil
}

// KuboError is an answer from Kubo that is neither a success nor a transient failure left after
// the retries: its HTTP status and Kubo's message.
type KuboError struct {
	Op      string // "add", "load", "pin/add", …
	URL     string
	Status  int
	Message string // Kubo's JSON "Message", or the body's text

	contentRange string // of a 416 answer
}

func (e *KuboError) Error() string {
	msg := e.Message
	if msg == "" {
		msg = http.StatusText(e.Status)
	}
	return fmt.Sprintf("kubo %s: HTTP %d: %s", e.Op, e.Status, msg)
}

// retryable reports whether an answer with this status may succeed if sent again.
func retryableStatus(status int) bool {
	switch status {
	case http.StatusTooManyRequests, http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return true
	}
	return false
}

// retry5xx reports whether any 5xx answer to op on ep is retried. py-hamt 3.5 retries every 5xx
// of a gateway and of add. Two answer with 500 what a retry would not mend: the RPC's other
// commands their own failures (pinning an absent block), and boxo's gateway a suffix range longer
// than the block (LoadRange then reads the block whole).
func retry5xx(ep *kuboEndpoint, op string) bool {
	return op == "add" || ep.gateway && op != opLoadSuffix
}

// opLoadSuffix is the op of a suffix range request.
const opLoadSuffix = "load suffix"

// transientError marks a failure worth retrying: a transport error, a body cut short, a retryable
// status. after is a server's Retry-After, if it gave one.
type transientError struct {
	err   error
	after time.Duration
}

func (e *transientError) Error() string { return e.err.Error() }
func (e *transientError) Unwrap() error { return e.err }

// call sends the request newReq makes to endpoint ep, with the headers scoped to its origin,
// retrying transient failures, and gives the response to handle unless its status is an error
// (>= 400), which becomes a *KuboError. handle runs under the request's semaphore slot and
// timeout; an error it returns from reading the body is retried, any other it must return as is.
func (k *KuboCAS) call(ctx context.Context, ep *kuboEndpoint, op string, newReq func(context.Context) (*http.Request, error), handle func(*http.Response) error) error {
	if k.closed.Load() {
		return fmt.Errorf("kubo %s: store closed", op)
	}
	for attempt := 0; ; attempt++ {
		err := k.attempt(ctx, ep, op, newReq, handle)
		var te *transientError
		if err == nil || !errors.As(err, &te) || ctx.Err() != nil {
			if ctx.Err() != nil && err != nil {
				return fmt.Errorf("kubo %s: %w", op, context.Cause(ctx))
			}
			return err
		}
		if attempt >= k.retries {
			return fmt.Errorf("kubo %s: giving up after %d attempts: %w", op, attempt+1, te.err)
		}
		retried(ctx, op, attempt, te.err)
		wait := min(k.backoffMin<<attempt, k.backoffMax)
		wait = wait/2 + rand.N(wait/2+1)
		if te.after > 0 {
			wait = min(te.after, k.backoffMax)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("kubo %s: %w", op, context.Cause(ctx))
		case <-t.C:
		}
	}
}

// attempt makes one try of call.
func (k *KuboCAS) attempt(ctx context.Context, ep *kuboEndpoint, op string, newReq func(context.Context) (*http.Request, error), handle func(*http.Response) error) error {
	select {
	case k.sem <- struct{}{}:
	case <-ctx.Done():
		return context.Cause(ctx)
	}
	defer func() { <-k.sem }()
	var actx context.Context
	var cancel context.CancelFunc
	if k.timeout > 0 {
		actx, cancel = context.WithTimeout(ctx, k.timeout)
	} else {
		actx, cancel = context.WithCancel(ctx)
	}
	defer cancel()
	req, err := newReq(actx)
	if err != nil {
		return fmt.Errorf("kubo %s: %w", op, err)
	}
	for name, vs := range ep.header {
		req.Header[name] = append(req.Header[name], vs...)
	}
	resp, err := k.client.Do(req)
	if err != nil {
		return &transientError{err: fmt.Errorf("kubo %s: %w", op, err)}
	}
	defer closeBody(resp.Body, cancel)
	if resp.StatusCode >= 400 {
		t := time.AfterFunc(drainTime, cancel) // an error page that trickles is not waited for
		msg := kuboMessage(resp.Body)
		t.Stop()
		kerr := &KuboError{Op: op, URL: req.URL.Redacted(), Status: resp.StatusCode, Message: msg,
			contentRange: resp.Header.Get("Content-Range")}
		if retryableStatus(resp.StatusCode) || resp.StatusCode >= 500 && retry5xx(ep, op) {
			return &transientError{err: kerr, after: retryAfter(resp.Header.Get("Retry-After"))}
		}
		return kerr
	}
	if err := handle(resp); err != nil {
		var be *bodyError
		if errors.As(err, &be) {
			return &transientError{err: fmt.Errorf("kubo %s: reading the answer: %w", op, be.err)}
		}
		return err
	}
	return nil
}

// What closeBody reads of an answer's rest to keep its connection: at most drainLimit bytes for
// at most drainTime (an error page after the part quoted, a CAR abandoned at a bad block). An
// error page is read for its message for at most drainTime too.
const (
	drainLimit = 256 << 10
	drainTime  = time.Second
)

// closeBody reads what is left of a response body, within drainLimit and drainTime, and closes
// it. Go's transport reuses a keep-alive connection only when its body was read to the end; one
// closed early is dropped, and the next request dials again. cancel, the request's, ends a drain
// that takes too long.
func closeBody(body io.ReadCloser, cancel context.CancelFunc) {
	t := time.AfterFunc(drainTime, cancel)
	_, _ = io.Copy(io.Discard, io.LimitReader(body, drainLimit))
	t.Stop()
	_ = body.Close()
}

// bodyError is a failure to read a response body (a dropped connection, a timeout mid-body).
type bodyError struct{ err error }

func (e *bodyError) Error() string { return e.err.Error() }

// maxBodyPreGrow is the most readBody allocates ahead on an answer's Content-Length: a block
// Kubo exchanges is at most 2 MiB; a larger body grows as it arrives.
const maxBodyPreGrow = 4 << 20

// readBody reads a whole response body, marking a failure as a bodyError.
func readBody(resp *http.Response) ([]byte, error) {
	var buf bytes.Buffer
	if resp.ContentLength > 0 {
		// The header is the server's word, not bytes received: a gateway claiming a terabyte must
		// not make this process allocate it (a fatal out of memory, not an error).
		buf.Grow(int(min(resp.ContentLength, maxBodyPreGrow)))
	}
	if _, err := buf.ReadFrom(resp.Body); err != nil {
		return nil, &bodyError{err}
	}
	return buf.Bytes(), nil
}

// kuboMessage returns the message of an error answer: the JSON "Message" of Kubo's RPC errors, or
// the (shortened) text of the body.
func kuboMessage(body io.Reader) string {
	b, _ := io.ReadAll(io.LimitReader(body, 4096))
	var e struct{ Message string }
	if json.Unmarshal(b, &e) == nil && e.Message != "" {
		return e.Message
	}
	return strings.TrimSpace(string(b))
}

// retryAfter parses a Retry-After header, given in seconds or as an HTTP date (the time left
// until it); 0 when absent, unparsable or past.
func retryAfter(h string) time.Duration {
	h = strings.TrimSpace(h)
	if s, err := strconv.Atoi(h); err == nil {
		if s > 0 {
			return time.Duration(min(s, 1<<30)) * time.Second
		}
		return 0
	}
	if t, err := http.ParseTime(h); err == nil {
		return max(time.Until(t), 0)
	}
	return 0
}

// ErrBlockTooLarge is a block KuboCAS cannot store as one block: a node (dag-cbor) larger than
// the chunk size of Kubo's add, which would cut it into a UnixFS file. A HAMT node is far below
// the default 1 MiB; a shard of the sharded layout reaches it only above about 26,000 chunks per
// shard.
var ErrBlockTooLarge = errors.New("block too large to store as one block")

// Save adds data through the RPC API and returns its CID with the codec asked for: Kubo answers
// CIDv1(raw, hash(data)) for data of up to one chunk, which is relabelled to codec (so a node
// saved as dag-cbor gets its dag-cbor CID); a larger value's dag-pb UnixFS root is kept as it is.
func (k *KuboCAS) Save(ctx context.Context, data []byte, codec multicodec.Code) (cid.Cid, error) {
	if t := k.tel; t != nil {
		return t.saveOne(ctx, kuboStore, codec, len(data), func(ctx context.Context) (cid.Cid, error) { return k.save(ctx, data, codec) })
	}
	return k.save(ctx, data, codec)
}

// save is Save.
func (k *KuboCAS) save(ctx context.Context, data []byte, codec multicodec.Code) (cid.Cid, error) {
	var head bytes.Buffer
	mw := multipart.NewWriter(&head)
	ph := textproto.MIMEHeader{}
	ph.Set("Content-Disposition", `form-data; name="file"; filename="upload"`)
	ph.Set("Content-Type", "application/octet-stream")
	if _, err := mw.CreatePart(ph); err != nil {
		return cid.Undef, err
	}
	prefix := slices.Clone(head.Bytes())
	head.Reset()
	if err := mw.Close(); err != nil {
		return cid.Undef, err
	}
	suffix := head.Bytes()
	size := int64(len(prefix) + len(data) + len(suffix))
	u := k.rpc.base + "/api/v0/add?" + k.addQuery

	var answer struct{ Hash string }
	err := k.call(ctx, &k.rpc, "add", func(ctx context.Context) (*http.Request, error) {
		body := io.MultiReader(bytes.NewReader(prefix), bytes.NewReader(data), bytes.NewReader(suffix))
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, body)
		if err != nil {
			return nil, err
		}
		req.ContentLength = size
		req.Header.Set("Content-Type", mw.FormDataContentType())
		return req, nil
	}, func(resp *http.Response) error {
		br := bufio.NewReader(resp.Body)
		line, err := br.ReadBytes('\n')
		if err != nil && !errors.Is(err, io.EOF) {
			return &bodyError{err}
		}
		if err := json.Unmarshal(line, &answer); err != nil || answer.Hash == "" {
			return fmt.Errorf("kubo add: unexpected answer %.200q", line)
		}
		// The add is over when its stream ends (with pin=true it pins after the line above), and
		// a failure after the line comes as go-ipfs-cmds' X-Stream-Error trailer, which is only
		// there once the body is read to its end. Read that way, the connection is reused too.
		if _, err := io.Copy(io.Discard, io.LimitReader(br, drainLimit)); err != nil {
			return &bodyError{err}
		}
		if msg := resp.Trailer.Get("X-Stream-Error"); msg != "" {
			return &KuboError{Op: "add", URL: resp.Request.URL.Redacted(), Status: resp.StatusCode, Message: msg}
		}
		return nil
	})
	if err != nil {
		return cid.Undef, err
	}
	got, err := cid.Decode(answer.Hash)
	if err != nil {
		return cid.Undef, fmt.Errorf("kubo add: answer %q: %w", answer.Hash, err)
	}
	if got.Prefix().Codec == uint64(multicodec.DagPb) {
		if codec != multicodec.Raw && codec != multicodec.DagPb {
			// Kubo cut a node (a shard, say) into a UnixFS file: its CID would name the file, not
			// a block of codec, and the map could not read it back as one.
			return cid.Undef, fmt.Errorf("kubo add: a %d-byte %s block came back as a UnixFS file %s: %w", len(data), codec, got, ErrBlockTooLarge)
		}
		return got, nil
	}
	// A raw leaf: its multihash must be data's. Check it (cheap, and it catches a server or
	// proxy that answers for other bytes) before relabelling.
	leaf := cid.NewCidV1(uint64(multicodec.Raw), got.Hash())
	if err := verifyBlock(leaf, data); err != nil {
		return cid.Undef, fmt.Errorf("kubo add: answered %s for %d bytes: %w", got, len(data), err)
	}
	return cid.NewCidV1(uint64(codec), got.Hash()), nil
}

// Load returns the bytes of block id, verified against it, read by the gateways' raw-block form.
// A dag-pb CID gives its own block, as in every store; ReadFile reads the file it heads. A block
// no gateway has is ErrNotFound.
func (k *KuboCAS) Load(ctx context.Context, id cid.Cid) ([]byte, error) {
	if t := k.tel; t != nil {
		return t.load(ctx, kuboStore, id, false, func(ctx context.Context) ([]byte, error) { return k.load(ctx, id) })
	}
	return k.load(ctx, id)
}

// load is Load.
func (k *KuboCAS) load(ctx context.Context, id cid.Cid) ([]byte, error) {
	if !id.Defined() {
		return nil, fmt.Errorf("kubo load: undefined CID: %w", ErrNotFound)
	}
	if b, ok, err := identityBlock(id); ok { // answered from the CID, without a request
		if err != nil {
			return nil, fmt.Errorf("kubo load: %w", err)
		}
		return b, nil
	}
	return readGateways(ctx, k, "load", id, func(ctx context.Context, g *kuboGateway, answered func()) ([]byte, error) {
		return k.loadFrom(ctx, g, id, answered)
	})
}

// loadFrom reads block id whole from gateway g and verifies it.
func (k *KuboCAS) loadFrom(ctx context.Context, g *kuboGateway, id cid.Cid, answered func()) ([]byte, error) {
	var b []byte
	err := k.call(ctx, &g.kuboEndpoint, "load", func(ctx context.Context) (*http.Request, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, g.base+"/ipfs/"+id.String()+"?format=raw", nil)
		if err == nil {
			req.Header.Set("Accept", "application/vnd.ipld.raw")
		}
		return req, err
	}, func(resp *http.Response) error {
		answered()
		var err error
		b, err = readBody(resp)
		return err
	})
	if err != nil {
		return nil, err
	}
	if err := verifyBlock(id, b); err != nil {
		return nil, fmt.Errorf("kubo load: %w", err)
	}
	return b, nil
}

// verifiesLoads marks KuboCAS as a store that verifies every block it loads.
func (k *KuboCAS) verifiesLoads() {}

// notFound adds ErrNotFound to a 404 of the store's only gateway.
func notFound(id cid.Cid, err error) error {
	var ke *KuboError
	if errors.As(err, &ke) && ke.Status == http.StatusNotFound {
		return fmt.Errorf("load %s: %w (%w)", id, ErrNotFound, err)
	}
	return err
}

// ReadFile returns the bytes r selects of the UnixFS file rooted at dag-pb block id in one
// request: the gateway's trustless CAR of the blocks that hold them (format=car,
// dag-scope=entity, and for a range entity-bytes=from:to, which the gateway resolves with the
// same blocksizes as readFile). Every block of the answer is verified against its CID and the file
// is reassembled by the core's reader, which checks its structure; a block the answer lacks is
// loaded on its own. When the CAR request fails (a gateway without entity-bytes, a range past the
// end) the file is read block by block.
func (k *KuboCAS) ReadFile(ctx context.Context, id cid.Cid, r ByteRange) ([]byte, error) {
	if t := k.tel; t != nil {
		return t.load(ctx, kuboStore, id, !r.IsFull(), func(ctx context.Context) ([]byte, error) { return k.readFile(ctx, id, r) })
	}
	return k.readFile(ctx, id, r)
}

// readFile is ReadFile.
func (k *KuboCAS) readFile(ctx context.Context, id cid.Cid, r ByteRange) ([]byte, error) {
	if err := r.Validate(); err != nil {
		return nil, err
	}
	if id.Prefix().Codec != uint64(multicodec.DagPb) {
		return nil, fmt.Errorf("kubo read file %s: not a dag-pb root", id)
	}
	q := "?format=car&dag-scope=entity"
	switch {
	case r.Empty():
		q = "" // no bytes: only the root is needed, read by Load
	case r.kind == rangeBetween:
		q += fmt.Sprintf("&entity-bytes=%d:%d", r.a, r.b-1)
	case r.kind == rangeFrom:
		q += fmt.Sprintf("&entity-bytes=%d:*", r.a)
	case r.kind == rangeSuffix:
		q += fmt.Sprintf("&entity-bytes=-%d:*", r.a)
	}
	fetched := carBlocks{blocks: map[cidBytes][]byte{}, rest: k}
	if q != "" {
		blocks, err := readGateways(ctx, k, "load", id, func(ctx context.Context, g *kuboGateway, answered func()) (map[cidBytes][]byte, error) {
			return k.carFrom(ctx, g, id, q, answered)
		})
		if err != nil && (ctx.Err() != nil || errors.Is(err, ErrNotFound)) {
			return nil, err
		}
		if err == nil {
			fetched.blocks = blocks
		}
	}
	b, err := readFile(ctx, fetched, id, r, false)
	if err != nil {
		return nil, fmt.Errorf("kubo read file: %w", err)
	}
	return b, nil
}

// carFrom reads gateway g's CAR for id with query q, every block verified.
func (k *KuboCAS) carFrom(ctx context.Context, g *kuboGateway, id cid.Cid, q string, answered func()) (map[cidBytes][]byte, error) {
	blocks := map[cidBytes][]byte{}
	err := k.call(ctx, &g.kuboEndpoint, "load", func(ctx context.Context) (*http.Request, error) {
		clear(blocks)
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, g.base+"/ipfs/"+id.String()+q, nil)
		if err == nil {
			req.Header.Set("Accept", "application/vnd.ipld.car")
		}
		return req, err
	}, func(resp *http.Response) error {
		answered()
		br, err := newCARReader(bufio.NewReader(resp.Body))
		if err != nil {
			return &bodyError{err}
		}
		for {
			bid, data, err := br.next()
			if errors.Is(err, io.EOF) {
				return nil
			}
			if err != nil {
				return &bodyError{err}
			}
			if err := verifyBlock(bid, data); err != nil {
				return fmt.Errorf("kubo load %s: CAR block: %w", id, err)
			}
			blocks[cidKey(bid)] = data
		}
	})
	return blocks, err
}

// carBlocks is a CAS over blocks already fetched (and verified), loading any other block from
// rest.
type carBlocks struct {
	blocks map[cidBytes][]byte
	rest   CAS
}

func (c carBlocks) Save(ctx context.Context, data []byte, codec multicodec.Code) (cid.Cid, error) {
	return c.rest.Save(ctx, data, codec)
}

func (c carBlocks) Load(ctx context.Context, id cid.Cid) ([]byte, error) {
	if b, ok := c.blocks[cidKey(id)]; ok {
		return b, nil
	}
	return c.rest.Load(ctx, id)
}

// LoadRange reads the bytes of block id that r selects with an HTTP Range request to the
// gateways ("bytes=s-e", "bytes=s-", "bytes=-n"). Partial bytes cannot be checked against the CID
// (WithKuboVerifiedRanges reads whole blocks instead); a gateway that answers with the whole block
// is verified and sliced, a 206 whose Content-Range is not the window asked for is refused (and
// the next gateway asked), and a 416 "bytes */N" for a range starting past the end is no bytes. A
// range that selects nothing whatever the size sends no request. A dag-pb block (small: a file's
// node) is loaded whole, verified and sliced: the gateway would range over its file instead.
func (k *KuboCAS) LoadRange(ctx context.Context, id cid.Cid, r ByteRange) ([]byte, error) {
	if t := k.tel; t != nil {
		return t.load(ctx, kuboStore, id, true, func(ctx context.Context) ([]byte, error) { return k.loadRange(ctx, id, r) })
	}
	return k.loadRange(ctx, id, r)
}

// loadRange is LoadRange.
func (k *KuboCAS) loadRange(ctx context.Context, id cid.Cid, r ByteRange) ([]byte, error) {
	if err := r.Validate(); err != nil {
		return nil, err
	}
	if r.Empty() {
		return []byte{}, nil
	}
	if r.IsFull() || k.verifyRanges || id.Prefix().Codec == uint64(multicodec.DagPb) || isIdentity(cidKey(id)) {
		b, err := k.load(ctx, id)
		if err != nil {
			return nil, err
		}
		return r.Slice(b), nil
	}
	return readGateways(ctx, k, "load range", id, func(ctx context.Context, g *kuboGateway, answered func()) ([]byte, error) {
		return k.rangeFrom(ctx, g, id, r, answered)
	})
}

// rangeFrom reads the bytes r selects of block id from gateway g.
func (k *KuboCAS) rangeFrom(ctx context.Context, g *kuboGateway, id cid.Cid, r ByteRange, answered func()) ([]byte, error) {
	var b []byte
	var whole bool
	var contentRange string
	op := "load range"
	if r.kind == rangeSuffix {
		op = opLoadSuffix
	}
	err := k.call(ctx, &g.kuboEndpoint, op, func(ctx context.Context) (*http.Request, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, g.base+"/ipfs/"+id.String(), nil)
		if err == nil {
			req.Header.Set("Range", r.String())
		}
		return req, err
	}, func(resp *http.Response) error {
		if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusPartialContent {
			return fmt.Errorf("kubo load range %s: unexpected %d answer to a Range request", id, resp.StatusCode)
		}
		answered()
		whole, contentRange = resp.StatusCode == http.StatusOK, resp.Header.Get("Content-Range")
		var err error
		b, err = readBody(resp)
		return err
	})
	var ke *KuboError
	switch {
	case errors.As(err, &ke) && ke.Status == http.StatusRequestedRangeNotSatisfiable && rangePastEnd(ke.contentRange, r):
		return []byte{}, nil // the range starts past the end: no bytes, as Bounds says
	case errors.As(err, &ke) && ke.Status != http.StatusNotFound && r.kind == rangeSuffix:
		// boxo's gateway refuses a suffix longer than the content ("negative start bigger than
		// the file size") where Bounds gives the whole value: read it whole, from the same gateway.
		b, err := k.loadFrom(ctx, g, id, answered)
		if err != nil {
			return nil, err
		}
		return r.Slice(b), nil
	case err != nil:
		return nil, err
	case whole:
		if err := verifyBlock(id, b); err != nil {
			return nil, fmt.Errorf("kubo load range: %w", err)
		}
		return r.Slice(b), nil
	}
	if err := contentRangeMatches(contentRange, r, len(b)); err != nil {
		return nil, fmt.Errorf("kubo load range %s: %w", id, err)
	}
	return b, nil
}

// BlockSize returns the size of block id from a HEAD request to the gateways; a dag-pb block
// (whose HEAD would give its file's size) is loaded instead.
func (k *KuboCAS) BlockSize(ctx context.Context, id cid.Cid) (int64, error) {
	if id.Prefix().Codec == uint64(multicodec.DagPb) || isIdentity(cidKey(id)) { // Load answers an identity CID itself
		b, err := k.Load(ctx, id)
		return int64(len(b)), err
	}
	n, err := readGateways(ctx, k, "size", id, func(ctx context.Context, g *kuboGateway, answered func()) (int64, error) {
		var n int64 = -1
		err := k.call(ctx, &g.kuboEndpoint, "size", func(ctx context.Context) (*http.Request, error) {
			return http.NewRequestWithContext(ctx, http.MethodHead, g.base+"/ipfs/"+id.String(), nil)
		}, func(resp *http.Response) error {
			answered()
			n = resp.ContentLength
			return nil
		})
		return n, err
	})
	if err != nil {
		return 0, err
	}
	if n < 0 {
		b, err := k.Load(ctx, id)
		return int64(len(b)), err
	}
	return n, nil
}

// rpcCall posts to an RPC endpoint with the given arguments and decodes the JSON answer into out
// (when not nil).
func (k *KuboCAS) rpcCall(ctx context.Context, op string, q url.Values, out any) error {
	u := k.rpc.base + "/api/v0/" + op + "?" + q.Encode()
	return k.call(ctx, &k.rpc, op, func(ctx context.Context) (*http.Request, error) {
		return http.NewRequestWithContext(ctx, http.MethodPost, u, nil)
	}, func(resp *http.Response) error {
		b, err := readBody(resp)
		if err != nil || out == nil {
			return err
		}
		if err := json.Unmarshal(b, out); err != nil {
			return fmt.Errorf("kubo %s: unexpected answer %.200q: %w", op, b, err)
		}
		return nil
	})
}

// Pin pins id and everything it links to on the daemon (pin/add, recursive), so a flushed map's
// root and all its nodes and values survive garbage collection.
func (k *KuboCAS) Pin(ctx context.Context, id cid.Cid) error {
	return k.rpcCall(ctx, "pin/add", url.Values{"arg": {id.String()}, "recursive": {"true"}}, nil)
}

// Unpin removes the recursive pin of id (pin/rm).
func (k *KuboCAS) Unpin(ctx context.Context, id cid.Cid) error {
	return k.rpcCall(ctx, "pin/rm", url.Values{"arg": {id.String()}, "recursive": {"true"}}, nil)
}

// PinUpdate moves a recursive pin from old to new (pin/update, unpinning old), the cheap way to
// pin a map's new root after a flush: only the changed part of the tree is walked.
func (k *KuboCAS) PinUpdate(ctx context.Context, old, new cid.Cid) error {
	return k.rpcCall(ctx, "pin/update", url.Values{"arg": {old.String(), new.String()}, "unpin": {"true"}}, nil)
}

// ListPins returns the daemon's recursive pins, sorted.
func (k *KuboCAS) ListPins(ctx context.Context) ([]cid.Cid, error) {
	var answer struct {
		Keys map[string]struct{ Type string }
	}
	if err := k.rpcCall(ctx, "pin/ls", url.Values{"type": {"recursive"}}, &answer); err != nil {
		return nil, err
	}
	out := make([]cid.Cid, 0, len(answer.Keys))
	for s := range answer.Keys {
		c, err := cid.Decode(s)
		if err != nil {
			return nil, fmt.Errorf("kubo pin/ls: %q: %w", s, err)
		}
		out = append(out, c)
	}
	slices.SortFunc(out, func(a, b cid.Cid) int { return strings.Compare(a.KeyString(), b.KeyString()) })
	return out, nil
}
