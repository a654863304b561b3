package main

import (
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

func (a *app) statsCommand() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "stats ROOT",
		Short: "Describe the dataset at ROOT: keys, nodes, depth, bucket fill (HAMT); arrays, shards, fill (sharded)",
		Long: `Stats describes the dataset at ROOT. Of a HAMT: its keys, distinct values and their bytes, nodes,
depth with nodes per depth, buckets and their fill, links. Of a sharded root: its version, then per
array its path, shape, chunk shape, chunks per shard, shards (total and non-null) and the chunks
present out of the grid's, then the totals.

With --json it writes one JSON object: "root", "layout" ("hamt" or "sharded"), then of a HAMT
"keys", "values", "value_bytes", "nodes", "node_bytes", "depth", "nodes_at_depth" (a list),
"buckets", "bucket_fill" (buckets by keys held, [0] unused), "mean_fill", "max_bucket", "links";
of a sharded root "version", "arrays" (each "path", "shape", "chunk_shape", "chunks_per_shard",
"shards", "stored_shards", "chunks", "grid_chunks"), and the totals "shards", "stored_shards",
"chunks", "grid_chunks".`,
		Example: `  hamt stats $ROOT
  hamt stats --json $ROOT | jq .keys`,
		Args: args(1, 1),
		RunE: func(cmd *cobra.Command, argv []string) error {
			return a.onRoot(cmd, argv[0], false, func(root cid.Cid, z hamt.ZarrDataset, st *store) error {
				r, err := zarrStats(cmd.Context(), st.cas, root, z)
				if err != nil {
					return err
				}
				if asJSON {
					return writeJSON(a.stdout, r)
				}
				return r.writeText(a.stdout)
			})
		},
	}
	addJSONFlag(cmd, &asJSON, "one JSON object")
	return cmd
}

// diffLine is one change diff --json writes: the key, what happened to it, and the CIDs of its
// value before and after (each absent where the key is).
type diffLine struct {
	Change string `json:"change"` // "added", "removed" or "modified"
	Key    string `json:"key"`
	OldCID string `json:"old_cid,omitempty"`
	NewCID string `json:"new_cid,omitempty"`
}

func (a *app) diffCommand() *cobra.Command {
	var asJSON, exitCode bool
	cmd := &cobra.Command{
		Use:   "diff ROOT ROOT",
		Short: "List the keys added, removed and changed from the first dataset to the second",
		Long: `Diff prints one line per key that differs, sorted by key: "+ KEY" (added), "- KEY"
(removed) or "~ KEY" (changed: its value is another block). Between two HAMT roots it walks only
the subtrees whose CIDs differ. A sharded root (on either side) is compared by listing both
datasets whole, key by key, the value's CID; so a HAMT root and its conversion to the sharded
layout differ only by the keys the conversion added (parent groups) or rewrote.

With --json the output is JSON Lines, one object per key, sorted by key: "change" ("added",
"removed" or "modified"), "key", and the value's CIDs "old_cid" and "new_cid" (each left out
where the key is absent). With --exit-code the exit status says whether the datasets differ, as
git diff --exit-code does: 1 if any key differs, 0 if none does; an error is never 1 then: 4 if a
root, or a block of one, is not in the store, 2 for a usage error, else 6.`,
		Example: `  hamt diff $ROOT $ROOT2
  hamt diff --json $ROOT $ROOT2 | jq -r 'select(.change == "added") | .key'
  hamt diff --exit-code $ROOT $ROOT2 >/dev/null || echo "the datasets differ"`,
		Args: args(2, 2),
		RunE: func(cmd *cobra.Command, argv []string) (err error) {
			defer func() { err = diffExitError(exitCode, err) }()
			ra, err := a.resolveRoot(cmd.Context(), argv[0])
			if err != nil {
				return err
			}
			rb, err := a.resolveRoot(cmd.Context(), argv[1])
			if err != nil {
				return err
			}
			return a.withZarr(cmd.Context(), ra, false, func(za hamt.ZarrDataset, st *store) error {
				zb, err := openZarr(cmd.Context(), st, rb)
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
				if err := a.printChanges(changes, asJSON); err != nil {
					return err
				}
				if exitCode && len(changes) > 0 {
					return &exitError{code: exitFailure} // the datasets differ: nothing more to say
				}
				return nil
			})
		},
	}
	addJSONFlag(cmd, &asJSON, "JSON Lines (one object per key)")
	cmd.Flags().BoolVar(&exitCode, "exit-code", false, "exit with status 1 if the datasets differ, 0 if they do not")
	return cmd
}

