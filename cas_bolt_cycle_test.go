package hamt

// A bbolt file whose B+tree has a cycle: a branch page rewritten to point at itself or at its own
// ancestor. bbolt's cursor searches by recursion, one call per level, so such a file made every
// lookup that reached the cycle recurse until the stack overflowed, a fatal error that killed
// the process. Every read and write of a BoltCAS must give ErrCorrupt instead.

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/multiformats/go-multicodec"
	"pgregory.net/rapid"
)

// cycleValues are the values of the map TestBoltTreeCycleIsErrCorrupt damages: 400 of 1 KiB, so
// that the blocks bucket's tree has three levels (a root branch, branches, leaves).
func cycleValues() map[string][]byte {
	values := make(map[string][]byte, 400)
	for i := range 400 {
		v := bytes.Repeat([]byte(fmt.Sprintf("value %03d ", i)), 103)[:1024]
		values[fmt.Sprintf("k%03d", i)] = v
	}
	return values
}

// cycleStore writes the map of cycleValues to a new bbolt file and returns its path and root.
func cycleStore(t *testing.T) (string, cid.Cid) {
	t.Helper()
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "blocks.bolt")
	cas, err := OpenBoltCAS(path)
	if err != nil {
		t.Fatal(err)
	}
	m, err := New(ctx, cas, Bytes)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range cycleValues() {
		if err := m.Set(ctx, k, v); err != nil {
			t.Fatal(err)
		}
	}
	root, err := m.Flush(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := cas.CloseStrict(); err != nil {
		t.Fatal(err)
	}
	return path, root
}

// cycleTree is the blocks bucket's tree of a store: its root branch page, the branch pages
// below it, and the path (page and element index) bbolt's cursor takes to one key; and where
// the meta bucket's page is, inline in the root bucket's leaf.
type cycleTree struct {
	pageSize   int64
	root       uint64
	branches   []uint64 // the second level, every one a branch
	metaInline int64    // the offset in the file of the meta bucket's inline page
	path       [2]struct {
		page  uint64
		index int
	}
}

