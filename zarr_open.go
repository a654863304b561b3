package hamt

import (
	"context"
	"errors"
	"fmt"

	"github.com/ipfs/go-cid"
)

// This file tells the Zarr layouts apart by their root block and opens the right store: a tool
// given a root CID needs nothing else to read, serve or copy the dataset.

// Layout is how a Zarr dataset's keys are laid out in blocks.
type Layout uint8

const (
	// LayoutHAMT keeps every key in a HAMT (ZarrStore, EncryptedZarrStore): the root is a HAMT
	// node, a DAG-CBOR list of 256 slots.
	LayoutHAMT Layout = iota + 1
	// LayoutSharded is py-hamt's ShardedZarrStore layout (ShardedZarrStore): the root is a
	// DAG-CBOR map with a manifest_version, chunks found arithmetically in flat lists of CIDs.
	LayoutSharded
)

// String returns the layout's name as ParseLayout reads it: "hamt" or "sharded".
func (l Layout) String() string {
	switch l {
	case LayoutHAMT:
		return "hamt"
	case LayoutSharded:
		return "sharded"
	}
	return fmt.Sprintf("Layout(%d)", uint8(l))
}

// ParseLayout reads a layout's name: "hamt" or "sharded".
func ParseLayout(s string) (Layout, error) {
	switch s {
	case "hamt":
		return LayoutHAMT, nil
	case "sharded":
		return LayoutSharded, nil
	}
	return 0, fmt.Errorf("hamt: unknown layout %q (want hamt or sharded)", s)
}

// ErrUnknownLayout: a root block is neither a HAMT node (a DAG-CBOR list of 256 slots) nor a
// sharded Zarr root (a DAG-CBOR map with a manifest_version): a value's CID given as a root, say.
var ErrUnknownLayout = errors.New("not the root of a Zarr layout")

// hamtRootHeader is how every HAMT node block begins: the CBOR head of a 256-item list.
const hamtRootHeader = "\x99\x01\x00"

// DetectLayout loads the block at root and tells which layout it is the root of, from its first
// bytes: a 256-item list is a HAMT node, a map with manifest_version a sharded root (the store
// checks the rest when it opens it). A root stored as a UnixFS file (Kubo makes one of a block over
// its chunk size) is read as the file. Anything else is ErrUnknownLayout; a root missing from cas
// is ErrMissingBlock.
func DetectLayout(ctx context.Context, cas CAS, root cid.Cid) (Layout, error) {
	b, err := loadValue(ctx, cas, root, ByteRange{}, false)
	if err != nil {
		return 0, fmt.Errorf("hamt: detect layout of %s: %w", root, missingBlock(err))
	}
	l, err := layoutOf(b)
	if err != nil {
		return 0, fmt.Errorf("hamt: detect layout of %s: %w", root, err)
	}
	return l, nil
}

// layoutOf tells the layout of a root block.
func layoutOf(b []byte) (Layout, error) {
	switch {
	case len(b) >= len(hamtRootHeader) && string(b[:len(hamtRootHeader)]) == hamtRootHeader:
		return LayoutHAMT, nil
	case IsShardedRoot(b):
		return LayoutSharded, nil
	}
	what := "a block"
	if len(b) > 0 {
		switch b[0] >> 5 {
		case 4:
			what = "a DAG-CBOR list that is not 256 slots long"
		case 5:
			what = "a DAG-CBOR map without a manifest_version"
			if _, err := DagCBOR.Decode(b); err != nil { // IsShardedRoot says no to a map it cannot read
				what = fmt.Sprintf("a map that is not valid DAG-CBOR (%v)", err)
			}
		default:
			what = "neither a list nor a map"
		}
	}
	return 0, fmt.Errorf("%w: %d-byte root is %s", ErrUnknownLayout, len(b), what)
}

// ZarrDataset is a Zarr store whose contents have an identity: the root CID Flush returns after
// writes. ZarrStore, EncryptedZarrStore and ShardedZarrStore are ZarrDatasets; OpenZarr and
// NewZarr return one of the layout asked or found.
type ZarrDataset interface {
	Zarr
	// Flush writes what is buffered and returns the dataset's root CID.
	Flush(ctx context.Context) (cid.Cid, error)
}

