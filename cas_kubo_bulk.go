package hamt

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/textproto"
	"sync"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/multiformats/go-multicodec"
	"github.com/multiformats/go-multihash"
)

// This file imports through Kubo in bulk: CIDs computed here, blocks streamed to dag/import as
// one CAR per flush instead of one add per block.

// KuboBulk is a write session on a KuboCAS that imports in bulk. Save computes each block's CID
// itself, the CID the KuboCAS's add would answer (CIDv1 with its hash, relabelled to the codec
// asked), and streams the block into one POST /api/v0/dag/import, a CARv1 written as the blocks
// come and sent through a pipe: memory stays bounded (a Save waits while Kubo is busy) and a
// whole import is a handful of requests instead of one per block. Flush ends the stream and
// checks Kubo's answer (the blocks and bytes it read), so the blocks saved before are stored in
// Kubo when it returns; the next Save starts a new stream. Commit flushes and pins the root.
//
// Not every block can be streamed: one larger than the chunk the KuboCAS asks add for (a value
// Kubo would lay out as a UnixFS file), any block when the chunker is not size-N or the hash is
// one this package cannot compute, and every block when the daemon (or a proxy in front of it)
// has no dag/import (it answers 404, 405 or 501 to Bulk's probe) goes through KuboCAS.Save,
// with the CID that path gives: the roots are the same either way.
//
// A stream that breaks (the daemon goes away, Kubo refuses a block, a Save's context ends while it
// waits) fails that Save and every later call with the same error: the blocks of an unfinished
// stream are not pinned, and Kubo may keep some of them until its garbage collection. Load answers
// a node saved in the session from memory (up to a budget), asks Kubo for anything else, and first
// flushes the stream when the block is still in it. It is safe for concurrent use; Close ends it.
type KuboBulk struct {
	k         *KuboCAS
	ctx       context.Context // bounds the session's streams (Bulk's context)
	stream    bool            // false: every Save is KuboCAS.Save
	maxStream int             // largest block streamed; larger ones are added
	maxBlocks uint64          // blocks a stream takes before the next starts (kuboStreamBlocks)
	held      heldBlocks

	mu      sync.Mutex
	cur     *carStream
	err     error // a broken stream: every later call fails with it
	closed  bool
	streams int // dag/import requests made, the probe aside
}

// Bulk import limits. Kubo's dag/import refuses blocks over 2 MiB (its SoftBlockLimit, the
// bitswap limit). A stream is ended after kuboStreamBlocks blocks, so that the CAR writer's index
// of what it sent (about 100 bytes a block) stays bounded whatever the size of the import.
const (
	kuboMaxImportBlock = 2 << 20
	kuboStreamBlocks   = 1 << 20
	kuboHeldBytes      = 64 << 20 // nodes kept for Load
	kuboStreamBuffer   = 256 << 10
)

// kuboPlaceholderRoot is the root a bulk stream's CAR header names before the real root is known:
// the identity CID of no bytes (bafkqaaa), a block every node has. Streams are imported with
// pin-roots=false and Commit pins the real root.
func kuboPlaceholderRoot() cid.Cid {
	mh, _ := multihash.Sum(nil, multihash.IDENTITY, -1) // never fails for identity
	return cid.NewCidV1(uint64(multicodec.Raw), mh)
}

