package hamt

import (
	"os"
	"path/filepath"
	"testing"
)

// TestCopyFileRangeShortSource: a source that ends before the bytes asked is an error, not a
// short copy reported as done.
func TestCopyFileRangeShortSource(t *testing.T) {
	dir := t.TempDir()
	src, err := os.Create(filepath.Join(dir, "src"))
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	if _, err := src.Write([]byte("ten bytes!")); err != nil {
		t.Fatal(err)
	}
	dst, err := os.Create(filepath.Join(dir, "dst"))
	if err != nil {
		t.Fatal(err)
	}
	defer dst.Close()
	n, handled, err := copyFileRange(dst, src, 0, 100)
	if !handled {
		t.Skip("copy_file_range is not available here")
	}
	if err == nil {
		t.Fatalf("copied %d of 100 bytes from a 10-byte file, no error", n)
	}
	if n != 10 {
		t.Errorf("written %d, want 10", n)
	}
}
