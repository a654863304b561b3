package hamt

// Tests against the canonical-delete vectors py-hamt 3.5 produced (testdata/pyhamt35, see
// SOURCE.md there): histories of sets and deletes, with checkpoints, that must give py-hamt 3.5's
// roots by default and py-hamt 3.3.2's under WithLegacyDeletes.

import (
	"bytes"
	"context"
	"encoding/hex"
	"maps"
	"path/filepath"
	"slices"
	"testing"

	"github.com/ipfs/go-cid"
)

// scenario35 is one a0/a1/a2 vector.
type scenario35 struct {
	Name   string `json:"name"`
	Params struct {
		BucketSize     int  `json:"max_bucket_size"`
		ValuesAreBytes bool `json:"values_are_bytes"`
	} `json:"params"`
	OpsFile         string `json:"ops_file"`
	RootCID         string `json:"root_cid"`
	FreshRoot       string `json:"root_cid_fresh_sorted_insert_of_survivors"`
	LegacyRoot      string `json:"root_cid_py_hamt_3_3_2_same_ops"`
	FinalKeyCount   int    `json:"final_key_count"`
	NumBlocks       int    `json:"num_blocks"`
	ReachableBlocks int    `json:"reachable_blocks"`
	NodeCount       int    `json:"node_count"`
	MaxDepth        int    `json:"max_depth"`
	LargestBucket   int    `json:"largest_bucket"`
	RootNodeHex     string `json:"root_node_hex"`
	CarFile         string `json:"car_file"`
	Checkpoints     []struct {
		AfterOp    int    `json:"after_op"`
		KeyCount   int    `json:"key_count"`
		RootCID    string `json:"root_cid"`
		FreshRoot  string `json:"root_cid_fresh_sorted_insert"`
		LegacyRoot string `json:"root_cid_py_hamt_3_3_2"`
		MaxDepth   int    `json:"max_depth"`
		NodeCount  int    `json:"node_count"`
	} `json:"checkpoints"`
	// Only in a1.
	DeleteAllRoot string `json:"root_after_deleting_all_2000"`

	ops []vectorOp
}

var scenario35Files = []string{
	"a0_minimal_b1_two_colliding_keys.json", "a0_minimal_b1_delete_after_split.json",
	"a0_minimal_b2_deep_chain.json", "a1_e_2000_then_delete_1000_v35.json",
	"a2_random_history_seed101_b1_600ops.json", "a2_random_history_seed303_b3_2000ops.json",
}

func pyhamt35(name string) string { return filepath.Join("testdata", "pyhamt35", name) }

func loadScenario35(t testing.TB, file string) scenario35 {
	t.Helper()
	var sc scenario35
	readJSONFile(t, pyhamt35(file), &sc)
	readJSONFile(t, pyhamt35(sc.OpsFile), &sc.ops)
	if !sc.Params.ValuesAreBytes || len(sc.ops) == 0 || len(sc.Checkpoints) == 0 {
		t.Fatalf("%s: not a bytes history with checkpoints", file)
	}
	return sc
}

