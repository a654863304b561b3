package hamt

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/ipfs/go-cid"
)

// This file holds the sharded Zarr store's type, its options, the root model (v1 and v2, decoded
// from and encoded to DAG-CBOR exactly as py-hamt 3.5 writes it), the chunk grid arithmetic and
// the classification of keys into metadata and chunks. Reads are in sharded_read.go, writes in
// sharded_write.go, the shard blocks in sharded_shard.go.

// Sentinel errors of the sharded Zarr store, for errors.Is. The store's errors wrap them (or
// ErrNotFound, ErrReadOnly, ErrMalformedValue) with the key, path or CID that failed.
var (
	// ErrUnregisteredArray: a chunk written to (or grafted from or to) an array path that a v2
	// store has no index for. Write the array's metadata (zarr.json with shape and
	// chunk_grid.configuration.chunk_shape, or .zarray with chunks) first. py-hamt raises a
	// RuntimeError here, after saving the chunk's block, as the store does.
	ErrUnregisteredArray = errors.New("no array index registered for the path")
	// ErrChunkShapeChanged: array metadata that gives a registered array another chunk shape.
	// An index's chunk grid is fixed; a changed shape is a resize, a changed chunk shape a new
	// array (delete it first).
	ErrChunkShapeChanged = errors.New("cannot change the chunk shape of a registered array")
	// ErrGroupRequired: py-hamt's sharded_zarr_v2 wants datasets under a Zarr group ("0/temp",
	// not "temp"). A v2 store refuses array metadata at the top level right after the root
	// group's metadata, and a read-only v2 store whose arrays sit under several top-level groups
	// refuses to list its root ("" is ambiguous there; list a group).
	ErrGroupRequired = errors.New("sharded_zarr_v2 requires an explicit Zarr group")
	// ErrInvalidChunkKey: a chunk key of a v1 store whose coordinates are not numbers, have the
	// wrong rank or lie outside the chunk grid (a v2 store ignores such keys: they read as absent
	// and writes to them do nothing, as in py-hamt), or a graft whose chunks would land outside
	// the target's grid.
	ErrInvalidChunkKey = errors.New("invalid chunk key")
	// ErrInvalidShape: an array shape or chunk shape the store cannot index: not a list of
	// integers, ranks that differ, a chunk dimension below 1, a negative dimension, or a grid
	// beyond the store's limits (MaxChunksPerShard, MaxShards).
	ErrInvalidShape = errors.New("invalid array shape")
)

const (
	// DefaultChunksPerShard is the chunks per shard of arrays a new store registers, py-hamt's
	// converter default: a full shard of 6250 CIDs is 256,253 bytes, one block under Kubo's
	// default 256 KiB chunker.
	DefaultChunksPerShard = 6250
	// DefaultShardCacheBytes is the default byte budget of the shard cache.
	DefaultShardCacheBytes = 64 << 20
	// MaxChunksPerShard bounds chunks_per_shard (a full shard of it is about 172 MB), so that a
	// root cannot make the store allocate without bound.
	MaxChunksPerShard = 1 << 22
	// MaxShards bounds the shards of one index (a root listing them is about 172 MB), and those
	// a store's writes register or resize arrays to, all arrays together (each shard costs 16
	// bytes in memory whether it holds a chunk or not).
	MaxShards = 1 << 22
)

const (
	shardedV1 = "sharded_zarr_v1"
	shardedV2 = "sharded_zarr_v2"
)

// ShardedOption configures NewShardedZarrStore, NewShardedZarrStoreV1 and OpenShardedZarrStore.
type ShardedOption func(*shardedOptions) error

type shardedOptions struct {
	chunksPerShard int // 0: not given
	cacheBytes     int64
	readOnly       bool
	verify         bool
}

// WithChunksPerShard sets how many chunk CIDs one shard holds for the arrays a new store registers
// (default DefaultChunksPerShard), or for the index of a new v1 store. Opening a store, it only
// applies when the root gives no default (a v2 root without arrays or sharding_config).
func WithChunksPerShard(n int) ShardedOption {
	return func(o *shardedOptions) error {
		if n < 1 || n > MaxChunksPerShard {
			return fmt.Errorf("WithChunksPerShard(%d): want 1 to %d: %w", n, MaxChunksPerShard, ErrInvalidShape)
		}
		o.chunksPerShard = n
		return nil
	}
}

// WithShardCacheBytes sets the byte budget of the cache of shard blocks read from the store
// (default DefaultShardCacheBytes). Zero caches nothing: every chunk read loads its shard.
func WithShardCacheBytes(n int64) ShardedOption {
	return func(o *shardedOptions) error {
		if n < 0 {
			return fmt.Errorf("WithShardCacheBytes(%d): budget must not be negative", n)
		}
		o.cacheBytes = n
		return nil
	}
}

// WithShardedReadOnly opens the store read-only: Set, Delete and the other writes return
// ErrReadOnly.
func WithShardedReadOnly() ShardedOption {
	return func(o *shardedOptions) error {
		o.readOnly = true
		return nil
	}
}

// WithShardedVerifyBlocks makes the store hash every block it loads (root, shards, values) and
// compare it with its CID (ErrCorrupt on a mismatch), as WithVerifyBlocks does for a Map. BoltCAS
// and KuboCAS verify by themselves; with them the option changes nothing.
func WithShardedVerifyBlocks() ShardedOption {
	return func(o *shardedOptions) error {
		o.verify = true
		return nil
	}
}

func buildShardedOptions(opts []ShardedOption) (shardedOptions, error) {
	o := shardedOptions{cacheBytes: DefaultShardCacheBytes}
	for _, opt := range opts {
		if err := opt(&o); err != nil {
			return o, fmt.Errorf("hamt: sharded zarr store: %w", err)
		}
	}
	return o, nil
}

