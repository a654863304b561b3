package hamt

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"

	"github.com/ipfs/go-cid"
)

// loadCounter is a MemoryCAS that counts the loads of each block.
type loadCounter struct {
	*MemoryCAS
	mu    sync.Mutex
	loads map[string]int
}

func (c *loadCounter) Load(ctx context.Context, id cid.Cid) ([]byte, error) {
	c.mu.Lock()
	c.loads[id.KeyString()]++
	c.mu.Unlock()
	return c.MemoryCAS.Load(ctx, id)
}

// TestReadCacheNeverEvictsUpperLevelsForLeaves reads every key of a map whose leaves do not fit
// the cache, three times in random order: the root's children, on every read's path, must be
// loaded once each, however many leaves come and go below them.
func TestReadCacheNeverEvictsUpperLevelsForLeaves(t *testing.T) {
	ctx := context.Background()
	const keys = 6000
	cas, root := countedMap(t, keys)
	// The budget holds every depth-1 node with room for only a few deeper ones in each shard.
	rootBlock, err := cas.MemoryCAS.Load(ctx, root)
	if err != nil {
		t.Fatal(err)
	}
	rootNode, err := decodeFrozen(rootBlock)
	if err != nil {
		t.Fatal(err)
	}
	var upper []string
	var perShard [cacheShards]int64
	var largest int64
	for k := range rootNode.kids {
		id := rootNode.linkAt(k)
		b, err := cas.MemoryCAS.Load(ctx, id.cid())
		if err != nil {
			t.Fatal(err)
		}
		n, err := decodeFrozen(b)
		if err != nil {
			t.Fatal(err)
		}
		upper = append(upper, string(id))
		perShard[int(id[len(id)-1])%cacheShards] += n.memSize()
		largest = max(largest, n.memSize())
	}
	if len(upper) < 200 {
		t.Fatalf("the root has %d children; the test needs a full one", len(upper))
	}
	var most int64
	for _, b := range perShard {
		most = max(most, b)
	}
	budget := cacheShards * (most + largest)
	m, err := Open(ctx, cas, Bytes, root, WithCacheBytes(budget))
	if err != nil {
		t.Fatal(err)
	}
	clear(cas.loads)
	r := rand.New(rand.NewPCG(3, 4))
	for range 3 {
		for _, i := range r.Perm(keys) {
			if _, err := m.Get(ctx, fmt.Sprint(i)); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, id := range upper {
		if n := cas.loads[id]; n != 1 {
			t.Fatalf("depth-1 node %s loaded %d times, want once", cidBytes(id), n)
		}
	}
	if size := m.CacheSize(); size > budget {
		t.Fatalf("CacheSize %d exceeds the budget %d", size, budget)
	}
	// The leaves did not fit: some were loaded more than once (else the test shows nothing).
	reloaded := 0
	for _, n := range cas.loads {
		if n > 1 {
			reloaded++
		}
	}
	if reloaded == 0 {
		t.Fatal("no node was loaded twice: the budget held the whole tree")
	}
}
