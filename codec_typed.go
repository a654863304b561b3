package hamt

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"reflect"
	"unicode/utf8"

	"github.com/fxamacker/cbor/v2"
	"github.com/ipfs/go-cid"
)

// This file is the typed codec: Go values of one type (structs, mostly) as canonical DAG-CBOR,
// through fxamacker/cbor, byte for byte what DagCBOR writes for the same data.

// TypedDagCBOR returns the codec of a Map[T] whose values are Go values of type T (a struct, a
// slice, a map with string keys, or any type fxamacker/cbor encodes), written as canonical
// DAG-CBOR: the same bytes DagCBOR writes for the same data, so either codec reads what the other
// wrote, and py-hamt reads them too. Struct fields are named by `cbor:"name"` tags (or `json`
// tags, or the field name) and take `omitempty`; map keys and field names are sorted as DAG-CBOR
// sorts them (shorter first, then bytewise); cid.Cid is a link (tag 42); every float is written
// in 64 bits, and NaN and ±Inf are refused; an integer beyond 64 bits, a map key that is not a
// string, and a string that is not UTF-8 are refused too.
//
// Decoding is strict: bytes that are not canonical DAG-CBOR are ErrMalformedValue; canonical
// DAG-CBOR that does not fit T (a field of another kind, a map key T has no field for, a list
// where T is a struct) is ErrWrongCodec, which also wraps ErrMalformedValue: the map was most
// likely written with another codec or for another type. A field of type any is decoded as
// fxamacker/cbor does (a non-negative integer as uint64), not as DagCBOR does (int64).
func TypedDagCBOR[T any]() Codec[T] { return typedCodec[T]{} }

type typedCodec[T any] struct{}

// typedEnc and typedDec are fxamacker/cbor set for DAG-CBOR with cid.Cid as tag 42. fxamacker
// writes a cid.Cid's bytes (its MarshalBinary) as the tag's content, where DAG-CBOR puts a 0x00
// before them (the multibase prefix of binary): linkContent adds and removes it.
var (
	typedEnc, typedDec = mustTypedModes()
)

func mustTypedModes() (cbor.EncMode, cbor.DecMode) {
	tags := cbor.NewTagSet()
	if err := tags.Add(cbor.TagOptions{EncTag: cbor.EncTagRequired, DecTag: cbor.DecTagRequired}, reflect.TypeFor[cid.Cid](), cidTag); err != nil {
		panic(err) // constants: this cannot fail at run time
	}
	eo := dagCBOREncOptions()
	eo.NilContainers = cbor.NilContainerAsNull
	em, err := eo.EncModeWithTags(tags)
	if err != nil {
		panic(err)
	}
	dm, err := cbor.DecOptions{
		DupMapKey:         cbor.DupMapKeyEnforcedAPF,
		MaxNestedLevels:   1024,
		MaxArrayElements:  1 << 22,
		MaxMapPairs:       1 << 22,
		IndefLength:       cbor.IndefLengthForbidden,
		TagsMd:            cbor.TagsAllowed,
		DefaultMapType:    reflect.TypeFor[map[string]any](),
		UTF8:              cbor.UTF8RejectInvalid,
		NaN:               cbor.NaNDecodeForbidden,
		Inf:               cbor.InfDecodeForbidden,
		BignumTag:         cbor.BignumTagForbidden,
		ExtraReturnErrors: cbor.ExtraDecErrorUnknownField,
	}.DecModeWithTags(tags)
	if err != nil {
		panic(err)
	}
	return em, dm
}

func (typedCodec[T]) Encode(v T) ([]byte, error) {
	b, err := typedEnc.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("dag-cbor encode %T: %w", v, err)
	}
	out, err := rewriteCBOR(b, true)
	if err != nil {
		return nil, fmt.Errorf("dag-cbor encode %T: %w", v, err)
	}
	return out, nil
}

func (typedCodec[T]) Decode(b []byte) (T, error) {
	var v T
	// DagCBOR's decoder is the one judge of canonical DAG-CBOR.
	if _, err := DagCBOR.Decode(b); err != nil {
		return v, err
	}
	inner, err := rewriteCBOR(b, false)
	if err != nil {
		return v, fmt.Errorf("%w: %v", ErrMalformedValue, err)
	}
	if err := typedDec.Unmarshal(inner, &v); err != nil {
		return v, fmt.Errorf("%w: %w: DAG-CBOR that is not a %T: %v", ErrWrongCodec, ErrMalformedValue, v, err)
	}
	return v, nil
}

// errNotDagCBOR is what fxamacker wrote for a value that has no DAG-CBOR form.
var errNotDagCBOR = errors.New("not in the IPLD data model")

