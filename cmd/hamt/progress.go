package main

import (
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"strings"
	"time"

	"github.com/hamt-go/hamt"
	"github.com/spf13/cobra"
	"golang.org/x/term"
)

// stderrIsTerminal reports whether standard error is a terminal (then progress is a bar).
func stderrIsTerminal() bool { return term.IsTerminal(int(os.Stderr.Fd())) }

// addProgressFlags adds --progress and --no-progress to a command that copies many files; given
// both, they are a usage error (checked before the command's own PreRunE).
func addProgressFlags(cmd *cobra.Command) {
	cmd.Flags().Bool("progress", false, "show a progress bar with rate and ETA on standard error even when it is not a terminal")
	cmd.Flags().Bool("no-progress", false, "show no progress bar, even on a terminal (the summary line stays)")
	pre := cmd.PreRunE
	cmd.PreRunE = func(c *cobra.Command, argv []string) error {
		if c.Flags().Changed("progress") && c.Flags().Changed("no-progress") {
			return &usageError{errors.New("--progress and --no-progress: give one")}
		}
		if pre != nil {
			return pre(c, argv)
		}
		return nil
	}
}

// showBar says whether cmd draws a progress bar: as its flags force, else when standard error is
// a terminal (a script reading it gets the summary line only).
func (a *app) showBar(cmd *cobra.Command) bool {
	if on, err := cmd.Flags().GetBool("progress"); err == nil && on {
		return true
	}
	if off, err := cmd.Flags().GetBool("no-progress"); err == nil && off {
		return false
	}
	return a.isTerminal()
}

// progress reports an import, export or conversion on standard error, never standard output
// (which carries the root): with bar set, a line redrawn at most ten times a second, first while
// the files are listed (how many found, how many bytes), then while they are copied (done of
// total, files and bytes, the rate since the copy began and the time left at that rate); in
// every case one summary line at the end. Its update is called serially (ImportDir, ExportDir
// and CopyZarr serialize their progress calls).
type progress struct {
	w       io.Writer
	bar     bool
	op      string
	now     func() time.Time
	start   time.Time
	copying time.Time // when the first file was copied; zero before
	drawn   time.Time
}

func newProgress(w io.Writer, bar bool, op string) *progress {
	return newProgressAt(w, bar, op, time.Now)
}

// newProgressAt is newProgress with its clock.
func newProgressAt(w io.Writer, bar bool, op string, now func() time.Time) *progress {
	return &progress{w: w, bar: bar, op: op, now: now, start: now()}
}

// redraw is how often the bar is drawn at most.
const redraw = 100 * time.Millisecond

func (p *progress) update(pr hamt.Progress) {
	if !p.bar {
		return
	}
	t := p.now()
	if !pr.Scanning && p.copying.IsZero() {
		p.copying = t
	} else if t.Sub(p.drawn) < redraw && (pr.Scanning || pr.Files != pr.TotalFiles) {
		return
	}
	p.drawn = t
	fmt.Fprintf(p.w, "\r%s\033[K", p.line(pr, t))
}

// line is the bar's text for pr at time t.
func (p *progress) line(pr hamt.Progress, t time.Time) string {
	if pr.Scanning {
		found := ""
		if pr.TotalBytes >= 0 {
			found = ", " + byteSize(pr.TotalBytes)
		}
		return fmt.Sprintf("%s: listing… %d %s%s found", p.op, pr.TotalFiles, p.noun(), found)
	}
	const width = 20
	frac := 1.0
	if pr.TotalFiles > 0 {
		frac = min(float64(pr.Files)/float64(pr.TotalFiles), 1)
	}
	done := int(frac * width)
	bar := strings.Repeat("=", done) + strings.Repeat(" ", width-done)
	var b strings.Builder
	fmt.Fprintf(&b, "%s [%s] %3.0f%% %d/%d %s", p.op, bar, 100*frac, pr.Files, pr.TotalFiles, p.noun())
	if p.op != "convert" { // a conversion moves CIDs: it does not know the bytes
		b.WriteString(", " + byteSize(pr.Bytes))
		if pr.TotalBytes >= 0 {
			b.WriteString(" of " + byteSize(pr.TotalBytes))
		}
	}
	elapsed := t.Sub(p.copying).Seconds()
	if elapsed <= 0 || pr.Files == 0 {
		return b.String()
	}
	// The time left goes by bytes when the total is known (files differ in size), else by files.
	left := float64(pr.TotalFiles-pr.Files) / (float64(pr.Files) / elapsed)
	if p.op == "convert" {
		fmt.Fprintf(&b, ", %.0f %s/s", float64(pr.Files)/elapsed, p.noun())
	} else {
		fmt.Fprintf(&b, ", %s/s", byteSize(int64(float64(pr.Bytes)/elapsed)))
		if pr.TotalBytes >= 0 && pr.Bytes > 0 {
			left = float64(pr.TotalBytes-pr.Bytes) / (float64(pr.Bytes) / elapsed)
		}
	}
	// A time left too long for a Duration (a slow start of terabytes) is not drawn: converted, it
	// overflows.
	if pr.Files < pr.TotalFiles && left >= 0 && left < float64(math.MaxInt64/int64(time.Second)) {
		b.WriteString(", ETA " + clock(time.Duration(left*float64(time.Second))))
	}
	return b.String()
}

// finish clears the bar and, unless the copy failed (its error is then the one line), writes the
// summary line.
func (p *progress) finish(files int, bytes int64, skipped int, err error) {
	if p.bar {
		fmt.Fprint(p.w, "\r\033[K")
	}
	if err != nil {
		return
	}
	verb := map[string]string{"import": "imported", "export": "exported", "convert": "converted"}[p.op]
	took := p.now().Sub(p.start)
	line := fmt.Sprintf("%s %d %s (%s) in %s", verb, files, p.noun(), byteSize(bytes), took.Round(time.Millisecond))
	if s := took.Seconds(); s > 0 && bytes > 0 {
		line += fmt.Sprintf(", %s/s", byteSize(int64(float64(bytes)/s)))
	}
	if p.op == "convert" {
		line = fmt.Sprintf("%s %d %s in %s", verb, files, p.noun(), took.Round(time.Millisecond))
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

// clock writes a duration as h:mm:ss, or m:ss under an hour.
func clock(d time.Duration) string {
	s := int64(d.Round(time.Second) / time.Second)
	if s >= 3600 {
		return fmt.Sprintf("%d:%02d:%02d", s/3600, s/60%60, s%60)
	}
	return fmt.Sprintf("%d:%02d", s/60, s%60)
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
