package hamt

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ipfs/go-cid"
)

// valueLoads counts the loads of value blocks (raw codec) in c.
func valueLoads(c *loadCounter) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for k, v := range c.loads {
		if isRawCID(cidBytes(k)) {
			n += v
		}
	}
	return n
}

func isRawCID(id cidBytes) bool { return id.cid().Prefix().Codec == 0x55 }

// keptValuesMap writes keys keys (value "v<i>") with bucket size 1 and opens the root read-only
// over a load counter, with opts.
func keptValuesMap(t *testing.T, keys int, opts ...Option) (*Map[[]byte], *loadCounter) {
	t.Helper()
	cas, root := countedMap(t, keys)
	m, err := Open(context.Background(), cas, Bytes, root, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return m, cas
}

// allPairs runs All and checks every value; it changes each value it got, as a caller may.
func allPairs(t *testing.T, m *Map[[]byte], keys int) {
	t.Helper()
	n := 0
	for e, err := range m.All(context.Background()) {
		if err != nil {
			t.Fatal(err)
		}
		if want := "v" + e.Key; string(e.Value) != want {
			t.Fatalf("All: %q = %q, want %q", e.Key, e.Value, want)
		}
		for i := range e.Value {
			e.Value[i] = 'X'
		}
		n++
	}
	if n != keys {
		t.Fatalf("All yielded %d pairs, want %d", n, keys)
	}
}

// TestAllKeepsValuesForTheWalkAfter: a first All loads every value block and keeps none (a map
// walked once does not pay for it); the second keeps them; the third loads none. Callers change
// the values they get, and the kept bytes stay right.
func TestAllKeepsValuesForTheWalkAfter(t *testing.T) {
	const keys = 3000
	m, cas := keptValuesMap(t, keys)
	allPairs(t, m, keys)
	if got := valueLoads(cas); got != keys {
		t.Fatalf("first All loaded %d value blocks, want %d", got, keys)
	}
	allPairs(t, m, keys)
	if got := valueLoads(cas); got != 2*keys {
		t.Fatalf("second All loaded %d value blocks in all, want %d", got, 2*keys)
	}
	allPairs(t, m, keys)
	if got := valueLoads(cas); got != 2*keys {
		t.Fatalf("third All loaded %d more value blocks, want none", got-2*keys)
	}
	if size, budget := m.CacheSize(), int64(DefaultCacheBytes); size > budget {
		t.Fatalf("CacheSize %d exceeds the budget %d", size, budget)
	}
}

// slowLoads is a loadCounter whose loads take a while, as a store across a network does.
type slowLoads struct{ *loadCounter }

func (c slowLoads) Load(ctx context.Context, id cid.Cid) ([]byte, error) {
	time.Sleep(20 * time.Microsecond)
	return c.loadCounter.Load(ctx, id)
}

// TestGetKeepsTheValuesItReads: Gets keep the values they read, so that All after them loads
// none. Over a fast store (memory) a Get still reads the store, as fast as the cache; over a slow
// one (a network) a Get reads the kept value: the first Get of a key loads its value block, the
// later ones none. A caller changing what Get returned does not change what the next Get returns.
func TestGetKeepsTheValuesItReads(t *testing.T) {
	ctx := context.Background()
	const keys = 500
	m, cas := keptValuesMap(t, keys)
	for i := range keys {
		if v, err := m.Get(ctx, fmt.Sprint(i)); err != nil || string(v) != fmt.Sprint("v", i) {
			t.Fatalf("Get(%d) = %q, %v", i, v, err)
		}
	}
	before := valueLoads(cas)
	allPairs(t, m, keys)
	if got := valueLoads(cas) - before; got != 0 {
		t.Fatalf("All after Gets of every key loaded %d value blocks, want 0", got)
	}

	m, cas = keptValuesMap(t, keys)
	root, err := m.Root()
	if err != nil {
		t.Fatal(err)
	}
	slow, err := Open(ctx, CAS(slowLoads{cas}), Bytes, root)
	if err != nil {
		t.Fatal(err)
	}
	for i := range keys { // loads every value and learns that the store is slow
		if v, err := slow.Get(ctx, fmt.Sprint(i)); err != nil || string(v) != fmt.Sprint("v", i) {
			t.Fatalf("Get(%d) = %q, %v", i, v, err)
		}
	}
	before = valueLoads(cas)
	for round := range 3 {
		for i := range keys {
			v, err := slow.Get(ctx, fmt.Sprint(i))
			if err != nil || string(v) != fmt.Sprint("v", i) {
				t.Fatalf("round %d: Get(%d) = %q, %v", round, i, v, err)
			}
			v[0] = 'X'
		}
	}
	if got := valueLoads(cas) - before; got != 0 {
		t.Fatalf("Gets of kept values over a slow store loaded %d value blocks, want 0", got)
	}
}

// TestGetsOfEveryKeySpareTheWalkItsHashes: a Get hashes its key and follows its slots, so once
// Gets have found every key of a node, the first walk need not hash that node's keys again to
// check them.
func TestGetsOfEveryKeySpareTheWalkItsHashes(t *testing.T) {
	ctx := context.Background()
	var hashes atomic.Int64
	counting := func(b []byte) []byte { hashes.Add(1); return Blake3(b) }
	const keys = 2000
	cas := NewMemoryCAS()
	w, err := New(ctx, cas, Bytes, WithBucketSize(2), WithHash(counting))
	if err != nil {
		t.Fatal(err)
	}
	for i := range keys {
		if err := w.Set(ctx, fmt.Sprint(i), []byte("v")); err != nil {
			t.Fatal(err)
		}
	}
	root, err := w.Flush(ctx)
	if err != nil {
		t.Fatal(err)
	}
	walk := func(m *Map[[]byte]) int64 {
		before := hashes.Load()
		n := 0
		for _, err := range m.Keys(ctx) {
			if err != nil {
				t.Fatal(err)
			}
			n++
		}
		if n != keys {
			t.Fatalf("Keys yielded %d, want %d", n, keys)
		}
		return hashes.Load() - before
	}
	fresh, err := Open(ctx, cas, Bytes, root, WithHash(counting))
	if err != nil {
		t.Fatal(err)
	}
	if got := walk(fresh); got < keys {
		t.Fatalf("a first walk hashed %d keys, want every one (%d) checked", got, keys)
	}
	warm := walk(fresh) // what a walk hashes that checks nothing (the digest's length)
	m, err := Open(ctx, cas, Bytes, root, WithHash(counting))
	if err != nil {
		t.Fatal(err)
	}
	for i := range keys {
		if _, err := m.Get(ctx, fmt.Sprint(i)); err != nil {
			t.Fatal(err)
		}
	}
	if got := walk(m); got != warm {
		t.Fatalf("a walk after Gets of every key hashed %d keys, want %d as a second walk", got, warm)
	}
}

// TestKeptValuesStayWithinTheBudgetAndGiveWayToNodes: with a budget that holds the nodes and
// little more, repeated reads keep what values fit, the cache stays within its budget, and the
// root's children (which every read crosses) are still loaded once each: values never push out
// nodes.
func TestKeptValuesStayWithinTheBudgetAndGiveWayToNodes(t *testing.T) {
	ctx := context.Background()
	const keys = 3000
	m, cas := keptValuesMap(t, keys)
	allPairs(t, m, keys) // measure the tree: every node cached, no value kept yet
	var most int64
	for i := range cacheShards {
		most = max(most, m.state.Load().r.cache.shards[i].bytes.Load())
	}
	budget := cacheShards * (most + most/4)
	root, err := m.Root()
	if err != nil {
		t.Fatal(err)
	}
	m2, err := Open(ctx, cas, Bytes, root, WithCacheBytes(budget))
	if err != nil {
		t.Fatal(err)
	}
	cas.mu.Lock()
	clear(cas.loads)
	cas.mu.Unlock()
	for range 4 {
		allPairs(t, m2, keys)
		for i := range keys {
			if v, err := m2.Get(ctx, fmt.Sprint(i)); err != nil || string(v) != fmt.Sprint("v", i) {
				t.Fatalf("Get(%d) = %q, %v", i, v, err)
			}
		}
		if size := m2.CacheSize(); size > budget {
			t.Fatalf("CacheSize %d exceeds the budget %d", size, budget)
		}
	}
	cas.mu.Lock()
	defer cas.mu.Unlock()
	for id, n := range cas.loads {
		if !isRawCID(cidBytes(id)) && n != 1 {
			t.Fatalf("node %s loaded %d times, want once: values pushed it out", cidBytes(id), n)
		}
	}
	if v := valueLoadsLocked(cas); v >= 4*2*keys {
		t.Fatalf("%d value loads in 4 rounds of All and Get: none was kept", v)
	}
}

func valueLoadsLocked(c *loadCounter) int {
	n := 0
	for k, v := range c.loads {
		if isRawCID(cidBytes(k)) {
			n += v
		}
	}
	return n
}

// TestKeptValuesRaceWithEvictions: Gets and Alls from many goroutines over a cache that evicts
// nodes and drops values all the time (run with -race); every value read is right and the cache
// stays within its budget.
func TestKeptValuesRaceWithEvictions(t *testing.T) {
	ctx := context.Background()
	const keys = 2000
	m, _ := keptValuesMap(t, keys, WithCacheBytes(24<<10))
	var wg sync.WaitGroup
	for g := range 16 {
		wg.Go(func() {
			for round := range 3 {
				for i := g; i < keys; i += 5 {
					v, err := m.Get(ctx, fmt.Sprint(i))
					if err != nil || !bytes.Equal(v, []byte(fmt.Sprint("v", i))) {
						t.Errorf("Get(%d) = %q, %v", i, v, err)
						return
					}
					v[0] = 'X'
				}
				if (g+round)%4 == 0 {
					n := 0
					for e, err := range m.All(ctx) {
						if err != nil || string(e.Value) != "v"+e.Key {
							t.Errorf("All: %q = %q, %v", e.Key, e.Value, err)
							return
						}
						e.Value[0] = 'X'
						n++
					}
					if n != keys {
						t.Errorf("All yielded %d, want %d", n, keys)
					}
				}
			}
		})
	}
	wg.Wait()
	if size := m.CacheSize(); size > 24<<10 {
		t.Fatalf("CacheSize %d exceeds the 24 KiB budget", size)
	}
}

// FuzzKeptValuesOverAnyRoot opens any block that decodes as a node as a read-only root, over a
// store holding the values a small map links to, and reads it the ways that keep values (Gets
// twice, All three times, under a small budget and the default one): nothing may panic, and
// every value read again must equal the first read.
func FuzzKeptValuesOverAnyRoot(f *testing.F) {
	ctx := context.Background()
	seedCAS := NewMemoryCAS()
	for _, bucket := range []int{1, 3} {
		w, err := New(ctx, seedCAS, Bytes, WithBucketSize(bucket))
		if err != nil {
			f.Fatal(err)
		}
		for i := range 40 {
			if err := w.Set(ctx, fmt.Sprint(i), []byte(fmt.Sprint("v", i%7))); err != nil {
				f.Fatal(err)
			}
		}
		root, err := w.Flush(ctx)
		if err != nil {
			f.Fatal(err)
		}
		b, err := seedCAS.Load(ctx, root)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b, uint8(0))
		f.Add(b, uint8(1))
	}
	f.Fuzz(func(t *testing.T, block []byte, small uint8) {
		cas := NewMemoryCAS()
		for i := range 7 { // the values the seeds link to
			if _, err := cas.Save(ctx, []byte(fmt.Sprint("v", i)), 0x55); err != nil {
				t.Fatal(err)
			}
		}
		root, err := cas.Save(ctx, block, 0x71)
		if err != nil {
			t.Fatal(err)
		}
		opts := []Option{}
		if small%2 == 1 {
			opts = append(opts, WithCacheBytes(2<<10))
		}
		m, err := Open(ctx, cas, Bytes, root, opts...)
		if err != nil {
			return
		}
		first := map[string]string{}
		for e, err := range m.All(ctx) {
			if err != nil {
				break
			}
			first[e.Key] = string(e.Value)
			if len(first) > 200 {
				break
			}
		}
		for round := range 2 {
			for k, want := range first {
				v, err := m.Get(ctx, k)
				if err == nil && string(v) != want {
					t.Fatalf("round %d: Get(%q) = %q, All gave %q", round, k, v, want)
				}
				if err == nil && len(v) > 0 {
					v[0] ^= 0xff
				}
			}
			for e, err := range m.All(ctx) {
				if err != nil {
					break
				}
				if want, ok := first[e.Key]; ok && string(e.Value) != want {
					t.Fatalf("round %d: All: %q = %q, first gave %q", round, e.Key, e.Value, want)
				}
				if len(e.Value) > 0 {
					e.Value[0] ^= 0xff
				}
			}
		}
		if small%2 == 1 && m.CacheSize() > 2<<10 {
			t.Fatalf("CacheSize %d over the 2 KiB budget", m.CacheSize())
		}
	})
}

