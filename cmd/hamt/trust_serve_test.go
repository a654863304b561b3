package main

// Tests that `hamt serve` cannot be held down by clients that connect and do nothing, trickle a
// request, or stop reading an answer, and that it stops promptly on SIGTERM while such clients
// hang on. The clients are raw TCP connections on 127.0.0.1 to the built binary.

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// bigValueRoot makes a store holding testdata/zarr and key with size random bytes, and returns
// the store, the root and the value.
func bigValueRoot(t *testing.T, key string, size int) (string, string, []byte) {
	t.Helper()
	store := filepath.Join(t.TempDir(), "store.bolt")
	root := ok(t, store, nil, "import", filepath.Join("..", "..", "testdata", "zarr")).lastLine()
	val := make([]byte, size)
	_, _ = rand.NewChaCha8([32]byte{byte(size), 3}).Read(val)
	return store, ok(t, store, val, "set", root, key, "-").lastLine(), val
}

// serving is a running `hamt serve`.
type serving struct {
	cmd   *exec.Cmd
	addr  string      // host:port
	lines chan string // standard error, line by line, closed when it ends
}

// startServe runs `hamt serve ROOT` with extra flags and waits for it to listen.
func startServe(t *testing.T, store, root string, flags ...string) *serving {
	t.Helper()
	cmd := exec.Command(binary, append([]string{"serve", root, "--listen", "127.0.0.1:0"}, flags...)...)
	cmd.Env = append(os.Environ(), "HAMT_STORE="+store)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait() // reaps it; an error if stop did already
	})
	s := &serving{cmd: cmd, lines: make(chan string, 1000)}
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			s.lines <- sc.Text()
		}
		close(s.lines)
	}()
	select {
	case l, open := <-s.lines:
		m := regexp.MustCompile(`on http://(127\.0\.0\.1:\d+)/`).FindStringSubmatch(l)
		if !open || m == nil {
			t.Fatalf("serve %v did not start: %q", flags, l)
		}
		s.addr = m[1]
	case <-time.After(10 * time.Second):
		t.Fatal("serve did not start")
	}
	return s
}

// stop sends sig and returns the exit code, the time it took and what serve logged after.
func (s *serving) stop(t *testing.T, sig os.Signal) (code int, took time.Duration, logged []string) {
	t.Helper()
	start := time.Now()
	if err := s.cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
	timeout := time.After(30 * time.Second)
	for open := true; open; {
		select {
		case l, ok := <-s.lines:
			if open = ok; ok {
				logged = append(logged, l)
			}
		case <-timeout:
			t.Fatalf("serve still running 30s after %v; logged %q", sig, logged)
		}
	}
	err := s.cmd.Wait()
	took = time.Since(start)
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode(), took, logged
	} else if err != nil {
		t.Fatal(err)
	}
	return 0, took, logged
}

// request opens a connection with a small receive buffer and sends raw, a request.
func request(t *testing.T, addr, raw string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.(*net.TCPConn).SetReadBuffer(16 << 10)
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatal(err)
	}
	return c
}

// readHead reads a response's status line and headers and returns the status line.
func readHead(t *testing.T, br *bufio.Reader) string {
	t.Helper()
	status, err := br.ReadString('\n')
	if err != nil {
		t.Fatalf("reading a status line: %v", err)
	}
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("reading headers: %v", err)
		}
		if line == "\r\n" {
			return strings.TrimSpace(status)
		}
	}
}

// closedWithin reads c to its end and reports whether the server closed it within d.
func closedWithin(c net.Conn, r io.Reader, d time.Duration) (bool, int64) {
	_ = c.SetReadDeadline(time.Now().Add(d))
	n, err := io.Copy(io.Discard, r)
	var ne net.Error
	return !(errors.As(err, &ne) && ne.Timeout()), n
}