// rewriteCBOR copies the well-formed, definite-length CBOR b, turning it between fxamacker's form
// of T (encode: links' content without the 0x00, floats of 16 or 32 bits) and DAG-CBOR (links'
// content with it, every float in 64 bits), and refusing on the way what DAG-CBOR cannot hold.
func rewriteCBOR(b []byte, encode bool) ([]byte, error) {
	rw := cborRewriter{in: b, out: make([]byte, 0, len(b)+8), encode: encode}
	if err := rw.item(0); err != nil {
		return nil, err
	}
	if len(rw.in) != 0 {
		return nil, errors.New("bytes after the value")
	}
	return rw.out, nil
}

type cborRewriter struct {
	in, out []byte
	encode  bool
}

// head reads an item's head: its major type and argument, copying nothing. fxamacker writes
// minimal heads, but a float's head is its width, not its argument's size: minimality is not
// asked here, DagCBOR.Decode judges it before a decode.
func (r *cborRewriter) head() (major byte, arg uint64, err error) {
	major, arg, next, err := cborHead(r.in, 0, false)
	if err != nil {
		return 0, 0, err
	}
	r.in = r.in[next:]
	return major, arg, nil
}

// take returns the next n bytes of the input.
func (r *cborRewriter) take(n uint64) ([]byte, error) {
	if n > uint64(len(r.in)) {
		return nil, errors.New("cut short")
	}
	s := r.in[:n]
	r.in = r.in[n:]
	return s, nil
}

func (r *cborRewriter) item(depth int) error {
	if depth > 1024 {
		return errors.New("nested too deep")
	}
	if len(r.in) > 0 && r.in[0]>>5 == 7 {
		return r.simple()
	}
	major, arg, err := r.head()
	if err != nil {
		return err
	}
	switch major {
	case 0, 1:
		r.out = appendHeader(r.out, major, arg)
	case 2, 3:
		s, err := r.take(arg)
		if err != nil {
			return err
		}
		if major == 3 && !utf8.Valid(s) {
			return fmt.Errorf("%w: a string that is not UTF-8", errNotDagCBOR)
		}
		r.out = append(appendHeader(r.out, major, arg), s...)
	case 4, 5:
		r.out = appendHeader(r.out, major, arg)
		n := arg
		if major == 5 {
			if arg > math.MaxUint64/2 {
				return errors.New("cut short")
			}
			n = 2 * arg
		}
		for i := range n {
			if major == 5 && i%2 == 0 && (len(r.in) == 0 || r.in[0]>>5 != 3) {
				return fmt.Errorf("%w: a map key that is not a string", errNotDagCBOR)
			}
			if err := r.item(depth + 1); err != nil {
				return err
			}
		}
	case 6:
		if arg != cidTag {
			return fmt.Errorf("%w: tag %d", errNotDagCBOR, arg)
		}
		return r.link()
	}
	return nil
}

// link rewrites the content of a tag 42: a byte string of a CID, with the 0x00 before it in
// DAG-CBOR.
func (r *cborRewriter) link() error {
	major, n, err := r.head()
	if err != nil {
		return err
	}
	if major != 2 {
		return errors.New("tag 42 over something other than bytes")
	}
	s, err := r.take(n)
	if err != nil {
		return err
	}
	r.out = appendHeader(r.out, 6, cidTag)
	if r.encode {
		if len(s) == 0 {
			return fmt.Errorf("%w: an undefined CID", errNotDagCBOR)
		}
		r.out = append(appendHeader(r.out, 2, n+1), 0)
		r.out = append(r.out, s...)
		return nil
	}
	if len(s) == 0 || s[0] != 0 {
		return errors.New("tag 42 content does not start with 0x00")
	}
	r.out = append(appendHeader(r.out, 2, n-1), s[1:]...)
	return nil
}

// simple copies a simple value or float: false, true, null, or a float, widened to 64 bits.
func (r *cborRewriter) simple() error {
	ai := r.in[0] & 0x1f
	switch ai {
	case 20, 21, 22:
		r.out, r.in = append(r.out, r.in[0]), r.in[1:]
		return nil
	case 25, 26, 27:
	default:
		return fmt.Errorf("%w: simple value %d", errNotDagCBOR, ai)
	}
	_, bits, err := r.head()
	if err != nil {
		return err
	}
	var f float64
	switch ai {
	case 25:
		f = float16To64(uint16(bits))
	case 26:
		f = float64(math.Float32frombits(uint32(bits)))
	default:
		f = math.Float64frombits(bits)
	}
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return fmt.Errorf("%w: float %v", errNotDagCBOR, f)
	}
	r.out = binary.BigEndian.AppendUint64(append(r.out, 0xfb), math.Float64bits(f))
	return nil
}

// float16To64 widens an IEEE 754 half-precision float.
func float16To64(h uint16) float64 {
	sign := 1.0
	if h&0x8000 != 0 {
		sign = -1
	}
	exp, frac := int(h>>10&0x1f), float64(h&0x3ff)
	switch exp {
	case 0:
		return sign * math.Ldexp(frac, -24)
	case 0x1f:
		if frac == 0 {
			return math.Inf(int(sign))
		}
		return math.NaN()
	}
	return sign * math.Ldexp(1024+frac, exp-25)
}
