package hamt

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/ipfs/go-cid"
)

// This file names a sharded store's chunks, when it lists them, as their array's own metadata
// names them. A chunk's slot is found from its coordinates whatever its key looked like when it
// was written ("0/t/c/1/2", "0/t/1.2" and "0/t/1/2" all reach the same slot of a v2 store), so
// the listing must choose a name: a Zarr reader of an array whose chunk_key_encoding is "v2" (or
// a zarr v2 .zarray) asks for "0/t/1.2", and a dataset exported or converted under "0/t/c/1/2"
// would read as all fill values.

// chunkEncoding is how an array's metadata names its chunks: v2 (zarr v2 style, "path/i{sep}j")
// or, the zero value, Zarr v3's default encoding with "/" ("path/c/i/j").
type chunkEncoding struct {
	v2  bool
	sep byte // '.' or '/', when v2
}

// maxKeyEncodings bounds the cache of encodings by metadata CID; it is emptied when full.
const maxKeyEncodings = 4096

// encodingKey is what a cached encoding is the encoding of: a metadata block read as a .zarray
// (its dimension_separator) or as a zarr.json (its chunk_key_encoding). One block may stand under
// both names and say different things to each: cached by CID alone, the first array listed named
// the other's chunks.
type encodingKey struct {
	id     cid.Cid
	zarray bool
}

// arrayMetadataKeys are the keys that may hold the metadata of the array at path.
func arrayMetadataKeys(path string) (v3, v2 string) {
	if path == "" {
		return "zarr.json", ".zarray"
	}
	return path + "/zarr.json", path + "/.zarray"
}

// chunkEncodingOf reads the encoding a metadata document declares: a zarr.json's
// chunk_key_encoding ({"name": "v2", "configuration": {"separator": "."}}, "." by default), or a
// .zarray's dimension_separator ("." by default). Anything else, including a document that is not
// JSON or a separator other than "." and "/", is the default encoding.
func chunkEncodingOf(zarray bool, doc []byte) chunkEncoding {
	d, err := decodePyJSONObject(doc)
	if err != nil || d == nil {
		return chunkEncoding{}
	}
	sep := byte('.')
	var sv *pyJSON
	if zarray {
		sv = d.get("dimension_separator")
	} else {
		e := d.get("chunk_key_encoding")
		if e == nil || e.kind != pyDict || !e.get("name").isStr("v2") {
			return chunkEncoding{}
		}
		if c := e.get("configuration"); c != nil && c.kind == pyDict {
			sv = c.get("separator")
		}
	}
	switch {
	case sv == nil || sv.kind == pyNull || sv.isStr("."):
	case sv.isStr("/"):
		sep = '/'
	default:
		return chunkEncoding{}
	}
	return chunkEncoding{v2: true, sep: sep}
}

// keyEncoding returns the chunk encoding of the array at path of a v2 store, from its metadata
// (metaID, zarray: the block and which kind of document it is; undefined: none, the default). A
// block that cannot be loaded is an error: a listing must not guess names.
func (s *ShardedZarrStore) keyEncoding(ctx context.Context, metaID cid.Cid, zarray bool) (chunkEncoding, error) {
	if !metaID.Defined() {
		return chunkEncoding{}, nil
	}
	s.encMu.Lock()
	enc, ok := s.encodings[encodingKey{metaID, zarray}]
	s.encMu.Unlock()
	if ok {
		return enc, nil
	}
	doc, err := loadValue(ctx, s.cas, metaID, ByteRange{}, s.src.verify)
	if err != nil {
		return chunkEncoding{}, fmt.Errorf("load array metadata %s: %w", metaID, missingBlock(err))
	}
	enc = chunkEncodingOf(zarray, doc)
	s.rememberEncoding(encodingKey{metaID, zarray}, enc)
	return enc, nil
}

// rememberEncoding caches enc as the chunk encoding of the metadata block k.
func (s *ShardedZarrStore) rememberEncoding(k encodingKey, enc chunkEncoding) {
	s.encMu.Lock()
	defer s.encMu.Unlock()
	if s.encodings == nil || len(s.encodings) >= maxKeyEncodings {
		s.encodings = map[encodingKey]chunkEncoding{}
	}
	s.encodings[k] = enc
}

// wroteMetadata caches the chunk encoding of doc, the block id just written under key, when key
// is an array's metadata: a listing after a write (a copy's check) then loads no metadata again.
func (s *ShardedZarrStore) wroteMetadata(key string, id cid.Cid, doc []byte) {
	if _, ok := arrayPathOfMetadataKey(key); ok && doc != nil {
		zarray := strings.HasSuffix(key, ".zarray")
		s.rememberEncoding(encodingKey{id, zarray}, chunkEncodingOf(zarray, doc))
	}
}

// chunkKeyIn writes the key of the chunk at coords of the array at path in encoding enc. An array
// of rank 0 has the v3 key ("path/c") in either: "path/0" would not reach its slot.
func chunkKeyIn(path string, coords []int64, enc chunkEncoding) string {
	if !enc.v2 || len(coords) == 0 {
		return chunkKeyOf(path, coords)
	}
	var b strings.Builder
	if path != "" {
		b.WriteString(path)
		b.WriteByte('/')
	}
	for i, c := range coords {
		if i > 0 {
			b.WriteByte(enc.sep)
		}
		b.WriteString(strconv.FormatInt(c, 10))
	}
	return b.String()
}
