package hamt

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"sort"
	"sync"
	"sync/atomic"

	bolt "go.etcd.io/bbolt"
)

// bbolt's cursor trusts the page ids in branch pages. It finds a key by recursion, one call per
// level, from the bucket's root page down to a leaf, so a branch page that points at itself or
// at its own ancestor (a damaged file) makes it recurse until the goroutine's stack passes its
// limit: a fatal error that no recover catches, which kills the process. So a BoltCAS walks the
// path itself before bbolt does: from the root, each page read with ReadAt and checked as
// treePage says, the child chosen as bbolt's cursor chooses it (boltBranch.child), until a leaf;
// a path longer than boltMaxTreeDepth pages is a cycle, and ErrCorrupt.
//
// The pages of a committed state of the file do not change while a transaction reads it (bbolt
// writes a commit to pages no reader can see), so the pages checked are remembered for that
// state, which the transaction id names: a path walked once costs, walked again, a map lookup and
// a binary search per level, no I/O. A commit makes a new state, whose pages are checked afresh
// as lookups reach them. Only the paths lookups take are read, never the whole tree: the cost
// grows with the lookups since the last commit, not with the file. (Checking the whole tree of
// a store of 100,000 blocks of 1 KiB, four levels and 35,000 leaves, takes 42 ms of CPU, at
// open and after every commit, growing with the store; its paths cost about 20 µs at open, 1.5
// µs the first time a lookup reaches a leaf, then 0.1 to 0.5 µs a lookup.)
//
// Only lookups of one key are checked this way (Tx.Bucket, Bucket.Get, Bucket.Put, all through
// boltTx): they descend the path to the key and no further. A cursor's Seek, First and Next go
// on to the following leaves along paths this does not check; BoltCAS uses them only where
// boltFile.checkTree has checked the whole file first (BoltCAS.Check).

// boltPathCacheBytes bounds the bytes of branch pages one state remembers (those of a store of
// 100,000 blocks of 1 KiB take 1.8 MB, so this covers the paths to about 900,000 such blocks). A
// branch page checked past it is not remembered: it is read and checked again each time a path
// crosses it.
const boltPathCacheBytes = 16 << 20

// boltPaths checks the paths of a BoltCAS's lookups, remembering the newest state's pages.
type boltPaths struct {
	file     *os.File // the store's file, opened again for ReadAt
	pageSize uint32
	newest   atomic.Pointer[boltPathState]
	pages    sync.Pool // *[]byte of pageSize: buffers for treePage
}

// boltPathState is what has been checked in one committed state of the file.
type boltPathState struct {
	bf    boltFile // meta.txid names the state, meta.pgid is its high-water mark
	pages *sync.Pool
	// buckets is set once the paths to the blocks and meta buckets in the root bucket have been
	// checked (see boltTx.buckets).
	buckets atomic.Bool

	mu          sync.RWMutex
	branches    map[uint64]*boltBranch // checked branch pages
	branchBytes int                    // the bytes of the pages in branches
	leaves      map[uint64]uint64      // checked leaf pages, a bit for each: bit id%64 of leaves[id/64]
	opened      map[string]bool        // the buckets of the root bucket whose paths are checked
}

// state returns the state of the file that tx reads: the newest one if tx reads it, a new one
// (which becomes the newest) if tx reads a newer one, or a new one not remembered if tx began
// before the newest state's commit.
func (p *boltPaths) state(tx *bolt.Tx) *boltPathState {
	txid := uint64(tx.ID())
	if tx.Writable() {
		txid-- // a write transaction is numbered one past the state it reads
	}
	s := p.newest.Load()
	if s != nil && s.bf.meta.txid == txid {
		return s
	}
	fresh := &boltPathState{
		bf:       boltFile{f: p.file, meta: boltMeta{pageSize: p.pageSize, pgid: uint64(tx.Size()) / uint64(p.pageSize), txid: txid}},
		pages:    &p.pages,
		branches: make(map[uint64]*boltBranch),
		leaves:   make(map[uint64]uint64),
		opened:   make(map[string]bool),
	}
	for s == nil || s.bf.meta.txid < txid {
		if p.newest.CompareAndSwap(s, fresh) {
			return fresh
		}
		s = p.newest.Load()
	}
	if s.bf.meta.txid == txid {
		return s
	}
	return fresh
}

