package hamt_test

// Black-box tests of what the map does with bad input: garbage or malformed node blocks, blocks that
// do not match their CIDs, missing blocks, a store that fails, canceled contexts, invalid keys and
// non-canonical values. Each must give the documented sentinel error (errors.Is), never a panic,
// and a failed write must lose nothing.
//
// Helpers here are prefixed "bad" to keep clear of the package's other black-box tests.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"

	"github.com/hamt-go/hamt"
	"github.com/hamt-go/hamt/internal/testdag"
	"github.com/ipfs/go-cid"
	"github.com/multiformats/go-multicodec"
)

// badCID is the CID the library gives data: CIDv1(codec, blake3-256(data)).
func badCID(t testing.TB, data []byte, codec multicodec.Code) cid.Cid {
	t.Helper()
	id, err := hamt.NewMemoryCAS().Save(context.Background(), data, codec)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// badPut stores data in cas under its real CID and returns the CID.
func badPut(t testing.TB, cas *hamt.MemoryCAS, data []byte, codec multicodec.Code) cid.Cid {
	t.Helper()
	id := badCID(t, data, codec)
	if err := cas.Put(context.Background(), id, data); err != nil {
		t.Fatal(err)
	}
	return id
}

// badSlot is the slot key takes at depth: byte depth of its BLAKE3 hash.
func badSlot(key string, depth int) int { return int(hamt.Blake3([]byte(key))[depth]) }

// badTwoLevels stores a value block for "k", a child node holding "k" in its bucket, and a root
// linking to the child, and returns their CIDs.
func badTwoLevels(t testing.TB, cas *hamt.MemoryCAS) (root, child, value cid.Cid) {
	t.Helper()
	value = badPut(t, cas, []byte("the value of k"), multicodec.Raw)
	child = badPut(t, cas, testdag.Node(map[int][]byte{badSlot("k", 1): testdag.Bucket(testdag.Entry("k", value))}), multicodec.DagCbor)
	root = badPut(t, cas, testdag.Node(map[int][]byte{badSlot("k", 0): testdag.LinkSlot(child)}), multicodec.DagCbor)
	return root, child, value
}

// badFill sets n keys "key-i" to "value-i" and returns what it set.
func badFill(t testing.TB, m *hamt.Map[[]byte], n int) map[string][]byte {
	t.Helper()
	want := make(map[string][]byte, n)
	for i := range n {
		k, v := fmt.Sprintf("key-%d", i), fmt.Appendf(nil, "value-%d", i)
		if err := m.Set(context.Background(), k, v); err != nil {
			t.Fatalf("Set(%q): %v", k, err)
		}
		want[k] = v
	}
	return want
}

// badCheckAll checks that m holds exactly want.
func badCheckAll(t testing.TB, m *hamt.Map[[]byte], want map[string][]byte) {
	t.Helper()
	ctx := context.Background()
	n, err := m.Len(ctx)
	if err != nil || n != len(want) {
		t.Fatalf("Len = %d, %v; want %d", n, err, len(want))
	}
	for k, v := range want {
		got, err := m.Get(ctx, k)
		if err != nil || !bytes.Equal(got, v) {
			t.Fatalf("Get(%q) = %q, %v; want %q", k, got, err, v)
		}
	}
}

func TestHandBuiltNodesInTheSpecFormatAreReadBack(t *testing.T) {
	// The control for the malformed blocks below, which are built with the same helpers: if these
	// did not open, the rejections below would prove nothing.
	ctx := context.Background()
	cas := hamt.NewMemoryCAS()
	value := badPut(t, cas, []byte("the value of k"), multicodec.Raw)
	empty := testdag.Node(nil)
	if len(empty) != 259 || badCID(t, empty, multicodec.DagCbor).String() != "bafyr4igb3js3dqlnsvmbi533lhghfet3l4r35vbi7mlrvxjb6f3n5wkc3m" {
		t.Fatalf("the hand-built empty node is not the spec's: %x", empty)
	}
	oneLevel := badPut(t, cas, testdag.Node(map[int][]byte{badSlot("k", 0): testdag.Bucket(testdag.Entry("a", value), testdag.Entry("k", value), testdag.Entry("bb", value))}), multicodec.DagCbor)
	twoLevels, _, _ := badTwoLevels(t, cas)
	for name, root := range map[string]cid.Cid{"a root holding k in a bucket": oneLevel, "a root linking to a child holding k": twoLevels} {
		t.Run(name, func(t *testing.T) {
			m, err := hamt.Open(ctx, cas, hamt.Bytes, root, hamt.WithVerifyBlocks())
			if err != nil {
				t.Fatal(err)
			}
			got, err := m.Get(ctx, "k")
			if err != nil || string(got) != "the value of k" {
				t.Fatalf("Get(k) = %q, %v", got, err)
			}
		})
	}
}

// badGarbageCAS returns garbage for every dag-cbor block but spare.
type badGarbageCAS struct {
	hamt.CAS
	garbage []byte
	spare   cid.Cid
}

func (c badGarbageCAS) Load(ctx context.Context, id cid.Cid) ([]byte, error) {
	if id.Type() == uint64(multicodec.DagCbor) && !id.Equals(c.spare) {
		return bytes.Clone(c.garbage), nil
	}
	return c.CAS.Load(ctx, id)
}

func TestGarbageNodeBlocksFromTheStoreAreErrMalformedNode(t *testing.T) {
	ctx := context.Background()
	mem := hamt.NewMemoryCAS()
	m, err := hamt.New(ctx, mem, hamt.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	want := badFill(t, m, 2000) // enough for links from the root and keys in the root's buckets
	root, err := m.Flush(ctx)
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	random := make([]byte, 4096)
	for i := range random {
		random[i] = byte(rng.Uint32())
	}
	empty := testdag.Node(nil)
	flipped := bytes.Clone(empty)
	flipped[len(flipped)-1] = 0xa1 // the last slot claims one entry that is not there
	ints := []byte{0x99, 0x01, 0x00}
	for range 256 {
		ints = append(ints, 0x01)
	}
	for _, g := range []struct {
		name string
		data []byte
	}{
		{"no bytes at all", []byte{}},
		{"one zero byte", []byte{0}},
		{"259 zero bytes", make([]byte, 259)},
		{"4 KiB of random bytes", random},
		{"random bytes after a valid node header", testdag.Cat(empty[:3], random)},
		{"a JSON document", []byte(`{"hello": "world"}`)},
		{"the empty node cut short by a byte", empty[:258]},
		{"the empty node with its last byte changed", flipped},
		{"a list of 256 integers", ints},
		{"a value block of the map", []byte("value-0")},
	} {
		t.Run(g.name, func(t *testing.T) {
			t.Run("Open fails when the root is garbage", func(t *testing.T) {
				got, err := hamt.Open(ctx, badGarbageCAS{CAS: mem, garbage: g.data}, hamt.Bytes, root)
				if got != nil || !errors.Is(err, hamt.ErrMalformedNode) {
					t.Fatalf("Open = %v, %v; want ErrMalformedNode", got, err)
				}
			})
			t.Run("reads through a garbage child fail and the rest work", func(t *testing.T) {
				cas := badGarbageCAS{CAS: mem, garbage: g.data, spare: root}
				ro, err := hamt.Open(ctx, cas, hamt.Bytes, root)
				if err != nil {
					t.Fatal(err)
				}
				var ok, bad int
				for k, v := range want {
					got, err := ro.Get(ctx, k)
					switch {
					case err == nil && bytes.Equal(got, v):
						ok++
					case errors.Is(err, hamt.ErrMalformedNode):
						bad++
					default:
						t.Fatalf("Get(%q) = %q, %v; want the value or ErrMalformedNode", k, got, err)
					}
				}
				if ok == 0 || bad == 0 {
					t.Fatalf("%d keys read and %d failed; want some of each (root buckets and links)", ok, bad)
				}
				if _, err := ro.Len(ctx); !errors.Is(err, hamt.ErrMalformedNode) {
					t.Fatalf("Len: %v, want ErrMalformedNode", err)
				}
			})
			t.Run("writes through a garbage child fail", func(t *testing.T) {
				cas := badGarbageCAS{CAS: mem, garbage: g.data, spare: root}
				rw, err := hamt.Open(ctx, cas, hamt.Bytes, root)
				if err != nil {
					t.Fatal(err)
				}
				if err := rw.EnableWrite(ctx); err != nil {
					t.Fatal(err)
				}
				bad := 0
				for k := range want {
					err := rw.Set(ctx, k, []byte("new"))
					if err != nil && !errors.Is(err, hamt.ErrMalformedNode) {
						t.Fatalf("Set(%q): %v, want nil or ErrMalformedNode", k, err)
					}
					if err != nil {
						bad++
					}
				}
				if bad == 0 {
					t.Fatal("no Set went through a garbage child")
				}
			})
		})
	}
}

func TestMalformedNodeBlocksAreErrMalformedNode(t *testing.T) {
	ctx := context.Background()
	cas := hamt.NewMemoryCAS()
	value := badPut(t, cas, []byte("the value of k"), multicodec.Raw)
	empty := testdag.Node(nil)
	emptyID := badPut(t, cas, empty, multicodec.DagCbor)
	rawID := badPut(t, cas, empty, multicodec.Raw) // the same bytes, under the raw codec
	kv := testdag.Entry("k", value)
	withSlot := func(s []byte) []byte { return testdag.Node(map[int][]byte{7: s}) }
	// A valid node with buckets and a link, to cut short.
	good := testdag.Node(map[int][]byte{0: testdag.Bucket(testdag.Entry("a", value), kv, testdag.Entry("bb", value)), 1: testdag.LinkSlot(emptyID)})

	type testCase struct {
		name  string
		block []byte
	}
	var cases []testCase
	for _, n := range []int{0, 1, 2, 3, 4, 100, len(good) - 300, len(good) - 20, len(good) - 1} {
		cases = append(cases, testCase{fmt.Sprintf("a valid node cut to %d of its %d bytes", n, len(good)), good[:n]})
	}
	cases = append(cases, []testCase{
		{"a list of 255 empty maps", testdag.Cat([]byte{0x98, 0xff}, bytes.Repeat([]byte{0xa0}, 255))},
		{"a list of 257 empty maps", testdag.Cat([]byte{0x99, 0x01, 0x01}, bytes.Repeat([]byte{0xa0}, 257))},
		{"a list of 256 nulls", testdag.Cat(empty[:3], bytes.Repeat([]byte{0xf6}, 256))},
		{"a list of 256 slots with a non-minimal length", testdag.Cat([]byte{0x9a, 0, 0, 1, 0}, empty[3:])},
		{"an indefinite-length list of 256 slots", testdag.Cat([]byte{0x9f}, empty[3:], []byte{0xff})},
		{"a CBOR map", testdag.Cat([]byte{0xa1}, testdag.Text("k"), testdag.Link(value))},
		{"an empty CBOR map", []byte{0xa0}},
		{"an integer", []byte{0x19, 0x01, 0x00}},
		{"a text string", testdag.Text("node")},
		{"the empty node with a trailing byte", testdag.Cat(empty, []byte{0})},
		{"a bucket with keys out of canonical order", withSlot(testdag.Bucket(kv, testdag.Entry("a", value)))},
		{"a bucket sorted bytewise instead of length-first", withSlot(testdag.Bucket(testdag.Entry("bb", value), kv))},
		{"a bucket with the same key twice", withSlot(testdag.Bucket(kv, kv))},
		{"a bucket key that is not UTF-8", withSlot(testdag.Bucket(testdag.Entry("\xff", value)))},
		{"a bucket key that is a byte string", withSlot(testdag.Cat([]byte{0xa1, 0x41, 'k'}, testdag.Link(value)))},
		{"a bucket value that is not a link", withSlot(testdag.Cat([]byte{0xa1}, testdag.Text("k"), testdag.Text("v")))},
		{"a bucket value under tag 43", withSlot(testdag.Cat([]byte{0xa1}, testdag.Text("k"), []byte{0xd8, 0x2b}, testdag.Link(value)[2:]))},
		{"a bucket with a non-minimal length", withSlot(testdag.Cat([]byte{0xb8, 0x01}, testdag.Text("k"), testdag.Link(value)))},
		{"an indefinite-length bucket", withSlot(testdag.Cat([]byte{0xbf}, testdag.Text("k"), testdag.Link(value), []byte{0xff}))},
		{"an empty bucket written as an empty list", withSlot([]byte{0x80})},
		{"an empty bucket written as a one-element list holding an empty map", withSlot([]byte{0x81, 0xa0})},
		{"an empty bucket written as a one-element list holding null", withSlot([]byte{0x81, 0xf6})},
		{"a link slot pointing to a raw-codec CID", withSlot(testdag.LinkSlot(rawID))},
		{"a link slot holding two links", withSlot(testdag.Cat([]byte{0x82}, testdag.Link(emptyID), testdag.Link(emptyID)))},
		{"a link slot without the 0x00 multibase prefix", withSlot(testdag.Cat([]byte{0x81, 0xd8, 0x2a}, testdag.Head(2, emptyID.ByteLen()), emptyID.Bytes()))},
	}...)

	t.Run("a root CID with the raw codec", func(t *testing.T) {
		m, err := hamt.Open(ctx, cas, hamt.Bytes, rawID)
		if m != nil || !errors.Is(err, hamt.ErrMalformedNode) {
			t.Fatalf("Open = %v, %v; want ErrMalformedNode", m, err)
		}
	})
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			bad := badPut(t, cas, c.block, multicodec.DagCbor)
			t.Run("as the root, Open fails", func(t *testing.T) {
				m, err := hamt.Open(ctx, cas, hamt.Bytes, bad)
				if m != nil || !errors.Is(err, hamt.ErrMalformedNode) {
					t.Fatalf("Open = %v, %v; want ErrMalformedNode", m, err)
				}
			})
			t.Run("as a child, a key routed through it fails to read and write", func(t *testing.T) {
				root := badPut(t, cas, testdag.Node(map[int][]byte{badSlot("k", 0): testdag.LinkSlot(bad)}), multicodec.DagCbor)
				m, err := hamt.Open(ctx, cas, hamt.Bytes, root)
				if err != nil {
					t.Fatal(err)
				}
				if got, err := m.Get(ctx, "k"); !errors.Is(err, hamt.ErrMalformedNode) {
					t.Fatalf("Get = %q, %v; want ErrMalformedNode", got, err)
				}
				if has, err := m.Has(ctx, "k"); !errors.Is(err, hamt.ErrMalformedNode) {
					t.Fatalf("Has = %v, %v; want ErrMalformedNode", has, err)
				}
				if err := m.EnableWrite(ctx); err != nil {
					t.Fatal(err)
				}
				if err := m.Set(ctx, "k", []byte("v")); !errors.Is(err, hamt.ErrMalformedNode) {
					t.Fatalf("Set: %v, want ErrMalformedNode", err)
				}
				if err := m.Delete(ctx, "k"); !errors.Is(err, hamt.ErrMalformedNode) {
					t.Fatalf("Delete: %v, want ErrMalformedNode", err)
				}
			})
		})
	}
}

