package hamt

// Fuzz targets for the decoders of stored bytes (SPEC §2: "Every decoder of stored bytes gets a fuzz
// target"): decodeNode and DagCBOR.Decode. Their seed corpora are the py-hamt vectors (added in code)
// and the hand-made blocks of fuzzNodeSeeds and fuzzValueSeeds, written to testdata/fuzz/<target>/
// by TestFuzzSeedFilesAreCurrentAndJudgedAsTheirNamesSay (run it with HAMT_UPDATE_FUZZ_SEEDS=1 to
// rewrite them after changing a seed).
//
// Run a target with, for example:
//
//	go test -run XXX -fuzz FuzzDecodeNode -fuzztime 60s .
//
// The judges here use go-cid and fxamacker/cbor, not the package's own CBOR and CID code, and the
// seeds are built byte by byte, so that the targets check the decoder rather than restate it.

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"math/bits"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/fxamacker/cbor/v2"
	"github.com/hamt-go/hamt/internal/testdag"
	"github.com/ipfs/go-cid"
	"github.com/multiformats/go-multicodec"
	"github.com/zeebo/blake3"
)

// fuzzStrictDec is a strict generic CBOR decoder, independent of decodeNode's hand-written parser.
var fuzzStrictDec = func() cbor.DecMode {
	dm, err := cbor.DecOptions{
		DupMapKey:   cbor.DupMapKeyEnforcedAPF,
		IndefLength: cbor.IndefLengthForbidden,
		UTF8:        cbor.UTF8RejectInvalid,
	}.DecMode()
	if err != nil {
		panic(err)
	}
	return dm
}()

// fuzzCanonicalEnc is fxamacker's canonical encoding: map keys sorted length-first, floats kept at
// 64 bits. A generic value that re-encodes to its input was canonical DAG-CBOR.
var fuzzCanonicalEnc = func() cbor.EncMode {
	em, err := cbor.EncOptions{Sort: cbor.SortCanonical, ShortestFloat: cbor.ShortestFloatNone}.EncMode()
	if err != nil {
		panic(err)
	}
	return em
}()

// fuzzTaggedCID checks that v is a CID link as the generic decoder sees it: tag 42 over a byte string
// 0x00 || cid, where the bytes after 0x00 are exactly one CID that go-cid accepts.
func fuzzTaggedCID(v any) (cid.Cid, error) {
	tag, ok := v.(cbor.Tag)
	if !ok || tag.Number != 42 {
		return cid.Undef, fmt.Errorf("%T is not a tag-42 link", v)
	}
	content, ok := tag.Content.([]byte)
	if !ok || len(content) < 1 || content[0] != 0 {
		return cid.Undef, errors.New("tag 42 does not hold a byte string 0x00 || cid")
	}
	n, c, err := cid.CidFromBytes(content[1:])
	if err != nil {
		return cid.Undef, err
	}
	if n != len(content)-1 {
		return cid.Undef, fmt.Errorf("%d trailing bytes after the CID", len(content)-1-n)
	}
	return c, nil
}