var (
	_ ZarrDataset = (*ZarrStore)(nil)
	_ ZarrDataset = (*EncryptedZarrStore)(nil)
	_ ZarrDataset = (*ShardedZarrStore)(nil)
)

// Flush flushes the store's map and returns its root CID, the dataset's identity.
func (s *ZarrStore) Flush(ctx context.Context) (cid.Cid, error) { return s.m.Flush(ctx) }

// LayoutOption configures OpenZarr, NewZarr and ConvertZarr.
type LayoutOption func(*layoutOptions) error

type layoutOptions struct {
	write   bool
	mapOpts []Option
	shard   []ShardedOption
	copy    []DirOption
}

// WithZarrWrite opens a dataset for writing (OpenZarr opens read-only by default).
func WithZarrWrite() LayoutOption {
	return func(o *layoutOptions) error {
		o.write = true
		return nil
	}
}

// WithMapOptions passes options to the HAMT of a dataset in the HAMT layout opened or made
// (WithBucketSize for a new one, WithVerifyBlocks, WithCacheBytes...).
func WithMapOptions(opts ...Option) LayoutOption {
	return func(o *layoutOptions) error {
		o.mapOpts = append(o.mapOpts, opts...)
		return nil
	}
}

// WithShardedOptions passes options to a ShardedZarrStore opened or made (WithChunksPerShard for
// a new one, WithShardCacheBytes...).
func WithShardedOptions(opts ...ShardedOption) LayoutOption {
	return func(o *layoutOptions) error {
		o.shard = append(o.shard, opts...)
		return nil
	}
}

// WithCopyOptions passes options to the copy ConvertZarr makes (see CopyZarr): WithDirWorkers,
// WithProgress.
func WithCopyOptions(opts ...DirOption) LayoutOption {
	return func(o *layoutOptions) error {
		o.copy = append(o.copy, opts...)
		return nil
	}
}

func buildLayoutOptions(opts []LayoutOption) (layoutOptions, error) {
	var o layoutOptions
	for _, opt := range opts {
		if err := opt(&o); err != nil {
			return o, err
		}
	}
	return o, nil
}

// OpenZarr opens the dataset at root in whichever layout its root block says (DetectLayout):
// a *ZarrStore over the HAMT, or a *ShardedZarrStore. It is read-only unless WithZarrWrite is
// given. A root of no layout is ErrUnknownLayout.
func OpenZarr(ctx context.Context, cas CAS, root cid.Cid, opts ...LayoutOption) (ZarrDataset, error) {
	o, err := buildLayoutOptions(opts)
	if err != nil {
		return nil, err
	}
	l, err := DetectLayout(ctx, cas, root)
	if err != nil {
		return nil, err
	}
	return o.open(ctx, cas, root, l)
}

// open opens the dataset at root, of layout l.
func (o layoutOptions) open(ctx context.Context, cas CAS, root cid.Cid, l Layout) (ZarrDataset, error) {
	if l == LayoutSharded {
		sopts := o.shard
		if !o.write {
			sopts = append(sopts[:len(sopts):len(sopts)], WithShardedReadOnly())
		}
		return OpenShardedZarrStore(ctx, cas, root, sopts...)
	}
	m, err := Open(ctx, cas, Bytes, root, o.mapOpts...)
	if err != nil {
		return nil, err
	}
	if o.write {
		if err := m.EnableWrite(ctx); err != nil {
			return nil, err
		}
	}
	return NewZarrStore(m)
}

// NewZarr makes a new, empty, writable dataset of layout l on cas; Flush it once written to get
// its root. A sharded one is written as py-hamt 3.5 writes (sharded_zarr_v2).
func NewZarr(ctx context.Context, cas CAS, l Layout, opts ...LayoutOption) (ZarrDataset, error) {
	o, err := buildLayoutOptions(opts)
	if err != nil {
		return nil, err
	}
	return o.create(ctx, cas, l)
}

func (o layoutOptions) create(ctx context.Context, cas CAS, l Layout) (ZarrDataset, error) {
	switch l {
	case LayoutHAMT:
		m, err := New(ctx, cas, Bytes, o.mapOpts...)
		if err != nil {
			return nil, err
		}
		return NewZarrStore(m)
	case LayoutSharded:
		return NewShardedZarrStore(cas, o.shard...)
	}
	return nil, fmt.Errorf("hamt: new zarr: unknown layout %s", l)
}
