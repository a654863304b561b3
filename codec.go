package hamt

import (
	"bytes"
	"fmt"
	"math"
	"math/big"
	"reflect"
	"unicode/utf8"

	"github.com/fxamacker/cbor/v2"
	"github.com/ipfs/go-cid"
)

// Codec turns a map's values into value blocks and back. A value block is stored as a separate raw
// block and linked from its key's bucket.
type Codec[V any] interface {
	// Encode returns the block for v. The caller may not keep or change v's memory afterwards
	// in ways the returned bytes would see; Bytes returns v itself.
	Encode(v V) ([]byte, error)
	// Decode returns the value of block b. b is the caller's and may be kept by the value.
	Decode(b []byte) (V, error)
}

// Bytes is the passthrough codec of a Map[[]byte]: a value is its own block. This is py-hamt's
// values_are_bytes=True, and what a Zarr store uses.
var Bytes Codec[[]byte] = bytesCodec{}

type bytesCodec struct{}

func (bytesCodec) Encode(v []byte) ([]byte, error) { return v, nil }
func (bytesCodec) Decode(b []byte) ([]byte, error) { return b, nil }

// DagCBOR is the codec of a Map[any] holding values of the IPLD data model, encoded as canonical
// DAG-CBOR exactly as py-hamt (dag_cbor) encodes them. Go types:
//
//	null    nil
//	bool    bool
//	integer int64 (uint64 above math.MaxInt64, *big.Int below math.MinInt64, down to -2^64);
//	        any Go integer type and *big.Int in that range are accepted when encoding
//	float   float64 (always written as 64 bits; NaN and ±Inf are refused); float32 is widened
//	string  string (valid UTF-8)
//	bytes   []byte
//	list    []any
//	map     map[string]any (written in canonical key order)
//	link    cid.Cid
//
// Decoding is strict: bytes that are not exactly the canonical encoding of the value they hold are
// ErrMalformedValue.
var DagCBOR Codec[any] = dagCBORCodec{}

type dagCBORCodec struct{}

var (
	dagEnc = mustEncMode()
	dagDec = mustDecMode()
)

// dagCBOREncOptions are fxamacker's options for DAG-CBOR's canonical form: keys sorted length
// first, no indefinite lengths, floats kept in 64 bits, no NaN or infinities.
func dagCBOREncOptions() cbor.EncOptions {
	return cbor.EncOptions{
		Sort:          cbor.SortCanonical,
		ShortestFloat: cbor.ShortestFloatNone,
		NaNConvert:    cbor.NaNConvertReject,
		InfConvert:    cbor.InfConvertReject,
		BigIntConvert: cbor.BigIntConvertShortest,
		IndefLength:   cbor.IndefLengthForbidden,
		TagsMd:        cbor.TagsAllowed,
	}
}

func mustEncMode() cbor.EncMode {
	em, err := dagCBOREncOptions().EncMode()
	if err != nil {
		panic(err) // the options are constants: this cannot fail at run time
	}
	return em
}

func mustDecMode() cbor.DecMode {
	dm, err := cbor.DecOptions{
		DupMapKey:       cbor.DupMapKeyEnforcedAPF,
		MaxNestedLevels: 1024,
		// As large as the sharded layout's biggest index (MaxShards links in a root, MaxChunksPerShard
		// in a shard): the library's default, 131,072, refused roots the store had written.
		MaxArrayElements: 1 << 22,
		MaxMapPairs:      1 << 22,
		IndefLength:      cbor.IndefLengthForbidden,
		TagsMd:           cbor.TagsAllowed,
		IntDec:           cbor.IntDecConvertNone,
		BigIntDec:        cbor.BigIntDecodePointer,
		DefaultMapType:   reflect.TypeOf(map[string]any(nil)),
		UTF8:             cbor.UTF8RejectInvalid,
		NaN:              cbor.NaNDecodeForbidden,
		Inf:              cbor.InfDecodeForbidden,
		BignumTag:        cbor.BignumTagForbidden,
	}.DecMode()
	if err != nil {
		panic(err) // the options are constants: this cannot fail at run time
	}
	return dm
}

func (dagCBORCodec) Encode(v any) ([]byte, error) {
	w, err := toCBOR(v)
	if err != nil {
		return nil, fmt.Errorf("dag-cbor encode: %w", err)
	}
	b, err := dagEnc.Marshal(w)
	if err != nil {
		return nil, fmt.Errorf("dag-cbor encode: %w", err)
	}
	return b, nil
}

