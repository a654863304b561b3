package hamt_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/hamt-go/hamt"
	"github.com/ipfs/go-cid"
	carv2 "github.com/ipld/go-car/v2"
)

// loadVectorCAR reads testdata/pyhamt/name into a new MemoryCAS with ReadCAR and returns it and
// the CAR's root.
func loadVectorCAR(t *testing.T, name string) (*hamt.MemoryCAS, cid.Cid, int) {
	t.Helper()
	f, err := os.Open(filepath.Join("testdata", "pyhamt", name))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cas := hamt.NewMemoryCAS()
	roots, n, err := hamt.ReadCAR(context.Background(), cas, f)
	if err != nil || len(roots) != 1 {
		t.Fatalf("ReadCAR %s: roots %v, %v", name, roots, err)
	}
	return cas, roots[0], n
}

// TestInspectMatchesPyHamtVectors: the statistics of py-hamt's trees match what py-hamt recorded
// of them (keys, nodes, depth, largest bucket, root size, reachable blocks), and ReadCAR stores
// every block of their CARs.
func TestInspectMatchesPyHamtVectors(t *testing.T) {
	ctx := context.Background()
	for _, name := range []string{"d2_2k_bytes_bucket4", "e_2000_then_delete_1000", "c_100_ipld_values", "b_foo_bar", "a_empty"} {
		var want struct {
			FinalKeyCount   int `json:"final_key_count"`
			NodeCount       int `json:"node_count"`
			MaxDepth        int `json:"max_depth"`
			LargestBucket   int `json:"largest_bucket"`
			ReachableBlocks int `json:"reachable_blocks"`
			RootNodeSize    int `json:"root_node_size"`
			NumBlocks       int `json:"num_blocks"`
		}
		zarrReadVector(t, name+".json", &want)
		cas, root, n := loadVectorCAR(t, name+".car")
		if n != want.NumBlocks {
			t.Errorf("%s: ReadCAR stored %d blocks, the CAR has %d", name, n, want.NumBlocks)
		}
		st, err := hamt.Inspect(ctx, cas, root, true)
		if err != nil {
			t.Fatal(err)
		}
		if st.Keys != want.FinalKeyCount || st.Nodes != want.NodeCount || len(st.NodesAtDepth)-1 != want.MaxDepth ||
			st.MaxBucket != want.LargestBucket || st.Nodes+st.Values != want.ReachableBlocks {
			t.Errorf("%s: %+v; want keys %d, nodes %d, depth %d, largest bucket %d, %d reachable blocks",
				name, st, want.FinalKeyCount, want.NodeCount, want.MaxDepth, want.LargestBucket, want.ReachableBlocks)
		}
		if name == "d2_2k_bytes_bucket4" && (st.NodesAtDepth[0] != 1 || st.Links != want.NodeCount-1) {
			t.Errorf("%s: nodes per depth %v, links %d", name, st.NodesAtDepth, st.Links)
		}
		fill := 0
		for k, c := range st.BucketFill {
			fill += k * c
		}
		if fill != st.Keys || st.ValueBytes <= 0 && st.Keys > 0 {
			t.Errorf("%s: bucket fill %v sums to %d keys of %d; value bytes %d", name, st.BucketFill, fill, st.Keys, st.ValueBytes)
		}
	}
}

