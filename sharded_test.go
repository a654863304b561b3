package hamt

// Replays of the py-hamt 3.5 ShardedZarrStore vectors (testdata/pyhamt35, see SOURCE.md there):
// b_sharded_v2 (v2 writes: registration, parent groups, consolidated-metadata stripping, resizes,
// graft, deletes) and c_sharded_v1 (v1 appends, legacy roots, migration to v2). After every step
// the flushed root, its bytes, every shard and every probe must be what py-hamt recorded.

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/ipfs/go-cid"
	carv2 "github.com/ipld/go-car/v2"
)

type shardedVector struct {
	Name               string         `json:"name"`
	ChunksPerShard     int            `json:"chunks_per_shard"`
	GraftSourceRootCID string         `json:"graft_source_root_cid"`
	NumBlocks          int            `json:"num_blocks"`
	CarFile            string         `json:"car_file"`
	Steps              []shardedStep  `json:"steps"`
	ErrorProbes        map[string]any `json:"error_probes_separate_store"`
}

type shardedStep struct {
	Step              string                               `json:"step"`
	Ops               []shardedOp                          `json:"ops"`
	RootCID           string                               `json:"root_cid"`
	RootHex           string                               `json:"root_hex"`
	Shards            map[string]struct{ CID, Hex string } `json:"shards"`
	MetadataValuesHex map[string]string                    `json:"metadata_values_hex"`
	ChunkValuesHex    map[string]*string                   `json:"chunk_values_hex"`
	Probes            map[string]shardedProbes             `json:"probes"`
}

type shardedOp struct {
	Op               string      `json:"op"`
	Key              string      `json:"key"`
	ValueHex         string      `json:"value_hex"`
	NewShape         []int64     `json:"new_shape"`
	ArrayPath        string      `json:"array_path"`
	VariableName     string      `json:"variable_name"`
	StoreToGraftCID  string      `json:"store_to_graft_cid"`
	ChunkOffset      []int64     `json:"chunk_offset"`
	SourceArrayPath  string      `json:"source_array_path"`
	TargetArrayPath  string      `json:"target_array_path"`
	SourceStoreOps   []shardedOp `json:"source_store_ops"`
	Prefix           string      `json:"prefix"`
	PrimaryArrayPath string      `json:"primary_array_path"`
}

type shardedProbes struct {
	Get           map[string]*string  `json:"get"`
	GetByteRange  map[string]*string  `json:"get_byte_range"`
	Exists        map[string]bool     `json:"exists"`
	List          []string            `json:"list"`
	ListPrefix    map[string][]string `json:"list_prefix"`
	ListDirSorted map[string][]string `json:"list_dir_sorted"`
}

func loadShardedVector(t testing.TB, name string) shardedVector {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("testdata", "pyhamt35", name+".json"))
	if err != nil {
		t.Fatal(err)
	}
	var v shardedVector
	if err := json.Unmarshal(raw, &v); err != nil {
		t.Fatal(err)
	}
	return v
}

// readCAR35 returns the blocks of a CAR of testdata/pyhamt35.
func readCAR35(t *testing.T, name string) map[cid.Cid][]byte {
	t.Helper()
	f, err := os.Open(filepath.Join("testdata", "pyhamt35", name))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	br, err := carv2.NewBlockReader(f)
	if err != nil {
		t.Fatal(err)
	}
	blocks := map[cid.Cid][]byte{}
	for {
		b, err := br.Next()
		if errors.Is(err, io.EOF) {
			return blocks
		}
		if err != nil {
			t.Fatal(err)
		}
		blocks[b.Cid()] = b.RawData()
	}
}

