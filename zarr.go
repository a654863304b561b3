package hamt

import (
	"context"
	"errors"
	"fmt"
	"io"
	"iter"
	"slices"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/cespare/xxhash/v2"
	"github.com/ipfs/go-cid"
	"golang.org/x/sync/errgroup"
)

// ZarrStore is a Zarr v3 store on a Map[[]byte]: what zarr-python, zarrita and friends call a
// store, with keys stored verbatim ("temp/c/0/0/0") and values as raw blocks. It is read-only
// when its map is, and safe for concurrent use.
//
// Metadata documents (keys named zarr.json) are cached after their first read; the cache follows
// every Set and Delete made through the store. Writes made to the map directly, bypassing the
// store, are not seen by that cache.
//
// A missing key is ErrNotFound, which Zarr clients read as "absent" (a fill value); every other
// error is a failure. Byte ranges go to the CAS as ranges when it is a RangeLoader, so reading a
// shard's index does not fetch the whole shard.
type ZarrStore struct {
	m       *Map[[]byte]
	box     *sealBox // nil: values are stored as they are
	workers int

	// keyLocks serializes writes of the same key made through the store (by a hash of the key),
	// so SetIfNotExists is atomic with respect to Set and Delete.
	keyLocks [64]sync.Mutex

	metaMu  sync.RWMutex
	meta    map[string][]byte // cached zarr.json documents, plaintext
	metaGen uint64            // bumped by every metadata write, so a slow read cannot cache a stale value
}

// ZarrOption configures a ZarrStore or EncryptedZarrStore.
type ZarrOption func(*zarrOptions) error

type zarrOptions struct {
	workers int
	rand    io.Reader
}

// WithZarrConcurrency bounds the number of values GetPartialValues fetches at once (default 32).
func WithZarrConcurrency(n int) ZarrOption {
	return func(o *zarrOptions) error {
		if n < 1 {
			return fmt.Errorf("hamt: concurrency %d, want at least 1", n)
		}
		o.workers = n
		return nil
	}
}

// WithNonceSource makes an EncryptedZarrStore read its nonces from r instead of crypto/rand. It
// exists to reproduce fixed test vectors: never use a predictable source for real data.
func WithNonceSource(r io.Reader) ZarrOption {
	return func(o *zarrOptions) error {
		if r == nil {
			return errors.New("hamt: nil nonce source")
		}
		o.rand = r
		return nil
	}
}

// NewZarrStore returns a Zarr store on m, which must use the Bytes codec.
func NewZarrStore(m *Map[[]byte], opts ...ZarrOption) (*ZarrStore, error) {
	o, err := buildZarrOptions(opts)
	if err != nil {
		return nil, err
	}
	return newZarrStore(m, nil, o)
}

func buildZarrOptions(opts []ZarrOption) (zarrOptions, error) {
	o := zarrOptions{workers: 32}
	for _, opt := range opts {
		if err := opt(&o); err != nil {
			return o, err
		}
	}
	return o, nil
}

func newZarrStore(m *Map[[]byte], box *sealBox, o zarrOptions) (*ZarrStore, error) {
	if m == nil {
		return nil, errors.New("hamt: zarr store: nil map")
	}
	if _, ok := m.codec.(bytesCodec); !ok {
		return nil, errors.New("hamt: zarr store: the map must use the Bytes codec")
	}
	return &ZarrStore{m: m, box: box, workers: o.workers, meta: make(map[string][]byte)}, nil
}

// Map returns the map the store writes to; Flush it to get the dataset's root.
func (s *ZarrStore) Map() *Map[[]byte] { return s.m }

// ReadOnly reports whether the store refuses writes (its map is read-only).
func (s *ZarrStore) ReadOnly() bool { return s.m.ReadOnly() }

// SupportsWrites reports whether Set works now: the map is writable.
func (s *ZarrStore) SupportsWrites() bool { return !s.m.ReadOnly() }

// SupportsDeletes reports whether Delete works now: the map is writable.
func (s *ZarrStore) SupportsDeletes() bool { return !s.m.ReadOnly() }

// SupportsListing reports true: List, ListPrefix and ListDir always work.
func (s *ZarrStore) SupportsListing() bool { return true }

// SupportsPartialWrites reports false: values are immutable blocks.
func (s *ZarrStore) SupportsPartialWrites() bool { return false }

// isMetadataKey reports whether key names a Zarr v3 metadata document.
func isMetadataKey(key string) bool {
	return key == "zarr.json" || strings.HasSuffix(key, "/zarr.json")
}

