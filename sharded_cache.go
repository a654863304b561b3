package hamt

import (
	"container/list"
	"context"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/ipfs/go-cid"
	"golang.org/x/sync/singleflight"
)

// shardCache keeps recently read shards of a sharded Zarr store within a byte budget, evicting the
// least recently used first. It is safe for many goroutines: a hit takes one short lock, and
// concurrent misses of the same shard share one load (singleflight). A failed load is not
// remembered: the next read tries again.
//
// A cached shard is its block plus, when its entries differ in size, one 4-byte offset per entry
// (see shard): about 41 bytes per chunk, the block's own size, with nothing decoded ahead of use. A
// miss costs the load and one check of the block (~0.1 ms for 26,000 entries); an entry lookup
// allocates only the CID it returns.
//
// A shard larger than a quarter of the budget is never kept: caching it would evict most of the
// others for one block, and reading it again costs one load. Sparse reads (sparseEntry) never
// insert either; they suit a reader that touches each shard once, like py-hamt's "sparse" mode.
type shardCache struct {
	budget int64

	mu    sync.Mutex
	used  int64                    // Σ memSize of the kept shards, ≤ budget
	byKey map[string]*list.Element // binary CID → element of lru holding a *shardCacheItem
	lru   list.List                // most recently used first

	loads singleflight.Group

	// Counters, for stats and tests.
	hits, misses, loaded, shared atomic.Int64
	// waiting counts the callers that have joined an in-flight load and wait for it, able to give
	// up (their ctx can end).
	waiting atomic.Int64
}

type shardCacheItem struct {
	key   string
	shard *shard
	size  int64
}

// shardLoader returns the bytes of a shard block (the whole block, whatever its CID's codec: a
// dag-pb shard is the file it heads).
type shardLoader func(ctx context.Context) ([]byte, error)

// newShardCache returns a cache holding at most budget bytes of shards. With budget ≤ 0 nothing is
// kept, and every read loads its shard (concurrent ones still share the load).
func newShardCache(budget int64) *shardCache {
	return &shardCache{budget: max(budget, 0), byKey: make(map[string]*list.Element)}
}

// get returns shard id, which must hold want entries, loading it with load on a miss and keeping
// it if it fits. A caller whose ctx ends stops waiting; the load itself finishes for the others.
func (c *shardCache) get(ctx context.Context, id cid.Cid, want int, load shardLoader) (*shard, error) {
	return c.read(ctx, id, want, load, true)
}

// entry returns entry k of shard id (cid.Undef for null), as get would find the shard.
func (c *shardCache) entry(ctx context.Context, id cid.Cid, want, k int, load shardLoader) (cid.Cid, error) {
	s, err := c.read(ctx, id, want, load, true)
	if err != nil {
		return cid.Undef, err
	}
	return shardEntryOf(s, id, k)
}

// sparseEntry returns entry k of shard id like entry, but a shard that is not cached already is
// read for this entry and dropped, never kept.
func (c *shardCache) sparseEntry(ctx context.Context, id cid.Cid, want, k int, load shardLoader) (cid.Cid, error) {
	s, err := c.read(ctx, id, want, load, false)
	if err != nil {
		return cid.Undef, err
	}
	return shardEntryOf(s, id, k)
}

func shardEntryOf(s *shard, id cid.Cid, k int) (cid.Cid, error) {
	e, err := s.entry(k)
	if err != nil {
		return cid.Undef, fmt.Errorf("shard %s: %w", id, err)
	}
	return e, nil
}

// put keeps block as shard id, as a writer does with a shard it has just saved so that reading it
// back costs no load. The block must be id's: it is checked as a shard of want entries, not hashed.
func (c *shardCache) put(id cid.Cid, block []byte, want int) error {
	s, err := parseShard(block, want)
	if err != nil {
		return fmt.Errorf("shard %s: %w", id, err)
	}
	c.insert(id.KeyString(), s)
	return nil
}

