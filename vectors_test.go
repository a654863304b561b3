package hamt

// Tests against the vectors py-hamt 3.3.2 produced (testdata/pyhamt, see SOURCE.md there): the
// judge of byte compatibility.

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"math/big"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/ipfs/go-cid"
	carv2 "github.com/ipld/go-car/v2"
)

type vectorOp struct {
	Op         string `json:"op"`
	Key        string `json:"key"`
	ValueHex   string `json:"value_hex"`
	DagCBORHex string `json:"value_dagcbor_hex"`
}

type scenario struct {
	Name   string `json:"name"`
	Params struct {
		BucketSize     int  `json:"max_bucket_size"`
		ValuesAreBytes bool `json:"values_are_bytes"`
	} `json:"params"`
	RootCID           string     `json:"root_cid"`
	FinalKeyCount     int        `json:"final_key_count"`
	NodeCount         int        `json:"node_count"`
	MaxDepth          int        `json:"max_depth"`
	LargestBucket     int        `json:"largest_bucket"`
	ReachableBlocks   int        `json:"reachable_blocks"`
	RootNodeHex       string     `json:"root_node_hex"`
	CarFile           string     `json:"car_file"`
	Ops               []vectorOp `json:"ops"`
	OpsFile           string     `json:"ops_file"`
	KeysOrderReadOnly []string   `json:"keys_order_read_only"`
	// Only in e_2000_then_delete_1000.
	FreshInsertRoot string `json:"root_cid_fresh_insert_of_remaining_1000"`
	DeleteAllRoot   string `json:"root_after_deleting_all_2000"`
}

var scenarioFiles = []string{
	"a_empty.json", "b_foo_bar.json", "c_100_ipld_values.json",
	"d2_2k_bytes_bucket4.json", "e_2000_then_delete_1000.json",
}

func readJSON(t testing.TB, name string, v any) {
	t.Helper()
	readJSONFile(t, filepath.Join("testdata", "pyhamt", name), v)
}

// readJSONFile reads the JSON file at path into v.
func readJSONFile(t testing.TB, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

func loadScenario(t testing.TB, file string) scenario {
	t.Helper()
	var sc scenario
	readJSON(t, file, &sc)
	if sc.OpsFile != "" {
		readJSON(t, sc.OpsFile, &sc.Ops)
	}
	return sc
}

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// readCAR returns the roots and blocks of a CAR file of testdata/pyhamt.
func readCAR(t testing.TB, name string) ([]cid.Cid, map[cid.Cid][]byte) {
	t.Helper()
	return readCARFile(t, filepath.Join("testdata", "pyhamt", name))
}

// readCARFile returns the roots and blocks of the CAR file at path.
func readCARFile(t testing.TB, path string) ([]cid.Cid, map[cid.Cid][]byte) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	br, err := carv2.NewBlockReader(f)
	if err != nil {
		t.Fatal(err)
	}
	blocks := map[cid.Cid][]byte{}
	for {
		b, err := br.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		blocks[b.Cid()] = b.RawData()
	}
	return br.Roots, blocks
}

// finalState is the map a scenario's ops leave, as key -> value block bytes.
func finalState(t testing.TB, sc scenario) map[string][]byte {
	want := map[string][]byte{}
	for _, op := range sc.Ops {
		switch op.Op {
		case "set":
			v := op.ValueHex
			if !sc.Params.ValuesAreBytes {
				v = op.DagCBORHex
			}
			want[op.Key] = unhex(t, v)
		case "delete":
			delete(want, op.Key)
		}
	}
	return want
}