// Get returns the bytes of key that r selects (the zero ByteRange for all of them), or
// ErrNotFound. The caller owns the returned slice. Ranges are resolved as ByteRange.Bounds says;
// an invalid range is ErrInvalidRange.
func (s *ZarrStore) Get(ctx context.Context, key string, r ByteRange) ([]byte, error) {
	if err := r.Validate(); err != nil {
		return nil, fmt.Errorf("zarr get %q: %w", key, err)
	}
	if !isMetadataKey(key) {
		return s.read(ctx, key, r)
	}
	s.metaMu.RLock()
	b, ok := s.meta[key]
	gen := s.metaGen
	s.metaMu.RUnlock()
	if ok {
		return slices.Clone(r.Slice(b)), nil
	}
	b, err := s.read(ctx, key, ByteRange{})
	if err != nil {
		return nil, err
	}
	s.metaMu.Lock()
	if s.metaGen == gen {
		s.meta[key] = slices.Clone(b)
	}
	s.metaMu.Unlock()
	return r.Slice(b), nil
}

// read returns the part r of key's (plaintext) value from the map's store, by range when it can.
func (s *ZarrStore) read(ctx context.Context, key string, r ByteRange) ([]byte, error) {
	id, err := s.m.GetPointer(ctx, key)
	if err != nil {
		return nil, err
	}
	return s.source().read(ctx, key, id, r)
}

// source is where the store's value blocks are and how to read them.
func (s *ZarrStore) source() valueSource {
	return valueSource{cas: s.m.cas, verify: s.m.opts.verifyBlocks, box: s.box}
}

// Open locates key's value: its block's CID and its (plaintext) size, without loading the value
// when the CAS is a BlockSizer. A missing key is ErrNotFound.
func (s *ZarrStore) Open(ctx context.Context, key string) (*ZarrValue, error) {
	id, err := s.m.GetPointer(ctx, key)
	if err != nil {
		return nil, err
	}
	return s.source().open(ctx, key, id)
}

// WriteValue writes the bytes r selects of key's value to w and returns how many it wrote, in
// bounded pieces (see ZarrValue.WriteTo). A value that cannot be read fails before anything is
// written.
func (s *ZarrStore) WriteValue(ctx context.Context, w io.Writer, key string, r ByteRange) (int64, error) {
	return writeZarrValue(ctx, s, w, key, r)
}

// KeyRange names a part of one value, for GetPartialValues.
type KeyRange struct {
	Key   string
	Range ByteRange
}

