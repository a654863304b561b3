package hamt

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"

	"github.com/ipfs/go-cid"
	"github.com/multiformats/go-multicodec"
	bolt "go.etcd.io/bbolt"
)

// This file is the garbage collector of BoltCAS: mark every block a kept root reaches, sweep the
// others out of the file in one transaction, then compact the file (bbolt never gives freed pages
// back to the file system; a compacted copy is renamed over it).
//
// What makes it safe:
//   - Mark before sweep, and no sweep on an incomplete mark: a kept root with a block missing (or a
//     tree that is not one) stops the GC before anything is removed.
//   - Saves during a GC: every block saved or put from its start to the end of the sweep is kept
//     (BoltCAS.gcKeep), present already or not; one saved during the sweep waits in the buffer,
//     whose commit (after the sweep, which holds commitMu) writes it again if it was removed.
//   - Readers in this process read bbolt snapshots (read transactions) until the compacted file
//     replaces the old one; the swap itself holds the store exclusively (life), briefly.
//   - Other processes: bbolt locks the file, so none has it open for reading or writing while the
//     GC holds it; one waiting for the old file's lock sees, once it has it, that the file is no
//     longer at the path, and opens the new one (boltOpenFile).
//   - A crash: the sweep is one bbolt transaction (all of it or none); the compacted copy is
//     written to a temporary file in the same directory, fsynced, and renamed over the old one
//     (atomic), then the directory is fsynced. At any moment the file at the path holds every
//     block a kept root reaches. A crash before the rename leaves the temporary file, which the
//     next GC removes.

// GCOption configures BoltCAS.GC.
type GCOption func(*gcOptions)

type gcOptions struct {
	roots     []cid.Cid
	dryRun    bool
	noCompact bool
	mapOpts   []Option
}

// WithGCRoots keeps what roots reach too, besides the named roots and their histories.
func WithGCRoots(roots ...cid.Cid) GCOption {
	return func(o *gcOptions) { o.roots = append(o.roots, roots...) }
}

// WithGCDryRun marks and counts what a GC would remove, and removes nothing.
func WithGCDryRun() GCOption { return func(o *gcOptions) { o.dryRun = true } }

// WithoutGCCompaction removes the garbage but does not compact the file: the space stays in the
// file, free for later blocks.
func WithoutGCCompaction() GCOption { return func(o *gcOptions) { o.noCompact = true } }

// WithGCMapOptions gives the options of the maps the roots head (WithHash, for a map written with
// another hash function: the mark checks every key against it).
func WithGCMapOptions(opts ...Option) GCOption {
	return func(o *gcOptions) { o.mapOpts = append(o.mapOpts, opts...) }
}

// GCReport says what a GC found and did. Block counts and bytes are those of the blocks in the
// file (a block is counted once however many CIDs name it); file sizes are the file's on disk.
type GCReport struct {
	Roots         int   // distinct roots kept: named (current and history) and given
	BlocksBefore  int   // blocks in the file before
	BytesBefore   int64 // bytes of those blocks
	BlocksRemoved int   // blocks no kept root reaches, removed (or, dry run, to remove)
	BytesRemoved  int64
	BlocksAfter   int
	BytesAfter    int64
	FileBefore    int64 // size of the file before
	FileAfter     int64 // size of the file after (the same when not compacted)
	Compacted     bool  // the file was compacted
	DryRun        bool
}

