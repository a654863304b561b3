package hamt

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"slices"
	"strings"
	"time"
)

// ZarrFS is a read-only fs.FS view of a Zarr store (any layout): keys are files, the slash-separated prefixes
// of keys are directories. It implements fs.ReadDirFS, fs.ReadFileFS and fs.StatFS, and its files
// implement io.Seeker and io.ReaderAt, so http.FileServer, fs.WalkDir and the like work on it.
//
// The directory tree is a snapshot of the store's keys taken by NewZarrFS (or ZarrStore.FS); file contents and
// sizes are read from the store when asked for, through the context given to FS. Keys that are
// not valid fs paths (fs.ValidPath: empty, absolute, with "." or ".." or empty elements) are not
// in the view, nor is a key that is also a directory ("a" beside "a/b"): the directory wins.
type ZarrFS struct {
	s    Zarr
	ctx  context.Context
	dirs map[string][]dirEntry // directory path ("." for the root) → its entries, sorted by name
}

// FS returns an fs.FS view of the store, listing its keys once now. ctx governs every read made
// through the view later.
func (s *ZarrStore) FS(ctx context.Context) (*ZarrFS, error) {
	return NewZarrFS(ctx, s)
}

// NewZarrFS returns an fs.FS view of z, whatever its layout, listing its keys once now. ctx
// governs every read made through the view later.
func NewZarrFS(ctx context.Context, s Zarr) (*ZarrFS, error) {
	f := &ZarrFS{s: s, ctx: ctx, dirs: map[string][]dirEntry{".": nil}}
	files := map[string]bool{}
	for k, err := range s.List(ctx) {
		if err != nil {
			return nil, fmt.Errorf("zarr fs: %w", err)
		}
		if fs.ValidPath(k) && k != "." {
			files[k] = true
		}
	}
	isDir := map[string]bool{".": true}
	for k := range files {
		for d := path.Dir(k); !isDir[d]; d = path.Dir(d) {
			isDir[d] = true
		}
	}
	for d := range isDir {
		if d != "." {
			f.dirs[path.Dir(d)] = append(f.dirs[path.Dir(d)], dirEntry{f: f, name: path.Base(d), full: d, dir: true})
		}
	}
	for k := range files {
		if !isDir[k] {
			f.dirs[path.Dir(k)] = append(f.dirs[path.Dir(k)], dirEntry{f: f, name: path.Base(k), full: k})
		}
	}
	for d, es := range f.dirs {
		slices.SortFunc(es, func(a, b dirEntry) int { return strings.Compare(a.name, b.name) })
		f.dirs[d] = es
	}
	return f, nil
}

// Open opens the file or directory name.
func (f *ZarrFS) Open(name string) (fs.File, error) {
	if !fs.ValidPath(name) {
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrInvalid}
	}
	if es, ok := f.dirs[name]; ok {
		return &zarrDir{info: dirInfo(name), entries: es}, nil
	}
	info, err := f.stat(name)
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: name, Err: err}
	}
	return &zarrFile{f: f, info: info, full: name}, nil
}

// ReadDir returns the entries of directory name, sorted by name.
func (f *ZarrFS) ReadDir(name string) ([]fs.DirEntry, error) {
	if !fs.ValidPath(name) {
		return nil, &fs.PathError{Op: "readdir", Path: name, Err: fs.ErrInvalid}
	}
	es, ok := f.dirs[name]
	if !ok {
		err := fs.ErrNotExist
		if f.isFile(name) {
			err = errors.New("not a directory")
		}
		return nil, &fs.PathError{Op: "readdir", Path: name, Err: err}
	}
	out := make([]fs.DirEntry, len(es))
	for i := range es {
		out[i] = es[i]
	}
	return out, nil
}

// ReadFile returns the contents of file name.
func (f *ZarrFS) ReadFile(name string) ([]byte, error) {
	if !fs.ValidPath(name) {
		return nil, &fs.PathError{Op: "read", Path: name, Err: fs.ErrInvalid}
	}
	if !f.isFile(name) {
		return nil, &fs.PathError{Op: "read", Path: name, Err: fs.ErrNotExist}
	}
	b, err := f.s.Get(f.ctx, name, ByteRange{})
	if err != nil {
		return nil, &fs.PathError{Op: "read", Path: name, Err: fsErr(err)}
	}
	return b, nil
}

// Stat describes file or directory name.
func (f *ZarrFS) Stat(name string) (fs.FileInfo, error) {
	if !fs.ValidPath(name) {
		return nil, &fs.PathError{Op: "stat", Path: name, Err: fs.ErrInvalid}
	}
	if _, ok := f.dirs[name]; ok {
		return dirInfo(name), nil
	}
	info, err := f.stat(name)
	if err != nil {
		return nil, &fs.PathError{Op: "stat", Path: name, Err: err}
	}
	return info, nil
}

// isFile reports whether name is a file of the view.
func (f *ZarrFS) isFile(name string) bool {
	es := f.dirs[path.Dir(name)]
	i, ok := slices.BinarySearchFunc(es, path.Base(name), func(e dirEntry, n string) int {
		return strings.Compare(e.name, n)
	})
	return ok && !es[i].dir
}

