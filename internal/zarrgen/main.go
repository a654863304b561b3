// Command zarrgen writes testdata/zarr: a small Zarr v3 hierarchy whose every byte follows from
// the formulas below, so tests of the Zarr store can compare what they read against known values.
//
// Regenerate it with `go generate ./...` from the repository root (see generate.go there); the
// test in this directory fails if the checked-in tree and the generator's output ever differ.
// zarrita_check.mjs in this directory reads the tree back with a real Zarr reader.
//
// The hierarchy, in the layout of the Zarr v3 core specification (default chunk key encoding,
// separator "/", so chunk keys look like surface/temp/c/0/1):
//
//	zarr.json        root group; attributes with a title, a nested object and a list
//	surface/         group with its own attributes
//	surface/temp     float32 [6 10], chunks [3 5], codecs bytes(little) + gzip(level 5),
//	                 fill -999, dimension_names [y x]; temp[y][x] = 15 + 0.5y - 0.25x
//	counts           int64 [20], chunks [8] (the last chunk runs past the end and is padded
//	                 with the fill value 0), codecs bytes(little); counts[t] = (t-7)·3e9 + t
//	mask             uint8 [5 7], chunks [4 4], codec bytes alone (no compression);
//	                 mask[i][j] = 1 if (7i+j) mod 3 == 0, else 0
//	sparse           float64 [4 6], chunks [2 3], fill "NaN", codecs bytes(little);
//	                 sparse[i][j] = 10i + j/8, except the block of chunk (1,0) is all NaN, so its
//	                 key sparse/c/1/0 is not written and readers must return the fill value
//	sharded          uint16 [8 8], shards [4 4] holding inner chunks [2 2] (sharding_indexed,
//	                 inner codecs bytes(little), index codecs bytes(little) + crc32c, index at
//	                 the end); sharded[i][j] = 1000(8i+j+1), except rows 2–3 × columns 6–7
//	                 are 0, the fill value, so inner chunk (1,1) of shard sharded/c/0/1 is
//	                 stored as an empty index entry (offset = nbytes = 2^64-1)
//
// As zarr-python does by default (write_empty_chunks=False), a chunk or inner chunk whose
// elements all equal the fill value is not stored. Metadata is JSON indented by two spaces with
// the keys of each node in the specification's order (maps in attributes and codec
// configurations sort their keys), ending in a newline. Gzip members carry no name and a zero
// modification time, so reruns give identical bytes; a Go release that changes compress/flate's
// output would change the gzip bytes; the test then compares what they decompress to.
package main

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"hash/crc32"
	"iter"
	"log"
	"maps"
	"math"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

func main() {
	out := flag.String("out", "", "directory to (re)create the Zarr hierarchy in")
	flag.Parse()
	if *out == "" || flag.NArg() > 0 {
		fmt.Fprintln(os.Stderr, "usage: zarrgen -out DIR")
		os.Exit(2)
	}
	if err := writeHierarchy(*out); err != nil {
		log.Fatalf("zarrgen: %v", err)
	}
}

// nanBits is the NaN zarr-python writes and the one sparse stores; math.NaN() has another payload,
// and the empty-chunk test compares bytes.
const nanBits = 0x7ff8000000000000

// emptyShardEntry marks an inner chunk a shard does not store, in both offset and nbytes.
const emptyShardEntry = math.MaxUint64

// castagnoli is the CRC-32C table of the crc32c codec.
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// group is a Zarr v3 group node.
type group struct {
	path  string
	attrs map[string]any
}

// array is a Zarr v3 array node together with the formula for its elements.
type array struct {
	path       string
	dtype      dataType
	shape      []int
	chunkShape []int   // shard shape when innerShape is set
	innerShape []int   // sharding_indexed inner chunk shape; nil for plain chunks
	gzipLevel  int     // 0: no gzip codec
	fill       float64 // fill value, as an element
	value      func([]int) float64
	dims       []string
	attrs      map[string]any
}

// dataType is a Zarr v3 data type: its name and how one element becomes little-endian bytes.
// Every value the formulas produce is exact in a float64, which keeps one formula type for all.
type dataType struct {
	name string
	size int
	put  func(b []byte, v float64)
}