// TestDiff: exactly the keys added, removed and changed are reported, walking only the subtrees
// that differ; identical roots cost nothing; maps of the same keys with other bucket sizes have
// no differences; a consumer may stop early.
func TestDiff(t *testing.T) {
	ctx := context.Background()
	mem := hamt.NewMemoryCAS()
	build := func(bucket int, edit func(m *hamt.Map[[]byte])) cid.Cid {
		m, err := hamt.New(ctx, mem, hamt.Bytes, hamt.WithBucketSize(bucket))
		if err != nil {
			t.Fatal(err)
		}
		for i := range 5000 {
			if err := m.Set(ctx, fmt.Sprintf("k%d", i), []byte(fmt.Sprint(i))); err != nil {
				t.Fatal(err)
			}
		}
		if edit != nil {
			edit(m)
		}
		root, err := m.Flush(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return root
	}
	a := build(4, nil)
	b := build(4, func(m *hamt.Map[[]byte]) {
		for _, k := range []string{"k10", "k20"} {
			if err := m.Delete(ctx, k); err != nil {
				t.Fatal(err)
			}
		}
		_ = m.Set(ctx, "k30", []byte("new"))
		_ = m.Set(ctx, "k40", []byte("40")) // the same value: no change
		_ = m.Set(ctx, "added", []byte("x"))
	})
	cc := &countingCAS{CAS: mem}
	var got []string
	for c, err := range hamt.Diff(ctx, cc, a, b) {
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, c.Kind.String()+" "+c.Key)
		if c.Kind == hamt.Modified && (!c.Old.Defined() || !c.New.Defined() || c.Old.Equals(c.New)) {
			t.Errorf("change %+v", c)
		}
	}
	slices.Sort(got)
	want := []string{"added added", "changed k30", "removed k10", "removed k20"}
	if !slices.Equal(got, want) {
		t.Errorf("diff %v, want %v", got, want)
	}
	st, err := hamt.Inspect(ctx, mem, a, false)
	if err != nil {
		t.Fatal(err)
	}
	if n := cc.loads.Load(); n > 2+4*int64(st.NodesAtDepth[0]+4) || n >= int64(st.Nodes) {
		t.Errorf("diff loaded %d blocks of a %d-node tree: it should walk only what changed", n, st.Nodes)
	}
	cc.loads.Store(0)
	for range hamt.Diff(ctx, cc, a, a) {
		t.Error("a change between a root and itself")
	}
	if cc.loads.Load() != 0 {
		t.Errorf("diff of identical roots loaded %d blocks", cc.loads.Load())
	}
	for c, err := range hamt.Diff(ctx, mem, a, build(1, nil)) {
		t.Errorf("bucket size 1 vs 4 over the same keys: %+v, %v", c, err)
	}
	n := 0
	for range hamt.Diff(ctx, mem, a, build(4, func(m *hamt.Map[[]byte]) { _ = m.Delete(ctx, "k1"); _ = m.Delete(ctx, "k2") })) {
		n++
		break
	}
	if n != 1 {
		t.Errorf("break after %d changes", n)
	}
	missing := cid.MustParse("bafyr4iaqd2xdcxpkhsy7jbcws24wqcidfkk7ptjdiv5urj7tqfysuouv3e")
	for _, err := range hamt.Diff(ctx, mem, a, missing) {
		if !errors.Is(err, hamt.ErrMissingBlock) {
			t.Errorf("diff against a missing root: %v, want ErrMissingBlock", err)
		}
	}
}

// TestCARRoundTrip: WriteCAR of a map holds exactly its reachable blocks (a CARv1 with the root
// in its header, each block once); ReadCAR of it into an empty store reopens to the same keys and
// values. For a py-hamt vector, the exported blocks are byte-identical to py-hamt's.
func TestCARRoundTrip(t *testing.T) {
	ctx := context.Background()
	cas, root, _ := loadVectorCAR(t, "e_2000_then_delete_1000.car")
	var buf bytes.Buffer
	n, err := hamt.WriteCAR(ctx, cas, root, &buf)
	if err != nil {
		t.Fatal(err)
	}
	if n != 1224 { // reachable_blocks of the vector
		t.Errorf("wrote %d blocks, want the 1224 reachable", n)
	}
	br, err := carv2.NewBlockReader(bytes.NewReader(buf.Bytes()))
	if err != nil || br.Version != 1 || len(br.Roots) != 1 || !br.Roots[0].Equals(root) {
		t.Fatalf("CAR header: version %d roots %v, %v", br.Version, br.Roots, err)
	}
	seen := map[string]bool{}
	for {
		blk, err := br.Next()
		if err != nil {
			break
		}
		if seen[blk.Cid().KeyString()] {
			t.Errorf("block %s written twice", blk.Cid())
		}
		seen[blk.Cid().KeyString()] = true
		orig, err := cas.Load(ctx, blk.Cid())
		if err != nil || !bytes.Equal(orig, blk.RawData()) {
			t.Errorf("block %s differs from py-hamt's", blk.Cid())
		}
	}
	fresh := hamt.NewMemoryCAS()
	roots, got, err := hamt.ReadCAR(ctx, fresh, bytes.NewReader(buf.Bytes()))
	if err != nil || got != n || !roots[0].Equals(root) {
		t.Fatalf("ReadCAR: %d blocks, roots %v, %v", got, roots, err)
	}
	a, err := hamt.Open(ctx, cas, hamt.Bytes, root)
	if err != nil {
		t.Fatal(err)
	}
	b, err := hamt.Open(ctx, fresh, hamt.Bytes, root)
	if err != nil {
		t.Fatal(err)
	}
	count := 0
	for k, err := range a.Keys(ctx) {
		if err != nil {
			t.Fatal(err)
		}
		va, _ := a.Get(ctx, k)
		vb, err := b.Get(ctx, k)
		if err != nil || !bytes.Equal(va, vb) {
			t.Fatalf("%s: %q vs %q, %v", k, va, vb, err)
		}
		count++
	}
	if count != 1000 {
		t.Errorf("%d keys", count)
	}
	// A CAR with a block whose bytes do not match its CID is refused.
	bad := bytes.Clone(buf.Bytes())
	bad[len(bad)-1] ^= 1
	if _, _, err := hamt.ReadCAR(ctx, hamt.NewMemoryCAS(), bytes.NewReader(bad)); err == nil {
		t.Error("a corrupt CAR was read")
	}
}
