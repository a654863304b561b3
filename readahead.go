package hamt

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ipfs/go-cid"
)

// DefaultReadAhead is how many values All and GetMany load at once by default.
const DefaultReadAhead = 32

// WithReadAhead sets how many values All and GetMany hold loaded or loading at once (default 32,
// minimum 1): the most store reads they overlap, and the bound on the memory their values take.
// A store with latency (Kubo, a gateway) gains from more; 1 reads one value at a time.
func WithReadAhead(n int) Option {
	return func(o *options) error {
		if n < 1 {
			return fmt.Errorf("WithReadAhead(%d): need at least one value", n)
		}
		o.readAhead = n
		return nil
	}
}

// readAheadWindow is the map's WithReadAhead.
func (m *Map[V]) readAheadWindow() int {
	if m.opts.readAhead == 0 {
		return DefaultReadAhead
	}
	return m.opts.readAhead
}

// value loads and decodes the value block id of key, as Get does: a dag-pb block is the UnixFS file
// it heads, and blocks are verified when the map was asked to (WithVerifyBlocks).
func (m *Map[V]) value(ctx context.Context, key string, id cidBytes) (V, error) {
	b, err := m.valueBlock(ctx, key, id)
	if err != nil {
		var zero V
		return zero, err
	}
	return m.decode(key, id, b)
}

// valueBlock is value up to the decoding: the value's bytes (a UnixFS file's whole content).
func (m *Map[V]) valueBlock(ctx context.Context, key string, id cidBytes) ([]byte, error) {
	var b []byte
	var err error
	if isDagPb(id) { // a UnixFS file (a value Kubo split into chunks): its bytes, checked as read
		b, err = loadValue(ctx, m.cas, id.cid(), ByteRange{}, m.opts.verifyBlocks)
	} else {
		b, err = loadBlock(ctx, m.cas, id.view()) // no cid.Cid to allocate
	}
	if err != nil {
		return nil, fmt.Errorf("get %q: load value %s: %w", key, id, missingBlock(err))
	}
	if m.opts.verifyBlocks && !isDagPb(id) {
		if err := verifyBlock(id.view(), b); err != nil {
			return nil, fmt.Errorf("get %q: %w", key, err)
		}
	}
	return b, nil
}

// decode is the end of value: the codec's value of key's block id, b.
func (m *Map[V]) decode(key string, id cidBytes, b []byte) (V, error) {
	v, err := m.codec.Decode(b)
	if err != nil {
		var zero V
		return zero, fmt.Errorf("get %q: value %s: %w", key, id, err)
	}
	return v, nil
}

// BatchLoader is a CAS that loads many blocks at once for less than one by one: BoltCAS, in one
// read transaction. All and GetMany load a batch of values through it. LoadMany returns one entry
// per id, in order: the block, which the caller owns, or nil for a block the store does not hold
// (a present block is never nil, even when empty). An error fails the whole call.
type BatchLoader interface {
	LoadMany(ctx context.Context, ids []cid.Cid) ([][]byte, error)
}

// values loads and decodes the value of keys[i], block ids[i] (none when ids[i] is ""), into
// vals[i], as value does; through one LoadMany when the store is a BatchLoader. keep, when not nil,
// is given each raw value block (not a UnixFS file's) before it is decoded. On a failure it returns
// the index of the key that failed, the values before it loaded.
func (m *Map[V]) values(ctx context.Context, keys []string, ids []cidBytes, vals []V, keep func(i int, b []byte)) (int, error) {
	bl, ok := m.cas.(BatchLoader)
	var raw []cid.Cid
	if ok {
		for _, id := range ids {
			if id != "" && !isDagPb(id) && !isIdentity(id) { // a UnixFS file is read block by block
				raw = append(raw, id.cid())
			}
		}
	}
	if len(raw) < 2 {
		for i, id := range ids {
			if id == "" {
				continue
			}
			b, err := m.valueBlock(ctx, keys[i], id)
			if err != nil {
				return i, err
			}
			if keep != nil && !isDagPb(id) {
				keep(i, b)
			}
			if vals[i], err = m.decode(keys[i], id, b); err != nil {
				return i, err
			}
		}
		return 0, nil
	}
	blocks, err := bl.LoadMany(ctx, raw)
	if err != nil {
		i := 0
		for ids[i] == "" || isDagPb(ids[i]) || isIdentity(ids[i]) {
			i++
		}
		return i, fmt.Errorf("get %q and %d more: load values: %w", keys[i], len(raw)-1, err)
	}
	j := 0
	for i, id := range ids {
		var v V
		var err error
		switch {
		case id == "":
			continue
		case isDagPb(id):
			v, err = m.value(ctx, keys[i], id)
		case isIdentity(id): // its bytes are its CID: not asked of LoadMany
			var b []byte
			if b, err = m.valueBlock(ctx, keys[i], id); err == nil {
				if keep != nil {
					keep(i, b)
				}
				v, err = m.decode(keys[i], id, b)
			}
		default:
			var b []byte
			if b, err = m.checkedBlock(keys[i], id, blocks[j]); err == nil {
				if keep != nil {
					keep(i, b)
				}
				v, err = m.decode(keys[i], id, b)
			}
			j++
		}
		if err != nil {
			return i, err
		}
		vals[i] = v
	}
	return 0, nil
}

// checkedBlock is valueBlock for a raw block b, which LoadMany gave (nil: not in the store).
func (m *Map[V]) checkedBlock(key string, id cidBytes, b []byte) ([]byte, error) {
	if b == nil {
		return nil, fmt.Errorf("get %q: load value %s: %w", key, id, ErrMissingBlock)
	}
	if m.opts.verifyBlocks {
		if err := verifyBlock(id.view(), b); err != nil {
			return nil, fmt.Errorf("get %q: %w", key, err)
		}
	}
	return b, nil
}

