package hamt

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"
	"slices"
	"strings"
	"unicode/utf8"
	"unsafe"

	"github.com/ipfs/go-cid"
	"github.com/multiformats/go-multicodec"
	"github.com/multiformats/go-varint"
)

// node is one HAMT node in memory. Its block is a DAG-CBOR list of exactly 256 slots, byte-compatible
// with py-hamt. As an IPLD schema:
//
//	type Node [Slot]              # always 256 items; item i is the slot for hash byte i
//	type Slot union {
//	  | Bucket map                # {} is an empty slot
//	  | Link   list
//	} representation kinded
//	type Bucket {String:&Any}     # key -> CID of the value block (usually raw)
//	type Link [&Node]             # exactly one element: the child's CID (dag-cbor)
//
// Bytes: `99 01 00` (array of 256), then per slot `a0` (empty), a map in canonical key order
// (length-first, then bytewise), or `81 d8 2a 58 25 00 <cid>` (a link).
//
// In memory only occupied slots are kept: bitmap has bit i set when slot i is occupied, and slots
// holds those slots in index order. A bucket stays in its encoded form (see bucket.go), so keys
// are compared in place and a node is encoded by copying its buckets' bytes. Invariants: a bucket
// is never empty; a bucket's entries are in canonical order with no key twice; exactly one of
// bucket and link is set in each kept slot.
type node struct {
	bitmap [4]uint64
	slots  []slot
	// dirty is set in write mode when the node changed since it was loaded or last saved; its CID is
	// then unknown until the next flush.
	dirty bool
	// checked is set once a walk found the node's keys on their hash paths (see walk.go), or when
	// the map made the node itself. A write-mode node stays at one position all its life, and
	// insert places keys by their hashes, so it stays true.
	checked bool
}

// slot is an occupied slot: a bucket, as the exact bytes of its CBOR map, or a link to a child
// node. It is one pointer and one word (16 bytes, where a string and a pointer took 24; a large
// tree holds millions of slots): n >= 0 means a bucket of n bytes at p, n < 0 means p is a *link.
// Either way p is an ordinary pointer, so the collector keeps what it points at alive. The zero
// slot is neither (an empty bucket is never kept). Use the methods, never the fields.
type slot struct {
	p unsafe.Pointer
	n int
}

// bucketSlot is a slot holding bucket b (never empty).
func bucketSlot(b string) slot { return slot{p: unsafe.Pointer(unsafe.StringData(b)), n: len(b)} }

// linkSlot is a slot holding l.
func linkSlot(l *link) slot { return slot{p: unsafe.Pointer(l), n: -1} }

// bucket returns the slot's bucket, or "" when it holds a link.
func (s *slot) bucket() string {
	if s.n <= 0 {
		return ""
	}
	return unsafe.String((*byte)(s.p), s.n)
}

// link returns the slot's link, or nil when it holds a bucket.
func (s *slot) link() *link {
	if s.n >= 0 {
		return nil
	}
	return (*link)(s.p)
}

// setBucket makes the slot hold bucket b (never empty).
func (s *slot) setBucket(b string) { *s = bucketSlot(b) }

// setLink makes the slot hold l.
func (s *slot) setLink(l *link) { *s = linkSlot(l) }

// entry is one key of a bucket and the CID of its value block, as passed around outside the
// bucket's bytes.
type entry struct {
	key   string
	value cidBytes
}

// cidBytes is a CID in its binary form, as a string: what cid.Cid holds inside. Nodes keep CIDs
// this way so a decoded node's CIDs are substrings of its block (no allocation each), and a
// cid.Cid from a store converts to it for free (KeyString). Empty means no CID.
type cidBytes string

func cidKey(c cid.Cid) cidBytes { return cidBytes(c.KeyString()) }

// cid returns c as a cid.Cid. c was validated when it entered a node.
func (c cidBytes) cid() cid.Cid {
	if c == "" {
		return cid.Undef
	}
	// Cast only reads its argument and copies what it keeps, so the string's bytes can be lent
	// to it without a copy.
	id, err := cid.Cast(unsafe.Slice(unsafe.StringData(string(c)), len(c)))
	if err != nil {
		return cid.Undef
	}
	return id
}

// String is the CID's text form, for error messages.
func (c cidBytes) String() string { return c.cid().String() }