// GC removes from the file every block that no kept root reaches, and compacts the file. The
// kept roots are every name's current root and the roots in its history (SetName), and those
// WithGCRoots gives. A root is a HAMT (its nodes and values), a sharded Zarr root (IsShardedRoot:
// its metadata, shards and chunks), a UnixFS file (every block of it), or a block of another
// codec; a value stored as a UnixFS file is kept with every block of its file. The mark reads
// each distinct block once, however many roots share it (a name's history shares most of its
// tree from one root to the next).
//
// Blocks reachable only from a map being built and not yet named (nor given) are garbage, unless
// its builder holds the GC off (HoldGC) until it has named its root. Blocks saved or put while
// the GC runs are kept, whether the file held them already or not. If a kept root's block,
// or one it reaches, is missing or malformed, GC removes nothing and fails with the name or root
// and the cause (ErrMissingBlock, ErrMalformedNode...). A failure while compacting leaves the
// garbage removed, the file whole and not compacted; the report says so (Compacted false) along
// with the error.
//
// GC needs a store opened for writing (ErrReadOnly otherwise); one GC runs at a time. Calls in
// this process go on during the mark and the sweep (saves during the sweep, and the commits of
// all saves during the compaction, wait for it), and all wait during the swap of the files.
func (b *BoltCAS) GC(ctx context.Context, opts ...GCOption) (GCReport, error) {
	var o gcOptions
	for _, opt := range opts {
		opt(&o)
	}
	rep := GCReport{DryRun: o.dryRun}
	if b.opts.readOnly {
		return rep, fmt.Errorf("bolt store %s: gc: store opened read-only: %w", b.path, ErrReadOnly)
	}
	b.gcMu.Lock()
	defer b.gcMu.Unlock()
	b.gcHold.Lock()
	defer b.gcHold.Unlock()

	b.mu.Lock()
	b.gcKeep = make(map[string]struct{})
	b.mu.Unlock()
	defer func() {
		b.mu.Lock()
		b.gcKeep = nil
		b.mu.Unlock()
	}()
	// What is buffered goes to the file first: the sweep judges the file.
	if err := b.Flush(ctx); err != nil {
		return rep, fmt.Errorf("gc: %w", err)
	}
	keep, roots, err := b.mark(ctx, o)
	if err != nil {
		return rep, fmt.Errorf("bolt store %s: gc: nothing removed: %w", b.path, err)
	}
	rep.Roots = roots
	if err := b.gcPhase("marked"); err != nil {
		return rep, err
	}
	if err := b.sweep(ctx, keep, o, &rep); err != nil {
		return rep, fmt.Errorf("bolt store %s: gc: %w", b.path, err)
	}
	return rep, nil
}

// HoldGC keeps a GC from starting until release is called (a GC running finishes first): hold it
// while building a map whose root is not named yet, from its first save until SetName, so that
// its blocks saved before a GC began are not garbage to it. release may be called more than once.
// A GC waits for every hold to be released: do not hold one for ever, nor call GC while holding
// one. Holds do not nest: while a GC waits, a new HoldGC waits for it, so a goroutine that takes
// a second hold (itself, or through one it waits for) before releasing its first deadlocks.
func (b *BoltCAS) HoldGC() (release func()) {
	b.gcHold.RLock()
	return sync.OnceFunc(b.gcHold.RUnlock)
}

// gcPhase calls the test hook, if any, at the end of a phase.
func (b *BoltCAS) gcPhase(phase string) error {
	if b.gcHook == nil {
		return nil
	}
	if err := b.gcHook(phase); err != nil {
		return fmt.Errorf("gc stopped after %s: %w", phase, err)
	}
	return nil
}

// mark returns the keys of every block the kept roots reach, and how many distinct roots it kept.
func (b *BoltCAS) mark(ctx context.Context, o gcOptions) (map[string]struct{}, int, error) {
	names, err := b.Names(ctx)
	if err != nil {
		return nil, 0, err
	}
	var roots []gcRoot
	for _, n := range names {
		roots = append(roots, gcRoot{n.Root, fmt.Sprintf("name %q", n.Name)})
		for i, h := range n.History {
			roots = append(roots, gcRoot{h.Root, fmt.Sprintf("name %q, history entry %d", n.Name, i+1)})
		}
	}
	for _, r := range o.roots {
		roots = append(roots, gcRoot{r, "root given"})
	}
	m, err := markRoots(ctx, b, roots, o.mapOpts)
	if err != nil {
		return nil, 0, err
	}
	keep := make(map[string]struct{}, len(m.blocks)+len(m.nodes))
	for id := range m.blocks {
		if k, ok := boltKey(id.cid()); ok && !isIdentity(id) { // an identity CID has no block
			keep[k] = struct{}{}
		}
	}
	for id := range m.nodes {
		if k, ok := boltKey(id.cid()); ok && !isIdentity(id) {
			keep[k] = struct{}{}
		}
	}
	return keep, len(m.roots), nil
}

