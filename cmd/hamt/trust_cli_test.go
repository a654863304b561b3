package main

import (
	"bytes"
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// inProcess runs one command line in this process with stdin as its input.
func inProcess(t *testing.T, stdin io.Reader, args ...string) result {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(context.Background(), args, stdin, &out, &errb)
	return result{out.String(), errb.String(), code}
}

// TestSetReadsItsInputBeforeLockingTheStore: while `set … -` waits for a slow producer on its
// standard input, other commands use the store (the lock is taken only once the value is read).
func TestSetReadsItsInputBeforeLockingTheStore(t *testing.T) {
	store := filepath.Join(t.TempDir(), "store.bolt")
	root := ok(t, store, nil, "import", filepath.Join("..", "..", "testdata", "zarr")).lastLine()

	set := exec.Command(binary, "set", root, "slow", "-")
	set.Env = append(os.Environ(), "HAMT_STORE="+store)
	in, err := set.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	set.Stdout, set.Stderr = &out, &errb
	if err := set.Start(); err != nil {
		t.Fatal(err)
	}
	defer set.Process.Kill()
	// A pipe holds 64 KiB: once 1 MiB is written, set is reading its input.
	value := bytes.Repeat([]byte("slow producer "), 150_000)
	if _, err := in.Write(value[:1<<20]); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if r := hamtRun(t, store, nil, "ls", root); r.code != 0 || !strings.Contains(r.stdout, "zarr.json") {
		t.Errorf("ls while set reads its input: exit %d after %v, %s", r.code, time.Since(start).Round(time.Millisecond), r.stderr)
	}
	if _, err := in.Write(value[1<<20:]); err != nil {
		t.Fatal(err)
	}
	in.Close()
	if err := set.Wait(); err != nil {
		t.Fatalf("set: %v: %s", err, errb.String())
	}
	root2 := strings.TrimSpace(out.String())
	if got := ok(t, store, nil, "get", root2, "slow").stdout; got != string(value) {
		t.Errorf("get after a slow set: %d bytes, want %d", len(got), len(value))
	}
}

// countingReader yields n bytes of 'x' and counts what was taken.
type countingReader struct{ n, taken int64 }

func (r *countingReader) Read(p []byte) (int, error) {
	if r.taken >= r.n {
		return 0, io.EOF
	}
	k := min(int64(len(p)), r.n-r.taken)
	for i := range p[:k] {
		p[i] = 'x'
	}
	r.taken += k
	return int(k), nil
}

// TestSetRefusesAValueOverTheLimitEarly: a value larger than the store takes is refused before
// it is read whole (a file by its size, standard input once past the limit), before the store
// is opened; values up to the limit, from a file or spooled from standard input, are stored.
func TestSetRefusesAValueOverTheLimitEarly(t *testing.T) {
	defer func(old int64) { boltValueLimit = old }(boltValueLimit)
	const limit = 3 << 20 // above spoolAbove, so standard input is spooled
	boltValueLimit = limit
	dir := t.TempDir()
	store := filepath.Join(dir, "store.bolt")
	root := ok(t, store, nil, "import", filepath.Join("..", "..", "testdata", "zarr")).lastLine()
	before, err := os.ReadFile(store)
	if err != nil {
		t.Fatal(err)
	}

	for _, n := range []int64{limit + 1, 4 * limit} {
		src := &countingReader{n: n}
		r := inProcess(t, src, "--store", store, "set", root, "big", "-")
		if r.code != 1 || !strings.Contains(r.stderr, "limit of 3145728 bytes") {
			t.Errorf("%d bytes on standard input: exit %d, %q", n, r.code, r.stderr)
		}
		if src.taken > limit+1 {
			t.Errorf("%d bytes on standard input: read %d before refusing, want at most %d", n, src.taken, limit+1)
		}
	}
	big := filepath.Join(dir, "big")
	if err := os.WriteFile(big, make([]byte, limit+1), 0o644); err != nil {
		t.Fatal(err)
	}
	if r := inProcess(t, nil, "--store", store, "set", root, "big", big); r.code != 1 || !strings.Contains(r.stderr, "limit of") {
		t.Errorf("a file over the limit: exit %d, %q", r.code, r.stderr)
	}
	if after, err := os.ReadFile(store); err != nil || !bytes.Equal(after, before) {
		t.Errorf("refused sets changed the store file (%v)", err)
	}

	for _, c := range []struct {
		name string
		in   io.Reader
		arg  string
	}{
		{"standard input at the limit", &countingReader{n: limit}, "-"},
		{"a small standard input", strings.NewReader("small"), "-"},
		{"a file at the limit", nil, big},
	} {
		if c.arg == big {
			if err := os.Truncate(big, limit); err != nil {
				t.Fatal(err)
			}
		}
		r := inProcess(t, c.in, "--store", store, "set", root, "v", c.arg)
		if r.code != 0 {
			t.Errorf("%s: exit %d, %s", c.name, r.code, r.stderr)
			continue
		}
		got := inProcess(t, nil, "--store", store, "get", strings.TrimSpace(r.stdout), "v").stdout
		if c.name == "a small standard input" && got != "small" || c.name != "a small standard input" && len(got) != limit {
			t.Errorf("%s: got back %d bytes", c.name, len(got))
		}
	}
}
