package hamt_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/hamt-go/hamt"
	"github.com/hamt-go/hamt/internal/testdag"
	"github.com/ipfs/go-cid"
	"github.com/multiformats/go-multicodec"
)

// Red-team tests of GC: what the compaction's rename does to the file the store lives in.

// A store opened through a symbolic link: the compacted copy must replace the file the link names
// (not the link, which would leave that file uncompacted and stale for whoever opens it by its own
// path), and keep its permissions (a store a group shares stays readable to the group).
func TestGCCompactsTheFileALinkNamesAndKeepsItsMode(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	real := filepath.Join(dir, "real.bolt")
	link := filepath.Join(dir, "link.bolt")
	b := boltOpen(t, real)
	keptKV := gcKV("kept", 20, 500)
	kept := gcMap(t, b, keptKV)
	if err := b.SetName(ctx, "ds", kept); err != nil {
		t.Fatal(err)
	}
	gcMap(t, b, gcKV("gone", 200, 2000))
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(real, 0o640); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("real.bolt", link); err != nil {
		t.Skip("no symbolic links here:", err)
	}
	b = boltOpen(t, link)
	rep, err := b.GC(ctx)
	if err != nil || !rep.Compacted || rep.BlocksRemoved == 0 {
		t.Fatalf("GC = %+v, %v", rep, err)
	}
	if fi, err := os.Lstat(link); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Fatalf("the link is no longer a link: %v, %v", fi.Mode(), err)
	}
	fi, err := os.Stat(real)
	if err != nil || fi.Size() != rep.FileAfter {
		t.Fatalf("the file the link names: %v, %v; the report says %d bytes after", fi, err, rep.FileAfter)
	}
	if fi.Mode().Perm() != 0o640 {
		t.Fatalf("the file's mode is %v after GC, want %v", fi.Mode().Perm(), os.FileMode(0o640))
	}
	// A write after GC lands in the file, seen by a store opened by the file's own path.
	later := gcMap(t, b, gcKV("later", 5, 100))
	if err := b.SetName(ctx, "later", later); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	r := boltOpen(t, real, hamt.WithBoltReadOnly())
	gcCheckMap(t, r, kept, keptKV)
	if _, err := r.Name(ctx, "later"); err != nil {
		t.Fatalf("the name set through the link after GC, read through the file: %v", err)
	}
}

