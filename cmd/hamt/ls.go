package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"slices"
	"strings"

	"github.com/hamt-go/hamt"
	"github.com/ipfs/go-cid"
	"github.com/spf13/cobra"
	"golang.org/x/sync/errgroup"
)

// lsWorkers is how many values ls -l locates at once (each may be a request to Kubo).
const lsWorkers = 16

// lsEntry is one line of ls: a key, or with --dir a directory entry. With --json it is one JSON
// object; Size and CID are set with -l, for keys only.
type lsEntry struct {
	Name string `json:"name,omitempty"` // --dir: the entry's name in the directory listed
	Key  string `json:"key"`            // the whole key (of a directory: its path, no trailing slash)
	Dir  bool   `json:"dir"`            // a directory (--dir only): keys are under Key + "/"
	Size *int64 `json:"size,omitempty"` // -l: the value's size in bytes
	CID  string `json:"cid,omitempty"`  // -l: the CID of the block holding the value
}

func (a *app) lsCommand() *cobra.Command {
	var long, dir, asJSON bool
	cmd := &cobra.Command{
		Use:   "ls [-l] [--dir] ROOT [PREFIX|DIR]",
		Short: "List the keys of ROOT (that start with PREFIX), sorted, or one directory of them",
		Long: `Ls lists the keys of the dataset at ROOT, sorted, one a line: every key, or those that start
with PREFIX (a plain string prefix: "surface/t" matches surface/temp/... and surface/time/...).

With --dir it lists one level, as ls(1) does a directory: the entries of DIR (default the
dataset's root), sorted by name, a directory's name ending in "/". Directories are the
slash-separated prefixes of keys; a key that is not a clean path (empty, "..", "a//b") is not
shown, and a key that is also a directory (a beside a/b) shows as the directory. A DIR that is
not there exits with status 4; a DIR that is a key lists that key.

With -l each line is SIZE CID KEY: the value's size in bytes, the CID of the block that holds it
(a dag-pb CID for a value stored as a UnixFS file), and the key (with --dir the name; a
directory's size and CID are "-").

With --json the output is JSON Lines, one object per key or entry: {"key", "dir"}, with --dir
also "name", and with -l "size" (an integer) and "cid" (a string) for keys.`,
		Example: `  hamt ls $ROOT                            # every key
  hamt ls $ROOT surface/temp/c/            # the keys that start with surface/temp/c/
  hamt ls --dir $ROOT                      # the top level: surface/ zarr.json ...
  hamt ls --dir -l $ROOT surface/temp      # SIZE CID NAME of each entry of surface/temp
  hamt ls -l --json $ROOT | jq -s 'map(.size) | add'   # the bytes of every value`,
		Args: args(1, 2),
		RunE: func(cmd *cobra.Command, argv []string) error {
			return a.onRoot(cmd, argv[0], false, func(root cid.Cid, z hamt.ZarrDataset, _ *store) error {
				ctx := cmd.Context()
				arg := ""
				if len(argv) == 2 {
					arg = argv[1]
				}
				var entries []lsEntry
				var err error
				if dir {
					entries, err = dirEntries(ctx, z, root, arg)
				} else {
					entries, err = prefixEntries(ctx, z, arg)
				}
				if err != nil {
					return err
				}
				if long {
					if err := locate(ctx, z, entries); err != nil {
						return err
					}
				}
				if asJSON {
					for _, e := range entries {
						if err := writeJSON(a.stdout, e); err != nil {
							return err
						}
					}
					return nil
				}
				return a.printEntries(entries, dir, long)
			})
		},
	}
	cmd.Flags().BoolVarP(&long, "long", "l", false, "long format: the size and CID of each value before its key")
	cmd.Flags().BoolVar(&dir, "dir", false, "list one level: the entries of directory DIR (default the root), directories ending in /")
	addJSONFlag(cmd, &asJSON, "JSON Lines (one object per key or entry)")
	return cmd
}

// prefixEntries is every key of z that starts with prefix, sorted.
func prefixEntries(ctx context.Context, z hamt.Zarr, prefix string) ([]lsEntry, error) {
	var keys []string
	for k, err := range z.List(ctx) {
		if err != nil {
			return nil, err
		}
		if strings.HasPrefix(k, prefix) {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	out := make([]lsEntry, len(keys))
	for i, k := range keys {
		out[i] = lsEntry{Key: k}
	}
	return out, nil
}

// dirEntries is the directory dir of z's keys, one level (hamt.NewZarrFS's view of them), or
// the one key dir is.
func dirEntries(ctx context.Context, z hamt.Zarr, root cid.Cid, dir string) ([]lsEntry, error) {
	view, err := hamt.NewZarrFS(ctx, z)
	if err != nil {
		return nil, err
	}
	name := strings.Trim(dir, "/")
	if name == "" {
		name = "."
	}
	des, err := fs.ReadDir(view, name)
	if err != nil {
		if info, serr := fs.Stat(view, name); serr == nil && !info.IsDir() {
			return []lsEntry{{Name: path.Base(name), Key: name}}, nil
		}
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, fs.ErrInvalid) {
			return nil, notFound(fmt.Errorf("no directory %q in %s", dir, root))
		}
		return nil, err
	}
	out := make([]lsEntry, len(des))
	for i, de := range des {
		out[i] = lsEntry{Name: de.Name(), Key: path.Join(name, de.Name()), Dir: de.IsDir()}
	}
	return out, nil
}

// locate sets the size and CID of every key entry, lsWorkers at once.
func locate(ctx context.Context, z hamt.Zarr, entries []lsEntry) error {
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(lsWorkers)
	for i := range entries {
		if entries[i].Dir {
			continue
		}
		g.Go(func() error {
			v, err := z.Open(gctx, entries[i].Key)
			if err != nil {
				return fmt.Errorf("locate %q: %w", entries[i].Key, err)
			}
			size := v.Size()
			entries[i].Size, entries[i].CID = &size, v.CID().String()
			return nil
		})
	}
	return g.Wait()
}

// printEntries writes entries as text: keys (names with dir, a directory's ending in "/"), with
// long their sizes and CIDs in aligned columns before them.
func (a *app) printEntries(entries []lsEntry, dir, long bool) error {
	sizeW, cidW := 1, 1
	for _, e := range entries {
		if e.Size != nil {
			sizeW = max(sizeW, len(fmt.Sprint(*e.Size)))
			cidW = max(cidW, len(e.CID))
		}
	}
	for _, e := range entries {
		name := e.Key
		if dir {
			name = e.Name
		}
		if e.Dir {
			name += "/"
		}
		var err error
		switch {
		case !long:
			_, err = fmt.Fprintln(a.stdout, name)
		case e.Dir:
			_, err = fmt.Fprintf(a.stdout, "%*s  %-*s  %s\n", sizeW, "-", cidW, "-", name)
		default:
			_, err = fmt.Fprintf(a.stdout, "%*d  %-*s  %s\n", sizeW, *e.Size, cidW, e.CID, name)
		}
		if err != nil {
			return err
		}
	}
	return nil
}