// countedMap writes keys keys (value "v<i>") with bucket size 1 on a MemoryCAS that counts loads,
// and returns it and the root.
func countedMap(t *testing.T, keys int) (*loadCounter, cid.Cid) {
	t.Helper()
	ctx := context.Background()
	cas := &loadCounter{MemoryCAS: NewMemoryCAS(), loads: map[string]int{}}
	w, err := New(ctx, cas, Bytes, WithBucketSize(1))
	if err != nil {
		t.Fatal(err)
	}
	for i := range keys {
		if err := w.Set(ctx, fmt.Sprint(i), []byte(fmt.Sprint("v", i))); err != nil {
			t.Fatal(err)
		}
	}
	root, err := w.Flush(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return cas, root
}

// TestSlowValuesIgnoresAnOutlierOfAFastStore: Get reads kept values instead of the store only when
// the store's value loads are slow as a rule. One load of a fast store that took a millisecond (a
// goroutine not scheduled) does not make it slow; a store slow at every load (a round trip) is,
// within a few loads; and a fast load brings it back.
func TestSlowValuesIgnoresAnOutlierOfAFastStore(t *testing.T) {
	var r readStore
	for range 20 {
		r.valueLat.add(500 * time.Nanosecond)
	}
	r.valueLat.add(time.Millisecond)
	if r.slowValues() {
		t.Fatalf("one 1 ms load among 500 ns ones: slow (average %d ns)", r.valueLat.ns.Load())
	}
	for range 20 {
		r.valueLat.add(10 * time.Millisecond)
	}
	if !r.slowValues() {
		t.Fatalf("20 loads of 10 ms: not slow (average %d ns)", r.valueLat.ns.Load())
	}
	r.valueLat.add(500 * time.Nanosecond)
	if r.slowValues() {
		t.Fatalf("after a 500 ns load: still slow (average %d ns)", r.valueLat.ns.Load())
	}
}
