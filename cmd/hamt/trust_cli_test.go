package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/ipfs/go-cid"
	"github.com/multiformats/go-multihash"
	"github.com/spf13/cobra"
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

// TestUsageErrorsExitTwo: an unknown command or subcommand, at the top or in a group, is a usage
// error (exit 2, one line); a group alone prints its help.
func TestUsageErrorsExitTwo(t *testing.T) {
	store := filepath.Join(t.TempDir(), "s.bolt")
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"frobnicate"}, `unknown command "frobnicate" for "hamt"`},
		{[]string{"stst"}, "did you mean set or stats?"},
		{[]string{"car", "foo"}, `unknown command "foo" for "hamt car"`},
		{[]string{"car", "exprot", "a", "b"}, "did you mean export?"},
		{[]string{"car", "--bogus"}, "unknown flag"},
		{[]string{"--store", store, "car", "import"}, "import takes FILE"},
		{[]string{"import", "--workers", "0", "dir"}, "--workers must be at least 1, got 0"},
		{[]string{"import", "--bucket-size", "0", "dir"}, "--bucket-size must be at least 1, got 0"},
		{[]string{"export", "--workers", "-1", "bafyr4igb3js3dqlnsvmbi533lhghfet3l4r35vbi7mlrvxjb6f3n5wkc3m", "out"}, "--workers must be at least 1, got -1"},
	} {
		r := hamtRun(t, store, nil, c.args...)
		lines := strings.Split(strings.TrimRight(r.stderr, "\n"), "\n")
		if r.code != 2 || len(lines) != 1 || !strings.HasPrefix(r.stderr, "hamt: ") || !strings.Contains(r.stderr, c.want) || r.stdout != "" {
			t.Errorf("hamt %v: exit %d, stdout %q, stderr %q; want exit 2 and one line with %q", c.args, r.code, r.stdout, r.stderr, c.want)
		}
	}
	for _, args := range [][]string{{}, {"car"}} {
		if r := hamtRun(t, store, nil, args...); r.code != 0 || !strings.Contains(r.stdout, "Usage:") {
			t.Errorf("hamt %v: exit %d, %q", args, r.code, r.stdout)
		}
	}
	if _, err := os.Stat(store); !os.IsNotExist(err) {
		t.Errorf("usage errors created the store (%v)", err)
	}
	if help := ok(t, store, nil, "--help").stdout; !strings.Contains(help, "3  internal error") || !strings.Contains(help, "2  usage error") || !strings.Contains(help, "4  not found") {
		t.Errorf("the root help does not list the exit statuses:\n%s", help)
	}
}

// TestPanicIsAnInternalError: a panic in a command exits 3 (not Go's 2, the usage status) with
// one line naming the panic and where it happened.
func TestPanicIsAnInternalError(t *testing.T) {
	a := newApp(nil, io.Discard, io.Discard)
	root := a.rootCommand()
	root.AddCommand(&cobra.Command{Use: "boom", RunE: func(_ *cobra.Command, argv []string) error {
		return fmt.Errorf("%s", argv[2]) // index out of range
	}})
	var errb bytes.Buffer
	code := execute(context.Background(), root, []string{"boom"}, &errb)
	lines := strings.Split(strings.TrimRight(errb.String(), "\n"), "\n")
	if code != 3 || len(lines) != 1 || !strings.HasPrefix(lines[0], "hamt: internal error") ||
		!strings.Contains(lines[0], "index out of range [2] with length 0") || !strings.Contains(lines[0], "trust_cli_test.go:") {
		t.Errorf("panic: exit %d, stderr %q; want exit 3 and one line with the panic and its site", code, errb.String())
	}
}

// TestErrorsCarryOnePrefix: a library error that starts with "hamt: " is not prefixed again.
func TestErrorsCarryOnePrefix(t *testing.T) {
	store := filepath.Join(t.TempDir(), "store.bolt")
	ok(t, store, nil, "import", filepath.Join("..", "..", "testdata", "zarr"))
	for _, c := range []struct {
		args []string
		code int
	}{
		{[]string{"ls", "bafyr4igb3js3dqlnsvmbi533lhghfet3l4r35vbi7mlrvxjb6f3n5wkc3m"}, 4},
		{[]string{"--kubo-rpc", "ftp://127.0.0.1:1", "ls", "bafyr4igb3js3dqlnsvmbi533lhghfet3l4r35vbi7mlrvxjb6f3n5wkc3m"}, 2}, // a usage error since issue 15
	} {
		args := c.args
		r := hamtRun(t, store, nil, args...)
		if r.code != c.code || !strings.HasPrefix(r.stderr, "hamt: ") || strings.Count(r.stderr, "hamt:") != 1 {
			t.Errorf("hamt %v: exit %d, %q; want one \"hamt:\"", args, r.code, r.stderr)
		}
	}
}

