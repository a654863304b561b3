package hamt_test

// Benchmarks of the Zarr issue: importing 20,000 files of 64 KiB into a MemoryCAS, ListDir over
// 200,000 keys, and HTTP GETs of 64 KiB chunks from 32 concurrent clients. Run, for example:
//
//	go test -run XXX -bench 'Zarr' -benchtime 3x -count 3 .

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/hamt-go/hamt"
)

const (
	benchChunk      = 64 << 10
	benchChunkFiles = 20_000
)

var (
	chunkTreeOnce sync.Once
	chunkTreeDir  string
	chunkTreeErr  error
)

// chunkTree writes, once per process, 20,000 files of 64 KiB of random bytes in the layout of a
// 3-D array's chunks (arr/c/i/j/k), under a directory removed at exit by the caller's cleanup.
func chunkTree(b *testing.B) string {
	chunkTreeOnce.Do(func() {
		dir, err := os.MkdirTemp("", "hamt-bench-chunks-")
		if err != nil {
			chunkTreeErr = err
			return
		}
		r := rand.New(rand.NewPCG(1, 1))
		buf := make([]byte, benchChunk)
		for i := range benchChunkFiles {
			p := filepath.Join(dir, "arr", "c", fmt.Sprint(i/1000), fmt.Sprint(i/100%10), fmt.Sprint(i%100))
			if i%100 == 0 {
				if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
					chunkTreeErr = err
					return
				}
			}
			for j := 0; j < len(buf); j += 8 {
				v := r.Uint64()
				for k := range 8 {
					buf[j+k] = byte(v >> (8 * k))
				}
			}
			if err := os.WriteFile(p, buf, 0o644); err != nil {
				chunkTreeErr = err
				return
			}
		}
		chunkTreeDir = dir
	})
	if chunkTreeErr != nil {
		b.Fatal(chunkTreeErr)
	}
	return chunkTreeDir
}

