package hamt

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/ipfs/go-cid"
	"github.com/multiformats/go-multicodec"
	"github.com/multiformats/go-multihash"
	"github.com/zeebo/blake3"
	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
)

// BoltCAS is a CAS in one bbolt file: the embedded store, and the command-line tool's default.
//
// The file holds two buckets. "blocks" maps a block's multihash bytes to its bytes, so, as in an
// IPFS blockstore and in MemoryCAS, the same bytes saved as raw and as dag-cbor are stored once
// and load under either CID. "meta" holds the format marker and the number of blocks, kept in
// the same transaction as the blocks it counts. A third, "names", made by the first SetName,
// holds names for roots (names.go), which GC keeps (gc.go).
//
// Writes are buffered in memory and committed in batches: when the buffer holds the batch size
// in blocks (WithBoltBatchSize) or in bytes (WithBoltBatchBytes), when the flush interval has
// passed (WithBoltFlushInterval), on Flush, SaveMany and Close. Reads look in the buffer before
// the file, so a block is readable as soon as Save returns. A block is immutable: one already
// buffered or in the file is not written again.
//
// What is durable when: what Flush, SaveMany, Close, or a Save or Put with batch size 1 returned
// without error is on disk: bbolt fsyncs every commit. A Save or Put with larger batches is
// durable after the next commit (a full batch, the flush interval, or one of those calls). A
// BoltCAS is a Flusher, so the root Map.Flush or Map.MakeReadOnly returns is on disk with what it
// reaches. A commit is one bbolt transaction, so after a crash the file opens, passes Check, and
// holds every block of every commit that finished and nothing of one cut off. Blocks still in
// the buffer are lost in a crash.
//
// Every block read from the file is verified: Load, LoadMany and LoadRange hash it and compare
// it with its CID, and a mismatch (bit rot, a block changed by hand) is ErrCorrupt, never data.
// LoadRange hashes the whole block in place; a block of 64 KiB or more is hashed on its first
// read only and then remembered as verified, for up to 4096 blocks, while the store is open, so a
// Zarr shard read range by range costs one hash. BlockSize and Has read no block bytes and do not
// verify. A damaged file (truncated, pages overwritten, its B+tree made a cycle) gives errors
// wrapping ErrCorrupt, never a panic, a fault or a stack overflow: OpenBoltCAS checks the file's
// length and freelist against its meta page before bbolt maps it; every lookup first walks the
// pages bbolt will descend to the key, read apart from bbolt's map, checking each once per
// committed state of the file; and a panic or memory fault inside bbolt becomes ErrCorrupt. Damage
// on a lookup's path, or a panic or fault, leaves the store broken, every later call failing
// with that error until it is reopened.
//
// A BoltCAS is safe for concurrent use. bbolt locks the file, so one BoltCAS at a time may hold
// it for writing (in any process), or any number read-only. After Close every method but Path
// fails with an error wrapping fs.ErrClosed.
type BoltCAS struct {
	path string
	opts boltOptions
	db   *bolt.DB
	// file is the bbolt file opened a second time, for reading with ReadAt the pages a lookup
	// will descend before bbolt trusts them (see boltPaths).
	file  *os.File
	paths boltPaths

	// life is held for reading by every method while it uses the buffer or the file and for
	// writing by Close, so once Close holds it no call is inside bbolt and none can start.
	life   sync.RWMutex
	closed bool // guarded by life

	// commitMu serializes commits (bbolt has one writer at a time anyway); while it is held at
	// most one batch is inflight.
	commitMu sync.Mutex
	// committedGen is one more than the last generation of pending committed (0: none yet): every
	// block added while b.gen < committedGen is in the file. Guarded by commitMu.
	committedGen uint64

	// mu guards the buffer. A block is in pending from its Save until a commit takes the batch,
	// then in inflight until the commit has finished: readers that miss both find it in the
	// file. A failed commit puts its batch back into pending, so nothing buffered is dropped
	// while the store is open.
	mu           sync.RWMutex
	pending      map[string][]byte // multihash bytes → a copy of the block
	pendingBytes int64
	inflight     map[string][]byte
	gen          uint64 // generation of pending, incremented each time a commit takes it
	// gcKeep, while a GC runs, holds the key of every block saved or put since it began, present
	// already or not: the sweep keeps them (see GC). Guarded by mu.
	gcKeep map[string]struct{}

	// gcMu is held by a GC from start to end: one at a time.
	gcMu sync.Mutex
	// gcHold is held for reading by HoldGC's callers and for writing by a GC.
	gcHold sync.RWMutex
	// gcHook, when set (by tests), is called between a GC's phases; an error stops the GC there.
	gcHook func(phase string) error

	stop     chan struct{} // closed by Close to stop the flusher
	stopOnce sync.Once
	done     chan struct{} // closed when the flusher has returned (at once if there is none)

	// broken is set, once, by the first panic or memory fault inside bbolt (a damaged file):
	// every later call fails with it rather than use a bbolt that may hold locks or half a
	// transaction.
	broken atomic.Pointer[error]
	// verified holds the keys of large blocks hashed whole in this store's lifetime, so that
	// ranges of them are served without hashing the block again.
	verified boltVerifiedSet
}

// BoltOption configures OpenBoltCAS.
type BoltOption func(*boltOptions) error

type boltOptions struct {
	batchSize     int
	batchBytes    int64
	flushInterval time.Duration
	readOnly      bool
	timeout       time.Duration
	tel           *Telemetry // WithBoltTelemetry; nil: nothing recorded
}

// Defaults of OpenBoltCAS.
const (
	// DefaultBoltBatchSize is how many blocks are buffered before a commit.
	DefaultBoltBatchSize = 1000
	// DefaultBoltBatchBytes is how many bytes of blocks are buffered before a commit.
	DefaultBoltBatchBytes = 64 << 20
	// DefaultBoltFlushInterval is how long a block stays buffered at most.
	DefaultBoltFlushInterval = time.Second
	// DefaultBoltTimeout is how long OpenBoltCAS waits for the file's lock.
	DefaultBoltTimeout = 5 * time.Second
)

// A BoltCAS buffers writes until Flush, and can read ranges of blocks and tell their sizes
// without copying them.
var _ interface {
	CAS
	Flusher
	RangeLoader
	BlockSizer
} = (*BoltCAS)(nil)