func (c *shardCache) read(ctx context.Context, id cid.Cid, want int, load shardLoader, keep bool) (*shard, error) {
	if !id.Defined() {
		return nil, fmt.Errorf("%w: undefined shard CID", ErrMalformedValue)
	}
	key := id.KeyString()
	s := c.lookup(key)
	if s == nil {
		c.misses.Add(1)
		var err error
		if s, err = c.loadShared(ctx, id, key, load, keep); err != nil {
			return nil, err
		}
	} else {
		c.hits.Add(1)
	}
	// The shard was parsed with the count its head gives: callers may expect different counts.
	if s.len() != want {
		return nil, fmt.Errorf("%w: shard %s holds %d entries, want %d", ErrMalformedValue, id, s.len(), want)
	}
	return s, nil
}

// loadShared loads shard id once for every caller that misses it meanwhile. Keeping follows the
// caller that started the load.
func (c *shardCache) loadShared(ctx context.Context, id cid.Cid, key string, load shardLoader, keep bool) (*shard, error) {
	do := func() (any, error) {
		// A load that finished between the caller's miss and this call has kept the shard.
		if s := c.lookup(key); s != nil {
			return s, nil
		}
		c.loaded.Add(1)
		b, err := load(context.WithoutCancel(ctx))
		if err != nil {
			return nil, fmt.Errorf("load shard %s: %w", id, err)
		}
		n, _, err := shardHead(b)
		if err != nil {
			return nil, fmt.Errorf("shard %s: %w", id, err)
		}
		s, err := parseShard(b, n)
		if err != nil {
			return nil, fmt.Errorf("shard %s: %w", id, err)
		}
		if keep {
			c.insert(key, s)
		}
		return s, nil
	}
	var res singleflight.Result
	if ctx.Done() == nil {
		// A context that can never end need not be able to stop waiting: load in this goroutine.
		var shared bool
		res.Val, res.Err, shared = c.loads.Do(key, do)
		res.Shared = shared
	} else {
		ch := c.loads.DoChan(key, do)
		c.waiting.Add(1)
		select {
		case res = <-ch:
			c.waiting.Add(-1)
		case <-ctx.Done():
			c.waiting.Add(-1)
			return nil, ctx.Err()
		}
	}
	if res.Err != nil {
		return nil, res.Err
	}
	if res.Shared {
		c.shared.Add(1)
	}
	return res.Val.(*shard), nil
}

// lookup returns the kept shard of key, marking it most recently used, or nil.
func (c *shardCache) lookup(key string) *shard {
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.byKey[key]
	if !ok {
		return nil
	}
	c.lru.MoveToFront(el)
	return el.Value.(*shardCacheItem).shard
}

// insert keeps s unless it is larger than a quarter of the budget, evicting the least recently
// used shards until it fits.
func (c *shardCache) insert(key string, s *shard) {
	size := s.memSize()
	if size > c.budget/4 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.byKey[key]; ok {
		c.lru.MoveToFront(el)
		return
	}
	for c.used+size > c.budget {
		victim := c.lru.Back().Value.(*shardCacheItem)
		c.lru.Remove(c.lru.Back())
		delete(c.byKey, victim.key)
		c.used -= victim.size
	}
	c.byKey[key] = c.lru.PushFront(&shardCacheItem{key: key, shard: s, size: size})
	c.used += size
}

// shardCacheStats is what a shard cache has done: lookups served from memory, lookups that missed,
// loads made (a miss that joined another's load makes none), and the bytes and shards kept now.
type shardCacheStats struct {
	Hits, Misses, Loads, Shared int64
	Bytes                       int64
	Shards                      int
}

func (c *shardCache) stats() shardCacheStats {
	c.mu.Lock()
	used, n := c.used, c.lru.Len()
	c.mu.Unlock()
	return shardCacheStats{
		Hits: c.hits.Load(), Misses: c.misses.Load(), Loads: c.loaded.Load(), Shared: c.shared.Load(),
		Bytes: used, Shards: n,
	}
}

// clear drops every kept shard.
func (c *shardCache) clear() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.byKey = make(map[string]*list.Element)
	c.lru.Init()
	c.used = 0
}
