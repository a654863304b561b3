package main

import (
	"fmt"
	"io"

	"github.com/hamt-go/hamt"
	"github.com/spf13/cobra"
)

// verifyJSON is the --json output of verify: one object.
type verifyJSON struct {
	Root      string        `json:"root"`
	OK        bool          `json:"ok"`
	Layout    string        `json:"layout"`
	Nodes     int           `json:"nodes"`
	Keys      int           `json:"keys"`
	Values    int           `json:"values"`
	Bytes     int64         `json:"bytes"`
	Problems  []problemJSON `json:"problems"`
	Warnings  []problemJSON `json:"warnings"`
	Truncated int           `json:"truncated"`
}

type problemJSON struct {
	Kind    string `json:"kind"`
	Path    string `json:"path"`
	CID     string `json:"cid"`
	Message string `json:"message"`
}

func problemsJSON(ps []hamt.VerifyProblem) []problemJSON {
	out := make([]problemJSON, 0, len(ps))
	for _, p := range ps {
		j := problemJSON{Kind: string(p.Kind), Path: p.Path, Message: p.Message}
		if p.CID.Defined() {
			j.CID = p.CID.String()
		}
		out = append(out, j)
	}
	return out
}

// printProblem writes one problem or warning as a line of verify's text output.
func printProblem(w io.Writer, p hamt.VerifyProblem) {
	what := "problem"
	if p.Warning {
		what = "warning"
	}
	fmt.Fprintf(w, "%s %s at %s: %s\n", what, p.Kind, p.Path, p.Message)
}

func (a *app) verifyCommand() *cobra.Command {
	var asJSON bool
	var maxProblems, bucket int
	cmd := &cobra.Command{
		Use:   "verify ROOT",
		Short: "Check every block of the dataset at ROOT and report what is wrong with it",
		Long: `Verify reads the whole dataset at ROOT, every block it reaches, and reports every fault it
finds rather than stopping at the first. For a HAMT: each node present, hashing to its CID, in
canonical DAG-CBOR, its buckets sorted and within --bucket-size, each key on its own hash path, no
node reached twice, no empty node below the root. For a sharded root: the root consistent with its
arrays' grids, each shard present, hashing right and of the right length, nothing past the grid.
For both, every value (chunks, metadata) present and hashing to its CID, and a value stored as a
UnixFS file complete with the sizes its nodes claim.

A subtree that py-hamt 3.5's canonical deletes would have folded into its parent's bucket is a
warning, not a problem: trees written by py-hamt 3.4 or older (or with --legacy-deletes) have them
after deletes, and read correctly.

Each problem is printed as it is found, up to --max-problems of them and as many warnings (the
others are counted), then a summary. --json writes one JSON object instead: {"root", "ok",
"layout", "nodes", "keys", "values", "bytes", "problems": [{"kind", "path", "cid", "message"}],
"warnings": [...], "truncated"}. Kinds are stable strings (missing_block, hash_mismatch,
malformed_node, noncanonical_encoding, unsorted_bucket, key_off_path, node_reached_twice,
empty_node, node_too_deep, bucket_too_large, malformed_value, malformed_root, malformed_shard,
chunk_out_of_grid; the warning uncollapsed_subtree). A path is the key, a HAMT node's slots from
the root ("/3/250"; "/" is the root), or a sharded array's shard.

Exit status: 0 when the dataset passed (warnings allowed), 5 when problems were found, 4 when
ROOT is not in the store, 1 when the store failed (an I/O error: nothing is known of the data).`,
		Example: `  hamt verify bafyr4igb3js3dqlnsvmbi533lhghfet3l4r35vbi7mlrvxjb6f3n5wkc3m
  hamt --store era5.bolt verify --json --max-problems 20 "$ROOT" | jq '.problems[].kind'
  hamt verify --bucket-size 8 "$ROOT" || echo "damaged: exit $?"`,
		Args: args(1, 1),
		RunE: func(cmd *cobra.Command, argv []string) (err error) {
			root, err := a.resolveRoot(cmd.Context(), argv[0])
			if err != nil {
				return err
			}
			st, err := a.openStore(false, false)
			if err != nil {
				return err
			}
			defer func() {
				if cerr := st.close(); err == nil {
					err = cerr
				}
			}()
			opts := []hamt.Option{hamt.WithBucketSize(bucket), hamt.WithMaxProblems(maxProblems)}
			if !asJSON {
				shown := map[bool]int{}
				opts = append(opts, hamt.WithProblemFunc(func(p hamt.VerifyProblem) {
					if shown[p.Warning] < maxProblems {
						shown[p.Warning]++
						printProblem(a.stdout, p)
					}
				}))
			}
			rep, err := hamt.Verify(cmd.Context(), st.cas, root, opts...)
			if err != nil {
				return err
			}
			if asJSON {
				out := verifyJSON{Root: root.String(), OK: rep.OK(), Layout: rep.Layout, Nodes: rep.Nodes, Keys: rep.Keys,
					Values: rep.Values, Bytes: rep.Bytes, Problems: problemsJSON(rep.Problems), Warnings: problemsJSON(rep.Warnings),
					Truncated: rep.Truncated}
				if err := writeJSON(a.stdout, out); err != nil {
					return err
				}
			} else {
				if rep.Truncated > 0 {
					fmt.Fprintf(a.stdout, "... and %d more not shown\n", rep.Truncated)
				}
				status := "ok"
				if !rep.OK() {
					status = "FAILED"
				}
				_, err := fmt.Fprintf(a.stdout, "%s: %s layout, %d nodes, %d keys, %d values, %s read; %d problems, %d warnings\n",
					status, layoutName(rep.Layout), rep.Nodes, rep.Keys, rep.Values, byteSize(rep.Bytes), rep.ProblemCount, rep.WarningCount)
				if err != nil {
					return err
				}
			}
			switch {
			case rep.Layout == "" && rep.ProblemCount == 1 && len(rep.Problems) == 1 && rep.Problems[0].Kind == hamt.ProblemMissingBlock:
				return notFound(fmt.Errorf("root %s is not in the store", root))
			case !rep.OK():
				return &exitError{exitProblems, fmt.Errorf("verify: %d problems in %s", rep.ProblemCount, root)}
			}
			return nil
		},
	}
	f := cmd.Flags()
	addJSONFlag(cmd, &asJSON, "the report as one JSON object")
	f.IntVar(&maxProblems, "max-problems", hamt.DefaultMaxProblems, "problems (and warnings) to print; the others are counted")
	f.IntVar(&bucket, "bucket-size", hamt.DefaultBucketSize, "hamt layout: the bucket size the dataset was written with")
	cmd.PreRunE = func(cmd *cobra.Command, _ []string) error {
		if maxProblems < 0 {
			return &usageError{fmt.Errorf("--max-problems must not be negative, got %d", maxProblems)}
		}
		return positiveFlags("bucket-size")(cmd, nil)
	}
	return cmd
}

// layoutName names a layout for verify's summary.
func layoutName(l string) string {
	if l == "" {
		return "unknown"
	}
	return l
}
