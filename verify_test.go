package hamt

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hamt-go/hamt/internal/testdag"
	"github.com/ipfs/go-cid"
	"github.com/multiformats/go-multicodec"
	"pgregory.net/rapid"
)

// casWith is a MemoryCAS holding blocks.
func casWith(t testing.TB, blocks map[cid.Cid][]byte) *MemoryCAS {
	t.Helper()
	cas := NewMemoryCAS()
	for id, b := range blocks {
		if err := cas.Put(context.Background(), id, b); err != nil {
			t.Fatal(err)
		}
	}
	return cas
}

// mustVerify runs Verify, failing the test on an error.
func mustVerify(t testing.TB, cas CAS, root cid.Cid, opts ...Option) VerifyReport {
	t.Helper()
	rep, err := Verify(context.Background(), cas, root, opts...)
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	return rep
}

// kinds lists the kinds of ps, in order.
func kinds(ps []VerifyProblem) []ProblemKind {
	var out []ProblemKind
	for _, p := range ps {
		out = append(out, p.Kind)
	}
	return out
}

func TestVerifyPassesPyHamt35TreesWithoutWarnings(t *testing.T) {
	for _, file := range scenario35Files {
		t.Run(file, func(t *testing.T) {
			sc := loadScenario35(t, file)
			_, blocks := readCARFile(t, pyhamt35(sc.CarFile))
			root, err := cid.Decode(sc.RootCID)
			if err != nil {
				t.Fatal(err)
			}
			rep := mustVerify(t, casWith(t, blocks), root, WithBucketSize(sc.Params.BucketSize))
			if !rep.OK() || rep.WarningCount != 0 || rep.Layout != "hamt" {
				t.Fatalf("canonical py-hamt 3.5 tree: ok %v, layout %q, problems %v, warnings %v", rep.OK(), rep.Layout, rep.Problems, rep.Warnings)
			}
			if rep.Keys != sc.FinalKeyCount || rep.Nodes != sc.NodeCount {
				t.Fatalf("%d keys in %d nodes, want %d in %d", rep.Keys, rep.Nodes, sc.FinalKeyCount, sc.NodeCount)
			}
		})
	}
}

func TestVerifyWarnsOfPyHamt332LegacyDeletesButPasses(t *testing.T) {
	for _, tc := range []struct {
		file     string
		warnings bool // the vector deleted keys, leaving subtrees a canonical delete folds
	}{
		{"a_empty.json", false},
		{"b_foo_bar.json", false},
		{"c_100_ipld_values.json", false},
		{"d2_2k_bytes_bucket4.json", false},
		{"e_2000_then_delete_1000.json", true},
	} {
		t.Run(tc.file, func(t *testing.T) {
			var sc struct {
				Root string `json:"root_cid"`
				CAR  string `json:"car_file"`
				Keys int    `json:"final_key_count"`
			}
			readJSON(t, tc.file, &sc)
			_, blocks := readCAR(t, sc.CAR)
			rep := mustVerify(t, casWith(t, blocks), cid.MustParse(sc.Root))
			if !rep.OK() {
				t.Fatalf("problems in a legacy tree: %v", rep.Problems)
			}
			if rep.Keys != sc.Keys {
				t.Fatalf("%d keys, want %d", rep.Keys, sc.Keys)
			}
			if got := rep.WarningCount > 0; got != tc.warnings {
				t.Fatalf("warnings %v, want some: %v", rep.Warnings, tc.warnings)
			}
			for _, w := range rep.Warnings {
				if w.Kind != ProblemUncollapsedSubtree || !w.Warning || !w.CID.Defined() || !strings.HasPrefix(w.Path, "/") {
					t.Fatalf("warning %+v", w)
				}
			}
		})
	}
}

func TestVerifyPassesPyHamt35ShardedVectors(t *testing.T) {
	for _, name := range []string{"b_sharded_v2_8f8f13cd", "c_sharded_v1_8f8f13cd"} {
		t.Run(name, func(t *testing.T) {
			var v struct {
				CAR  string `json:"car_file"`
				Root string `json:"car_root"`
			}
			readJSONFile(t, filepath.Join("testdata", "pyhamt35", name+".json"), &v)
			cas := casWith(t, readCAR35(t, v.CAR))
			rep := mustVerify(t, cas, cid.MustParse(v.Root))
			if !rep.OK() || rep.Layout != "sharded" || rep.Keys == 0 || rep.Values == 0 || rep.Nodes < 2 {
				t.Fatalf("report %+v", rep)
			}
		})
	}
}

