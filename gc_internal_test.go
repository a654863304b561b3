package hamt

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ipfs/go-cid"
)

// Tests of GC's phases from inside: failures injected between them (gcHook), a save between the
// mark and the sweep, and a child process killed in each phase.

// gcTestKV is n keys with values of size bytes, distinct for each tag.
func gcTestKV(tag string, n, size int) map[string][]byte {
	kv := make(map[string][]byte, n)
	for i := range n {
		kv[fmt.Sprintf("%s/%d", tag, i)] = bytes.Repeat([]byte(fmt.Sprintf("%s %d|", tag, i)), size/10+1)
	}
	return kv
}

// gcTestMap stores kv as a map and returns its root.
func gcTestMap(ctx context.Context, cas CAS, kv map[string][]byte) (cid.Cid, error) {
	m, err := New(ctx, cas, Bytes)
	if err != nil {
		return cid.Undef, err
	}
	for k, v := range kv {
		if err := m.Set(ctx, k, v); err != nil {
			return cid.Undef, err
		}
	}
	return m.Flush(ctx)
}

// gcTestCheck returns an error unless the map at root holds exactly kv.
func gcTestCheck(ctx context.Context, cas CAS, root cid.Cid, kv map[string][]byte) error {
	m, err := Open(ctx, cas, Bytes, root)
	if err != nil {
		return err
	}
	n := 0
	for k, err := range m.Keys(ctx) {
		if err != nil {
			return err
		}
		n++
		got, err := m.Get(ctx, k)
		if err != nil {
			return fmt.Errorf("key %q: %w", k, err)
		}
		if !bytes.Equal(got, kv[k]) {
			return fmt.Errorf("key %q: wrong value", k)
		}
	}
	if n != len(kv) {
		return fmt.Errorf("%d keys, want %d", n, len(kv))
	}
	return nil
}

// gcTestStore is a store with names "a" (a current root and one in history) and "b", and two
// unnamed maps: the same data in every process.
type gcTestStore struct {
	models map[cid.Cid]map[string][]byte // every kept root
	names  map[string][]cid.Cid          // current root first
}

// buildGCTestStore builds it in b; with b nil, it only computes the roots, in memory.
func buildGCTestStore(ctx context.Context, b *BoltCAS, n, size int) (*gcTestStore, error) {
	var cas CAS = b
	if b == nil {
		cas = NewMemoryCAS()
	}
	s := &gcTestStore{models: map[cid.Cid]map[string][]byte{}, names: map[string][]cid.Cid{}}
	for _, step := range []struct{ name, tag string }{{"a", "a1"}, {"", "g1"}, {"a", "a2"}, {"b", "b1"}, {"", "g2"}} {
		kv := gcTestKV(step.tag, n, size)
		root, err := gcTestMap(ctx, cas, kv)
		if err != nil {
			return nil, err
		}
		if step.name == "" {
			continue
		}
		if b != nil {
			if err := b.SetName(ctx, step.name, root); err != nil {
				return nil, err
			}
		}
		s.models[root] = kv
		s.names[step.name] = append([]cid.Cid{root}, s.names[step.name]...)
	}
	return s, flushStore(ctx, cas)
}

// check returns an error unless every name is as built and every kept root reads whole.
func (s *gcTestStore) check(ctx context.Context, b *BoltCAS) error {
	for name, roots := range s.names {
		n, err := b.Name(ctx, name)
		if err != nil {
			return err
		}
		got := []cid.Cid{n.Root}
		for _, h := range n.History {
			got = append(got, h.Root)
		}
		if fmt.Sprint(got) != fmt.Sprint(roots) {
			return fmt.Errorf("name %q: roots %v, want %v", name, got, roots)
		}
	}
	for root, kv := range s.models {
		if err := gcTestCheck(ctx, b, root, kv); err != nil {
			return fmt.Errorf("root %s: %w", root, err)
		}
	}
	return nil
}

