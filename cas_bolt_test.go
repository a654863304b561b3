package hamt_test

// Tests of BoltCAS on real bbolt files. What a commit puts on disk is judged from outside: a child
// process (this test binary re-executed into TestBoltCrashChild) writes, says on its standard
// output what it has done, and is killed with SIGKILL; the parent then opens the file and looks.
//
// Helpers here are prefixed "bolt" to keep clear of the package's other black-box tests.

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hamt-go/hamt"
	"github.com/ipfs/go-cid"
	"github.com/multiformats/go-multicodec"
	"github.com/multiformats/go-multihash"
	"github.com/zeebo/blake3"
	bolt "go.etcd.io/bbolt"
)

// boltOpen opens a BoltCAS at path, closed at the end of the test unless the test closed it.
func boltOpen(t testing.TB, path string, opts ...hamt.BoltOption) *hamt.BoltCAS {
	t.Helper()
	b, err := hamt.OpenBoltCAS(path, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return b
}

// boltTempPath is a fresh file name in the test's temporary directory.
func boltTempPath(t testing.TB) string { return filepath.Join(t.TempDir(), "blocks.bolt") }

// boltCID is CIDv1(codec, blake3-256(data)).
func boltCID(codec multicodec.Code, data []byte) cid.Cid {
	d := blake3.Sum256(data)
	mh, _ := multihash.Encode(d[:], multihash.BLAKE3)
	return cid.NewCidV1(uint64(codec), mh)
}

// boltBlock is block i of a seeded sequence: 16 to maxSize random bytes, the same in every
// process. No two blocks of a test are the same (a test that counts blocks relies on that).
func boltBlock(seed uint64, i, maxSize int) []byte {
	var key [32]byte
	binary.LittleEndian.PutUint64(key[:], seed)
	binary.LittleEndian.PutUint64(key[8:], uint64(i))
	r := rand.NewChaCha8(key)
	b := make([]byte, 16+rand.New(r).IntN(maxSize-15))
	_, _ = r.Read(b)
	return b
}

// boltCodec is the codec block i of a sequence is saved with: the same bytes under both are one
// block, so both must be exercised.
func boltCodec(i int) multicodec.Code {
	if i%3 == 0 {
		return multicodec.DagCbor
	}
	return multicodec.Raw
}

func TestBoltRoundTripsFromTheBufferAndFromTheFile(t *testing.T) {
	ctx := context.Background()
	path := boltTempPath(t)
	sizes := []int{0, 5, 1 << 20, 3 << 20}
	blocks := map[cid.Cid][]byte{}
	b := boltOpen(t, path, hamt.WithBoltFlushInterval(0))
	for _, n := range sizes {
		data := make([]byte, n)
		for i := range data {
			data[i] = byte(i*7 + n)
		}
		id, err := b.Save(ctx, data, multicodec.Raw)
		if err != nil {
			t.Fatal(err)
		}
		if want := boltCID(multicodec.Raw, data); !id.Equals(want) {
			t.Fatalf("Save of %d bytes gave %s, want %s", n, id, want)
		}
		blocks[id] = data
	}
	ranges := []hamt.ByteRange{
		{}, hamt.RangeBetween(0, 1), hamt.RangeBetween(2, 4), hamt.RangeBetween(3, 1<<30),
		hamt.RangeBetween(1<<30, 1<<31), hamt.RangeFrom(1), hamt.RangeFrom(1 << 21),
		hamt.RangeSuffix(0), hamt.RangeSuffix(3), hamt.RangeSuffix(1 << 30),
	}
	check := func(t *testing.T, b *hamt.BoltCAS) {
		for id, data := range blocks {
			got, err := b.Load(ctx, id)
			if err != nil || !bytes.Equal(got, data) || got == nil {
				t.Fatalf("Load(%d-byte block) = %d bytes, %v", len(data), len(got), err)
			}
			size, err := b.BlockSize(ctx, id)
			if err != nil || size != int64(len(data)) {
				t.Errorf("BlockSize = %d, %v; want %d", size, err, len(data))
			}
			for _, r := range ranges {
				got, err := b.LoadRange(ctx, id, r)
				if want := r.Slice(data); err != nil || !bytes.Equal(got, want) {
					t.Errorf("LoadRange(%d-byte block, %v) = %d bytes, %v; want %d", len(data), r, len(got), err, len(want))
				}
			}
		}
		if n, err := b.Len(ctx); err != nil || n != len(sizes) {
			t.Errorf("Len = %d, %v; want %d", n, err, len(sizes))
		}
	}
	t.Run("from the buffer", func(t *testing.T) { check(t, b) })
	if err := b.CloseStrict(); err != nil {
		t.Fatal(err)
	}
	t.Run("from the file", func(t *testing.T) {
		check(t, boltOpen(t, path, hamt.WithBoltReadOnly()))
	})
}

func TestBoltSameBytesAsRawAndDagCborAreStoredOnce(t *testing.T) {
	ctx := context.Background()
	path := boltTempPath(t)
	b := boltOpen(t, path)
	data := []byte{0xa1, 0x61, 0x61, 0x01}
	raw, err := b.Save(ctx, data, multicodec.Raw)
	if err != nil {
		t.Fatal(err)
	}
	node, err := b.Save(ctx, data, multicodec.DagCbor)
	if err != nil {
		t.Fatal(err)
	}
	if raw.Equals(node) || node.Prefix().Codec != uint64(multicodec.DagCbor) {
		t.Fatalf("CIDs %s and %s", raw, node)
	}
	check := func(b *hamt.BoltCAS) {
		t.Helper()
		if n, err := b.Len(ctx); err != nil || n != 1 {
			t.Errorf("Len = %d, %v; want 1", n, err)
		}
		for _, id := range []cid.Cid{raw, node} {
			if got, err := b.Load(ctx, id); err != nil || !bytes.Equal(got, data) {
				t.Errorf("Load(%s) = %x, %v", id, got, err)
			}
		}
	}
	check(b)
	if err := b.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	check(b)
	// Saved again once in the file: still one block.
	if _, err := b.Save(ctx, data, multicodec.Raw); err != nil {
		t.Fatal(err)
	}
	check(b)
	if err := b.CloseStrict(); err != nil {
		t.Fatal(err)
	}
	ro := boltOpen(t, path, hamt.WithBoltReadOnly())
	check(ro)
	if err := ro.Check(ctx, true); err != nil {
		t.Fatal(err)
	}
}

func TestBoltPutTakesForeignCIDsAndRefusesWrongBytes(t *testing.T) {
	ctx := context.Background()
	path := boltTempPath(t)
	b := boltOpen(t, path)
	data := []byte("a block from a CAR file")
	sha, err := cid.Prefix{Version: 1, Codec: uint64(multicodec.Raw), MhType: multihash.SHA2_256, MhLength: -1}.Sum(data)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Put(ctx, sha, data); err != nil {
		t.Fatal(err)
	}
	if got, err := b.Load(ctx, sha); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("Load(%s) = %q, %v", sha, got, err)
	}
	// The same bytes under their blake3 CID are another block: the key is the multihash.
	if ok, err := b.Has(ctx, boltCID(multicodec.Raw, data)); err != nil || ok {
		t.Errorf("Has(blake3 CID of the sha2 block) = %v, %v", ok, err)
	}
	for name, id := range map[string]cid.Cid{"sha2-256": sha, "blake3": boltCID(multicodec.Raw, data)} {
		if err := b.Put(ctx, id, []byte("other bytes")); !errors.Is(err, hamt.ErrCorrupt) {
			t.Errorf("Put(%s CID, wrong bytes) = %v, want ErrCorrupt", name, err)
		}
	}
	if err := b.CloseStrict(); err != nil {
		t.Fatal(err)
	}
	ro := boltOpen(t, path, hamt.WithBoltReadOnly())
	if got, err := ro.Load(ctx, sha); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("after reopening, Load(%s) = %q, %v", sha, got, err)
	}
	if n, err := ro.Len(ctx); err != nil || n != 1 {
		t.Errorf("Len = %d, %v; want 1 (the wrong bytes were not stored)", n, err)
	}
	if err := ro.Check(ctx, true); err != nil {
		t.Errorf("Check of a sha2-256 block: %v", err)
	}
}

