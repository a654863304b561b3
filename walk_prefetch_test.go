package hamt_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hamt-go/hamt"
	"github.com/ipfs/go-cid"
	"github.com/multiformats/go-multicodec"
	"pgregory.net/rapid"
)

// walkOutcome is everything a walk gave: what it yielded, in order, and the error it ended with.
type walkOutcome struct {
	items []string
	err   string
}

func (o walkOutcome) equal(p walkOutcome) bool {
	return o.err == p.err && slices.Equal(o.items, p.items)
}

func (o walkOutcome) String() string {
	return fmt.Sprintf("%d items, error %q", len(o.items), o.err)
}

func outcome(items []string, err error) walkOutcome {
	o := walkOutcome{items: items}
	if err != nil {
		o.err = err.Error()
	}
	return o
}

// prefixedHash is Blake3 with its first zeros bytes zero: every key takes slot 0 at the first
// zeros depths, which makes a chain of single-link nodes above the tree (deep trees from few
// keys).
func prefixedHash(zeros int) hamt.HashFunc {
	return func(b []byte) []byte {
		h := hamt.Blake3(b)
		clear(h[:zeros])
		return h
	}
}

// walkTraversals are every whole-tree walk, each run on cas with opts (a map's options, which the
// tools read too), giving what it yielded. root2 is a second map for Diff.
var walkTraversals = []struct {
	name string
	run  func(ctx context.Context, cas hamt.CAS, root, root2 cid.Cid, opts []hamt.Option) walkOutcome
}{
	{"Keys", func(ctx context.Context, cas hamt.CAS, root, _ cid.Cid, opts []hamt.Option) walkOutcome {
		m, err := hamt.Open(ctx, cas, hamt.Bytes, root, opts...)
		if err != nil {
			return outcome(nil, err)
		}
		return collectKeys(m.Keys(ctx))
	}},
	{"All", func(ctx context.Context, cas hamt.CAS, root, _ cid.Cid, opts []hamt.Option) walkOutcome {
		m, err := hamt.Open(ctx, cas, hamt.Bytes, root, opts...)
		if err != nil {
			return outcome(nil, err)
		}
		var items []string
		for e, err := range m.All(ctx) {
			if err != nil {
				return outcome(items, err)
			}
			items = append(items, e.Key+"="+string(e.Value))
		}
		return outcome(items, nil)
	}},
	{"Len", func(ctx context.Context, cas hamt.CAS, root, _ cid.Cid, opts []hamt.Option) walkOutcome {
		m, err := hamt.Open(ctx, cas, hamt.Bytes, root, opts...)
		if err != nil {
			return outcome(nil, err)
		}
		n, err := m.Len(ctx)
		if err != nil {
			n = 0 // no count after an error
		}
		return outcome([]string{fmt.Sprint(n)}, err)
	}},
	{"Keys in write mode", func(ctx context.Context, cas hamt.CAS, root, _ cid.Cid, opts []hamt.Option) walkOutcome {
		m, err := hamt.Open(ctx, cas, hamt.Bytes, root, opts...)
		if err == nil {
			err = m.EnableWrite(ctx)
		}
		if err != nil {
			return outcome(nil, err)
		}
		return collectKeys(m.Keys(ctx))
	}},
	{"Keys in write mode after CacheVacate", func(ctx context.Context, cas hamt.CAS, root, _ cid.Cid, opts []hamt.Option) walkOutcome {
		m, err := hamt.Open(ctx, cas, hamt.Bytes, root, opts...)
		if err == nil {
			err = m.EnableWrite(ctx)
		}
		if err == nil {
			err = m.CacheVacate(ctx)
		}
		if err != nil {
			return outcome(nil, err)
		}
		return collectKeys(m.Keys(ctx))
	}},
	{"Inspect", func(ctx context.Context, cas hamt.CAS, root, _ cid.Cid, opts []hamt.Option) walkOutcome {
		st, err := hamt.Inspect(ctx, cas, root, false, opts...)
		if err != nil {
			return outcome(nil, err)
		}
		return outcome([]string{fmt.Sprintf("%+v", st)}, nil)
	}},
	{"WriteCAR", func(ctx context.Context, cas hamt.CAS, root, _ cid.Cid, opts []hamt.Option) walkOutcome {
		var buf bytes.Buffer
		n, err := hamt.WriteCAR(ctx, cas, root, &buf, opts...)
		return outcome([]string{fmt.Sprint(n), buf.String()}, err)
	}},
	{"Diff", func(ctx context.Context, cas hamt.CAS, root, root2 cid.Cid, opts []hamt.Option) walkOutcome {
		var items []string
		for c, err := range hamt.Diff(ctx, cas, root, root2, opts...) {
			if err != nil {
				return outcome(items, err)
			}
			items = append(items, fmt.Sprintf("%s %s %s %s", c.Key, c.Kind, c.Old, c.New))
		}
		return outcome(items, nil)
	}},
}

