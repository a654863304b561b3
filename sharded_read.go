package hamt

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"slices"
	"strings"

	"github.com/ipfs/go-cid"
)

// This file reads a sharded store (SHARDED.md §8): a key is looked up in the root's metadata or,
// for a chunk, in its shard (a changed shard in memory, else the stored block through the shard
// cache), falling back to the metadata for a null slot; the value is then read from its block,
// byte ranges passed down to the CAS. Reads hold the store's lock only to look at the model, never
// across I/O.

// Get returns the bytes of key that r selects (the zero ByteRange for all of them), or an error
// wrapping ErrNotFound. Keys outside the single top-level group of a v2 store whose arrays all sit
// under one ("temp/c/0/0" for "0/temp/c/0/0") are read from that group, as py-hamt does, and
// as they are where the group has nothing (py-hamt cannot read those: "1/zarr.json" of a group
// without arrays beside "0", which it lists). A chunk
// key of a v1 store that does not fit its chunk grid is ErrInvalidChunkKey; a v2 store reads it as
// absent.
func (s *ShardedZarrStore) Get(ctx context.Context, key string, r ByteRange) ([]byte, error) {
	if err := r.Validate(); err != nil {
		return nil, fmt.Errorf("zarr get %q: %w", key, err)
	}
	id, err := s.locate(ctx, key)
	if err != nil {
		return nil, err
	}
	return s.src.read(ctx, key, id, r)
}

// Open locates key's value: the CID of its block and its size (without loading it when the CAS
// can tell the size).
func (s *ShardedZarrStore) Open(ctx context.Context, key string) (*ZarrValue, error) {
	id, err := s.locate(ctx, key)
	if err != nil {
		return nil, err
	}
	return s.src.open(ctx, key, id)
}

// Exists reports whether key is in the store. Keys that are not valid chunk keys are not there
// (even in a v1 store); a shard that cannot be read is an error.
func (s *ShardedZarrStore) Exists(ctx context.Context, key string) (bool, error) {
	_, err := s.locate(ctx, key)
	switch {
	case err == nil:
		return true, nil
	case isNotFound(err) || isInvalidChunkKey(err):
		return false, nil
	}
	return false, err
}

func isNotFound(err error) bool {
	return errors.Is(err, ErrNotFound) && !errors.Is(err, ErrMissingBlock)
}
func isInvalidChunkKey(err error) bool { return errors.Is(err, ErrInvalidChunkKey) }

// notFound is the error of a key the store does not hold.
func absent(key string) error { return fmt.Errorf("zarr get %q: %w", key, ErrNotFound) }

// locate returns the CID of the block that holds key's value. A key outside the default read
// group is read in the group, as py-hamt reads it, unless the root's metadata holds it as it is:
// it is then listed under its own name and must read as itself, whether the group has a key of
// that name ("t/zarr.json" beside "0/t/zarr.json" was copied, exported and served with the
// latter's bytes, without an error) or not ("1/zarr.json" of a group without arrays beside
// "0/temp/...", which py-hamt lists but cannot read). A key outside the group that the metadata
// does not hold cannot be a chunk either: every array is in the group.
func (s *ShardedZarrStore) locate(ctx context.Context, key string) (cid.Cid, error) {
	s.mu.RLock()
	r := s.root
	lookup := key
	if _, held := r.metadata[key]; !held {
		lookup = r.readKey(key)
	}
	return s.locateUnlock(ctx, r, key, lookup)
}

// locateUnlock finds lookup in r (for key). It is called with mu read-locked, and unlocks it
// before it loads a shard.
func (s *ShardedZarrStore) locateUnlock(ctx context.Context, r *shardedRoot, key, lookup string) (cid.Cid, error) {
	ref, err := r.parseChunkKey(lookup)
	if err != nil {
		v1 := r.version == 1
		s.mu.RUnlock()
		if v1 {
			return cid.Undef, fmt.Errorf("zarr get %q: %w", key, err)
		}
		return cid.Undef, absent(key)
	}
	fallback, hasFallback := r.metadata[lookup]
	idx := (*arrayIndex)(nil)
	if ref != nil {
		idx = r.index(ref)
	}
	if idx == nil {
		// A metadata key, or a chunk of an array without an index.
		s.mu.RUnlock()
		if !hasFallback {
			return cid.Undef, absent(key)
		}
		return fallback, nil
	}
	shard, slot := idx.slot(ref.coords)
	var entry, stored cid.Cid
	if d, ok := s.dirty[shardKey{idx.path, shard}]; ok {
		entry = d[slot]
	} else {
		stored = idx.shards[shard]
	}
	cps := idx.cps
	s.mu.RUnlock()

	if stored.Defined() {
		if entry, err = s.shardSlot(ctx, stored, cps, slot); err != nil {
			return cid.Undef, fmt.Errorf("zarr get %q: %w", key, err)
		}
	}
	switch {
	case entry.Defined():
		return entry, nil
	case hasFallback:
		return fallback, nil // stores of old kept some chunks in the metadata
	}
	return cid.Undef, absent(key)
}