func TestBoltMissingBlocksAreNotFound(t *testing.T) {
	ctx := context.Background()
	b := boltOpen(t, boltTempPath(t))
	if _, err := b.Save(ctx, []byte("present"), multicodec.Raw); err != nil {
		t.Fatal(err)
	}
	missing := boltCID(multicodec.Raw, []byte("absent"))
	for _, when := range []string{"buffered", "flushed"} {
		if when == "flushed" {
			if err := b.Flush(ctx); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := b.Load(ctx, missing); !errors.Is(err, hamt.ErrNotFound) || !strings.Contains(err.Error(), missing.String()) {
			t.Errorf("%s: Load(missing) = %v, want ErrNotFound naming the CID", when, err)
		}
		if _, err := b.LoadRange(ctx, missing, hamt.RangeFrom(1)); !errors.Is(err, hamt.ErrNotFound) {
			t.Errorf("%s: LoadRange(missing) = %v, want ErrNotFound", when, err)
		}
		if _, err := b.BlockSize(ctx, missing); !errors.Is(err, hamt.ErrNotFound) {
			t.Errorf("%s: BlockSize(missing) = %v, want ErrNotFound", when, err)
		}
		if ok, err := b.Has(ctx, missing); ok || err != nil {
			t.Errorf("%s: Has(missing) = %v, %v", when, ok, err)
		}
		if _, err := b.Load(ctx, cid.Undef); !errors.Is(err, hamt.ErrNotFound) {
			t.Errorf("%s: Load(cid.Undef) = %v, want ErrNotFound", when, err)
		}
	}
}

func TestBoltLoadManyGivesNilForMissingBlocksOnly(t *testing.T) {
	ctx := context.Background()
	b := boltOpen(t, boltTempPath(t), hamt.WithBoltFlushInterval(0))
	inFile, err := b.SaveMany(ctx, [][]byte{{}, []byte("in the file")}, multicodec.Raw)
	if err != nil {
		t.Fatal(err)
	}
	buffered, err := b.Save(ctx, []byte("buffered"), multicodec.DagCbor)
	if err != nil {
		t.Fatal(err)
	}
	ids := []cid.Cid{inFile[1], boltCID(multicodec.Raw, []byte("missing")), inFile[0], buffered, cid.Undef, inFile[1]}
	want := [][]byte{[]byte("in the file"), nil, {}, []byte("buffered"), nil, []byte("in the file")}
	got, err := b.LoadMany(ctx, ids)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("LoadMany gave %d entries for %d ids", len(got), len(ids))
	}
	for i := range want {
		if (got[i] == nil) != (want[i] == nil) || !bytes.Equal(got[i], want[i]) {
			t.Errorf("entry %d = %q (nil: %v), want %q (nil: %v)", i, got[i], got[i] == nil, want[i], want[i] == nil)
		}
	}
	if got, err := b.LoadMany(ctx, nil); err != nil || len(got) != 0 {
		t.Errorf("LoadMany(nil) = %v, %v", got, err)
	}
}