// tamperedCAS is a store of one's own that does not verify what it loads (as the CAS interface
// allows): a MemoryCAS whose answers for some CIDs are replaced.
type tamperedCAS struct {
	*MemoryCAS
	swap map[cid.Cid][]byte
}

func (c *tamperedCAS) Load(ctx context.Context, id cid.Cid) ([]byte, error) {
	if b, ok := c.swap[id]; ok {
		return b, nil
	}
	return c.MemoryCAS.Load(ctx, id)
}

// keysAt returns n keys whose Blake3 hashes begin with prefix.
func keysAt(prefix []byte, n int) []string {
	var out []string
	for i := 0; len(out) < n; i++ {
		k := fmt.Sprintf("k%d", i)
		if h := Blake3([]byte(k)); string(h[:len(prefix)]) == string(prefix) {
			out = append(out, k)
		}
	}
	return out
}

func TestVerifyFindsEachKindOfProblem(t *testing.T) {
	ctx := context.Background()
	key := "temp/c/0/0"
	h := Blake3([]byte(key))
	type built struct {
		cas  CAS
		root cid.Cid
		opts []Option
	}
	for _, tc := range []struct {
		name  string
		want  ProblemKind
		path  string // "" to skip the check
		build func(t *testing.T, cas *MemoryCAS) built
	}{
		{"a missing child node", ProblemMissingBlock, "/" + fmt.Sprint(h[0]), func(t *testing.T, cas *MemoryCAS) built {
			var lost testdag.Blocks
			child := testdag.SaveNode(t, &lost, map[int][]byte{int(h[1]): testdag.KeyBucket(t, cas, key)})
			return built{cas, testdag.SaveNode(t, cas, map[int][]byte{int(h[0]): testdag.LinkSlot(child)}), nil}
		}},
		{"a missing value", ProblemMissingBlock, key, func(t *testing.T, cas *MemoryCAS) built {
			var lost testdag.Blocks
			return built{cas, testdag.SaveNode(t, cas, map[int][]byte{int(h[0]): testdag.KeyBucket(t, &lost, key)}), nil}
		}},
		{"a node that does not hash to its CID", ProblemHashMismatch, "/" + fmt.Sprint(h[0]), func(t *testing.T, cas *MemoryCAS) built {
			child := testdag.SaveNode(t, cas, map[int][]byte{int(h[1]): testdag.KeyBucket(t, cas, key)})
			root := testdag.SaveNode(t, cas, map[int][]byte{int(h[0]): testdag.LinkSlot(child)})
			other := testdag.Node(map[int][]byte{int(h[1]): testdag.KeyBucket(t, cas, "x")})
			return built{&tamperedCAS{cas, map[cid.Cid][]byte{child: other}}, root, nil}
		}},
		{"a value that does not hash to its CID", ProblemHashMismatch, key, func(t *testing.T, cas *MemoryCAS) built {
			v := testdag.Save(t, cas, []byte("value"), multicodec.Raw)
			root := testdag.SaveNode(t, cas, map[int][]byte{int(h[0]): testdag.Bucket(testdag.Entry(key, v))})
			return built{&tamperedCAS{cas, map[cid.Cid][]byte{v: []byte("vaLue")}}, root, nil}
		}},
		{"a node that is not a node", ProblemMalformedNode, "/" + fmt.Sprint(h[0]), func(t *testing.T, cas *MemoryCAS) built {
			child := testdag.Save(t, cas, []byte{0x80}, multicodec.DagCbor)
			return built{cas, testdag.SaveNode(t, cas, map[int][]byte{int(h[0]): testdag.LinkSlot(child)}), nil}
		}},
		{"a bucket with a non-minimal length", ProblemNotCanonical, "/", func(t *testing.T, cas *MemoryCAS) built {
			b := testdag.KeyBucket(t, cas, key)
			b = append([]byte{0xb8, 0x01}, b[1:]...) // map of 1 written in two bytes
			return built{cas, testdag.SaveNode(t, cas, map[int][]byte{int(h[0]): b}), nil}
		}},
		{"a bucket out of order", ProblemUnsortedBucket, "/", func(t *testing.T, cas *MemoryCAS) built {
			ks := keysAt(h[:1], 2)
			v := testdag.Save(t, cas, []byte("v"), multicodec.Raw)
			if keyLess(ks[0], ks[1]) {
				ks[0], ks[1] = ks[1], ks[0]
			}
			b := testdag.Bucket(testdag.Entry(ks[0], v), testdag.Entry(ks[1], v)) // the later key first
			return built{cas, testdag.SaveNode(t, cas, map[int][]byte{int(h[0]): b}), nil}
		}},
		{"a key off its hash path", ProblemKeyOffPath, key, func(t *testing.T, cas *MemoryCAS) built {
			return built{cas, testdag.SaveNode(t, cas, map[int][]byte{int(h[0] + 1): testdag.KeyBucket(t, cas, key)}), nil}
		}},
		{"a node reached twice", ProblemReachedTwice, "", func(t *testing.T, cas *MemoryCAS) built {
			return built{cas, testdag.Diamond(t, cas, key, h, 1, func(int) []int { return []int{int(h[0]), int(h[0] + 1)} }), nil}
		}},
		{"an empty node below the root", ProblemEmptyNode, "/" + fmt.Sprint(h[0]), func(t *testing.T, cas *MemoryCAS) built {
			empty := testdag.SaveNode(t, cas, nil)
			return built{cas, testdag.SaveNode(t, cas, map[int][]byte{int(h[0]): testdag.LinkSlot(empty), int(h[0] + 1): testdag.KeyBucket(t, cas, "x")}), nil}
		}},
		{"a node deeper than the hash", ProblemTooDeep, "/" + fmt.Sprint(h[0]), func(t *testing.T, cas *MemoryCAS) built {
			oneByte := func(b []byte) []byte { return Blake3(b)[:1] }
			child := testdag.SaveNode(t, cas, map[int][]byte{int(h[1]): testdag.KeyBucket(t, cas, key)})
			return built{cas, testdag.SaveNode(t, cas, map[int][]byte{int(h[0]): testdag.LinkSlot(child)}), []Option{WithHash(oneByte)}}
		}},
		{"a bucket over the bucket size", ProblemBucketTooLarge, "/" + fmt.Sprint(h[0]), func(t *testing.T, cas *MemoryCAS) built {
			ks := keysAt(h[:1], 2)
			if !keyLess(ks[0], ks[1]) {
				ks[0], ks[1] = ks[1], ks[0]
			}
			v := testdag.Save(t, cas, []byte("v"), multicodec.Raw)
			b := testdag.Bucket(testdag.Entry(ks[0], v), testdag.Entry(ks[1], v))
			return built{cas, testdag.SaveNode(t, cas, map[int][]byte{int(h[0]): b}), []Option{WithBucketSize(1)}}
		}},
		{"a file value that is not a UnixFS file", ProblemMalformedValue, key, func(t *testing.T, cas *MemoryCAS) built {
			v := testdag.Save(t, cas, []byte("not protobuf"), multicodec.DagPb)
			return built{cas, testdag.SaveNode(t, cas, map[int][]byte{int(h[0]): testdag.Bucket(testdag.Entry(key, v))}), nil}
		}},
		{"a file value missing a leaf", ProblemMissingBlock, key, func(t *testing.T, cas *MemoryCAS) built {
			data := []byte(strings.Repeat("0123456789", 100))
			v, blocks, err := testdag.ImportFile(ctx, data, 256, testdag.KuboMaxLinks)
			if err != nil {
				t.Fatal(err)
			}
			for _, b := range blocks[:len(blocks)-1] { // the last leaf is lost
				if err := cas.Put(ctx, b.ID, b.Data); err != nil {
					t.Fatal(err)
				}
			}
			return built{cas, testdag.SaveNode(t, cas, map[int][]byte{int(h[0]): testdag.Bucket(testdag.Entry(key, v))}), nil}
		}},
		{"a missing root", ProblemMissingBlock, "/", func(t *testing.T, cas *MemoryCAS) built {
			var lost testdag.Blocks
			return built{cas, testdag.SaveNode(t, &lost, nil), nil}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := tc.build(t, NewMemoryCAS())
			rep := mustVerify(t, b.cas, b.root, b.opts...)
			if rep.OK() || !slices.Contains(kinds(rep.Problems), tc.want) {
				t.Fatalf("problems %v, want one %q", rep.Problems, tc.want)
			}
			for _, p := range rep.Problems {
				if p.Kind == tc.want && (tc.path == "" || p.Path == tc.path) && p.Message != "" && p.CID.Defined() {
					return
				}
			}
			t.Fatalf("no %q problem at %q with a message and CID: %+v", tc.want, tc.path, rep.Problems)
		})
	}
}