// Bulk starts a bulk import session on k (see KuboBulk). It sends one request, a probe: an empty
// CAR to dag/import. A daemon or proxy that answers it 404, 405 or 501 has no dag/import, and the
// session then saves block by block through Save; any other failure is returned. ctx bounds the
// whole session: when it ends, a stream in progress is aborted.
func (k *KuboCAS) Bulk(ctx context.Context) (*KuboBulk, error) {
	if k.closed.Load() {
		return nil, errors.New("kubo bulk: store closed")
	}
	b := &KuboBulk{k: k, ctx: ctx, maxBlocks: kuboStreamBlocks, held: heldBlocks{budget: kuboHeldBytes, blocks: map[cidBytes][]byte{}}}
	b.maxStream = int(min(k.chunkSize, kuboMaxImportBlock))
	if _, err := b.cid(multicodec.Raw, nil); err != nil || b.maxStream <= 0 {
		return b, nil // a hash we cannot compute or a chunker whose leaves we cannot predict
	}
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	part, err := mw.CreatePart(carPartHeader())
	if err != nil {
		return nil, err
	}
	if _, err := newCARWriter(part, []cid.Cid{kuboPlaceholderRoot()}); err != nil {
		return nil, err
	}
	if err := mw.Close(); err != nil {
		return nil, err
	}
	u := k.rpc.base + "/api/v0/dag/import?" + kuboImportQuery
	err = k.call(ctx, &k.rpc, "dag/import", func(ctx context.Context) (*http.Request, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(body.Bytes()))
		if err == nil {
			req.Header.Set("Content-Type", mw.FormDataContentType())
		}
		return req, err
	}, func(resp *http.Response) error {
		_, err := readImportAnswer(resp)
		return err
	})
	var ke *KuboError
	switch {
	case errors.As(err, &ke) && (ke.Status == http.StatusNotFound || ke.Status == http.StatusMethodNotAllowed || ke.Status == http.StatusNotImplemented):
		return b, nil
	case err != nil:
		return nil, fmt.Errorf("kubo bulk: probe dag/import: %w", err)
	}
	b.stream = true
	return b, nil
}

// kuboImportQuery are the options of every bulk dag/import: the placeholder root is not pinned,
// and Kubo reports how many blocks and bytes it read, which Flush checks.
const kuboImportQuery = "pin-roots=false&stats=true"

// carPartHeader is the multipart header of a CAR sent to dag/import, as the ipfs command sends a
// file.
func carPartHeader() textproto.MIMEHeader {
	h := textproto.MIMEHeader{}
	h.Set("Content-Disposition", `form-data; name="file"; filename="import.car"`)
	h.Set("Content-Type", "application/octet-stream")
	return h
}

// Streaming reports whether the session streams blocks to dag/import; false when the daemon has
// none, or when the KuboCAS's hash or chunker keep every block on the per-block path.
func (b *KuboBulk) Streaming() bool { return b.stream }

// Streams returns how many dag/import streams the session has made, the probe aside.
func (b *KuboBulk) Streams() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.streams
}

// cid is the CID k's add gives data of at most one chunk: CIDv1 with k's hash, here with codec.
func (b *KuboBulk) cid(codec multicodec.Code, data []byte) (cid.Cid, error) {
	switch b.k.hashCode {
	case multihash.BLAKE3:
		return blake3CID(codec, data), nil
	case multihash.IDENTITY:
		return cid.Undef, errors.New("kubo bulk: identity hash")
	}
	return cid.Prefix{Version: 1, Codec: uint64(codec), MhType: b.k.hashCode, MhLength: -1}.Sum(data)
}

// Save computes data's CID and streams the block to Kubo, or adds it through KuboCAS.Save when
// it cannot be streamed (see KuboBulk).
func (b *KuboBulk) Save(ctx context.Context, data []byte, codec multicodec.Code) (cid.Cid, error) {
	if !b.stream || len(data) > b.maxStream {
		if err := b.usable(); err != nil {
			return cid.Undef, err
		}
		return b.k.Save(ctx, data, codec)
	}
	id, err := b.cid(codec, data)
	if err != nil {
		return cid.Undef, fmt.Errorf("kubo bulk: %w", err)
	}
	if err := b.send(ctx, id, data); err != nil {
		return cid.Undef, err
	}
	return id, nil
}