// fuzzGenericNodeShape judges a node block with the generic decoder alone: nil when data is a list of
// 256 items, each an empty map, a map of text keys to CID links, or a one-element list holding a
// link to a dag-cbor CID, and data is exactly the canonical encoding of that list.
func fuzzGenericNodeShape(data []byte) error {
	// Two cheap filters first, to keep the fuzzer fast on the many mutated inputs that fail them;
	// neither changes the verdict. The canonical encoding of a 256-item list starts 99 01 00, and
	// Unmarshal fails on whatever Wellformed refuses.
	if !bytes.HasPrefix(data, []byte{0x99, 0x01, 0x00}) {
		return errors.New("does not start with the canonical head of a 256-item list")
	}
	if err := fuzzStrictDec.Wellformed(data); err != nil {
		return fmt.Errorf("strict generic decoder: %w", err)
	}
	var v any
	if err := fuzzStrictDec.Unmarshal(data, &v); err != nil {
		return fmt.Errorf("strict generic decoder: %w", err)
	}
	items, ok := v.([]any)
	if !ok || len(items) != 256 {
		return fmt.Errorf("generic decoder gives %T, not a list of 256 items", v)
	}
	for i, item := range items {
		switch x := item.(type) {
		case map[any]any:
			for k, val := range x {
				if _, ok := k.(string); !ok {
					return fmt.Errorf("item %d: key of type %T", i, k)
				}
				if _, err := fuzzTaggedCID(val); err != nil {
					return fmt.Errorf("item %d: %w", i, err)
				}
			}
		case []any:
			if len(x) != 1 {
				return fmt.Errorf("item %d: list of %d items", i, len(x))
			}
			c, err := fuzzTaggedCID(x[0])
			if err != nil {
				return fmt.Errorf("item %d: %w", i, err)
			}
			if c.Type() != uint64(multicodec.DagCbor) {
				return fmt.Errorf("item %d: link with codec 0x%x", i, c.Type())
			}
		default:
			return fmt.Errorf("item %d: %T", i, item)
		}
	}
	again, err := fuzzCanonicalEnc.Marshal(v)
	if err != nil {
		return fmt.Errorf("canonical re-encode: %w", err)
	}
	if !bytes.Equal(again, data) {
		return errors.New("canonical re-encoding differs from the input")
	}
	return nil
}

// fuzzCheckNode checks the in-memory invariants documented on node.
func fuzzCheckNode(t *testing.T, n *node) {
	t.Helper()
	occupied := 0
	for _, w := range n.bitmap {
		occupied += bits.OnesCount64(w)
	}
	if occupied != len(n.slots) {
		t.Fatalf("bitmap has %d bits set for %d slots", occupied, len(n.slots))
	}
	if n.dirty {
		t.Fatal("a decoded node is dirty")
	}
	for i, s := range n.slots {
		if (s.link() == nil) == (s.bucket() == "") {
			t.Fatalf("slot %d: want exactly one of bucket and link", i)
		}
		if s.link() != nil {
			if s.link().node != nil {
				t.Fatalf("slot %d: a decoded link already has a child node", i)
			}
			continue
		}
		entries := appendEntries(nil, s.bucket())
		if len(entries) == 0 {
			t.Fatalf("slot %d: empty bucket", i)
		}
		for j, e := range entries {
			if !utf8.ValidString(e.key) {
				t.Fatalf("slot %d entry %d: key %q is not UTF-8", i, j, e.key)
			}
			if j > 0 && !fuzzKeyLess(entries[j-1].key, e.key) {
				t.Fatalf("slot %d: keys %q, %q out of order", i, entries[j-1].key, e.key)
			}
		}
	}
}