// replay35 applies the ops to a new map over cas, taking a checkpoint after each op the vector
// names (alternately MakeReadOnly then EnableWrite, as py-hamt did, and Flush, which must give the
// same root), and flushes at the end. It returns the checkpoint roots and the final root.
func replay35(t *testing.T, ctx context.Context, cas CAS, sc scenario35, opts ...Option) ([]cid.Cid, cid.Cid) {
	t.Helper()
	m, err := New(ctx, cas, Bytes, append([]Option{WithBucketSize(sc.Params.BucketSize)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	var roots []cid.Cid
	next := 0
	for i, op := range sc.ops {
		applyOp(t, ctx, m, op, unhex(t, op.ValueHex))
		if next == len(sc.Checkpoints) || sc.Checkpoints[next].AfterOp != i+1 {
			continue
		}
		var root cid.Cid
		if next%2 == 0 {
			if err := m.MakeReadOnly(ctx); err != nil {
				t.Fatal(err)
			}
			if root, err = m.Root(); err != nil {
				t.Fatal(err)
			}
			if err := m.EnableWrite(ctx); err != nil {
				t.Fatal(err)
			}
		} else if root, err = m.Flush(ctx); err != nil {
			t.Fatal(err)
		}
		roots = append(roots, root)
		next++
	}
	if next != len(sc.Checkpoints) {
		t.Fatalf("took %d of %d checkpoints: their after_op are not in order", next, len(sc.Checkpoints))
	}
	root, err := m.Flush(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return roots, root
}

// survivors35 is the map the ops leave, as key -> value bytes.
func survivors35(t testing.TB, sc scenario35) map[string][]byte {
	want := map[string][]byte{}
	for _, op := range sc.ops {
		if op.Op == "set" {
			want[op.Key] = unhex(t, op.ValueHex)
		} else {
			delete(want, op.Key)
		}
	}
	return want
}

func TestReplayOfPyHamt35HistoriesGivesItsRootsAtEveryCheckpoint(t *testing.T) {
	for _, file := range scenario35Files {
		sc := loadScenario35(t, file)
		t.Run(sc.Name, func(t *testing.T) {
			ctx := context.Background()
			cas := NewMemoryCAS()
			roots, root := replay35(t, ctx, cas, sc)
			for i, ck := range sc.Checkpoints {
				if roots[i].String() != ck.RootCID || ck.RootCID != ck.FreshRoot {
					t.Errorf("after op %d: root %s, py-hamt 3.5 %s (fresh build %s)", ck.AfterOp, roots[i], ck.RootCID, ck.FreshRoot)
				}
			}
			if root.String() != sc.RootCID || sc.RootCID != sc.FreshRoot {
				t.Fatalf("final root %s, py-hamt 3.5 %s (fresh build %s)", root, sc.RootCID, sc.FreshRoot)
			}

			// The blocks: what the root reaches is what it reaches in py-hamt's CAR, byte for
			// byte, and everything we wrote on the way (checkpoint flushes included) is exactly
			// what py-hamt wrote.
			carRoots, carBlocks := readCARFile(t, pyhamt35(sc.CarFile))
			if len(carRoots) != 1 || !carRoots[0].Equals(root) {
				t.Fatalf("CAR roots %v, want [%s]", carRoots, root)
			}
			car := NewMemoryCAS()
			for id, b := range carBlocks {
				if err := car.Put(ctx, id, b); err != nil {
					t.Fatal(err)
				}
			}
			ours, theirs := walkBlocks(t, ctx, cas, root), walkBlocks(t, ctx, car, root)
			if !maps.EqualFunc(ours.blocks, theirs.blocks, bytes.Equal) {
				t.Errorf("the root reaches %d blocks here, %d in py-hamt's CAR, not the same", len(ours.blocks), len(theirs.blocks))
			}
			if len(ours.blocks) != sc.ReachableBlocks || ours.nodes != sc.NodeCount ||
				ours.maxDepth != sc.MaxDepth || ours.largestBucket != sc.LargestBucket {
				t.Errorf("blocks %d nodes %d depth %d largest bucket %d; py-hamt %d %d %d %d",
					len(ours.blocks), ours.nodes, ours.maxDepth, ours.largestBucket,
					sc.ReachableBlocks, sc.NodeCount, sc.MaxDepth, sc.LargestBucket)
			}
			if got := hex.EncodeToString(ours.blocks[root]); got != sc.RootNodeHex {
				t.Errorf("root node bytes differ:\n got %s\nwant %s", got, sc.RootNodeHex)
			}
			if cas.Len() != sc.NumBlocks || len(carBlocks) != sc.NumBlocks {
				t.Errorf("%d blocks written, py-hamt wrote %d (its CAR holds %d)", cas.Len(), sc.NumBlocks, len(carBlocks))
			}
			for id := range carBlocks {
				if b, err := cas.Load(ctx, id); err != nil || !bytes.Equal(b, carBlocks[id]) {
					t.Fatalf("py-hamt wrote block %s, we did not: %v", id, err)
				}
			}

			// The CAR read back: every survivor with its value, and nothing else.
			want := survivors35(t, sc)
			m, err := Open(ctx, car, Bytes, root, WithVerifyBlocks())
			if err != nil {
				t.Fatal(err)
			}
			if n, err := m.Len(ctx); err != nil || n != sc.FinalKeyCount || n != len(want) {
				t.Fatalf("Len = %d, %v; want %d", n, err, sc.FinalKeyCount)
			}
			for k, v := range want {
				if got, err := m.Get(ctx, k); err != nil || !bytes.Equal(got, v) {
					t.Fatalf("Get(%q) = %x, %v; want %x", k, got, err, v)
				}
			}
		})
	}
}

func TestLegacyDeletesReplayPyHamt35HistoriesToPyHamt332Roots(t *testing.T) {
	for _, file := range scenario35Files {
		sc := loadScenario35(t, file)
		t.Run(sc.Name, func(t *testing.T) {
			roots, root := replay35(t, context.Background(), NewMemoryCAS(), sc, WithLegacyDeletes())
			for i, ck := range sc.Checkpoints {
				if roots[i].String() != ck.LegacyRoot {
					t.Errorf("after op %d: root %s, py-hamt 3.3.2 %s", ck.AfterOp, roots[i], ck.LegacyRoot)
				}
			}
			if root.String() != sc.LegacyRoot {
				t.Errorf("final root %s, py-hamt 3.3.2 %s", root, sc.LegacyRoot)
			}
		})
	}
}

// TestCanonicalDeletesOfEverySurvivorGiveTheEmptyNode: the a1 history, then every survivor
// deleted, leaves the empty node (py-hamt 3.5's root_after_deleting_all_2000).
func TestCanonicalDeletesOfEverySurvivorGiveTheEmptyNode(t *testing.T) {
	ctx := context.Background()
	sc := loadScenario35(t, "a1_e_2000_then_delete_1000_v35.json")
	m, err := New(ctx, NewMemoryCAS(), Bytes, WithBucketSize(sc.Params.BucketSize))
	if err != nil {
		t.Fatal(err)
	}
	for _, op := range sc.ops {
		applyOp(t, ctx, m, op, unhex(t, op.ValueHex))
	}
	for _, k := range slices.Sorted(maps.Keys(survivors35(t, sc))) {
		if err := m.Delete(ctx, k); err != nil {
			t.Fatal(err)
		}
	}
	if root, err := m.Flush(ctx); err != nil || root.String() != sc.DeleteAllRoot {
		t.Fatalf("root %s, %v; want the empty node %s", root, err, sc.DeleteAllRoot)
	}
}

// encAfterDeletes is the after_deletes part of e_encrypted_store_v35.json.
type encAfterDeletes struct {
	AfterDeletes struct {
		Ops []struct {
			Op           string `json:"op"`
			Key          string `json:"key"`
			PlaintextHex string `json:"plaintext_hex"`
			NonceHex     string `json:"nonce_hex"`
		} `json:"ops"`
		RootCID   string            `json:"root_cid"`
		FreshRoot string            `json:"root_cid_fresh_store_of_survivors"`
		StoredHex map[string]string `json:"stored_values_hex"`
		CarFile   string            `json:"car_file"`
	} `json:"after_deletes"`
}

// TestEncryptedStoreDeletesGivePyHamt35sRoot: py-hamt 3.5's encrypted store, with its nonces,
// two deletes after six sets: the root of a fresh store of the survivors, whose blocks are those
// of py-hamt's CAR.
func TestEncryptedStoreDeletesGivePyHamt35sRoot(t *testing.T) {
	ctx := context.Background()
	var ed encAfterDeletes
	readJSONFile(t, pyhamt35("e_encrypted_store_v35.json"), &ed)
	var enc encKeyVector
	readJSON(t, "i_encryption.json", &enc) // the key and header py-hamt used (its e vector says so)
	v := ed.AfterDeletes
	var nonces []byte
	for _, op := range v.Ops {
		nonces = append(nonces, unhex(t, op.NonceHex)...)
	}
	cas := NewMemoryCAS()
	m, err := New(ctx, cas, Bytes, WithBucketSize(4))
	if err != nil {
		t.Fatal(err)
	}
	s, err := NewEncryptedZarrStore(m, unhex(t, enc.KeyHex), unhex(t, enc.HeaderHex), WithNonceSource(bytes.NewReader(nonces)))
	if err != nil {
		t.Fatal(err)
	}
	for _, op := range v.Ops {
		if op.Op == "set" {
			err = s.Set(ctx, op.Key, unhex(t, op.PlaintextHex))
		} else {
			err = s.Delete(ctx, op.Key)
		}
		if err != nil {
			t.Fatalf("%s %q: %v", op.Op, op.Key, err)
		}
	}
	root, err := m.Flush(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if root.String() != v.RootCID || v.RootCID != v.FreshRoot {
		t.Fatalf("root %s, py-hamt 3.5 %s (fresh store %s)", root, v.RootCID, v.FreshRoot)
	}
	for k, want := range v.StoredHex {
		if got, err := m.Get(ctx, k); err != nil || !bytes.Equal(got, unhex(t, want)) {
			t.Errorf("stored %q = %x, %v; want %s", k, got, err, want)
		}
	}
	_, carBlocks := readCARFile(t, pyhamt35(v.CarFile))
	for id, b := range walkBlocks(t, ctx, cas, root).blocks {
		if !bytes.Equal(carBlocks[id], b) {
			t.Errorf("block %s is not in py-hamt's CAR as we wrote it", id)
		}
	}
}

// encKeyVector is the part of testdata/pyhamt/i_encryption.json the e vector shares.
type encKeyVector struct {
	KeyHex    string `json:"key_hex"`
	HeaderHex string `json:"header_hex"`
}