// printChanges writes a diff's changes, as text or JSON Lines.
func (a *app) printChanges(changes []hamt.Change, asJSON bool) error {
	sign := map[hamt.ChangeKind]string{hamt.Added: "+", hamt.Removed: "-", hamt.Modified: "~"}
	name := map[hamt.ChangeKind]string{hamt.Added: "added", hamt.Removed: "removed", hamt.Modified: "modified"}
	str := func(c cid.Cid) string {
		if !c.Defined() {
			return ""
		}
		return c.String()
	}
	for _, c := range changes {
		var err error
		if asJSON {
			err = writeJSON(a.stdout, diffLine{Change: name[c.Kind], Key: c.Key, OldCID: str(c.Old), NewCID: str(c.New)})
		} else {
			_, err = fmt.Fprintf(a.stdout, "%s %s\n", sign[c.Kind], c.Key)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// carReport is what car export and car import say with --json: the roots, the blocks and bytes
// of the CAR, and the file written or the store the blocks went to.
type carReport struct {
	Root   string   `json:"root,omitempty"`  // export: the root exported
	Roots  []string `json:"roots,omitempty"` // import: the CAR's roots
	Blocks int      `json:"blocks"`
	Bytes  int64    `json:"bytes"`           // the CAR's size
	File   string   `json:"file,omitempty"`  // export: the CAR written (absolute path)
	Store  string   `json:"store,omitempty"` // import: where the blocks went
}

// countingWriter counts the bytes written through it.
type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

func (a *app) carCommand() *cobra.Command {
	var exportJSON, importJSON bool
	car := &cobra.Command{
		Use:   "car",
		Short: "Export a map to a CAR file, or import one",
		Example: `  hamt car export $ROOT ds.car && ipfs dag import ds.car
  hamt --store other.bolt car import ds.car`,
		Args: noSubcommand,
		RunE: showHelp,
	}
	export := &cobra.Command{
		Use:   "export ROOT FILE",
		Short: "Write every block reachable from ROOT to FILE as a CARv1 (for ipfs dag import)",
		Long: `Export writes every block reachable from ROOT (nodes, values, every block of a value stored as a
UnixFS file), each verified, to FILE as a CARv1. The CAR is written to a temporary file beside FILE
and renamed into place only when complete: a failed export (a missing or corrupt block, a
malformed tree) leaves FILE as it was. From Kubo the CAR is the gateway's, streamed in one request
(?format=car&dag-scope=all) and checked block by block as it arrives: every block hashes to its
CID, is linked from the blocks before it and comes once, and none is missing at the end (the
map's shape is not checked: hamt car import does that).

It says on standard error how many blocks it wrote, and where; with --json it writes one JSON
object instead: "root", "blocks", "bytes" (the CAR's size) and "file" (its absolute path).`,
		Example: `  hamt car export $ROOT ds.car
  hamt car export --json $ROOT ds.car      # {"root":"bafy…","blocks":31,"bytes":5210,"file":"/…/ds.car"}`,
		Args: args(2, 2),
		RunE: func(cmd *cobra.Command, argv []string) error {
			return a.onRoot(cmd, argv[0], false, func(root cid.Cid, _ hamt.ZarrDataset, st *store) error {
				var n int
				var size int64
				err := writeFileAtomically(argv[1], func(w io.Writer) (err error) {
					cw := &countingWriter{w: w}
					n, err = writeCAR(cmd.Context(), st, root, cw)
					size = cw.n
					return err
				})
				if err != nil {
					return err
				}
				if exportJSON {
					return writeJSON(a.stdout, carReport{Root: root.String(), Blocks: n, Bytes: size, File: absPath(argv[1])})
				}
				fmt.Fprintf(a.stderr, "wrote %d blocks (%s) to %s\n", n, byteSize(size), argv[1])
				return nil
			})
		},
	}
	addJSONFlag(export, &exportJSON, "one JSON object")
	car.AddCommand(export)
	var carName string
	imp := &cobra.Command{
		Use:   "import FILE",
		Short: "Store every block of a CAR file and print its roots",
		Long: `Import checks the whole CAR first: that it is complete, that every block matches its CID, that it
names roots and holds them and everything they reach (every node and value of a map, every block
of a value stored as a UnixFS file). Only then does it store the blocks and print the roots; a CAR
that fails a check stores nothing. Onto Kubo the blocks go in one dag/import stream and the roots
are pinned. It says on standard error how many blocks it stored and where (the bbolt file, or the
Kubo daemon's RPC API); with --json it writes one JSON object instead of the roots: "roots" (a
list), "blocks", "bytes" (the CAR's size) and "store".`,
		Example: `  ROOT=$(hamt car import ds.car | tail -1)
  hamt --store fresh.bolt car import --json ds.car | jq -r '.roots[0]'`,
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
			st, err := a.openStore(true, true) // a missing bbolt file is created
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
			// A regular file is read in place (ReadCAR seeks in it); anything else is copied
			// through, and counted on the way.
			cr := &carCounter{r: f}
			var src io.Reader = cr
			if fi, err := f.Stat(); err == nil && fi.Mode().IsRegular() {
				src, cr.n = f, fi.Size()
			}
			roots, n, err := hamt.ReadCAR(cmd.Context(), bp, src)
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
			fmt.Fprintf(a.stderr, "imported %d blocks (%s)\nstored in %s\n", n, byteSize(cr.n), st.where)
			if importJSON {
				rep := carReport{Roots: []string{}, Blocks: n, Bytes: cr.n, Store: st.where}
				for _, r := range roots {
					rep.Roots = append(rep.Roots, r.String())
				}
				return writeJSON(a.stdout, rep)
			}
			for _, r := range roots {
				if _, err := fmt.Fprintln(a.stdout, r); err != nil {
					return err
				}
			}
			return nil
		},
	}
	addJSONFlag(imp, &importJSON, "one JSON object")
	car.AddCommand(imp)
	imp.Flags().StringVar(&carName, "name", "", "name the CAR's root (bbolt store; see hamt roots)")
	return car
}

// carCounter counts the bytes of a CAR read through it.
type carCounter struct {
	r io.Reader
	n int64
}

func (c *carCounter) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
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

// diffExitError is the error diff returns: with --exit-code, status 1 says the datasets differ,
// so a failure that would exit 1 (a store that is not there, a block missing, a damaged one)
// exits 4 when a block or root is not there, else 6 (2 is for usage errors only).
func diffExitError(exitCode bool, err error) error {
	var ee *exitError
	var ue *usageError
	if !exitCode || err == nil || errors.As(err, &ee) || errors.As(err, &ue) {
		return err
	}
	if errors.Is(err, hamt.ErrMissingBlock) || errors.Is(err, hamt.ErrNotFound) {
		return notFound(err)
	}
	return &exitError{exitDiffFail, err}
}
