package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/hamt-go/hamt"
	"github.com/hamt-go/hamt/internal/kubotest"
	"github.com/ipfs/go-cid"
	"github.com/multiformats/go-multicodec"
	"github.com/spf13/cobra"
	bolt "go.etcd.io/bbolt"
)

// testdataZarr is the bundled Zarr v3 hierarchy.
var testdataZarr = filepath.Join("..", "..", "testdata", "zarr")

// in runs one command line in this process on the bbolt store at store.
func in(t *testing.T, store string, args ...string) result {
	t.Helper()
	return inProcess(t, nil, append([]string{"--store", store}, args...)...)
}

// okIn is in, failing the test unless the command succeeds.
func okIn(t *testing.T, store string, args ...string) result {
	t.Helper()
	r := in(t, store, args...)
	if r.code != 0 {
		t.Fatalf("hamt %v: exit %d\n%s", args, r.code, r.stderr)
	}
	return r
}

// wantExit fails the test unless r exited with code, one line on standard error holding want,
// and nothing on standard output.
func wantExit(t *testing.T, r result, code int, want string, args ...string) {
	t.Helper()
	if r.code != code || strings.Count(r.stderr, "\n") != 1 || !strings.HasPrefix(r.stderr, "hamt: ") || !strings.Contains(r.stderr, want) || r.stdout != "" {
		t.Errorf("hamt %v: exit %d, stdout %q, stderr %q; want exit %d and one line with %q", args, r.code, r.stdout, r.stderr, code, want)
	}
}

// jsonLines parses standard output as JSON Lines into values of T.
func jsonLines[T any](t *testing.T, out string) []T {
	t.Helper()
	var vs []T
	dec := json.NewDecoder(strings.NewReader(out))
	dec.DisallowUnknownFields()
	for dec.More() {
		var v T
		if err := dec.Decode(&v); err != nil {
			t.Fatalf("JSON output %q: %v", out, err)
		}
		vs = append(vs, v)
	}
	if strings.Count(out, "\n") != len(vs) {
		t.Errorf("%d JSON values on %d lines: not JSON Lines", len(vs), strings.Count(out, "\n"))
	}
	return vs
}

// jsonObject parses standard output as exactly one JSON object of type T, on one line.
func jsonObject[T any](t *testing.T, out string) T {
	t.Helper()
	vs := jsonLines[T](t, out)
	if len(vs) != 1 {
		t.Fatalf("%d JSON values, want one: %q", len(vs), out)
	}
	return vs[0]
}

// treeDir writes files under a new directory and returns it.
func treeDir(t *testing.T, files map[string][]byte) string {
	t.Helper()
	dir := t.TempDir()
	for k, v := range files {
		p := filepath.Join(dir, filepath.FromSlash(k))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, v, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// without is files less the keys under dir/.
func without(files map[string][]byte, dir string) map[string][]byte {
	out := maps.Clone(files)
	maps.DeleteFunc(out, func(k string, _ []byte) bool { return strings.HasPrefix(k, dir+"/") })
	return out
}

// TestRmRecursiveRemovesADirectoryInOneRoot: rm -r removes a directory's keys (by path elements)
// in one new root, the root an import of the other files gives; a directory with no key exits 4;
// an empty DIR is refused as a usage error unless --all, which gives the empty dataset.
func TestRmRecursiveRemovesADirectoryInOneRoot(t *testing.T) {
	store := filepath.Join(t.TempDir(), "store.bolt")
	files := zarrFiles(t)
	root := okIn(t, store, "import", testdataZarr).lastLine()
	want := okIn(t, store, "import", treeDir(t, without(files, "surface/temp"))).lastLine()

	r := okIn(t, store, "rm", "-r", root, "surface/temp/")
	if got := r.lastLine(); got != want {
		t.Errorf("rm -r surface/temp: root %s, want %s as an import of the other files", got, want)
	}
	if !strings.Contains(r.stderr, "removed 5 keys\n") || !strings.HasSuffix(r.stderr, "stored in "+store+"\n") {
		t.Errorf("rm -r's stderr: %q", r.stderr)
	}
	if got := okIn(t, store, "rm", "--recursive", root, "sparse/c/1/1").lastLine(); got == root {
		t.Error("rm -r of a key removed nothing")
	}

	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"rm", "-r", root, "surface/te"}, 4, `no key under "surface/te"`},
		{[]string{"rm", "-r", root, ""}, 2, "rm -r --all ROOT"},
		{[]string{"rm", "-r", root, "/"}, 2, "rm -r --all ROOT"},
		{[]string{"rm", "--all", root}, 2, "--all is for rm -r"},
		{[]string{"rm", "-r", "--all", root, "surface"}, 2, "takes ROOT"},
		{[]string{"rm", "-r", root}, 2, "rm takes ROOT KEY"},
	} {
		wantExit(t, in(t, store, c.args...), c.code, c.want, c.args...)
	}

	empty := okIn(t, store, "rm", "-r", "--all", root)
	if !strings.Contains(empty.stderr, "removed 25 keys") {
		t.Errorf("rm -r --all: %q", empty.stderr)
	}
	if ls := okIn(t, store, "ls", empty.lastLine()); ls.stdout != "" {
		t.Errorf("ls after rm -r --all: %q", ls.stdout)
	}
	wantExit(t, in(t, store, "rm", "-r", "--all", empty.lastLine()), 4, "nothing to remove")
}

