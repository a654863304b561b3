package hamt

import (
	"context"
	"fmt"
	"slices"
	"strings"
)

// RemoveAll removes from z the directory dir, as os.RemoveAll removes a path: the key dir
// itself, if there is one, and every key under dir + "/". A trailing slash on dir is optional,
// and "" is the root: every key goes. It returns how many keys it removed, 0 when there were none
// (not an error). The keys are listed first (z.List), then deleted one by one, chunks before
// metadata and children's metadata before their parents' (so a layout that registers arrays from
// their metadata, ShardedZarrStore, knows each array while its chunks go); nothing is flushed:
// Flush z afterwards for the one new root. A dataset opened read-only is ErrReadOnly. A removal
// that fails midway leaves z with some of the keys removed; its last flushed root is unchanged.
//
// The match is by path elements, not bytes: RemoveAll(z, "a/t") removes "a/t/c/0" but not
// "a/temp/c/0".
func RemoveAll(ctx context.Context, z Zarr, dir string) (int, error) {
	dir = strings.TrimSuffix(dir, "/")
	if z.ReadOnly() {
		return 0, fmt.Errorf("remove %q: %w", dir, ErrReadOnly)
	}
	var keys []string
	for k, err := range z.List(ctx) {
		if err != nil {
			return 0, fmt.Errorf("remove %q: %w", dir, err)
		}
		if inDir(k, dir) {
			keys = append(keys, k)
		}
	}
	// The reverse of a copy's order (metadataFirst): chunks first, then metadata deepest first.
	slices.SortFunc(keys, func(a, b string) int { return -metadataFirst(a, b) })
	for i, k := range keys {
		if err := ctx.Err(); err != nil {
			return i, err
		}
		if err := z.Delete(ctx, k); err != nil {
			return i, fmt.Errorf("remove %q: %w", dir, err)
		}
	}
	return len(keys), nil
}

// inDir reports whether key is dir or under it ("" holds every key).
func inDir(key, dir string) bool {
	if dir == "" {
		return true
	}
	rest, ok := strings.CutPrefix(key, dir)
	return ok && (rest == "" || rest[0] == '/')
}