// WithBoltBatchSize sets how many blocks are buffered before a commit (default 1000). With 1,
// every Save and Put is committed, and durable, before it returns; concurrent ones share
// commits.
func WithBoltBatchSize(n int) BoltOption {
	return func(o *boltOptions) error {
		if n < 1 {
			return fmt.Errorf("WithBoltBatchSize(%d): batch size must be at least 1", n)
		}
		o.batchSize = n
		return nil
	}
}

// WithBoltBatchBytes sets how many bytes of blocks are buffered before a commit (default 64 MiB),
// so a batch of large blocks does not hold the batch size in megabytes each.
func WithBoltBatchBytes(n int64) BoltOption {
	return func(o *boltOptions) error {
		if n < 1 {
			return fmt.Errorf("WithBoltBatchBytes(%d): must be at least 1", n)
		}
		o.batchBytes = n
		return nil
	}
}

// WithBoltFlushInterval sets how often buffered blocks are committed at the latest (default
// 1 s): a background goroutine, stopped by Close, commits the buffer this often when it is not
// empty. Zero commits only when a batch is full and on Flush, SaveMany and Close.
func WithBoltFlushInterval(d time.Duration) BoltOption {
	return func(o *boltOptions) error {
		if d < 0 {
			return fmt.Errorf("WithBoltFlushInterval(%v): must not be negative", d)
		}
		o.flushInterval = d
		return nil
	}
}

// WithBoltReadOnly opens an existing file read-only, under a shared lock that any number of
// read-only BoltCAS (in any process) may hold at once. Save, SaveMany and Put fail with
// ErrReadOnly; a missing file is an error.
func WithBoltReadOnly() BoltOption {
	return func(o *boltOptions) error {
		o.readOnly = true
		return nil
	}
}

// WithBoltVerify does nothing: a BoltCAS verifies every block it reads (see BoltCAS).
//
// Deprecated: verification is always on.
func WithBoltVerify() BoltOption {
	return func(*boltOptions) error { return nil }
}

// WithBoltTimeout sets how long OpenBoltCAS waits for the file's lock (default 5 s) when another
// BoltCAS, in this process or another, holds it. It must be positive: an open never waits for
// ever.
func WithBoltTimeout(d time.Duration) BoltOption {
	return func(o *boltOptions) error {
		if d <= 0 {
			return fmt.Errorf("WithBoltTimeout(%v): must be positive", d)
		}
		o.timeout = d
		return nil
	}
}

var (
	boltBlocksBucket = []byte("blocks")
	boltMetaBucket   = []byte("meta")
	boltFormatKey    = []byte("format")
	boltCountKey     = []byte("count") // uint64 big-endian: keys in boltBlocksBucket
	boltFormat       = []byte("hamt-go block store 1")
)

// OpenBoltCAS opens the bbolt file at path as a block store, creating it if it is missing (the
// directory must exist) unless WithBoltReadOnly is given. A file created by something else is
// refused, as is one whose lock is not had within the timeout.
func OpenBoltCAS(path string, opts ...BoltOption) (*BoltCAS, error) {
	o := boltOptions{
		batchSize:     DefaultBoltBatchSize,
		batchBytes:    DefaultBoltBatchBytes,
		flushInterval: DefaultBoltFlushInterval,
		timeout:       DefaultBoltTimeout,
	}
	for _, opt := range opts {
		if err := opt(&o); err != nil {
			return nil, fmt.Errorf("open bolt store %s: %w", path, err)
		}
	}
	if info, err := os.Stat(path); err == nil && info.Mode().IsRegular() {
		if info.Size() == 0 && o.readOnly {
			// bbolt would try to initialise it, and fail with "bad file descriptor" on the
			// read-only descriptor.
			return nil, fmt.Errorf("open bolt store %s: the file is empty: not a hamt store", path)
		}
		if info.Size() > 0 {
			if err := boltCheckFile(path, !o.readOnly); err != nil {
				return nil, fmt.Errorf("open bolt store %s: %w", path, err)
			}
		}
	}
	// bbolt's defaults otherwise: every commit fsyncs, and the freelist is written with it.
	// NoFreelistSync and the hashmap freelist made no measurable difference to Save (batched or
	// not, 150,000 blocks of 1 KiB), and NoFreelistSync makes every open scan the whole file.
	db, file, err := boltOpenFile(path, o)
	if errors.Is(err, bolterrors.ErrTimeout) {
		return nil, fmt.Errorf("open bolt store %s: the file is locked by another store, in this process or another, and was not released within %v: %w", path, o.timeout, err)
	}
	if err != nil {
		return nil, fmt.Errorf("open bolt store %s: %w", path, err)
	}
	b := &BoltCAS{
		path:    path,
		opts:    o,
		db:      db,
		file:    file,
		paths:   boltPaths{file: file, pageSize: uint32(db.Info().PageSize)},
		pending: make(map[string][]byte),
		stop:    make(chan struct{}),
		done:    make(chan struct{}),
	}
	if o.readOnly {
		err = b.read(boltTx.checkFormat)
	} else {
		err = b.guard(func() error { return db.Update(func(tx *bolt.Tx) error { return b.pathTx(tx).initFormat() }) })
	}
	if err != nil {
		_ = file.Close()
		_ = boltRecover(db.Close)
		return nil, fmt.Errorf("open bolt store %s: %w", path, err)
	}
	if o.readOnly || o.flushInterval == 0 {
		close(b.done)
	} else {
		go b.flushEvery(o.flushInterval)
	}
	return b, nil
}

// boltOpenFile opens the file at path with bbolt, and again for ReadAt (BoltCAS.file), making
// sure both are the file at path once bbolt has its lock: a GC's compaction (gc.go) renames a new
// file over the old one, and a store that waited meanwhile for the old file's lock would get it
// and write to a file gone from the directory. The second descriptor is opened first: when it is
// still the file at path after bbolt's open, so is bbolt's, opened after it.
func boltOpenFile(path string, o boltOptions) (*bolt.DB, *os.File, error) {
	for try := 0; ; try++ {
		file, preErr := os.Open(path)
		var db *bolt.DB
		err := boltRecover(func() (err error) {
			db, err = bolt.Open(path, 0o600, &bolt.Options{Timeout: o.timeout, ReadOnly: o.readOnly})
			return err
		})
		if err != nil {
			if preErr == nil {
				_ = file.Close()
			}
			return nil, nil, err
		}
		if preErr != nil { // bbolt made the file
			if file, err = os.Open(path); err != nil {
				_ = boltRecover(db.Close)
				return nil, nil, err
			}
			return db, file, nil
		}
		same, err := boltSameFile(file, path)
		if err != nil {
			_ = file.Close()
			_ = boltRecover(db.Close)
			return nil, nil, err
		}
		if same || try == 10 {
			return db, file, nil
		}
		_ = file.Close()
		_ = boltRecover(db.Close)
	}
}

