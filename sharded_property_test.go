package hamt_test

// Property test of the sharded Zarr store against a model: random arrays (1–4, random shapes,
// chunk shapes and chunks per shard, some registered after chunks of others were written), random
// chunk writes, deletes and resizes; after every step, and after Flush and reopen, every chunk of
// every array reads back as the model says and List yields exactly the model's keys.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/hamt-go/hamt"
	"pgregory.net/rapid"
)

// shardedModelGroup is what the store writes for a parent group it creates (SHARDED.md §6).
const shardedModelGroup = `{"zarr_format": 3, "node_type": "group", "attributes": {}}`

type shardedModelArray struct {
	path         string
	shape, chunk []int64
}

// grid is the number of chunks along each dimension.
func (a *shardedModelArray) grid() []int64 {
	g := make([]int64, len(a.shape))
	for i := range g {
		g[i] = (a.shape[i] + a.chunk[i] - 1) / a.chunk[i]
	}
	return g
}

func (a *shardedModelArray) metadata() []byte {
	return fmt.Appendf(nil, `{"zarr_format":3,"node_type":"array","shape":%s,"data_type":"uint8",`+
		`"chunk_grid":{"name":"regular","configuration":{"chunk_shape":%s}},`+
		`"chunk_key_encoding":{"name":"default","configuration":{"separator":"/"}},"fill_value":0,`+
		`"codecs":[{"name":"bytes"}],"attributes":{}}`, jsonInts(a.shape), jsonInts(a.chunk))
}

func jsonInts(ns []int64) string {
	parts := make([]string, len(ns))
	for i, n := range ns {
		parts[i] = fmt.Sprint(n)
	}
	return "[" + strings.Join(parts, ",") + "]"
}

// chunkKey is the v3 key of the chunk at coords.
func (a *shardedModelArray) chunkKey(coords []int64) string {
	parts := make([]string, len(coords))
	for i, c := range coords {
		parts[i] = fmt.Sprint(c)
	}
	return a.path + "/c/" + strings.Join(parts, "/")
}

// eachCoord calls f with every coordinate of the grid g, in row-major order.
func eachCoord(g []int64, f func([]int64)) {
	total := int64(1)
	for _, n := range g {
		total *= n
	}
	c := make([]int64, len(g))
	for lin := range total {
		r := lin
		for i := len(g) - 1; i >= 0; i-- {
			c[i] = r % g[i]
			r /= g[i]
		}
		f(c)
	}
}

type shardedMachine struct {
	ctx    context.Context
	cas    *hamt.MemoryCAS
	s      *hamt.ShardedZarrStore
	cps    int
	arrays []*shardedModelArray
	model  map[string][]byte // every key the store should hold, metadata and chunks
	// sameJSON marks the metadata keys whose stored bytes are the model's JSON document written
	// another way (resize_variable's indent=2): they are compared as JSON values.
	sameJSON map[string]bool
}

func (m *shardedMachine) setMeta(t *rapid.T, a *shardedModelArray) {
	if err := m.s.Set(m.ctx, a.path+"/zarr.json", a.metadata()); err != nil {
		t.Fatalf("set %s metadata: %v", a.path, err)
	}
	// Parent groups are created when missing.
	for p := a.path; ; {
		i := strings.LastIndexByte(p, '/')
		parent := ""
		if i >= 0 {
			parent = p[:i]
		}
		key := "zarr.json"
		if parent != "" {
			key = parent + "/zarr.json"
		}
		if _, ok := m.model[key]; !ok {
			m.model[key] = []byte(shardedModelGroup)
		}
		if parent == "" {
			break
		}
		p = parent
	}
	m.model[a.path+"/zarr.json"] = a.metadata()
	delete(m.sameJSON, a.path+"/zarr.json")
}

// addArray registers a new array of random rank, shape and chunk shape, under the group g or a
// group nested in it.
func (m *shardedMachine) addArray(t *rapid.T) {
	rank := rapid.IntRange(1, 3).Draw(t, "rank")
	dir := rapid.SampledFrom([]string{"g", "g/sub"}).Draw(t, "group")
	a := &shardedModelArray{path: fmt.Sprintf("%s/a%d", dir, len(m.arrays)), shape: make([]int64, rank), chunk: make([]int64, rank)}
	for d := range rank {
		a.shape[d] = rapid.Int64Range(0, 7).Draw(t, "dim")
		a.chunk[d] = rapid.Int64Range(1, 3).Draw(t, "chunk dim")
	}
	m.arrays = append(m.arrays, a)
	m.setMeta(t, a)
}

