package hamt

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/ipfs/go-cid"
)

// verifyLoadCounter counts the loads of each block.
type verifyLoadCounter struct {
	CAS
	mu sync.Mutex
	n  map[cid.Cid]int
}

func (c *verifyLoadCounter) Load(ctx context.Context, id cid.Cid) ([]byte, error) {
	c.mu.Lock()
	c.n[id]++
	c.mu.Unlock()
	return c.CAS.Load(ctx, id)
}

// TestVerifyReadsARepeatedShardOnce: an array whose shards are all one block (every chunk equal:
// a mask, a constant field, or a root made to repeat one shard over a huge grid) is verified
// reading that shard once, not once per place: a root of n places over a shard of m chunks cost
// n×m, a hang for a small hostile CAR.
func TestVerifyReadsARepeatedShardOnce(t *testing.T) {
	ctx := context.Background()
	cas := NewMemoryCAS()
	meta := `{"zarr_format":3,"node_type":"array","shape":[256],"data_type":"uint8","chunk_grid":{"name":"regular","configuration":{"chunk_shape":[1]}},"fill_value":0,"codecs":[{"name":"bytes"}]}`
	kv := []string{"0/zarr.json", `{"zarr_format":3,"node_type":"group"}`, "0/a/zarr.json", meta}
	for i := range 256 {
		kv = append(kv, fmt.Sprintf("0/a/c/%d", i), "same chunk")
	}
	s := newV2Store(t, cas, kv...)
	root, err := s.Flush(ctx)
	if err != nil {
		t.Fatal(err)
	}
	block, err := cas.Load(ctx, root)
	if err != nil {
		t.Fatal(err)
	}
	r, err := decodeShardedRoot(block)
	if err != nil {
		t.Fatal(err)
	}
	shards := r.arrays["0/a"].shards
	if len(shards) != 64 || !shards[0].Equals(shards[63]) {
		t.Fatalf("%d shards, want 64 of one block", len(shards))
	}
	counted := &verifyLoadCounter{CAS: cas, n: map[cid.Cid]int{}}
	rep, err := Verify(ctx, counted, root)
	if err != nil || !rep.OK() {
		t.Fatalf("Verify = %+v, %v", rep, err)
	}
	if rep.Keys != 256+len(r.metadata) || rep.Nodes != 65 {
		t.Fatalf("Verify counted %d keys and %d nodes, want %d and 65", rep.Keys, rep.Nodes, 256+len(r.metadata))
	}
	if n := counted.n[shards[0]]; n != 1 {
		t.Fatalf("the shard was read %d times, want once", n)
	}
}
