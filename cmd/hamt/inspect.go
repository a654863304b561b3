package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/hamt-go/hamt"
	"github.com/ipfs/go-cid"
	"github.com/spf13/cobra"
)

// printStats writes the statistics of the flushed map at root.
func printStats(ctx context.Context, w io.Writer, cas hamt.CAS, root cid.Cid) error {
	st, err := hamt.Inspect(ctx, cas, root, true)
	if err != nil {
		return err
	}
	var depths, fill []string
	for d, n := range st.NodesAtDepth {
		depths = append(depths, fmt.Sprintf("%d:%d", d, n))
	}
	for k, n := range st.BucketFill {
		if n > 0 {
			fill = append(fill, fmt.Sprintf("%d:%d", k, n))
		}
	}
	_, err = fmt.Fprintf(w, `keys          %d
values        %d distinct, %s
nodes         %d, %s
depth         %d (nodes per depth %s)
buckets       %d, mean %.2f keys, largest %d (buckets by keys %s)
links         %d
`, st.Keys, st.Values, byteSize(st.ValueBytes), st.Nodes, byteSize(st.NodeBytes), len(st.NodesAtDepth)-1,
		strings.Join(depths, " "), st.Buckets, st.AvgFill, st.MaxBucket, strings.Join(fill, " "), st.Links)
	return err
}

func (a *app) statsCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "stats ROOT",
		Short: "Describe the dataset at ROOT: keys, nodes, depth, bucket fill (HAMT); arrays, shards, fill (sharded)",
		Long: `Stats describes the dataset at ROOT. Of a HAMT: its keys, distinct values and their bytes, nodes,
depth with nodes per depth, buckets and their fill, links. Of a sharded root: its version, then per
array its path, shape, chunk shape, chunks per shard, shards (total and non-null) and the chunks
present out of the grid's, then the totals.`,
		Args: args(1, 1),
		RunE: func(cmd *cobra.Command, argv []string) error {
			return a.onRoot(cmd, argv[0], false, func(root cid.Cid, z hamt.ZarrDataset, st *store) error {
				return printZarrStats(cmd.Context(), a.stdout, st.cas, root, z)
			})
		},
	}
}

func (a *app) diffCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "diff ROOT ROOT",
		Short: "List the keys added, removed and changed from the first dataset to the second",
		Long: `Diff prints one line per key that differs, sorted by key: "+ KEY" (added), "- KEY"
(removed) or "~ KEY" (changed: its value is another block). Between two HAMT roots it walks only
the subtrees whose CIDs differ. A sharded root (on either side) is compared by listing both
datasets whole, key by key, the value's CID; so a HAMT root and its conversion to the sharded
layout differ only by the keys the conversion added (parent groups) or rewrote.`,
		Args: args(2, 2),
		RunE: func(cmd *cobra.Command, argv []string) error {
			ra, err := a.resolveRoot(cmd.Context(), argv[0])
			if err != nil {
				return err
			}
			rb, err := a.resolveRoot(cmd.Context(), argv[1])
			if err != nil {
				return err
			}
			return a.withZarr(cmd.Context(), ra, false, func(za hamt.ZarrDataset, st *store) error {
				zb, err := hamt.OpenZarr(cmd.Context(), st.cas, rb)
				if err != nil {
					return err
				}
				diff := hamt.DiffZarr(cmd.Context(), za, zb)
				if isHAMT(za) && isHAMT(zb) {
					diff = hamt.Diff(cmd.Context(), st.cas, ra, rb)
				}
				var changes []hamt.Change
				for c, err := range diff {
					if err != nil {
						return err
					}
					changes = append(changes, c)
				}
				slices.SortFunc(changes, func(x, y hamt.Change) int { return strings.Compare(x.Key, y.Key) })
				sign := map[hamt.ChangeKind]string{hamt.Added: "+", hamt.Removed: "-", hamt.Modified: "~"}
				for _, c := range changes {
					if _, err := fmt.Fprintf(a.stdout, "%s %s\n", sign[c.Kind], c.Key); err != nil {
						return err
					}
				}
				return nil
			})
		},
	}
}