// ShardedZarrStore is a Zarr store in py-hamt's sharded layout (SHARDED.md): metadata documents
// are listed by key in the root, and the chunks of each array are found arithmetically, chunk
// coordinates → linear index → shard and slot, in a flat list of shard blocks of chunk CIDs. A read
// needs one shard block, not a walk down a trie. It reads roots of both versions py-hamt writes
// (sharded_zarr_v1, one index for the dataset's primary array; sharded_zarr_v2, one index per
// array) and writes them as py-hamt 3.5 does, byte for byte: the same operations give the same
// blocks and the same root CID.
//
// It implements Zarr. Writes stay in memory (the changed shards and the root) until Flush, which
// saves them and returns the root CID, the dataset's identity. The store is safe for concurrent
// use by any number of readers and writers; writes are applied one at a time, and a read sees
// the store before or after each write (between the steps of one, for a Set that also creates
// parent groups or resizes an array). Shard blocks read from the store are kept in a cache with a
// byte budget (WithShardCacheBytes).
//
// Missing keys are ErrNotFound; a root or shard that is not what py-hamt writes is
// ErrMalformedValue.
type ShardedZarrStore struct {
	cas      CAS
	opts     shardedOptions
	src      valueSource // how value blocks are read
	readOnly bool
	cache    *shardCache

	// writeMu serializes writes (Set, Delete, the py-hamt operations, Flush); a writer holds it
	// through its I/O. Readers never take it.
	writeMu sync.Mutex
	// mu guards the fields below; held briefly, never across store I/O.
	mu        sync.RWMutex
	root      *shardedRoot
	rootID    cid.Cid // the last root saved or opened; cid.Undef before the first Flush of a new store
	dirtyRoot bool
	// dirty holds the shards changed since the last Flush, whole, by array and shard index.
	dirty map[shardKey][]cid.Cid
	// pendingRootGroup is py-hamt's _v2_pending_root_group_write: the last metadata written was
	// the root group's, so array metadata at the top level now is refused (ErrGroupRequired).
	pendingRootGroup bool

	// encodings caches the chunk key encoding of array metadata blocks, by CID and kind of
	// document, for listings.
	encMu     sync.Mutex
	encodings map[encodingKey]chunkEncoding
}

var _ Zarr = (*ShardedZarrStore)(nil)

// shardKey names one shard of one array.
type shardKey struct {
	path string
	idx  int
}

// NewShardedZarrStore returns an empty writable v2 store (sharded_zarr_v2, the layout py-hamt 3.5
// writes) on cas. Arrays are registered as their metadata is written; flush to get the root.
func NewShardedZarrStore(cas CAS, opts ...ShardedOption) (*ShardedZarrStore, error) {
	o, err := buildShardedOptions(opts)
	if err != nil {
		return nil, err
	}
	if o.readOnly {
		return nil, errors.New("hamt: sharded zarr store: a new store cannot be read-only (open a root instead)")
	}
	if o.chunksPerShard == 0 {
		o.chunksPerShard = DefaultChunksPerShard
	}
	r := &shardedRoot{
		version:    2,
		metadata:   map[string]cid.Cid{},
		arrays:     map[string]*arrayIndex{},
		defaultCPS: o.chunksPerShard,
		extra: map[string]any{
			"store_type":      "py_hamt.sharded_zarr",
			"zarr_format":     int64(3),
			"sharding_config": map[string]any{"chunks_per_shard": int64(o.chunksPerShard), "order": "C"},
		},
	}
	return newShardedStore(cas, o, r, cid.Undef, true), nil
}

// NewShardedZarrStoreV1 returns an empty writable v1 store (sharded_zarr_v1, what py-hamt 3.3
// writes and 3.5 still reads) whose single chunk index is for an array of the given shape and
// chunk shape, with WithChunksPerShard chunks per shard (default DefaultChunksPerShard). Use it
// only for readers that know no v2; the index serves one array, and chunks of the others go to
// the root's metadata.
func NewShardedZarrStoreV1(cas CAS, shape, chunkShape []int64, opts ...ShardedOption) (*ShardedZarrStore, error) {
	o, err := buildShardedOptions(opts)
	if err != nil {
		return nil, err
	}
	if o.readOnly {
		return nil, errors.New("hamt: sharded zarr store: a new store cannot be read-only (open a root instead)")
	}
	if o.chunksPerShard == 0 {
		o.chunksPerShard = DefaultChunksPerShard
	}
	idx, err := newArrayIndex("", shape, chunkShape, o.chunksPerShard)
	if err != nil {
		return nil, fmt.Errorf("hamt: sharded zarr store: %w", err)
	}
	r := &shardedRoot{
		version:    1,
		metadata:   map[string]cid.Cid{},
		arrays:     map[string]*arrayIndex{"": idx},
		order:      []string{""},
		hasPrimary: true,
		defaultCPS: o.chunksPerShard,
		extra:      map[string]any{},
		v1Chunks: map[string]any{
			"chunk_shape":     int64List(chunkShape),
			"sharding_config": map[string]any{"chunks_per_shard": int64(o.chunksPerShard)},
		},
	}
	return newShardedStore(cas, o, r, cid.Undef, true), nil
}