// gcRoot is a root the GC keeps, and why (for errors).
type gcRoot struct {
	root cid.Cid
	why  string
}

// gcMark is the mark's state: what the roots marked so far reach. Each distinct block is read
// once across all roots, so a mark costs about the distinct blocks the roots reach, not roots ×
// blocks, however long the histories that share them.
//
// A HAMT subtree already marked is left out (treeCheck.skip) only where it is met at the
// position (the slots from the root) it was checked at: the same CID there is the same bytes at
// the same place, so every check of the shared walker would find there what it found before
// (passed: a failure stops the GC), and every block below was read, and found present, then.
// Met anywhere else, it is walked and checked again, as before: a node reached twice in one
// tree is at two positions, so the walker still finds the diamond (or the key off its hash path
// that such a node must hold, walk.go's top comment says why), and a subtree moved to another
// position in another root still fails its key check. So GC refuses exactly what it refused
// when it walked every root whole.
type gcMark struct {
	cas  CAS
	opts []Option
	// blocks are the blocks marked other than HAMT nodes: values (a value here is marked with
	// every block of its file), the blocks of sharded roots, roots of other codecs. A block
	// marked as a value, which links nothing, is here under its raw CID (leafKey): the same
	// bytes may be a root, node or shard elsewhere, whose links are still to be followed.
	blocks map[cidBytes]struct{}
	// shards are the sharded roots' shards whose chunks were marked (walkShardedSeen).
	shards map[cidBytes]struct{}
	// nodes are the HAMT nodes marked with their subtrees, each with the position it was checked
	// at (treeCheck.position; 0 past depth 7, where a subtree is never left out).
	nodes map[cidBytes]uint64
	// roots are the distinct roots marked.
	roots map[cidBytes]struct{}
}

// markRoots marks what roots reach in cas, checking that cas holds each block (ErrMissingBlock)
// and that the structures read are well formed; the first root that fails stops it.
func markRoots(ctx context.Context, cas CAS, roots []gcRoot, opts []Option) (*gcMark, error) {
	m := &gcMark{cas: cas, opts: opts, blocks: map[cidBytes]struct{}{}, shards: map[cidBytes]struct{}{}, nodes: map[cidBytes]uint64{}, roots: map[cidBytes]struct{}{}}
	for _, r := range roots {
		if _, ok := m.roots[cidKey(r.root)]; ok {
			continue
		}
		if err := m.root(ctx, r.root); err != nil {
			return nil, fmt.Errorf("%s: root %s: %w", r.why, r.root, err)
		}
		m.roots[cidKey(r.root)] = struct{}{}
	}
	return m, nil
}