// fuzzCheckFrozenAgrees checks that decodeFrozen judges data as decodeNode did (n, err) and, when
// both accept it, finds the same thing in every slot: read mode and write mode see one node.
func fuzzCheckFrozenAgrees(t *testing.T, data []byte, n *node, err error) {
	t.Helper()
	f, ferr := decodeFrozen(data)
	if (err == nil) != (ferr == nil) || (ferr != nil && (f != nil || !errors.Is(ferr, ErrMalformedNode))) {
		t.Fatalf("decodeNode: %v; decodeFrozen: %v, %v", err, f != nil, ferr)
	}
	if err != nil {
		return
	}
	var want, got []string
	for i := range numSlots {
		k, kind := f.find(i)
		s := n.slot(i)
		switch {
		case s == nil:
			if kind != slotEmpty {
				t.Fatalf("slot %d: empty, but frozen kind %d", i, kind)
			}
		case s.link() != nil:
			if kind != slotLink || f.linkAt(k) != s.link().id {
				t.Fatalf("slot %d: link %x, but frozen kind %d", i, s.link().id, kind)
			}
		default:
			if kind != slotBucket {
				t.Fatalf("slot %d: bucket, but frozen kind %d", i, kind)
			}
			for _, e := range appendEntries(nil, s.bucket()) {
				want = append(want, e.key)
				if c := f.bucketFind(k, e.key); c != e.value {
					t.Fatalf("slot %d key %q: frozen value %x, want %x", i, e.key, c, e.value)
				}
				for _, other := range []string{e.key + "\x00", e.key[:len(e.key)/2], e.key + "~"} {
					if c, _, _ := bucketSearch(s.bucket(), 0, other); c == "" && f.bucketFind(k, other) != "" {
						t.Fatalf("slot %d: frozen bucket finds %q, which it does not hold", i, other)
					}
				}
			}
		}
	}
	f.eachEntry(func(k string, _ cidBytes) bool { got = append(got, k); return true })
	if !slices.Equal(got, want) {
		t.Fatalf("frozen keys %q, want %q", got, want)
	}
	var down []cidBytes
	for slot, k := f.linkBelow(numSlots); slot >= 0; slot, k = f.linkBelow(slot) {
		down = append(down, f.linkAt(k))
	}
	var wantDown []cidBytes
	for j := len(n.slots) - 1; j >= 0; j-- {
		if l := n.slots[j].link(); l != nil {
			wantDown = append(wantDown, l.id)
		}
	}
	if !slices.Equal(down, wantDown) {
		t.Fatalf("frozen links from the top %x, want %x", down, wantDown)
	}
	// EnableWrite thaws held frozen nodes instead of decoding their blocks again: the thawed node
	// is the decoded one, slot for slot, and encodes to the same block.
	thawed := f.thaw()
	if thawed.bitmap != n.bitmap || len(thawed.slots) != len(n.slots) {
		t.Fatalf("thawed bitmap %x (%d slots), decoded %x (%d slots)", thawed.bitmap, len(thawed.slots), n.bitmap, len(n.slots))
	}
	for j, s := range thawed.slots {
		d := n.slots[j]
		if s.bucket() != d.bucket() || (s.link() == nil) != (d.link() == nil) || (s.link() != nil && s.link().id != d.link().id) {
			t.Fatalf("thawed slot %d: %q %v, decoded %q %v", j, s.bucket(), s.link(), d.bucket(), d.link())
		}
	}
	if b, err := thawed.encode(); err != nil || !bytes.Equal(b, data) {
		t.Fatalf("the thawed node encodes to %x (%v), want %x", b, err, data)
	}
}

// fuzzKeyLess is DAG-CBOR's order of text map keys: shorter first, then bytewise.
func fuzzKeyLess(a, b string) bool {
	if len(a) != len(b) {
		return len(a) < len(b)
	}
	return a < b
}

func FuzzDecodeNode(f *testing.F) {
	empty, err := (&node{}).encode()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(empty)
	for _, file := range []string{"b_foo_bar.json", "c_100_ipld_values.json", "d2_2k_bytes_bucket4.json"} {
		var sc struct {
			RootNodeHex string `json:"root_node_hex"`
			CarFile     string `json:"car_file"`
		}
		readJSON(f, file, &sc)
		f.Add(unhex(f, sc.RootNodeHex))
		// A few inner nodes too, in a fixed order.
		_, blocks := readCAR(f, sc.CarFile)
		var nodes []string
		for id, b := range blocks {
			if id.Type() == uint64(multicodec.DagCbor) {
				nodes = append(nodes, string(b))
			}
		}
		slices.Sort(nodes)
		for _, b := range nodes[:min(len(nodes), 4)] {
			f.Add([]byte(b))
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		n, err := decodeNode(data)
		fuzzCheckFrozenAgrees(t, data, n, err)
		shape := fuzzGenericNodeShape(data)
		if err != nil {
			if n != nil || !errors.Is(err, ErrMalformedNode) {
				t.Fatalf("decodeNode = %v, %v; want nil and ErrMalformedNode", n, err)
			}
			if shape == nil {
				t.Fatalf("decodeNode rejects a block that a strict generic decoder reads as a canonical node: %v", err)
			}
			return
		}
		out, err := n.encode()
		if err != nil {
			t.Fatalf("encode of a decoded node: %v", err)
		}
		if !bytes.Equal(out, data) {
			t.Fatalf("decode then encode changed the block:\n  in %x\n out %x", data, out)
		}
		fuzzCheckNode(t, n)
		if shape != nil {
			t.Fatalf("decodeNode accepts a block that is not a canonical node for a strict generic decoder: %v", shape)
		}
	})
}

