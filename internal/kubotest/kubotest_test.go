package kubotest_test

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/textproto"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hamt-go/hamt/internal/kubotest"
	"github.com/ipfs/boxo/ipld/merkledag"
	"github.com/ipfs/boxo/ipld/unixfs"
	blocks "github.com/ipfs/go-block-format"
	"github.com/ipfs/go-cid"
	carv2 "github.com/ipld/go-car/v2"
	"github.com/multiformats/go-multicodec"
	"github.com/multiformats/go-multihash"
	"github.com/zeebo/blake3"
)

var client = &http.Client{Timeout: 10 * time.Second}

// blake3CID is CIDv1(codec, blake3-256(data)), computed without the server.
func blake3CID(codec multicodec.Code, data []byte) cid.Cid {
	sum := blake3.Sum256(data)
	h, err := multihash.Encode(sum[:], multihash.BLAKE3)
	if err != nil {
		panic(err)
	}
	return cid.NewCidV1(uint64(codec), h)
}

// pattern is deterministic, non-repeating-per-chunk data.
func pattern(n int) []byte {
	b := make([]byte, n)
	x := uint32(2463534242)
	for i := range b {
		x ^= x << 13
		x ^= x >> 17
		x ^= x << 5
		b[i] = byte(x)
	}
	return b
}

type addReply struct {
	Name, Hash, Size string
}

// sendAdd sends data the way py-hamt's KuboCAS does: one multipart part named "file", filename
// "upload", type application/octet-stream.
func sendAdd(s *kubotest.Server, query string, data []byte) (*http.Response, error) {
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	h := textproto.MIMEHeader{}
	h.Set("Content-Disposition", `form-data; name="file"; filename="upload"`)
	h.Set("Content-Type", "application/octet-stream")
	part, err := mw.CreatePart(h)
	if err != nil {
		return nil, err
	}
	_, _ = part.Write(data)
	_ = mw.Close()
	req, err := http.NewRequest(http.MethodPost, s.RPCURL()+"/api/v0/add?"+query, &body)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", mw.FormDataContentType())
	return client.Do(req)
}

