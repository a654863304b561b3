package hamt_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/hamt-go/hamt"
	"github.com/ipfs/go-cid"
	"github.com/multiformats/go-multicodec"
	"pgregory.net/rapid"
)

// carAheadBigValues are the values over one chunk the CAR tests put in maps: UnixFS files of two
// and three leaves, one of two identical leaves, and a raw value of exactly one chunk of zeros
// (the same block as that file's leaves, so a CAR holds it once).
var carAheadBigValues = func() [][]byte {
	r := rand.New(rand.NewPCG(14, 3))
	random := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(r.Uint32())
		}
		return b
	}
	return [][]byte{random(1<<20 + 1), make([]byte, 2<<20), make([]byte, 1<<20), random(3_000_000)}
}()

// writeCARBytes is the CAR WriteCAR writes of root on cas, or the error's text.
func writeCARBytes(ctx context.Context, cas hamt.CAS, root cid.Cid, opts ...hamt.Option) (string, error) {
	var buf bytes.Buffer
	n, err := hamt.WriteCAR(ctx, cas, root, &buf, opts...)
	return fmt.Sprintf("%d blocks\n%s", n, buf.String()), err
}

// TestParallelWriteCARWritesTheSequentialBytes: on random maps (small values, many shared, and
// now and then values over 1 MiB, UnixFS files), WriteCAR over a store whose node and value loads
// are slow, loading values ahead, writes byte for byte the CAR that WithWalkParallelism(1) writes
// on memory, and never has more value loads in flight than the parallelism allows.
func TestParallelWriteCARWritesTheSequentialBytes(t *testing.T) {
	ctx := context.Background()
	mem := hamt.NewMemoryCAS()
	ahead := 0
	rapid.Check(t, func(rt *rapid.T) {
		m, err := hamt.New(ctx, mem, hamt.Bytes)
		if err != nil {
			rt.Fatal(err)
		}
		n := rapid.IntRange(0, 200).Draw(rt, "keys")
		big := rapid.SampledFrom([]int{0, 0, 0, 1, 2}).Draw(rt, "big") // files cost time to hash
		for i := range n {
			v := fmt.Appendf(nil, "v%d", rapid.IntRange(0, n/3+1).Draw(rt, "value"))
			if i < big {
				v = carAheadBigValues[rapid.IntRange(0, 2).Draw(rt, "bigValue")]
			}
			if err := m.Set(ctx, fmt.Sprintf("k%d", i), v); err != nil {
				rt.Fatal(err)
			}
		}
		root, err := m.Flush(ctx)
		if err != nil {
			rt.Fatal(err)
		}
		want, err := writeCARBytes(ctx, mem, root, hamt.WithWalkParallelism(1))
		if err != nil {
			rt.Fatal(err)
		}
		par := rapid.IntRange(2, 8).Draw(rt, "parallelism")
		slow := newLatencyCAS(mem, 80*time.Microsecond, 80*time.Microsecond).withJitter(rapid.Uint64().Draw(rt, "seed"))
		got, err := writeCARBytes(ctx, slow, root, hamt.WithWalkParallelism(par))
		if err != nil {
			rt.Fatal(err)
		}
		if got != want {
			rt.Fatalf("the CAR over latency (%d bytes) differs from the sequential one (%d bytes)", len(got), len(want))
		}
		most := slow.maxValuesInFlight.Load()
		if most > 1 {
			ahead++
		}
		// Raw values: at most par at once; while a file is written, its blocks besides them.
		if limit := int64(par) * 3; most > limit {
			rt.Fatalf("%d value loads at once, parallelism %d", most, par)
		}
	})
	if ahead == 0 {
		t.Error("no WriteCAR loaded values ahead: the test shows nothing")
	}
}

