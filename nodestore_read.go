package hamt

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/ipfs/go-cid"
	"golang.org/x/sync/singleflight"
)

// readStore serves a read-only map's nodes. Nodes are frozenNodes, immutable once decoded and
// shared by all readers; the root is always held, the rest go through a bounded cache.
type readStore struct {
	root     cid.Cid
	rootNode *frozenNode
	cache    *nodeCache
	// walked is the most nodes a walk has had to check, to size the next walk's set of them.
	walked atomic.Int64
	// valueLat is the time the store takes to load a value (see getRead), averaged as a walk's
	// node loads are.
	valueLat latency
}

// newReadStore opens root. rootNode, when the caller has it (just flushed), saves loading it.
func newReadStore(ctx context.Context, load loadFunc, root cid.Cid, rootNode *frozenNode, budget int64) (*readStore, error) {
	if !root.Defined() {
		return nil, fmt.Errorf("undefined root CID")
	}
	if rootNode == nil {
		n, err := loadFrozen(ctx, load, cidKey(root))
		if err != nil {
			return nil, fmt.Errorf("root: %w", err)
		}
		rootNode = n
	}
	c := newNodeCache(load, budget)
	rootNode.home = c.shard(string(cidKey(root))) // the root's kept values count there
	return &readStore{root: root, rootNode: rootNode, cache: c}, nil
}

// held returns node id if r holds it (its root, or a cached node) without going to the store,
// or nil. EnableWrite hands it to the write store, so that an update to a map just read does not
// fetch again the nodes the reads brought in.
func (r *readStore) held(id cidBytes) *frozenNode {
	if f := r.cache.peek(id); f != nil {
		return f
	}
	if id == cidKey(r.root) {
		return r.rootNode
	}
	return nil
}

// loadFrozen loads node id and decodes it for reading.
func loadFrozen(ctx context.Context, load loadFunc, id cidBytes) (*frozenNode, error) {
	b, err := load(ctx, id)
	if err != nil {
		return nil, err
	}
	n, err := decodeFrozen(b)
	if err != nil {
		return nil, fmt.Errorf("node %s: %w", id, err)
	}
	return n, nil
}

// child returns the child of n linked from its k-th occupied slot. A warm walk follows n.kids[k]
// without touching the cache's maps; a miss goes through the cache and remembers the child there.
func (r *readStore) child(ctx context.Context, n *frozenNode, k, depth int) (*frozenNode, error) {
	kid := &n.kids[k]
	if c := kid.Load(); c != nil {
		c.touch()
		if st := r.cache.stats; st != nil {
			st.nodeHits.Add(1)
		}
		return c, nil
	}
	c, e, err := r.cache.get(ctx, n.linkAt(k), depth)
	if err != nil {
		return nil, fmt.Errorf("depth %d: %w", depth, err)
	}
	if e != nil {
		e.attach(kid)
	}
	return c, nil
}

// lookup finds key's value CID ("" when absent). It takes no lock but a cache shard's on a miss.
func (r *readStore) lookup(ctx context.Context, key string, h []byte) (cidBytes, error) {
	id, _, _, _, _, err := r.lookupAt(ctx, key, h)
	return id, err
}

// lookupAt is lookup that also says where it found key: in the bucket in the k-th occupied slot of
// node n at depth, its entry starting at offset at of n's img.
func (r *readStore) lookupAt(ctx context.Context, key string, h []byte) (id cidBytes, n *frozenNode, k, at, depth int, err error) {
	n = r.rootNode
	for depth = 0; ; depth++ {
		i, err := slotAt(h, depth)
		if err != nil {
			return "", nil, 0, 0, 0, err
		}
		var kind slotKind
		k, kind = n.find(i)
		switch kind {
		case slotEmpty:
			return "", nil, 0, 0, 0, nil
		case slotBucket:
			id, at, _ = bucketSearch(n.img, n.slotStart(k), key)
			return id, n, k, at, depth, nil
		}
		if n, err = r.child(ctx, n, k, depth+1); err != nil {
			return "", nil, 0, 0, 0, err
		}
	}
}

// walkKeys yields every key in keys() order: depth first from the root, a node's buckets in slot
// order, then its children from the highest slot down. It stops when yield returns false or ctx
// is done. The walk is walkTree's, so a node reached twice or a key off its hash path (for hasher)
// is ErrMalformedNode. ahead says how it may load nodes ahead.
func (r *readStore) walkKeys(ctx context.Context, hasher keyHasher, ahead walkAhead, yield func(string) bool) error {
	return r.walkEntries(ctx, hasher, ahead, func(key string, _ cidBytes) bool { return yield(key) })
}

