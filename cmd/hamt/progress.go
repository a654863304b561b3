package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/hamt-go/hamt"
	"golang.org/x/term"
)

// stderrIsTerminal reports whether standard error is a terminal (then progress is a bar).
func stderrIsTerminal() bool { return term.IsTerminal(int(os.Stderr.Fd())) }

// progress reports an import or export: a bar redrawn at most ten times a second on a terminal,
// and in every case one summary line at the end. Its update is called serially (ImportDir and
// ExportDir serialize their progress calls).
type progress struct {
	w     io.Writer
	tty   bool
	op    string
	start time.Time
	drawn time.Time
}

func newProgress(w io.Writer, tty bool, op string) *progress {
	return &progress{w: w, tty: tty, op: op, start: time.Now()}
}

func (p *progress) update(pr hamt.Progress) {
	if !p.tty || time.Since(p.drawn) < 100*time.Millisecond && pr.Files != pr.TotalFiles {
		return
	}
	p.drawn = time.Now()
	const width = 30
	frac := 1.0
	if pr.TotalFiles > 0 {
		frac = float64(pr.Files) / float64(pr.TotalFiles)
	}
	done := int(frac * width)
	bar := strings.Repeat("=", done) + strings.Repeat(" ", width-done)
	size := ", " + byteSize(pr.Bytes)
	if pr.TotalBytes >= 0 {
		size += " of " + byteSize(pr.TotalBytes)
	}
	if p.op == "convert" {
		size = "" // a conversion moves CIDs: it does not know the bytes
	}
	fmt.Fprintf(p.w, "\r%s [%s] %3.0f%% %d/%d %s%s", p.op, bar, 100*frac, pr.Files, pr.TotalFiles, p.noun(), size)
}

// finish clears the bar and, unless the copy failed (its error is then the one line), writes the
// summary line.
func (p *progress) finish(files int, bytes int64, skipped int, err error) {
	if p.tty {
		fmt.Fprint(p.w, "\r\033[K")
	}
	if err != nil {
		return
	}
	verb := map[string]string{"import": "imported", "export": "exported", "convert": "converted"}[p.op]
	line := fmt.Sprintf("%s %d %s (%s) in %s", verb, files, p.noun(), byteSize(bytes), time.Since(p.start).Round(time.Millisecond))
	if p.op == "convert" {
		line = fmt.Sprintf("%s %d %s in %s", verb, files, p.noun(), time.Since(p.start).Round(time.Millisecond))
	}
	if skipped > 0 {
		line += fmt.Sprintf(", skipped %d that are not regular files", skipped)
	}
	fmt.Fprintln(p.w, line)
}

// noun is what the operation counts: files, or the keys of a conversion.
func (p *progress) noun() string {
	if p.op == "convert" {
		return "keys"
	}
	return "files"
}

// byteSize writes n in B, kB, MB, GB (powers of 1000).
func byteSize(n int64) string {
	const unit = 1000
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %cB", float64(n)/float64(div), "kMGTPE"[exp])
}
