package hamt

import (
	"context"
	"fmt"
	"math/bits"
	"slices"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"
)

// The read cache keeps, beside each cached node, the small value blocks its entries link to, so
// that a Get or an All over nodes already read touches no store. A value block is named by its CID,
// so the bytes kept for an entry can never be stale; they are copied when kept and copied again
// for every caller, since a Codec's value may be the bytes it decoded (Bytes returns them) and a
// caller may change them.
//
// Memory: a node's values count against the cache budget (WithCacheBytes) of the shard that holds
// the node: its table (4 bytes per occupied slot and per entry) when the table is made, then its
// data block, sized at the first value kept for every entry of that size (each value takes its
// length plus 4, rounded up to 8) and grown by half when full. Values only fill the room the nodes
// leave: a value that does not fit is not kept, and a node that needs room first drops the value
// tables of its shard, oldest first (tabled), then evicts nodes as before, deepest first. A node's
// values leave the cache with it. Values of UnixFS files (dag-pb) and blocks larger than
// maxCachedValue are never kept.
//
// A Get also marks the entry it found as on its hash path (read): a Get hashed the key and
// followed its slots to the node. Once every entry of a node is marked, a walk need not hash the
// node's keys again to check them (walkChecked), as after a walk.

// maxCachedValue is the largest value block the read cache keeps.
const maxCachedValue = 4 << 10

// nodeValues is the value table of one cached frozenNode. Its entries are numbered j in eachEntry
// order. The values are kept in one block, data, made when the first is kept, with room for every
// entry's value if they are the size of that first one (see keep for more); each kept value takes
// the next free bytes of data, its length (4 bytes) then its bytes, rounded up to 8. So a node's
// values cost one allocation, without pointers for the garbage collector to follow, and a Get
// that finds one touches the table and one place in data.
type nodeValues struct {
	occ, entries int
	// idx[k], k < occ: the number of the first entry of the k-th occupied slot (its bucket);
	// idx[occ+j]: the state of entry j's value (valueEmpty or valueKept, in the bits valueState), valueOnPath set when a Get found entry j on its hash path at position pos (see
	// treeCheck.position), valueSeen once a Get read it (see read), and from bit valueAtShift on
	// where in data the value is, once kept.
	idx  []atomic.Uint32
	data atomic.Pointer[byte]
	// dataMu serializes keeps (and all writes of idx[occ:]); size, used (the bytes of data
	// taken) and kept (the values kept) are under it.
	dataMu     sync.Mutex
	size, used uint32
	kept       int
	// bytes is the memory counted against home, the node's cache shard, for this table and its
	// values; -1 once the values were dropped, when nothing more is kept.
	bytes   atomic.Int64
	home    *cacheShard
	pos     uint64 // under dataMu, as pathCnt: how many entries are marked valueOnPath
	pathCnt int
}

const (
	valueEmpty   = 0
	valueKept    = 2
	valueState   = 3 // the bits of the state
	valueOnPath  = 4
	valueAtShift = 8
	// maxValueData is the largest data block: offsets must fit the bits above valueAtShift.
	maxValueData = 1 << (32 - valueAtShift)
)

// valuesLeft marks a node that has left the cache: its values are no longer kept.
var valuesLeft = &nodeValues{}

// valueTableSize is the memory of the value table of a node of occ occupied slots and entries
// entries (and of its place in its shard's tabled).
func valueTableSize(occ, entries int) int64 {
	return int64(unsafe.Sizeof(nodeValues{})) + 8 + int64(occ+entries)*4
}

