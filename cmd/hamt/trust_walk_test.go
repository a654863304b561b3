package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hamt-go/hamt"
	"github.com/ipfs/go-cid"
	carv2 "github.com/ipld/go-car/v2"
	"github.com/ipld/go-car/v2/storage"
	"github.com/multiformats/go-multicodec"
)

// walkBlock is a block of a hand-built tree.
type walkBlock struct {
	id   cid.Cid
	data []byte
}

func walkSave(t *testing.T, blocks *[]walkBlock, data []byte, codec multicodec.Code) cid.Cid {
	t.Helper()
	id, err := hamt.NewMemoryCAS().Save(context.Background(), data, codec)
	if err != nil {
		t.Fatal(err)
	}
	*blocks = append(*blocks, walkBlock{id, data})
	return id
}

// walkLink is a DAG-CBOR link: tag 42 over the byte string 0x00 || cid (CIDs of 36 bytes here).
func walkLink(c cid.Cid) []byte {
	return append([]byte{0xd8, 0x2a, 0x58, byte(c.ByteLen() + 1), 0}, c.Bytes()...)
}

// walkNodeBlock is a node: a list of 256 slots, each the bytes given or an empty map.
func walkNodeBlock(slots map[int][]byte) []byte {
	b := []byte{0x99, 0x01, 0x00}
	for i := range 256 {
		if s, ok := slots[i]; ok {
			b = append(b, s...)
		} else {
			b = append(b, 0xa0)
		}
	}
	return b
}

// walkOneKey stores key's value and returns a bucket slot holding key alone (keys under 24 bytes).
func walkOneKey(t *testing.T, blocks *[]walkBlock, key string) []byte {
	v := walkSave(t, blocks, []byte("value of "+key), multicodec.Raw)
	return append(append([]byte{0xa1, 0x60 | byte(len(key))}, key...), walkLink(v)...)
}

// TestHostileCARsFailQuickly: a CAR of 5 blocks whose every slot links to the node below (256^4
// paths to one leaf) imports, and then every command that walks the tree exits 1 at once with a
// malformed-node error, instead of running for minutes and listing one key billions of times; so
// does a tree holding a key in a slot that is not its own, which ls used to list although get
// could not find it.
func TestHostileCARsFailQuickly(t *testing.T) {
	var blocks []walkBlock
	key := "diamond"
	h := hamt.Blake3([]byte(key))
	below := walkSave(t, &blocks, walkNodeBlock(map[int][]byte{int(h[4]): walkOneKey(t, &blocks, key)}), multicodec.DagCbor)
	for range 4 {
		slots := map[int][]byte{}
		for i := range 256 {
			slots[i] = append([]byte{0x81}, walkLink(below)...)
		}
		below = walkSave(t, &blocks, walkNodeBlock(slots), multicodec.DagCbor)
	}
	diamond := below
	good := walkSave(t, &blocks, walkNodeBlock(map[int][]byte{int(hamt.Blake3([]byte("good"))[0]): walkOneKey(t, &blocks, "good")}), multicodec.DagCbor)
	// And a key in a slot that is not its own: listed, but Get could never find it.
	offPath := walkSave(t, &blocks, walkNodeBlock(map[int][]byte{int(hamt.Blake3([]byte("lost"))[0]) ^ 1: walkOneKey(t, &blocks, "lost")}), multicodec.DagCbor)

	dir := t.TempDir()
	carPath := filepath.Join(dir, "diamond.car")
	f, err := os.Create(carPath)
	if err != nil {
		t.Fatal(err)
	}
	car, err := storage.NewWritable(f, []cid.Cid{diamond, good, offPath}, carv2.WriteAsCarV1(true))
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range blocks {
		if err := car.Put(context.Background(), b.id.KeyString(), b.data); err != nil {
			t.Fatal(err)
		}
	}
	if err := car.Finalize(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	store := filepath.Join(dir, "store.bolt")
	if r := walkRun(t, store, "car", "import", carPath); r.code != 0 {
		// A car import that checks what its roots reach may refuse the tree itself; then it must
		// say why, and the blocks go in by the library for the commands below.
		if r.code != 1 || !strings.Contains(r.stderr, "malformed HAMT node") {
			t.Fatalf("car import: exit %d\n%s", r.code, r.stderr)
		}
		walkPutBlocks(t, store, blocks)
	}
	for _, bad := range []struct {
		name string
		root string
	}{{"diamond", diamond.String()}, {"key off its path", offPath.String()}} {
		for _, c := range []struct {
			name string
			args []string
		}{
			{"ls", []string{"ls", bad.root}},
			{"stats", []string{"stats", bad.root}},
			{"export", []string{"export", bad.root, filepath.Join(dir, "out")}},
			{"diff from a good root", []string{"diff", good.String(), bad.root}},
			{"diff to a good root", []string{"diff", bad.root, good.String()}},
			{"car export", []string{"car", "export", bad.root, filepath.Join(dir, "again.car")}},
		} {
			t.Run(bad.name+"/"+c.name, func(t *testing.T) {
				start := time.Now()
				r := walkRun(t, store, c.args...)
				took := time.Since(start)
				if r.code != 1 || !strings.Contains(r.stderr, "malformed HAMT node") || len(r.stdout) > 0 {
					t.Fatalf("hamt %v: exit %d after %s, %d bytes of output\n%.300s", c.args, r.code, took, len(r.stdout), r.stderr)
				}
				if strings.Count(r.stderr, "\n") != 1 {
					t.Fatalf("want one line of error, got %q", r.stderr)
				}
				if c.name == "car export" {
					// The CAR is renamed into place only when complete: no partial file is left.
					if left, _ := filepath.Glob(filepath.Join(dir, "*again.car*")); len(left) > 0 {
						t.Fatalf("a failed car export left %v behind", left)
					}
				}
				t.Logf("exit 1 after %s: %s", took.Round(time.Millisecond), strings.TrimSpace(r.stderr))
			})
		}
	}
}

// walkRun runs the binary, giving up (as a test failure, not a hang) after 60 seconds: the
// commands here take milliseconds, where without the walk's checks they take minutes to hours.
func walkRun(t *testing.T, store string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, args...)
	cmd.Env = append(os.Environ(), "HAMT_STORE="+store)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("hamt %v: still running after 60s (%d bytes of output)", args, out.Len())
	}
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return result{out.String(), errb.String(), code}
}

// walkPutBlocks stores blocks in the bbolt store through the library.
func walkPutBlocks(t *testing.T, store string, blocks []walkBlock) {
	t.Helper()
	b, err := hamt.OpenBoltCAS(store)
	if err != nil {
		t.Fatal(err)
	}
	for _, blk := range blocks {
		if err := b.Put(context.Background(), blk.id, blk.data); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
}
