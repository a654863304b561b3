package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hamt-go/hamt/internal/kubotest"
)

// binary is the hamt command built once for all tests.
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "hamt-cmd-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "hamt")
	if runtime.GOOS == "windows" {
		binary += ".exe"
	}
	out, err := exec.Command("go", "build", "-o", binary, ".").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "building hamt: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// result is what one run of the binary printed.
type result struct {
	stdout, stderr string
	code           int
}

// lastLine is the last line of standard output (the root CID, for commands that make one).
func (r result) lastLine() string {
	lines := strings.Split(strings.TrimRight(r.stdout, "\n"), "\n")
	return lines[len(lines)-1]
}

// hamtRun runs the binary with a store under dir, stdin as its input.
func hamtRun(t *testing.T, store string, stdin []byte, args ...string) result {
	t.Helper()
	return hamtRunWithin(t, 0, store, stdin, args...)
}

// hamtRunWithin is hamtRun giving up after limit (none if 0) as a test failure, not a hang: for
// commands that would run for minutes if what the test checks were broken.
func hamtRunWithin(t *testing.T, limit time.Duration, store string, stdin []byte, args ...string) result {
	t.Helper()
	ctx := context.Background()
	if limit > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, limit)
		defer cancel()
	}
	cmd := exec.CommandContext(ctx, binary, args...)
	cmd.Env = append(os.Environ(), "HAMT_STORE="+store)
	cmd.Stdin = bytes.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("hamt %v: still running after %s (%d bytes of output)", args, limit, out.Len())
	}
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return result{out.String(), errb.String(), code}
}

// ok runs the binary and fails the test unless it succeeds.
func ok(t *testing.T, store string, stdin []byte, args ...string) result {
	t.Helper()
	r := hamtRun(t, store, stdin, args...)
	if r.code != 0 {
		t.Fatalf("hamt %v: exit %d\n%s", args, r.code, r.stderr)
	}
	return r
}

var cidLine = regexp.MustCompile(`^bafy[a-z2-7]+$`)

