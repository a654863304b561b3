package hamt

import (
	"context"
	"fmt"
	"testing"
)

// benchBottomNode is the block of a node as the bottom of a 1M-key map holds it (bucket size 4):
// 15 keys "key-N" with 36-byte value CIDs, in buckets of one or two keys, the rest empty.
func benchBottomNode(b *testing.B) []byte {
	b.Helper()
	ctx := context.Background()
	m, err := New(ctx, NewMemoryCAS(), Bytes)
	if err != nil {
		b.Fatal(err)
	}
	w := m.state.Load().w
	n := w.root
	for i := 0; len(n.slots) < 15; i++ {
		c, err := m.cas.Save(ctx, []byte(fmt.Sprint(i)), 0x55)
		if err != nil {
			b.Fatal(err)
		}
		var buf [32]byte
		key := fmt.Sprintf("key-%d", i)
		h, _ := m.hasher.hash(key, &buf)
		if n.slot(int(h[0])) == nil {
			n.put(int(h[0]), bucketSlot(newBucket(entry{key: key, value: cidKey(c)})))
		}
	}
	blk, err := n.encode()
	if err != nil {
		b.Fatal(err)
	}
	return blk
}

// BenchmarkDecodeLoadedNode: what a write pays to decode a node it loads (an update's cost per
// node, with the store's lookup and the value's save).
func BenchmarkDecodeLoadedNode(b *testing.B) {
	blk := benchBottomNode(b)
	b.SetBytes(int64(len(blk)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := decodeLoadedNode(blk); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkEncodeNode: what a flush pays to encode a node (into a reused buffer, as saveNodes
// does), besides the store's save.
func BenchmarkEncodeNode(b *testing.B) {
	n, err := decodeNode(benchBottomNode(b))
	if err != nil {
		b.Fatal(err)
	}
	var buf []byte
	b.ReportAllocs()
	for b.Loop() {
		if buf, err = n.appendBlock(buf[:0]); err != nil {
			b.Fatal(err)
		}
	}
	b.SetBytes(int64(len(buf)))
}