var (
	float32Type = dataType{"float32", 4, func(b []byte, v float64) {
		binary.LittleEndian.PutUint32(b, math.Float32bits(float32(v)))
	}}
	float64Type = dataType{"float64", 8, func(b []byte, v float64) {
		binary.LittleEndian.PutUint64(b, math.Float64bits(v))
	}}
	int64Type = dataType{"int64", 8, func(b []byte, v float64) {
		binary.LittleEndian.PutUint64(b, uint64(int64(v)))
	}}
	uint16Type = dataType{"uint16", 2, func(b []byte, v float64) {
		binary.LittleEndian.PutUint16(b, uint16(v))
	}}
	uint8Type = dataType{"uint8", 1, func(b []byte, v float64) { b[0] = uint8(v) }}
)

var groups = []group{
	{path: "", attrs: map[string]any{
		"title":       "hamt-go Zarr v3 test hierarchy",
		"description": "Deterministic test data from internal/zarrgen; every value follows from a formula.",
		"source": map[string]any{
			"generator": "github.com/hamt-go/hamt/internal/zarrgen",
			"version":   1,
			"codecs":    []string{"bytes", "gzip", "sharding_indexed", "crc32c"},
		},
		"keywords": []string{"test", "zarr", "v3", "hamt"},
		"scale":    0.5,
		"flag":     true,
		"missing":  nil,
	}},
	{path: "surface", attrs: map[string]any{
		"description": "A subgroup holding one gzip-compressed array.",
		"level":       "2 m",
		"valid_range": []float64{-100, 100},
	}},
}

var arrays = []array{
	{
		path:       "surface/temp",
		dtype:      float32Type,
		shape:      []int{6, 10},
		chunkShape: []int{3, 5},
		gzipLevel:  5,
		fill:       -999,
		value:      func(i []int) float64 { return 15 + 0.5*float64(i[0]) - 0.25*float64(i[1]) },
		dims:       []string{"y", "x"},
		attrs: map[string]any{
			"units":     "degC",
			"long_name": "air temperature",
			"formula":   "temp[y][x] = 15 + 0.5*y - 0.25*x",
		},
	},
	{
		path:       "counts",
		dtype:      int64Type,
		shape:      []int{20},
		chunkShape: []int{8},
		fill:       0,
		value:      func(i []int) float64 { return float64((int64(i[0])-7)*3_000_000_000 + int64(i[0])) },
		dims:       []string{"t"},
		attrs:      map[string]any{"formula": "counts[t] = (t-7)*3000000000 + t"},
	},
	{
		path:       "mask",
		dtype:      uint8Type,
		shape:      []int{5, 7},
		chunkShape: []int{4, 4},
		fill:       0,
		value: func(i []int) float64 {
			if (7*i[0]+i[1])%3 == 0 {
				return 1
			}
			return 0
		},
		dims:  []string{"row", "col"},
		attrs: map[string]any{"formula": "mask[i][j] = 1 if (7*i+j) % 3 == 0 else 0"},
	},
	{
		path:       "sparse",
		dtype:      float64Type,
		shape:      []int{4, 6},
		chunkShape: []int{2, 3},
		fill:       math.Float64frombits(nanBits),
		value: func(i []int) float64 {
			if i[0] >= 2 && i[1] < 3 {
				return math.Float64frombits(nanBits)
			}
			return 10*float64(i[0]) + float64(i[1])/8
		},
		attrs: map[string]any{
			"formula": "sparse[i][j] = 10*i + j/8; chunk (1,0) is all fill and not stored",
		},
	},
	{
		path:       "sharded",
		dtype:      uint16Type,
		shape:      []int{8, 8},
		chunkShape: []int{4, 4},
		innerShape: []int{2, 2},
		fill:       0,
		value: func(i []int) float64 {
			if i[0] >= 2 && i[0] < 4 && i[1] >= 6 {
				return 0
			}
			return float64(1000 * (8*i[0] + i[1] + 1))
		},
		dims: []string{"y", "x"},
		attrs: map[string]any{
			"formula": "sharded[i][j] = 1000*(8*i+j+1), but 0 in rows 2-3, columns 6-7 " +
				"(an empty inner chunk in shard c/0/1)",
		},
	},
}

// writeHierarchy replaces the contents of dir with the hierarchy.
func writeHierarchy(dir string) error {
	files, err := hierarchy()
	if err != nil {
		return err
	}
	if err := clearDir(dir); err != nil {
		return err
	}
	for _, name := range slices.Sorted(maps.Keys(files)) {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(p, files[name], 0o644); err != nil {
			return err
		}
	}
	return nil
}