func TestBoltReadsSeeBufferedWrites(t *testing.T) {
	ctx := context.Background()
	b := boltOpen(t, boltTempPath(t), hamt.WithBoltBatchSize(1000), hamt.WithBoltFlushInterval(0))
	var ids []cid.Cid
	for i := range 10 {
		data := boltBlock(1, i, 100)
		id, err := b.Save(ctx, data, boltCodec(i))
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
		if got, err := b.Load(ctx, id); err != nil || !bytes.Equal(got, data) {
			t.Fatalf("Load right after Save = %x, %v", got, err)
		}
		if ok, err := b.Has(ctx, id); !ok || err != nil {
			t.Fatalf("Has right after Save = %v, %v", ok, err)
		}
	}
	got, err := b.LoadMany(ctx, ids)
	if err != nil {
		t.Fatal(err)
	}
	for i := range ids {
		if !bytes.Equal(got[i], boltBlock(1, i, 100)) || got[i] == nil {
			t.Errorf("LoadMany entry %d = %x", i, got[i])
		}
	}
	if n, err := b.Len(ctx); err != nil || n != 10 {
		t.Errorf("Len = %d, %v; want 10", n, err)
	}
}

// boltChild is a running TestBoltCrashChild.
type boltChild struct {
	cmd     *exec.Cmd
	stderr  bytes.Buffer
	exited  chan struct{} // closed when the child has ended and all its output is in
	waitErr error         // how it ended; set before exited is closed

	mu      sync.Mutex
	partial []byte
	lines   []string      // its lines that start with "bolt-child ", that prefix cut
	changed chan struct{} // a token after each write
}

// Write collects the child's standard output; exec calls it from its copying goroutine, and
// Wait returns only once everything the child wrote has been through it.
func (c *boltChild) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.partial = append(c.partial, p...)
	for {
		i := bytes.IndexByte(c.partial, '\n')
		if i < 0 {
			break
		}
		if line, ok := strings.CutPrefix(string(c.partial[:i]), "bolt-child "); ok {
			c.lines = append(c.lines, line)
		}
		c.partial = c.partial[i+1:]
	}
	select {
	case c.changed <- struct{}{}:
	default:
	}
	return len(p), nil
}

// boltStartChild re-executes the test binary as TestBoltCrashChild in the given mode, writing
// the file path with blocks of the given seed; env adds HAMT_BOLT_* settings.
func boltStartChild(t *testing.T, mode, path string, seed uint64, env ...string) *boltChild {
	t.Helper()
	c := &boltChild{exited: make(chan struct{}), changed: make(chan struct{}, 1)}
	c.cmd = exec.Command(os.Args[0], "-test.run=^TestBoltCrashChild$", "-test.count=1")
	c.cmd.Env = append(os.Environ(), "HAMT_BOLT_CHILD="+mode, "HAMT_BOLT_FILE="+path, fmt.Sprintf("HAMT_BOLT_SEED=%d", seed))
	c.cmd.Env = append(c.cmd.Env, env...)
	c.cmd.Stdout, c.cmd.Stderr = c, &c.stderr
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		c.waitErr = c.cmd.Wait()
		close(c.exited)
	}()
	t.Cleanup(func() {
		_ = c.cmd.Process.Kill()
		<-c.exited
		if t.Failed() && c.stderr.Len() > 0 {
			t.Logf("child's stderr:\n%s", c.stderr.String())
		}
	})
	return c
}

// waitFor returns once the child printed want, failing the test if it ends first.
func (c *boltChild) waitFor(t *testing.T, want string) {
	t.Helper()
	timeout := time.After(60 * time.Second)
	for {
		c.mu.Lock()
		said := slices.Contains(c.lines, want)
		c.mu.Unlock()
		if said {
			return
		}
		select {
		case <-c.changed:
		case <-c.exited:
			t.Fatalf("child ended (%v) before saying %q", c.waitErr, want)
		case <-timeout:
			t.Fatalf("child did not say %q within 60 s", want)
		}
	}
}

// kill SIGKILLs the child and returns every line it printed, checking it was still running (a
// child that ended on its own has failed).
func (c *boltChild) kill(t *testing.T) []string {
	t.Helper()
	if err := c.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatalf("kill child: %v", err)
	}
	<-c.exited
	var ee *exec.ExitError
	if !errors.As(c.waitErr, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("child was not killed but ended with %v", c.waitErr)
	}
	return c.lines
}

// boltPresent reports which of blocks 0..n-1 of a seeded sequence the file at path holds, after
// checking the file.
func boltPresent(t *testing.T, path string, seed uint64, from, n, maxSize int) []bool {
	t.Helper()
	ctx := context.Background()
	b := boltOpen(t, path, hamt.WithBoltReadOnly())
	if err := b.Check(ctx, true); err != nil {
		t.Fatalf("Check after the kill: %v", err)
	}
	ids := make([]cid.Cid, n)
	for i := range n {
		ids[i] = boltCID(boltCodec(from+i), boltBlock(seed, from+i, maxSize))
	}
	got, err := b.LoadMany(ctx, ids)
	if err != nil {
		t.Fatal(err)
	}
	present := make([]bool, n)
	for i := range n {
		present[i] = got[i] != nil
		if got[i] != nil && !bytes.Equal(got[i], boltBlock(seed, from+i, maxSize)) {
			t.Fatalf("block %d has other bytes", from+i)
		}
	}
	if err := b.CloseStrict(); err != nil {
		t.Fatal(err)
	}
	return present
}

func boltCount(present []bool) int {
	n := 0
	for _, p := range present {
		if p {
			n++
		}
	}
	return n
}