// OpenShardedZarrStore opens the sharded store whose root block is root. The store is writable
// unless WithShardedReadOnly is given. A v1 root without primary_array_path (py-hamt 3.3) has its
// primary array inferred as py-hamt 3.5 does: the one array whose metadata declares the index's
// shape and chunk shape, if exactly one does; a writable store records it in its next root.
func OpenShardedZarrStore(ctx context.Context, cas CAS, root cid.Cid, opts ...ShardedOption) (*ShardedZarrStore, error) {
	o, err := buildShardedOptions(opts)
	if err != nil {
		return nil, err
	}
	verify := o.verify && !storeVerifies(cas)
	b, err := loadValue(ctx, cas, root, ByteRange{}, verify)
	if err != nil {
		return nil, fmt.Errorf("hamt: open sharded root %s: %w", root, missingBlock(err))
	}
	r, err := decodeShardedRoot(b)
	if err != nil {
		return nil, fmt.Errorf("hamt: open sharded root %s: %w", root, err)
	}
	if r.defaultCPS == 0 {
		r.defaultCPS = o.chunksPerShard
	}
	s := newShardedStore(cas, o, r, root, false)
	if r.version == 1 && !r.v1Recorded {
		if err := s.inferV1Primary(ctx); err != nil {
			return nil, fmt.Errorf("hamt: open sharded root %s: %w", root, err)
		}
	}
	return s, nil
}

// inferV1Primary is py-hamt 3.5's _infer_v1_legacy_primary_array_path, for a v1 root without
// primary_array_path: when exactly one array (not a coordinate array) has metadata declaring the
// index's shape and chunk shape, it is the primary, and a writable store records it. A metadata
// block that cannot be loaded stops the inference (it might have been the primary); so does a
// second match.
func (s *ShardedZarrStore) inferV1Primary(ctx context.Context) error {
	r := s.root
	idx := r.v1Index()
	keys := make([]string, 0, len(r.metadata))
	for k := range r.metadata {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, canonicalKeyOrder) // the root's order, which py-hamt follows
	var match string
	matches := 0
	for _, k := range keys {
		path, ok := arrayPathOfMetadataKey(k)
		if !ok {
			continue
		}
		path = normalizePath(path)
		if v1CoordinateArrays[path[strings.LastIndexByte(path, '/')+1:]] {
			continue
		}
		b, err := loadValue(ctx, s.cas, r.metadata[k], ByteRange{}, s.src.verify)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return nil
		}
		doc, err := decodePyJSONObject(b)
		if err != nil || doc == nil {
			continue
		}
		if !pyNumsEqual(doc.get("shape"), idx.shape) || !pyNumsEqual(declaredChunkShape(doc), idx.chunkShape) {
			continue
		}
		if matches++; matches > 1 {
			return nil
		}
		match = path
	}
	if matches == 1 {
		r.primary, r.inferred = match, true
		if !s.readOnly {
			r.v1Recorded, r.recorded = true, match
			s.dirtyRoot = true
		}
	}
	return nil
}

// declaredChunkShape is py-hamt's _declared_chunk_shape: chunk_grid.configuration.chunk_shape
// when it is a list, else chunks when it is a list, else nil.
func declaredChunkShape(doc *pyJSON) *pyJSON {
	if grid := doc.get("chunk_grid"); grid != nil && grid.kind == pyDict {
		if cfg := grid.get("configuration"); cfg != nil && cfg.kind == pyDict {
			if cs := cfg.get("chunk_shape"); cs != nil && cs.kind == pyList {
				return cs
			}
		}
	}
	if cs := doc.get("chunks"); cs != nil && cs.kind == pyList {
		return cs
	}
	return nil
}

// pyNumsEqual is Python's tuple(v) == tuple(ns) for a JSON list v.
func pyNumsEqual(v *pyJSON, ns []int64) bool {
	if v == nil || v.kind != pyList || len(v.items) != len(ns) {
		return false
	}
	for i, it := range v.items {
		if !pyNumEquals(it, ns[i]) {
			return false
		}
	}
	return true
}

func newShardedStore(cas CAS, o shardedOptions, r *shardedRoot, id cid.Cid, dirty bool) *ShardedZarrStore {
	verify := o.verify && !storeVerifies(cas)
	return &ShardedZarrStore{
		cas:       cas,
		opts:      o,
		src:       valueSource{cas: cas, verify: verify},
		readOnly:  o.readOnly,
		cache:     newShardCache(o.cacheBytes),
		root:      r,
		rootID:    id,
		dirtyRoot: dirty,
		dirty:     map[shardKey][]cid.Cid{},
	}
}

// IsShardedRoot reports whether block is the root of a sharded Zarr store: a canonical DAG-CBOR
// map with a manifest_version. (A HAMT root is a list of 256 slots.) It tells layouts apart; it
// does not check the rest of the root, which OpenShardedZarrStore does.
func IsShardedRoot(block []byte) bool {
	if len(block) == 0 || block[0]>>5 != 5 { // CBOR major type 5: a map
		return false
	}
	v, err := DagCBOR.Decode(block)
	if err != nil {
		return false
	}
	m, ok := v.(map[string]any)
	if !ok {
		return false
	}
	_, ok = m["manifest_version"]
	return ok
}

// Version returns the root's layout version: 1 (sharded_zarr_v1) or 2 (sharded_zarr_v2).
func (s *ShardedZarrStore) Version() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.root.version
}

// ReadOnly reports whether the store refuses writes (with ErrReadOnly).
func (s *ShardedZarrStore) ReadOnly() bool { return s.readOnly }

// ShardedArray describes one chunk index of a sharded store, for statistics.
type ShardedArray struct {
	// Path is the array's path ("0/temp"; "" for the root array, and for a v1 store's index,
	// whose array is named by Primary).
	Path string
	// Primary is, for a v1 store, the path of the array the index serves ("" until known).
	Primary string
	// Shape, ChunkShape and ChunkGrid (chunks per dimension) give the array's geometry.
	Shape, ChunkShape, ChunkGrid []int64
	// Chunks is the number of chunk slots (the product of ChunkGrid).
	Chunks int64
	// ChunksPerShard is the number of slots of one shard.
	ChunksPerShard int
	// Shards is the number of shards; StoredShards how many of them are not null in the root
	// (as of the last Flush; DirtyShards have changed since).
	Shards, StoredShards, DirtyShards int
}

