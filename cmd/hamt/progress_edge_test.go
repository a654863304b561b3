package main

import (
	"strings"
	"testing"
	"time"

	"github.com/hamt-go/hamt"
)

// TestProgressETAOfAHugeSlowCopyIsNoGarbage is a regression test: the time left was converted to a
// time.Duration unchecked, so a copy of many terabytes whose first file (a small zarr.json, copied
// first) came slowly drew "ETA -2562047:-47:-16" (the conversion overflowed). A time left too
// long for a Duration is not drawn; the bar never counts past 100% nor panics when the files done
// outnumber the total.
func TestProgressETAOfAHugeSlowCopyIsNoGarbage(t *testing.T) {
	c := &fakeClock{t: time.Unix(1_700_000_000, 0)}
	p, out := progressAt(c, "import")
	p.update(hamt.Progress{Files: 0, TotalFiles: 20_000, TotalBytes: 50_000_000_000_000})
	c.tick(2 * time.Second)
	p.update(hamt.Progress{Files: 1, TotalFiles: 20_000, Bytes: 300, TotalBytes: 50_000_000_000_000})
	if got := drawnLine(lastDrawn(out)); strings.Contains(got, "-") {
		t.Errorf("a huge, slow copy: %q", got)
	}
	c.tick(time.Second)
	p.update(hamt.Progress{Files: 5, TotalFiles: 4, Bytes: 10, TotalBytes: 8})
	if got := drawnLine(lastDrawn(out)); !strings.Contains(got, "100% 5/4") {
		t.Errorf("more files done than found: %q", got)
	}
	c.tick(-time.Hour) // the clock goes back
	p.update(hamt.Progress{Files: 4, TotalFiles: 4, Bytes: 10, TotalBytes: 8})
	p.finish(4, 10, 0, nil)
	if s := out.String(); strings.Contains(s, "ETA -") {
		t.Errorf("a clock going back: %q", s)
	}
}
