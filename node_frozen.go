package hamt

import (
	"fmt"
	"math/bits"
	"sync/atomic"
	"unsafe"
)

// frozenNode is a node of a read-only map, kept in the form that is cheapest to search: its block
// exactly as stored, preceded by an index of where each occupied slot's bytes start, in a single
// immutable string. Keys are compared and value CIDs read in place, so a lookup in a cached node
// touches this struct and the slot's bytes (and, in a node of many slots, one index word on the
// same memory page), not a slot array, an entry array and separately allocated strings, as a
// decoded node would.
//
// Layout of img, where occ is the number of occupied slots:
//
//	img[4k : 4k+4]   the offset in img where the k-th occupied slot's encoding starts, little-endian
//	img[4*occ :]     the block (the format is documented on node)
//
// Invariants: the block passed the same strict checks as decodeNode's, so the in-place readers
// below parse it without checking again; occupied and links have bit i set when slot i is not
// empty and when it is a link, links being a subset of occupied; kids is nil when no slot is a
// link, and otherwise has one entry per occupied slot, of which only those of link slots are used.
// Nothing in a frozenNode changes after decodeFrozen returns but kids and used, which are atomic.
type frozenNode struct {
	occupied [4]uint64
	links    [4]uint64
	img      string
	// used is the read cache's CLOCK bit: set on every read, cleared as the hand passes. It lives
	// here, not in the cache entry, so a warm read touches no memory but the node's.
	used atomic.Bool
	// valsFull is set once vals keeps the value of every entry: a Get then has nothing to record.
	// (Beside used, on a line every read touches, in what was padding.)
	valsFull atomic.Bool
	// vals is the node's value table (see valuecache.go), nil until made.
	vals atomic.Pointer[nodeValues]
	// near repeats the first nearSlots entries of img's index, as uint16, when every offset fits
	// (nearLen of them are valid): a lookup in a small node then finds its slot's bytes without
	// reading the index in img, one dependent memory access fewer.
	near    [nearSlots]uint16
	nearLen uint8
	// checkedAt is the position (treeCheck.position) at which a walk found the node's keys on
	// their hash paths, or zero.
	checkedAt atomic.Uint64
	// kids[k] short-cuts the k-th occupied slot's link to its child while the child is cached; see
	// cacheEntry.attach. nil means "ask the cache".
	kids []atomic.Pointer[frozenNode]
	// home is the cache shard that holds the node (nil if none), against whose budget its kept
	// values count.
	home *cacheShard
}

// nearSlots is how many slot offsets a frozenNode keeps in its struct. At 1M keys with bucket
// size 4, nodes at the bottom of the tree have about 15 occupied slots; 24 covers almost all.
const nearSlots = 24

// frozenNodeSize is the memory of a frozenNode's struct, for cache budgets.
const frozenNodeSize = int64(unsafe.Sizeof(frozenNode{}))

// decodeFrozen checks block b as strictly as decodeNode (the same errors, ErrMalformedNode for
// anything but the exact encoding of a valid node) and returns it as a frozenNode. b is copied.
func decodeFrozen(b []byte) (*frozenNode, error) {
	// Pass 1 checks the framing and counts the occupied slots, which sizes the index.
	d := nodeDecoder{b: b}
	occupied, buckets, err := d.scan()
	if err != nil {
		return nil, err
	}
	// Pass 2 checks what pass 1 did not (UTF-8, key order, CIDs) over the copy that becomes the
	// node, and records where each occupied slot starts. The block part of buf is not written
	// after the copy, so viewing it as a string while the index is filled in is safe.
	hdr := 4 * occupied
	buf := make([]byte, hdr+len(b))
	copy(buf[hdr:], b)
	d = nodeDecoder{b: buf[hdr:], s: unsafe.String(&buf[hdr], len(b)), pos: 3}
	f := &frozenNode{}
	k := 0
	for i := 0; i < numSlots; i++ {
		start := hdr + d.pos
		_, kind, err := d.slot(nil)
		if err != nil {
			return nil, fmt.Errorf("slot %d: %w", i, err)
		}
		if kind == slotEmpty {
			continue
		}
		f.occupied[i>>6] |= 1 << uint(i&63)
		if kind == slotLink {
			f.links[i>>6] |= 1 << uint(i&63)
		}
		buf[4*k], buf[4*k+1], buf[4*k+2], buf[4*k+3] = byte(start), byte(start>>8), byte(start>>16), byte(start>>24)
		if k < nearSlots {
			f.near[k] = uint16(start)
		}
		k++
	}
	if len(buf) <= 1<<16 {
		f.nearLen = uint8(min(occupied, nearSlots))
	}
	if occupied > buckets {
		f.kids = make([]atomic.Pointer[frozenNode], occupied)
	}
	f.img = unsafe.String(unsafe.SliceData(buf), len(buf))
	return f, nil
}

