package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/hamt-go/hamt"
)

// createdStore is a bbolt file a run created, and the directories it made for it, deepest first.
type createdStore struct {
	path string
	dirs []string
}

// openBolt opens the bbolt store at path, read-only unless write. A missing file is refused ("no
// store at PATH") unless create; a file this run creates is remembered, so that a command that
// fails can remove it again (discardCreated).
func (a *app) openBolt(path string, write, create bool) (*store, error) {
	missing, err := checkStoreFile(path, create)
	if err != nil {
		return nil, err
	}
	if !write {
		b, err := hamt.OpenBoltCAS(path, hamt.WithBoltReadOnly(), hamt.WithBoltTelemetry(a.tel))
		if err != nil {
			return nil, err
		}
		return &store{cas: b, close: b.CloseStrict, where: absPath(path)}, nil
	}
	if missing {
		dirs, err := mkdirs(filepath.Dir(path))
		if err != nil {
			return nil, err
		}
		a.created = &createdStore{path: path, dirs: dirs}
	}
	for try := 0; ; try++ {
		b, err := hamt.OpenBoltCAS(path, hamt.WithBoltTelemetry(a.tel))
		if err != nil {
			return nil, err
		}
		// Another run that created the file may have removed it (discardCreated) while this one
		// waited for its lock: this one then holds a file gone from the directory, whose blocks
		// nobody would find. Open anew.
		if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) && try < 3 {
			_ = b.Close()
			a.created = &createdStore{path: path}
			continue
		}
		return &store{cas: b, close: b.CloseStrict, where: absPath(path)}, nil
	}
}

// absPath is path made absolute, for saying where a store is; path itself if that fails.
func absPath(path string) string {
	if abs, err := filepath.Abs(path); err == nil {
		return abs
	}
	return path
}

// requireStore refuses a missing bbolt store before a command that needs one reads its input.
func (a *app) requireStore() error {
	if a.usesKubo() {
		return nil
	}
	path := a.storePath
	if path == "" {
		var err error
		if path, err = defaultStorePath(); err != nil {
			return err
		}
	}
	_, err := checkStoreFile(path, false)
	return err
}

// checkStoreFile says whether the store file at path is missing, and refuses one that is missing
// (unless create) or empty: opened for writing, bbolt would make a new store of an empty file,
// which holds no root to work on, and a command that does not create stores must not.
func checkStoreFile(path string, create bool) (missing bool, err error) {
	fi, err := os.Stat(path)
	missing = errors.Is(err, os.ErrNotExist)
	switch {
	case missing && !create:
		return true, fmt.Errorf("no store at %s: import a dataset first, or name one with --store", path)
	case !create && err == nil && fi.Mode().IsRegular() && fi.Size() == 0:
		return false, fmt.Errorf("open bolt store %s: the file is empty: not a hamt store", path)
	}
	return missing, nil
}

// mkdirs makes dir and its missing parents and returns those it made, deepest first.
func mkdirs(dir string) ([]string, error) {
	var missing []string
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := os.Stat(d); !errors.Is(err, os.ErrNotExist) || filepath.Dir(d) == d {
			break
		}
		missing = append(missing, d)
	}
	return missing, os.MkdirAll(dir, 0o755)
}

// discardCreated removes the store file this run created, and the directories it made for it,
// once the command has failed, if the file holds no block: a mistyped --store leaves nothing
// behind. The file is removed while this run holds its lock; a run that was waiting for that
// lock sees the file gone and opens anew (openBolt). A file another run is using, or that holds
// blocks, stays.
func (a *app) discardCreated() {
	c := a.created
	if c == nil {
		return
	}
	b, err := hamt.OpenBoltCAS(c.path, hamt.WithBoltTimeout(time.Second))
	if err != nil {
		return
	}
	n, err := b.Len(context.Background())
	empty := err == nil && n == 0
	removed := empty && os.Remove(c.path) == nil
	_ = b.Close()
	if empty && !removed {
		_ = os.Remove(c.path) // Windows removes no open file
	}
	for _, d := range c.dirs {
		_ = os.Remove(d) // only an empty one goes
	}
}
