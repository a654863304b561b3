package hamt

import (
	"context"
	"sync"
	"time"

	"github.com/ipfs/go-cid"
)

// shardsAhead loads the shards a sharded listing (chunkKeys) will read next while it lists the
// current one, as a walk loads nodes ahead (walk_prefetch.go): only once a shard load is measured
// slow (walkSlowLoad: Kubo, a gateway; a cached shard or a local store answer in microseconds), at
// most DefaultWalkParallelism at once, and at most shardsAheadEntries entries' worth of shards
// loaded and not yet listed. A load ahead that fails is reported where the listing reaches that
// shard, never before; stop cancels what is in flight and waits for it.
type shardsAhead struct {
	parent context.Context
	// ctx, derived from parent, is what loads ahead run under; made with the first of them.
	ctx    context.Context
	cancel context.CancelFunc
	load   func(ctx context.Context, id cid.Cid) ([]cid.Cid, error)
	// want gives the shard the listing will load at position i of its array, if any.
	want    func(i int) (cid.Cid, bool)
	n       int // positions
	window  int // most shards started and not yet taken
	lat     latency
	queue   []*shardFetch // started, by position
	queued  map[cid.Cid]bool
	started int // the next position to consider
	wg      sync.WaitGroup
}

// shardsAheadEntries bounds the entries of the shards a listing holds loaded ahead (about 50 bytes
// each once decoded).
const shardsAheadEntries = 1 << 18

type shardFetch struct {
	i       int
	done    chan struct{}
	entries []cid.Cid
	err     error
}

func newShardsAhead(ctx context.Context, n, cps int, want func(i int) (cid.Cid, bool),
	load func(ctx context.Context, id cid.Cid) ([]cid.Cid, error)) *shardsAhead {
	w := min(DefaultWalkParallelism, max(1, shardsAheadEntries/max(cps, 1)))
	return &shardsAhead{parent: ctx, load: load, want: want, n: n, window: w}
}

// get returns the entries of shard id, which the listing needs at position i: loaded ahead, or
// loaded now; then starts the loads ahead that the bounds allow.
func (a *shardsAhead) get(ctx context.Context, i int, id cid.Cid) ([]cid.Cid, error) {
	for len(a.queue) > 0 && a.queue[0].i < i {
		<-a.queue[0].done // a shard the listing found it held already, at another position
		a.queue = a.queue[1:]
	}
	var entries []cid.Cid
	var err error
	if len(a.queue) > 0 && a.queue[0].i == i {
		f := a.queue[0]
		a.queue = a.queue[1:]
		<-f.done
		entries, err = f.entries, f.err
	} else {
		t := time.Now()
		if entries, err = a.load(ctx, id); err == nil {
			a.lat.since(t)
		}
	}
	a.started = max(a.started, i+1)
	if a.lat.slow() {
		if a.ctx == nil {
			a.ctx, a.cancel = context.WithCancel(a.parent)
			a.queued = map[cid.Cid]bool{}
		}
		a.queued[id] = true
		for len(a.queue) < a.window && a.started < a.n {
			j := a.started
			a.started++
			id, ok := a.want(j)
			if !ok || a.queued[id] {
				continue
			}
			a.queued[id] = true
			f := &shardFetch{i: j, done: make(chan struct{})}
			a.queue = append(a.queue, f)
			a.wg.Add(1)
			go func() {
				defer a.wg.Done()
				defer close(f.done)
				f.entries, f.err = a.load(a.ctx, id)
			}()
		}
	}
	return entries, err
}

// stop cancels the loads ahead still in flight and waits for them.
func (a *shardsAhead) stop() {
	if a.cancel != nil {
		a.cancel()
	}
	a.wg.Wait()
}
