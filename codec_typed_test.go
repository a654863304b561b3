package hamt_test

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"math"
	"os"
	"reflect"
	"testing"

	"github.com/hamt-go/hamt"
	"github.com/ipfs/go-cid"
	"github.com/multiformats/go-multihash"
	"pgregory.net/rapid"
)

// typedRecord has a field of every kind TypedDagCBOR writes.
type typedRecord struct {
	Name     string           `cbor:"name"`
	Count    int64            `cbor:"count"`
	Big      uint64           `cbor:"big"`
	Ratio    float64          `cbor:"ratio"`
	Small    float32          `cbor:"small"`
	Data     []byte           `cbor:"data"`
	Tags     []string         `cbor:"tags"`
	Attrs    map[string]int64 `cbor:"attrs"`
	Link     cid.Cid          `cbor:"link"`
	Maybe    *string          `cbor:"maybe"`
	OK       bool             `cbor:"ok"`
	LongName int              `cbor:"a_longer_field_name"`
	Note     string           `cbor:"note,omitempty"`
}

// model is the record as DagCBOR's data model holds it.
func (r typedRecord) model() map[string]any {
	m := map[string]any{
		"name": r.Name, "count": r.Count, "big": r.Big, "ratio": r.Ratio, "small": float64(r.Small),
		"ok": r.OK, "a_longer_field_name": int64(r.LongName), "link": r.Link,
	}
	if r.Big <= math.MaxInt64 {
		m["big"] = int64(r.Big)
	}
	m["data"] = nil
	if r.Data != nil {
		m["data"] = r.Data
	}
	m["tags"] = nil
	if r.Tags != nil {
		tags := make([]any, len(r.Tags))
		for i, t := range r.Tags {
			tags[i] = t
		}
		m["tags"] = tags
	}
	m["attrs"] = nil
	if r.Attrs != nil {
		attrs := map[string]any{}
		for k, v := range r.Attrs {
			attrs[k] = v
		}
		m["attrs"] = attrs
	}
	m["maybe"] = nil
	if r.Maybe != nil {
		m["maybe"] = *r.Maybe
	}
	if r.Note != "" {
		m["note"] = r.Note
	}
	return m
}

func drawRecord(t *rapid.T) typedRecord {
	finite := func(f float64) bool { return !math.IsNaN(f) && !math.IsInf(f, 0) }
	key := rapid.StringMatching(`[a-zé]{0,6}`)
	mh, _ := multihash.Sum(rapid.SliceOf(rapid.Byte()).Draw(t, "link data"), multihash.SHA2_256, -1)
	r := typedRecord{
		Name:     rapid.String().Draw(t, "name"),
		Count:    rapid.Int64().Draw(t, "count"),
		Big:      rapid.Uint64().Draw(t, "big"),
		Ratio:    rapid.Float64().Filter(finite).Draw(t, "ratio"),
		Small:    rapid.Float32().Filter(func(f float32) bool { return finite(float64(f)) }).Draw(t, "small"),
		Data:     rapid.OneOf(rapid.Just([]byte(nil)), rapid.SliceOf(rapid.Byte())).Draw(t, "data"),
		Tags:     rapid.OneOf(rapid.Just([]string(nil)), rapid.SliceOf(key)).Draw(t, "tags"),
		Attrs:    rapid.OneOf(rapid.Just(map[string]int64(nil)), rapid.MapOf(key, rapid.Int64())).Draw(t, "attrs"),
		Link:     cid.NewCidV1(rapid.SampledFrom([]uint64{0x55, 0x71, 0x70}).Draw(t, "codec"), mh),
		OK:       rapid.Bool().Draw(t, "ok"),
		LongName: rapid.Int().Draw(t, "long"),
		Note:     key.Draw(t, "note"),
	}
	if rapid.Bool().Draw(t, "has maybe") {
		s := key.Draw(t, "maybe")
		r.Maybe = &s
	}
	return r
}

