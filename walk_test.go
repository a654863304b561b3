package hamt_test

// Hostile trees: hand-built DAGs that are valid block by block but not as a HAMT (a node reached
// twice, a key off its hash path, an empty node below the root). Every traversal of a whole tree
// must reject them with ErrMalformedNode, having done little work: never the exponential walk a
// diamond of five blocks asks for.

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"iter"
	"path/filepath"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hamt-go/hamt"
	"github.com/hamt-go/hamt/internal/testdag"
	"github.com/ipfs/go-cid"
	"github.com/multiformats/go-multicodec"
)

// walkHash is the BLAKE3 hash of key, which places it in the trie.
func walkHash(key string) []byte { return hamt.Blake3([]byte(key)) }

// walkFindKey returns the first key "prefix-i" whose hash satisfies ok.
func walkFindKey(t testing.TB, prefix string, ok func(h []byte) bool) string {
	t.Helper()
	for i := range 1 << 20 {
		k := fmt.Sprintf("%s-%d", prefix, i)
		if ok(walkHash(k)) {
			return k
		}
	}
	t.Fatalf("no key %s-i fits", prefix)
	return ""
}

// walkHostile is a hostile tree: its root and the keys its blocks hold.
type walkHostile struct {
	name string
	root cid.Cid
	keys int
}

// walkHostileTrees builds every hostile shape in cas.
func walkHostileTrees(t testing.TB, cas *hamt.MemoryCAS) []walkHostile {
	t.Helper()
	var out []walkHostile

	// The diamond of the issue: 5 blocks, 256^3 paths to the leaf. Its key is on no path but
	// one, which the walk takes last: the key check fails first.
	out = append(out, walkHostile{"a diamond of 5 blocks whose every slot links to the node below",
		testdag.Diamond(t, cas, "diamond", walkHash("diamond"), 4, testdag.AllSlots), 1})

	// A diamond whose first path (the highest slots: keys() descends from the top) is the key's
	// own, so the key check passes there and only the second visit gives it away.
	onPath := walkFindKey(t, "onpath", func(h []byte) bool { return h[0] > 128 && h[1] > 128 && h[2] > 128 && h[3] > 128 })
	out = append(out, walkHostile{"a diamond of 5 blocks whose first path is its key's own",
		testdag.Diamond(t, cas, onPath, walkHash(onPath), 4, func(d int) []int {
			var s []int
			for i := 0; i <= int(walkHash(onPath)[d]); i++ {
				s = append(s, i)
			}
			return s
		}), 1})

	// A key in a slot of the root that is not its own.
	k := "wrong-slot"
	out = append(out, walkHostile{"a key in another slot of the root",
		testdag.SaveNode(t, cas, map[int][]byte{(badSlot(k, 0) + 1) % 256: testdag.KeyBucket(t, cas, k)}), 1})

	// A key on its path at depth 0 but in another slot of the child.
	k = "wrong-child-slot"
	child := testdag.SaveNode(t, cas, map[int][]byte{(badSlot(k, 1) + 7) % 256: testdag.KeyBucket(t, cas, k)})
	out = append(out, walkHostile{"a key in its slot at depth 0 but not at depth 1",
		testdag.SaveNode(t, cas, map[int][]byte{badSlot(k, 0): testdag.LinkSlot(child)}), 1})

	// A node under two different parents, its key on the path through the first one walked.
	// The parents differ (the second holds a key of its own), so only the child is shared.
	second := walkFindKey(t, "second-parent", func(h []byte) bool { return h[0] < 255 })
	shared := walkFindKey(t, "shared", func(h []byte) bool {
		return h[0] > walkHash(second)[0] && h[1] != walkHash(second)[1]
	})
	hs, h2 := walkHash(shared), walkHash(second)
	sharedNode := testdag.SaveNode(t, cas, map[int][]byte{int(hs[2]): testdag.KeyBucket(t, cas, shared)})
	p1 := testdag.SaveNode(t, cas, map[int][]byte{int(hs[1]): testdag.LinkSlot(sharedNode)})
	p2 := testdag.SaveNode(t, cas, map[int][]byte{int(hs[1]): testdag.LinkSlot(sharedNode), int(h2[1]): testdag.KeyBucket(t, cas, second)})
	out = append(out, walkHostile{"a node linked from two different parents",
		testdag.SaveNode(t, cas, map[int][]byte{int(hs[0]): testdag.LinkSlot(p1), int(h2[0]): testdag.LinkSlot(p2)}), 2})

	// An empty node below the root (a delete never leaves one).
	empty := testdag.SaveNode(t, cas, nil)
	out = append(out, walkHostile{"an empty node below the root",
		testdag.SaveNode(t, cas, map[int][]byte{9: testdag.LinkSlot(empty)}), 0})
	return out
}

