package hamt

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"slices"

	"github.com/ipfs/go-cid"
	"golang.org/x/sync/errgroup"
)

// This file copies a Zarr dataset from one store to another, whatever their layouts: the
// converters between the HAMT layout and the sharded one are a copy into a new store.

// CopyZarr copies every key of src into dst and returns how many values and bytes it copied.
// Metadata documents are copied first, one at a time, parents before children, so that a layout
// that registers arrays from their metadata (ShardedZarrStore) knows every array before its
// chunks arrive; the other values follow, up to WithDirWorkers (default 16) at once, each read
// whole and written (memory holds at most that many values). WithProgress reports each value
// copied; WithReplace is refused.
//
// Once all is copied, every key of src is checked to be in dst: a key the target layout dropped
// (ShardedZarrStore ignores a chunk outside its array's grid, as py-hamt does) fails the copy,
// naming it. dst may hold more keys than src (ShardedZarrStore adds missing parent groups), and
// a value it rewrites (it strips consolidated_metadata from a root zarr.json) is not an error.
// Nothing is flushed: Flush dst to get its root.
func CopyZarr(ctx context.Context, dst, src Zarr, opts ...DirOption) (DirStats, error) {
	return copyZarr(ctx, dst, src, false, opts)
}

// cidSetter is a Zarr layout that can point a key at a block already in its store (ZarrStore,
// ShardedZarrStore): a copy between two stores on one CAS then moves CIDs, not bytes.
type cidSetter interface {
	SetCID(ctx context.Context, key string, id cid.Cid) error
}

// copyZarr is CopyZarr; byCID, when dst and src are on one CAS and src's CIDs name its plain
// values (not an encrypted store), copies each value by its CID when dst can take one
// (cidSetter): nothing is loaded or saved but what the layout needs (metadata to register arrays).
func copyZarr(ctx context.Context, dst, src Zarr, byCID bool, opts []DirOption) (DirStats, error) {
	o, err := buildDirOptions(opts)
	if err != nil {
		return DirStats{}, err
	}
	if o.replace {
		return DirStats{}, errors.New("hamt: WithReplace is an ExportDir option; CopyZarr writes no files")
	}
	if o.keyPrefix != "" {
		return DirStats{}, errors.New("hamt: WithKeyPrefix is an ImportDir option; CopyZarr copies keys as they are")
	}
	setCID, _ := dst.(cidSetter)
	if !byCID {
		setCID = nil
	}
	var keys []string
	for k, err := range src.List(ctx) {
		if err != nil {
			return DirStats{}, fmt.Errorf("zarr copy: list: %w", err)
		}
		keys = append(keys, k)
	}
	slices.SortFunc(keys, metadataFirst)
	meta := 0 // keys[:meta] are the metadata documents
	for meta < len(keys) && isZarrMetadataKey(keys[meta]) {
		meta++
	}
	prog := progressCounter{fn: o.progress, p: Progress{TotalFiles: len(keys), TotalBytes: -1}}
	copyKey := func(ctx context.Context, key string) error {
		if setCID != nil {
			id, err := valueCID(ctx, src, key)
			if err != nil {
				return fmt.Errorf("zarr copy %q: %w", key, err)
			}
			if err := setCID.SetCID(ctx, key, id); err != nil {
				return fmt.Errorf("zarr copy %q: %w", key, err)
			}
			prog.add(0) // the value's size is not looked up: a request per key on Kubo
			return nil
		}
		b, err := src.Get(ctx, key, ByteRange{})
		if err != nil {
			return fmt.Errorf("zarr copy %q: %w", key, err)
		}
		if err := dst.Set(ctx, key, b); err != nil {
			return fmt.Errorf("zarr copy %q: %w", key, err)
		}
		prog.add(int64(len(b)))
		return nil
	}
	stats := func() DirStats { return DirStats{Files: prog.p.Files, Bytes: prog.p.Bytes} }
	for _, k := range keys[:meta] {
		if err := copyKey(ctx, k); err != nil {
			return stats(), err
		}
	}
	if err := eachKey(ctx, keys[meta:], o.workers, copyKey); err != nil {
		return stats(), err
	}
	return stats(), checkStored(ctx, dst, keys, o.workers, "zarr copy")
}

// keyDropper is a Zarr layout whose Set may ignore a key it has no place for, without an error,
// or store it where its listing names it otherwise: ShardedZarrStore, for a chunk outside its
// array's grid (as py-hamt's store does), and for a chunk whose key is not the name its array's
// metadata gives it ("a/c/1/1" of an array whose chunk_key_encoding is "v2" is listed as "a/1.1").
// ImportDir checks what it stored into such a layout; a layout that stores every key pays nothing.
type keyDropper interface {
	Exists(ctx context.Context, key string) (bool, error)
	List(ctx context.Context) iter.Seq2[string, error]
	dropsKeys()
}

// checkStored checks that every key arrived in dst. A layout may drop a key it has no place for,
// silently, as py-hamt's sharded store drops a chunk outside its array's grid, or list it under
// another name: into such a layout (keyDropper), the check is that dst lists every key; into
// another, that each key exists, up to workers checks at once. what names the operation in the
// error.
func checkStored(ctx context.Context, dst interface {
	Exists(ctx context.Context, key string) (bool, error)
}, keys []string, workers int, what string) error {
	if d, ok := dst.(keyDropper); ok {
		return checkListed(ctx, d, keys, what)
	}
	return eachKey(ctx, keys, workers, func(ctx context.Context, key string) error {
		ok, err := dst.Exists(ctx, key)
		if err == nil && !ok {
			err = fmt.Errorf("%w: the target layout dropped it (a chunk outside its array's grid?)", ErrNotFound)
		}
		if err != nil {
			return fmt.Errorf("%s %q: check: %w", what, key, err)
		}
		return nil
	})
}

