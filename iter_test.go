package hamt_test

// All and GetMany: the map's values read in one walk, or for many keys at once, with the store's
// reads overlapping. They must agree with a Go map model, stop cleanly (no goroutine left behind),
// report lost blocks and hostile trees, and read UnixFS values as Get does.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hamt-go/hamt"
	"github.com/hamt-go/hamt/internal/testdag"
	"github.com/ipfs/go-cid"
	"github.com/multiformats/go-multicodec"
	"pgregory.net/rapid"
)

// fatalT is what the helpers below need of a *testing.T or a *rapid.T.
type fatalT interface {
	Helper()
	Fatalf(format string, args ...any)
}

// allOf drains m.All, failing the test on an error or a key yielded twice.
func allOf(t fatalT, ctx context.Context, m *hamt.Map[[]byte]) map[string][]byte {
	t.Helper()
	got := map[string][]byte{}
	for e, err := range m.All(ctx) {
		if err != nil {
			t.Fatalf("All: %v", err)
		}
		if _, dup := got[e.Key]; dup {
			t.Fatalf("All yielded %q twice", e.Key)
		}
		got[e.Key] = e.Value
	}
	return got
}

// keysOf drains m.Keys.
func keysOf(t fatalT, ctx context.Context, m *hamt.Map[[]byte]) []string {
	t.Helper()
	var out []string
	for k, err := range m.Keys(ctx) {
		if err != nil {
			t.Fatalf("Keys: %v", err)
		}
		out = append(out, k)
	}
	return out
}

// checkGetMany asks GetMany for keys and checks each answer against Get.
func checkGetMany(t fatalT, ctx context.Context, m *hamt.Map[[]byte], keys []string) {
	t.Helper()
	vals, found, err := m.GetMany(ctx, keys)
	if err != nil {
		t.Fatalf("GetMany(%q): %v", keys, err)
	}
	if len(vals) != len(keys) || len(found) != len(keys) {
		t.Fatalf("GetMany of %d keys gave %d values, %d found flags", len(keys), len(vals), len(found))
	}
	for i, k := range keys {
		v, err := m.Get(ctx, k)
		switch {
		case errors.Is(err, hamt.ErrNotFound):
			if found[i] || vals[i] != nil {
				t.Fatalf("GetMany: %q (position %d) found with %x, but Get says it is absent", k, i, vals[i])
			}
		case err != nil:
			t.Fatalf("Get(%q): %v", k, err)
		case !found[i] || !bytes.Equal(vals[i], v):
			t.Fatalf("GetMany: %q (position %d) = %x, %v; Get gives %x", k, i, vals[i], found[i], v)
		}
	}
}