// TestBoltBufferedBlocksReachTheFileOnlyWhenCommitted: a child saves blocks under given options
// and is killed; the file holds exactly the blocks a commit (by size, interval or Flush) wrote.
func TestBoltBufferedBlocksReachTheFileOnlyWhenCommitted(t *testing.T) {
	for _, tc := range []struct {
		name       string
		env        []string
		saves      int
		wait       time.Duration // after the saves, before the kill
		wantStored int           // blocks 0..wantStored-1 are in the file, the others not
	}{
		{"a kill before Flush loses the buffered blocks", []string{"HAMT_BOLT_BATCH=1000", "HAMT_BOLT_INTERVAL=0"}, 10, 0, 0},
		{"a kill after Flush keeps them", []string{"HAMT_BOLT_BATCH=1000", "HAMT_BOLT_INTERVAL=0", "HAMT_BOLT_FLUSH=1"}, 10, 0, 10},
		{"the 10th Save of a batch of 10 commits the batch", []string{"HAMT_BOLT_BATCH=10", "HAMT_BOLT_INTERVAL=0"}, 15, 0, 10},
		{"every Save of a batch of 1 is committed", []string{"HAMT_BOLT_BATCH=1", "HAMT_BOLT_INTERVAL=0"}, 7, 0, 7},
		{"a 50 ms interval commits without Flush", []string{"HAMT_BOLT_BATCH=1000", "HAMT_BOLT_INTERVAL=50ms"}, 10, 300 * time.Millisecond, 10},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := boltTempPath(t)
			child := boltStartChild(t, "save", path, 3, append(tc.env, fmt.Sprintf("HAMT_BOLT_N=%d", tc.saves))...)
			child.waitFor(t, "saved")
			time.Sleep(tc.wait)
			child.kill(t)
			present := boltPresent(t, path, 3, 0, tc.saves, 1024)
			for i, p := range present {
				if p != (i < tc.wantStored) {
					t.Errorf("block %d in the file: %v, want %v", i, p, i < tc.wantStored)
				}
			}
		})
	}
}

// TestBoltSaveManyIsAllOrNothing: a child doing SaveMany of 2,000 blocks after another is killed at
// random moments; every SaveMany is in the file whole or not at all, and those that returned are.
func TestBoltSaveManyIsAllOrNothing(t *testing.T) {
	const perCall, maxSize = 2000, 4096
	r := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 0))
	for run := range 5 {
		t.Run(fmt.Sprint(run), func(t *testing.T) {
			path := boltTempPath(t)
			seed := uint64(100 + run)
			child := boltStartChild(t, "many", path, seed)
			child.waitFor(t, "ready")
			time.Sleep(time.Duration(20+r.IntN(300)) * time.Millisecond)
			lines := child.kill(t)
			returned, inside := 0, false // inside: the kill came between "calling" and "returned"
			for _, l := range lines {
				if n, ok := strings.CutPrefix(l, "returned "); ok {
					returned, _ = strconv.Atoi(n)
				}
				inside = strings.HasPrefix(l, "calling ")
			}
			present := boltPresent(t, path, seed, 0, (returned+2)*perCall, maxSize)
			for call := range returned + 2 {
				n := boltCount(present[call*perCall : (call+1)*perCall])
				switch {
				case n != 0 && n != perCall:
					t.Errorf("SaveMany %d left %d of its %d blocks", call, n, perCall)
				case call < returned && n != perCall:
					t.Errorf("SaveMany %d returned but its blocks are not in the file", call)
				}
			}
			t.Logf("%d SaveMany calls returned before the kill, which came %s; the next one was %s", returned,
				map[bool]string{true: "inside the next call", false: "between calls"}[inside],
				map[bool]string{true: "committed", false: "lost whole"}[present[returned*perCall]])
		})
	}
}

func TestBoltSaveManyWithACanceledContextStoresNothing(t *testing.T) {
	ctx := context.Background()
	path := boltTempPath(t)
	b := boltOpen(t, path, hamt.WithBoltFlushInterval(0))
	if _, err := b.Save(ctx, []byte("buffered before"), multicodec.Raw); err != nil {
		t.Fatal(err)
	}
	blocks := make([][]byte, 2000)
	for i := range blocks {
		blocks[i] = boltBlock(9, i, 4096)
	}
	canceled, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := b.SaveMany(canceled, blocks, multicodec.Raw); !errors.Is(err, context.Canceled) {
		t.Fatalf("SaveMany(canceled) = %v, want context.Canceled", err)
	}
	if n, err := b.Len(ctx); err != nil || n != 1 {
		t.Fatalf("Len = %d, %v; want 1", n, err)
	}
	// Canceled while it works: it stores all or nothing, and says which.
	for range 5 {
		ctx2, cancel := context.WithTimeout(ctx, time.Duration(rand.IntN(3000))*time.Microsecond)
		_, err := b.SaveMany(ctx2, blocks, multicodec.Raw)
		cancel()
		n, lenErr := b.Len(ctx)
		if lenErr != nil {
			t.Fatal(lenErr)
		}
		if err == nil && n == 2001 {
			break
		}
		if !errors.Is(err, context.DeadlineExceeded) || n != 1 {
			t.Fatalf("SaveMany cut by its context = %v, and Len is %d", err, n)
		}
	}
	// The block buffered before is still there, and still gets committed.
	if err := b.CloseStrict(); err != nil {
		t.Fatal(err)
	}
	ro := boltOpen(t, path, hamt.WithBoltReadOnly())
	if ok, err := ro.Has(ctx, boltCID(multicodec.Raw, []byte("buffered before"))); !ok || err != nil {
		t.Errorf("the block buffered before the canceled SaveMany: Has = %v, %v", ok, err)
	}
}