// List yields every key once: the metadata keys, then every chunk of every index, named as its
// array's metadata names chunks (chunkKeys: "path/c/i/j", or "path/i.j" for a v2
// chunk_key_encoding or a .zarray; py-hamt lists them all in the first form; a v1 store, which
// reads no other, always in the first, "/c/i/j" without a recorded primary, as py-hamt does). It
// reads every stored shard, through the cache, and the metadata of each v2 array (once per block).
func (s *ShardedZarrStore) List(ctx context.Context) iter.Seq2[string, error] {
	return func(yield func(string, error) bool) {
		meta, arrays := s.listSnapshot(nil)
		seen := make(map[string]bool, len(meta))
		for _, k := range meta {
			seen[k] = true
			if !yield(k, nil) {
				return
			}
		}
		for _, a := range arrays {
			for k, err := range s.chunkKeys(ctx, a) {
				if err != nil {
					yield("", err)
					return
				}
				if seen[k] {
					continue
				}
				if !yield(k, nil) {
					return
				}
			}
		}
	}
}

// ListDir returns the immediate children of the directory prefix, sorted, as py-hamt's list_dir
// gives them: the v2 read redirect applies ("" lists the single top-level group), and a chunk
// directory ("0/temp/c", "0/temp/c/1") lists the coordinates that hold chunks. A read-only v2
// store whose arrays sit under several top-level groups refuses "" with ErrGroupRequired. A
// directory outside the group also lists what the store holds as it is (the keys beside the
// group, which Get reads too, and List yields).
func (s *ShardedZarrStore) ListDir(ctx context.Context, prefix string) ([]string, error) {
	prefix = strings.Trim(prefix, "/")
	s.mu.RLock()
	eff := s.root.listDirPrefix(prefix)
	s.mu.RUnlock()
	out, err := s.listDir(ctx, prefix, eff)
	if err != nil || eff == prefix || prefix == "" {
		return out, err
	}
	beside, err := s.listDir(ctx, prefix, prefix)
	if err != nil || len(beside) == 0 {
		return out, err
	}
	out = append(out, beside...)
	slices.Sort(out)
	return slices.Compact(out), nil
}

// listDir is ListDir of the directory eff (prefix as the caller named it).
func (s *ShardedZarrStore) listDir(ctx context.Context, prefix, eff string) ([]string, error) {
	s.mu.RLock()
	if s.readOnly && prefix == "" {
		if _, grouped, single := s.root.topLevelGroups(); grouped && !single {
			s.mu.RUnlock()
			return nil, fmt.Errorf("zarr list dir %q: the arrays are under several top-level groups: list one: %w", prefix, ErrGroupRequired)
		}
	}
	chunkDir := s.root.isChunkListingPrefix(eff)
	s.mu.RUnlock()
	match := ""
	if eff != "" {
		match = eff + "/"
	}
	seen := map[string]bool{}
	add := func(k string) {
		if !strings.HasPrefix(k, match) || len(k) == len(match) {
			return
		}
		first, _, _ := strings.Cut(k[len(match):], "/")
		seen[first] = true
	}
	if !chunkDir {
		s.mu.RLock()
		r := s.root
		for k := range r.metadata {
			add(k)
		}
		if r.version == 1 {
			add(v1ChunkDir(r.primary))
		}
		for p := range r.arrays {
			if r.version == 2 && p != "" {
				for i := 0; i <= len(p); i++ {
					if i == len(p) || p[i] == '/' {
						add(p[:i])
					}
				}
			}
		}
		s.mu.RUnlock()
	}
	// Only an array whose directory holds the one listed can have chunk names to add.
	_, arrays := s.listSnapshot(func(path string) bool { return strings.HasPrefix(match, arrayDir(path)) })
	for _, a := range arrays {
		enc, err := s.keyEncoding(ctx, a.metaID, a.zarray)
		if err != nil {
			return nil, fmt.Errorf("zarr list dir %q: %w", prefix, err)
		}
		var list bool
		switch {
		case enc.v2:
			// Its chunks are named "path/i.j" or "path/i/j": listed from the array's directory down.
			list = strings.HasPrefix(match, arrayDir(a.path))
		case chunkDir:
			// Only an index whose chunk keys can start with match has any to give.
			p := strings.TrimPrefix(a.chunkPrefix(), "/")
			list = strings.HasPrefix(p, match) || strings.HasPrefix(match, p)
		default:
			add(v1ChunkDir(a.path))
		}
		if !list {
			continue
		}
		for k, err := range s.chunkKeys(ctx, a) {
			if err != nil {
				return nil, fmt.Errorf("zarr list dir %q: %w", prefix, err)
			}
			add(strings.TrimPrefix(k, "/"))
		}
	}
	return sortedKeys(seen), nil
}