func postAdd(t *testing.T, s *kubotest.Server, query string, data []byte) *http.Response {
	t.Helper()
	resp, err := sendAdd(s, query, data)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

// tryAdd adds data and returns the first reply line, decoded and as sent.
func tryAdd(s *kubotest.Server, query string, data []byte) (addReply, string, error) {
	resp, err := sendAdd(s, query, data)
	if err != nil {
		return addReply{}, "", err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return addReply{}, "", err
	}
	if resp.StatusCode != http.StatusOK {
		return addReply{}, "", fmt.Errorf("add: %d %s", resp.StatusCode, raw)
	}
	var r addReply
	if err := json.Unmarshal(bytes.SplitN(raw, []byte("\n"), 2)[0], &r); err != nil {
		return addReply{}, "", fmt.Errorf("add reply %q: %v", raw, err)
	}
	return r, string(raw), nil
}

func add(t *testing.T, s *kubotest.Server, query string, data []byte) (addReply, string) {
	t.Helper()
	r, line, err := tryAdd(s, query, data)
	if err != nil {
		t.Fatal(err)
	}
	return r, line
}

const ourAdd = "hash=blake3&chunker=size-1048576&pin=false"

func rpc(t *testing.T, s *kubotest.Server, method, path string) (int, http.Header, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, s.RPCURL()+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	return do(t, req)
}

func gw(t *testing.T, s *kubotest.Server, path string, header ...string) (int, http.Header, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, s.GatewayURL()+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	return do(t, req)
}

func do(t *testing.T, req *http.Request) (int, http.Header, []byte) {
	t.Helper()
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, b
}

func TestAddReplaysKuboCASRequestsWithKubosAnswers(t *testing.T) {
	// The requests py-hamt's KuboCAS sends and the answers Kubo v0.42.0 gave (see SOURCE.md there).
	raw, err := os.ReadFile("../../testdata/pyhamt/kubocas_http_requests.json")
	if err != nil {
		t.Fatal(err)
	}
	var rec struct {
		Requests []struct {
			Method, URL      string
			PayloadHex       string         `json:"multipart_payload_hex"`
			MockKuboResponse map[string]any `json:"mock_kubo_response"`
		}
	}
	if err := json.Unmarshal(raw, &rec); err != nil {
		t.Fatal(err)
	}
	s := kubotest.New(t)
	n := 0
	for _, r := range rec.Requests {
		if r.Method != http.MethodPost || r.MockKuboResponse == nil {
			continue
		}
		want := r.MockKuboResponse["Hash"].(string)
		if !strings.HasPrefix(want, "bafk") {
			continue // the dag-pb answer there is a stand-in for a > 1 MiB value, not a real one
		}
		data, _ := hex.DecodeString(r.PayloadHex)
		_, query, _ := strings.Cut(r.URL, "?")
		got, line := add(t, s, query, data)
		if got.Hash != want || got.Name != "upload" || got.Size != r.MockKuboResponse["Size"] {
			t.Errorf("%s: got %s, want Hash %s Size %v", r.URL, line, want, r.MockKuboResponse["Size"])
		}
		if got.Hash != blake3CID(multicodec.Raw, data).String() {
			t.Errorf("%s: %s is not CIDv1(raw, blake3(data))", r.URL, got.Hash)
		}
		n++
	}
	if n < 3 {
		t.Fatalf("replayed %d adds, want at least 3", n)
	}
}

func TestAddReplyIsOneNDJSONLineLikeKubos(t *testing.T) {
	s := kubotest.New(t)
	resp := postAdd(t, s, ourAdd, []byte("hello"))
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	want := `{"Name":"upload","Hash":"bafkr4ihkr4ld3m4gqkjf4reryxsy2s5tkbxprqkow6fin2iiyvreuzzab4","Size":"5"}` + "\n"
	if string(body) != want {
		t.Errorf("body %q, want %q", body, want)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q", ct)
	}
	if resp.Header.Get("X-Chunked-Output") != "1" {
		t.Errorf("no X-Chunked-Output: %v", resp.Header)
	}
}

func TestAddOfAtMostOneChunkIsARawBlake3Leaf(t *testing.T) {
	s := kubotest.New(t)
	for _, n := range []int{0, 1, 1000, 1048576} {
		data := pattern(n)
		got, _ := add(t, s, ourAdd, data)
		want := blake3CID(multicodec.Raw, data)
		if got.Hash != want.String() || got.Size != fmt.Sprint(n) {
			t.Errorf("%d bytes: got %+v, want %s", n, got, want)
		}
		if stored, ok := s.Get(want); !ok || !bytes.Equal(stored, data) {
			t.Errorf("%d bytes: block not stored under its CID", n)
		}
	}
}

// checkFileRoot decodes a dag-pb UnixFS file root with boxo and checks it links raw blake3 leaves
// of the given sizes, in order, over data.
func checkFileRoot(t *testing.T, s *kubotest.Server, rootStr string, data []byte, leafSizes []int) {
	t.Helper()
	root, err := cid.Decode(rootStr)
	if err != nil {
		t.Fatal(err)
	}
	if root.Version() != 1 || root.Type() != cid.DagProtobuf || root.Prefix().MhType != multihash.BLAKE3 {
		t.Fatalf("root %s: want CIDv1 dag-pb blake3, got prefix %+v", root, root.Prefix())
	}
	rootBytes, ok := s.Get(root)
	if !ok {
		t.Fatalf("root %s not stored", root)
	}
	if blake3CID(multicodec.DagPb, rootBytes) != root {
		t.Fatalf("root %s is not blake3 of its bytes", root)
	}
	nd, err := merkledag.DecodeProtobuf(rootBytes)
	if err != nil {
		t.Fatal(err)
	}
	fsn, err := unixfs.FSNodeFromBytes(nd.Data())
	if err != nil {
		t.Fatal(err)
	}
	if fsn.Type() != unixfs.TFile || fsn.FileSize() != uint64(len(data)) {
		t.Errorf("UnixFS node: type %v, size %d; want File, %d", fsn.Type(), fsn.FileSize(), len(data))
	}
	links := nd.Links()
	if len(links) != len(leafSizes) || fsn.NumChildren() != len(leafSizes) {
		t.Fatalf("%d links, %d block sizes; want %d", len(links), fsn.NumChildren(), len(leafSizes))
	}
	off := 0
	for i, n := range leafSizes {
		slice := data[off : off+n]
		off += n
		if want := blake3CID(multicodec.Raw, slice); links[i].Cid != want {
			t.Errorf("leaf %d: %s, want CIDv1(raw, blake3(slice)) %s", i, links[i].Cid, want)
		}
		if links[i].Size != uint64(n) || fsn.BlockSize(i) != uint64(n) {
			t.Errorf("leaf %d: link size %d, block size %d, want %d", i, links[i].Size, fsn.BlockSize(i), n)
		}
		if got, ok := s.Get(links[i].Cid); !ok || !bytes.Equal(got, slice) {
			t.Errorf("leaf %d not stored", i)
		}
	}
}

func TestAddOfOneMiBPlusOneIsADagPBRootOverTwoLeaves(t *testing.T) {
	s := kubotest.New(t)
	data := pattern(1048577)
	got, _ := add(t, s, ourAdd, data)
	checkFileRoot(t, s, got.Hash, data, []int{1048576, 1})
}

func TestAddOf3000000BytesIsADagPBRootOverThreeRawLeaves(t *testing.T) {
	s := kubotest.New(t)
	data := pattern(3_000_000)
	got, _ := add(t, s, ourAdd, data)
	checkFileRoot(t, s, got.Hash, data, []int{1048576, 1048576, 902848})
	root, _ := cid.Decode(got.Hash)
	rootBytes, _ := s.Get(root)
	// Kubo's Size is the cumulative DAG size: the root block plus its leaves.
	if want := fmt.Sprint(len(rootBytes) + 3_000_000); got.Size != want {
		t.Errorf("Size %s, want %s", got.Size, want)
	}
}

func TestAddHonoursKubosCIDRulesForSHA256(t *testing.T) {
	s := kubotest.New(t)
	// sha2-256 alone keeps Kubo's default CIDv0 and a dag-pb leaf; cid-version=1 gives a raw leaf.
	v0, _ := add(t, s, "hash=sha2-256", []byte("hello"))
	c0, _ := cid.Decode(v0.Hash)
	if c0.Version() != 0 || !strings.HasPrefix(v0.Hash, "Qm") {
		t.Errorf("sha2-256: %s, want a CIDv0", v0.Hash)
	}
	v1, _ := add(t, s, "hash=sha2-256&cid-version=1", []byte("hello"))
	sum, _ := multihash.Sum([]byte("hello"), multihash.SHA2_256, -1)
	if want := cid.NewCidV1(cid.Raw, sum); v1.Hash != want.String() {
		t.Errorf("sha2-256 cid-version=1: %s, want %s", v1.Hash, want)
	}
	if _, ok := s.Get(c0); !ok {
		t.Error("CIDv0 block not stored")
	}
}

func TestAddPinsTheRootOnlyWhenAsked(t *testing.T) {
	s := kubotest.New(t)
	a, _ := add(t, s, ourAdd, []byte("unpinned"))
	b, _ := add(t, s, "hash=blake3&chunker=size-1048576&pin=true", []byte("pinned"))
	ca, _ := cid.Decode(a.Hash)
	cb, _ := cid.Decode(b.Hash)
	if s.Pinned(ca) != "" || s.Pinned(cb) != "recursive" {
		t.Errorf("pins: %q %q", s.Pinned(ca), s.Pinned(cb))
	}
	// Kubo's default for pin is true.
	c, _ := add(t, s, "hash=blake3", []byte("default"))
	if cc, _ := cid.Decode(c.Hash); s.Pinned(cc) != "recursive" {
		t.Error("add without pin= did not pin")
	}
}

func TestAddRejectsBadOptionsAsKuboDoes(t *testing.T) {
	s := kubotest.New(t)
	for _, tc := range []struct {
		query, message string
		status         int
	}{
		{"hash=blake3&chunker=size-0", "chunker size must be greater than 0", 500},
		{"hash=blake3&chunker=size-2096897", "chunker parameters may not exceed the maximum chunk size of 2096896", 500},
		{"hash=blake3&chunker=fixed-10", "unrecognized chunker option: fixed-10", 500},
		{"hash=blake3&chunker=rabin-10-20-30", "rabin min must be greater than 16", 500},
		{"hash=blake3&chunker=size-abc", `strconv.Atoi: parsing "abc": invalid syntax`, 500},
		{"hash=nope", "unrecognized hash function: nope", 500},
		{"hash=blake3&cid-version=0", "CIDv0 only supports sha2-256", 500},
		{"hash=blake3&pin=maybe", `could not convert value "maybe" to type "bool" (for option "-pin")`, 400},
	} {
		resp := postAdd(t, s, tc.query, []byte("data"))
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.status {
			t.Errorf("%s: status %d, want %d (%s)", tc.query, resp.StatusCode, tc.status, body)
			continue
		}
		if tc.status == 400 {
			if !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") || strings.TrimSpace(string(body)) != tc.message {
				t.Errorf("%s: %s %q", tc.query, resp.Header.Get("Content-Type"), body)
			}
			continue
		}
		var e struct {
			Message string
			Code    int
			Type    string
		}
		if err := json.Unmarshal(body, &e); err != nil || e.Message != tc.message || e.Code != 0 || e.Type != "error" {
			t.Errorf("%s: error body %s", tc.query, body)
		}
	}
	for _, ok := range []string{"size-2096896", "rabin", "rabin-16-32-64", "buzhash", "size-1"} {
		if got, _ := add(t, s, "hash=blake3&chunker="+ok, []byte("x")); got.Hash != blake3CID(multicodec.Raw, []byte("x")).String() {
			t.Errorf("chunker %s: %s", ok, got.Hash)
		}
	}
}

