// Package hamt stores large key-value maps in a Hash Array Mapped Trie on a content-addressed
// store, byte-compatible with the Python library py-hamt: a map written by either opens in the
// other, with identical node bytes and root CIDs.
//
// A Map has two modes. In write mode (New, EnableWrite) changed nodes stay in memory and only value
// blocks are saved until Flush, MakeReadOnly or CacheVacate; any number of goroutines may Set, Get
// and Delete at once. In read-only mode (Open, MakeReadOnly) nodes are read through a bounded cache
// shared by any number of goroutines without a global lock. Root gives the CID to publish.
package hamt

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"
	"unsafe"

	"github.com/ipfs/go-cid"
	"github.com/multiformats/go-multicodec"
)

// Sentinel errors, for errors.Is. Errors returned by this package wrap them with the key, CID or
// depth that failed.
var (
	// ErrNotFound: a key is not in the map (Get, Delete, GetPointer), or a block is not in the
	// store (CAS.Load). From a Map's methods it only ever means the key is absent: a block missing
	// from the store is ErrMissingBlock instead.
	ErrNotFound = errors.New("not found")
	// ErrMissingBlock: a block the map needs (its root, a node on a key's path, a key's value) is
	// not in the store. The map cannot tell whether the key is there; this does not match
	// ErrNotFound, so "absent" is never reported for lost data.
	ErrMissingBlock = errors.New("block missing from the store")
	// ErrReadOnly: a write (Set, Delete) to a map in read-only mode.
	ErrReadOnly = errors.New("map is read-only")
	// ErrMaxDepth: more than bucket-size keys share their whole hash, so no node can separate
	// them. Only reachable with a weak or short hash function.
	ErrMaxDepth = errors.New("hash exhausted: maximum trie depth reached")
	// ErrMalformedNode: a node block is not a valid HAMT node in canonical DAG-CBOR, or a walk of
	// the whole tree (Keys, Len, Inspect, Diff, WriteCAR) found that the nodes do not form a HAMT:
	// a node reached twice, a key off its hash path, an empty node below the root.
	ErrMalformedNode = errors.New("malformed HAMT node")
	// ErrMalformedValue: a value block is not canonical DAG-CBOR in the IPLD data model (DagCBOR
	// codec).
	ErrMalformedValue = errors.New("malformed DAG-CBOR value")
	// ErrWrongCodec: a value block does not decode with the map's codec, in a way that says the
	// map was written with another one: bytes that are not CBOR at all under DagCBOR (a map of
	// Bytes values?), or DAG-CBOR of another shape under TypedDagCBOR. It comes wrapped together
	// with ErrMalformedValue. (Every value block is raw, whatever the codec: its CID cannot tell.)
	ErrWrongCodec = errors.New("value does not fit the map's codec")
	// ErrCorrupt: stored or fetched data is damaged: a block's bytes do not hash to its CID, or a
	// store's file is damaged (BoltCAS: a truncated or overwritten bbolt file).
	ErrCorrupt = errors.New("corrupt data")
	// ErrDecrypt: an encrypted value could not be opened (wrong key or header, tampered or
	// truncated bytes).
	ErrDecrypt = errors.New("cannot decrypt value")
	// ErrUnflushed: Root was called in write mode with changes not yet flushed.
	ErrUnflushed = errors.New("map has unflushed changes")
	// ErrInvalidKey: a key that is not valid UTF-8 (keys are DAG-CBOR text strings), or that a
	// layout cannot hold (ShardedZarrStore: a key that is not a Zarr path, such as "a/../b").
	ErrInvalidKey = errors.New("invalid key")
)

// Option configures New and Open.
type Option func(*options) error

type options struct {
	hash         HashFunc
	bucketSize   int
	cacheBytes   int64
	flushWorkers int
	verifyBlocks bool
	legacyDelete bool
	readAhead    int // 0: DefaultReadAhead (see WithReadAhead)
	// walkParallelism is WithWalkParallelism; 0: DefaultWalkParallelism.
	walkParallelism int
	// Verify's: WithMaxProblems, WithProblemFunc.
	maxProblems int
	onProblem   func(VerifyProblem)
	tel         *Telemetry // WithTelemetry; nil: nothing recorded
}

// DefaultBucketSize is py-hamt's default max_bucket_size.
const DefaultBucketSize = 4