// Arrays returns the store's chunk indexes in py-hamt's order (a v2 store's first array is its
// primary). ChunkCount counts the chunks one of them holds.
func (s *ShardedZarrStore) Arrays() []ShardedArray {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]ShardedArray, 0, len(s.root.order))
	for _, p := range s.root.order {
		a := s.root.arrays[p]
		sa := ShardedArray{
			Path: p, Shape: slices.Clone(a.shape), ChunkShape: slices.Clone(a.chunkShape),
			ChunkGrid: slices.Clone(a.perDim), Chunks: a.total, ChunksPerShard: a.cps, Shards: len(a.shards),
		}
		if s.root.version == 1 {
			sa.Primary = s.root.primary
		}
		for i, id := range a.shards {
			if id.Defined() {
				sa.StoredShards++
			}
			if _, ok := s.dirty[shardKey{p, i}]; ok {
				sa.DirtyShards++
			}
		}
		out = append(out, sa)
	}
	return out
}

// shardedRoot is the model of a root block, one of (as IPLD schemas):
//
//	type ShardedZarrV1 struct {
//	  manifest_version String          # "sharded_zarr_v1"
//	  metadata {String:&Any}           # every non-chunk key, and chunks of other arrays
//	  chunks ChunkIndexV1
//	}
//	type ChunkIndexV1 struct {
//	  array_shape [Int]
//	  chunk_shape [Int]
//	  sharding_config {String:Any}     # chunks_per_shard: Int
//	  shard_cids [nullable &Shard]     # exactly num_shards
//	  primary_array_path optional String  # py-hamt ≥ 3.4, set by the first chunk write
//	}
//	type ShardedZarrV2 struct {
//	  manifest_version String          # "sharded_zarr_v2"
//	  store_type String                # "py_hamt.sharded_zarr"
//	  zarr_format Int                  # 3
//	  sharding_config {String:Any}     # chunks_per_shard: Int, order: "C" (default for new arrays)
//	  metadata {String:&Any}
//	  arrays {String:ArrayIndex}       # path without leading or trailing "/" ("" = root array)
//	}
//	type ArrayIndex struct {
//	  array_shape [Int]
//	  chunk_shape [Int]
//	  sharding_config {String:Any}     # chunks_per_shard: Int, order: "C"
//	  shard_cids [nullable &Shard]
//	}
//
// Maps are written in canonical DAG-CBOR order (length, then bytes), so the v1 chunks map reads
// shard_cids, array_shape, chunk_shape, sharding_config, primary_array_path. Fields py-hamt would
// keep but the model does not use (v2 store_type, zarr_format, sharding_config; the other fields
// of the v1 chunks map; unknown fields of either root) are kept as they were decoded and written
// back unchanged, as py-hamt does. A v2 array's manifest is rewritten from the model, as py-hamt
// rewrites it on every flush.
type shardedRoot struct {
	version  int
	metadata map[string]cid.Cid
	arrays   map[string]*arrayIndex
	// order is the arrays' paths in py-hamt's dict order: the root's canonical order when
	// decoded, then registration order. Its first is a v2 store's primary.
	order []string
	extra map[string]any // top-level fields but manifest_version, metadata and arrays/chunks

	// primary is py-hamt's _primary_array_path (normalized); hasPrimary is false for a v2 store
	// without arrays (py-hamt's None).
	primary    string
	hasPrimary bool
	defaultCPS int // chunks per shard of arrays registered next; 0: none known

	// v1 only.
	v1Chunks   map[string]any // the chunks map but shard_cids, array_shape, primary_array_path
	v1Recorded bool           // the chunks map holds primary_array_path (as recorded)
	recorded   string
	inferred   bool // primary was inferred from the metadata of a root without primary_array_path
}

// v1Index is the single chunk index of a v1 root.
func (r *shardedRoot) v1Index() *arrayIndex { return r.arrays[""] }

// arrayIndex is one array's chunk index and geometry.
type arrayIndex struct {
	path       string
	shape      []int64
	chunkShape []int64
	cps        int
	perDim     []int64 // chunks per dimension: ceil(shape / chunk shape)
	total      int64   // product of perDim
	shards     []cid.Cid
}

// chunkGrid computes an index's geometry: chunks per dimension, their product, and the number of
// shards, ceil(total / cps) (0 when there are no chunks). A shape the store cannot index is
// ErrInvalidShape.
func chunkGrid(shape, chunkShape []int64, cps int) (perDim []int64, total int64, shards int, err error) {
	if cps < 1 || cps > MaxChunksPerShard {
		return nil, 0, 0, fmt.Errorf("%w: chunks_per_shard %d is not in [1, %d]", ErrInvalidShape, cps, MaxChunksPerShard)
	}
	if len(shape) != len(chunkShape) {
		return nil, 0, 0, fmt.Errorf("%w: shape %v and chunk shape %v differ in rank", ErrInvalidShape, shape, chunkShape)
	}
	perDim = make([]int64, len(shape))
	zero := false
	for i := range shape {
		if chunkShape[i] < 1 {
			return nil, 0, 0, fmt.Errorf("%w: chunk shape %v has a dimension below 1", ErrInvalidShape, chunkShape)
		}
		if shape[i] < 0 {
			return nil, 0, 0, fmt.Errorf("%w: shape %v has a negative dimension", ErrInvalidShape, shape)
		}
		perDim[i] = shape[i] / chunkShape[i]
		if shape[i]%chunkShape[i] != 0 {
			perDim[i]++
		}
		zero = zero || perDim[i] == 0
	}
	if zero {
		return perDim, 0, 0, nil
	}
	total = 1
	for _, d := range perDim {
		if total > math.MaxInt64/d {
			return nil, 0, 0, fmt.Errorf("%w: shape %v in chunks of %v has too many chunks", ErrInvalidShape, shape, chunkShape)
		}
		total *= d
	}
	n := total / int64(cps)
	if total%int64(cps) != 0 {
		n++
	}
	if n > MaxShards {
		return nil, 0, 0, fmt.Errorf("%w: shape %v in chunks of %v needs %d shards of %d (at most %d)", ErrInvalidShape, shape, chunkShape, n, cps, MaxShards)
	}
	return perDim, total, int(n), nil
}