// collectKeys drains a Keys iterator.
func collectKeys(seq func(func(string, error) bool)) walkOutcome {
	var items []string
	for k, err := range seq {
		if err != nil {
			return outcome(items, err)
		}
		items = append(items, k)
	}
	return outcome(items, nil)
}

// nodeCIDs returns the CIDs of the nodes of the map at root below the root, in the order a walk
// loads them.
func nodeCIDs(t fatalT, ctx context.Context, cas hamt.CAS, root cid.Cid, opts ...hamt.Option) []cid.Cid {
	t.Helper()
	rec := &nodeRecorder{CAS: cas}
	m, err := hamt.Open(ctx, rec, hamt.Bytes, root, opts...)
	if err != nil {
		t.Fatalf("%v", err)
	}
	if _, err := walkKeysOf(m.Keys(ctx)); err != nil {
		t.Fatalf("%v", err)
	}
	return rec.ids[1:]
}

// TestParallelWalksYieldExactlyWhatTheSequentialWalkYields: over random maps (deep ones too), on a
// store with random latency (so nodes are loaded ahead, finishing out of order) and some node
// blocks that fail, every traversal yields the same items in the same order, and ends with the
// same error at the same point, as the walk that loads one node at a time on the same blocks;
// without failures, what it yields is the model's.
func TestParallelWalksYieldExactlyWhatTheSequentialWalkYields(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		ctx := context.Background()
		mem := hamt.NewMemoryCAS()
		opts := []hamt.Option{hamt.WithBucketSize(rapid.IntRange(1, 4).Draw(rt, "bucket"))}
		if zeros := rapid.IntRange(0, 3).Draw(rt, "zeros"); zeros > 0 {
			opts = append(opts, hamt.WithHash(prefixedHash(zeros)))
		}
		model := map[string]string{}
		m, err := hamt.New(ctx, mem, hamt.Bytes, opts...)
		if err != nil {
			rt.Fatal(err)
		}
		for i := range rapid.IntRange(0, 200).Draw(rt, "keys") {
			k, v := fmt.Sprintf("key-%d", i), fmt.Sprintf("v%d", i%7)
			model[k] = v
			if err := m.Set(ctx, k, []byte(v)); err != nil {
				rt.Fatal(err)
			}
		}
		root, err := m.Flush(ctx)
		if err != nil {
			rt.Fatal(err)
		}
		// A second version for Diff: some keys changed, removed, added.
		for i := range rapid.IntRange(0, 20).Draw(rt, "changes") {
			k := fmt.Sprintf("key-%d", i*7)
			if _, ok := model[k]; ok && i%2 == 0 {
				if err := m.Delete(ctx, k); err != nil {
					rt.Fatal(err)
				}
				continue
			}
			if err := m.Set(ctx, k, []byte("changed")); err != nil {
				rt.Fatal(err)
			}
		}
		root2, err := m.Flush(ctx)
		if err != nil {
			rt.Fatal(err)
		}

		delay := rapid.SampledFrom([]time.Duration{0, 30 * time.Microsecond, 100 * time.Microsecond}).Draw(rt, "delay")
		par := rapid.SampledFrom([]int{2, 3, 32}).Draw(rt, "parallelism")
		seq := newLatencyCAS(mem, 0, 0)
		fast := newLatencyCAS(mem, delay, delay/4).withJitter(rapid.Uint64().Draw(rt, "seed"))
		nodes := append(nodeCIDs(rt, ctx, mem, root, opts...), nodeCIDs(rt, ctx, mem, root2, opts...)...)
		failing := 0
		if len(nodes) > 0 {
			failing = rapid.IntRange(0, min(2, len(nodes))).Draw(rt, "failing")
		}
		for range failing {
			id := nodes[rapid.IntRange(0, len(nodes)-1).Draw(rt, "failed node")]
			if rapid.Bool().Draw(rt, "lost") {
				seq.lose(id)
				fast.lose(id)
			} else {
				seq.failOn(id)
				fast.failOn(id)
			}
		}

		for _, tv := range walkTraversals {
			want := tv.run(ctx, seq, root, root2, append(slices.Clone(opts), hamt.WithWalkParallelism(1)))
			fast.maxInFlight.Store(0)
			got := tv.run(ctx, fast, root, root2, append(slices.Clone(opts), hamt.WithWalkParallelism(par)))
			if max := fast.maxInFlight.Load(); max > int64(par)+1 {
				rt.Fatalf("%s: %d node loads at once with parallelism %d", tv.name, max, par)
			}
			if !got.equal(want) {
				rt.Fatalf("%s: loading ahead gave %v, one at a time %v", tv.name, got, want)
			}
			if failing == 0 && want.err != "" {
				rt.Fatalf("%s: %s", tv.name, want.err)
			}
		}
		if failing == 0 {
			got := walkTraversals[0].run(ctx, fast, root, root2, opts).items
			if want := slices.Sorted(maps.Keys(model)); !slices.Equal(slices.Sorted(slices.Values(got)), want) {
				rt.Fatalf("Keys gave %d keys, the model holds %d", len(got), len(want))
			}
		}
	})
}

