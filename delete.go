package hamt

import (
	"context"
	"fmt"
	"slices"
)

// The canonical delete of py-hamt ≥ 3.5: after a key is removed, every node below the root on
// its path whose subtree now holds at most bucket-size keys is folded back into one bucket of its
// parent. A fresh build of the same keys has exactly that shape (a slot becomes a link only when
// more than bucket-size keys share its hash prefix), so equal content gives an equal root.
//
// Only the delete path can need folding: inserts never shrink a subtree, and a delete shrinks
// only the subtrees it passes through. The subtree counts along the path grow toward the root, so
// the nodes to fold are the deepest ones of the path, up to the highest whose subtree is small
// enough; that node's subtree becomes one bucket and everything below it goes with it.

// pathStep is one node of a delete path and the slot through which the path leaves it.
type pathStep struct {
	n *node
	i int
}

// removeFolding deletes key (hashing to h) from the tree under root and reports whether it was
// there, folding as described above. It works in three phases so that a failure changes nothing:
// walk down to the key's bucket (loading nodes), count the subtrees on the way back up (loading
// the few nodes a count needs), and only then change the tree, with everything it touches in
// memory.
func (t tree) removeFolding(ctx context.Context, root *node, key string, h []byte) (bool, error) {
	var stack [16]pathStep
	path := stack[:0]
	n := root
	for depth := 0; ; depth++ {
		i, err := slotAt(h, depth)
		if err != nil {
			return false, err
		}
		s := n.slot(i)
		if s == nil {
			return false, nil
		}
		path = append(path, pathStep{n, i})
		if s.link() == nil {
			if old, _, _ := bucketSearch(s.bucket(), 0, key); old == "" {
				return false, nil
			}
			break
		}
		if n, err = t.w.child(ctx, s.link(), depth+1); err != nil {
			return false, err
		}
	}

	// fold is the depth of the node whose subtree becomes a bucket; len(path) means none. The
	// root (depth 0) is never folded.
	fold, left := len(path), -1 // left: keys in the subtree counted so far, less the deleted one
	for d := len(path) - 1; d >= 1; d-- {
		var skip *link // the path's own link, whose subtree is already counted
		if d < len(path)-1 {
			skip = path[d].n.slot(path[d].i).link()
		}
		c, err := t.countKeys(ctx, path[d].n, d, skip, t.bucketSize-left)
		if err != nil {
			return false, err
		}
		if left += c; left > t.bucketSize {
			break
		}
		fold = d
	}

	if fold == len(path) {
		for _, p := range path {
			p.n.dirty = true
		}
		last := path[len(path)-1]
		s := last.n.slot(last.i)
		_, at, end := bucketSearch(s.bucket(), 0, key)
		if count := bucketCount(s.bucket()); count == 1 {
			last.n.clear(last.i) // below the root the node keeps more than bucket-size keys
		} else {
			s.setBucket(bucketSplice(s.bucket(), at, end, nil, count-1))
		}
		return true, nil
	}
	var inline [16]string
	buckets, err := t.collectBuckets(ctx, path[fold].n, fold, inline[:0])
	if err != nil {
		return false, err // unreachable: countKeys loaded the whole subtree
	}
	folded := foldBuckets(buckets, key)
	for _, p := range path[:fold] {
		p.n.dirty = true
	}
	parent := path[fold-1]
	if folded == "" {
		parent.n.clear(parent.i)
	} else {
		parent.n.put(parent.i, bucketSlot(folded))
	}
	return true, nil
}

// foldBuckets returns the one bucket holding the entries of buckets but key ("" when none are
// left). Where it can, it reuses a bucket as it is, without allocating: with bucket size 1 a fold
// always can.
func foldBuckets(buckets []string, key string) string {
	kept, withKey := buckets[:0], -1
	for _, b := range buckets {
		if v, _, _ := bucketSearch(b, 0, key); v != "" {
			if bucketCount(b) == 1 {
				continue
			}
			withKey = len(kept)
		}
		kept = append(kept, b)
	}
	switch {
	case len(kept) == 0:
		return ""
	case len(kept) == 1 && withKey < 0:
		return kept[0]
	case len(kept) == 1:
		_, at, end := bucketSearch(kept[0], 0, key)
		return bucketSplice(kept[0], at, end, nil, bucketCount(kept[0])-1)
	}
	var inline [16]entry
	entries := inline[:0]
	for _, b := range kept {
		entries = appendEntries(entries, b)
	}
	if withKey >= 0 {
		entries = slices.DeleteFunc(entries, func(e entry) bool { return e.key == key })
	}
	return bucketOf(entries)
}

// countKeys counts the keys in n's subtree (n at depth), leaving out the subtree of link skip.
// It stops as soon as the count exceeds limit and returns what it has counted then, so a large
// subtree is never walked: buckets are counted first, and a child is loaded only while the count
// is still within limit.
func (t tree) countKeys(ctx context.Context, n *node, depth int, skip *link, limit int) (int, error) {
	count := 0
	for i := range n.slots {
		if b := n.slots[i].bucket(); b != "" {
			if count += bucketCount(b); count > limit {
				return count, nil
			}
		}
	}
	for i := range n.slots {
		l := n.slots[i].link()
		if l == nil || l == skip {
			continue
		}
		child, err := t.w.child(ctx, l, depth+1)
		if err != nil {
			return 0, err
		}
		c, err := t.countKeys(ctx, child, depth+1, nil, limit-count)
		if err != nil {
			return 0, err
		}
		if count += c; count > limit {
			return count, nil
		}
	}
	return count, nil
}

// collectBuckets appends every bucket of n's subtree to dst.
func (t tree) collectBuckets(ctx context.Context, n *node, depth int, dst []string) ([]string, error) {
	for i := range n.slots {
		s := &n.slots[i]
		if s.link() == nil {
			dst = append(dst, s.bucket())
			continue
		}
		child, err := t.w.child(ctx, s.link(), depth+1)
		if err != nil {
			return nil, fmt.Errorf("fold at depth %d: %w", depth, err)
		}
		if dst, err = t.collectBuckets(ctx, child, depth+1, dst); err != nil {
			return nil, err
		}
	}
	return dst, nil
}
