package hamt

import (
	"maps"
	"slices"
	"testing"

	"github.com/multiformats/go-multicodec"
	"pgregory.net/rapid"
)

// makeBucket builds a bucket by inserting entries one at a time, as Map.Set does.
func makeBucket(entries ...entry) string {
	b := emptyBucket
	for _, e := range entries {
		old, at, end := bucketSearch(b, 0, e.key)
		if old != "" {
			b = bucketSplice(b, at, end, &e, bucketCount(b))
		} else {
			b = bucketSplice(b, at, at, &e, bucketCount(b)+1)
		}
	}
	return b
}

// encodeBucketPlain is the bucket encoding written the obvious way, from entries sorted in
// canonical order: what bucketSplice's result must equal.
func encodeBucketPlain(entries []entry) string {
	out := appendHeader(nil, majorMap, uint64(len(entries)))
	for _, e := range entries {
		out = appendHeader(out, majorText, uint64(len(e.key)))
		out = append(out, e.key...)
		out = appendLink(out, e.value)
	}
	return string(out)
}

// TestBucketOps checks the in-place bucket operations against a plain Go map: after any sequence
// of inserts, replacements and removals, the bucket's bytes are exactly the canonical encoding of
// the model, and every key (present or not) is found or not as the model says.
func TestBucketOps(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		// Short keys from a small alphabet collide often; long ones push heads past one byte.
		key := rapid.OneOf(rapid.StringMatching(`[ab]{0,3}`), rapid.StringN(20, 30, -1))
		model := map[string]cidBytes{}
		b := emptyBucket
		for range rapid.IntRange(1, 60).Draw(t, "ops") {
			k := key.Draw(t, "key")
			old, at, end := bucketSearch(b, 0, k)
			if old != model[k] {
				t.Fatalf("search %q: %x, model %x", k, old, model[k])
			}
			if rapid.IntRange(0, 3).Draw(t, "op") == 0 {
				if old == "" {
					continue
				}
				b = bucketSplice(b, at, end, nil, bucketCount(b)-1)
				delete(model, k)
			} else {
				v := cidKey(blake3CID(multicodec.Raw, []byte(rapid.String().Draw(t, "value"))))
				e := entry{key: k, value: v}
				if old != "" {
					b = bucketSplice(b, at, end, &e, bucketCount(b))
				} else {
					b = bucketSplice(b, at, at, &e, bucketCount(b)+1)
				}
				model[k] = v
			}
			keys := slices.SortedFunc(maps.Keys(model), func(x, y string) int {
				if keyLess(x, y) {
					return -1
				}
				return 1
			})
			var want []entry
			for _, k := range keys {
				want = append(want, entry{key: k, value: model[k]})
			}
			if got := encodeBucketPlain(want); b != got {
				t.Fatalf("bucket %x, want %x", b, got)
			}
			if got := appendEntries(nil, b); !slices.Equal(got, want) {
				t.Fatalf("entries %v, want %v", got, want)
			}
			if bucketCount(b) != len(model) {
				t.Fatalf("count %d, model %d", bucketCount(b), len(model))
			}
		}
	})
}
