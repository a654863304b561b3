package hamt_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/hamt-go/hamt"
)

// BenchmarkZarrImportSmallFiles: ImportDir of 5,000 files of 100 bytes into a new map on a
// MemoryCAS, then Flush: the per-file cost of an import (listing, reading, the existence check
// that counts replaced keys, Set), which large chunks hide. Reports ns per file.
func BenchmarkZarrImportSmallFiles(b *testing.B) {
	const files = 5000
	dir := b.TempDir()
	for i := range files {
		p := filepath.Join(dir, fmt.Sprint(i/100), fmt.Sprint(i%100))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			b.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(fmt.Sprintf("%0100d", i)), 0o644); err != nil {
			b.Fatal(err)
		}
	}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		s, err := hamt.NewZarrStore(mustNewMap(b))
		if err != nil {
			b.Fatal(err)
		}
		st, err := hamt.ImportDir(ctx, s, dir)
		if err != nil || st.Files != files {
			b.Fatalf("imported %d files: %v", st.Files, err)
		}
		if _, err := s.Flush(ctx); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*files), "ns/file")
}

func mustNewMap(b *testing.B) *hamt.Map[[]byte] {
	m, err := hamt.New(context.Background(), hamt.NewMemoryCAS(), hamt.Bytes)
	if err != nil {
		b.Fatal(err)
	}
	return m
}
