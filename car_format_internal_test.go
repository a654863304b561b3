package hamt

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/ipfs/go-cid"
	carv2 "github.com/ipld/go-car/v2"
	"github.com/ipld/go-car/v2/storage"
	"github.com/multiformats/go-multicodec"
	"github.com/multiformats/go-multihash"
	"pgregory.net/rapid"
)

// car_format.go is judged by go-car, which it replaces: the writer writes its bytes, the reader
// reads what its BlockReader reads.

// TestCARWriterWritesGoCarBytes: for any roots and blocks (some sharing a multihash under two
// codecs, some sent twice, some identity CIDs), the CAR written is go-car's byte for byte, and
// has agrees with go-car's Has after every block.
func TestCARWriterWritesGoCarBytes(t *testing.T) {
	ctx := context.Background()
	rapid.Check(t, func(t *rapid.T) {
		codecs := []multicodec.Code{multicodec.Raw, multicodec.DagCbor, multicodec.DagPb}
		block := func(label string) (cid.Cid, []byte) {
			data := []byte(rapid.SampledFrom([]string{"", "a", "b", "abc", strings.Repeat("x", 300)}).Draw(t, label+" data"))
			codec := rapid.SampledFrom(codecs).Draw(t, label+" codec")
			var mh multihash.Multihash
			switch rapid.IntRange(0, 2).Draw(t, label+" hash") {
			case 0:
				return blake3CID(codec, data), data
			case 1:
				mh, _ = multihash.Sum(data, multihash.SHA2_256, -1)
				if codec == multicodec.DagPb && rapid.Bool().Draw(t, label+" v0") {
					return cid.NewCidV0(mh), data
				}
			default:
				mh, _ = multihash.Sum(data, multihash.IDENTITY, -1)
			}
			return cid.NewCidV1(uint64(codec), mh), data
		}
		var roots []cid.Cid
		for i := range rapid.IntRange(0, 2).Draw(t, "roots") {
			id, _ := block("root " + string(rune('0'+i)))
			roots = append(roots, id)
		}
		var mine, theirs bytes.Buffer
		w, err := newCARWriter(&mine, roots)
		if err != nil {
			t.Fatal(err)
		}
		gc, err := storage.NewWritable(&theirs, roots, carv2.WriteAsCarV1(true))
		if err != nil {
			t.Fatal(err)
		}
		for i := range rapid.IntRange(0, 12).Draw(t, "blocks") {
			id, data := block("block " + string(rune('a'+i)))
			if err := w.put(id, data); err != nil {
				t.Fatal(err)
			}
			if err := gc.Put(ctx, id.KeyString(), data); err != nil {
				t.Fatal(err)
			}
			if has, _ := gc.Has(ctx, id.KeyString()); has != w.has(id) {
				t.Fatalf("has(%s) = %v, go-car %v", id, w.has(id), has)
			}
		}
		if err := gc.Finalize(); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(mine.Bytes(), theirs.Bytes()) {
			t.Fatalf("CAR\n%x\ngo-car\n%x", mine.Bytes(), theirs.Bytes())
		}
	})
}

// carRead is what a CAR reader read: the version, roots and sections, and how it ended.
type carRead struct {
	header  bool // the header read
	version uint64
	roots   []cid.Cid
	ids     []cid.Cid
	data    [][]byte
	err     error // nil when the CAR ended cleanly
}

// readCAROwn reads a CAR with carReader.next.
func readCAROwn(b []byte) carRead {
	var out carRead
	r, err := newCARReader(bytes.NewReader(b))
	if err != nil {
		out.err = err
		return out
	}
	out.header, out.version, out.roots = true, r.version, r.roots
	for {
		id, data, err := r.next()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			out.err = err
			return out
		}
		out.ids, out.data = append(out.ids, id), append(out.data, data)
	}
}

// countingByteReader counts the bytes go-car reads: it reads byte by byte from it (its
// ToByteReader), so the count is exact.
type countingByteReader struct {
	r *bytes.Reader
	n int
}

func (c *countingByteReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}

// readCARGoCar reads a CAR with go-car's BlockReader. go-car ends with io.EOF also when the CAR
// stops right after a section's length: that is counted as a cut CAR here.
func readCARGoCar(b []byte) carRead {
	var out carRead
	cr := &countingByteReader{r: bytes.NewReader(b)}
	br, err := carv2.NewBlockReader(cr, carv2.WithTrustedCAR(true))
	if err != nil {
		out.err = err
		return out
	}
	out.header, out.version, out.roots = true, br.Version, br.Roots
	end := cr.n
	for {
		blk, err := br.Next()
		if errors.Is(err, io.EOF) {
			if cr.n != end {
				out.err = io.ErrUnexpectedEOF
			}
			return out
		}
		if err != nil {
			out.err = err
			return out
		}
		end = cr.n
		out.ids, out.data = append(out.ids, blk.Cid()), append(out.data, blk.RawData())
	}
}