// AddArray registers another array among chunks already written.
func (m *shardedMachine) AddArray(t *rapid.T) {
	if len(m.arrays) >= 4 {
		t.Skip("enough arrays")
	}
	m.addArray(t)
}

func (m *shardedMachine) array(t *rapid.T) *shardedModelArray {
	return m.arrays[rapid.IntRange(0, len(m.arrays)-1).Draw(t, "array")]
}

// coords draws coordinates inside a's grid, or anywhere when outside is set.
func (m *shardedMachine) coords(t *rapid.T, a *shardedModelArray, outside bool) []int64 {
	g := a.grid()
	c := make([]int64, len(g))
	for i := range c {
		hi := g[i] - 1
		if outside {
			hi = g[i] + 2
		}
		if hi < 0 {
			return nil
		}
		c[i] = rapid.Int64Range(0, hi).Draw(t, "coord")
	}
	return c
}

func (m *shardedMachine) WriteChunk(t *rapid.T) {
	a := m.array(t)
	c := m.coords(t, a, false)
	if c == nil {
		t.Skip("empty grid")
	}
	v := rapid.SliceOfN(rapid.Byte(), 0, 16).Draw(t, "value")
	key := a.chunkKey(c)
	if err := m.s.Set(m.ctx, key, v); err != nil {
		t.Fatalf("set %s: %v", key, err)
	}
	m.model[key] = v
}

func (m *shardedMachine) WriteChunkOutsideTheGrid(t *rapid.T) {
	a := m.array(t)
	c := m.coords(t, a, true)
	if c == nil {
		t.Skip("empty grid")
	}
	key := a.chunkKey(c)
	if _, ok := m.model[key]; ok {
		t.Skip("inside")
	}
	inside := true
	for i, g := range a.grid() {
		inside = inside && c[i] < g
	}
	if inside {
		t.Skip("inside")
	}
	// py-hamt ignores a chunk outside the grid (SHARDED.md §5): no error, nothing stored.
	if err := m.s.Set(m.ctx, key, []byte("outside")); err != nil {
		t.Fatalf("set %s outside the grid: %v", key, err)
	}
}

func (m *shardedMachine) DeleteChunk(t *rapid.T) {
	a := m.array(t)
	var key string
	if present := m.chunkKeys(a); len(present) > 0 && rapid.Bool().Draw(t, "present") {
		key = rapid.SampledFrom(present).Draw(t, "key")
	} else {
		c := m.coords(t, a, false)
		if c == nil {
			t.Skip("empty grid")
		}
		key = a.chunkKey(c)
	}
	if err := m.s.Delete(m.ctx, key); err != nil {
		t.Fatalf("delete %s: %v", key, err)
	}
	delete(m.model, key)
}

func (m *shardedMachine) chunkKeys(a *shardedModelArray) []string {
	var out []string
	for k := range m.model {
		if strings.HasPrefix(k, a.path+"/c/") {
			out = append(out, k)
		}
	}
	slices.Sort(out)
	return out
}

// Resize writes the array's metadata with a new shape, which resizes its index.
func (m *shardedMachine) Resize(t *rapid.T) {
	a := m.array(t)
	m.reshape(t, a)
	m.setMeta(t, a)
}

// ResizeIndex resizes only the array's index (py-hamt's resize_store); its metadata is unchanged.
func (m *shardedMachine) ResizeIndex(t *rapid.T) {
	a := m.array(t)
	m.reshape(t, a)
	if err := m.s.Resize(m.ctx, a.path, a.shape); err != nil {
		t.Fatalf("resize %s to %v: %v", a.path, a.shape, err)
	}
}

// ResizeVariable rewrites the array's metadata with a new shape (as Python's json.dumps with
// indent=2) and resizes its index (py-hamt's resize_variable).
func (m *shardedMachine) ResizeVariable(t *rapid.T) {
	a := m.array(t)
	key := a.path + "/zarr.json"
	var doc map[string]any
	if err := json.Unmarshal(m.model[key], &doc); err != nil {
		t.Fatalf("model %s: %v", key, err)
	}
	m.reshape(t, a)
	if err := m.s.ResizeVariable(m.ctx, a.path, a.shape); err != nil {
		t.Fatalf("resize variable %s to %v: %v", a.path, a.shape, err)
	}
	shape := make([]any, len(a.shape))
	for i, n := range a.shape {
		shape[i] = float64(n)
	}
	doc["shape"] = shape
	b, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	m.model[key] = b
	m.sameJSON[key] = true
}

