package hamt

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"unicode/utf8"

	"golang.org/x/sync/errgroup"
)

var (
	// ErrUnexportableKey: ExportDir met a key that cannot be written as a file under the target
	// directory on every system: not a clean relative path (empty, absolute, an empty, "." or ".."
	// element), a NUL byte, an element longer than 255 bytes or a key longer than 4095, a name this
	// system refuses, or a key
	// that another key needs as a directory ("a" beside "a/b"). The error names the key and why;
	// it is returned before anything is written.
	ErrUnexportableKey = errors.New("key cannot be written as a file")

	// ErrDirNotEmpty: ExportDir was given a directory that already holds entries (an older export,
	// anything at all), without WithReplace. Nothing was written.
	ErrDirNotEmpty = errors.New("directory is not empty")

	// ErrFileChanged: a file ImportDir read changed while the import ran: replaced (by another file,
	// a symbolic link, a pipe...) or removed since the directory was listed, or written to while it
	// was read (its size, modification or change time moved, or it did not hold the bytes its size
	// promised). The error names the file; what was stored before it stays stored.
	ErrFileChanged = errors.New("file changed during the import")
)

// Setter is where ImportDir puts files: a *Map[[]byte] or any Zarr store (ZarrStore,
// EncryptedZarrStore, ShardedZarrStore).
// Set must be safe for concurrent use and must not keep value.
type Setter interface {
	Set(ctx context.Context, key string, value []byte) error
}

// existsFunc is how ImportDir asks whether dst already holds a key, to count the files that
// replace one (DirStats.Replaced): a Zarr store's Exists, a Map's Has, or for a Setter that can
// tell neither, never.
func existsFunc(dst Setter) func(ctx context.Context, key string) (bool, error) {
	switch d := dst.(type) {
	case interface {
		Exists(ctx context.Context, key string) (bool, error)
	}:
		return d.Exists
	case interface {
		Has(ctx context.Context, key string) (bool, error)
	}:
		return d.Has
	}
	return func(context.Context, string) (bool, error) { return false, nil }
}

// Progress is what ImportDir and ExportDir report after each file: how far they are of the
// totals, known from the listing made before any file is copied. An export does not know its
// TotalBytes (sizes are not fetched ahead): it is -1 there. While the listing runs they report
// each file it finds, with Scanning set and the totals so far (Files and Bytes 0).
type Progress struct {
	Files, TotalFiles int
	Bytes, TotalBytes int64
	Scanning          bool
}

// DirStats sums up an ImportDir or ExportDir: the files copied and their bytes, and (import only)
// the entries skipped because they are not regular files (symlinks, devices, sockets, pipes),
// and how many of the files copied overwrote a key the destination already held (Replaced, when
// the destination can tell: it has an Exists or Has method; Files - Replaced keys were added).
type DirStats struct {
	Files    int
	Bytes    int64
	Skipped  int
	Replaced int
}

// DirOption configures ImportDir and ExportDir.
type DirOption func(*dirOptions) error

