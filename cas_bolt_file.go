package hamt

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"os"
	"sort"
)

// This file knows the layout of a bbolt file (format version 2, bbolt 1.3 to 1.5), enough to check
// what bbolt itself trusts: bbolt reads its pages straight from a memory map and believes every
// page id, count and offset it finds, so a damaged file makes it fault (a page past the end of a
// truncated file is SIGBUS) or loop, where this code gives ErrCorrupt. It reads the file with
// ReadAt, never through the map, so it cannot fault itself.
//
// A page starts with a 16-byte header: id u64, flags u16, count u16, overflow u32 (the pages
// after it that belong to it). Page 0 and 1 are meta pages; the meta after the header is magic
// u32, version u32, page size u32, flags u32, root bucket {root page u64, sequence u64}, freelist
// page u64, high-water mark u64 (pages in use: the file must hold them), txid u64, checksum u64
// (FNV-64a of the meta before it). bbolt uses the valid meta of the higher txid. Integers are in
// the machine's byte order.

const (
	boltPageHeaderSize = 16
	boltElementSize    = 16 // a branch element (pos, ksize u32, page u64) or a leaf element (flags, pos, ksize, vsize u32)
	boltBucketHeader   = 16 // a bucket's value: its root page u64 (0: inline, its page follows) and sequence u64

	boltBranchPage   = 0x01
	boltLeafPage     = 0x02
	boltFreelistPage = 0x10
	boltBucketLeaf   = 0x01 // a leaf element whose value is a bucket

	boltMagic        = 0xED0CDAED
	boltVersion      = 2
	boltNoFreelist   = ^uint64(0)
	boltMaxTreeDepth = 64 // far deeper than any real bbolt tree (a 4 KiB page holds hundreds of keys)
)

var boltEndian = binary.NativeEndian

// boltMeta is the part of a meta page this file uses.
type boltMeta struct {
	pageSize uint32
	root     uint64 // page of the root bucket
	freelist uint64
	pgid     uint64 // high-water mark
	txid     uint64
	valid    bool
}

func boltParseMeta(page []byte) boltMeta {
	if len(page) < boltPageHeaderSize+64 {
		return boltMeta{}
	}
	m := page[boltPageHeaderSize:]
	h := fnv.New64a()
	_, _ = h.Write(m[:56])
	return boltMeta{
		pageSize: boltEndian.Uint32(m[8:]),
		root:     boltEndian.Uint64(m[16:]),
		freelist: boltEndian.Uint64(m[32:]),
		pgid:     boltEndian.Uint64(m[40:]),
		txid:     boltEndian.Uint64(m[48:]),
		valid: boltEndian.Uint32(m[0:]) == boltMagic && boltEndian.Uint32(m[4:]) == boltVersion &&
			boltEndian.Uint64(m[56:]) == h.Sum64(),
	}
}

// boltFile is a bbolt file open for checking its layout.
type boltFile struct {
	f    *os.File
	size int64
	meta boltMeta // the one bbolt uses
}

// boltCorruptf is an error wrapping ErrCorrupt that says the file is damaged.
func boltCorruptf(format string, args ...any) error {
	return fmt.Errorf("%w: damaged bbolt file: %s", ErrCorrupt, fmt.Sprintf(format, args...))
}

