package hamt

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"

	"golang.org/x/sync/errgroup"
)

// Setter is where ImportDir puts files: a *Map[[]byte], a *ZarrStore or an *EncryptedZarrStore.
// Set must be safe for concurrent use and must not keep value.
type Setter interface {
	Set(ctx context.Context, key string, value []byte) error
}

// Progress is what ImportDir and ExportDir report after each file: how far they are of the
// totals, known from the listing made before any file is copied. An export does not know its
// TotalBytes (sizes are not fetched ahead): it is -1 there.
type Progress struct {
	Files, TotalFiles int
	Bytes, TotalBytes int64
}

// DirStats sums up an ImportDir or ExportDir: the files copied and their bytes, and (import only)
// the entries skipped because they are not regular files (symlinks, devices, sockets, pipes).
type DirStats struct {
	Files   int
	Bytes   int64
	Skipped int
}

// DirOption configures ImportDir and ExportDir.
type DirOption func(*dirOptions) error

type dirOptions struct {
	workers  int
	progress func(Progress)
}

// WithDirWorkers bounds the number of files read and saved (or loaded and written) at once
// (default 16).
func WithDirWorkers(n int) DirOption {
	return func(o *dirOptions) error {
		if n < 1 {
			return fmt.Errorf("hamt: %d workers, want at least 1", n)
		}
		o.workers = n
		return nil
	}
}

// WithProgress calls fn after each file copied. Calls are serialized, so fn needs no locking, and
// should be quick: the copy waits for it.
func WithProgress(fn func(Progress)) DirOption {
	return func(o *dirOptions) error {
		o.progress = fn
		return nil
	}
}

func buildDirOptions(opts []DirOption) (dirOptions, error) {
	o := dirOptions{workers: 16}
	for _, opt := range opts {
		if err := opt(&o); err != nil {
			return o, err
		}
	}
	return o, nil
}

// progressCounter serializes progress reports from the workers.
type progressCounter struct {
	mu sync.Mutex
	p  Progress
	fn func(Progress)
}

func (c *progressCounter) add(n int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.p.Files++
	c.p.Bytes += n
	if c.fn != nil {
		c.fn(c.p)
	}
}

// ImportDir stores every regular file under dir in dst, keyed by its slash-separated path
// relative to dir ("temp/c/0/0"), reading and saving up to WithDirWorkers files at once. Nothing
// is skipped but what is not a regular file (symlinks are not followed). On the first failure the
// import stops and returns it; files already stored stay stored. Flush the map afterwards to get
// the dataset's root.
func ImportDir(ctx context.Context, dst Setter, dir string, opts ...DirOption) (DirStats, error) {
	o, err := buildDirOptions(opts)
	if err != nil {
		return DirStats{}, err
	}
	type file struct {
		path, key string
		size      int64
	}
	var files []file
	var stats DirStats
	prog := progressCounter{fn: o.progress}
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if d.IsDir() {
			return nil
		}
		if !d.Type().IsRegular() {
			stats.Skipped++
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		files = append(files, file{path: p, key: filepath.ToSlash(rel), size: info.Size()})
		prog.p.TotalFiles++
		prog.p.TotalBytes += info.Size()
		return nil
	})
	if err != nil {
		return stats, fmt.Errorf("import %s: %w", dir, err)
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(o.workers)
	for _, f := range files {
		if gctx.Err() != nil {
			break
		}
		g.Go(func() error {
			b, err := os.ReadFile(f.path)
			if err != nil {
				return err
			}
			if err := dst.Set(gctx, f.key, b); err != nil {
				return err
			}
			prog.add(int64(len(b)))
			return nil
		})
	}
	err = g.Wait()
	if err == nil {
		err = ctx.Err() // the loop may have stopped early on a cancelled ctx without a worker failing
	}
	stats.Files, stats.Bytes = prog.p.Files, prog.p.Bytes
	if err != nil {
		return stats, fmt.Errorf("import %s: %w", dir, err)
	}
	return stats, nil
}

// ExportDir writes every key of src as a file under dir (created if needed), the key's slashes
// making subdirectories, loading and writing up to WithDirWorkers values at once; existing files
// of the same names are overwritten. A key that is not a valid relative path (fs.ValidPath: empty,
// absolute, with "." or ".." elements) is refused before anything is written, so an export can
// never write outside dir. An ImportDir of a directory followed by an ExportDir gives back
// byte-identical files.
func ExportDir(ctx context.Context, src *ZarrStore, dir string, opts ...DirOption) (DirStats, error) {
	o, err := buildDirOptions(opts)
	if err != nil {
		return DirStats{}, err
	}
	var keys []string
	for k, err := range src.List(ctx) {
		if err != nil {
			return DirStats{}, fmt.Errorf("export %s: %w", dir, err)
		}
		if !fs.ValidPath(k) || k == "." {
			return DirStats{}, fmt.Errorf("export %s: key %q is not a relative path: %w", dir, k, ErrInvalidKey)
		}
		keys = append(keys, k)
	}
	prog := progressCounter{fn: o.progress, p: Progress{TotalFiles: len(keys), TotalBytes: -1}}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return DirStats{}, fmt.Errorf("export %s: %w", dir, err)
	}
	var made sync.Map // directories already created, so each costs one MkdirAll
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(o.workers)
	for _, k := range keys {
		if gctx.Err() != nil {
			break
		}
		g.Go(func() error {
			b, err := src.Get(gctx, k, ByteRange{})
			if err != nil {
				return err
			}
			p := filepath.Join(dir, filepath.FromSlash(k))
			if d := filepath.Dir(p); d != dir {
				if _, ok := made.Load(d); !ok {
					if err := os.MkdirAll(d, 0o755); err != nil {
						return err
					}
					made.Store(d, true)
				}
			}
			if err := os.WriteFile(p, b, 0o644); err != nil {
				return err
			}
			prog.add(int64(len(b)))
			return nil
		})
	}
	err = g.Wait()
	if err == nil {
		err = ctx.Err()
	}
	stats := DirStats{Files: prog.p.Files, Bytes: prog.p.Bytes}
	if err != nil {
		return stats, fmt.Errorf("export %s: %w", dir, err)
	}
	return stats, nil
}
