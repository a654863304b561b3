package hamt

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
)

func TestFrozenNodeFindsWhatDecodeNodeFindsInSmallAndLargeNodes(t *testing.T) {
	value := cidKey(blake3CID(0x55, []byte("v")))
	child := cidKey(blake3CID(0x71, []byte("child")))
	r := rand.New(rand.NewPCG(1, 2))
	for _, tc := range []struct {
		name     string
		occupied int
		keyLen   int
	}{
		{"an empty node", 0, 0},
		{"a node with fewer slots than it keeps offsets for in its struct", nearSlots - 1, 8},
		{"a node with more slots than that", 200, 8},
		{"a block over 64 KiB, whose offsets do not fit in 16 bits", 256, 300},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := &node{}
			for _, i := range r.Perm(numSlots)[:tc.occupied] {
				if i%5 == 0 {
					n.put(i, linkSlot(&link{id: child}))
					continue
				}
				var entries []entry
				for j := range 1 + i%4 {
					key := fmt.Sprintf("%03d-%d-%s", i, j, strings.Repeat("k", tc.keyLen))
					entries = append(entries, entry{key: key[:max(len(key)-j, 1)], value: value})
				}
				n.put(i, bucketSlot(makeBucket(entries...)))
			}
			b, err := n.encode()
			if err != nil {
				t.Fatal(err)
			}
			decoded, err := decodeNode(b)
			fuzzCheckFrozenAgrees(t, b, decoded, err)
			f, err := decodeFrozen(b)
			if err != nil {
				t.Fatal(err)
			}
			if wantNear := len(b)+4*tc.occupied <= 1<<16; (f.nearLen > 0) != (wantNear && tc.occupied > 0) {
				t.Fatalf("nearLen %d for a %d-byte block", f.nearLen, len(b))
			}
		})
	}
}
