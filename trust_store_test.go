package hamt_test

// Tests of issue 11's store items on real bbolt files: a flushed root is durable without Close,
// bit rot is refused on every read path, and a damaged file gives ErrCorrupt, never a crash.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/hamt-go/hamt"
	"github.com/ipfs/go-cid"
	"github.com/multiformats/go-multicodec"
)

// trustChild re-executes the test binary as TestTrustChild in mode, on the file path, and
// returns the lines it printed that start with "trust-child ", that prefix cut. The child must
// exit with status 0.
func trustChild(t *testing.T, mode, path string) []string {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestTrustChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), "HAMT_TRUST_CHILD="+mode, "HAMT_TRUST_FILE="+path)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("child %s: %v\n%s%s", mode, err, stdout.String(), stderr.String())
	}
	var lines []string
	sc := bufio.NewScanner(&stdout)
	for sc.Scan() {
		if l, ok := strings.CutPrefix(sc.Text(), "trust-child "); ok {
			lines = append(lines, l)
		}
	}
	return lines
}

// TestTrustChild is not a test: it is the child process of the tests here, run when they
// re-execute the test binary with HAMT_TRUST_CHILD set. It ends with os.Exit, never closing
// what it opened, as a crashed program or a forgotten defer would.
func TestTrustChild(t *testing.T) {
	mode := os.Getenv("HAMT_TRUST_CHILD")
	if mode == "" {
		t.Skip("helper process of the trust tests; runs only when they re-execute the test binary with HAMT_TRUST_CHILD set")
	}
	ctx := context.Background()
	fail := func(err error) {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(3)
	}
	// Default options: batches of 1000 blocks and a flusher every second, so nothing but the
	// map's own Flush commits the few blocks written here before the exit.
	cas, err := hamt.OpenBoltCAS(os.Getenv("HAMT_TRUST_FILE"))
	if err != nil {
		fail(err)
	}
	var dst hamt.CAS = cas
	if mode == "read-car" {
		dst = hamt.NewMemoryCAS() // the map is built in memory, then comes into bbolt as a CAR
	}
	m, err := hamt.New(ctx, dst, hamt.Bytes)
	if err != nil {
		fail(err)
	}
	for i := range 10 {
		if err := m.Set(ctx, fmt.Sprintf("key-%d", i), []byte(fmt.Sprintf("value-%d", i))); err != nil {
			fail(err)
		}
	}
	var root cid.Cid
	switch mode {
	case "flush":
		root, err = m.Flush(ctx)
	case "read-only":
		if err = m.MakeReadOnly(ctx); err == nil {
			root, err = m.Root()
		}
	case "read-car":
		var car bytes.Buffer
		if root, err = m.Flush(ctx); err != nil {
			break
		}
		if _, err = hamt.WriteCAR(ctx, dst, root, &car); err != nil {
			break
		}
		_, _, err = hamt.ReadCAR(ctx, cas, &car)
	default:
		err = fmt.Errorf("unknown HAMT_TRUST_CHILD mode %q", mode)
	}
	if err != nil {
		fail(err)
	}
	fmt.Printf("trust-child root %s\n", root)
	os.Exit(0) // no Close: what is not on disk now is lost
}

func TestTrustFlushedRootIsDurableWithoutClose(t *testing.T) {
	for _, mode := range []string{"flush", "read-only", "read-car"} {
		t.Run(mode, func(t *testing.T) {
			ctx := context.Background()
			path := boltTempPath(t)
			lines := trustChild(t, mode, path)
			if len(lines) != 1 {
				t.Fatalf("child printed %q, want one root", lines)
			}
			root, err := cid.Decode(strings.TrimPrefix(lines[0], "root "))
			if err != nil {
				t.Fatal(err)
			}
			cas := boltOpen(t, path, hamt.WithBoltReadOnly())
			m, err := hamt.Open(ctx, cas, hamt.Bytes, root)
			if err != nil {
				t.Fatalf("open the root %s the child's %s returned: %v", root, mode, err)
			}
			for i := range 10 {
				got, err := m.Get(ctx, fmt.Sprintf("key-%d", i))
				if want := fmt.Sprintf("value-%d", i); err != nil || string(got) != want {
					t.Errorf("Get(key-%d) = %q, %v; want %q", i, got, err, want)
				}
			}
			if n, err := m.Len(ctx); err != nil || n != 10 {
				t.Errorf("Len = %d, %v; want 10", n, err)
			}
			if err := cas.Check(ctx, true); err != nil {
				t.Error(err)
			}
		})
	}
}