// path checks the path bbolt's cursor descends to find key in the tree whose root is page root,
// and returns the leaf it ends at.
func (s *boltPathState) path(root uint64, key []byte) (leaf uint64, err error) {
	var first *[]byte // a page-sized buffer for treePage, taken at the first page not yet checked
	defer func() {
		if first != nil {
			s.pages.Put(first)
		}
	}()
	id := root
	s.mu.RLock() // held while the path runs through pages checked already
	for depth := 0; ; depth++ {
		if depth > boltMaxTreeDepth {
			s.mu.RUnlock()
			return 0, boltCorruptf("the path to key %x runs through more than %d pages (at page %d): the tree has a cycle", key, boltMaxTreeDepth, id)
		}
		branch, ok := s.branches[id]
		if !ok && s.leaves[id/64]&(1<<(id%64)) != 0 {
			s.mu.RUnlock()
			return id, nil
		}
		if !ok {
			s.mu.RUnlock()
			if first == nil {
				if first, _ = s.pages.Get().(*[]byte); first == nil {
					b := make([]byte, s.bf.meta.pageSize)
					first = &b
				}
			}
			p, err := s.bf.treePage(id, *first)
			if err != nil {
				return 0, err
			}
			if p == nil {
				s.remember(id, nil)
				return id, nil
			}
			branch = newBoltBranch(p)
			s.remember(id, branch)
			s.mu.RLock()
		}
		id = branch.child(key)
	}
}

// remember records page id as checked: a leaf if branch is nil, else the branch, unless the
// state holds boltPathCacheBytes of branches already.
func (s *boltPathState) remember(id uint64, branch *boltBranch) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if branch == nil {
		s.leaves[id/64] |= 1 << (id % 64)
		return
	}
	if _, dup := s.branches[id]; !dup && s.branchBytes+len(branch.page) <= boltPathCacheBytes {
		s.branches[id] = branch
		s.branchBytes += len(branch.page)
	}
}

// boltBranch is a branch page checked by treePage, with the first 8 bytes of each key and the
// child it points at laid out for a search that touches little memory: a path crosses a branch
// on every lookup.
type boltBranch struct {
	page     []byte   // up to the end of its last key
	prefixes []uint64 // key i's first 8 bytes, big-endian, zero-padded
	children []uint64
}

func newBoltBranch(p []byte) *boltBranch {
	n := int(boltEndian.Uint16(p[10:]))
	b := &boltBranch{page: p, prefixes: make([]uint64, n), children: make([]uint64, n)}
	for i := range n {
		b.prefixes[i] = boltKeyPrefix(b.key(i))
		b.children[i] = boltEndian.Uint64(p[boltPageHeaderSize+i*boltElementSize+8:])
	}
	return b
}

// key returns key i of the page (treePage has checked it lies within).
func (b *boltBranch) key(i int) []byte {
	e := b.page[boltPageHeaderSize+i*boltElementSize:]
	at := boltPageHeaderSize + i*boltElementSize + int(boltEndian.Uint32(e[0:]))
	return b.page[at : at+int(boltEndian.Uint32(e[4:]))]
}

// boltKeyPrefix is k's first 8 bytes as a big-endian number, zero-padded: of two keys whose
// prefixes differ, the one with the smaller prefix sorts first.
func boltKeyPrefix(k []byte) uint64 {
	var b [8]byte
	copy(b[:], k)
	return binary.BigEndian.Uint64(b[:])
}

// child returns the child bbolt's cursor descends to for key (cursor.searchPage): the first
// whose key is at least key if some key compared in its binary search equals key, else the one
// before it, or the first. It compares keys as bbolt does, in the same order, so it chooses as
// bbolt does even on a damaged page whose keys are out of order.
func (b *boltBranch) child(key []byte) uint64 {
	kp := boltKeyPrefix(key)
	exact := false
	i := sort.Search(len(b.prefixes), func(i int) bool {
		c := 1
		switch p := b.prefixes[i]; {
		case p < kp:
			c = -1
		case p == kp:
			c = bytes.Compare(b.key(i), key)
		}
		exact = exact || c == 0
		return c >= 0
	})
	if !exact && i > 0 {
		i--
	}
	return b.children[i]
}