// boltSameFile reports whether f is the file at path.
func boltSameFile(f *os.File, path string) (bool, error) {
	fi, err := f.Stat()
	if err != nil {
		return false, err
	}
	pi, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return os.SameFile(fi, pi), nil
}

// boltCheckFile checks, before bbolt maps the file at path, what bbolt would trust without
// checking: that the file holds every page its meta page counts (a truncated file faults when
// read through the map), and that its freelist lies within them.
//
// It runs before bbolt takes the file's lock, so a store committing in another process could
// make it see a meta page and a freelist of different commits: a failure is believed only if
// the meta page has not changed when it is read again.
func boltCheckFile(path string, freelistIDs bool) error {
	check := func() (txid uint64, err error) {
		bf, found, err := openBoltFile(path)
		if err != nil || !found {
			return 0, err // a file without a valid meta page: bbolt refuses it
		}
		defer bf.Close()
		return bf.meta.txid, bf.checkMeta(freelistIDs)
	}
	txid, err := check()
	if !errors.Is(err, ErrCorrupt) {
		return err
	}
	if again, _ := check(); again != txid {
		return nil // being written: bbolt waits for the lock
	}
	return err
}

// boltRecover runs fn, which uses bbolt, turning a panic in bbolt or a memory fault reading its
// map (both signs of a damaged file) into an error wrapping ErrCorrupt.
func boltRecover(fn func() error) error {
	_, err := boltRun(fn)
	return err
}

// boltRun is boltRecover, also reporting whether fn panicked or faulted.
func boltRun(fn func() error) (panicked bool, err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			panicked, err = true, fmt.Errorf("%w: damaged bbolt file: %v", ErrCorrupt, r)
		}
	}()
	return false, fn()
}

// guard is boltRecover for an open store: after a panic or fault the store is broken, and every
// later call fails with the same error.
func (b *BoltCAS) guard(fn func() error) error {
	if e := b.broken.Load(); e != nil {
		return *e
	}
	panicked, err := boltRun(fn)
	if panicked {
		return b.breakWith(err)
	}
	return err
}

// breakWith leaves the store broken by err, a sign of a damaged file, unless it is already
// broken, and returns err.
func (b *BoltCAS) breakWith(err error) error {
	broken := fmt.Errorf("%w (the store is unusable until reopened)", err)
	b.broken.CompareAndSwap(nil, &broken)
	return err
}

// count returns the block count in meta, or ErrCorrupt.
func (t boltTx) count(meta *bolt.Bucket) (uint64, error) {
	c, err := t.get(meta, boltCountKey)
	if err != nil {
		return 0, err
	}
	if len(c) != 8 {
		return 0, boltCorruptf("the block count is %d bytes", len(c))
	}
	return binary.BigEndian.Uint64(c), nil
}

// checkFormat checks that the transaction's file is a block store's.
func (t boltTx) checkFormat() error {
	meta, err := t.bucket(boltMetaBucket)
	if err != nil {
		return err
	}
	blocks, err := t.bucket(boltBlocksBucket)
	if err != nil {
		return err
	}
	if meta == nil || blocks == nil {
		return errors.New("not a hamt block store: no blocks or meta bucket")
	}
	f, err := t.get(meta, boltFormatKey)
	if err != nil {
		return err
	}
	if len(f) != len(boltFormat) {
		return fmt.Errorf("not a hamt block store: a format of %d bytes, want %q", len(f), boltFormat)
	} else if !bytes.Equal(f, boltFormat) {
		return fmt.Errorf("not a hamt block store: format %q, want %q", f, boltFormat)
	}
	if c, err := t.get(meta, boltCountKey); err != nil {
		return err
	} else if len(c) != 8 {
		return errors.New("not a hamt block store: no block count")
	}
	return nil
}

// initFormat makes the buckets of a new file, or checks those of an existing one.
func (t boltTx) initFormat() error {
	meta, err := t.bucket(boltMetaBucket)
	if err != nil {
		return err
	}
	if meta != nil {
		return t.checkFormat()
	}
	// A new file's root bucket is one empty leaf. (Not tx.ForEach: it would walk the whole
	// root bucket, along paths no one checked.)
	h, err := t.st.bf.header(t.rootPage())
	if err != nil {
		return t.corrupt(err)
	}
	if h.flags != boltLeafPage || h.count != 0 {
		return errors.New("not a hamt block store: it holds other buckets")
	}
	if meta, err = t.tx.CreateBucket(boltMetaBucket); err != nil {
		return err
	}
	if _, err := t.tx.CreateBucket(boltBlocksBucket); err != nil {
		return err
	}
	if err := meta.Put(boltFormatKey, boltFormat); err != nil {
		return err
	}
	return meta.Put(boltCountKey, make([]byte, 8))
}

// Path returns the file's path, as given to OpenBoltCAS. It works after Close.
func (b *BoltCAS) Path() string { return b.path }

// enter starts a method's use of the store: it returns with b.life read-locked, or an error if
// the store is closed. Callers must not call enter again before leaving (a waiting Close would
// deadlock them).
func (b *BoltCAS) enter(op string) error {
	b.life.RLock()
	if b.closed {
		b.life.RUnlock()
		return fmt.Errorf("bolt store %s: %s: %w", b.path, op, fs.ErrClosed)
	}
	return nil
}

func (b *BoltCAS) leave() { b.life.RUnlock() }

// enterWrite is enter for methods that write.
func (b *BoltCAS) enterWrite(op string) error {
	if err := b.enter(op); err != nil {
		return err
	}
	if b.opts.readOnly {
		b.leave()
		return fmt.Errorf("bolt store %s: %s: store opened read-only: %w", b.path, op, ErrReadOnly)
	}
	return nil
}

