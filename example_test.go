package hamt_test

import (
	"context"
	"fmt"
	"log"

	"github.com/hamt-go/hamt"
)

// Create a map, set keys, flush it to get the root CID, reopen it read-only and read a key back.
func Example() {
	ctx := context.Background()
	cas := hamt.NewMemoryCAS()

	m, err := hamt.New(ctx, cas, hamt.Bytes)
	if err != nil {
		log.Fatal(err)
	}
	if err := m.Set(ctx, "zarr.json", []byte(`{"zarr_format":3,"node_type":"group"}`)); err != nil {
		log.Fatal(err)
	}
	if err := m.Set(ctx, "temp/c/0/0", []byte{1, 2, 3}); err != nil {
		log.Fatal(err)
	}
	root, err := m.Flush(ctx)
	if err != nil {
		log.Fatal(err)
	}

	r, err := hamt.Open(ctx, cas, hamt.Bytes, root)
	if err != nil {
		log.Fatal(err)
	}
	v, err := r.Get(ctx, "temp/c/0/0")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(root)
	fmt.Println(v)
	// Output:
	// bafyr4idsiwji6mjr26trebox5qtj4uzsgf3bv4ryax5bjmsqymnv2ju7yq
	// [1 2 3]
}

// A map of IPLD values: the same bytes and root CID py-hamt writes for {"foo": "bar"}.
func ExampleNew_dagCBOR() {
	ctx := context.Background()
	m, err := hamt.New(ctx, hamt.NewMemoryCAS(), hamt.DagCBOR)
	if err != nil {
		log.Fatal(err)
	}
	if err := m.Set(ctx, "foo", "bar"); err != nil {
		log.Fatal(err)
	}
	if err := m.MakeReadOnly(ctx); err != nil {
		log.Fatal(err)
	}
	root, _ := m.Root()
	v, _ := m.Get(ctx, "foo")
	fmt.Println(root, v)
	// Output: bafyr4ibeu74josqmscx6kte2pamhzu64g3ki3w3jzazsusqa7iwglaxrka bar
}

// Keys yields every key with an error; stop early by breaking out of the loop.
func ExampleMap_Keys() {
	ctx := context.Background()
	m, _ := hamt.New(ctx, hamt.NewMemoryCAS(), hamt.Bytes)
	for _, k := range []string{"a", "b", "c"} {
		_ = m.Set(ctx, k, []byte(k))
	}
	n := 0
	for _, err := range m.Keys(ctx) {
		if err != nil {
			log.Fatal(err)
		}
		n++
	}
	fmt.Println(n, "keys")
	// Output: 3 keys
}

// All yields every key with its value in one walk of the tree, reading the values ahead; an error
// ends the iteration. The order is that of Keys.
func ExampleMap_All() {
	ctx := context.Background()
	m, _ := hamt.New(ctx, hamt.NewMemoryCAS(), hamt.Bytes)
	for _, k := range []string{"a", "b", "c"} {
		_ = m.Set(ctx, k, []byte("value of "+k))
	}
	values := map[string]string{}
	for e, err := range m.All(ctx) {
		if err != nil {
			log.Fatal(err)
		}
		values[e.Key] = string(e.Value)
	}
	fmt.Println(values)
	// Output: map[a:value of a b:value of b c:value of c]
}

// GetMany looks many keys up at once, overlapping the store's reads; an absent key is reported
// in found, not as an error.
func ExampleMap_GetMany() {
	ctx := context.Background()
	m, _ := hamt.New(ctx, hamt.NewMemoryCAS(), hamt.Bytes)
	_ = m.Set(ctx, "temp/c/0", []byte{1})
	_ = m.Set(ctx, "temp/c/1", []byte{2})
	values, found, err := m.GetMany(ctx, []string{"temp/c/1", "temp/c/9", "temp/c/0"})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(values, found)
	// Output: [[2] [] [1]] [true false true]
}

// Changing a published map: open its root, enable writes, change it, flush to a new root.
func ExampleMap_EnableWrite() {
	ctx := context.Background()
	cas := hamt.NewMemoryCAS()
	m, _ := hamt.New(ctx, cas, hamt.Bytes)
	_ = m.Set(ctx, "a", []byte("1"))
	old, _ := m.Flush(ctx)

	r, _ := hamt.Open(ctx, cas, hamt.Bytes, old)
	if err := r.EnableWrite(ctx); err != nil {
		log.Fatal(err)
	}
	_ = r.Set(ctx, "b", []byte("2"))
	_ = r.Delete(ctx, "b")
	now, _ := r.Flush(ctx)
	fmt.Println(now.Equals(old)) // deleting what was added gives the old root back
	// Output: true
}