// arrayDir is the directory an array's keys are under: "" for the root array, else "path/".
func arrayDir(path string) string {
	if path == "" {
		return ""
	}
	return path + "/"
}

// v1ChunkDir is the directory an index's chunk keys are under: "c" or "path/c".
func v1ChunkDir(path string) string {
	if path == "" {
		return "c"
	}
	return path + "/c"
}

// isChunkListingPrefix reports whether prefix (normalized) is a chunk directory or under one.
func (r *shardedRoot) isChunkListingPrefix(prefix string) bool {
	var dirs []string
	if r.version == 1 {
		dirs = []string{v1ChunkDir(r.primary)}
	} else {
		for p := range r.arrays {
			dirs = append(dirs, v1ChunkDir(p))
		}
	}
	for _, d := range dirs {
		if prefix == d || strings.HasPrefix(prefix, d+"/") {
			return true
		}
	}
	return false
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// arraySnapshot is what listing needs of one index, copied from the model.
type arraySnapshot struct {
	path   string // the path its chunk keys are written under
	slash  bool   // keys start with "/" (a v1 index without a recorded root primary)
	perDim []int64
	total  int64
	cps    int
	shards []cid.Cid
	dirty  map[int][]cid.Cid
	// metaID is the block of the array's metadata in a v2 store (undefined: none), zarray
	// whether it is a .zarray (else a zarr.json): it names the array's chunks (keyEncoding).
	metaID cid.Cid
	zarray bool
}

// chunkPrefix is how every chunk key of the index starts.
func (a *arraySnapshot) chunkPrefix() string {
	p := v1ChunkDir(a.path) + "/"
	if a.slash {
		p = "/" + p
	}
	return p
}

// listSnapshot copies the metadata keys (in canonical order) and the indexes (in py-hamt's order)
// whose chunk keys' path keep accepts (all when keep is nil).
func (s *ShardedZarrStore) listSnapshot(keep func(path string) bool) ([]string, []*arraySnapshot) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	r := s.root
	meta := make([]string, 0, len(r.metadata))
	for k := range r.metadata {
		meta = append(meta, k)
	}
	slices.SortFunc(meta, canonicalKeyOrder)
	arrays := make([]*arraySnapshot, 0, len(r.order))
	for _, p := range r.order {
		path := p
		if r.version == 1 {
			path = r.primary
		}
		if keep != nil && !keep(path) {
			continue
		}
		idx := r.arrays[p]
		a := &arraySnapshot{path: path, perDim: idx.perDim, total: idx.total, cps: idx.cps, shards: slices.Clone(idx.shards)}
		if r.version == 1 {
			a.slash = a.path == "" && !(r.v1Recorded && normalizePath(r.recorded) == "")
		} else {
			v3, v2 := arrayMetadataKeys(p)
			if id, ok := r.metadata[v3]; ok {
				a.metaID = id
			} else if id, ok := r.metadata[v2]; ok {
				a.metaID, a.zarray = id, true
			}
		}
		for k, d := range s.dirty {
			if k.path == p {
				if a.dirty == nil {
					a.dirty = map[int][]cid.Cid{}
				}
				a.dirty[k.idx] = slices.Clone(d)
			}
		}
		arrays = append(arrays, a)
	}
	return meta, arrays
}

// chunkKeys yields the keys of the chunks an index holds, in linear order, named as the array's
// metadata names them (keyEncoding): "path/c/i/j", or "path/i.j" / "path/i/j" for an array whose
// chunk_key_encoding is "v2". A name that the store would read as another array's (arrays "a" and
// "a/1", "/"-separated) is given in the v3 form, which names one chunk only.
func (s *ShardedZarrStore) chunkKeys(ctx context.Context, a *arraySnapshot) iter.Seq2[string, error] {
	return func(yield func(string, error) bool) {
		enc, err := s.keyEncoding(ctx, a.metaID, a.zarray)
		if err != nil {
			yield("", err)
			return
		}
		var names []chunkName // of one shard, for an encoding whose names are checked
		// The slots that hold a chunk, per stored shard: a shard block may stand at many places
		// (py-hamt's all-null shards after deletes do; a hostile root can list one big shard at
		// every place), and is scanned once.
		held := map[cid.Cid][]int32{}
		ahead := newShardsAhead(ctx, len(a.shards), a.cps, func(i int) (cid.Cid, bool) {
			id := a.shards[i]
			_, dirty := a.dirty[i]
			_, ok := held[id]
			return id, !dirty && !ok && id.Defined()
		}, func(ctx context.Context, id cid.Cid) ([]cid.Cid, error) { return s.loadShard(ctx, id, a.cps) })
		defer ahead.stop()
		for i, id := range a.shards {
			if err := ctx.Err(); err != nil {
				yield("", err)
				return
			}
			slots, ok := held[id]
			if entries, dirty := a.dirty[i]; dirty {
				slots = definedSlots(entries)
			} else if !id.Defined() {
				continue
			} else if !ok {
				entries, err := ahead.get(ctx, i, id)
				if err != nil {
					yield("", err)
					return
				}
				slots = definedSlots(entries)
				held[id] = slots
			}
			names = names[:0]
			for _, k := range slots {
				lin := int64(i)*int64(a.cps) + int64(k)
				if lin >= a.total {
					continue
				}
				coords := coordsIn(lin, a.perDim)
				key := chunkKeyIn(a.path, coords, enc)
				if a.slash {
					key = "/" + key
				}
				if !enc.v2 {
					if !yield(key, nil) {
						return
					}
					continue
				}
				names = append(names, chunkName{key, coords})
			}
			if enc.v2 {
				s.checkChunkNames(a.path, names)
				for _, n := range names {
					if !yield(n.key, nil) {
						return
					}
				}
			}
		}
	}
}