// TestServeStopsOnSIGTERMWithStalledClients: four clients ask for an 8 MiB value and stop reading;
// SIGTERM still stops serve within the 5 s grace and a little, with exit 0 (it used to wait 10 s
// for them and exit 1 with "context deadline exceeded").
func TestServeStopsOnSIGTERMWithStalledClients(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("SIGTERM delivery is POSIX")
	}
	store, root, _ := bigValueRoot(t, "big/c/0", 8<<20)
	s := startServe(t, store, root)
	for range 4 {
		c := request(t, s.addr, "GET /big/c/0 HTTP/1.1\r\nHost: test\r\n\r\n")
		if status := readHead(t, bufio.NewReader(c)); !strings.Contains(status, " 200 ") {
			t.Fatalf("GET: %q", status)
		}
	}
	time.Sleep(300 * time.Millisecond) // the handlers fill the connections and block
	code, took, logged := s.stop(t, syscall.SIGTERM)
	if code != 0 || len(logged) == 0 || logged[len(logged)-1] != "stopped" {
		t.Errorf("after SIGTERM: exit %d, logged %q; want exit 0 and \"stopped\" last", code, logged)
	}
	if took > 8*time.Second {
		t.Errorf("serve took %s to stop; want the 5 s grace and little more", took.Round(time.Millisecond))
	}
}

// TestServeDropsClientsThatHoldConnections: with 1 s read and idle timeouts and a 2 s write
// timeout, serve closes a connection that sends nothing, one idle after a request, one trickling a
// request body and one that stops reading an answer, while a download that keeps reading, slowly
// (some 0.2 s a MiB), for longer than the write timeout gets every byte.
func TestServeDropsClientsThatHoldConnections(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("SIGINT delivery is POSIX")
	}
	const size = 16 << 20
	store, root, val := bigValueRoot(t, "big/c/0", size)
	s := startServe(t, store, root, "--read-timeout", "1s", "--write-timeout", "2s", "--idle-timeout", "1s")
	const within = 5 * time.Second

	var wg sync.WaitGroup
	check := func(name string, f func(t *testing.T)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			t.Run(name, f)
		}()
	}
	check("silent", func(t *testing.T) {
		c := request(t, s.addr, "")
		if closed, _ := closedWithin(c, c, within); !closed {
			t.Error("a connection that sent nothing is still open")
		}
	})
	check("idle after a request", func(t *testing.T) {
		c := request(t, s.addr, "GET /zarr.json HTTP/1.1\r\nHost: test\r\n\r\n")
		br := bufio.NewReader(c)
		if status := readHead(t, br); !strings.Contains(status, " 200 ") {
			t.Fatalf("GET: %q", status)
		}
		if closed, _ := closedWithin(c, br, within); !closed {
			t.Error("an idle kept-alive connection is still open")
		}
	})
	check("trickling a body", func(t *testing.T) {
		c := request(t, s.addr, "POST /zarr.json HTTP/1.1\r\nHost: test\r\nContent-Length: 1000\r\n\r\n")
		stop := make(chan struct{})
		defer close(stop)
		go func() {
			for {
				select {
				case <-stop:
					return
				case <-time.After(100 * time.Millisecond):
					if _, err := c.Write([]byte("x")); err != nil {
						return
					}
				}
			}
		}()
		if closed, _ := closedWithin(c, c, within); !closed {
			t.Error("a connection trickling its body is still open")
		}
	})
	check("stalled download", func(t *testing.T) {
		c := request(t, s.addr, "GET /big/c/0 HTTP/1.1\r\nHost: test\r\n\r\n")
		br := bufio.NewReader(c)
		readHead(t, br)
		time.Sleep(3 * time.Second)
		if closed, n := closedWithin(c, br, within); !closed || n >= size {
			t.Errorf("a client that stopped reading: closed %v after %d of %d bytes; want it dropped", closed, n, size)
		}
	})
	check("slow download", func(t *testing.T) {
		c := request(t, s.addr, "GET /big/c/0 HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
		br := bufio.NewReader(c)
		readHead(t, br)
		start := time.Now()
		var got bytes.Buffer
		buf := make([]byte, 64<<10)
		for got.Len() < size {
			n, err := io.ReadFull(br, buf[:min(len(buf), size-got.Len())])
			got.Write(buf[:n])
			if err != nil {
				t.Fatalf("cut after %d of %d bytes in %s: %v", got.Len(), size, time.Since(start).Round(time.Millisecond), err)
			}
			time.Sleep(10 * time.Millisecond) // 256 reads: at least 2.56 s in all
		}
		if took := time.Since(start); took < 2*time.Second {
			t.Fatalf("took %s, not longer than the 2 s write timeout: it tests nothing", took)
		}
		if !bytes.Equal(got.Bytes(), val) {
			t.Error("other bytes")
		}
	})
	wg.Wait()
	if code, _, logged := s.stop(t, syscall.SIGINT); code != 0 {
		t.Errorf("exit %d after SIGINT; logged %q", code, logged)
	}
}
