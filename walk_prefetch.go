package hamt

import (
	"container/heap"
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// A walk visits nodes one at a time, in an order fixed by the tree (see walkTree), but it need
// not load them one at a time: once a node is visited, the CIDs of its children are known, and on
// a store with latency (Kubo, a gateway: a round trip per block) they are loaded ahead, several at
// once, while the walk goes on. The order of the visits, and so of everything a walk yields, is
// the same; only the loads are speculative.
//
// What is loaded ahead is what the walk will need first: the children of every node reached, and
// of every node loaded ahead (so a walk is not held up a round trip per level), are queued in a
// heap by their place in the walk's depth-first order (fetch.key), and the loads take the first
// of them. It is bounded twice: at most walkAhead.workers loads run at once, and at most
// prefetchDepth × workers nodes are loaded or loading and not yet reached by the walk, so a walk
// holds a bounded number of nodes beyond those on its path, however wide or hostile the tree (a
// node linked from every slot is loaded at most that many times more). The heap holds the links
// still to follow of those nodes and of the nodes on the walk's path: at most 256 for each.
//
// A load ahead that fails is not an error of the walk: its error is kept with the node and given
// where the walk reaches that node, exactly as a load in place would fail there; a walk that stops
// before (a loop that breaks, an error elsewhere) never sees it. When the walk ends, for any
// reason, the loads still in flight are cancelled and their goroutines have ended before the walk
// returns.
//
// Loading ahead starts only once the store's node loads are measured slow (walkSlowLoad): memory
// and a local bbolt file answer in microseconds, about what handing a load to a goroutine costs,
// and are walked in place as before.

// DefaultWalkParallelism is how many node loads a walk overlaps by default on a store with latency.
// boxo walks a HAMT directory's shards 32 at a time too.
const DefaultWalkParallelism = 32

// WithWalkParallelism sets how many node loads a walk of the whole tree overlaps on a store with
// latency (default 32, DefaultWalkParallelism; minimum 1): Keys, All, Len and what is built on them
// (the Zarr listings, the FS view, ExportDir), and Inspect, Diff and WriteCAR when given it. It is
// also a bound on memory: a walk holds at most four times as many nodes loaded ahead of it.
// WriteCAR loads the value blocks it writes ahead the same way, and Inspect the value sizes it
// sums, up to n at once (n more per level of a UnixFS file value being written) and holding at
// most n loaded. 1 loads one node at a time. Stores that answer in microseconds (MemoryCAS, a local BoltCAS) are
// walked one node at a time whatever the setting; the order of what a walk yields never changes.
func WithWalkParallelism(n int) Option {
	return func(o *options) error {
		if n < 1 {
			return fmt.Errorf("WithWalkParallelism(%d): need at least one load at a time", n)
		}
		o.walkParallelism = n
		return nil
	}
}

// walkSlowLoad is the time of one node load from the store above which a walk loads nodes ahead.
// Below it (memory: 2–4 µs a node, a local bbolt file: 5–10 µs, measured on a busy 2-core
// machine) starting a goroutine and waiting for it would cost about what the load does; a store
// across a network takes 100 µs or more (Kubo's gateway on loopback), a remote gateway
// milliseconds.
const walkSlowLoad = 50 * time.Microsecond

// prefetchDepth is how many nodes per worker a walk may hold loaded ahead of it.
const prefetchDepth = 4

// latency is a moving average of how long a store takes to answer a load, safe for concurrent use.
// A race between two updates loses a sample, which is harmless.
type latency struct {
	ns      atomic.Int64
	samples atomic.Int64
}

// add folds one load's duration d into the average: a faster load sets it, a slower one moves it a
// quarter of the way, and by at most 4 times the average. On a busy machine a load from memory now
// and then takes a millisecond (the goroutine was not running), and the first load of a local file
// can be slow; neither must make a fast store look slow. A store that is slow (a round trip) is so
// at every load.
func (l *latency) add(d time.Duration) {
	l.samples.Add(1)
	ns := max(d.Nanoseconds(), 1)
	if old := l.ns.Load(); old > 0 && ns > old {
		ns = (3*old + min(ns, 4*old)) / 4
	}
	l.ns.Store(ns)
}

// slow reports whether loads take walkSlowLoad or more, judged on two loads at least.
func (l *latency) slow() bool {
	return l.samples.Load() >= 2 && l.ns.Load() >= int64(walkSlowLoad)
}

// since folds the time since t, when a load started, into the average.
func (l *latency) since(t time.Time) { l.add(time.Since(t)) }

// walkAhead is how a walk may load nodes ahead: up to workers at once, when lat, the store's node
// load latency, is slow. The zero walkAhead loads nothing ahead.
type walkAhead struct {
	workers int
	lat     *latency
}

// walkAhead is the map's: its WithWalkParallelism, and the latency of its node loads.
func (m *Map[V]) walkAhead() walkAhead {
	w := m.opts.walkParallelism
	if w == 0 {
		w = DefaultWalkParallelism
	}
	return walkAhead{workers: w, lat: &m.nodeLatency}
}

// toolAhead is walkAhead for a tool (Inspect, Diff, WriteCAR): the parallelism opts give, and the
// latency measured by that walk alone.
func toolAhead(opts []Option) walkAhead {
	o, err := buildOptions(opts)
	if err != nil || o.walkParallelism == 0 {
		o.walkParallelism = DefaultWalkParallelism // a bad option is reported by toolCheck
	}
	return walkAhead{workers: o.walkParallelism, lat: new(latency)}
}

// slow reports whether loads are slow enough to load ahead.
func (a walkAhead) slow() bool {
	return a.workers > 1 && a.lat != nil && a.lat.slow()
}

// prefetcher loads a walk's nodes ahead of it (see the top of this file). Only the walk's
// goroutine calls plan, queue, take and stop; the loads' goroutines touch only their own fetch and
// the fields under mu.
type prefetcher[N walkable] struct {
	parent context.Context
	// ctx, derived from the walk's parent, is what loads run under, cancelled by stop; made with
	// the first load, so that a walk that never loads ahead pays nothing for it. Under mu.
	ctx    context.Context
	cancel context.CancelFunc
	ahead  walkAhead
	// load loads the child linked from parent's k-th occupied slot at depth; it is called on
	// other goroutines, concurrently with the walk. held reports whether the walk's own child
	// would find that child in memory (nothing to load ahead); nil when it never does. adopt,
	// called by the walk, makes a loaded child the walk's, as child would, and gives its CID.
	load  func(ctx context.Context, parent N, k, depth int) (N, error)
	held  func(parent N, k int) bool
	adopt func(parent N, k int, c N) (N, cidBytes)

	mu      sync.Mutex
	queued  fetchHeap[N] // fetches not started, the one the walk needs first at the top
	running int          // fetches loading
	out     int          // fetches started and not yet taken by the walk
	stopped bool
	wg      sync.WaitGroup
}

// fetch is one child to load ahead. Its key orders it in the walk: the keys of two fetches compare
// as the walk reaches them. A node's key is its parent's followed by one component, the same
// length for all of a parent's children, that orders them as the walk takes them; so a node comes
// after its ancestors and before its next sibling's subtree (depth-first order).
type fetch[N walkable] struct {
	parent   N
	k, depth int
	key      string
	// expand: once loaded, the node's own children are queued too (and kids set), for a walk
	// that goes through the node's whole subtree.
	expand bool
	state  fetchState    // under the prefetcher's mu
	done   chan struct{} // closed once node, kids and err are set; made when the load starts
	node   N
	kids   []*fetch[N] // node's children, queued by the load (expand), in the walk's order
	err    error
}

type fetchState uint8

const (
	fetchQueued  fetchState = iota // waiting in the heap
	fetchStarted                   // loading or loaded on another goroutine
	fetchClaimed                   // taken by the walk before it started: the walk loads it
)

// fetchHeap is a min-heap of fetches by key.
type fetchHeap[N walkable] []*fetch[N]

func (h fetchHeap[N]) Len() int           { return len(h) }
func (h fetchHeap[N]) Less(i, j int) bool { return h[i].key < h[j].key }
func (h fetchHeap[N]) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *fetchHeap[N]) Push(x any)        { *h = append(*h, x.(*fetch[N])) }
func (h *fetchHeap[N]) Pop() any {
	old := *h
	f := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	return f
}