// TestRmRecursiveOnAShardedRoot: on the sharded layout rm -r removes an array, metadata and chunks.
func TestRmRecursiveOnAShardedRoot(t *testing.T) {
	store := filepath.Join(t.TempDir(), "store.bolt")
	root := okIn(t, store, "import", "--layout", "sharded", groupedZarr(t)).lastLine()
	gone := okIn(t, store, "rm", "-r", root, "0/surface/temp").lastLine()
	before := strings.Fields(okIn(t, store, "ls", root).stdout)
	after := strings.Fields(okIn(t, store, "ls", gone).stdout)
	want := slices.DeleteFunc(slices.Clone(before), func(k string) bool { return strings.HasPrefix(k, "0/surface/temp/") })
	if !slices.Equal(after, want) || len(before)-len(after) != 5 {
		t.Errorf("ls after rm -r 0/surface/temp: %q, want %q", after, want)
	}
}

// importJSON is what import --json writes.
type importJSON struct {
	Root     string         `json:"root"`
	Into     string         `json:"into"`
	Prefix   string         `json:"prefix"`
	Files    int            `json:"files"`
	Bytes    int64          `json:"bytes"`
	Skipped  int            `json:"skipped"`
	Added    int            `json:"added"`
	Replaced int            `json:"replaced"`
	Store    string         `json:"store"`
	Stats    map[string]any `json:"stats"`
}

// TestImportIntoAppendsATimeSlice: import --into ROOT --prefix P adds a directory's files under P
// to the dataset at ROOT in one root, the root an import of the union gives, and says how many
// keys it added and replaced, and where it stored them (as JSON too).
func TestImportIntoAppendsATimeSlice(t *testing.T) {
	store := filepath.Join(t.TempDir(), "store.bolt")
	files := zarrFiles(t)
	root := okIn(t, store, "import", testdataZarr).lastLine()
	grown := bytes.Replace(files["surface/temp/zarr.json"], []byte("6,"), []byte("9,"), 1)
	if bytes.Equal(grown, files["surface/temp/zarr.json"]) {
		t.Fatal("surface/temp/zarr.json has no shape 6 to grow")
	}
	slice := map[string][]byte{"zarr.json": grown, "c/2/0": []byte("new row 0"), "c/2/1": []byte("new row 1")}
	union := maps.Clone(files)
	for k, v := range slice {
		union["surface/temp/"+k] = v
	}
	want := okIn(t, store, "import", treeDir(t, union)).lastLine()
	sliceDir := treeDir(t, slice)

	r := okIn(t, store, "import", "--into", root, "--prefix", "surface/temp", sliceDir)
	if got := r.lastLine(); got != want {
		t.Errorf("import --into: root %s, want %s as an import of the union", got, want)
	}
	if !strings.Contains(r.stderr, "imported 3 files") || !strings.Contains(r.stderr, "added 2 keys, replaced 1\n") || !strings.HasSuffix(r.stderr, "stored in "+store+"\n") {
		t.Errorf("import --into's stderr: %q", r.stderr)
	}

	j := jsonObject[importJSON](t, okIn(t, store, "import", "--json", "--stats", "--into", root, "--prefix", "surface/temp/", sliceDir).stdout)
	if j.Root != want || j.Into != root || j.Prefix != "surface/temp/" || j.Files != 3 || j.Added != 2 || j.Replaced != 1 ||
		j.Bytes != int64(len(grown)+18) || j.Store != store || j.Stats["keys"] != float64(len(union)) || j.Stats["root"] != want {
		t.Errorf("import --json --into: %+v", j)
	}
	fresh := jsonObject[importJSON](t, okIn(t, store, "import", "--json", testdataZarr).stdout)
	if fresh.Root != root || fresh.Files != len(files) || fresh.Added != len(files) || fresh.Replaced != 0 || fresh.Into != "" || fresh.Stats != nil {
		t.Errorf("import --json: %+v", fresh)
	}

	// --prefix on a new dataset: the sharded layout's group, without a copy of the files.
	grouped := okIn(t, store, "import", "--layout", "sharded", groupedZarr(t)).lastLine()
	if got := okIn(t, store, "import", "--layout", "sharded", "--prefix", "0", testdataZarr).lastLine(); got != grouped {
		t.Errorf("import --prefix 0: %s, want %s as an import of the files under 0/", got, grouped)
	}

	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"import", "--into", root, "--layout", "sharded", sliceDir}, 2, "--into adds to ROOT in its own layout"},
		{[]string{"import", "--into", root, "--chunks-per-shard", "9", sliceDir}, 2, "is a HAMT"},
		{[]string{"import", "--into", grouped, "--bucket-size", "3", sliceDir}, 2, "is sharded"},
		{[]string{"import", "--into", "not:a:cid", sliceDir}, 2, "not a CID"},
		{[]string{"import", "--into", "bafyr4igb3js3dqlnsvmbi533lhghfet3l4r35vbi7mlrvxjb6f3n5wkc3m", sliceDir}, 4, "no root"},
		{[]string{"import", "--into", root, "--prefix", "../up", sliceDir}, 1, `key prefix "../up"`},
		{[]string{"--store", filepath.Join(t.TempDir(), "none.bolt"), "import", "--into", root, sliceDir}, 1, "no store at"},
	} {
		wantExit(t, in(t, store, c.args...), c.code, c.want, c.args...)
	}
}

