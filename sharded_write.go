package hamt

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/ipfs/go-cid"
	"github.com/multiformats/go-multicodec"
)

// This file writes a sharded store exactly as py-hamt 3.5 does (SHARDED.md §6–7), since the root
// CID depends on every step: a Set of array metadata registers or resizes the array's index and
// creates the parent groups' metadata, a root zarr.json loses its consolidated_metadata, a chunk
// goes to its shard slot (and leaves the metadata), and Flush saves the changed shards, then the
// root.
//
// Writers are serialized by writeMu and do their I/O holding it; they read the model without mu
// (no one else changes it) and change it only under mu, so readers see it whole at every step.

// groupDocV3 is the metadata py-hamt writes for a group it creates (json.dumps of
// {"zarr_format": 3, "node_type": "group", "attributes": {}}, 58 bytes); groupDocV2 is its zarr
// v2 counterpart, for arrays written with .zarray.
var (
	groupDocV3 = []byte(`{"zarr_format": 3, "node_type": "group", "attributes": {}}`)
	groupDocV2 = []byte(`{"zarr_format": 2}`)
)

// writable checks that the store takes writes.
func (s *ShardedZarrStore) writable(op, key string) error {
	if s.readOnly {
		return fmt.Errorf("zarr %s %q: %w", op, key, ErrReadOnly)
	}
	return nil
}

// Set stores value under key as py-hamt 3.5's ShardedZarrStore.set does:
//
//   - v2: a root zarr.json, in a store whose arrays all sit under groups, is stored without its
//     consolidated_metadata (re-serialized as Python's json.dumps writes it); array metadata at the
//     top level right after the root group's is refused (ErrGroupRequired);
//   - array metadata (zarr.json with shape and chunk_grid.configuration.chunk_shape, or .zarray with
//     chunks) registers the array's index, or resizes it when the shape changed
//     (ErrChunkShapeChanged when the chunk shape did); in v1 any metadata with a shape of the
//     index's rank resizes the index;
//   - v2 creates the metadata of every missing parent group ("", "a", "a/b" of "a/b/c/zarr.json");
//   - a chunk goes to its shard's slot and its key leaves the metadata; a chunk of an array
//     without an index is ErrUnregisteredArray (after its block was saved, as in py-hamt), one
//     outside the grid is ignored (v2) or ErrInvalidChunkKey (v1);
//   - in v1, chunks of coordinate arrays (time, lat, ...) and of arrays other than the primary go
//     to the metadata, and the first chunk written to the index records the primary's path.
func (s *ShardedZarrStore) Set(ctx context.Context, key string, value []byte) error {
	if err := s.writable("set", key); err != nil {
		return err
	}
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	if err := s.set(ctx, key, value); err != nil {
		return fmt.Errorf("zarr set %q: %w", key, err)
	}
	return nil
}

func (s *ShardedZarrStore) set(ctx context.Context, key string, value []byte) error {
	if err := s.root.checkWriteKey(key); err != nil {
		return err
	}
	data, err := s.stripConsolidated(key, value)
	if err != nil {
		return err
	}
	if err := s.guardTopLevelArray(key, data); err != nil {
		return err
	}
	if err := s.registerFromMetadata(ctx, key, data); err != nil {
		return err
	}
	if err := s.ensureParentGroups(ctx, key); err != nil {
		return err
	}
	ref, err := s.root.parseChunkKey(key)
	if err != nil {
		if s.root.version == 1 {
			return err
		}
		return nil
	}
	id, err := saveValue(ctx, s.cas, data)
	if err != nil {
		return fmt.Errorf("save value: %w", err)
	}
	if ref == nil {
		s.wroteMetadata(key, id, data)
	}
	return s.setPointer(ctx, key, ref, id)
}

// SetCID stores the block id (already in the store) under key, as py-hamt's set_pointer does:
// like Set without saving a block, so a converter can move values without copying them. Metadata
// registers arrays and creates parent groups as with Set (a root zarr.json stripped of
// consolidated_metadata is saved anew); the top-level array guard does not apply.
func (s *ShardedZarrStore) SetCID(ctx context.Context, key string, id cid.Cid) error {
	if err := s.writable("set", key); err != nil {
		return err
	}
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	if err := s.setCID(ctx, key, id); err != nil {
		return fmt.Errorf("zarr set %q: %w", key, err)
	}
	return nil
}

func (s *ShardedZarrStore) setCID(ctx context.Context, key string, id cid.Cid) error {
	if err := s.root.checkWriteKey(key); err != nil {
		return err
	}
	ref, err := s.root.parseChunkKey(key)
	if err != nil {
		if s.root.version == 1 {
			return err
		}
		return nil
	}
	if ref != nil {
		return s.setPointer(ctx, key, ref, id)
	}
	var raw []byte
	if s.root.version == 2 {
		if raw, err = loadValue(ctx, s.cas, id, ByteRange{}, s.src.verify); err != nil {
			return fmt.Errorf("load %s: %w", id, missingBlock(err))
		}
		stripped, err := s.stripConsolidated(key, raw)
		if err != nil {
			return err
		}
		if !bytes.Equal(stripped, raw) {
			if id, err = saveValue(ctx, s.cas, stripped); err != nil {
				return fmt.Errorf("save value: %w", err)
			}
			raw = stripped
		}
	}
	if _, ok := arrayPathOfMetadataKey(key); ok {
		if raw == nil {
			if raw, err = loadValue(ctx, s.cas, id, ByteRange{}, s.src.verify); err != nil {
				return fmt.Errorf("load %s: %w", id, missingBlock(err))
			}
		}
		if err := s.registerFromMetadata(ctx, key, raw); err != nil {
			return err
		}
	}
	if err := s.ensureParentGroups(ctx, key); err != nil {
		return err
	}
	s.wroteMetadata(key, id, raw)
	s.mu.Lock()
	s.root.metadata[key] = id
	s.dirtyRoot = true
	s.mu.Unlock()
	return nil
}