// boltKey returns the key of block id: its multihash bytes, sliced out of the CID's own string.
func boltKey(id cid.Cid) (string, bool) {
	if !id.Defined() {
		return "", false
	}
	s := id.KeyString()
	if id.Version() == 0 {
		return s, true // a CIDv0 is its multihash
	}
	n := boltSkipUvarint(s, 0) // version
	n = boltSkipUvarint(s, n)  // codec
	if n <= 0 || n >= len(s) {
		return "", false
	}
	return s[n:], true
}

// boltSkipUvarint returns the offset just past the varint at s[i:], or -1.
func boltSkipUvarint(s string, i int) int {
	for ; i >= 0 && i < len(s); i++ {
		if s[i] < 0x80 {
			return i + 1
		}
	}
	return -1
}

// boltBlake3Key is the key of a block whose blake3-256 digest is d.
func boltBlake3Key(d [32]byte) string {
	var k [34]byte
	k[0], k[1] = byte(multihash.BLAKE3), 32
	copy(k[2:], d[:])
	return string(k[:])
}

// Save buffers a copy of data and returns CIDv1(codec, blake3-256(data)), computed locally. The
// block is readable at once and durable after the next commit; with batch size 1 Save returns
// after that commit. An error from a commit it triggers is returned, but the block stays
// buffered and later commits retry it.
func (b *BoltCAS) Save(ctx context.Context, data []byte, codec multicodec.Code) (cid.Cid, error) {
	if t := b.opts.tel; t != nil {
		return t.saveOne(ctx, boltStore, codec, len(data), func(ctx context.Context) (cid.Cid, error) { return b.save(ctx, data, codec) })
	}
	return b.save(ctx, data, codec)
}

// save is Save.
func (b *BoltCAS) save(ctx context.Context, data []byte, codec multicodec.Code) (cid.Cid, error) {
	if err := ctx.Err(); err != nil {
		return cid.Undef, fmt.Errorf("bolt save: %w", err)
	}
	if err := b.enterWrite("save"); err != nil {
		return cid.Undef, err
	}
	defer b.leave()
	if len(data) > bolt.MaxValueSize {
		return cid.Undef, fmt.Errorf("bolt store %s: save: %d-byte block is larger than bbolt's %d", b.path, len(data), bolt.MaxValueSize)
	}
	d := blake3.Sum256(data)
	id := cidFromDigest(codec, d)
	if err := b.add(boltBlake3Key(d), data); err != nil {
		return cid.Undef, fmt.Errorf("bolt store %s: save %s: %w", b.path, id, err)
	}
	return id, nil
}

// Put buffers a copy of data under id, whatever id's hash function, after checking that data
// hashes to id (ErrCorrupt otherwise): the way blocks made elsewhere, such as a CAR file's, enter
// the store. It is buffered and committed as Save is.
func (b *BoltCAS) Put(ctx context.Context, id cid.Cid, data []byte) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("bolt put %s: %w", id, err)
	}
	if err := b.enterWrite("put"); err != nil {
		return err
	}
	defer b.leave()
	if ok, err := putIdentity(id, data); ok { // its bytes are its CID: nothing to store
		if err != nil {
			return fmt.Errorf("bolt store %s: put: %w", b.path, err)
		}
		return nil
	}
	key, ok := boltKey(id)
	if !ok {
		return fmt.Errorf("bolt store %s: put: invalid CID %q", b.path, id.KeyString())
	}
	if len(key) > bolt.MaxKeySize || len(data) > bolt.MaxValueSize {
		return fmt.Errorf("bolt store %s: put %s: multihash or block too large for bbolt", b.path, id)
	}
	if err := verifyBlock(id, data); err != nil {
		return fmt.Errorf("bolt store %s: put: %w", b.path, err)
	}
	if err := b.add(key, data); err != nil {
		return fmt.Errorf("bolt store %s: put %s: %w", b.path, id, err)
	}
	return nil
}

// add buffers a copy of data under key unless the block is buffered already, and commits when
// the batch is full. Callers are inside enter.
func (b *BoltCAS) add(key string, data []byte) error {
	b.mu.Lock()
	if b.gcKeep != nil {
		b.gcKeep[key] = struct{}{}
	}
	need := b.gen + 1 // the committedGen that covers this generation of pending
	_, dup := b.pending[key]
	if !dup {
		if _, dup = b.inflight[key]; dup {
			need-- // the batch being committed holds it: that commit makes it durable
		} else {
			b.pending[key] = append(make([]byte, 0, len(data)), data...)
			b.pendingBytes += int64(len(data))
		}
	}
	full := len(b.pending) >= b.opts.batchSize || b.pendingBytes >= b.opts.batchBytes
	b.mu.Unlock()
	if !full && b.opts.batchSize > 1 {
		return nil
	}
	return b.commitThrough(need)
}

// commitThrough returns once committedGen is at least need, that is once every block buffered
// in generations before need is in the file, committing the buffer unless a concurrent commit
// already did: concurrent Saves with batch size 1 share one commit.
func (b *BoltCAS) commitThrough(need uint64) error {
	b.commitMu.Lock()
	defer b.commitMu.Unlock()
	if b.committedGen >= need {
		return nil
	}
	return b.commitLocked(context.Background(), nil)
}

// boltEntry is a block on its way to the file.
type boltEntry struct {
	key  string
	data []byte
}

// commitLocked writes the whole buffer, and extra, in one transaction. When it returns nil,
// every block buffered before it was called, and all of extra, is durable; when it fails,
// nothing of it is in the file and the buffer is as before. ctx aborts the transaction between
// blocks. Callers hold b.commitMu and are inside enter.
func (b *BoltCAS) commitLocked(ctx context.Context, extra []boltEntry) error {
	b.mu.Lock()
	batch, gen := b.pending, b.gen
	if len(batch) == 0 && len(extra) == 0 {
		b.mu.Unlock()
		return nil
	}
	b.inflight = batch
	b.pending = make(map[string][]byte, len(batch))
	b.pendingBytes = 0
	b.gen++
	b.mu.Unlock()

	err := b.guard(func() error { return b.write(ctx, batch, extra) })

	b.mu.Lock()
	if err != nil {
		for k, v := range batch {
			if _, ok := b.pending[k]; !ok {
				b.pending[k] = v
				b.pendingBytes += int64(len(v))
			}
		}
	}
	b.inflight = nil
	b.mu.Unlock()
	if err != nil {
		return fmt.Errorf("commit %d blocks: %w", len(batch)+len(extra), err)
	}
	b.committedGen = gen + 1
	return nil
}