// root marks every block root reaches. A root marked before as a value (a map's value may be
// another map's root: ZarrStore.SetCID) is marked again as a root: a value's mark covers its
// block only.
func (m *gcMark) root(ctx context.Context, root cid.Cid) error {
	if root.Prefix().Codec != uint64(multicodec.DagCbor) {
		return m.value(ctx, cidKey(root))
	}
	block, err := shardedRootBlock(ctx, m.cas, root)
	if err != nil {
		return err
	}
	if block != nil {
		return walkShardedSeen(ctx, m.cas, root, block, m.blocks, m.shards, nil)
	}
	t, err := toolCheck(m.opts)
	if err != nil {
		return err
	}
	t.skip = func(id cidBytes, pos uint64) bool {
		at, ok := m.nodes[id]
		return ok && pos != 0 && at == pos
	}
	// Nothing loaded ahead: a local file answers in microseconds, and the loads ahead would not
	// ask skip.
	return walkStoredChecked(ctx, m.cas, root, t, walkAhead{}, func(n *blockNode, depth int) error {
		m.nodes[cidKey(n.id)] = t.position(depth)
		return n.eachValue(func(key string, value cidBytes) error {
			if err := m.value(ctx, value); err != nil {
				return fmt.Errorf("value of %q: %w", key, err)
			}
			return nil
		})
	})
}

// value marks value's block, or every block of the UnixFS file it heads, as a sharded walk over
// the same marks does (a raw value is sized, not loaded).
func (m *gcMark) value(ctx context.Context, value cidBytes) error {
	w := shardedWalk{cas: m.cas, verify: !storeVerifies(m.cas), seen: m.blocks, shards: m.shards}
	if err := w.value(ctx, value.cid()); err != nil {
		if isDagPb(value) {
			return fmt.Errorf("file %s: %w", value.cid(), err)
		}
		return err
	}
	return nil
}

// sweep removes, in one transaction, every block of the file whose key is neither in keep nor
// saved since the GC began, then compacts the file (unless a dry run, or told not to, or there is
// nothing to give back).
func (b *BoltCAS) sweep(ctx context.Context, keep map[string]struct{}, o gcOptions, rep *GCReport) error {
	if err := b.enterWrite("gc"); err != nil {
		return err
	}
	entered := true
	defer func() {
		if entered {
			b.leave()
		}
	}()
	b.commitMu.Lock()
	locked := true
	defer func() {
		if locked {
			b.commitMu.Unlock()
		}
	}()
	if fi, err := os.Stat(b.path); err == nil {
		rep.FileBefore, rep.FileAfter = fi.Size(), fi.Size()
	}
	// Every save from now on is in pending until this sweep's transaction has committed
	// (commitMu): a copy of gcKeep now covers those since the GC began.
	b.mu.RLock()
	saved := make(map[string]struct{}, len(b.gcKeep))
	for k := range b.gcKeep {
		saved[k] = struct{}{}
	}
	b.mu.RUnlock()
	err := b.guard(func() error {
		tx, err := b.db.Begin(!o.dryRun)
		if err != nil {
			return err
		}
		defer func() { _ = tx.Rollback() }()
		// A cursor runs through every page of the blocks bucket, which the path checks of
		// lookups do not cover: check the whole tree first, as Check does.
		if err := b.checkWholeTree(tx); err != nil {
			return err
		}
		t := b.pathTx(tx)
		blocks, meta, err := t.buckets()
		if err != nil {
			return err
		}
		var doomed [][]byte
		c := blocks.Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			if rep.BlocksBefore%1024 == 0 && ctx.Err() != nil {
				return ctx.Err()
			}
			if v == nil {
				return boltCorruptf("a nested bucket %x among the blocks", k)
			}
			rep.BlocksBefore++
			rep.BytesBefore += int64(len(v))
			if _, ok := keep[string(k)]; ok {
				continue
			}
			if _, ok := saved[string(k)]; ok {
				continue
			}
			doomed = append(doomed, append([]byte(nil), k...))
			rep.BlocksRemoved++
			rep.BytesRemoved += int64(len(v))
		}
		rep.BlocksAfter, rep.BytesAfter = rep.BlocksBefore-rep.BlocksRemoved, rep.BytesBefore-rep.BytesRemoved
		if o.dryRun || len(doomed) == 0 {
			return nil
		}
		count, err := t.count(meta)
		if err != nil {
			return err
		}
		if count != uint64(rep.BlocksBefore) {
			return boltCorruptf("the file holds %d blocks but counts %d", rep.BlocksBefore, count)
		}
		for _, k := range doomed {
			if err := blocks.Delete(k); err != nil {
				return err
			}
		}
		if err := t.put(meta, boltCountKey, binary.BigEndian.AppendUint64(nil, uint64(rep.BlocksAfter))); err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		return tx.Commit()
	})
	if err != nil {
		return err
	}
	if o.dryRun {
		return nil
	}
	if err := b.gcPhase("swept"); err != nil {
		return err
	}
	// Nothing removed now and little free from before: a copy would be about the same size.
	st := b.db.Stats()
	free := int64(st.FreePageN+st.PendingPageN) * int64(b.db.Info().PageSize)
	if o.noCompact || (rep.BlocksRemoved == 0 && free < max(1<<20, rep.FileBefore/10)) {
		return nil
	}
	// Compact: copy with commits held back, then swap holding the store exclusively. The life
	// lock cannot be taken while commitMu is held (a save waiting for commitMu holds life for
	// reading), so the copy is checked, once life is held, to be of the file's last commit.
	for try := 0; ; try++ {
		tmp, copied, err := b.compactCopy()
		b.commitMu.Unlock()
		locked = false
		b.leave()
		entered = false
		if err != nil {
			return fmt.Errorf("removed %d blocks; compact: %w", rep.BlocksRemoved, err)
		}
		if err := b.gcPhase("copied"); err != nil {
			_ = os.Remove(tmp)
			return err
		}
		swapped, err := b.swapFile(tmp, copied, try == 3)
		if err != nil {
			return fmt.Errorf("removed %d blocks; compact: %w", rep.BlocksRemoved, err)
		}
		if swapped {
			break
		}
		if err := b.enterWrite("gc"); err != nil {
			return err
		}
		entered = true
		b.commitMu.Lock()
		locked = true
	}
	rep.Compacted = true
	if fi, err := os.Stat(b.path); err == nil {
		rep.FileAfter = fi.Size()
	}
	return nil
}