// badSwapCAS hands out other bytes than the store holds for the blocks in swap.
type badSwapCAS struct {
	hamt.CAS
	swap map[cid.Cid][]byte
}

func (c badSwapCAS) Load(ctx context.Context, id cid.Cid) ([]byte, error) {
	if b, ok := c.swap[id]; ok {
		return bytes.Clone(b), nil
	}
	return c.CAS.Load(ctx, id)
}

func TestBlocksThatDoNotMatchTheirCIDAreErrCorruptWithVerifyBlocks(t *testing.T) {
	ctx := context.Background()
	mem := hamt.NewMemoryCAS()
	root, child, value := badTwoLevels(t, mem)
	empty := testdag.Node(nil) // a valid node: only the hash check can tell it is the wrong one
	flipped := []byte("the value of K")
	for _, c := range []struct {
		name        string
		id          cid.Cid
		replacement []byte
		// read opens the map and reads k, returning what it read.
		read func(opts ...hamt.Option) ([]byte, error)
		// unverified checks what the swap gives without WithVerifyBlocks: it goes unnoticed.
		unverified func(t *testing.T, got []byte, err error)
	}{
		{
			name: "the root node swapped for the empty node", id: root, replacement: empty,
			unverified: func(t *testing.T, got []byte, err error) {
				if !errors.Is(err, hamt.ErrNotFound) {
					t.Fatalf("unverified Get = %q, %v; want ErrNotFound from the empty root", got, err)
				}
			},
		},
		{
			name: "a child node swapped for the empty node", id: child, replacement: empty,
			unverified: func(t *testing.T, got []byte, err error) {
				if !errors.Is(err, hamt.ErrNotFound) {
					t.Fatalf("unverified Get = %q, %v; want ErrNotFound from the empty child", got, err)
				}
			},
		},
		{
			name: "a value block with a byte changed", id: value, replacement: flipped,
			unverified: func(t *testing.T, got []byte, err error) {
				if err != nil || !bytes.Equal(got, flipped) {
					t.Fatalf("unverified Get = %q, %v; want the changed bytes", got, err)
				}
			},
		},
	} {
		t.Run(c.name, func(t *testing.T) {
			cas := badSwapCAS{CAS: mem, swap: map[cid.Cid][]byte{c.id: c.replacement}}
			read := func(opts ...hamt.Option) ([]byte, error) {
				m, err := hamt.Open(ctx, cas, hamt.Bytes, root, opts...)
				if err != nil {
					return nil, err
				}
				return m.Get(ctx, "k")
			}
			got, err := read(hamt.WithVerifyBlocks())
			if !errors.Is(err, hamt.ErrCorrupt) {
				t.Fatalf("with WithVerifyBlocks: %q, %v; want ErrCorrupt", got, err)
			}
			got, err = read()
			c.unverified(t, got, err)
		})
	}
}