// nodeCache holds decoded nodes within a memory budget. It is split into shards, each with its own
// lock, map and CLOCK rings, so readers of different nodes rarely meet; a hit takes one shard read
// lock. Concurrent misses of the same node share one load.
//
// Eviction goes by depth: each shard keeps one CLOCK ring per depth, and a node loaded at depth d
// may only evict nodes at depth d or deeper, deepest first. The upper levels, which every read
// passes through, are therefore never evicted by the leaves a workload sweeps over; when the
// budget cannot hold a level below them, that level's nodes take turns in what is left and the
// levels above stay cached. (A node that would have to evict a shallower one is not kept.)
type nodeCache struct {
	load   loadFunc
	shards [cacheShards]cacheShard
	budget int64       // per shard
	stats  *cacheStats // where hits and misses are counted (WithTelemetry); nil: not counted
}

const cacheShards = 32

// cacheEntryOverhead is what keeping a node costs beyond the node itself, for budgets: its entry,
// and its slot in the shard's map and ring (the map's key shares the parent's bytes).
const cacheEntryOverhead = int64(unsafe.Sizeof(cacheEntry{})) + 48

type cacheShard struct {
	mu      sync.RWMutex
	entries map[string]*cacheEntry
	levels  []cacheLevel  // by depth
	bytes   atomic.Int64  // of the cached nodes; written under mu
	values  atomic.Int64  // of the value tables and values kept with them (valuecache.go)
	tabled  []*frozenNode // nodes given a value table, oldest first, for dropValues; under mu
	budget  int64
	loads   singleflight.Group
}

// roomFor reports whether size more bytes of values fit in s's budget beside what it holds.
func (s *cacheShard) roomFor(size int64) bool {
	return s.bytes.Load()+s.values.Load()+size <= s.budget
}

// cacheLevel is the CLOCK ring of one depth's cached nodes; hand sweeps it to pick victims.
type cacheLevel struct {
	ring []*cacheEntry
	hand int
}

type cacheEntry struct {
	key   string
	node  *frozenNode
	size  int64
	depth int
	// from is the parent's kids entry that short-cuts to this node, if any; eviction clears it so
	// the node can be freed. evicted is set under the shard lock before from is read.
	from    atomic.Pointer[atomic.Pointer[frozenNode]]
	evicted atomic.Bool
}

// attach makes the parent's short-cut kid point to e's node. Either attach sees that e was
// evicted, or the eviction sees kid in from: both sides write before they read, so a parent never
// keeps an evicted node for long.
func (e *cacheEntry) attach(kid *atomic.Pointer[frozenNode]) {
	kid.Store(e.node)
	e.from.Store(kid)
	if e.evicted.Load() {
		kid.CompareAndSwap(e.node, nil)
	}
}

// detach is eviction's side of attach. Callers hold the shard lock.
func (e *cacheEntry) detach() {
	e.evicted.Store(true)
	if kid := e.from.Load(); kid != nil {
		kid.CompareAndSwap(e.node, nil)
	}
}

func newNodeCache(load loadFunc, budget int64) *nodeCache {
	c := &nodeCache{load: load, budget: budget / cacheShards}
	for i := range c.shards {
		c.shards[i].entries = make(map[string]*cacheEntry)
		c.shards[i].budget = c.budget
	}
	return c
}

func (c *nodeCache) shard(key string) *cacheShard {
	// The last byte of a CID is a byte of its digest: uniformly spread.
	return &c.shards[int(key[len(key)-1])%cacheShards]
}