// TestTypedDagCBORWritesDagCBORBytes: a struct written with TypedDagCBOR is byte for byte what
// DagCBOR writes for the same data, and reads back equal with either codec.
func TestTypedDagCBORWritesDagCBORBytes(t *testing.T) {
	codec := hamt.TypedDagCBOR[typedRecord]()
	rapid.Check(t, func(t *rapid.T) {
		r := drawRecord(t)
		got, err := codec.Encode(r)
		if err != nil {
			t.Fatal(err)
		}
		want, err := hamt.DagCBOR.Encode(r.model())
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("TypedDagCBOR\n%x\nDagCBOR\n%x", got, want)
		}
		back, err := codec.Decode(got)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(back, r) {
			t.Fatalf("read back %+v, wrote %+v", back, r)
		}
		generic, err := hamt.DagCBOR.Decode(got)
		if err != nil || !reflect.DeepEqual(generic, r.model()) {
			t.Fatalf("DagCBOR reads %v (%v), want %v", generic, err, r.model())
		}
	})
}

// TestTypedDagCBORRoundTripsThroughAMap: a Map of structs sets, flushes, reopens and reads them.
func TestTypedDagCBORRoundTripsThroughAMap(t *testing.T) {
	ctx := context.Background()
	codec := hamt.TypedDagCBOR[typedRecord]()
	rapid.Check(t, func(t *rapid.T) {
		cas := hamt.NewMemoryCAS()
		m, err := hamt.New(ctx, cas, codec, hamt.WithBucketSize(1))
		if err != nil {
			t.Fatal(err)
		}
		model := map[string]typedRecord{}
		for i := range rapid.IntRange(0, 20).Draw(t, "n") {
			key := fmt.Sprintf("k%d", rapid.IntRange(0, 30).Draw(t, fmt.Sprint("key ", i)))
			r := drawRecord(t)
			if err := m.Set(ctx, key, r); err != nil {
				t.Fatal(err)
			}
			model[key] = r
		}
		root, err := m.Flush(ctx)
		if err != nil {
			t.Fatal(err)
		}
		r, err := hamt.Open(ctx, cas, codec, root)
		if err != nil {
			t.Fatal(err)
		}
		for key, want := range model {
			got, err := r.Get(ctx, key)
			if err != nil || !reflect.DeepEqual(got, want) {
				t.Fatalf("Get(%q) = %+v, %v; want %+v", key, got, err, want)
			}
		}
	})
}

