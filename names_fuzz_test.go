package hamt

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"github.com/ipfs/go-cid"
)

// FuzzNameRecord: any bytes in a name's record (read from the bbolt file) decode to a record or
// fail with ErrCorrupt, never panic; a record that decodes encodes back to the same bytes, and
// every name ValidName accepts is not a CID.
//
//	go test -run XXX -fuzz FuzzNameRecord -fuzztime 60s .
func FuzzNameRecord(f *testing.F) {
	root := cid.MustParse("bafyr4ie7yzvohken4tyouj5d5v4jdtts2wzo5vmngcxpb6lt6mspnkdgc4")
	old := cid.MustParse("bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku")
	t0 := time.Unix(1_700_000_000, 123).UTC()
	f.Add("era5", encodeNameRecord(NamedRoot{Name: "era5", RootVersion: RootVersion{root, t0}}))
	f.Add("a/b", encodeNameRecord(NamedRoot{Name: "a/b", RootVersion: RootVersion{root, t0},
		History: []RootVersion{{old, t0.Add(-time.Hour)}, {root, time.Unix(0, 0).UTC()}}}))
	f.Add("", []byte{})
	f.Add("x", []byte{nameRecordVersion})
	f.Add("x", []byte{nameRecordVersion, 0x80})
	f.Add("x", []byte{nameRecordVersion, 1, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Add("bafkqaaa", []byte{2})
	f.Fuzz(func(t *testing.T, name string, b []byte) {
		if ValidName(name) == nil {
			if _, err := cid.Decode(name); err == nil {
				t.Fatalf("ValidName accepts the CID %q", name)
			}
		}
		r, err := decodeNameRecord(name, b)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("decode: %v, not ErrCorrupt", err)
			}
			return
		}
		if r.Name != name || !r.Root.Defined() {
			t.Fatalf("decoded %+v", r)
		}
		if again := encodeNameRecord(r); !bytes.Equal(again, b) {
			// Varints have one shortest form; a longer one decodes but encodes shorter.
			if r2, err := decodeNameRecord(name, again); err != nil || len(r2.History) != len(r.History) {
				t.Fatalf("re-encoded record decodes to %+v, %v", r2, err)
			}
		}
	})
}