// DefaultCacheBytes is the default read-cache budget of a read-only map: enough for every node of
// a map of about 8 million keys with the default bucket size (about 64 bytes of nodes per key:
// 84 MiB at 1M keys, 250 MiB at 4M), so that the maps users have are read with their whole tree
// cached. It is a ceiling, not an allocation: a map holds only the nodes it has read. When a tree
// is larger, the cache keeps its upper levels and the deepest nodes take turns (see nodeCache).
// Small values read count against it too, in the room the nodes leave (see WithCacheBytes).
const DefaultCacheBytes = 512 << 20

// DefaultFlushWorkers is how many nodes a flush encodes and saves at once by default. Saves of
// sibling nodes are independent, so a store with latency (Kubo) gains from many at once.
const DefaultFlushWorkers = 32

// WithHash sets the function that places keys (default Blake3). Readers must use the writer's.
func WithHash(h HashFunc) Option {
	return func(o *options) error {
		if h == nil {
			return errors.New("WithHash: nil hash function")
		}
		o.hash = h
		return nil
	}
}

// WithBucketSize sets how many keys a slot holds before it becomes a link to a child node
// (default 4, minimum 1). It shapes what is written; a reader needs no bucket size.
func WithBucketSize(n int) Option {
	return func(o *options) error {
		if n < 1 {
			return fmt.Errorf("WithBucketSize(%d): bucket size must be at least 1", n)
		}
		o.bucketSize = n
		return nil
	}
}

// WithCacheBytes sets the approximate memory budget of the read-only node cache (default 512 MiB,
// DefaultCacheBytes). Zero keeps no nodes but the root. Nodes nearer the root are kept first.
// The cache also keeps, beside each cached node, the value blocks of up to 4 KiB that Get and All
// read through it (not UnixFS files), so that reading them again touches no store: they count
// against the same budget (each value's length plus 4 bytes, rounded up to 8, and a table of 4
// bytes per entry of the node), only in the room the nodes leave, and are the first to go when a
// node needs room. Get and All hand out copies: the kept bytes never change.
func WithCacheBytes(n int64) Option {
	return func(o *options) error {
		if n < 0 {
			return fmt.Errorf("WithCacheBytes(%d): budget must not be negative", n)
		}
		o.cacheBytes = n
		return nil
	}
}

// WithFlushWorkers sets how many nodes a flush saves at once (default 32).
func WithFlushWorkers(n int) Option {
	return func(o *options) error {
		if n < 1 {
			return fmt.Errorf("WithFlushWorkers(%d): need at least one worker", n)
		}
		o.flushWorkers = n
		return nil
	}
}

// WithVerifyBlocks makes the map hash every block it loads and compare it with the CID it asked
// for (ErrCorrupt on a mismatch). Use it with a CAS that does not verify by itself (MemoryCAS, a
// store of your own); BoltCAS and KuboCAS do, and with them the option changes nothing.
func WithVerifyBlocks() Option {
	return func(o *options) error {
		o.verifyBlocks = true
		return nil
	}
}

// WithLegacyDeletes makes Delete behave as py-hamt 3.3.2 (and every py-hamt before 3.5) does: a
// node left empty is removed, but a subtree that shrinks to bucket size or less is never folded
// back into a bucket, so the root depends on the order of sets and deletes. Use it only to
// reproduce roots that py-hamt ≤ 3.4 wrote after deletes; by default a delete folds, as py-hamt ≥
// 3.5 does, and the root is that of a fresh build of the surviving keys.
func WithLegacyDeletes() Option {
	return func(o *options) error {
		o.legacyDelete = true
		return nil
	}
}

// Map is a HAMT from string keys to values of type V, stored on a CAS. See the package doc for its
// two modes. All methods are safe for concurrent use.
type Map[V any] struct {
	cas    CAS
	codec  Codec[V]
	hasher keyHasher
	opts   options

	// switching serializes mode changes (MakeReadOnly, EnableWrite) with each other.
	switching sync.Mutex
	state     atomic.Pointer[mapState]
	// nodeLatency is how long the store takes to load a node, which decides whether walks load
	// nodes ahead (walkAhead).
	nodeLatency latency
}

// mapState is the mode of a map: exactly one of w and r is set. A state is replaced, never
// changed, when the mode switches.
type mapState struct {
	w *writeStore
	r *readStore
}

