package main

import (
	"strings"
	"testing"
)

// TestBadKuboFlagValuesAreUsageErrors: an --api, --kubo-rpc or --kubo-gateway value that does
// not parse is the command line's fault (exit 2, before any store or daemon is touched), as a
// flag of the wrong type is; it was a failure (1), like a daemon that is down.
func TestBadKuboFlagValuesAreUsageErrors(t *testing.T) {
	const root = "bafyr4ich7ge6eoeq2tqbh7seetz354l2ydt2p3fkdzoeb7hc2tyeprkld4"
	for _, args := range [][]string{
		{"--api", "/not/a/multiaddr", "ls", root},
		{"--api", "/ip4/127.0.0.1/udp/5001", "ls", root},
		{"--kubo-rpc", "ftp://127.0.0.1:5001", "ls", root},
		{"--kubo-rpc", "http://%zz", "ls", root},
		{"--kubo-gateway", "not a url", "ls", root},
	} {
		r := inProcess(t, nil, args...)
		if r.code != exitUsage || strings.Count(r.stderr, "\n") != 1 || !strings.HasPrefix(r.stderr, "hamt: ") {
			t.Errorf("%v: exit %d, stderr %q; want exit %d and one line", args, r.code, r.stderr, exitUsage)
		}
	}
}
