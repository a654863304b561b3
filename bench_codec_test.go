package hamt_test

import (
	"testing"

	"github.com/hamt-go/hamt"
	"github.com/ipfs/go-cid"
	"github.com/multiformats/go-multihash"
)

// benchRecord is a typical typed value: a few scalars, a link, a short list.
type benchRecord struct {
	Station string   `cbor:"station"`
	TempC   float64  `cbor:"temp_c"`
	Hour    int      `cbor:"hour"`
	Source  cid.Cid  `cbor:"source"`
	Flags   []string `cbor:"flags"`
}

func codecBenchValues() (benchRecord, map[string]any) {
	mh, _ := multihash.Sum([]byte("source"), multihash.SHA2_256, -1)
	r := benchRecord{Station: "oslo", TempC: -3.5, Hour: 12, Source: cid.NewCidV1(0x55, mh), Flags: []string{"qc", "estimated"}}
	return r, map[string]any{"station": r.Station, "temp_c": r.TempC, "hour": int64(r.Hour), "source": r.Source, "flags": []any{"qc", "estimated"}}
}

// BenchmarkCodecs: encoding and decoding one record with TypedDagCBOR and with DagCBOR.
func BenchmarkCodecs(b *testing.B) {
	r, m := codecBenchValues()
	typed := hamt.TypedDagCBOR[benchRecord]()
	enc, err := typed.Encode(r)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("TypedDagCBOR/Encode", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := typed.Encode(r); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("TypedDagCBOR/Decode", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := typed.Decode(enc); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("DagCBOR/Encode", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := hamt.DagCBOR.Encode(m); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("DagCBOR/Decode", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := hamt.DagCBOR.Decode(enc); err != nil {
				b.Fatal(err)
			}
		}
	})
}