// valueTable returns n's value table, making it if n is cached and its shard has room for it; nil
// when values of n are not kept.
func (n *frozenNode) valueTable() *nodeValues {
	vt := n.vals.Load()
	if vt != nil {
		if vt == valuesLeft {
			return nil
		}
		return vt
	}
	s := n.home
	if s == nil {
		return nil
	}
	occ := 0
	for w := range n.occupied {
		occ += bits.OnesCount64(n.occupied[w])
	}
	if occ == 0 {
		return nil
	}
	idx := make([]atomic.Uint32, occ, occ+occ*4)
	entries := 0
	k := 0
	for w := 0; w < 4; w++ {
		for b := n.occupied[w]; b != 0; b &= b - 1 {
			idx[k].Store(uint32(entries))
			if n.links[w]&(b&-b) == 0 {
				count, _ := readHead(n.img, n.slotStart(k))
				entries += count
			}
			k++
		}
	}
	if entries == 0 {
		return nil
	}
	size := valueTableSize(occ, entries)
	if !s.roomFor(size) {
		return nil
	}
	if cap(idx) < occ+entries {
		idx = append(idx[:occ:occ], make([]atomic.Uint32, entries)...)
	} else {
		idx = idx[:occ+entries]
	}
	vt = &nodeValues{occ: occ, entries: entries, idx: idx, home: s}
	vt.bytes.Store(size)
	if !n.vals.CompareAndSwap(nil, vt) {
		return n.valueTable() // another reader made it, or the node left the cache
	}
	s.values.Add(size)
	s.mu.Lock()
	s.tabled = append(s.tabled, n)
	s.mu.Unlock()
	return vt
}

// dropValues gives back to its shard s the memory n's values were counted for, and forgets them:
// for good when n leaves the cache (left), else until a reader makes a new table. Callers hold
// s.mu.
func (n *frozenNode) dropValues(s *cacheShard, left bool) {
	var vt *nodeValues
	if left {
		vt = n.vals.Swap(valuesLeft)
	} else if vt = n.vals.Load(); vt == valuesLeft || vt == nil || !n.vals.CompareAndSwap(vt, nil) {
		return
	}
	n.valsFull.Store(false)
	if vt != nil && vt != valuesLeft {
		if b := vt.bytes.Swap(-1); b > 0 {
			s.values.Add(-b)
		}
	}
}

// account adds delta bytes to what vt is counted for, unless its values were dropped.
func (vt *nodeValues) account(delta int64) bool {
	for {
		old := vt.bytes.Load()
		if old < 0 {
			return false
		}
		if vt.bytes.CompareAndSwap(old, old+delta) {
			vt.home.values.Add(delta)
			return true
		}
	}
}

// entry returns the number of the i-th entry of the bucket in the k-th occupied slot.
func (vt *nodeValues) entry(k, i int) int { return int(vt.idx[k].Load()) + i }

// get returns entry j's kept value bytes, which the caller must not change, or nil.
func (vt *nodeValues) get(j int) []byte {
	st := vt.idx[vt.occ+j].Load()
	if st&valueState != valueKept {
		return nil
	}
	p := unsafe.Add(unsafe.Pointer(vt.data.Load()), st>>valueAtShift)
	n := *(*uint32)(p) // the length keep wrote before the bytes
	return unsafe.Slice((*byte)(unsafe.Add(p, 4)), n)
}

// keepSize is the room a kept value of n bytes takes in data.
func keepSize(n int) int { return (4 + n + 7) &^ 7 }

// keep records b as entry j's value, copying it, if its shard has room (b nil: nothing to keep);
// and, when pos is not 0, that a Get found entry j on its hash path, n being at position pos:
// once every entry of n has been found at one position, n counts as checked there (walkChecked),
// as if a walk had hashed its keys, since a Get hashed each and followed its slots to n.
//
// Keeps of one node take turns (dataMu), so the state words are only written under it (readers
// load them atomically). data grows (by half, at least) when full, the values kept so far copied at
// the same offsets, so a reader holding the old block or the new reads the same bytes.
func (vt *nodeValues) keep(n *frozenNode, j int, b []byte, pos uint64) {
	st := &vt.idx[vt.occ+j]
	old := st.Load()
	mark := pos != 0 && old&valueOnPath == 0 && n.checkedAt.Load() != pos
	keep := b != nil && len(b) <= maxCachedValue && old&valueState == valueEmpty
	if !mark && !keep {
		return
	}
	vt.dataMu.Lock()
	defer vt.dataMu.Unlock()
	old = st.Load()
	now := old
	if mark && old&valueOnPath == 0 && (vt.pos == 0 || vt.pos == pos) { // else: a node met at two positions, which the walk's checks will find
		vt.pos = pos
		now |= valueOnPath
		if vt.pathCnt++; vt.pathCnt == vt.entries {
			n.checkedAt.Store(pos)
		}
	}
	if keep && old&valueState == valueEmpty {
		if at, ok := vt.place(b); ok {
			now += valueKept + at<<valueAtShift
			if vt.kept++; vt.kept == vt.entries && n.vals.Load() == vt {
				n.valsFull.Store(true)
			}
		}
	}
	if now != old {
		st.Store(now)
	}
}

