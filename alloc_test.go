package hamt_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/hamt-go/hamt"
)

// TestMemoryCASFastPathAllocs guards the MemoryCAS fast paths of Set and Get: replacing a key's
// value allocates only the rebuilt bucket (the value's CID stays on Set's stack), and a Get only
// the caller's copy of the value. A change that lets Set's CID array escape, or that sends Get
// through a cid.Cid again, fails here.
func TestMemoryCASFastPathAllocs(t *testing.T) {
	ctx := context.Background()
	cas := hamt.NewMemoryCAS()
	m, err := hamt.New(ctx, cas, hamt.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 1000 {
		if err := m.Set(ctx, fmt.Sprint("key-", i), []byte{byte(i)}); err != nil {
			t.Fatal(err)
		}
	}
	vals := make([][]byte, 64)
	for i := range vals {
		vals[i] = []byte(fmt.Sprint("value-", i))
	}
	i := 0
	set := testing.AllocsPerRun(200, func() {
		i++
		if err := m.Set(ctx, "key-7", vals[i%len(vals)]); err != nil {
			t.Fatal(err)
		}
	})
	if set > 1 {
		t.Errorf("Set replacing a value: %.2f allocations, want at most 1 (the bucket)", set)
	}
	if err := m.MakeReadOnly(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Get(ctx, "key-7"); err != nil { // warm the node cache
		t.Fatal(err)
	}
	get := testing.AllocsPerRun(200, func() {
		if _, err := m.Get(ctx, "key-7"); err != nil {
			t.Fatal(err)
		}
	})
	if get > 1 {
		t.Errorf("warm Get: %.2f allocations, want at most 1 (the value's copy)", get)
	}
}