func TestVerifyWarnsOfASubtreeACanonicalDeleteFolds(t *testing.T) {
	cas := NewMemoryCAS()
	key := "temp/c/0/0"
	h := Blake3([]byte(key))
	child := testdag.SaveNode(t, cas, map[int][]byte{int(h[1]): testdag.KeyBucket(t, cas, key)})
	root := testdag.SaveNode(t, cas, map[int][]byte{int(h[0]): testdag.LinkSlot(child)})
	rep := mustVerify(t, cas, root)
	if !rep.OK() || len(rep.Warnings) != 1 || rep.Warnings[0].Kind != ProblemUncollapsedSubtree || rep.Warnings[0].CID != child ||
		rep.Warnings[0].Path != fmt.Sprintf("/%d", h[0]) {
		t.Fatalf("report %+v", rep)
	}
}

func TestVerifyKeepsMaxProblemsAndStreamsThemAll(t *testing.T) {
	cas := NewMemoryCAS()
	slots := map[int][]byte{}
	for i := range 10 { // ten keys, each off its path
		k := fmt.Sprintf("key %d", i)
		slots[int(Blake3([]byte(k))[0]+1)] = testdag.KeyBucket(t, cas, k)
	}
	root := testdag.SaveNode(t, cas, slots)
	var streamed []VerifyProblem
	rep := mustVerify(t, cas, root, WithMaxProblems(3), WithProblemFunc(func(p VerifyProblem) { streamed = append(streamed, p) }))
	if rep.ProblemCount != len(slots) || len(rep.Problems) != 3 || rep.Truncated != len(slots)-3 || len(streamed) != len(slots) {
		t.Fatalf("%d problems, %d kept, %d truncated, %d streamed", rep.ProblemCount, len(rep.Problems), rep.Truncated, len(streamed))
	}
	if _, err := Verify(context.Background(), cas, root, WithMaxProblems(-1)); err == nil {
		t.Fatal("a negative WithMaxProblems is accepted")
	}
}