func FuzzDagCBORCodec(f *testing.F) {
	var sc struct {
		Ops []vectorOp `json:"ops"`
	}
	readJSON(f, "c_100_ipld_values.json", &sc)
	for _, op := range sc.Ops {
		if op.DagCBORHex != "" {
			f.Add(unhex(f, op.DagCBORHex))
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		v, err := DagCBOR.Decode(data)
		if err != nil {
			if !errors.Is(err, ErrMalformedValue) {
				t.Fatalf("Decode error %v does not wrap ErrMalformedValue", err)
			}
			return
		}
		out, err := DagCBOR.Encode(v)
		if err != nil {
			t.Fatalf("Encode of a decoded value %#v: %v", v, err)
		}
		if !bytes.Equal(out, data) {
			t.Fatalf("decode then encode changed the value block:\n  in %x\n out %x", data, out)
		}
	})
}

// fuzzSeed is a hand-made input with the verdict its name promises.
type fuzzSeed struct {
	name  string // file name under testdata/fuzz/<target>/: "valid-…" or "malformed-…"
	data  []byte
	valid bool
}

// fuzzCID is CIDv1(codec, blake3-256(data)), built by hand (codec < 0x80).
func fuzzCID(codec multicodec.Code, data []byte) cid.Cid {
	sum := blake3.Sum256(data)
	c, err := cid.Cast(append([]byte{0x01, byte(codec), 0x1e, 0x20}, sum[:]...))
	if err != nil {
		panic(err)
	}
	return c
}

// fuzzBucket is a bucket with keys in the order given, each linking to a raw block of its own name.
func fuzzBucket(keys ...string) []byte {
	var es [][]byte
	for _, k := range keys {
		es = append(es, testdag.Entry(k, fuzzCID(multicodec.Raw, []byte(k))))
	}
	return testdag.Bucket(es...)
}

