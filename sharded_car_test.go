package hamt_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/hamt-go/hamt"
	"github.com/hamt-go/hamt/internal/testdag"
	"github.com/ipfs/go-cid"
	carv2 "github.com/ipld/go-car/v2"
)

// TestShardedRootsRoundTripThroughCARs: WriteCAR of each of py-hamt's sharded roots holds every
// block the dataset reaches, so ReadCAR into an empty store accepts it and the dataset reads the
// same there, key by key and byte by byte.
func TestShardedRootsRoundTripThroughCARs(t *testing.T) {
	ctx := context.Background()
	cas, roots := shardedVectorCAS(t)
	for i, root := range roots {
		var car bytes.Buffer
		n, err := hamt.WriteCAR(ctx, cas, root, &car)
		if err != nil {
			t.Fatalf("step %d: WriteCAR: %v", i+1, err)
		}
		fresh := hamt.NewMemoryCAS()
		got, stored, err := hamt.ReadCAR(ctx, fresh, bytes.NewReader(car.Bytes()))
		if err != nil || len(got) != 1 || !got[0].Equals(root) || stored != n {
			t.Fatalf("step %d: ReadCAR: roots %v, %d blocks of %d, %v", i+1, got, stored, n, err)
		}
		src, err := hamt.OpenZarr(ctx, cas, root)
		if err != nil {
			t.Fatal(err)
		}
		dst, err := hamt.OpenZarr(ctx, fresh, root)
		if err != nil {
			t.Fatal(err)
		}
		if sameValues(t, fmt.Sprintf("step %d", i+1), src, dst) == 0 {
			t.Errorf("step %d: no keys", i+1)
		}
	}
}

// TestReadCARRefusesAShardedRootMissingAChunk: a CAR of a sharded root without one of its chunk
// blocks stores nothing and says ErrMissingBlock.
func TestReadCARRefusesAShardedRootMissingAChunk(t *testing.T) {
	ctx := context.Background()
	cas, roots := shardedVectorCAS(t)
	root := roots[0]
	src, err := hamt.OpenZarr(ctx, cas, root)
	if err != nil {
		t.Fatal(err)
	}
	chunk, err := src.Open(ctx, "0/temp/c/1/2")
	if err != nil {
		t.Fatal(err)
	}
	var full bytes.Buffer
	if _, err := hamt.WriteCAR(ctx, cas, root, &full); err != nil {
		t.Fatal(err)
	}
	br, err := carv2.NewBlockReader(bytes.NewReader(full.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	var blocks []testdag.Block
	for {
		b, err := br.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if !b.Cid().Equals(chunk.CID()) {
			blocks = append(blocks, testdag.Block{ID: b.Cid(), Data: b.RawData()})
		}
	}
	if len(blocks) == 0 {
		t.Fatal("empty CAR")
	}
	fresh := hamt.NewMemoryCAS()
	_, n, err := hamt.ReadCAR(ctx, fresh, bytes.NewReader(testdag.CAR(t, []cid.Cid{root}, blocks)))
	if !errors.Is(err, hamt.ErrMissingBlock) || n != 0 || !strings.Contains(err.Error(), chunk.CID().String()) {
		t.Errorf("ReadCAR without chunk %s: %d blocks stored, %v", chunk.CID(), n, err)
	}
	if l := fresh.Len(); l != 0 {
		t.Errorf("%d blocks stored", l)
	}
}