// GetPartialValues fetches many values or parts of values at once, with at most the store's
// concurrency (WithZarrConcurrency) in flight. The result has one entry per request, in order: nil
// for a missing key, otherwise the bytes (non-nil, even when empty). Any other failure stops the
// fetch and is returned. Whole values of chunks are fetched first, together, through the map's
// GetMany (which loads them in place when the store answers in microseconds); then the rest.
func (s *ZarrStore) GetPartialValues(ctx context.Context, reqs []KeyRange) ([][]byte, error) {
	out := make([][]byte, len(reqs))
	// Whole values of chunks, stored as they are, come from the map in one GetMany; ranges,
	// metadata (cached by Get) and encrypted values go through Get one by one.
	var whole []string
	var at []int
	for i, req := range reqs {
		if s.box == nil && req.Range.IsFull() && !isMetadataKey(req.Key) {
			whole, at = append(whole, req.Key), append(at, i)
		}
	}
	if len(whole) > 0 {
		vals, found := make([][]byte, len(whole)), make([]bool, len(whole))
		if err := s.m.getMany(ctx, whole, vals, found, s.workers); err != nil {
			return nil, err
		}
		for j, i := range at {
			if found[j] {
				out[i] = vals[j]
				if out[i] == nil {
					out[i] = []byte{}
				}
			}
		}
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(s.workers)
	for i, req := range reqs {
		if len(at) > 0 && at[0] == i {
			at = at[1:]
			continue
		}
		g.Go(func() error {
			b, err := s.Get(gctx, req.Key, req.Range)
			switch {
			case errors.Is(err, ErrNotFound):
				return nil
			case err != nil:
				return err
			case b == nil:
				b = []byte{}
			}
			out[i] = b
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	return out, nil
}

// Exists reports whether key is in the store.
func (s *ZarrStore) Exists(ctx context.Context, key string) (bool, error) {
	if isMetadataKey(key) {
		s.metaMu.RLock()
		_, ok := s.meta[key]
		s.metaMu.RUnlock()
		if ok {
			return true, nil
		}
	}
	return s.m.Has(ctx, key)
}

// GetSize returns the size in bytes of key's value (plaintext size for an encrypted store), or
// ErrNotFound. It does not fetch the value when the CAS is a BlockSizer.
func (s *ZarrStore) GetSize(ctx context.Context, key string) (int64, error) {
	v, err := s.Open(ctx, key)
	if err != nil {
		return 0, err
	}
	return v.Size(), nil
}

// lockKey locks key's stripe of keyLocks and returns its unlock.
func (s *ZarrStore) lockKey(key string) func() {
	mu := &s.keyLocks[xxhash.Sum64String(key)%uint64(len(s.keyLocks))]
	mu.Lock()
	return mu.Unlock
}

// Set stores value under key. The store keeps no reference to value.
func (s *ZarrStore) Set(ctx context.Context, key string, value []byte) error {
	defer s.lockKey(key)()
	return s.set(ctx, key, value)
}

func (s *ZarrStore) set(ctx context.Context, key string, value []byte) error {
	stored := value
	if s.box != nil {
		var err error
		if stored, err = s.box.seal(value); err != nil {
			return fmt.Errorf("zarr set %q: %w", key, err)
		}
	}
	if err := s.m.Set(ctx, key, stored); err != nil {
		return err
	}
	if isMetadataKey(key) {
		s.metaMu.Lock()
		s.meta[key] = slices.Clone(value)
		s.metaGen++
		s.metaMu.Unlock()
	}
	return nil
}

// SetCID points key at the block id, already in the map's store, without loading or saving it:
// how ConvertZarr moves values between layouts on one store. An encrypted store refuses it
// (errors.ErrUnsupported): its values are sealed with its own key and header.
func (s *ZarrStore) SetCID(ctx context.Context, key string, id cid.Cid) error {
	if s.box != nil {
		return fmt.Errorf("zarr set %q: a block set by CID in an encrypted store: %w", key, errors.ErrUnsupported)
	}
	if !utf8.ValidString(key) {
		return fmt.Errorf("set %q: %w: not valid UTF-8", key, ErrInvalidKey)
	}
	defer s.lockKey(key)()
	if isMetadataKey(key) {
		s.dropMeta(key)
		defer s.dropMeta(key)
	}
	return s.m.setPointer(ctx, key, cidKey(id))
}

// SetIfNotExists stores value under key unless key is present, and reports whether it stored
// it. It is atomic with respect to the store's other writes of key.
func (s *ZarrStore) SetIfNotExists(ctx context.Context, key string, value []byte) (bool, error) {
	defer s.lockKey(key)()
	ok, err := s.m.Has(ctx, key)
	if err != nil || ok {
		return false, err
	}
	if err := s.set(ctx, key, value); err != nil {
		return false, err
	}
	return true, nil
}

// SetPartialValues is not supported (see SupportsPartialWrites): errors.ErrUnsupported.
func (s *ZarrStore) SetPartialValues(ctx context.Context, key string, offset int64, value []byte) error {
	return fmt.Errorf("zarr partial write %q: %w", key, errors.ErrUnsupported)
}

// Delete removes key; a missing key is not an error.
func (s *ZarrStore) Delete(ctx context.Context, key string) error {
	defer s.lockKey(key)()
	meta := isMetadataKey(key)
	if meta {
		// Drop the cached document before the delete (a failed delete then costs one reload, never
		// a stale read) and again after it: a Get that read the document while the delete ran may
		// have cached it in between.
		s.dropMeta(key)
		defer s.dropMeta(key)
	}
	if err := s.m.Delete(ctx, key); err != nil && !errors.Is(err, ErrNotFound) {
		return err
	}
	return nil
}

// dropMeta forgets the cached document key and makes reads begun earlier not cache theirs.
func (s *ZarrStore) dropMeta(key string) {
	s.metaMu.Lock()
	delete(s.meta, key)
	s.metaGen++
	s.metaMu.Unlock()
}

// List yields every key, in the map's order (not sorted).
func (s *ZarrStore) List(ctx context.Context) iter.Seq2[string, error] {
	return s.m.Keys(ctx)
}

// ListPrefix yields every key that starts with prefix, in the map's order.
func (s *ZarrStore) ListPrefix(ctx context.Context, prefix string) iter.Seq2[string, error] {
	return func(yield func(string, error) bool) {
		for k, err := range s.m.Keys(ctx) {
			if err != nil {
				yield("", err)
				return
			}
			if strings.HasPrefix(k, prefix) && !yield(k, nil) {
				return
			}
		}
	}
}

// ListDir returns the immediate children of the directory prefix, sorted, each once: the names of
// keys directly in it and of the directories below it. A trailing slash on prefix is optional, and
// "" is the root: ListDir("a/b/") over "a/b/c/d" and "a/b/f" gives "c" and "f".
func (s *ZarrStore) ListDir(ctx context.Context, prefix string) ([]string, error) {
	prefix = strings.TrimSuffix(prefix, "/")
	if prefix != "" {
		prefix += "/"
	}
	seen := make(map[string]struct{})
	for k, err := range s.m.Keys(ctx) {
		if err != nil {
			return nil, err
		}
		rest, ok := strings.CutPrefix(k, prefix)
		if !ok || rest == "" {
			continue
		}
		if i := strings.IndexByte(rest, '/'); i >= 0 {
			rest = rest[:i]
		}
		if rest != "" { // a key with an empty path segment ("a//b") names no child
			seen[rest] = struct{}{}
		}
	}
	out := make([]string, 0, len(seen))
	for name := range seen {
		out = append(out, name)
	}
	slices.Sort(out)
	return out, nil
}