func fuzzNodeSeeds() []fuzzSeed {
	empty := testdag.Node(nil)
	child := fuzzCID(multicodec.DagCbor, empty)
	rawChild := fuzzCID(multicodec.Raw, empty)
	linkSlot := testdag.Cat([]byte{0x81}, testdag.Link(child))
	long := strings.Repeat("k", 24) // a 2-byte text head
	full := testdag.Node(map[int][]byte{
		0:   fuzzBucket("a", "b", "aa"),
		7:   linkSlot,
		200: fuzzBucket("é", long),
		255: linkSlot,
	})
	fooValue := testdag.Link(fuzzCID(multicodec.Raw, []byte("foo")))
	cidBytes := append([]byte{0}, child.Bytes()...)
	return []fuzzSeed{
		{"valid-empty-node", empty, true},
		{"valid-buckets-and-links", full, true},
		{"malformed-truncated-node", full[:len(full)/2], false},
		{"malformed-truncated-in-a-link", full[:len(full)-3], false},
		{"malformed-255-slots", testdag.Cat([]byte{0x98, 0xff}, bytes.Repeat([]byte{0xa0}, 255)), false},
		{"malformed-257-slots", testdag.Cat([]byte{0x99, 0x01, 0x01}, bytes.Repeat([]byte{0xa0}, 257)), false},
		{"malformed-non-minimal-list-header", testdag.Cat([]byte{0x9a, 0, 0, 1, 0}, empty[3:]), false},
		{"malformed-indefinite-list", testdag.Cat([]byte{0x9f}, empty[3:], []byte{0xff}), false},
		{"malformed-trailing-byte", testdag.Cat(empty, []byte{0}), false},
		{"malformed-a-map", []byte{0xa1, 0x61, 0x61, 0xa0}, false},
		{"malformed-an-integer", []byte{0x19, 0x01, 0x00}, false},
		{"malformed-unordered-bucket-keys", testdag.Node(map[int][]byte{3: fuzzBucket("b", "a")}), false},
		{"malformed-bucket-keys-bytewise-not-length-first", testdag.Node(map[int][]byte{3: fuzzBucket("aa", "b")}), false},
		{"malformed-duplicate-bucket-keys", testdag.Node(map[int][]byte{3: fuzzBucket("a", "a")}), false},
		{"malformed-key-not-utf8", testdag.Node(map[int][]byte{3: fuzzBucket("\xff")}), false},
		{"malformed-byte-string-key", testdag.Node(map[int][]byte{3: testdag.Cat([]byte{0xa1, 0x43}, []byte("foo"), fooValue)}), false},
		{"malformed-link-slot-with-raw-cid", testdag.Node(map[int][]byte{9: testdag.Cat([]byte{0x81}, testdag.Link(rawChild))}), false},
		{"malformed-float32-value", testdag.Node(map[int][]byte{3: testdag.Cat([]byte{0xa1}, testdag.Text("foo"), []byte{0xfa, 0x3f, 0xc0, 0, 0})}), false},
		{"malformed-float32-slot", testdag.Node(map[int][]byte{3: {0xfa, 0x3f, 0xc0, 0, 0}}), false},
		{"malformed-non-minimal-bucket-length", testdag.Node(map[int][]byte{3: testdag.Cat([]byte{0xb8, 0x01}, testdag.Text("foo"), fooValue)}), false},
		{"malformed-non-minimal-key-length", testdag.Node(map[int][]byte{3: testdag.Cat([]byte{0xa1, 0x78, 0x03}, []byte("foo"), fooValue)}), false},
		{"malformed-non-minimal-cid-length", testdag.Node(map[int][]byte{9: testdag.Cat([]byte{0x81, 0xd8, 0x2a, 0x59, 0x00, byte(len(cidBytes))}, cidBytes)}), false},
		{"malformed-indefinite-bucket", testdag.Node(map[int][]byte{3: testdag.Cat([]byte{0xbf}, testdag.Text("foo"), fooValue, []byte{0xff})}), false},
		{"malformed-empty-list-slot", testdag.Node(map[int][]byte{3: {0x80}}), false},
		{"malformed-list-slot-holding-an-empty-map", testdag.Node(map[int][]byte{3: {0x81, 0xa0}}), false},
		{"malformed-two-element-link-slot", testdag.Node(map[int][]byte{9: testdag.Cat([]byte{0x82}, testdag.Link(child), testdag.Link(child))}), false},
		{"malformed-tag-43", testdag.Node(map[int][]byte{9: testdag.Cat([]byte{0x81, 0xd8, 0x2b}, testdag.Link(child)[2:])}), false},
		{"malformed-link-without-multibase-prefix", testdag.Node(map[int][]byte{9: testdag.Cat([]byte{0x81, 0xd8, 0x2a, 0x58, byte(len(cidBytes) - 1)}, cidBytes[1:])}), false},
		{"malformed-cid-with-trailing-byte", testdag.Node(map[int][]byte{9: testdag.Cat([]byte{0x81, 0xd8, 0x2a, 0x58, byte(len(cidBytes) + 1)}, cidBytes, []byte{0})}), false},
	}
}

