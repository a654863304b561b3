package hamt

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"

	"github.com/ipfs/go-cid"
	"github.com/multiformats/go-multicodec"
	"github.com/multiformats/go-multihash"
)

// This file lets an export read its raw values as a few streams instead of a load per value, when
// the store can (a KuboCAS: see readRawBlocks), and write each straight into its file.

// bulkValue is a key whose value is one raw block.
type bulkValue struct {
	key string
	id  cid.Cid
}

// streamableValues picks, among keys, those an export reads through the store's rawBlockReader: on a
// plain (unencrypted) ZarrStore whose CAS is one, every key whose value is a raw block. rest is
// the keys left to the usual path (dag-pb files, identity CIDs, any key whose pointer cannot be
// read, which that path then reports).
func streamableValues(ctx context.Context, src Zarr, keys []string) (bulk []bulkValue, rest []string, rr rawBlockReader) {
	s, ok := src.(*ZarrStore)
	if !ok || s.box != nil {
		return nil, keys, nil
	}
	if rr, ok = s.m.cas.(rawBlockReader); !ok {
		return nil, keys, nil
	}
	for _, k := range keys {
		id, err := s.m.GetPointer(ctx, k)
		if err != nil || id.Prefix().Codec != uint64(multicodec.Raw) || id.Prefix().MhType == multihash.IDENTITY {
			rest = append(rest, k)
			continue
		}
		bulk = append(bulk, bulkValue{key: k, id: id})
	}
	return bulk, rest, rr
}

// writeBulkValues writes the values bulk, read through rr in their order, each straight into a
// new file of out, and adds each file to prog. The bytes of a file are checked once it is written
// (see readRawBlocks), and out is the export's hidden directory, which a failure removes: nothing
// unchecked reaches the export's final names. When the RPC API fails in a way that says nothing
// about the values (it is not there, a proxy refuses the commands, an answer does not parse), left
// lists the keys of the values not written yet, for the caller to write the usual way, one
// verified load each.
func writeBulkValues(ctx context.Context, out *os.Root, rr rawBlockReader, bulk []bulkValue, prog *progressCounter) (left []string, err error) {
	ids := make([]cid.Cid, len(bulk))
	for i, b := range bulk {
		ids[i] = b.id
	}
	bufs := make(chan []byte, rawStreams) // one per stream: each runs on up to rawStreams goroutines
	for range rawStreams {
		bufs <- make([]byte, 256<<10)
	}
	todo, err := rr.readRawBlocks(ctx, ids, func(i int, r io.Reader) error {
		buf := <-bufs
		defer func() { bufs <- buf }()
		n, err := writeStreamedFile(out, bulk[i].key, r, buf)
		if err != nil {
			return err
		}
		prog.add(n)
		return nil
	})
	if err == nil || ctx.Err() != nil || !errors.Is(err, errNoRawBlocks) {
		return nil, err
	}
	left = make([]string, len(todo))
	for j, i := range todo {
		left[j] = bulk[i].key
	}
	return left, nil
}

// writeStreamedFile creates the file key in root, which must not exist, and copies r into it.
func writeStreamedFile(root *os.Root, key string, r io.Reader, buf []byte) (int64, error) {
	f, err := root.OpenFile(key, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if errors.Is(err, fs.ErrExist) {
		return 0, fmt.Errorf("key %q clashes with another key's file on this file system (does it fold case or normalize names?): %w", key, err)
	}
	if err != nil {
		return 0, err
	}
	var n int64
	for {
		m, rerr := r.Read(buf)
		if m > 0 {
			w, werr := f.Write(buf[:m])
			n += int64(w)
			if werr != nil {
				f.Close()
				return n, fmt.Errorf("export %q: %w", key, werr)
			}
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			f.Close()
			return n, rerr
		}
	}
	return n, f.Close()
}