func buildOptions(opts []Option) (options, error) {
	o := options{bucketSize: DefaultBucketSize, cacheBytes: DefaultCacheBytes, flushWorkers: DefaultFlushWorkers, maxProblems: DefaultMaxProblems}
	for _, opt := range opts {
		if err := opt(&o); err != nil {
			return o, err
		}
	}
	return o, nil
}

func newMap[V any](cas CAS, codec Codec[V], opts []Option) (*Map[V], error) {
	if cas == nil {
		return nil, errors.New("hamt: nil CAS")
	}
	if codec == nil {
		return nil, errors.New("hamt: nil codec")
	}
	o, err := buildOptions(opts)
	if err != nil {
		return nil, fmt.Errorf("hamt: %w", err)
	}
	// A store that verifies what it loads (BoltCAS, KuboCAS) makes WithVerifyBlocks redundant:
	// the map does not hash a block a second time.
	o.verifyBlocks = o.verifyBlocks && !storeVerifies(cas)
	return &Map[V]{cas: cas, codec: codec, hasher: keyHasher{custom: o.hash}, opts: o}, nil
}

// New returns an empty map in write mode. Nothing is saved until Flush.
func New[V any](ctx context.Context, cas CAS, codec Codec[V], opts ...Option) (*Map[V], error) {
	m, err := newMap(cas, codec, opts)
	if err != nil {
		return nil, err
	}
	w := newWriteStore(m.nodeLoader(), &node{dirty: true, checked: true}, cid.Undef)
	w.tel = m.opts.tel
	m.state.Store(&mapState{w: w})
	return m, nil
}

// Open returns the map whose root node is root, in read-only mode. It loads the root node, so a
// missing or malformed root is reported here.
func Open[V any](ctx context.Context, cas CAS, codec Codec[V], root cid.Cid, opts ...Option) (*Map[V], error) {
	m, err := newMap(cas, codec, opts)
	if err != nil {
		return nil, err
	}
	r, err := newReadStore(ctx, m.nodeLoader(), root, nil, m.opts.cacheBytes)
	if err != nil {
		return nil, fmt.Errorf("open: %w", err)
	}
	r.cache.stats = m.opts.tel.cacheStats()
	m.state.Store(&mapState{r: r})
	return m, nil
}

// nodeLoader is how both node stores fetch a node block: from the CAS, verified if asked.
func (m *Map[V]) nodeLoader() loadFunc {
	if t := m.opts.tel; t != nil {
		return t.nodeLoader(m.loadNode)
	}
	return m.loadNode
}

// loadNode fetches node block key from the CAS, verified if asked.
func (m *Map[V]) loadNode(ctx context.Context, key cidBytes) ([]byte, error) {
	id := key.view()
	if id.Type() != uint64(multicodec.DagCbor) {
		return nil, fmt.Errorf("%w: node %s is not dag-cbor", ErrMalformedNode, id)
	}
	t := time.Now()
	b, err := loadBlock(ctx, m.cas, id)
	if err != nil {
		return nil, fmt.Errorf("load node %s: %w", id, missingBlock(err))
	}
	m.nodeLatency.since(t)
	if m.opts.verifyBlocks {
		if err := verifyBlock(id, b); err != nil {
			return nil, err
		}
	}
	return b, nil
}

// ReadOnly reports whether the map is in read-only mode.
func (m *Map[V]) ReadOnly() bool { return m.state.Load().r != nil }

// Set saves v's block to the CAS and points key at it. Value blocks are saved outside the tree lock,
// so concurrent Sets overlap their I/O. A value over one chunk (DefaultFileChunk, or the store's
// FileSaver size) is saved as the UnixFS file Kubo's add makes of it, so its CID is the same in
// every store.
func (m *Map[V]) Set(ctx context.Context, key string, v V) error {
	if m.ReadOnly() {
		return fmt.Errorf("set %q: %w", key, ErrReadOnly)
	}
	if !utf8.ValidString(key) {
		return fmt.Errorf("set %q: %w: not valid UTF-8", key, ErrInvalidKey)
	}
	data, err := m.codec.Encode(v)
	if err != nil {
		return fmt.Errorf("set %q: %w", key, err)
	}
	c, err := saveValue(ctx, m.cas, data)
	if err != nil {
		return fmt.Errorf("set %q: save value: %w", key, err)
	}
	return m.setPointer(ctx, key, cidKey(c))
}

