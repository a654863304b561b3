package hamt

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/multiformats/go-multicodec"
)

func TestMemoryCASLoadsEveryBlockItSavedAcrossIndexGrowth(t *testing.T) {
	ctx := context.Background()
	cas := NewMemoryCAS()
	var blocks [][]byte
	for i := range 20_000 {
		b := []byte(fmt.Sprintf("block %d", i))
		if i%1000 == 0 {
			b = bytes.Repeat(b, slabSize/len(b)/2) // larger than a packed block: a slab of its own
		}
		blocks = append(blocks, b)
	}
	blocks = append(blocks, []byte{}) // the empty block is a block too
	for round := range 2 {            // the second round saves nothing new
		for _, b := range blocks {
			if _, err := cas.Save(ctx, b, multicodec.Raw); err != nil {
				t.Fatal(err)
			}
		}
		if cas.Len() != len(blocks) {
			t.Fatalf("round %d: Len = %d, want %d", round, cas.Len(), len(blocks))
		}
	}
	for _, b := range blocks {
		got, err := cas.Load(ctx, blake3CID(multicodec.DagCbor, b))
		if err != nil || !bytes.Equal(got, b) {
			t.Fatalf("Load of a %d-byte block: %d bytes, %v", len(b), len(got), err)
		}
	}
	if _, err := cas.Load(ctx, blake3CID(multicodec.Raw, []byte("never saved"))); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Load of an unknown block: %v, want ErrNotFound", err)
	}
}

func TestMemoryCASIndexTellsApartDigestsThatShareTheirSlotHash(t *testing.T) {
	s := &memoryShard{}
	var a, b [32]byte
	a[31], b[31] = 1, 2 // same bytes 1..4, so the same slot hash and probe start
	s.putBlake3(&a, []byte("a"))
	if _, ok := s.blake3.find(s.slabs, &b); ok {
		t.Fatal("found a digest that was never stored")
	}
	s.putBlake3(&b, []byte("b"))
	for d, want := range map[*[32]byte]string{&a: "a", &b: "b"} {
		r, ok := s.blake3.find(s.slabs, d)
		if !ok || string(s.bytesOf(r)) != want {
			t.Fatalf("digest %x: %v %q, want %q", d[31], ok, s.bytesOf(r), want)
		}
	}
}