// A missing block is ErrMissingBlock and never ErrNotFound, which from a map means an absent key.
func wantMissingBlock(t *testing.T, what string, err error) {
	t.Helper()
	if !errors.Is(err, hamt.ErrMissingBlock) || errors.Is(err, hamt.ErrNotFound) {
		t.Fatalf("%s: %v; want ErrMissingBlock and not ErrNotFound", what, err)
	}
}

func TestMissingBlocksAreErrMissingBlockNotAnAbsentKey(t *testing.T) {
	ctx := context.Background()
	t.Run("Open of a root the store does not hold", func(t *testing.T) {
		m, err := hamt.Open(ctx, hamt.NewMemoryCAS(), hamt.Bytes, badCID(t, testdag.Node(nil), multicodec.DagCbor))
		if m != nil {
			t.Fatalf("Open returned a map")
		}
		wantMissingBlock(t, "Open", err)
	})
	t.Run("Get of a key whose value block the store does not hold", func(t *testing.T) {
		cas := hamt.NewMemoryCAS()
		lost := badCID(t, []byte("never stored"), multicodec.Raw)
		root := badPut(t, cas, testdag.Node(map[int][]byte{badSlot("k", 0): testdag.Bucket(testdag.Entry("k", lost))}), multicodec.DagCbor)
		m, err := hamt.Open(ctx, cas, hamt.Bytes, root)
		if err != nil {
			t.Fatal(err)
		}
		// The key is in the map; only its block is missing.
		if id, err := m.GetPointer(ctx, "k"); err != nil || !id.Equals(lost) {
			t.Fatalf("GetPointer = %s, %v; want %s", id, err, lost)
		}
		_, err = m.Get(ctx, "k")
		wantMissingBlock(t, "Get", err)
	})
	t.Run("Get of a key under a child node the store does not hold", func(t *testing.T) {
		cas := hamt.NewMemoryCAS()
		lost := badCID(t, testdag.Node(nil), multicodec.DagCbor)
		root := badPut(t, cas, testdag.Node(map[int][]byte{badSlot("k", 0): testdag.LinkSlot(lost)}), multicodec.DagCbor)
		m, err := hamt.Open(ctx, cas, hamt.Bytes, root)
		if err != nil {
			t.Fatal(err)
		}
		_, err = m.Get(ctx, "k")
		wantMissingBlock(t, "Get", err)
		_, err = m.Len(ctx)
		wantMissingBlock(t, "Len", err)
		_, err = m.Has(ctx, "k")
		wantMissingBlock(t, "Has", err)
		if err := m.EnableWrite(ctx); err != nil {
			t.Fatal(err)
		}
		wantMissingBlock(t, "Delete", m.Delete(ctx, "k"))
		wantMissingBlock(t, "Set", m.Set(ctx, "k", []byte("v")))
	})
}