// TestImportIntoGrowsAShardedArray: import --into a sharded root appends a time slice to one of
// its arrays: the grown zarr.json resizes the array's index, and the new chunk is stored.
func TestImportIntoGrowsAShardedArray(t *testing.T) {
	store := filepath.Join(t.TempDir(), "store.bolt")
	files := zarrFiles(t)
	root := okIn(t, store, "import", "--layout", "sharded", groupedZarr(t)).lastLine()
	grown := bytes.Replace(files["counts/zarr.json"], []byte("20"), []byte("28"), 1)
	slice := treeDir(t, map[string][]byte{"zarr.json": grown, "c/3": bytes.Repeat([]byte{1}, 64)})
	j := jsonObject[importJSON](t, okIn(t, store, "import", "--json", "--into", root, "--prefix", "0/counts", slice).stdout)
	if j.Added != 1 || j.Replaced != 1 {
		t.Errorf("import --into a sharded root: %+v", j)
	}
	if got := okIn(t, store, "get", j.Root, "0/counts/c/3").stdout; got != string(bytes.Repeat([]byte{1}, 64)) {
		t.Errorf("the appended chunk: %q", got)
	}
	if got := okIn(t, store, "get", j.Root, "0/counts/zarr.json").stdout; got != string(grown) {
		t.Errorf("the grown metadata: %q", got)
	}
}

// TestImportSaysWhereTheDataWentOnKubo: through Kubo, "store" names the daemon's RPC API.
func TestImportSaysWhereTheDataWentOnKubo(t *testing.T) {
	srv := kubotest.New(t)
	r := inProcess(t, nil, "--kubo-rpc", srv.RPCURL(), "--kubo-gateway", srv.GatewayURL(), "import", "--json", testdataZarr)
	if r.code != 0 {
		t.Fatalf("import on Kubo: exit %d, %s", r.code, r.stderr)
	}
	if j := jsonObject[importJSON](t, r.stdout); j.Store != "the Kubo daemon at "+srv.RPCURL() || !strings.HasSuffix(r.stderr, "stored in "+j.Store+"\n") {
		t.Errorf("import on Kubo: %+v, stderr %q", j, r.stderr)
	}
}

// lsJSON is a line of ls --json.
type lsJSON struct {
	Name string `json:"name"`
	Key  string `json:"key"`
	Dir  bool   `json:"dir"`
	Size *int64 `json:"size"`
	CID  string `json:"cid"`
}

