package hamt_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/hamt-go/hamt"
	"github.com/hamt-go/hamt/internal/kubotest"
	"github.com/hamt-go/hamt/internal/testdag"
	"github.com/ipfs/go-cid"
	"github.com/multiformats/go-multicodec"
)

// plainCAS is the smallest CAS a user might write: blocks in a Go map under CIDv1 blake3, no
// optional interface at all.
type plainCAS struct {
	mu     sync.Mutex
	blocks map[cid.Cid][]byte
}

func (p *plainCAS) Save(_ context.Context, data []byte, codec multicodec.Code) (cid.Cid, error) {
	id := blake3CID(codec, data)
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.blocks == nil {
		p.blocks = map[cid.Cid][]byte{}
	}
	p.blocks[id] = bytes.Clone(data)
	return id, nil
}

func (p *plainCAS) Load(_ context.Context, id cid.Cid) ([]byte, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if b, ok := p.blocks[id]; ok {
		return bytes.Clone(b), nil
	}
	return nil, hamt.ErrNotFound
}

// chunkValues are values around Kubo's chunk: one block, and files of two and three leaves; each
// with the CID boxo's balanced importer (Kubo's add) gives it.
var chunkValues = sync.OnceValue(func() map[string]struct {
	data []byte
	id   cid.Cid
} {
	out := map[string]struct {
		data []byte
		id   cid.Cid
	}{}
	for k, n := range map[string]int{"one-chunk": 1 << 20, "one-chunk-and-a-byte": 1<<20 + 1, "3MB": 3_000_000} {
		data := patterned(n)
		id, _, err := testdag.ImportFile(context.Background(), data, testdag.KuboChunk, testdag.KuboMaxLinks)
		if err != nil {
			panic(err)
		}
		out[k] = struct {
			data []byte
			id   cid.Cid
		}{data, id}
	}
	return out
})

