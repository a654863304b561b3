package main

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hamt-go/hamt"
)

// fakeClock is a clock a test moves by hand.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time       { return c.t }
func (c *fakeClock) tick(d time.Duration) { c.t = c.t.Add(d) }
func lastDrawn(out *bytes.Buffer) string  { s := out.String(); return s[strings.LastIndex(s, "\r")+1:] }
func drawnLine(s string) string           { return strings.TrimSuffix(s, "\033[K") }
func progressAt(c *fakeClock, op string) (*progress, *bytes.Buffer) {
	var out bytes.Buffer
	return newProgressAt(&out, true, op, c.now), &out
}

// TestProgressBarShowsListingThenRateAndETA: the bar counts what the listing finds, then the copy
// with its rate since the copy began and the time left at that rate, redrawn at most every 100 ms;
// the summary line gives the mean rate.
func TestProgressBarShowsListingThenRateAndETA(t *testing.T) {
	c := &fakeClock{t: time.Unix(1_700_000_000, 0)}
	p, out := progressAt(c, "import")
	p.update(hamt.Progress{Scanning: true, TotalFiles: 1, TotalBytes: 2_000_000})
	if got, want := drawnLine(lastDrawn(out)), "import: listing… 1 files, 2.0 MB found"; got != want {
		t.Errorf("listing: %q, want %q", got, want)
	}
	c.tick(10 * time.Millisecond)
	p.update(hamt.Progress{Scanning: true, TotalFiles: 2, TotalBytes: 4_000_000})
	if strings.Contains(out.String(), "2 files") {
		t.Error("redrawn within 100 ms")
	}
	c.tick(time.Second) // the listing took a second: it does not count in the rate
	p.update(hamt.Progress{Files: 0, TotalFiles: 4, TotalBytes: 400_000_000})
	c.tick(2 * time.Second)
	p.update(hamt.Progress{Files: 1, TotalFiles: 4, Bytes: 100_000_000, TotalBytes: 400_000_000})
	want := "import [=====               ]  25% 1/4 files, 100.0 MB of 400.0 MB, 50.0 MB/s, ETA 0:06"
	if got := drawnLine(lastDrawn(out)); got != want {
		t.Errorf("copying:\n got %q\nwant %q", got, want)
	}
	c.tick(2 * time.Hour)
	p.update(hamt.Progress{Files: 2, TotalFiles: 4, Bytes: 100_000_001, TotalBytes: 400_000_000})
	if got := drawnLine(lastDrawn(out)); !strings.HasSuffix(got, "ETA 6:00:06") {
		t.Errorf("slow copy: %q, want an ETA of 6:00:06", got)
	}
	c.tick(time.Millisecond)
	p.update(hamt.Progress{Files: 4, TotalFiles: 4, Bytes: 400_000_000, TotalBytes: 400_000_000})
	if got := drawnLine(lastDrawn(out)); !strings.Contains(got, "100% 4/4") || strings.Contains(got, "ETA") {
		t.Errorf("the last file is drawn at once, without an ETA: %q", got)
	}
	p.finish(4, 400_000_000, 1, nil)
	if got, want := out.String()[strings.LastIndex(out.String(), "\033[K")+3:], "imported 4 files (400.0 MB) in 2h0m3.011s, 55.5 kB/s, skipped 1 that are not regular files\n"; got != want {
		t.Errorf("summary %q, want %q", got, want)
	}
}

// TestProgressOfAnExportGoesByFiles: an export does not know its total bytes, so its time left
// comes from the files; a conversion counts keys and no bytes.
func TestProgressOfAnExportGoesByFiles(t *testing.T) {
	c := &fakeClock{t: time.Unix(1_700_000_000, 0)}
	p, out := progressAt(c, "export")
	p.update(hamt.Progress{Scanning: true, TotalFiles: 7, TotalBytes: -1})
	if got := drawnLine(lastDrawn(out)); got != "export: listing… 7 files found" {
		t.Errorf("listing: %q", got)
	}
	p.update(hamt.Progress{Files: 1, TotalFiles: 10, Bytes: 1000, TotalBytes: -1})
	c.tick(4 * time.Second)
	p.update(hamt.Progress{Files: 5, TotalFiles: 10, Bytes: 2_000_000, TotalBytes: -1})
	if got, want := drawnLine(lastDrawn(out)), "export [==========          ]  50% 5/10 files, 2.0 MB, 500.0 kB/s, ETA 0:04"; got != want {
		t.Errorf("export:\n got %q\nwant %q", got, want)
	}
	p, out = progressAt(c, "convert")
	p.update(hamt.Progress{Files: 1, TotalFiles: 3, TotalBytes: -1})
	c.tick(time.Second)
	p.update(hamt.Progress{Files: 2, TotalFiles: 3, TotalBytes: -1})
	if got, want := drawnLine(lastDrawn(out)), "convert [=============       ]  67% 2/3 keys, 2 keys/s, ETA 0:01"; got != want {
		t.Errorf("convert:\n got %q\nwant %q", got, want)
	}
}

// TestNoProgressBarWithoutATerminal: run as a script runs it (stderr a pipe), an import and an
// export write no bar, only their summary lines (and the import where it stored the data), and
// standard output only the root;
// --progress forces the bar, --no-progress is refused together with it.
func TestNoProgressBarWithoutATerminal(t *testing.T) {
	store := filepath.Join(t.TempDir(), "s.bolt")
	data := filepath.Join("..", "..", "testdata", "zarr")
	imp := ok(t, store, nil, "import", data)
	exp := ok(t, store, nil, "export", imp.lastLine(), filepath.Join(t.TempDir(), "out"))
	for _, c := range []struct {
		r     result
		lines int
	}{{imp, 2}, {exp, 1}} { // the import's second line: "stored in PATH"
		if strings.ContainsAny(c.r.stderr, "\r\033") || strings.Count(c.r.stderr, "\n") != c.lines {
			t.Errorf("stderr of a run without a terminal: %q", c.r.stderr)
		}
	}
	if want := "\nstored in " + store + "\n"; !strings.HasSuffix(imp.stderr, want) {
		t.Errorf("import's stderr %q does not end with %q", imp.stderr, want)
	}
	if !cidLine.MatchString(strings.TrimSpace(imp.stdout)) || exp.stdout != "" {
		t.Errorf("stdout: import %q, export %q", imp.stdout, exp.stdout)
	}
	forced := ok(t, store, nil, "import", "--progress", data)
	if !strings.Contains(forced.stderr, "\rimport [") || !strings.Contains(forced.stderr, "listing…") || forced.lastLine() != imp.lastLine() {
		t.Errorf("--progress: stderr %q, stdout %q", forced.stderr, forced.stdout)
	}
	if r := hamtRun(t, store, nil, "import", "--progress", "--no-progress", data); r.code != exitUsage {
		t.Errorf("--progress --no-progress: exit %d, %s", r.code, r.stderr)
	}
}