// Put streams a block under a CID it is given, after checking data against it (ErrCorrupt), so
// that ReadCAR can import a CAR into Kubo through dag/import. Without dag/import the block is
// added instead, which stores it under its CID only when that is the CID add gives (a raw block
// of at most one chunk, hashed as the KuboCAS hashes); any other block is refused.
func (b *KuboBulk) Put(ctx context.Context, id cid.Cid, data []byte) error {
	if err := verifyBlock(id, data); err != nil {
		return fmt.Errorf("kubo bulk: put: %w", err)
	}
	if id.Prefix().MhType == multihash.IDENTITY {
		return nil // its data is its CID: Kubo needs no block
	}
	if b.stream {
		return b.send(ctx, id, data)
	}
	if err := b.usable(); err != nil {
		return err
	}
	got, err := b.k.Save(ctx, data, multicodec.Code(id.Prefix().Codec))
	if err != nil {
		return err
	}
	if !got.Equals(id) {
		return fmt.Errorf("kubo bulk: put %s: the daemon has no dag/import, and add stores this block as %s", id, got)
	}
	return nil
}

// usable reports the session's sticky error, or that it is closed.
func (b *KuboBulk) usable() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.usableLocked()
}

func (b *KuboBulk) usableLocked() error {
	if b.err != nil {
		return b.err
	}
	if b.closed {
		return errors.New("kubo bulk: session closed")
	}
	return nil
}

// send writes one block into the current stream, starting one when none is open. The pipe makes
// it wait while Kubo is busy; should ctx end meanwhile, the stream is aborted (a CAR cannot be
// left with half a block) and the session fails.
func (b *KuboBulk) send(ctx context.Context, id cid.Cid, data []byte) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.usableLocked(); err != nil {
		return err
	}
	if b.cur != nil && b.cur.blocks >= b.maxBlocks {
		if err := b.finishLocked(ctx); err != nil {
			return err
		}
	}
	if b.cur == nil {
		s, err := b.k.openCARStream(b.ctx)
		if err != nil {
			return b.failLocked(err)
		}
		b.cur = s
		b.streams++
	}
	s := b.cur
	if s.car.has(id) {
		return nil
	}
	if id.Prefix().Codec != uint64(multicodec.Raw) {
		b.held.add(cidKey(id), data)
	}
	stop := context.AfterFunc(ctx, func() { s.abort(context.Cause(ctx)) })
	err := s.car.put(id, data)
	stop()
	if err != nil {
		return b.failLocked(s.cause(err))
	}
	s.blocks++
	s.bytes += uint64(len(data))
	return nil
}

// failLocked makes err the session's error: the stream in progress is aborted and waited for.
func (b *KuboBulk) failLocked(err error) error {
	if b.err == nil {
		b.err = fmt.Errorf("kubo bulk: %w", err)
	}
	if b.cur != nil {
		b.cur.abort(b.err)
		<-b.cur.done
		b.cur = nil
	}
	return b.err
}

// Flush ends the stream in progress and waits for Kubo's answer: when it returns without error,
// every block saved before it was called is stored in Kubo (not pinned yet: Commit pins). The
// Map calls it at the end of its Flush.
func (b *KuboBulk) Flush(ctx context.Context) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.usableLocked(); err != nil {
		return err
	}
	return b.finishLocked(ctx)
}

func (b *KuboBulk) finishLocked(ctx context.Context) error {
	s := b.cur
	if s == nil {
		return nil
	}
	if err := s.finish(ctx); err != nil {
		return b.failLocked(err)
	}
	b.cur = nil
	return nil
}

// Commit flushes the session and pins each root recursively (pin/add), which also checks that
// Kubo holds everything the root reaches. The session stays usable.
func (b *KuboBulk) Commit(ctx context.Context, roots ...cid.Cid) error {
	if err := b.Flush(ctx); err != nil {
		return err
	}
	for _, root := range roots {
		if err := b.k.Pin(ctx, root); err != nil {
			return fmt.Errorf("kubo bulk: pin %s: %w", root, err)
		}
	}
	return nil
}

