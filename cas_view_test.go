package hamt

import (
	"testing"
	"unsafe"

	"github.com/ipfs/go-cid"
	"github.com/multiformats/go-multicodec"
)

// TestCIDViewLayout guards cidBytes.view's cast: a cid.Cid must still be exactly one string, its
// binary form, or the view would be garbage.
func TestCIDViewLayout(t *testing.T) {
	if unsafe.Sizeof(cid.Cid{}) != unsafe.Sizeof("") {
		t.Fatalf("cid.Cid is %d bytes, not one string", unsafe.Sizeof(cid.Cid{}))
	}
	for _, c := range []cid.Cid{
		blake3CID(multicodec.Raw, []byte("value")),
		blake3CID(multicodec.DagCbor, []byte("node")),
		cid.MustParse("QmUNLLsPACCz1vLxQVkXqqLX5R1X345qqfHbsf67hvA3Nn"),
	} {
		v := cidKey(c).view()
		if !v.Equals(c) || v.String() != c.String() || v.Type() != c.Type() {
			t.Fatalf("view of %s is %s", c, v)
		}
	}
	if cidBytes("").view().Defined() {
		t.Fatal("view of the empty cidBytes is defined")
	}
}
