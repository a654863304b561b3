package hamt_test

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/hamt-go/hamt"
)

// gcBenchChunks, gcBenchChunkSize and gcBenchSteps shape BenchmarkGC's history: a Zarr array of
// 4,000 chunks of 4 KiB (16 MiB) in the HAMT layout, imported under a name, then 80 steps that
// each set (40) or remove (40) one chunk and move the name, as 80 runs of `hamt set NAME` and
// `hamt rm NAME` do. gcBenchLongSteps is a longer history of the same kind (400 steps: 401 roots).
const gcBenchChunks, gcBenchChunkSize, gcBenchSteps, gcBenchLongSteps = 4000, 4 << 10, 80, 400

// gcBenchHistory builds that history, of steps steps, in a new store file at path.
func gcBenchHistory(b *testing.B, path string, steps int) {
	ctx := context.Background()
	s, err := hamt.OpenBoltCAS(path)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	r := rand.New(rand.NewPCG(1, 2))
	chunk := func() []byte {
		v := make([]byte, gcBenchChunkSize)
		for i := range v {
			v[i] = byte(r.Uint32())
		}
		return v
	}
	z, err := hamt.NewZarr(ctx, s, hamt.LayoutHAMT)
	if err != nil {
		b.Fatal(err)
	}
	meta := fmt.Sprintf(`{"zarr_format":3,"node_type":"array","shape":[%d],"chunk_grid":{"name":"regular","configuration":{"chunk_shape":[1024]}},"data_type":"float32","chunk_key_encoding":{"name":"default"},"fill_value":0,"codecs":[{"name":"bytes","configuration":{"endian":"little"}}]}`, gcBenchChunks*1024)
	if err := z.Set(ctx, "t/zarr.json", []byte(meta)); err != nil {
		b.Fatal(err)
	}
	for i := range gcBenchChunks {
		if err := z.Set(ctx, fmt.Sprintf("t/c/%d", i), chunk()); err != nil {
			b.Fatal(err)
		}
	}
	root, err := z.Flush(ctx)
	if err != nil {
		b.Fatal(err)
	}
	if err := s.SetName(ctx, "ds", root); err != nil {
		b.Fatal(err)
	}
	for step := range steps {
		z, err := hamt.OpenZarr(ctx, s, root, hamt.WithZarrWrite())
		if err != nil {
			b.Fatal(err)
		}
		key := fmt.Sprintf("t/c/%d", r.IntN(gcBenchChunks))
		if step%2 == 0 {
			err = z.Set(ctx, key, chunk())
		} else {
			err = z.Delete(ctx, key)
		}
		if err != nil {
			b.Fatal(err)
		}
		next, err := z.Flush(ctx)
		if err != nil {
			b.Fatal(err)
		}
		if err := s.Flush(ctx); err != nil { // each `hamt set` commits on closing the store
			b.Fatal(err)
		}
		if err := s.SwapName(ctx, "ds", root, next); err != nil {
			b.Fatal(err)
		}
		root = next
	}
}

// BenchmarkGC times a GC (mark, sweep, compaction) of the store gcBenchHistory makes, with the
// name's history kept (81 roots; 401 for the long history) or dropped first (so the previous
// roots' own blocks are garbage), and reports the file's size before and after and the blocks
// removed. Each iteration starts from a copy of the file, made outside the timer. The mark-only
// cases are dry runs (WithGCDryRun): the mark, and the sweep's count of the blocks, without
// removing or compacting.
func BenchmarkGC(b *testing.B) {
	ctx := context.Background()
	dir := b.TempDir()
	files := map[int]string{}
	history := func(steps int) string {
		if files[steps] == "" {
			files[steps] = filepath.Join(dir, fmt.Sprintf("history-%d.bolt", steps))
			gcBenchHistory(b, files[steps], steps)
		}
		return files[steps]
	}
	for _, mode := range []struct {
		name  string
		steps int
		keep  bool // keep the history
		dry   bool // mark only
	}{
		{"history-kept", gcBenchSteps, true, false},
		{"history-dropped", gcBenchSteps, false, false},
		{"history-400-kept", gcBenchLongSteps, true, false},
		{"mark-only/history-kept", gcBenchSteps, true, true},
		{"mark-only/history-400-kept", gcBenchLongSteps, true, true},
	} {
		b.Run(mode.name, func(b *testing.B) {
			orig := history(mode.steps)
			var opts []hamt.GCOption
			if mode.dry {
				opts = append(opts, hamt.WithGCDryRun())
			}
			var rep hamt.GCReport
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				path := filepath.Join(dir, fmt.Sprintf("gc-%d.bolt", i))
				gcCopyFile(b, orig, path)
				s, err := hamt.OpenBoltCAS(path)
				if err != nil {
					b.Fatal(err)
				}
				if !mode.keep {
					if _, err := s.DropHistory(ctx, "ds"); err != nil {
						b.Fatal(err)
					}
				}
				b.StartTimer()
				if rep, err = s.GC(ctx, opts...); err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				if err := s.Close(); err != nil {
					b.Fatal(err)
				}
				_ = os.Remove(path)
				b.StartTimer()
			}
			b.ReportMetric(float64(rep.FileBefore)/(1<<20), "MiB-file-before")
			b.ReportMetric(float64(rep.FileAfter)/(1<<20), "MiB-file-after")
			b.ReportMetric(float64(rep.BytesBefore)/(1<<20), "MiB-blocks-before")
			b.ReportMetric(float64(rep.BytesAfter)/(1<<20), "MiB-blocks-after")
			b.ReportMetric(float64(rep.BlocksRemoved), "blocks-removed")
			b.ReportMetric(float64(rep.BlocksBefore), "blocks-before")
			b.ReportMetric(float64(rep.Roots), "roots")
		})
	}
}

func gcCopyFile(b *testing.B, from, to string) {
	src, err := os.Open(from)
	if err != nil {
		b.Fatal(err)
	}
	defer src.Close()
	dst, err := os.Create(to)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		b.Fatal(err)
	}
	if err := dst.Close(); err != nil {
		b.Fatal(err)
	}
}
