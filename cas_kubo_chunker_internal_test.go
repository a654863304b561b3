package hamt

import (
	"bytes"
	"testing"

	chunk "github.com/ipfs/boxo/chunker"
)

// checkKuboChunker is judged by boxo's chunk.FromString, which it replaces.

var kuboChunkerSeeds = []string{
	"", "default", "size-1", "size-262144", "size-1048576", "size-2096896", "size-2096897", "size-0",
	"size--1", "size-+5", "size-", "size", "size-1-2", "size-x", "size-99999999999999999999",
	"rabin", "rabin-0", "rabin-262144", "rabin-1397930", "rabin-1397931", "rabin-x", "rabin-1-2",
	"rabin-16-32-64", "rabin-15-32-64", "rabin-min:16-avg:32-max:64", "rabin-max:16-avg:32-max:64",
	"rabin-16-avg:32-min:64", "rabin-32-32-64", "rabin-16-64-64", "rabin-16-32-2096897",
	"rabin-a:b:16-32-64", "rabin-1-2-3-4", "buzhash", "buzhash-anything", "Size-4", "size-4 ", "-",
}

func checkChunkerAgrees(t *testing.T, s string) {
	err := checkKuboChunker(s)
	_, want := chunk.FromString(bytes.NewReader(nil), s)
	if (err != nil) != (want != nil) {
		t.Fatalf("checkKuboChunker(%q) = %v; boxo: %v", s, err, want)
	}
}

func TestKuboChunkerCheckAgreesWithBoxo(t *testing.T) {
	for _, s := range kuboChunkerSeeds {
		checkChunkerAgrees(t, s)
	}
}

// FuzzKuboChunkerAgreesWithBoxo: any chunker string is accepted exactly when boxo accepts it.
func FuzzKuboChunkerAgreesWithBoxo(f *testing.F) {
	for _, s := range kuboChunkerSeeds {
		f.Add(s)
	}
	f.Fuzz(checkChunkerAgrees)
}
