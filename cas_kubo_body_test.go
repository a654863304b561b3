package hamt_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/hamt-go/hamt"
	"github.com/multiformats/go-multicodec"
)

// TestKuboGatewayClaimingAHugeBodyIsAnError is a regression test: readBody grew its buffer to the
// answer's Content-Length before reading, so a gateway (a proxy, a hostile one) that answered a
// block with "Content-Length: 900000000000" killed the process with a fatal out of memory, which
// no recover catches. Now the short body is an error.
func TestKuboGatewayClaimingAHugeBodyIsAnError(t *testing.T) {
	ctx := context.Background()
	gw := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "900000000000")
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write([]byte("abc"))
	}))
	defer gw.Close()
	k, err := hamt.NewKuboCAS(hamt.WithKuboGateway(gw.URL), hamt.WithKuboRetries(0, 1, 1))
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()
	id := blake3CID(multicodec.Raw, []byte("abc"))
	if b, err := k.Load(ctx, id); err == nil {
		t.Errorf("Load: %q from a body cut short of its Content-Length", b)
	}
}
