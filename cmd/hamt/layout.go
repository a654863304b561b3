package main

import (
	"fmt"

	"github.com/hamt-go/hamt"
	"github.com/spf13/cobra"
)

// isHAMT reports whether a dataset is in the HAMT layout.
func isHAMT(z hamt.ZarrDataset) bool {
	_, ok := z.(*hamt.ShardedZarrStore)
	return !ok
}

// percent is " (p %)" of n out of total, or nothing for an empty total.
func percent(n, total int64) string {
	if total == 0 {
		return ""
	}
	return fmt.Sprintf(" (%.1f %%)", 100*float64(n)/float64(total))
}

// addLayoutFlags adds the flags that say how a new dataset is laid out: --layout (unless layout
// is nil), --bucket-size (hamt) and --chunks-per-shard (sharded).
func addLayoutFlags(cmd *cobra.Command, layout *string, bucket, perShard *int) {
	f := cmd.Flags()
	if layout != nil {
		f.StringVar(layout, "layout", "hamt", "how keys are laid out: hamt, or sharded (py-hamt's ShardedZarrStore, v2)")
	}
	f.IntVar(bucket, "bucket-size", 4, "hamt layout: entries per bucket before a node splits (py-hamt's default is 4)")
	f.IntVar(perShard, "chunks-per-shard", 0, "sharded layout: chunk CIDs per shard block (default 6250, py-hamt's)")
}

// layoutFlags reads the flags addLayoutFlags added: the layout and the options of a new dataset
// of it. A flag of the other layout is a usage error.
func layoutFlags(cmd *cobra.Command, name string, bucket, perShard int) (hamt.Layout, []hamt.LayoutOption, error) {
	l, err := hamt.ParseLayout(name)
	if err != nil {
		return 0, nil, &usageError{err}
	}
	f := cmd.Flags()
	switch {
	case l == hamt.LayoutHAMT && f.Changed("chunks-per-shard"):
		return 0, nil, &usageError{fmt.Errorf("--chunks-per-shard is for --layout sharded")}
	case f.Changed("chunks-per-shard") && perShard < 1:
		return 0, nil, &usageError{fmt.Errorf("--chunks-per-shard must be at least 1, got %d", perShard)}
	case l == hamt.LayoutSharded && f.Changed("bucket-size"):
		return 0, nil, &usageError{fmt.Errorf("--bucket-size is for --layout hamt")}
	}
	opts := []hamt.LayoutOption{hamt.WithMapOptions(hamt.WithBucketSize(bucket))}
	if perShard > 0 {
		opts = append(opts, hamt.WithShardedOptions(hamt.WithChunksPerShard(perShard)))
	}
	return l, opts, nil
}

func (a *app) convertCommand() *cobra.Command {
	var workers, bucket, perShard int
	var to string
	cmd := &cobra.Command{
		Use:   "convert ROOT --to hamt|sharded",
		Short: "Copy the dataset at ROOT into the other layout and print the new root",
		Long: `Convert copies every key of the dataset at ROOT (either layout, told from its root block) into a
new dataset of the layout --to names, on the same store, and prints the new root as the last line.
Metadata documents are copied first, parents before children, then the other keys, --workers at
once. Values are not copied: the new dataset points at the very blocks of the old one, so only the
metadata and the new layout's own blocks (HAMT nodes, or shards and a root) are read or written.
Every key of ROOT is then checked to be in the new dataset: a key the sharded layout drops (a chunk
outside its array's grid, as py-hamt ignores one) fails the conversion.

To sharded (py-hamt's ShardedZarrStore, v2): every array gets --chunks-per-shard; a group zarr.json
is added for every parent of an array that lacks one, and consolidated_metadata is removed from a
root zarr.json whose arrays all sit under groups, as py-hamt does. To hamt: the keys as listed (a
chunk in the v3 form path/c/i/j), --bucket-size entries per bucket.

HAMT -> sharded -> HAMT gives back the original root unless the first step added or rewrote keys;
sharded -> HAMT -> sharded gives back the original root with the same --chunks-per-shard, unless
the original holds an all-null shard block (py-hamt leaves one where a delete emptied a shard). A
root converted to the layout it has is laid out again with the flags given, but for a sharded v1
root (py-hamt before 3.5), which --to sharded migrates to v2 as py-hamt's migrate_v1_to_v2 does:
its one index becomes its primary array's, shards kept.

Through Kubo the pin of ROOT moves to the new root (pin update; the new root is pinned if ROOT was
not) unless --pin=false: the values stay pinned through the new root, ROOT's own nodes do not.
On a terminal (or with --progress) a bar counts the keys copied, with the rate and the time left.`,
		Example: `  SROOT=$(hamt convert $ROOT --to sharded --chunks-per-shard 1000 | tail -1)
  hamt convert $SROOT --to hamt              # back: the original root, unless keys were added`,
		Args: args(1, 1),
		RunE: func(cmd *cobra.Command, argv []string) (err error) {
			root, err := a.resolveRoot(cmd.Context(), argv[0])
			if err != nil {
				return err
			}
			if to == "" {
				return &usageError{fmt.Errorf("convert needs --to hamt or --to sharded")}
			}
			layout, opts, err := layoutFlags(cmd, to, bucket, perShard)
			if err != nil {
				return err
			}
			st, err := a.openStore(true, false)
			if err != nil {
				return err
			}
			defer func() {
				if cerr := st.close(); err == nil {
					err = cerr
				}
			}()
			p := newProgress(a.stderr, a.showBar(cmd), "convert")
			var copied hamt.Progress
			update := func(pr hamt.Progress) { copied = pr; p.update(pr) }
			opts = append(opts, hamt.WithCopyOptions(hamt.WithDirWorkers(workers), hamt.WithProgress(update)))
			nroot, err := hamt.ConvertZarr(cmd.Context(), st.cas, root, layout, opts...)
			p.finish(copied.Files, copied.Bytes, 0, err)
			if err != nil {
				return missingRoot(cmd.Context(), st, root, err)
			}
			if err := a.pinRoot(cmd.Context(), st, root, nroot); err != nil {
				return err
			}
			fmt.Fprintf(a.stderr, "stored in %s\n", st.where)
			_, err = fmt.Fprintln(a.stdout, nroot)
			return err
		},
	}
	cmd.PreRunE = positiveFlags("workers", "bucket-size")
	addProgressFlags(cmd)
	cmd.Flags().StringVar(&to, "to", "", "the layout to convert to: hamt or sharded")
	cmd.Flags().IntVar(&workers, "workers", 16, "keys copied at once")
	addLayoutFlags(cmd, nil, &bucket, &perShard)
	return cmd
}