// newPrefetcher returns a prefetcher for a walk under ctx, or nil when ahead loads nothing ahead
// (parallelism 1). stop must be called when the walk ends.
func newPrefetcher[N walkable](ctx context.Context, ahead walkAhead,
	load func(ctx context.Context, parent N, k, depth int) (N, error),
	held func(parent N, k int) bool, adopt func(parent N, k int, c N) (N, cidBytes)) *prefetcher[N] {
	if ahead.workers <= 1 || ahead.lat == nil {
		return nil
	}
	return &prefetcher[N]{parent: ctx, ahead: ahead, load: load, held: held, adopt: adopt}
}

// slow reports whether p loads ahead now (the store's loads are slow). p may be nil.
func (p *prefetcher[N]) slow() bool { return p != nil && p.ahead.slow() }

// plan queues the children of n, a node at depth whose key is key, from the from-th in the walk's
// order on, for loading ahead (each expanded in turn once loaded), and returns them in the walk's
// order (from the highest slot down), nil for a child held in memory or before from; nil when
// nothing is queued. Callers check p.slow first.
func (p *prefetcher[N]) plan(n N, depth int, key string, from int) []*fetch[N] {
	kids := p.children(n, depth, key, from)
	p.queue(kids)
	return kids
}

// children makes the fetches of n's children that are not held, from the from-th on, in the
// walk's order.
func (p *prefetcher[N]) children(n N, depth int, key string, from int) []*fetch[N] {
	links, queued := 0, 0
	for slot, k := n.linkBelow(numSlots); slot >= 0; slot, k = n.linkBelow(slot) {
		if links >= from && (p.held == nil || !p.held(n, k)) {
			queued++
		}
		links++
	}
	if queued == 0 {
		return nil
	}
	all := make([]fetch[N], queued)
	order := make([]*fetch[N], links)
	i, j := 0, 0
	for slot, k := n.linkBelow(numSlots); slot >= 0; slot, k = n.linkBelow(slot) {
		if i >= from && (p.held == nil || !p.held(n, k)) {
			all[j] = fetch[N]{parent: n, k: k, depth: depth + 1, key: childKey(key, numSlots-1-slot), expand: true}
			order[i] = &all[j]
			j++
		}
		i++
	}
	return order
}