// readCycleTree reads the tree of the blocks bucket in the file at path, and the path to key.
func readCycleTree(t *testing.T, path string, key []byte) cycleTree {
	t.Helper()
	bf, found, err := openBoltFile(path)
	if err != nil || !found {
		t.Fatalf("open %s: found %v, %v", path, found, err)
	}
	defer bf.Close()
	ps := int64(bf.meta.pageSize)
	first := make([]byte, ps)
	page := func(id uint64) []byte {
		p, err := bf.treePage(id, first)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	if page(bf.meta.root) != nil {
		t.Fatal("the root bucket is not one leaf page")
	}
	// The blocks bucket's value in the root bucket's leaf: its root page, then its sequence.
	leaf, err := bf.bytes(bf.meta.root, 0, ps)
	if err != nil {
		t.Fatal(err)
	}
	tree := cycleTree{pageSize: ps}
	for i := range int(binary.NativeEndian.Uint16(leaf[10:])) {
		at := boltPageHeaderSize + i*boltElementSize
		e := leaf[at:]
		pos, ksize := int(binary.NativeEndian.Uint32(e[4:])), int(binary.NativeEndian.Uint32(e[8:]))
		switch v := leaf[at+pos+ksize:]; string(leaf[at+pos : at+pos+ksize]) {
		case string(boltBlocksBucket):
			tree.root = binary.NativeEndian.Uint64(v)
		case string(boltMetaBucket):
			if binary.NativeEndian.Uint64(v) == 0 {
				tree.metaInline = int64(bf.meta.root)*ps + int64(at+pos+ksize+boltBucketHeader)
			}
		}
	}
	if tree.root == 0 || tree.metaInline == 0 {
		t.Fatal("the blocks bucket is inline or missing, or the meta bucket is not inline")
	}
	children := func(branch []byte) []uint64 {
		var ids []uint64
		for i := range int(binary.NativeEndian.Uint16(branch[10:])) {
			ids = append(ids, binary.NativeEndian.Uint64(branch[boltPageHeaderSize+i*boltElementSize+8:]))
		}
		return ids
	}
	rootBranch := page(tree.root)
	if rootBranch == nil {
		t.Fatal("the blocks bucket is one leaf")
	}
	for _, id := range children(rootBranch) {
		if page(id) == nil {
			t.Fatalf("page %d below the root branch is a leaf: the tree has two levels, want three", id)
		}
		tree.branches = append(tree.branches, id)
	}
	// The path to key, as bbolt's cursor takes it.
	id, branch := tree.root, rootBranch
	for level := range 2 {
		child := newBoltBranch(branch).child(key)
		tree.path[level].page = id
		tree.path[level].index = slices.Index(children(branch), child)
		id, branch = child, page(child)
	}
	return tree
}

// pointAt makes element index of branch page in file point at page target.
func (tr cycleTree) pointAt(file []byte, page uint64, index int, target uint64) {
	at := int64(page)*tr.pageSize + boltPageHeaderSize + int64(index)*boltElementSize + 8
	binary.NativeEndian.PutUint64(file[at:], target)
}

// cycleDamages are the cycles TestBoltTreeCycleIsErrCorrupt makes. Every element of the pages
// they rewrite is rewritten but the one on the path to the map's root node, so the map opens and
// every other lookup likely meets the cycle.
var cycleDamages = []struct {
	name   string
	damage func(tr cycleTree, file []byte)
}{
	{"root branch points at itself", func(tr cycleTree, file []byte) {
		for i := range tr.branches {
			if i != tr.path[0].index {
				tr.pointAt(file, tr.root, i, tr.root)
			}
		}
	}},
	{"branches point at the root branch, their parent", func(tr cycleTree, file []byte) {
		for _, id := range tr.branches {
			n := int(binary.NativeEndian.Uint16(file[int64(id)*tr.pageSize+10:]))
			for i := range n {
				if id != tr.path[1].page || i != tr.path[1].index {
					tr.pointAt(file, id, i, tr.root)
				}
			}
		}
	}},
	// bbolt takes an inline bucket's page marked as a branch for one, and every child of it for
	// the page itself. With empty keys, the search for any key goes to the last child.
	{"the meta bucket's inline page is a branch over itself", func(tr cycleTree, file []byte) {
		p := file[tr.metaInline:]
		binary.NativeEndian.PutUint16(p[8:], boltBranchPage)
		for i := range int(binary.NativeEndian.Uint16(p[10:])) {
			e := p[boltPageHeaderSize+i*boltElementSize:]
			binary.NativeEndian.PutUint32(e[4:], 0) // the key's size, as a branch element
			binary.NativeEndian.PutUint64(e[8:], 0) // its child: page 0, the inline page
		}
	}},
}

// cycleOps are what TestBoltCycleChild does on the damaged file, each on a store of its own.
var cycleOps = []string{"Load", "Has", "BlockSize", "LoadRange", "LoadMany", "Map.Get", "Map.Keys", "Save", "Map.Set", "Check"}

// TestBoltTreeCycleIsErrCorrupt builds a real store, rewrites its B+tree into a cycle, and runs
// each read and write of cycleOps on it in a child process (a stack overflow is fatal, so it
// would kill this one). Each must end with ErrCorrupt, the child alive.
func TestBoltTreeCycleIsErrCorrupt(t *testing.T) {
	path, root := cycleStore(t)
	base, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	key, _ := boltKey(root)
	tree := readCycleTree(t, path, []byte(key))
	for _, d := range cycleDamages {
		file := bytes.Clone(base)
		d.damage(tree, file)
		p := filepath.Join(t.TempDir(), "cycle.bolt")
		if err := os.WriteFile(p, file, 0o600); err != nil {
			t.Fatal(err)
		}
		for _, op := range cycleOps {
			t.Run(d.name+"/"+op, func(t *testing.T) {
				t.Parallel() // each case is a child process of its own
				damaged := filepath.Join(t.TempDir(), "store.bolt")
				if err := os.WriteFile(damaged, file, 0o600); err != nil {
					t.Fatal(err)
				}
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
				defer cancel()
				cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestBoltCycleChild$", "-test.count=1")
				cmd.Env = append(os.Environ(), "HAMT_CYCLE_CHILD="+op, "HAMT_CYCLE_FILE="+damaged, "HAMT_CYCLE_ROOT="+root.String())
				out, err := cmd.CombinedOutput()
				if len(out) > 4<<10 {
					out = append(out[:4<<10], "\n[…]"...)
				}
				if err != nil {
					t.Fatalf("child: %v\n%s", err, out)
				}
				_, result, ok := strings.Cut(string(out), "cycle-child ok ")
				if !ok {
					t.Fatalf("child printed no result:\n%s", out)
				}
				t.Log(strings.TrimSpace(result))
			})
		}
	}
}

// TestBoltCycleChild is not a test: it is the child process of TestBoltTreeCycleIsErrCorrupt,
// run when it re-executes the test binary with HAMT_CYCLE_CHILD set. It does one operation on
// the damaged store, reading every value (or writing) until the first error, and exits with
// status 3 if there was none, if it was not ErrCorrupt, or if a read gave wrong bytes.
func TestBoltCycleChild(t *testing.T) {
	op := os.Getenv("HAMT_CYCLE_CHILD")
	if op == "" {
		t.Skip("helper process of TestBoltTreeCycleIsErrCorrupt; runs only when it re-executes the test binary with HAMT_CYCLE_CHILD set")
	}
	debug.SetMaxStack(64 << 20) // a real tree needs a few KiB: overflow, if at all, fast
	fail := func(format string, args ...any) {
		fmt.Printf("cycle-child %s: "+format+"\n", append([]any{op}, args...)...)
		os.Exit(3)
	}
	ctx := context.Background()
	root, err := cid.Decode(os.Getenv("HAMT_CYCLE_ROOT"))
	if err != nil {
		fail("%v", err)
	}
	opts := []BoltOption{WithBoltFlushInterval(0)}
	if op != "Save" && op != "Map.Set" {
		opts = append(opts, WithBoltReadOnly())
	}
	cas, err := OpenBoltCAS(os.Getenv("HAMT_CYCLE_FILE"), opts...)
	if err != nil {
		if !errors.Is(err, ErrCorrupt) {
			fail("open: %v, want ErrCorrupt", err)
		}
		fmt.Printf("cycle-child ok (%v)\n", err) // the damage is met on open
		os.Exit(0)
	}
	values := cycleValues()
	var ids []cid.Cid
	var want [][]byte
	for _, v := range values {
		ids = append(ids, blake3CID(multicodec.Raw, v))
		want = append(want, v)
	}
	// each runs the operation on block i, and checks what it got.
	each := func(read func(i int) error) error {
		for i := range ids {
			if err := read(i); err != nil {
				return err
			}
		}
		return nil
	}
	same := func(got []byte, i int) error {
		if !bytes.Equal(got, want[i]) {
			fail("block %s: %d other bytes", ids[i], len(got))
		}
		return nil
	}
	switch op {
	case "Load":
		err = each(func(i int) error {
			got, err := cas.Load(ctx, ids[i])
			if err != nil {
				return err
			}
			return same(got, i)
		})
	case "Has":
		err = each(func(i int) error {
			if ok, err := cas.Has(ctx, ids[i]); err != nil || !ok {
				return fmt.Errorf("has = %v: %w", ok, err)
			}
			return nil
		})
	case "BlockSize":
		err = each(func(i int) error {
			if n, err := cas.BlockSize(ctx, ids[i]); err != nil || n != int64(len(want[i])) {
				return fmt.Errorf("size = %d: %w", n, err)
			}
			return nil
		})
	case "LoadRange":
		err = each(func(i int) error {
			got, err := cas.LoadRange(ctx, ids[i], RangeFrom(0))
			if err != nil {
				return err
			}
			return same(got, i)
		})
	case "LoadMany":
		var got [][]byte
		if got, err = cas.LoadMany(ctx, ids); err == nil {
			for i := range got {
				same(got[i], i)
			}
		}
	case "Map.Get", "Map.Keys", "Map.Set":
		var m *Map[[]byte]
		if m, err = Open(ctx, cas, Bytes, root); err != nil {
			fail("open the map, whose root's path is intact: %v", err)
		}
		switch op {
		case "Map.Get":
			for k, v := range values {
				got, gerr := m.Get(ctx, k)
				if gerr != nil {
					err = gerr
					break
				}
				if !bytes.Equal(got, v) {
					fail("Get(%q) gave other bytes", k)
				}
			}
		case "Map.Keys":
			n := 0
			for _, kerr := range m.Keys(ctx) {
				if kerr != nil {
					err = kerr
					break
				}
				n++
			}
			if err == nil && n != len(values) {
				fail("Keys gave %d keys, want %d", n, len(values))
			}
		case "Map.Set":
			if err = m.EnableWrite(ctx); err == nil {
				for i := 0; err == nil && i < 64; i++ {
					err = m.Set(ctx, fmt.Sprintf("new %d", i), []byte(fmt.Sprintf("new value %d", i)))
				}
				if err == nil {
					_, err = m.Flush(ctx)
				}
			}
		}
	case "Save":
		for i := 0; err == nil && i < 64; i++ {
			_, err = cas.Save(ctx, []byte(fmt.Sprintf("new block %d", i)), multicodec.Raw)
		}
		if err == nil {
			err = cas.Flush(ctx)
		}
	case "Check":
		err = cas.Check(ctx, false)
	default:
		fail("unknown operation")
	}
	if err == nil {
		fail("no error: the damage was not met")
	}
	if !errors.Is(err, ErrCorrupt) {
		fail("%v, want ErrCorrupt", err)
	}
	// Once a lookup has met the damage the store is broken: every later call fails the same
	// way, even one whose path is intact. (Check reports damage without breaking the store.)
	if _, err := cas.Load(ctx, root); op != "Check" && !errors.Is(err, ErrCorrupt) {
		fail("Load of the map's root after the damage = %v, want ErrCorrupt", err)
	}
	_ = cas.Close()
	fmt.Printf("cycle-child ok (%v)\n", err)
	os.Exit(0)
}

// bboltSearchPage is bbolt's choice of a child in branch page p for key, transcribed from its
// cursor.searchPage: the reference boltBranch.child must agree with.
func bboltSearchPage(p, key []byte) uint64 {
	n := int(binary.NativeEndian.Uint16(p[10:]))
	elem := func(i int) []byte { return p[boltPageHeaderSize+i*boltElementSize:] }
	var exact bool
	index := sort.Search(n, func(i int) bool {
		e := elem(i)
		at := boltPageHeaderSize + i*boltElementSize + int(binary.NativeEndian.Uint32(e[0:]))
		ret := bytes.Compare(p[at:at+int(binary.NativeEndian.Uint32(e[4:]))], key)
		if ret == 0 {
			exact = true
		}
		return ret != -1
	})
	if !exact && index > 0 {
		index--
	}
	return binary.NativeEndian.Uint64(elem(index)[8:])
}

// TestBoltBranchChildIsBboltsChoice: the search a lookup's path check makes in a branch page
// (by key prefixes first) chooses the child bbolt's cursor chooses, for any key, on any page,
// even one whose keys are out of order or repeated as a damaged page's may be: were they to
// differ, bbolt would descend a path no one checked.
func TestBoltBranchChildIsBboltsChoice(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		// Keys from a few bytes, of lengths around 8, so prefixes and whole keys often tie.
		keyGen := rapid.SliceOfN(rapid.SampledFrom([]byte{0, 1, 0x1e, 0x20, 0xff}), 0, 12)
		keys := rapid.SliceOfN(keyGen, 1, 40).Draw(t, "keys")
		if rapid.Bool().Draw(t, "sorted") {
			slices.SortFunc(keys, bytes.Compare)
		}
		n := len(keys)
		page := make([]byte, boltPageHeaderSize+n*boltElementSize)
		binary.NativeEndian.PutUint16(page[8:], boltBranchPage)
		binary.NativeEndian.PutUint16(page[10:], uint16(n))
		for i, k := range keys {
			at := boltPageHeaderSize + i*boltElementSize
			binary.NativeEndian.PutUint32(page[at:], uint32(len(page)-at))
			binary.NativeEndian.PutUint32(page[at+4:], uint32(len(k)))
			binary.NativeEndian.PutUint64(page[at+8:], uint64(100+i))
			page = append(page, k...)
		}
		key := keyGen.Draw(t, "key")
		if rapid.Bool().Draw(t, "one of the keys") {
			key = keys[rapid.IntRange(0, n-1).Draw(t, "which")]
		}
		if got, want := newBoltBranch(page).child(key), bboltSearchPage(page, key); got != want {
			t.Fatalf("child(%x) = page %d, bbolt descends to page %d", key, got, want)
		}
	})
}

