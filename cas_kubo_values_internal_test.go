package hamt

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"testing"
	"time"

	"github.com/hamt-go/hamt/internal/kubotest"
	"github.com/ipfs/go-cid"
	"github.com/multiformats/go-multicodec"
)

// rawDaemon saves n raw blocks to a kubotest daemon and returns a KuboCAS on it with their CIDs
// and bytes.
func rawDaemon(t *testing.T, n int) (*kubotest.Server, *KuboCAS, []cid.Cid, [][]byte) {
	t.Helper()
	srv := kubotest.New(t)
	k, err := NewKuboCAS(WithKuboRPC(srv.RPCURL()), WithKuboGateway(srv.GatewayURL()),
		WithKuboRetries(1, time.Millisecond, time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { k.Close() })
	ids := make([]cid.Cid, n)
	data := make([][]byte, n)
	for i := range n {
		data[i] = []byte(fmt.Sprintf("raw block %d %s", i, bytes.Repeat([]byte{byte(i)}, i)))
		if ids[i], err = k.Save(context.Background(), data[i], multicodec.Raw); err != nil {
			t.Fatal(err)
		}
	}
	return srv, k, ids, data
}

// readAll reads ids through readRawBlocks into memory.
func readAll(ctx context.Context, k *KuboCAS, ids []cid.Cid) ([][]byte, error) {
	got := make([][]byte, len(ids))
	_, err := k.readRawBlocks(ctx, ids, func(i int, r io.Reader) error {
		b, err := io.ReadAll(r)
		got[i] = b
		return err
	})
	return got, err
}

// TestReadRawBlocks: blocks come back in order, over several batches, repeats included, and a
// callback that reads nothing still has each block checked.
func TestReadRawBlocks(t *testing.T) {
	srv, k, ids, data := rawDaemon(t, 3)
	ctx := context.Background()
	var many []cid.Cid
	for i := range rawBatchBlocks + 7 {
		many = append(many, ids[i%3])
	}
	got, err := readAll(ctx, k, many)
	if err != nil {
		t.Fatal(err)
	}
	for i, b := range got {
		if !bytes.Equal(b, data[i%3]) {
			t.Fatalf("block %d: %q, want %q", i, b, data[i%3])
		}
	}
	if c := srv.Requests("/api/v0/cat"); c != 2 {
		t.Errorf("%d cat requests for %d blocks, want 2", c, len(many))
	}
	// Reading nothing: the rest is read and hashed, so a flipped byte still fails.
	srv.Inject(kubotest.Fault{Endpoint: kubotest.RPC, Path: "/api/v0/cat", Corrupt: true})
	_, err = k.readRawBlocks(ctx, ids, func(int, io.Reader) error { return nil })
	if !errors.Is(err, ErrCorrupt) {
		t.Fatalf("a flipped byte read by no one: %v, want ErrCorrupt", err)
	}
}

// TestReadRawBlocksUntrustedAnswers: extra bytes after the blocks are ErrUnexpectedBlock; a
// dag/stat answer naming other blocks, another count or an implausible size is refused; one
// claiming a wrong size makes the blocks fail their hash.
func TestReadRawBlocksUntrustedAnswers(t *testing.T) {
	srv, k, ids, data := rawDaemon(t, 3)
	ctx := context.Background()
	all := bytes.Join(data, nil)
	stat := func(sizes ...int) []byte {
		var b bytes.Buffer
		b.WriteString(`{"DagStats":[`)
		for i, n := range sizes {
			if i > 0 {
				b.WriteString(",")
			}
			fmt.Fprintf(&b, `{"Cid":%q,"Size":%d,"NumBlocks":1}`, ids[i%len(ids)], n)
		}
		b.WriteString(`]}`)
		return b.Bytes()
	}
	json := http.Header{"Content-Type": {"application/json"}}
	for _, tc := range []struct {
		name   string
		faults []kubotest.Fault
		want   error
	}{
		{"extra bytes", []kubotest.Fault{{Endpoint: kubotest.RPC, Path: "/api/v0/cat", Status: 200,
			Header: http.Header{}, Body: append(bytes.Clone(all), "more"...)}}, ErrUnexpectedBlock},
		{"short answer", []kubotest.Fault{{Endpoint: kubotest.RPC, Path: "/api/v0/cat", Status: 200,
			Header: http.Header{}, Body: all[:len(all)-1]}}, ErrMissingBlock},
		{"sizes shifted", []kubotest.Fault{{Endpoint: kubotest.RPC, Path: "/api/v0/dag/stat", Status: 200, Header: json,
			Body: stat(len(data[0])+1, len(data[1])-1, len(data[2]))}}, ErrCorrupt},
		{"too few answers", []kubotest.Fault{{Endpoint: kubotest.RPC, Path: "/api/v0/dag/stat", Status: 200, Header: json,
			Body: stat(len(data[0]), len(data[1]))}}, nil},
		{"huge size", []kubotest.Fault{{Endpoint: kubotest.RPC, Path: "/api/v0/dag/stat", Status: 200, Header: json,
			Body: stat(len(data[0]), 1<<40, len(data[2]))}}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv.ClearFaults()
			for _, f := range tc.faults {
				srv.Inject(f)
			}
			_, err := readAll(ctx, k, ids)
			if err == nil || tc.want != nil && !errors.Is(err, tc.want) {
				t.Fatalf("readRawBlocks: %v, want %v", err, tc.want)
			}
		})
	}
	srv.ClearFaults()
	if _, err := readAll(ctx, k, ids); err != nil {
		t.Fatalf("after the faults: %v", err)
	}
}

