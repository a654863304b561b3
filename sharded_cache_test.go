package hamt

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/ipfs/go-cid"
	"github.com/multiformats/go-multicodec"
)

// countingCAS is a MemoryCAS that counts its Loads and, while gate is open (non-nil), holds every
// Load until the gate closes or the load's context ends.
type countingCAS struct {
	*MemoryCAS
	loads atomic.Int64
	gate  chan struct{}
}

func (c *countingCAS) Load(ctx context.Context, id cid.Cid) ([]byte, error) {
	c.loads.Add(1)
	if c.gate != nil {
		select {
		case <-c.gate:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return c.MemoryCAS.Load(ctx, id)
}

// loader is how a store loads shard id through cas.
func (c *countingCAS) loader(id cid.Cid) shardLoader {
	return func(ctx context.Context) ([]byte, error) { return c.Load(ctx, id) }
}

// shardCacheFixture saves n shards of cps entries each to a fresh store; shard i has i%cps+1 links
// (so the shards differ in size) and nulls after them. It returns the shards' CIDs and entries.
func shardCacheFixture(t testing.TB, n, cps int) (*countingCAS, []cid.Cid, [][]cid.Cid) {
	t.Helper()
	cas := &countingCAS{MemoryCAS: NewMemoryCAS()}
	ids := make([]cid.Cid, n)
	entries := make([][]cid.Cid, n)
	for i := range ids {
		entries[i] = make([]cid.Cid, cps)
		for k := range i%cps + 1 {
			entries[i][k] = blake3CID(multicodec.Raw, fmt.Appendf(nil, "shard %d chunk %d", i, k))
		}
		block, err := encodeShard(entries[i])
		if err != nil {
			t.Fatal(err)
		}
		if ids[i], err = cas.Save(context.Background(), block, multicodec.DagCbor); err != nil {
			t.Fatal(err)
		}
	}
	return cas, ids, entries
}

// checkShardCache checks the cache's bookkeeping: used is the sum of the kept shards' sizes, within
// the budget, and the map and the list hold the same shards.
func checkShardCache(t testing.TB, c *shardCache) {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	var sum int64
	for el := c.lru.Front(); el != nil; el = el.Next() {
		it := el.Value.(*shardCacheItem)
		if c.byKey[it.key] != el {
			t.Fatalf("list item %x is not the map's", it.key)
		}
		sum += it.size
	}
	if sum != c.used || c.used > c.budget || len(c.byKey) != c.lru.Len() {
		t.Fatalf("used %d, sum of sizes %d, budget %d, map %d, list %d", c.used, sum, c.budget, len(c.byKey), c.lru.Len())
	}
}

func TestShardCacheStaysWithinBudgetUnderConcurrentRandomReads(t *testing.T) {
	const shards, cps = 64, 100
	cas, ids, entries := shardCacheFixture(t, shards, cps)
	var one int64
	for _, id := range ids[:1] {
		b, _ := cas.MemoryCAS.Load(context.Background(), id)
		s, err := parseShard(b, cps)
		if err != nil {
			t.Fatal(err)
		}
		one = s.memSize()
	}
	// Room for about 8 of the 64 shards: most reads evict.
	c := newShardCache(8 * (one + 41*cps))
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(g), 1))
			for range 400 {
				i, k := r.IntN(shards), r.IntN(cps)
				var got cid.Cid
				var err error
				if r.IntN(4) == 0 {
					got, err = c.sparseEntry(context.Background(), ids[i], cps, k, cas.loader(ids[i]))
				} else {
					got, err = c.entry(context.Background(), ids[i], cps, k, cas.loader(ids[i]))
				}
				if err != nil || !got.Equals(entries[i][k]) {
					errs <- fmt.Errorf("shard %d entry %d = %v, %v; want %v", i, k, got, err, entries[i][k])
					return
				}
				if st := c.stats(); st.Bytes > c.budget {
					errs <- fmt.Errorf("cache holds %d bytes over its budget of %d", st.Bytes, c.budget)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	checkShardCache(t, c)
	st := c.stats()
	if st.Shards < 2 || st.Hits == 0 || st.Misses == 0 || st.Loads != cas.loads.Load() {
		t.Fatalf("stats %+v, store loads %d: want some hits, some misses, several shards kept, loads counted", st, cas.loads.Load())
	}
}

func TestShardCacheLoadsAShardOnceForManyConcurrentReaders(t *testing.T) {
	for _, sparse := range []bool{false, true} {
		t.Run(fmt.Sprintf("sparse=%v", sparse), func(t *testing.T) {
			const readers = 16
			cas, ids, entries := shardCacheFixture(t, 1, 8)
			cas.gate = make(chan struct{})
			c := newShardCache(1 << 20)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			var wg sync.WaitGroup
			got := make([]cid.Cid, readers)
			errs := make([]error, readers)
			for r := range readers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					if sparse {
						got[r], errs[r] = c.sparseEntry(ctx, ids[0], 8, r%8, cas.loader(ids[0]))
					} else {
						got[r], errs[r] = c.entry(ctx, ids[0], 8, r%8, cas.loader(ids[0]))
					}
				}()
			}
			// Hold the load until every reader has joined it: a sparse read keeps nothing, so a
			// reader arriving after the load would load again.
			for c.waiting.Load() < readers {
				runtime.Gosched()
			}
			close(cas.gate)
			wg.Wait()
			for r := range readers {
				if errs[r] != nil || !got[r].Equals(entries[0][r%8]) {
					t.Fatalf("reader %d: %v, %v; want %v", r, got[r], errs[r], entries[0][r%8])
				}
			}
			if n := cas.loads.Load(); n != 1 {
				t.Fatalf("%d concurrent readers made %d loads, want 1", readers, n)
			}
			if st := c.stats(); st.Shards != map[bool]int{false: 1, true: 0}[sparse] {
				t.Fatalf("sparse=%v: %d shards kept", sparse, st.Shards)
			}
		})
	}
}

