package hamt_test

import (
	"context"
	"runtime"
	"testing"

	"github.com/hamt-go/hamt"
	"github.com/multiformats/go-multicodec"
)

// TestVerifyWhoseProblemFuncPanicsLeavesNoGoroutine: a WithProblemFunc callback that panics on
// the walk's goroutine (here at the first problem, a missing root) ends Verify with that panic,
// which the caller may recover (an HTTP server does): its value workers must end with it, not
// wait for ever on their queue.
func TestVerifyWhoseProblemFuncPanicsLeavesNoGoroutine(t *testing.T) {
	ctx := context.Background()
	mem := hamt.NewMemoryCAS()
	gone, err := hamt.NewMemoryCAS().Save(ctx, []byte{0xa0}, multicodec.DagCbor)
	if err != nil {
		t.Fatal(err)
	}
	before := runtime.NumGoroutine()
	for range 3 {
		func() {
			defer func() {
				if r := recover(); r != "callback" {
					t.Fatalf("recovered %v, want the callback's panic", r)
				}
			}()
			_, _ = hamt.Verify(ctx, mem, gone, hamt.WithProblemFunc(func(hamt.VerifyProblem) { panic("callback") }))
		}()
	}
	if after := settledGoroutines(before); after > before {
		t.Fatalf("%d goroutines after Verify panicked, %d before", after, before)
	}
}