// childKey is the key of a child whose place among its parent's (key) children is c, 0 … 255.
func childKey(key string, c int) string { return key + string([]byte{byte(c)}) }

// queue adds fs (nil entries skipped) to the fetches to load, and starts what the bounds allow.
func (p *prefetcher[N]) queue(fs []*fetch[N]) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.queueLocked(fs)
	p.startLocked()
}

// queueLocked adds fs (nil entries skipped) to the heap. Callers hold mu.
func (p *prefetcher[N]) queueLocked(fs []*fetch[N]) {
	if p.stopped {
		return
	}
	for _, f := range fs {
		if f != nil {
			heap.Push(&p.queued, f)
		}
	}
}

// take gives the walk the child f stands for, with the fetches of its own children when its
// load queued them: loaded ahead (waiting for its load if need be), or loaded now by child when
// its load has not started.
func (p *prefetcher[N]) take(ctx context.Context, f *fetch[N],
	child func(ctx context.Context, parent N, k, depth int) (N, cidBytes, error)) (N, cidBytes, []*fetch[N], error) {
	p.mu.Lock()
	if f.state == fetchQueued {
		f.state = fetchClaimed
		// Every fetch before f in the walk's order has been taken by now: f is at the top of
		// the heap, or under fetches the walk claimed. Drop them with f.
		for len(p.queued) > 0 && p.queued[0].state == fetchClaimed {
			heap.Pop(&p.queued)
		}
		p.mu.Unlock()
		c, id, err := child(ctx, f.parent, f.k, f.depth)
		return c, id, nil, err
	}
	p.mu.Unlock()
	<-f.done // the load ends when ctx does: its context is derived from the walk's
	p.mu.Lock()
	p.out--
	p.startLocked()
	p.mu.Unlock()
	if f.err != nil {
		var zero N
		return zero, "", nil, f.err
	}
	c, id := p.adopt(f.parent, f.k, f.node)
	return c, id, f.kids, nil
}