// zarrFiles reads the bundled hierarchy.
func zarrFiles(t *testing.T) map[string][]byte {
	t.Helper()
	files := map[string][]byte{}
	root := filepath.Join("..", "..", "testdata", "zarr")
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		rel, _ := filepath.Rel(root, p)
		files[filepath.ToSlash(rel)] = b
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

// TestWorkflow runs the whole life of a dataset through the binary on a bbolt store: import,
// ls, get, stats, set, rm, diff, export, car export, car import into a fresh store (the same
// root), with roots printed last.
func TestWorkflow(t *testing.T) {
	dir := t.TempDir()
	store := filepath.Join(dir, "store.bolt")
	data := filepath.Join("..", "..", "testdata", "zarr")
	files := zarrFiles(t)

	imp := ok(t, store, nil, "import", "--stats", data)
	root := imp.lastLine()
	if !cidLine.MatchString(root) {
		t.Fatalf("import printed %q last", root)
	}
	if !strings.Contains(imp.stdout, fmt.Sprintf("keys          %d", len(files))) || !strings.Contains(imp.stderr, fmt.Sprintf("imported %d files", len(files))) {
		t.Errorf("import output:\n%s\n%s", imp.stdout, imp.stderr)
	}
	if again := ok(t, store, nil, "import", data).lastLine(); again != root {
		t.Errorf("a second import gave %s, want %s", again, root)
	}

	ls := ok(t, store, nil, "ls", root)
	keys := slices.Sorted(func(y func(string) bool) {
		for k := range files {
			if !y(k) {
				return
			}
		}
	})
	if got := strings.Fields(ls.stdout); !slices.Equal(got, keys) {
		t.Errorf("ls: %v, want %v", got, keys)
	}
	if got := strings.Fields(ok(t, store, nil, "ls", root, "surface/temp/c/").stdout); len(got) != 4 {
		t.Errorf("ls with a prefix: %v", got)
	}
	for k, v := range files {
		if got := ok(t, store, nil, "get", root, k).stdout; got != string(v) {
			t.Fatalf("get %s: %d bytes, want %d", k, len(got), len(v))
		}
	}
	stats := ok(t, store, nil, "stats", root).stdout
	for _, want := range []string{"keys          25", "nodes         1", "depth         0"} {
		if !strings.Contains(stats, want) {
			t.Errorf("stats lacks %q:\n%s", want, stats)
		}
	}

	src := filepath.Join(dir, "chunk")
	if err := os.WriteFile(src, []byte("new chunk"), 0o644); err != nil {
		t.Fatal(err)
	}
	root2 := ok(t, store, nil, "set", root, "surface/temp/c/9/9", src).lastLine()
	root3 := ok(t, store, []byte("piped"), "set", root2, "counts/c/0", "-").lastLine()
	root4 := ok(t, store, nil, "rm", root3, "mask/c/0/0").lastLine()
	if got := ok(t, store, nil, "get", root4, "counts/c/0").stdout; got != "piped" {
		t.Errorf("get after set from stdin: %q", got)
	}
	diff := ok(t, store, nil, "diff", root, root4).stdout
	if want := "~ counts/c/0\n- mask/c/0/0\n+ surface/temp/c/9/9\n"; diff != want {
		t.Errorf("diff:\n%s\nwant:\n%s", diff, want)
	}
	if got := ok(t, store, nil, "diff", root4, root4).stdout; got != "" {
		t.Errorf("diff of a root with itself: %q", got)
	}

	out := filepath.Join(dir, "exported")
	ok(t, store, nil, "export", root, out)
	for k, v := range files {
		got, err := os.ReadFile(filepath.Join(out, filepath.FromSlash(k)))
		if err != nil || !bytes.Equal(got, v) {
			t.Errorf("exported %s: %v", k, err)
		}
	}

	car := filepath.Join(dir, "ds.car")
	ok(t, store, nil, "car", "export", root4, car)
	fresh := filepath.Join(dir, "fresh.bolt")
	if got := ok(t, fresh, nil, "car", "import", car).lastLine(); got != root4 {
		t.Errorf("car import printed %s, want %s", got, root4)
	}
	if got := ok(t, fresh, nil, "ls", root4).stdout; got != ok(t, store, nil, "ls", root4).stdout {
		t.Errorf("the fresh store lists other keys")
	}
	if got := ok(t, fresh, nil, "get", root4, "surface/temp/c/9/9").stdout; got != "new chunk" {
		t.Errorf("get from the fresh store: %q", got)
	}
	// Re-importing the exported files into the fresh store gives the original root.
	if got := ok(t, fresh, nil, "import", out).lastLine(); got != root {
		t.Errorf("import of the export gave %s, want %s", got, root)
	}
}

// TestErrors: failures are one line on standard error with a non-zero exit; usage errors exit 2.
func TestErrors(t *testing.T) {
	dir := t.TempDir()
	store := filepath.Join(dir, "store.bolt")
	root := ok(t, store, nil, "import", filepath.Join("..", "..", "testdata", "zarr")).lastLine()
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"get", root, "nope"}, 4, `no key "nope"`},
		{[]string{"rm", root, "nope"}, 4, `no key "nope"`},
		{[]string{"get", "not:a:cid", "k"}, 2, "not a CID"}, // "notacid" is a name (names.go)
		{[]string{"get", root}, 2, "get takes"},
		{[]string{"frobnicate"}, 2, "unknown command"},
		{[]string{"ls", root, "--bogus"}, 2, "unknown flag"},
		{[]string{"import", filepath.Join(dir, "missing")}, 1, "no such file"},
		{[]string{"ls", "bafyr4igb3js3dqlnsvmbi533lhghfet3l4r35vbi7mlrvxjb6f3n5wkc3m"}, 4, "no root bafyr4igb3js3dqlnsvmbi533lhghfet3l4r35vbi7mlrvxjb6f3n5wkc3m in " + store},
		{[]string{"set", root, "k", filepath.Join(dir, "missing")}, 1, "no such file"},
		{[]string{"--store", filepath.Join(dir, "none.bolt"), "ls", root}, 1, "no store at"},
		{[]string{"--store", "x", "--kubo-rpc", "http://127.0.0.1:1", "ls", root}, 2, "one or the other"},
		{[]string{"--kubo-rpc", "http://127.0.0.1:1", "--kubo-gateway", "http://127.0.0.1:1", "get", root, "zarr.json"}, 1, "kubo"},
	} {
		r := hamtRun(t, store, nil, c.args...)
		lines := strings.Split(strings.TrimRight(r.stderr, "\n"), "\n")
		if r.code != c.code || len(lines) != 1 || !strings.HasPrefix(lines[0], "hamt: ") || !strings.Contains(r.stderr, c.want) {
			t.Errorf("hamt %v: exit %d, stderr %q; want exit %d and one line with %q", c.args, r.code, r.stderr, c.code, c.want)
		}
	}
}