// openBoltFile opens path and finds the meta page bbolt will use. A file with no valid meta
// page is not an error here (found is false): bbolt refuses it cleanly.
func openBoltFile(path string) (bf *boltFile, found bool, err error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, false, err
	}
	defer func() {
		if err != nil || !found {
			_ = f.Close()
		}
	}()
	info, err := f.Stat()
	if err != nil {
		return nil, false, err
	}
	bf = &boltFile{f: f, size: info.Size()}
	read := func(off int64) []byte {
		buf := make([]byte, boltPageHeaderSize+64)
		if _, err := f.ReadAt(buf, off); err != nil {
			return nil
		}
		return buf
	}
	// As bbolt does: the page size from meta 0, else from a meta 1 at any power of two.
	m0 := boltParseMeta(read(0))
	pageSize := int64(m0.pageSize)
	if !m0.valid {
		pageSize = 0
		for i := range 15 {
			if m := boltParseMeta(read(1024 << i)); m.valid {
				pageSize = int64(m.pageSize)
				break
			}
		}
	}
	if pageSize < 1024 || pageSize&(pageSize-1) != 0 || pageSize > 1<<24 {
		return nil, false, nil
	}
	m1 := boltParseMeta(read(pageSize))
	a, b := m0, m1
	if m1.txid > m0.txid {
		a, b = m1, m0
	}
	switch {
	case a.valid:
		bf.meta = a
	case b.valid:
		bf.meta = b
	default:
		return nil, false, nil
	}
	if int64(bf.meta.pageSize) != pageSize {
		return nil, false, boltCorruptf("the meta pages disagree on the page size")
	}
	return bf, true, nil
}

func (bf *boltFile) Close() error { return bf.f.Close() }

// checkMeta checks what bbolt trusts on open: that the file holds every page the meta counts
// (a truncated file would fault when read), and that the root and the freelist are among them.
// With freelistIDs it also checks the ids the freelist holds, which a read-write open hands out
// as pages to write.
func (bf *boltFile) checkMeta(freelistIDs bool) error {
	m, ps := bf.meta, int64(bf.meta.pageSize)
	if m.pgid < 4 || m.pgid > uint64(bf.size/ps) {
		return boltCorruptf("the file is %d bytes but its meta page counts %d pages of %d bytes: it was truncated", bf.size, m.pgid, ps)
	}
	if m.root < 2 || m.root >= m.pgid {
		return boltCorruptf("root page %d is outside the file's %d pages", m.root, m.pgid)
	}
	if m.freelist == boltNoFreelist {
		return boltCorruptf("no freelist: a hamt store always writes it")
	}
	hdr, err := bf.header(m.freelist)
	if err != nil {
		return err
	}
	if hdr.flags != boltFreelistPage {
		return boltCorruptf("freelist page %d has flags %#x", m.freelist, hdr.flags)
	}
	start, count := int64(boltPageHeaderSize), uint64(hdr.count)
	if hdr.count == 0xFFFF { // the count is in the first element
		b, err := bf.bytes(m.freelist, boltPageHeaderSize, 8)
		if err != nil {
			return err
		}
		start, count = boltPageHeaderSize+8, boltEndian.Uint64(b)
	}
	span := (int64(hdr.overflow) + 1) * ps
	if count > uint64(span-start)/8 {
		return boltCorruptf("freelist page %d counts %d ids, more than its %d bytes hold", m.freelist, count, span)
	}
	if !freelistIDs || count == 0 {
		return nil
	}
	ids, err := bf.bytes(m.freelist, start, int64(count)*8)
	if err != nil {
		return err
	}
	prev := uint64(1)
	for i := range count {
		id := boltEndian.Uint64(ids[8*i:])
		if id <= prev || id >= m.pgid {
			return boltCorruptf("freelist page %d lists page %d out of order or outside the file's %d pages", m.freelist, id, m.pgid)
		}
		prev = id
	}
	return nil
}

type boltPageHeader struct {
	id       uint64
	flags    uint16
	count    uint16
	overflow uint32
}

// header reads the header of page id, checking that the page and its overflow lie within the
// high-water mark and that it names itself id.
func (bf *boltFile) header(id uint64) (boltPageHeader, error) {
	if id < 2 || id >= bf.meta.pgid {
		return boltPageHeader{}, boltCorruptf("page %d is outside the file's %d pages", id, bf.meta.pgid)
	}
	var b [boltPageHeaderSize]byte
	if _, err := bf.f.ReadAt(b[:], int64(id)*int64(bf.meta.pageSize)); err != nil {
		return boltPageHeader{}, boltCorruptf("read page %d: %v", id, err)
	}
	return bf.parseHeader(id, b[:])
}

