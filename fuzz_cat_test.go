package hamt

// Fuzz targets for the readers of Kubo's answers to an export's value requests: a dag/stat answer
// (dagStatSizes) and a cat stream cut into blocks (splitCatStream), and of a bulk import's
// dag/import answer (readImportAnswer). Run them with, for example:
//
//	go test -run XXX -fuzz '^FuzzDagStatSizes$' -fuzztime 3m -parallel 1 .
//	go test -run XXX -fuzz '^FuzzSplitCatStream$' -fuzztime 3m -parallel 1 .
//	go test -run XXX -fuzz '^FuzzImportAnswer$' -fuzztime 3m -parallel 1 .

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"net/http"
	"testing"

	"github.com/ipfs/go-cid"
)

// fuzzCatBlocks are three raw blake3 blocks, one empty.
func fuzzCatBlocks() ([]cid.Cid, [][]byte) {
	data := [][]byte{[]byte("first block"), {}, bytes.Repeat([]byte("third "), 50)}
	ids := make([]cid.Cid, len(data))
	for i, d := range data {
		ids[i] = blake3CID(0x55, d)
	}
	return ids, data
}

// FuzzDagStatSizes: any answer gives an error or one plausible size per block asked.
func FuzzDagStatSizes(f *testing.F) {
	ids, data := fuzzCatBlocks()
	var good bytes.Buffer
	good.WriteString(`{"UniqueBlocks":3,"DagStats":[`)
	for i, id := range ids {
		if i > 0 {
			good.WriteString(",")
		}
		fmt.Fprintf(&good, `{"Cid":%q,"Size":%d,"NumBlocks":1}`, id, len(data[i]))
	}
	good.WriteString("]}")
	f.Add(good.Bytes())
	f.Add([]byte(`{"DagStats":[]}`))
	f.Add([]byte(`{"DagStats":null}`))
	f.Add(bytes.Replace(good.Bytes(), []byte(`"Size":0`), []byte(`"Size":-1`), 1))
	f.Add([]byte(`{"DagStats":[{"Cid":1}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		sizes, err := dagStatSizes(b, ids)
		if err != nil {
			return
		}
		if len(sizes) != len(ids) {
			t.Fatalf("%d sizes for %d blocks", len(sizes), len(ids))
		}
		for _, n := range sizes {
			if n < 0 || n > maxRawBlock {
				t.Fatalf("size %d accepted", n)
			}
		}
	})
}

// FuzzSplitCatStream: a cat answer is accepted only when it is exactly the blocks, whatever sizes
// the daemon claimed; each block handed out is then its true bytes.
func FuzzSplitCatStream(f *testing.F) {
	ids, data := fuzzCatBlocks()
	all := bytes.Join(data, nil)
	sizes := func(a, b, c uint16) []byte {
		return binary.LittleEndian.AppendUint16(binary.LittleEndian.AppendUint16(binary.LittleEndian.AppendUint16(nil, a), b), c)
	}
	f.Add(all, sizes(uint16(len(data[0])), 0, uint16(len(data[2]))), uint8(0))
	f.Add(all, sizes(uint16(len(data[0])+1), 0, uint16(len(data[2])-1)), uint8(1))
	f.Add(append(bytes.Clone(all), 'x'), sizes(uint16(len(data[0])), 0, uint16(len(data[2]))), uint8(2))
	f.Add(all[:len(all)-1], sizes(uint16(len(data[0])), 0, uint16(len(data[2]))), uint8(3))
	f.Fuzz(func(t *testing.T, body, sz []byte, read uint8) {
		if len(sz) < 6 {
			return
		}
		claimed := []int64{int64(binary.LittleEndian.Uint16(sz)), int64(binary.LittleEndian.Uint16(sz[2:])), int64(binary.LittleEndian.Uint16(sz[4:]))}
		got := make([][]byte, len(ids))
		each := func(j int, r io.Reader) error {
			if read&(1<<j) != 0 { // some blocks are read by the callback, the others only checked
				b, err := io.ReadAll(r)
				got[j] = b
				return err
			}
			got[j] = data[j]
			return nil
		}
		pass := func(err error) error { return err }
		err := splitCatStream(bytes.NewReader(body), ids, claimed, each, pass, pass)
		exact := bytes.Equal(body, all)
		for j := range data {
			exact = exact && claimed[j] == int64(len(data[j]))
		}
		if (err == nil) != exact {
			t.Fatalf("answer %q with sizes %v: %v", body, claimed, err)
		}
		if err == nil {
			for j := range ids {
				if !bytes.Equal(got[j], data[j]) {
					t.Fatalf("block %d handed out as %q", j, got[j])
				}
			}
		}
	})
}

// FuzzImportAnswer: any dag/import answer (readImportAnswer, a bulk session's end) gives an error
// or the stats it holds (nil when it holds none), never both, and does not panic.
func FuzzImportAnswer(f *testing.F) {
	f.Add([]byte(`{"Root":{"Cid":{"/":"bafkqaaa"},"PinErrorMsg":""}}` + "\n" + `{"Stats":{"BlockCount":3,"BlockBytesCount":42}}` + "\n"))
	f.Add([]byte(`{"Stats":{"BlockCount":-1}}`))
	f.Add([]byte(`{"Root":null}{"Stats":null}`))
	f.Add([]byte(`{"Stats":{"BlockCount":1,"BlockBytesCount":2}}{`))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		req, _ := http.NewRequest(http.MethodPost, "http://127.0.0.1:5001/api/v0/dag/import", nil)
		resp := &http.Response{StatusCode: http.StatusOK, Body: io.NopCloser(bytes.NewReader(b)), Request: req, Trailer: http.Header{}}
		stats, err := readImportAnswer(resp)
		if err != nil {
			if stats != nil {
				t.Fatalf("stats %+v with error %v", stats, err)
			}
		}
	})
}
