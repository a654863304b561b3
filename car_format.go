package hamt

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/fxamacker/cbor/v2"
	"github.com/ipfs/go-cid"
	"github.com/multiformats/go-multihash"
	"github.com/multiformats/go-varint"
)

// This file reads and writes the CAR format (CARv1, and the CARv1 payload of a CARv2): a
// varint-prefixed DAG-CBOR header {roots, version}, then sections, each a varint length, a CID and
// the block's bytes. It was go-car's job; go-car's root package pulls go-ipld-prime, boxo, refmt
// and two more CBOR stacks into every program that links the library, for a header and a loop.
// The reader accepts no CAR that go-car's BlockReader refuses and reads the same roots and blocks
// (car_format_test.go, also under fuzzing); the writer writes go-car's bytes (storage.NewWritable
// with WriteAsCarV1): identity CIDs are left out, a block whose multihash was written is not
// written again.

// CAR limits, go-car's defaults: the header, and a section (CID and block), may take at most
// these many bytes; a section's CID at most carMaxCID.
const (
	carMaxHeader  = 32 << 20
	carMaxSection = 8 << 20
	carMaxCID     = 2 << 10
)

// carV2HeaderSize is the size of a CARv2's pragma and fixed header, which its data follows.
const carV2HeaderSize = 11 + 40

// carReader reads the sections of a CAR stream in order.
type carReader struct {
	data    carSectionSource // r, limited to the CARv1 payload's size in a CARv2
	version uint64           // 1 or 2
	roots   []cid.Cid
	// dataEnd is where a CARv2's payload ends (its data offset plus data size), 0 for a CARv1.
	dataEnd int64
}

// carSectionSource is what sections are read from.
type carSectionSource interface {
	io.Reader
	io.ByteReader
}

// carByteReader is a reader limited to n more bytes: a CARv2's payload.
type carByteReader struct {
	r carSectionSource
	n int64
}

func (l *carByteReader) Read(p []byte) (int, error) {
	if l.n <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > l.n {
		p = p[:l.n]
	}
	n, err := l.r.Read(p)
	l.n -= int64(n)
	return n, err
}

func (l *carByteReader) ReadByte() (byte, error) {
	if l.n <= 0 {
		return 0, io.EOF
	}
	b, err := l.r.ReadByte()
	if err == nil {
		l.n--
	}
	return b, err
}

// newCARReader reads the header of the CAR r (and of a CARv2's payload), leaving r at the first
// section. r is read byte by byte at times: a bufio.Reader, or a reader over one.
func newCARReader(r carSectionSource) (*carReader, error) {
	br := r
	c := &carReader{data: br}
	h, err := readCARHeader(br)
	if err != nil {
		return nil, err
	}
	c.version = h.version
	switch h.version {
	case 1:
		c.roots = h.roots
		return c, nil
	case 2:
	default:
		return nil, fmt.Errorf("invalid car version: %d", h.version)
	}
	var fixed [40]byte // characteristics (16 bytes), data offset, data size, index offset
	if _, err := io.ReadFull(br, fixed[:]); err != nil {
		return nil, err
	}
	off, size, index := binary.LittleEndian.Uint64(fixed[16:]), binary.LittleEndian.Uint64(fixed[24:]), binary.LittleEndian.Uint64(fixed[32:])
	switch {
	case int64(off) < carV2HeaderSize:
		return nil, fmt.Errorf("invalid data payload offset: %v", off)
	case int64(size) <= 0:
		return nil, fmt.Errorf("invalid data payload size: %v", size)
	case int64(index) < 0:
		return nil, fmt.Errorf("invalid index offset: %v", index)
	}
	// The payload starts off bytes from the start, counting the pragma as its 11 bytes, as
	// go-car counts it.
	if _, err := io.CopyN(io.Discard, br, int64(min(off-carV2HeaderSize, 1<<62))); err != nil {
		return nil, err
	}
	c.dataEnd = int64(off + size)
	limited := &carByteReader{r: br, n: int64(size)}
	c.data = limited
	inner, err := readCARHeader(limited)
	if err != nil {
		return nil, err
	}
	if inner.version != 1 {
		return nil, fmt.Errorf("invalid data payload header version; expected 1, got %v", inner.version)
	}
	c.roots = inner.roots
	return c, nil
}

// carHeader is a decoded CAR header.
type carHeader struct {
	version uint64
	roots   []cid.Cid
}

// readCARHeader reads a varint-prefixed CAR header.
func readCARHeader(r carSectionSource) (carHeader, error) {
	l, err := varint.ReadUvarint(r)
	if err != nil {
		return carHeader{}, err
	}
	if l > carMaxHeader {
		return carHeader{}, errors.New("invalid header data, length of read beyond allowable maximum")
	}
	b := make([]byte, l)
	if _, err := io.ReadFull(r, b); err != nil {
		return carHeader{}, err
	}
	h, err := decodeCARHeader(b)
	if err != nil {
		return carHeader{}, fmt.Errorf("invalid header: %w", err)
	}
	return h, nil
}