// TestTypedDagCBORReadsPyHamtValues: values py-hamt wrote (testdata/pyhamt/c_100_ipld_values)
// read into Go types and write back to the same bytes, and a struct reads through the map.
func TestTypedDagCBORReadsPyHamtValues(t *testing.T) {
	type linkRecord struct {
		Link cid.Cid `cbor:"link"`
		N    int     `cbor:"n"`
	}
	type nested struct {
		Nested struct {
			Deeper struct {
				Deepest []any `cbor:"deepest"`
			} `cbor:"deeper"`
		} `cbor:"nested"`
		List []map[string]string `cbor:"list"`
	}
	values := map[string]string{}
	var vec struct {
		RootCID string `json:"root_cid"`
		Ops     []struct {
			Key string `json:"key"`
			Hex string `json:"value_dagcbor_hex"`
		} `json:"ops"`
	}
	vb, err := os.ReadFile("testdata/pyhamt/c_100_ipld_values.json")
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(vb, &vec); err != nil {
		t.Fatal(err)
	}
	for _, op := range vec.Ops {
		values[op.Key] = op.Hex
	}
	check := func(key string, decode func([]byte) (any, error), encode func(any) ([]byte, error)) {
		t.Helper()
		b, err := hex.DecodeString(values[key])
		if err != nil || len(b) == 0 {
			t.Fatalf("%s: no value in the vector", key)
		}
		v, err := decode(b)
		if err != nil {
			t.Fatalf("%s (%x): %v", key, b, err)
		}
		again, err := encode(v)
		if err != nil || !bytes.Equal(again, b) {
			t.Fatalf("%s: %+v writes %x (%v), py-hamt wrote %x", key, v, again, err, b)
		}
	}
	typed := func(c any) (func([]byte) (any, error), func(any) ([]byte, error)) {
		switch c := c.(type) {
		case hamt.Codec[linkRecord]:
			return func(b []byte) (any, error) { return c.Decode(b) }, func(v any) ([]byte, error) { return c.Encode(v.(linkRecord)) }
		case hamt.Codec[nested]:
			return func(b []byte) (any, error) { return c.Decode(b) }, func(v any) ([]byte, error) { return c.Encode(v.(nested)) }
		case hamt.Codec[map[string]int]:
			return func(b []byte) (any, error) { return c.Decode(b) }, func(v any) ([]byte, error) { return c.Encode(v.(map[string]int)) }
		case hamt.Codec[cid.Cid]:
			return func(b []byte) (any, error) { return c.Decode(b) }, func(v any) ([]byte, error) { return c.Encode(v.(cid.Cid)) }
		case hamt.Codec[float64]:
			return func(b []byte) (any, error) { return c.Decode(b) }, func(v any) ([]byte, error) { return c.Encode(v.(float64)) }
		case hamt.Codec[string]:
			return func(b []byte) (any, error) { return c.Decode(b) }, func(v any) ([]byte, error) { return c.Encode(v.(string)) }
		case hamt.Codec[int64]:
			return func(b []byte) (any, error) { return c.Decode(b) }, func(v any) ([]byte, error) { return c.Encode(v.(int64)) }
		case hamt.Codec[[]cid.Cid]:
			return func(b []byte) (any, error) { return c.Decode(b) }, func(v any) ([]byte, error) { return c.Encode(v.([]cid.Cid)) }
		case hamt.Codec[[]byte]:
			return func(b []byte) (any, error) { return c.Decode(b) }, func(v any) ([]byte, error) { return c.Encode(v.([]byte)) }
		}
		panic("no case")
	}
	for key, c := range map[string]any{
		"key-56": hamt.TypedDagCBOR[linkRecord](),     // {"link": CID, "n": 7}
		"key-50": hamt.TypedDagCBOR[nested](),         // nested maps and lists
		"key-49": hamt.TypedDagCBOR[map[string]int](), // keys sorted length-first
		"key-51": hamt.TypedDagCBOR[map[string]int](), // non-ASCII keys
		"key-53": hamt.TypedDagCBOR[cid.Cid](),
		"key-55": hamt.TypedDagCBOR[[]cid.Cid](),
		"key-21": hamt.TypedDagCBOR[float64](), // -0.0
		"key-26": hamt.TypedDagCBOR[float64](), // 5e-324
		"key-22": hamt.TypedDagCBOR[float64](), // 1.5: 64 bits, not 16
		"key-32": hamt.TypedDagCBOR[string](),
		"key-18": hamt.TypedDagCBOR[int64](), // -2^63
		"key-38": hamt.TypedDagCBOR[[]byte](),
	} {
		d, e := typed(c)
		check(key, d, e)
	}

	// Through the map py-hamt wrote.
	ctx := context.Background()
	car, err := os.Open("testdata/pyhamt/c_100_ipld_values.car")
	if err != nil {
		t.Fatal(err)
	}
	defer car.Close()
	cas := hamt.NewMemoryCAS()
	roots, _, err := hamt.ReadCAR(ctx, cas, car)
	if err != nil {
		t.Fatal(err)
	}
	m, err := hamt.Open(ctx, cas, hamt.TypedDagCBOR[linkRecord](), roots[0])
	if err != nil {
		t.Fatal(err)
	}
	got, err := m.Get(ctx, "key-56")
	if err != nil || got.N != 7 || got.Link.String() != "bafkr4ihkr4ld3m4gqkjf4reryxsy2s5tkbxprqkow6fin2iiyvreuzzab4" {
		t.Fatalf("Get(key-56) = %+v, %v", got, err)
	}
	// A value of another shape is a wrong codec.
	if _, err := m.Get(ctx, "key-29"); !errors.Is(err, hamt.ErrWrongCodec) || !errors.Is(err, hamt.ErrMalformedValue) {
		t.Fatalf("Get(key-29), the string \"bar\", as a struct: %v; want ErrWrongCodec and ErrMalformedValue", err)
	}
}