// TestErrorLinesAreBounded: a root CID with a 40,000-byte identity digest is named once in the
// error (it was named twice: 128 KB), and the line is cut to a bounded length that keeps the
// start and the cause.
func TestErrorLinesAreBounded(t *testing.T) {
	store := filepath.Join(t.TempDir(), "store.bolt")
	ok(t, store, nil, "import", filepath.Join("..", "..", "testdata", "zarr"))
	mh, err := multihash.Sum(make([]byte, 40_000), multihash.IDENTITY, -1)
	if err != nil {
		t.Fatal(err)
	}
	root := cid.NewCidV1(cid.DagCBOR, mh).String()
	for _, args := range [][]string{{"ls", root}, {"get", root, "k"}, {"stats", root}, {"ls", root + "x"}} {
		r := hamtRun(t, store, nil, args...)
		if r.code == 0 || len(r.stderr) > maxErrorLine+100 || strings.Count(r.stderr, "\n") != 1 {
			t.Errorf("hamt %s …: exit %d, a %d-byte error", args[0], r.code, len(r.stderr))
		}
		// The cause: an identity CID over hamt.MaxIdentityDigest, or a string that is no CID.
		if !strings.HasPrefix(r.stderr, "hamt: ") || !strings.Contains(r.stderr, "identity CID holds too many bytes") && !strings.Contains(r.stderr, "not a CID") {
			t.Errorf("hamt %s …: the error lost its start or its cause: %.200q", args[0], r.stderr)
		}
	}
	line := errorLine("hamt: " + strings.Repeat("é", 5000) + " the cause")
	if len(line) > maxErrorLine+100 || !strings.HasSuffix(line, " the cause") || !utf8.ValidString(line) {
		t.Errorf("errorLine cut a long message to %d bytes: %.100q … %q", len(line), line, line[len(line)-20:])
	}
}

// TestMistypedStoreIsNotLeftBehind: commands that read, set and rm refuse a missing store;
// import and car import create one, and remove it (and the directories made for it) when they
// fail having stored nothing.
func TestMistypedStoreIsNotLeftBehind(t *testing.T) {
	dir := t.TempDir()
	typo := filepath.Join(dir, "typo")
	store := filepath.Join(typo, "sub", "store.bolt")
	src := filepath.Join(dir, "value")
	if err := os.WriteFile(src, []byte("v"), 0o644); err != nil {
		t.Fatal(err)
	}
	notCAR := src
	root := "bafyr4igb3js3dqlnsvmbi533lhghfet3l4r35vbi7mlrvxjb6f3n5wkc3m"
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"ls", root}, "no store at " + store},
		{[]string{"set", root, "k", src}, "no store at " + store},
		{[]string{"set", root, "k", "-"}, "no store at " + store},
		{[]string{"rm", root, "k"}, "no store at " + store},
		{[]string{"import", filepath.Join(dir, "missing")}, "no such file"},
		{[]string{"car", "import", notCAR}, "car"},
	} {
		r := hamtRun(t, "", []byte("v"), append([]string{"--store", store}, c.args...)...)
		if r.code != 1 || !strings.Contains(r.stderr, c.want) {
			t.Errorf("hamt %v: exit %d, %q; want exit 1 and %q", c.args, r.code, r.stderr, c.want)
		}
		if _, err := os.Stat(typo); !os.IsNotExist(err) {
			t.Fatalf("hamt %v with a mistyped --store left %s behind (%v)", c.args, typo, err)
		}
	}
	// A store that exists stays, even empty, when a command on it fails.
	if err := os.MkdirAll(typo, 0o755); err != nil {
		t.Fatal(err)
	}
	kept := filepath.Join(typo, "kept.bolt")
	ok(t, kept, nil, "import", filepath.Join("..", "..", "testdata", "zarr"))
	if r := hamtRun(t, kept, nil, "import", filepath.Join(dir, "missing")); r.code != 1 {
		t.Fatalf("import of a missing directory: exit %d", r.code)
	}
	if _, err := os.Stat(kept); err != nil {
		t.Errorf("a failed import removed an existing store: %v", err)
	}
	if r := ok(t, store, nil, "import", filepath.Join("..", "..", "testdata", "zarr")); !cidLine.MatchString(r.lastLine()) {
		t.Errorf("import into a new store printed %q", r.lastLine())
	}
	if _, err := os.Stat(store); err != nil {
		t.Errorf("a successful import left no store: %v", err)
	}
}

// TestInterruptSaysInterrupted: SIGINT while `set` reads its value from a slow stdin ends the
// command with "interrupted", not with whatever step the cancelled context cut short.
func TestInterruptSaysInterrupted(t *testing.T) {
	store, root := importZarr(t)
	cmd := exec.Command(binary, "set", root, "k", "-")
	cmd.Env = append(os.Environ(), "HAMT_STORE="+store)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	if _, err := in.Write([]byte("part of a value")); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond) // the command is reading its input
	if err := cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	in.Close()
	err = cmd.Wait()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 || !strings.Contains(stderr.String(), "hamt: interrupted") {
		t.Fatalf("set interrupted: %v, stderr %q; want exit 1 saying interrupted", err, stderr.String())
	}
}