// newArrayIndex returns the index of a new array: every shard null.
func newArrayIndex(path string, shape, chunkShape []int64, cps int) (*arrayIndex, error) {
	perDim, total, n, err := chunkGrid(shape, chunkShape, cps)
	if err != nil {
		return nil, err
	}
	return &arrayIndex{
		path: path, shape: slices.Clone(shape), chunkShape: slices.Clone(chunkShape), cps: cps,
		perDim: perDim, total: total, shards: make([]cid.Cid, n),
	}, nil
}

// clone returns a copy of a whose shard list can be changed without changing a's.
func (a *arrayIndex) clone() *arrayIndex {
	c := *a
	c.shards = slices.Clone(a.shards)
	return &c
}

// checkCoords is py-hamt's _validate_chunk_coords: the rank must match and every coordinate lie
// in the grid.
func (a *arrayIndex) checkCoords(coords []int64) error {
	if len(coords) != len(a.perDim) {
		return fmt.Errorf("%w: %d coordinates for an array of rank %d", ErrInvalidChunkKey, len(coords), len(a.perDim))
	}
	for i, c := range coords {
		if c < 0 || c >= a.perDim[i] {
			return fmt.Errorf("%w: chunk coordinate %d at dimension %d is out of bounds for dimension size %d", ErrInvalidChunkKey, c, i, a.perDim[i])
		}
	}
	return nil
}

// linear is the row-major linear index of coords (in the grid).
func (a *arrayIndex) linear(coords []int64) int64 {
	var lin, mul int64 = 0, 1
	for i := len(a.perDim) - 1; i >= 0; i-- {
		lin += coords[i] * mul
		mul *= a.perDim[i]
	}
	return lin
}

// slot returns the shard and the slot in it of the chunk at coords (in the grid).
func (a *arrayIndex) slot(coords []int64) (shard, slot int) {
	lin := a.linear(coords)
	return int(lin / int64(a.cps)), int(lin % int64(a.cps))
}

// coordsIn is the inverse of linear: the coordinates of linear index lin in a grid of perDim.
func coordsIn(lin int64, perDim []int64) []int64 {
	out := make([]int64, len(perDim))
	for i := len(perDim) - 1; i >= 0; i-- {
		out[i] = lin % perDim[i]
		lin /= perDim[i]
	}
	return out
}

// manifest is the array's entry of a v2 root, as py-hamt's ArrayIndex.to_manifest writes it.
func (a *arrayIndex) manifest() map[string]any {
	return map[string]any{
		"array_shape":     int64List(a.shape),
		"chunk_shape":     int64List(a.chunkShape),
		"sharding_config": map[string]any{"chunks_per_shard": int64(a.cps), "order": "C"},
		"shard_cids":      cidList(a.shards),
	}
}

func int64List(ns []int64) []any {
	out := make([]any, len(ns))
	for i, n := range ns {
		out[i] = n
	}
	return out
}

func cidList(ids []cid.Cid) []any {
	out := make([]any, len(ids))
	for i, id := range ids {
		if id.Defined() {
			out[i] = id
		}
	}
	return out
}

// chunkKeyOf writes the v3 key of the chunk at coords of the array at path: "path/c/i/j", or
// "c/i/j" for the root array.
func chunkKeyOf(path string, coords []int64) string {
	var b strings.Builder
	if path != "" {
		b.WriteString(path)
		b.WriteByte('/')
	}
	b.WriteByte('c')
	for _, c := range coords {
		b.WriteByte('/')
		b.WriteString(strconv.FormatInt(c, 10))
	}
	return b.String()
}

// zarrKeyProblem says why key is not a key a Zarr store holds ("" if it is one): a Zarr key is a
// "/"-separated path of non-empty elements, none of them "." or "..", with no NUL byte. (A v1
// store's chunks may be listed with a leading "/", but are never keys of its root.) A root whose
// metadata keys or array paths are not Zarr keys was not written by a Zarr client through py-hamt
// and would be exported or served under names that escape the dataset; it is refused.
func zarrKeyProblem(key string) string {
	if key == "" {
		return "is empty"
	}
	for e := range strings.SplitSeq(key, "/") {
		switch {
		case e == "":
			return "has an empty path element (a doubled, leading or trailing slash)"
		case e == "." || e == "..":
			return fmt.Sprintf("has a %q path element", e)
		case strings.IndexByte(e, 0) >= 0:
			return "contains a NUL byte"
		}
	}
	return ""
}

// normalizePath is py-hamt's _normalize_array_path: strip("/").
func normalizePath(p string) string { return strings.Trim(p, "/") }

