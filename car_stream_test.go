package hamt

// The CAR stream reader's checks, and its fuzz target:
//
//	go test -run XXX -fuzz '^FuzzDAGStream$' -fuzztime 3m -parallel 1 .

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"testing"

	"github.com/hamt-go/hamt/internal/testdag"
	blocks "github.com/ipfs/go-block-format"
	"github.com/ipfs/go-cid"
	carv2 "github.com/ipld/go-car/v2"
	"github.com/ipld/go-car/v2/storage"
	"github.com/multiformats/go-multicodec"
)

// streamDAGBlocks returns a small map's root and its blocks in the order WriteCAR writes them
// (parents before children): two levels of nodes, values shared by several keys, one value a
// UnixFS file.
func streamDAGBlocks(t testing.TB) (cid.Cid, []blocks.Block) {
	ctx := context.Background()
	cas := testdag.NewKubo(NewMemoryCAS(), 64, 3) // a value over 64 bytes is a UnixFS file
	m, err := New(ctx, cas, Bytes, WithBucketSize(1))
	if err != nil {
		t.Fatal(err)
	}
	for i := range 12 {
		if err := m.Set(ctx, fmt.Sprint(i), []byte(fmt.Sprint(i%5))); err != nil {
			t.Fatal(err)
		}
	}
	if err := m.Set(ctx, "file", bytes.Repeat([]byte("0123456789"), 100)); err != nil {
		t.Fatal(err)
	}
	root, err := m.Flush(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if _, err := WriteCAR(ctx, cas, root, &buf); err != nil {
		t.Fatal(err)
	}
	br, err := carv2.NewBlockReader(&buf)
	if err != nil {
		t.Fatal(err)
	}
	var bs []blocks.Block
	for {
		b, err := br.Next()
		if errors.Is(err, io.EOF) {
			return root, bs
		}
		if err != nil {
			t.Fatal(err)
		}
		bs = append(bs, b)
	}
}

// carOf writes a CARv1 naming roots and holding bs in order, duplicates kept.
func carOf(t testing.TB, roots []cid.Cid, bs []blocks.Block) []byte {
	var buf bytes.Buffer
	w, err := storage.NewWritable(&buf, roots, carv2.WriteAsCarV1(true), carv2.AllowDuplicatePuts(true))
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range bs {
		if err := w.Put(context.Background(), b.Cid().KeyString(), b.RawData()); err != nil {
			t.Fatal(err)
		}
	}
	return buf.Bytes()
}

// readDAGStream reads a whole stream of the DAG at root, returning the blocks read.
func readDAGStream(r io.Reader, root cid.Cid) (int, error) {
	s, err := newDAGStream(r, root)
	if err != nil {
		return 0, err
	}
	for n := 0; ; n++ {
		if _, _, err := s.next(); errors.Is(err, io.EOF) {
			return n, nil
		} else if err != nil {
			return n, err
		}
	}
}

// TestDAGStreamRejectsWhatTheDAGDoesNotSay: the stream reader takes the DAG's own CAR and
// refuses, with the sentinel a caller can branch on, every way a stream can differ from it.
func TestDAGStreamRejectsWhatTheDAGDoesNotSay(t *testing.T) {
	root, bs := streamDAGBlocks(t)
	good := carOf(t, []cid.Cid{root}, bs)
	if n, err := readDAGStream(bytes.NewReader(good), root); err != nil || n != len(bs) {
		t.Fatalf("the DAG's own CAR: %d blocks, %v; want %d", n, err, len(bs))
	}
	corrupt := slicesClone(bs)
	last := corrupt[len(corrupt)-1]
	flipped := bytes.Clone(last.RawData())
	flipped[0] ^= 1
	corrupt[len(corrupt)-1], _ = blocks.NewBlockWithCid(flipped, last.Cid())
	reordered := slicesClone(bs)
	reordered[0], reordered[1] = reordered[1], reordered[0]
	stranger := blocks.NewBlock([]byte("not in the DAG"))
	stranger, _ = blocks.NewBlockWithCid(stranger.RawData(), blake3CID(multicodec.Raw, stranger.RawData()))
	cutSection := good[:len(good)-3]
	cutAtBlock := carOf(t, []cid.Cid{root}, bs[:len(bs)-1])
	for _, c := range []struct {
		name   string
		stream []byte
		root   cid.Cid
		want   []error
	}{
		{"a block that does not hash to its CID", carOf(t, []cid.Cid{root}, corrupt), root, []error{ErrCorrupt}},
		{"a child before its parent", carOf(t, []cid.Cid{root}, reordered), root, []error{ErrUnexpectedBlock}},
		{"a block the DAG does not link to", carOf(t, []cid.Cid{root}, append(slicesClone(bs), stranger)), root, []error{ErrUnexpectedBlock}},
		{"a block sent twice", carOf(t, []cid.Cid{root}, append(slicesClone(bs), bs[len(bs)-1])), root, []error{ErrUnexpectedBlock}},
		{"the stream cut inside a section", cutSection, root, []error{io.ErrUnexpectedEOF}},
		{"the stream cut at a block's end", cutAtBlock, root, []error{io.ErrUnexpectedEOF, ErrMissingBlock}},
		{"the header only", carOf(t, []cid.Cid{root}, nil), root, []error{ErrMissingBlock}},
		{"another root in the header", good, stranger.Cid(), []error{ErrUnexpectedBlock}},
		{"no bytes at all", nil, root, []error{io.ErrUnexpectedEOF}},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := readDAGStream(bytes.NewReader(c.stream), c.root)
			for _, want := range c.want {
				if !errors.Is(err, want) {
					t.Errorf("%v, want %v", err, want)
				}
			}
		})
	}
}

func slicesClone(bs []blocks.Block) []blocks.Block { return append([]blocks.Block(nil), bs...) }

// FuzzDAGStream: any bytes read as the CAR stream of a known DAG's root: no panic, and a stream
// accepted is exactly the DAG: every block of it, each once, each hashing to its CID.
func FuzzDAGStream(f *testing.F) {
	root, bs := streamDAGBlocks(f)
	good := carOf(f, []cid.Cid{root}, bs)
	f.Add(good)
	f.Add(good[:len(good)/2])
	f.Add(carOf(f, []cid.Cid{root}, bs[:1]))
	rev := slicesClone(bs)
	for i, j := 0, len(rev)-1; i < j; i, j = i+1, j-1 {
		rev[i], rev[j] = rev[j], rev[i]
	}
	f.Add(carOf(f, []cid.Cid{root}, rev))
	want := map[cid.Cid]bool{}
	for _, b := range bs {
		want[b.Cid()] = true
	}
	f.Fuzz(func(t *testing.T, stream []byte) {
		s, err := newDAGStream(bytes.NewReader(stream), root)
		if err != nil {
			return
		}
		got := map[cid.Cid]bool{}
		for {
			id, data, err := s.next()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				return
			}
			if got[id] || !want[id] {
				t.Fatalf("accepted %s twice or outside the DAG", id)
			}
			if verifyBlock(id, data) != nil {
				t.Fatalf("accepted %s with other bytes", id)
			}
			got[id] = true
		}
		if len(got) != len(want) {
			t.Fatalf("accepted a stream of %d blocks, the DAG has %d", len(got), len(want))
		}
	})
}
