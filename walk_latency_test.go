package hamt_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hamt-go/hamt"
	"github.com/ipfs/go-cid"
	"github.com/multiformats/go-multicodec"
)

// latencyCAS is a store with latency, as a remote gateway is: every Load of a node block (dag-cbor)
// waits nodeDelay, every other Load valueDelay, before it is answered; a wait ends early when the
// caller's context does. Loads of the blocks in fail fail (errLatencyLost) after their wait. It
// counts the loads it answered, the most it served at once, and the loads in progress, so a test
// can see what a walk had in flight.
type latencyCAS struct {
	hamt.CAS
	nodeDelay, valueDelay time.Duration

	mu   sync.Mutex
	fail map[cid.Cid]bool

	loads, inFlight, maxInFlight atomic.Int64
}

// errLatencyLost is the failure latencyCAS gives for a block in its fail set.
var errLatencyLost = errors.New("latencyCAS: injected failure")

func newLatencyCAS(inner hamt.CAS, nodeDelay, valueDelay time.Duration) *latencyCAS {
	return &latencyCAS{CAS: inner, nodeDelay: nodeDelay, valueDelay: valueDelay, fail: map[cid.Cid]bool{}}
}

// failOn makes every later Load of id fail.
func (c *latencyCAS) failOn(id cid.Cid) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.fail[id] = true
}

func (c *latencyCAS) Load(ctx context.Context, id cid.Cid) ([]byte, error) {
	n := c.inFlight.Add(1)
	defer c.inFlight.Add(-1)
	for {
		m := c.maxInFlight.Load()
		if n <= m || c.maxInFlight.CompareAndSwap(m, n) {
			break
		}
	}
	d := c.valueDelay
	if id.Type() == uint64(multicodec.DagCbor) {
		d = c.nodeDelay
	}
	if d > 0 {
		t := time.NewTimer(d)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		}
	}
	c.mu.Lock()
	lost := c.fail[id]
	c.mu.Unlock()
	if lost {
		return nil, fmt.Errorf("load %s: %w", id, errLatencyLost)
	}
	c.loads.Add(1)
	return c.CAS.Load(ctx, id)
}

// jitterCAS is latencyCAS with a random delay per Load, uniform in [0, max), from its own source:
// loads finish out of the order they started.
type jitterCAS struct {
	hamt.CAS
	max time.Duration
	mu  sync.Mutex
	rnd *rand.Rand
}

func (c *jitterCAS) Load(ctx context.Context, id cid.Cid) ([]byte, error) {
	c.mu.Lock()
	d := time.Duration(c.rnd.Int64N(int64(c.max)))
	c.mu.Unlock()
	t := time.NewTimer(d)
	select {
	case <-t.C:
	case <-ctx.Done():
		t.Stop()
		return nil, ctx.Err()
	}
	return c.CAS.Load(ctx, id)
}