func TestRPCFrontDoorFollowsKubo(t *testing.T) {
	s := kubotest.New(t)
	if code, h, body := rpc(t, s, http.MethodGet, "/api/v0/add"); code != 405 || h.Get("Allow") != "OPTIONS, POST" || string(body) != "405 - Method Not Allowed\n" {
		t.Errorf("GET: %d %v %q", code, h, body)
	}
	req, _ := http.NewRequest(http.MethodPost, s.RPCURL()+"/api/v0/version", nil)
	req.Header.Set("Origin", "http://example.com")
	if code, _, body := do(t, req); code != 403 || string(body) != "403 - Forbidden\n" {
		t.Errorf("Origin: %d %q", code, body)
	}
	if code, _, body := rpc(t, s, http.MethodPost, "/api/v0/block/put"); code != 404 || string(body) != "404 page not found\n" {
		t.Errorf("unknown command: %d %q", code, body)
	}
	code, _, body := rpc(t, s, http.MethodPost, "/api/v0/version")
	var v struct{ Version string }
	if code != 200 || json.Unmarshal(body, &v) != nil || v.Version != kubotest.KuboVersion {
		t.Errorf("version: %d %s", code, body)
	}
	if code, _, body := rpc(t, s, http.MethodPost, "/api/v0/add?hash=blake3"); code != 400 || string(body) != "file argument 'path' is required\n" {
		t.Errorf("add without a file: %d %q", code, body)
	}
}

func TestGatewayServesExactlyWhatWasAdded(t *testing.T) {
	s := kubotest.New(t)
	for _, n := range []int{5, 1048576, 1048577, 3_000_000} {
		data := pattern(n)
		got, _ := add(t, s, ourAdd, data)
		code, h, body := gw(t, s, "/ipfs/"+got.Hash, "Accept", "*/*")
		if code != 200 || !bytes.Equal(body, data) {
			t.Errorf("%d bytes: status %d, %d bytes back, equal %v", n, code, len(body), bytes.Equal(body, data))
		}
		if h.Get("Content-Length") != fmt.Sprint(n) {
			t.Errorf("%d bytes: Content-Length %q", n, h.Get("Content-Length"))
		}
		req, _ := http.NewRequest(http.MethodHead, s.GatewayURL()+"/ipfs/"+got.Hash, nil)
		if code, h, body := do(t, req); code != 200 || len(body) != 0 || h.Get("Content-Length") != fmt.Sprint(n) {
			t.Errorf("%d bytes HEAD: %d Content-Length %q", n, code, h.Get("Content-Length"))
		}
	}
}

