package hamt

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/multiformats/go-multicodec"
)

// This file reads a whole DAG from the gateways as one trustless CAR stream, instead of a
// request per block.

// kuboCARAccept asks a trustless gateway for a CARv1 in depth-first order without duplicates
// (IPIP-412), which is also what Kubo sends by default.
const kuboCARAccept = "application/vnd.ipld.car; version=1; order=dfs; dups=n"

// ExportCAR writes the DAG at root, every block it reaches, to w as a CARv1 in one request: the
// gateway's trustless CAR (?format=car&dag-scope=all), copied to w as it arrives and checked
// block by block meanwhile (see ErrUnexpectedBlock): every block hashes to its CID (ErrCorrupt),
// is the root or linked from a block before it and comes once, and nothing the DAG links to is
// missing when the stream ends (ErrMissingBlock). Memory stays bounded whatever the DAG's size:
// block data is never held, only what is still expected and about 100 bytes per block read. It
// returns the number of blocks.
//
// It works for any DAG (dag-cbor, dag-pb and raw blocks), whatever the size of its values. The
// gateways are tried in the order of their health until one begins to answer; after that a
// failure is the export's. On error w holds the answer so far, whose last bytes were not checked:
// write to a temporary file and keep it only on success, as the hamt command does.
func (k *KuboCAS) ExportCAR(ctx context.Context, root cid.Cid, w io.Writer) (int, error) {
	s, err := k.streamDAG(ctx, root, w, nil)
	if err != nil {
		return 0, err
	}
	return len(s.order), nil
}

// streamDAG reads the DAG at root from the gateways as one CAR stream, copying the bytes to w,
// and returns the stream read to its verified end. share, when not nil, is given each attempt's
// stream before its first block, for readers on other goroutines.
func (k *KuboCAS) streamDAG(ctx context.Context, root cid.Cid, w io.Writer, share func(*dagStream)) (*dagStream, error) {
	if k.closed.Load() {
		return nil, errors.New("kubo car: store closed")
	}
	turns := k.gatewayOrder()
	var errs, raw []error
	for i, t := range turns {
		sink := &startedWriter{w: w}
		s, err := k.streamFrom(ctx, t.g, root, sink, share)
		if err == nil {
			k.report(t, succeeded)
			for _, rest := range turns[i+1:] {
				k.report(rest, abandoned)
			}
			return s, nil
		}
		if ctx.Err() != nil || sink.started.Load() {
			for _, rest := range turns[i:] {
				k.report(rest, abandoned)
			}
			if ctx.Err() != nil {
				return nil, fmt.Errorf("kubo car %s: %w", root, context.Cause(ctx))
			}
			return nil, fmt.Errorf("kubo car %s from %s: %w", root, t.g.base, err)
		}
		k.report(t, failed)
		errs = append(errs, fmt.Errorf("gateway %s: %w", t.g.base, err))
		raw = append(raw, err)
	}
	if len(turns) == 1 {
		return nil, fmt.Errorf("kubo car: %w", notFound(root, raw[0]))
	}
	return nil, allGatewaysFailed("car", root, errs, raw)
}

// startedWriter notes whether anything was written through it.
type startedWriter struct {
	w       io.Writer
	started atomic.Bool
}

func (s *startedWriter) Write(p []byte) (int, error) {
	if len(p) > 0 {
		s.started.Store(true)
	}
	return s.w.Write(p)
}