// checkWriteKey refuses a key whose write would leave a root that decodeShardedRoot refuses: a
// metadata key, or the array path of a chunk key, that is not a Zarr path (zarrKeyProblem). A
// chunk key that is not valid is left to the write, which ignores or refuses it as py-hamt does.
func (r *shardedRoot) checkWriteKey(key string) error {
	ref, err := r.parseChunkKey(key)
	if err != nil {
		return nil
	}
	k, what := key, "not a Zarr key"
	if ref != nil {
		k, what = ref.path, "its array path is not a Zarr path"
		if k == "" {
			return nil
		}
	}
	if why := zarrKeyProblem(k); why != "" {
		return fmt.Errorf("%w: %s: %q %s", ErrInvalidKey, what, k, why)
	}
	return nil
}

// setPointer points key at block id: a metadata entry, or a chunk's shard slot.
func (s *ShardedZarrStore) setPointer(ctx context.Context, key string, ref *chunkRef, id cid.Cid) error {
	r := s.root
	if ref == nil {
		s.mu.Lock()
		r.metadata[key] = id
		s.dirtyRoot = true
		s.mu.Unlock()
		return nil
	}
	idx := r.index(ref)
	if idx == nil {
		return fmt.Errorf("no array index registered for chunk path %q: %w", ref.path, ErrUnregisteredArray)
	}
	shard, slot := idx.slot(ref.coords)
	entries, err := s.shardForWrite(ctx, idx, shard)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.setEntry(idx, shard, entries, slot, id)
	// A chunk the metadata also held (old roots kept some there) leaves it, so that its old
	// value cannot come back through the fallback once the slot is emptied.
	if _, ok := r.metadata[key]; ok {
		delete(r.metadata, key)
		s.dirtyRoot = true
	}
	if r.version == 1 && !r.inferred && !r.v1Recorded {
		// The first chunk written to an unrecorded v1 index names its primary (py-hamt ≥ 3.4).
		r.primary, r.recorded, r.v1Recorded = ref.path, ref.path, true
		s.dirtyRoot = true
	}
	return nil
}

// shardForWrite returns the entries of shard i of idx to change: the changed shard in memory,
// else the stored one (a new slice), else an all-null one. Callers change it under mu and then
// mark it dirty with setEntry.
func (s *ShardedZarrStore) shardForWrite(ctx context.Context, idx *arrayIndex, i int) ([]cid.Cid, error) {
	if d, ok := s.dirty[shardKey{idx.path, i}]; ok {
		return d, nil
	}
	if id := idx.shards[i]; id.Defined() {
		return s.loadShard(ctx, id, idx.cps)
	}
	return make([]cid.Cid, idx.cps), nil
}

// setEntry sets slot of shard i (entries, from shardForWrite) to id and keeps the shard as
// changed, unless the slot held id already (py-hamt's update_entry: an unchanged shard is not
// written again). mu must be held.
func (s *ShardedZarrStore) setEntry(idx *arrayIndex, i int, entries []cid.Cid, slot int, id cid.Cid) {
	if entries[slot] == id {
		return
	}
	entries[slot] = id
	s.dirty[shardKey{idx.path, i}] = entries
}

// Delete removes key: its metadata entry, or its chunk's slot (the shard is written again, all
// null if it was the last chunk, as py-hamt writes it) and any metadata entry of the same key. A
// missing key is not an error; a v1 chunk key outside the grid is ErrInvalidChunkKey.
func (s *ShardedZarrStore) Delete(ctx context.Context, key string) error {
	if err := s.writable("delete", key); err != nil {
		return err
	}
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	if err := s.delete(ctx, key); err != nil {
		return fmt.Errorf("zarr delete %q: %w", key, err)
	}
	return nil
}

func (s *ShardedZarrStore) delete(ctx context.Context, key string) error {
	r := s.root
	ref, err := r.parseChunkKey(key)
	if err != nil {
		if r.version == 1 {
			return err
		}
		return nil
	}
	var idx *arrayIndex
	if ref != nil {
		idx = r.index(ref)
	}
	if idx == nil {
		s.mu.Lock()
		s.dropMetadata(key)
		s.mu.Unlock()
		return nil
	}
	shard, slot := idx.slot(ref.coords)
	entries, err := s.shardForWrite(ctx, idx, shard)
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.setEntry(idx, shard, entries, slot, cid.Undef)
	s.dropMetadata(key)
	s.mu.Unlock()
	return nil
}