func TestHasReportsAMissingNodeBlockAsAnErrorNotAsAnAbsentKey(t *testing.T) {
	ctx := context.Background()
	cas := hamt.NewMemoryCAS()
	lost := badCID(t, testdag.Node(nil), multicodec.DagCbor)
	root := badPut(t, cas, testdag.Node(map[int][]byte{badSlot("k", 0): testdag.LinkSlot(lost)}), multicodec.DagCbor)
	m, err := hamt.Open(ctx, cas, hamt.Bytes, root)
	if err != nil {
		t.Fatal(err)
	}
	if has, err := m.Has(ctx, "k"); err == nil {
		t.Fatalf("Has = %v, nil; the node that would hold k is missing, so Has cannot know", has)
	}
}

var errBadInjected = errors.New("injected save failure")

// badFlakyCAS lets a number of saves through and then fails every save until healed.
type badFlakyCAS struct {
	hamt.CAS
	mu    sync.Mutex
	left  int // saves that still succeed; negative: all succeed
	saves int // successful saves
	fails int
}

func (c *badFlakyCAS) Save(ctx context.Context, data []byte, codec multicodec.Code) (cid.Cid, error) {
	c.mu.Lock()
	fail := c.left == 0
	if c.left > 0 {
		c.left--
	}
	if fail {
		c.fails++
	} else {
		c.saves++
	}
	c.mu.Unlock()
	if fail {
		return cid.Undef, fmt.Errorf("flaky store: %w", errBadInjected)
	}
	return c.CAS.Save(ctx, data, codec)
}