// decodeShardedRoot decodes and checks a root block: canonical DAG-CBOR holding a v1 or v2 root
// whose fields have the types and geometry py-hamt writes; anything else is ErrMalformedValue.
func decodeShardedRoot(b []byte) (*shardedRoot, error) {
	v, err := DagCBOR.Decode(b)
	if err != nil {
		return nil, fmt.Errorf("sharded root: %w", err)
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, malformedRoot("the root is not a map")
	}
	r := &shardedRoot{extra: map[string]any{}, arrays: map[string]*arrayIndex{}}
	for k, x := range m {
		switch k {
		case "manifest_version", "metadata", "arrays", "chunks":
		default:
			r.extra[k] = x
		}
	}
	meta, ok := m["metadata"].(map[string]any)
	if !ok {
		return nil, malformedRoot("metadata is missing or not a map")
	}
	r.metadata = make(map[string]cid.Cid, len(meta))
	for k, x := range meta {
		id, ok := x.(cid.Cid)
		if !ok {
			return nil, malformedRoot("metadata %q is not a CID link", k)
		}
		if why := zarrKeyProblem(k); why != "" {
			return nil, malformedRoot("metadata key %q %s", k, why)
		}
		r.metadata[k] = id
	}
	switch mv, _ := m["manifest_version"].(string); mv {
	case shardedV1:
		r.version = 1
		err = r.decodeV1(m)
	case shardedV2:
		r.version = 2
		err = r.decodeV2(m)
	default:
		return nil, malformedRoot("incompatible manifest_version %v, want %q or %q", m["manifest_version"], shardedV1, shardedV2)
	}
	if err != nil {
		return nil, err
	}
	return r, nil
}

func malformedRoot(format string, args ...any) error {
	return fmt.Errorf("%w: sharded root: %s", ErrMalformedValue, fmt.Sprintf(format, args...))
}

func (r *shardedRoot) decodeV1(m map[string]any) error {
	if _, ok := m["arrays"]; ok {
		r.extra["arrays"] = m["arrays"]
	}
	chunks, ok := m["chunks"].(map[string]any)
	if !ok {
		return malformedRoot("v1 root without a chunks map")
	}
	r.v1Chunks = map[string]any{}
	for k, x := range chunks {
		switch k {
		case "shard_cids", "array_shape", "primary_array_path":
		default:
			r.v1Chunks[k] = x
		}
	}
	cfg, ok := chunks["sharding_config"].(map[string]any)
	if !ok {
		return malformedRoot("v1 chunks without a sharding_config map")
	}
	cps, ok := positiveInt(cfg["chunks_per_shard"])
	if !ok {
		return malformedRoot("v1 chunks_per_shard is not a positive integer")
	}
	idx, err := decodeIndex("", chunks, cps)
	if err != nil {
		return err
	}
	r.arrays[""] = idx
	r.order = []string{""}
	r.defaultCPS = cps
	r.hasPrimary = true
	if p, ok := chunks["primary_array_path"]; ok {
		s, ok := p.(string)
		if !ok {
			return malformedRoot("v1 primary_array_path is not a string")
		}
		if why := zarrKeyProblem(normalizePath(s)); normalizePath(s) != "" && why != "" {
			return malformedRoot("v1 primary_array_path %q %s", s, why)
		}
		r.v1Recorded, r.recorded, r.primary = true, s, normalizePath(s)
	}
	return nil
}

func (r *shardedRoot) decodeV2(m map[string]any) error {
	if _, ok := m["chunks"]; ok {
		r.extra["chunks"] = m["chunks"]
	}
	arrays, ok := m["arrays"].(map[string]any)
	if !ok {
		return malformedRoot("v2 root without an arrays map")
	}
	if cfg, ok := m["sharding_config"]; ok {
		c, ok := cfg.(map[string]any)
		if !ok {
			return malformedRoot("v2 sharding_config is not a map")
		}
		if n, ok := c["chunks_per_shard"]; ok {
			if r.defaultCPS, ok = positiveInt(n); !ok {
				return malformedRoot("v2 sharding_config.chunks_per_shard is not a positive integer")
			}
		}
	}
	for p, x := range arrays {
		if p != normalizePath(p) {
			return malformedRoot("array path %q has a leading or trailing slash", p)
		}
		if why := zarrKeyProblem(p); p != "" && why != "" {
			return malformedRoot("array path %q %s", p, why)
		}
		am, ok := x.(map[string]any)
		if !ok {
			return malformedRoot("array %q is not a map", p)
		}
		cfg, ok := am["sharding_config"].(map[string]any)
		if !ok {
			return malformedRoot("array %q without a sharding_config map", p)
		}
		cps, ok := positiveInt(cfg["chunks_per_shard"])
		if !ok {
			return malformedRoot("array %q: chunks_per_shard is not a positive integer", p)
		}
		if o, ok := cfg["order"]; ok && o != "C" {
			return malformedRoot("array %q: order %v is not \"C\"", p, o)
		}
		idx, err := decodeIndex(p, am, cps)
		if err != nil {
			return err
		}
		r.arrays[p] = idx
		r.order = append(r.order, p)
	}
	slices.SortFunc(r.order, canonicalKeyOrder)
	if len(r.order) > 0 {
		r.primary, r.hasPrimary = r.order[0], true
		r.defaultCPS = r.arrays[r.order[0]].cps
	}
	return nil
}

// canonicalKeyOrder orders map keys as DAG-CBOR writes them: shorter first, then bytewise.
func canonicalKeyOrder(a, b string) int {
	if len(a) != len(b) {
		return len(a) - len(b)
	}
	return strings.Compare(a, b)
}

// decodeIndex reads array_shape, chunk_shape and shard_cids of a v1 chunks map or v2 array entry.
func decodeIndex(path string, m map[string]any, cps int) (*arrayIndex, error) {
	shape, ok := intList(m["array_shape"])
	if !ok {
		return nil, malformedRoot("array %q: array_shape is not a list of integers", path)
	}
	chunkShape, ok := intList(m["chunk_shape"])
	if !ok {
		return nil, malformedRoot("array %q: chunk_shape is not a list of integers", path)
	}
	list, ok := m["shard_cids"].([]any)
	if !ok {
		return nil, malformedRoot("array %q: shard_cids is not a list", path)
	}
	idx, err := newArrayIndex(path, shape, chunkShape, cps)
	if err != nil {
		return nil, fmt.Errorf("%w: sharded root: array %q: %v", ErrMalformedValue, path, err)
	}
	if len(list) != len(idx.shards) {
		return nil, malformedRoot("array %q: inconsistent number of shards: expected %d, found %d", path, len(idx.shards), len(list))
	}
	for i, x := range list {
		switch id := x.(type) {
		case nil:
		case cid.Cid:
			idx.shards[i] = id
		default:
			return nil, malformedRoot("array %q: shard %d is neither a CID link nor null", path, i)
		}
	}
	return idx, nil
}