func TestBoltConcurrentUse(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts []hamt.BoltOption
	}{
		{"batches of 50 and a 5 ms interval", []hamt.BoltOption{hamt.WithBoltBatchSize(50), hamt.WithBoltFlushInterval(5 * time.Millisecond)}},
		{"a commit per Save", []hamt.BoltOption{hamt.WithBoltBatchSize(1), hamt.WithBoltFlushInterval(0)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			path := boltTempPath(t)
			b := boltOpen(t, path, tc.opts...)
			const workers, perWorker, shared = 16, 100, 20 // every fifth block is shared
			var wg sync.WaitGroup
			errs := make(chan error, workers)
			for w := range workers {
				wg.Go(func() {
					var mine []cid.Cid
					for i := range perWorker {
						data := fmt.Appendf(nil, "worker %d block %d", w, i)
						if i%5 == 0 {
							data = fmt.Appendf(nil, "shared block %d", i) // saved by every worker
						}
						id, err := b.Save(ctx, data, boltCodec(i))
						if err != nil {
							errs <- err
							return
						}
						mine = append(mine, id)
						if got, err := b.Load(ctx, id); err != nil || !bytes.Equal(got, data) {
							errs <- fmt.Errorf("Load right after Save: %q, %v", got, err)
							return
						}
						if ok, err := b.Has(ctx, mine[i/2]); !ok || err != nil {
							errs <- fmt.Errorf("Has(an earlier block) = %v, %v", ok, err)
							return
						}
						if i%10 == 9 {
							got, err := b.LoadMany(ctx, append(mine[i-9:i+1:i+1], boltCID(multicodec.Raw, []byte("never saved"))))
							if err != nil || len(got) != 11 || got[10] != nil {
								errs <- fmt.Errorf("LoadMany: %d entries, %v", len(got), err)
								return
							}
							for j, g := range got[:10] {
								if g == nil {
									errs <- fmt.Errorf("LoadMany lost block %d", i-9+j)
									return
								}
							}
						}
						if i%25 == 24 {
							if err := b.Flush(ctx); err != nil {
								errs <- err
								return
							}
						}
					}
				})
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Fatal(err)
			}
			want := workers*(perWorker-shared) + shared // the shared blocks are stored once
			if n, err := b.Len(ctx); err != nil || n != want {
				t.Errorf("Len = %d, %v; want %d", n, err, want)
			}
			if err := b.CloseStrict(); err != nil {
				t.Fatal(err)
			}
			ro := boltOpen(t, path, hamt.WithBoltReadOnly())
			if n, err := ro.Len(ctx); err != nil || n != want {
				t.Errorf("after reopening, Len = %d, %v; want %d", n, err, want)
			}
			if err := ro.Check(ctx, true); err != nil {
				t.Error(err)
			}
		})
	}
}