func TestGCStoppedAfterAnyPhaseLosesNothingKept(t *testing.T) {
	ctx := context.Background()
	for _, phase := range []string{"marked", "swept", "copied", "before rename"} {
		t.Run(phase, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "s.bolt")
			b, err := OpenBoltCAS(path)
			if err != nil {
				t.Fatal(err)
			}
			defer b.Close()
			s, err := buildGCTestStore(ctx, b, 100, 500)
			if err != nil {
				t.Fatal(err)
			}
			before, _ := b.Len(ctx)
			stop := errors.New("injected")
			b.gcHook = func(p string) error {
				if p == phase {
					return stop
				}
				return nil
			}
			rep, err := b.GC(ctx)
			if !errors.Is(err, stop) {
				t.Fatalf("GC = %+v, %v; want the injected failure", rep, err)
			}
			after, _ := b.Len(ctx)
			if phase == "marked" && after != before {
				t.Fatalf("GC stopped before the sweep removed %d blocks", before-after)
			}
			if phase != "marked" && after != before-rep.BlocksRemoved {
				t.Fatalf("after the sweep %d blocks, want %d - %d", after, before, rep.BlocksRemoved)
			}
			if err := s.check(ctx, b); err != nil {
				t.Fatal(err)
			}
			if tmp, _ := filepath.Glob(path + ".gc-*"); len(tmp) != 0 {
				t.Fatalf("temporary files left: %v", tmp)
			}
			// The store works on, and a GC completes.
			b.gcHook = nil
			if _, err := b.GC(ctx); err != nil {
				t.Fatal(err)
			}
			if err := b.Close(); err != nil {
				t.Fatal(err)
			}
			if b, err = OpenBoltCAS(path, WithBoltReadOnly()); err != nil {
				t.Fatal(err)
			}
			defer b.Close()
			if err := b.Check(ctx, true); err != nil {
				t.Fatal(err)
			}
			if err := s.check(ctx, b); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestGCKeepsBlocksSavedBetweenMarkAndSweep: a map saved after the mark, whose values are blocks
// the file holds as garbage, reads whole after the sweep (without gcKeep the sweep removed them).
func TestGCKeepsBlocksSavedBetweenMarkAndSweep(t *testing.T) {
	ctx := context.Background()
	b, err := OpenBoltCAS(filepath.Join(t.TempDir(), "s.bolt"))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	garbage := gcTestKV("g", 50, 300)
	if _, err := gcTestMap(ctx, b, garbage); err != nil {
		t.Fatal(err)
	}
	if err := b.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	var late cid.Cid
	b.gcHook = func(p string) error {
		if p != "marked" {
			return nil
		}
		kv := map[string][]byte{}
		for k, v := range garbage {
			kv["late/"+k] = v
		}
		var err error
		if late, err = gcTestMap(ctx, b, kv); err != nil {
			return err
		}
		return b.Flush(ctx) // in the file before the sweep, present already or not
	}
	rep, err := b.GC(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if rep.BlocksRemoved == 0 {
		t.Fatal("the garbage map's nodes were not removed")
	}
	b.gcHook = nil
	kv := map[string][]byte{}
	for k, v := range garbage {
		kv["late/"+k] = v
	}
	if err := gcTestCheck(ctx, b, late, kv); err != nil {
		t.Fatalf("the map saved during the GC: %v", err)
	}
}

// TestGCKilledAtAnyMomentLosesNothingKept: a child process runs a GC on a store with named roots
// and garbage and is killed with SIGKILL in each phase; the file then opens, passes Check, and
// every named root (and its history) reads whole, before and after a GC that completes.
func TestGCKilledAtAnyMomentLosesNothingKept(t *testing.T) {
	if testing.Short() {
		t.Skip("starts child processes")
	}
	ctx := context.Background()
	for i, at := range []string{"start", "marked", "swept", "copied", "before rename"} {
		t.Run(at, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "s.bolt")
			cmd := exec.Command(os.Args[0], "-test.run=^TestGCChild$", "-test.count=1")
			cmd.Env = append(os.Environ(), "HAMT_GC_CHILD="+path)
			out := &gcChildOutput{said: make(chan string, 16)}
			cmd.Stdout = out
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			exited := make(chan error, 1)
			go func() { exited <- cmd.Wait() }()
			defer func() {
				_ = cmd.Process.Kill()
				<-exited
			}()
			timeout := time.After(60 * time.Second)
		wait:
			for {
				select {
				case line := <-out.said:
					if line == at {
						break wait
					}
				case err := <-exited:
					t.Fatalf("child ended (%v) before %q; stderr:\n%s", err, at, stderr.String())
				case <-timeout:
					t.Fatalf("child did not reach %q", at)
				}
			}
			time.Sleep(time.Duration(i%3) * time.Millisecond) // not always at the phase's first instruction
			_ = cmd.Process.Signal(syscall.SIGKILL)
			if err := <-exited; err == nil {
				t.Logf("the GC ended before the kill")
			}
			exited <- nil // for the deferred wait

			b, err := OpenBoltCAS(path)
			if err != nil {
				t.Fatal(err)
			}
			defer b.Close()
			if err := b.Check(ctx, true); err != nil {
				t.Fatal(err)
			}
			want, err := buildGCTestStore(ctx, nil, gcChildKeys, gcChildSize) // the child's names and maps
			if err != nil {
				t.Fatal(err)
			}
			if err := want.check(ctx, b); err != nil {
				t.Fatal(err)
			}
			if _, err := b.GC(ctx); err != nil {
				t.Fatal(err)
			}
			if err := want.check(ctx, b); err != nil {
				t.Fatal(err)
			}
			if tmp, _ := filepath.Glob(path + ".gc-*"); len(tmp) != 0 {
				t.Fatalf("temporary files left after a GC that completed: %v", tmp)
			}
		})
	}
}

const gcChildKeys, gcChildSize = 200, 2000

// gcChildOutput passes on each line a child prints.
type gcChildOutput struct {
	mu      sync.Mutex
	partial []byte
	said    chan string
}

func (o *gcChildOutput) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.partial = append(o.partial, p...)
	for {
		i := bytes.IndexByte(o.partial, '\n')
		if i < 0 {
			return len(p), nil
		}
		if line, ok := strings.CutPrefix(string(o.partial[:i]), "gc-child "); ok {
			select {
			case o.said <- line:
			default:
			}
		}
		o.partial = o.partial[i+1:]
	}
}