func intList(v any) ([]int64, bool) {
	l, ok := v.([]any)
	if !ok {
		return nil, false
	}
	out := make([]int64, len(l))
	for i, x := range l {
		n, ok := x.(int64)
		if !ok {
			return nil, false
		}
		out[i] = n
	}
	return out, true
}

func positiveInt(v any) (int, bool) {
	n, ok := v.(int64)
	if !ok || n < 1 || n > MaxChunksPerShard {
		return 0, false
	}
	return int(n), true
}

// encode returns the root block, byte for byte what py-hamt 3.5 writes for the same state.
func (r *shardedRoot) encode() ([]byte, error) {
	m := make(map[string]any, len(r.extra)+3)
	for k, v := range r.extra {
		m[k] = v
	}
	meta := make(map[string]any, len(r.metadata))
	for k, id := range r.metadata {
		meta[k] = id
	}
	m["metadata"] = meta
	if r.version == 1 {
		idx := r.v1Index()
		chunks := make(map[string]any, len(r.v1Chunks)+3)
		for k, v := range r.v1Chunks {
			chunks[k] = v
		}
		chunks["array_shape"] = int64List(idx.shape)
		chunks["shard_cids"] = cidList(idx.shards)
		if r.v1Recorded {
			chunks["primary_array_path"] = r.recorded
		}
		m["chunks"] = chunks
		m["manifest_version"] = shardedV1
	} else {
		arrays := make(map[string]any, len(r.arrays))
		for p, a := range r.arrays {
			arrays[p] = a.manifest()
		}
		m["arrays"] = arrays
		m["manifest_version"] = shardedV2
	}
	b, err := DagCBOR.Encode(m)
	if err != nil {
		return nil, fmt.Errorf("encode sharded root: %w", err)
	}
	return b, nil
}

// v1CoordinateArrays are the leaf names of the arrays a v1 store keeps in its metadata rather
// than its index (py-hamt's _V1_COORDINATE_ARRAY_PREFIXES).
var v1CoordinateArrays = map[string]bool{
	"time": true, "lat": true, "lon": true, "latitude": true, "longitude": true,
	"forecast_reference_time": true, "step": true,
}

// metadataSuffixes end the keys that are never chunks.
var metadataSuffixes = []string{"zarr.json", ".zarray", ".zattrs", ".zgroup"}

// chunkRef is a key that names a chunk: its array and coordinates. The coordinates are in the
// array's grid when the array has an index.
type chunkRef struct {
	path   string
	coords []int64
}

// parseChunkKey classifies key as py-hamt 3.5's _parse_chunk_key does (SHARDED.md §5): nil for a
// key that lives in the root's metadata, the chunk it names otherwise, or an error wrapping
// ErrInvalidChunkKey for a chunk key whose coordinates are not numbers or not in the grid (which a
// v1 store reports and a v2 store ignores). A v2 chunk of an unregistered array is returned
// unchecked.
func (r *shardedRoot) parseChunkKey(key string) (*chunkRef, error) {
	for _, s := range metadataSuffixes {
		if strings.HasSuffix(key, s) {
			return nil, nil
		}
	}
	var arrayPath, coordPart string
	if i := strings.LastIndex(key, "/c/"); i >= 0 {
		arrayPath, coordPart = key[:i], key[i+3:]
	} else if strings.HasPrefix(key, "c/") {
		// "c/..." is the root array's in v2; in v1 only once the root array is the recorded
		// primary (an unrecorded legacy root writes its chunks as "/c/...").
		if r.version == 1 && !(r.v1Recorded && normalizePath(r.recorded) == "") {
			return nil, nil
		}
		coordPart = key[2:]
	} else {
		return r.parseClassicKey(key)
	}
	path := normalizePath(arrayPath)
	exclusive, effective := false, ""
	if r.version == 1 {
		if v1CoordinateArrays[path[strings.LastIndexByte(path, '/')+1:]] {
			return nil, nil
		}
		switch {
		case r.v1Recorded:
			exclusive, effective = true, normalizePath(r.recorded)
		case r.inferred || r.primary != "":
			exclusive, effective = true, r.primary
		}
		if exclusive && path != effective {
			return nil, nil
		}
	}
	coords, ok := pyIntCoords(coordPart)
	if !ok {
		ref, err := r.parseClassicKey(key)
		if ref != nil || err != nil {
			return ref, err
		}
		return nil, fmt.Errorf("%w: %q: coordinates %q are not integers", ErrInvalidChunkKey, key, coordPart)
	}
	if r.version == 1 {
		idx := r.v1Index()
		primary := exclusive && path == effective
		if path != "" && !primary && len(coords) != len(idx.perDim) && r.hasArrayMetadata(path) {
			// A named array with metadata of its own and another rank is never the primary's.
			return nil, nil
		}
		if err := idx.checkCoords(coords); err != nil {
			return nil, fmt.Errorf("%q: %w", key, err)
		}
	} else if idx, ok := r.arrays[path]; ok {
		if err := idx.checkCoords(coords); err != nil {
			return nil, fmt.Errorf("%q: %w", key, err)
		}
	}
	return &chunkRef{path: path, coords: coords}, nil
}

