package hamt

// Hand-built CBOR for tests, byte by byte and independent of the library's encoder, so tests that
// build blocks with it check the decoder rather than restate it. Exported (in a test file only) so
// the black-box tests of package hamt_test share it.

import (
	"bytes"

	"github.com/ipfs/go-cid"
)

// HandHead is a minimal CBOR head (n < 65536 is all the tests need).
func HandHead(major byte, n int) []byte {
	m := major << 5
	switch {
	case n < 24:
		return []byte{m | byte(n)}
	case n < 256:
		return []byte{m | 24, byte(n)}
	}
	return []byte{m | 25, byte(n >> 8), byte(n)}
}

// HandText is a CBOR text string.
func HandText(s string) []byte { return append(HandHead(3, len(s)), s...) }

// HandLink is a DAG-CBOR link: tag 42 over a byte string 0x00 || cid.
func HandLink(c cid.Cid) []byte {
	return HandCat([]byte{0xd8, 0x2a}, HandHead(2, c.ByteLen()+1), []byte{0}, c.Bytes())
}

// HandNode is a node block: a list of 256 slots, each the bytes given or an empty map.
func HandNode(slots map[int][]byte) []byte {
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

// HandCat concatenates byte strings.
func HandCat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