// checkWholeTree checks every page of the state tx reads (see boltFile.checkTree), before a
// cursor walks it.
func (b *BoltCAS) checkWholeTree(tx *bolt.Tx) error {
	bf, found, err := openBoltFile(b.path)
	if err != nil {
		return err
	}
	if !found {
		return boltCorruptf("no valid meta page")
	}
	defer bf.Close()
	want := uint64(tx.ID())
	if tx.Writable() {
		want--
	}
	if bf.meta.txid != want {
		return fmt.Errorf("the file's meta page (transaction %d) is not the store's (%d): is another program writing it?", bf.meta.txid, want)
	}
	if err := bf.checkMeta(false); err != nil {
		return err
	}
	return bf.checkTree()
}

// compactTxBytes is how many bytes of blocks one transaction of the compacted copy takes.
const compactTxBytes = 64 << 20

// compactCopy writes a compacted copy of the file's last commit to a new temporary file beside
// it, fsynced, and returns its path and the transaction id of the commit copied. Temporary files
// a crashed GC left are removed first. Callers hold commitMu and are inside enter.
func (b *BoltCAS) compactCopy() (tmp string, txid uint64, err error) {
	target := gcTarget(b.path)
	dir, base := filepath.Dir(target), filepath.Base(target)
	if old, _ := filepath.Glob(filepath.Join(dir, base+".gc-*.tmp")); len(old) > 0 {
		for _, f := range old {
			_ = os.Remove(f)
		}
	}
	f, err := os.CreateTemp(dir, base+".gc-*.tmp")
	if err != nil {
		return "", 0, err
	}
	tmp = f.Name()
	// The copy takes the file's permissions (CreateTemp makes it 0600): a store shared by a
	// group stays shared.
	if fi, serr := os.Stat(target); serr == nil {
		err = f.Chmod(fi.Mode().Perm())
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = os.Remove(tmp)
		return "", 0, err
	}
	defer func() {
		if err != nil {
			_ = os.Remove(tmp)
		}
	}()
	// Unsynced commits into the copy, one fsync at the end: nobody sees it before the rename.
	dst, err := bolt.Open(tmp, 0o600, &bolt.Options{NoSync: true, Timeout: b.opts.timeout})
	if err != nil {
		return "", 0, err
	}
	err = b.guard(func() error {
		if err := b.db.View(func(tx *bolt.Tx) error { txid = uint64(tx.ID()); return nil }); err != nil {
			return err
		}
		return bolt.Compact(dst, b.db, compactTxBytes)
	})
	if err == nil {
		err = dst.Sync()
	}
	if cerr := dst.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = trimBoltFile(tmp)
	}
	return tmp, txid, err
}