// valueIOFailCAS fails every load of a value block for I/O (not a missing block).
type valueIOFailCAS struct{ *MemoryCAS }

var _ CAS = valueIOFailCAS{}

var errDiskOnFire = errors.New("disk on fire")

func (c valueIOFailCAS) Load(ctx context.Context, id cid.Cid) ([]byte, error) {
	if id.Prefix().Codec == uint64(multicodec.Raw) {
		return nil, errDiskOnFire
	}
	return c.MemoryCAS.Load(ctx, id)
}

func TestVerifyStopsWithAnErrorOnIOFailureOrCancel(t *testing.T) {
	ctx := context.Background()
	cas := NewMemoryCAS()
	m, err := New(ctx, cas, Bytes)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 200 {
		if err := m.Set(ctx, fmt.Sprint(i), []byte{byte(i)}); err != nil {
			t.Fatal(err)
		}
	}
	root, err := m.Flush(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Verify(ctx, valueIOFailCAS{cas}, root); !errors.Is(err, errDiskOnFire) {
		t.Fatalf("a failing store gives %v", err)
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := Verify(cancelled, cas, root); !errors.Is(err, context.Canceled) {
		t.Fatalf("a cancelled verify gives %v", err)
	}
}

// shardedFixture is a v2 store (three metadata keys, the root group made for 0) with array 0/temp (4×6 in 2×2 chunks: 6 chunks, 4 a shard, so
// shard 1 has two padding entries), every chunk written, flushed: its root and CAS.
func shardedFixture(t *testing.T) (*MemoryCAS, cid.Cid) {
	t.Helper()
	cas := NewMemoryCAS()
	s := newV2Store(t, cas, "0/zarr.json", `{"zarr_format":3,"node_type":"group"}`, "0/temp/zarr.json", temp4x6)
	for i := range 2 {
		for j := range 3 {
			if err := s.Set(context.Background(), fmt.Sprintf("0/temp/c/%d/%d", i, j), []byte{byte(i), byte(j)}); err != nil {
				t.Fatal(err)
			}
		}
	}
	root, err := s.Flush(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return cas, root
}

// editShardedRoot saves a copy of root with edit applied to its decoded form.
func editShardedRoot(t *testing.T, cas *MemoryCAS, root cid.Cid, edit func(m map[string]any)) cid.Cid {
	t.Helper()
	b, err := cas.Load(context.Background(), root)
	if err != nil {
		t.Fatal(err)
	}
	doc, err := DagCBOR.Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	edit(doc.(map[string]any))
	nb, err := DagCBOR.Encode(doc)
	if err != nil {
		t.Fatal(err)
	}
	return testdag.Save(t, cas, nb, multicodec.DagCbor)
}

// shardCIDs is the shard list of array 0/temp of a decoded v2 root.
func shardCIDs(m map[string]any) []any {
	return m["arrays"].(map[string]any)["0/temp"].(map[string]any)["shard_cids"].([]any)
}

func TestVerifyFindsEachKindOfProblemOfAShardedDataset(t *testing.T) {
	ctx := context.Background()
	clean, cleanRoot := shardedFixture(t)
	if rep := mustVerify(t, clean, cleanRoot); !rep.OK() || rep.Layout != "sharded" || rep.Keys != 9 || rep.Nodes != 3 {
		t.Fatalf("clean sharded dataset: %+v", rep)
	}
	for _, tc := range []struct {
		name string
		want ProblemKind
		path string
		edit func(t *testing.T, cas *MemoryCAS, m map[string]any)
	}{
		{"a shard count that does not match the grid", ProblemMalformedRoot, "/", func(t *testing.T, cas *MemoryCAS, m map[string]any) {
			a := m["arrays"].(map[string]any)["0/temp"].(map[string]any)
			a["shard_cids"] = append(shardCIDs(m), nil)
		}},
		{"a missing shard", ProblemMissingBlock, `array "0/temp" shard 1`, func(t *testing.T, cas *MemoryCAS, m map[string]any) {
			var lost testdag.Blocks
			shardCIDs(m)[1] = testdag.Save(t, &lost, []byte{0x84, 0xf6, 0xf6, 0xf6, 0xf6}, multicodec.DagCbor)
		}},
		{"a shard of the wrong length", ProblemMalformedShard, `array "0/temp" shard 1`, func(t *testing.T, cas *MemoryCAS, m map[string]any) {
			shardCIDs(m)[1] = testdag.Save(t, cas, []byte{0x83, 0xf6, 0xf6, 0xf6}, multicodec.DagCbor)
		}},
		{"a chunk past the grid", ProblemChunkOutOfGrid, `array "0/temp" shard 1`, func(t *testing.T, cas *MemoryCAS, m map[string]any) {
			v := testdag.Save(t, cas, []byte("v"), multicodec.Raw)
			shard := testdag.Cat([]byte{0x84, 0xf6, 0xf6, 0xf6}, testdag.Link(v)) // entry 3: chunk 7 of 6
			shardCIDs(m)[1] = testdag.Save(t, cas, shard, multicodec.DagCbor)
		}},
		{"a missing chunk", ProblemMissingBlock, "0/temp/c/1/1", func(t *testing.T, cas *MemoryCAS, m map[string]any) {
			var lost testdag.Blocks
			v := testdag.Save(t, &lost, []byte("v"), multicodec.Raw)
			shard := testdag.Cat([]byte{0x84}, testdag.Link(v), []byte{0xf6, 0xf6, 0xf6}) // entry 0: chunk 4, at (1, 1)
			shardCIDs(m)[1] = testdag.Save(t, cas, shard, multicodec.DagCbor)
		}},
		{"a missing metadata value", ProblemMissingBlock, "0/zarr.json", func(t *testing.T, cas *MemoryCAS, m map[string]any) {
			var lost testdag.Blocks
			m["metadata"].(map[string]any)["0/zarr.json"] = testdag.Save(t, &lost, []byte("{}"), multicodec.Raw)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cas, root := shardedFixture(t)
			bad := editShardedRoot(t, cas, root, func(m map[string]any) { tc.edit(t, cas, m) })
			rep, err := Verify(ctx, cas, bad)
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range rep.Problems {
				if p.Kind == tc.want && p.Path == tc.path && p.CID.Defined() && p.Message != "" {
					return
				}
			}
			t.Fatalf("no %q problem at %q: %+v", tc.want, tc.path, rep.Problems)
		})
	}
}

func TestVerifyReportsRandomMapsClean(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		ctx := context.Background()
		bucket := rapid.IntRange(1, 4).Draw(rt, "bucket")
		legacy := rapid.Bool().Draw(rt, "legacy")
		opts := []Option{WithBucketSize(bucket), WithHash(func(b []byte) []byte {
			h := Blake3(b)
			h[0] &= 3 // few first bytes: deep trees with few keys
			return h
		})}
		if legacy {
			opts = append(opts, WithLegacyDeletes())
		}
		cas := NewMemoryCAS()
		m, err := New(ctx, cas, Bytes, opts...)
		if err != nil {
			rt.Fatal(err)
		}
		model := map[string][]byte{}
		for range rapid.IntRange(0, 150).Draw(rt, "ops") {
			k := rapid.StringMatching(`[a-z]{1,2}`).Draw(rt, "key")
			if _, ok := model[k]; ok && rapid.IntRange(0, 2).Draw(rt, "delete") > 0 {
				if err := m.Delete(ctx, k); err != nil {
					rt.Fatal(err)
				}
				delete(model, k)
				continue
			}
			v := []byte(k + "!")
			if err := m.Set(ctx, k, v); err != nil {
				rt.Fatal(err)
			}
			model[k] = v
		}
		root, err := m.Flush(ctx)
		if err != nil {
			rt.Fatal(err)
		}
		rep, err := Verify(ctx, cas, root, opts...)
		if err != nil {
			rt.Fatal(err)
		}
		if !rep.OK() || rep.Keys != len(model) {
			rt.Fatalf("%d keys (model %d), problems %v", rep.Keys, len(model), rep.Problems)
		}
		if !legacy && rep.WarningCount != 0 {
			rt.Fatalf("canonical deletes left warnings %v", rep.Warnings)
		}
		distinct := map[string]bool{}
		for _, v := range slices.Collect(maps.Values(model)) {
			distinct[string(v)] = true
		}
		if rep.Values != len(distinct) {
			rt.Fatalf("%d values checked, %d distinct", rep.Values, len(distinct))
		}
	})
}

// slowNodesCAS is a store with latency: every node load takes 100µs, so walks load nodes ahead.
type slowNodesCAS struct{ *MemoryCAS }

func (c slowNodesCAS) Load(ctx context.Context, id cid.Cid) ([]byte, error) {
	if id.Prefix().Codec == uint64(multicodec.DagCbor) {
		time.Sleep(100 * time.Microsecond)
	}
	return c.MemoryCAS.Load(ctx, id)
}

// On a store with latency the walk loads nodes ahead; a subtree it leaves (a node reached twice)
// has its loads ahead dropped, and the walk still reports each fault once.
func TestVerifyOfADAGOnASlowStoreReportsEveryNodeReachedTwice(t *testing.T) {
	cas := NewMemoryCAS()
	key := "temp/c/0/0"
	h := Blake3([]byte(key))
	var leafSlots []int
	for s := 0; len(leafSlots) < 8; s++ {
		if s != int(h[1]) {
			leafSlots = append(leafSlots, s)
		}
	}
	// Every slot of the root links to one middle node, which links to the leaf from 8 slots, all
	// off the key's path.
	root := testdag.Diamond(t, cas, key, h, 2, func(d int) []int {
		if d == 0 {
			return testdag.AllSlots(d)
		}
		return leafSlots
	})
	rep := mustVerify(t, slowNodesCAS{cas}, root, WithMaxProblems(0))
	counts := map[ProblemKind]int{}
	rep2 := mustVerify(t, slowNodesCAS{cas}, root, WithProblemFunc(func(p VerifyProblem) { counts[p.Kind]++ }))
	if rep.ProblemCount != 255+8 || rep2.ProblemCount != rep.ProblemCount || counts[ProblemReachedTwice] != 255+7 || counts[ProblemKeyOffPath] != 1 {
		t.Fatalf("%d problems, then %d: %v", rep.ProblemCount, rep2.ProblemCount, counts)
	}
}