// clearDir empties dir, creating it if needed. It refuses a non-empty directory without a
// zarr.json, so a mistyped -out cannot wipe something that is not an earlier run's output.
func clearDir(dir string) error {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return os.MkdirAll(dir, 0o755)
	}
	if err != nil {
		return err
	}
	if len(entries) > 0 {
		if _, err := os.Stat(filepath.Join(dir, "zarr.json")); err != nil {
			return fmt.Errorf("refusing to clear %s: not empty and no zarr.json in it", dir)
		}
	}
	for _, e := range entries {
		if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
			return err
		}
	}
	return nil
}

// hierarchy returns every file of the hierarchy by its slash-separated path.
func hierarchy() (map[string][]byte, error) {
	files := map[string][]byte{}
	for _, g := range groups {
		b, err := metadataJSON(groupMetadata{ZarrFormat: 3, NodeType: "group", Attributes: g.attrs})
		if err != nil {
			return nil, fmt.Errorf("group %q: %w", g.path, err)
		}
		files[path.Join(g.path, "zarr.json")] = b
	}
	for _, a := range arrays {
		b, err := metadataJSON(a.metadata())
		if err != nil {
			return nil, fmt.Errorf("array %s: %w", a.path, err)
		}
		files[path.Join(a.path, "zarr.json")] = b
		chunks, err := a.chunks()
		if err != nil {
			return nil, fmt.Errorf("array %s: %w", a.path, err)
		}
		for key, data := range chunks {
			files[path.Join(a.path, key)] = data
		}
	}
	return files, nil
}

// groupMetadata is a group's zarr.json; the field order is the specification's.
type groupMetadata struct {
	ZarrFormat int            `json:"zarr_format"`
	NodeType   string         `json:"node_type"`
	Attributes map[string]any `json:"attributes"`
}

// arrayMetadata is an array's zarr.json; the field order is the specification's.
type arrayMetadata struct {
	ZarrFormat       int            `json:"zarr_format"`
	NodeType         string         `json:"node_type"`
	Shape            []int          `json:"shape"`
	DataType         string         `json:"data_type"`
	ChunkGrid        namedConfig    `json:"chunk_grid"`
	ChunkKeyEncoding namedConfig    `json:"chunk_key_encoding"`
	FillValue        any            `json:"fill_value"`
	Codecs           []namedConfig  `json:"codecs"`
	Attributes       map[string]any `json:"attributes"`
	DimensionNames   []string       `json:"dimension_names,omitempty"`
}

// namedConfig is the specification's {"name", "configuration"} pair for chunk grids, chunk key
// encodings and codecs.
type namedConfig struct {
	Name          string         `json:"name"`
	Configuration map[string]any `json:"configuration,omitempty"`
}

func (a array) metadata() arrayMetadata {
	return arrayMetadata{
		ZarrFormat: 3,
		NodeType:   "array",
		Shape:      a.shape,
		DataType:   a.dtype.name,
		ChunkGrid: namedConfig{"regular", map[string]any{
			"chunk_shape": a.chunkShape,
		}},
		ChunkKeyEncoding: namedConfig{"default", map[string]any{"separator": "/"}},
		FillValue:        a.fillJSON(),
		Codecs:           a.codecs(),
		Attributes:       a.attrs,
		DimensionNames:   a.dims,
	}
}

// fillJSON is the fill value as the specification spells it: a number, or "NaN" for the NaN.
func (a array) fillJSON() any {
	switch {
	case math.IsNaN(a.fill):
		return "NaN"
	case strings.HasPrefix(a.dtype.name, "float"):
		return a.fill
	default:
		return int64(a.fill)
	}
}

func (a array) codecs() []namedConfig {
	bytesCodec := namedConfig{Name: "bytes", Configuration: map[string]any{"endian": "little"}}
	if a.dtype.size == 1 {
		// Endianness means nothing for one-byte types; zarr-python then writes no configuration.
		bytesCodec.Configuration = nil
	}
	if a.innerShape != nil {
		return []namedConfig{{"sharding_indexed", map[string]any{
			"chunk_shape": a.innerShape,
			"codecs":      []namedConfig{bytesCodec},
			"index_codecs": []namedConfig{
				{Name: "bytes", Configuration: map[string]any{"endian": "little"}},
				{Name: "crc32c"},
			},
			"index_location": "end",
		}}}
	}
	codecs := []namedConfig{bytesCodec}
	if a.gzipLevel > 0 {
		codecs = append(codecs, namedConfig{"gzip", map[string]any{"level": a.gzipLevel}})
	}
	return codecs
}

func metadataJSON(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil { // Encode ends the document with a newline
		return nil, err
	}
	return buf.Bytes(), nil
}