func (a *app) carCommand() *cobra.Command {
	car := &cobra.Command{
		Use:   "car",
		Short: "Export a map to a CAR file, or import one",
		Args:  noSubcommand,
		RunE:  showHelp,
	}
	car.AddCommand(&cobra.Command{
		Use:   "export ROOT FILE",
		Short: "Write every block reachable from ROOT to FILE as a CARv1 (for ipfs dag import)",
		Long: `Export writes every block reachable from ROOT (nodes, values, every block of a value stored as a
UnixFS file), each verified, to FILE as a CARv1. The CAR is written to a temporary file beside FILE
and renamed into place only when complete: a failed export (a missing or corrupt block, a
malformed tree) leaves FILE as it was. From Kubo the CAR is the gateway's, streamed in one request
(?format=car&dag-scope=all) and checked block by block as it arrives: every block hashes to its
CID, is linked from the blocks before it and comes once, and none is missing at the end (the
map's shape is not checked: hamt car import does that).`,
		Args: args(2, 2),
		RunE: func(cmd *cobra.Command, argv []string) error {
			return a.onRoot(cmd, argv[0], false, func(root cid.Cid, _ hamt.ZarrDataset, st *store) error {
				var n int
				err := writeFileAtomically(argv[1], func(w io.Writer) (err error) {
					n, err = writeCAR(cmd.Context(), st, root, w)
					return err
				})
				if err != nil {
					return err
				}
				fmt.Fprintf(a.stderr, "wrote %d blocks to %s\n", n, argv[1])
				return nil
			})
		},
	})
	var carName string
	carImport := &cobra.Command{
		Use:   "import FILE",
		Short: "Store every block of a CAR file and print its roots",
		Long: `Import checks the whole CAR first: that it is complete, that every block matches its CID, that it
names roots and holds them and everything they reach (every node and value of a map, every block
of a value stored as a UnixFS file). Only then does it store the blocks and print the roots; a CAR
that fails a check stores nothing. Onto Kubo the blocks go in one dag/import stream and the roots
are pinned.`,
		Args: args(1, 1),
		RunE: func(cmd *cobra.Command, argv []string) (err error) {
			if err := a.checkNameFlag(carName); err != nil {
				return err
			}
			f, err := os.Open(argv[0])
			if err != nil {
				return err
			}
			defer f.Close()
			st, err := a.open(true)
			if err != nil {
				return err
			}
			defer func() {
				if cerr := st.close(); err == nil {
					err = cerr
				}
			}()
			bw, err := bulkWriter(cmd.Context(), st)
			if err != nil {
				return err
			}
			defer bw.close()
			bp, ok := bw.cas.(hamt.BlockPutter)
			if !ok {
				return fmt.Errorf("this store cannot import blocks by CID")
			}
			roots, n, err := hamt.ReadCAR(cmd.Context(), bp, f)
			if err != nil {
				return err
			}
			if err := bw.commit(cmd.Context()); err != nil {
				return err
			}
			if carName != "" && len(roots) != 1 {
				return fmt.Errorf("--name names one root, and the CAR has %d (its blocks are stored)", len(roots))
			}
			for _, r := range roots {
				if err := a.pinRoot(cmd.Context(), st, cid.Undef, r); err != nil {
					return err
				}
			}
			fmt.Fprintf(a.stderr, "imported %d blocks\n", n)
			for _, r := range roots {
				if _, err := fmt.Fprintln(a.stdout, r); err != nil {
					return err
				}
			}
			return nil
		},
	}
	carImport.Flags().StringVar(&carName, "name", "", "name the CAR's root (bbolt store; see hamt roots)")
	car.AddCommand(carImport)
	return car
}

// writeFileAtomically writes path through write: into a new temporary file in path's directory,
// synced and renamed over path only when write succeeds, removed otherwise. A reader of path sees
// the old file or the whole new one, never a partial one. The file gets the mode os.Create gives
// (0666 less the umask); a symbolic link at path is replaced, not written through.
func writeFileAtomically(path string, write func(io.Writer) error) (err error) {
	var tmp *os.File
	for try := 0; ; try++ {
		name := filepath.Join(filepath.Dir(path), fmt.Sprintf(".%s.%d.tmp", filepath.Base(path), rand.Uint32()))
		tmp, err = os.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o666)
		if err == nil || !errors.Is(err, fs.ErrExist) || try == 9 {
			break
		}
	}
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if err := write(tmp); err != nil {
		return err
	}
	if err := tmp.Sync(); err != nil {
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
