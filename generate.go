// go generate ./... rebuilds testdata/zarr, the Zarr v3 test hierarchy, with internal/zarrgen.

package hamt

//go:generate go run ./internal/zarrgen -out testdata/zarr