// parseCID checks that b is exactly one CID (v0, or v1 with a well-formed multihash) without
// allocating, and returns its codec.
func parseCID(b []byte) (codec uint64, err error) {
	if len(b) == 34 && b[0] == 0x12 && b[1] == 0x20 {
		return uint64(multicodec.DagPb), nil // CIDv0: a bare sha2-256 multihash
	}
	version, n, err := varint.FromUvarint(b)
	if err != nil || version != 1 {
		return 0, fmt.Errorf("not a CIDv1 (version %d, %v)", version, err)
	}
	b = b[n:]
	if codec, n, err = varint.FromUvarint(b); err != nil {
		return 0, fmt.Errorf("codec: %v", err)
	}
	b = b[n:]
	if _, n, err = varint.FromUvarint(b); err != nil {
		return 0, fmt.Errorf("multihash code: %v", err)
	}
	b = b[n:]
	length, n, err := varint.FromUvarint(b)
	if err != nil {
		return 0, fmt.Errorf("multihash length: %v", err)
	}
	if uint64(len(b)-n) != length {
		return 0, fmt.Errorf("multihash length %d but %d digest bytes", length, len(b)-n)
	}
	return codec, nil
}

// link points at a child node. id is the child's CID; it is stale while node is dirty. node is the
// child once loaded (or made) in write mode; nil means "load it by id".
type link struct {
	id   cidBytes
	node *node
}

// numSlots is the fan-out of every node: one slot per value of a hash byte.
const numSlots = 256

// index returns the position of slot i in n.slots and whether slot i is occupied.
func (n *node) index(i int) (int, bool) {
	word, bit := i>>6, uint(i&63)
	pos := 0
	for w := 0; w < word; w++ {
		pos += bits.OnesCount64(n.bitmap[w])
	}
	pos += bits.OnesCount64(n.bitmap[word] & (1<<bit - 1))
	return pos, n.bitmap[word]&(1<<bit) != 0
}

// slot returns slot i, or nil when it is empty.
func (n *node) slot(i int) *slot {
	pos, ok := n.index(i)
	if !ok {
		return nil
	}
	return &n.slots[pos]
}

// put sets slot i to s, occupying it if it was empty.
func (n *node) put(i int, s slot) {
	pos, ok := n.index(i)
	if ok {
		n.slots[pos] = s
		return
	}
	n.bitmap[i>>6] |= 1 << uint(i&63)
	if len(n.slots) == cap(n.slots) {
		// Grow by a quarter and four, rounded up to the allocator's size class (slices.Grow), not
		// by doubling: a node at the bottom of a large tree ends with some 55 occupied slots,
		// which doubling leaves in room for 64 or 128. Nothing else refers to the old array.
		n.slots = append(slices.Grow([]slot(nil), min(numSlots, cap(n.slots)+cap(n.slots)/4+4)), n.slots...)
	}
	n.slots = n.slots[:len(n.slots)+1]
	copy(n.slots[pos+1:], n.slots[pos:])
	n.slots[pos] = s
}

// clear empties slot i.
func (n *node) clear(i int) {
	pos, ok := n.index(i)
	if !ok {
		return
	}
	n.bitmap[i>>6] &^= 1 << uint(i&63)
	copy(n.slots[pos:], n.slots[pos+1:])
	n.slots[len(n.slots)-1] = slot{}
	n.slots = n.slots[:len(n.slots)-1]
}

// empty reports whether the node holds no entries and no links.
func (n *node) empty() bool { return len(n.slots) == 0 }

// keyLess is DAG-CBOR's canonical order of text map keys: shorter first, then bytewise.
func keyLess(a, b string) bool {
	if len(a) != len(b) {
		return len(a) < len(b)
	}
	return a < b
}

// CBOR major types used by the node format.
const (
	majorBytes = 2
	majorText  = 3
	majorArray = 4
	majorMap   = 5
	majorTag   = 6
)

// cidTag is the CBOR tag of an IPLD link; the only tag DAG-CBOR allows.
const cidTag = 42

func headerLen(n uint64) int {
	switch {
	case n < 24:
		return 1
	case n <= 0xff:
		return 2
	case n <= 0xffff:
		return 3
	case n <= 0xffffffff:
		return 5
	}
	return 9
}