func TestGatewayServesAPlantedDagCBORNodeByteExact(t *testing.T) {
	s := kubotest.New(t)
	empty := append([]byte{0x99, 0x01, 0x00}, bytes.Repeat([]byte{0xa0}, 256)...)
	id := blake3CID(multicodec.DagCbor, empty)
	if id.String() != "bafyr4igb3js3dqlnsvmbi533lhghfet3l4r35vbi7mlrvxjb6f3n5wkc3m" {
		t.Fatalf("empty node CID %s", id)
	}
	b, _ := blocks.NewBlockWithCid(empty, id)
	s.Put(b)
	if !s.Has(id) {
		t.Fatal("Has after Put")
	}
	for _, accept := range []string{"*/*", "application/vnd.ipld.raw"} {
		if code, _, body := gw(t, s, "/ipfs/"+id.String(), "Accept", accept); code != 200 || !bytes.Equal(body, empty) {
			t.Errorf("Accept %s: %d, %d bytes", accept, code, len(body))
		}
	}
}

func TestAPlantedCorruptBlockIsServedAsStored(t *testing.T) {
	s := kubotest.New(t)
	id := blake3CID(multicodec.Raw, []byte("real bytes"))
	s.PutRaw(id, []byte("fake bytes"))
	for _, path := range []string{"/ipfs/" + id.String(), "/ipfs/" + id.String() + "?format=raw"} {
		if code, _, body := gw(t, s, path); code != 200 || string(body) != "fake bytes" {
			t.Errorf("%s: %d %q", path, code, body)
		}
	}
	s.Delete(id)
	if s.Has(id) {
		t.Error("Has after Delete")
	}
	if code, _, _ := gw(t, s, "/ipfs/"+id.String()); code != http.StatusNotFound {
		t.Errorf("deleted block: %d", code)
	}
}

func TestGatewayFormatRawReturnsOneBlock(t *testing.T) {
	s := kubotest.New(t)
	small := []byte("a raw leaf")
	a, _ := add(t, s, ourAdd, small)
	for _, req := range [][]string{{"/ipfs/" + a.Hash + "?format=raw"}, {"/ipfs/" + a.Hash, "Accept", "application/vnd.ipld.raw"}} {
		code, h, body := gw(t, s, req[0], req[1:]...)
		if code != 200 || !bytes.Equal(body, small) || h.Get("Content-Type") != "application/vnd.ipld.raw" {
			t.Errorf("%v: %d %q %q", req, code, h.Get("Content-Type"), body)
		}
	}
	big, _ := add(t, s, ourAdd, pattern(3_000_000))
	root, _ := cid.Decode(big.Hash)
	rootBytes, _ := s.Get(root)
	if code, _, body := gw(t, s, "/ipfs/"+big.Hash+"?format=raw"); code != 200 || !bytes.Equal(body, rootBytes) {
		t.Errorf("dag-pb ?format=raw: %d, %d bytes, want the %d-byte root block", code, len(body), len(rootBytes))
	}
}