// TestBoltPathChecksAreRememberedPerState: once a lookup's path is checked, the same lookup in
// the same state of the file reads nothing (it works with the checking descriptor closed), and
// a commit starts a new state, checked afresh.
func TestBoltPathChecksAreRememberedPerState(t *testing.T) {
	ctx := context.Background()
	path, _ := cycleStore(t)
	cas, err := OpenBoltCAS(path, WithBoltFlushInterval(0))
	if err != nil {
		t.Fatal(err)
	}
	defer cas.Close()
	var ids []cid.Cid
	for _, v := range cycleValues() {
		ids = append(ids, blake3CID(multicodec.Raw, v))
	}
	loadAll := func() error {
		for _, id := range ids {
			if _, err := cas.Load(ctx, id); err != nil {
				return err
			}
		}
		return nil
	}
	if err := loadAll(); err != nil {
		t.Fatal(err)
	}
	st := cas.paths.newest.Load()
	if len(st.branches) < 3 || len(st.leaves) == 0 {
		t.Fatalf("after every block was loaded, %d branches and %d words of leaves are remembered", len(st.branches), len(st.leaves))
	}
	// The store's second descriptor of the file, which the checks read, closed: a check that
	// read a page now would fail.
	file := cas.paths.file
	cas.paths.file = nil
	if err := file.Close(); err != nil {
		t.Fatal(err)
	}
	if err := loadAll(); err != nil {
		t.Fatalf("a lookup checked already read the file again: %v", err)
	}
	// A commit reads the state the lookups checked: its puts need no reading either. It makes
	// a new state, whose pages the next lookup must read, and cannot.
	if _, err := cas.Save(ctx, []byte("a new block"), multicodec.Raw); err != nil {
		t.Fatal(err)
	}
	if err := cas.Flush(ctx); err != nil {
		t.Fatalf("a commit of puts whose paths were checked: %v", err)
	}
	if _, err := cas.Load(ctx, ids[0]); !errors.Is(err, ErrCorrupt) {
		t.Errorf("a lookup in a new state, unable to read the file = %v, want ErrCorrupt", err)
	}
	if next := cas.paths.newest.Load(); next.bf.meta.txid != st.bf.meta.txid+1 || len(next.branches) != 0 {
		t.Errorf("after a commit, the newest state is transaction %d with %d branches, want %d with none", next.bf.meta.txid, len(next.branches), st.bf.meta.txid+1)
	}
}

// TestBoltPathChecksPastTheCacheBound: a state that holds boltPathCacheBytes of branches checks
// the paths of new branches each time without remembering them, and lookups still work.
func TestBoltPathChecksPastTheCacheBound(t *testing.T) {
	ctx := context.Background()
	path, _ := cycleStore(t)
	cas, err := OpenBoltCAS(path, WithBoltReadOnly())
	if err != nil {
		t.Fatal(err)
	}
	defer cas.Close()
	st := cas.paths.newest.Load() // the state the open checked the format in
	st.mu.Lock()
	st.branchBytes = boltPathCacheBytes
	st.mu.Unlock()
	for k, v := range cycleValues() {
		got, err := cas.Load(ctx, blake3CID(multicodec.Raw, v))
		if err != nil || !bytes.Equal(got, v) {
			t.Fatalf("Load(%s) = %d bytes, %v", k, len(got), err)
		}
	}
	if cas.paths.newest.Load() != st || len(st.branches) != 0 || len(st.leaves) == 0 {
		t.Errorf("%d branches remembered past the bound, %d words of leaves", len(st.branches), len(st.leaves))
	}
}