// failAfter lets n more saves succeed, then fails.
func (c *badFlakyCAS) failAfter(n int) {
	c.mu.Lock()
	c.left, c.saves, c.fails = n, 0, 0
	c.mu.Unlock()
}

func (c *badFlakyCAS) heal() {
	c.mu.Lock()
	c.left = -1
	c.mu.Unlock()
}

func TestAFailedSaveDuringFlushLosesNothing(t *testing.T) {
	ctx := context.Background()
	const keys = 3000
	// The reference: the same keys (and the one set after the failure) flushed without trouble.
	ref := &badFlakyCAS{CAS: hamt.NewMemoryCAS(), left: -1}
	rm, err := hamt.New(ctx, ref, hamt.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	want := badFill(t, rm, keys)
	ref.failAfter(-1)
	if _, err := rm.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	nodeSaves := ref.saves
	if nodeSaves < 10 {
		t.Fatalf("only %d nodes saved for %d keys", nodeSaves, keys)
	}
	want["set-after-the-failure"] = []byte("late")
	if err := rm.Set(ctx, "set-after-the-failure", []byte("late")); err != nil {
		t.Fatal(err)
	}
	wantRoot, err := rm.Flush(ctx)
	if err != nil {
		t.Fatal(err)
	}

	for _, workers := range []int{1, hamt.DefaultFlushWorkers} {
		for _, n := range []int{0, 1, nodeSaves / 2, nodeSaves - 1} {
			t.Run(fmt.Sprintf("save %d of %d fails with %d flush workers", n+1, nodeSaves, workers), func(t *testing.T) {
				mem := hamt.NewMemoryCAS()
				cas := &badFlakyCAS{CAS: mem, left: -1}
				m, err := hamt.New(ctx, cas, hamt.Bytes, hamt.WithFlushWorkers(workers))
				if err != nil {
					t.Fatal(err)
				}
				badFill(t, m, keys)
				cas.failAfter(n)
				if _, err := m.Flush(ctx); !errors.Is(err, errBadInjected) {
					t.Fatalf("Flush: %v, want the injected error", err)
				}
				if cas.fails == 0 {
					t.Fatal("the store never failed")
				}
				if _, err := m.Root(); !errors.Is(err, hamt.ErrUnflushed) {
					t.Fatalf("Root after a failed flush: %v, want ErrUnflushed", err)
				}
				cas.heal()
				if err := m.Set(ctx, "set-after-the-failure", []byte("late")); err != nil {
					t.Fatal(err)
				}
				root, err := m.Flush(ctx)
				if err != nil {
					t.Fatalf("Flush after the store healed: %v", err)
				}
				if !root.Equals(wantRoot) {
					t.Errorf("root %s, want %s as from a flush that never failed", root, wantRoot)
				}
				reopened, err := hamt.Open(ctx, mem, hamt.Bytes, root, hamt.WithVerifyBlocks())
				if err != nil {
					t.Fatal(err)
				}
				badCheckAll(t, reopened, want)
			})
		}
	}
}

func TestAFailedValueSaveInSetLeavesTheMapUnchanged(t *testing.T) {
	ctx := context.Background()
	for _, c := range []struct {
		name string
		key  string
	}{
		{"a new key", "a-new-key"},
		{"an existing key", "key-7"},
	} {
		t.Run(c.name, func(t *testing.T) {
			cas := &badFlakyCAS{CAS: hamt.NewMemoryCAS(), left: -1}
			m, err := hamt.New(ctx, cas, hamt.Bytes)
			if err != nil {
				t.Fatal(err)
			}
			want := badFill(t, m, 100)
			root, err := m.Flush(ctx)
			if err != nil {
				t.Fatal(err)
			}
			cas.failAfter(0)
			if err := m.Set(ctx, c.key, []byte("never saved")); !errors.Is(err, errBadInjected) {
				t.Fatalf("Set: %v, want the injected error", err)
			}
			cas.heal()
			if got, err := m.Root(); err != nil || !got.Equals(root) {
				t.Fatalf("Root = %s, %v; want the unchanged %s", got, err, root)
			}
			if has, err := m.Has(ctx, "a-new-key"); err != nil || has {
				t.Fatalf("Has(a-new-key) = %v, %v; want false", has, err)
			}
			badCheckAll(t, m, want)
		})
	}
}

func TestACanceledContextIsReportedAsContextCanceled(t *testing.T) {
	live := context.Background()
	canceled, cancel := context.WithCancel(live)
	cancel()
	// setup returns a map of 500 flushed keys plus one unflushed key, in write mode.
	setup := func(t *testing.T) (*hamt.Map[[]byte], *hamt.MemoryCAS, cid.Cid) {
		cas := hamt.NewMemoryCAS()
		m, err := hamt.New(live, cas, hamt.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		badFill(t, m, 500)
		root, err := m.Flush(live)
		if err != nil {
			t.Fatal(err)
		}
		if err := m.Set(live, "unflushed", []byte("u")); err != nil {
			t.Fatal(err)
		}
		return m, cas, root
	}
	for _, c := range []struct {
		name string
		op   func(t *testing.T, m *hamt.Map[[]byte], cas *hamt.MemoryCAS, root cid.Cid) error
		// after checks the map once the context is live again.
		after func(t *testing.T, m *hamt.Map[[]byte])
	}{
		{
			name: "Get in write mode",
			op: func(t *testing.T, m *hamt.Map[[]byte], _ *hamt.MemoryCAS, _ cid.Cid) error {
				_, err := m.Get(canceled, "key-1")
				return err
			},
		},
		{
			name: "Set in write mode",
			op: func(t *testing.T, m *hamt.Map[[]byte], _ *hamt.MemoryCAS, _ cid.Cid) error {
				return m.Set(canceled, "canceled", []byte("c"))
			},
			after: func(t *testing.T, m *hamt.Map[[]byte]) {
				if has, err := m.Has(live, "canceled"); err != nil || has {
					t.Fatalf("Has(canceled) = %v, %v; want false", has, err)
				}
			},
		},
		{
			name: "Flush of unsaved changes",
			op: func(t *testing.T, m *hamt.Map[[]byte], _ *hamt.MemoryCAS, _ cid.Cid) error {
				_, err := m.Flush(canceled)
				return err
			},
			after: func(t *testing.T, m *hamt.Map[[]byte]) {
				if _, err := m.Flush(live); err != nil {
					t.Fatalf("Flush with a live context: %v", err)
				}
				if got, err := m.Get(live, "unflushed"); err != nil || string(got) != "u" {
					t.Fatalf("Get(unflushed) = %q, %v", got, err)
				}
			},
		},
		{
			name: "MakeReadOnly with unsaved changes",
			op: func(t *testing.T, m *hamt.Map[[]byte], _ *hamt.MemoryCAS, _ cid.Cid) error {
				return m.MakeReadOnly(canceled)
			},
			after: func(t *testing.T, m *hamt.Map[[]byte]) {
				if m.ReadOnly() {
					t.Fatal("the map switched to read-only although the flush failed")
				}
			},
		},
		{
			name: "Open",
			op: func(t *testing.T, _ *hamt.Map[[]byte], cas *hamt.MemoryCAS, root cid.Cid) error {
				_, err := hamt.Open(canceled, cas, hamt.Bytes, root)
				return err
			},
		},
		{
			name: "Get in read-only mode",
			op: func(t *testing.T, _ *hamt.Map[[]byte], cas *hamt.MemoryCAS, root cid.Cid) error {
				ro, err := hamt.Open(live, cas, hamt.Bytes, root)
				if err != nil {
					t.Fatal(err)
				}
				_, err = ro.Get(canceled, "key-1")
				return err
			},
		},
		{
			name: "Len in read-only mode",
			op: func(t *testing.T, _ *hamt.Map[[]byte], cas *hamt.MemoryCAS, root cid.Cid) error {
				ro, err := hamt.Open(live, cas, hamt.Bytes, root)
				if err != nil {
					t.Fatal(err)
				}
				_, err = ro.Len(canceled)
				return err
			},
		},
	} {
		t.Run(c.name+" returns context.Canceled", func(t *testing.T) {
			m, cas, root := setup(t)
			if err := c.op(t, m, cas, root); !errors.Is(err, context.Canceled) {
				t.Fatalf("got %v, want context.Canceled", err)
			}
			if c.after != nil {
				c.after(t, m)
			}
		})
	}
}

func TestKeysThatAreNotUTF8AreErrInvalidKey(t *testing.T) {
	ctx := context.Background()
	for _, c := range []struct {
		name string
		key  string
		ok   bool
	}{
		{"a lone 0xff byte", "\xff", false},
		{"a stray continuation byte", "abc\x80", false},
		{"a truncated two-byte sequence", "caf\xc3", false},
		{"an overlong encoding of '/'", "\xc0\xaf", false},
		{"a UTF-16 surrogate", "\xed\xa0\x80", false},
		{"valid UTF-8 beyond ASCII is fine", "café ☕", true},
	} {
		t.Run(c.name, func(t *testing.T) {
			cas := hamt.NewMemoryCAS()
			m, err := hamt.New(ctx, cas, hamt.Bytes)
			if err != nil {
				t.Fatal(err)
			}
			err = m.Set(ctx, c.key, []byte("v"))
			if c.ok {
				if err != nil {
					t.Fatalf("Set(%q): %v", c.key, err)
				}
				if got, err := m.Get(ctx, c.key); err != nil || string(got) != "v" {
					t.Fatalf("Get(%q) = %q, %v", c.key, got, err)
				}
				return
			}
			if !errors.Is(err, hamt.ErrInvalidKey) {
				t.Fatalf("Set(%q): %v, want ErrInvalidKey", c.key, err)
			}
			if n, err := m.Len(ctx); err != nil || n != 0 {
				t.Fatalf("Len = %d, %v; want 0", n, err)
			}
			if cas.Len() != 0 {
				t.Fatalf("the store holds %d blocks; a refused key must not save its value", cas.Len())
			}
		})
	}
}

func TestNonCanonicalDagCBORValuesReadThroughAMapOfAnyAreErrMalformedValue(t *testing.T) {
	ctx := context.Background()
	cases := []struct {
		name  string
		block []byte
	}{
		{"a float32", []byte{0xfa, 0x3f, 0xc0, 0, 0}},
		{"a float16", []byte{0xf9, 0x3e, 0x00}},
		{"an integer with a non-minimal head", []byte{0x18, 0x01}},
		{"a string with a non-minimal length", []byte{0x78, 0x01, 'a'}},
		{"map keys out of order", []byte{0xa2, 0x61, 'b', 0x02, 0x61, 'a', 0x01}},
		{"map keys sorted bytewise instead of length-first", []byte{0xa2, 0x62, 'a', 'a', 0x02, 0x61, 'b', 0x01}},
		{"a duplicate map key", []byte{0xa2, 0x61, 'a', 0x01, 0x61, 'a', 0x01}},
		{"a map key that is not a string", []byte{0xa1, 0x01, 0x01}},
		{"an indefinite-length list", []byte{0x9f, 0x01, 0xff}},
		{"an indefinite-length string", []byte{0x7f, 0x61, 'a', 0xff}},
		{"NaN", []byte{0xfb, 0x7f, 0xf8, 0, 0, 0, 0, 0, 0}},
		{"infinity", []byte{0xfb, 0x7f, 0xf0, 0, 0, 0, 0, 0, 0}},
		{"tag 43", []byte{0xd8, 0x2b, 0x41, 0x00}},
		{"a bignum tag", []byte{0xc2, 0x41, 0x01}},
		{"undefined", []byte{0xf7}},
		{"trailing bytes", []byte{0x01, 0x01}},
		{"a string that is not UTF-8", []byte{0x61, 0xff}},
		{"a link without the 0x00 prefix", testdag.Cat([]byte{0xd8, 0x2a, 0x44}, []byte{0x01, 0x55, 0x00, 0x00})},
		{"no bytes at all", []byte{}},
	}
	mem := hamt.NewMemoryCAS()
	bm, err := hamt.New(ctx, mem, hamt.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cases {
		if err := bm.Set(ctx, c.name, c.block); err != nil {
			t.Fatal(err)
		}
	}
	if err := bm.Set(ctx, "canonical", []byte{0xa1, 0x61, 'a', 0x01}); err != nil { // {"a": 1}
		t.Fatal(err)
	}
	root, err := bm.Flush(ctx)
	if err != nil {
		t.Fatal(err)
	}
	dm, err := hamt.Open(ctx, mem, hamt.DagCBOR, root)
	if err != nil {
		t.Fatal(err)
	}
	t.Run("a canonical value reads back", func(t *testing.T) {
		got, err := dm.Get(ctx, "canonical")
		m, ok := got.(map[string]any)
		if err != nil || !ok || len(m) != 1 || m["a"] != int64(1) {
			t.Fatalf("Get = %#v, %v; want map[a:1]", got, err)
		}
	})
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			raw, err := bm.Get(ctx, c.name)
			if err != nil || !bytes.Equal(raw, c.block) {
				t.Fatalf("the raw block reads back as %x, %v; want %x", raw, err, c.block)
			}
			got, err := dm.Get(ctx, c.name)
			if got != nil || !errors.Is(err, hamt.ErrMalformedValue) {
				t.Fatalf("Get = %#v, %v; want nil and ErrMalformedValue", got, err)
			}
		})
	}
}
