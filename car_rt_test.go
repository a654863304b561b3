package hamt_test

import (
	"bytes"
	"context"
	"fmt"
	"testing"

	"github.com/hamt-go/hamt"
	"github.com/hamt-go/hamt/internal/testdag"
	"github.com/multiformats/go-multicodec"
)

// TestCARRoundTripOfAValueWithANodesBytes: a map whose value (a raw block) has the bytes of one of
// its own nodes (a dag-cbor block: a map that keeps copies of blocks, say). The CAR writer writes
// a multihash once, as go-car does, so the node's section is the value's, under the raw CID; the
// reader must find the node by its multihash, as Kubo and every store here do (before: the
// export of a valid map did not import: "missing block").
func TestCARRoundTripOfAValueWithANodesBytes(t *testing.T) {
	ctx := context.Background()
	src := hamt.NewMemoryCAS()
	// Five keys under one first hash byte, each on its own second byte: a child node at depth 1.
	var keys []string
	var first byte
	seen := map[byte]bool{}
	for i := 0; len(keys) < 5; i++ {
		k := fmt.Sprintf("k%d", i)
		h := hamt.Blake3([]byte(k))
		if len(keys) == 0 {
			first = h[0]
		}
		if h[0] != first || seen[h[1]] {
			continue
		}
		seen[h[1]] = true
		keys = append(keys, k)
	}
	slots := map[int][]byte{}
	for _, k := range keys {
		slots[int(hamt.Blake3([]byte(k))[1])] = testdag.KeyBucket(t, src, k)
	}
	childBytes := testdag.Node(slots)
	child := testdag.Save(t, src, childBytes, multicodec.DagCbor)
	x := "x"
	for hamt.Blake3([]byte(x))[0] == first {
		x += "x"
	}
	copyOfChild := testdag.Save(t, src, childBytes, multicodec.Raw)
	root := testdag.SaveNode(t, src, map[int][]byte{
		int(first):                     testdag.LinkSlot(child),
		int(hamt.Blake3([]byte(x))[0]): testdag.Bucket(testdag.Entry(x, copyOfChild)),
	})
	var car bytes.Buffer
	if _, err := hamt.WriteCAR(ctx, src, root, &car); err != nil {
		t.Fatal(err)
	}
	dst := hamt.NewMemoryCAS()
	if _, _, err := hamt.ReadCAR(ctx, dst, bytes.NewReader(car.Bytes())); err != nil {
		t.Fatalf("import of the map's own export: %v", err)
	}
	m, err := hamt.Open(ctx, dst, hamt.Bytes, root)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		if v, err := m.Get(ctx, k); err != nil || string(v) != "value of "+k {
			t.Fatalf("%s after the round trip: %q, %v", k, v, err)
		}
	}
	if v, err := m.Get(ctx, x); err != nil || !bytes.Equal(v, childBytes) {
		t.Fatalf("%s after the round trip: %d bytes, %v", x, len(v), err)
	}
}
