package hamt

import (
	"fmt"
	"testing"
)

// TestBoltVerifiedSetForgetsTheOldestFirst: the set of verified blocks stays bounded, dropping
// the key added longest ago, and a key added twice is held once.
func TestBoltVerifiedSetForgetsTheOldestFirst(t *testing.T) {
	var s boltVerifiedSet
	for i := range boltVerifiedMax {
		s.add(fmt.Sprint(i))
	}
	s.add("0") // already there: no change
	if !s.has("0") || !s.has(fmt.Sprint(boltVerifiedMax-1)) || len(s.keys) != boltVerifiedMax {
		t.Fatalf("full set: has 0 %v, size %d", s.has("0"), len(s.keys))
	}
	for i := range 3 {
		s.add(fmt.Sprint("new", i))
	}
	for i, want := range []bool{false, false, false, true} {
		if s.has(fmt.Sprint(i)) != want {
			t.Errorf("after 3 more, has(%d) = %v, want %v", i, !want, want)
		}
	}
	if !s.has("new2") || len(s.keys) != boltVerifiedMax || len(s.order) != boltVerifiedMax {
		t.Errorf("size %d, order %d, has new2 %v", len(s.keys), len(s.order), s.has("new2"))
	}
}
