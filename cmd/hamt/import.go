package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/hamt-go/hamt"
	"github.com/ipfs/go-cid"
	"github.com/spf13/cobra"
)

// importReport is what import says of what it stored; --json writes it as one object.
type importReport struct {
	Root     string       `json:"root"`
	Into     string       `json:"into,omitempty"`   // --into: the dataset added to
	Prefix   string       `json:"prefix,omitempty"` // --prefix
	Files    int          `json:"files"`            // files stored
	Bytes    int64        `json:"bytes"`            // their bytes
	Skipped  int          `json:"skipped"`          // entries that are not regular files
	Added    int          `json:"added"`            // keys the dataset did not hold
	Replaced int          `json:"replaced"`         // keys it held, overwritten
	Store    string       `json:"store"`            // where the data went
	Stats    *statsReport `json:"stats,omitempty"`  // --stats
}

// intoFlags reads the flags of import --into: the root added to (a CID or a name, which the new
// root then takes), and the options that open it.
// --layout is ROOT's; --bucket-size and --chunks-per-shard are checked against it once it is open
// (importTarget).
func (a *app) intoFlags(cmd *cobra.Command, into string, bucket, perShard int) (cid.Cid, []hamt.LayoutOption, error) {
	root, err := a.resolveRoot(cmd.Context(), into)
	if err != nil {
		return cid.Undef, nil, err
	}
	if cmd.Flags().Changed("layout") {
		return cid.Undef, nil, &usageError{errors.New("--layout makes a new dataset: --into adds to ROOT in its own layout")}
	}
	if cmd.Flags().Changed("chunks-per-shard") && perShard < 1 {
		return cid.Undef, nil, &usageError{fmt.Errorf("--chunks-per-shard must be at least 1, got %d", perShard)}
	}
	opts := []hamt.LayoutOption{hamt.WithMapOptions(hamt.WithBucketSize(bucket))}
	if perShard > 0 {
		opts = append(opts, hamt.WithShardedOptions(hamt.WithChunksPerShard(perShard)))
	}
	return root, opts, nil
}

// importTarget is the dataset import stores into: the one at old opened for writing (--into), or
// a new one of layout.
func (a *app) importTarget(ctx context.Context, cmd *cobra.Command, st *store, old cid.Cid, layout hamt.Layout, opts []hamt.LayoutOption) (hamt.ZarrDataset, error) {
	if !old.Defined() {
		return hamt.NewZarr(ctx, st.cas, layout, opts...)
	}
	z, err := openZarr(ctx, st, old, append(opts, hamt.WithZarrWrite())...)
	if err != nil {
		return nil, err
	}
	switch f := cmd.Flags(); {
	case isHAMT(z) && f.Changed("chunks-per-shard"):
		return nil, &usageError{fmt.Errorf("--chunks-per-shard is for a sharded dataset; %s is a HAMT", old)}
	case !isHAMT(z) && f.Changed("bucket-size"):
		return nil, &usageError{fmt.Errorf("--bucket-size is for a HAMT dataset; %s is sharded", old)}
	}
	return z, nil
}

// reportImport says what import stored: with asJSON one JSON object (with the statistics if
// stats); else on standard error how many keys were added and replaced (--into) and where the
// data went, and on standard output the statistics (if stats) and the root, last.
func (a *app) reportImport(ctx context.Context, st *store, z hamt.ZarrDataset, r importReport, stats, asJSON bool) error {
	if stats {
		root, err := cid.Decode(r.Root)
		if err != nil {
			return err
		}
		if r.Stats, err = zarrStats(ctx, st.cas, root, z); err != nil {
			return err
		}
	}
	if r.Into != "" {
		fmt.Fprintf(a.stderr, "added %d %s, replaced %d\n", r.Added, plural(r.Added, "key", "keys"), r.Replaced)
	}
	fmt.Fprintf(a.stderr, "stored in %s\n", r.Store)
	if asJSON {
		return writeJSON(a.stdout, r)
	}
	if r.Stats != nil {
		if err := r.Stats.writeText(a.stdout); err != nil {
			return err
		}
	}
	_, err := fmt.Fprintln(a.stdout, r.Root)
	return err
}