// reshape gives a a new random shape of the same rank and drops the model's chunks outside the new
// grid; the others keep their coordinates.
func (m *shardedMachine) reshape(t *rapid.T, a *shardedModelArray) {
	shape := make([]int64, len(a.shape))
	for i := range shape {
		shape[i] = rapid.Int64Range(0, 7).Draw(t, "dim")
	}
	a.shape = shape
	g := a.grid()
	for _, k := range m.chunkKeys(a) {
		parts := strings.Split(strings.TrimPrefix(k, a.path+"/c/"), "/")
		for i, p := range parts {
			c, err := strconv.ParseInt(p, 10, 64)
			if err != nil {
				t.Fatalf("model key %s: %v", k, err)
			}
			if c >= g[i] {
				delete(m.model, k)
				break
			}
		}
	}
}

func (m *shardedMachine) FlushAndReopen(t *rapid.T) {
	root, err := m.s.Flush(m.ctx)
	if err != nil {
		t.Fatalf("flush: %v", err)
	}
	if m.s, err = hamt.OpenShardedZarrStore(m.ctx, m.cas, root, hamt.WithShardCacheBytes(int64(rapid.IntRange(0, 4096).Draw(t, "cache")))); err != nil {
		t.Fatalf("reopen %s: %v", root, err)
	}
	ro, err := hamt.OpenShardedZarrStore(m.ctx, m.cas, root, hamt.WithShardedReadOnly())
	if err != nil {
		t.Fatalf("reopen %s read-only: %v", root, err)
	}
	m.checkStore(t, ro)
}

func (m *shardedMachine) Check(t *rapid.T) { m.checkStore(t, m.s) }

// checkStore checks that every chunk of every array's grid, and every metadata key, reads as the
// model says, and that List yields the model's keys.
func (m *shardedMachine) checkStore(t *rapid.T, s *hamt.ShardedZarrStore) {
	for _, a := range m.arrays {
		eachCoord(a.grid(), func(c []int64) {
			key := a.chunkKey(c)
			got, err := s.Get(m.ctx, key, hamt.ByteRange{})
			want, ok := m.model[key]
			switch {
			case !ok && !errors.Is(err, hamt.ErrNotFound):
				t.Fatalf("get %s: %x, %v; want ErrNotFound", key, got, err)
			case ok && (err != nil || string(got) != string(want)):
				t.Fatalf("get %s: %x, %v; want %x", key, got, err, want)
			}
		})
	}
	for k, want := range m.model {
		if strings.Contains(k, "/c/") {
			continue
		}
		got, err := s.Get(m.ctx, k, hamt.ByteRange{})
		if err != nil {
			t.Fatalf("get %s: %v", k, err)
		}
		if m.sameJSON[k] {
			var g, w any
			if json.Unmarshal(got, &g) != nil || json.Unmarshal(want, &w) != nil || !reflect.DeepEqual(g, w) {
				t.Fatalf("get %s: %s; want the JSON value %s", k, got, want)
			}
			continue
		}
		if string(got) != string(want) {
			t.Fatalf("get %s: %q; want %q", k, got, want)
		}
	}
	// A byte range of a stored chunk passes through.
	if keys := slices.Sorted(maps.Keys(m.model)); len(keys) > 0 {
		k := keys[len(keys)/2]
		want := m.model[k]
		if m.sameJSON[k] {
			want, _ = s.Get(m.ctx, k, hamt.ByteRange{}) // checked above as JSON
		}
		from := int64(len(want) / 3)
		got, err := s.Get(m.ctx, k, hamt.RangeFrom(from))
		if err != nil || string(got) != string(want[from:]) {
			t.Fatalf("get %s from byte %d: %q, %v; want %q", k, from, got, err, want[from:])
		}
	}
	var listed []string
	for k, err := range s.List(m.ctx) {
		if err != nil {
			t.Fatalf("list: %v", err)
		}
		listed = append(listed, k)
	}
	slices.Sort(listed)
	if want := slices.Sorted(maps.Keys(m.model)); !slices.Equal(listed, want) {
		t.Fatalf("list:\n got %q\nwant %q", listed, want)
	}
}

func TestShardedStoreAgreesWithAModelOfItsChunks(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		m := &shardedMachine{ctx: context.Background(), cas: hamt.NewMemoryCAS(), model: map[string][]byte{}, sameJSON: map[string]bool{}}
		m.cps = rapid.IntRange(1, 5).Draw(t, "chunks per shard")
		var err error
		m.s, err = hamt.NewShardedZarrStore(m.cas, hamt.WithChunksPerShard(m.cps),
			hamt.WithShardCacheBytes(int64(rapid.IntRange(0, 4096).Draw(t, "cache"))))
		if err != nil {
			t.Fatal(err)
		}
		for range rapid.IntRange(1, 3).Draw(t, "arrays") {
			m.addArray(t)
		}
		t.Repeat(rapid.StateMachineActions(m))
	})
}