// Close ends the session. A stream still open is aborted, not committed: its blocks are not
// pinned (Flush or Commit first to keep them). The KuboCAS stays open.
func (b *KuboBulk) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil
	}
	b.closed = true
	if s := b.cur; s != nil {
		s.abort(errors.New("kubo bulk: session closed before its stream was flushed"))
		<-s.done
		b.cur = nil
	}
	b.held.clear()
	return nil
}

// Load returns block id: a node saved in the session from memory, any other block from Kubo's
// gateways (verified), after flushing the stream when the block is still in it.
func (b *KuboBulk) Load(ctx context.Context, id cid.Cid) ([]byte, error) {
	if data, ok := b.held.get(cidKey(id)); ok {
		return data, nil
	}
	b.mu.Lock()
	pending := false
	if b.cur != nil {
		pending = b.cur.car.has(id)
	}
	b.mu.Unlock()
	if pending {
		if err := b.Flush(ctx); err != nil {
			return nil, err
		}
	}
	return b.k.Load(ctx, id)
}

// verifiesLoads marks KuboBulk as verifying: it loads through KuboCAS, and what it holds it
// hashed itself.
func (b *KuboBulk) verifiesLoads() {}

// heldBlocks keeps the latest nodes a session saved, within a budget of bytes, oldest dropped
// first.
type heldBlocks struct {
	mu     sync.Mutex
	budget int
	used   int
	blocks map[cidBytes][]byte
	order  []cidBytes
}

func (h *heldBlocks) add(id cidBytes, data []byte) {
	if len(data) > h.budget {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, ok := h.blocks[id]; ok {
		return
	}
	for h.used+len(data) > h.budget && len(h.order) > 0 {
		old := h.order[0]
		h.order = h.order[1:]
		h.used -= len(h.blocks[old])
		delete(h.blocks, old)
	}
	h.blocks[id] = bytes.Clone(data)
	h.order = append(h.order, id)
	h.used += len(data)
}

// get returns a copy of a held block: the caller owns what Load returns.
func (h *heldBlocks) get(id cidBytes) ([]byte, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	data, ok := h.blocks[id]
	if !ok {
		return nil, false
	}
	return bytes.Clone(data), true
}

func (h *heldBlocks) clear() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.blocks, h.order, h.used = map[cidBytes][]byte{}, nil, 0
}

// carStream is one dag/import request in progress: a CARv1 written into the request body through
// a pipe, the request sent by a goroutine of its own.
type carStream struct {
	pr     *io.PipeReader
	pw     *io.PipeWriter
	bw     *bufio.Writer
	mw     *multipart.Writer
	car    *carWriter
	cancel context.CancelFunc

	blocks, bytes uint64 // written by the session, under its lock

	done  chan struct{} // closed when the request is over; then err and stats are set
	err   error
	stats *carImportStats
}

// openCARStream starts a dag/import request whose body is the CAR the stream is written with.
func (k *KuboCAS) openCARStream(ctx context.Context) (*carStream, error) {
	pr, pw := io.Pipe()
	sctx, cancel := context.WithCancel(ctx)
	s := &carStream{pr: pr, pw: pw, cancel: cancel, done: make(chan struct{})}
	s.bw = bufio.NewWriterSize(pw, kuboStreamBuffer)
	s.mw = multipart.NewWriter(s.bw)
	go s.run(sctx, k)
	part, err := s.mw.CreatePart(carPartHeader())
	if err == nil {
		s.car, err = newCARWriter(part, []cid.Cid{kuboPlaceholderRoot()})
	}
	if err != nil {
		s.abort(err)
		<-s.done
		return nil, err
	}
	return s, nil
}