// walkLatencyMap is a map of n keys on a store whose node loads take delay.
func walkLatencyMap(t *testing.T, n int, delay time.Duration) (*hamt.MemoryCAS, *latencyCAS, cid.Cid) {
	t.Helper()
	ctx := context.Background()
	mem := hamt.NewMemoryCAS()
	m := fillMap(t, ctx, mem, n)
	root, err := m.Root()
	if err != nil {
		t.Fatal(err)
	}
	return mem, newLatencyCAS(mem, delay, 0), root
}

// TestParallelWalksLoadNodesAheadOnASlowStoreOnly: on a store with latency a walk overlaps its
// node loads, up to WithWalkParallelism; on MemoryCAS it loads one at a time.
func TestParallelWalksLoadNodesAheadOnASlowStoreOnly(t *testing.T) {
	ctx := context.Background()
	mem, slow, root := walkLatencyMap(t, 3000, 200*time.Microsecond)
	for _, par := range []int{1, 4, hamt.DefaultWalkParallelism} {
		slow.maxInFlight.Store(0)
		m := mustOpen(t, ctx, slow, root, hamt.WithWalkParallelism(par))
		if n, err := m.Len(ctx); err != nil || n != 3000 {
			t.Fatalf("Len: %d, %v", n, err)
		}
		// The walk's own load may run beside the parallelism's.
		if got := slow.maxInFlight.Load(); got < int64(min(par, 2)) || got > int64(par)+1 {
			t.Errorf("parallelism %d: %d loads at once", par, got)
		}
	}
	fast := newLatencyCAS(mem, 0, 0)
	if n, err := mustOpen(t, ctx, fast, root).Len(ctx); err != nil || n != 3000 {
		t.Fatalf("Len: %d, %v", n, err)
	}
	if got := fast.maxInFlight.Load(); got != 1 {
		t.Errorf("MemoryCAS: %d loads at once, want 1", got)
	}
	if _, err := hamt.New(ctx, mem, hamt.Bytes, hamt.WithWalkParallelism(0)); err == nil {
		t.Error("WithWalkParallelism(0) accepted")
	}
}