// valueBatch is a run of consecutive keys whose values one goroutine loads, in order. All knows
// their value CIDs (ids); GetMany leaves ids nil and the batch looks each key up first.
type valueBatch[V any] struct {
	keys  []string
	ids   []cidBytes
	vals  []V
	found []bool     // GetMany: whether keys[i] is in the map; nil for All
	refs  []valueRef // All in read-only mode: where to keep each loaded value
	// err is the failure that stopped the batch at errAt: the values before errAt are loaded,
	// those from errAt on are not.
	err   error
	errAt int
	done  chan struct{} // closed when the batch is finished; nil for a batch loaded in place
}

// valueRef is the entry of a cached node n whose value All loads: entry j of n's value table vt
// (nil when the node's values are not kept).
type valueRef struct {
	n  *frozenNode
	vt *nodeValues
	j  int
}

// readAhead loads the values of batches of keys while its caller goes on (walking the tree,
// yielding earlier values), and gives the batches back in the order they were started. It holds at
// most window keys in batches started and not yet taken back, so at most window values are in
// memory or in flight at once.
//
// How a batch is loaded adapts to the store, from the time one load takes, measured as batches
// finish. Loads that take less than readAheadInline (memory, a local bbolt file) are done by the
// caller itself, in batches of up to half the window: handing them to another goroutine costs
// more than it saves. Slower loads (Kubo, a gateway: a round trip per block) each go to a goroutine
// in batches of about readAheadBatchTime's worth, so up to window round trips overlap. The first
// load is done in place, to measure the store.
//
// Only the goroutine that made it calls its methods; the batches' goroutines touch only their
// batch and nsPerLoad. stop must be called, and it returns once every goroutine has.
type readAhead[V any] struct {
	ctx       context.Context
	cancel    context.CancelFunc
	window    int
	maxBatch  int
	held      int              // keys in queue
	queue     []*valueBatch[V] // started and not taken back, oldest first
	wg        sync.WaitGroup
	nsPerLoad atomic.Int64 // moving average of one load's time; 0 before the first batch ends
}

const (
	// readAheadInline is the load time below which loads are not worth a goroutine: starting one
	// and waiting for it costs about a microsecond, more on a busy machine.
	readAheadInline = 5 * time.Microsecond
	// readAheadBatchTime is about how long one goroutine's batch of loads takes: long enough that
	// starting the goroutine is a small part of it.
	readAheadBatchTime = 20 * time.Microsecond
)

func newReadAhead[V any](ctx context.Context, window int) *readAhead[V] {
	ctx, cancel := context.WithCancel(ctx)
	// Batches of at most half the window, so that one is being loaded while another is used.
	return &readAhead[V]{ctx: ctx, cancel: cancel, window: window, maxBatch: max(1, window/2)}
}

// inline reports whether loads are fast enough to be done in place.
func (ra *readAhead[V]) inline() bool {
	ns := ra.nsPerLoad.Load()
	return ns < int64(readAheadInline)
}

// batchLen is how many keys the next batch should hold.
func (ra *readAhead[V]) batchLen() int {
	switch ns := ra.nsPerLoad.Load(); {
	case ns == 0:
		return 1 // the first load, measured in place
	case ns < int64(readAheadInline):
		return ra.maxBatch
	default:
		return int(min(max(int64(readAheadBatchTime)/ns, 1), int64(ra.maxBatch)))
	}
}

// full reports whether a batch of n keys must wait until the oldest one is taken back.
func (ra *readAhead[V]) full(n int) bool { return ra.held > 0 && ra.held+n > ra.window }

// start loads b's values with load, which records in b what it finds: in place when loads are
// fast, else on a new goroutine. The caller has made room for b (full is false).
func (ra *readAhead[V]) start(b *valueBatch[V], load func(ctx context.Context, b *valueBatch[V])) {
	ra.queue = append(ra.queue, b)
	ra.held += len(b.keys)
	if ra.inline() {
		ra.measure(b, time.Now(), load)
		return
	}
	b.done = make(chan struct{})
	ra.wg.Add(1)
	go func() {
		defer ra.wg.Done()
		defer close(b.done)
		ra.measure(b, time.Now(), load)
	}()
}

// measure runs load on b, begun at t, and folds the time each of its loads took into nsPerLoad.
func (ra *readAhead[V]) measure(b *valueBatch[V], t time.Time, load func(ctx context.Context, b *valueBatch[V])) {
	load(ra.ctx, b)
	if n := len(b.keys); b.err == nil && n > 0 {
		ns := max(time.Since(t).Nanoseconds()/int64(n), 1)
		if old := ra.nsPerLoad.Load(); old > 0 {
			ns = (3*old + ns) / 4
		}
		ra.nsPerLoad.Store(ns) // a race with another batch loses one sample, which is harmless
	}
}

// pending reports whether a batch has been started and not taken back.
func (ra *readAhead[V]) pending() bool { return len(ra.queue) > 0 }

// take waits for the oldest batch to finish and gives it back.
func (ra *readAhead[V]) take() *valueBatch[V] {
	b := ra.queue[0]
	ra.queue[0] = nil
	ra.queue = ra.queue[1:]
	ra.held -= len(b.keys)
	if b.done != nil {
		<-b.done
	}
	return b
}

// stop cancels the loads still going and waits for their goroutines to end.
func (ra *readAhead[V]) stop() {
	ra.cancel()
	ra.wg.Wait()
}