// TestParallelWriteCARWritesFilesAndShardedRootsAsBefore: a map of many files (values over 1 MiB)
// and small values, and a sharded Zarr root, give the same CAR bytes over a slow store as with
// WithWalkParallelism(1) on memory, and the file's blocks are loaded several at once.
func TestParallelWriteCARWritesFilesAndShardedRootsAsBefore(t *testing.T) {
	ctx := context.Background()
	mem := hamt.NewMemoryCAS()
	m, err := hamt.New(ctx, mem, hamt.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	file := make([]byte, 6<<20) // six leaves
	for i := range file {
		file[i] = byte(i / 4093)
	}
	for i := range 300 {
		v := fmt.Appendf(nil, "value-%d", i%50)
		if i%100 == 7 {
			v = append(file, byte(i))
		}
		if err := m.Set(ctx, fmt.Sprintf("key-%d", i), v); err != nil {
			t.Fatal(err)
		}
	}
	root, err := m.Flush(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for name, r := range map[string]cid.Cid{"map": root, "sharded": shardedListingStore(t, mem)} {
		want, err := writeCARBytes(ctx, mem, r, hamt.WithWalkParallelism(1))
		if err != nil {
			t.Fatal(err)
		}
		slow := newLatencyCAS(mem, 200*time.Microsecond, 200*time.Microsecond).withJitter(5)
		got, err := writeCARBytes(ctx, slow, r)
		if err != nil {
			t.Fatal(err)
		}
		if got != want {
			t.Errorf("%s: the CAR over latency differs from the sequential one", name)
		}
		if name == "map" && slow.maxValuesInFlight.Load() < 4 {
			t.Errorf("%s: %d value loads at once", name, slow.maxValuesInFlight.Load())
		}
	}
}

// TestWriteCARReportsAValueFailureWhereTheSequentialPathDoes: a value block (raw, or a leaf of a
// file) that fails to load fails WriteCAR with the error, and after the blocks, that
// WithWalkParallelism(1) gives on the same failure; the loads ahead leave no goroutine.
func TestWriteCARReportsAValueFailureWhereTheSequentialPathDoes(t *testing.T) {
	ctx := context.Background()
	mem := hamt.NewMemoryCAS()
	m, err := hamt.New(ctx, mem, hamt.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	file := carAheadBigValues[1]
	for i := range 2000 {
		v := fmt.Appendf(nil, "value-%d", i)
		if i == 1500 {
			v = file
		}
		if err := m.Set(ctx, fmt.Sprintf("key-%d", i), v); err != nil {
			t.Fatal(err)
		}
	}
	root, err := m.Flush(ctx)
	if err != nil {
		t.Fatal(err)
	}
	rec := &blockRecorder{CAS: mem}
	if _, err := writeCARBytes(ctx, rec, root, hamt.WithWalkParallelism(1)); err != nil {
		t.Fatal(err)
	}
	var raws []cid.Cid // raw blocks in the order WriteCAR loads them: small values and file leaves
	var leaf cid.Cid
	for _, id := range rec.ids {
		if id.Type() != uint64(multicodec.Raw) {
			continue
		}
		raws = append(raws, id)
		if b, err := mem.Load(ctx, id); err == nil && len(b) == 1<<20 && !leaf.Defined() {
			leaf = id
		}
	}
	if len(raws) < 2000 || !leaf.Defined() {
		t.Fatalf("%d raw blocks loaded, a leaf: %v", len(raws), leaf)
	}
	before := runtime.NumGoroutine()
	for _, lost := range []cid.Cid{raws[len(raws)/2], raws[len(raws)-1], leaf} {
		seq := newLatencyCAS(mem, 0, 0)
		seq.lose(lost)
		want, wantErr := writeCARBytes(ctx, seq, root, hamt.WithWalkParallelism(1))
		slow := newLatencyCAS(mem, 100*time.Microsecond, 100*time.Microsecond).withJitter(9)
		slow.lose(lost)
		got, err := writeCARBytes(ctx, slow, root)
		if !errors.Is(err, hamt.ErrMissingBlock) || wantErr == nil || err.Error() != wantErr.Error() {
			t.Errorf("lost %s: %v, want %v", lost, err, wantErr)
		}
		if got != want {
			t.Errorf("lost %s: wrote %d bytes before the failure, the sequential path %d", lost, len(got), len(want))
		}
		if slow.maxValuesInFlight.Load() < 2 {
			t.Errorf("lost %s: no value loaded ahead: the test shows nothing", lost)
		}
		if left := settledGoroutines(before); left > before {
			t.Errorf("lost %s: %d goroutines left, %d before", lost, left, before)
		}
	}
}

// TestWriteCARWritesASameShardedRootInOneOrder: WriteCAR of a sharded root gives the same bytes
// every time (it walked the root's metadata and arrays in Go's random map order).
func TestWriteCARWritesASameShardedRootInOneOrder(t *testing.T) {
	ctx := context.Background()
	mem := hamt.NewMemoryCAS()
	root := shardedListingStore(t, mem)
	want, err := writeCARBytes(ctx, mem, root)
	if err != nil {
		t.Fatal(err)
	}
	for range 10 {
		if got, err := writeCARBytes(ctx, mem, root); err != nil || got != want {
			t.Fatalf("a second CAR of the same sharded root differs (%v)", err)
		}
	}
}

// TestInspectLoadsValueSizesAheadOnASlowStore: Inspect with value sizes over a slow store asks for
// several sizes at once and gives what it gives on memory, a file's size included; a lost value
// is ErrMissingBlock there too, and leaves no goroutine.
func TestInspectLoadsValueSizesAheadOnASlowStore(t *testing.T) {
	ctx := context.Background()
	mem := hamt.NewMemoryCAS()
	m, err := hamt.New(ctx, mem, hamt.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	var lost cid.Cid
	for i := range 3000 {
		v := fmt.Appendf(nil, "value-%d", i%700)
		if i == 5 {
			v = carAheadBigValues[0]
		}
		if err := m.Set(ctx, fmt.Sprintf("key-%d", i), v); err != nil {
			t.Fatal(err)
		}
	}
	root, err := m.Flush(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if lost, err = m.GetPointer(ctx, "key-77"); err != nil {
		t.Fatal(err)
	}
	want, err := hamt.Inspect(ctx, mem, root, true, hamt.WithWalkParallelism(1))
	if err != nil || want.ValueBytes < 1<<20 || want.Values != 701 {
		t.Fatalf("Inspect on memory: %+v, %v", want, err)
	}
	slow := newLatencyCAS(mem, 200*time.Microsecond, 200*time.Microsecond).withJitter(3)
	got, err := hamt.Inspect(ctx, slow, root, true)
	if err != nil || fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("Inspect over latency: %+v, %v; want %+v", got, err, want)
	}
	if most := slow.maxValuesInFlight.Load(); most < 2 || most > hamt.DefaultWalkParallelism {
		t.Errorf("%d value sizes asked at once", most)
	}
	before := runtime.NumGoroutine()
	slow.lose(lost)
	if _, err := hamt.Inspect(ctx, slow, root, true); !errors.Is(err, hamt.ErrMissingBlock) || !strings.Contains(err.Error(), lost.String()) {
		t.Errorf("Inspect with a lost value: %v", err)
	}
	if left := settledGoroutines(before); left > before {
		t.Errorf("%d goroutines left, %d before", left, before)
	}
}

// TestCancellingWriteCARWithValuesInFlightLeavesNoGoroutine: a WriteCAR cancelled while it loads
// values ahead ends with the cancellation, and its loads' goroutines have ended.
func TestCancellingWriteCARWithValuesInFlightLeavesNoGoroutine(t *testing.T) {
	mem, _, root := walkLatencyMap(t, 5000, 0)
	slow := newLatencyCAS(mem, 300*time.Microsecond, 300*time.Microsecond)
	before := runtime.NumGoroutine()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		deadline := time.Now().Add(5 * time.Second)
		for slow.valuesInFlight.Load() < 2 && time.Now().Before(deadline) {
			time.Sleep(50 * time.Microsecond)
		}
		cancel()
	}()
	if _, err := hamt.WriteCAR(ctx, slow, root, &bytes.Buffer{}); !errors.Is(err, context.Canceled) {
		t.Errorf("WriteCAR: %v, want the cancellation", err)
	}
	if slow.maxValuesInFlight.Load() < 2 {
		t.Error("no value load ahead was in flight: the test shows nothing")
	}
	if left := settledGoroutines(before); left > before {
		t.Errorf("%d goroutines left, %d before", left, before)
	}
}