// TestStoppingAParallelWalkLeavesNoGoroutine: a loop that breaks, a context cancelled and a
// failed load each end a walk whose loads ahead are in flight; once they settle, no goroutine is
// left, in every traversal.
func TestStoppingAParallelWalkLeavesNoGoroutine(t *testing.T) {
	_, slow, root := walkLatencyMap(t, 10000, 500*time.Microsecond)
	ctx := context.Background()
	before := runtime.NumGoroutine()
	ways := []struct {
		name string
		stop func()
	}{
		{"break out of Keys", func() {
			n := 0
			for range mustOpen(t, ctx, slow, root).Keys(ctx) {
				if n++; n == 1000 {
					break
				}
			}
		}},
		{"break out of All", func() {
			n := 0
			for range mustOpen(t, ctx, slow, root).All(ctx) {
				if n++; n == 1000 {
					break
				}
			}
		}},
		{"break out of Diff", func() {
			m := mustOpen(t, ctx, slow, root)
			if err := m.EnableWrite(ctx); err != nil {
				t.Fatal(err)
			}
			for i := range 50 {
				if err := m.Delete(ctx, fmt.Sprintf("key-%d", i)); err != nil {
					t.Fatal(err)
				}
			}
			root2, err := m.Flush(ctx)
			if err != nil {
				t.Fatal(err)
			}
			for range hamt.Diff(ctx, slow, root, root2) {
				break
			}
		}},
		{"cancel Len", func() {
			ctx, cancel := context.WithCancel(ctx)
			defer cancel()
			m := mustOpen(t, ctx, slow, root)
			go cancelWhenAhead(slow, cancel)
			if _, err := m.Len(ctx); !errors.Is(err, context.Canceled) {
				t.Errorf("Len: %v, want the cancellation", err)
			}
		}},
		{"cancel WriteCAR", func() {
			ctx, cancel := context.WithCancel(ctx)
			defer cancel()
			go cancelWhenAhead(slow, cancel)
			if _, err := hamt.WriteCAR(ctx, slow, root, &bytes.Buffer{}); !errors.Is(err, context.Canceled) {
				t.Errorf("WriteCAR: %v, want the cancellation", err)
			}
		}},
	}
	for _, w := range ways {
		slow.maxInFlight.Store(0)
		w.stop()
		if slow.maxInFlight.Load() < 2 {
			t.Errorf("%s: no load ahead was in flight: the test shows nothing", w.name)
		}
		if left := settledGoroutines(before); left > before {
			t.Errorf("%s: %d goroutines left, %d before", w.name, left, before)
		}
	}
	// A failed load: a node the walk needs late fails; every walk ends with its error.
	nodes := nodeCIDs(t, ctx, slow, root)
	slow.failOn(nodes[len(nodes)-1])
	for _, tv := range walkTraversals {
		if tv.name == "Diff" {
			continue // of a root with itself: no walk
		}
		if got := tv.run(ctx, slow, root, root, nil); !strings.Contains(got.err, errLatencyLost.Error()) {
			t.Errorf("%s: %v, want the injected failure", tv.name, got)
		}
		if left := settledGoroutines(before); left > before {
			t.Errorf("%s: %d goroutines left, %d before", tv.name, left, before)
		}
	}
}

// cancelWhenAhead calls cancel once slow serves two node loads at once (a walk loading ahead), or
// after 5 s.
func cancelWhenAhead(slow *latencyCAS, cancel context.CancelFunc) {
	deadline := time.Now().Add(5 * time.Second)
	for slow.inFlight.Load() < 2 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Microsecond)
	}
	cancel()
}

