package hamt_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/hamt-go/hamt"
	"github.com/ipfs/go-cid"
	"pgregory.net/rapid"
)

// gcMap builds a map of kv on cas and returns its flushed root.
func gcMap(t testing.TB, cas hamt.CAS, kv map[string][]byte) cid.Cid {
	t.Helper()
	ctx := context.Background()
	m, err := hamt.New(ctx, cas, hamt.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range kv {
		if err := m.Set(ctx, k, v); err != nil {
			t.Fatal(err)
		}
	}
	root, err := m.Flush(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return root
}

// gcT is what gcCheckMap needs of a *testing.T or a *rapid.T.
type gcT interface {
	Helper()
	Fatalf(format string, args ...any)
}

// gcCheckMap fails unless the map at root holds exactly kv, every value byte read back.
func gcCheckMap(t gcT, cas hamt.CAS, root cid.Cid, kv map[string][]byte) {
	t.Helper()
	ctx := context.Background()
	m, err := hamt.Open(ctx, cas, hamt.Bytes, root)
	if err != nil {
		t.Fatalf("open %s: %v", root, err)
	}
	n := 0
	for k, err := range m.Keys(ctx) {
		if err != nil {
			t.Fatalf("keys of %s: %v", root, err)
		}
		n++
		want, ok := kv[k]
		if !ok {
			t.Fatalf("root %s has key %q it should not", root, k)
		}
		got, err := m.Get(ctx, k)
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("root %s key %q = %d bytes, %v; want %d bytes", root, k, len(got), err, len(want))
		}
	}
	if n != len(kv) {
		t.Fatalf("root %s has %d keys, want %d", root, n, len(kv))
	}
}

// gcKV is n keys with distinct values of about size bytes, tagged so that two calls with other
// tags share no value.
func gcKV(tag string, n, size int) map[string][]byte {
	kv := map[string][]byte{}
	for i := range n {
		kv[fmt.Sprintf("k/%d", i)] = bytes.Repeat([]byte(fmt.Sprintf("%s-%d;", tag, i)), size/8+1)
	}
	return kv
}

func TestValidNameRefusesCIDsAndOddCharacters(t *testing.T) {
	for _, tc := range []struct {
		name string
		ok   bool
	}{
		{"era5", true},
		{"era5/2024-01.v2", true},
		{"_tmp", true},
		{"", false},
		{"-x", false},
		{".hidden", false},
		{"a//b", false},
		{"a/../b", false},
		{"a/", false},
		{"sp ace", false},
		{"é", false},
		{"bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku", false}, // a CID
		{"QmdfTbBqBPQ7VNxZEYEj14VmRuZBkqFbiwReogJgS1zR1n", false},              // a CIDv0
		{string(bytes.Repeat([]byte("a"), 256)), false},
	} {
		err := hamt.ValidName(tc.name)
		if (err == nil) != tc.ok {
			t.Errorf("ValidName(%.20q) = %v, want ok %v", tc.name, err, tc.ok)
		}
		if err != nil && !errors.Is(err, hamt.ErrInvalidName) {
			t.Errorf("ValidName(%.20q) = %v, not ErrInvalidName", tc.name, err)
		}
	}
}

func TestNamesKeepHistoryUntilDroppedAndSurviveReopening(t *testing.T) {
	ctx := context.Background()
	path := boltTempPath(t)
	b := boltOpen(t, path)
	r1 := gcMap(t, b, gcKV("one", 3, 10))
	r2 := gcMap(t, b, gcKV("two", 3, 10))
	if _, err := b.Name(ctx, "era5"); !errors.Is(err, hamt.ErrNameNotFound) || !errors.Is(err, hamt.ErrNotFound) {
		t.Fatalf("Name of a missing name = %v, want ErrNameNotFound wrapping ErrNotFound", err)
	}
	if err := b.SetName(ctx, "era5", r1); err != nil {
		t.Fatal(err)
	}
	if err := b.SetName(ctx, "era5", r1); err != nil { // the same root: no history entry
		t.Fatal(err)
	}
	if err := b.SwapName(ctx, "era5", r2, r2); !errors.Is(err, hamt.ErrNameChanged) {
		t.Fatalf("SwapName from the wrong root = %v, want ErrNameChanged", err)
	}
	if err := b.SwapName(ctx, "era5", r1, r2); err != nil {
		t.Fatal(err)
	}
	if err := b.SwapName(ctx, "new", cid.Undef, r1); err != nil {
		t.Fatal(err)
	}
	if err := b.SwapName(ctx, "new", cid.Undef, r2); !errors.Is(err, hamt.ErrNameChanged) {
		t.Fatalf("SwapName of an existing name from Undef = %v, want ErrNameChanged", err)
	}
	missing := boltCID(0x55, []byte("never saved"))
	if err := b.SetName(ctx, "x", missing); !errors.Is(err, hamt.ErrNotFound) {
		t.Fatalf("SetName to a root the store lacks = %v, want ErrNotFound", err)
	}
	if err := b.SetName(ctx, r1.String(), r1); !errors.Is(err, hamt.ErrInvalidName) {
		t.Fatalf("SetName of a CID = %v, want ErrInvalidName", err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}

	b = boltOpen(t, path, hamt.WithBoltReadOnly())
	n, err := b.Name(ctx, "era5")
	if err != nil {
		t.Fatal(err)
	}
	if !n.Root.Equals(r2) || len(n.History) != 1 || !n.History[0].Root.Equals(r1) || n.Set.Before(n.History[0].Set) {
		t.Fatalf("era5 = %v (set %v), history %v; want %s after %s", n.Root, n.Set, n.History, r2, r1)
	}
	all, err := b.Names(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 2 || all[0].Name != "era5" || all[1].Name != "new" || !all[1].Root.Equals(r1) {
		t.Fatalf("Names = %+v", all)
	}
	if err := b.SetName(ctx, "y", r1); !errors.Is(err, hamt.ErrReadOnly) {
		t.Fatalf("SetName on a read-only store = %v, want ErrReadOnly", err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}

	b = boltOpen(t, path)
	if got, err := b.DropHistory(ctx, "era5"); err != nil || got != 1 {
		t.Fatalf("DropHistory = %d, %v; want 1", got, err)
	}
	if n, err := b.Name(ctx, "era5"); err != nil || len(n.History) != 0 || !n.Root.Equals(r2) {
		t.Fatalf("after DropHistory: %+v, %v", n, err)
	}
	if err := b.DeleteName(ctx, "new"); err != nil {
		t.Fatal(err)
	}
	if err := b.DeleteName(ctx, "new"); !errors.Is(err, hamt.ErrNameNotFound) {
		t.Fatalf("second DeleteName = %v, want ErrNameNotFound", err)
	}
	if _, err := b.DropHistory(ctx, "new"); !errors.Is(err, hamt.ErrNameNotFound) {
		t.Fatalf("DropHistory of a deleted name = %v, want ErrNameNotFound", err)
	}
}

func TestGCRemovesWhatNoKeptRootReachesAndShrinksTheFile(t *testing.T) {
	ctx := context.Background()
	path := boltTempPath(t)
	b := boltOpen(t, path)
	keptKV, oldKV, givenKV, goneKV := gcKV("kept", 200, 2000), gcKV("old", 200, 2000), gcKV("given", 50, 500), gcKV("gone", 400, 2000)
	// Values over one chunk are UnixFS files: kept whole, or removed whole.
	keptKV["file"] = bytes.Repeat([]byte("kept file;"), hamt.DefaultFileChunk/10+100)
	goneKV["file"] = bytes.Repeat([]byte("gone file;"), hamt.DefaultFileChunk/10+100)
	old := gcMap(t, b, oldKV)
	if err := b.SetName(ctx, "ds", old); err != nil {
		t.Fatal(err)
	}
	kept := gcMap(t, b, keptKV)
	if err := b.SetName(ctx, "ds", kept); err != nil {
		t.Fatal(err)
	}
	given := gcMap(t, b, givenKV)
	gone := gcMap(t, b, goneKV)
	if err := b.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	before, err := b.Len(ctx)
	if err != nil {
		t.Fatal(err)
	}

	dry, err := b.GC(ctx, hamt.WithGCRoots(given), hamt.WithGCDryRun())
	if err != nil {
		t.Fatal(err)
	}
	if n, _ := b.Len(ctx); n != before || dry.BlocksRemoved == 0 || dry.Compacted {
		t.Fatalf("dry run: %d blocks left of %d, report %+v", n, before, dry)
	}

	rep, err := b.GC(ctx, hamt.WithGCRoots(given))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%+v", rep)
	if rep.BlocksRemoved != dry.BlocksRemoved || rep.BlocksBefore != before || rep.BlocksAfter != before-rep.BlocksRemoved || rep.Roots != 3 {
		t.Fatalf("report %+v, dry run removed %d, %d blocks before", rep, dry.BlocksRemoved, before)
	}
	if !rep.Compacted || rep.FileAfter >= rep.FileBefore {
		t.Fatalf("file not compacted: %+v", rep)
	}
	if fi, err := os.Stat(path); err != nil || fi.Size() != rep.FileAfter {
		t.Fatalf("file size %v, %v; report says %d", fi, err, rep.FileAfter)
	}
	if n, _ := b.Len(ctx); n != rep.BlocksAfter {
		t.Fatalf("Len after GC = %d, report %d", n, rep.BlocksAfter)
	}
	// The store goes on working on the compacted file: reads, writes, names.
	gcCheckMap(t, b, kept, keptKV)
	gcCheckMap(t, b, old, oldKV)
	gcCheckMap(t, b, given, givenKV)
	if _, err := hamt.Open(ctx, b, hamt.Bytes, gone); !errors.Is(err, hamt.ErrMissingBlock) {
		t.Fatalf("open the unnamed root after GC = %v, want ErrMissingBlock", err)
	}
	again := gcMap(t, b, goneKV)
	if !again.Equals(gone) {
		t.Fatal("the same map has another root")
	}
	if err := b.Check(ctx, true); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	b = boltOpen(t, path, hamt.WithBoltReadOnly())
	gcCheckMap(t, b, gone, goneKV)
	if err := b.Check(ctx, true); err != nil {
		t.Fatal(err)
	}
	if left, _ := filepath.Glob(path + ".gc-*"); len(left) != 0 {
		t.Fatalf("temporary files left: %v", left)
	}
}

func TestGCRefusesWhenANamedRootIsIncomplete(t *testing.T) {
	ctx := context.Background()
	path := boltTempPath(t)
	kv := gcKV("a", 30, 100)
	mem := hamt.NewMemoryCAS()
	root := gcMap(t, mem, kv)
	b := boltOpen(t, path)
	// Copy every block but one value into the store: the root is there, one value is not.
	var skipped bool
	m, err := hamt.Open(ctx, mem, hamt.Bytes, root)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if _, err := hamt.WriteCAR(ctx, mem, root, &buf); err != nil {
		t.Fatal(err)
	}
	lost, err := m.GetPointer(ctx, "k/7")
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := hamt.ReadCAR(ctx, putterFunc(func(ctx context.Context, id cid.Cid, data []byte) error {
		if id.Equals(lost) {
			skipped = true
			return nil
		}
		return b.Put(ctx, id, data)
	}), bytes.NewReader(buf.Bytes())); err != nil {
		t.Fatal(err)
	}
	if !skipped {
		t.Fatal("the value was not in the CAR")
	}
	garbage, err := b.Save(ctx, []byte("garbage"), 0x55)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.SetName(ctx, "broken", root); err != nil {
		t.Fatal(err)
	}
	before, _ := b.Len(ctx)
	_, err = b.GC(ctx)
	if !errors.Is(err, hamt.ErrMissingBlock) {
		t.Fatalf("GC with an incomplete named root = %v, want ErrMissingBlock", err)
	}
	if n, _ := b.Len(ctx); n != before {
		t.Fatalf("the refused GC removed %d blocks", before-n)
	}
	if ok, _ := b.Has(ctx, garbage); !ok {
		t.Fatal("the refused GC removed garbage")
	}
	// A root given that the store lacks is refused too.
	if err := b.DeleteName(ctx, "broken"); err != nil {
		t.Fatal(err)
	}
	if _, err := b.GC(ctx, hamt.WithGCRoots(boltCID(0x55, []byte("absent")))); !errors.Is(err, hamt.ErrMissingBlock) {
		t.Fatalf("GC with a missing root given = %v, want ErrMissingBlock", err)
	}
	if ok, _ := b.Has(ctx, garbage); !ok {
		t.Fatal("the refused GC removed garbage")
	}
}

// putterFunc is a BlockPutter of a function.
type putterFunc func(ctx context.Context, id cid.Cid, data []byte) error

func (f putterFunc) Put(ctx context.Context, id cid.Cid, data []byte) error { return f(ctx, id, data) }

// TestGCKeepsBlocksSavedWhileItRuns: writers save maps, the same blocks again and new ones, while
// GCs run, each holding GCs off from its first save to naming its root (HoldGC); every map a
// writer named reads whole afterwards.
func TestGCKeepsBlocksSavedWhileItRuns(t *testing.T) {
	ctx := context.Background()
	path := boltTempPath(t)
	b := boltOpen(t, path, hamt.WithBoltBatchSize(50))
	garbageKV := gcKV("shared", 300, 300)
	gcMap(t, b, garbageKV) // unnamed: garbage whose values the writers save again
	if err := b.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	type done struct {
		name string
		kv   map[string][]byte
	}
	results := make(chan done, 64)
	for w := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 6 {
				kv := gcKV(fmt.Sprintf("w%d-%d", w, i), 40, 300)
				for k, v := range garbageKV { // values already in the file, unreachable
					if len(kv) < 80 {
						kv["g/"+k] = v
					}
				}
				release := b.HoldGC()
				root := gcMap(t, b, kv)
				name := fmt.Sprintf("w%d/%d", w, i)
				err := b.SetName(ctx, name, root)
				release()
				if err != nil {
					t.Error(err)
					return
				}
				results <- done{name, kv}
			}
		}()
	}
	gcDone := make(chan struct{})
	go func() {
		defer close(gcDone)
		for range 4 {
			if _, err := b.GC(ctx); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	wg.Wait()
	<-gcDone
	close(results)
	if _, err := b.GC(ctx); err != nil {
		t.Fatal(err)
	}
	for r := range results {
		n, err := b.Name(ctx, r.name)
		if err != nil {
			t.Fatal(err)
		}
		gcCheckMap(t, b, n.Root, r.kv)
	}
}

// TestGCKeepsExactlyWhatKeptRootsReach: random maps under random names, some derived from
// others (sharing subtrees, as a name's history does), some names moved, deleted or their
// history dropped, some roots given; after GC every kept root reads whole (every
// key, every value byte) and the store holds exactly the blocks the kept roots reach.
func TestGCKeepsExactlyWhatKeptRootsReach(t *testing.T) {
	ctx := context.Background()
	// One store for every case (an open and its fsyncs cost more than a case): each starts by
	// deleting the names the last one left, whose maps become garbage among the new ones.
	b := boltOpen(t, boltTempPath(t), hamt.WithBoltFlushInterval(0))
	rapid.Check(t, func(rt *rapid.T) {
		old, err := b.Names(ctx)
		if err != nil {
			rt.Fatal(err)
		}
		for _, n := range old {
			if err := b.DeleteName(ctx, n.Name); err != nil {
				rt.Fatal(err)
			}
		}
		valueGen := rapid.OneOf(
			rapid.SliceOfN(rapid.ByteRange(0, 3), 0, 40), // small alphabet: values shared by maps
			rapid.SliceOfN(rapid.Byte(), 0, 2000),
		)
		keyGen := rapid.StringMatching(`[a-c]{1,3}(/[0-9]{1,2})?`)
		model := map[cid.Cid]map[string][]byte{}
		var roots []cid.Cid
		nMaps := rapid.IntRange(1, 5).Draw(rt, "maps")
		for i := range nMaps {
			// A map of its own, or (as a name's history) a few changes to an earlier one, with
			// which it shares most of its tree. Bucket size 1 makes trees a few levels deep.
			opts := []hamt.Option{hamt.WithBucketSize(rapid.SampledFrom([]int{1, 4}).Draw(rt, fmt.Sprint("bucket", i)))}
			var m *hamt.Map[[]byte]
			var kv map[string][]byte
			if i > 0 && rapid.Bool().Draw(rt, fmt.Sprint("derived", i)) {
				from := rapid.SampledFrom(roots).Draw(rt, fmt.Sprint("from", i))
				if m, err = hamt.Open(ctx, b, hamt.Bytes, from, opts...); err != nil {
					rt.Fatal(err)
				}
				if err := m.EnableWrite(ctx); err != nil {
					rt.Fatal(err)
				}
				kv = maps.Clone(model[from])
				for _, k := range rapid.SliceOfN(keyGen, 0, 6).Draw(rt, fmt.Sprint("deletes", i)) {
					if err := m.Delete(ctx, k); err != nil && !errors.Is(err, hamt.ErrNotFound) {
						rt.Fatal(err)
					}
					delete(kv, k)
				}
				for k, v := range rapid.MapOfN(keyGen, valueGen, 0, 6).Draw(rt, fmt.Sprint("sets", i)) {
					if err := m.Set(ctx, k, v); err != nil {
						rt.Fatal(err)
					}
					kv[k] = v
				}
			} else {
				if m, err = hamt.New(ctx, b, hamt.Bytes, opts...); err != nil {
					rt.Fatal(err)
				}
				kv = rapid.MapOfN(keyGen, valueGen, 0, 20).Draw(rt, fmt.Sprint("kv", i))
				for k, v := range kv {
					if err := m.Set(ctx, k, v); err != nil {
						rt.Fatal(err)
					}
				}
			}
			root, err := m.Flush(ctx)
			if err != nil {
				rt.Fatal(err)
			}
			model[root] = kv
			roots = append(roots, root)
		}
		names := []string{"a", "b", "c/d", "e_1"}
		for i := range rapid.IntRange(0, 8).Draw(rt, "sets") {
			name := rapid.SampledFrom(names).Draw(rt, fmt.Sprint("name", i))
			root := rapid.SampledFrom(roots).Draw(rt, fmt.Sprint("root", i))
			if err := b.SetName(ctx, name, root); err != nil {
				rt.Fatal(err)
			}
		}
		for i, name := range names {
			switch rapid.IntRange(0, 3).Draw(rt, fmt.Sprint("fate", i)) {
			case 0:
				if err := b.DeleteName(ctx, name); err != nil && !errors.Is(err, hamt.ErrNameNotFound) {
					rt.Fatal(err)
				}
			case 1:
				if _, err := b.DropHistory(ctx, name); err != nil && !errors.Is(err, hamt.ErrNameNotFound) {
					rt.Fatal(err)
				}
			}
		}
		var given []cid.Cid
		for i := range rapid.IntRange(0, 2).Draw(rt, "given") {
			given = append(given, rapid.SampledFrom(roots).Draw(rt, fmt.Sprint("given", i)))
		}
		kept := map[cid.Cid]bool{}
		for _, r := range given {
			kept[r] = true
		}
		all, err := b.Names(ctx)
		if err != nil {
			rt.Fatal(err)
		}
		for _, n := range all {
			kept[n.Root] = true
			for _, h := range n.History {
				kept[h.Root] = true
			}
		}
		gcOpts := []hamt.GCOption{hamt.WithGCRoots(given...)}
		if rapid.IntRange(0, 3).Draw(rt, "compact") != 0 {
			gcOpts = append(gcOpts, hamt.WithoutGCCompaction()) // compaction costs fsyncs
		}
		if _, err := b.GC(ctx, gcOpts...); err != nil {
			rt.Fatal(err)
		}
		// Every kept root reads whole; the blocks read doing so are all the store holds.
		reach := &gcRecorder{CAS: b, seen: map[string]bool{}}
		for r := range kept {
			gcCheckMap(rt, reach, r, model[r])
		}
		if n, err := b.Len(ctx); err != nil || n != len(reach.seen) {
			rt.Fatalf("the store holds %d blocks (%v); the kept roots reach %d", n, err, len(reach.seen))
		}
		if err := b.Check(ctx, true); err != nil {
			rt.Fatal(err)
		}
	})
}

// gcRecorder is a CAS that records the multihash of every block loaded through it (a BoltCAS
// stores a block once under its multihash, whatever the CIDs' codecs).
type gcRecorder struct {
	hamt.CAS
	seen map[string]bool
}

func (r *gcRecorder) Load(ctx context.Context, id cid.Cid) ([]byte, error) {
	b, err := r.CAS.Load(ctx, id)
	if err == nil {
		r.seen[id.Hash().HexString()] = true
	}
	return b, err
}

// TestStoreWaitingForTheLockDuringACompactionOpensTheNewFile: a store opened while a GC holds the
// file waits for its lock; once the compacted file has replaced the old one, the waiting store
// writes to the new file, not to the old one gone from the directory (before boltOpenFile it
// did, and its blocks were lost).
func TestStoreWaitingForTheLockDuringACompactionOpensTheNewFile(t *testing.T) {
	ctx := context.Background()
	path := boltTempPath(t)
	b := boltOpen(t, path)
	gcMap(t, b, gcKV("garbage", 200, 1000))
	if err := b.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	opened := make(chan *hamt.BoltCAS, 1)
	go func() {
		w, err := hamt.OpenBoltCAS(path, hamt.WithBoltTimeout(30*time.Second))
		if err != nil {
			t.Error(err)
		}
		opened <- w
	}()
	time.Sleep(200 * time.Millisecond) // the open is waiting for the lock of the file at path now
	if rep, err := b.GC(ctx); err != nil || !rep.Compacted {
		t.Fatalf("GC = %+v, %v", rep, err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	w := <-opened
	if w == nil {
		t.FailNow()
	}
	id, err := w.Save(ctx, []byte("after the GC"), 0x55)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	r := boltOpen(t, path, hamt.WithBoltReadOnly())
	if ok, err := r.Has(ctx, id); !ok || err != nil {
		t.Fatalf("the block the waiting store saved is not in the file at the path: %v, %v", ok, err)
	}
}