// TestLsListsADirectoryAndTheLongFormat: ls --dir lists one level (directories ending in "/"),
// -l adds each value's size and CID, --json says the same as JSON Lines; a directory that is not
// there exits 4, one that is a key lists the key.
func TestLsListsADirectoryAndTheLongFormat(t *testing.T) {
	ctx := context.Background()
	store := filepath.Join(t.TempDir(), "store.bolt")
	files := zarrFiles(t)
	root := okIn(t, store, "import", testdataZarr).lastLine()
	cidOf := func(v []byte) string {
		id, err := hamt.NewMemoryCAS().Save(ctx, v, multicodec.Raw)
		if err != nil {
			t.Fatal(err)
		}
		return id.String()
	}

	if got := okIn(t, store, "ls", "--dir", root).stdout; got != "counts/\nmask/\nsharded/\nsparse/\nsurface/\nzarr.json\n" {
		t.Errorf("ls --dir: %q", got)
	}
	for _, dir := range []string{"surface", "surface/", "/surface/"} {
		if got := okIn(t, store, "ls", "--dir", root, dir).stdout; got != "temp/\nzarr.json\n" {
			t.Errorf("ls --dir %s: %q", dir, got)
		}
	}
	long := okIn(t, store, "ls", "--dir", "-l", root, "surface").stdout
	meta := files["surface/zarr.json"]
	if lines := strings.Split(strings.TrimSuffix(long, "\n"), "\n"); len(lines) != 2 ||
		!slices.Equal(strings.Fields(lines[0]), []string{"-", "-", "temp/"}) ||
		!slices.Equal(strings.Fields(lines[1]), []string{strconv.Itoa(len(meta)), cidOf(meta), "zarr.json"}) ||
		strings.Index(lines[0], "temp/") != strings.Index(lines[1], "zarr.json") {
		t.Errorf("ls --dir -l surface (columns aligned):\n%s", long)
	}

	flat := jsonLines[lsJSON](t, okIn(t, store, "ls", "-l", "--json", root, "surface/temp/c/").stdout)
	if len(flat) != 4 {
		t.Fatalf("ls -l --json surface/temp/c/: %+v", flat)
	}
	for _, e := range flat {
		if e.Name != "" || e.Dir || e.Size == nil || *e.Size != int64(len(files[e.Key])) || e.CID != cidOf(files[e.Key]) {
			t.Errorf("ls -l --json: %+v", e)
		}
	}
	keys := jsonLines[lsJSON](t, okIn(t, store, "ls", "--json", root).stdout)
	if len(keys) != len(files) || keys[0].Size != nil || keys[0].CID != "" || keys[0].Key != "counts/c/0" {
		t.Errorf("ls --json: %d lines, first %+v", len(keys), keys[0])
	}
	dir := jsonLines[lsJSON](t, okIn(t, store, "ls", "--dir", "-l", "--json", root, "surface").stdout)
	if len(dir) != 2 || dir[0] != (lsJSON{Name: "temp", Key: "surface/temp", Dir: true}) ||
		dir[1].Name != "zarr.json" || dir[1].Key != "surface/zarr.json" || dir[1].Dir || *dir[1].Size != int64(len(meta)) {
		t.Errorf("ls --dir -l --json surface: %+v", dir)
	}
	if got := okIn(t, store, "ls", "--dir", root, "surface/zarr.json").stdout; got != "zarr.json\n" {
		t.Errorf("ls --dir of a key: %q", got)
	}
	wantExit(t, in(t, store, "ls", "--dir", root, "surface/nope"), 4, `no directory "surface/nope"`)
	wantExit(t, in(t, store, "ls", "--dir", root, "../x"), 4, `no directory "../x"`)
}

// arrayJSON is an array of stats --json of a sharded root.
type arrayJSON struct {
	Path           string  `json:"path"`
	Shape          []int64 `json:"shape"`
	ChunkShape     []int64 `json:"chunk_shape"`
	ChunksPerShard int     `json:"chunks_per_shard"`
	Shards         int     `json:"shards"`
	StoredShards   int     `json:"stored_shards"`
	Chunks         int64   `json:"chunks"`
	GridChunks     int64   `json:"grid_chunks"`
}