// parseHeader is header for a page whose first bytes, b, the caller has read.
func (bf *boltFile) parseHeader(id uint64, b []byte) (boltPageHeader, error) {
	h := boltPageHeader{boltEndian.Uint64(b[0:]), boltEndian.Uint16(b[8:]), boltEndian.Uint16(b[10:]), boltEndian.Uint32(b[12:])}
	if h.id != id {
		return h, boltCorruptf("page %d names itself %d", id, h.id)
	}
	if uint64(h.overflow) >= bf.meta.pgid-id {
		return h, boltCorruptf("page %d runs %d pages past the file's %d", id, h.overflow, bf.meta.pgid)
	}
	return h, nil
}

// bytes reads n bytes at offset off of page id (whose span the caller has checked).
func (bf *boltFile) bytes(id uint64, off, n int64) ([]byte, error) {
	b := make([]byte, n)
	if _, err := bf.f.ReadAt(b, int64(id)*int64(bf.meta.pageSize)+off); err != nil && !(errors.Is(err, io.EOF) && n == 0) {
		return nil, boltCorruptf("read page %d: %v", id, err)
	}
	return b, nil
}

// checkTree walks every branch and leaf page the root bucket reaches, and the buckets inside,
// checking what bbolt's own Check (tx.Check) and its cursors trust without checking: every page
// lies within the high-water mark, names itself, is a branch or a leaf, is reached once (no
// cycles), and its elements, keys and values lie within it. After it passes, tx.Check cannot
// fault or loop. It reads keys, never values, except a bucket's.
func (bf *boltFile) checkTree() error {
	seen := make(map[uint64]bool)
	return bf.checkPage(bf.meta.root, seen, 0)
}

func (bf *boltFile) checkPage(id uint64, seen map[uint64]bool, depth int) error {
	if depth > boltMaxTreeDepth {
		return boltCorruptf("tree deeper than %d at page %d", boltMaxTreeDepth, id)
	}
	h, err := bf.header(id)
	if err != nil {
		return err
	}
	for i := uint64(0); i <= uint64(h.overflow); i++ {
		if seen[id+i] {
			return boltCorruptf("page %d is reached twice", id+i)
		}
		seen[id+i] = true
	}
	span := (int64(h.overflow) + 1) * int64(bf.meta.pageSize)
	n := int64(h.count)
	if boltPageHeaderSize+n*boltElementSize > span {
		return boltCorruptf("page %d counts %d elements, more than it holds", id, n)
	}
	elems, err := bf.bytes(id, boltPageHeaderSize, n*boltElementSize)
	if err != nil {
		return err
	}
	switch h.flags {
	case boltBranchPage:
		if n == 0 {
			return boltCorruptf("branch page %d is empty", id)
		}
		for i := range n {
			e := elems[i*boltElementSize:]
			at := boltPageHeaderSize + i*boltElementSize
			pos, ksize := int64(boltEndian.Uint32(e[0:])), int64(boltEndian.Uint32(e[4:]))
			if at+pos+ksize > span {
				return boltCorruptf("branch page %d: key %d lies outside the page", id, i)
			}
			if err := bf.checkPage(boltEndian.Uint64(e[8:]), seen, depth+1); err != nil {
				return err
			}
		}
		return nil
	case boltLeafPage:
		for i := range n {
			e := elems[i*boltElementSize:]
			at := boltPageHeaderSize + i*boltElementSize
			flags, pos := boltEndian.Uint32(e[0:]), int64(boltEndian.Uint32(e[4:]))
			ksize, vsize := int64(boltEndian.Uint32(e[8:])), int64(boltEndian.Uint32(e[12:]))
			if at+pos+ksize+vsize > span {
				return boltCorruptf("leaf page %d: element %d lies outside the page", id, i)
			}
			if flags&boltBucketLeaf == 0 {
				continue
			}
			v, err := bf.bytes(id, at+pos+ksize, vsize)
			if err != nil {
				return err
			}
			if err := bf.checkBucket(v, seen, depth+1); err != nil {
				return fmt.Errorf("leaf page %d, bucket %d: %w", id, i, err)
			}
		}
		return nil
	}
	return boltCorruptf("page %d has flags %#x, neither branch nor leaf", id, h.flags)
}

