package hamt_test

// Benchmarks of reading every key with its value, the "iterate keys+values" row of issue 13: All
// (one walk, values read ahead) against Keys then a Get per key, at 100k keys with default
// options, on a MemoryCAS, on a plain store a user might write (iterBenchCAS, which the map knows
// only through the CAS interface) and on a BoltCAS file. "cold" opens the root afresh for every run; "warm" reuses
// one map whose cache holds the tree. Also GetMany against a Get per key, in random order. Run:
//
//	go test -run XXX -bench 'IterateKeysAndValues|GetManyVsGet' -count 5 .

import (
	"bytes"
	"context"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/hamt-go/hamt"
	"github.com/hamt-go/hamt/internal/kubotest"
	"github.com/hamt-go/hamt/internal/testdag"
	"github.com/ipfs/go-cid"
	"github.com/multiformats/go-multicodec"
)

// iterBenchCAS is the simplest CAS a user could write: blocks in a Go map under a lock, CIDs as
// the map makes them (blake3). It implements CAS and nothing else.
type iterBenchCAS struct {
	mu     sync.RWMutex
	blocks map[cid.Cid][]byte
}

func (c *iterBenchCAS) Save(_ context.Context, data []byte, codec multicodec.Code) (cid.Cid, error) {
	id := testdag.CID(codec, data)
	c.mu.Lock()
	c.blocks[id] = bytes.Clone(data)
	c.mu.Unlock()
	return id, nil
}

func (c *iterBenchCAS) Load(_ context.Context, id cid.Cid) ([]byte, error) {
	c.mu.RLock()
	b, ok := c.blocks[id]
	c.mu.RUnlock()
	if !ok {
		return nil, hamt.ErrNotFound
	}
	return bytes.Clone(b), nil
}

// iterBenchKeys is the size of the iteration benchmarks.
const iterBenchKeys = 100_000

// iterBenchStores builds the benchmark's map, default options, on each store.
func iterBenchStores(b *testing.B) map[string]struct {
	cas  hamt.CAS
	root cid.Cid
} {
	keys, vals := benchKeys(iterBenchKeys), benchValues(iterBenchKeys)
	out := map[string]struct {
		cas  hamt.CAS
		root cid.Cid
	}{}
	bolt, err := hamt.OpenBoltCAS(filepath.Join(b.TempDir(), "iter.bolt"))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { bolt.Close() })
	for name, cas := range map[string]hamt.CAS{"MemoryCAS": hamt.NewMemoryCAS(), "plainCAS": &iterBenchCAS{blocks: map[cid.Cid][]byte{}}, "BoltCAS": bolt} {
		_, root := buildMap(b, cas, hamt.DefaultBucketSize, keys, vals)
		out[name] = struct {
			cas  hamt.CAS
			root cid.Cid
		}{cas, root}
	}
	return out
}

// BenchmarkIterateKeysAndValues: every key and its value, by All and by Keys then Get per key.
func BenchmarkIterateKeysAndValues(b *testing.B) {
	ctx := context.Background()
	ways := []struct {
		name string
		run  func(b *testing.B, m *hamt.Map[[]byte])
	}{
		{"All", func(b *testing.B, m *hamt.Map[[]byte]) {
			n := 0
			for e, err := range m.All(ctx) {
				if err != nil || len(e.Value) != 32 {
					b.Fatalf("All: %q %x %v", e.Key, e.Value, err)
				}
				n++
			}
			if n != iterBenchKeys {
				b.Fatalf("All yielded %d keys", n)
			}
		}},
		{"KeysThenGet", func(b *testing.B, m *hamt.Map[[]byte]) {
			n := 0
			for k, err := range m.Keys(ctx) {
				if err != nil {
					b.Fatal(err)
				}
				if v, err := m.Get(ctx, k); err != nil || len(v) != 32 {
					b.Fatalf("Get(%q): %x %v", k, v, err)
				}
				n++
			}
			if n != iterBenchKeys {
				b.Fatalf("Keys yielded %d keys", n)
			}
		}},
	}
	stores := iterBenchStores(b)
	for _, store := range []string{"MemoryCAS", "plainCAS", "BoltCAS"} {
		for _, way := range ways {
			for _, state := range []string{"cold", "warm"} {
				b.Run(store+"/"+way.name+"/"+state, func(b *testing.B) {
					s := stores[store]
					open := func() *hamt.Map[[]byte] {
						m, err := hamt.Open(ctx, s.cas, hamt.Bytes, s.root)
						if err != nil {
							b.Fatal(err)
						}
						return m
					}
					m := open()
					if state == "warm" {
						way.run(b, m)
					}
					perKey(b, iterBenchKeys, func() {
						if state == "cold" {
							b.StopTimer()
							m = open()
							b.StartTimer()
						}
						way.run(b, m)
					})
				})
			}
		}
	}
}

// BenchmarkGetManyVsGet: every key in random order, by one GetMany and by a Get per key, with the
// tree cached.
func BenchmarkGetManyVsGet(b *testing.B) {
	ctx := context.Background()
	stores := iterBenchStores(b)
	order := shuffled(benchKeys(iterBenchKeys), 3)
	for _, store := range []string{"MemoryCAS", "plainCAS", "BoltCAS"} {
		for _, way := range []string{"GetMany", "Get"} {
			b.Run(store+"/"+way, func(b *testing.B) {
				m, err := hamt.Open(ctx, stores[store].cas, hamt.Bytes, stores[store].root)
				if err != nil {
					b.Fatal(err)
				}
				run := func() {
					if way == "Get" {
						getAll(b, m, order)
						return
					}
					vals, _, err := m.GetMany(ctx, order)
					if err != nil || len(vals[0]) != 32 {
						b.Fatal(err)
					}
				}
				run()
				perKey(b, iterBenchKeys, run)
			})
		}
	}
}

// BenchmarkKuboIterateKeysAndValues: All against Keys then a Get per key through KuboCAS on the
// Kubo look-alike (a real HTTP server on 127.0.0.1) answering its gateway's reads after 2 ms, a
// nearby gateway's round trip; 500 keys, a fresh Open per run. Every node and value is a round
// trip: All overlaps the values' (up to the read-ahead, 32).
func BenchmarkKuboIterateKeysAndValues(b *testing.B) {
	const n = 500
	ctx := context.Background()
	srv := kubotest.New(b)
	k := newKubo(b, srv)
	_, root := buildMap(b, k, hamt.DefaultBucketSize, benchKeys(n), benchValues(n))
	srv.Inject(kubotest.Fault{Endpoint: kubotest.Gateway, Path: "/ipfs/", Times: -1, Delay: 2 * time.Millisecond})
	for _, way := range []string{"All", "KeysThenGet"} {
		b.Run(way, func(b *testing.B) {
			perKey(b, n, func() {
				m, err := hamt.Open(ctx, k, hamt.Bytes, root)
				if err != nil {
					b.Fatal(err)
				}
				count := 0
				if way == "All" {
					for _, err := range m.All(ctx) {
						if err != nil {
							b.Fatal(err)
						}
						count++
					}
				} else {
					for key, err := range m.Keys(ctx) {
						if err != nil {
							b.Fatal(err)
						}
						if _, err := m.Get(ctx, key); err != nil {
							b.Fatal(err)
						}
						count++
					}
				}
				if count != n {
					b.Fatalf("%d keys, want %d", count, n)
				}
			})
		})
	}
}