func TestShardCacheDoesNotRememberFailedLoads(t *testing.T) {
	ctx := context.Background()
	entries := []cid.Cid{blake3CID(multicodec.Raw, []byte("x")), cid.Undef}
	block, err := encodeShard(entries)
	if err != nil {
		t.Fatal(err)
	}
	id := blake3CID(multicodec.DagCbor, block)
	cas := &countingCAS{MemoryCAS: NewMemoryCAS()}
	c := newShardCache(1 << 20)
	if _, err := c.entry(ctx, id, 2, 0, cas.loader(id)); !errors.Is(err, ErrNotFound) {
		t.Fatalf("shard not in the store yet: %v, want ErrNotFound", err)
	}
	if err := cas.Put(ctx, id, block); err != nil {
		t.Fatal(err)
	}
	got, err := c.entry(ctx, id, 2, 0, cas.loader(id))
	if err != nil || !got.Equals(entries[0]) {
		t.Fatalf("after the block arrived: %v, %v; want %v", got, err, entries[0])
	}
	if n := cas.loads.Load(); n != 2 {
		t.Fatalf("%d loads, want 2: the failure must not be cached", n)
	}
	// A shard with another entry count than the index says is malformed, from the cache too.
	for range 2 {
		if _, err := c.entry(ctx, id, 4, 0, cas.loader(id)); !errors.Is(err, ErrMalformedValue) {
			t.Fatalf("want 4 entries of a 2-entry shard: %v, want ErrMalformedValue", err)
		}
	}
	// Malformed bytes are an error every time, and never kept.
	bad := blake3CID(multicodec.DagCbor, []byte{0x81, 0x00})
	if err := cas.Put(ctx, bad, []byte{0x81, 0x00}); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if _, err := c.entry(ctx, bad, 1, 0, cas.loader(bad)); !errors.Is(err, ErrMalformedValue) {
			t.Fatalf("malformed shard: %v, want ErrMalformedValue", err)
		}
	}
	if st := c.stats(); st.Shards != 1 {
		t.Fatalf("%d shards kept, want only the good one", st.Shards)
	}
}

func TestShardCacheReaderThatGivesUpDoesNotFailTheOthers(t *testing.T) {
	cas, ids, entries := shardCacheFixture(t, 1, 4)
	cas.gate = make(chan struct{})
	c := newShardCache(1 << 20)
	quitter, quit := context.WithCancel(context.Background())
	quitErr := make(chan error, 1)
	go func() {
		_, err := c.entry(quitter, ids[0], 4, 0, cas.loader(ids[0]))
		quitErr <- err
	}()
	for c.waiting.Load() < 1 {
		runtime.Gosched()
	}
	stayer := make(chan error, 1)
	go func() {
		got, err := c.entry(context.Background(), ids[0], 4, 0, cas.loader(ids[0]))
		if err == nil && !got.Equals(entries[0][0]) {
			err = fmt.Errorf("got %v, want %v", got, entries[0][0])
		}
		stayer <- err
	}()
	quit()
	if err := <-quitErr; !errors.Is(err, context.Canceled) {
		t.Fatalf("the reader that gave up: %v, want context.Canceled", err)
	}
	close(cas.gate)
	if err := <-stayer; err != nil {
		t.Fatalf("the reader that stayed: %v", err)
	}
	if n := cas.loads.Load(); n != 1 {
		t.Fatalf("%d loads, want 1", n)
	}
}

func TestShardCacheKeepsNoShardLargerThanAQuarterOfItsBudget(t *testing.T) {
	ctx := context.Background()
	cas := &countingCAS{MemoryCAS: NewMemoryCAS()}
	save := func(n int) cid.Cid {
		entries := make([]cid.Cid, n)
		for k := range entries {
			entries[k] = blake3CID(multicodec.Raw, fmt.Appendf(nil, "%d/%d", n, k))
		}
		block, err := encodeShard(entries)
		if err != nil {
			t.Fatal(err)
		}
		id, err := cas.Save(ctx, block, multicodec.DagCbor)
		if err != nil {
			t.Fatal(err)
		}
		return id
	}
	small, big := save(10), save(1000) // about 0.5 KB and 41 KB
	c := newShardCache(64 << 10)
	for range 2 {
		if _, err := c.get(ctx, small, 10, cas.loader(small)); err != nil {
			t.Fatal(err)
		}
		if _, err := c.get(ctx, big, 1000, cas.loader(big)); err != nil {
			t.Fatal(err)
		}
	}
	checkShardCache(t, c)
	if st := c.stats(); st.Shards != 1 || st.Loads != 3 || cas.loads.Load() != 3 {
		t.Fatalf("%+v, store loads %d; want the small shard kept (1 load), the big one loaded each time", st, cas.loads.Load())
	}
	none := newShardCache(0)
	for range 2 {
		if _, err := none.get(ctx, small, 10, cas.loader(small)); err != nil {
			t.Fatal(err)
		}
	}
	if st := none.stats(); st.Shards != 0 || st.Loads != 2 {
		t.Fatalf("zero budget: %+v; want nothing kept, two loads", st)
	}
}