func TestBoltMapSetConcurrentlySurvivesReopening(t *testing.T) {
	ctx := context.Background()
	path := boltTempPath(t)
	b := boltOpen(t, path, hamt.WithBoltFlushInterval(20*time.Millisecond))
	m, err := hamt.New(ctx, b, hamt.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	const keys, workers = 5000, 8
	value := func(i int) []byte { return fmt.Appendf(nil, "value of key %d", i) }
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Go(func() {
			for i := w; i < keys; i += workers {
				if err := m.Set(ctx, fmt.Sprintf("key-%d", i), value(i)); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	root, err := m.Flush(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	b2 := boltOpen(t, path, hamt.WithBoltReadOnly())
	m2, err := hamt.Open(ctx, b2, hamt.Bytes, root)
	if err != nil {
		t.Fatal(err)
	}
	for i := range keys {
		got, err := m2.Get(ctx, fmt.Sprintf("key-%d", i))
		if err != nil || !bytes.Equal(got, value(i)) {
			t.Fatalf("Get(key-%d) = %q, %v", i, got, err)
		}
	}
	if n, err := m2.Len(ctx); err != nil || n != keys {
		t.Errorf("Len = %d, %v; want %d", n, err, keys)
	}
}

func TestBoltReopenKeepsEverything(t *testing.T) {
	ctx := context.Background()
	path := boltTempPath(t)
	var ids []cid.Cid
	for round := range 3 {
		b := boltOpen(t, path)
		for i := range 50 {
			id, err := b.Save(ctx, boltBlock(uint64(round), i, 2000), boltCodec(i))
			if err != nil {
				t.Fatal(err)
			}
			ids = append(ids, id)
		}
		if err := b.Close(); err != nil { // Close flushes
			t.Fatal(err)
		}
	}
	b := boltOpen(t, path)
	for k, id := range ids {
		if got, err := b.Load(ctx, id); err != nil || !bytes.Equal(got, boltBlock(uint64(k/50), k%50, 2000)) {
			t.Fatalf("block %d after reopening: %v", k, err)
		}
	}
	if n, err := b.Len(ctx); err != nil || n != len(ids) {
		t.Errorf("Len = %d, %v; want %d", n, err, len(ids))
	}
	if err := b.Check(ctx, true); err != nil {
		t.Error(err)
	}
}

func TestBoltReadOnlyRefusesWritesAndReads(t *testing.T) {
	ctx := context.Background()
	path := boltTempPath(t)
	b := boltOpen(t, path)
	id, err := b.Save(ctx, []byte("kept"), multicodec.Raw)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.CloseStrict(); err != nil {
		t.Fatal(err)
	}
	// Read-only opens share the lock.
	ro := boltOpen(t, path, hamt.WithBoltReadOnly())
	ro2 := boltOpen(t, path, hamt.WithBoltReadOnly(), hamt.WithBoltTimeout(100*time.Millisecond))
	for _, r := range []*hamt.BoltCAS{ro, ro2} {
		if got, err := r.Load(ctx, id); err != nil || string(got) != "kept" {
			t.Errorf("Load = %q, %v", got, err)
		}
	}
	if _, err := ro.Save(ctx, []byte("new"), multicodec.Raw); !errors.Is(err, hamt.ErrReadOnly) {
		t.Errorf("Save = %v, want ErrReadOnly", err)
	}
	if _, err := ro.SaveMany(ctx, [][]byte{[]byte("new")}, multicodec.Raw); !errors.Is(err, hamt.ErrReadOnly) {
		t.Errorf("SaveMany = %v, want ErrReadOnly", err)
	}
	if err := ro.Put(ctx, boltCID(multicodec.Raw, []byte("new")), []byte("new")); !errors.Is(err, hamt.ErrReadOnly) {
		t.Errorf("Put = %v, want ErrReadOnly", err)
	}
	if err := ro.Flush(ctx); err != nil {
		t.Errorf("Flush of a read-only store = %v", err)
	}
	if err := ro.Check(ctx, true); err != nil {
		t.Errorf("Check = %v", err)
	}
	if n, err := ro.Len(ctx); err != nil || n != 1 {
		t.Errorf("Len = %d, %v", n, err)
	}
	// A writer cannot open while readers hold the file.
	if _, err := hamt.OpenBoltCAS(path, hamt.WithBoltTimeout(100*time.Millisecond)); err == nil {
		t.Error("a writer opened the file while readers held it")
	}
}

func TestBoltOpenRefusesWhatItCannotUse(t *testing.T) {
	dir := t.TempDir()
	t.Run("a missing file read-only", func(t *testing.T) {
		if _, err := hamt.OpenBoltCAS(filepath.Join(dir, "missing.bolt"), hamt.WithBoltReadOnly()); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("error %v, want fs.ErrNotExist", err)
		}
	})
	t.Run("a missing directory", func(t *testing.T) {
		if _, err := hamt.OpenBoltCAS(filepath.Join(dir, "no", "such", "dir.bolt")); err == nil {
			t.Error("no error")
		}
	})
	t.Run("another program's bbolt file", func(t *testing.T) {
		path := filepath.Join(dir, "other.bolt")
		db, err := bolt.Open(path, 0o600, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := db.Update(func(tx *bolt.Tx) error { _, err := tx.CreateBucket([]byte("users")); return err }); err != nil {
			t.Fatal(err)
		}
		if err := db.Close(); err != nil {
			t.Fatal(err)
		}
		for _, opts := range [][]hamt.BoltOption{nil, {hamt.WithBoltReadOnly()}} {
			if _, err := hamt.OpenBoltCAS(path, opts...); err == nil || !strings.Contains(err.Error(), "not a hamt block store") {
				t.Errorf("error %v, want one saying it is not a block store", err)
			}
		}
	})
	t.Run("a file that is not bbolt", func(t *testing.T) {
		path := filepath.Join(dir, "text.bolt")
		if err := os.WriteFile(path, bytes.Repeat([]byte("not a database "), 1000), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := hamt.OpenBoltCAS(path); err == nil {
			t.Error("no error")
		}
	})
	t.Run("invalid options", func(t *testing.T) {
		for name, opt := range map[string]hamt.BoltOption{
			"batch size 0":       hamt.WithBoltBatchSize(0),
			"batch bytes 0":      hamt.WithBoltBatchBytes(0),
			"negative interval":  hamt.WithBoltFlushInterval(-time.Second),
			"timeout 0":          hamt.WithBoltTimeout(0),
			"a negative timeout": hamt.WithBoltTimeout(-1),
		} {
			if _, err := hamt.OpenBoltCAS(filepath.Join(dir, "opts.bolt"), opt); err == nil {
				t.Errorf("%s: no error", name)
			}
		}
	})
}

func TestBoltSecondOpenFailsWithinTheTimeout(t *testing.T) {
	path := boltTempPath(t)
	boltOpen(t, path)
	for name, opts := range map[string][]hamt.BoltOption{
		"a writer":  {hamt.WithBoltTimeout(100 * time.Millisecond)},
		"a reader ": {hamt.WithBoltTimeout(100 * time.Millisecond), hamt.WithBoltReadOnly()},
	} {
		start := time.Now()
		_, err := hamt.OpenBoltCAS(path, opts...)
		took := time.Since(start)
		if err == nil || !strings.Contains(err.Error(), "locked") {
			t.Errorf("%s: error %v, want one saying the file is locked", name, err)
		}
		if took > 2*time.Second {
			t.Errorf("%s: gave up after %v, want about 100 ms", name, took)
		}
	}
}

func TestBoltMethodsFailAfterClose(t *testing.T) {
	ctx := context.Background()
	path := boltTempPath(t)
	b, err := hamt.OpenBoltCAS(path)
	if err != nil {
		t.Fatal(err)
	}
	id, err := b.Save(ctx, []byte("x"), multicodec.Raw)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	calls := map[string]func() error{
		"Save":        func() error { _, err := b.Save(ctx, []byte("y"), multicodec.Raw); return err },
		"Put":         func() error { return b.Put(ctx, id, []byte("x")) },
		"SaveMany":    func() error { _, err := b.SaveMany(ctx, [][]byte{[]byte("y")}, multicodec.Raw); return err },
		"Load":        func() error { _, err := b.Load(ctx, id); return err },
		"LoadMany":    func() error { _, err := b.LoadMany(ctx, []cid.Cid{id}); return err },
		"Has":         func() error { _, err := b.Has(ctx, id); return err },
		"LoadRange":   func() error { _, err := b.LoadRange(ctx, id, hamt.RangeFrom(0)); return err },
		"BlockSize":   func() error { _, err := b.BlockSize(ctx, id); return err },
		"Flush":       func() error { return b.Flush(ctx) },
		"Check":       func() error { return b.Check(ctx, true) },
		"Len":         func() error { _, err := b.Len(ctx); return err },
		"Close":       b.Close,
		"CloseStrict": b.CloseStrict,
	}
	for name, call := range calls {
		if err := call(); !errors.Is(err, fs.ErrClosed) {
			t.Errorf("%s after Close = %v, want fs.ErrClosed", name, err)
		}
	}
	if b.Path() != path {
		t.Errorf("Path = %q", b.Path())
	}
}

func TestBoltCheckFindsABlockChangedInTheFile(t *testing.T) {
	ctx := context.Background()
	path := boltTempPath(t)
	b := boltOpen(t, path)
	ids := map[string]cid.Cid{} // multihash bytes → CID
	for i := range 20 {
		id, err := b.Save(ctx, boltBlock(5, i, 3000), multicodec.Raw)
		if err != nil {
			t.Fatal(err)
		}
		ids[string(id.Hash())] = id
	}
	if err := b.CloseStrict(); err != nil {
		t.Fatal(err)
	}
	// Flip the bits of one stored block, leaving its length and the file's structure alone.
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	var changed cid.Cid
	err = db.Update(func(tx *bolt.Tx) error {
		blocks := tx.Bucket([]byte("blocks"))
		if blocks == nil {
			return errors.New(`no "blocks" bucket`)
		}
		c := blocks.Cursor()
		k, v := c.First()
		for k != nil && len(v) == 0 {
			k, v = c.Next()
		}
		changed = ids[string(k)]
		flipped := make([]byte, len(v))
		for i := range v {
			flipped[i] = ^v[i]
		}
		return blocks.Put(bytes.Clone(k), flipped)
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	ro := boltOpen(t, path, hamt.WithBoltReadOnly())
	if err := ro.Check(ctx, false); err != nil {
		t.Errorf("Check without hashing = %v; the file's structure is sound", err)
	}
	if err := ro.Check(ctx, true); !errors.Is(err, hamt.ErrCorrupt) {
		t.Errorf("Check with hashing = %v, want ErrCorrupt", err)
	}
	// Every read verifies.
	if _, err := ro.Load(ctx, changed); !errors.Is(err, hamt.ErrCorrupt) {
		t.Errorf("Load = %v, want ErrCorrupt", err)
	}
	if _, err := ro.LoadMany(ctx, []cid.Cid{changed}); !errors.Is(err, hamt.ErrCorrupt) {
		t.Errorf("LoadMany = %v, want ErrCorrupt", err)
	}
	if _, err := ro.LoadRange(ctx, changed, hamt.RangeBetween(0, 1)); !errors.Is(err, hamt.ErrCorrupt) {
		t.Errorf("LoadRange = %v, want ErrCorrupt", err)
	}
}

// TestBoltSurvivesSIGKILL is the crash test: a child writes as hard as it can (Saves of up to
// 64 KiB, SaveMany calls, Flushes, a background flusher, a concurrent reader) under random batch
// options, saying after each Flush or SaveMany what is durable, and is SIGKILLed 50–400 ms in.
// The file must open, pass Check with every block hashed, and hold every block said durable.
func TestBoltSurvivesSIGKILL(t *testing.T) {
	const maxSize = 64 << 10
	r := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1))
	for run := range 20 {
		t.Run(fmt.Sprint(run), func(t *testing.T) {
			ctx := context.Background()
			path := boltTempPath(t)
			seed := r.Uint64()
			child := boltStartChild(t, "crash", path, seed)
			child.waitFor(t, "ready")
			time.Sleep(time.Duration(50+r.IntN(351)) * time.Millisecond)
			lines := child.kill(t)
			var durable []bool
			var options string
			for _, l := range lines {
				var from, to int
				if _, err := fmt.Sscanf(l, "durable %d %d", &from, &to); err == nil {
					for len(durable) < to {
						durable = append(durable, false)
					}
					for i := from; i < to; i++ {
						durable[i] = true
					}
				} else if o, ok := strings.CutPrefix(l, "options "); ok {
					options = o
				}
			}
			b := boltOpen(t, path)
			if err := b.Check(ctx, true); err != nil {
				t.Fatalf("Check after SIGKILL: %v", err)
			}
			var ids []cid.Cid
			var want [][]byte
			for i, d := range durable {
				if d {
					data := boltBlock(seed, i, maxSize)
					ids = append(ids, boltCID(boltCodec(i), data))
					want = append(want, data)
				}
			}
			got, err := b.LoadMany(ctx, ids)
			if err != nil {
				t.Fatal(err)
			}
			for i := range ids {
				if got[i] == nil || !bytes.Equal(got[i], want[i]) {
					t.Fatalf("durable block %s is missing or wrong", ids[i])
				}
			}
			n, err := b.Len(ctx)
			if err != nil {
				t.Fatal(err)
			}
			info, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("seed %d, %s: %d blocks said durable, %d in the file (%.1f MB)", seed, options, len(ids), n, float64(info.Size())/1e6)
		})
	}
}

// TestBoltCrashChild is not a test: it is the child process of the tests above, run when they
// re-execute the test binary with HAMT_BOLT_CHILD set. It prints its reports as lines starting
// "bolt-child ".
func TestBoltCrashChild(t *testing.T) {
	mode := os.Getenv("HAMT_BOLT_CHILD")
	if mode == "" {
		t.Skip("helper process of the bolt crash tests; runs only when they re-execute the test binary with HAMT_BOLT_CHILD set")
	}
	ctx := context.Background()
	path := os.Getenv("HAMT_BOLT_FILE")
	seed, _ := strconv.ParseUint(os.Getenv("HAMT_BOLT_SEED"), 10, 64)
	say := func(format string, args ...any) { fmt.Printf("bolt-child "+format+"\n", args...) }
	// The parent kills the child; a child whose parent died gives up after a while.
	deadline := time.Now().Add(60 * time.Second)
	switch mode {
	case "save":
		batch, _ := strconv.Atoi(os.Getenv("HAMT_BOLT_BATCH"))
		interval, _ := time.ParseDuration(os.Getenv("HAMT_BOLT_INTERVAL"))
		n, _ := strconv.Atoi(os.Getenv("HAMT_BOLT_N"))
		b, err := hamt.OpenBoltCAS(path, hamt.WithBoltBatchSize(batch), hamt.WithBoltFlushInterval(interval))
		if err != nil {
			t.Fatal(err)
		}
		for i := range n {
			if _, err := b.Save(ctx, boltBlock(seed, i, 1024), boltCodec(i)); err != nil {
				t.Fatal(err)
			}
		}
		if os.Getenv("HAMT_BOLT_FLUSH") != "" {
			if err := b.Flush(ctx); err != nil {
				t.Fatal(err)
			}
		}
		say("saved")
		time.Sleep(time.Until(deadline))
	case "many":
		b, err := hamt.OpenBoltCAS(path, hamt.WithBoltFlushInterval(0))
		if err != nil {
			t.Fatal(err)
		}
		say("ready")
		for call := 0; time.Now().Before(deadline); call++ {
			blocks := make([][]byte, 2000)
			for i := range blocks {
				blocks[i] = boltBlock(seed, call*2000+i, 4096)
			}
			// A SaveMany takes one codec while boltCodec alternates; the parent still finds
			// every block, as a block is stored under its multihash whatever its codec.
			say("calling %d", call)
			if _, err := b.SaveMany(ctx, blocks, multicodec.Raw); err != nil {
				t.Fatal(err)
			}
			say("returned %d", call+1)
		}
	case "crash":
		const maxSize = 64 << 10
		r := rand.New(rand.NewPCG(seed, 2))
		batch := 1 + r.IntN(300)
		interval := []time.Duration{0, 2 * time.Millisecond, 20 * time.Millisecond, 100 * time.Millisecond}[r.IntN(4)]
		b, err := hamt.OpenBoltCAS(path, hamt.WithBoltBatchSize(batch), hamt.WithBoltFlushInterval(interval))
		if err != nil {
			t.Fatal(err)
		}
		say("options batch %d, interval %v", batch, interval)
		var mu sync.Mutex
		saved := 0 // blocks 0..saved-1 have been saved (readable, maybe not durable)
		go func() {
			// A reader alongside: every saved block reads back right.
			rr := rand.New(rand.NewPCG(seed, 3))
			for {
				mu.Lock()
				n := saved
				mu.Unlock()
				if n == 0 {
					time.Sleep(time.Millisecond)
					continue
				}
				i := rr.IntN(n)
				data := boltBlock(seed, i, maxSize)
				got, err := b.Load(ctx, boltCID(boltCodec(i), data))
				if err != nil || !bytes.Equal(got, data) {
					fmt.Fprintf(os.Stderr, "child reader: block %d: %v\n", i, err)
					os.Exit(3)
				}
			}
		}()
		say("ready")
		for next := 0; time.Now().Before(deadline); {
			switch x := r.IntN(100); {
			case x < 85:
				if _, err := b.Save(ctx, boltBlock(seed, next, maxSize), boltCodec(next)); err != nil {
					t.Fatal(err)
				}
				next++
			case x < 95:
				// Raw for all: the parent finds blocks by multihash, whatever the codec.
				from, k := next, 1+r.IntN(40)
				var blocks [][]byte
				for next < from+k {
					blocks = append(blocks, boltBlock(seed, next, maxSize))
					next++
				}
				if _, err := b.SaveMany(ctx, blocks, multicodec.Raw); err != nil {
					t.Fatal(err)
				}
				say("durable %d %d", from, next)
			default:
				if err := b.Flush(ctx); err != nil {
					t.Fatal(err)
				}
				say("durable 0 %d", next)
			}
			mu.Lock()
			saved = next
			mu.Unlock()
		}
	default:
		t.Fatalf("unknown HAMT_BOLT_CHILD mode %q", mode)
	}
}

// A map kept in a bbolt file: written, closed, and opened again from its root.
func ExampleOpenBoltCAS() {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "hamt-example")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "blocks.bolt")

	store, err := hamt.OpenBoltCAS(path)
	if err != nil {
		panic(err)
	}
	m, err := hamt.New(ctx, store, hamt.Bytes)
	if err != nil {
		panic(err)
	}
	if err := m.Set(ctx, "temp/zarr.json", []byte(`{"zarr_format":3}`)); err != nil {
		panic(err)
	}
	root, err := m.Flush(ctx)
	if err != nil {
		panic(err)
	}
	if err := store.Close(); err != nil { // commits what is buffered
		panic(err)
	}

	store, err = hamt.OpenBoltCAS(path, hamt.WithBoltReadOnly())
	if err != nil {
		panic(err)
	}
	defer store.Close()
	m, err = hamt.Open(ctx, store, hamt.Bytes, root)
	if err != nil {
		panic(err)
	}
	v, err := m.Get(ctx, "temp/zarr.json")
	if err != nil {
		panic(err)
	}
	fmt.Printf("%s\n", v)
	// Output: {"zarr_format":3}
}
