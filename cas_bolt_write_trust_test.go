package hamt_test

// A write on a file whose page headers are damaged: bbolt frees the pages of every node it
// rewrites believing their overflow counts, so a count of 0xffffffff made a commit allocate
// until the process died. BoltCAS must refuse such a write with ErrCorrupt.

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime/metrics"
	"strings"
	"testing"
	"time"

	"github.com/hamt-go/hamt"
	"github.com/ipfs/go-cid"
	"github.com/multiformats/go-multicodec"
)

// writeChildHeapLimit is the heap at which the child of TestTrustWriteOnDamagedOverflow gives
// up: the store it writes to holds well under a megabyte.
const writeChildHeapLimit = 256 << 20

// TestTrustWriteOnDamagedOverflowIsErrCorrupt damages the overflow count of each branch and
// leaf page of a real store in turn, then saves a block (Save, Flush) or sets a key (Map.Set,
// Flush). Each write fails with ErrCorrupt, or succeeds and is read back. The write runs in a
// child process that exits when its heap passes writeChildHeapLimit, so that a write that frees
// billions of pages fails the test instead of exhausting the machine's memory.
func TestTrustWriteOnDamagedOverflowIsErrCorrupt(t *testing.T) {
	path, root, _ := trustStore(t)
	base, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	ps := trustPageSize(t, path)
	var pages []int64 // offsets of the branch and leaf pages
	for off := 2 * ps; off+16 <= int64(len(base)); off += ps {
		flags := binary.NativeEndian.Uint16(base[off+8:])
		if binary.NativeEndian.Uint64(base[off:]) == uint64(off/ps) && (flags == 0x01 || flags == 0x02) {
			pages = append(pages, off)
		}
	}
	if len(pages) < 3 {
		t.Fatalf("only %d branch or leaf pages in the store", len(pages))
	}
	for _, off := range pages {
		for _, mode := range []string{"save", "set"} {
			t.Run(fmt.Sprintf("page %d/%s", off/ps, mode), func(t *testing.T) {
				t.Parallel() // each case is a child process of its own
				p := boltTempPath(t)
				file := bytes.Clone(base)
				binary.NativeEndian.PutUint32(file[off+12:], 0xffffffff)
				if err := os.WriteFile(p, file, 0o600); err != nil {
					t.Fatal(err)
				}
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
				defer cancel()
				cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestTrustWriteChild$", "-test.count=1")
				cmd.Env = append(os.Environ(), "HAMT_WRITE_CHILD="+mode, "HAMT_WRITE_FILE="+p, "HAMT_WRITE_ROOT="+root.String())
				out, err := cmd.CombinedOutput()
				if err != nil {
					t.Fatalf("child: %v\n%s", err, out)
				}
				if !strings.Contains(string(out), "write-child ok") {
					t.Fatalf("child printed no result:\n%s", out)
				}
			})
		}
	}
}

// TestTrustWriteChild is not a test: it is the child process of
// TestTrustWriteOnDamagedOverflowIsErrCorrupt, run when it re-executes the test binary with
// HAMT_WRITE_CHILD set. It exits with status 4 if its heap passes writeChildHeapLimit, 3 if the
// write fails other than with ErrCorrupt or succeeds but cannot be read back.
func TestTrustWriteChild(t *testing.T) {
	mode := os.Getenv("HAMT_WRITE_CHILD")
	if mode == "" {
		t.Skip("helper process of TestTrustWriteOnDamagedOverflowIsErrCorrupt; runs only when it re-executes the test binary with HAMT_WRITE_CHILD set")
	}
	go func() {
		s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
		for {
			metrics.Read(s)
			if s[0].Value.Uint64() > writeChildHeapLimit {
				fmt.Printf("write-child heap of %d bytes: the write is running away\n", s[0].Value.Uint64())
				os.Exit(4)
			}
			time.Sleep(time.Millisecond)
		}
	}()
	fail := func(format string, args ...any) {
		fmt.Printf("write-child "+format+"\n", args...)
		os.Exit(3)
	}
	done := func(err error) {
		if err != nil && !errors.Is(err, hamt.ErrCorrupt) {
			fail("%s: %v, want ErrCorrupt or success", mode, err)
		}
		fmt.Printf("write-child ok (%v)\n", err)
		os.Exit(0)
	}
	ctx := context.Background()
	cas, err := hamt.OpenBoltCAS(os.Getenv("HAMT_WRITE_FILE"), hamt.WithBoltFlushInterval(0))
	if err != nil {
		done(err)
	}
	value := []byte("a block written after the damage")
	switch mode {
	case "save":
		id, err := cas.Save(ctx, value, multicodec.Raw)
		if err == nil {
			err = cas.Flush(ctx)
		}
		if err != nil {
			done(err)
		}
		if got, err := cas.Load(ctx, id); err != nil || !bytes.Equal(got, value) {
			fail("Load after Save = %q, %v", got, err)
		}
	case "set":
		root, err := cid.Decode(os.Getenv("HAMT_WRITE_ROOT"))
		if err != nil {
			fail("%v", err)
		}
		m, err := hamt.Open(ctx, cas, hamt.Bytes, root)
		if err == nil {
			err = m.EnableWrite(ctx)
		}
		if err != nil {
			done(err)
		}
		if err := m.Set(ctx, "new key", value); err != nil {
			done(err)
		}
		if root, err = m.Flush(ctx); err != nil {
			done(err)
		}
		m, err = hamt.Open(ctx, cas, hamt.Bytes, root)
		if err != nil {
			fail("Open after Set: %v", err)
		}
		if got, err := m.Get(ctx, "new key"); err != nil || !bytes.Equal(got, value) {
			fail("Get after Set = %q, %v", got, err)
		}
	default:
		fail("unknown HAMT_WRITE_CHILD mode %q", mode)
	}
	done(cas.CloseStrict())
}