func TestGatewayFormatCarHoldsTheWholeDAG(t *testing.T) {
	s := kubotest.New(t)
	big, _ := add(t, s, ourAdd, pattern(3_000_000))
	code, h, body := gw(t, s, "/ipfs/"+big.Hash+"?format=car")
	if code != 200 || !strings.HasPrefix(h.Get("Content-Type"), "application/vnd.ipld.car") {
		t.Fatalf("%d %q", code, h.Get("Content-Type"))
	}
	br, err := carv2.NewBlockReader(bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if len(br.Roots) != 1 || br.Roots[0].String() != big.Hash {
		t.Errorf("roots %v", br.Roots)
	}
	n := 0
	for {
		b, err := br.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if want, _ := b.Cid().Prefix().Sum(b.RawData()); !want.Equals(b.Cid()) {
			t.Errorf("block %s does not hash to its CID", b.Cid())
		}
		n++
	}
	if n != 4 {
		t.Errorf("%d blocks, want root + 3 leaves", n)
	}
}

func TestGatewayRangeRequestsGivePartialContent(t *testing.T) {
	s := kubotest.New(t)
	small := []byte("hello world!")
	a, _ := add(t, s, ourAdd, small)
	big := pattern(3_000_000)
	b, _ := add(t, s, ourAdd, big)
	for _, tc := range []struct {
		hash, rng string
		data      []byte
		from, to  int // want data[from:to]
	}{
		{a.Hash, "bytes=2-4", small, 2, 5},
		{a.Hash, "bytes=7-", small, 7, 12},
		{a.Hash, "bytes=-4", small, 8, 12},
		{b.Hash, "bytes=1048570-1048581", big, 1048570, 1048582}, // across the first leaf boundary
		{b.Hash, "bytes=2999990-", big, 2999990, 3_000_000},
		{b.Hash, "bytes=-10", big, 2999990, 3_000_000},
	} {
		code, h, body := gw(t, s, "/ipfs/"+tc.hash, "Range", tc.rng)
		if code != http.StatusPartialContent || !bytes.Equal(body, tc.data[tc.from:tc.to]) {
			t.Errorf("%s of %d bytes: %d, %d bytes", tc.rng, len(tc.data), code, len(body))
		}
		if want := fmt.Sprintf("bytes %d-%d/%d", tc.from, tc.to-1, len(tc.data)); h.Get("Content-Range") != want {
			t.Errorf("%s: Content-Range %q, want %q", tc.rng, h.Get("Content-Range"), want)
		}
	}
}

func TestGatewayAnswersAMissingBlockWith404AtOnce(t *testing.T) {
	s := kubotest.New(t)
	missing := blake3CID(multicodec.Raw, []byte("never added"))
	start := time.Now()
	code, h, body := gw(t, s, "/ipfs/"+missing.String())
	if code != http.StatusNotFound || time.Since(start) > 2*time.Second {
		t.Errorf("missing block: %d after %v: %q", code, time.Since(start), body)
	}
	if !strings.HasPrefix(h.Get("Content-Type"), "text/plain") {
		t.Errorf("Content-Type %q", h.Get("Content-Type"))
	}
	if code, _, _ := gw(t, s, "/ipfs/not-a-cid"); code != http.StatusBadRequest {
		t.Errorf("bad CID: %d", code)
	}
}

func TestOnlineGatewayTimesOutOnAMissingBlockWith504(t *testing.T) {
	s := kubotest.New(t, kubotest.WithOnline(300*time.Millisecond))
	missing := blake3CID(multicodec.Raw, []byte("nobody has this"))
	start := time.Now()
	code, _, _ := gw(t, s, "/ipfs/"+missing.String())
	if code != http.StatusGatewayTimeout || time.Since(start) < 300*time.Millisecond {
		t.Errorf("%d after %v, want 504 after the retrieval timeout", code, time.Since(start))
	}
}

type pinList struct {
	Keys map[string]struct{ Type, Name string }
}

func pinLs(t *testing.T, s *kubotest.Server, query string) (pinList, string) {
	t.Helper()
	code, _, body := rpc(t, s, http.MethodPost, "/api/v0/pin/ls"+query)
	var ls pinList
	if err := json.Unmarshal(body, &ls); code != 200 || err != nil {
		t.Fatalf("pin/ls%s: %d %s", query, code, body)
	}
	return ls, string(body)
}

func TestPinAddLsUpdateRmRoundTrip(t *testing.T) {
	s := kubotest.New(t)
	old, _ := add(t, s, ourAdd, pattern(1048577)) // a root and two leaves
	next, _ := add(t, s, ourAdd, []byte("next"))

	code, _, body := rpc(t, s, http.MethodPost, "/api/v0/pin/ls?arg="+old.Hash)
	if code != 500 || !strings.Contains(string(body), `"Message":"path '/ipfs/`+old.Hash+`' is not pinned"`) {
		t.Errorf("ls of an unpinned CID: %d %s", code, body)
	}
	if code, _, body := rpc(t, s, http.MethodPost, "/api/v0/pin/ls"); code != 200 || string(body) != "{}\n" {
		t.Errorf("ls with no pins: %d %q", code, body)
	}

	code, _, body = rpc(t, s, http.MethodPost, "/api/v0/pin/add?arg="+old.Hash)
	if code != 200 || string(body) != `{"Pins":["`+old.Hash+`"]}`+"\n" {
		t.Errorf("pin add: %d %s", code, body)
	}
	if ls, body := pinLs(t, s, "?type=recursive"); len(ls.Keys) != 1 || ls.Keys[old.Hash].Type != "recursive" {
		t.Errorf("ls recursive: %s", body)
	}
	if _, _, body := rpc(t, s, http.MethodPost, "/api/v0/pin/ls?type=recursive&stream=true"); string(body) != `{"Cid":"`+old.Hash+`","Type":"recursive"}`+"\n" {
		t.Errorf("streamed ls: %q", body)
	}
	leaf := blake3CID(multicodec.Raw, pattern(1048577)[1048576:])
	if ls, body := pinLs(t, s, "?type=indirect"); len(ls.Keys) != 2 || ls.Keys[leaf.String()].Type != "indirect" {
		t.Errorf("ls indirect: want the two leaves: %s", body)
	}
	if ls, body := pinLs(t, s, ""); len(ls.Keys) != 3 || ls.Keys[leaf.String()].Type != "indirect" {
		t.Errorf("ls all: want the root and two indirect leaves: %s", body)
	}
	if ls, body := pinLs(t, s, "?arg="+leaf.String()); ls.Keys[leaf.String()].Type != "indirect through "+old.Hash {
		t.Errorf("ls of an indirect pin: %s", body)
	}

	code, _, body = rpc(t, s, http.MethodPost, "/api/v0/pin/update?arg="+old.Hash+"&arg="+next.Hash)
	if code != 200 || string(body) != `{"Pins":["`+old.Hash+`","`+next.Hash+`"]}`+"\n" {
		t.Errorf("pin update: %d %s", code, body)
	}
	if ls, body := pinLs(t, s, "?type=recursive"); len(ls.Keys) != 1 || ls.Keys[next.Hash].Type != "recursive" {
		t.Errorf("after update the old pin is gone: %s", body)
	}

	code, _, body = rpc(t, s, http.MethodPost, "/api/v0/pin/rm?arg="+next.Hash)
	if code != 200 || string(body) != `{"Pins":["`+next.Hash+`"]}`+"\n" {
		t.Errorf("pin rm: %d %s", code, body)
	}
	code, _, body = rpc(t, s, http.MethodPost, "/api/v0/pin/rm?arg="+next.Hash)
	if code != 500 || !strings.Contains(string(body), "not pinned or pinned indirectly") {
		t.Errorf("rm of an unpinned CID: %d %s", code, body)
	}
	if code, _, body := rpc(t, s, http.MethodPost, "/api/v0/pin/add"); code != 400 || string(body) != "argument \"ipfs-path\" is required\n" {
		t.Errorf("pin add without arg: %d %q", code, body)
	}
}

func TestPinningAnAbsentCIDIsAnErrorAtOnce(t *testing.T) {
	s := kubotest.New(t)
	missing := blake3CID(multicodec.Raw, []byte("absent"))
	start := time.Now()
	code, h, body := rpc(t, s, http.MethodPost, "/api/v0/pin/add?arg="+missing.String())
	var e struct {
		Message string
		Code    int
		Type    string
	}
	if code != 500 || h.Get("Content-Type") != "application/json" || json.Unmarshal(body, &e) != nil ||
		e.Type != "error" || e.Code != 0 || !strings.HasPrefix(e.Message, "pin: ") || !strings.Contains(e.Message, missing.String()) {
		t.Errorf("%d %q %s", code, h.Get("Content-Type"), body)
	}
	if time.Since(start) > 2*time.Second {
		t.Errorf("took %v", time.Since(start))
	}
	t.Logf("Kubo-like message: %s", e.Message)
}

func TestAuthIsRequiredWhenConfigured(t *testing.T) {
	s := kubotest.New(t, kubotest.WithBasicAuth("alice", "secret"), kubotest.WithBearerToken("tok"))
	a, _ := http.NewRequest(http.MethodPost, s.RPCURL()+"/api/v0/version", nil)
	if code, _, body := do(t, a); code != 403 || !strings.HasPrefix(string(body), "Kubo RPC Access Denied") {
		t.Errorf("RPC without credentials: %d %q", code, body)
	}
	a, _ = http.NewRequest(http.MethodPost, s.RPCURL()+"/api/v0/version", nil)
	a.SetBasicAuth("alice", "secret")
	if code, _, _ := do(t, a); code != 200 {
		t.Errorf("RPC with basic auth: %d", code)
	}
	g, _ := http.NewRequest(http.MethodGet, s.GatewayURL()+"/ipfs/"+blake3CID(multicodec.Raw, nil).String(), nil)
	if code, h, _ := do(t, g); code != 401 || h.Get("WWW-Authenticate") == "" {
		t.Errorf("gateway without credentials: %d", code)
	}
	g.Header.Set("Authorization", "Bearer tok")
	if code, _, _ := do(t, g); code != 404 {
		t.Errorf("gateway with a bearer token: %d, want the 404 of a missing block", code)
	}
	last, ok := s.LastRequest(kubotest.Gateway)
	if !ok || last.Header.Get("Authorization") != "Bearer tok" || last.Header.Get("Origin") != "" {
		t.Errorf("last gateway request headers: %v", last.Header)
	}
}

func TestCountersAndRequestLog(t *testing.T) {
	s := kubotest.New(t)
	a, _ := add(t, s, ourAdd, []byte("one"))
	add(t, s, ourAdd, []byte("two"))
	gw(t, s, "/ipfs/"+a.Hash, "X-Probe", "yes")
	if s.Requests("/api/v0/add") != 2 || s.Requests("/ipfs/") != 1 || s.Requests("/ipfs/"+a.Hash) != 1 {
		t.Errorf("by path: add %d, ipfs %d", s.Requests("/api/v0/add"), s.Requests("/ipfs/"))
	}
	if s.Total(kubotest.RPC) != 2 || s.Total(kubotest.Gateway) != 1 || s.Total(kubotest.AnyEndpoint) != 3 {
		t.Errorf("totals %d %d", s.Total(kubotest.RPC), s.Total(kubotest.Gateway))
	}
	last, _ := s.LastRequest(kubotest.RPC)
	if last.Query.Get("hash") != "blake3" || !strings.HasPrefix(last.Header.Get("Content-Type"), "multipart/form-data") {
		t.Errorf("last RPC request %+v", last)
	}
	if last, _ := s.LastRequest(kubotest.AnyEndpoint); last.Header.Get("X-Probe") != "yes" || last.Endpoint != kubotest.Gateway {
		t.Errorf("last request %+v", last)
	}
	if len(s.Log()) != 3 {
		t.Errorf("log has %d entries", len(s.Log()))
	}
	s.ResetCounters()
	if s.Total(kubotest.AnyEndpoint) != 0 || s.MaxInFlight() != 0 {
		t.Error("ResetCounters")
	}
}

func TestMaxInFlightCountsConcurrentRequests(t *testing.T) {
	s := kubotest.New(t)
	s.Inject(kubotest.Fault{Path: "/ipfs/", Times: -1, Delay: 300 * time.Millisecond})
	a, _ := add(t, s, ourAdd, []byte("slow"))
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			resp, err := client.Get(s.GatewayURL() + "/ipfs/" + a.Hash)
			if err != nil {
				t.Error(err)
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		})
	}
	wg.Wait()
	if got := s.MaxInFlight(); got != 8 {
		t.Errorf("MaxInFlight %d, want 8", got)
	}
	if s.InFlight() != 0 {
		t.Errorf("InFlight %d after all finished", s.InFlight())
	}
}