// get returns node id, found at depth, loading it on a miss, and its cache entry (nil if the node
// was not kept). A caller whose ctx ends stops waiting; the load itself finishes for the other
// waiters.
func (c *nodeCache) get(ctx context.Context, id cidBytes, depth int) (*frozenNode, *cacheEntry, error) {
	key := string(id)
	if key == "" {
		return nil, nil, fmt.Errorf("%w: undefined CID", ErrMalformedNode)
	}
	s := c.shard(key)
	s.mu.RLock()
	e := s.entries[key]
	s.mu.RUnlock()
	if e != nil {
		e.node.touch()
		if c.stats != nil {
			c.stats.nodeHits.Add(1)
		}
		return e.node, e, nil
	}
	if c.stats != nil {
		c.stats.nodeMisses.Add(1)
	}
	load := func() (any, error) {
		n, err := loadFrozen(context.WithoutCancel(ctx), c.load, id)
		if err != nil {
			return nil, err
		}
		if e := c.insert(s, key, n, n.memSize()+cacheEntryOverhead, depth); e != nil {
			return e, nil
		}
		return n, nil
	}
	var res singleflight.Result
	if ctx.Done() == nil {
		// A context that can never end need not be able to stop waiting: load in this goroutine.
		res.Val, res.Err, _ = s.loads.Do(key, load)
	} else {
		select {
		case res = <-s.loads.DoChan(key, load):
		case <-ctx.Done():
			return nil, nil, ctx.Err()
		}
	}
	switch v := res.Val.(type) {
	case *cacheEntry:
		return v.node, v, nil
	case *frozenNode:
		return v, nil, nil
	}
	return nil, nil, res.Err
}

// peek returns node id if the cache holds it, without loading it or touching its CLOCK bit.
func (c *nodeCache) peek(id cidBytes) *frozenNode {
	key := string(id)
	if key == "" {
		return nil
	}
	s := c.shard(key)
	s.mu.RLock()
	e := s.entries[key]
	s.mu.RUnlock()
	if e == nil {
		return nil
	}
	return e.node
}

// insert adds a node found at depth, evicting by CLOCK, deepest level first and never above
// depth, until it fits, and returns its entry. A node that does not fit without evicting a
// shallower one (or larger than the shard's budget) is not kept (nil).
func (c *nodeCache) insert(s *cacheShard, key string, n *frozenNode, size int64, depth int) *cacheEntry {
	if size > c.budget {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if e, ok := s.entries[key]; ok {
		return e
	}
	used := func() int64 { return s.bytes.Load() + s.values.Load() + size }
	// Kept values are the first to go: they only fill the room nodes leave.
	for used() > c.budget && len(s.tabled) > 0 {
		f := s.tabled[0]
		s.tabled[0] = nil
		s.tabled = s.tabled[1:]
		f.dropValues(s, false)
	}
	for d := len(s.levels) - 1; used() > c.budget && d >= depth; d-- {
		s.evict(&s.levels[d], used()-c.budget)
	}
	if used() > c.budget {
		return nil
	}
	for len(s.levels) <= depth {
		s.levels = append(s.levels, cacheLevel{})
	}
	e := &cacheEntry{key: key, node: n, size: size, depth: depth}
	l := &s.levels[depth]
	l.ring = append(l.ring, e)
	s.entries[key] = e
	s.bytes.Add(size)
	n.home = s
	return e
}

// evict frees at least need bytes from level l by CLOCK, or empties it. Callers hold s.mu.
func (s *cacheShard) evict(l *cacheLevel, need int64) {
	for need > 0 && len(l.ring) > 0 {
		if l.hand >= len(l.ring) {
			l.hand = 0
		}
		victim := l.ring[l.hand]
		if victim.node.used.Load() {
			victim.node.used.Store(false)
			l.hand++
			continue
		}
		last := l.ring[len(l.ring)-1]
		l.ring[l.hand] = last
		l.ring[len(l.ring)-1] = nil
		l.ring = l.ring[:len(l.ring)-1]
		delete(s.entries, victim.key)
		s.bytes.Add(-victim.size)
		need -= victim.size
		if vt := victim.node.vals.Load(); vt != nil && vt != valuesLeft {
			need -= max(vt.bytes.Load(), 0)
		}
		victim.node.dropValues(s, true)
		victim.detach()
	}
}

// size is the approximate memory of the cached nodes and the values kept with them.
func (c *nodeCache) size() int64 {
	var total int64
	for i := range c.shards {
		s := &c.shards[i]
		total += s.bytes.Load() + s.values.Load()
	}
	return total
}

// clear drops every cached node.
func (c *nodeCache) clear() {
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.Lock()
		for _, l := range s.levels {
			for _, e := range l.ring {
				e.node.dropValues(s, true)
				e.detach()
			}
		}
		s.entries = make(map[string]*cacheEntry)
		s.levels, s.tabled = nil, nil
		s.bytes.Store(0)
		s.mu.Unlock()
	}
}