// TestWrongCodecIsDetected: a map opened with a codec its values were not written with says so
// where the bytes can tell: DagCBOR over bytes that are not CBOR, a struct codec over DAG-CBOR of
// another shape (a field T lacks, a field of another kind). Non-canonical CBOR is malformed, not
// a wrong codec; the Bytes codec reads anything.
func TestWrongCodecIsDetected(t *testing.T) {
	ctx := context.Background()
	cas := hamt.NewMemoryCAS()
	raw, err := hamt.New(ctx, cas, hamt.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	generic, err := hamt.New(ctx, cas, hamt.DagCBOR)
	if err != nil {
		t.Fatal(err)
	}
	for key, v := range map[string][]byte{"zarr.json": []byte(`{"zarr_format":3}`), "chunk": {0xff, 0xfe, 0x00}} {
		if err := raw.Set(ctx, key, v); err != nil {
			t.Fatal(err)
		}
	}
	for key, v := range map[string]any{"extra": map[string]any{"a": int64(1), "zz": "x"}, "kind": map[string]any{"a": "not an int"}, "list": []any{int64(1)}} {
		if err := generic.Set(ctx, key, v); err != nil {
			t.Fatal(err)
		}
	}
	rawRoot, err := raw.Flush(ctx)
	if err != nil {
		t.Fatal(err)
	}
	genericRoot, err := generic.Flush(ctx)
	if err != nil {
		t.Fatal(err)
	}
	asCBOR, err := hamt.Open(ctx, cas, hamt.DagCBOR, rawRoot)
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{"zarr.json", "chunk"} {
		if _, err := asCBOR.Get(ctx, key); !errors.Is(err, hamt.ErrWrongCodec) || !errors.Is(err, hamt.ErrMalformedValue) {
			t.Errorf("Get(%q) of bytes with DagCBOR: %v; want ErrWrongCodec and ErrMalformedValue", key, err)
		}
	}
	type onlyA struct {
		A int `cbor:"a"`
	}
	asStruct, err := hamt.Open(ctx, cas, hamt.TypedDagCBOR[onlyA](), genericRoot)
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{"extra", "kind", "list"} {
		if _, err := asStruct.Get(ctx, key); !errors.Is(err, hamt.ErrWrongCodec) || !errors.Is(err, hamt.ErrMalformedValue) {
			t.Errorf("Get(%q) as a struct: %v; want ErrWrongCodec and ErrMalformedValue", key, err)
		}
	}
	// Canonical-looking but not canonical: a long head for 1. Malformed, not a wrong codec.
	for _, b := range [][]byte{{0x18, 0x01}, {0xfa, 0x3f, 0xc0, 0x00, 0x00}} {
		if _, err := hamt.DagCBOR.Decode(b); !errors.Is(err, hamt.ErrMalformedValue) || errors.Is(err, hamt.ErrWrongCodec) {
			t.Errorf("DagCBOR.Decode(%x): %v; want ErrMalformedValue alone", b, err)
		}
		if _, err := hamt.TypedDagCBOR[float64]().Decode(b); !errors.Is(err, hamt.ErrMalformedValue) || errors.Is(err, hamt.ErrWrongCodec) {
			t.Errorf("TypedDagCBOR.Decode(%x): %v; want ErrMalformedValue alone", b, err)
		}
	}
}

// TestTypedDagCBORRefusesWhatDagCBORCannotHold: NaN, infinities, non-string map keys, strings
// that are not UTF-8, undefined links and integers beyond 64 bits have no DAG-CBOR form.
func TestTypedDagCBORRefusesWhatDagCBORCannotHold(t *testing.T) {
	for name, encode := range map[string]func() error{
		"NaN":            func() error { _, err := hamt.TypedDagCBOR[float64]().Encode(math.NaN()); return err },
		"+Inf float32":   func() error { _, err := hamt.TypedDagCBOR[float32]().Encode(float32(math.Inf(1))); return err },
		"int map keys":   func() error { _, err := hamt.TypedDagCBOR[map[int]string]().Encode(map[int]string{1: "a"}); return err },
		"invalid UTF-8":  func() error { _, err := hamt.TypedDagCBOR[string]().Encode("\xff"); return err },
		"undefined link": func() error { _, err := hamt.TypedDagCBOR[cid.Cid]().Encode(cid.Undef); return err },
	} {
		if err := encode(); err == nil {
			t.Errorf("%s: encoded", name)
		}
	}
}

// Store Go structs in a map: TypedDagCBOR writes them as the same canonical DAG-CBOR that
// DagCBOR (and py-hamt) write for a map of their fields.
func ExampleTypedDagCBOR() {
	type reading struct {
		Station string  `cbor:"station"`
		TempC   float64 `cbor:"temp_c"`
		Hour    int     `cbor:"hour"`
	}
	ctx := context.Background()
	cas := hamt.NewMemoryCAS()
	m, err := hamt.New(ctx, cas, hamt.TypedDagCBOR[reading]())
	if err != nil {
		log.Fatal(err)
	}
	if err := m.Set(ctx, "oslo/2024-01-01T12", reading{Station: "oslo", TempC: -3.5, Hour: 12}); err != nil {
		log.Fatal(err)
	}
	root, err := m.Flush(ctx)
	if err != nil {
		log.Fatal(err)
	}

	r, err := hamt.Open(ctx, cas, hamt.TypedDagCBOR[reading](), root)
	if err != nil {
		log.Fatal(err)
	}
	v, err := r.Get(ctx, "oslo/2024-01-01T12")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%+v\n", v)

	// The same value through the untyped codec.
	g, err := hamt.Open(ctx, cas, hamt.DagCBOR, root)
	if err != nil {
		log.Fatal(err)
	}
	any, err := g.Get(ctx, "oslo/2024-01-01T12")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(any)
	// Output:
	// {Station:oslo TempC:-3.5 Hour:12}
	// map[hour:12 station:oslo temp_c:-3.5]
}

// FuzzTypedDagCBOR: any bytes decode into a struct or fail with ErrMalformedValue; what decodes
// was canonical DAG-CBOR (DagCBOR reads it), and writes back to bytes that read back the same.
func FuzzTypedDagCBOR(f *testing.F) {
	codec := hamt.TypedDagCBOR[typedRecord]()
	mh, _ := multihash.Sum([]byte("x"), multihash.SHA2_256, -1)
	s := "maybe"
	for _, r := range []typedRecord{{}, {Name: "n", Count: -5, Big: math.MaxUint64, Ratio: 0.5, Small: 1.5, Data: []byte{1}, Tags: []string{"a", "bb"},
		Attrs: map[string]int64{"é": 1, "z": 2}, Link: cid.NewCidV1(0x71, mh), Maybe: &s, OK: true, LongName: 3, Note: "x"}} {
		if r.Link.Defined() {
			b, err := codec.Encode(r)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(b)
		}
	}
	f.Add([]byte{0xa0})
	f.Add([]byte{0xa1, 0x64, 'n', 'a', 'm', 'e', 0x61, 'x'})
	f.Add([]byte{0xa1, 0x64, 'l', 'i', 'n', 'k', 0xd8, 0x2a, 0x41, 0x00})
	f.Fuzz(func(t *testing.T, b []byte) {
		v, err := codec.Decode(b)
		if err != nil {
			if !errors.Is(err, hamt.ErrMalformedValue) {
				t.Fatalf("Decode(%x): %v, want ErrMalformedValue", b, err)
			}
			return
		}
		if _, err := hamt.DagCBOR.Decode(b); err != nil {
			t.Fatalf("Decode(%x) = %+v, but DagCBOR refuses it: %v", b, v, err)
		}
		again, err := codec.Encode(v)
		if err != nil {
			if v.Link.Defined() {
				t.Fatalf("Decode(%x) = %+v, which does not encode: %v", b, v, err)
			}
			return // a record without its link
		}
		back, err := codec.Decode(again)
		if err != nil || !reflect.DeepEqual(back, v) {
			t.Fatalf("%+v writes %x, which reads %+v, %v", v, again, back, err)
		}
	})
}