// TestStatsJSONSaysWhatTheTextSays: stats --json is one object with the numbers stats prints, for
// both layouts.
func TestStatsJSONSaysWhatTheTextSays(t *testing.T) {
	store := filepath.Join(t.TempDir(), "store.bolt")
	root := okIn(t, store, "import", testdataZarr).lastLine()
	type statsJSON struct {
		Root         string      `json:"root"`
		Layout       string      `json:"layout"`
		Keys         int         `json:"keys"`
		Values       int         `json:"values"`
		ValueBytes   int64       `json:"value_bytes"`
		Nodes        int         `json:"nodes"`
		NodeBytes    int64       `json:"node_bytes"`
		Depth        int         `json:"depth"`
		NodesAtDepth []int       `json:"nodes_at_depth"`
		Buckets      int         `json:"buckets"`
		BucketFill   []int       `json:"bucket_fill"`
		MeanFill     float64     `json:"mean_fill"`
		MaxBucket    int         `json:"max_bucket"`
		Links        int         `json:"links"`
		Version      int         `json:"version"`
		Arrays       []arrayJSON `json:"arrays"`
		Shards       int         `json:"shards"`
		StoredShards int         `json:"stored_shards"`
		Chunks       int64       `json:"chunks"`
		GridChunks   int64       `json:"grid_chunks"`
	}
	h := jsonObject[statsJSON](t, okIn(t, store, "stats", "--json", root).stdout)
	text := okIn(t, store, "stats", root).stdout
	if h.Root != root || h.Layout != "hamt" || h.Keys != 25 || h.Nodes != 1 || h.Depth != 0 || !slices.Equal(h.NodesAtDepth, []int{1}) ||
		h.Buckets == 0 || h.ValueBytes <= 0 || h.Arrays != nil ||
		!strings.Contains(text, "keys          25\n") || !strings.Contains(text, "buckets       "+strconv.Itoa(h.Buckets)+", ") {
		t.Errorf("stats --json of a HAMT: %+v\ntext:\n%s", h, text)
	}

	sroot := okIn(t, store, "import", "--layout", "sharded", "--chunks-per-shard", "3", groupedZarr(t)).lastLine()
	s := jsonObject[statsJSON](t, okIn(t, store, "stats", "--json", sroot).stdout)
	if s.Layout != "sharded" || s.Version != 2 || len(s.Arrays) != 5 || s.Keys != 0 || s.NodesAtDepth != nil {
		t.Fatalf("stats --json of a sharded root: %+v", s)
	}
	temp := s.Arrays[slices.IndexFunc(s.Arrays, func(a arrayJSON) bool {
		return a.Path == "0/surface/temp"
	})]
	// As the text says: "0/surface/temp" shape [6 10], chunks [3 5], 3 chunks per shard, shards 2 (2 non-null), chunks 4 of 4
	if !slices.Equal(temp.Shape, []int64{6, 10}) || !slices.Equal(temp.ChunkShape, []int64{3, 5}) || temp.ChunksPerShard != 3 ||
		temp.Shards != 2 || temp.StoredShards != 2 || temp.Chunks != 4 || temp.GridChunks != 4 {
		t.Errorf("stats --json, array 0/surface/temp: %+v", temp)
	}
	var chunks int64
	for _, a := range s.Arrays {
		chunks += a.Chunks
	}
	if s.Chunks != chunks || !strings.Contains(okIn(t, store, "stats", sroot).stdout, "chunks        "+strconv.FormatInt(chunks, 10)+" of ") {
		t.Errorf("stats --json of a sharded root: %d chunks, the arrays' %d", s.Chunks, chunks)
	}
}

// TestDiffJSONAndExitCode: diff --json is one object per key, sorted, with the value CIDs on
// each side; --exit-code exits 1 when the datasets differ (printing the changes, no error) and 0
// when they do not.
func TestDiffJSONAndExitCode(t *testing.T) {
	store := filepath.Join(t.TempDir(), "store.bolt")
	root := okIn(t, store, "import", testdataZarr).lastLine()
	src := filepath.Join(t.TempDir(), "v")
	if err := os.WriteFile(src, []byte("new"), 0o644); err != nil {
		t.Fatal(err)
	}
	root2 := okIn(t, store, "set", root, "counts/c/0", src).lastLine()
	root3 := okIn(t, store, "set", root2, "new/key", src).lastLine()
	root4 := okIn(t, store, "rm", root3, "mask/c/0/0").lastLine()

	type diffJSON struct {
		Change string `json:"change"`
		Key    string `json:"key"`
		OldCID string `json:"old_cid"`
		NewCID string `json:"new_cid"`
	}
	lines := jsonLines[diffJSON](t, okIn(t, store, "diff", "--json", root, root4).stdout)
	ls := jsonLines[lsJSON](t, okIn(t, store, "ls", "-l", "--json", root, "counts/c/0").stdout)
	newLs := jsonLines[lsJSON](t, okIn(t, store, "ls", "-l", "--json", root4, "new/key").stdout)
	want := []diffJSON{
		{Change: "modified", Key: "counts/c/0", OldCID: ls[0].CID, NewCID: newLs[0].CID},
		{Change: "removed", Key: "mask/c/0/0", OldCID: jsonLines[lsJSON](t, okIn(t, store, "ls", "-l", "--json", root, "mask/c/0/0").stdout)[0].CID},
		{Change: "added", Key: "new/key", NewCID: newLs[0].CID},
	}
	if !slices.Equal(lines, want) {
		t.Errorf("diff --json:\n%+v\nwant\n%+v", lines, want)
	}

	differ := in(t, store, "diff", "--exit-code", root, root4)
	if differ.code != 1 || differ.stderr != "" || differ.stdout != "~ counts/c/0\n- mask/c/0/0\n+ new/key\n" {
		t.Errorf("diff --exit-code of different roots: exit %d, %q, %q; want 1, the changes and no error", differ.code, differ.stdout, differ.stderr)
	}
	if same := in(t, store, "diff", "--exit-code", "--json", root4, root4); same.code != 0 || same.stdout != "" || same.stderr != "" {
		t.Errorf("diff --exit-code of a root with itself: exit %d, %q, %q", same.code, same.stdout, same.stderr)
	}
	if plain := in(t, store, "diff", root, root4); plain.code != 0 {
		t.Errorf("diff without --exit-code of different roots: exit %d", plain.code)
	}
	wantExit(t, in(t, store, "diff", "--exit-code", root, "bafyr4igb3js3dqlnsvmbi533lhghfet3l4r35vbi7mlrvxjb6f3n5wkc3m"), 4, "no root")
}

