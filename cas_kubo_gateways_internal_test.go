package hamt

import (
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestHedgeDelayIsTheWindowsP95WithAFloor: 200 ms until 8 answers, then the 95th percentile of
// the last 64, never under 10 ms; old answers leave the window.
func TestHedgeDelayIsTheWindowsP95WithAFloor(t *testing.T) {
	var w latencyWindow
	for i := range hedgeMinSamples - 1 {
		if d := w.delay(); d != hedgeInitial {
			t.Fatalf("after %d answers: %v, want the initial %v", i, d, hedgeInitial)
		}
		w.add(time.Second)
	}
	w.add(time.Second)
	if d := w.delay(); d != time.Second {
		t.Errorf("after 8 answers of 1 s: %v", d)
	}
	for i := range 64 {
		w.add(time.Duration(i+1) * time.Millisecond * 100) // 0.1 s … 6.4 s
	}
	if d := w.delay(); d != 6100*time.Millisecond { // the 61st of 64 sorted
		t.Errorf("p95 of 0.1 s … 6.4 s: %v, want 6.1 s", d)
	}
	for range 64 {
		w.add(time.Millisecond)
	}
	if d := w.delay(); d != hedgeFloor {
		t.Errorf("answers of 1 ms: %v, want the floor %v", d, hedgeFloor)
	}
	for range 3 { // 3 spikes in 64 stay under the 95th percentile
		w.add(time.Minute)
	}
	if d := w.delay(); d != hedgeFloor {
		t.Errorf("with 3 spikes in 64: %v, want the floor", d)
	}
}

// TestBreakerAdmitsOneProbeAtATime: once rested, a breaker admits one read as its probe; others
// find it resting until the probe is done; an abandoned probe frees the place for the next read.
func TestBreakerAdmitsOneProbeAtATime(t *testing.T) {
	var b breaker
	now := time.Unix(0, 0)
	for range 2 {
		b.done(failed, false, now, 3, time.Minute)
		if ok, probe := b.admit(now, 3); !ok || probe {
			t.Fatalf("closed after %d failures: admit %v, probe %v", b.failures, ok, probe)
		}
	}
	b.done(failed, false, now, 3, time.Minute)
	if ok, _ := b.admit(now.Add(59*time.Second), 3); ok {
		t.Fatal("admitted while resting")
	}
	later := now.Add(time.Minute)
	if ok, probe := b.admit(later, 3); !ok || !probe {
		t.Fatal("the first read after the rest is not the probe")
	}
	if ok, _ := b.admit(later, 3); ok {
		t.Fatal("a second read admitted while the probe runs")
	}
	b.done(abandoned, true, later, 3, time.Minute)
	if ok, probe := b.admit(later, 3); !ok || !probe {
		t.Fatal("after an abandoned probe, the next read is not the probe")
	}
	b.done(succeeded, true, later, 3, time.Minute)
	if ok, probe := b.admit(later, 3); !ok || probe || b.failures != 0 {
		t.Fatalf("after a good probe: admit %v, probe %v, failures %d", ok, probe, b.failures)
	}
}

// TestContentRangeMatchesTheRequestedWindow: a 206's Content-Range is accepted only when it is the
// window the range selects of a block of its announced size, and announces the body's length.
func TestContentRangeMatchesTheRequestedWindow(t *testing.T) {
	for _, c := range []struct {
		header string
		r      ByteRange
		n      int
		ok     bool
	}{
		{"bytes 2-4/5", RangeBetween(2, 5), 3, true},
		{"bytes 2-4/5", RangeBetween(2, 50), 3, true}, // the end clipped at the size
		{"bytes 2-4/5", RangeFrom(2), 3, true},
		{"bytes 2-4/5", RangeSuffix(3), 3, true},
		{"bytes 0-4/5", RangeSuffix(9), 5, true},
		{"bytes 1-2/*", RangeBetween(1, 3), 2, true},
		{"bytes 1-4/*", RangeFrom(1), 4, true},
		{"bytes 2-4/*", RangeSuffix(3), 3, true},
		{"bytes 0-1/5", RangeBetween(1, 3), 2, false}, // py-hamt's "does not match the requested window"
		{"", RangeBetween(1, 3), 2, false},
		{"bytes 1-2/5", RangeBetween(1, 3), 1, false}, // the body is shorter than announced
		{"bytes 1-3/5", RangeBetween(1, 3), 3, false}, // more than asked
		{"bytes 1-2/5", RangeFrom(1), 2, false},       // cut short
		{"bytes 1-4/5", RangeSuffix(3), 4, false},
		{"bytes 2-4/4", RangeFrom(2), 3, false}, // end past the size
		{"bytes 3-2/5", RangeFrom(3), 0, false},
		{"bytes -1-2/5", RangeBetween(0, 3), 3, false},
		{"items 1-2/5", RangeBetween(1, 3), 2, false},
		{"bytes 1-2", RangeBetween(1, 3), 2, false},
		{"bytes 1-2/x", RangeBetween(1, 3), 2, false},
		{"bytes 1-3/*", RangeBetween(1, 3), 3, false},
	} {
		if err := contentRangeMatches(c.header, c.r, c.n); (err == nil) != c.ok {
			t.Errorf("%q for %s with %d bytes: %v, want ok=%v", c.header, c.r, c.n, err, c.ok)
		}
	}
}

// TestRangePastEndIsA416ForAStartPastTheSize: py-hamt reads "no bytes" only from a 416 whose
// Content-Range "bytes */N" puts the range's start at or past N.
func TestRangePastEndIsA416ForAStartPastTheSize(t *testing.T) {
	for _, c := range []struct {
		header string
		r      ByteRange
		want   bool
	}{
		{"bytes */5", RangeFrom(10), true},
		{"bytes */5", RangeFrom(5), true},
		{"bytes */5", RangeBetween(7, 9), true},
		{"bytes */0", RangeSuffix(3), true},
		{"bytes */5", RangeFrom(2), false},
		{"bytes */5", RangeSuffix(3), false},
		{"", RangeFrom(10), false},
		{"bytes */x", RangeFrom(10), false},
		{"bytes */-1", RangeFrom(10), false},
		{"bytes 0-1/5", RangeFrom(10), false},
	} {
		if got := rangePastEnd(c.header, c.r); got != c.want {
			t.Errorf("%q for %s: %v, want %v", c.header, c.r, got, c.want)
		}
	}
}

// TestGatewayBaseAndOrigin: gateway URLs are cut as py-hamt cuts them; query strings and other
// schemes are refused; origins make the default port explicit and ignore case.
func TestGatewayBaseAndOrigin(t *testing.T) {
	for in, want := range map[string]string{
		"http://x":             "http://x",
		"http://x/ipfs/":       "http://x",
		"http://x/ipfs//":      "http://x",
		"https://x:8443/gw/":   "https://x:8443/gw",
		"https://x/ipfs/ipfs/": "https://x/ipfs",
		"http://x/ipfsy":       "http://x/ipfsy",
	} {
		if got, err := gatewayBase(in); err != nil || got != want {
			t.Errorf("gatewayBase(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"ftp://x", "x:80", "http://x/?a=b", "http://x/#f", "http://x?", "::"} {
		if got, err := gatewayBase(bad); err == nil {
			t.Errorf("gatewayBase(%q) = %q, want an error", bad, got)
		}
	}
	for in, want := range map[string]string{
		"http://X":             "http://x:80",
		"HTTPS://x/p":          "https://x:443",
		"http://x:8080/ipfs/":  "http://x:8080",
		"http://[::1]:5001":    "http://[::1]:5001",
		"https://127.0.0.1:80": "https://127.0.0.1:80",
	} {
		if got := originOf(in); got != want {
			t.Errorf("originOf(%q) = %q, want %q", in, got, want)
		}
	}
}

// FuzzKuboContentRange: the two readers of a gateway's Content-Range header never panic, and
// what contentRangeMatches accepts is exactly the window the range selects.
func FuzzKuboContentRange(f *testing.F) {
	for _, s := range []string{"bytes 2-4/5", "bytes */5", "bytes 0-0/*", "bytes 1-2", "bytes -3-4/5", "bytes 9223372036854775807-9223372036854775807/*", "", "bytes */"} {
		f.Add(s, uint8(1), int64(2), int64(5), 3)
	}
	f.Fuzz(func(t *testing.T, header string, kind uint8, a, b int64, n int) {
		var r ByteRange
		switch kind % 3 {
		case 0:
			r = RangeBetween(a, b)
		case 1:
			r = RangeFrom(a)
		case 2:
			r = RangeSuffix(a)
		}
		if r.Validate() != nil || r.Empty() || n < 0 {
			return
		}
		_ = rangePastEnd(header, r)
		if contentRangeMatches(header, r, n) != nil {
			return
		}
		spec, _ := strings.CutPrefix(header, "bytes ")
		span, total, _ := strings.Cut(spec, "/")
		first, last, _ := strings.Cut(span, "-")
		s, _ := strconv.ParseInt(first, 10, 64)
		e, _ := strconv.ParseInt(last, 10, 64)
		if e-s+1 != int64(n) {
			t.Fatalf("accepted %q with a body of %d bytes", header, n)
		}
		if size, err := strconv.ParseInt(total, 10, 64); err == nil {
			if ws, we := r.Bounds(size); ws != s || we != e+1 {
				t.Fatalf("accepted %q for %s: the window is [%d, %d)", header, r, ws, we)
			}
		}
	})
}
