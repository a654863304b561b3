package hamt

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/ipfs/go-cid"
)

// This file decodes the two protobuf messages a UnixFS file is made of: the dag-pb node (PBNode,
// its links and data) and the UnixFS Data message its data holds. They were read through boxo's
// merkledag and unixfs packages, which pull in go-ipld-prime, OpenTelemetry and zap, about 30
// modules, for these two calls; the messages are small enough to decode here. Each decoder
// accepts what its library accepts and gives the same fields (dagpb_test.go checks both against
// boxo, also under fuzzing):
//
//	PBNode  (go-codec-dagpb):  Links (2) and Data (1), either order, each one run; nothing else.
//	PBLink:                    Hash (1), Name (2), Tsize (3), in that order, Hash required.
//	Data    (proto2, protobuf-go): any order, the last of a scalar wins, blocksizes packed or not,
//	                           a known field of the wrong wire type and unknown fields skipped,
//	                           Type required, mtime's seconds required when mtime is there.

// pbNode is a decoded dag-pb node: the CIDs its links name, in order, and its data (nil when the
// node has no Data field).
type pbNode struct {
	links []cid.Cid
	data  []byte
}

// Protobuf wire types.
const (
	wireVarint     = 0
	wireFixed64    = 1
	wireBytes      = 2
	wireStartGroup = 3
	wireEndGroup   = 4
	wireFixed32    = 5
)

// errProtobuf is a protobuf message that does not parse.
var errProtobuf = errors.New("protobuf: malformed message")

// pbVarint reads a varint at the start of b: its value and length, or a length < 1 when b holds
// no valid varint (cut short, or over 64 bits).
func pbVarint(b []byte) (uint64, int) {
	v, n := binary.Uvarint(b)
	if n <= 0 {
		return 0, -1
	}
	return v, n
}

// pbBytes reads a length-prefixed field value at the start of b.
func pbBytes(b []byte) ([]byte, int) {
	l, n := pbVarint(b)
	if n < 0 || l > uint64(len(b)-n) {
		return nil, -1
	}
	return b[n : n+int(l)], n + int(l)
}

// pbTag reads a field's tag: its number and wire type. Numbers past 2^31-1 or 0 are invalid, as
// protowire.ConsumeTag has them.
func pbTag(b []byte) (num uint64, typ int, n int) {
	x, n := pbVarint(b)
	if n < 0 || x>>3 > 1<<31-1 || x>>3 == 0 {
		return 0, 0, -1
	}
	return x >> 3, int(x & 7), n
}

// pbSkip returns the length of the value of field num of wire type typ at the start of b, as
// protowire.ConsumeFieldValue finds it (a group up to its matching end, at most depth deep).
func pbSkip(num uint64, typ int, b []byte, depth int) int {
	switch typ {
	case wireVarint:
		_, n := pbVarint(b)
		return n
	case wireFixed32:
		if len(b) < 4 {
			return -1
		}
		return 4
	case wireFixed64:
		if len(b) < 8 {
			return -1
		}
		return 8
	case wireBytes:
		_, n := pbBytes(b)
		return n
	case wireStartGroup:
		if depth < 0 {
			return -1
		}
		n0 := len(b)
		for {
			num2, typ2, n := pbTag(b)
			if n < 0 {
				return -1
			}
			b = b[n:]
			if typ2 == wireEndGroup {
				if num2 != num {
					return -1
				}
				return n0 - len(b)
			}
			if n = pbSkip(num2, typ2, b, depth-1); n < 0 {
				return -1
			}
			b = b[n:]
		}
	}
	return -1
}

// pbRecursionLimit is protobuf-go's default nesting limit for groups.
const pbRecursionLimit = 10000

// decodePBNode decodes a dag-pb block as go-codec-dagpb does.
func decodePBNode(b []byte) (pbNode, error) {
	var n pbNode
	haveData, haveLinks, inLinks := false, false, false
	for len(b) > 0 {
		num, typ, k := pbTag(b)
		if k < 0 {
			return pbNode{}, fmt.Errorf("%w: PBNode field tag", errProtobuf)
		}
		b = b[k:]
		if typ != wireBytes {
			return pbNode{}, fmt.Errorf("%w: PBNode field %d has wire type %d, want 2", errProtobuf, num, typ)
		}
		v, k := pbBytes(b)
		if k < 0 {
			return pbNode{}, fmt.Errorf("%w: PBNode field %d cut short", errProtobuf, num)
		}
		b = b[k:]
		switch num {
		case 1:
			if haveData {
				return pbNode{}, fmt.Errorf("%w: PBNode has two Data fields", errProtobuf)
			}
			n.data, haveData, inLinks = v, true, false
			if n.data == nil {
				n.data = []byte{}
			}
		case 2:
			if haveLinks && !inLinks {
				return pbNode{}, fmt.Errorf("%w: PBNode has two runs of Links", errProtobuf)
			}
			c, err := decodePBLink(v)
			if err != nil {
				return pbNode{}, err
			}
			n.links = append(n.links, c)
			haveLinks, inLinks = true, true
		default:
			return pbNode{}, fmt.Errorf("%w: PBNode field %d, want 1 or 2", errProtobuf, num)
		}
	}
	return n, nil
}