// walkCountingCAS counts the blocks loaded through it.
type walkCountingCAS struct {
	hamt.CAS
	loads atomic.Int64 // walks may load ahead on goroutines
}

func (c *walkCountingCAS) Load(ctx context.Context, id cid.Cid) ([]byte, error) {
	c.loads.Add(1)
	return c.CAS.Load(ctx, id)
}

// walkKeysOf drains seq, returning how many keys it yielded and its error.
func walkKeysOf(seq iter.Seq2[string, error]) (int, error) {
	n := 0
	for _, err := range seq {
		if err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}

// walkDeadline bounds each traversal. Every one below finishes in milliseconds; without the
// checks they run for minutes (and the deadline turns that into a failure, not a hang).
const walkDeadline = 20 * time.Second

func TestEveryTraversalRejectsHostileTreesQuickly(t *testing.T) {
	mem := hamt.NewMemoryCAS()
	trees := walkHostileTrees(t, mem)
	good := testdag.SaveNode(t, mem, map[int][]byte{badSlot("good", 0): testdag.KeyBucket(t, mem, "good")})
	other := testdag.Diamond(t, mem, "another diamond", walkHash("another diamond"), 4, testdag.AllSlots)

	for _, tr := range trees {
		t.Run(tr.name, func(t *testing.T) {
			traversals := []struct {
				name string
				run  func(ctx context.Context, cas hamt.CAS) (keys int, err error)
			}{
				{"Keys in read-only mode", func(ctx context.Context, cas hamt.CAS) (int, error) {
					m, err := hamt.Open(ctx, cas, hamt.Bytes, tr.root)
					if err != nil {
						return 0, err
					}
					return walkKeysOf(m.Keys(ctx))
				}},
				{"Keys in read-only mode, walked again", func(ctx context.Context, cas hamt.CAS) (int, error) {
					// The second walk finds the nodes of the first cached and remembered as
					// checked: it must not trust them at another position.
					m, err := hamt.Open(ctx, cas, hamt.Bytes, tr.root)
					if err != nil {
						return 0, err
					}
					if _, err := walkKeysOf(m.Keys(ctx)); !errors.Is(err, hamt.ErrMalformedNode) {
						return 0, fmt.Errorf("first walk: %w", err)
					}
					return walkKeysOf(m.Keys(ctx))
				}},
				{"Keys in write mode", func(ctx context.Context, cas hamt.CAS) (int, error) {
					m, err := hamt.Open(ctx, cas, hamt.Bytes, tr.root)
					if err != nil {
						return 0, err
					}
					if err := m.EnableWrite(ctx); err != nil {
						return 0, err
					}
					return walkKeysOf(m.Keys(ctx))
				}},
				{"Keys in write mode, walked again", func(ctx context.Context, cas hamt.CAS) (int, error) {
					m, err := hamt.Open(ctx, cas, hamt.Bytes, tr.root)
					if err != nil {
						return 0, err
					}
					if err := m.EnableWrite(ctx); err != nil {
						return 0, err
					}
					if _, err := walkKeysOf(m.Keys(ctx)); !errors.Is(err, hamt.ErrMalformedNode) {
						return 0, fmt.Errorf("first walk: %w", err)
					}
					return walkKeysOf(m.Keys(ctx))
				}},
				{"Len in read-only mode", func(ctx context.Context, cas hamt.CAS) (int, error) {
					m, err := hamt.Open(ctx, cas, hamt.Bytes, tr.root)
					if err != nil {
						return 0, err
					}
					_, err = m.Len(ctx) // its count is of no use after an error
					return 0, err
				}},
				{"Len in write mode", func(ctx context.Context, cas hamt.CAS) (int, error) {
					m, err := hamt.Open(ctx, cas, hamt.Bytes, tr.root)
					if err != nil {
						return 0, err
					}
					if err := m.EnableWrite(ctx); err != nil {
						return 0, err
					}
					_, err = m.Len(ctx)
					return 0, err
				}},
				{"Inspect", func(ctx context.Context, cas hamt.CAS) (int, error) {
					_, err := hamt.Inspect(ctx, cas, tr.root, true)
					return 0, err
				}},
				{"Diff from a good root", func(ctx context.Context, cas hamt.CAS) (int, error) {
					n := 0
					for _, err := range hamt.Diff(ctx, cas, good, tr.root) {
						if err != nil {
							return n, err
						}
						n++
					}
					return n, nil
				}},
				{"Diff to a good root", func(ctx context.Context, cas hamt.CAS) (int, error) {
					n := 0
					for _, err := range hamt.Diff(ctx, cas, tr.root, good) {
						if err != nil {
							return n, err
						}
						n++
					}
					return n, nil
				}},
				{"Diff against another diamond", func(ctx context.Context, cas hamt.CAS) (int, error) {
					n := 0
					for _, err := range hamt.Diff(ctx, cas, other, tr.root) {
						if err != nil {
							return n, err
						}
						n++
					}
					return n, nil
				}},
				{"WriteCAR", func(ctx context.Context, cas hamt.CAS) (int, error) {
					var buf bytes.Buffer
					_, err := hamt.WriteCAR(ctx, cas, tr.root, &buf)
					return 0, err
				}},
				{"ZarrStore.List", func(ctx context.Context, cas hamt.CAS) (int, error) {
					return walkKeysOf(walkZarr(ctx, t, cas, tr.root).List(ctx))
				}},
				{"ZarrStore.ListPrefix", func(ctx context.Context, cas hamt.CAS) (int, error) {
					return walkKeysOf(walkZarr(ctx, t, cas, tr.root).ListPrefix(ctx, ""))
				}},
				{"ZarrStore.ListDir", func(ctx context.Context, cas hamt.CAS) (int, error) {
					names, err := walkZarr(ctx, t, cas, tr.root).ListDir(ctx, "")
					return len(names), err
				}},
				{"ZarrStore.FS and fs.WalkDir", func(ctx context.Context, cas hamt.CAS) (int, error) {
					fsys, err := walkZarr(ctx, t, cas, tr.root).FS(ctx)
					if err != nil {
						return 0, err
					}
					n := 0
					err = fs.WalkDir(fsys, ".", func(_ string, d fs.DirEntry, err error) error {
						if err == nil && !d.IsDir() {
							n++
						}
						return err
					})
					return n, err
				}},
				{"ExportDir", func(ctx context.Context, cas hamt.CAS) (int, error) {
					st, err := hamt.ExportDir(ctx, walkZarr(ctx, t, cas, tr.root), filepath.Join(t.TempDir(), "out"))
					return st.Files, err
				}},
			}
			for _, tv := range traversals {
				t.Run(tv.name, func(t *testing.T) {
					ctx, cancel := context.WithTimeout(context.Background(), walkDeadline)
					defer cancel()
					cas := &walkCountingCAS{CAS: mem}
					keys, err := tv.run(ctx, cas)
					if !errors.Is(err, hamt.ErrMalformedNode) {
						t.Fatalf("got %d keys and %v; want ErrMalformedNode", keys, err)
					}
					// The walk stopped at the first sign: it read each block at most a few times
					// and reported no key more often than the blocks hold keys.
					if loads := cas.loads.Load(); keys > tr.keys || loads > 64 {
						t.Fatalf("%d keys reported and %d blocks loaded before %v", keys, loads, err)
					}
				})
			}
		})
	}
}

// walkZarr opens root as a read-only ZarrStore.
func walkZarr(ctx context.Context, t *testing.T, cas hamt.CAS, root cid.Cid) *hamt.ZarrStore {
	t.Helper()
	m, err := hamt.Open(ctx, cas, hamt.Bytes, root)
	if err != nil {
		t.Fatal(err)
	}
	s, err := hamt.NewZarrStore(m)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestAHostileTreeIsReportedWithItsNodeDepthAndKey(t *testing.T) {
	ctx := context.Background()
	mem := hamt.NewMemoryCAS()
	for _, tr := range walkHostileTrees(t, mem) {
		m, err := hamt.Open(ctx, mem, hamt.Bytes, tr.root)
		if err != nil {
			t.Fatal(err)
		}
		_, err = m.Len(ctx)
		msg := fmt.Sprint(err)
		if !errors.Is(err, hamt.ErrMalformedNode) || !bytes.Contains([]byte(msg), []byte("depth")) || !bytes.Contains([]byte(msg), []byte("bafy")) {
			t.Errorf("%s: %v; want ErrMalformedNode naming a node and a depth", tr.name, err)
		}
	}
}

// TestValidTreesStillWalk: the checks accept what the map writes, with either hash function,
// in both modes, and in every tool (the control for the rejections above).
func TestValidTreesStillWalk(t *testing.T) {
	ctx := context.Background()
	for _, hash := range []struct {
		name string
		fn   hamt.HashFunc
	}{{"Blake3", hamt.Blake3}, {"XXH64", hamt.XXH64}} {
		t.Run(hash.name, func(t *testing.T) {
			cas := hamt.NewMemoryCAS()
			m, err := hamt.New(ctx, cas, hamt.Bytes, hamt.WithHash(hash.fn), hamt.WithBucketSize(1))
			if err != nil {
				t.Fatal(err)
			}
			want := badFill(t, m, 3000) // bucket size 1: nodes down to depth 2 and more
			root, err := m.Flush(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if n, err := walkKeysOf(m.Keys(ctx)); err != nil || n != len(want) {
				t.Fatalf("write-mode Keys: %d, %v", n, err)
			}
			ro, err := hamt.Open(ctx, cas, hamt.Bytes, root, hamt.WithHash(hash.fn))
			if err != nil {
				t.Fatal(err)
			}
			for range 2 { // cold, then warm (the nodes remember being checked)
				if n, err := walkKeysOf(ro.Keys(ctx)); err != nil || n != len(want) {
					t.Fatalf("read-only Keys: %d, %v", n, err)
				}
			}
			// With no cache every node is loaded (and checked) afresh on every walk.
			uncached, err := hamt.Open(ctx, cas, hamt.Bytes, root, hamt.WithHash(hash.fn), hamt.WithCacheBytes(0))
			if err != nil {
				t.Fatal(err)
			}
			for range 2 {
				if n, err := uncached.Len(ctx); err != nil || n != len(want) {
					t.Fatalf("Len without a cache: %d, %v", n, err)
				}
			}
			st, err := hamt.Inspect(ctx, cas, root, false, hamt.WithHash(hash.fn))
			if err != nil || st.Keys != len(want) || len(st.NodesAtDepth) < 3 {
				t.Fatalf("Inspect: %+v, %v", st, err)
			}
			var buf bytes.Buffer
			if _, err := hamt.WriteCAR(ctx, cas, root, &buf, hamt.WithHash(hash.fn)); err != nil {
				t.Fatalf("WriteCAR: %v", err)
			}
			if err := m.Delete(ctx, "key-7"); err != nil {
				t.Fatal(err)
			}
			other, err := m.Flush(ctx)
			if err != nil {
				t.Fatal(err)
			}
			var changes []hamt.Change
			for c, err := range hamt.Diff(ctx, cas, root, other, hamt.WithHash(hash.fn)) {
				if err != nil {
					t.Fatal(err)
				}
				changes = append(changes, c)
			}
			if len(changes) != 1 || changes[0].Key != "key-7" || changes[0].Kind != hamt.Removed {
				t.Fatalf("Diff: %+v", changes)
			}
			if hash.name == "XXH64" {
				// The tools check keys against the hash they are told of: the default is Blake3.
				if _, err := hamt.Inspect(ctx, cas, root, false); !errors.Is(err, hamt.ErrMalformedNode) {
					t.Fatalf("Inspect of an XXH64 map as Blake3: %v; want ErrMalformedNode", err)
				}
			}
		})
	}
}

// walkFuzzHash is the hash the fuzz target's trees use: a key's first 4 bytes. The fuzzer then
// chooses where keys belong, so its trees are valid often enough to test both verdicts.
func walkFuzzHash(b []byte) []byte {
	h := make([]byte, 4)
	copy(h, b)
	return h
}

// walkFuzzTree is a small DAG described by fuzz input: nodes[0] is the root; a node links only
// to nodes after it, so the graph has no cycle but may share nodes.
type walkFuzzTree struct {
	links   []map[int]int      // node -> slot -> linked node
	buckets []map[int][]string // node -> slot -> keys (4 bytes each, all below 0x80)
}

// walkParseFuzzTree reads data as: a node count, then 6-byte operations (node, slot and kind,
// then a link target or a key). A key operation with its aim bit set puts the first bytes of its
// key on the path a walk first reaches its node by, and so on its hash path there.
func walkParseFuzzTree(data []byte) walkFuzzTree {
	n := 1 + int(data[0]%6)
	data = data[1:]
	t := walkFuzzTree{links: make([]map[int]int, n), buckets: make([]map[int][]string, n)}
	for i := range n {
		t.links[i], t.buckets[i] = map[int]int{}, map[int][]string{}
	}
	type keyOp struct {
		node, slot int
		aim        bool
		raw        [4]byte
	}
	var keyOps []keyOp
	for ; len(data) >= 6; data = data[6:] {
		i, slot := int(data[0])%n, int(data[1]&0x7f)
		if data[1]&0x80 != 0 {
			if _, ok := t.links[i][slot]; !ok && i < n-1 {
				t.links[i][slot] = i + 1 + int(data[2])%(n-i-1)
			}
			continue
		}
		keyOps = append(keyOps, keyOp{i, slot, data[2]&0x80 != 0, [4]byte{data[2] & 0x7f, data[3] & 0x7f, data[4] & 0x7f, data[5] & 0x7f}})
	}
	// The path by which a walk (keys() order: highest slot first) first reaches each node.
	paths := make([][]byte, n)
	var first func(i int, path []byte)
	first = func(i int, path []byte) {
		if paths[i] != nil {
			return
		}
		paths[i] = path
		for s := 255; s >= 0; s-- {
			if j, ok := t.links[i][s]; ok {
				first(j, append(path[:len(path):len(path)], byte(s)))
			}
		}
	}
	first(0, []byte{})
	for _, op := range keyOps {
		if _, ok := t.links[op.node][op.slot]; ok {
			continue
		}
		key := op.raw
		if p := paths[op.node]; op.aim && p != nil && len(p) < 4 {
			copy(key[:], append(append([]byte(nil), p...), byte(op.slot)))
		}
		if !slices.Contains(t.buckets[op.node][op.slot], string(key[:])) {
			t.buckets[op.node][op.slot] = append(t.buckets[op.node][op.slot], string(key[:]))
		}
	}
	return t
}

// valid judges the tree by the rules walkTree enforces, on the description alone: no node
// reached twice, none empty below the root or deeper than the hash, every key on its path. It
// returns the keys of a valid tree.
func (t walkFuzzTree) valid() ([]string, bool) {
	seen := map[int]bool{}
	var keys []string
	var walk func(i int, path []byte) bool
	walk = func(i int, path []byte) bool {
		d := len(path)
		if seen[i] || d >= 4 || d > 0 && len(t.links[i])+len(t.buckets[i]) == 0 {
			return false
		}
		seen[i] = true
		for s, ks := range t.buckets[i] {
			for _, k := range ks {
				if k[:d] != string(path) || int(k[d]) != s {
					return false
				}
				keys = append(keys, k)
			}
		}
		for s, j := range t.links[i] {
			if !walk(j, append(path[:d:d], byte(s))) {
				return false
			}
		}
		return true
	}
	ok := walk(0, nil)
	return keys, ok
}

// store writes the tree's blocks (nodes last to first, so links point at saved blocks; each key's
// value is "v" + key) and returns the root.
func (t walkFuzzTree) store(tb testing.TB, cas *hamt.MemoryCAS) cid.Cid {
	ids := make([]cid.Cid, len(t.links))
	for i := len(t.links) - 1; i >= 0; i-- {
		slots := map[int][]byte{}
		for s, j := range t.links[i] {
			slots[s] = testdag.LinkSlot(ids[j])
		}
		for s, ks := range t.buckets[i] {
			ks = slices.Clone(ks)
			slices.SortFunc(ks, func(a, b string) int { return cmp.Compare(a, b) }) // all 4 bytes long
			var es [][]byte
			for _, k := range ks {
				es = append(es, testdag.Entry(k, badPut(tb, cas, []byte("v"+k), multicodec.Raw)))
			}
			slots[s] = testdag.Bucket(es...)
		}
		ids[i] = badPut(tb, cas, testdag.Node(slots), multicodec.DagCbor)
	}
	return ids[0]
}

// FuzzWalkHostileTrees builds small DAGs of valid node blocks (shared nodes, keys in any slot,
// empty nodes, nodes deeper than the hash) and checks every traversal against a judge of the
// description: the walk fails with ErrMalformedNode exactly when the judge says the tree is not
// a HAMT, and otherwise lists every key once, each of which Get finds; no traversal panics or
// reports a key twice.
func FuzzWalkHostileTrees(f *testing.F) {
	addHostileTreeSeeds(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) == 0 || len(data) > 600 {
			return
		}
		tree := walkParseFuzzTree(data)
		ctx := context.Background()
		cas := hamt.NewMemoryCAS()
		root := tree.store(t, cas)
		wantKeys, valid := tree.valid()
		opt := hamt.WithHash(walkFuzzHash)
		m, err := hamt.Open(ctx, cas, hamt.Bytes, root, opt)
		if err != nil {
			t.Fatal(err)
		}
		// Keys in read-only mode, twice (the second walk relies on what the first checked).
		for range 2 {
			got, err := walkFuzzKeys(t, m.Keys(ctx))
			walkFuzzVerdict(t, "Keys", valid, err)
			if valid {
				slices.Sort(got)
				slices.Sort(wantKeys)
				if !slices.Equal(got, wantKeys) {
					t.Fatalf("Keys = %q, want %q", got, wantKeys)
				}
				for _, k := range got {
					if v, err := m.Get(ctx, k); err != nil || string(v) != "v"+k {
						t.Fatalf("Get(%q) of a listed key = %q, %v", k, v, err)
					}
				}
			}
		}
		n, err := m.Len(ctx)
		walkFuzzVerdict(t, "Len", valid, err)
		if valid && n != len(wantKeys) {
			t.Fatalf("Len = %d, want %d", n, len(wantKeys))
		}
		st, err := hamt.Inspect(ctx, cas, root, true, opt)
		walkFuzzVerdict(t, "Inspect", valid, err)
		if valid && st.Keys != len(wantKeys) {
			t.Fatalf("Inspect counts %d keys, want %d", st.Keys, len(wantKeys))
		}
		var buf bytes.Buffer
		_, err = hamt.WriteCAR(ctx, cas, root, &buf, opt)
		walkFuzzVerdict(t, "WriteCAR", valid, err)
		empty := badPut(t, cas, testdag.Node(nil), multicodec.DagCbor)
		if !root.Equals(empty) {
			removed := map[string]bool{}
			for c, err := range hamt.Diff(ctx, cas, root, empty, opt) {
				if err != nil {
					walkFuzzVerdict(t, "Diff", valid, err)
					break
				}
				if removed[c.Key] || c.Kind != hamt.Removed {
					t.Fatalf("Diff reports %q twice or as %v", c.Key, c.Kind)
				}
				removed[c.Key] = true
			}
			if valid && len(removed) != len(wantKeys) {
				t.Fatalf("Diff removes %d keys, want %d", len(removed), len(wantKeys))
			}
		}
		if err := m.EnableWrite(ctx); err != nil {
			t.Fatal(err)
		}
		got, err := walkFuzzKeys(t, m.Keys(ctx))
		walkFuzzVerdict(t, "write-mode Keys", valid, err)
		if valid && len(got) != len(wantKeys) {
			t.Fatalf("write-mode Keys = %q, want %q", got, wantKeys)
		}
	})
}

// walkFuzzKeys drains seq, failing on a key reported twice.
func walkFuzzKeys(t *testing.T, seq iter.Seq2[string, error]) ([]string, error) {
	t.Helper()
	seen := map[string]bool{}
	var keys []string
	for k, err := range seq {
		if err != nil {
			return keys, err
		}
		if seen[k] {
			t.Fatalf("key %q reported twice", k)
		}
		seen[k] = true
		keys = append(keys, k)
	}
	return keys, nil
}

// walkFuzzVerdict checks a traversal's error against the judge's verdict.
func walkFuzzVerdict(t *testing.T, what string, valid bool, err error) {
	t.Helper()
	switch {
	case valid && err != nil:
		t.Fatalf("%s rejects a valid tree: %v", what, err)
	case !valid && !errors.Is(err, hamt.ErrMalformedNode):
		t.Fatalf("%s of a tree that is not a HAMT: %v; want ErrMalformedNode", what, err)
	}
}

// addHostileTreeSeeds adds the seeds of the hostile-tree fuzz targets (walkParseFuzzTree's format).
func addHostileTreeSeeds(f *testing.F) {
	op := func(node, slotKind, a, b, c, d byte) []byte { return []byte{node, slotKind, a, b, c, d} }
	f.Add(testdag.Cat([]byte{0}, op(0, 5, 0x80, 1, 2, 3)))                                                                            // one key on its path
	f.Add(testdag.Cat([]byte{0}, op(0, 5, 6, 1, 2, 3)))                                                                               // one key off it
	f.Add(testdag.Cat([]byte{1}, op(0, 0x85, 0, 0, 0, 0), op(1, 7, 0x80, 0, 0, 0)))                                                   // two levels
	f.Add(testdag.Cat([]byte{2}, op(0, 0x85, 1, 0, 0, 0), op(0, 0x86, 0, 0, 0, 0), op(1, 0x87, 0, 0, 0, 0), op(2, 3, 0x80, 0, 0, 0))) // a shared node
	f.Add(testdag.Cat([]byte{2}, op(0, 0x85, 0, 0, 0, 0), op(1, 0x86, 0, 0, 0, 0), op(2, 9, 0x80, 0, 0, 0)))                          // three levels
	f.Add(testdag.Cat([]byte{1}, op(0, 0x85, 0, 0, 0, 0)))                                                                            // an empty child
}
