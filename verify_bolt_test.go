package hamt_test

import (
	"context"
	"testing"

	"github.com/hamt-go/hamt"
)

// Bit rot in a real bbolt file: BoltCAS finds it as it loads (ErrCorrupt), and Verify reports
// each damaged value as a hash mismatch at its key, and goes on to check the rest.
func TestVerifyReportsBitRotInABoltFileAtEachDamagedKey(t *testing.T) {
	path, root, values := trustStore(t)
	trustFlip(t, path, values["arr/c/0"])
	trustFlip(t, path, values["small"])
	cas := boltOpen(t, path, hamt.WithBoltReadOnly())
	rep, err := hamt.Verify(context.Background(), cas, root)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]hamt.ProblemKind{}
	for _, p := range rep.Problems {
		got[p.Path] = p.Kind
	}
	if rep.OK() || rep.ProblemCount != 2 || got["arr/c/0"] != hamt.ProblemHashMismatch || got["small"] != hamt.ProblemHashMismatch ||
		rep.Keys != len(values) || rep.Values != len(values) {
		t.Fatalf("report %+v", rep)
	}
}
