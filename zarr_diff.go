package hamt

import (
	"context"
	"fmt"
	"iter"
	"slices"
	"strings"

	"github.com/ipfs/go-cid"
)

// DiffZarr yields the keys that differ between two Zarr datasets of any layouts, in key order:
// a key in b only is Added, in a only Removed, in both with values in different blocks (CIDs)
// Modified. Unlike Diff, which skips the subtrees two HAMTs share, it lists both datasets whole
// and locates every value (its CID, from the layout's index; Zarr.Open for a Zarr of another
// package): its cost is that of both listings and lookups, whatever changed. A
// value stored as a raw block in one and as a UnixFS file in the other differs by CID, and is
// reported Modified though its bytes may be the same.
func DiffZarr(ctx context.Context, a, b Zarr) iter.Seq2[Change, error] {
	return func(yield func(Change, error) bool) {
		ka, err := listSorted(ctx, a)
		if err != nil {
			yield(Change{}, fmt.Errorf("zarr diff: first: %w", err))
			return
		}
		kb, err := listSorted(ctx, b)
		if err != nil {
			yield(Change{}, fmt.Errorf("zarr diff: second: %w", err))
			return
		}
		locate := func(z Zarr, key string) (cid.Cid, bool) {
			id, err := valueCID(ctx, z, key)
			if err != nil {
				yield(Change{}, fmt.Errorf("zarr diff: %w", err))
				return cid.Undef, false
			}
			return id, true
		}
		for i, j := 0, 0; i < len(ka) || j < len(kb); {
			var c Change
			switch {
			case j == len(kb) || i < len(ka) && ka[i] < kb[j]:
				old, ok := locate(a, ka[i])
				if !ok {
					return
				}
				c = Change{Key: ka[i], Kind: Removed, Old: old}
				i++
			case i == len(ka) || kb[j] < ka[i]:
				nu, ok := locate(b, kb[j])
				if !ok {
					return
				}
				c = Change{Key: kb[j], Kind: Added, New: nu}
				j++
			default:
				old, ok := locate(a, ka[i])
				if !ok {
					return
				}
				nu, ok := locate(b, kb[j])
				if !ok {
					return
				}
				i, j = i+1, j+1
				if old.Equals(nu) {
					continue
				}
				c = Change{Key: ka[i-1], Kind: Modified, Old: old, New: nu}
			}
			if !yield(c, nil) {
				return
			}
		}
	}
}

// valueCID returns the CID of the block holding key's value in z: from the layout's index alone
// for the package's stores, through Open (which also sizes the value) for others.
func valueCID(ctx context.Context, z Zarr, key string) (cid.Cid, error) {
	switch s := z.(type) {
	case *ZarrStore:
		return s.m.GetPointer(ctx, key)
	case *EncryptedZarrStore:
		return s.m.GetPointer(ctx, key)
	case *ShardedZarrStore:
		return s.locate(ctx, key)
	}
	v, err := z.Open(ctx, key)
	if err != nil {
		return cid.Undef, err
	}
	return v.CID(), nil
}

// listSorted lists every key of z, sorted.
func listSorted(ctx context.Context, z Zarr) ([]string, error) {
	var keys []string
	for k, err := range z.List(ctx) {
		if err != nil {
			return nil, err
		}
		keys = append(keys, k)
	}
	slices.SortFunc(keys, strings.Compare)
	return keys, nil
}