// run sends the request and reads Kubo's answer. A request that fails, or an answer that comes
// before the body was all sent (an error), closes the pipe with that error, so a Save blocked on
// it returns it.
func (s *carStream) run(ctx context.Context, k *KuboCAS) {
	defer close(s.done)
	defer s.cancel()
	err := func() error {
		select {
		case k.sem <- struct{}{}:
		case <-ctx.Done():
			return context.Cause(ctx)
		}
		defer func() { <-k.sem }()
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, k.rpc.base+"/api/v0/dag/import?"+kuboImportQuery, s.pr)
		if err != nil {
			return err
		}
		req.Header.Set("Content-Type", s.mw.FormDataContentType())
		for name, vs := range k.rpc.header {
			req.Header[name] = append(req.Header[name], vs...)
		}
		resp, err := k.client.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if resp.StatusCode >= 400 {
			return &KuboError{Op: "dag/import", URL: req.URL.Redacted(), Status: resp.StatusCode, Message: kuboMessage(resp.Body)}
		}
		s.stats, err = readImportAnswer(resp)
		return err
	}()
	if err == nil && s.stats == nil {
		err = errors.New("kubo dag/import: the answer has no stats")
	}
	if err != nil {
		s.err = fmt.Errorf("dag/import: %w", err)
	} else {
		err = errors.New("dag/import: answered before the stream ended")
	}
	s.pr.CloseWithError(err) // a writer still blocked learns why
}

// readImportAnswer reads dag/import's answer, one JSON object a line, to its end, and returns its
// stats. A failure after the answer began is go-ipfs-cmds' X-Stream-Error trailer.
func readImportAnswer(resp *http.Response) (*carImportStats, error) {
	var stats *carImportStats
	dec := json.NewDecoder(io.LimitReader(resp.Body, 1<<20))
	for {
		var out struct {
			Root *struct {
				Cid         map[string]string
				PinErrorMsg string
			}
			Stats *carImportStats
		}
		err := dec.Decode(&out)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, &bodyError{err}
		}
		if out.Stats != nil {
			stats = out.Stats
		}
	}
	if msg := resp.Trailer.Get("X-Stream-Error"); msg != "" {
		return nil, &KuboError{Op: "dag/import", URL: resp.Request.URL.Redacted(), Status: resp.StatusCode, Message: msg}
	}
	return stats, nil
}

// carImportStats is the stats line of Kubo's dag/import answer.
type carImportStats struct {
	BlockCount      uint64
	BlockBytesCount uint64
}

// abort cuts the stream: the request is cancelled and writers fail with err.
func (s *carStream) abort(err error) {
	s.pr.CloseWithError(err)
	s.cancel()
}

// cause is the error to report for a failed write: the request's own failure when it has one.
// A write fails once the request is over, or about to be (its transport closed the body), so
// cause waits for it a moment, then aborts it.
func (s *carStream) cause(err error) error {
	t := time.NewTimer(drainTime)
	select {
	case <-s.done:
	case <-t.C:
		s.abort(err)
		<-s.done
	}
	t.Stop()
	if s.err != nil {
		return s.err
	}
	return err
}

// finish ends the CAR and the body, waits for Kubo's answer and checks that Kubo read every
// block and byte sent.
func (s *carStream) finish(ctx context.Context) error {
	err := s.mw.Close()
	if err == nil {
		err = s.bw.Flush()
	}
	if err == nil {
		err = s.pw.Close()
	}
	if err != nil {
		return s.cause(err)
	}
	select {
	case <-s.done:
	case <-ctx.Done():
		s.abort(context.Cause(ctx))
		<-s.done
		return fmt.Errorf("dag/import: %w", context.Cause(ctx))
	}
	if s.err != nil {
		return s.err
	}
	if s.stats.BlockCount != s.blocks || s.stats.BlockBytesCount != s.bytes {
		return fmt.Errorf("dag/import: Kubo read %d blocks (%d bytes), %d (%d bytes) were sent",
			s.stats.BlockCount, s.stats.BlockBytesCount, s.blocks, s.bytes)
	}
	return nil
}