// setPointer points key at a value block already in the CAS.
func (m *Map[V]) setPointer(ctx context.Context, key string, id cidBytes) error {
	var buf [32]byte
	h, err := m.hasher.hash(key, &buf)
	if err != nil {
		return err
	}
	w, err := m.writable(key, "set")
	if err != nil {
		return err
	}
	defer w.mu.Unlock()
	root, err := w.rootNode(ctx)
	if err != nil {
		return fmt.Errorf("set %q: %w", key, err)
	}
	t := tree{w: w, hasher: m.hasher, bucketSize: m.opts.bucketSize}
	if _, err := t.insert(ctx, root, 0, entry{key: key, value: id}, h); err != nil {
		return fmt.Errorf("set %q: %w", key, err)
	}
	return nil
}

// writable returns the write store locked, or ErrReadOnly. A store closed by a mode switch
// between the caller's first look and the lock is not used.
func (m *Map[V]) writable(key, op string) (*writeStore, error) {
	for {
		st := m.state.Load()
		if st.w == nil {
			return nil, fmt.Errorf("%s %q: %w", op, key, ErrReadOnly)
		}
		st.w.mu.Lock()
		if !st.w.closed {
			return st.w, nil
		}
		st.w.mu.Unlock()
	}
}

// Delete removes key. A missing key is ErrNotFound. As in py-hamt ≥ 3.5, every node below the
// root on key's path whose subtree is left with at most bucket-size keys is folded back into one
// bucket of its parent (an empty one into an empty slot), so after any history of sets and
// deletes with one bucket size, from an empty map, the root is that of a fresh build of the
// surviving keys. With WithLegacyDeletes, only nodes left empty are removed, as py-hamt 3.3.2
// does. Either way a Delete that fails (a node that cannot be loaded) leaves the map as it was.
func (m *Map[V]) Delete(ctx context.Context, key string) error {
	var buf [32]byte
	h, err := m.hasher.hash(key, &buf)
	if err != nil {
		return err
	}
	w, err := m.writable(key, "delete")
	if err != nil {
		return err
	}
	defer w.mu.Unlock()
	root, err := w.rootNode(ctx)
	if err != nil {
		return fmt.Errorf("delete %q: %w", key, err)
	}
	t := tree{w: w, hasher: m.hasher, bucketSize: m.opts.bucketSize}
	var found bool
	if m.opts.legacyDelete {
		found, err = t.remove(ctx, root, 0, key, h)
	} else {
		found, err = t.removeFolding(ctx, root, key, h)
	}
	if err != nil {
		return fmt.Errorf("delete %q: %w", key, err)
	}
	if !found {
		return fmt.Errorf("delete %q: %w", key, ErrNotFound)
	}
	return nil
}

// GetPointer returns the CID of key's value block, or ErrNotFound.
func (m *Map[V]) GetPointer(ctx context.Context, key string) (cid.Cid, error) {
	id, err := m.pointer(ctx, key)
	if err != nil {
		return cid.Undef, err
	}
	return id.cid(), nil
}

// pointer is GetPointer with the CID in binary form.
func (m *Map[V]) pointer(ctx context.Context, key string) (cidBytes, error) {
	var buf [32]byte
	h, err := m.hasher.hash(key, &buf)
	if err != nil {
		return "", err
	}
	st := m.state.Load()
	var id cidBytes
	if st.r != nil {
		id, err = st.r.lookup(ctx, key, h)
	} else {
		id, err = st.w.lookup(ctx, key, h)
	}
	if err != nil {
		return "", fmt.Errorf("get %q: %w", key, err)
	}
	if id == "" {
		return "", fmt.Errorf("get %q: %w", key, ErrNotFound)
	}
	return id, nil
}

// Get returns key's value, or ErrNotFound. The value is read whole into memory, including a value
// stored as a UnixFS file, whatever size its root claims: for values that may be large (or come from
// a store you do not control), read them in pieces with ZarrStore.WriteValue or by range. In
// read-only mode a value block of up to 4 KiB is kept in the read cache once read (see
// WithCacheBytes), and the value decoded from a copy of it the next time.
func (m *Map[V]) Get(ctx context.Context, key string) (V, error) {
	if r := m.state.Load().r; r != nil {
		return m.getRead(ctx, r, key) // through the values the read cache keeps
	}
	id, err := m.pointer(ctx, key)
	if err != nil {
		var zero V
		return zero, err
	}
	return m.value(ctx, key, id)
}