func (r *shardedRoot) hasArrayMetadata(path string) bool {
	_, a := r.metadata[path+"/zarr.json"]
	_, b := r.metadata[path+"/.zarray"]
	return a || b
}

// pyIntCoords parses "/"-separated coordinates as Python's int() does each. A coordinate too
// large for int64 is clamped: it is outside any grid either way.
func pyIntCoords(s string) ([]int64, bool) {
	parts := strings.Split(s, "/")
	out := make([]int64, len(parts))
	for i, p := range parts {
		n, _, ok := pyParseInt(p)
		if !ok {
			return nil, false
		}
		out[i] = n
	}
	return out, true
}

// decimalCoords parses parts that must all be ASCII decimal numbers (Python's str.isdecimal,
// ASCII only), clamping values beyond int64.
func decimalCoords(parts []string) ([]int64, bool) {
	out := make([]int64, len(parts))
	for i, p := range parts {
		if p == "" {
			return nil, false
		}
		var v int64
		for j := 0; j < len(p); j++ {
			c := p[j]
			if c < '0' || c > '9' {
				return nil, false
			}
			if v > (math.MaxInt64-9)/10 {
				v = math.MaxInt64
				continue
			}
			v = v*10 + int64(c-'0')
		}
		out[i] = v
	}
	return out, true
}

// parseClassicKey recognises zarr-v2 style chunk keys of a v2 store's registered arrays
// ("path/i.j", then "path/i/j" against the longest registered path that fits).
func (r *shardedRoot) parseClassicKey(key string) (*chunkRef, error) {
	if r.version != 2 || len(r.arrays) == 0 {
		return nil, nil
	}
	arrayPath, coordPart := "", key
	if i := strings.LastIndexByte(key, '/'); i >= 0 {
		arrayPath, coordPart = key[:i], key[i+1:]
	}
	if strings.Contains(coordPart, ".") {
		if coords, ok := decimalCoords(strings.Split(coordPart, ".")); ok {
			path := normalizePath(arrayPath)
			if idx, ok := r.arrays[path]; ok && len(coords) == len(idx.perDim) {
				if err := idx.checkCoords(coords); err != nil {
					return nil, fmt.Errorf("%q: %w", key, err)
				}
				return &chunkRef{path: path, coords: coords}, nil
			}
		}
	}
	// The registered paths that fit are the key's prefixes that end before a "/", then "": each
	// is looked up, longest first (sorting every registered path for each key made a listing of a
	// root with many arrays take chunks × arrays·log(arrays) steps).
	for end := strings.LastIndexByte(key, '/'); end > 0; end = strings.LastIndexByte(key[:end], '/') {
		if ref, ok, err := r.classicChunk(key, key[:end], key[end+1:]); ok {
			return ref, err
		}
	}
	if ref, ok, err := r.classicChunk(key, "", key); ok {
		return ref, err
	}
	return nil, nil
}

// classicChunk reads rest as the "/"-separated coordinates of a chunk of the array at path; ok
// says whether path is registered and rest has its rank in decimal numbers.
func (r *shardedRoot) classicChunk(key, path, rest string) (ref *chunkRef, ok bool, err error) {
	idx, registered := r.arrays[path]
	if !registered {
		return nil, false, nil
	}
	parts := strings.Split(rest, "/")
	if len(parts) != len(idx.perDim) {
		return nil, false, nil
	}
	coords, isNum := decimalCoords(parts)
	if !isNum {
		return nil, false, nil
	}
	if err := idx.checkCoords(coords); err != nil {
		return nil, true, fmt.Errorf("%q: %w", key, err)
	}
	return &chunkRef{path: path, coords: coords}, true, nil
}

// index returns the chunk index that serves ref: a v1 store's only one, or a v2 store's index of
// ref's path (nil when that path has none).
func (r *shardedRoot) index(ref *chunkRef) *arrayIndex {
	if r.version == 1 {
		return r.v1Index()
	}
	return r.arrays[ref.path]
}

// topLevelGroups tells whether every array of a v2 store sits under a group (py-hamt's
// _v2_is_grouped_only) and, if so, whether they all sit under one, group.
func (r *shardedRoot) topLevelGroups() (group string, grouped, single bool) {
	if r.version != 2 || len(r.arrays) == 0 {
		return "", false, false
	}
	single = true
	first := true
	for p := range r.arrays {
		i := strings.IndexByte(p, '/')
		if i < 0 {
			return "", false, false
		}
		if first {
			group, first = p[:i], false
		} else if p[:i] != group {
			single = false
		}
	}
	if !single {
		group = ""
	}
	return group, true, single
}

// defaultReadGroup is the single top-level group of a v2 store whose arrays all sit under one,
// which reads of keys outside it are redirected into.
func (r *shardedRoot) defaultReadGroup() (string, bool) {
	g, grouped, single := r.topLevelGroups()
	return g, grouped && single
}

// readKey is py-hamt's _v2_effective_read_key: key, or key under the default read group.
func (r *shardedRoot) readKey(key string) string {
	g, ok := r.defaultReadGroup()
	if !ok {
		return key
	}
	k := strings.Trim(key, "/")
	switch {
	case k == "zarr.json" || k == ".zgroup" || k == ".zattrs" || k == ".zmetadata" || k == "":
		return key
	case k == g || strings.HasPrefix(k, g+"/"):
		return key
	}
	return g + "/" + k
}

// listDirPrefix is py-hamt's _v2_effective_list_dir_prefix for a normalized prefix.
func (r *shardedRoot) listDirPrefix(prefix string) string {
	g, ok := r.defaultReadGroup()
	switch {
	case !ok:
		return prefix
	case prefix == "":
		return g
	case prefix == g || strings.HasPrefix(prefix, g+"/"):
		return prefix
	}
	return g + "/" + prefix
}
