package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"os"

	bolt "go.etcd.io/bbolt"
)

// boltValueLimit is the largest value a bbolt store holds (one block is one bbolt value); a
// variable so that tests can lower it.
var boltValueLimit int64 = bolt.MaxValueSize

// spoolAbove is how much of standard input set keeps in memory before spooling the rest to a
// temporary file (read back once its size is known, into a buffer of exactly that size).
const spoolAbove = 1 << 20

// valueLimit is the largest value the store the flags name can take.
func (a *app) valueLimit() int64 {
	if a.kuboRPC != "" || len(a.kuboGateway) > 0 {
		return math.MaxInt64 // Kubo chunks large values into a UnixFS file
	}
	return boltValueLimit
}

// tooLarge is the error for a value over the store's limit: size bytes when known, or more than
// limit when size < 0 (standard input, not read past the limit).
func tooLarge(name string, size, limit int64) error {
	if size < 0 {
		return fmt.Errorf("%s is larger than the store's limit of %d bytes per value", name, limit)
	}
	return fmt.Errorf("%s is %d bytes, larger than the store's limit of %d bytes per value", name, size, limit)
}

// readValue reads the value of set from the file name, or standard input for "-", refusing one
// larger than limit without reading it all: a file by its size, standard input once more than
// limit bytes have come. It runs before the store is opened, so a slow producer never holds the
// store's lock. Memory holds one copy of the value: standard input beyond spoolAbove goes to a
// temporary file first, and the value is then read into a buffer of its exact size.
func readValue(name string, stdin io.Reader, limit int64) ([]byte, error) {
	if name != "-" {
		f, err := os.Open(name)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		return readSized(f, name, limit)
	}
	name = "standard input"
	head, err := io.ReadAll(io.LimitReader(stdin, min(limit, spoolAbove)+1))
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", name, err)
	}
	if int64(len(head)) > limit {
		return nil, tooLarge(name, -1, limit)
	}
	if len(head) <= spoolAbove {
		return head, nil // all of it: a short read means EOF
	}
	spool, err := os.CreateTemp("", "hamt-set-*")
	if err != nil {
		return nil, fmt.Errorf("spooling %s: %w", name, err)
	}
	defer func() {
		spool.Close()
		os.Remove(spool.Name())
	}()
	n, err := io.Copy(spool, io.MultiReader(bytes.NewReader(head), io.LimitReader(stdin, limit+1-int64(len(head)))))
	if err != nil {
		return nil, fmt.Errorf("spooling %s: %w", name, err)
	}
	if n > limit {
		return nil, tooLarge(name, -1, limit)
	}
	if _, err := spool.Seek(0, io.SeekStart); err != nil {
		return nil, fmt.Errorf("spooling %s: %w", name, err)
	}
	return readSized(spool, name, limit)
}

// readSized reads f whole into a buffer of its size, refusing a file over limit before reading
// it, and one that grew past it while read.
func readSized(f *os.File, name string, limit int64) ([]byte, error) {
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if fi.IsDir() {
		return nil, fmt.Errorf("%s is a directory", name)
	}
	size := fi.Size()
	if size > limit {
		return nil, tooLarge(name, size, limit)
	}
	if !fi.Mode().IsRegular() || size == 0 { // a pipe, a device, /proc: no size to trust
		b, err := io.ReadAll(io.LimitReader(f, limit+1))
		if err == nil && int64(len(b)) > limit {
			err = tooLarge(name, -1, limit)
		}
		return b, err
	}
	b := make([]byte, size)
	if _, err := io.ReadFull(f, b); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) {
			err = fmt.Errorf("%s shrank while read", name)
		}
		return nil, err
	}
	var one [1]byte
	if n, _ := f.Read(one[:]); n > 0 {
		return nil, fmt.Errorf("%s grew while read", name)
	}
	return b, nil
}