// TestGCChild is the child of TestGCKilledAtAnyMomentLosesNothingKept.
func TestGCChild(t *testing.T) {
	path := os.Getenv("HAMT_GC_CHILD")
	if path == "" {
		t.Skip("helper process of TestGCKilledAtAnyMomentLosesNothingKept")
	}
	ctx := context.Background()
	b, err := OpenBoltCAS(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := buildGCTestStore(ctx, b, gcChildKeys, gcChildSize); err != nil {
		t.Fatal(err)
	}
	b.gcHook = func(phase string) error {
		fmt.Printf("gc-child %s\n", phase)
		return nil
	}
	fmt.Println("gc-child start")
	if _, err := b.GC(ctx); err != nil {
		t.Fatal(err)
	}
	fmt.Println("gc-child done")
	time.Sleep(60 * time.Second) // the parent kills it
}

// TestGCCompactionCopiesAgainWhenACommitCameBetween: blocks committed after the compacted copy
// was made, before the swap, are in the file after it: the GC copies again (and the fourth time
// holds the store while it copies).
func TestGCCompactionCopiesAgainWhenACommitCameBetween(t *testing.T) {
	ctx := context.Background()
	b, err := OpenBoltCAS(filepath.Join(t.TempDir(), "s.bolt"))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if _, err := gcTestMap(ctx, b, gcTestKV("g", 50, 300)); err != nil { // garbage
		t.Fatal(err)
	}
	var saved []cid.Cid
	b.gcHook = func(p string) error {
		if p != "copied" {
			return nil
		}
		id, err := b.Save(ctx, []byte(fmt.Sprintf("between copy %d and swap", len(saved))), 0x55)
		if err != nil {
			return err
		}
		saved = append(saved, id)
		return b.Flush(ctx)
	}
	rep, err := b.GC(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !rep.Compacted || len(saved) != 4 {
		t.Fatalf("compacted %v after %d copies, want 4", rep.Compacted, len(saved))
	}
	for _, id := range saved {
		if ok, err := b.Has(ctx, id); !ok || err != nil {
			t.Fatalf("block %s saved between copy and swap: %v, %v", id, ok, err)
		}
	}
	if err := b.Check(ctx, true); err != nil {
		t.Fatal(err)
	}
}