// place copies b into data, growing it if need be, and returns where. Callers hold dataMu.
func (vt *nodeValues) place(b []byte) (uint32, bool) {
	need := uint32(keepSize(len(b)))
	d := vt.data.Load()
	if vt.used+need > vt.size {
		size := int64(vt.entries) * int64(need) // the first: room for every value of this size
		if d != nil {
			size = max(int64(vt.size)*3/2, int64(vt.used+need))
		}
		size = min(size, maxValueData)
		if size < int64(vt.used+need) || !vt.home.roomFor(size-int64(vt.size)) || !vt.account(size-int64(vt.size)) {
			return 0, false
		}
		buf := make([]byte, size)
		if d != nil {
			copy(buf, unsafe.Slice(d, vt.used))
		}
		d = &buf[0]
		vt.size = uint32(size)
		vt.data.Store(d)
	}
	at := vt.used
	vt.used += need
	dst := unsafe.Slice((*byte)(unsafe.Add(unsafe.Pointer(d), at)), need)
	*(*uint32)(unsafe.Pointer(&dst[0])) = uint32(len(b))
	copy(dst[4:], b)
	return at, true
}

// hashPosition is treeCheck.position for the node a lookup of hash h reaches at depth.
func hashPosition(h []byte, depth int) uint64 {
	if depth > 7 || depth > len(h) {
		return 0
	}
	pos := uint64(depth+1) << 56
	for d, s := range h[:depth] {
		pos |= uint64(s) << (8 * d)
	}
	return pos
}

// getRead is Get in read-only mode: the lookup, then the value from n's kept values when there,
// else from the store, kept for the next reader.
func (m *Map[V]) getRead(ctx context.Context, r *readStore, key string) (V, error) {
	var zero V
	var buf [32]byte
	h, err := m.hasher.hash(key, &buf)
	if err != nil {
		return zero, err
	}
	id, n, k, at, depth, err := r.lookupAt(ctx, key, h)
	if err != nil {
		return zero, fmt.Errorf("get %q: %w", key, err)
	}
	if id == "" {
		return zero, fmt.Errorf("get %q: %w", key, ErrNotFound)
	}
	stats := r.cache.stats // a value is a hit when read from the cache, else a miss
	if isDagPb(id) || n.valsFull.Load() && !r.slowValues() {
		stats.count(false)
		return m.value(ctx, key, id) // every value of n is kept already: nothing to record
	}
	vt := n.valueTable()
	if vt == nil {
		stats.count(false)
		return m.value(ctx, key, id)
	}
	j := vt.entry(k, bucketIndex(n.img, n.slotStart(k), at))
	if r.slowValues() {
		if b := vt.get(j); b != nil {
			stats.count(true)
			return m.decode(key, id, slices.Clone(b))
		}
	}
	stats.count(false)
	var t time.Time
	if h[len(h)-1]%valueTimeSample == 0 { // some keys, not a shared counter: Gets run in parallel
		t = time.Now()
	}
	b, err := m.valueBlock(ctx, key, id)
	if err != nil {
		return zero, err
	}
	if !t.IsZero() {
		r.valueLat.since(t)
	}
	vt.keep(n, j, b, hashPosition(h, depth))
	return m.decode(key, id, b)
}

// valueTimeSample: Get times the store's load of a value for one key in about valueTimeSample.
const valueTimeSample = 32

// slowValueLoad is the time of a value load above which Get reads a value the cache keeps rather
// than the store. Below it (memory, a local bbolt file: a few hundred nanoseconds) the store is
// as fast as the cache, whose table and value are memory the lookup has not touched yet; above it
// (Kubo, a gateway: a round trip) the kept value saves the load.
const slowValueLoad = 2 * time.Microsecond

// slowValues reports whether the store's value loads are slow enough for Get to read kept values.
func (r *readStore) slowValues() bool { return r.valueLat.ns.Load() > int64(slowValueLoad) }

// bucketIndex returns the position in the bucket encoded at s[p:] of its entry that starts at at.
func bucketIndex(s string, p, at int) int {
	_, p = readHead(s, p)
	i := 0
	for ; p < at; i++ {
		kl, q := readHead(s, p)
		_, p = readLink(s, q+kl)
	}
	return i
}