func (dagCBORCodec) Decode(b []byte) (any, error) {
	var raw any
	if err := dagDec.Unmarshal(b, &raw); err != nil {
		if dagDec.Wellformed(b) != nil {
			return nil, fmt.Errorf("%w: %w: not CBOR (was the map written with another codec, such as Bytes?): %v", ErrMalformedValue, ErrWrongCodec, err)
		}
		return nil, fmt.Errorf("%w: %v", ErrMalformedValue, err)
	}
	v, err := fromCBOR(raw)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformedValue, err)
	}
	// Strictness in one place: DAG-CBOR has exactly one encoding per value, so anything that does
	// not re-encode to the same bytes (long integer heads, float32, unordered maps, stray tags)
	// was not canonical.
	again, err := DagCBOR.Encode(v)
	if err != nil || !bytes.Equal(again, b) {
		return nil, fmt.Errorf("%w: not canonical DAG-CBOR", ErrMalformedValue)
	}
	return v, nil
}

var (
	minUint64Neg = new(big.Int).Neg(new(big.Int).Lsh(big.NewInt(1), 64)) // -2^64
	maxUint64    = new(big.Int).SetUint64(math.MaxUint64)
)

// toCBOR checks that v is in the IPLD data model and returns it in the form the CBOR encoder
// writes as DAG-CBOR: links become tag 42 over 0x00 || cid.
func toCBOR(v any) (any, error) {
	switch x := v.(type) {
	case nil, bool, int, int8, int16, int32, int64, uint, uint8, uint16, uint32, uint64, []byte:
		return x, nil
	case float64:
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return nil, fmt.Errorf("float %v has no DAG-CBOR encoding", x)
		}
		return x, nil
	case float32:
		return toCBOR(float64(x))
	case string:
		if !utf8.ValidString(x) {
			return nil, fmt.Errorf("string %q is not valid UTF-8", x)
		}
		return x, nil
	case *big.Int:
		if x == nil || x.Cmp(minUint64Neg) < 0 || x.Cmp(maxUint64) > 0 {
			return nil, fmt.Errorf("integer %v is outside DAG-CBOR's range [-2^64, 2^64-1]", x)
		}
		return x, nil
	case cid.Cid:
		if !x.Defined() {
			return nil, fmt.Errorf("undefined CID")
		}
		return cbor.Tag{Number: cidTag, Content: append([]byte{0}, x.Bytes()...)}, nil
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			w, err := toCBOR(e)
			if err != nil {
				return nil, fmt.Errorf("list item %d: %w", i, err)
			}
			out[i] = w
		}
		return out, nil
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			if !utf8.ValidString(k) {
				return nil, fmt.Errorf("map key %q is not valid UTF-8", k)
			}
			w, err := toCBOR(e)
			if err != nil {
				return nil, fmt.Errorf("map key %q: %w", k, err)
			}
			out[k] = w
		}
		return out, nil
	}
	return nil, fmt.Errorf("type %T is not in the IPLD data model", v)
}

// fromCBOR turns what the CBOR decoder produced into the Go types DagCBOR documents.
func fromCBOR(v any) (any, error) {
	switch x := v.(type) {
	case nil, bool, int64, float64, string, []byte:
		return x, nil
	case uint64:
		if x <= math.MaxInt64 {
			return int64(x), nil
		}
		return x, nil
	case *big.Int:
		return x, nil
	case cbor.Tag:
		if x.Number != cidTag {
			return nil, fmt.Errorf("tag %d is not allowed (only 42)", x.Number)
		}
		b, ok := x.Content.([]byte)
		if !ok || len(b) < 2 || b[0] != 0 {
			return nil, fmt.Errorf("tag 42 must hold a byte string 0x00 || cid")
		}
		n, c, err := cid.CidFromBytes(b[1:])
		if err != nil {
			return nil, fmt.Errorf("invalid CID: %v", err)
		}
		if n != len(b)-1 {
			return nil, fmt.Errorf("trailing bytes after CID")
		}
		return c, nil
	case []any:
		for i, e := range x {
			w, err := fromCBOR(e)
			if err != nil {
				return nil, err
			}
			x[i] = w
		}
		return x, nil
	case map[string]any:
		for k, e := range x {
			w, err := fromCBOR(e)
			if err != nil {
				return nil, err
			}
			x[k] = w
		}
		return x, nil
	}
	return nil, fmt.Errorf("CBOR item of type %T is not in the IPLD data model", v)
}
