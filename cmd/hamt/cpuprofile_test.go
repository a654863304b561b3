package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// TestCPUProfileIsWrittenWhereHAMT_CPUPROFILESays: the README's HAMT_CPUPROFILE=file makes a run
// of the binary write a CPU profile there (pprof's format: gzipped protobuf), and a file that
// cannot be created is said on stderr without failing the command.
func TestCPUProfileIsWrittenWhereHAMT_CPUPROFILESays(t *testing.T) {
	dir := t.TempDir()
	prof := filepath.Join(dir, "cpu.pprof")
	store := filepath.Join(dir, "s.bolt")
	cmd := exec.Command(binary, "import", "--no-progress", filepath.Join("..", "..", "testdata", "zarr"))
	cmd.Env = append(os.Environ(), "HAMT_STORE="+store, cpuProfileEnv+"="+prof)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("import: %v: %s", err, out)
	}
	b, err := os.ReadFile(prof)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(b, []byte{0x1f, 0x8b}) {
		t.Fatalf("the profile is not gzipped pprof data: %d bytes, % x...", len(b), b[:min(len(b), 8)])
	}

	cmd = exec.Command(binary, "version")
	cmd.Env = append(os.Environ(), cpuProfileEnv+"="+filepath.Join(dir, "no", "such", "dir", "cpu.pprof"))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("version with an unwritable profile: %v", err)
	}
	if !bytes.Contains(stderr.Bytes(), []byte("hamt: "+cpuProfileEnv+": ")) {
		t.Fatalf("stderr %q does not say the profile failed", stderr.String())
	}
}