// drop gives up the fetches fs (nil entries skipped), which the walk will not take: the children
// of a node whose subtree it leaves (Verify, past a node reached twice). A fetch not started is
// never loaded; one loading is waited for, and the fetches its load queued are dropped in turn,
// so the bound on loads ahead (out) is not used up by nodes no walk will reach.
func (p *prefetcher[N]) drop(fs []*fetch[N]) {
	if p == nil {
		return
	}
	for _, f := range fs {
		if f == nil {
			continue
		}
		p.mu.Lock()
		if f.state == fetchQueued {
			f.state = fetchClaimed
			p.mu.Unlock()
			continue
		}
		p.mu.Unlock()
		<-f.done // the load ends when the walk's context does
		p.mu.Lock()
		p.out--
		p.startLocked()
		p.mu.Unlock()
		p.drop(f.kids)
	}
}

// startLocked starts loads from the top of the heap while the bounds allow. Callers hold mu.
func (p *prefetcher[N]) startLocked() {
	for p.running < p.ahead.workers {
		f := p.nextLocked()
		if f == nil {
			return
		}
		if p.ctx == nil {
			p.ctx, p.cancel = context.WithCancel(p.parent)
		}
		p.wg.Add(1)
		go p.run(p.ctx, f)
	}
}

// nextLocked pops the next fetch to load and marks it started, or returns nil when the bounds or
// an empty heap say to wait. Callers hold mu.
func (p *prefetcher[N]) nextLocked() *fetch[N] {
	if p.stopped || p.out >= prefetchDepth*p.ahead.workers {
		return nil
	}
	for len(p.queued) > 0 {
		f := heap.Pop(&p.queued).(*fetch[N])
		if f.state != fetchQueued {
			continue // claimed by the walk
		}
		f.state = fetchStarted
		f.done = make(chan struct{})
		p.running++
		p.out++
		return f
	}
	return nil
}

// run loads f (and queues its children) under ctx, then the next fetches in the heap while there
// are some to load.
func (p *prefetcher[N]) run(ctx context.Context, f *fetch[N]) {
	defer p.wg.Done()
	for f != nil {
		f.node, f.err = p.load(ctx, f.parent, f.k, f.depth)
		if f.err == nil && f.expand {
			f.kids = p.children(f.node, f.depth, f.key, 0)
		}
		p.mu.Lock()
		p.queueLocked(f.kids)
		close(f.done)
		p.running--
		f = p.nextLocked()
		p.startLocked() // the children may keep more workers busy
		p.mu.Unlock()
	}
}

// stop cancels the loads in flight and waits for their goroutines to end. p may be nil.
func (p *prefetcher[N]) stop() {
	if p == nil {
		return
	}
	p.mu.Lock()
	if p.cancel != nil {
		p.cancel()
	}
	p.stopped = true
	clear(p.queued)
	p.queued = nil
	p.mu.Unlock()
	p.wg.Wait()
}