// TestAMissingNodeIsReportedWhereTheWalkNeedsIt: a node block missing deep in the tree is
// ErrMissingBlock once the walk reaches it, after exactly the keys before it; a walk that stops
// before it needs that node gets no error, though the node's load ahead failed.
func TestAMissingNodeIsReportedWhereTheWalkNeedsIt(t *testing.T) {
	ctx := context.Background()
	// A deep tree: every key under slot 0 of the root and of its child.
	mem := hamt.NewMemoryCAS()
	opts := []hamt.Option{hamt.WithHash(prefixedHash(2)), hamt.WithBucketSize(1)}
	m, err := hamt.New(ctx, mem, hamt.Bytes, opts...)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 2000 {
		if err := m.Set(ctx, fmt.Sprintf("key-%d", i), []byte("v")); err != nil {
			t.Fatal(err)
		}
	}
	root, err := m.Flush(ctx)
	if err != nil {
		t.Fatal(err)
	}
	all := collectKeys(mustOpen(t, ctx, mem, root, opts...).Keys(ctx)).items
	nodes := nodeCIDs(t, ctx, mem, root, opts...)

	t.Run("reached", func(t *testing.T) {
		slow := newLatencyCAS(mem, 100*time.Microsecond, 0)
		missing := nodes[len(nodes)*2/3] // deep, and late in the walk
		slow.lose(missing)
		got := collectKeys(mustOpen(t, ctx, slow, root, opts...).Keys(ctx))
		if !strings.Contains(got.err, hamt.ErrMissingBlock.Error()) {
			t.Fatalf("Keys: %v, want ErrMissingBlock", got)
		}
		if !strings.Contains(got.err, missing.String()) {
			t.Errorf("the error does not name the missing node %s: %s", missing, got.err)
		}
		want := collectKeys(mustOpen(t, ctx, slow, root, append(slices.Clone(opts), hamt.WithWalkParallelism(1))...).Keys(ctx))
		if !got.equal(want) || len(got.items) == 0 || len(got.items) >= len(all) || !slices.Equal(got.items, all[:len(got.items)]) {
			t.Fatalf("loading ahead: %v; one at a time: %v; of %d keys", got, want, len(all))
		}
		// The same error, through the typed path.
		var err error
		for _, e := range mustOpen(t, ctx, slow, root, opts...).Keys(ctx) {
			err = e
		}
		if !errors.Is(err, hamt.ErrMissingBlock) {
			t.Fatalf("Keys: %v, want ErrMissingBlock", err)
		}
	})

	t.Run("not reached", func(t *testing.T) {
		slow := newLatencyCAS(mem, 100*time.Microsecond, 0)
		// A node the walk needs well after its first key, and within reach of the loads ahead
		// (4 × 32 nodes) while the loop holds the walk at that key.
		slow.lose(nodes[50])
		n := 0
		for _, err := range mustOpen(t, ctx, slow, root, opts...).Keys(ctx) {
			if err != nil {
				t.Fatalf("after %d keys: %v", n, err)
			}
			n++
			// Hold the walk at its first key until the loads ahead have reached the lost node.
			deadline := time.Now().Add(5 * time.Second)
			for slow.failed.Load() == 0 && time.Now().Before(deadline) {
				time.Sleep(time.Millisecond)
			}
			break
		}
		if slow.failed.Load() == 0 {
			t.Fatal("the lost node was never loaded ahead: the test shows nothing")
		}
	})
}

// TestParallelWalksOfHostileTreesStayBounded: over a store with latency, where nodes are loaded
// ahead, a DAG whose every slot links to the node below (a node linked 256 times at each level)
// is still ErrMalformedNode after a bounded number of loads: what the walk itself needs, plus at
// most the loads ahead it may hold.
func TestParallelWalksOfHostileTreesStayBounded(t *testing.T) {
	ctx := context.Background()
	mem := hamt.NewMemoryCAS()
	for _, tr := range walkHostileTrees(t, mem) {
		t.Run(tr.name, func(t *testing.T) {
			for _, tv := range walkTraversals {
				if tv.name == "Diff" {
					continue // the trust tests diff hostile trees; here one root is enough
				}
				slow := newLatencyCAS(mem, 100*time.Microsecond, 0)
				got := tv.run(ctx, slow, tr.root, tr.root, nil)
				if !strings.Contains(got.err, hamt.ErrMalformedNode.Error()) {
					t.Fatalf("%s: %v, want ErrMalformedNode", tv.name, got)
				}
				// 64 is the bound of the walk one node at a time (TestEveryTraversalRejects
				// HostileTreesQuickly); loads ahead add at most 4 per unit of parallelism.
				if loads := slow.loads.Load(); loads > 64+4*hamt.DefaultWalkParallelism+hamt.DefaultWalkParallelism {
					t.Errorf("%s: %d blocks loaded", tv.name, loads)
				}
				if max := slow.maxInFlight.Load(); max > hamt.DefaultWalkParallelism+1 {
					t.Errorf("%s: %d loads at once", tv.name, max)
				}
			}
		})
	}
}

