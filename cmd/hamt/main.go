// Command hamt stores Zarr v3 datasets (and any key-value map) in a HAMT on a content-addressed
// store: an embedded bbolt file by default, or IPFS through a Kubo daemon.
//
//	hamt [--store PATH | --kubo-rpc URL --kubo-gateway URL] COMMAND
//
// Commands that make a new root print its CID as the last line of standard output; errors are
// one line on standard error and a non-zero exit status. `hamt COMMAND --help` describes each
// command. The default store is $HAMT_STORE, or store.bolt in the user's data directory
// ($XDG_DATA_HOME/hamt, ~/.local/share/hamt, ~/Library/Application Support/hamt or
// %LocalAppData%\hamt).
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

// run executes one command line and returns the exit status: 0, 1 for a failure, 2 for a usage
// error.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	cmd := newRootCommand(stdin, stdout, stderr)
	cmd.SetArgs(args)
	if err := cmd.ExecuteContext(ctx); err != nil {
		fmt.Fprintf(stderr, "hamt: %s\n", oneLine(err.Error()))
		var ue *usageError
		if errors.As(err, &ue) {
			return 2
		}
		return 1
	}
	return 0
}

// usageError is a command line that does not parse.
type usageError struct{ err error }

func (e *usageError) Error() string { return e.err.Error() + " (see --help)" }
func (e *usageError) Unwrap() error { return e.err }

// oneLine folds a message onto one line.
func oneLine(s string) string {
	return strings.NewReplacer("\r\n", " ", "\n", " ", "\r", " ").Replace(strings.TrimSpace(s))
}