func TestFaultStatusAnswersLikeKubo(t *testing.T) {
	s := kubotest.New(t)
	a, _ := add(t, s, ourAdd, []byte("data"))

	s.Inject(kubotest.Fault{Endpoint: kubotest.RPC, Path: "/api/v0/add", Status: 500})
	resp := postAdd(t, s, ourAdd, []byte("x"))
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var e struct {
		Message string
		Code    int
		Type    string
	}
	if resp.StatusCode != 500 || json.Unmarshal(body, &e) != nil || e.Type != "error" {
		t.Errorf("RPC 500: %d %s", resp.StatusCode, body)
	}
	if got, _ := add(t, s, ourAdd, []byte("x")); got.Hash == "" {
		t.Error("the fault applied more than once")
	}

	s.Inject(kubotest.Fault{Endpoint: kubotest.Gateway, Status: 503, Times: 2})
	for i := range 2 {
		if code, h, _ := gw(t, s, "/ipfs/"+a.Hash); code != 503 || h.Get("Retry-After") != "1" {
			t.Errorf("gateway 503 #%d: %d", i, code)
		}
	}
	if code, _, _ := gw(t, s, "/ipfs/"+a.Hash); code != 200 {
		t.Errorf("after two 503s: %d", code)
	}

	for _, status := range []int{502, 504, 429, 404, 400} {
		s.Inject(kubotest.Fault{Endpoint: kubotest.Gateway, Path: "/ipfs/", Status: status})
		if code, _, _ := gw(t, s, "/ipfs/"+a.Hash); code != status {
			t.Errorf("injected %d, got %d", status, code)
		}
	}

	// A fault on the gateway leaves the RPC alone, and -1 lasts until ClearFaults.
	s.Inject(kubotest.Fault{Endpoint: kubotest.Gateway, Status: 502, Times: -1})
	if got, _ := add(t, s, ourAdd, []byte("rpc is fine")); got.Hash == "" {
		t.Error("RPC hit by a gateway fault")
	}
	for range 3 {
		if code, _, _ := gw(t, s, "/ipfs/"+a.Hash); code != 502 {
			t.Errorf("forever fault: %d", code)
		}
	}
	s.ClearFaults()
	if code, _, _ := gw(t, s, "/ipfs/"+a.Hash); code != 200 {
		t.Errorf("after ClearFaults: %d", code)
	}
}