// checkListed checks that dst lists every key (memory: a sorted copy of keys and a flag each).
func checkListed(ctx context.Context, dst keyDropper, keys []string, what string) error {
	want := slices.Clone(keys)
	slices.Sort(want)
	want = slices.Compact(want)
	found := make([]bool, len(want))
	for k, err := range dst.List(ctx) {
		if err != nil {
			return fmt.Errorf("%s: check: list: %w", what, err)
		}
		if i, ok := slices.BinarySearch(want, k); ok {
			found[i] = true
		}
	}
	for i, ok := range found {
		if !ok {
			return fmt.Errorf("%s %q: check: %w: the target layout dropped it (a chunk outside its array's grid?) or lists it under another name (its array's metadata names its chunks otherwise?)", what, want[i], ErrNotFound)
		}
	}
	return nil
}

// migrateV1 is ConvertZarr of a sharded_zarr_v1 root to the sharded layout: MigrateToV2 of its
// primary array. A generic copy would not do: a v1 index's geometry need not be in its array's
// metadata (py-hamt 3.3.2 wrote none), which a v2 store registers arrays from.
func migrateV1(ctx context.Context, cas CAS, root cid.Cid, s *ShardedZarrStore, o layoutOptions) (cid.Cid, error) {
	arrays := s.Arrays()
	if len(arrays) != 1 || arrays[0].Primary == "" {
		return cid.Undef, fmt.Errorf("hamt: convert %s from sharded v1 to sharded: no primary array is recorded or can be inferred; migrate with ShardedZarrStore.MigrateToV2 naming it", root)
	}
	w, err := OpenShardedZarrStore(ctx, cas, root, o.shard...)
	if err != nil {
		return cid.Undef, err
	}
	return w.MigrateToV2(ctx, arrays[0].Primary)
}

// eachKey runs fn on every key, up to workers at once, and returns the first error.
func eachKey(ctx context.Context, keys []string, workers int, fn func(ctx context.Context, key string) error) error {
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(workers)
	for _, k := range keys {
		if gctx.Err() != nil {
			break
		}
		g.Go(func() error { return fn(gctx, k) })
	}
	if err := g.Wait(); err != nil {
		return err
	}
	return ctx.Err()
}

// ConvertZarr copies the dataset at root, of whichever layout (DetectLayout), into a new dataset
// of layout to on the same store, and returns the new root. The copy is CopyZarr's (metadata
// first; WithCopyOptions sets its workers and progress), but moves CIDs instead of bytes: the new
// dataset points at the very value blocks of the old one, so nothing is loaded or saved but the
// metadata documents and the new layout's own blocks (nodes, or shards and a root), and the
// progress WithProgress reports counts keys, not bytes (Bytes stays 0); as py-hamt's
// converter (set_pointer), it skips the sharded layout's refusal of a top-level array after a
// root group. WithMapOptions and WithShardedOptions
// configure the source and the new store (WithBucketSize, WithChunksPerShard...). Converting
// to the layout the dataset already has re-lays it out with the options given (another
// chunks-per-shard, another bucket size), except that a sharded_zarr_v1 root converted to the
// sharded layout is migrated to v2 (ShardedZarrStore.MigrateToV2 of its primary array), keeping its
// shards whatever chunks-per-shard is asked; convert the result again to re-shard it.
//
// Round trips: HAMT → sharded → HAMT gives back the original root when the HAMT dataset has a
// group document for every parent of its arrays and no consolidated_metadata in a root zarr.json
// of grouped arrays (the sharded layout adds the former and strips the latter, as py-hamt does),
// since a HAMT's root depends only on its keys and values. Sharded → HAMT → sharded gives back
// the original root when the new store is made with the chunks-per-shard the original's arrays
// have and the original holds no all-null shard block (py-hamt writes one when a delete empties a
// shard; a copy writes null there). py-hamt ships a HAMT → sharded converter only; ours registers
// each array with the one chunks-per-shard given, as the store's default, and we have no vector
// of py-hamt's converter to compare roots with.
func ConvertZarr(ctx context.Context, cas CAS, root cid.Cid, to Layout, opts ...LayoutOption) (cid.Cid, error) {
	o, err := buildLayoutOptions(opts)
	if err != nil {
		return cid.Undef, err
	}
	from, err := DetectLayout(ctx, cas, root)
	if err != nil {
		return cid.Undef, err
	}
	ro := o
	ro.write = false
	src, err := ro.open(ctx, cas, root, from)
	if err != nil {
		return cid.Undef, err
	}
	if s, ok := src.(*ShardedZarrStore); ok && s.Version() == 1 && to == LayoutSharded {
		return migrateV1(ctx, cas, root, s, o)
	}
	dst, err := o.create(ctx, cas, to)
	if err != nil {
		return cid.Undef, err
	}
	if _, err := copyZarr(ctx, dst, src, true, o.copy); err != nil {
		return cid.Undef, fmt.Errorf("hamt: convert %s from %s to %s: %w", root, from, to, err)
	}
	return dst.Flush(ctx)
}
