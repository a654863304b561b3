package hamt

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"testing"

	"github.com/ipfs/go-cid"
	"github.com/multiformats/go-multicodec"
	"github.com/multiformats/go-multihash"
)

// inlineCID is the identity CID of data.
func inlineCID(codec multicodec.Code, data []byte) cid.Cid {
	mh, err := multihash.Sum(data, multihash.IDENTITY, -1)
	if err != nil {
		panic(err)
	}
	return cid.NewCidV1(uint64(codec), mh)
}

// carSection is a CAR section holding block data under id, as a writer that keeps identity
// blocks (go-car's StoreIdentityCIDs) writes one.
func carSection(id cid.Cid, data []byte) []byte {
	b := binary.AppendUvarint(nil, uint64(id.ByteLen()+len(data)))
	return append(append(b, id.Bytes()...), data...)
}

// identityCARSeeds are CARs of a map whose values are identity CIDs (FuzzReadCAR's seeds): as
// written (no identity section), with an identity section added (skipped), with one over
// MaxIdentityDigest added (refused), and of a map linking one over the limit (refused).
func identityCARSeeds(t testing.TB) [][]byte {
	ctx := context.Background()
	mem := NewMemoryCAS()
	m, err := New(ctx, mem, Bytes, WithBucketSize(1))
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Set(ctx, "plain", []byte("plain")); err != nil {
		t.Fatal(err)
	}
	for k, v := range map[string][]byte{"small": []byte("tiny"), "empty": {}, "max": bytes.Repeat([]byte{9}, MaxIdentityDigest)} {
		if err := m.setPointer(ctx, k, cidKey(inlineCID(multicodec.Raw, v))); err != nil {
			t.Fatal(err)
		}
	}
	root, err := m.Flush(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var good bytes.Buffer
	if _, err := WriteCAR(ctx, mem, root, &good); err != nil {
		t.Fatal(err)
	}
	small := []byte("an identity section")
	withSection := append(bytes.Clone(good.Bytes()), carSection(inlineCID(multicodec.Raw, small), small)...)
	big := bytes.Repeat([]byte{3}, MaxIdentityDigest+1)
	withBig := append(bytes.Clone(good.Bytes()), carSection(inlineCID(multicodec.Raw, big), big)...)

	one, err := New(ctx, mem, Bytes) // a root node alone, its one key linking big
	if err != nil {
		t.Fatal(err)
	}
	if err := one.setPointer(ctx, "big", cidKey(inlineCID(multicodec.Raw, big))); err != nil {
		t.Fatal(err)
	}
	bigRoot, err := one.Flush(ctx)
	if err != nil {
		t.Fatal(err)
	}
	node, err := mem.Load(ctx, bigRoot)
	if err != nil {
		t.Fatal(err)
	}
	var linksBig bytes.Buffer
	w, err := newCARWriter(&linksBig, []cid.Cid{bigRoot})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.put(bigRoot, node); err != nil {
		t.Fatal(err)
	}
	return [][]byte{good.Bytes(), withSection, withBig, linksBig.Bytes()}
}

// TestReadCARIdentitySections: ReadCAR reads a map whose values are identity CIDs from a CAR
// without their sections, skips an identity section (stores nothing for it), and refuses one over
// MaxIdentityDigest, or a map linking one, storing nothing.
func TestReadCARIdentitySections(t *testing.T) {
	ctx := context.Background()
	seeds := identityCARSeeds(t)
	for i, want := range []error{nil, nil, ErrIdentityTooLarge, ErrIdentityTooLarge} {
		mem := NewMemoryCAS()
		roots, n, err := ReadCAR(ctx, mem, bytes.NewReader(seeds[i]))
		if !errors.Is(err, want) || (want == nil && len(roots) != 1) {
			t.Fatalf("seed %d: %v, want %v", i, err, want)
		}
		if want != nil {
			if mem.Len() != 0 {
				t.Errorf("seed %d: %d blocks stored by a refused CAR", i, mem.Len())
			}
			continue
		}
		if n != mem.Len() {
			t.Errorf("seed %d: %d blocks reported, %d stored", i, n, mem.Len())
		}
		m, err := Open(ctx, mem, Bytes, roots[0])
		if err != nil {
			t.Fatal(err)
		}
		if v, err := m.Get(ctx, "small"); err != nil || string(v) != "tiny" {
			t.Errorf("seed %d: Get small: %q, %v", i, v, err)
		}
	}
}