// chunks returns the stored chunks (or shards) of a by chunk key, relative to the array.
func (a array) chunks() (map[string][]byte, error) {
	grid := make([]int, len(a.shape))
	for d := range a.shape {
		grid[d] = (a.shape[d] + a.chunkShape[d] - 1) / a.chunkShape[d]
	}
	out := map[string][]byte{}
	for coord := range cOrder(grid) {
		origin := make([]int, len(coord))
		for d := range coord {
			origin[d] = coord[d] * a.chunkShape[d]
		}
		var data []byte
		var err error
		if a.innerShape != nil {
			data = a.shard(origin)
		} else {
			data, err = a.plainChunk(origin)
		}
		if err != nil {
			return nil, fmt.Errorf("chunk %v: %w", coord, err)
		}
		if data != nil {
			out[chunkKey(coord)] = data
		}
	}
	return out, nil
}

// chunkKey is the default chunk key encoding with separator "/".
func chunkKey(coord []int) string {
	parts := []string{"c"}
	for _, c := range coord {
		parts = append(parts, strconv.Itoa(c))
	}
	return strings.Join(parts, "/")
}

// plainChunk encodes the chunk at origin through the bytes and gzip codecs, or returns nil when
// it holds only the fill value.
func (a array) plainChunk(origin []int) ([]byte, error) {
	raw, empty := a.block(origin, a.chunkShape)
	if empty {
		return nil, nil
	}
	if a.gzipLevel == 0 {
		return raw, nil
	}
	var buf bytes.Buffer
	zw, err := gzip.NewWriterLevel(&buf, a.gzipLevel)
	if err != nil {
		return nil, err
	}
	if _, err := zw.Write(raw); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// shard encodes the shard at origin with the sharding_indexed codec: the non-empty inner chunks in
// C order, then the index, one (offset, nbytes) pair of little-endian uint64 per inner chunk in C
// order, then the index's CRC-32C, little endian. It returns nil when every inner chunk is empty.
func (a array) shard(origin []int) []byte {
	perShard := make([]int, len(a.chunkShape))
	for d := range perShard {
		perShard[d] = a.chunkShape[d] / a.innerShape[d]
	}
	var data, index []byte
	stored := 0
	for inner := range cOrder(perShard) {
		innerOrigin := make([]int, len(inner))
		for d := range inner {
			innerOrigin[d] = origin[d] + inner[d]*a.innerShape[d]
		}
		raw, empty := a.block(innerOrigin, a.innerShape)
		if empty {
			index = binary.LittleEndian.AppendUint64(index, emptyShardEntry)
			index = binary.LittleEndian.AppendUint64(index, emptyShardEntry)
			continue
		}
		index = binary.LittleEndian.AppendUint64(index, uint64(len(data)))
		index = binary.LittleEndian.AppendUint64(index, uint64(len(raw)))
		data = append(data, raw...)
		stored++
	}
	if stored == 0 {
		return nil
	}
	index = binary.LittleEndian.AppendUint32(index, crc32.Checksum(index, castagnoli))
	return append(data, index...)
}

// block returns the elements of the block of the given shape at origin in C order as
// little-endian bytes, elements past the array's edge holding the fill value, and whether every
// element equals the fill value.
func (a array) block(origin, shape []int) (raw []byte, empty bool) {
	size := a.dtype.size
	fill := make([]byte, size)
	a.dtype.put(fill, a.fill)
	empty = true
	idx := make([]int, len(shape))
	for local := range cOrder(shape) {
		v, inside := a.fill, true
		for d := range local {
			idx[d] = origin[d] + local[d]
			inside = inside && idx[d] < a.shape[d]
		}
		if inside {
			v = a.value(idx)
		}
		raw = append(raw, make([]byte, size)...)
		el := raw[len(raw)-size:]
		a.dtype.put(el, v)
		empty = empty && bytes.Equal(el, fill)
	}
	return raw, empty
}

// cOrder yields every index of a grid of the given shape, last dimension fastest. The yielded
// slice is reused between iterations.
func cOrder(shape []int) iter.Seq[[]int] {
	return func(yield func([]int) bool) {
		idx := make([]int, len(shape))
		for _, n := range shape {
			if n == 0 {
				return
			}
		}
		for {
			if !yield(idx) {
				return
			}
			d := len(idx) - 1
			for ; d >= 0; d-- {
				idx[d]++
				if idx[d] < shape[d] {
					break
				}
				idx[d] = 0
			}
			if d < 0 {
				return
			}
		}
	}
}