// trimBoltFile cuts the bbolt file at path, closed, to the pages its meta page counts, and
// fsyncs it: bbolt grows a file past 16 MiB in steps of 16 MiB (its AllocSize), which a compacted
// copy need not keep, and grows it again when it needs to.
func trimBoltFile(path string) error {
	bf, found, err := openBoltFile(path)
	if err != nil {
		return err
	}
	if !found {
		return boltCorruptf("the compacted copy has no valid meta page")
	}
	end := int64(bf.meta.pgid) * int64(bf.meta.pageSize)
	_ = bf.Close()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	fi, err := f.Stat()
	if err == nil && fi.Size() > end {
		err = f.Truncate(end)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// swapFile renames the compacted copy tmp over the file and reopens the store on it, if the file's
// last commit is still the one copied or force (the caller has no other way then: force holds
// the store while it copies again). It reports whether it swapped; a copy it does not rename it
// removes.
func (b *BoltCAS) swapFile(tmp string, copied uint64, force bool) (swapped bool, err error) {
	b.life.Lock()
	defer b.life.Unlock()
	defer func() {
		if !swapped {
			_ = os.Remove(tmp)
		}
	}()
	if b.closed {
		return false, fmt.Errorf("bolt store %s: gc: %w", b.path, fs.ErrClosed)
	}
	var now uint64
	if err := b.guard(func() error {
		return b.db.View(func(tx *bolt.Tx) error { now = uint64(tx.ID()); return nil })
	}); err != nil {
		return false, err
	}
	if now != copied {
		if !force {
			return false, nil
		}
		_ = os.Remove(tmp)
		if tmp, _, err = b.compactCopy(); err != nil {
			return false, err
		}
	}
	if err := b.gcPhase("before rename"); err != nil {
		return false, err
	}
	target := gcTarget(b.path)
	if err := os.Rename(tmp, target); err != nil {
		return false, err
	}
	// From here the file at the path is the compacted one: whatever fails now, the store must
	// be reopened on it.
	syncErr := syncDir(filepath.Dir(target))
	_ = b.file.Close()
	_ = boltRecover(b.db.Close)
	db, file, err := boltOpenFile(b.path, b.opts)
	if err != nil {
		return true, b.breakWith(fmt.Errorf("%w: reopen the compacted file: %v", ErrCorrupt, err))
	}
	b.db, b.file = db, file
	b.paths = boltPaths{file: file, pageSize: uint32(db.Info().PageSize)}
	if syncErr != nil {
		return true, fmt.Errorf("fsync the directory after renaming the compacted file: %w", syncErr)
	}
	return true, nil
}

// gcTarget is the file the store's path names, through symbolic links: the compacted copy
// replaces that file, not a link to it (which would leave the file, uncompacted, to whoever
// opens it by another path, and the link a file of its own).
func gcTarget(path string) string {
	if real, err := filepath.EvalSymlinks(path); err == nil {
		return real
	}
	return path
}

// syncDir fsyncs directory dir, making a rename in it durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil && !errors.Is(cerr, os.ErrClosed) {
		err = cerr
	}
	return err
}
