package hamt_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"

	"github.com/hamt-go/hamt"
)

// Import a Zarr v3 directory, flush it to get the dataset's root, reopen the root read-only and
// read metadata, a chunk's byte range, and a directory listing.
func ExampleImportDir() {
	ctx := context.Background()
	cas := hamt.NewMemoryCAS()
	m, err := hamt.New(ctx, cas, hamt.Bytes)
	if err != nil {
		log.Fatal(err)
	}
	stats, err := hamt.ImportDir(ctx, m, "testdata/zarr")
	if err != nil {
		log.Fatal(err)
	}
	root, err := m.Flush(ctx)
	if err != nil {
		log.Fatal(err)
	}

	ro, err := hamt.Open(ctx, cas, hamt.Bytes, root)
	if err != nil {
		log.Fatal(err)
	}
	store, err := hamt.NewZarrStore(ro)
	if err != nil {
		log.Fatal(err)
	}
	meta, err := store.Get(ctx, "surface/temp/zarr.json", hamt.ByteRange{})
	if err != nil {
		log.Fatal(err)
	}
	index, err := store.Get(ctx, "sharded/c/0/0", hamt.RangeSuffix(68)) // a shard's index and checksum
	if err != nil {
		log.Fatal(err)
	}
	children, err := store.ListDir(ctx, "surface/")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(stats.Files, "files")
	fmt.Println(bytes.Contains(meta, []byte(`"zarr_format": 3`)))
	fmt.Println(len(index), "bytes of shard index")
	fmt.Println(children)
	// Output:
	// 25 files
	// true
	// 68 bytes of shard index
	// [temp zarr.json]
}

// Serve a dataset read-only over HTTP, so zarr-python or zarrita can open it by URL.
func ExampleZarrStore_Handler() {
	ctx := context.Background()
	m, err := hamt.New(ctx, hamt.NewMemoryCAS(), hamt.Bytes)
	if err != nil {
		log.Fatal(err)
	}
	store, err := hamt.NewZarrStore(m)
	if err != nil {
		log.Fatal(err)
	}
	if err := store.Set(ctx, "zarr.json", []byte(`{"zarr_format":3,"node_type":"group"}`)); err != nil {
		log.Fatal(err)
	}
	// In a program: http.ListenAndServe("127.0.0.1:8080", store.Handler()).
	srv := httptest.NewServer(store.Handler())
	defer srv.Close()

	resp, err := http.Get(srv.URL + "/zarr.json")
	if err != nil {
		log.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	fmt.Println(resp.Status, resp.Header.Get("Cache-Control"))
	fmt.Println(string(body))
	// Output:
	// 200 OK public, max-age=31536000, immutable
	// {"zarr_format":3,"node_type":"group"}
}

// Encrypt every value of a dataset with a 32-byte key; keys stay readable. Only a store with the
// same key and header reads the values back.
func ExampleNewEncryptedZarrStore() {
	ctx := context.Background()
	key := bytes.Repeat([]byte{0x42}, 32) // in real use: 32 bytes from crypto/rand, kept secret
	m, err := hamt.New(ctx, hamt.NewMemoryCAS(), hamt.Bytes)
	if err != nil {
		log.Fatal(err)
	}
	enc, err := hamt.NewEncryptedZarrStore(m, key, []byte("dataset-v1"))
	if err != nil {
		log.Fatal(err)
	}
	if err := enc.Set(ctx, "temp/c/0", []byte("secret chunk")); err != nil {
		log.Fatal(err)
	}
	stored, _ := m.Get(ctx, "temp/c/0")
	plain, _ := enc.Get(ctx, "temp/c/0", hamt.ByteRange{})
	fmt.Println(len(stored), "bytes stored:", !bytes.Contains(stored, plain))
	fmt.Println(string(plain))

	wrong, _ := hamt.NewEncryptedZarrStore(m, bytes.Repeat([]byte{0x43}, 32), []byte("dataset-v1"))
	_, err = wrong.Get(ctx, "temp/c/0", hamt.ByteRange{})
	fmt.Println(errors.Is(err, hamt.ErrDecrypt))
	// Output:
	// 52 bytes stored: true
	// secret chunk
	// true
}

// Export a dataset back to files.
func ExampleExportDir() {
	ctx := context.Background()
	m, err := hamt.New(ctx, hamt.NewMemoryCAS(), hamt.Bytes)
	if err != nil {
		log.Fatal(err)
	}
	if err := m.Set(ctx, "arr/c/0", []byte{1, 2, 3}); err != nil {
		log.Fatal(err)
	}
	store, err := hamt.NewZarrStore(m)
	if err != nil {
		log.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "export-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	stats, err := hamt.ExportDir(ctx, store, dir)
	if err != nil {
		log.Fatal(err)
	}
	b, _ := os.ReadFile(dir + "/arr/c/0")
	fmt.Println(stats.Files, b)
	// Output: 1 [1 2 3]
}

// Write a value to an io.Writer in pieces of at most 1 MiB, so that memory stays bounded however
// large the value is (a Zarr shard, or a UnixFS file of gigabytes from Kubo).
func ExampleZarrStore_WriteValue() {
	ctx := context.Background()
	cas := hamt.NewMemoryCAS()
	m, err := hamt.New(ctx, cas, hamt.Bytes)
	if err != nil {
		log.Fatal(err)
	}
	if err := m.Set(ctx, "temp/c/0", bytes.Repeat([]byte{7}, 3<<20)); err != nil {
		log.Fatal(err)
	}
	if err := m.MakeReadOnly(ctx); err != nil {
		log.Fatal(err)
	}
	store, err := hamt.NewZarrStore(m)
	if err != nil {
		log.Fatal(err)
	}
	var sink bytes.Buffer // a file, an HTTP response, os.Stdout...
	n, err := store.WriteValue(ctx, &sink, "temp/c/0", hamt.ByteRange{})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(n, "bytes")
	// Output:
	// 3145728 bytes
}