// A byte flipped in the key of the names bucket (bit rot) makes the names look gone: a GC given
// a root would then remove every named root's blocks. The root bucket holds only the store's
// buckets, so an unknown key there is damage: GC removes nothing and says ErrCorrupt.
func TestGCRefusesWhenTheNamesBucketKeyIsDamaged(t *testing.T) {
	ctx := context.Background()
	path := boltTempPath(t)
	b := boltOpen(t, path)
	namedKV, givenKV := gcKV("named", 20, 300), gcKV("given", 20, 300)
	named := gcMap(t, b, namedKV)
	if err := b.SetName(ctx, "ds", named); err != nil {
		t.Fatal(err)
	}
	given := gcMap(t, b, givenKV)
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	file, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	n := bytes.Count(file, []byte("names"))
	if n == 0 {
		t.Fatal("no names key in the file")
	}
	file = bytes.ReplaceAll(file, []byte("names"), []byte("nameS")) // 's' -> 'S': one bit
	if err := os.WriteFile(path, file, 0o600); err != nil {
		t.Fatal(err)
	}
	b = boltOpen(t, path)
	rep, err := b.GC(ctx, hamt.WithGCRoots(given))
	if !errors.Is(err, hamt.ErrCorrupt) || rep.BlocksRemoved != 0 {
		t.Fatalf("GC with the names bucket's key damaged = %+v, %v; want ErrCorrupt and nothing removed", rep, err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	// Repaired, the name's root reads whole.
	if err := os.WriteFile(path, bytes.ReplaceAll(file, []byte("nameS"), []byte("names")), 0o600); err != nil {
		t.Fatal(err)
	}
	gcCheckMap(t, boltOpen(t, path, hamt.WithBoltReadOnly()), named, namedKV)
}

// A map whose value links another kept root (a dag-cbor CID where the library writes raw ones:
// a map made elsewhere, or made to do this) must not make GC take that root as walked: marked
// first (its name sorts first), the value stopped the mark of the other root at its root block,
// and GC removed the rest of it.
func TestGCWalksARootThatAnotherMapHasAsAValue(t *testing.T) {
	ctx := context.Background()
	b := boltOpen(t, boltTempPath(t))
	victimKV := gcKV("victim", 50, 300)
	victim := gcMap(t, b, victimKV)
	h := hamt.Blake3([]byte("x"))
	odd := testdag.SaveNode(t, b, map[int][]byte{int(h[0]): testdag.Bucket(testdag.Entry("x", victim))})
	if err := b.SetName(ctx, "a-first", odd); err != nil {
		t.Fatal(err)
	}
	if err := b.SetName(ctx, "victim", victim); err != nil {
		t.Fatal(err)
	}
	if _, err := b.GC(ctx); err != nil {
		t.Fatal(err)
	}
	gcCheckMap(t, b, victim, victimKV)
}

// The other way round: a map's value that is a raw block of the bytes of another root's UnixFS
// file node leaves that file to be walked, leaves and all.
func TestGCWalksAFileWhoseNodeAnotherMapHasAsARawValue(t *testing.T) {
	ctx := context.Background()
	b := boltOpen(t, boltTempPath(t))
	victimKV := map[string][]byte{"file": bytes.Repeat([]byte("victim file;"), hamt.DefaultFileChunk/12+100)}
	victim := gcMap(t, b, victimKV)
	m, err := hamt.Open(ctx, b, hamt.Bytes, victim)
	if err != nil {
		t.Fatal(err)
	}
	file, err := m.GetPointer(ctx, "file")
	if err != nil || file.Prefix().Codec != uint64(multicodec.DagPb) {
		t.Fatalf("the value is %s (%v), want a UnixFS file", file, err)
	}
	h := hamt.Blake3([]byte("x"))
	raw := cid.NewCidV1(uint64(multicodec.Raw), file.Hash())
	odd := testdag.SaveNode(t, b, map[int][]byte{int(h[0]): testdag.Bucket(testdag.Entry("x", raw))})
	if err := b.SetName(ctx, "a-first", odd); err != nil {
		t.Fatal(err)
	}
	if err := b.SetName(ctx, "victim", victim); err != nil {
		t.Fatal(err)
	}
	if _, err := b.GC(ctx); err != nil {
		t.Fatal(err)
	}
	gcCheckMap(t, b, victim, victimKV)
}

// An encrypted dataset's values (sealed bytes, one of them over a file chunk and so a UnixFS
// file) are all reached by the mark: after GC every value decrypts whole.
func TestGCKeepsAnEncryptedDatasetWhole(t *testing.T) {
	ctx := context.Background()
	b := boltOpen(t, boltTempPath(t))
	m, err := hamt.New(ctx, b, hamt.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	key := bytes.Repeat([]byte{7}, 32)
	s, err := hamt.NewEncryptedZarrStore(m, key, []byte("header"))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][]byte{
		"zarr.json": []byte(`{"zarr_format":3,"node_type":"group"}`),
		"a/c/0":     bytes.Repeat([]byte("big chunk;"), hamt.DefaultFileChunk/10+10),
		"a/c/1":     []byte("small chunk"),
	}
	for k, v := range want {
		if err := s.Set(ctx, k, v); err != nil {
			t.Fatal(err)
		}
	}
	root, err := s.Flush(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.SetName(ctx, "secret", root); err != nil {
		t.Fatal(err)
	}
	gcMap(t, b, gcKV("gone", 20, 100))
	if rep, err := b.GC(ctx); err != nil || rep.BlocksRemoved == 0 {
		t.Fatalf("GC = %+v, %v", rep, err)
	}
	m2, err := hamt.Open(ctx, b, hamt.Bytes, root)
	if err != nil {
		t.Fatal(err)
	}
	s2, err := hamt.NewEncryptedZarrStore(m2, key, []byte("header"))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range want {
		got, err := s2.Get(ctx, k, hamt.ByteRange{})
		if err != nil || !bytes.Equal(got, v) {
			t.Fatalf("%s after GC: %d bytes, %v; want %d", k, len(got), err, len(v))
		}
	}
}