// TestAllYieldsExactlyTheModelsPairsAndGetManyAgreesWithGet: after any history of sets and
// deletes, All yields every pair of the model once, in Keys' order, in write mode and read-only
// mode, whatever the read-ahead; GetMany answers as Get does for any list of keys, with absent and
// repeated ones.
func TestAllYieldsExactlyTheModelsPairsAndGetManyAgreesWithGet(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		ctx := context.Background()
		var cas hamt.CAS = hamt.NewMemoryCAS()
		if rapid.Bool().Draw(t, "latency") { // values loaded on goroutines
			cas = &slowCAS{cas}
		}
		opts := []hamt.Option{hamt.WithBucketSize(rapid.IntRange(1, 4).Draw(t, "bucket")),
			hamt.WithReadAhead(rapid.IntRange(1, 40).Draw(t, "readAhead")), hamt.WithCacheBytes(4 << 10)}
		if rapid.Bool().Draw(t, "prefixHash") {
			opts = append(opts, hamt.WithHash(prefixHash))
		}
		m, err := hamt.New(ctx, cas, hamt.Bytes, opts...)
		if err != nil {
			t.Fatal(err)
		}
		model := map[string][]byte{}
		for range rapid.IntRange(0, 300).Draw(t, "ops") {
			k := keyGen().Draw(t, "key")
			if len(model) > 0 && rapid.IntRange(0, 4).Draw(t, "op") == 0 {
				k = rapid.SampledFrom(slices.Sorted(maps.Keys(model))).Draw(t, "existing")
				if err := m.Delete(ctx, k); err != nil {
					t.Fatalf("Delete(%q): %v", k, err)
				}
				delete(model, k)
				continue
			}
			v := rapid.SliceOfN(rapid.Byte(), 0, 8).Draw(t, "value")
			if err := m.Set(ctx, k, v); err != nil {
				t.Fatalf("Set(%q): %v", k, err)
			}
			model[k] = v
		}
		check := func(mode string) {
			got := allOf(t, ctx, m)
			if !maps.EqualFunc(got, model, bytes.Equal) {
				t.Fatalf("%s: All gave %d pairs, the model has %d: %q", mode, len(got), len(model), got)
			}
			var order []string
			for e, err := range m.All(ctx) {
				if err != nil {
					t.Fatal(err)
				}
				order = append(order, e.Key)
			}
			if keys := keysOf(t, ctx, m); !slices.Equal(order, keys) {
				t.Fatalf("%s: All's order %q is not Keys' %q", mode, order, keys)
			}
			ask := rapid.SliceOfN(rapid.OneOf(keyGen(), rapid.SampledFrom(append(slices.Collect(maps.Keys(model)), "absent"))), 0, 60).Draw(t, "ask")
			checkGetMany(t, ctx, m, ask)
		}
		check("write mode")
		if err := m.MakeReadOnly(ctx); err != nil {
			t.Fatal(err)
		}
		check("read-only mode")
	})
}

// slowCAS is a store with latency: every value load takes 20µs or more, enough for the map to
// load values on goroutines.
type slowCAS struct{ hamt.CAS }

func (c *slowCAS) Load(ctx context.Context, id cid.Cid) ([]byte, error) {
	if id.Type() != uint64(multicodec.DagCbor) {
		time.Sleep(20 * time.Microsecond)
	}
	return c.CAS.Load(ctx, id)
}