// decodePBLink decodes a PBLink and returns the CID it names.
func decodePBLink(b []byte) (cid.Cid, error) {
	var c cid.Cid
	last := uint64(0) // the last field read: each comes once, in order
	for len(b) > 0 {
		num, typ, k := pbTag(b)
		if k < 0 {
			return cid.Undef, fmt.Errorf("%w: PBLink field tag", errProtobuf)
		}
		b = b[k:]
		if num < 1 || num > 3 {
			return cid.Undef, fmt.Errorf("%w: PBLink field %d, want 1, 2 or 3", errProtobuf, num)
		}
		if num <= last {
			return cid.Undef, fmt.Errorf("%w: PBLink field %d after field %d", errProtobuf, num, last)
		}
		last = num
		want := wireBytes
		if num == 3 {
			want = wireVarint
		}
		if typ != want {
			return cid.Undef, fmt.Errorf("%w: PBLink field %d has wire type %d, want %d", errProtobuf, num, typ, want)
		}
		if num == 3 {
			if _, k = pbVarint(b); k < 0 {
				return cid.Undef, fmt.Errorf("%w: PBLink Tsize", errProtobuf)
			}
			b = b[k:]
			continue
		}
		v, k := pbBytes(b)
		if k < 0 {
			return cid.Undef, fmt.Errorf("%w: PBLink field %d cut short", errProtobuf, num)
		}
		b = b[k:]
		if num == 1 {
			// go-codec-dagpb reads the CID at the start of Hash and ignores any bytes after it.
			var err error
			if _, c, err = cid.CidFromBytes(v); err != nil {
				return cid.Undef, fmt.Errorf("%w: PBLink Hash is not a CID: %v", errProtobuf, err)
			}
		}
	}
	if !c.Defined() {
		return cid.Undef, fmt.Errorf("%w: PBLink has no Hash", errProtobuf)
	}
	return c, nil
}

// UnixFS Data types (the DataType enum).
const (
	unixfsRaw  = 0
	unixfsFile = 2
)

// unixfsData is the part of a decoded UnixFS Data message a file reader needs.
type unixfsData struct {
	typ        int32
	data       []byte
	filesize   uint64
	blocksizes []uint64
}

// decodeUnixFSData decodes a UnixFS Data message as protobuf-go decodes boxo's generated type.
func decodeUnixFSData(b []byte) (unixfsData, error) {
	var d unixfsData
	haveType, mtime, mtimeSeconds := false, false, false
	for len(b) > 0 {
		num, typ, k := pbTag(b)
		if k < 0 || num > 1<<29-1 || typ == wireEndGroup {
			return unixfsData{}, fmt.Errorf("%w: UnixFS Data field tag", errProtobuf)
		}
		b = b[k:]
		k = -2 // not read as a known field: skipped
		switch {
		case (num == 1 || num == 3 || num == 5 || num == 6 || num == 7) && typ == wireVarint:
			var v uint64
			if v, k = pbVarint(b); k >= 0 {
				switch num {
				case 1:
					d.typ, haveType = int32(v), true
				case 3:
					d.filesize = v
				}
			}
		case num == 2 && typ == wireBytes:
			var v []byte
			if v, k = pbBytes(b); k >= 0 {
				d.data = v
				if d.data == nil {
					d.data = []byte{}
				}
			}
		case num == 4 && typ == wireVarint:
			var v uint64
			if v, k = pbVarint(b); k >= 0 {
				d.blocksizes = append(d.blocksizes, v)
			}
		case num == 4 && typ == wireBytes: // packed
			var v []byte
			if v, k = pbBytes(b); k >= 0 {
				for len(v) > 0 {
					x, j := pbVarint(v)
					if j < 0 {
						return unixfsData{}, fmt.Errorf("%w: UnixFS blocksizes", errProtobuf)
					}
					d.blocksizes, v = append(d.blocksizes, x), v[j:]
				}
			}
		case num == 8 && typ == wireBytes:
			var v []byte
			if v, k = pbBytes(b); k >= 0 {
				has, err := decodeUnixTime(v)
				if err != nil {
					return unixfsData{}, err
				}
				mtime, mtimeSeconds = true, mtimeSeconds || has
			}
		}
		if k == -2 {
			k = pbSkip(num, typ, b, pbRecursionLimit)
		}
		if k < 0 {
			return unixfsData{}, fmt.Errorf("%w: UnixFS Data field %d cut short", errProtobuf, num)
		}
		b = b[k:]
	}
	if !haveType {
		return unixfsData{}, fmt.Errorf("%w: UnixFS Data has no Type", errProtobuf)
	}
	if mtime && !mtimeSeconds {
		return unixfsData{}, fmt.Errorf("%w: UnixFS mtime has no seconds", errProtobuf)
	}
	return d, nil
}

// decodeUnixTime checks a UnixFS IPFSTimestamp message and reports whether it holds seconds.
func decodeUnixTime(b []byte) (bool, error) {
	seconds := false
	for len(b) > 0 {
		num, typ, k := pbTag(b)
		if k < 0 || num > 1<<29-1 || typ == wireEndGroup {
			return false, fmt.Errorf("%w: UnixFS mtime field tag", errProtobuf)
		}
		b = b[k:]
		if num == 1 && typ == wireVarint {
			seconds = true
		}
		if k = pbSkip(num, typ, b, pbRecursionLimit-1); k < 0 {
			return false, fmt.Errorf("%w: UnixFS mtime field %d cut short", errProtobuf, num)
		}
		b = b[k:]
	}
	return seconds, nil
}

// unixfsTypeName names a UnixFS DataType as boxo's generated String does.
func unixfsTypeName(t int32) string {
	names := [...]string{"Raw", "Directory", "File", "Metadata", "Symlink", "HAMTShard"}
	if t >= 0 && int(t) < len(names) {
		return names[t]
	}
	return fmt.Sprint(t)
}