// Has reports whether key is in the map.
func (m *Map[V]) Has(ctx context.Context, key string) (bool, error) {
	_, err := m.pointer(ctx, key)
	if errors.Is(err, ErrNotFound) { // only an absent key: lost blocks are ErrMissingBlock
		return false, nil
	}
	return err == nil, err
}

// missingBlock turns a store's "not found" into ErrMissingBlock, without the store's ErrNotFound,
// which from a map means an absent key, nor its message: every caller names the block, and so
// did that message (an identity CID can be 64 KB, and was printed twice). Other errors pass
// through.
func missingBlock(err error) error {
	if errors.Is(err, ErrNotFound) {
		return ErrMissingBlock
	}
	return err
}

// Keys yields every key once. In read-only mode the order is py-hamt's: depth-first from the root,
// a node's buckets in slot order (each bucket in canonical key order), then its children from the
// highest slot down. In write mode it yields a snapshot of the keys taken when iteration starts.
// A failure to load a node is yielded as an error, after which iteration stops; so is a tree that
// is not a HAMT (ErrMalformedNode: a node reached twice, a key that does not hash to the slots
// that lead to it), found before any key is yielded twice.
func (m *Map[V]) Keys(ctx context.Context) iter.Seq2[string, error] {
	return func(yield func(string, error) bool) {
		emit := yield
		var snapshot []string
		if m.state.Load().w != nil {
			// The walk holds the tree lock: collect, and yield once it is released, so the
			// loop body may use the map.
			emit = func(k string, _ error) bool { snapshot = append(snapshot, k); return true }
		}
		err := m.walkKeys(ctx, func(k string) bool { return emit(k, nil) })
		for _, k := range snapshot {
			if !yield(k, nil) {
				return
			}
		}
		if err != nil {
			yield("", err)
		}
	}
}

// Len counts the keys. It visits every node, with the checks of Keys.
func (m *Map[V]) Len(ctx context.Context) (int, error) {
	count := 0
	err := m.walkKeys(ctx, func(string) bool { count++; return true })
	return count, err
}

// walkKeys yields every key in keys() order, in whichever mode the map is.
func (m *Map[V]) walkKeys(ctx context.Context, yield func(string) bool) error {
	st := m.state.Load()
	if st.w != nil {
		return st.w.walkKeys(ctx, m.hasher, m.walkAhead(), yield)
	}
	return st.r.walkKeys(ctx, m.hasher, m.walkAhead(), yield)
}

// Flush saves every changed node reachable from the root (children before parents, siblings
// concurrently) and returns the root CID. The map stays in write mode. In read-only mode there
// are no nodes to save and it returns the root.
//
// In both modes, when the CAS buffers writes (a Flusher, such as BoltCAS), Flush then flushes it:
// the root Flush returns, its nodes and the values they reach are durable, and survive a crash
// without Close (so does whatever else is buffered in a store shared with other maps). That costs
// one commit (an fsync for BoltCAS) per Flush that has something to write.
func (m *Map[V]) Flush(ctx context.Context) (cid.Cid, error) {
	if t := m.opts.tel; t != nil {
		return t.flush(ctx, "flush", m.flush)
	}
	return m.flush(ctx)
}

// flush is Flush.
func (m *Map[V]) flush(ctx context.Context) (cid.Cid, error) {
	root, err := m.flushNodes(ctx)
	if err != nil {
		return cid.Undef, err
	}
	if err := flushStore(ctx, m.cas); err != nil {
		return cid.Undef, fmt.Errorf("flush: %w", err)
	}
	return root, nil
}

// flushNodes saves the changed nodes and returns the root, as Flush does, without flushing the
// store.
func (m *Map[V]) flushNodes(ctx context.Context) (cid.Cid, error) {
	st := m.state.Load()
	if st.r != nil {
		return st.r.root, nil
	}
	w := st.w
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return m.flushNodes(ctx) // switched to read-only meanwhile: everything is saved
	}
	return w.flush(ctx, m.cas, m.opts.flushWorkers)
}