func fuzzValueSeeds(t testing.TB) []fuzzSeed {
	link := hex.EncodeToString(testdag.Link(fuzzCID(multicodec.Raw, []byte("foo"))))
	seeds := []struct {
		name  string
		hex   string
		valid bool
	}{
		// {"a": [1, -1, 1.5, "s", h'00', null, true, link], "bb": {}}
		{"valid-nested-map-and-list", "a26161880120fb3ff800000000000061734100f6f5" + link + "626262a0", true},
		{"valid-uint64-max", "1bffffffffffffffff", true},
		{"valid-minus-2-to-the-64", "3bffffffffffffffff", true},
		{"valid-negative-zero", "fb8000000000000000", true},
		{"malformed-float32", "fa3fc00000", false},
		{"malformed-float16", "f93e00", false},
		{"malformed-non-minimal-integer", "1801", false},
		{"malformed-non-minimal-string-length", "780161", false},
		{"malformed-unordered-map-keys", "a2616202616101", false},
		{"malformed-map-keys-bytewise-not-length-first", "a262616102616201", false},
		{"malformed-duplicate-map-key", "a2616101616101", false},
		{"malformed-non-text-map-key", "a10101", false},
		{"malformed-indefinite-list", "9f01ff", false},
		{"malformed-nan", "fb7ff8000000000000", false},
		{"malformed-infinity", "fb7ff0000000000000", false},
		{"malformed-tag-43", "d82b4100", false},
		{"malformed-bignum-tag", "c24101", false},
		{"malformed-undefined", "f7", false},
		{"malformed-trailing-bytes", "0101", false},
		{"malformed-invalid-utf8-string", "61ff", false},
		{"malformed-link-without-multibase-prefix", "d82a5824" + link[10:], false},
		{"malformed-link-with-invalid-cid", "d82a43000155", false},
		{"malformed-empty", "", false},
	}
	out := make([]fuzzSeed, len(seeds))
	for i, s := range seeds {
		out[i] = fuzzSeed{s.name, unhex(t, s.hex), s.valid}
	}
	return out
}

// fuzzSeedFile is data in Go's corpus file format.
func fuzzSeedFile(data []byte) []byte {
	return fmt.Appendf(nil, "go test fuzz v1\n[]byte(%q)\n", data)
}

func TestFuzzSeedFilesAreCurrentAndJudgedAsTheirNamesSay(t *testing.T) {
	update := os.Getenv("HAMT_UPDATE_FUZZ_SEEDS") == "1"
	targets := []struct {
		target string
		seeds  []fuzzSeed
		judge  func([]byte) error
		want   error
	}{
		{"FuzzDecodeNode", fuzzNodeSeeds(), func(b []byte) error { _, err := decodeNode(b); return err }, ErrMalformedNode},
		{"FuzzDagCBORCodec", fuzzValueSeeds(t), func(b []byte) error { _, err := DagCBOR.Decode(b); return err }, ErrMalformedValue},
	}
	for _, tg := range targets {
		dir := filepath.Join("testdata", "fuzz", tg.target)
		if update {
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
		}
		for _, s := range tg.seeds {
			t.Run(tg.target+"/"+s.name, func(t *testing.T) {
				if strings.HasPrefix(s.name, "valid-") != s.valid {
					t.Fatalf("seed name %q does not match its verdict valid=%v", s.name, s.valid)
				}
				path := filepath.Join(dir, s.name)
				want := fuzzSeedFile(s.data)
				if update {
					if err := os.WriteFile(path, want, 0o644); err != nil {
						t.Fatal(err)
					}
				}
				got, err := os.ReadFile(path)
				if err != nil || !bytes.Equal(got, want) {
					t.Errorf("%s is missing or out of date (%v); rerun with HAMT_UPDATE_FUZZ_SEEDS=1", path, err)
				}
				err = tg.judge(s.data)
				switch {
				case s.valid && err != nil:
					t.Errorf("valid seed rejected: %v", err)
				case !s.valid && !errors.Is(err, tg.want):
					t.Errorf("malformed seed: got %v, want %v", err, tg.want)
				}
				if tg.target == "FuzzDecodeNode" {
					// The generic judge of the fuzz target must agree with the seed's verdict too,
					// or the differential check would be vacuous.
					if shape := fuzzGenericNodeShape(s.data); (shape == nil) != s.valid {
						t.Errorf("generic node shape check: %v, want valid=%v", shape, s.valid)
					}
					// And the read-mode decoder must judge it as decodeNode does.
					n, err := decodeNode(s.data)
					fuzzCheckFrozenAgrees(t, s.data, n, err)
				}
			})
		}
	}
}