// trustValue is a value of n bytes that occurs nowhere else in a store: seeded pseudo-random.
func trustValue(seed uint64, n int) []byte {
	v := boltBlock(seed, 0, n+16)
	for len(v) < n {
		v = append(v, boltBlock(seed, len(v), 1024)...)
	}
	return v[:n]
}

// trustStore writes a map to a new bbolt file and closes it: 300 small keys, and the values
// returned under "arr/c/0" (200 KiB, a Zarr shard) and "small" (100 bytes).
func trustStore(t testing.TB) (path string, root cid.Cid, values map[string][]byte) {
	t.Helper()
	return trustStoreSized(t, 200<<10)
}

// trustStoreSized is trustStore with a shard of the given size.
func trustStoreSized(t testing.TB, shard int) (path string, root cid.Cid, values map[string][]byte) {
	t.Helper()
	ctx := context.Background()
	path = boltTempPath(t)
	cas, err := hamt.OpenBoltCAS(path)
	if err != nil {
		t.Fatal(err)
	}
	m, err := hamt.New(ctx, cas, hamt.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	values = map[string][]byte{"arr/c/0": trustValue(1, shard), "small": trustValue(2, 100)}
	for i := range 300 {
		values[fmt.Sprintf("k%03d", i)] = []byte(fmt.Sprintf("value %d", i))
	}
	for k, v := range values {
		if err := m.Set(ctx, k, v); err != nil {
			t.Fatal(err)
		}
	}
	if root, err = m.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if err := cas.CloseStrict(); err != nil {
		t.Fatal(err)
	}
	return path, root, values
}

// trustFlip flips one byte in the middle of the one place the file at path holds value, as bit
// rot would, and returns the offset it flipped.
func trustFlip(t testing.TB, path string, value []byte) int64 {
	t.Helper()
	file, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	i := bytes.Index(file, value)
	if i < 0 || bytes.Contains(file[i+1:], value) {
		t.Fatalf("the value is in the file %d times, want once", bytes.Count(file, value))
	}
	off := int64(i + len(value)/2)
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt([]byte{file[off] ^ 0x20}, off); err != nil {
		t.Fatal(err)
	}
	return off
}

func TestTrustBitRotIsErrCorruptOnEveryReadPath(t *testing.T) {
	ctx := context.Background()
	path, root, values := trustStore(t)
	trustFlip(t, path, values["arr/c/0"])
	trustFlip(t, path, values["small"])
	cas := boltOpen(t, path, hamt.WithBoltReadOnly())
	m, err := hamt.Open(ctx, cas, hamt.Bytes, root)
	if err != nil {
		t.Fatal(err)
	}
	z, err := hamt.NewZarrStore(m)
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{"arr/c/0", "small"} {
		if got, err := m.Get(ctx, key); !errors.Is(err, hamt.ErrCorrupt) {
			t.Errorf("Map.Get(%q) = %d bytes, %v; want ErrCorrupt", key, len(got), err)
		}
		// Twice: a range of a large block is served from the verified set only once it passed.
		for range 2 {
			for _, r := range []hamt.ByteRange{{}, hamt.RangeBetween(0, 10), hamt.RangeSuffix(5)} {
				if got, err := z.Get(ctx, key, r); !errors.Is(err, hamt.ErrCorrupt) {
					t.Errorf("ZarrStore.Get(%q, %v) = %d bytes, %v; want ErrCorrupt", key, r, len(got), err)
				}
			}
		}
	}
	// The others read back right, by range too, from the same store.
	if got, err := z.Get(ctx, "k007", hamt.RangeFrom(2)); err != nil || string(got) != "lue 7" {
		t.Errorf("ZarrStore.Get(k007, from 2) = %q, %v", got, err)
	}
	if err := cas.Check(ctx, true); !errors.Is(err, hamt.ErrCorrupt) {
		t.Errorf("Check = %v, want ErrCorrupt", err)
	}
}

// TestTrustRangesOfALargeBlockAreVerifiedOnce: a large block read range by range is hashed once;
// afterwards the ranges come from the file without hashing, so bit rot after the first read in
// one store's lifetime is not seen until the store is reopened (this is the documented trade).
func TestTrustRangesOfALargeBlockAreVerifiedOnce(t *testing.T) {
	ctx := context.Background()
	path, root, values := trustStore(t)
	cas := boltOpen(t, path, hamt.WithBoltReadOnly())
	m, err := hamt.Open(ctx, cas, hamt.Bytes, root)
	if err != nil {
		t.Fatal(err)
	}
	z, err := hamt.NewZarrStore(m)
	if err != nil {
		t.Fatal(err)
	}
	shard := values["arr/c/0"]
	if got, err := z.Get(ctx, "arr/c/0", hamt.RangeBetween(10, 20)); err != nil || !bytes.Equal(got, shard[10:20]) {
		t.Fatalf("first range = %x, %v", got, err)
	}
	trustFlip(t, path, shard) // the map shares the page cache: the change is seen at once
	if got, err := z.Get(ctx, "arr/c/0", hamt.RangeBetween(len64(shard)/2-1, len64(shard)/2+1)); err != nil || bytes.Equal(got, shard[len(shard)/2-1:len(shard)/2+1]) {
		t.Fatalf("range over the flipped byte = %x, %v; want the changed bytes, unverified", got, err)
	}
	reopened := boltOpen(t, path, hamt.WithBoltReadOnly())
	if _, err := reopened.LoadRange(ctx, trustValueCID(shard), hamt.RangeBetween(10, 20)); !errors.Is(err, hamt.ErrCorrupt) {
		t.Errorf("LoadRange on a new store = %v, want ErrCorrupt", err)
	}
}

func len64(b []byte) int64 { return int64(len(b)) }

func trustValueCID(v []byte) cid.Cid { return boltCID(multicodec.Raw, v) }

func TestTrustEmptyFileIsNotAStore(t *testing.T) {
	path := boltTempPath(t)
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := hamt.OpenBoltCAS(path, hamt.WithBoltReadOnly())
	if err == nil || !strings.Contains(err.Error(), "is empty: not a hamt store") || !strings.Contains(err.Error(), path) {
		t.Errorf("read-only open of an empty file = %v, want an error naming it as empty", err)
	}
	// Opened for writing, an empty file is made a new store, as a missing one is.
	b := boltOpen(t, path)
	if n, err := b.Len(context.Background()); err != nil || n != 0 {
		t.Errorf("Len of the new store = %d, %v", n, err)
	}
}

// trustPageSize is the page size of the bbolt file at path, from its first meta page.
func trustPageSize(t testing.TB, path string) int64 {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var b [28]byte
	if _, err := f.ReadAt(b[:], 0); err != nil {
		t.Fatal(err)
	}
	return int64(binary.NativeEndian.Uint32(b[24:]))
}

// trustOverwrite writes data at off in the file at path.
func trustOverwrite(t testing.TB, path string, off int64, data []byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(data, off); err != nil {
		t.Fatal(err)
	}
}

// trustDamages are the ways TestTrustDamagedFileIsErrCorrupt damages a store; seen says whether
// reads (not only Check) must meet the damage when the file opens.
var trustDamages = []struct {
	name   string
	seen   bool
	damage func(t testing.TB, path string, values map[string][]byte)
}{
	{"truncated to half", true, func(t testing.TB, path string, _ map[string][]byte) {
		info, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.Truncate(path, info.Size()/2); err != nil {
			t.Fatal(err)
		}
	}},
	{"truncated to one page", true, func(t testing.TB, path string, _ map[string][]byte) {
		if err := os.Truncate(path, trustPageSize(t, path)); err != nil {
			t.Fatal(err)
		}
	}},
	{"page id overwritten", true, func(t testing.TB, path string, values map[string][]byte) {
		trustOverwrite(t, path, trustPageOf(t, path, values["small"]), []byte{0xde, 0xad, 0xbe, 0xef})
	}},
	{"page flags and count overwritten", true, func(t testing.TB, path string, values map[string][]byte) {
		trustOverwrite(t, path, trustPageOf(t, path, values["small"])+8, []byte{0xff, 0xff, 0xff, 0xff})
	}},
	{"page overflow overwritten", false, func(t testing.TB, path string, values map[string][]byte) {
		trustOverwrite(t, path, trustPageOf(t, path, values["small"])+12, []byte{0xff, 0xff, 0xff, 0x7f})
	}},
	{"branch page id overwritten", true, func(t testing.TB, path string, _ map[string][]byte) {
		trustOverwrite(t, path, trustBranchPage(t, path), []byte{0x01, 0x00, 0x00, 0x10})
	}},
	{"freelist page header overwritten", false, func(t testing.TB, path string, _ map[string][]byte) {
		trustOverwrite(t, path, trustFreelistPage(t, path)+8, []byte{0xff, 0xff, 0xff, 0xff})
	}},
}

// trustPageOf returns the offset of the page that holds value (a value of less than a page).
func trustPageOf(t testing.TB, path string, value []byte) int64 {
	t.Helper()
	file, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	i := bytes.Index(file, value)
	if i < 0 {
		t.Fatal("value not in the file")
	}
	ps := trustPageSize(t, path)
	return int64(i) / ps * ps
}

// trustBranchPage returns the offset of the first branch page (flags 0x01) in the file.
func trustBranchPage(t testing.TB, path string) int64 {
	t.Helper()
	file, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	ps := trustPageSize(t, path)
	for off := 2 * ps; off+16 <= int64(len(file)); off += ps {
		if binary.NativeEndian.Uint64(file[off:]) == uint64(off/ps) && binary.NativeEndian.Uint16(file[off+8:]) == 0x01 {
			return off
		}
	}
	t.Fatal("no branch page in the file")
	return 0
}

// trustFreelistPage returns the offset of the freelist page the newer meta page names.
func trustFreelistPage(t testing.TB, path string) int64 {
	t.Helper()
	file, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	ps := trustPageSize(t, path)
	m0, m1 := file[16:], file[ps+16:]
	m := m0
	if binary.NativeEndian.Uint64(m1[48:]) > binary.NativeEndian.Uint64(m0[48:]) {
		m = m1
	}
	return int64(binary.NativeEndian.Uint64(m[32:])) * ps
}

// TestTrustDamagedFileIsErrCorrupt: a damaged file gives errors wrapping ErrCorrupt (or opens and
// reads what is intact), never a panic or a fault, from every method, read-only or not.
func TestTrustDamagedFileIsErrCorrupt(t *testing.T) {
	for _, d := range trustDamages {
		for _, readOnly := range []bool{true, false} {
			t.Run(fmt.Sprintf("%s/read-only=%v", d.name, readOnly), func(t *testing.T) {
				ctx := context.Background()
				path, root, values := trustStore(t)
				d.damage(t, path, values)
				var opts []hamt.BoltOption
				if readOnly {
					opts = append(opts, hamt.WithBoltReadOnly())
				}
				cas, err := hamt.OpenBoltCAS(path, opts...)
				if err != nil {
					if !errors.Is(err, hamt.ErrCorrupt) && !strings.Contains(err.Error(), "invalid") {
						t.Fatalf("OpenBoltCAS = %v, want ErrCorrupt", err)
					}
					return
				}
				defer cas.Close()
				corrupt := 0
				expect := func(what string, err error) {
					if err != nil && !errors.Is(err, hamt.ErrCorrupt) {
						t.Errorf("%s = %v, want nil or ErrCorrupt", what, err)
					}
					if err != nil {
						corrupt++
					}
				}
				small := trustValueCID(values["small"])
				_, err = cas.Load(ctx, small)
				expect("Load", err)
				_, err = cas.Has(ctx, small)
				expect("Has", err)
				_, err = cas.LoadRange(ctx, small, hamt.RangeBetween(1, 3))
				expect("LoadRange", err)
				_, err = cas.Len(ctx)
				expect("Len", err)
				if m, err := hamt.Open(ctx, cas, hamt.Bytes, root); err != nil {
					expect("Open", err)
				} else {
					for k := range values {
						_, err := m.Get(ctx, k)
						expect("Get "+k, err)
					}
				}
				if !readOnly {
					_, err = cas.Save(ctx, []byte("new block"), multicodec.Raw)
					expect("Save", err)
					expect("Flush", cas.Flush(ctx))
				}
				err = cas.Check(ctx, true)
				if !errors.Is(err, hamt.ErrCorrupt) {
					t.Errorf("Check = %v, want ErrCorrupt", err)
				}
				expect("Close", cas.CloseStrict())
				if d.seen && corrupt == 0 {
					t.Errorf("no call but Check saw the damage")
				}
			})
		}
	}
}

// FuzzBoltFile damages a real store file (300 keys of a map, a 5 KiB value) as the input says,
// then opens it, read-only or not, reads every value through the map and the store, writes (a
// block, then a key of the map), and runs Check. Nothing may panic, fault or run out of memory;
// every read gives the right bytes or an error; Check, the reads and the writes fail with
// ErrCorrupt or a lost block, never another kind of error.
//
// The input is a list of edits: a byte op, a 4-byte little-endian offset (modulo the file's
// length), then for op&3 != 0 that many bytes (op>>2&15 + 1 of them) written at the offset;
// op&3 == 0 truncates the file there. Bit 0x80 of the first op opens the file read-only.
func FuzzBoltFile(f *testing.F) {
	path, root, values := trustStoreSized(f, 5<<10)
	base, err := os.ReadFile(path)
	if err != nil {
		f.Fatal(err)
	}
	ps := trustPageSize(f, path)
	le := func(v uint32) []byte { return binary.LittleEndian.AppendUint32(nil, v) }
	f.Add([]byte{})
	f.Add(append([]byte{0x80}, le(uint32(len(base)/2))...))                                   // truncate to half
	f.Add(append(append([]byte{0x0d}, le(uint32(3*ps))...), 0xde, 0xad, 0xbe, 0xef))          // a page id
	f.Add(append(append([]byte{0x8d}, le(uint32(4*ps+8))...), 0xff, 0xff, 0xff, 0xff))        // flags and count
	f.Add(append(append([]byte{0x01}, le(uint32(2*ps+16))...), 0x07))                         // an element
	f.Add(append(append([]byte{0x3d}, le(uint32(ps+16))...), bytes.Repeat([]byte{9}, 16)...)) // meta 1
	// A branch page's overflow count: a commit frees that many pages (see treePage).
	f.Add(append(append([]byte{0x0d}, le(uint32(trustBranchPage(f, path)+12))...), 0xff, 0xff, 0xff, 0xff))
	f.Fuzz(func(t *testing.T, edits []byte) {
		file := bytes.Clone(base)
		readOnly := len(edits) > 0 && edits[0]&0x80 != 0
		for len(edits) >= 5 && len(file) > 0 {
			op, off := edits[0], int(binary.LittleEndian.Uint32(edits[1:5]))%len(file)
			edits = edits[5:]
			if op&3 == 0 {
				file = file[:off]
				continue
			}
			n := min(int(op>>2&15)+1, len(edits))
			copy(file[off:], edits[:n])
			edits = edits[n:]
		}
		dir := t.TempDir()
		p := dir + "/store.bolt"
		if err := os.WriteFile(p, file, 0o600); err != nil {
			t.Fatal(err)
		}
		ctx := context.Background()
		opts := []hamt.BoltOption{hamt.WithBoltFlushInterval(0), hamt.WithBoltTimeout(time.Second)}
		if readOnly {
			opts = append(opts, hamt.WithBoltReadOnly())
		}
		cas, err := hamt.OpenBoltCAS(p, opts...)
		if err != nil {
			return // any clean error: bbolt's own for a file with no valid meta page
		}
		defer cas.Close()
		clean := func(what string, err error) {
			if err != nil && !errors.Is(err, hamt.ErrCorrupt) && !errors.Is(err, hamt.ErrNotFound) &&
				!errors.Is(err, hamt.ErrMissingBlock) && !errors.Is(err, hamt.ErrMalformedNode) {
				t.Errorf("%s: %v, want ErrCorrupt or a lost block", what, err)
			}
		}
		for k, v := range values {
			got, err := cas.Load(ctx, trustValueCID(v))
			clean("Load "+k, err)
			if err == nil && !bytes.Equal(got, v) {
				t.Fatalf("Load %s gave other bytes", k)
			}
			part, err := cas.LoadRange(ctx, trustValueCID(v), hamt.RangeFrom(1))
			clean("LoadRange "+k, err)
			if err == nil && !bytes.Equal(part, v[1:]) {
				t.Fatalf("LoadRange %s gave other bytes", k)
			}
		}
		_, err = cas.Len(ctx)
		clean("Len", err)
		if m, err := hamt.Open(ctx, cas, hamt.Bytes, root); err != nil {
			clean("Open", err)
		} else {
			for k, v := range values {
				got, err := m.Get(ctx, k)
				clean("Get "+k, err)
				if err == nil && !bytes.Equal(got, v) {
					t.Fatalf("Get %s gave other bytes", k)
				}
			}
		}
		if !readOnly {
			_, err := cas.Save(ctx, []byte("a new block"), multicodec.Raw)
			clean("Save", err)
			clean("Flush", cas.Flush(ctx))
			m, err := hamt.Open(ctx, cas, hamt.Bytes, root)
			if err == nil {
				err = m.EnableWrite(ctx)
			}
			if err == nil {
				err = m.Set(ctx, "a new key", []byte("a new value"))
			}
			if err == nil {
				_, err = m.Flush(ctx)
			}
			clean("Map.Set and Flush", err)
		}
		clean("Check", cas.Check(ctx, true))
		clean("Close", cas.CloseStrict())
	})
}