// MakeReadOnly flushes and switches to read-only mode: reads take no lock and go through the node
// cache; Root is valid. Like Flush, it flushes a CAS that buffers writes (a Flusher), so the root
// is durable when it returns without error.
func (m *Map[V]) MakeReadOnly(ctx context.Context) error {
	if t := m.opts.tel; t != nil {
		_, err := t.flush(ctx, "make_read_only", func(ctx context.Context) (cid.Cid, error) {
			if err := m.makeReadOnly(ctx); err != nil {
				return cid.Undef, err
			}
			return m.Root()
		})
		return err
	}
	return m.makeReadOnly(ctx)
}

// makeReadOnly is MakeReadOnly.
func (m *Map[V]) makeReadOnly(ctx context.Context) error {
	m.switching.Lock()
	defer m.switching.Unlock()
	st := m.state.Load()
	if st.r != nil {
		return nil
	}
	w := st.w
	w.mu.Lock()
	defer w.mu.Unlock()
	root, err := w.flush(ctx, m.cas, m.opts.flushWorkers)
	if err != nil {
		return fmt.Errorf("make read-only: %w", err)
	}
	if err := flushStore(ctx, m.cas); err != nil {
		return fmt.Errorf("make read-only: %w", err)
	}
	frozen, err := w.frozenRoot()
	if err != nil {
		return fmt.Errorf("make read-only: %w", err)
	}
	r, err := newReadStore(ctx, m.nodeLoader(), root, frozen, m.opts.cacheBytes)
	if err != nil {
		return fmt.Errorf("make read-only: %w", err)
	}
	r.cache.stats = m.opts.tel.cacheStats()
	w.closed = true
	m.state.Store(&mapState{r: r})
	return nil
}

// EnableWrite switches to write mode, starting from the current root. The nodes the read cache
// holds are handed to the write store as it needs them, without loading or decoding them again, so
// an update of a map just read costs no store reads for them; the cache's memory (at most
// WithCacheBytes) is therefore kept until the first Flush, MakeReadOnly or CacheVacate, which let
// it go.
func (m *Map[V]) EnableWrite(ctx context.Context) error {
	m.switching.Lock()
	defer m.switching.Unlock()
	st := m.state.Load()
	if st.w != nil {
		return nil
	}
	// The read store's nodes are handed to the write store as it needs them (see readStore.held),
	// so an update of a map just read does not fetch them again. Its first flush lets them go.
	w := newWriteStore(m.nodeLoader(), nil, st.r.root)
	w.held = st.r.held
	w.tel = m.opts.tel
	m.state.Store(&mapState{w: w})
	return nil
}

// Root returns the root CID: always valid in read-only mode, and in write mode when nothing
// changed since the last Flush (ErrUnflushed otherwise).
func (m *Map[V]) Root() (cid.Cid, error) {
	st := m.state.Load()
	if st.r != nil {
		return st.r.root, nil
	}
	return st.w.currentRoot()
}

// CacheSize returns the approximate memory, in bytes, of the nodes the map holds: the read cache
// (with the values it keeps) in read-only mode, the in-memory tree in write mode.
func (m *Map[V]) CacheSize() int64 {
	st := m.state.Load()
	if st.r != nil {
		return st.r.cache.size()
	}
	return st.w.size()
}

// CacheVacate empties the node cache. In write mode it first flushes, then drops every node but
// the root from memory.
func (m *Map[V]) CacheVacate(ctx context.Context) error {
	st := m.state.Load()
	if st.r != nil {
		st.r.cache.clear()
		return nil
	}
	w := st.w
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return m.CacheVacate(ctx)
	}
	flush := func(ctx context.Context) (cid.Cid, error) { return w.flush(ctx, m.cas, m.opts.flushWorkers) }
	if t := m.opts.tel; t != nil {
		f := flush
		flush = func(ctx context.Context) (cid.Cid, error) { return t.flush(ctx, "cache_vacate", f) }
	}
	if _, err := flush(ctx); err != nil {
		return fmt.Errorf("cache vacate: %w", err)
	}
	w.vacate()
	return nil
}