func TestFaultDropClosesTheConnectionWithoutAnswer(t *testing.T) {
	s := kubotest.New(t)
	s.Inject(kubotest.Fault{Path: "/api/v0/add", Drop: true})
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	fw, _ := mw.CreateFormFile("file", "upload")
	_, _ = fw.Write([]byte("dropped"))
	_ = mw.Close()
	resp, err := client.Post(s.RPCURL()+"/api/v0/add?"+ourAdd, mw.FormDataContentType(), &body)
	if err == nil {
		resp.Body.Close()
		t.Fatalf("got a response: %d", resp.StatusCode)
	}
	if s.Requests("/api/v0/add") != 1 {
		t.Errorf("dropped request not counted")
	}
}

func TestFaultDelayHonoursTheClientsDeadline(t *testing.T) {
	s := kubotest.New(t)
	a, _ := add(t, s, ourAdd, []byte("late"))
	s.Inject(kubotest.Fault{Path: "/ipfs/", Delay: 10 * time.Second})
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, s.GatewayURL()+"/ipfs/"+a.Hash, nil)
	start := time.Now()
	_, err := client.Do(req)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("err %v", err)
	}
	// The handler ends with the client: nothing stays in flight for the 10 s.
	deadline := time.Now().Add(2 * time.Second)
	for s.InFlight() != 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if s.InFlight() != 0 || time.Since(start) > 3*time.Second {
		t.Errorf("in flight %d after %v", s.InFlight(), time.Since(start))
	}

	s.Inject(kubotest.Fault{Path: "/ipfs/", Delay: 150 * time.Millisecond})
	start = time.Now()
	if code, _, body := gw(t, s, "/ipfs/"+a.Hash); code != 200 || string(body) != "late" || time.Since(start) < 150*time.Millisecond {
		t.Errorf("delayed request: %d %q after %v", code, body, time.Since(start))
	}
}

func TestFaultCorruptFlipsOneByte(t *testing.T) {
	s := kubotest.New(t)
	data := pattern(1000)
	a, _ := add(t, s, ourAdd, data)
	s.Inject(kubotest.Fault{Path: "/ipfs/", Corrupt: true})
	code, _, body := gw(t, s, "/ipfs/"+a.Hash+"?format=raw")
	if code != 200 || len(body) != len(data) {
		t.Fatalf("%d, %d bytes", code, len(body))
	}
	diff := 0
	for i := range body {
		if body[i] != data[i] {
			diff++
		}
	}
	if diff != 1 {
		t.Errorf("%d bytes differ, want 1", diff)
	}
}

func TestFaultTruncateCutsTheBody(t *testing.T) {
	s := kubotest.New(t)
	a, _ := add(t, s, ourAdd, pattern(1000))
	s.Inject(kubotest.Fault{Path: "/ipfs/", Truncate: true})
	resp, err := client.Get(s.GatewayURL() + "/ipfs/" + a.Hash)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if !errors.Is(err, io.ErrUnexpectedEOF) || len(b) != 500 {
		t.Errorf("read %d bytes, err %v", len(b), err)
	}
}

func TestStopRefusesConnectionsAndRestartBringsTheNodeBack(t *testing.T) {
	s := kubotest.New(t)
	a, _ := add(t, s, ourAdd, []byte("survives"))
	s.Stop()
	// A new connection is refused. (A client that reuses a kept-alive connection sees it closed
	// instead: EOF or a reset.)
	fresh := &http.Client{Transport: &http.Transport{}, Timeout: 5 * time.Second}
	if _, err := fresh.Get(s.GatewayURL() + "/ipfs/" + a.Hash); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("gateway after Stop: %v", err)
	}
	if _, err := fresh.Post(s.RPCURL()+"/api/v0/version", "", nil); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("RPC after Stop: %v", err)
	}
	if err := s.Restart(); err != nil {
		t.Fatal(err)
	}
	resp, err := fresh.Get(s.GatewayURL() + "/ipfs/" + a.Hash)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != "survives" {
		t.Errorf("after Restart: %d %q", resp.StatusCode, body)
	}
}