// bucket checks the path bbolt descends in the root bucket, whose root page is root, to open
// bucket name, and the bucket's page if it is inline (held in its value): bbolt's cursor takes
// an inline page marked as a branch for one, and every child of it for the page itself, a cycle.
func (s *boltPathState) bucket(root uint64, name []byte) error {
	leaf, err := s.path(root, name)
	if err != nil {
		return err
	}
	v, isBucket, err := s.bf.leafValue(leaf, name)
	if err != nil || !isBucket {
		return err // no such bucket: bbolt opens none
	}
	if len(v) < boltBucketHeader {
		return boltCorruptf("a bucket value of %d bytes", len(v))
	}
	if boltEndian.Uint64(v) != 0 {
		return nil // its pages are checked on the paths to its keys
	}
	return boltInlinePage(v[boltBucketHeader:])
}

// boltTx is a transaction of a BoltCAS whose lookups check their paths before bbolt descends
// them (see above). Every bucket a BoltCAS uses is opened through it, and every key looked up or
// put: a bucket opened otherwise could be inline with a page no one checked.
type boltTx struct {
	tx *bolt.Tx
	st *boltPathState
	b  *BoltCAS
}

// pathTx returns tx as a boltTx.
func (b *BoltCAS) pathTx(tx *bolt.Tx) boltTx {
	return boltTx{tx: tx, st: b.paths.state(tx), b: b}
}

// corrupt leaves the store broken by err, damage found before bbolt met it (see breakWith):
// a file with a damaged tree is not used further.
func (t boltTx) corrupt(err error) error { return t.b.breakWith(err) }

// rootPage is the root page of the root bucket, which holds the others.
func (t boltTx) rootPage() uint64 { return uint64(t.tx.Cursor().Bucket().Root()) }

// bucket opens bucket name of the root bucket, or returns nil if there is none. The path to it
// is checked once per state.
func (t boltTx) bucket(name []byte) (*bolt.Bucket, error) {
	if err := t.checkBucket(name); err != nil {
		return nil, err
	}
	return t.tx.Bucket(name), nil
}

// checkBucket checks the path to bucket name (see boltPathState.bucket) unless it is checked.
func (t boltTx) checkBucket(name []byte) error {
	t.st.mu.RLock()
	done := t.st.opened[string(name)]
	t.st.mu.RUnlock()
	if done {
		return nil
	}
	if err := t.st.bucket(t.rootPage(), name); err != nil {
		return t.corrupt(fmt.Errorf("open bucket %q: %w", name, err))
	}
	t.st.mu.Lock()
	t.st.opened[string(name)] = true
	t.st.mu.Unlock()
	return nil
}

// buckets opens the two buckets of a block store, or returns ErrCorrupt.
func (t boltTx) buckets() (blocks, meta *bolt.Bucket, err error) {
	if !t.st.buckets.Load() {
		for _, name := range [][]byte{boltBlocksBucket, boltMetaBucket} {
			if err := t.checkBucket(name); err != nil {
				return nil, nil, err
			}
		}
		t.st.buckets.Store(true)
	}
	blocks, meta = t.tx.Bucket(boltBlocksBucket), t.tx.Bucket(boltMetaBucket)
	if blocks == nil || meta == nil {
		return nil, nil, boltCorruptf("the blocks or meta bucket is gone")
	}
	return blocks, meta, nil
}

// get returns bk.Get(key), the value of key or nil if key is missing or a bucket, once the path
// to it is checked.
func (t boltTx) get(bk *bolt.Bucket, key []byte) ([]byte, error) {
	if err := t.path(bk, key); err != nil {
		return nil, err
	}
	return bk.Get(key), nil
}

// put is bk.Put(key, value) once the path to key is checked.
func (t boltTx) put(bk *bolt.Bucket, key, value []byte) error {
	if err := t.path(bk, key); err != nil {
		return err
	}
	return bk.Put(key, value)
}

// path checks the path to key in bk. An inline bucket (root page 0) has none: its page was
// checked when bucket or buckets opened it, and a bucket made in this transaction has no page.
func (t boltTx) path(bk *bolt.Bucket, key []byte) error {
	root := uint64(bk.Root())
	if root == 0 {
		return nil
	}
	if _, err := t.st.path(root, key); err != nil {
		return t.corrupt(err)
	}
	return nil
}