// shardedListingStore writes a sharded store with one array of 64 × 64 chunks, 4 chunks per shard
// (1,024 shards), every fifth chunk written, and returns its root.
func shardedListingStore(t *testing.T, cas hamt.CAS) cid.Cid {
	t.Helper()
	ctx := context.Background()
	s, err := hamt.NewShardedZarrStore(cas, hamt.WithChunksPerShard(4))
	if err != nil {
		t.Fatal(err)
	}
	for key, value := range map[string]string{
		"0/zarr.json": `{"zarr_format":3,"node_type":"group"}`,
		"0/temp/zarr.json": `{"zarr_format":3,"node_type":"array","shape":[64,64],"data_type":"uint8",` +
			`"chunk_grid":{"name":"regular","configuration":{"chunk_shape":[1,1]}},` +
			`"chunk_key_encoding":{"name":"default"},"fill_value":0,"codecs":[{"name":"bytes"}]}`,
	} {
		if err := s.Set(ctx, key, []byte(value)); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 64*64; i += 5 {
		if err := s.Set(ctx, fmt.Sprintf("0/temp/c/%d/%d", i/64, i%64), []byte{byte(i)}); err != nil {
			t.Fatal(err)
		}
	}
	root, err := s.Flush(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return root
}

// TestShardedListingsLoadShardsAheadInTheirOrder: a sharded store's List over a store with
// latency loads shards several at once, and yields what it yields on the store without latency; a
// shard that cannot be loaded fails the listing where it is reached, after the same keys.
func TestShardedListingsLoadShardsAheadInTheirOrder(t *testing.T) {
	ctx := context.Background()
	mem := hamt.NewMemoryCAS()
	root := shardedListingStore(t, mem)
	list := func(cas hamt.CAS) walkOutcome {
		s, err := hamt.OpenShardedZarrStore(ctx, cas, root, hamt.WithShardedReadOnly())
		if err != nil {
			t.Fatal(err)
		}
		return collectKeys(s.List(ctx))
	}
	want := list(mem)
	if len(want.items) < 820 || want.err != "" { // 820 chunks and the metadata
		t.Fatalf("List on memory: %v", want)
	}
	slow := newLatencyCAS(mem, 200*time.Microsecond, 200*time.Microsecond)
	if got := list(slow); !got.equal(want) {
		t.Fatalf("List over latency: %v, want %v", got, want)
	}
	if max := slow.maxInFlight.Load(); max < 2 || max > hamt.DefaultWalkParallelism+1 {
		t.Errorf("%d shard loads at once", max)
	}
	// Lose one shard: the listing ends at it, after the keys before it.
	var shards []cid.Cid
	rec := &blockRecorder{CAS: mem}
	if got := list(rec); got.err != "" {
		t.Fatal(got.err)
	}
	for _, id := range rec.ids {
		if id.Type() == uint64(multicodec.DagCbor) && !id.Equals(root) {
			shards = append(shards, id)
		}
	}
	lost := shards[len(shards)/2]
	slow.lose(lost)
	mem2 := newLatencyCAS(mem, 0, 0)
	mem2.lose(lost)
	got, seq := list(slow), list(mem2)
	if !got.equal(seq) || !strings.Contains(got.err, hamt.ErrMissingBlock.Error()) || len(got.items) == 0 {
		t.Fatalf("List with a lost shard: %v; on memory: %v", got, seq)
	}
}

// blockRecorder records the CID of every block loaded through it, in order.
type blockRecorder struct {
	hamt.CAS
	mu  sync.Mutex
	ids []cid.Cid
}

func (c *blockRecorder) Load(ctx context.Context, id cid.Cid) ([]byte, error) {
	c.mu.Lock()
	c.ids = append(c.ids, id)
	c.mu.Unlock()
	return c.CAS.Load(ctx, id)
}
