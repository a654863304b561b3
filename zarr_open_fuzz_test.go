package hamt

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// FuzzLayoutOf: layout detection of any root block never panics, and agrees with the decoders:
// a block that decodes as a HAMT node is the HAMT layout, one IsShardedRoot accepts is the
// sharded layout, and anything else is ErrUnknownLayout.
func FuzzLayoutOf(f *testing.F) {
	empty, _ := (&node{}).encode()
	f.Add(empty)
	// Every root of the b_sharded_v2 vector (py-hamt 3.5).
	raw, err := os.ReadFile(filepath.Join("testdata", "pyhamt35", "b_sharded_v2_8f8f13cd.json"))
	if err != nil {
		f.Fatal(err)
	}
	var vec struct {
		Steps []struct {
			RootHex string `json:"root_hex"`
		} `json:"steps"`
	}
	if err := json.Unmarshal(raw, &vec); err != nil {
		f.Fatal(err)
	}
	for _, s := range vec.Steps {
		b, err := hex.DecodeString(s.RootHex)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte{0x99, 0x01, 0x00})
	f.Add([]byte{0x99, 0x00, 0xff})
	f.Add([]byte{0xa1, 0x70, 'm', 'a', 'n', 'i', 'f', 'e', 's', 't', '_', 'v', 'e', 'r', 's', 'i', 'o', 'n', 0xf6})
	f.Add([]byte{0xa0})
	f.Add([]byte("zarr.json"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		l, err := layoutOf(b)
		if err != nil && (!errors.Is(err, ErrUnknownLayout) || l != 0) {
			t.Fatalf("layoutOf: %v, %v", l, err)
		}
		if _, derr := decodeNode(b); derr == nil && l != LayoutHAMT {
			t.Fatalf("a HAMT node detected as %v, %v", l, err)
		}
		if IsShardedRoot(b) && l != LayoutSharded {
			t.Fatalf("a sharded root detected as %v, %v", l, err)
		}
		if l == LayoutSharded && !IsShardedRoot(b) {
			t.Fatalf("detected sharded, but IsShardedRoot refuses it")
		}
	})
}
