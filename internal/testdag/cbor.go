package testdag

// Hand-built DAG-CBOR, byte by byte, in the node format of the README: a node is a list of 256
// slots, each an empty map, a bucket (a map of keys to value links, in the order given) or a
// one-element list holding a link to a child node.

import (
	"bytes"

	"github.com/ipfs/go-cid"
)

// Head is a minimal CBOR head (n < 65536 is all the tests need).
func Head(major byte, n int) []byte {
	m := major << 5
	switch {
	case n < 24:
		return []byte{m | byte(n)}
	case n < 256:
		return []byte{m | 24, byte(n)}
	}
	return []byte{m | 25, byte(n >> 8), byte(n)}
}

// Text is a CBOR text string.
func Text(s string) []byte { return append(Head(3, len(s)), s...) }

// Link is a DAG-CBOR link: tag 42 over a byte string 0x00 || cid.
func Link(c cid.Cid) []byte {
	return Cat([]byte{0xd8, 0x2a}, Head(2, c.ByteLen()+1), []byte{0}, c.Bytes())
}

// Node is a node block: a list of 256 slots, each the bytes given or an empty map.
func Node(slots map[int][]byte) []byte {
	b := []byte{0x99, 0x01, 0x00}
	for i := range 256 {
		if s, ok := slots[i]; ok {
			b = append(b, s...)
		} else {
			b = append(b, 0xa0)
		}
	}
	return b
}

// LinkSlot is a slot linking to a child node: a one-element list holding a link.
func LinkSlot(child cid.Cid) []byte { return append([]byte{0x81}, Link(child)...) }

// Entry is one entry of a bucket: key, then the link to its value.
func Entry(key string, value cid.Cid) []byte { return Cat(Text(key), Link(value)) }

// Bucket is a bucket slot holding entries (each made by Entry) in the order given, not sorted.
func Bucket(entries ...[]byte) []byte { return Cat(Head(5, len(entries)), Cat(entries...)) }

// Cat concatenates byte strings.
func Cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
