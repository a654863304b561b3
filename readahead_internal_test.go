package hamt

import (
	"context"
	"testing"
	"time"
)

// TestReadAheadLoadsInPlaceOnlyWhenLoadsAreFast: fast loads are batched by half the window and
// done by the caller, with no goroutine; slow loads go to goroutines in small batches; the first
// load is always measured in place.
func TestReadAheadLoadsInPlaceOnlyWhenLoadsAreFast(t *testing.T) {
	for _, tc := range []struct {
		name     string
		delay    time.Duration
		inPlace  bool
		maxBatch int
	}{
		{"fast loads", 0, true, 16},
		{"loads with latency", 200 * time.Microsecond, false, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ra := newReadAhead[int](context.Background(), 32)
			defer ra.stop()
			if ra.batchLen() != 1 || !ra.inline() {
				t.Fatalf("first batch: %d keys, in place %v; want 1 key in place", ra.batchLen(), ra.inline())
			}
			load := func(ctx context.Context, b *valueBatch[int]) {
				for i := range b.keys {
					time.Sleep(tc.delay)
					b.vals[i] = i
				}
			}
			for range 50 { // enough for the average to forget a first load slowed by a busy machine
				n := ra.batchLen()
				for ra.full(n) {
					ra.take()
				}
				ra.start(&valueBatch[int]{keys: make([]string, n), vals: make([]int, n)}, load)
			}
			for ra.pending() {
				ra.take()
			}
			if ra.inline() != tc.inPlace || ra.batchLen() != tc.maxBatch {
				t.Errorf("after measuring: batches of %d, in place %v; want %d, %v", ra.batchLen(), ra.inline(), tc.maxBatch, tc.inPlace)
			}
		})
	}
}