// tree is the HAMT algorithm over a write store's in-memory nodes. Callers hold the store's lock.
//
// Invariants kept by insert, removeFolding and remove: a node is dirty whenever a descendant is; a
// non-root node is never empty. With a fixed bucket size, insert and removeFolding keep every
// subtree below the root holding more than bucket-size keys, so the shape depends only on the set
// of keys, which is what makes root CIDs match py-hamt's. remove (legacy) does not fold, so after
// its deletes the shape depends on history, as it does in py-hamt 3.3.2.
type tree struct {
	w          *writeStore
	hasher     keyHasher
	bucketSize int
}

// insert puts e (whose key hashes to h) into n at depth. It reports whether anything changed:
// setting a key to the CID it already has changes nothing.
func (t tree) insert(ctx context.Context, n *node, depth int, e entry, h []byte) (bool, error) {
	i, err := slotAt(h, depth)
	if err != nil {
		return false, err
	}
	s := n.slot(i)
	switch {
	case s == nil:
		n.put(i, bucketSlot(newBucket(e)))
	case s.link() != nil:
		child, err := t.w.child(ctx, s.link(), depth+1)
		if err != nil {
			return false, err
		}
		changed, err := t.insert(ctx, child, depth+1, e, h)
		if !changed || err != nil {
			return false, err
		}
	default:
		old, at, end := bucketSearch(s.bucket(), 0, e.key)
		switch count := bucketCount(s.bucket()); {
		case old == e.value:
			return false, nil
		case old != "":
			s.setBucket(bucketSplice(s.bucket(), at, end, &e, count))
		case count < t.bucketSize:
			s.setBucket(bucketSplice(s.bucket(), at, at, &e, count+1))
		default:
			if err := t.split(n, i, depth, s.bucket(), e); err != nil {
				return false, err
			}
		}
	}
	n.dirty = true
	return true, nil
}

// split replaces the full bucket in slot i of n with a link to a new node, into which it inserts
// the entries of full and e (the entry that did not fit), each routed by its own hash (which may
// split again further down). Unlike py-hamt's queue, this stays correct when the bucket holds
// more entries than the current bucket size.
func (t tree) split(n *node, i, depth int, full string, e entry) error {
	// The entries and their hashes stay on the stack for the usual bucket sizes, and no bucket of
	// all of them is built: a split is the only place a Set allocates besides its bucket and,
	// rarely, a node's slots.
	var (
		entryBuf [8]entry
		hashBuf  [8 * 32]byte
		spanBuf  [8][2]int
	)
	count := bucketCount(full) + 1
	all := entryBuf[:0]
	spans := spanBuf[:0]
	if count > len(entryBuf) {
		all = make([]entry, 0, count)
		spans = make([][2]int, 0, count)
	}
	all = append(appendEntries(all, full), e)
	hashes := hashBuf[:0]
	for _, x := range all {
		var buf [32]byte
		h, err := t.hasher.hash(x.key, &buf)
		if err != nil {
			return err
		}
		spans = append(spans, [2]int{len(hashes), len(hashes) + len(h)})
		hashes = append(hashes, h...)
	}
	hashOf := func(j int) []byte { return hashes[spans[j][0]:spans[j][1]:spans[j][1]] }
	// A group of more than bucket-size keys with identical hashes can never be separated. Check
	// before changing anything, so ErrMaxDepth leaves the tree as it was; any smaller groups end
	// up in buckets at or above the last depth, so the re-inserts below cannot fail.
	for j := range all {
		same := 0
		for k := range all {
			if string(hashOf(j)) == string(hashOf(k)) {
				same++
			}
		}
		if same > t.bucketSize {
			return fmt.Errorf("%w: %d keys share the hash of %q", ErrMaxDepth, same, all[j].key)
		}
	}
	ln := &linkedNode{node: node{dirty: true, checked: true, slots: make([]slot, 0, splitSlots)}}
	ln.link.node = &ln.node
	child := &ln.node
	n.put(i, linkSlot(&ln.link))
	if t.fillChild(child, depth+1, all, hashOf) {
		return nil
	}
	for j, x := range all {
		if _, err := t.insert(context.Background(), child, depth+1, x, hashOf(j)); err != nil {
			return err // unreachable after the check above: child and its descendants are in memory
		}
	}
	return nil
}