func TestConcurrentAddsAndReads(t *testing.T) {
	s := kubotest.New(t)
	var wg sync.WaitGroup
	for i := range 16 {
		wg.Go(func() {
			data := []byte(fmt.Sprintf("value %d", i))
			got, _, err := tryAdd(s, ourAdd, data)
			if err != nil || got.Hash != blake3CID(multicodec.Raw, data).String() {
				t.Errorf("value %d: %s %v", i, got.Hash, err)
				return
			}
			resp, err := client.Get(s.GatewayURL() + "/ipfs/" + got.Hash)
			if err != nil {
				t.Error(err)
				return
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || !bytes.Equal(body, data) {
				t.Errorf("value %d: read %d %q", i, resp.StatusCode, body)
			}
		})
	}
	wg.Wait()
}

func TestServersSharingABlockstoreServeTheSameBlocks(t *testing.T) {
	a := kubotest.New(t)
	b := kubotest.New(t, kubotest.WithBlockstore(a.Blockstore()))
	r, _ := add(t, a, ourAdd, []byte("shared"))
	if code, _, body := gw(t, b, "/ipfs/"+r.Hash); code != 200 || string(body) != "shared" {
		t.Errorf("second gateway: %d %q", code, body)
	}
	// Faults, accounting and Stop stay per server.
	b.Inject(kubotest.Fault{Path: "/ipfs/", Status: 404, Times: -1})
	if code, _, _ := gw(t, a, "/ipfs/"+r.Hash); code != 200 || a.Total(kubotest.Gateway) != 1 {
		t.Errorf("first gateway: %d after %d requests", code, a.Total(kubotest.Gateway))
	}
	b.Stop()
	if code, _, _ := gw(t, a, "/ipfs/"+r.Hash); code != 200 {
		t.Errorf("first gateway after the second stopped: %d", code)
	}
}

func TestRequestLogKeepsHostRawQueryAndBodiesWhenAsked(t *testing.T) {
	s := kubotest.New(t, kubotest.WithRequestBodies())
	add(t, s, ourAdd+"&cid-version=1", []byte("payload"))
	last, _ := s.LastRequest(kubotest.RPC)
	if last.RawQuery != ourAdd+"&cid-version=1" || last.Host != strings.TrimPrefix(s.RPCURL(), "http://") {
		t.Errorf("raw query %q, host %q", last.RawQuery, last.Host)
	}
	if !bytes.Contains(last.Body, []byte("\r\n\r\npayload\r\n--")) {
		t.Errorf("body %q lacks the multipart payload", last.Body)
	}
	plain := kubotest.New(t)
	add(t, plain, ourAdd, []byte("payload"))
	if last, _ := plain.LastRequest(kubotest.RPC); last.Body != nil {
		t.Errorf("body kept without WithRequestBodies: %q", last.Body)
	}
}

func TestFaultCannedAnswerIsSentAsGiven(t *testing.T) {
	s := kubotest.New(t)
	a, _ := add(t, s, ourAdd, []byte("hello"))
	s.Inject(kubotest.Fault{Path: "/ipfs/", Status: 206, Header: http.Header{"Content-Range": {"bytes 0-1/5"}}, Body: []byte("he")})
	if code, h, body := gw(t, s, "/ipfs/"+a.Hash, "Range", "bytes=1-2"); code != 206 || h.Get("Content-Range") != "bytes 0-1/5" || string(body) != "he" {
		t.Errorf("canned 206: %d %v %q", code, h, body)
	}
	s.Inject(kubotest.Fault{Path: "/ipfs/", Status: 204, Header: http.Header{}})
	if code, _, body := gw(t, s, "/ipfs/"+a.Hash); code != 204 || len(body) != 0 {
		t.Errorf("canned 204: %d %q", code, body)
	}
}

func TestFaultIgnoreRangeAnswersTheWholeBody(t *testing.T) {
	s := kubotest.New(t)
	a, _ := add(t, s, ourAdd, []byte("hello"))
	s.Inject(kubotest.Fault{Path: "/ipfs/", IgnoreRange: true})
	if code, _, body := gw(t, s, "/ipfs/"+a.Hash, "Range", "bytes=1-2"); code != 200 || string(body) != "hello" {
		t.Errorf("range ignored: %d %q", code, body)
	}
	if code, _, body := gw(t, s, "/ipfs/"+a.Hash, "Range", "bytes=1-2"); code != 206 || string(body) != "el" {
		t.Errorf("next request: %d %q", code, body)
	}
}

func TestFaultRedirectSendsTheClientElsewhere(t *testing.T) {
	a := kubotest.New(t)
	b := kubotest.New(t, kubotest.WithBlockstore(a.Blockstore()))
	r, _ := add(t, a, ourAdd, []byte("moved"))
	a.Inject(kubotest.Fault{Path: "/ipfs/", Redirect: b.GatewayURL()})
	if code, _, body := gw(t, a, "/ipfs/"+r.Hash+"?format=raw"); code != 200 || string(body) != "moved" {
		t.Errorf("redirected: %d %q", code, body)
	}
	if last, ok := b.LastRequest(kubotest.Gateway); !ok || last.Path != "/ipfs/"+r.Hash || last.RawQuery != "format=raw" {
		t.Errorf("second gateway saw %+v", last)
	}
}

func TestFaultChanceAppliesToAShareOfRequests(t *testing.T) {
	s := kubotest.New(t)
	a, _ := add(t, s, ourAdd, []byte("sometimes"))
	s.Inject(kubotest.Fault{Path: "/ipfs/", Status: 404, Chance: 0.5, Times: -1})
	failed := 0
	for range 200 {
		if code, _, _ := gw(t, s, "/ipfs/"+a.Hash); code == 404 {
			failed++
		}
	}
	// Binomial(200, 0.5): outside [50, 150] has a probability below 1e-12.
	if failed < 50 || failed > 150 {
		t.Errorf("%d of 200 requests failed, want about 100", failed)
	}
}
