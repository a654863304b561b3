package kubotest_test

import (
	"bytes"
	"context"
	"mime/multipart"
	"net/http"
	"strings"
	"testing"

	"github.com/hamt-go/hamt/internal/kubotest"
	"github.com/ipfs/go-cid"
	carv2 "github.com/ipld/go-car/v2"
	"github.com/ipld/go-car/v2/storage"
	"github.com/multiformats/go-multicodec"
)

// dagImport posts one CAR holding blocks (each under the CID given, right or wrong) with roots.
func dagImport(t *testing.T, s *kubotest.Server, query string, roots []cid.Cid, blocks map[cid.Cid][]byte) (int, []byte) {
	t.Helper()
	var car bytes.Buffer
	w, err := storage.NewWritable(&car, roots, carv2.WriteAsCarV1(true))
	if err != nil {
		t.Fatal(err)
	}
	for id, data := range blocks {
		if err := w.Put(context.Background(), id.KeyString(), data); err != nil {
			t.Fatal(err)
		}
	}
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	part, _ := mw.CreateFormFile("file", "x.car")
	part.Write(car.Bytes())
	mw.Close()
	req, _ := http.NewRequest(http.MethodPost, s.RPCURL()+"/api/v0/dag/import?"+query, &body)
	req.Header.Set("Content-Type", mw.FormDataContentType())
	code, _, b := do(t, req)
	return code, b
}

// TestDagImportAnswersAsKubo: the answers Kubo v0.42 gives (checked against a real daemon): a
// line per root pinned, the stats line when asked, nothing pinned with pin-roots=false, and a 500
// "import failed at block" for a block that does not hash to its CID or is over 2 MiB.
func TestDagImportAnswersAsKubo(t *testing.T) {
	s := kubotest.New(t)
	data := []byte("hello")
	id := blake3CID(multicodec.Raw, data)
	code, b := dagImport(t, s, "stats=true", []cid.Cid{id}, map[cid.Cid][]byte{id: data})
	want := `{"Root":{"Cid":{"/":"` + id.String() + `"},"PinErrorMsg":""}}` + "\n" + `{"Stats":{"BlockCount":1,"BlockBytesCount":5}}` + "\n"
	if code != 200 || string(b) != want || s.Pinned(id) != "recursive" {
		t.Errorf("import with pinning: %d %s, pinned %q; want 200 %s", code, b, s.Pinned(id), want)
	}
	other := []byte("world")
	oid := blake3CID(multicodec.Raw, other)
	code, b = dagImport(t, s, "pin-roots=false&stats=true", []cid.Cid{oid}, map[cid.Cid][]byte{oid: other})
	if code != 200 || string(b) != `{"Stats":{"BlockCount":1,"BlockBytesCount":5}}`+"\n" || s.Pinned(oid) != "" || !s.Has(oid) {
		t.Errorf("import without pinning: %d %s, pinned %q, stored %v", code, b, s.Pinned(oid), s.Has(oid))
	}
	code, b = dagImport(t, s, "", []cid.Cid{oid}, map[cid.Cid][]byte{blake3CID(multicodec.Raw, []byte("x")): []byte("y")})
	if code != 500 || !strings.Contains(string(b), "import failed: mismatch in content integrity") {
		t.Errorf("a block that is not its CID's: %d %s", code, b)
	}
	big := bytes.Repeat([]byte{1}, 2<<20+1)
	code, b = dagImport(t, s, "", []cid.Cid{oid}, map[cid.Cid][]byte{blake3CID(multicodec.Raw, big): big})
	if code != 500 || !strings.Contains(string(b), "over 2MiB") {
		t.Errorf("a block over 2 MiB: %d %s", code, b)
	}
	if code, _ := dagImport(t, s, "allow-big-block=true&pin-roots=false", []cid.Cid{oid}, map[cid.Cid][]byte{blake3CID(multicodec.Raw, big): big}); code != 200 {
		t.Errorf("a block over 2 MiB with allow-big-block: %d", code)
	}
}