// BenchmarkZarrImport: ImportDir of 20,000 files of 64 KiB (1.3 GB, in the page cache after the
// first run) into a new map on a MemoryCAS, then Flush. Reports MB/s of file bytes.
func BenchmarkZarrImport(b *testing.B) {
	dir := chunkTree(b)
	ctx := context.Background()
	b.SetBytes(benchChunkFiles * benchChunk)
	b.ReportAllocs()
	for b.Loop() {
		m, err := hamt.New(ctx, hamt.NewMemoryCAS(), hamt.Bytes)
		if err != nil {
			b.Fatal(err)
		}
		st, err := hamt.ImportDir(ctx, m, dir)
		if err != nil || st.Files != benchChunkFiles {
			b.Fatalf("imported %d files: %v", st.Files, err)
		}
		if _, err := m.Flush(ctx); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkZarrListDir: ListDir of the root and of one chunk directory over 200,000 keys of a
// read-only store (every node cached after the first run). Reports ns per key scanned.
func BenchmarkZarrListDir(b *testing.B) {
	ctx := context.Background()
	cas := hamt.NewMemoryCAS()
	m, err := hamt.New(ctx, cas, hamt.Bytes)
	if err != nil {
		b.Fatal(err)
	}
	const n = 200_000
	for i := range n {
		if err := m.Set(ctx, fmt.Sprintf("var%d/c/%d/%d", i%4, i/1000, i%1000), []byte{byte(i)}); err != nil {
			b.Fatal(err)
		}
	}
	root, err := m.Flush(ctx)
	if err != nil {
		b.Fatal(err)
	}
	ro, err := hamt.Open(ctx, cas, hamt.Bytes, root, hamt.WithCacheBytes(1<<30))
	if err != nil {
		b.Fatal(err)
	}
	store, err := hamt.NewZarrStore(ro)
	if err != nil {
		b.Fatal(err)
	}
	for _, c := range []struct {
		prefix string
		want   int
	}{{"", 4}, {"var1/c/17/", 250}} {
		b.Run(fmt.Sprintf("prefix=%q", c.prefix), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				got, err := store.ListDir(ctx, c.prefix)
				if err != nil || len(got) != c.want {
					b.Fatalf("%d entries, %v; want %d", len(got), err, c.want)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/key")
		})
	}
}

// BenchmarkZarrHTTP: 32 concurrent clients GET random 64 KiB chunks (1,000 of them) from the
// handler of a read-only store over loopback. Reports MB/s and requests/s.
func BenchmarkZarrHTTP(b *testing.B) { benchZarrHTTP(b, false) }

// BenchmarkZarrHTTPCORSListener: BenchmarkZarrHTTP with the server listening through
// CORSListener, as hamt serve does.
func BenchmarkZarrHTTPCORSListener(b *testing.B) { benchZarrHTTP(b, true) }

func benchZarrHTTP(b *testing.B, cors bool) {
	ctx := context.Background()
	cas := hamt.NewMemoryCAS()
	m, err := hamt.New(ctx, cas, hamt.Bytes)
	if err != nil {
		b.Fatal(err)
	}
	const chunks = 1000
	r := rand.New(rand.NewPCG(2, 2))
	for i := range chunks {
		v := make([]byte, benchChunk)
		for j := range v {
			v[j] = byte(r.Uint32())
		}
		if err := m.Set(ctx, fmt.Sprintf("arr/c/%d/%d", i/100, i%100), v); err != nil {
			b.Fatal(err)
		}
	}
	root, err := m.Flush(ctx)
	if err != nil {
		b.Fatal(err)
	}
	ro, err := hamt.Open(ctx, cas, hamt.Bytes, root)
	if err != nil {
		b.Fatal(err)
	}
	store, err := hamt.NewZarrStore(ro)
	if err != nil {
		b.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(store.Handler())
	if cors {
		srv.Listener = hamt.CORSListener(srv.Config, srv.Listener)
	}
	srv.Start()
	defer srv.Close()
	tr := &http.Transport{MaxIdleConnsPerHost: 64}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}
	b.SetBytes(benchChunk)
	b.SetParallelism(16) // 16 × GOMAXPROCS (2 here) = 32 clients
	var seed atomic.Uint64
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		r := rand.New(rand.NewPCG(seed.Add(1), 3))
		for pb.Next() {
			i := r.IntN(chunks)
			resp, err := client.Get(fmt.Sprintf("%s/arr/c/%d/%d", srv.URL, i/100, i%100))
			if err != nil {
				b.Error(err)
				return
			}
			n, err := io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if err != nil || n != benchChunk || resp.StatusCode != 200 {
				b.Errorf("status %d, %d bytes, %v", resp.StatusCode, n, err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
}

// BenchmarkZarrExport: ExportDir of 2,000 files of 64 KiB (131 MB) from a MemoryCAS into a new
// directory per run (through os.Root, into a hidden directory moved into place). Reports MB/s of
// file bytes.
func BenchmarkZarrExport(b *testing.B) {
	const files = 2_000
	ctx := context.Background()
	m, err := hamt.New(ctx, hamt.NewMemoryCAS(), hamt.Bytes)
	if err != nil {
		b.Fatal(err)
	}
	r := rand.New(rand.NewPCG(2, 2))
	for i := range files {
		v := make([]byte, benchChunk)
		for j := range v {
			v[j] = byte(r.Uint32())
		}
		if err := m.Set(ctx, fmt.Sprintf("arr/c/%d/%d/%d", i/1000, i/100%10, i%100), v); err != nil {
			b.Fatal(err)
		}
	}
	store, err := hamt.NewZarrStore(m)
	if err != nil {
		b.Fatal(err)
	}
	base := b.TempDir()
	b.SetBytes(files * benchChunk)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i++
		out := filepath.Join(base, fmt.Sprint(i))
		st, err := hamt.ExportDir(ctx, store, out)
		if err != nil || st.Files != files {
			b.Fatalf("exported %d files: %v", st.Files, err)
		}
		b.StopTimer()
		if err := os.RemoveAll(out); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
}

// BenchmarkCORSConnWrite: one Write of 4 KiB (net/http's buffer) on a loopback TCP connection,
// bare or accepted through CORSListener: in the middle of an answer, and at the start of one
// (where the connection checks whether it is net/http's own error answer). Reports allocations.
func BenchmarkCORSConnWrite(b *testing.B) {
	head := []byte("HTTP/1.1 200 OK\r\nAccept-Ranges: bytes\r\nAccess-Control-Allow-Origin: *\r\n")
	chunk := append(head, make([]byte, 4<<10-len(head))...)
	for _, c := range []struct {
		name        string
		cors, start bool
	}{{"bare", false, false}, {"cors", true, false}, {"cors/answer-start", true, true}} {
		b.Run(c.name, func(b *testing.B) {
			srv := &http.Server{}
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			defer ln.Close()
			if c.cors {
				ln = hamt.CORSListener(srv, ln)
			}
			client, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				b.Fatal(err)
			}
			defer client.Close()
			done := make(chan struct{})
			go func() {
				_, _ = io.Copy(io.Discard, client)
				close(done)
			}()
			conn, err := ln.Accept()
			if err != nil {
				b.Fatal(err)
			}
			b.SetBytes(int64(len(chunk)))
			b.ReportAllocs()
			for b.Loop() {
				if c.start {
					srv.ConnState(conn, http.StateIdle)
				}
				if _, err := conn.Write(chunk); err != nil {
					b.Fatal(err)
				}
			}
			conn.Close()
			<-done
		})
	}
}
