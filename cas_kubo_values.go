package hamt

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/ipfs/go-cid"
	"github.com/multiformats/go-multicodec"
)

// This file reads many raw blocks from Kubo's RPC API in a few requests: their sizes from
// dag/stat, their bytes from one cat of them all. It is the cheapest way Kubo serves a dataset's
// values: its gateway's CAR answer costs the daemon about twice the CPU of this (boxo's selector
// walk hashes every block again and copies it; BENCHMARKS.md, "Export from Kubo, branch
// t14-export3"). Nothing the daemon says is trusted: the sizes only cut the stream, and every
// block is hashed against its CID.

// rawBatchBlocks is how many blocks one dag/stat and one cat request name (about 32 KB of URL).
const rawBatchBlocks = 500

// maxRawBlock is the largest block size a dag/stat answer may claim: a raw block is a leaf Kubo's
// chunker made (1 MiB by default) or one of ours; go-car's limit on a section bounds both.
const maxRawBlock = 8 << 20

// maxDagStatAnswer is the largest dag/stat answer blockSizes reads: one for rawBatchBlocks blocks
// is about 100 bytes a block (Kubo 0.42: 75 KB for 500), so this leaves room for ten times more.
const maxDagStatAnswer = 1 << 20

// rawBlockReader is a CAS that streams many raw blocks at once (a KuboCAS, through its RPC API).
type rawBlockReader interface {
	// readRawBlocks calls each(i, r) for every block ids[i], r giving the bytes the store sends
	// for it, from several goroutines at once; they are checked after each returns (see
	// KuboCAS.readRawBlocks). With an error wrapping errNoRawBlocks, todo lists the blocks never
	// handed out.
	readRawBlocks(ctx context.Context, ids []cid.Cid, each func(i int, r io.Reader) error) (todo []int, err error)
}

// errNoRawBlocks marks a failure of readRawBlocks that says nothing about the blocks: the RPC API
// is not there, refuses the requests, or answers dag/stat in a way that cannot be read (Kubo 0.42
// fails to encode the answer for blocks that are all empty). The blocks can still be loaded one by
// one.
var errNoRawBlocks = errors.New("the RPC API does not serve raw blocks")

// rawBatch is a run of blocks and their sizes as the daemon states them.
type rawBatch struct {
	from  int // the index of its first block in the whole read
	ids   []cid.Cid
	sizes []int64
	err   error
}

// rawStreams is how many cat requests readRawBlocks keeps in flight: two, so that the daemon
// serves on two cores while this process writes (measured: 20,000 values of 64 KiB, load 4 on 2
// cores, one stream at a time 3.9–4.1 s, two 3.0–3.3 s).
const rawStreams = 2