// dropMetadata removes key from the metadata. mu must be held.
func (s *ShardedZarrStore) dropMetadata(key string) {
	if _, ok := s.root.metadata[key]; ok {
		delete(s.root.metadata, key)
		s.dirtyRoot = true
	}
}

// DeleteDir removes every key under prefix, as py-hamt's delete_dir does. v2: every metadata key
// under "prefix/" is deleted, then the index of every array at or under prefix (its shards are
// dropped with it); "" clears the store. v1 (zarr's default): every listed key under "prefix/" is
// deleted.
func (s *ShardedZarrStore) DeleteDir(ctx context.Context, prefix string) error {
	if err := s.writable("delete dir", prefix); err != nil {
		return err
	}
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	if err := s.deleteDir(ctx, prefix); err != nil {
		return fmt.Errorf("zarr delete dir %q: %w", prefix, err)
	}
	return nil
}

func (s *ShardedZarrStore) deleteDir(ctx context.Context, prefix string) error {
	r := s.root
	if r.version == 1 {
		if prefix != "" && !strings.HasSuffix(prefix, "/") {
			prefix += "/"
		}
		var keys []string
		for k, err := range s.List(ctx) {
			if err != nil {
				return err
			}
			if strings.HasPrefix(k, prefix) {
				keys = append(keys, k)
			}
		}
		for _, k := range keys {
			if err := s.delete(ctx, k); err != nil {
				return err
			}
		}
		return nil
	}
	p := strings.Trim(prefix, "/")
	if p == "" {
		s.mu.Lock()
		r.metadata = map[string]cid.Cid{}
		r.arrays = map[string]*arrayIndex{}
		r.order = nil
		r.primary, r.hasPrimary = "", false
		s.dirty = map[shardKey][]cid.Cid{}
		s.dirtyRoot = true
		s.mu.Unlock()
		s.cache.clear() // no index refers to a cached shard any more
		return nil
	}
	var keys []string
	for k := range r.metadata {
		if strings.HasPrefix(k, p+"/") {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	for _, k := range keys {
		if err := s.delete(ctx, k); err != nil {
			return err
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	pruned := false
	for _, a := range slices.Clone(r.order) {
		if a != p && !strings.HasPrefix(a, p+"/") {
			continue
		}
		pruned = true
		delete(r.arrays, a)
		r.order = slices.DeleteFunc(r.order, func(x string) bool { return x == a })
		for k := range s.dirty {
			if k.path == a {
				delete(s.dirty, k)
			}
		}
	}
	if pruned {
		r.primary, r.hasPrimary = "", len(r.order) > 0
		if r.hasPrimary {
			r.primary = r.order[0]
		}
		s.dirtyRoot = true
	}
	return nil
}

// arrayPathOfMetadataKey is py-hamt's _array_path_from_metadata_key: the array a zarr.json or
// .zarray key describes ("" for the root's).
func arrayPathOfMetadataKey(key string) (string, bool) {
	switch {
	case key == "zarr.json" || key == ".zarray":
		return "", true
	case strings.HasSuffix(key, "/zarr.json"):
		return strings.TrimSuffix(key, "/zarr.json"), true
	case strings.HasSuffix(key, "/.zarray"):
		return strings.TrimSuffix(key, "/.zarray"), true
	}
	return "", false
}

// groupPathOfMetadataKey is py-hamt's _group_path_from_metadata_key, for zarr.json and .zgroup.
func groupPathOfMetadataKey(key string) (string, bool) {
	switch {
	case key == "zarr.json" || key == ".zgroup":
		return "", true
	case strings.HasSuffix(key, "/zarr.json"):
		return strings.TrimSuffix(key, "/zarr.json"), true
	case strings.HasSuffix(key, "/.zgroup"):
		return strings.TrimSuffix(key, "/.zgroup"), true
	}
	return "", false
}

// arrayMetadata is py-hamt's _extract_array_metadata: the shape and chunk shape an array
// document declares (chunk_grid.configuration.chunk_shape, else chunks), converted as Python's
// int() converts them; ok is false when it declares no shape or no chunk shape.
func arrayMetadata(doc *pyJSON) (shape, chunkShape []int64, ok bool, err error) {
	sv := doc.get("shape")
	if sv == nil || sv.kind == pyNull {
		return nil, nil, false, nil
	}
	var cv *pyJSON
	if grid := doc.get("chunk_grid"); grid != nil && grid.kind == pyDict {
		if cfg := grid.get("configuration"); cfg != nil && cfg.kind == pyDict {
			cv = cfg.get("chunk_shape")
		}
	}
	if cv == nil || cv.kind == pyNull {
		cv = doc.get("chunks")
	}
	if cv == nil || cv.kind == pyNull {
		return nil, nil, false, nil
	}
	if shape, err = pyInts(sv); err != nil {
		return nil, nil, false, fmt.Errorf("shape: %w", err)
	}
	if chunkShape, err = pyInts(cv); err != nil {
		return nil, nil, false, fmt.Errorf("chunk shape: %w", err)
	}
	return shape, chunkShape, true, nil
}

// pyInts is tuple(int(d) for d in v).
func pyInts(v *pyJSON) ([]int64, error) {
	items, ok := pyIterOf(v)
	if !ok {
		return nil, fmt.Errorf("%w: not a list", ErrInvalidShape)
	}
	out := make([]int64, len(items))
	for i, it := range items {
		n, big, ok := pyIntOf(it)
		switch {
		case !ok:
			return nil, fmt.Errorf("%w: item %d is not an integer", ErrInvalidShape, i)
		case big:
			return nil, fmt.Errorf("%w: item %d is out of range", ErrInvalidShape, i)
		}
		out[i] = n
	}
	return out, nil
}

// stripConsolidated is py-hamt's _strip_v2_root_consolidated_metadata: the root zarr.json of a
// v2 store whose arrays all sit under groups is stored without consolidated_metadata.
func (s *ShardedZarrStore) stripConsolidated(key string, data []byte) ([]byte, error) {
	if key != "zarr.json" {
		return data, nil
	}
	if _, grouped, _ := s.root.topLevelGroups(); !grouped {
		return data, nil
	}
	doc, err := decodePyJSONObject(data)
	if err != nil || doc == nil {
		return data, err
	}
	if !doc.get("node_type").isStr("group") || !doc.pop("consolidated_metadata") {
		return data, nil
	}
	return encodePyJSON(doc), nil
}

// guardTopLevelArray is py-hamt's _raise_if_v2_write_without_group.
func (s *ShardedZarrStore) guardTopLevelArray(key string, data []byte) error {
	if s.root.version != 2 {
		return nil
	}
	doc, err := decodePyJSONObject(data)
	if err != nil || doc == nil {
		return err
	}
	groupPath, groupKey := groupPathOfMetadataKey(key)
	metaPath, metaKey := arrayPathOfMetadataKey(key)
	_, _, isArray, err := arrayMetadata(doc)
	if err != nil {
		return err
	}
	switch {
	case groupKey && !isArray && groupPath == "":
		s.pendingRootGroup = true
	case groupKey && !isArray:
		s.pendingRootGroup = false
	case !metaKey || !isArray:
	case strings.Contains(normalizePath(metaPath), "/"):
		s.pendingRootGroup = false
	case s.pendingRootGroup:
		s.pendingRootGroup = false
		return fmt.Errorf("array metadata at the top level after the root group: write the dataset under a group (\"0/...\"): %w", ErrGroupRequired)
	}
	return nil
}

// registerFromMetadata is py-hamt's _register_array_metadata_from_bytes.
func (s *ShardedZarrStore) registerFromMetadata(ctx context.Context, key string, data []byte) error {
	path, ok := arrayPathOfMetadataKey(key)
	if !ok {
		return nil
	}
	doc, err := decodePyJSONObject(data)
	if err != nil || doc == nil {
		return err
	}
	r := s.root
	shape, chunkShape, ok, err := arrayMetadata(doc)
	if err != nil {
		return err
	}
	if !ok {
		if r.version == 2 {
			return nil
		}
		// v1: a shape alone resizes the index (its chunk shape is the index's).
		sv := doc.get("shape")
		if sv == nil || sv.kind == pyNull {
			return nil
		}
		if shape, err = pyInts(sv); err != nil {
			return fmt.Errorf("shape: %w", err)
		}
		chunkShape = r.v1Index().chunkShape
	}
	if r.version == 1 {
		idx := r.v1Index()
		if len(shape) == len(idx.shape) && !slices.Equal(shape, idx.shape) {
			return s.resizeIndex(ctx, idx, shape)
		}
		return nil
	}
	p := normalizePath(path)
	idx := r.arrays[p]
	switch {
	case idx == nil:
		return s.registerArray(p, shape, chunkShape)
	case !slices.Equal(idx.chunkShape, chunkShape):
		return fmt.Errorf("array %q has chunk shape %v, not %v: %w", p, idx.chunkShape, chunkShape, ErrChunkShapeChanged)
	case !slices.Equal(idx.shape, shape):
		return s.resizeIndex(ctx, idx, shape)
	}
	return nil
}

// registerArray adds the index of a new array, all shards null, with the store's default chunks
// per shard.
func (s *ShardedZarrStore) registerArray(path string, shape, chunkShape []int64) error {
	r := s.root
	if r.defaultCPS == 0 {
		return fmt.Errorf("register array %q: the store has no default chunks_per_shard (use WithChunksPerShard): %w", path, ErrInvalidShape)
	}
	idx, err := newArrayIndex(path, shape, chunkShape, r.defaultCPS)
	if err != nil {
		return fmt.Errorf("register array %q: %w", path, err)
	}
	if err := r.checkShardTotal(0, len(idx.shards)); err != nil {
		return fmt.Errorf("register array %q: %w", path, err)
	}
	s.mu.Lock()
	r.arrays[path] = idx
	r.order = append(r.order, path)
	if !r.hasPrimary {
		r.primary, r.hasPrimary = path, true
	}
	s.dirtyRoot = true
	s.mu.Unlock()
	return nil
}

// checkShardTotal refuses to grow the shards of the store's arrays, all together, from an index
// of was to one of now shards when the total would pass MaxShards: each index is bounded, but
// registering arrays from metadata was not, and every zarr.json of a few hundred bytes asking for
// a large grid cost 64 MB (ten of them in an import: 640 MB, a hundred: killed). A store that
// already holds more (a root written elsewhere) can still shrink or keep its arrays.
func (r *shardedRoot) checkShardTotal(was, now int) error {
	if now <= was {
		return nil
	}
	total := now - was
	for _, idx := range r.arrays {
		total += len(idx.shards)
	}
	if total > MaxShards {
		return fmt.Errorf("%w: the store's arrays would have %d shards together (at most %d)", ErrInvalidShape, total, MaxShards)
	}
	return nil
}

// ensureParentGroups is py-hamt's _ensure_v2_parent_group_metadata: before array or group
// metadata at a/b/c, a v2 store creates the group metadata of "", "a" and "a/b" where missing.
func (s *ShardedZarrStore) ensureParentGroups(ctx context.Context, key string) error {
	r := s.root
	if r.version != 2 {
		return nil
	}
	path, ok := arrayPathOfMetadataKey(key)
	if !ok {
		return nil
	}
	doc, groupKey := groupDocV3, func(p string) string {
		if p == "" {
			return "zarr.json"
		}
		return p + "/zarr.json"
	}
	if key == ".zarray" || strings.HasSuffix(key, "/.zarray") {
		doc, groupKey = groupDocV2, func(p string) string {
			if p == "" {
				return ".zgroup"
			}
			return p + "/.zgroup"
		}
	}
	parents := []string{""}
	if p := normalizePath(path); p != "" {
		parts := strings.Split(p, "/")
		for i := 1; i < len(parts); i++ {
			parents = append(parents, strings.Join(parts[:i], "/"))
		}
	}
	for _, p := range parents {
		k := groupKey(p)
		if _, ok := r.metadata[k]; ok {
			continue
		}
		id, err := saveValue(ctx, s.cas, doc)
		if err != nil {
			return fmt.Errorf("save group metadata %q: %w", k, err)
		}
		s.mu.Lock()
		r.metadata[k] = id
		s.dirtyRoot = true
		s.mu.Unlock()
	}
	return nil
}

// Resize changes the shape of an index (py-hamt's resize_store): the array at arrayPath of a v2
// store (ErrUnregisteredArray if none), a v1 store's only index whatever the path. Every chunk
// keeps its coordinates: pointers move to their new linear index, those outside the new grid are
// dropped, shards left all null become null, and shards left as they were keep their CID. When
// only the first dimension grows nothing moves. The rank cannot change (ErrInvalidShape). The
// array's metadata is not changed: see ResizeVariable.
func (s *ShardedZarrStore) Resize(ctx context.Context, arrayPath string, shape []int64) error {
	if err := s.writable("resize", arrayPath); err != nil {
		return err
	}
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	idx := s.root.index(&chunkRef{path: normalizePath(arrayPath)})
	if idx == nil {
		return fmt.Errorf("zarr resize %q: %w", arrayPath, ErrUnregisteredArray)
	}
	if err := s.resizeIndex(ctx, idx, shape); err != nil {
		return fmt.Errorf("zarr resize %q: %w", arrayPath, err)
	}
	return nil
}

// resizeIndex is py-hamt 3.5's _resize_array_index (commit 8f8f13cd, with its fast path).
func (s *ShardedZarrStore) resizeIndex(ctx context.Context, idx *arrayIndex, shape []int64) error {
	if len(shape) != len(idx.shape) {
		return fmt.Errorf("%w: new shape %v has another rank than %v", ErrInvalidShape, shape, idx.shape)
	}
	perDim, total, n, err := chunkGrid(shape, idx.chunkShape, idx.cps)
	if err != nil {
		return err
	}
	if err := s.root.checkShardTotal(len(idx.shards), n); err != nil {
		return err
	}
	apply := func(shards []cid.Cid) {
		idx.shape, idx.perDim, idx.total, idx.shards = slices.Clone(shape), perDim, total, shards
		s.dirtyRoot = true
	}
	if len(shape) > 0 && shape[0] >= idx.shape[0] && slices.Equal(shape[1:], idx.shape[1:]) {
		// Appending along the first dimension only adds linear indexes at the end.
		s.mu.Lock()
		defer s.mu.Unlock()
		grown := make([]cid.Cid, n)
		copy(grown, idx.shards)
		apply(grown)
		return nil
	}
	old := make(map[int][]cid.Cid, len(idx.shards))
	for i, id := range idx.shards {
		if d, ok := s.dirty[shardKey{idx.path, i}]; ok {
			old[i] = slices.Clone(d)
		} else if id.Defined() {
			if old[i], err = s.loadShard(ctx, id, idx.cps); err != nil {
				return err
			}
		}
	}
	// The new shards that hold a chunk, by index: only those are made (a list of every new
	// shard, each of cps entries, made a resize of a few chunks to a large shape allocate
	// shards × cps × 16 bytes: 256 GB for a 4 × 4e9 grid from one 218-byte zarr.json).
	fresh := map[int][]cid.Cid{}
	for i, entries := range old {
		for k, e := range entries {
			lin := int64(i)*int64(idx.cps) + int64(k)
			if !e.Defined() || lin >= idx.total {
				continue
			}
			coords := coordsIn(lin, idx.perDim)
			inside := true
			for d, c := range coords {
				inside = inside && c < perDim[d]
			}
			if !inside {
				continue
			}
			var nl, mul int64 = 0, 1
			for d := len(perDim) - 1; d >= 0; d-- {
				nl += coords[d] * mul
				mul *= perDim[d]
			}
			f := fresh[int(nl/int64(idx.cps))]
			if f == nil {
				f = make([]cid.Cid, idx.cps)
				fresh[int(nl/int64(idx.cps))] = f
			}
			f[nl%int64(idx.cps)] = e
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	ids := make([]cid.Cid, n)
	// Only a shard that holds a chunk now or held one (old: every stored or changed shard) can
	// be other than null.
	changed := make(map[int]bool, len(fresh)+len(old))
	for i := range fresh {
		changed[i] = true
	}
	for i := range old {
		if i < n {
			changed[i] = true
		}
	}
	for i := range changed {
		entries := fresh[i]
		key := shardKey{idx.path, i}
		prev, had := old[i]
		var prevID cid.Cid
		if i < len(idx.shards) {
			prevID = idx.shards[i]
		}
		_, wasDirty := s.dirty[key]
		switch {
		case !slices.ContainsFunc(entries, cid.Cid.Defined):
			delete(s.dirty, key) // an all-null shard becomes null
		case had && slices.Equal(prev, entries) && (prevID.Defined() || wasDirty):
			ids[i] = prevID // unchanged: keeps its CID (or stays changed, as it was)
		default:
			s.dirty[key] = entries
		}
	}
	for i := n; i < len(idx.shards); i++ {
		delete(s.dirty, shardKey{idx.path, i})
	}
	apply(ids)
	return nil
}

// ResizeVariable sets the shape of the array at name (py-hamt's resize_variable): its zarr.json
// gets the new shape and is rewritten as Python's json.dumps(doc, indent=2) writes it, then (v2)
// the array's index is resized to match, as a Set of that document would. A v1 store's index is
// not resized (use Resize). A missing zarr.json is ErrNotFound.
func (s *ShardedZarrStore) ResizeVariable(ctx context.Context, name string, shape []int64) error {
	if err := s.writable("resize variable", name); err != nil {
		return err
	}
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	if err := s.resizeVariable(ctx, name, shape); err != nil {
		return fmt.Errorf("zarr resize variable %q: %w", name, err)
	}
	return nil
}

func (s *ShardedZarrStore) resizeVariable(ctx context.Context, name string, shape []int64) error {
	key := "zarr.json"
	if n := normalizePath(name); n != "" {
		key = n + "/zarr.json"
	}
	id, ok := s.root.metadata[key]
	if !ok {
		return fmt.Errorf("no metadata %q to resize: %w", key, ErrNotFound)
	}
	b, err := loadValue(ctx, s.cas, id, ByteRange{}, s.src.verify)
	if err != nil {
		return fmt.Errorf("load %q: %w", key, missingBlock(err))
	}
	doc, err := decodePyJSON(bytes.TrimPrefix(b, []byte("\xef\xbb\xbf"))) // json.loads(bytes) reads a BOM
	if err != nil {
		return fmt.Errorf("%q: %w", key, err)
	}
	if doc.kind != pyDict {
		return fmt.Errorf("%q is not a JSON object", key)
	}
	doc.put([]rune("shape"), pyJSONInts(shape))
	nb := encodePyJSONIndent(doc, 2)
	nid, err := saveValue(ctx, s.cas, nb)
	if err != nil {
		return fmt.Errorf("save %q: %w", key, err)
	}
	s.mu.Lock()
	s.root.metadata[key] = nid
	s.dirtyRoot = true
	s.mu.Unlock()
	if s.root.version == 2 {
		return s.registerFromMetadata(ctx, key, nb)
	}
	return nil
}

// Graft copies every chunk pointer of an array of another sharded store (root source, in the same
// CAS) into an array of this one, moved by offset chunks along each dimension (py-hamt's
// graft_store, used to merge batches written in parallel). sourcePath "" is the source's primary
// array (its first); targetPath "" is sourcePath. The chunks' blocks are not copied. A chunk that
// would land outside the target's grid is ErrInvalidChunkKey, and then nothing is grafted (py-hamt
// stops part way); ranks that differ are ErrInvalidShape.
func (s *ShardedZarrStore) Graft(ctx context.Context, source cid.Cid, offset []int64, sourcePath, targetPath string) error {
	if err := s.writable("graft", targetPath); err != nil {
		return err
	}
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	if err := s.graft(ctx, source, offset, sourcePath, targetPath); err != nil {
		return fmt.Errorf("zarr graft %s: %w", source, err)
	}
	return nil
}

func (s *ShardedZarrStore) graft(ctx context.Context, source cid.Cid, offset []int64, sourcePath, targetPath string) error {
	opts := []ShardedOption{WithShardedReadOnly(), WithShardCacheBytes(0)}
	if s.opts.verify {
		opts = append(opts, WithShardedVerifyBlocks())
	}
	src, err := OpenShardedZarrStore(ctx, s.cas, source, opts...)
	if err != nil {
		return err
	}
	if sourcePath == "" {
		if !src.root.hasPrimary {
			return nil // a source without arrays has nothing to graft
		}
		sourcePath = src.root.primary
	}
	if targetPath == "" {
		targetPath = sourcePath
	}
	from := src.root.index(&chunkRef{path: normalizePath(sourcePath)})
	if from == nil {
		return fmt.Errorf("source array %q: %w", sourcePath, ErrUnregisteredArray)
	}
	to := s.root.index(&chunkRef{path: normalizePath(targetPath)})
	if to == nil {
		return fmt.Errorf("target array %q: %w", targetPath, ErrUnregisteredArray)
	}
	if len(offset) != len(from.perDim) || len(offset) != len(to.perDim) {
		return fmt.Errorf("%w: offset %v, source rank %d, target rank %d", ErrInvalidShape, offset, len(from.perDim), len(to.perDim))
	}
	type pointer struct {
		slot int
		id   cid.Cid
	}
	moves := map[int][]pointer{}
	for i, id := range from.shards {
		if !id.Defined() {
			continue
		}
		entries, err := src.loadShard(ctx, id, from.cps)
		if err != nil {
			return fmt.Errorf("source: %w", err)
		}
		for k, e := range entries {
			lin := int64(i)*int64(from.cps) + int64(k)
			if !e.Defined() || lin >= from.total {
				continue
			}
			coords := coordsIn(lin, from.perDim)
			for d := range coords {
				coords[d] += offset[d]
			}
			if err := to.checkCoords(coords); err != nil {
				return fmt.Errorf("graft target chunk %v: %w", coords, err)
			}
			shard, slot := to.slot(coords)
			moves[shard] = append(moves[shard], pointer{slot, e})
		}
	}
	for shard, ps := range moves {
		entries, err := s.shardForWrite(ctx, to, shard)
		if err != nil {
			return err
		}
		s.mu.Lock()
		for _, p := range ps {
			s.setEntry(to, shard, entries, p.slot, p.id)
		}
		s.mu.Unlock()
	}
	return nil
}

// MigrateToV2 rewrites a v1 store as v2 (py-hamt's migrate_v1_to_v2) and returns the new root: the
// v1 index becomes the index of the array at primaryPath (non-empty) and keeps its shards; metadata
// keys of the array's old path move under primaryPath, and the metadata of missing parent groups
// is added. Pending changes are flushed first, as a v1 root.
func (s *ShardedZarrStore) MigrateToV2(ctx context.Context, primaryPath string) (cid.Cid, error) {
	if err := s.writable("migrate", primaryPath); err != nil {
		return cid.Undef, err
	}
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	id, err := s.migrate(ctx, primaryPath)
	if err != nil {
		return cid.Undef, fmt.Errorf("zarr migrate to v2 %q: %w", primaryPath, err)
	}
	return id, nil
}

func (s *ShardedZarrStore) migrate(ctx context.Context, primaryPath string) (cid.Cid, error) {
	p := normalizePath(primaryPath)
	if p == "" {
		return cid.Undef, errors.New("the primary array path must not be empty")
	}
	if why := zarrKeyProblem(p); why != "" {
		return cid.Undef, fmt.Errorf("%w: the primary array path %q %s", ErrInvalidKey, p, why)
	}
	if s.root.version != 1 {
		return cid.Undef, errors.New("only a sharded_zarr_v1 store can be migrated")
	}
	if _, err := s.flush(ctx); err != nil {
		return cid.Undef, err
	}
	old := s.root
	source := old.migrationSource(p)
	keys := make([]string, 0, len(old.metadata))
	for k := range old.metadata {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, canonicalKeyOrder)
	meta := make(map[string]cid.Cid, len(keys))
	for _, k := range keys {
		meta[migratedKey(k, source, p)] = old.metadata[k]
	}
	if err := s.addMissingGroups(ctx, meta, p); err != nil {
		return cid.Undef, err
	}
	idx := old.v1Index().clone()
	idx.path = p
	r := &shardedRoot{
		version:    2,
		metadata:   meta,
		arrays:     map[string]*arrayIndex{p: idx},
		order:      []string{p},
		primary:    p,
		hasPrimary: true,
		defaultCPS: idx.cps,
		extra: map[string]any{
			"store_type":      "py_hamt.sharded_zarr",
			"zarr_format":     int64(3),
			"sharding_config": map[string]any{"chunks_per_shard": int64(idx.cps), "order": "C"},
		},
	}
	s.mu.Lock()
	s.root = r
	s.dirty = map[shardKey][]cid.Cid{}
	s.dirtyRoot = true
	s.mu.Unlock()
	return s.flush(ctx)
}

// migrationSource is py-hamt's _infer_v1_migration_source_array_path: the path the v1 store kept
// the primary's metadata under (the primary path, its last element, or the root).
func (r *shardedRoot) migrationSource(primary string) string {
	leaf := primary[strings.LastIndexByte(primary, '/')+1:]
	candidates := []string{primary}
	if leaf != primary {
		candidates = append(candidates, leaf)
	}
	candidates = append(candidates, "")
	for _, c := range candidates {
		keys := []string{"zarr.json", ".zarray"}
		if c != "" {
			keys = []string{c + "/zarr.json", c + "/.zarray"}
		}
		for _, k := range keys {
			if _, ok := r.metadata[k]; ok {
				return c
			}
		}
	}
	return leaf
}

// migratedKey is py-hamt's _rewrite_v1_metadata_key_for_migration.
func migratedKey(key, source, primary string) string {
	parent := ""
	if i := strings.LastIndexByte(primary, '/'); i >= 0 {
		parent = primary[:i]
	}
	if source != "" {
		if strings.HasPrefix(key, source+"/") {
			return primary + "/" + key[len(source)+1:]
		}
	} else if strings.HasPrefix(key, "c/") || key == "zarr.json" || key == ".zarray" {
		return primary + "/" + key
	}
	if parent != "" && strings.Contains(key, "/") && !strings.HasPrefix(key, parent+"/") {
		return parent + "/" + key
	}
	return key
}

// addMissingGroups is py-hamt's _add_missing_group_metadata for a migration: the groups above
// path get metadata where they have none, and those that have (v3) lose consolidated_metadata.
func (s *ShardedZarrStore) addMissingGroups(ctx context.Context, meta map[string]cid.Cid, path string) error {
	parts := strings.Split(path, "/")
	zarr2 := false
	if _, ok := meta[path+"/.zarray"]; ok {
		zarr2 = true
	}
	for i := range parts {
		g := strings.Join(parts[:i], "/")
		key, doc := "zarr.json", groupDocV3
		if zarr2 {
			key, doc = ".zgroup", groupDocV2
		}
		if g != "" {
			key = g + "/" + key
		}
		if id, ok := meta[key]; ok {
			if zarr2 {
				continue
			}
			b, err := loadValue(ctx, s.cas, id, ByteRange{}, s.src.verify)
			if err != nil {
				return fmt.Errorf("load %q: %w", key, missingBlock(err))
			}
			d, err := decodePyJSONObject(b)
			if err != nil {
				return fmt.Errorf("%q: %w", key, err)
			}
			if d == nil || !d.get("node_type").isStr("group") || !d.pop("consolidated_metadata") {
				continue
			}
			doc = encodePyJSON(d)
		}
		id, err := saveValue(ctx, s.cas, doc)
		if err != nil {
			return fmt.Errorf("save %q: %w", key, err)
		}
		meta[key] = id
	}
	return nil
}

// flushWorkers is how many shards Flush saves at once (py-hamt's _FLUSH_CONCURRENCY).
const flushWorkers = 8

// Flush saves every shard changed since the last Flush (an emptied shard as an all-null block),
// then the root when it changed, makes them durable when the CAS buffers writes (Flusher), and
// returns the root's CID: the dataset's identity. A store with nothing to save returns its root
// as it was. A failed Flush can be retried: what was not saved stays pending.
func (s *ShardedZarrStore) Flush(ctx context.Context) (cid.Cid, error) {
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	id, err := s.flush(ctx)
	if err != nil {
		return cid.Undef, fmt.Errorf("zarr flush: %w", err)
	}
	return id, nil
}

func (s *ShardedZarrStore) flush(ctx context.Context) (cid.Cid, error) {
	keys := make([]shardKey, 0, len(s.dirty))
	for k := range s.dirty {
		keys = append(keys, k)
	}
	saved := make([]cid.Cid, len(keys))
	errs := make([]error, len(keys))
	var wg sync.WaitGroup
	work := make(chan int)
	for range min(flushWorkers, len(keys)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				saved[i], errs[i] = s.saveShard(ctx, s.dirty[keys[i]])
			}
		}()
	}
	for i := range keys {
		work <- i
	}
	close(work)
	wg.Wait()
	s.mu.Lock()
	for i, k := range keys {
		if errs[i] != nil {
			continue
		}
		if idx := s.root.arrays[k.path]; idx != nil && k.idx < len(idx.shards) && idx.shards[k.idx] != saved[i] {
			idx.shards[k.idx] = saved[i]
			s.dirtyRoot = true
		}
		delete(s.dirty, k)
	}
	dirtyRoot := s.dirtyRoot
	s.mu.Unlock()
	if err := errors.Join(errs...); err != nil {
		return cid.Undef, err
	}
	if dirtyRoot {
		b, err := s.root.encode()
		if err != nil {
			return cid.Undef, err
		}
		id, err := s.cas.Save(ctx, b, multicodec.DagCbor)
		if err != nil {
			return cid.Undef, fmt.Errorf("save root: %w", err)
		}
		s.mu.Lock()
		s.rootID, s.dirtyRoot = id, false
		s.mu.Unlock()
	}
	if err := flushStore(ctx, s.cas); err != nil {
		return cid.Undef, err
	}
	return s.rootID, nil
}

// saveShard encodes and saves one shard, and keeps the block in the cache: it is what the next
// read of the shard would load.
func (s *ShardedZarrStore) saveShard(ctx context.Context, entries []cid.Cid) (cid.Cid, error) {
	b, err := encodeShard(entries)
	if err != nil {
		return cid.Undef, err
	}
	id, err := s.cas.Save(ctx, b, multicodec.DagCbor)
	if err != nil {
		return cid.Undef, fmt.Errorf("save shard: %w", err)
	}
	if id.Prefix().Codec == uint64(multicodec.DagCbor) {
		_ = s.cache.put(id, b, len(entries)) // the block was just encoded: it parses
	}
	return id, nil
}

// dropsKeys marks the store as one whose Set ignores a chunk outside its array's grid (see
// keyDropper), so ImportDir checks that every file arrived.
func (s *ShardedZarrStore) dropsKeys() {}