func mustHex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// applyShardedOp runs one op of a vector on s.
func applyShardedOp(t *testing.T, ctx context.Context, cas CAS, s *ShardedZarrStore, op shardedOp) {
	t.Helper()
	var err error
	switch op.Op {
	case "set":
		err = s.Set(ctx, op.Key, mustHex(t, op.ValueHex))
	case "delete":
		err = s.Delete(ctx, op.Key)
	case "delete_dir":
		err = s.DeleteDir(ctx, op.Prefix)
	case "resize_store":
		err = s.Resize(ctx, op.ArrayPath, op.NewShape)
	case "resize_variable":
		err = s.ResizeVariable(ctx, op.VariableName, op.NewShape)
	case "graft_store":
		// The source is a second store written first, into the same CAS.
		src, err := NewShardedZarrStore(cas, WithChunksPerShard(4))
		if err != nil {
			t.Fatal(err)
		}
		for _, sop := range op.SourceStoreOps {
			applyShardedOp(t, ctx, cas, src, sop)
		}
		root, err := src.Flush(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if root.String() != op.StoreToGraftCID {
			t.Fatalf("graft source root %s, py-hamt wrote %s", root, op.StoreToGraftCID)
		}
		err = s.Graft(ctx, root, op.ChunkOffset, op.SourceArrayPath, op.TargetArrayPath)
		if err != nil {
			t.Fatalf("graft: %v", err)
		}
		return
	case "migrate_v1_to_v2":
		_, err = s.MigrateToV2(ctx, op.PrimaryArrayPath)
	default:
		t.Fatalf("unknown op %q", op.Op)
	}
	if err != nil {
		t.Fatalf("%s %q: %v", op.Op, op.Key, err)
	}
}

// checkShardedStep checks the flushed root, its bytes, the shards and the stored values.
func checkShardedStep(t *testing.T, ctx context.Context, cas CAS, s *ShardedZarrStore, st shardedStep) cid.Cid {
	t.Helper()
	root, err := s.Flush(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if root.String() != st.RootCID {
		t.Fatalf("root %s, py-hamt wrote %s", root, st.RootCID)
	}
	b, err := cas.Load(ctx, root)
	if err != nil {
		t.Fatal(err)
	}
	if got := hex.EncodeToString(b); got != st.RootHex {
		t.Fatalf("root bytes\n got %s\nwant %s", got, st.RootHex)
	}
	r, err := decodeShardedRoot(b)
	if err != nil {
		t.Fatal(err)
	}
	again, err := r.encode()
	if err != nil || !bytes.Equal(again, b) {
		t.Fatalf("the root model does not encode back to the root's bytes: %v", err)
	}
	for name, want := range st.Shards {
		path, n, _ := strings.Cut(name, "#")
		if !strings.Contains(name, "#") { // shards of a store with one index are named by number
			if len(r.arrays) != 1 {
				t.Fatalf("shard %s of a root with %d indexes", name, len(r.arrays))
			}
			n = name
			for path = range r.arrays {
			}
		}
		i, _ := strconv.Atoi(n)
		idx := r.arrays[path]
		if idx == nil || i >= len(idx.shards) {
			t.Fatalf("shard %s: not in the root", name)
		}
		if idx.shards[i].String() != want.CID {
			t.Fatalf("shard %s is %s, py-hamt wrote %s", name, idx.shards[i], want.CID)
		}
		sb, err := cas.Load(ctx, idx.shards[i])
		if err != nil {
			t.Fatal(err)
		}
		if got := hex.EncodeToString(sb); got != want.Hex {
			t.Fatalf("shard %s bytes\n got %s\nwant %s", name, got, want.Hex)
		}
	}
	stored := 0
	for _, idx := range r.arrays {
		for _, id := range idx.shards {
			if id.Defined() {
				stored++
			}
		}
	}
	if stored != len(st.Shards) {
		t.Fatalf("%d shards stored, py-hamt has %d", stored, len(st.Shards))
	}
	for k, want := range st.MetadataValuesHex {
		id, ok := r.metadata[k]
		if !ok {
			t.Fatalf("metadata %q missing", k)
		}
		got, err := cas.Load(ctx, id)
		if err != nil || hex.EncodeToString(got) != want {
			t.Fatalf("metadata %q = %q (%v), want %q", k, got, err, mustHex(t, want))
		}
	}
	if len(r.metadata) != len(st.MetadataValuesHex) {
		t.Fatalf("%d metadata keys, py-hamt has %d", len(r.metadata), len(st.MetadataValuesHex))
	}
	for k, want := range st.ChunkValuesHex {
		got, err := s.Get(ctx, k, ByteRange{})
		switch {
		case want == nil && !errors.Is(err, ErrNotFound):
			t.Fatalf("chunk %q = %x, %v; want absent", k, got, err)
		case want != nil && (err != nil || hex.EncodeToString(got) != *want):
			t.Fatalf("chunk %q = %x, %v; want %s", k, got, err, *want)
		}
	}
	return root
}

var byteRangeProbe = regexp.MustCompile(`^(.*) (Range|Offset|Suffix)\((\d+)(?:,(\d+))?\)$`)

// checkShardedProbes asks s what py-hamt's store was asked and compares the answers.
func checkShardedProbes(t *testing.T, ctx context.Context, s *ShardedZarrStore, p shardedProbes) {
	t.Helper()
	for k, want := range p.Get {
		got, err := s.Get(ctx, k, ByteRange{})
		switch {
		case want == nil:
			if !errors.Is(err, ErrNotFound) {
				t.Errorf("get %q = %x, %v; want absent", k, got, err)
			}
		case strings.HasPrefix(*want, "IndexError"):
			if !errors.Is(err, ErrInvalidChunkKey) {
				t.Errorf("get %q = %x, %v; want ErrInvalidChunkKey (py-hamt: %s)", k, got, err, *want)
			}
		case err != nil || hex.EncodeToString(got) != *want:
			t.Errorf("get %q = %x, %v; want %s", k, got, err, *want)
		}
		// Open locates the same value.
		if want != nil && !strings.HasPrefix(*want, "IndexError") {
			v, err := s.Open(ctx, k)
			if err != nil || v.Size() != int64(len(*want)/2) {
				t.Errorf("open %q: %v", k, err)
			}
		}
	}
	for spec, want := range p.GetByteRange {
		m := byteRangeProbe.FindStringSubmatch(spec)
		if m == nil {
			t.Fatalf("byte range probe %q", spec)
		}
		a, _ := strconv.ParseInt(m[3], 10, 64)
		var r ByteRange
		switch m[2] {
		case "Range":
			e, _ := strconv.ParseInt(m[4], 10, 64)
			r = RangeBetween(a, e)
		case "Offset":
			r = RangeFrom(a)
		case "Suffix":
			r = RangeSuffix(a)
		}
		got, err := s.Get(ctx, m[1], r)
		if want == nil || err != nil || hex.EncodeToString(got) != *want {
			t.Errorf("get %s = %x, %v; want %v", spec, got, err, want)
		}
	}
	for k, want := range p.Exists {
		if got, err := s.Exists(ctx, k); err != nil || got != want {
			t.Errorf("exists %q = %v, %v; want %v", k, got, err, want)
		}
	}
	if p.List != nil {
		got := collectKeys(t, s.List(ctx))
		// py-hamt lists metadata in dict order (insertion order while writing); the set is the
		// answer, and each key comes once.
		if !slices.Equal(sortedCopy(got), sortedCopy(p.List)) {
			t.Errorf("list = %q\nwant %q", got, p.List)
		}
	}
	for prefix, want := range p.ListPrefix {
		var got []string
		for _, k := range collectKeys(t, s.List(ctx)) {
			if strings.HasPrefix(k, prefix) {
				got = append(got, k)
			}
		}
		if !slices.Equal(sortedCopy(got), sortedCopy(want)) {
			t.Errorf("list prefix %q = %q, want %q", prefix, got, want)
		}
	}
	for prefix, want := range p.ListDirSorted {
		got, err := s.ListDir(ctx, prefix)
		if err != nil || !slices.Equal(got, want) && !(len(got) == 0 && len(want) == 0) {
			t.Errorf("list dir %q = %q, %v; want %q", prefix, got, err, want)
		}
	}
}

func collectKeys(t *testing.T, seq func(func(string, error) bool)) []string {
	t.Helper()
	var out []string
	for k, err := range seq {
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, k)
	}
	return out
}

func sortedCopy(s []string) []string {
	c := slices.Clone(s)
	slices.Sort(c)
	return c
}

// checkSameBlocks checks that cas holds exactly the blocks of the vector's CAR: py-hamt and the
// store saved the same blocks, intermediate ones included.
func checkSameBlocks(t *testing.T, ctx context.Context, cas *MemoryCAS, car map[cid.Cid][]byte) {
	t.Helper()
	for id := range car {
		if ok, err := cas.Has(ctx, id); err != nil || !ok {
			t.Errorf("py-hamt saved block %s, the store did not", id)
		}
	}
	if cas.Len() != len(car) {
		t.Errorf("the store saved %d blocks, py-hamt %d", cas.Len(), len(car))
	}
}

func TestShardedV2VectorReplaysStepByStep(t *testing.T) {
	ctx := context.Background()
	v := loadShardedVector(t, "b_sharded_v2_8f8f13cd")
	cas := NewMemoryCAS()
	s, err := NewShardedZarrStore(cas, WithChunksPerShard(v.ChunksPerShard))
	if err != nil {
		t.Fatal(err)
	}
	for _, st := range v.Steps {
		t.Run(st.Step, func(t *testing.T) {
			for _, op := range st.Ops {
				applyShardedOp(t, ctx, cas, s, op)
			}
			root := checkShardedStep(t, ctx, cas, s, st)
			for name, p := range st.Probes {
				if name == "writable_store" {
					checkShardedProbes(t, ctx, s, p)
					continue
				}
				ro, err := OpenShardedZarrStore(ctx, cas, root, WithShardedReadOnly())
				if err != nil {
					t.Fatal(err)
				}
				checkShardedProbes(t, ctx, ro, p)
			}
		})
	}
	checkSameBlocks(t, ctx, cas, readCAR35(t, v.CarFile))
}

func TestShardedV1VectorReplaysStepByStep(t *testing.T) {
	ctx := context.Background()
	v := loadShardedVector(t, "c_sharded_v1_8f8f13cd")
	car := readCAR35(t, v.CarFile)
	cas := NewMemoryCAS()
	step := func(name string) shardedStep {
		for _, st := range v.Steps {
			if st.Step == name {
				return st
			}
		}
		t.Fatalf("no step %q", name)
		return shardedStep{}
	}
	probe := func(t *testing.T, s *ShardedZarrStore, root cid.Cid, st shardedStep) {
		for name, p := range st.Probes {
			if name == "writable_store" {
				checkShardedProbes(t, ctx, s, p)
				continue
			}
			ro, err := OpenShardedZarrStore(ctx, cas, root, WithShardedReadOnly())
			if err != nil {
				t.Fatal(err)
			}
			checkShardedProbes(t, ctx, ro, p)
		}
	}

	// c1, c2: a new v1 store, as py-hamt 3.3.2 opened it, given 3.3.2's ops and then more.
	s, err := NewShardedZarrStoreV1(cas, []int64{4, 6}, []int64{2, 2}, WithChunksPerShard(4))
	if err != nil {
		t.Fatal(err)
	}
	var c2 cid.Cid
	for _, name := range []string{"c1_ref_s_sharded_small_ops", "c2_non_primary_chunk_and_missing_primary_chunk"} {
		st := step(name)
		t.Run(name, func(t *testing.T) {
			for _, op := range st.Ops {
				applyShardedOp(t, ctx, cas, s, op)
			}
			c2 = checkShardedStep(t, ctx, cas, s, st)
			probe(t, s, c2, st)
		})
	}

	// c3: the root py-hamt 3.3.2 wrote, without primary_array_path.
	st3a := step("c3a_legacy_3_3_2_root_reopened")
	legacy := cid.MustParse(st3a.RootCID)
	if err := cas.Put(ctx, legacy, car[legacy]); err != nil {
		t.Fatal(err)
	}
	var reopened *ShardedZarrStore
	t.Run(st3a.Step, func(t *testing.T) {
		if reopened, err = OpenShardedZarrStore(ctx, cas, legacy); err != nil {
			t.Fatal(err)
		}
		root := checkShardedStep(t, ctx, cas, reopened, st3a) // a flush without changes keeps the root
		probe(t, reopened, root, st3a)
	})
	st3b := step("c3b_legacy_root_after_one_chunk_write")
	t.Run(st3b.Step, func(t *testing.T) {
		for _, op := range st3b.Ops {
			applyShardedOp(t, ctx, cas, reopened, op)
		}
		probe(t, reopened, checkShardedStep(t, ctx, cas, reopened, st3b), st3b)
	})

	// c4: the c2 store migrated to v2.
	st4 := step("c4_migrate_v1_to_v2_temp")
	t.Run(st4.Step, func(t *testing.T) {
		m, err := OpenShardedZarrStore(ctx, cas, c2)
		if err != nil {
			t.Fatal(err)
		}
		for _, op := range st4.Ops {
			applyShardedOp(t, ctx, cas, m, op)
		}
		if m.Version() != 2 {
			t.Fatalf("version %d after migration", m.Version())
		}
		probe(t, m, checkShardedStep(t, ctx, cas, m, st4), st4)
	})
	checkSameBlocks(t, ctx, cas, car)
}
