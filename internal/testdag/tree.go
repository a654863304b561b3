package testdag

import (
	"context"
	"testing"

	"github.com/ipfs/go-cid"
	"github.com/multiformats/go-multicodec"
)

// Saver stores a block and returns its CID: a hamt.CAS such as *hamt.MemoryCAS, or Blocks.
type Saver interface {
	Save(ctx context.Context, data []byte, codec multicodec.Code) (cid.Cid, error)
}

// Save stores data in s and returns its CID, failing the test on an error.
func Save(t testing.TB, s Saver, data []byte, codec multicodec.Code) cid.Cid {
	t.Helper()
	id, err := s.Save(context.Background(), data, codec)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// SaveNode stores a node block made of the slots given (see Node) and returns its CID.
func SaveNode(t testing.TB, s Saver, slots map[int][]byte) cid.Cid {
	t.Helper()
	return Save(t, s, Node(slots), multicodec.DagCbor)
}

// KeyBucket stores key's value, "value of " + key, and returns a bucket holding key alone.
func KeyBucket(t testing.TB, s Saver, key string) []byte {
	t.Helper()
	return Bucket(Entry(key, Save(t, s, []byte("value of "+key), multicodec.Raw)))
}

// Diamond stores a diamond and returns its root: a leaf holding key (in its slot at depth levels,
// byte levels of hash, key's hash) under levels nodes, each of whose slots that links gives for
// its depth links to the node below. Valid block by block, it is no HAMT when a node is reached
// twice; with AllSlots there are 256^levels paths to the leaf.
func Diamond(t testing.TB, s Saver, key string, hash []byte, levels int, links func(depth int) []int) cid.Cid {
	t.Helper()
	below := SaveNode(t, s, map[int][]byte{int(hash[levels]): KeyBucket(t, s, key)})
	for d := levels - 1; d >= 0; d-- {
		slots := map[int][]byte{}
		for _, i := range links(d) {
			slots[i] = LinkSlot(below)
		}
		below = SaveNode(t, s, slots)
	}
	return below
}

// AllSlots, as the links of a Diamond, links every slot at every depth.
func AllSlots(int) []int {
	out := make([]int, 256)
	for i := range out {
		out[i] = i
	}
	return out
}