// write puts batch and extra into the file in one read-write transaction, skipping blocks it
// already holds, and commits it (bbolt fsyncs the data, then the meta page). A transaction that
// would add nothing is rolled back: its blocks are durable already.
func (b *BoltCAS) write(ctx context.Context, batch map[string][]byte, extra []boltEntry) error {
	entries := make([]boltEntry, 0, len(batch)+len(extra))
	entries = append(entries, extra...)
	for k, v := range batch {
		entries = append(entries, boltEntry{k, v})
	}
	// Keys are hashes, so a batch lands all over the tree; in key order each page is visited once.
	slices.SortFunc(entries, func(x, y boltEntry) int { return strings.Compare(x.key, y.key) })

	tx, err := b.db.Begin(true)
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback() }() // after Commit, a no-op
	// Every lookup and put checks its path first (boltTx), and so every page the commit will
	// free: those of the nodes on the paths to what it puts (see treePage).
	t := b.pathTx(tx)
	blocks, meta, err := t.buckets()
	if err != nil {
		return err
	}
	var added uint64
	for i, e := range entries {
		if i%64 == 0 && ctx.Err() != nil {
			return ctx.Err()
		}
		k := []byte(e.key)
		if got, err := t.get(blocks, k); err != nil {
			return err
		} else if got != nil {
			continue // immutable: the block (or a duplicate within entries) is there
		}
		v := e.data
		if v == nil {
			v = []byte{}
		}
		if err := t.put(blocks, k, v); errors.Is(err, bolterrors.ErrIncompatibleValue) {
			return boltCorruptf("a bucket where block %x should be", k)
		} else if err != nil {
			return err
		}
		added++
	}
	if added == 0 {
		return nil
	}
	count, err := t.count(meta)
	if err != nil {
		return err
	}
	if err := t.put(meta, boltCountKey, binary.BigEndian.AppendUint64(nil, count+added)); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	return tx.Commit()
}

// SaveMany stores every block of data, with the CIDs Save would give them, in one transaction
// together with whatever the buffer holds: after a crash the file holds all of them or none.
// They are durable when it returns without error. A ctx canceled before the commit stores none
// of them. data is not kept after it returns.
func (b *BoltCAS) SaveMany(ctx context.Context, data [][]byte, codec multicodec.Code) ([]cid.Cid, error) {
	if t := b.opts.tel; t != nil {
		size := 0
		for _, d := range data {
			size += len(d)
		}
		return t.save(ctx, boltStore, "hamt.cas.save_many", codec, len(data), size, func(ctx context.Context) ([]cid.Cid, error) { return b.saveMany(ctx, data, codec) })
	}
	return b.saveMany(ctx, data, codec)
}

// saveMany is SaveMany.
func (b *BoltCAS) saveMany(ctx context.Context, data [][]byte, codec multicodec.Code) ([]cid.Cid, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("bolt save many: %w", err)
	}
	if err := b.enterWrite("save many"); err != nil {
		return nil, err
	}
	defer b.leave()
	ids := make([]cid.Cid, len(data))
	entries := make([]boltEntry, len(data))
	for i, block := range data {
		if i%64 == 0 && ctx.Err() != nil {
			return nil, fmt.Errorf("bolt save many: %w", ctx.Err())
		}
		if len(block) > bolt.MaxValueSize {
			return nil, fmt.Errorf("bolt store %s: save many: block %d: %d bytes is larger than bbolt's %d", b.path, i, len(block), bolt.MaxValueSize)
		}
		d := blake3.Sum256(block)
		ids[i] = cidFromDigest(codec, d)
		entries[i] = boltEntry{boltBlake3Key(d), block}
	}
	b.mu.Lock()
	if b.gcKeep != nil {
		for _, e := range entries {
			b.gcKeep[e.key] = struct{}{}
		}
	}
	b.mu.Unlock()
	b.commitMu.Lock()
	defer b.commitMu.Unlock()
	if err := b.commitLocked(ctx, entries); err != nil {
		return nil, fmt.Errorf("bolt store %s: save many: %w", b.path, err)
	}
	return ids, nil
}

// Flush commits everything buffered; it is on disk (fsynced) when Flush returns without error.
// A failed Flush leaves the blocks buffered, to be retried. On a read-only store it does nothing.
func (b *BoltCAS) Flush(ctx context.Context) error {
	if t := b.opts.tel; t != nil {
		return t.storeFlush(ctx, b.flush)
	}
	return b.flush(ctx)
}

// flush is Flush.
func (b *BoltCAS) flush(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("bolt flush: %w", err)
	}
	if err := b.enter("flush"); err != nil {
		return err
	}
	defer b.leave()
	b.commitMu.Lock()
	defer b.commitMu.Unlock()
	if err := b.commitLocked(ctx, nil); err != nil {
		return fmt.Errorf("bolt store %s: flush: %w", b.path, err)
	}
	return nil
}

// flushEvery commits the buffer every d until Close stops it. A failed commit leaves the blocks
// buffered; the next tick, Flush or Close retries them and reports the error.
func (b *BoltCAS) flushEvery(d time.Duration) {
	defer close(b.done)
	t := time.NewTicker(d)
	defer t.Stop()
	for {
		select {
		case <-b.stop:
			return
		case <-t.C:
		}
		if b.enter("background flush") != nil {
			return
		}
		b.mu.RLock()
		empty := len(b.pending) == 0
		b.mu.RUnlock()
		if !empty {
			b.commitMu.Lock()
			_ = b.commitLocked(context.Background(), nil)
			b.commitMu.Unlock()
		}
		b.leave()
	}
}

// buffered returns a copy of the buffered block key, if it is buffered.
func (b *BoltCAS) buffered(key string) ([]byte, bool) {
	b.mu.RLock()
	defer b.mu.RUnlock()
	v, ok := b.pending[key]
	if !ok {
		v, ok = b.inflight[key]
	}
	if !ok {
		return nil, false
	}
	return append(make([]byte, 0, len(v)), v...), true
}

// read runs fn in a read transaction, guarded (see guard).
func (b *BoltCAS) read(fn func(boltTx) error) error {
	return b.guard(func() error { return b.db.View(func(tx *bolt.Tx) error { return fn(b.pathTx(tx)) }) })
}

