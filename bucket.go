package hamt

import (
	"cmp"
	"slices"
	"strings"
	"unsafe"
)

// A bucket is kept, in both modes, as the exact bytes of its CBOR map: a map head with the number
// of entries, then per entry the key as a text string and the value as a CID link,
//
//	a<n> | 6<len> <key> d8 2a 58 25 00 <cid> | ...
//
// in canonical key order. Lookups compare keys in place, a node is encoded by copying its buckets,
// and a node in memory holds no pointer per key. A bucket changes by being rebuilt (bucketSplice),
// so a bucket string never changes once made and may be a substring of a loaded block.
//
// The readers below (readHead, readLink, bucketSearch, eachEntry) trust their input: they are
// only given encodings that passed nodeDecoder's checks or that bucketSplice built.

// readHead reads the CBOR head at p of a checked encoding: its argument and where its content
// starts. Only the heads of maps, strings and tags are read this way, and their arguments were
// checked to fit in the block.
func readHead(s string, p int) (arg, next int) {
	switch ai := s[p] & 0x1f; {
	case ai < 24:
		return int(ai), p + 1
	case ai == 24:
		return int(s[p+1]), p + 2
	case ai == 25:
		return int(s[p+1])<<8 | int(s[p+2]), p + 3
	case ai == 26:
		return int(s[p+1])<<24 | int(s[p+2])<<16 | int(s[p+3])<<8 | int(s[p+4]), p + 5
	}
	var v uint64
	for _, c := range []byte(s[p+1 : p+9]) {
		v = v<<8 | uint64(c)
	}
	return int(v), p + 9
}

// readLink reads the checked CID link (tag 42, byte string 0x00 || cid) at p: the CID and where
// the link ends.
func readLink(s string, p int) (cidBytes, int) {
	n, q := readHead(s, p+2) // skip d8 2a
	return cidBytes(s[q+1 : q+n]), q + n
}

// bucketCount is the number of entries in bucket b.
func bucketCount(b string) int {
	n, _ := readHead(b, 0)
	return n
}

// bucketSearch looks for key in the bucket encoded at s[p:]. It returns key's value CID ("" when
// the bucket does not hold it) and the span [at, end) of key's entry in s; when key is absent,
// at == end is where its entry would go to keep canonical order. The scan stops at the first
// longer or greater key.
func bucketSearch(s string, p int, key string) (value cidBytes, at, end int) {
	count, p := readHead(s, p)
	for ; count > 0; count-- {
		kl, q := readHead(s, p)
		if kl > len(key) {
			return "", p, p
		}
		if kl == len(key) {
			switch stored := s[q : q+kl]; {
			case stored == key:
				c, e := readLink(s, q+kl)
				return c, p, e
			case stored > key:
				return "", p, p
			}
		}
		_, p = readLink(s, q+kl)
	}
	return "", p, p
}

// bucketEnd returns where the bucket encoded at s[p:] ends.
func bucketEnd(s string, p int) int {
	count, p := readHead(s, p)
	for ; count > 0; count-- {
		kl, q := readHead(s, p)
		_, p = readLink(s, q+kl)
	}
	return p
}

// eachEntry calls yield with every entry of the bucket encoded at s[p:], in order, until yield
// returns false; it reports whether it got to the end. Keys and CIDs are substrings of s.
func eachEntry(s string, p int, yield func(key string, value cidBytes) bool) bool {
	count, p := readHead(s, p)
	for ; count > 0; count-- {
		kl, q := readHead(s, p)
		var c cidBytes
		c, p = readLink(s, q+kl)
		if !yield(s[q:q+kl], c) {
			return false
		}
	}
	return true
}

// appendEntries appends the entries of bucket b to dst.
func appendEntries(dst []entry, b string) []entry {
	eachEntry(b, 0, func(key string, value cidBytes) bool {
		dst = append(dst, entry{key: key, value: value})
		return true
	})
	return dst
}

// emptyBucket is the encoding of a map with no entries: what bucketSplice builds a new bucket on.
const emptyBucket = "\xa0"

// bucketSplice returns bucket b with its bytes [at, end) replaced by the entry e (or by nothing
// when e is nil), holding count entries in all. at and end come from bucketSearch, so the result
// stays in canonical order. It makes one allocation, of the exact size.
func bucketSplice(b string, at, end int, e *entry, count int) string {
	_, body := readHead(b, 0)
	size := headerLen(uint64(count)) + (at - body) + (len(b) - end)
	if e != nil {
		size += headerLen(uint64(len(e.key))) + len(e.key) + linkLen(e.value)
	}
	out := make([]byte, 0, size)
	out = appendHeader(out, majorMap, uint64(count))
	out = append(out, b[body:at]...)
	if e != nil {
		out = appendHeader(out, majorText, uint64(len(e.key)))
		out = append(out, e.key...)
		out = appendLink(out, e.value)
	}
	out = append(out, b[end:]...)
	// out is not written again: viewing it as a string saves a copy.
	return unsafe.String(unsafe.SliceData(out), len(out))
}

// newBucket returns the bucket holding only e.
func newBucket(e entry) string {
	return bucketSplice(emptyBucket, 1, 1, &e, 1)
}

// bucketOf returns the bucket holding entries (at least one, no key twice), in canonical order
// whatever their order in the slice, which it sorts. It makes one allocation, of the exact size.
func bucketOf(entries []entry) string {
	slices.SortFunc(entries, func(a, b entry) int { // keyLess as a comparison
		if c := cmp.Compare(len(a.key), len(b.key)); c != 0 {
			return c
		}
		return strings.Compare(a.key, b.key)
	})
	size := headerLen(uint64(len(entries)))
	for _, e := range entries {
		size += headerLen(uint64(len(e.key))) + len(e.key) + linkLen(e.value)
	}
	out := appendHeader(make([]byte, 0, size), majorMap, uint64(len(entries)))
	for _, e := range entries {
		out = appendHeader(out, majorText, uint64(len(e.key)))
		out = append(out, e.key...)
		out = appendLink(out, e.value)
	}
	return unsafe.String(unsafe.SliceData(out), len(out))
}
