package main

import (
	"bytes"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/hamt-go/hamt/internal/testdag"
	"github.com/ipfs/go-cid"
	"github.com/zeebo/blake3"
)

// TestGetStreamsAHugeValue: `get` of a valid UnixFS file of 128 GiB made of four blocks (as a
// CAR from Kubo can hold) writes its first bytes at once, in bounded memory: run under a 4 GB
// address-space limit, a reader that takes 4 MiB and closes the pipe gets them, and the command
// ends. Reading the value whole first would run out of memory before writing anything.
func TestGetStreamsAHugeValue(t *testing.T) {
	if _, err := exec.LookPath("sh"); err != nil {
		t.Skip("needs sh for ulimit")
	}
	dir := t.TempDir()
	store := filepath.Join(dir, "store.bolt")
	file, blocks, err := testdag.Bomb(64<<10, 'b', 1<<10, 2)
	if err != nil {
		t.Fatal(err)
	}
	var saved testdag.Blocks
	h := blake3.Sum256([]byte("bomb"))
	root := testdag.SaveNode(t, &saved, map[int][]byte{int(h[0]): testdag.Bucket(testdag.Entry("bomb", file))})
	carPath := filepath.Join(dir, "bomb.car")
	if err := os.WriteFile(carPath, testdag.CAR(t, []cid.Cid{root}, append(saved, blocks...)), 0o644); err != nil {
		t.Fatal(err)
	}
	ok(t, store, nil, "car", "import", carPath)

	cmd := exec.Command("sh", "-c", `ulimit -v 4000000 && exec "$0" get "$1" bomb`, binary, root.String())
	cmd.Env = append(os.Environ(), "HAMT_STORE="+store)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		got, err := io.ReadAll(io.LimitReader(out, 4<<20))
		if err == nil && (len(got) != 4<<20 || bytes.Count(got, []byte("b")) != len(got)) {
			err = io.ErrUnexpectedEOF
		}
		out.Close() // the reader is done: the command's next write fails
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("reading the first 4 MiB: %v; stderr: %s", err, stderr.String())
		}
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		t.Fatalf("no 4 MiB of the value after 30 s; stderr: %s", stderr.String())
	}
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()
	select {
	case err := <-waited:
		if ee, isExit := err.(*exec.ExitError); isExit && ee.ExitCode() > 1 {
			t.Fatalf("get ended with %v: %s", err, stderr.String())
		}
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		t.Fatal("get still running 30 s after its reader left")
	}
}