// value returns the stored bytes of block key in tx (bbolt's, valid only during tx), or nil and
// false if the file lacks it. blocks is the blocks bucket. Bytes that a damaged page places
// outside the file are ErrCorrupt. A nested bucket where a block should be reads as no block
// (bbolt's Get; opening it to say more would trust its damaged value): Check reports it.
func (b *BoltCAS) value(t boltTx, blocks *bolt.Bucket, key string) ([]byte, bool, error) {
	k := []byte(key)
	v, err := t.get(blocks, k)
	if err != nil {
		return nil, false, err
	}
	if v == nil { // a block, even empty, is never nil
		return nil, false, nil
	}
	info := b.db.Info()
	// bbolt believes the sizes and offsets it finds in a page: check that the value lies within
	// the pages the transaction sees before copying or hashing it. The bucket of a small store
	// is inline, in one page, and bbolt may have copied it from the map.
	if blocks.Root() == 0 {
		if len(v) > info.PageSize {
			return nil, false, boltCorruptf("block %x is larger than its inline bucket", k)
		}
	} else if len(v) > 0 {
		start := uintptr(unsafe.Pointer(unsafe.SliceData(v))) - info.Data
		if size := uintptr(t.tx.Size()); start >= size || uintptr(len(v)) > size-start {
			return nil, false, boltCorruptf("block %x lies outside the file", k)
		}
	}
	return v, true, nil
}

// view runs fn with the stored bytes of block key, or nil and false if the file lacks it. The
// bytes are bbolt's, valid only during fn.
func (b *BoltCAS) view(key string, fn func(v []byte, ok bool) error) error {
	return b.read(func(t boltTx) error {
		blocks, _, err := t.buckets()
		if err != nil {
			return err
		}
		v, ok, err := b.value(t, blocks, key)
		if err != nil {
			return err
		}
		return fn(v, ok)
	})
}

// Load returns a copy of block id, from the buffer or the file, or ErrNotFound. A block read from
// the file is hashed and checked against id: a mismatch is ErrCorrupt.
func (b *BoltCAS) Load(ctx context.Context, id cid.Cid) ([]byte, error) {
	if t := b.opts.tel; t != nil {
		return t.load(ctx, boltStore, id, false, func(ctx context.Context) ([]byte, error) { return b.load(ctx, id) })
	}
	return b.load(ctx, id)
}

// load is Load.
func (b *BoltCAS) load(ctx context.Context, id cid.Cid) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("bolt load %s: %w", id, err)
	}
	if err := b.enter("load"); err != nil {
		return nil, err
	}
	defer b.leave()
	if d, ok, err := identityBlock(id); ok {
		if err != nil {
			return nil, fmt.Errorf("bolt load: %w", err)
		}
		return d, nil
	}
	key, ok := boltKey(id)
	if !ok {
		return nil, fmt.Errorf("load %s: %w", id, ErrNotFound)
	}
	if v, ok := b.buffered(key); ok {
		return v, nil
	}
	var data []byte
	var found bool
	if err := b.view(key, func(v []byte, ok bool) error {
		data, found = append(make([]byte, 0, len(v)), v...), ok
		return nil
	}); err != nil {
		return nil, fmt.Errorf("bolt store %s: load %s: %w", b.path, id, err)
	}
	if !found {
		return nil, fmt.Errorf("load %s: %w", id, ErrNotFound)
	}
	if err := b.verify(key, data); err != nil {
		return nil, fmt.Errorf("bolt store %s: load %s: %w", b.path, id, err)
	}
	return data, nil
}

// LoadMany returns the blocks ids name, one entry per id in order: a copy of the block, or nil
// for one the store does not hold (a present block is never nil, even when empty). Blocks not
// buffered are read in one read transaction, so they come from one state of the file, and are
// verified as Load's are: one that does not match its CID fails the call with ErrCorrupt.
func (b *BoltCAS) LoadMany(ctx context.Context, ids []cid.Cid) ([][]byte, error) {
	if t := b.opts.tel; t != nil {
		return t.loadMany(ctx, boltStore, ids, func(ctx context.Context) ([][]byte, error) { return b.loadMany(ctx, ids) })
	}
	return b.loadMany(ctx, ids)
}

// loadMany is LoadMany.
func (b *BoltCAS) loadMany(ctx context.Context, ids []cid.Cid) ([][]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("bolt load many: %w", err)
	}
	if err := b.enter("load many"); err != nil {
		return nil, err
	}
	defer b.leave()
	out := make([][]byte, len(ids))
	keys := make([]string, len(ids))
	var fromFile []int
	b.mu.RLock()
	for i, id := range ids {
		if d, ok, err := identityBlock(id); ok {
			if err != nil {
				b.mu.RUnlock()
				return nil, fmt.Errorf("bolt load many %s: %w", id, err)
			}
			out[i] = d
			continue
		}
		key, ok := boltKey(id)
		if !ok {
			continue
		}
		keys[i] = key
		v, ok := b.pending[key]
		if !ok {
			v, ok = b.inflight[key]
		}
		if ok {
			out[i] = append(make([]byte, 0, len(v)), v...)
		} else {
			fromFile = append(fromFile, i)
		}
	}
	b.mu.RUnlock()
	if len(fromFile) == 0 {
		return out, nil
	}
	err := b.read(func(t boltTx) error {
		blocks, _, err := t.buckets()
		if err != nil {
			return err
		}
		for n, i := range fromFile {
			if n%64 == 0 && ctx.Err() != nil {
				return ctx.Err()
			}
			v, ok, err := b.value(t, blocks, keys[i])
			if err != nil {
				return err
			}
			if ok {
				out[i] = append(make([]byte, 0, len(v)), v...)
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("bolt store %s: load many: %w", b.path, err)
	}
	for _, i := range fromFile {
		if out[i] != nil {
			if err := b.verify(keys[i], out[i]); err != nil {
				return nil, fmt.Errorf("bolt store %s: load many %s: %w", b.path, ids[i], err)
			}
		}
	}
	return out, nil
}

// verify hashes block key, read from the file, and compares it with the key; a block of at least
// boltVerifyOnceSize is remembered as verified, so that LoadRange need not hash it again.
func (b *BoltCAS) verify(key string, data []byte) error {
	if err := boltVerify(key, data); err != nil {
		return err
	}
	if len(data) >= boltVerifyOnceSize {
		b.verified.add(key)
	}
	return nil
}

// Has reports whether the store holds block id, buffered or in the file.
func (b *BoltCAS) Has(ctx context.Context, id cid.Cid) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, fmt.Errorf("bolt has %s: %w", id, err)
	}
	if err := b.enter("has"); err != nil {
		return false, err
	}
	defer b.leave()
	if _, ok, err := identityBlock(id); ok {
		return err == nil, err
	}
	key, ok := boltKey(id)
	if !ok {
		return false, nil
	}
	b.mu.RLock()
	_, ok = b.pending[key]
	if !ok {
		_, ok = b.inflight[key]
	}
	b.mu.RUnlock()
	if ok {
		return true, nil
	}
	if err := b.view(key, func(_ []byte, found bool) error { ok = found; return nil }); err != nil {
		return false, fmt.Errorf("bolt store %s: has %s: %w", b.path, id, err)
	}
	return ok, nil
}