// checkBucket checks a bucket's value: a root page, or an inline leaf page after the header.
func (bf *boltFile) checkBucket(v []byte, seen map[uint64]bool, depth int) error {
	if len(v) < boltBucketHeader {
		return boltCorruptf("a bucket value of %d bytes", len(v))
	}
	if root := boltEndian.Uint64(v); root != 0 {
		return bf.checkPage(root, seen, depth)
	}
	if depth > boltMaxTreeDepth {
		return boltCorruptf("buckets nested deeper than %d", boltMaxTreeDepth)
	}
	p := v[boltBucketHeader:]
	if err := boltInlinePage(p); err != nil {
		return err
	}
	for i := range int64(boltEndian.Uint16(p[10:])) {
		at := boltPageHeaderSize + i*boltElementSize
		e := p[at:]
		flags, pos := boltEndian.Uint32(e[0:]), int64(boltEndian.Uint32(e[4:]))
		ksize, vsize := int64(boltEndian.Uint32(e[8:])), int64(boltEndian.Uint32(e[12:]))
		if flags&boltBucketLeaf != 0 {
			if err := bf.checkBucket(p[at+pos+ksize:at+pos+ksize+vsize], seen, depth+1); err != nil {
				return err
			}
		}
	}
	return nil
}

// boltInlinePage checks the page of an inline bucket, held in the bucket's value: a leaf whose
// elements lie within it.
func boltInlinePage(p []byte) error {
	if len(p) < boltPageHeaderSize {
		return boltCorruptf("an inline bucket of %d bytes", len(p))
	}
	flags, n := boltEndian.Uint16(p[8:]), int64(boltEndian.Uint16(p[10:]))
	if flags != boltLeafPage {
		return boltCorruptf("an inline bucket with page flags %#x", flags)
	}
	span := int64(len(p))
	if boltPageHeaderSize+n*boltElementSize > span {
		return boltCorruptf("an inline bucket counts %d elements, more than it holds", n)
	}
	for i := range n {
		at := boltPageHeaderSize + i*boltElementSize
		e := p[at:]
		pos := int64(boltEndian.Uint32(e[4:]))
		ksize, vsize := int64(boltEndian.Uint32(e[8:])), int64(boltEndian.Uint32(e[12:]))
		if at+pos+ksize+vsize > span {
			return boltCorruptf("an inline bucket's element %d lies outside it", i)
		}
	}
	return nil
}

// leafValue returns the value bbolt's cursor finds for key in leaf page id, and whether it is a
// bucket: that of the element its binary search lands on, if that element's key is key (nil
// and false otherwise).
func (bf *boltFile) leafValue(id uint64, key []byte) (v []byte, bucket bool, err error) {
	h, err := bf.header(id)
	if err != nil {
		return nil, false, err
	}
	if h.flags != boltLeafPage {
		return nil, false, boltCorruptf("page %d has flags %#x, not a leaf", id, h.flags)
	}
	p, err := bf.bytes(id, 0, (int64(h.overflow)+1)*int64(bf.meta.pageSize))
	if err != nil {
		return nil, false, err
	}
	n := int(h.count)
	if boltPageHeaderSize+n*boltElementSize > len(p) {
		return nil, false, boltCorruptf("page %d counts %d elements, more than it holds", id, n)
	}
	// elem returns element i's flags, key and value, or ok false if they lie outside the page.
	elem := func(i int) (flags uint32, k, v []byte, ok bool) {
		at := boltPageHeaderSize + i*boltElementSize
		e := p[at:]
		pos, ksize, vsize := int(boltEndian.Uint32(e[4:])), int(boltEndian.Uint32(e[8:])), int(boltEndian.Uint32(e[12:]))
		if at+pos+ksize+vsize > len(p) {
			return 0, nil, nil, false
		}
		return boltEndian.Uint32(e[0:]), p[at+pos : at+pos+ksize], p[at+pos+ksize : at+pos+ksize+vsize], true
	}
	for i := range n {
		if _, _, _, ok := elem(i); !ok {
			return nil, false, boltCorruptf("leaf page %d: element %d lies outside the page", id, i)
		}
	}
	i := sort.Search(n, func(i int) bool {
		_, k, _, _ := elem(i)
		return bytes.Compare(k, key) >= 0
	})
	if i == n {
		return nil, false, nil
	}
	flags, k, v, _ := elem(i)
	if !bytes.Equal(k, key) {
		return nil, false, nil
	}
	return v, flags&boltBucketLeaf != 0, nil
}

