// Command hamt stores Zarr v3 datasets (and any key-value map) in a HAMT on a content-addressed
// store: an embedded bbolt file by default, or IPFS through a Kubo daemon.
//
//	hamt [--store PATH | --kubo | --api MULTIADDR | --kubo-rpc URL] [--kubo-gateway URL ...] COMMAND
//
// Commands that make a new root print its CID as the last line of standard output, and those
// that store data say on standard error where it went; with --json, ls, stats, diff, import, car
// and version write JSON instead (one object, or JSON Lines for listings). Errors are one line on
// standard error, prefixed "hamt: ", and the exit status says what happened:
//
//	0  success (diff --exit-code: the two roots hold the same keys and values)
//	1  the command failed (diff --exit-code: the roots differ)
//	2  usage error: an unknown command or flag, a wrong number of arguments, an argument that
//	   does not parse
//	3  internal error: a bug in hamt
//	4  not found: the key (get, rm), the directory (rm -r) or the root asked for is not there
//	5  verify found problems in the data
//	6  diff --exit-code failed: it cannot say whether the roots differ (any failure but 4)
//
// `hamt COMMAND --help` describes each command, with examples. The default store is
// $HAMT_STORE, or store.bolt in the user's data directory ($XDG_DATA_HOME/hamt,
// ~/.local/share/hamt, ~/Library/Application Support/hamt or %LocalAppData%\hamt).
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
)

// Exit statuses (the root command's help lists them).
const (
	exitFailure  = 1 // the command failed
	exitUsage    = 2 // the command line does not parse
	exitInternal = 3 // hamt panicked: a bug
	exitNotFound = 4 // the key, name or root asked for is not there
	exitProblems = 5 // verify found problems in the data
	exitDiffFail = 6 // diff --exit-code failed (1 would read as "the roots differ")
)

// exitError ends a command with a given exit status. Its message, if any, is printed as any
// error's is; a nil err prints nothing (diff --exit-code reports a difference this way).
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit status %d", e.code)
	}
	return e.err.Error()
}
func (e *exitError) Unwrap() error { return e.err }

// notFound ends a command with exitNotFound, err saying what is not there.
func notFound(err error) error { return &exitError{code: exitNotFound, err: err} }

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	stopProfile := startCPUProfile(os.Stderr)
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stopProfile()
	os.Exit(code)
}

// run executes one command line and returns the exit status: 0, or one of the exit* constants.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	a := newApp(stdin, stdout, stderr)
	code := execute(ctx, a.rootCommand(), args, stderr)
	if code != 0 {
		a.discardCreated()
	}
	return code
}

// execute runs root with args and returns the exit status. A panic in the command (which runs in
// this goroutine) is reported as an internal error with its message and where it happened, not
// as Go's exit status 2, which would read as a usage error.
func execute(ctx context.Context, root *cobra.Command, args []string, stderr io.Writer) (code int) {
	defer func() {
		if p := recover(); p != nil {
			fmt.Fprintf(stderr, "hamt: internal error, a bug in hamt (please report it with the command line): panic: %s%s\n",
				errorLine(fmt.Sprint(p)), panicSite())
			code = exitInternal
		}
	}()
	root.SetArgs(args)
	if err := root.ExecuteContext(ctx); err != nil {
		if ctx.Err() != nil && errors.Is(err, context.Canceled) {
			// Whatever step the signal cut short, the cause is the signal, not that step.
			err = fmt.Errorf("interrupted: %w", context.Cause(ctx))
		}
		var ee *exitError
		if errors.As(err, &ee) {
			if ee.err != nil {
				fmt.Fprintf(stderr, "hamt: %s\n", errorLine(ee.err.Error()))
			}
			return ee.code
		}
		fmt.Fprintf(stderr, "hamt: %s\n", errorLine(err.Error()))
		var ue *usageError
		if errors.As(err, &ue) {
			return exitUsage
		}
		return exitFailure
	}
	return 0
}

// panicSite names the function and line that panicked, from inside a deferred recover: the
// first frame past runtime.gopanic outside the runtime.
func panicSite() string {
	pcs := make([]uintptr, 64)
	frames := runtime.CallersFrames(pcs[:runtime.Callers(2, pcs)])
	panicking := false
	for {
		f, more := frames.Next()
		if panicking && !strings.HasPrefix(f.Function, "runtime.") {
			return fmt.Sprintf(" at %s (%s:%d)", f.Function, f.File, f.Line)
		}
		panicking = panicking || f.Function == "runtime.gopanic"
		if !more {
			return ""
		}
	}
}

// usageError is a command line that does not parse.
type usageError struct{ err error }

func (e *usageError) Error() string { return e.err.Error() + " (see --help)" }
func (e *usageError) Unwrap() error { return e.err }

// maxErrorLine bounds an error line; a longer one keeps its start and its end (the cause).
const maxErrorLine = 2048

// errorLine makes an error message one bounded line, without the "hamt: " prefix that library
// errors may carry (the command adds its own), at its start or wrapped inside another error.
func errorLine(s string) string {
	s = strings.NewReplacer("\r\n", " ", "\n", " ", "\r", " ").Replace(strings.TrimSpace(s))
	for {
		t, ok := strings.CutPrefix(s, "hamt: ")
		if !ok {
			break
		}
		s = t
	}
	s = dropInnerPrefixes(s)
	if len(s) <= maxErrorLine {
		return s
	}
	head, tail := s[:maxErrorLine/2], s[len(s)-maxErrorLine/2+64:]
	return strings.ToValidUTF8(fmt.Sprintf("%s … (%d bytes cut) … %s", head, len(s)-len(head)-len(tail), tail), "")
}

// innerPrefix is how a library error's "hamt: " reads once another error wraps it.
const innerPrefix = ": hamt: "

// dropInnerPrefixes turns every innerPrefix of s into ": ", outside double-quoted strings (a key
// or a file name, which %q quotes, may hold those very bytes).
func dropInnerPrefixes(s string) string {
	if !strings.Contains(s, innerPrefix) {
		return s
	}
	var b strings.Builder
	quoted := false
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case quoted && c == '\\' && i+1 < len(s):
			b.WriteString(s[i : i+2])
			i++
			continue
		case c == '"':
			quoted = !quoted
		case !quoted && strings.HasPrefix(s[i:], innerPrefix):
			b.WriteString(": ")
			i += len(innerPrefix)
			for strings.HasPrefix(s[i:], "hamt: ") { // a prefix doubled inside
				i += len("hamt: ")
			}
			i-- // the loop's i++
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