// replay applies a scenario's ops to a new map over cas, as py-hamt 3.3.2 did (legacy deletes),
// and flushes it.
func replay(t testing.TB, ctx context.Context, cas CAS, sc scenario) cid.Cid {
	t.Helper()
	opts := []Option{WithBucketSize(sc.Params.BucketSize), WithLegacyDeletes()}
	if sc.Params.ValuesAreBytes {
		m, err := New(ctx, cas, Bytes, opts...)
		if err != nil {
			t.Fatal(err)
		}
		for _, op := range sc.Ops {
			applyOp(t, ctx, m, op, unhex(t, op.ValueHex))
		}
		root, err := m.Flush(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return root
	}
	m, err := New(ctx, cas, DagCBOR, opts...)
	if err != nil {
		t.Fatal(err)
	}
	for _, op := range sc.Ops {
		var v any
		if op.Op == "set" {
			// Decoding then re-encoding must give py-hamt's exact value block.
			if v, err = DagCBOR.Decode(unhex(t, op.DagCBORHex)); err != nil {
				t.Fatalf("decode value of %s: %v", op.Key, err)
			}
		}
		applyOp(t, ctx, m, op, v)
	}
	root, err := m.Flush(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return root
}

func applyOp[V any](t testing.TB, ctx context.Context, m *Map[V], op vectorOp, v V) {
	t.Helper()
	var err error
	switch op.Op {
	case "set":
		err = m.Set(ctx, op.Key, v)
	case "delete":
		err = m.Delete(ctx, op.Key)
	default:
		t.Fatalf("unknown op %q", op.Op)
	}
	if err != nil {
		t.Fatalf("%s %q: %v", op.Op, op.Key, err)
	}
}

// treeStats walks every block reachable from root in cas.
type treeStats struct {
	blocks        map[cid.Cid][]byte
	nodes         int
	maxDepth      int
	largestBucket int
}

func walkBlocks(t testing.TB, ctx context.Context, cas CAS, root cid.Cid) treeStats {
	t.Helper()
	st := treeStats{blocks: map[cid.Cid][]byte{}}
	var visit func(id cid.Cid, depth int)
	visit = func(id cid.Cid, depth int) {
		b, err := cas.Load(ctx, id)
		if err != nil {
			t.Fatalf("load %s: %v", id, err)
		}
		st.blocks[id] = b
		n, err := decodeNode(b)
		if err != nil {
			t.Fatalf("decode %s: %v", id, err)
		}
		st.nodes++
		st.maxDepth = max(st.maxDepth, depth)
		for _, s := range n.slots {
			if s.link() != nil {
				visit(s.link().id.cid(), depth+1)
				continue
			}
			st.largestBucket = max(st.largestBucket, bucketCount(s.bucket()))
			for _, e := range appendEntries(nil, s.bucket()) {
				v, err := cas.Load(ctx, e.value.cid())
				if err != nil {
					t.Fatalf("load value %s of %q: %v", e.value, e.key, err)
				}
				st.blocks[e.value.cid()] = v
			}
		}
	}
	visit(root, 0)
	return st
}

func TestReplayOfPyHamtScenariosGivesTheSameRootAndBlocks(t *testing.T) {
	for _, file := range scenarioFiles {
		sc := loadScenario(t, file)
		t.Run(sc.Name, func(t *testing.T) {
			ctx := context.Background()
			cas := NewMemoryCAS()
			root := replay(t, ctx, cas, sc)
			if root.String() != sc.RootCID {
				t.Fatalf("root %s, py-hamt %s", root, sc.RootCID)
			}
			carRoots, carBlocks := readCAR(t, sc.CarFile)
			if len(carRoots) != 1 || !carRoots[0].Equals(root) {
				t.Fatalf("CAR roots %v, want [%s]", carRoots, root)
			}
			st := walkBlocks(t, ctx, cas, root)
			if len(st.blocks) != sc.ReachableBlocks || st.nodes != sc.NodeCount ||
				st.maxDepth != sc.MaxDepth || st.largestBucket != sc.LargestBucket {
				t.Errorf("blocks %d nodes %d depth %d largest bucket %d; py-hamt %d %d %d %d",
					len(st.blocks), st.nodes, st.maxDepth, st.largestBucket,
					sc.ReachableBlocks, sc.NodeCount, sc.MaxDepth, sc.LargestBucket)
			}
			for id, b := range st.blocks {
				want, ok := carBlocks[id]
				if !ok {
					t.Fatalf("block %s is not in py-hamt's CAR", id)
				}
				if !bytes.Equal(b, want) {
					t.Fatalf("block %s differs from py-hamt's", id)
				}
			}
			if got := hex.EncodeToString(st.blocks[root]); got != sc.RootNodeHex {
				t.Errorf("root node bytes differ:\n got %s\nwant %s", got, sc.RootNodeHex)
			}
		})
	}
}

func TestPyHamtCARsOpenReadOnlyWithEveryKeyAndValue(t *testing.T) {
	for _, file := range scenarioFiles {
		sc := loadScenario(t, file)
		t.Run(sc.Name, func(t *testing.T) {
			ctx := context.Background()
			roots, blocks := readCAR(t, sc.CarFile)
			cas := NewMemoryCAS()
			for id, b := range blocks {
				if err := cas.Put(ctx, id, b); err != nil {
					t.Fatal(err)
				}
			}
			m, err := Open(ctx, cas, Bytes, roots[0], WithVerifyBlocks())
			if err != nil {
				t.Fatal(err)
			}
			want := finalState(t, sc)
			n, err := m.Len(ctx)
			if err != nil || n != sc.FinalKeyCount || n != len(want) {
				t.Fatalf("Len = %d, %v; want %d", n, err, sc.FinalKeyCount)
			}
			for k, v := range want {
				got, err := m.Get(ctx, k)
				if err != nil {
					t.Fatalf("Get(%q): %v", k, err)
				}
				if !bytes.Equal(got, v) {
					t.Fatalf("Get(%q) = %x, want %x", k, got, v)
				}
			}
			var keys []string
			for k, err := range m.Keys(ctx) {
				if err != nil {
					t.Fatal(err)
				}
				keys = append(keys, k)
			}
			if sc.KeysOrderReadOnly != nil && !slices.Equal(keys, sc.KeysOrderReadOnly) {
				t.Errorf("Keys order differs from py-hamt's:\n got %q\nwant %q", keys, sc.KeysOrderReadOnly)
			}
			if len(keys) != len(want) {
				t.Errorf("Keys yielded %d keys, want %d", len(keys), len(want))
			}
			if !sc.Params.ValuesAreBytes {
				dm, err := Open(ctx, cas, DagCBOR, roots[0])
				if err != nil {
					t.Fatal(err)
				}
				for k, v := range want {
					got, err := dm.Get(ctx, k)
					if err != nil {
						t.Fatalf("DagCBOR Get(%q): %v", k, err)
					}
					again, err := DagCBOR.Encode(got)
					if err != nil || !bytes.Equal(again, v) {
						t.Fatalf("value of %q does not round-trip: %x, %v; want %x", k, again, err, v)
					}
				}
			}
		})
	}
}

// TestLegacyDeletesNeverCollapseNodesAndDeletingAllGivesTheEmptyNode: with WithLegacyDeletes the
// map deletes as py-hamt 3.3.2 does (the replay above gives its root); the fresh build of the
// survivors differs from it, and deleting everything still gives the empty node.
func TestLegacyDeletesNeverCollapseNodesAndDeletingAllGivesTheEmptyNode(t *testing.T) {
	ctx := context.Background()
	sc := loadScenario(t, "e_2000_then_delete_1000.json")
	cas := NewMemoryCAS()
	m, err := New(ctx, cas, Bytes, WithBucketSize(sc.Params.BucketSize), WithLegacyDeletes())
	if err != nil {
		t.Fatal(err)
	}
	for _, op := range sc.Ops {
		applyOp(t, ctx, m, op, unhex(t, op.ValueHex))
	}
	if legacy, err := m.Flush(ctx); err != nil || legacy.String() != sc.RootCID {
		t.Fatalf("root after the ops with legacy deletes: %s, %v; py-hamt 3.3.2 %s", legacy, err, sc.RootCID)
	}
	survivors := finalState(t, sc)

	fresh, err := New(ctx, cas, Bytes, WithBucketSize(sc.Params.BucketSize))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range survivors {
		if err := fresh.Set(ctx, k, v); err != nil {
			t.Fatal(err)
		}
	}
	freshRoot, err := fresh.Flush(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if freshRoot.String() != sc.FreshInsertRoot {
		t.Errorf("fresh insert of the survivors: root %s, py-hamt %s", freshRoot, sc.FreshInsertRoot)
	}
	for k := range survivors {
		if err := m.Delete(ctx, k); err != nil {
			t.Fatal(err)
		}
	}
	root, err := m.Flush(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if root.String() != sc.DeleteAllRoot {
		t.Errorf("after deleting everything: root %s, want the empty node %s", root, sc.DeleteAllRoot)
	}
}

type formatFacts struct {
	EmptyNodeHex string `json:"empty_node_hex"`
	EmptyNodeCID string `json:"empty_node_cid_blake3_dagcbor"`
	Keys         []struct {
		Key     string `json:"key"`
		Blake3  string `json:"blake3_256_hex"`
		Indices []int  `json:"index_at_depth"`
	} `json:"key_hash_and_indices"`
	// Its field names are not valid Go tag names: read as a map.
	DagCBOR     map[string]any `json:"dagcbor_examples"`
	LinkExample struct {
		FirstHashBytes map[string]string `json:"first_hash_bytes"`
	} `json:"inmemorycas_link_example"`
}

func TestFormatFactsOfPyHamt(t *testing.T) {
	var ff formatFacts
	readJSON(t, "format_facts.json", &ff)
	ex := func(name string) string {
		s, ok := ff.DagCBOR[name].(string)
		if !ok {
			t.Fatalf("format_facts.json has no dagcbor_examples[%q]", name)
		}
		return s
	}

	t.Run("the empty node is 259 bytes with py-hamt's CID", func(t *testing.T) {
		b, err := (&node{}).encode()
		if err != nil {
			t.Fatal(err)
		}
		if hex.EncodeToString(b) != ff.EmptyNodeHex || len(b) != 259 {
			t.Fatalf("empty node %x", b)
		}
		if id := blake3CID(0x71, b); id.String() != ff.EmptyNodeCID {
			t.Fatalf("empty node CID %s, want %s", id, ff.EmptyNodeCID)
		}
		ctx := context.Background()
		m, _ := New(ctx, NewMemoryCAS(), Bytes)
		root, err := m.Flush(ctx)
		if err != nil || root.String() != ff.EmptyNodeCID {
			t.Fatalf("flushed empty map: %s, %v", root, err)
		}
	})

	t.Run("key hashes and the slot at every depth", func(t *testing.T) {
		for _, k := range ff.Keys {
			h := Blake3([]byte(k.Key))
			if hex.EncodeToString(h) != k.Blake3 {
				t.Fatalf("Blake3(%q) = %x, want %s", k.Key, h, k.Blake3)
			}
			for d, want := range k.Indices {
				got, err := slotAt(h, d)
				if err != nil || got != want {
					t.Fatalf("slotAt(%q, %d) = %d, %v; want %d", k.Key, d, got, err, want)
				}
			}
			if _, err := slotAt(h, len(k.Indices)); !errors.Is(err, ErrMaxDepth) {
				t.Fatalf("slotAt past the hash: %v, want ErrMaxDepth", err)
			}
		}
		for k, want := range ff.LinkExample.FirstHashBytes {
			if got := hex.EncodeToString(Blake3([]byte(k))[:3]); got != want {
				t.Fatalf("Blake3(%q)[:3] = %s, want %s", k, got, want)
			}
		}
	})

	t.Run("link slot and bucket encodings", func(t *testing.T) {
		ls := unhex(t, ex("link_slot_[CID]"))
		id, err := cid.Cast(ls[6:])
		if err != nil {
			t.Fatal(err)
		}
		n := &node{}
		n.put(0, linkSlot(&link{id: cidKey(id)}))
		b, _ := n.encode()
		if !bytes.Equal(b[3:3+len(ls)], ls) {
			t.Fatalf("link slot %x, want %x", b[3:3+len(ls)], ls)
		}
		bucket := unhex(t, ex("bucket_{'foo': CID}"))
		vid, err := cid.Cast(bucket[1+4+5:])
		if err != nil {
			t.Fatal(err)
		}
		n = &node{}
		n.put(0, bucketSlot(newBucket(entry{key: "foo", value: cidKey(vid)})))
		b, _ = n.encode()
		if !bytes.Equal(b[3:3+len(bucket)], bucket) {
			t.Fatalf("bucket %x, want %x", b[3:3+len(bucket)], bucket)
		}
		if got := ex("empty_bucket_{}"); got != "a0" {
			t.Fatalf("empty bucket fact changed: %s", got)
		}
	})

	t.Run("DAG-CBOR values: key order, floats, strings", func(t *testing.T) {
		m := map[string]any{}
		for i, k := range ff.DagCBOR["map_key_order_example_input"].([]any) {
			m[k.(string)] = i + 1
		}
		for _, c := range []struct {
			v    any
			want string
		}{{m, ex("map_key_order_example_encoding")}, {1.5, ex("float_1.5")}, {"bar", ex("value_'bar'")}} {
			b, err := DagCBOR.Encode(c.v)
			if err != nil || hex.EncodeToString(b) != c.want {
				t.Fatalf("Encode(%v) = %x, %v; want %s", c.v, b, err, c.want)
			}
		}
	})

	t.Run("what a strict DAG-CBOR decoder rejects", func(t *testing.T) {
		for name, h := range map[string]string{
			"map keys bytewise, not length-first": "a262616102616201", // {"aa":2,"b":1}
			"float32":                             "fa3fc00000",
			"non-minimal int":                     "1801",
			"NaN":                                 "fb7ff8000000000000",
			"infinity":                            "fb7ff0000000000000",
			"indefinite-length list":              "9f01ff",
			"duplicate map key":                   "a2616101616101",
			"tag other than 42":                   "c11a00000000",
			"trailing bytes":                      "0101",
			"undefined":                           "f7",
		} {
			if _, err := DagCBOR.Decode(unhex(t, h)); !errors.Is(err, ErrMalformedValue) {
				t.Errorf("%s (%s): %v, want ErrMalformedValue", name, h, err)
			}
		}
	})

	t.Run("what a DAG-CBOR encoder refuses", func(t *testing.T) {
		two64 := new(big.Int).Lsh(big.NewInt(1), 64)
		nan, inf := 0.0, 1.0
		nan, inf = nan/nan, inf/0
		for name, v := range map[string]any{"2^64": two64, "NaN": nan, "+Inf": inf, "-Inf": -inf,
			"struct": struct{}{}, "undefined CID": cid.Undef} {
			if _, err := DagCBOR.Encode(v); err == nil {
				t.Errorf("Encode(%s) succeeded", name)
			}
		}
	})
}
