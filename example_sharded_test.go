package hamt_test

import (
	"context"
	"fmt"
	"log"

	"github.com/hamt-go/hamt"
)

// Write a small dataset in py-hamt's sharded layout (v2), flush it to get its root, reopen the root
// read-only and read a chunk back. The array's metadata registers its chunk index, and the store
// adds the metadata of the parent groups ("zarr.json" for "0").
func ExampleShardedZarrStore() {
	ctx := context.Background()
	cas := hamt.NewMemoryCAS()
	store, err := hamt.NewShardedZarrStore(cas, hamt.WithChunksPerShard(4))
	if err != nil {
		log.Fatal(err)
	}
	for key, value := range map[string]string{
		"0/zarr.json": `{"zarr_format":3,"node_type":"group"}`,
		"0/temp/zarr.json": `{"zarr_format":3,"node_type":"array","shape":[4,6],"data_type":"uint8",` +
			`"chunk_grid":{"name":"regular","configuration":{"chunk_shape":[2,2]}},` +
			`"chunk_key_encoding":{"name":"default"},"fill_value":0,"codecs":[{"name":"bytes"}]}`,
	} {
		if err := store.Set(ctx, key, []byte(value)); err != nil {
			log.Fatal(err)
		}
	}
	if err := store.Set(ctx, "0/temp/c/1/2", []byte{1, 2, 3, 4}); err != nil {
		log.Fatal(err)
	}
	root, err := store.Flush(ctx)
	if err != nil {
		log.Fatal(err)
	}

	ro, err := hamt.OpenShardedZarrStore(ctx, cas, root, hamt.WithShardedReadOnly())
	if err != nil {
		log.Fatal(err)
	}
	chunk, err := ro.Get(ctx, "0/temp/c/1/2", hamt.ByteRange{})
	if err != nil {
		log.Fatal(err)
	}
	rootDir, err := ro.ListDir(ctx, "")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(chunk)
	fmt.Println(rootDir) // the single group "0" is where reads outside it go
	for _, a := range ro.Arrays() {
		fmt.Println(a.Path, a.Shape, "in chunks of", a.ChunkShape, "→", a.Shards, "shards,", a.StoredShards, "stored")
	}
	// Output:
	// [1 2 3 4]
	// [temp zarr.json]
	// 0/temp [4 6] in chunks of [2 2] → 2 shards, 1 stored
}