// streamFrom reads the CAR of the DAG at root from gateway g into w. The request has no deadline,
// a stream of terabytes taking what it takes, but it fails when no byte arrives for the store's
// timeout (WithKuboTimeout).
func (k *KuboCAS) streamFrom(ctx context.Context, g *kuboGateway, root cid.Cid, w io.Writer, share func(*dagStream)) (*dagStream, error) {
	u := g.base + "/ipfs/" + root.String() + "?format=car&dag-scope=all"
	var s *dagStream
	err := k.stream(ctx, &g.kuboEndpoint, "car", http.MethodGet, u, kuboCARAccept, func(resp *http.Response, idle io.Reader, stalled func() bool) error {
		body := &tailReader{r: idle}
		var err error
		s, err = newDAGStream(io.TeeReader(body, w), root)
		if err == nil && share != nil {
			share(s)
		}
		for err == nil {
			if _, _, err = s.next(); errors.Is(err, io.EOF) {
				return nil
			}
		}
		if stalled() {
			return fmt.Errorf("%w (no byte for %s)", err, k.timeout)
		}
		// A gateway that fails mid-stream says why in an X-Stream-Error trailer, and boxo's also in
		// text at the end of the body.
		_, _ = io.Copy(io.Discard, io.LimitReader(body, drainLimit))
		if msg := resp.Trailer.Get("X-Stream-Error"); msg != "" {
			return fmt.Errorf("%w; the gateway says: %s", err, msg)
		}
		if _, msg, ok := bytes.Cut(body.tail, []byte("[Gateway Error:")); ok {
			return fmt.Errorf("%w; the gateway says: %s", err, strings.TrimSuffix(strings.TrimSpace(string(msg)), "]"))
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	return s, nil
}

// stream sends a request to ep that has no deadline, a stream taking what it takes, but fails
// when no byte of the answer arrives for the store's timeout (WithKuboTimeout). It holds a
// semaphore slot until read, given an answer of status 200, returns; another status is a
// *KuboError. read's body is the answer's, each read pushing the idle timer back; stalled reports
// whether the timer cut the stream.
func (k *KuboCAS) stream(ctx context.Context, ep *kuboEndpoint, op, method, u, accept string, read func(resp *http.Response, body io.Reader, stalled func() bool) error) error {
	select {
	case k.sem <- struct{}{}:
	case <-ctx.Done():
		return context.Cause(ctx)
	}
	defer func() { <-k.sem }()
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	req, err := http.NewRequestWithContext(rctx, method, u, nil)
	if err != nil {
		return err
	}
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	for name, vs := range ep.header {
		req.Header[name] = append(req.Header[name], vs...)
	}
	var idle *time.Timer
	if k.timeout > 0 {
		idle = time.AfterFunc(k.timeout, cancel)
		defer idle.Stop()
	}
	resp, err := k.client.Do(req)
	if err != nil {
		return err
	}
	defer closeBody(resp.Body, cancel)
	if resp.StatusCode != http.StatusOK {
		return &KuboError{Op: op, URL: req.URL.Redacted(), Status: resp.StatusCode, Message: kuboMessage(resp.Body)}
	}
	var body io.Reader = resp.Body
	if idle != nil {
		body = &idleReader{r: resp.Body, t: idle, d: k.timeout}
	}
	return read(resp, body, func() bool { return rctx.Err() != nil && ctx.Err() == nil })
}

// tailReader keeps the last bytes read through it, for an error message a gateway appends.
type tailReader struct {
	r    io.Reader
	tail []byte
}

func (t *tailReader) Read(p []byte) (int, error) {
	n, err := t.r.Read(p)
	const keep = 256
	if n >= keep {
		t.tail = append(t.tail[:0], p[n-keep:n]...)
	} else {
		t.tail = append(t.tail, p[:n]...)
		if len(t.tail) > keep {
			t.tail = append(t.tail[:0], t.tail[len(t.tail)-keep:]...)
		}
	}
	return n, err
}

// idleReader pushes a timer back on every read that returns bytes: the timer fires only when the
// stream stalls.
type idleReader struct {
	r io.Reader
	t *time.Timer
	d time.Duration
}

func (r *idleReader) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	if n > 0 {
		r.t.Reset(r.d)
	}
	return n, err
}

// FetchedDAG is a verified local copy of a DAG read from Kubo's gateways in one CAR stream (see
// KuboCAS.FetchDAG), filled as the stream arrives: a read-only CAS over a temporary file, safe for
// concurrent use. Close stops the stream and removes the file.
type FetchedDAG struct {
	k      *KuboCAS
	f      *os.File
	src    *io.SectionReader
	cancel context.CancelFunc
	done   chan struct{} // closed when the stream is over; err is set then
	err    error

	mu      sync.RWMutex
	s       *dagStream    // the stream being read; its locs and order change under mu
	arrived chan struct{} // closed and replaced whenever a block arrives
}

// FetchDAG starts copying the DAG at root into a temporary file in dir (the system's when dir is
// empty) through one CAR stream from the gateways, checked block by block as it arrives (as
// ExportCAR does), and returns a read-only CAS over the copy at once: the way to read a whole
// dataset from Kubo or any trustless gateway in one request (an export, a clone into another
// store) rather than a request per block, the reading overlapping the transfer. Load of a block
// not arrived yet waits for it, except a dag-cbor block (a map's node), which is loaded from the
// gateways at once so that a walk of the map's nodes runs ahead of the stream. A stream that
// fails fails the Loads waiting on it, and Wait. The copy holds about 100 bytes of memory per
// block, and the DAG's size on disk until Close. ctx bounds the stream.
func (k *KuboCAS) FetchDAG(ctx context.Context, root cid.Cid, dir string) (*FetchedDAG, error) {
	if k.closed.Load() {
		return nil, errors.New("kubo fetch: store closed")
	}
	f, err := os.CreateTemp(dir, "hamt-fetch-*.car")
	if err != nil {
		return nil, fmt.Errorf("kubo fetch: %w", err)
	}
	sctx, cancel := context.WithCancel(ctx)
	d := &FetchedDAG{k: k, f: f, src: io.NewSectionReader(f, 0, 1<<62), cancel: cancel,
		done: make(chan struct{}), arrived: make(chan struct{})}
	go func() {
		defer close(d.done)
		_, err := k.streamDAG(sctx, root, f, func(s *dagStream) {
			d.mu.Lock()
			s.mu, s.arrived = &d.mu, d.blockArrived
			d.s = s
			d.mu.Unlock()
		})
		d.mu.Lock()
		d.err = err
		d.mu.Unlock()
	}()
	return d, nil
}

// blockArrived wakes the Loads waiting for a block; called under d.mu.
func (d *FetchedDAG) blockArrived() {
	close(d.arrived)
	d.arrived = make(chan struct{})
}

// Wait waits for the end of the stream and returns its error: nil when the whole DAG arrived,
// verified.
func (d *FetchedDAG) Wait(ctx context.Context) error {
	select {
	case <-d.done:
		return d.err
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}

// Load returns block id of the copy, waiting for it while the stream runs (a dag-cbor block not
// arrived yet is loaded from the gateways instead). A block the whole stream did not hold is
// ErrNotFound; a failed stream's error is returned as is.
func (d *FetchedDAG) Load(ctx context.Context, id cid.Cid) ([]byte, error) {
	loc, b, err := d.locate(ctx, id)
	if err != nil || b != nil {
		return b, err
	}
	b = make([]byte, loc.n)
	if err := readFullAt(d.src, b, loc.off); err != nil {
		return nil, fmt.Errorf("fetched DAG: read block %s: %w", id, err)
	}
	return b, nil
}

// BlockSize returns the size of block id, waiting for it as Load does but without reading it:
// an export learns a value's size before it copies the value, which is then read once.
func (d *FetchedDAG) BlockSize(ctx context.Context, id cid.Cid) (int64, error) {
	loc, b, err := d.locate(ctx, id)
	if err != nil {
		return 0, err
	}
	if b != nil {
		return int64(len(b)), nil
	}
	return loc.n, nil
}

// copyBlock writes block id whole to w, waiting for it as Load does, without holding it: from the
// copy's file to w in the kernel when w is a file (copy_file_range). handled is false, with
// nothing written, when it cannot: the caller then loads the block.
func (d *FetchedDAG) copyBlock(ctx context.Context, id cid.Cid, w io.Writer) (written int64, handled bool, err error) {
	dst, ok := w.(*os.File)
	if !ok {
		return 0, false, nil
	}
	loc, b, err := d.locate(ctx, id)
	if err != nil {
		return 0, true, err
	}
	if b != nil {
		return 0, false, nil
	}
	n, handled, err := copyFileRange(dst, d.f, loc.off, loc.n)
	if err != nil {
		return n, true, fmt.Errorf("fetched DAG: copy block %s: %w", id, err)
	}
	return n, handled, nil
}

// locate finds block id in the copy, waiting for it while the stream runs. A dag-cbor block not
// arrived yet is loaded from the gateways instead and returned as data.
func (d *FetchedDAG) locate(ctx context.Context, id cid.Cid) (carBlockLoc, []byte, error) {
	if b, ok, err := identityBlock(id); ok { // never in the stream: its bytes are its CID
		if err != nil {
			return carBlockLoc{}, nil, fmt.Errorf("fetched DAG: %w", err)
		}
		return carBlockLoc{}, b, nil
	}
	key := cidKey(id)
	for {
		d.mu.RLock()
		var loc carBlockLoc
		ok := false
		if d.s != nil {
			loc, ok = d.s.locs[key]
		}
		arrived := d.arrived
		d.mu.RUnlock()
		if ok {
			return loc, nil, nil
		}
		select {
		case <-d.done:
			if d.err != nil {
				return loc, nil, fmt.Errorf("fetched DAG: %w", d.err)
			}
			if d.Has(id) { // arrived between the look-up and the stream's end
				continue
			}
			return loc, nil, fmt.Errorf("fetched DAG: block %s is not in the DAG: %w", id, ErrNotFound)
		default:
		}
		if id.Prefix().Codec == uint64(multicodec.DagCbor) {
			b, err := d.k.Load(ctx, id)
			return loc, b, err
		}
		select {
		case <-arrived:
		case <-d.done:
		case <-ctx.Done():
			return loc, nil, context.Cause(ctx)
		}
	}
}

// Has reports whether block id has arrived; an identity CID (within MaxIdentityDigest), whose
// bytes are the CID's, always has.
func (d *FetchedDAG) Has(id cid.Cid) bool {
	if _, ok, err := identityBlock(id); ok {
		return err == nil
	}
	d.mu.RLock()
	defer d.mu.RUnlock()
	if d.s == nil {
		return false
	}
	_, ok := d.s.locs[cidKey(id)]
	return ok
}

// Save is not supported: a FetchedDAG is read only.
func (d *FetchedDAG) Save(context.Context, []byte, multicodec.Code) (cid.Cid, error) {
	return cid.Undef, fmt.Errorf("fetched DAG: %w", ErrReadOnly)
}

// Blocks returns the number of blocks arrived so far.
func (d *FetchedDAG) Blocks() int {
	d.mu.RLock()
	defer d.mu.RUnlock()
	if d.s == nil {
		return 0
	}
	return len(d.s.order)
}

// Close stops the stream if it still runs and removes the temporary file.
func (d *FetchedDAG) Close() error {
	d.cancel()
	<-d.done
	err := d.f.Close()
	if rerr := os.Remove(d.f.Name()); err == nil {
		err = rerr
	}
	return err
}

// verifiesLoads marks a FetchedDAG as verified: every block was hashed as it arrived, or is
// loaded through the KuboCAS, which hashes it.
func (d *FetchedDAG) verifiesLoads() {}