// TestCarJSON: car export --json and car import --json each write one object with the root(s),
// blocks and bytes, and the file written or the store the blocks went to.
func TestCarJSON(t *testing.T) {
	dir := t.TempDir()
	store := filepath.Join(dir, "store.bolt")
	root := okIn(t, store, "import", testdataZarr).lastLine()
	car := filepath.Join(dir, "ds.car")
	type carJSON struct {
		Root   string   `json:"root"`
		Roots  []string `json:"roots"`
		Blocks int      `json:"blocks"`
		Bytes  int64    `json:"bytes"`
		File   string   `json:"file"`
		Store  string   `json:"store"`
	}
	exp := okIn(t, store, "car", "export", "--json", root, car)
	e := jsonObject[carJSON](t, exp.stdout)
	fi, err := os.Stat(car)
	if err != nil {
		t.Fatal(err)
	}
	if e.Root != root || e.Blocks != 26 || e.Bytes != fi.Size() || e.File != car || e.Roots != nil || e.Store != "" || exp.stderr != "" {
		t.Errorf("car export --json: %+v (the CAR is %d bytes), stderr %q", e, fi.Size(), exp.stderr)
	}
	if text := okIn(t, store, "car", "export", root, car).stderr; text != "wrote 26 blocks ("+byteSize(fi.Size())+") to "+car+"\n" {
		t.Errorf("car export's summary: %q", text)
	}

	fresh := filepath.Join(dir, "fresh.bolt")
	imp := okIn(t, fresh, "car", "import", "--json", car)
	i := jsonObject[carJSON](t, imp.stdout)
	if !slices.Equal(i.Roots, []string{root}) || i.Blocks != 26 || i.Bytes != fi.Size() || i.Store != fresh || i.Root != "" || i.File != "" ||
		!strings.HasSuffix(imp.stderr, "stored in "+fresh+"\n") {
		t.Errorf("car import --json: %+v, stderr %q", i, imp.stderr)
	}
	if got := okIn(t, fresh, "get", root, "surface/zarr.json").stdout; got != string(zarrFiles(t)["surface/zarr.json"]) {
		t.Errorf("get from the store the CAR went to: %q", got)
	}
}

// TestVersion: hamt version and hamt --version print the build's module, version and Go; --json
// is one object with the same.
func TestVersion(t *testing.T) {
	store := filepath.Join(t.TempDir(), "store.bolt")
	text := okIn(t, store, "version").stdout
	if flag := okIn(t, store, "--version").stdout; flag != text {
		t.Errorf("--version printed %q, version %q", flag, text)
	}
	type versionJSON struct {
		Module    string `json:"module"`
		Version   string `json:"version"`
		Revision  string `json:"revision"`
		Time      string `json:"time"`
		Modified  bool   `json:"modified"`
		GoVersion string `json:"go_version"`
		OS        string `json:"os"`
		Arch      string `json:"arch"`
	}
	v := jsonObject[versionJSON](t, okIn(t, store, "version", "--json").stdout)
	if v.Module != "github.com/hamt-go/hamt" || v.Version == "" || v.GoVersion != runtime.Version() || v.OS != runtime.GOOS || v.Arch != runtime.GOARCH {
		t.Errorf("version --json: %+v", v)
	}
	for _, want := range []string{"hamt " + v.Version + "\n", "module    github.com/hamt-go/hamt\n", "go        " + runtime.Version() + " " + runtime.GOOS + "/" + runtime.GOARCH + "\n"} {
		if !strings.Contains(text, want) {
			t.Errorf("version lacks %q:\n%s", want, text)
		}
	}
	if (v.Revision != "") != strings.Contains(text, "revision  "+v.Revision) {
		t.Errorf("version --json's revision %q, the text's:\n%s", v.Revision, text)
	}
	if _, err := os.Stat(store); !os.IsNotExist(err) {
		t.Errorf("version made the store (%v)", err)
	}
}

