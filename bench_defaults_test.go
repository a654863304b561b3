package hamt_test

// Benchmarks of what a user gets with default options (New and Open with no options: bucket size
// 4, the default read cache), through three stores: userCAS, a CAS as a user would write it (a
// locked Go map, implementing only the CAS interface), MemoryCAS and BoltCAS. Keys "key-%d",
// 32-byte random values, as in bench_test.go. One iteration runs the whole phase over every key;
// ns/key is what to compare. The 1M-key runs are skipped under -short. For example:
//
//	go test -run XXX -bench 'Defaults/store=user/keys=1000000' -benchtime 1x -count 5 .

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"sync"
	"testing"

	"github.com/hamt-go/hamt"
	"github.com/ipfs/go-cid"
	"github.com/multiformats/go-multicodec"
	"github.com/multiformats/go-multihash"
	"github.com/zeebo/blake3"
)

// userCAS is a block store as a user would write one for the CAS interface, and nothing more:
// CIDv1 blake3-256 (as Kubo gives with hash=blake3) over a locked map. Load returns the stored
// slice, which the map never changes.
type userCAS struct {
	mu     sync.RWMutex
	blocks map[string][]byte
}

func newUserCAS() *userCAS { return &userCAS{blocks: map[string][]byte{}} }

func (u *userCAS) Save(_ context.Context, data []byte, codec multicodec.Code) (cid.Cid, error) {
	sum := blake3.Sum256(data)
	h, err := multihash.Encode(sum[:], multihash.BLAKE3)
	if err != nil {
		return cid.Undef, err
	}
	id := cid.NewCidV1(uint64(codec), h)
	u.mu.Lock()
	if _, ok := u.blocks[id.KeyString()]; !ok {
		u.blocks[id.KeyString()] = append([]byte(nil), data...)
	}
	u.mu.Unlock()
	return id, nil
}

func (u *userCAS) Load(_ context.Context, id cid.Cid) ([]byte, error) {
	u.mu.RLock()
	b, ok := u.blocks[id.KeyString()]
	u.mu.RUnlock()
	if !ok {
		return nil, fmt.Errorf("load %s: %w", id, hamt.ErrNotFound)
	}
	return b, nil
}

// defaultStore makes a fresh, empty store of one kind; done releases it.
type defaultStore struct {
	name string
	open func(b *testing.B, dir string) (cas hamt.CAS, done func())
}

var defaultStores = []defaultStore{
	{"user", func(*testing.B, string) (hamt.CAS, func()) { return newUserCAS(), func() {} }},
	{"memory", func(*testing.B, string) (hamt.CAS, func()) { return hamt.NewMemoryCAS(), func() {} }},
	{"bolt", func(b *testing.B, dir string) (hamt.CAS, func()) {
		f, err := os.CreateTemp(dir, "blocks-*.bolt")
		if err != nil {
			b.Fatal(err)
		}
		path := f.Name()
		_ = f.Close()
		_ = os.Remove(path)
		c, err := hamt.OpenBoltCAS(path)
		if err != nil {
			b.Fatal(err)
		}
		return c, func() { _ = c.Close(); _ = os.Remove(path) }
	}},
}

// defaultFixture is a flushed map of n keys on one store, shared by the read phases.
type defaultFixture struct {
	cas  hamt.CAS
	root cid.Cid
}

// BenchmarkDefaults runs the quick start's operations with default options on each store: Write
// (Set every key into New, then Flush), GetCold (Open, then Get every key once in random order),
// GetWarm (the same again on that map), KeysValues (Keys, then Get of each key: every value,
// with a second walk, as a user iterates today), Keys (keys alone) and Update1Percent (EnableWrite
// on an opened map, Set 1 % of the keys, Flush; ns/key is per updated key).
func BenchmarkDefaults(b *testing.B) {
	ctx := context.Background()
	dir := b.TempDir()
	for _, n := range []int{100_000, 1_000_000} {
		keys, vals := benchKeys(n), benchValues(n)
		order := shuffled(keys, 3)
		for _, st := range defaultStores {
			var fx *defaultFixture
			outer := b // the fixture lives as long as the whole benchmark
			fixture := func(b *testing.B) *defaultFixture {
				if fx == nil {
					cas, done := st.open(b, dir)
					outer.Cleanup(done)
					_, root := buildDefault(b, cas, keys, vals)
					fx = &defaultFixture{cas: cas, root: root}
					runtime.GC() // the build's garbage is not the next phase's cost
				}
				return fx
			}
			prefix := fmt.Sprintf("store=%s/keys=%d/", st.name, n)
			run := func(phase string, fn func(b *testing.B)) {
				b.Run(prefix+phase, func(b *testing.B) {
					if n > 100_000 && testing.Short() {
						b.Skip("1M keys: skipped under -short")
					}
					fn(b)
				})
			}
			run("Write", func(b *testing.B) {
				perKey(b, n, func() {
					b.StopTimer()
					cas, done := st.open(b, dir)
					b.StartTimer()
					buildDefault(b, cas, keys, vals)
					b.StopTimer()
					done()
					b.StartTimer()
				})
			})
			run("GetCold", func(b *testing.B) {
				f := fixture(b)
				perKey(b, n, func() {
					getAll(b, openDefault(b, f), order)
				})
			})
			run("GetWarm", func(b *testing.B) {
				f := fixture(b)
				m := openDefault(b, f)
				getAll(b, m, order)
				perKey(b, n, func() { getAll(b, m, order) })
			})
			run("KeysValues", func(b *testing.B) {
				f := fixture(b)
				m := openDefault(b, f)
				perKey(b, n, func() {
					got := 0
					for k, err := range m.Keys(ctx) {
						if err != nil {
							b.Fatal(err)
						}
						if _, err := m.Get(ctx, k); err != nil {
							b.Fatal(err)
						}
						got++
					}
					if got != n {
						b.Fatalf("iterated %d keys, want %d", got, n)
					}
				})
			})
			run("Keys", func(b *testing.B) {
				f := fixture(b)
				m := openDefault(b, f)
				perKey(b, n, func() { countKeys(b, m, n) })
			})
			run("Update1Percent", func(b *testing.B) {
				f := fixture(b)
				victims := shuffled(keys, 9)[:n/100]
				fresh := benchValues(len(victims) + 1)[1:]
				perKey(b, len(victims), func() {
					m := openDefault(b, f)
					if err := m.EnableWrite(ctx); err != nil {
						b.Fatal(err)
					}
					for i, k := range victims {
						if err := m.Set(ctx, k, fresh[i]); err != nil {
							b.Fatal(err)
						}
					}
					if _, err := m.Flush(ctx); err != nil {
						b.Fatal(err)
					}
				})
			})
		}
	}
}

// buildDefault sets every key into New(cas) with default options and flushes.
func buildDefault(b *testing.B, cas hamt.CAS, keys []string, vals [][]byte) (*hamt.Map[[]byte], cid.Cid) {
	return buildMapOpts(b, cas, keys, vals)
}

// openDefault opens the fixture's root with default options.
func openDefault(b *testing.B, f *defaultFixture) *hamt.Map[[]byte] {
	m, err := hamt.Open(context.Background(), f.cas, hamt.Bytes, f.root)
	if err != nil {
		b.Fatal(err)
	}
	return m
}