// TestReadRawBlocksCancel: cancelling the context while a block is being read stops the streams
// (the sizes read ahead included) and leaves no goroutine behind.
func TestReadRawBlocksCancel(t *testing.T) {
	_, k, ids, _ := rawDaemon(t, 3)
	var many []cid.Cid
	for i := range 3 * rawBatchBlocks {
		many = append(many, ids[i%3])
	}
	before := runtime.NumGoroutine()
	ctx, cancel := context.WithCancel(context.Background())
	_, err := k.readRawBlocks(ctx, many, func(i int, r io.Reader) error {
		if i == rawBatchBlocks+10 {
			cancel()
			_, err := io.ReadAll(r)
			return err
		}
		return nil
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("readRawBlocks cancelled: %v", err)
	}
	k.client.CloseIdleConnections()
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before {
		buf := make([]byte, 1<<16)
		t.Errorf("%d goroutines after the cancelled read, %d before:\n%s", n, before, buf[:runtime.Stack(buf, true)])
	}
}

// TestBlockSizesBoundedAnswer: a dag/stat answer far longer than any for a batch (here valid JSON
// padded with 32 MiB of blanks; a hostile daemon may stream one without end) is refused after
// maxDagStatAnswer bytes, as an answer that says nothing about the blocks, instead of being read
// whole into memory.
func TestBlockSizesBoundedAnswer(t *testing.T) {
	srv, _, ids, data := rawDaemon(t, 3)
	evil := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"DagStats":[`))
		pad := bytes.Repeat([]byte{' '}, 1<<20)
		for range 32 {
			if _, err := w.Write(pad); err != nil {
				return
			}
		}
		for i, id := range ids {
			if i > 0 {
				w.Write([]byte(","))
			}
			fmt.Fprintf(w, `{"Cid":%q,"Size":%d,"NumBlocks":1}`, id, len(data[i]))
		}
		w.Write([]byte(`]}`))
	}))
	t.Cleanup(evil.Close)
	k, err := NewKuboCAS(WithKuboRPC(evil.URL), WithKuboGateway(srv.GatewayURL()),
		WithKuboRetries(0, time.Millisecond, time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { k.Close() })
	_, err = k.blockSizes(context.Background(), ids)
	if !errors.Is(err, errNoRawBlocks) {
		t.Fatalf("blockSizes of a 32 MiB answer: %v, want errNoRawBlocks", err)
	}
}

// TestReadRawBlocksStopsSizingWithoutCat: when cat is refused (a proxy that lets dag/stat through),
// no more batches are sized: the sizer asked dag/stat about every batch of the read, each making
// the daemon resolve (and maybe fetch) 500 blocks for nothing, before the blocks were left to
// loads. The blocks are all returned, in order, to be loaded otherwise.
func TestReadRawBlocksStopsSizingWithoutCat(t *testing.T) {
	srv, k, ids, _ := rawDaemon(t, 3)
	var many []cid.Cid
	for i := range 12 * rawBatchBlocks {
		many = append(many, ids[i%3])
	}
	srv.Inject(kubotest.Fault{Endpoint: kubotest.RPC, Path: "/api/v0/cat", Status: 404, Times: -1})
	srv.ResetCounters()
	todo, err := k.readRawBlocks(context.Background(), many, func(int, io.Reader) error {
		return errors.New("no block may be handed out")
	})
	if !errors.Is(err, errNoRawBlocks) {
		t.Fatalf("readRawBlocks with cat refused: %v, want errNoRawBlocks", err)
	}
	if len(todo) != len(many) {
		t.Fatalf("%d blocks left to load, want all %d", len(todo), len(many))
	}
	for i, j := range todo {
		if i != j {
			t.Fatalf("todo[%d] = %d: not every block once, in order", i, j)
		}
	}
	// At most the batches sized before the first refusal is seen: one in each stream, rawStreams
	// waiting in the channel, one in the sizer's hand.
	if n := srv.Requests("/api/v0/dag/stat"); n > 2*rawStreams+1 {
		t.Errorf("%d dag/stat requests for %d batches after the first cat was refused", n, len(many)/rawBatchBlocks)
	}
}