// chunkName is a chunk's key and its coordinates.
type chunkName struct {
	key    string
	coords []int64
}

// checkChunkNames gives the v3 name to each of names, chunks of the array at path named in a v2
// encoding, that the store would not read as that chunk.
func (s *ShardedZarrStore) checkChunkNames(path string, names []chunkName) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	for i, n := range names {
		ref, err := s.root.parseChunkKey(n.key)
		if err == nil && ref != nil && ref.path == path && slices.Equal(ref.coords, n.coords) {
			continue
		}
		names[i].key = chunkKeyOf(path, n.coords)
	}
}

// definedSlots returns the indexes of the entries that link to a chunk.
func definedSlots(entries []cid.Cid) []int32 {
	var out []int32
	for k, e := range entries {
		if e.Defined() {
			out = append(out, int32(k))
		}
	}
	return out
}

// ChunkCount returns the number of chunks the index of arrayPath holds (a v1 store's only index
// whatever the path), reading its stored shards through the cache.
func (s *ShardedZarrStore) ChunkCount(ctx context.Context, arrayPath string) (int64, error) {
	s.mu.RLock()
	r := s.root
	idx := r.index(&chunkRef{path: normalizePath(arrayPath)})
	if idx == nil {
		s.mu.RUnlock()
		return 0, fmt.Errorf("zarr chunk count %q: %w", arrayPath, ErrUnregisteredArray)
	}
	a := &arraySnapshot{perDim: idx.perDim, total: idx.total, cps: idx.cps, shards: slices.Clone(idx.shards)}
	for k, d := range s.dirty {
		if k.path == idx.path {
			if a.dirty == nil {
				a.dirty = map[int][]cid.Cid{}
			}
			a.dirty[k.idx] = slices.Clone(d)
		}
	}
	s.mu.RUnlock()
	var n int64
	for _, err := range s.chunkKeys(ctx, a) {
		if err != nil {
			return 0, fmt.Errorf("zarr chunk count %q: %w", arrayPath, err)
		}
		n++
	}
	return n, nil
}

// loadBlock loads a root or shard block (a dag-pb CID is read as the UnixFS file it heads).
func (s *ShardedZarrStore) loadBlock(ctx context.Context, id cid.Cid) ([]byte, error) {
	b, err := loadValue(ctx, s.cas, id, ByteRange{}, s.src.verify)
	if err != nil {
		return nil, fmt.Errorf("load shard %s: %w", id, missingBlock(err))
	}
	return b, nil
}

// shardSlot returns entry slot of the stored shard id, which must hold cps entries, through the
// shard cache (which keeps the block, checked, and finds the entry in it without decoding the
// others; a shard too large for the budget is read for the one entry and dropped).
func (s *ShardedZarrStore) shardSlot(ctx context.Context, id cid.Cid, cps, slot int) (cid.Cid, error) {
	return s.cache.entry(ctx, id, cps, slot, func(ctx context.Context) ([]byte, error) { return s.loadBlock(ctx, id) })
}

// loadShard returns every entry of the stored shard id, which must hold cps entries, in a slice
// the caller owns; the block is read through the shard cache.
func (s *ShardedZarrStore) loadShard(ctx context.Context, id cid.Cid, cps int) ([]cid.Cid, error) {
	sh, err := s.cache.get(ctx, id, cps, func(ctx context.Context) ([]byte, error) { return s.loadBlock(ctx, id) })
	if err != nil {
		return nil, err
	}
	out := make([]cid.Cid, cps)
	for k := range out {
		if out[k], err = sh.entry(k); err != nil {
			return nil, fmt.Errorf("shard %s: %w", id, err)
		}
	}
	return out, nil
}