// checkCARAgrees fails unless carReader reads b as go-car does. Only a header that go-car takes
// and that is not DAG-CBOR (indefinite lengths, repeated keys, non-canonical roots, a version that
// is not an integer) may be refused where go-car reads it.
func checkCARAgrees(t *testing.T, b []byte) {
	t.Helper()
	mine, theirs := readCAROwn(b), readCARGoCar(b)
	if mine.header != theirs.header {
		if !mine.header && strings.Contains(mine.err.Error(), "invalid header") {
			return // stricter on the header than go-car
		}
		t.Fatalf("CAR %x: header read with %v; go-car: %v", b, mine.err, theirs.err)
	}
	if !mine.header {
		return
	}
	if (mine.err == nil) != (theirs.err == nil) {
		t.Fatalf("CAR %x: read with %v; go-car: %v", b, mine.err, theirs.err)
	}
	if mine.version != theirs.version || !slices.EqualFunc(mine.roots, theirs.roots, cid.Cid.Equals) {
		t.Fatalf("CAR %x: version %d, roots %v; go-car: %d, %v", b, mine.version, mine.roots, theirs.version, theirs.roots)
	}
	if !slices.EqualFunc(mine.ids, theirs.ids, cid.Cid.Equals) || !slices.EqualFunc(mine.data, theirs.data, bytes.Equal) {
		t.Fatalf("CAR %x: blocks %v; go-car %v", b, mine.ids, theirs.ids)
	}
}

// carFormatSeeds are CARs of every shape: the ReadCAR seeds (maps, files, CARv2, cut ones), a
// CARv2 with padding, and headers go-car reads leniently.
func carFormatSeeds(t testing.TB) [][]byte {
	seeds := fuzzCARSeeds(t)
	root := blake3CID(multicodec.Raw, []byte("x"))
	v2, err := os.Create(filepath.Join(t.TempDir(), "v2.car"))
	if err != nil {
		t.Fatal(err)
	}
	defer v2.Close()
	f, err := storage.NewReadableWritable(v2, []cid.Cid{root}, carv2.UseDataPadding(7))
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Put(context.Background(), root.KeyString(), []byte("x")); err != nil {
		t.Fatal(err)
	}
	if err := f.Finalize(); err != nil {
		t.Fatal(err)
	}
	v2b, err := os.ReadFile(v2.Name())
	if err != nil {
		t.Fatal(err)
	}
	hdr := func(h []byte) []byte { return append([]byte{byte(len(h))}, h...) }
	seeds = append(seeds, v2b,
		hdr([]byte{0xa1, 0x67, 'v', 'e', 'r', 's', 'i', 'o', 'n', 0x01}),                                      // no roots
		hdr([]byte{0xa2, 0x65, 'r', 'o', 'o', 't', 's', 0xf6, 0x67, 'v', 'e', 'r', 's', 'i', 'o', 'n', 0x01}), // null roots
		hdr([]byte{0xa1, 0x67, 'v', 'e', 'r', 's', 'i', 'o', 'n', 0x03}),                                      // version 3
		hdr([]byte{0xbf, 0x67, 'v', 'e', 'r', 's', 'i', 'o', 'n', 0x01, 0xff}),                                // indefinite map
		append(hdr([]byte{0xa1, 0x67, 'v', 'e', 'r', 's', 'i', 'o', 'n', 0x01}), 0x00),                        // a section of 0 bytes
		append(hdr([]byte{0xa1, 0x67, 'v', 'e', 'r', 's', 'i', 'o', 'n', 0x01}), 0x80, 0x00),                  // a length not minimal
	)
	return seeds
}

func TestCARReaderAgreesWithGoCar(t *testing.T) {
	for _, b := range carFormatSeeds(t) {
		checkCARAgrees(t, b)
		for cut := range len(b) { // and every prefix
			checkCARAgrees(t, b[:cut])
		}
	}
}

// FuzzCARReaderAgreesWithGoCar: on any bytes, carReader reads the version, roots and blocks
// go-car's BlockReader reads, and fails where it fails (or on a header that is not DAG-CBOR).
func FuzzCARReaderAgreesWithGoCar(f *testing.F) {
	for _, s := range carFormatSeeds(f) {
		f.Add(s)
	}
	f.Fuzz(checkCARAgrees)
}
