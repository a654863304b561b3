package hamt_test

import (
	"context"
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"

	"github.com/hamt-go/hamt"
	"github.com/hamt-go/hamt/internal/kubotest"
)

// BenchmarkSetLargeValue: Set and Flush of one 64 MiB value into a fresh map: in memory, in a
// fresh BoltCAS file (its commit counted), and through Kubo (kubotest's add over loopback, boxo's
// importer). Each iteration's value differs in every 1 MiB, so no leaf is already stored.
func BenchmarkSetLargeValue(b *testing.B) {
	const size = 64 << 20
	ctx := context.Background()
	data := patterned(size)
	fresh := func(i int) {
		for off := 0; off < size; off += 1 << 20 {
			binary.LittleEndian.PutUint64(data[off:], uint64(i))
		}
	}
	stores := []struct {
		name string
		open func(b *testing.B) (hamt.CAS, func())
	}{
		{"memory", func(*testing.B) (hamt.CAS, func()) { return hamt.NewMemoryCAS(), func() {} }},
		{"bolt", func(b *testing.B) (hamt.CAS, func()) {
			dir := b.TempDir()
			cas, err := hamt.OpenBoltCAS(filepath.Join(dir, "blocks.bolt"))
			if err != nil {
				b.Fatal(err)
			}
			return cas, func() { _ = cas.Close(); _ = os.RemoveAll(dir) }
		}},
		{"kubo", func(b *testing.B) (hamt.CAS, func()) {
			srv := kubotest.New(b)
			return newKubo(b, srv), srv.Close
		}},
	}
	for _, s := range stores {
		b.Run(s.name, func(b *testing.B) {
			b.SetBytes(size)
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				b.StopTimer()
				fresh(i)
				cas, done := s.open(b)
				b.StartTimer()
				m, err := hamt.New(ctx, cas, hamt.Bytes)
				if err != nil {
					b.Fatal(err)
				}
				if err := m.Set(ctx, "v", data); err != nil {
					b.Fatal(err)
				}
				if _, err := m.Flush(ctx); err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				done()
				b.StartTimer()
			}
		})
	}
}
