package main

import (
	"fmt"
	"io"
	"os"
	"runtime/pprof"
)

// cpuProfileEnv names the environment variable that, when set to a file name, makes the hamt
// command write a CPU profile of its run there (go tool pprof reads it): for measuring where a
// long import or export spends its time on the user's own data, without a rebuild.
const cpuProfileEnv = "HAMT_CPUPROFILE"

// startCPUProfile starts the CPU profile $HAMT_CPUPROFILE asks for, if any, and returns the
// function that stops it and closes the file. A profile that cannot be started is reported on
// stderr and the command runs without.
func startCPUProfile(stderr io.Writer) func() {
	name := os.Getenv(cpuProfileEnv)
	if name == "" {
		return func() {}
	}
	f, err := os.Create(name)
	if err != nil {
		fmt.Fprintf(stderr, "hamt: %s: %v\n", cpuProfileEnv, err)
		return func() {}
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		fmt.Fprintf(stderr, "hamt: %s: %v\n", cpuProfileEnv, err)
		f.Close()
		return func() {}
	}
	return func() {
		pprof.StopCPUProfile()
		if err := f.Close(); err != nil {
			fmt.Fprintf(stderr, "hamt: %s: %v\n", cpuProfileEnv, err)
		}
	}
}
