package hamt

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"github.com/hamt-go/hamt/internal/testdag"
	"github.com/ipfs/go-cid"
)

// TestReadAheadLoadsInPlaceOnlyWhenLoadsAreFast: the first load is measured in place; loads
// measured fast are batched by half the window and done by the caller, with no goroutine; loads
// measured slow go to goroutines in small batches. (The fast case sets the measure: a timing of
// fast loads on a busy machine is anything but fast.)
func TestReadAheadLoadsInPlaceOnlyWhenLoadsAreFast(t *testing.T) {
	load := func(delay time.Duration) func(ctx context.Context, b *valueBatch[int]) {
		return func(ctx context.Context, b *valueBatch[int]) {
			for i := range b.keys {
				time.Sleep(delay)
				b.vals[i] = i + 1
			}
		}
	}
	batch := func(n int) *valueBatch[int] {
		return &valueBatch[int]{keys: make([]string, n), vals: make([]int, n)}
	}

	ra := newReadAhead[int](context.Background(), 32)
	defer ra.stop()
	if ra.batchLen() != 1 || !ra.inline() {
		t.Fatalf("first batch: %d keys, in place %v; want 1 key in place", ra.batchLen(), ra.inline())
	}
	b := batch(1)
	ra.start(b, load(200*time.Microsecond))
	if b.done != nil || b.vals[0] != 1 || ra.take() != b {
		t.Fatalf("the first batch was not loaded in place")
	}
	if ra.inline() || ra.batchLen() != 1 {
		t.Errorf("after a load of 200µs: batches of %d, in place %v; want 1 on a goroutine", ra.batchLen(), ra.inline())
	}
	b = batch(1)
	ra.start(b, load(200*time.Microsecond))
	if b.done == nil {
		t.Errorf("a slow batch was loaded in place")
	}
	if got := ra.take(); got != b || b.vals[0] != 1 {
		t.Errorf("take gave another batch, or before it was loaded")
	}

	ra.nsPerLoad.Store(100)
	if !ra.inline() || ra.batchLen() != 16 {
		t.Errorf("loads of 100ns: batches of %d, in place %v; want 16 in place", ra.batchLen(), ra.inline())
	}
	b = batch(16)
	ra.start(b, load(0))
	if b.done != nil || b.vals[15] != 16 {
		t.Errorf("a fast batch was not loaded in place")
	}
	if !ra.full(17) || ra.full(16) {
		t.Errorf("with 17 keys held of a window of 32, full(17) = %v, full(16) = %v", ra.full(17), ra.full(16))
	}
}

// batchTestCAS is a BatchLoader over a MemoryCAS that has lost one block and damaged another.
type batchTestCAS struct {
	*MemoryCAS
	calls         int
	lost, damaged cid.Cid
}

func (c *batchTestCAS) LoadMany(ctx context.Context, ids []cid.Cid) ([][]byte, error) {
	c.calls++
	out := make([][]byte, len(ids))
	for i, id := range ids {
		if id == c.lost {
			continue
		}
		b, err := c.Load(ctx, id)
		if err != nil {
			return nil, err
		}
		if id == c.damaged {
			b = append(b, '!')
		}
		out[i] = b
	}
	return out, nil
}

// TestValuesLoadsABatchThroughLoadMany: values reads a batch's raw blocks with one LoadMany (a
// UnixFS value among them on its own, absent keys skipped), and reports a block LoadMany does not
// have as ErrMissingBlock and a damaged one as ErrCorrupt (verifying), at the key's index, with
// the values before it loaded.
func TestValuesLoadsABatchThroughLoadMany(t *testing.T) {
	ctx := context.Background()
	mem := NewMemoryCAS()
	kubo := testdag.NewKubo(mem, 64, 4)
	m, err := New(ctx, kubo, Bytes)
	if err != nil {
		t.Fatal(err)
	}
	keys := []string{"a", "b", "absent", "file", "c", "d"}
	want := map[string][]byte{"a": []byte("1"), "b": []byte("2"), "file": bytes.Repeat([]byte("f"), 300), "c": []byte("3"), "d": []byte("4")}
	for k, v := range want {
		if err := m.Set(ctx, k, v); err != nil {
			t.Fatal(err)
		}
	}
	root, err := m.Flush(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ids := make([]cidBytes, len(keys))
	for i, k := range keys {
		if k != "absent" {
			if ids[i], err = m.pointer(ctx, k); err != nil {
				t.Fatal(err)
			}
		}
	}
	if !isDagPb(ids[3]) {
		t.Fatal("the file is not stored as a UnixFS file")
	}
	for _, tc := range []struct {
		name    string
		lost    int
		damaged int
		wantAt  int
		wantErr error
	}{
		{"every block there", -1, -1, 0, nil},
		{"a lost block", 4, -1, 4, ErrMissingBlock},
		{"a damaged block", -1, 1, 1, ErrCorrupt},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := &batchTestCAS{MemoryCAS: mem}
			if tc.lost >= 0 {
				c.lost = ids[tc.lost].cid()
			}
			if tc.damaged >= 0 {
				c.damaged = ids[tc.damaged].cid()
			}
			r, err := Open(ctx, c, Bytes, root, WithVerifyBlocks())
			if err != nil {
				t.Fatal(err)
			}
			vals := make([][]byte, len(keys))
			at, err := r.values(ctx, keys, ids, vals, nil)
			if c.calls != 1 {
				t.Errorf("%d LoadMany calls, want 1", c.calls)
			}
			if !errors.Is(err, tc.wantErr) || err != nil && at != tc.wantAt {
				t.Fatalf("values: %v at %d, want %v at %d", err, at, tc.wantErr, tc.wantAt)
			}
			end := len(keys)
			if err != nil {
				end = at
			}
			for i, k := range keys[:end] {
				if !bytes.Equal(vals[i], want[k]) || (k == "absent") != (vals[i] == nil) {
					t.Errorf("value of %q = %q, want %q", k, vals[i], want[k])
				}
			}
		})
	}
}
