package hamt_test

import (
	"os"
	"strings"
	"testing"
)

func TestMain(m *testing.M) {
	quickRaceExit()
	code := m.Run()
	if chunkTreeDir != "" {
		os.RemoveAll(chunkTreeDir)
	}
	os.Exit(code)
}

// quickRaceExit makes the processes the tests start (the test binary re-run as a child, which
// many trust tests do to survive a crash or bound a heap) exit without the race detector's
// default one-second sleep at exit: about a second saved per child, a minute over the suite.
func quickRaceExit() {
	if g := os.Getenv("GORACE"); !strings.Contains(g, "atexit_sleep_ms") {
		os.Setenv("GORACE", strings.TrimSpace(g+" atexit_sleep_ms=0"))
	}
}