// TestVersionShowsTheRevisionWhenRecorded: a build stamped by version control shows its revision,
// time and "(modified)"; one that is not shows neither line (a test binary is never stamped).
func TestVersionShowsTheRevisionWhenRecorded(t *testing.T) {
	v := versionInfo{Module: "m", Version: "v1.2.3", Revision: "0123456789abcdef0123456789abcdef01234567", Time: "2026-11-30T06:00:00Z", Modified: true, GoVersion: "go1.26.8", OS: "linux", Arch: "amd64"}
	want := "hamt v1.2.3\nmodule    m\nrevision  0123456789abcdef0123456789abcdef01234567 (modified)\ntime      2026-11-30T06:00:00Z\ngo        go1.26.8 linux/amd64\n"
	if got := v.text(); got != want {
		t.Errorf("text:\n%s\nwant:\n%s", got, want)
	}
	v.Revision, v.Time = "", ""
	if got := v.text(); strings.Contains(got, "revision") || strings.Contains(got, "time") {
		t.Errorf("text without a revision:\n%s", got)
	}
}

// TestEveryCommandHasAnExample: every command's help shows an Example section (cobra's own help
// and completion commands aside), each line indented as cobra prints it.
func TestEveryCommandHasAnExample(t *testing.T) {
	root := newApp(nil, io.Discard, io.Discard).rootCommand()
	var walk func(c *cobra.Command)
	n := 0
	walk = func(c *cobra.Command) {
		for _, sub := range c.Commands() {
			walk(sub)
		}
		if c.Name() == "help" || c.Name() == "completion" || c.HasParent() && c.Parent().Name() == "completion" {
			return
		}
		n++
		if c.Example == "" {
			t.Errorf("%q has no Example", c.CommandPath())
		}
		for _, line := range strings.Split(c.Example, "\n") {
			if !strings.HasPrefix(line, "  ") {
				t.Errorf("%q: example line %q is not indented by two spaces", c.CommandPath(), line)
			}
		}
	}
	walk(root)
	if n < 17 {
		t.Errorf("walked %d commands; the tree has more", n)
	}
	store := filepath.Join(t.TempDir(), "s.bolt")
	for _, args := range [][]string{{"--help"}, {"rm", "--help"}, {"pin", "add", "--help"}} {
		if r := okIn(t, store, args...); !strings.Contains(r.stdout, "\nExamples:\n") {
			t.Errorf("hamt %v:\n%s", args, r.stdout)
		}
	}
}

// TestErrorLineDropsInnerPrefixes: a library error ("hamt: ...") wrapped inside another keeps one
// prefix, the command's; the same bytes inside a quoted key are the key's and stay.
func TestErrorLineDropsInnerPrefixes(t *testing.T) {
	for in, want := range map[string]string{
		"hamt: convert x: hamt: detect layout of y: block missing": "convert x: detect layout of y: block missing",
		"zarr graft z: hamt: open sharded root r: hamt: boom":      "zarr graft z: open sharded root r: boom",
		`no key "a: hamt: b" in r`:                                 `no key "a: hamt: b" in r`,
		`no key "a\": hamt: b" in r: hamt: gone`:                   `no key "a\": hamt: b" in r: gone`,
		"hamt: hamt: twice at the start":                           "twice at the start",
		"nothing to drop: hamt:x":                                  "nothing to drop: hamt:x",
		"wrapped: hamt: hamt: twice inside":                        "wrapped: twice inside",
	} {
		if got := errorLine(in); got != want {
			t.Errorf("errorLine(%q) = %q, want %q", in, got, want)
		}
	}
	// Through the command: a wrapped library error is printed with one prefix.
	var errb bytes.Buffer
	root := &cobra.Command{Use: "x", SilenceErrors: true, SilenceUsage: true, RunE: func(*cobra.Command, []string) error {
		return fmt.Errorf("import d: %w", errors.New("hamt: WithReplace is an ExportDir option"))
	}}
	if code := execute(context.Background(), root, nil, &errb); code != 1 || errb.String() != "hamt: import d: WithReplace is an ExportDir option\n" {
		t.Errorf("exit %d, %q", code, errb.String())
	}
}