// TestHelp: every command answers --help with its usage and exit 0.
func TestHelp(t *testing.T) {
	store := filepath.Join(t.TempDir(), "s.bolt")
	for _, cmd := range [][]string{{}, {"import"}, {"export"}, {"ls"}, {"get"}, {"set"}, {"rm"}, {"serve"}, {"stats"}, {"diff"}, {"convert"}, {"car"}, {"car", "export"}, {"car", "import"}} {
		r := ok(t, store, nil, append(cmd, "--help")...)
		if !strings.Contains(r.stdout, "Usage:") {
			t.Errorf("hamt %v --help:\n%s", cmd, r.stdout)
		}
	}
}

// TestServe: serve answers Zarr reads over HTTP (whole, ranged, HEAD, 404), logs one record per
// request (slog's text: client, method, path, range, status, bytes, duration), and stops cleanly
// on SIGINT.
func TestServe(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("SIGINT delivery is POSIX")
	}
	dir := t.TempDir()
	store := filepath.Join(dir, "store.bolt")
	root := ok(t, store, nil, "import", filepath.Join("..", "..", "testdata", "zarr")).lastLine()
	files := zarrFiles(t)

	s := startServe(t, store, root)
	base := "http://" + s.addr
	get := func(path string, hdr ...string) (*http.Response, []byte) {
		req, _ := http.NewRequest("GET", base+path, nil)
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, b
	}
	if resp, b := get("/surface/temp/zarr.json"); resp.StatusCode != 200 || !bytes.Equal(b, files["surface/temp/zarr.json"]) {
		t.Errorf("GET zarr.json: %d", resp.StatusCode)
	}
	shard := files["sharded/c/0/0"]
	if resp, b := get("/sharded/c/0/0", "Range", "bytes=-68"); resp.StatusCode != 206 || !bytes.Equal(b, shard[len(shard)-68:]) {
		t.Errorf("ranged GET: %d", resp.StatusCode)
	}
	if resp, _ := get("/sparse/c/1/0"); resp.StatusCode != 404 {
		t.Errorf("missing chunk: %d", resp.StatusCode)
	}
	resp, err := http.Head(base + "/counts/c/0")
	if err != nil || resp.StatusCode != 200 || resp.ContentLength != int64(len(files["counts/c/0"])) {
		t.Errorf("HEAD: %v %v", resp, err)
	}
	code, _, logged := s.stop(t, syscall.SIGINT)
	if code != 0 {
		t.Errorf("serve exited with %d after SIGINT", code)
	}
	if len(logged) != 5 || logged[len(logged)-1] != "stopped" {
		t.Errorf("log lines %q, want one per request (4) and \"stopped\"", logged)
	}
	for _, want := range []string{"method=GET path=/surface/temp/zarr.json status=200", `method=GET path=/sharded/c/0/0 range="bytes=-68" status=206`,
		"level=INFO msg=request client=127.0.0.1:", "method=GET path=/sparse/c/1/0 status=404", "method=HEAD path=/counts/c/0 status=200"} {
		if !slices.ContainsFunc(logged, func(l string) bool { return strings.Contains(l, want) }) {
			t.Errorf("no log line with %q in %q", want, logged)
		}
	}
}

// TestKubo: the same commands work on IPFS through Kubo (the in-process boxo gateway), and give
// the same root as the bbolt store.
func TestKubo(t *testing.T) {
	srv := kubotest.New(t)
	data := filepath.Join("..", "..", "testdata", "zarr")
	kubo := []string{"--kubo-rpc", srv.RPCURL(), "--kubo-gateway", srv.GatewayURL()}
	root := ok(t, "", nil, append(kubo, "import", data)...).lastLine()
	if want := ok(t, filepath.Join(t.TempDir(), "s.bolt"), nil, "import", data).lastLine(); root != want {
		t.Errorf("root on Kubo %s, on bbolt %s", root, want)
	}
	files := zarrFiles(t)
	if got := ok(t, "", nil, append(kubo, "get", root, "surface/zarr.json")...).stdout; got != string(files["surface/zarr.json"]) {
		t.Errorf("get over Kubo: %q", got)
	}
	root2 := ok(t, "", []byte("x"), append(kubo, "set", root, "k", "-")...).lastLine()
	if got := ok(t, "", nil, append(kubo, "diff", root, root2)...).stdout; got != "+ k\n" {
		t.Errorf("diff over Kubo: %q", got)
	}
	if r := hamtRun(t, "", nil, append(kubo, "car", "import", filepath.Join(t.TempDir(), "x.car"))...); r.code == 0 {
		t.Error("car import on Kubo worked without a file")
	}
}