// stat asks the store for the size of file name.
func (f *ZarrFS) stat(name string) (fileInfo, error) {
	if !f.isFile(name) {
		return fileInfo{}, fs.ErrNotExist
	}
	v, err := f.s.Open(f.ctx, name)
	if err != nil {
		return fileInfo{}, fsErr(err)
	}
	return fileInfo{name: path.Base(name), size: v.Size()}, nil
}

// fsErr maps a store's ErrNotFound (a key deleted since the snapshot) to fs.ErrNotExist, keeping
// the store's error for errors.Is.
func fsErr(err error) error {
	if errors.Is(err, ErrNotFound) {
		return fmt.Errorf("%w (%w)", fs.ErrNotExist, err)
	}
	return err
}

// dirEntry is an entry of a directory of the view.
type dirEntry struct {
	f    *ZarrFS
	name string
	full string
	dir  bool
}

func (e dirEntry) Name() string { return e.name }
func (e dirEntry) IsDir() bool  { return e.dir }
func (e dirEntry) Type() fs.FileMode {
	if e.dir {
		return fs.ModeDir
	}
	return 0
}

// Info describes the entry; for a file it asks the store for its size.
func (e dirEntry) Info() (fs.FileInfo, error) {
	if e.dir {
		return dirInfo(e.full), nil
	}
	return e.f.stat(e.full)
}

// fileInfo describes a file (a key) or, with dir set, a directory.
type fileInfo struct {
	name string
	size int64
	dir  bool
}

func dirInfo(full string) fileInfo { return fileInfo{name: path.Base(full), dir: true} }

func (i fileInfo) Name() string       { return i.name }
func (i fileInfo) Size() int64        { return i.size }
func (i fileInfo) ModTime() time.Time { return time.Time{} }
func (i fileInfo) IsDir() bool        { return i.dir }
func (i fileInfo) Sys() any           { return nil }
func (i fileInfo) Mode() fs.FileMode {
	if i.dir {
		return fs.ModeDir | 0o555
	}
	return 0o444
}

// zarrDir is an open directory.
type zarrDir struct {
	info    fileInfo
	entries []dirEntry
	off     int
}

func (d *zarrDir) Stat() (fs.FileInfo, error) { return d.info, nil }
func (d *zarrDir) Close() error               { return nil }
func (d *zarrDir) Read([]byte) (int, error) {
	return 0, &fs.PathError{Op: "read", Path: d.info.name, Err: errors.New("is a directory")}
}

// ReadDir returns the next n entries (all remaining when n <= 0), as fs.ReadDirFile specifies.
func (d *zarrDir) ReadDir(n int) ([]fs.DirEntry, error) {
	rest := d.entries[d.off:]
	if n > 0 && len(rest) == 0 {
		return nil, io.EOF
	}
	if n > 0 && n < len(rest) {
		rest = rest[:n]
	}
	d.off += len(rest)
	out := make([]fs.DirEntry, len(rest))
	for i := range rest {
		out[i] = rest[i]
	}
	return out, nil
}

// zarrFile is an open file. Its contents are loaded on the first Read or Seek; ReadAt reads the
// range asked for from the store without loading the rest.
type zarrFile struct {
	f      *ZarrFS
	info   fileInfo
	full   string
	r      *bytes.Reader // nil until loaded
	closed bool
}

func (z *zarrFile) Stat() (fs.FileInfo, error) { return z.info, nil }

func (z *zarrFile) Close() error {
	if z.closed {
		return &fs.PathError{Op: "close", Path: z.info.name, Err: fs.ErrClosed}
	}
	z.closed = true
	z.r = nil
	return nil
}

func (z *zarrFile) load() error {
	if z.closed {
		return &fs.PathError{Op: "read", Path: z.info.name, Err: fs.ErrClosed}
	}
	if z.r == nil {
		b, err := z.f.ReadFile(z.full)
		if err != nil {
			return err
		}
		z.r = bytes.NewReader(b)
	}
	return nil
}

// Read reads the file's contents.
func (z *zarrFile) Read(p []byte) (int, error) {
	if err := z.load(); err != nil {
		return 0, err
	}
	return z.r.Read(p)
}

// Seek sets the offset of the next Read.
func (z *zarrFile) Seek(offset int64, whence int) (int64, error) {
	if err := z.load(); err != nil {
		return 0, err
	}
	return z.r.Seek(offset, whence)
}

// ReadAt reads len(p) bytes at off by a ranged read from the store (or from the contents, once
// loaded).
func (z *zarrFile) ReadAt(p []byte, off int64) (int, error) {
	if z.closed {
		return 0, &fs.PathError{Op: "read", Path: z.info.name, Err: fs.ErrClosed}
	}
	if off < 0 {
		return 0, &fs.PathError{Op: "read", Path: z.info.name, Err: fs.ErrInvalid}
	}
	if z.r != nil {
		return z.r.ReadAt(p, off)
	}
	b, err := z.f.s.Get(z.f.ctx, z.full, RangeBetween(off, off+int64(len(p))))
	if err != nil {
		return 0, &fs.PathError{Op: "read", Path: z.info.name, Err: fsErr(err)}
	}
	n := copy(p, b)
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}