// fillChild puts the entries of a split into child, the new empty node at depth, when none of
// its slots gets more than bucket-size of them (the usual case): the same buckets the re-inserts
// would build, but all in one allocation instead of one or more each. It reports false, having
// changed nothing, when the entries need the general path (a further split, or more than eight).
func (t tree) fillChild(child *node, depth int, all []entry, hashOf func(int) []byte) bool {
	if len(all) > 8 || depth >= len(hashOf(0)) {
		return false
	}
	// order is all's indices sorted by child slot, then canonical key order within a slot.
	var orderBuf [8]int
	order := orderBuf[:len(all)]
	slotOf := func(j int) int { return int(hashOf(j)[depth]) }
	for j := range order {
		order[j] = j
		for k := j; k > 0; k-- { // insertion sort: at most eight entries
			a, b := order[k-1], order[k]
			if sa, sb := slotOf(a), slotOf(b); sa < sb || sa == sb && keyLess(all[a].key, all[b].key) {
				break
			}
			order[k-1], order[k] = b, a
		}
	}
	size := 0
	for g := 0; g < len(order); {
		e := g + 1
		for e < len(order) && slotOf(order[e]) == slotOf(order[g]) {
			e++
		}
		if e-g > t.bucketSize {
			return false
		}
		size += headerLen(uint64(e - g))
		for _, j := range order[g:e] {
			size += headerLen(uint64(len(all[j].key))) + len(all[j].key) + linkLen(all[j].value)
		}
		g = e
	}
	buf := make([]byte, 0, size) // exact: appends below never move it, so each bucket may view it
	for g := 0; g < len(order); {
		e := g + 1
		for e < len(order) && slotOf(order[e]) == slotOf(order[g]) {
			e++
		}
		start := len(buf)
		buf = appendHeader(buf, majorMap, uint64(e-g))
		for _, j := range order[g:e] {
			buf = appendHeader(buf, majorText, uint64(len(all[j].key)))
			buf = append(buf, all[j].key...)
			buf = appendLink(buf, all[j].value)
		}
		child.put(slotOf(order[g]), bucketSlot(unsafe.String(&buf[start], len(buf)-start)))
		g = e
	}
	return true
}

// linkedNode is a link and the new node it points to, allocated together by split: following
// the link then touches one place in memory instead of two, which is most of what an insert into
// a large tree costs. As long as the link is referenced the node's memory is too; see vacate.
// The node's slots are a separate allocation: kept inline, they stayed allocated with the node
// after it outgrew them (16 MiB of a 4M-key tree, where every bottom node outgrows them).
type linkedNode struct {
	link link
	node node
}

// splitSlots is how many slots a node made by split has room for before they grow. At 1M keys
// with bucket size 4 the nodes at the bottom of the tree have about 14 occupied slots.
const splitSlots = 16

// remove is the legacy delete (WithLegacyDeletes): it deletes key (hashing to h) from n at depth
// and reports whether it was there. A child left empty is unlinked, so emptiness cascades up to
// (but never removes) the root; nothing is folded. Every load happens on the way down, before
// anything changes, so a failed load leaves the tree as it was.
func (t tree) remove(ctx context.Context, n *node, depth int, key string, h []byte) (bool, error) {
	i, err := slotAt(h, depth)
	if err != nil {
		return false, err
	}
	s := n.slot(i)
	switch {
	case s == nil:
		return false, nil
	case s.link() != nil:
		child, err := t.w.child(ctx, s.link(), depth+1)
		if err != nil {
			return false, err
		}
		found, err := t.remove(ctx, child, depth+1, key, h)
		if !found || err != nil {
			return false, err
		}
		if child.empty() {
			n.clear(i)
		}
	default:
		old, at, end := bucketSearch(s.bucket(), 0, key)
		switch count := bucketCount(s.bucket()); {
		case old == "":
			return false, nil
		case count == 1:
			n.clear(i)
		default:
			s.setBucket(bucketSplice(s.bucket(), at, end, nil, count-1))
		}
	}
	n.dirty = true
	return true, nil
}

// find looks key up in n alone: its value CID, or the link to follow, or neither.
func find(n *node, key string, h []byte, depth int) (cidBytes, *link, error) {
	i, err := slotAt(h, depth)
	if err != nil {
		return "", nil, err
	}
	s := n.slot(i)
	switch {
	case s == nil:
		return "", nil, nil
	case s.link() != nil:
		return "", s.link(), nil
	}
	c, _, _ := bucketSearch(s.bucket(), 0, key)
	return c, nil, nil
}