// find returns the rank of slot i among the occupied slots and what the slot holds.
func (n *frozenNode) find(i int) (int, slotKind) {
	word, bit := i>>6, uint(i&63)
	if n.occupied[word]&(1<<bit) == 0 {
		return 0, slotEmpty
	}
	pos := bits.OnesCount64(n.occupied[word] & (1<<bit - 1))
	for w := 0; w < word; w++ {
		pos += bits.OnesCount64(n.occupied[w])
	}
	if n.links[word]&(1<<bit) != 0 {
		return pos, slotLink
	}
	return pos, slotBucket
}

// slotStart is where the encoding of the k-th occupied slot starts in img.
func (n *frozenNode) slotStart(k int) int {
	if k < int(n.nearLen) {
		return int(n.near[k])
	}
	s := n.img[4*k : 4*k+4]
	return int(uint32(s[0]) | uint32(s[1])<<8 | uint32(s[2])<<16 | uint32(s[3])<<24)
}

// bucketFind returns the value CID of key in the bucket that is the k-th occupied slot, or "" if
// the bucket does not hold key.
func (n *frozenNode) bucketFind(k int, key string) cidBytes {
	c, _, _ := bucketSearch(n.img, n.slotStart(k), key)
	return c
}

// thaw returns n as a write-mode node, sharing n's bytes: its buckets and CIDs are substrings of
// n.img, which passed decodeNode's checks when n was made, so nothing is checked again.
func (n *frozenNode) thaw() *node {
	occ, nlinks := 0, 0
	for w := range n.occupied {
		occ += bits.OnesCount64(n.occupied[w])
		nlinks += bits.OnesCount64(n.links[w])
	}
	t := &node{bitmap: n.occupied, slots: make([]slot, occ)}
	links := make([]link, nlinks)
	k := 0
	for w := 0; w < 4; w++ {
		for b := n.occupied[w]; b != 0; b &= b - 1 {
			start := n.slotStart(k)
			if n.links[w]&(b&-b) != 0 {
				links[0].id, _ = readLink(n.img, start+1) // skip 81
				t.slots[k].setLink(&links[0])
				links = links[1:]
			} else {
				t.slots[k].setBucket(n.img[start:bucketEnd(n.img, start)])
			}
			k++
		}
	}
	return t
}

// linkAt returns the child CID of the link that is the k-th occupied slot.
func (n *frozenNode) linkAt(k int) cidBytes {
	c, _ := readLink(n.img, n.slotStart(k)+1) // skip 81
	return c
}

// eachEntry calls yield with the key and value CID of every entry of n's buckets, in slot order and
// each bucket in canonical order, until yield returns false; it reports whether it got to the end.
// It is eachNodeEntry for a frozen node, walking the occupancy bitmaps instead of searching slot by
// slot.
func (n *frozenNode) eachEntry(yield func(key string, id cidBytes) bool) bool {
	k := 0
	for w := 0; w < 4; w++ {
		for b := n.occupied[w]; b != 0; b &= b - 1 {
			if n.links[w]&(b&-b) == 0 && !eachEntry(n.img, n.slotStart(k), yield) {
				return false
			}
			k++
		}
	}
	return true
}

// memSize is the memory n holds, for cache budgets: the struct, the index and block, and the
// child short-cuts.
func (n *frozenNode) memSize() int64 {
	return frozenNodeSize + int64(len(n.img)) + int64(cap(n.kids))*int64(unsafe.Sizeof(atomic.Pointer[frozenNode]{}))
}

// touch marks n as recently used for the cache's CLOCK. It writes only when the bit is clear, so
// warm readers on many cores do not keep stealing the cache line from each other.
func (n *frozenNode) touch() {
	if !n.used.Load() {
		n.used.Store(true)
	}
}