type dirOptions struct {
	workers   int
	progress  func(Progress)
	replace   bool
	keyPrefix string // ImportDir: put before every key, "" or ending in "/"
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

// WithReplace lets ExportDir write into a directory that is not empty: once the new export is
// completely written, everything the directory held before is deleted (symbolic links are removed,
// never followed), so that it holds exactly the new export. Without it, ExportDir refuses a
// non-empty directory with ErrDirNotEmpty. ImportDir refuses this option.
func WithReplace() DirOption {
	return func(o *dirOptions) error {
		o.replace = true
		return nil
	}
}

// WithKeyPrefix makes ImportDir store each file under prefix + "/" + its path relative to the
// directory: with prefix "surface/temp", the file c/9/0 becomes the key "surface/temp/c/9/0".
// That appends an array, or a slice of one, to an existing dataset. A trailing slash on prefix
// is optional; "" (the default) adds nothing. A prefix that is not a Zarr path ("/a", "a//b",
// "..", a NUL byte) is ErrInvalidKey. ExportDir and CopyZarr refuse this option.
func WithKeyPrefix(prefix string) DirOption {
	return func(o *dirOptions) error {
		prefix = strings.TrimSuffix(prefix, "/")
		if prefix == "" {
			o.keyPrefix = ""
			return nil
		}
		if why := zarrKeyProblem(prefix); why != "" {
			return fmt.Errorf("key prefix %q %s: %w", prefix, why, ErrInvalidKey)
		}
		o.keyPrefix = prefix + "/"
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

// found counts a file the listing found, before any is copied (Progress.Scanning).
func (c *progressCounter) found(size int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.p.Scanning = true
	c.p.TotalFiles++
	if c.p.TotalBytes >= 0 {
		c.p.TotalBytes += size
	}
	if c.fn != nil {
		c.fn(c.p)
	}
}

// testHookImportRead, when set by a test, runs after ImportDir has read a file's bytes and before
// it checks that the file did not change meanwhile: a deterministic place to change it.
var testHookImportRead func(key string)

// importFile is a regular file found by the listing of an import: its key (also its path inside
// the import's root) and what Lstat said of it then.
type importFile struct {
	key  string
	info fs.FileInfo
}

// isZarrMetadataKey reports whether key names a Zarr metadata document, v3 or v2 (zarr.json,
// .zarray, .zattrs, .zgroup, .zmetadata): what a layout must see before the chunks it describes.
func isZarrMetadataKey(key string) bool {
	switch path.Base(key) {
	case "zarr.json", ".zarray", ".zattrs", ".zgroup", ".zmetadata":
		return true
	}
	return false
}

// metadataFirst orders keys for a copy: metadata documents first, parents before children
// (fewer path elements first, then by key), then every other key by key.
func metadataFirst(a, b string) int {
	ma, mb := isZarrMetadataKey(a), isZarrMetadataKey(b)
	switch {
	case ma && !mb:
		return -1
	case mb && !ma:
		return 1
	case ma:
		if c := cmp.Compare(strings.Count(a, "/"), strings.Count(b, "/")); c != 0 {
			return c
		}
	}
	return strings.Compare(a, b)
}

// ImportDir stores every regular file under dir in dst, keyed by its slash-separated path
// relative to dir ("temp/c/0/0"), reading and saving up to WithDirWorkers files at once. Metadata
// documents (zarr.json, .zarray, .zattrs, .zgroup, .zmetadata) are saved first, one at a time,
// parents before children, so that a layout that registers arrays from their metadata
// (ShardedZarrStore) knows each array before its chunks. Flush the map afterwards to get the
// dataset's root. Into a layout that may ignore a key (ShardedZarrStore ignores a chunk outside
// its array's grid, as py-hamt does), each file is then checked to be stored, and an import that
// dropped one fails, naming it (ErrNotFound); a HAMT stores every key and is not checked.
//
// dir must be a directory; if dir itself is a symbolic link, that one link (which the caller
// named) is followed. Below it, nothing is followed: symbolic links, devices, sockets and pipes
// are counted in DirStats.Skipped and left out, and every file is opened relative to dir
// (os.Root) and checked, once open, to be the very regular file the listing saw. A file name that
// is not valid UTF-8 fails the import (ErrInvalidKey) before anything is stored. A file replaced
// or removed after the listing, or written to while it is read (size, modification time or change
// time moved; read length not its size), fails the import with ErrFileChanged naming the file
// rather than storing torn or foreign bytes. On the first failure the import stops and returns it;
// files already stored stay stored.
func ImportDir(ctx context.Context, dst Setter, dir string, opts ...DirOption) (DirStats, error) {
	o, err := buildDirOptions(opts)
	if err != nil {
		return DirStats{}, err
	}
	if o.replace {
		return DirStats{}, errors.New("hamt: WithReplace is an ExportDir option; ImportDir writes no files")
	}
	exists := existsFunc(dst)
	fail := func(stats DirStats, err error) (DirStats, error) {
		return stats, fmt.Errorf("import %s: %w", dir, err)
	}
	info, err := os.Stat(dir) // follows dir itself if it is a link: the caller named it
	if err != nil {
		return fail(DirStats{}, err)
	}
	if !info.IsDir() {
		return fail(DirStats{}, fmt.Errorf("%s is a %s, not a directory", dir, fileKind(info.Mode())))
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return fail(DirStats{}, err)
	}
	defer root.Close()
	var stats DirStats
	var replaced atomic.Int64
	prog := progressCounter{fn: o.progress}
	var files []importFile
	if err := listImport(ctx, root, ".", "", info, &files, &stats, &prog); err != nil {
		return fail(stats, err)
	}
	prog.p.Scanning = false // the totals are the listing's
	store := func(ctx context.Context, f importFile) error {
		b, err := readImportFile(root, f)
		if err != nil {
			return err
		}
		key := o.keyPrefix + f.key
		// The keys of one import differ, so no other worker sets key between the two calls.
		held, err := exists(ctx, key)
		if err != nil {
			return err
		}
		if err := dst.Set(ctx, key, b); err != nil {
			return err
		}
		if held {
			replaced.Add(1)
		}
		prog.add(int64(len(b)))
		return nil
	}
	// Metadata documents go first, one at a time, parents before children: a layout that
	// registers arrays from their metadata (ShardedZarrStore) must know an array before its chunks.
	slices.SortStableFunc(files, func(a, b importFile) int { return metadataFirst(a.key, b.key) })
	meta := 0
	for ; meta < len(files) && isZarrMetadataKey(files[meta].key); meta++ {
		if err = store(ctx, files[meta]); err != nil {
			break
		}
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(o.workers)
	for _, f := range files[meta:] {
		if err != nil || gctx.Err() != nil {
			break
		}
		g.Go(func() error { return store(gctx, f) })
	}
	if werr := g.Wait(); err == nil {
		err = werr
	}
	if err == nil {
		err = ctx.Err() // the loop may have stopped early on a cancelled ctx without a worker failing
	}
	if s, ok := dst.(keyDropper); ok && err == nil {
		// The layout may ignore a key it has no place for (the sharded one, a chunk outside its
		// array's grid, as py-hamt does): an import that reports success has stored every file.
		keys := make([]string, len(files))
		for i, f := range files {
			keys[i] = o.keyPrefix + f.key
		}
		err = checkStored(ctx, s, keys, o.workers, "import")
	}
	stats.Files, stats.Bytes, stats.Replaced = prog.p.Files, prog.p.Bytes, int(replaced.Load())
	if err != nil {
		return fail(stats, err)
	}
	return stats, nil
}

// listImport appends to files every regular file under the directory name of root (whose Lstat
// was info), keys prefixed by prefix, in lexical order, and counts what it skips. Each directory
// is opened as its own root, so that its entries are examined with one lstat relative to the open
// directory, never through a path that a concurrent rename could redirect.
func listImport(ctx context.Context, root *os.Root, name, prefix string, info fs.FileInfo, files *[]importFile, stats *DirStats, prog *progressCounter) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	d, err := root.OpenRoot(name)
	if err != nil {
		// A link put in the directory's place that leads out of root fails the open: say why.
		if now, lerr := root.Lstat(name); lerr == nil && (!now.IsDir() || !os.SameFile(now, info)) {
			return fmt.Errorf("directory %q was replaced by a %s after it was listed: %w", path.Join(".", prefix), fileKind(now.Mode()), ErrFileChanged)
		}
		return err
	}
	defer d.Close()
	f, err := d.Open(".")
	if err != nil {
		return err
	}
	now, err := f.Stat()
	if err == nil && (!now.IsDir() || !os.SameFile(now, info)) {
		err = fmt.Errorf("directory %q was replaced after it was listed: %w", path.Join(".", prefix), ErrFileChanged)
	}
	var names []string
	if err == nil {
		names, err = f.Readdirnames(-1)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	slices.Sort(names)
	for _, n := range names {
		key := prefix + n
		fi, err := d.Lstat(n)
		if errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("%q was removed while the directory was listed: %w", key, ErrFileChanged)
		}
		if err != nil {
			return err
		}
		switch {
		case fi.IsDir():
			if err := listImport(ctx, d, n, key+"/", fi, files, stats, prog); err != nil {
				return err
			}
		case fi.Mode().IsRegular():
			if !utf8.ValidString(key) {
				return fmt.Errorf("file name %q: %w: not valid UTF-8", key, ErrInvalidKey)
			}
			*files = append(*files, importFile{key: key, info: fi})
			prog.found(fi.Size())
		default:
			stats.Skipped++
		}
	}
	return nil
}

// readImportFile reads the whole of f through root, failing with ErrFileChanged unless the file
// opened is the regular file the listing saw and it did not change while it was read.
func readImportFile(root *os.Root, f importFile) ([]byte, error) {
	changed := func(why string) error {
		return fmt.Errorf("file %q %s: %w", f.key, why, ErrFileChanged)
	}
	// O_NONBLOCK: a pipe put in the file's place must not block the open; it is refused below.
	h, err := root.OpenFile(f.key, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		// A link put in the place of the file or of a directory above it, leading out of root,
		// fails the open: say why.
		switch now, lerr := root.Lstat(f.key); {
		case errors.Is(lerr, fs.ErrNotExist):
			return nil, changed("was removed after the directory was listed")
		case lerr != nil:
			return nil, changed(fmt.Sprintf("can no longer be reached as listed (%v)", lerr))
		case !now.Mode().IsRegular() || !os.SameFile(now, f.info):
			return nil, changed(fmt.Sprintf("was replaced by a %s after the directory was listed", fileKind(now.Mode())))
		}
		return nil, err
	}
	defer h.Close()
	before, err := h.Stat()
	if err != nil {
		return nil, err
	}
	if !before.Mode().IsRegular() || !os.SameFile(before, f.info) {
		return nil, changed(fmt.Sprintf("was replaced by a %s after the directory was listed", fileKind(before.Mode())))
	}
	size := before.Size()
	if int64(int(size)) != size {
		return nil, fmt.Errorf("file %q: %d bytes do not fit in memory", f.key, size)
	}
	b := make([]byte, size)
	if _, err := io.ReadFull(h, b); errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
		return nil, changed("shrank while it was read")
	} else if err != nil {
		return nil, err
	}
	var more [1]byte
	if n, err := h.Read(more[:]); n > 0 {
		return nil, changed("grew while it was read")
	} else if err != nil && err != io.EOF {
		return nil, err
	}
	if testHookImportRead != nil {
		testHookImportRead(f.key)
	}
	after, err := h.Stat()
	if err != nil {
		return nil, err
	}
	if after.Size() != size || !after.ModTime().Equal(before.ModTime()) || changeTime(after) != changeTime(before) {
		return nil, changed("was written to while it was read")
	}
	return b, nil
}

// fileKind names the type of a file mode for error messages.
func fileKind(m fs.FileMode) string {
	switch {
	case m.IsRegular():
		return "regular file"
	case m.IsDir():
		return "directory"
	case m&fs.ModeSymlink != 0:
		return "symbolic link"
	case m&fs.ModeNamedPipe != 0:
		return "named pipe"
	case m&fs.ModeSocket != 0:
		return "socket"
	case m&fs.ModeDevice != 0:
		return "device"
	default:
		return "special file"
	}
}

// maxNameBytes is the longest path element ExportDir writes, within every common limit: NAME_MAX
// is 255 bytes on Linux and the BSDs, and Windows and macOS allow 255 UTF-16 units, which a name
// of 255 UTF-8 bytes never exceeds.
const maxNameBytes = 255

// maxPathBytes is the longest key ExportDir writes: PATH_MAX on Linux is 4096 bytes with its NUL,
// so no longer path can be opened as one name there. It also bounds the work of a key: the export
// resolves a key element by element, so a key of thousands of elements from a tiny hostile CAR
// would otherwise cost minutes.
const maxPathBytes = 4095

// exportPathProblem says why key cannot be written as a file on this system ("" if it can), not
// counting its clashes with other keys.
func exportPathProblem(key string) string {
	switch {
	case !utf8.ValidString(key):
		return "is not valid UTF-8"
	case key == "":
		return "is empty"
	case key[0] == '/':
		return "is an absolute path"
	case len(key) > maxPathBytes:
		return fmt.Sprintf("is %d bytes long, longer than the %d a path may be", len(key), maxPathBytes)
	}
	if why := zarrKeyProblem(key); why != "" {
		return why
	}
	for e := range strings.SplitSeq(key, "/") {
		if len(e) > maxNameBytes {
			return fmt.Sprintf("has a path element of %d bytes, longer than the %d file systems allow", len(e), maxNameBytes)
		}
		if runtime.GOOS == "windows" {
			if i := strings.IndexFunc(e, func(r rune) bool { return r < 32 || strings.ContainsRune(`<>:"\|?*`, r) }); i >= 0 {
				return fmt.Sprintf("has the character %q, which Windows refuses in file names", e[i])
			}
			if strings.HasSuffix(e, ".") || strings.HasSuffix(e, " ") {
				return "has a path element ending in a dot or space, which Windows drops"
			}
		}
	}
	if _, err := filepath.Localize(key); err != nil {
		return "is not a file name this system allows (a reserved name?)"
	}
	return ""
}

// exportKeys lists src's keys, in the order src lists them, after checking that every one can be
// written as a file and that no key is a directory of another, calling found for each key listed.
// The listing order is kept because it is the order of the map's walk, which is the order a
// FetchedDAG's stream brings the values in: writing the files in it follows the stream instead of
// waiting on values scattered through it.
func exportKeys(ctx context.Context, src Zarr, found func()) ([]string, error) {
	var keys []string
	for k, err := range src.List(ctx) {
		if err != nil {
			return nil, err
		}
		if why := exportPathProblem(k); why != "" {
			return nil, fmt.Errorf("key %q %s: %w", k, why, ErrUnexportableKey)
		}
		keys = append(keys, k)
		found()
	}
	sorted := slices.Clone(keys)
	slices.Sort(sorted)
	for i, k := range sorted {
		if i > 0 && sorted[i-1] == k {
			return nil, fmt.Errorf("key %q is listed twice: %w", k, ErrMalformedNode)
		}
		// The keys under k+"/", if any, sort together; the first would be found here.
		if j, _ := slices.BinarySearch(sorted, k+"/"); j < len(sorted) && strings.HasPrefix(sorted[j], k+"/") {
			return nil, fmt.Errorf("key %q is a file, but key %q needs it to be a directory: %w", k, sorted[j], ErrUnexportableKey)
		}
	}
	return keys, nil
}

// ExportDir writes every key of src as a file under dir, the key's slashes making
// subdirectories, in the order src lists them, loading and writing up to WithDirWorkers values at once (each in pieces of at most 1 MiB, so
// memory stays bounded whatever the values' sizes), so that dir then holds
// exactly the dataset. From a ZarrStore over a KuboCAS the values that are raw blocks are read
// instead through Kubo's RPC API, 500 to a cat request (their sizes from dag/stat), each written
// straight into its file and hashed against its CID (ErrCorrupt, ErrMissingBlock,
// ErrUnexpectedBlock fail the export); an RPC API that does not serve these commands leaves them to
// one load each. An ImportDir of a directory followed by an ExportDir gives back
// byte-identical files.
//
// dir must be absent (it is created, with its parents), an empty directory, or, with
// WithReplace, any directory; a non-empty one is refused with ErrDirNotEmpty, so that no stale
// chunk of an older export survives to be read where a fill value is meant. If dir itself is a
// symbolic link to a directory, that one link (which the caller named) is followed.
//
// Every key is checked before anything is written: a key that cannot be a file (see
// ErrUnexportableKey) fails the export with an error naming it. The files are then written, through
// an os.Root that no symbolic link or ".." can lead out of, into a fresh hidden directory inside
// dir (".hamt-export-…"); only once every file is written and closed are its entries moved into
// dir (directories first, the root's zarr.json last, so a Zarr reader finds the metadata only when
// the arrays are in place) and, with WithReplace, dir's old entries deleted. An export that fails
// (a value that cannot be loaded, a full disk, a cancelled ctx) removes what it wrote and leaves
// dir as it was. If the process dies instead, dir may keep the hidden directory (a later export
// then needs WithReplace) or, if it dies while moving entries, a mix that a replacing export
// repairs. Files are not synced to disk: call sync if the export must survive a power loss. Two
// exports must not write into the same directory at once.
func ExportDir(ctx context.Context, src Zarr, dir string, opts ...DirOption) (DirStats, error) {
	o, err := buildDirOptions(opts)
	if err != nil {
		return DirStats{}, err
	}
	if o.keyPrefix != "" {
		return DirStats{}, errors.New("hamt: WithKeyPrefix is an ImportDir option; ExportDir writes every key")
	}
	fail := func(stats DirStats, err error) (DirStats, error) {
		return stats, fmt.Errorf("export %s: %w", dir, err)
	}
	existed, err := checkExportTarget(dir, o.replace)
	if err != nil {
		return fail(DirStats{}, err)
	}
	scan := progressCounter{fn: o.progress, p: Progress{TotalBytes: -1}}
	keys, err := exportKeys(ctx, src, func() { scan.found(0) })
	if err != nil {
		return fail(DirStats{}, err)
	}
	// Nothing has been written yet; from here on, a failure undoes what was.
	if !existed {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fail(DirStats{}, err)
		}
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		if !existed {
			os.Remove(dir)
		}
		return fail(DirStats{}, err)
	}
	defer root.Close()
	tops := topNames(keys)
	tmp, err := makeHiddenDir(root, ".hamt-export-", tops, 0o755)
	if err != nil {
		if !existed {
			os.Remove(dir)
		}
		return fail(DirStats{}, err)
	}
	stats, err := writeExport(ctx, root, tmp, src, keys, o)
	if err == nil {
		err = installExport(root, tmp, tops, o.replace)
	}
	if err != nil {
		root.RemoveAll(tmp)
		if !existed {
			os.Remove(dir) // only if empty: never more than this export made
		}
		return fail(stats, err)
	}
	return stats, nil
}

// checkExportTarget reports whether dir exists, failing if it is not a directory, or is one that
// is not empty while replace is off.
func checkExportTarget(dir string, replace bool) (existed bool, err error) {
	info, err := os.Stat(dir)
	if errors.Is(err, fs.ErrNotExist) {
		if _, lerr := os.Lstat(dir); lerr == nil {
			return false, fmt.Errorf("%s is a symbolic link to nothing", dir)
		}
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if !info.IsDir() {
		return true, fmt.Errorf("%s is a %s, not a directory", dir, fileKind(info.Mode()))
	}
	if replace {
		return true, nil
	}
	f, err := os.Open(dir)
	if err != nil {
		return true, err
	}
	defer f.Close()
	names, err := f.Readdirnames(1)
	if err != nil && err != io.EOF {
		return true, err
	}
	if len(names) > 0 {
		return true, fmt.Errorf("%s holds %q: %w", dir, names[0], ErrDirNotEmpty)
	}
	return true, nil
}

// topNames is the first path elements of keys, sorted, without repeats.
func topNames(keys []string) []string {
	tops := make([]string, 0, len(keys))
	for _, k := range keys {
		t, _, _ := strings.Cut(k, "/")
		tops = append(tops, t)
	}
	slices.Sort(tops)
	return slices.Compact(tops)
}

// makeHiddenDir makes a new directory in root named prefix and random hex, not one of avoid
// (sorted), and returns its name.
func makeHiddenDir(root *os.Root, prefix string, avoid []string, perm fs.FileMode) (string, error) {
	for range 100 {
		var r [8]byte
		rand.Read(r[:])
		name := prefix + hex.EncodeToString(r[:])
		if _, found := slices.BinarySearch(avoid, name); found {
			continue
		}
		err := root.Mkdir(name, perm)
		if errors.Is(err, fs.ErrExist) {
			continue
		}
		return name, err
	}
	return "", errors.New("no free name for a temporary directory")
}

// writeExport writes every key of src under tmp in root: the directories first, one at a time,
// then the files by WithDirWorkers at once. Every directory and file is created new (O_EXCL), so
// a file system that folds case or normalizes names, making two keys one file, fails the export
// instead of losing a key.
func writeExport(ctx context.Context, root *os.Root, tmp string, src Zarr, keys []string, o dirOptions) (DirStats, error) {
	out, err := root.OpenRoot(tmp)
	if err != nil {
		return DirStats{}, err
	}
	defer out.Close()
	made := map[string]bool{}
	var dirs []string
	for _, k := range keys {
		for i := range len(k) {
			if k[i] == '/' && !made[k[:i]] {
				made[k[:i]] = true
				dirs = append(dirs, k[:i])
			}
		}
	}
	slices.Sort(dirs) // a directory sorts before the paths it begins
	for _, d := range dirs {
		if err := ctx.Err(); err != nil {
			return DirStats{}, err
		}
		if err := out.Mkdir(d, 0o755); errors.Is(err, fs.ErrExist) {
			return DirStats{}, fmt.Errorf("directory %q clashes with another key's on this file system (does it fold case or normalize names?): %w", d, err)
		} else if err != nil {
			return DirStats{}, err
		}
	}
	prog := progressCounter{fn: o.progress, p: Progress{TotalFiles: len(keys), TotalBytes: -1}}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(o.workers)
	bulk, rest, rr := streamableValues(ctx, src, keys) // raw values streamed in a few requests, if the store can
	var left []string                                  // bulk values the store would not stream
	if len(bulk) > 0 {
		g.Go(func() (err error) { left, err = writeBulkValues(gctx, out, rr, bulk, &prog); return err })
	}
	writeFiles := func(gctx context.Context, g *errgroup.Group, keys []string) {
		for _, k := range keys {
			if gctx.Err() != nil {
				break
			}
			g.Go(func() error {
				n, err := writeNewFile(gctx, out, src, k)
				if err != nil {
					return err
				}
				prog.add(n)
				return nil
			})
		}
	}
	writeFiles(gctx, g, rest)
	err = g.Wait()
	if err == nil && len(left) > 0 { // loaded one by one, WithDirWorkers at once as the rest were
		g, gctx = errgroup.WithContext(ctx)
		g.SetLimit(o.workers)
		writeFiles(gctx, g, left)
		err = g.Wait()
	}
	if err == nil {
		err = ctx.Err()
	}
	return DirStats{Files: prog.p.Files, Bytes: prog.p.Bytes}, err
}

// writeNewFile creates the file key in root, which must not exist, and writes key's value from src
// to it in bounded pieces (ZarrValue.WriteTo), returning its size.
func writeNewFile(ctx context.Context, root *os.Root, src Zarr, key string) (int64, error) {
	f, err := root.OpenFile(key, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if errors.Is(err, fs.ErrExist) {
		return 0, fmt.Errorf("key %q clashes with another key's file on this file system (does it fold case or normalize names?): %w", key, err)
	}
	if err != nil {
		return 0, err
	}
	n, err := writeZarrValue(ctx, src, f, key, ByteRange{})
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return n, err
}

// installOrder sorts the entries tops of tmp in the order they are moved into place: directories,
// then files, then the Zarr metadata of the hierarchy's root, which readers open first.
func installOrder(root *os.Root, tmp string, tops []string) []string {
	rank := make(map[string]int, len(tops))
	for _, n := range tops {
		switch fi, err := root.Lstat(tmp + "/" + n); {
		case n == "zarr.json" || n == ".zgroup" || n == ".zattrs" || n == ".zmetadata":
			rank[n] = 2
		case err == nil && fi.IsDir():
			rank[n] = 0
		default:
			rank[n] = 1
		}
	}
	order := slices.Clone(tops)
	slices.SortStableFunc(order, func(a, b string) int { return rank[a] - rank[b] })
	return order
}

// installExport moves the entries tops of tmp into root, where tmp is: directories first, then
// files, the Zarr root metadata last. With replace, root's other entries are first moved aside
// into a hidden directory, deleted once the new entries are in place. Without it, an entry that
// appeared in root since the export began makes it fail. A failed move is undone.
func installExport(root *os.Root, tmp string, tops []string, replace bool) error {
	d, err := root.Open(".")
	if err != nil {
		return err
	}
	present, err := d.Readdirnames(-1)
	d.Close()
	if err != nil {
		return err
	}
	present = slices.DeleteFunc(present, func(n string) bool { return n == tmp })
	slices.Sort(present)
	if len(present) > 0 && !replace {
		return fmt.Errorf("%q appeared during the export: %w", present[0], ErrDirNotEmpty)
	}
	type move struct{ from, to string }
	var done []move
	undo := func() {
		for _, m := range slices.Backward(done) {
			root.Rename(m.to, m.from)
		}
	}
	var old string
	if len(present) > 0 {
		avoid := slices.Concat(tops, present)
		slices.Sort(avoid)
		if old, err = makeHiddenDir(root, ".hamt-replaced-", avoid, 0o700); err != nil {
			return err
		}
		for _, n := range present {
			if err := root.Rename(n, old+"/"+n); err != nil {
				undo()
				root.Remove(old)
				return fmt.Errorf("move the old %q aside: %w", n, err)
			}
			done = append(done, move{n, old + "/" + n})
		}
	}
	for _, n := range installOrder(root, tmp, tops) {
		if err := root.Rename(tmp+"/"+n, n); err != nil {
			undo()
			if old != "" {
				root.Remove(old)
			}
			return fmt.Errorf("move %q into place: %w", n, err)
		}
		done = append(done, move{tmp + "/" + n, n})
	}
	err = root.Remove(tmp)
	if old != "" {
		err = errors.Join(err, root.RemoveAll(old))
	}
	if err != nil {
		return fmt.Errorf("the export is in place, but not all of %s and %s could be removed: %w", tmp, old, err)
	}
	return nil
}
