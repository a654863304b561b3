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
// waits nodeDelay, every other Load valueDelay, before it is answered; with jitter, each wait is
// drawn uniformly from [0, twice the delay), so loads finish out of the order they started. A wait
// ends early when the caller's context does. Loads of the blocks in fail fail (errLatencyLost,
// or ErrNotFound for a block marked lost) after their wait. It counts the loads it answered, the
// failures it gave, and the loads in progress and the most it served at once (nodes apart).
type latencyCAS struct {
	hamt.CAS
	nodeDelay, valueDelay time.Duration

	mu     sync.Mutex
	fail   map[cid.Cid]error
	jitter *rand.Rand

	loads, failed atomic.Int64
	// Node loads in progress and the most at once; the same for other blocks.
	inFlight, maxInFlight, valuesInFlight, maxValuesInFlight atomic.Int64
}

// errLatencyLost is the failure latencyCAS gives for a block failOn names.
var errLatencyLost = errors.New("latencyCAS: injected failure")

func newLatencyCAS(inner hamt.CAS, nodeDelay, valueDelay time.Duration) *latencyCAS {
	return &latencyCAS{CAS: inner, nodeDelay: nodeDelay, valueDelay: valueDelay, fail: map[cid.Cid]error{}}
}

// withJitter makes every wait random, from a source seeded with seed.
func (c *latencyCAS) withJitter(seed uint64) *latencyCAS {
	c.jitter = rand.New(rand.NewPCG(seed, 14))
	return c
}

// failOn makes every later Load of id fail with errLatencyLost.
func (c *latencyCAS) failOn(id cid.Cid) { c.failWith(id, errLatencyLost) }

// lose makes every later Load of id answer that the store does not hold it.
func (c *latencyCAS) lose(id cid.Cid) { c.failWith(id, hamt.ErrNotFound) }

func (c *latencyCAS) failWith(id cid.Cid, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.fail[id] = err
}

func (c *latencyCAS) Load(ctx context.Context, id cid.Cid) ([]byte, error) {
	d, in, most := c.valueDelay, &c.valuesInFlight, &c.maxValuesInFlight
	if id.Type() == uint64(multicodec.DagCbor) {
		d, in, most = c.nodeDelay, &c.inFlight, &c.maxInFlight
	}
	n := in.Add(1)
	defer in.Add(-1)
	for {
		m := most.Load()
		if n <= m || most.CompareAndSwap(m, n) {
			break
		}
	}
	c.mu.Lock()
	if c.jitter != nil && d > 0 {
		d = time.Duration(c.jitter.Int64N(2 * int64(d)))
	}
	failure := c.fail[id]
	c.mu.Unlock()
	if d > 0 {
		t := time.NewTimer(d)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		}
	}
	if failure != nil {
		c.failed.Add(1)
		return nil, fmt.Errorf("load %s: %w", id, failure)
	}
	c.loads.Add(1)
	return c.CAS.Load(ctx, id)
}
