package hamt

import (
	"bytes"
	"errors"
	"fmt"
	"testing"
)

// fuzzGenericShardShape judges a shard block with the generic decoder alone: nil when data is the
// canonical encoding of a non-empty list whose items are each null or a CID link.
func fuzzGenericShardShape(data []byte) error {
	var v any
	if err := fuzzStrictDec.Unmarshal(data, &v); err != nil {
		return err
	}
	items, ok := v.([]any)
	if !ok || len(items) == 0 {
		return fmt.Errorf("%T is not a non-empty list", v)
	}
	for k, it := range items {
		if it == nil {
			continue
		}
		if _, err := fuzzTaggedCID(it); err != nil {
			return fmt.Errorf("item %d: %w", k, err)
		}
	}
	again, err := fuzzCanonicalEnc.Marshal(v)
	if err != nil {
		return err
	}
	if !bytes.Equal(again, data) {
		return errors.New("not canonical")
	}
	return nil
}

// FuzzShardDecode checks the three shard readers against each other and against a generic strict
// CBOR decoder: decodeShard, parseShard and shardEntry accept exactly the same blocks and give the
// same entries, an accepted block re-encodes to itself, and the generic judge agrees.
func FuzzShardDecode(f *testing.F) {
	for _, v := range pyhamt35ShardVectors(f) {
		f.Add(unhex(f, v.Hex), 1)
	}
	for i, s := range shardSeeds(f) {
		f.Add(s.data, i%3)
	}
	f.Fuzz(func(t *testing.T, data []byte, k int) {
		want := 1
		if n, _, err := shardHead(data); err == nil {
			want = n
		}
		entries, err := decodeShard(data, want)
		s, perr := parseShard(data, want)
		if (err == nil) != (perr == nil) {
			t.Fatalf("decodeShard: %v; parseShard: %v", err, perr)
		}
		if shape := fuzzGenericShardShape(data); (shape == nil) != (err == nil) {
			t.Fatalf("decodeShard: %v; strict generic decoder: %v", err, shape)
		}
		if err != nil {
			if entries != nil || s != nil || !errors.Is(err, ErrMalformedValue) || !errors.Is(perr, ErrMalformedValue) {
				t.Fatalf("errors %v, %v do not wrap ErrMalformedValue", err, perr)
			}
			for _, k := range []int{0, k} {
				if e, err := shardEntry(data, k); !errors.Is(err, ErrMalformedValue) {
					t.Fatalf("shardEntry(%d) = %v, %v on a block decodeShard rejects", k, e, err)
				}
			}
			return
		}
		out, err := encodeShard(entries)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(out, data) {
			t.Fatalf("decode then encode changed the shard:\n  in %x\n out %x", data, out)
		}
		check := func(k int) {
			e, err := shardEntry(data, k)
			e2, err2 := s.entry(k)
			if k < 0 || k >= len(entries) {
				if !errors.Is(err, ErrMalformedValue) || !errors.Is(err2, ErrMalformedValue) {
					t.Fatalf("entry %d of %d: %v, %v; want ErrMalformedValue", k, len(entries), err, err2)
				}
				return
			}
			if err != nil || err2 != nil || !e.Equals(entries[k]) || !e2.Equals(entries[k]) {
				t.Fatalf("entry %d: shardEntry %v, %v; shard.entry %v, %v; decodeShard %v", k, e, err, e2, err2, entries[k])
			}
		}
		check(k)
		for i := range min(len(entries), 64) {
			check(i)
		}
	})
}