// TestRealFailuresCarryOnePrefixAndTheirStatus: failing commands of every kind print one line
// with one "hamt: " prefix, and exit 4 only for what is not there (a key, a directory, a root):
// a value whose block is lost from the store is a failure (1), not an absent key.
func TestRealFailuresCarryOnePrefixAndTheirStatus(t *testing.T) {
	dir := t.TempDir()
	store := filepath.Join(dir, "store.bolt")
	root := okIn(t, store, "import", testdataZarr).lastLine()
	sroot := okIn(t, store, "import", "--layout", "sharded", groupedZarr(t)).lastLine()
	lost := jsonLines[lsJSON](t, okIn(t, store, "ls", "-l", "--json", root, "counts/c/0").stdout)[0].CID
	id, err := cid.Decode(lost)
	if err != nil {
		t.Fatal(err)
	}
	db, err := bolt.Open(store, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(tx *bolt.Tx) error { return tx.Bucket([]byte("blocks")).Delete(id.Hash()) }); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	missing := "bafyr4igb3js3dqlnsvmbi533lhghfet3l4r35vbi7mlrvxjb6f3n5wkc3m" // the empty map, never stored here
	out := filepath.Join(dir, "out")
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"get", root, "counts/c/0"}, 1, "block missing"},
		{[]string{"ls", "-l", root}, 1, "block missing"},
		{[]string{"stats", root}, 1, "block missing"},
		{[]string{"export", root, out}, 1, "block missing"},
		{[]string{"car", "export", root, filepath.Join(dir, "x.car")}, 1, "block missing"},
		{[]string{"get", root, "nope"}, 4, `no key "nope"`},
		{[]string{"get", sroot, "0/nope/zarr.json"}, 4, `no key "0/nope/zarr.json"`},
		{[]string{"rm", sroot, "0/mask/c/9/9"}, 4, `no key "0/mask/c/9/9"`},
		{[]string{"rm", "-r", sroot, "1"}, 4, `no key under "1"`},
		{[]string{"ls", "--dir", sroot, "0/nope"}, 4, "no directory"},
		{[]string{"ls", missing}, 4, "no root " + missing + " in " + store},
		{[]string{"stats", "--json", missing}, 4, "no root"},
		{[]string{"diff", root, missing}, 4, "no root"},
		{[]string{"export", missing, out}, 4, "no root"},
		{[]string{"car", "export", missing, filepath.Join(dir, "y.car")}, 4, "no root"},
		{[]string{"convert", missing, "--to", "hamt"}, 4, "no root"},
		{[]string{"import", "--into", root, "--prefix", "a//b", testdataZarr}, 1, "key prefix"},
		{[]string{"car", "import", testdataZarr}, 1, "is a directory"},
		{[]string{"ls", "--json", "not:a:cid"}, 2, "not a CID"},
	} {
		r := in(t, store, c.args...)
		wantExit(t, r, c.code, c.want, c.args...)
		if n := strings.Count(r.stderr, "hamt: "); n != 1 {
			t.Errorf("hamt %v: %d \"hamt: \" in %q", c.args, n, r.stderr)
		}
	}
}

// FuzzErrorLine: any error text (keys and file names in it come from untrusted data) becomes one
// line, bounded, and outside quotes keeps no library prefix after the command's.
func FuzzErrorLine(f *testing.F) {
	for _, s := range []string{"hamt: a: hamt: b", "x: hamt: hamt: hamt: y", `no key "k: hamt: v"`, "a\nb\r\nc", `"\"`, "é: hamt: ", strings.Repeat("é: hamt: ", 500)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got := errorLine(s)
		if strings.ContainsAny(got, "\r\n") || len(got) > maxErrorLine+64 {
			t.Fatalf("errorLine(%q) = %q: not one bounded line", s, got)
		}
		if !strings.Contains(s, `"`) && len(got) < maxErrorLine/2 && (strings.Contains(got, innerPrefix) || strings.HasPrefix(got, "hamt: ")) {
			t.Fatalf("errorLine(%q) = %q keeps a library prefix", s, got)
		}
	})
}