// treePage checks branch or leaf page id, on the path of a lookup (see boltPathState.path),
// and returns its bytes up to the end of its last key if it is a branch, nil if it is a leaf.
// The page must name itself, be a branch or a leaf, hold its elements and their keys and values,
// and span no more pages than they fill: bbolt writes a node to exactly as many pages as it
// needs, and a write frees the old page of every node on the paths to the keys it puts with its
// overflow run, believing the count in its header (a count of billions makes it allocate until
// the process dies, which no recover catches); so what a commit frees is bounded by what the
// file holds. first is a page-sized buffer it reads the page's first page into: that holds the
// header and, but for a large page, the elements and keys, so most pages take one read.
func (bf *boltFile) treePage(id uint64, first []byte) ([]byte, error) {
	if id < 2 || id >= bf.meta.pgid {
		return nil, boltCorruptf("page %d is outside the file's %d pages", id, bf.meta.pgid)
	}
	if _, err := bf.f.ReadAt(first, int64(id)*int64(bf.meta.pageSize)); err != nil {
		return nil, boltCorruptf("read page %d: %v", id, err)
	}
	h, err := bf.parseHeader(id, first)
	if err != nil {
		return nil, err
	}
	if h.flags != boltBranchPage && h.flags != boltLeafPage {
		return nil, boltCorruptf("page %d has flags %#x, neither branch nor leaf", id, h.flags)
	}
	ps := int64(bf.meta.pageSize)
	span, n := (int64(h.overflow)+1)*ps, int64(h.count)
	if h.flags == boltBranchPage && n == 0 {
		return nil, boltCorruptf("branch page %d is empty", id)
	}
	end := boltPageHeaderSize + n*boltElementSize
	if end > span {
		return nil, boltCorruptf("page %d counts %d elements, more than it holds", id, n)
	}
	elems := first[boltPageHeaderSize:min(end, ps)]
	if end > ps {
		if elems, err = bf.bytes(id, boltPageHeaderSize, n*boltElementSize); err != nil {
			return nil, err
		}
	}
	for i := range n {
		e := elems[i*boltElementSize:]
		at := boltPageHeaderSize + i*boltElementSize
		e0, e1, e2 := int64(boltEndian.Uint32(e[0:])), int64(boltEndian.Uint32(e[4:])), int64(boltEndian.Uint32(e[8:]))
		// A branch element is pos, ksize, page; a leaf element flags, pos, ksize, vsize.
		last := at + e0 + e1
		if h.flags == boltLeafPage {
			last = at + e1 + e2 + int64(boltEndian.Uint32(e[12:]))
		}
		if last > span {
			return nil, boltCorruptf("page %d: element %d lies outside the page", id, i)
		}
		end = max(end, last)
	}
	if span-end >= ps {
		return nil, boltCorruptf("page %d runs %d pages, more than its %d bytes fill", id, h.overflow+1, end)
	}
	if h.flags == boltLeafPage {
		return nil, nil
	}
	if end <= ps {
		return bytes.Clone(first[:end]), nil
	}
	return bf.bytes(id, 0, end)
}
