package hamt

import (
	"context"
	"fmt"
	"testing"

	"github.com/ipfs/go-cid"
	"github.com/multiformats/go-multicodec"
)

// benchShard is a shard of n entries as a dClimate dataset has them: every fourth chunk absent
// (full=false) or every chunk present (full=true), raw blake3 CIDs.
func benchShard(b *testing.B, n int, full bool) []byte {
	b.Helper()
	entries := make([]cid.Cid, n)
	for i := range entries {
		if full || i%4 != 3 {
			entries[i] = blake3CID(multicodec.Raw, fmt.Appendf(nil, "chunk %d", i))
		}
	}
	block, err := encodeShard(entries)
	if err != nil {
		b.Fatal(err)
	}
	return block
}

// BenchmarkShardRead reads a 26,000-entry shard (dClimate's largest, ~1 MiB) every way the store
// can: decoding every entry, checking it into a cacheable view, reading one entry sparsely, and
// looking one entry up in a view already cached.
func BenchmarkShardRead(b *testing.B) {
	const n = 26000
	for _, full := range []bool{false, true} {
		block := benchShard(b, n, full)
		name := fmt.Sprintf("n=%d/full=%v", n, full)
		b.Run(name+"/decodeShard", func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(block)))
			for b.Loop() {
				if _, err := decodeShard(block, n); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(name+"/parseShard", func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(block)))
			for b.Loop() {
				if _, err := parseShard(block, n); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(name+"/shardEntry", func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(block)))
			k := 0
			for b.Loop() {
				if _, err := shardEntry(block, k); err != nil {
					b.Fatal(err)
				}
				k = (k + 7919) % n
			}
		})
		s, err := parseShard(block, n)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(name+"/cached-entry", func(b *testing.B) {
			b.ReportAllocs()
			k := 0
			for b.Loop() {
				if _, err := s.entry(k); err != nil {
					b.Fatal(err)
				}
				k = (k + 7919) % n
			}
		})
		b.Run(name+"/encodeShard", func(b *testing.B) {
			entries, err := decodeShard(block, n)
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.SetBytes(int64(len(block)))
			for b.Loop() {
				if _, err := encodeShard(entries); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkShardCacheEntry looks up random entries of 64 shards of 26,000 entries (~1 MiB each)
// from many goroutines: "hit" with every shard kept, "miss" with a budget of 0 (every read loads
// its shard from a MemoryCAS and checks it, as a sparse reader does).
func BenchmarkShardCacheEntry(b *testing.B) {
	const shards, n = 64, 26000
	cas := NewMemoryCAS()
	ids := make([]cid.Cid, shards)
	for i := range ids {
		var err error
		if ids[i], err = cas.Save(b.Context(), benchShard(b, n, i%2 == 0), multicodec.DagCbor); err != nil {
			b.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name   string
		budget int64
	}{{"hit", 1 << 30}, {"miss", 0}} {
		b.Run(tc.name, func(b *testing.B) {
			c := newShardCache(tc.budget)
			for _, id := range ids {
				if _, err := c.get(b.Context(), id, n, func(ctx context.Context) ([]byte, error) { return cas.Load(ctx, id) }); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				i := 0
				for pb.Next() {
					id := ids[i%shards]
					if _, err := c.entry(b.Context(), id, n, (i*7919)%n, func(ctx context.Context) ([]byte, error) { return cas.Load(ctx, id) }); err != nil {
						b.Error(err)
						return
					}
					i++
				}
			})
			b.StopTimer()
			if st := c.stats(); tc.budget > 0 {
				b.ReportMetric(float64(st.Bytes)/float64(st.Shards), "B/shard-kept")
			}
		})
	}
}