// readRawBlocks reads the raw blocks ids from the RPC API, sizes by dag/stat (asked ahead of the
// streams) and bytes by cat, rawBatchBlocks a request, rawStreams requests at once. each(i, r)
// gets block ids[i] as a reader of exactly the size the daemon stated, which it may read to the
// end or not: what it reads is not verified yet, so it must write it where a failure can undo it.
// each is called from up to rawStreams goroutines at once, for blocks of different batches. After
// each returns, the rest is read and the block checked: it has that size, the stream held it whole
// (ErrMissingBlock when the daemon could not send it), and it hashes to ids[i] (ErrCorrupt); a
// stream holding more than the blocks is ErrUnexpectedBlock. Memory is bounded by the batches.
//
// When the only failures say nothing about the blocks (errNoRawBlocks), todo lists, in order, the
// blocks whose bytes were never handed to each, for the caller to load otherwise.
func (k *KuboCAS) readRawBlocks(ctx context.Context, ids []cid.Cid, each func(i int, r io.Reader) error) (todo []int, err error) {
	if k.closed.Load() {
		return nil, errors.New("kubo cat: store closed")
	}
	for _, id := range ids {
		if id.Prefix().Codec != uint64(multicodec.Raw) {
			return nil, fmt.Errorf("kubo cat: %s is not a raw block", id)
		}
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	batches := make(chan rawBatch, rawStreams)
	sized := 0           // blocks the sizer got to; read after it returned
	var quit atomic.Bool // the streams stopped after an errNoRawBlocks: no batch is sized any more
	sizerDone := make(chan struct{})
	go func() {
		defer close(sizerDone)
		defer close(batches)
		for from := 0; from < len(ids) && !quit.Load(); from += rawBatchBlocks {
			b := rawBatch{from: from, ids: ids[from:min(from+rawBatchBlocks, len(ids))]}
			b.sizes, b.err = k.blockSizes(ctx, b.ids)
			select {
			case batches <- b:
			case <-ctx.Done():
				return
			}
			sized = from + len(b.ids)
			if b.err != nil {
				return
			}
		}
	}()
	var mu sync.Mutex
	var failed error  // the first failure that is not errNoRawBlocks
	var noRaw error   // the first errNoRawBlocks
	var skipped []int // starts of the batches not streamed after an errNoRawBlocks
	var wg sync.WaitGroup
	for range rawStreams {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for b := range batches {
				mu.Lock()
				stop := failed != nil || noRaw != nil
				mu.Unlock()
				err := b.err
				if err == nil && !stop {
					err = k.catBlocks(ctx, b.ids, b.sizes, func(j int, r io.Reader) error {
						if err := ctx.Err(); err != nil { // the answer may be read ahead: stop at the next block
							return err
						}
						return each(b.from+j, r)
					})
				}
				mu.Lock()
				switch {
				case err == nil && !stop:
				case err == nil || errors.Is(err, errNoRawBlocks):
					skipped = append(skipped, b.from)
					if noRaw == nil && err != nil {
						noRaw = err
						quit.Store(true)
					}
				case failed == nil:
					failed = err
					cancel()
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	<-sizerDone
	if failed != nil {
		return nil, failed
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("kubo cat: %w", context.Cause(ctx))
	}
	if noRaw == nil {
		return nil, nil
	}
	slices.Sort(skipped)
	for _, from := range skipped {
		for i := from; i < min(from+rawBatchBlocks, len(ids)); i++ {
			todo = append(todo, i)
		}
	}
	for i := sized; i < len(ids); i++ {
		todo = append(todo, i)
	}
	return todo, noRaw
}

// blockSizes asks dag/stat for the sizes of the raw blocks ids, checking the answer's shape: one
// entry per block, in order, each a single block of a plausible size.
func (k *KuboCAS) blockSizes(ctx context.Context, ids []cid.Cid) ([]int64, error) {
	q := url.Values{"progress": {"false"}}
	for _, id := range ids {
		q.Add("arg", id.String())
	}
	// The answer is read within maxDagStatAnswer: a daemon streaming an endless one (rpcCall reads
	// any length) would otherwise grow this process's memory until the request's timeout.
	var raw []byte
	u := k.rpc.base + "/api/v0/dag/stat?" + q.Encode()
	if err := k.call(ctx, &k.rpc, "dag/stat", func(ctx context.Context) (*http.Request, error) {
		return http.NewRequestWithContext(ctx, http.MethodPost, u, nil)
	}, func(resp *http.Response) error {
		b, err := io.ReadAll(io.LimitReader(resp.Body, maxDagStatAnswer+1))
		if err != nil {
			return &bodyError{err}
		}
		if len(b) > maxDagStatAnswer {
			return fmt.Errorf("kubo dag/stat: an answer of more than %d bytes for %d blocks", maxDagStatAnswer, len(ids))
		}
		raw = b
		return nil
	}); err != nil {
		if err = missingOnRPC(err); errors.Is(err, ErrMissingBlock) || ctx.Err() != nil {
			return nil, err
		}
		return nil, fmt.Errorf("%w: %w", errNoRawBlocks, err)
	}
	sizes, err := dagStatSizes(raw, ids)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errNoRawBlocks, err)
	}
	return sizes, nil
}

// dagStatSizes reads the sizes of the blocks ids from a dag/stat answer: one entry per block, in
// order, each a single block of a plausible size.
func dagStatSizes(b []byte, ids []cid.Cid) ([]int64, error) {
	var answer struct {
		DagStats []struct {
			Cid       string
			Size      int64
			NumBlocks int64
		}
	}
	if err := json.Unmarshal(b, &answer); err != nil {
		return nil, fmt.Errorf("kubo dag/stat: unexpected answer %.200q: %w", b, err)
	}
	if len(answer.DagStats) != len(ids) {
		return nil, fmt.Errorf("kubo dag/stat: %d answers for %d blocks", len(answer.DagStats), len(ids))
	}
	sizes := make([]int64, len(ids))
	for i, s := range answer.DagStats {
		if s.Cid != ids[i].String() || s.NumBlocks != 1 || s.Size < 0 || s.Size > maxRawBlock {
			return nil, fmt.Errorf("kubo dag/stat: answer %d is %s, %d blocks, %d bytes; want the single block %s",
				i, s.Cid, s.NumBlocks, s.Size, ids[i])
		}
		sizes[i] = s.Size
	}
	return sizes, nil
}

// catBlocks streams the blocks ids, of the given sizes, in one cat request (see readRawBlocks).
// The request has no deadline but fails when no byte arrives for the store's timeout.
func (k *KuboCAS) catBlocks(ctx context.Context, ids []cid.Cid, sizes []int64, each func(j int, r io.Reader) error) error {
	q := url.Values{"progress": {"false"}}
	for _, id := range ids {
		q.Add("arg", id.String())
	}
	answered := false // the errors after are read's own, said in full
	err := k.stream(ctx, &k.rpc, "cat", http.MethodPost, k.rpc.base+"/api/v0/cat?"+q.Encode(), "", func(resp *http.Response, idle io.Reader, stalled func() bool) error {
		answered = true
		noted := &noteReader{r: idle}
		// streamErr is the error the daemon gives for a stream it could not finish, if any.
		streamErr := func(err error) error {
			if stalled() {
				return fmt.Errorf("kubo cat: %w (no byte for %s)", err, k.timeout)
			}
			if ctx.Err() != nil {
				return fmt.Errorf("kubo cat: %w", context.Cause(ctx))
			}
			_, _ = io.Copy(io.Discard, io.LimitReader(noted, drainLimit))
			if msg := resp.Trailer.Get("X-Stream-Error"); msg != "" {
				return fmt.Errorf("kubo cat: %w (%w); the daemon says: %s", ErrMissingBlock, err, msg)
			}
			return fmt.Errorf("kubo cat: %w (%w)", ErrMissingBlock, err)
		}
		if err := splitCatStream(noted, ids, sizes, each, func(err error) error {
			if ctx.Err() != nil {
				return fmt.Errorf("kubo cat: %w", context.Cause(ctx))
			}
			if noted.err != nil { // the answer broke off, not the writing
				return streamErr(err)
			}
			return err
		}, streamErr); err != nil {
			return err
		}
		if msg := resp.Trailer.Get("X-Stream-Error"); msg != "" {
			return fmt.Errorf("kubo cat: the daemon says: %s", msg)
		}
		return nil
	})
	var ke *KuboError
	switch {
	case err == nil || answered:
		return err
	case errors.As(err, &ke):
		if err := missingOnRPC(err); errors.Is(err, ErrMissingBlock) {
			return err
		}
		return fmt.Errorf("%w: %w", errNoRawBlocks, err)
	}
	return fmt.Errorf("kubo cat: %w", err)
}

// ReadsRawBlocks reports whether the RPC API answers dag/stat, which a whole export needs to read a
// dataset's raw values in a few cat requests (ExportDir does so by itself when it can, and
// otherwise loads the values one by one): a caller with a fallback of its own, such as
// FetchDAG's stream from the gateways, asks first. It sends one request about an empty block,
// and does not retry it: an RPC API that is not there (a gateway-only setup) is a no at once, not
// after the retries of a transient failure.
func (k *KuboCAS) ReadsRawBlocks(ctx context.Context) bool {
	if k.closed.Load() {
		return false
	}
	q := url.Values{"arg": {kuboPlaceholderRoot().String()}, "progress": {"false"}}
	u := k.rpc.base + "/api/v0/dag/stat?" + q.Encode()
	return k.attempt(ctx, &k.rpc, "dag/stat", func(ctx context.Context) (*http.Request, error) {
		return http.NewRequestWithContext(ctx, http.MethodPost, u, nil)
	}, func(*http.Response) error { return nil }) == nil // closeBody reads the answer
}

// missingOnRPC marks an RPC error answer saying a block was not found as ErrMissingBlock.
func missingOnRPC(err error) error {
	var ke *KuboError
	if errors.As(err, &ke) && ke.Status == http.StatusInternalServerError && strings.Contains(ke.Message, "not found") {
		return fmt.Errorf("%w: %w", ErrMissingBlock, err)
	}
	return err
}

// noteReader keeps the first error other than io.EOF its reader returned.
type noteReader struct {
	r   io.Reader
	err error
}

func (n *noteReader) Read(p []byte) (int, error) {
	m, err := n.r.Read(p)
	if err != nil && err != io.EOF && n.err == nil {
		n.err = err
	}
	return m, err
}

// splitCatStream cuts body, a cat answer, into the blocks ids of the given sizes, calling each
// for every block with a reader of its bytes, then reading the rest of the block and checking it:
// whole (else cut is given the error: the answer broke off), hashing to its CID (ErrCorrupt); bytes
// past the last block are ErrUnexpectedBlock. An error of each goes through failed, which tells a
// broken answer from a failed write.
func splitCatStream(body io.Reader, ids []cid.Cid, sizes []int64, each func(j int, r io.Reader) error, failed, cut func(error) error) error {
	for j, id := range ids {
		check, err := newPieceCheck(id)
		if err != nil {
			return err
		}
		lr := &io.LimitedReader{R: body, N: sizes[j]}
		r := io.TeeReader(lr, check.h)
		if err := each(j, r); err != nil {
			return failed(fmt.Errorf("block %s: %w", id, err))
		}
		if _, err := io.Copy(io.Discard, r); err != nil {
			return cut(fmt.Errorf("block %s: %w", id, err))
		}
		if lr.N > 0 {
			return cut(fmt.Errorf("block %s: %w: %d of its %d bytes came", id, io.ErrUnexpectedEOF, sizes[j]-lr.N, sizes[j]))
		}
		if err := check.verify(); err != nil {
			return fmt.Errorf("kubo cat: %w", err)
		}
	}
	var one [1]byte
	if n, err := io.ReadFull(body, one[:]); n > 0 {
		return fmt.Errorf("kubo cat: %w: the answer holds more than the %d blocks asked", ErrUnexpectedBlock, len(ids))
	} else if !errors.Is(err, io.EOF) {
		return cut(err)
	}
	return nil
}
