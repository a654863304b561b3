package hamt_test

import (
	"context"
	"fmt"
	"log"

	"github.com/hamt-go/hamt"
)

// A delete folds what is left small back into buckets, so the root after deletes is the root of a
// fresh map of the remaining keys. WithLegacyDeletes gives the root py-hamt 3.3.2 writes instead.
func ExampleMap_Delete() {
	ctx := context.Background()
	cas := hamt.NewMemoryCAS()
	build := func(keys []string, remove string, opts ...hamt.Option) string {
		m, err := hamt.New(ctx, cas, hamt.Bytes, append(opts, hamt.WithBucketSize(1))...)
		if err != nil {
			log.Fatal(err)
		}
		for _, k := range keys {
			if err := m.Set(ctx, k, []byte(k)); err != nil {
				log.Fatal(err)
			}
		}
		if remove != "" {
			if err := m.Delete(ctx, remove); err != nil {
				log.Fatal(err)
			}
		}
		root, err := m.Flush(ctx)
		if err != nil {
			log.Fatal(err)
		}
		return root.String()
	}
	// "5" and "15" share the first byte of their hashes: with bucket size 1 they need a node of
	// their own, which the delete of "15" leaves with one key.
	fresh := build([]string{"5"}, "")
	fmt.Println(build([]string{"5", "15"}, "15") == fresh)
	fmt.Println(build([]string{"5", "15"}, "15", hamt.WithLegacyDeletes()) == fresh)
	// Output:
	// true
	// false
}