// LoadRange returns a copy of the part of block id that r selects (see ByteRange.Bounds), copying
// only those bytes, or ErrNotFound. The block is verified as Load's are, whole (a range alone
// cannot be checked against a CID): a block smaller than boltVerifyOnceSize is hashed on every
// call, in place; a larger one (a Zarr shard) on its first read in the store's lifetime, after
// which the store remembers it verified (up to boltVerifiedMax blocks, the oldest forgotten
// first), so reading a large block range by range costs one hash of it, not one per range.
func (b *BoltCAS) LoadRange(ctx context.Context, id cid.Cid, r ByteRange) ([]byte, error) {
	if t := b.opts.tel; t != nil {
		return t.load(ctx, boltStore, id, true, func(ctx context.Context) ([]byte, error) { return b.loadRange(ctx, id, r) })
	}
	return b.loadRange(ctx, id, r)
}

// loadRange is LoadRange.
func (b *BoltCAS) loadRange(ctx context.Context, id cid.Cid, r ByteRange) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("bolt load %s %s: %w", id, r, err)
	}
	if err := r.Validate(); err != nil {
		return nil, err
	}
	if err := b.enter("load range"); err != nil {
		return nil, err
	}
	defer b.leave()
	if d, ok, err := identityBlock(id); ok {
		if err != nil {
			return nil, fmt.Errorf("bolt load: %w", err)
		}
		return r.Slice(d), nil
	}
	key, ok := boltKey(id)
	if !ok {
		return nil, fmt.Errorf("load %s: %w", id, ErrNotFound)
	}
	var part []byte
	found, err := b.slice(key, true, func(v []byte) { part = append([]byte{}, r.Slice(v)...) })
	if err != nil {
		return nil, fmt.Errorf("bolt store %s: load %s %s: %w", b.path, id, r, err)
	}
	if !found {
		return nil, fmt.Errorf("load %s: %w", id, ErrNotFound)
	}
	return part, nil
}

// BlockSize returns the size of block id without copying or verifying it, or ErrNotFound.
func (b *BoltCAS) BlockSize(ctx context.Context, id cid.Cid) (int64, error) {
	if err := ctx.Err(); err != nil {
		return 0, fmt.Errorf("bolt block size %s: %w", id, err)
	}
	if err := b.enter("block size"); err != nil {
		return 0, err
	}
	defer b.leave()
	if d, ok, err := identityBlock(id); ok {
		if err != nil {
			return 0, fmt.Errorf("bolt block size: %w", err)
		}
		return int64(len(d)), nil
	}
	key, ok := boltKey(id)
	if !ok {
		return 0, fmt.Errorf("block size %s: %w", id, ErrNotFound)
	}
	var n int64
	found, err := b.slice(key, false, func(v []byte) { n = int64(len(v)) })
	if err != nil {
		return 0, fmt.Errorf("bolt store %s: block size %s: %w", b.path, id, err)
	}
	if !found {
		return 0, fmt.Errorf("block size %s: %w", id, ErrNotFound)
	}
	return n, nil
}

// slice runs fn on the bytes of block key in place, from the buffer or the file, and reports
// whether the store holds it; fn must copy what it keeps. With verify, a block from the file is
// first verified as LoadRange describes.
func (b *BoltCAS) slice(key string, verify bool, fn func(v []byte)) (found bool, err error) {
	b.mu.RLock()
	v, ok := b.pending[key]
	if !ok {
		v, ok = b.inflight[key]
	}
	if ok {
		fn(v)
	}
	b.mu.RUnlock()
	if ok {
		return true, nil
	}
	err = b.view(key, func(v []byte, ok bool) error {
		if found = ok; !ok {
			return nil
		}
		if verify && (len(v) < boltVerifyOnceSize || !b.verified.has(key)) {
			if err := b.verify(key, v); err != nil {
				return err
			}
		}
		fn(v)
		return nil
	})
	return found, err
}

// Verification of ranges: see LoadRange.
const (
	// boltVerifyOnceSize is the size from which a block verified whole is remembered: hashing a
	// smaller one costs less than a few microseconds.
	boltVerifyOnceSize = 64 << 10
	// boltVerifiedMax is how many verified blocks a store remembers: 4096 keys of 34 bytes.
	boltVerifiedMax = 4096
)

// boltVerifiedSet is a bounded set of block keys, the oldest dropped first when it is full.
type boltVerifiedSet struct {
	mu    sync.Mutex
	keys  map[string]struct{}
	order []string // insertion order, a ring of boltVerifiedMax once full
	next  int      // where the next key goes in order, once full
}

func (s *boltVerifiedSet) has(key string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.keys[key]
	return ok
}

func (s *boltVerifiedSet) add(key string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.keys[key]; ok {
		return
	}
	if s.keys == nil {
		s.keys = make(map[string]struct{})
	}
	if len(s.order) < boltVerifiedMax {
		s.order = append(s.order, key)
	} else {
		delete(s.keys, s.order[s.next])
		s.order[s.next] = key
		s.next = (s.next + 1) % boltVerifiedMax
	}
	s.keys[key] = struct{}{}
}