// writeFileSizes writes a map holding chunkValues to cas and returns its root.
func writeFileSizes(t *testing.T, cas hamt.CAS) cid.Cid {
	t.Helper()
	ctx := context.Background()
	m, err := hamt.New(ctx, cas, hamt.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range chunkValues() {
		if err := m.Set(ctx, k, v.data); err != nil {
			t.Fatal(err)
		}
	}
	root, err := m.Flush(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return root
}

// TestRootsAreTheSameInEveryStore: the same map written to a MemoryCAS, a BoltCAS file, Kubo (over
// kubotest, whose add is boxo's) and a plain user-written CAS has one root; each value's CID is
// the one boxo's balanced importer gives (Kubo's add), raw up to one chunk and a dag-pb file
// above; and every store reads every value back.
func TestRootsAreTheSameInEveryStore(t *testing.T) {
	ctx := context.Background()
	bolt, err := hamt.OpenBoltCAS(filepath.Join(t.TempDir(), "store.bolt"))
	if err != nil {
		t.Fatal(err)
	}
	defer bolt.Close()
	srv := kubotest.New(t)
	stores := []struct {
		name string
		cas  hamt.CAS
	}{
		{"memory", hamt.NewMemoryCAS()},
		{"bolt", bolt},
		{"kubo", newKubo(t, srv)},
		{"plain", &plainCAS{}},
	}
	var want cid.Cid
	for _, s := range stores {
		srv.ResetCounters()
		root := writeFileSizes(t, s.cas)
		if s.name == "kubo" {
			if n := srv.Requests("/api/v0/add"); n != len(chunkValues())+1 { // a value, a file, a file, the root node
				t.Errorf("kubo: %d adds for %d values and a node; want one add a value", n, len(chunkValues()))
			}
		}
		if !want.Defined() {
			want = root
		} else if !root.Equals(want) {
			t.Errorf("%s: root %s, memory's %s", s.name, root, want)
		}
		m, err := hamt.Open(ctx, s.cas, hamt.Bytes, root)
		if err != nil {
			t.Fatal(err)
		}
		for k, v := range chunkValues() {
			id, err := m.GetPointer(ctx, k)
			if err != nil {
				t.Fatal(err)
			}
			if !id.Equals(v.id) {
				t.Errorf("%s: %s is %s, boxo's importer gives %s", s.name, k, id, v.id)
			}
			if got, err := m.Get(ctx, k); err != nil || !bytes.Equal(got, v.data) {
				t.Errorf("%s: Get(%s): %d bytes, %v", s.name, k, len(got), err)
			}
		}
	}
}

// TestFileValuesCARRoundTrip: a map with a 3 MB value in a MemoryCAS exports as a CAR with no
// block over one chunk, Inspect counts the value's file bytes, and the CAR imported into a fresh
// BoltCAS file opens to the same root and value.
func TestFileValuesCARRoundTrip(t *testing.T) {
	ctx := context.Background()
	mem := hamt.NewMemoryCAS()
	m, err := hamt.New(ctx, mem, hamt.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	data := patterned(3_000_000)
	if err := m.Set(ctx, "big", data); err != nil {
		t.Fatal(err)
	}
	root, err := m.Flush(ctx)
	if err != nil {
		t.Fatal(err)
	}
	st, err := hamt.Inspect(ctx, mem, root, true)
	if err != nil || st.ValueBytes != int64(len(data)) || st.Values != 1 {
		t.Errorf("Inspect: %d values of %d bytes, %v; want 1 of %d", st.Values, st.ValueBytes, err, len(data))
	}
	var car bytes.Buffer
	n, err := hamt.WriteCAR(ctx, mem, root, &car)
	if err != nil || n != 5 { // the map's node, the file's root and its three leaves
		t.Fatalf("WriteCAR: %d blocks, %v; want 5", n, err)
	}
	bolt, err := hamt.OpenBoltCAS(filepath.Join(t.TempDir(), "fresh.bolt"))
	if err != nil {
		t.Fatal(err)
	}
	defer bolt.Close()
	roots, got, err := hamt.ReadCAR(ctx, bolt, bytes.NewReader(car.Bytes()))
	if err != nil || got != n || len(roots) != 1 || !roots[0].Equals(root) {
		t.Fatalf("ReadCAR: roots %v, %d blocks, %v", roots, got, err)
	}
	for id, b := range carBlocks(t, car.Bytes()) {
		if len(b) > 1<<20 {
			t.Errorf("the CAR holds block %s of %d bytes, over one chunk", id, len(b))
		}
	}
	ro, err := hamt.Open(ctx, bolt, hamt.Bytes, root)
	if err != nil {
		t.Fatal(err)
	}
	if v, err := ro.Get(ctx, "big"); err != nil || !bytes.Equal(v, data) {
		t.Errorf("Get from the imported store: %d bytes, %v", len(v), err)
	}
}

// carBlocks returns the blocks of a CAR, read back through a MemoryCAS.
func carBlocks(t *testing.T, car []byte) map[cid.Cid][]byte {
	t.Helper()
	rec := &recordingPutter{blocks: map[cid.Cid][]byte{}}
	if _, _, err := hamt.ReadCAR(context.Background(), rec, bytes.NewReader(car)); err != nil {
		t.Fatal(err)
	}
	return rec.blocks
}

type recordingPutter struct{ blocks map[cid.Cid][]byte }

func (r *recordingPutter) Put(_ context.Context, id cid.Cid, data []byte) error {
	r.blocks[id] = bytes.Clone(data)
	return nil
}

// TestKuboFilesFollowItsChunker: a KuboCAS with a size-N chunker makes the map cut values at N
// (values up to N stay one block, larger ones are one add, laid out at N as boxo does); with a
// chunker whose leaves vary (rabin) a value goes to Kubo whole and its CID is Kubo's.
func TestKuboFilesFollowItsChunker(t *testing.T) {
	ctx := context.Background()
	srv := kubotest.New(t)
	data := patterned(600_000)
	k := newKubo(t, srv, hamt.WithKuboChunker("size-262144"))
	if k.FileChunkSize() != 262144 {
		t.Fatalf("FileChunkSize: %d", k.FileChunkSize())
	}
	m, err := hamt.New(ctx, k, hamt.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	srv.ResetCounters()
	if err := m.Set(ctx, "v", data); err != nil {
		t.Fatal(err)
	}
	if n := srv.Requests("/api/v0/add"); n != 1 {
		t.Errorf("%d adds for one value", n)
	}
	id, _ := m.GetPointer(ctx, "v")
	if want, _, _ := testdag.ImportFile(ctx, data, 262144, testdag.KuboMaxLinks); !id.Equals(want) {
		t.Errorf("size-262144: %s, boxo's %s", id, want)
	}

	rabin := newKubo(t, srv, hamt.WithKuboChunker("rabin-262144"))
	if rabin.FileChunkSize() != 0 {
		t.Fatalf("rabin FileChunkSize: %d", rabin.FileChunkSize())
	}
	m, err = hamt.New(ctx, rabin, hamt.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Set(ctx, "v", data); err != nil {
		t.Fatal(err)
	}
	if got, err := m.Get(ctx, "v"); err != nil || !bytes.Equal(got, data) {
		t.Errorf("rabin: Get: %d bytes, %v", len(got), err)
	}
}

// TestKuboFileRootCheckedAgainstLayout: a proxy between the map and Kubo that changes the chunker
// (so Kubo makes another file than the one asked for) makes Set fail with ErrCorrupt instead of
// recording a root no other store would give.
func TestKuboFileRootCheckedAgainstLayout(t *testing.T) {
	srv := kubotest.New(t)
	target, _ := url.Parse(srv.RPCURL())
	proxy := &httputil.ReverseProxy{Rewrite: func(r *httputil.ProxyRequest) {
		r.SetURL(target)
		r.Out.URL.RawQuery = strings.Replace(r.Out.URL.RawQuery, "chunker=size-1048576", "chunker=size-262144", 1)
	}}
	ps := httptest.NewServer(proxy)
	defer ps.Close()
	k, err := hamt.NewKuboCAS(hamt.WithKuboRPC(ps.URL), hamt.WithKuboGateway(srv.GatewayURL()))
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()
	m, err := hamt.New(context.Background(), k, hamt.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Set(context.Background(), "small", patterned(1000)); err != nil {
		t.Errorf("a value within both chunks: %v", err)
	}
	for _, n := range []int{1 << 20, 3_000_000} {
		if err := m.Set(context.Background(), "v", patterned(n)); !errors.Is(err, hamt.ErrCorrupt) {
			t.Errorf("a %d-byte value laid out at another chunk: %v, want ErrCorrupt", n, err)
		}
	}
}

// TestKuboRealDaemonRootsMatchLocalStores: against a real Kubo (HAMT_KUBO_RPC and
// HAMT_KUBO_GATEWAY, see TestKuboRealDaemon), the map of TestRootsAreTheSameInEveryStore, and one
// value of 174 MiB and a byte (a two-level file), have the roots a MemoryCAS gives them.
func TestKuboRealDaemonRootsMatchLocalStores(t *testing.T) {
	rpc, gw := os.Getenv("HAMT_KUBO_RPC"), os.Getenv("HAMT_KUBO_GATEWAY")
	if rpc == "" || gw == "" {
		t.Skip("no real daemon: see TestKuboRealDaemon")
	}
	k, err := hamt.NewKuboCAS(hamt.WithKuboRPC(rpc), hamt.WithKuboGateway(gw))
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()
	if got, want := writeFileSizes(t, k), writeFileSizes(t, hamt.NewMemoryCAS()); !got.Equals(want) {
		t.Errorf("Kubo's root %s, memory's %s", got, want)
	}
	ctx := context.Background()
	big := bytes.Repeat(patterned(1<<20), 175)[:174<<20+1]
	var want cid.Cid
	for _, cas := range []hamt.CAS{hamt.NewMemoryCAS(), k} {
		m, err := hamt.New(ctx, cas, hamt.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		if err := m.Set(ctx, "big", big); err != nil {
			t.Fatal(err)
		}
		id, _ := m.GetPointer(ctx, "big")
		if _, ok := cas.(*hamt.KuboCAS); !ok {
			want = id
		} else if !id.Equals(want) {
			t.Errorf("174 MiB + 1: Kubo's %s, memory's %s", id, want)
		}
		t.Logf("174 MiB + 1 in %T: %s", cas, id)
	}
}

// TestZarrHTTPVerifyingMapNeverServesRotInAFile: a value now kept as a UnixFS file in a MemoryCAS
// is served in pieces leaf by leaf; with a byte flipped in its first, second or last leaf, a map
// that verifies blocks never sends it as a complete 200.
func TestZarrHTTPVerifyingMapNeverServesRotInAFile(t *testing.T) {
	const size = 3<<20 + 5
	ctx := context.Background()
	mem := hamt.NewMemoryCAS()
	store := zarrNewStore(t, mem)
	val := patterned(size)
	if err := store.Set(ctx, "big/c/0", val); err != nil {
		t.Fatal(err)
	}
	if _, err := store.Map().Flush(ctx); err != nil {
		t.Fatal(err)
	}
	for _, leaf := range [][]byte{val[:1<<20], val[1<<20 : 2<<20], val[3<<20:]} {
		rs := reopen(t, &rottenCAS{MemoryCAS: mem, id: blake3CID(multicodec.Raw, leaf), at: 3}, store, hamt.WithVerifyBlocks())
		srv := startServer(t, rs.Handler(), 0, 0)
		resp, err := srv.Client().Get(srv.URL + "/big/c/0")
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == 200 && err == nil {
			t.Errorf("rot in a %d-byte leaf: 200 with %d of %d bytes; want a 500 or a cut answer", len(leaf), len(body), size)
		}
	}
}
