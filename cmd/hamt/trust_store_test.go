package main

// Tests of issue 11's store items through the binary: an empty, damaged or bit-rotted store file
// gives one line on standard error and exit 1, never a crash or wrong bytes.

import (
	"bytes"
	binenc "encoding/binary"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// failsWith runs the binary and fails the test unless it exits 1 with one line on standard error
// that holds want.
func failsWith(t *testing.T, store, want string, args ...string) {
	t.Helper()
	r := hamtRun(t, store, nil, args...)
	lines := strings.Split(strings.TrimRight(r.stderr, "\n"), "\n")
	if r.code != 1 || len(lines) != 1 || !strings.Contains(r.stderr, want) {
		t.Errorf("hamt %v: exit %d, stderr %q; want exit 1 and one line with %q", args, r.code, r.stderr, want)
	}
}

func TestEmptyStoreFileIsNotAStore(t *testing.T) {
	store := filepath.Join(t.TempDir(), "empty.bolt")
	if err := os.WriteFile(store, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	root := "bafyr4igb3js3dqlnsvmbi533lhghfet3l4r35vbi7mlrvxjb6f3n5wkc3m"
	value := filepath.Join(t.TempDir(), "value")
	if err := os.WriteFile(value, []byte("v"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"ls", root}, {"get", root, "k"}, {"stats", root}, {"set", root, "k", value}, {"rm", root, "k"}} {
		failsWith(t, store, "is empty: not a hamt store", args...)
	}
	// The commands that write left the empty file as it was, not turned into a store.
	if fi, err := os.Stat(store); err != nil || fi.Size() != 0 {
		t.Fatalf("the empty store file is now %v, %v", fi, err)
	}
}

// importZarr imports the bundled hierarchy into a new store and returns the store and the root.
func importZarr(t *testing.T) (store, root string) {
	t.Helper()
	store = filepath.Join(t.TempDir(), "store.bolt")
	return store, ok(t, store, nil, "import", filepath.Join("..", "..", "testdata", "zarr")).lastLine()
}

// overwrite writes data at off in the file at path.
func overwrite(t *testing.T, path string, off int64, data []byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(data, off); err != nil {
		t.Fatal(err)
	}
}

// rootBucketPage returns the offset of the page of bbolt's root bucket (which every transaction
// reads), from the newer meta page: page size at byte 24, txid at 64, root page at 32.
func rootBucketPage(t *testing.T, path string) int64 {
	t.Helper()
	file, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	ps := int64(binenc.NativeEndian.Uint32(file[24:]))
	m := file[:ps]
	if binenc.NativeEndian.Uint64(file[ps+64:]) > binenc.NativeEndian.Uint64(file[64:]) {
		m = file[ps:]
	}
	return int64(binenc.NativeEndian.Uint64(m[32:])) * ps
}

// TestDamagedStoreFileFailsCleanly: a store file truncated to half, or with a page header
// overwritten, makes ls, get, stats and set exit 1 with one line, never a crash.
func TestDamagedStoreFileFailsCleanly(t *testing.T) {
	for _, c := range []struct {
		name   string
		damage func(t *testing.T, store string)
	}{
		{"truncated to half", func(t *testing.T, store string) {
			info, err := os.Stat(store)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.Truncate(store, info.Size()/2); err != nil {
				t.Fatal(err)
			}
		}},
		{"page id overwritten", func(t *testing.T, store string) {
			overwrite(t, store, rootBucketPage(t, store), []byte{0xde, 0xad, 0xbe, 0xef})
		}},
		{"page flags and count overwritten", func(t *testing.T, store string) {
			overwrite(t, store, rootBucketPage(t, store)+8, []byte{0xff, 0xff, 0xff, 0xff})
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			store, root := importZarr(t)
			c.damage(t, store)
			value := filepath.Join(t.TempDir(), "value")
			if err := os.WriteFile(value, []byte("new"), 0o600); err != nil {
				t.Fatal(err)
			}
			for _, args := range [][]string{{"ls", root}, {"get", root, "zarr.json"}, {"stats", root}, {"set", root, "k", value}} {
				failsWith(t, store, "corrupt data", args...)
			}
		})
	}
}

// bitRot imports the bundled hierarchy and flips one byte of the value of key in the store
// file, as bit rot would.
func bitRot(t *testing.T, key string) (store, root string) {
	t.Helper()
	store, root = importZarr(t)
	value := zarrFiles(t)[key]
	file, err := os.ReadFile(store)
	if err != nil {
		t.Fatal(err)
	}
	if n := bytes.Count(file, value); n != 1 {
		t.Fatalf("the value of %s is in the file %d times, want once", key, n)
	}
	off := int64(bytes.Index(file, value) + len(value)/2)
	overwrite(t, store, off, []byte{file[off] ^ 0x01})
	return store, root
}

// TestBitRotIsRefused: get and export of a value whose bytes changed in the file exit 1, and
// serve answers 500 without the ETag and caching headers of the value.
func TestBitRotIsRefused(t *testing.T) {
	const key = "sharded/c/0/0"
	store, root := bitRot(t, key)
	failsWith(t, store, "corrupt data", "get", root, key)
	failsWith(t, store, "corrupt data", "export", root, filepath.Join(t.TempDir(), "out"))
	ok(t, store, nil, "get", root, "zarr.json") // the rest is intact

	s := startServe(t, store, root)
	for _, rng := range []string{"", "bytes=0-3", "bytes=-2"} {
		req, _ := http.NewRequest("GET", "http://"+s.addr+"/"+key, nil)
		if rng != "" {
			req.Header.Set("Range", rng)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusInternalServerError || resp.Header.Get("ETag") != "" ||
			strings.Contains(resp.Header.Get("Cache-Control"), "immutable") || !strings.Contains(string(body), "corrupt data") {
			t.Errorf("GET %s (Range %q): %d, ETag %q, Cache-Control %q, body %q; want 500 naming the corruption and no ETag or caching",
				key, rng, resp.StatusCode, resp.Header.Get("ETag"), resp.Header.Get("Cache-Control"), body)
		}
	}
}