// Len returns how many blocks the store holds, in the file and buffered, each counted once.
func (b *BoltCAS) Len(ctx context.Context) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, fmt.Errorf("bolt len: %w", err)
	}
	if err := b.enter("len"); err != nil {
		return 0, err
	}
	defer b.leave()
	b.mu.RLock()
	keys := make([]string, 0, len(b.pending)+len(b.inflight))
	for k := range b.pending {
		keys = append(keys, k)
	}
	for k := range b.inflight {
		if _, ok := b.pending[k]; !ok {
			keys = append(keys, k)
		}
	}
	b.mu.RUnlock()
	var n uint64
	err := b.read(func(t boltTx) error {
		blocks, meta, err := t.buckets()
		if err != nil {
			return err
		}
		if n, err = t.count(meta); err != nil {
			return err
		}
		for _, key := range keys {
			if v, err := t.get(blocks, []byte(key)); err != nil {
				return err
			} else if v == nil {
				n++
			}
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("bolt store %s: len: %w", b.path, err)
	}
	return int(n), nil
}

// Check checks the file: its page structure (every page within the file, reached once, its
// elements within it: damage there is ErrCorrupt), bbolt's own consistency check (no page both
// used and free, none lost, keys in order), and that the block count matches the blocks. With
// verifyBlocks every block is also re-hashed and compared with its key: a mismatch is
// ErrCorrupt. It reads the committed file only (buffered blocks were hashed when saved), in one
// read transaction; commits wait for it to end.
func (b *BoltCAS) Check(ctx context.Context, verifyBlocks bool) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("bolt check: %w", err)
	}
	if err := b.enter("check"); err != nil {
		return err
	}
	defer b.leave()
	// No commit may change the meta page between the structure check and the transaction.
	b.commitMu.Lock()
	defer b.commitMu.Unlock()
	err := b.read(func(t boltTx) error {
		tx := t.tx
		// bbolt's check runs on a goroutine of its own, where a fault is not recoverable, and
		// the cursor below goes through every page: first make sure neither can fault or loop.
		if err := b.checkWholeTree(tx); err != nil {
			return err
		}
		var errs []error
		// Drain every error: the checker runs on its own goroutine reading tx.
		for err := range tx.Check() {
			if len(errs) < 10 {
				errs = append(errs, err)
			}
		}
		if len(errs) > 0 {
			return fmt.Errorf("%w: damaged bbolt file: bbolt's consistency check: %w", ErrCorrupt, errors.Join(errs...))
		}
		if err := t.checkFormat(); err != nil {
			return err
		}
		blocks, meta, err := t.buckets()
		if err != nil {
			return err
		}
		want, err := t.count(meta)
		if err != nil {
			return err
		}
		var n uint64
		cur := blocks.Cursor()
		for k, v := cur.First(); k != nil; k, v = cur.Next() {
			n++
			if n%256 == 0 && ctx.Err() != nil {
				return ctx.Err()
			}
			if v == nil {
				return boltCorruptf("a nested bucket %x among the blocks", k)
			}
			if !verifyBlocks {
				continue
			}
			if err := boltVerify(string(k), v); err != nil {
				return err
			}
		}
		if n != want {
			return boltCorruptf("the file holds %d blocks but counts %d", n, want)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("bolt store %s: check: %w", b.path, err)
	}
	return nil
}

// verifiesLoads marks BoltCAS as a store that verifies every block it returns.
func (b *BoltCAS) verifiesLoads() {}

// boltVerify checks that v hashes to the multihash k.
func boltVerify(k string, v []byte) error {
	if len(k) == 34 && k[0] == byte(multihash.BLAKE3) && k[1] == 32 {
		if d := blake3.Sum256(v); string(d[:]) != k[2:] {
			return fmt.Errorf("%w: the block with multihash %x does not hash to it", ErrCorrupt, k)
		}
		return nil
	}
	dec, err := multihash.Decode([]byte(k))
	if err != nil {
		return fmt.Errorf("%w: key %x is not a multihash: %v", ErrCorrupt, k, err)
	}
	got, err := multihash.Sum(v, dec.Code, dec.Length)
	if err != nil {
		return fmt.Errorf("verify block with multihash %x: %w", k, err)
	}
	if string(got) != k {
		return fmt.Errorf("%w: the block with multihash %x does not hash to it", ErrCorrupt, k)
	}
	return nil
}

// Close commits the buffer, stops the background flusher and closes the file. It reports an
// error committing (the blocks it could not commit are lost) but not one closing the file;
// CloseStrict reports both. The file is closed in either case. A second Close fails.
func (b *BoltCAS) Close() error {
	flushErr, _ := b.close()
	return flushErr
}

// CloseStrict is Close, also reporting an error closing the file.
func (b *BoltCAS) CloseStrict() error {
	flushErr, closeErr := b.close()
	return errors.Join(flushErr, closeErr)
}

func (b *BoltCAS) close() (flushErr, closeErr error) {
	// Stop the flusher before taking life: it takes life for reading on every tick.
	b.stopOnce.Do(func() { close(b.stop) })
	<-b.done
	b.life.Lock()
	defer b.life.Unlock()
	if b.closed {
		return fmt.Errorf("bolt store %s: close: %w", b.path, fs.ErrClosed), nil
	}
	b.closed = true
	if !b.opts.readOnly {
		b.commitMu.Lock()
		if err := b.commitLocked(context.Background(), nil); err != nil {
			flushErr = fmt.Errorf("bolt store %s: close: %w", b.path, err)
		}
		b.commitMu.Unlock()
	}
	b.mu.Lock()
	b.pending, b.inflight, b.pendingBytes = nil, nil, 0
	b.mu.Unlock()
	if err := b.closeFile(); err != nil {
		closeErr = fmt.Errorf("bolt store %s: close file: %w", b.path, err)
	}
	return flushErr, closeErr
}

// closeFile closes the bbolt file. After a panic in bbolt (see guard) a lock may be left held:
// the close then runs on a goroutine of its own, and is given up after a second rather than hang
// the caller (the file stays open until the process ends).
func (b *BoltCAS) closeFile() error {
	if b.file != nil {
		_ = b.file.Close() // read only
	}
	if b.broken.Load() == nil {
		return boltRecover(b.db.Close)
	}
	done := make(chan error, 1)
	go func() { done <- boltRecover(b.db.Close) }()
	select {
	case err := <-done:
		return err
	case <-time.After(time.Second):
		return fmt.Errorf("%w: the damaged file could not be closed; it stays open until the process ends", ErrCorrupt)
	}
}
