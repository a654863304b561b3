package hamt_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/hamt-go/hamt"
)

// TestSetAndGetAllocs guards the allocations of Set and Get, which reach every store through the
// CAS interface alone: replacing a key's value allocates the CID the store's Save returns and the
// rebuilt bucket, and a warm Get nothing but what the store's Load allocates (MemoryCAS: the
// caller's copy of the value; a store that returns its own slice: nothing). A change that makes
// Get copy the CID it hands to Load again (cid.Cast) fails here.
func TestSetAndGetAllocs(t *testing.T) {
	for _, tc := range []struct {
		name string
		cas  hamt.CAS
		set  float64 // -1: not checked (the store's Save allocates as it likes)
		get  float64
	}{
		{"MemoryCAS", hamt.NewMemoryCAS(), 2, 1},
		{"a store of one's own", newUserCAS(), -1, 0},
	} {
		t.Run(tc.name, func(t *testing.T) { testSetAndGetAllocs(t, tc.cas, tc.set, tc.get) })
	}
}

func testSetAndGetAllocs(t *testing.T, cas hamt.CAS, wantSet, wantGet float64) {
	ctx := context.Background()
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
	if wantSet >= 0 && set > wantSet {
		t.Errorf("Set replacing a value: %.2f allocations, want at most %.0f (the CID and the bucket)", set, wantSet)
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
	if get > wantGet {
		t.Errorf("warm Get: %.2f allocations, want at most %.0f (the store's own)", get, wantGet)
	}
}