// decodeCARHeader decodes a CAR header's DAG-CBOR: a map with an integer "version" and a list of
// links "roots" (which may be left out or null), nothing else.
func decodeCARHeader(b []byte) (carHeader, error) {
	var raw map[string]any
	if err := dagDec.Unmarshal(b, &raw); err != nil {
		return carHeader{}, err
	}
	var h carHeader
	for k := range raw {
		if k != "version" && k != "roots" {
			return carHeader{}, fmt.Errorf("unknown field %q", k)
		}
	}
	switch v := raw["version"].(type) {
	case uint64:
		h.version = v
	default:
		return carHeader{}, errors.New("no integer version")
	}
	switch rs := raw["roots"].(type) {
	case nil:
	case []any:
		for _, r := range rs {
			v, err := fromCBOR(r)
			if err != nil {
				return carHeader{}, err
			}
			c, ok := v.(cid.Cid)
			if !ok {
				return carHeader{}, fmt.Errorf("a root of type %T, want a link", v)
			}
			h.roots = append(h.roots, c)
		}
	default:
		return carHeader{}, errors.New("roots is not a list")
	}
	return h, nil
}

// nextHeader reads the next section's length and CID, leaving the reader at the block's data,
// whose length it returns: the caller reads exactly that many bytes from c.data before the next
// call. The end of the CAR is io.EOF; a CAR that ends inside a section is io.ErrUnexpectedEOF.
func (c *carReader) nextHeader() (cid.Cid, uint64, error) {
	l, err := varint.ReadUvarint(c.data)
	if err != nil {
		return cid.Undef, 0, err
	}
	if l == 0 {
		return cid.Undef, 0, errors.New("a section of no bytes, not even a CID")
	}
	n, id, err := cid.CidFromReader(io.LimitReader(c.data, int64(min(l, 1<<62))))
	if err != nil {
		return cid.Undef, 0, carCut(err)
	}
	return id, l - uint64(n), nil
}

// next reads the next section whole: its CID and its block's bytes (a section over carMaxSection
// bytes is refused before it is read).
func (c *carReader) next() (cid.Cid, []byte, error) {
	l, err := varint.ReadUvarint(c.data)
	if err != nil {
		return cid.Undef, nil, err
	}
	if l > carMaxSection {
		return cid.Undef, nil, fmt.Errorf("a section of %d bytes, more than the %d a block may take", l, carMaxSection)
	}
	b := make([]byte, l)
	if _, err := io.ReadFull(c.data, b); err != nil {
		return cid.Undef, nil, carCut(err)
	}
	n, id, err := cid.CidFromBytes(b)
	if err != nil {
		return cid.Undef, nil, err
	}
	return id, b[n:], nil
}

// carWriter writes a CARv1 as go-car's storage.NewWritable(w, roots, WriteAsCarV1(true)) does.
type carWriter struct {
	w       io.Writer
	written map[string]struct{} // the multihashes of the blocks written
	buf     []byte
}

// newCARWriter writes the header of a CARv1 naming roots to w.
func newCARWriter(w io.Writer, roots []cid.Cid) (*carWriter, error) {
	hb, err := encodeCARHeader(roots)
	if err != nil {
		return nil, err
	}
	c := &carWriter{w: w, written: map[string]struct{}{}}
	c.buf = binary.AppendUvarint(c.buf[:0], uint64(len(hb)))
	if _, err := w.Write(append(c.buf, hb...)); err != nil {
		return nil, err
	}
	return c, nil
}

// encodeCARHeader returns the DAG-CBOR of the CARv1 header {roots, version: 1}; nil roots are
// null, as go-car writes them.
func encodeCARHeader(roots []cid.Cid) ([]byte, error) {
	if roots == nil {
		return dagEnc.Marshal(map[string]any{"roots": nil, "version": 1})
	}
	rs := make([]any, len(roots))
	for i, r := range roots {
		if !r.Defined() {
			return nil, errors.New("car header: undefined root")
		}
		rs[i] = cbor.Tag{Number: cidTag, Content: append([]byte{0}, r.Bytes()...)}
	}
	return dagEnc.Marshal(map[string]any{"roots": rs, "version": 1})
}

// put writes block id unless it is an identity CID (its data is in the CID) or a block of the
// same multihash was written already.
func (c *carWriter) put(id cid.Cid, data []byte) error {
	mh := id.Hash()
	dmh, err := multihash.Decode(mh)
	if err != nil {
		return fmt.Errorf("car: %w", err)
	}
	if dmh.Code == multihash.IDENTITY {
		return nil
	}
	key := id.Bytes()
	if len(key) > carMaxCID {
		return fmt.Errorf("car: CID of %d bytes, more than %d", len(key), carMaxCID)
	}
	if _, ok := c.written[string(mh)]; ok {
		return nil
	}
	c.buf = binary.AppendUvarint(c.buf[:0], uint64(len(key)+len(data)))
	c.buf = append(c.buf, key...)
	if _, err := c.w.Write(c.buf); err != nil {
		return err
	}
	if _, err := c.w.Write(data); err != nil {
		return err
	}
	c.written[string(mh)] = struct{}{}
	return nil
}

// has reports whether put would leave block id out: an identity CID, or a multihash written.
func (c *carWriter) has(id cid.Cid) bool {
	if dmh, err := multihash.Decode(id.Hash()); err == nil && dmh.Code == multihash.IDENTITY {
		return true
	}
	_, ok := c.written[string(id.Hash())]
	return ok
}

// carCut is the error of a CAR that ends inside a section (err, from reading it, is io.EOF or
// io.ErrUnexpectedEOF), or err.
func carCut(err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("%w: the CAR ends inside a section", io.ErrUnexpectedEOF)
	}
	return err
}
