package hamt

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/ipfs/go-cid"
)

// gcLoadCounter is a CAS that counts the loads of each block.
type gcLoadCounter struct {
	CAS
	mu    sync.Mutex
	loads map[cidBytes]int
}

func (c *gcLoadCounter) Load(ctx context.Context, id cid.Cid) ([]byte, error) {
	c.mu.Lock()
	c.loads[cidKey(id)]++
	c.mu.Unlock()
	return c.CAS.Load(ctx, id)
}

// gcMarkHistory builds a map of keys keys (bucket size 1: a tree three levels deep) and then
// steps versions of it, each setting or deleting one key, and returns every version's root: a
// name's history, whose roots share all but a path or two.
func gcMarkHistory(t *testing.T, cas CAS, keys, steps int) []cid.Cid {
	t.Helper()
	ctx := context.Background()
	m, err := New(ctx, cas, Bytes, WithBucketSize(1))
	if err != nil {
		t.Fatal(err)
	}
	for i := range keys {
		if err := m.Set(ctx, fmt.Sprintf("k/%d", i), []byte(fmt.Sprintf("v%d", i))); err != nil {
			t.Fatal(err)
		}
	}
	var roots []cid.Cid
	for step := 0; ; step++ {
		root, err := m.Flush(ctx)
		if err != nil {
			t.Fatal(err)
		}
		roots = append(roots, root)
		if step == steps {
			return roots
		}
		key := fmt.Sprintf("k/%d", step*7%keys)
		if step%2 == 0 {
			err = m.Set(ctx, key, []byte(fmt.Sprintf("step %d", step)))
		} else {
			err = m.Delete(ctx, key)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

// TestGCMarkReadsEachDistinctBlockOnce: the mark of 41 roots of one history (and the same roots
// given again) loads each distinct node and value once (a root twice: the sharded-root probe and
// the walk), where walking each root whole loaded every node of every root; and it marks exactly
// the blocks the roots reach.
func TestGCMarkReadsEachDistinctBlockOnce(t *testing.T) {
	ctx := context.Background()
	mem := NewMemoryCAS()
	roots := gcMarkHistory(t, mem, 600, 40)
	// What the roots reach, and what walking each whole costs.
	reach := map[cidBytes]struct{}{}
	perRoot := 0
	for _, r := range roots {
		err := walkStored(ctx, mem, r, nil, func(n *blockNode, _ int) error {
			reach[cidKey(n.id)] = struct{}{}
			perRoot++
			for i := range n.slots {
				if s := &n.slots[i]; s.link() == nil {
					eachEntry(s.bucket(), 0, func(_ string, v cidBytes) bool { reach[v] = struct{}{}; return true })
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	var kept []gcRoot
	for i, r := range roots {
		kept = append(kept, gcRoot{r, fmt.Sprint("history ", i)})
	}
	for _, r := range roots[:5] {
		kept = append(kept, gcRoot{r, "given"})
	}
	counter := &gcLoadCounter{CAS: mem, loads: map[cidBytes]int{}}
	m, err := markRoots(ctx, counter, kept, nil)
	if err != nil {
		t.Fatal(err)
	}
	marked := map[cidBytes]struct{}{}
	for id := range m.blocks {
		marked[id] = struct{}{}
	}
	for id := range m.nodes {
		marked[id] = struct{}{}
	}
	if len(marked) != len(reach) {
		t.Fatalf("marked %d blocks, the roots reach %d", len(marked), len(reach))
	}
	for id := range reach {
		if _, ok := marked[id]; !ok {
			t.Fatalf("block %s reached but not marked", id)
		}
	}
	isRoot := map[cidBytes]bool{}
	for _, r := range roots {
		isRoot[cidKey(r)] = true
	}
	total := 0
	for id, n := range counter.loads {
		total += n
		if limit := map[bool]int{false: 1, true: 2}[isRoot[id]]; n > limit {
			t.Errorf("block %s (a root: %v) loaded %d times", id, isRoot[id], n)
		}
	}
	t.Logf("%d roots, %d distinct blocks (%d node visits walking each root whole); the mark loaded %d", len(roots), len(reach), perRoot, total)
	if total > len(reach)+len(roots) {
		t.Fatalf("the mark loaded %d blocks; %d distinct blocks and %d roots", total, len(reach), len(roots))
	}
	if perRoot < 5*total {
		t.Fatalf("the history shares too little to test the mark: %d node visits, %d loads", perRoot, total)
	}
}