// appendHeader appends the minimal CBOR head of major type major and argument n.
func appendHeader(dst []byte, major byte, n uint64) []byte {
	m := major << 5
	switch {
	case n < 24:
		return append(dst, m|byte(n))
	case n <= 0xff:
		return append(dst, m|24, byte(n))
	case n <= 0xffff:
		return append(dst, m|25, byte(n>>8), byte(n))
	case n <= 0xffffffff:
		return append(dst, m|26, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
	}
	return append(dst, m|27, byte(n>>56), byte(n>>48), byte(n>>40), byte(n>>32),
		byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
}

// linkLen is the encoded size of a CID link: tag 42 over a byte string 0x00 || cid.
func linkLen(c cidBytes) int {
	n := len(c) + 1
	return 2 + headerLen(uint64(n)) + n
}

func appendLink(dst []byte, c cidBytes) []byte {
	dst = append(dst, 0xd8, cidTag)
	dst = appendHeader(dst, majorBytes, uint64(len(c)+1))
	dst = append(dst, 0)
	return append(dst, c...)
}

// encodedLen is the exact size of n's block.
func (n *node) encodedLen() int {
	size := 3 + numSlots - len(n.slots) // header, plus one a0 per empty slot
	for i := range n.slots {
		s := &n.slots[i]
		if s.link() != nil {
			size += 1 + linkLen(s.link().id)
			continue
		}
		size += len(s.bucket())
	}
	return size
}

// encode returns n's block. Every link must hold its child's current CID (children are saved
// first); a missing one is a bug in the caller, reported as an error rather than written.
func (n *node) encode() ([]byte, error) {
	return n.appendBlock(make([]byte, 0, n.encodedLen()))
}

// appendBlock appends n's block to out, as encode. A flush reuses one buffer for many nodes.
func (n *node) appendBlock(out []byte) ([]byte, error) {
	out = append(out, 0x99, 0x01, 0x00)
	next := 0 // the first slot not yet written
	for pos := range n.slots {
		i := n.nextOccupied(next)
		out = append(out, emptySlots[:i-next]...)
		next = i + 1
		s := &n.slots[pos]
		if s.link() == nil {
			out = append(out, s.bucket()...)
			continue
		}
		if s.link().id == "" || (s.link().node != nil && s.link().node.dirty) {
			return nil, fmt.Errorf("encode node: slot %d links to an unsaved child", i)
		}
		out = appendLink(append(out, 0x81), s.link().id)
	}
	return append(out, emptySlots[:numSlots-next]...), nil
}

// emptySlots is a run of empty slots (each an empty map), as many as a node has. A string, so
// it cannot be changed.
var emptySlots = strings.Repeat("\xa0", numSlots)

// nextOccupied returns the first occupied slot at or after from; there must be one.
func (n *node) nextOccupied(from int) int {
	for w := from >> 6; ; w, from = w+1, (w+1)<<6 {
		if word := n.bitmap[w] >> uint(from&63); word != 0 {
			return from + bits.TrailingZeros64(word)
		}
	}
}

// nodeDecoder reads one node block strictly: only the exact bytes encode would produce for some
// node are accepted.
type nodeDecoder struct {
	b   []byte
	s   string // b as a string: keys are substrings of it, one allocation per node
	pos int
}

func (d *nodeDecoder) fail(format string, args ...any) error {
	return fmt.Errorf("%w: at byte %d: %s", ErrMalformedNode, d.pos, fmt.Sprintf(format, args...))
}

// Two of the decoder's refusals are told apart by Verify (errors.Is), beside ErrMalformedNode: CBOR
// that is valid but not in canonical form, and a bucket whose keys are out of canonical order.
var (
	errNotCanonical = errors.New("not canonical DAG-CBOR")
	errKeyOrder     = errors.New("bucket keys out of canonical order")
)

// failAs is fail for one of the refusals above.
func (d *nodeDecoder) failAs(kind error, format string, args ...any) error {
	return fmt.Errorf("%w: at byte %d: %w: %s", ErrMalformedNode, d.pos, kind, fmt.Sprintf(format, args...))
}

// cborHead reads the CBOR head at b[pos]: its major type, its argument and where its content
// starts. An indefinite length or a reserved value is refused, and so, when minimal, is a head
// longer than its argument needs (DAG-CBOR's rule for every head but a float's); both refusals
// wrap errNotCanonical. Running out of bytes is errCBOREnd.
func cborHead(b []byte, pos int, minimal bool) (major byte, arg uint64, next int, err error) {
	if pos >= len(b) {
		return 0, 0, 0, errCBOREnd
	}
	ib := b[pos]
	major, ai := ib>>5, ib&0x1f
	var n int
	switch {
	case ai < 24:
		return major, uint64(ai), pos + 1, nil
	case ai == 24:
		n = 1
	case ai == 25:
		n = 2
	case ai == 26:
		n = 4
	case ai == 27:
		n = 8
	default:
		return 0, 0, 0, fmt.Errorf("%w: indefinite length or reserved value 0x%02x", errNotCanonical, ib)
	}
	if pos+1+n > len(b) {
		return 0, 0, 0, errCBOREnd
	}
	for _, c := range b[pos+1 : pos+1+n] {
		arg = arg<<8 | uint64(c)
	}
	if minimal && headerLen(arg) != 1+n {
		return 0, 0, 0, fmt.Errorf("%w: non-minimal length %d", errNotCanonical, arg)
	}
	return major, arg, pos + 1 + n, nil
}

// errCBOREnd is cborHead's error for a head cut short.
var errCBOREnd = errors.New("unexpected end of block")

// head reads a CBOR head and checks it is minimal and of definite length.
func (d *nodeDecoder) head() (major byte, arg uint64, err error) {
	major, arg, next, err := cborHead(d.b, d.pos, true)
	if err != nil {
		return 0, 0, fmt.Errorf("%w: at byte %d: %w", ErrMalformedNode, d.pos, err)
	}
	d.pos = next
	return major, arg, nil
}

// take skips n bytes of string content and returns where they start.
func (d *nodeDecoder) take(n uint64) (int, error) {
	if n > uint64(len(d.b)-d.pos) {
		return 0, d.fail("string of %d bytes runs past the end of the block", n)
	}
	start := d.pos
	d.pos += int(n)
	return start, nil
}

// linkSpan reads the framing of a CID link (tag 42 over a byte string 0x00 || cid) and returns
// where the CID's bytes are.
func (d *nodeDecoder) linkSpan() (int, int, error) {
	major, tag, err := d.head()
	if err != nil {
		return 0, 0, err
	}
	if major != majorTag || tag != cidTag {
		return 0, 0, d.fail("want a CID link (tag 42), got major type %d value %d", major, tag)
	}
	major, n, err := d.head()
	if err != nil {
		return 0, 0, err
	}
	if major != majorBytes || n < 2 {
		return 0, 0, d.fail("a CID link must hold a byte string 0x00 || cid")
	}
	start, err := d.take(n)
	if err != nil {
		return 0, 0, err
	}
	if d.b[start] != 0 {
		return 0, 0, d.fail("CID link does not start with the identity multibase prefix 0x00")
	}
	return start + 1, start + int(n), nil
}

// link reads a CID link and checks the CID strictly: the byte string holds exactly one CID. The
// CID is a substring of the block.
func (d *nodeDecoder) link() (cidBytes, uint64, error) {
	// Fast path for the usual link: d8 2a 58 <n> 00, then a CIDv1 whose version, codec, hash
	// code and digest length are one byte each and whose digest fills the rest. It accepts
	// exactly what the general path below accepts for such bytes.
	if p := d.pos; p+9 <= len(d.b) && d.b[p] == 0xd8 && d.b[p+1] == cidTag && d.b[p+2] == 0x58 &&
		d.b[p+3] >= 24 && d.b[p+4] == 0 {
		end := p + 4 + int(d.b[p+3])
		if c := d.b[p+5 : min(end, len(d.b))]; end <= len(d.b) && c[0] == 1 && c[1] < 0x80 && c[2] < 0x80 &&
			c[3] < 0x80 && int(c[3]) == len(c)-4 {
			d.pos = end
			return cidBytes(d.s[p+5 : end]), uint64(c[1]), nil
		}
	}
	start, end, err := d.linkSpan()
	if err != nil {
		return "", 0, err
	}
	codec, err := parseCID(d.b[start:end])
	if err != nil {
		return "", 0, d.fail("invalid CID: %v", err)
	}
	return cidBytes(d.s[start:end]), codec, nil
}

// scan is a decoder's first pass over a whole node block: it checks the framing (a list of 256
// slots, nothing after it) and counts the occupied slots and the buckets. What it does not check
// (UTF-8, key order, CIDs) is left to the second pass.
func (d *nodeDecoder) scan() (occupied, buckets int, err error) {
	b := d.b
	if len(b) < 3 || b[0] != 0x99 || b[1] != 0x01 || b[2] != 0x00 {
		return 0, 0, fmt.Errorf("%w: not a list of 256 slots", ErrMalformedNode)
	}
	d.pos = 3
	for i := 0; i < numSlots; i++ {
		if err := d.skipSlot(&occupied, &buckets); err != nil {
			return 0, 0, fmt.Errorf("slot %d: %w", i, err)
		}
	}
	if d.pos != len(b) {
		return 0, 0, d.fail("%d trailing bytes after the node", len(b)-d.pos)
	}
	return occupied, buckets, nil
}

// decodeNode parses a node block. Anything but the exact encoding of a valid node is
// ErrMalformedNode: wrong shape, non-canonical CBOR, unordered or duplicate keys, empty buckets,
// links to non-dag-cbor blocks, trailing bytes.
func decodeNode(b []byte) (*node, error) { return decodeNodeIn(b, false) }

// decodeLoadedNode is decodeNode over a block the caller owns and nobody changes, as CAS.Load
// returns it: the node's buckets and CIDs are substrings of b itself, not of a copy, which saves
// a node's worth of allocation (and of the collector's work) per node a write loads.
func decodeLoadedNode(b []byte) (*node, error) { return decodeNodeIn(b, true) }

// decodeNodeIn is decodeNode, viewing b in place when owned and copying it otherwise.
func decodeNodeIn(b []byte, owned bool) (*node, error) {
	// One pass checks every slot and notes where the occupied ones are (no pointers, so the
	// notes cost no write barriers); then slots and links are allocated once each, at their
	// final sizes. Buckets are substrings of one copy of the block (or of b when owned). Runs of
	// empty slots, most of a node, are skipped eight at a time.
	if len(b) < 3 || b[0] != 0x99 || b[1] != 0x01 || b[2] != 0x00 {
		return nil, fmt.Errorf("%w: not a list of 256 slots", ErrMalformedNode)
	}
	d := nodeDecoder{b: b, pos: 3}
	if owned {
		d.s = unsafe.String(unsafe.SliceData(b), len(b))
	} else {
		d.s = string(b)
	}
	var (
		n      node
		spans  [numSlots]struct{ start, end uint32 } // a bucket's bytes, or a link's CID
		isLink [numSlots / 64]uint64                 // by position among the occupied slots
		count  int
		nlinks int
	)
	for i := 0; i < numSlots; {
		if skip := emptyRun(b, d.pos, numSlots-i); skip > 0 {
			d.pos += skip
			i += skip
			continue
		}
		start, end, link, err := d.slotFrame()
		if err != nil {
			return nil, fmt.Errorf("slot %d: %w", i, err)
		}
		n.bitmap[i>>6] |= 1 << uint(i&63)
		if link {
			isLink[count>>6] |= 1 << uint(count&63)
			nlinks++
		}
		spans[count].start, spans[count].end = uint32(start), uint32(end)
		count++
		i++
	}
	if d.pos != len(b) {
		return nil, d.fail("%d trailing bytes after the node", len(b)-d.pos)
	}
	n.slots = make([]slot, count)
	var links []link
	if nlinks > 0 {
		links = make([]link, nlinks)
	}
	for k := range n.slots {
		sp := d.s[spans[k].start:spans[k].end]
		if isLink[k>>6]&(1<<uint(k&63)) == 0 {
			n.slots[k].setBucket(sp)
			continue
		}
		l := &links[0]
		links = links[1:]
		l.id = cidBytes(sp)
		n.slots[k].setLink(l)
	}
	return &n, nil
}

// emptyRun counts the empty slots (0xa0 bytes) at b[p:], up to max of them.
func emptyRun(b []byte, p, max int) int {
	k := 0
	for k+8 <= max && p+k+8 <= len(b) {
		if x := binary.LittleEndian.Uint64(b[p+k:]) ^ 0xa0a0a0a0a0a0a0a0; x != 0 {
			return k + bits.TrailingZeros64(x)/8
		}
		k += 8
	}
	for k < max && p+k < len(b) && b[p+k] == 0xa0 {
		k++
	}
	return k
}

// slotFrame decodes one occupied slot at d.pos, checking it as skipSlot and slot do together, and
// returns where its bytes are: a bucket's whole encoding, or a link's CID (link true).
func (d *nodeDecoder) slotFrame() (start, end int, link bool, err error) {
	if d.pos >= len(d.b) {
		return 0, 0, false, d.fail("unexpected end of block")
	}
	if d.b[d.pos] == 0x81 {
		d.pos++
		start, end, err := d.linkSpan()
		if err != nil {
			return 0, 0, false, err
		}
		codec, err := parseCID(d.b[start:end])
		if err != nil {
			return 0, 0, false, d.fail("invalid CID: %v", err)
		}
		if codec != uint64(multicodec.DagCbor) {
			return 0, 0, false, d.fail("link to a child node must be dag-cbor, got codec 0x%x", codec)
		}
		return start, end, true, nil
	}
	start = d.pos
	major, n, err := d.head()
	if err != nil {
		return 0, 0, false, err
	}
	if major != majorMap {
		return 0, 0, false, d.fail("a slot must be a map or a one-element list, got major type %d", major)
	}
	var prev string
	for j := uint64(0); j < n; j++ {
		major, kl, err := d.head()
		if err != nil {
			return 0, 0, false, err
		}
		if major != majorText {
			return 0, 0, false, d.fail("bucket keys must be text strings, got major type %d", major)
		}
		ks, err := d.take(kl)
		if err != nil {
			return 0, 0, false, err
		}
		key := d.s[ks : ks+int(kl)]
		if !utf8.ValidString(key) {
			return 0, 0, false, d.fail("bucket key is not valid UTF-8")
		}
		if j > 0 && !keyLess(prev, key) {
			return 0, 0, false, d.failAs(errKeyOrder, "%q and %q", prev, key)
		}
		prev = key
		if _, _, err := d.link(); err != nil {
			return 0, 0, false, err
		}
	}
	return start, d.pos, false, nil
}

// skipSlot checks the framing of one slot and counts it if occupied.
func (d *nodeDecoder) skipSlot(occupied, buckets *int) error {
	if d.pos >= len(d.b) {
		return d.fail("unexpected end of block")
	}
	switch d.b[d.pos] {
	case 0xa0:
		d.pos++
		return nil
	case 0x81:
		d.pos++
		*occupied++
		_, _, err := d.linkSpan()
		return err
	}
	major, n, err := d.head()
	if err != nil {
		return err
	}
	if major != majorMap {
		return d.fail("a slot must be a map or a one-element list, got major type %d", major)
	}
	*occupied++
	*buckets++
	for j := uint64(0); j < n; j++ {
		major, kl, err := d.head()
		if err != nil {
			return err
		}
		if major != majorText {
			return d.fail("bucket keys must be text strings, got major type %d", major)
		}
		if _, err := d.take(kl); err != nil {
			return err
		}
		if _, _, err := d.linkSpan(); err != nil {
			return err
		}
	}
	return nil
}

// slotKind is what an occupied or empty slot holds.
type slotKind uint8

const (
	slotEmpty slotKind = iota
	slotBucket
	slotLink
)

// slot decodes one slot whose framing skipSlot has checked, taking its link from *links. A
// bucket is the substring of d.s that encodes it. With links nil it only checks the slot and
// reports its kind; that is how decodeFrozen shares these checks.
func (d *nodeDecoder) slot(links *[]link) (slot, slotKind, error) {
	switch d.b[d.pos] {
	case 0xa0:
		d.pos++
		return slot{}, slotEmpty, nil
	case 0x81:
		d.pos++
		c, codec, err := d.link()
		if err != nil {
			return slot{}, slotEmpty, err
		}
		if codec != uint64(multicodec.DagCbor) {
			return slot{}, slotEmpty, d.fail("link to a child node must be dag-cbor, got codec 0x%x", codec)
		}
		if links == nil {
			return slot{}, slotLink, nil
		}
		l := &(*links)[0]
		*links = (*links)[1:]
		l.id = c
		return linkSlot(l), slotLink, nil
	}
	start := d.pos
	_, n, _ := d.head()
	var prev string
	for j := uint64(0); j < n; j++ {
		_, kl, _ := d.head()
		start, _ := d.take(kl)
		key := d.s[start : start+int(kl)]
		if !utf8.ValidString(key) {
			return slot{}, slotEmpty, d.fail("bucket key is not valid UTF-8")
		}
		if j > 0 && !keyLess(prev, key) {
			return slot{}, slotEmpty, d.failAs(errKeyOrder, "%q and %q", prev, key)
		}
		prev = key
		if _, _, err := d.link(); err != nil {
			return slot{}, slotEmpty, err
		}
	}
	if links == nil {
		return slot{}, slotBucket, nil
	}
	return bucketSlot(d.s[start:d.pos]), slotBucket, nil
}

// memSize approximates the memory n takes: header, slots, buckets and links.
func (n *node) memSize() int64 {
	size := int64(64 + cap(n.slots)*int(unsafe.Sizeof(slot{})))
	for i := range n.slots {
		s := &n.slots[i]
		if s.link() != nil {
			size += 48 + int64(len(s.link().id))
			continue
		}
		size += int64(len(s.bucket()))
	}
	return size
}