// fillMap writes n keys "key-i" with values "value-i" and returns the map read-only.
func fillMap(t testing.TB, ctx context.Context, cas hamt.CAS, n int, opts ...hamt.Option) *hamt.Map[[]byte] {
	t.Helper()
	m, err := hamt.New(ctx, cas, hamt.Bytes, opts...)
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		if err := m.Set(ctx, fmt.Sprintf("key-%d", i), fmt.Appendf(nil, "value-%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := m.MakeReadOnly(ctx); err != nil {
		t.Fatal(err)
	}
	return m
}

// stallingCAS is a store with latency (every value load takes 100µs, so the map loads values on
// goroutines) that holds every load of a block in stall until its context is cancelled, counting
// those it released that way.
type stallingCAS struct {
	hamt.CAS
	stall     map[cid.Cid]bool
	cancelled atomic.Int64
}

func (c *stallingCAS) Load(ctx context.Context, id cid.Cid) ([]byte, error) {
	if id.Type() == uint64(multicodec.DagCbor) {
		return c.CAS.Load(ctx, id)
	}
	if !c.stall[id] {
		time.Sleep(100 * time.Microsecond)
		return c.CAS.Load(ctx, id)
	}
	select {
	case <-ctx.Done():
		c.cancelled.Add(1)
		return nil, ctx.Err()
	case <-time.After(time.Minute): // never, unless the loads are not cancelled
		return nil, errors.New("load was never cancelled")
	}
}

// settledGoroutines waits for goroutines started elsewhere to end, and returns how many are left.
func settledGoroutines(before int) int {
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	return runtime.NumGoroutine()
}

// TestBreakingOutOfAllCancelsItsLoadsAndLeavesNoGoroutine: a loop that breaks while value loads
// are in flight (stalled until cancelled) ends them all before All returns.
func TestBreakingOutOfAllCancelsItsLoadsAndLeavesNoGoroutine(t *testing.T) {
	ctx := context.Background()
	mem := hamt.NewMemoryCAS()
	filled := fillMap(t, ctx, mem, 500)
	root, _ := filled.Root()
	// With a read-ahead of 16, batches hold at most 8 keys: the first 8 values in Keys' order load,
	// those after stall, and some are in flight when the loop breaks.
	stall := map[cid.Cid]bool{}
	for _, k := range keysOf(t, ctx, filled)[8:] {
		id, err := filled.GetPointer(ctx, k)
		if err != nil {
			t.Fatal(err)
		}
		stall[id] = true
	}
	for _, mode := range []string{"read-only", "write"} {
		t.Run(mode, func(t *testing.T) {
			cas := &stallingCAS{CAS: mem, stall: stall}
			m := mustOpen(t, ctx, cas, root, hamt.WithReadAhead(16))
			if mode == "write" {
				if err := m.EnableWrite(ctx); err != nil {
					t.Fatal(err)
				}
			}
			before := runtime.NumGoroutine()
			n := 0
			for _, err := range m.All(ctx) {
				if err != nil {
					t.Fatal(err)
				}
				if n++; n == 2 {
					break
				}
			}
			if got := cas.cancelled.Load(); got == 0 {
				t.Errorf("no stalled load was cancelled: the break did not reach the loads in flight")
			}
			if after := settledGoroutines(before); after > before {
				buf := make([]byte, 1<<16)
				t.Errorf("%d goroutines after breaking out of All, %d before:\n%s", after, before, buf[:runtime.Stack(buf, true)])
			}
		})
	}
}

// TestGetManyFailureCancelsTheRestAndLeavesNoGoroutine: one lost value block fails the batch with
// ErrMissingBlock (not the cancellations it causes in the batches loading beside it), and every
// load in flight ends; on a fast store (values loaded in place) and a slow one (on goroutines).
func TestGetManyFailureCancelsTheRestAndLeavesNoGoroutine(t *testing.T) {
	ctx := context.Background()
	mem := hamt.NewMemoryCAS()
	m := fillMap(t, ctx, mem, 200)
	lost, err := m.GetPointer(ctx, "key-150")
	if err != nil {
		t.Fatal(err)
	}
	root, _ := m.Root()
	keys := make([]string, 200)
	for i := range keys {
		keys[i] = fmt.Sprintf("key-%d", i)
	}
	for name, store := range map[string]hamt.CAS{"fast": mem, "slow": &slowCAS{mem}} {
		t.Run(name, func(t *testing.T) {
			r := mustOpen(t, ctx, &losingCAS{CAS: store, lost: lost}, root)
			before := runtime.NumGoroutine()
			vals, found, err := r.GetMany(ctx, keys)
			if !errors.Is(err, hamt.ErrMissingBlock) || vals != nil || found != nil {
				t.Errorf("GetMany with a lost value = %d values, %v; want ErrMissingBlock and nothing", len(vals), err)
			}
			if after := settledGoroutines(before); after > before {
				t.Errorf("%d goroutines after GetMany, %d before", after, before)
			}
		})
	}
}

// losingCAS has lost one block.
type losingCAS struct {
	hamt.CAS
	lost cid.Cid
}

func (c *losingCAS) Load(ctx context.Context, id cid.Cid) ([]byte, error) {
	if id == c.lost {
		return nil, fmt.Errorf("block %s: %w", id, hamt.ErrNotFound)
	}
	return c.CAS.Load(ctx, id)
}

// TestAllStopsAtALostBlock: a lost value block or node is yielded as ErrMissingBlock, after the
// entries before it in Keys' order and none after, in both modes.
func TestAllStopsAtALostBlock(t *testing.T) {
	ctx := context.Background()
	mem := hamt.NewMemoryCAS()
	m := fillMap(t, ctx, mem, 300)
	root, _ := m.Root()
	keys := keysOf(t, ctx, m)
	lostKey := keys[200]
	lostValue, err := m.GetPointer(ctx, lostKey)
	if err != nil {
		t.Fatal(err)
	}
	for _, mode := range []string{"read-only", "write"} {
		t.Run("value, "+mode, func(t *testing.T) {
			r, err := hamt.Open(ctx, &losingCAS{CAS: mem, lost: lostValue}, hamt.Bytes, root, hamt.WithReadAhead(8))
			if err != nil {
				t.Fatal(err)
			}
			if mode == "write" {
				if err := r.EnableWrite(ctx); err != nil {
					t.Fatal(err)
				}
			}
			var got []string
			var errs []error
			for e, err := range r.All(ctx) {
				if err != nil {
					errs = append(errs, err)
					continue
				}
				got = append(got, e.Key)
			}
			if len(errs) != 1 || !errors.Is(errs[0], hamt.ErrMissingBlock) {
				t.Fatalf("errors %v, want one ErrMissingBlock", errs)
			}
			if !slices.Equal(got, keys[:200]) {
				t.Errorf("yielded %d keys before the error, want the %d before %q in Keys' order", len(got), 200, lostKey)
			}
		})
	}
	t.Run("node", func(t *testing.T) {
		// The last node a walk loads: one below the root.
		var node cid.Cid
		probe := mustOpen(t, ctx, &nodeLosingCAS{CAS: mem, seen: func(id cid.Cid) { node = id }}, root)
		if _, err := probe.Len(ctx); err != nil || node == root {
			t.Fatalf("no node below the root: %v", err)
		}
		n := 0
		var last error
		for _, err := range mustOpen(t, ctx, &losingCAS{CAS: mem, lost: node}, root).All(ctx) {
			if err != nil {
				last = err
				break
			}
			n++
		}
		if !errors.Is(last, hamt.ErrMissingBlock) || n >= len(keys) {
			t.Errorf("All over a lost node yielded %d keys and %v, want fewer than %d and ErrMissingBlock", n, last, len(keys))
		}
	})
}

// nodeLosingCAS reports every node it loads (it loses none).
type nodeLosingCAS struct {
	hamt.CAS
	seen func(cid.Cid)
}

func (c *nodeLosingCAS) Load(ctx context.Context, id cid.Cid) ([]byte, error) {
	if id.Type() == uint64(multicodec.DagCbor) {
		c.seen(id)
	}
	return c.CAS.Load(ctx, id)
}

func mustOpen(t testing.TB, ctx context.Context, cas hamt.CAS, root cid.Cid, opts ...hamt.Option) *hamt.Map[[]byte] {
	t.Helper()
	m, err := hamt.Open(ctx, cas, hamt.Bytes, root, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestAllRejectsHostileTrees: All walks with the checks of every traversal, in both modes, and
// yields no key twice before ErrMalformedNode.
func TestAllRejectsHostileTrees(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), walkDeadline)
	defer cancel()
	mem := hamt.NewMemoryCAS()
	for _, tr := range walkHostileTrees(t, mem) {
		for _, mode := range []string{"read-only", "write"} {
			t.Run(tr.name+", "+mode, func(t *testing.T) {
				m := mustOpen(t, ctx, mem, tr.root)
				if mode == "write" {
					if err := m.EnableWrite(ctx); err != nil {
						t.Fatal(err)
					}
				}
				seen := map[string]bool{}
				var last error
				for e, err := range m.All(ctx) {
					if err != nil {
						last = err
						break
					}
					if seen[e.Key] {
						t.Fatalf("%q yielded twice", e.Key)
					}
					seen[e.Key] = true
				}
				if !errors.Is(last, hamt.ErrMalformedNode) {
					t.Errorf("All = %v, want ErrMalformedNode", last)
				}
			})
		}
	}
}

// TestAllAndGetManyReadUnixFSValues: values Kubo split into UnixFS files read whole, as Get reads
// them, and verified when asked.
func TestAllAndGetManyReadUnixFSValues(t *testing.T) {
	ctx := context.Background()
	mem := hamt.NewMemoryCAS()
	kubo := testdag.NewKubo(mem, 64, 4)
	want := map[string][]byte{}
	m, err := hamt.New(ctx, kubo, hamt.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 40 {
		v := bytes.Repeat(fmt.Appendf(nil, "%d,", i), 10*i) // from empty to several chunks
		k := fmt.Sprintf("file-%d", i)
		if err := m.Set(ctx, k, v); err != nil {
			t.Fatal(err)
		}
		want[k] = v
	}
	root, err := m.Flush(ctx)
	if err != nil {
		t.Fatal(err)
	}
	r := mustOpen(t, ctx, mem, root, hamt.WithVerifyBlocks())
	if got := allOf(t, ctx, r); !maps.EqualFunc(got, want, bytes.Equal) {
		t.Errorf("All over UnixFS values differs from what was set")
	}
	checkGetMany(t, ctx, r, slices.Collect(maps.Keys(want)))
	big, err := r.GetPointer(ctx, "file-39")
	if err != nil || big.Type() != uint64(multicodec.DagPb) {
		t.Fatalf("file-39 is %s, %v; want a dag-pb file", big, err)
	}
}

// TestAllAndGetManyRaceWithWriters: All and GetMany in many goroutines while others Set, in write
// mode, on a store with latency (so values load on goroutines); each sees a value that was set for
// every key it finds. Run with -race.
func TestAllAndGetManyRaceWithWriters(t *testing.T) {
	ctx := context.Background()
	m, err := hamt.New(ctx, &slowCAS{hamt.NewMemoryCAS()}, hamt.Bytes, hamt.WithReadAhead(4))
	if err != nil {
		t.Fatal(err)
	}
	keys := make([]string, 100)
	for i := range keys {
		keys[i] = fmt.Sprintf("k%d", i)
		if err := m.Set(ctx, keys[i], []byte(keys[i]+"=0")); err != nil {
			t.Fatal(err)
		}
	}
	valid := func(k string, v []byte) bool { return bytes.HasPrefix(v, []byte(k+"=")) }
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for w := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for round := 1; round <= 5; round++ {
				for _, k := range keys[w*50 : w*50+50] {
					if err := m.Set(ctx, k, fmt.Appendf(nil, "%s=%d", k, round)); err != nil {
						errs <- err
						return
					}
				}
			}
		}()
	}
	for range 2 {
		wg.Add(2)
		go func() {
			defer wg.Done()
			for range 5 {
				n := 0
				for e, err := range m.All(ctx) {
					if err != nil || !valid(e.Key, e.Value) {
						errs <- fmt.Errorf("All: %q=%q, %v", e.Key, e.Value, err)
						return
					}
					n++
				}
				if n != len(keys) {
					errs <- fmt.Errorf("All yielded %d keys, want %d", n, len(keys))
				}
			}
		}()
		go func() {
			defer wg.Done()
			for range 5 {
				vals, found, err := m.GetMany(ctx, keys)
				if err != nil {
					errs <- err
					return
				}
				for i, k := range keys {
					if !found[i] || !valid(k, vals[i]) {
						errs <- fmt.Errorf("GetMany: %q=%q, %v", k, vals[i], found[i])
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// TestWithReadAheadRefusesLessThanOne: the option is validated in New.
func TestWithReadAheadRefusesLessThanOne(t *testing.T) {
	if _, err := hamt.New(context.Background(), hamt.NewMemoryCAS(), hamt.Bytes, hamt.WithReadAhead(0)); err == nil {
		t.Error("WithReadAhead(0) accepted")
	}
}

// deafCAS ignores the context of its loads, as a store without I/O to cancel may.
type deafCAS struct{ hamt.CAS }

func (c deafCAS) Load(_ context.Context, id cid.Cid) ([]byte, error) {
	return c.CAS.Load(context.Background(), id)
}

// TestAllAndGetManyStopOnACancelledContext: a context already done fails both, even on a store that
// ignores contexts.
func TestAllAndGetManyStopOnACancelledContext(t *testing.T) {
	mem := hamt.NewMemoryCAS()
	root, _ := fillMap(t, context.Background(), mem, 300).Root()
	m := mustOpen(t, context.Background(), deafCAS{mem}, root)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, _, err := m.GetMany(ctx, keysOf(t, context.Background(), m)); !errors.Is(err, context.Canceled) {
		t.Errorf("GetMany with a cancelled context: %v, want context.Canceled", err)
	}
	var last error
	n := 0
	for _, err := range m.All(ctx) {
		if err != nil {
			last = err
			continue
		}
		n++
	}
	if !errors.Is(last, context.Canceled) || n == 300 {
		t.Errorf("All with a cancelled context: %d entries, then %v; want context.Canceled first", n, last)
	}
}

// FuzzAllHostileTrees: All and GetMany over the small DAGs of FuzzWalkHostileTrees (shared nodes,
// keys in any slot, empty nodes, nodes deeper than the hash). All fails with ErrMalformedNode
// exactly when the judge says the tree is not a HAMT, in both modes and on a second walk, and
// otherwise yields every key once with its value; it never yields a key twice. GetMany of the
// tree's keys agrees with Get, whatever the tree.
func FuzzAllHostileTrees(f *testing.F) {
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
		slices.Sort(wantKeys)
		m, err := hamt.Open(ctx, cas, hamt.Bytes, root, hamt.WithHash(walkFuzzHash), hamt.WithReadAhead(3))
		if err != nil {
			t.Fatal(err)
		}
		all := func(mode string) {
			seen := map[string]bool{}
			var got []string
			var last error
			for e, err := range m.All(ctx) {
				if err != nil {
					last = err
					break
				}
				if seen[e.Key] {
					t.Fatalf("%s: All yields %q twice", mode, e.Key)
				}
				if string(e.Value) != "v"+e.Key {
					t.Fatalf("%s: All yields %q = %q", mode, e.Key, e.Value)
				}
				seen[e.Key] = true
				got = append(got, e.Key)
			}
			walkFuzzVerdict(t, mode+" All", valid, last)
			if slices.Sort(got); valid && !slices.Equal(got, wantKeys) {
				t.Fatalf("%s: All = %q, want %q", mode, got, wantKeys)
			}
		}
		all("read-only")
		all("read-only, again")
		var listed []string
		for k := range m.Keys(ctx) {
			listed = append(listed, k)
		}
		vals, found, err := m.GetMany(ctx, append(listed, "absent"))
		if err != nil {
			t.Fatalf("GetMany: %v", err)
		}
		for i, k := range listed {
			v, err := m.Get(ctx, k)
			if found[i] != (err == nil) || found[i] && !bytes.Equal(v, vals[i]) {
				t.Fatalf("GetMany(%q) = %q, %v; Get gives %q, %v", k, vals[i], found[i], v, err)
			}
		}
		if err := m.EnableWrite(ctx); err != nil {
			t.Fatal(err)
		}
		all("write")
	})
}

// batchMemCAS is a store of one's own that loads batches (a BatchLoader) over a MemoryCAS. It
// counts its LoadMany calls, loses the block lost (Load: ErrNotFound, LoadMany: nil), and gives
// damaged bytes for the block damaged.
type batchMemCAS struct {
	hamt.CAS
	calls   atomic.Int64
	lost    cid.Cid
	damaged cid.Cid
}

func (c *batchMemCAS) Load(ctx context.Context, id cid.Cid) ([]byte, error) {
	if id == c.lost {
		return nil, fmt.Errorf("block %s: %w", id, hamt.ErrNotFound)
	}
	b, err := c.CAS.Load(ctx, id)
	if err == nil && id == c.damaged {
		b = append(b, '!')
	}
	return b, err
}

func (c *batchMemCAS) LoadMany(ctx context.Context, ids []cid.Cid) ([][]byte, error) {
	c.calls.Add(1)
	out := make([][]byte, len(ids))
	for i, id := range ids {
		b, err := c.Load(ctx, id)
		switch {
		case errors.Is(err, hamt.ErrNotFound):
			continue
		case err != nil:
			return nil, err
		}
		out[i] = b
	}
	return out, nil
}

// TestAllAndGetManyLoadBatchesThroughLoadMany: on a BatchLoader (BoltCAS, or a store of one's
// own), All and GetMany read batches of values with LoadMany and give what Get gives: UnixFS
// values among them, a lost block as ErrMissingBlock in its place, a damaged one as ErrCorrupt
// when the map verifies.
func TestAllAndGetManyLoadBatchesThroughLoadMany(t *testing.T) {
	ctx := context.Background()
	bolt, err := hamt.OpenBoltCAS(filepath.Join(t.TempDir(), "batch.bolt"))
	if err != nil {
		t.Fatal(err)
	}
	defer bolt.Close()
	mem := hamt.NewMemoryCAS()
	want := map[string][]byte{}
	roots := map[string]cid.Cid{}
	for name, store := range map[string]testdag.Store{"BoltCAS": bolt, "MemoryCAS": mem} {
		m, err := hamt.New(ctx, testdag.NewKubo(store, 64, 4), hamt.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		for i := range 300 {
			v := fmt.Appendf(nil, "value %d", i)
			if i%50 == 0 {
				v = bytes.Repeat(v, 20) // a UnixFS file of several chunks
			}
			k := fmt.Sprintf("key-%d", i)
			if err := m.Set(ctx, k, v); err != nil {
				t.Fatal(err)
			}
			want[k] = v
		}
		if roots[name], err = m.Flush(ctx); err != nil {
			t.Fatal(err)
		}
	}
	keys := append(slices.Sorted(maps.Keys(want)), "absent", "key-7")

	r := mustOpen(t, ctx, bolt, roots["BoltCAS"])
	if got := allOf(t, ctx, r); !maps.EqualFunc(got, want, bytes.Equal) {
		t.Errorf("All over BoltCAS differs from what was set")
	}
	checkGetMany(t, ctx, r, keys)

	own := &batchMemCAS{CAS: mem}
	r = mustOpen(t, ctx, own, roots["MemoryCAS"], hamt.WithVerifyBlocks())
	if got := allOf(t, ctx, r); !maps.EqualFunc(got, want, bytes.Equal) {
		t.Errorf("All over a BatchLoader differs from what was set")
	}
	checkGetMany(t, ctx, r, keys)
	if own.calls.Load() == 0 {
		// Loads timed as slow (a busy machine, the race detector) go one by one, through Load;
		// TestValuesLoadsABatchThroughLoadMany covers LoadMany whatever the timing.
		t.Log("LoadMany was never called")
	}

	order := keysOf(t, ctx, r)
	for _, tc := range []struct {
		name string
		set  func(c *batchMemCAS, id cid.Cid)
		want error
	}{
		{"lost", func(c *batchMemCAS, id cid.Cid) { c.lost = id }, hamt.ErrMissingBlock},
		{"damaged", func(c *batchMemCAS, id cid.Cid) { c.damaged = id }, hamt.ErrCorrupt},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bad := order[123]
			id, err := r.GetPointer(ctx, bad)
			if err != nil {
				t.Fatal(err)
			}
			c := &batchMemCAS{CAS: mem}
			tc.set(c, id)
			m := mustOpen(t, ctx, c, roots["MemoryCAS"], hamt.WithVerifyBlocks())
			var got []string
			var last error
			for e, err := range m.All(ctx) {
				if err != nil {
					last = err
					break
				}
				got = append(got, e.Key)
			}
			if !errors.Is(last, tc.want) || !slices.Equal(got, order[:123]) {
				t.Errorf("All: %d keys then %v; want the %d before %q, then %v", len(got), last, 123, bad, tc.want)
			}
			if _, _, err := m.GetMany(ctx, order); !errors.Is(err, tc.want) {
				t.Errorf("GetMany: %v, want %v", err, tc.want)
			}
		})
	}
}
