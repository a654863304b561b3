package main

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/hamt-go/hamt"
	"github.com/ipfs/go-cid"
	"github.com/spf13/cobra"
)

// Named roots and garbage collection: every ROOT argument may be a name of the bbolt store
// (resolveRoot), commands that make a new root from a named one move the name (moveName, from
// pinRoot), and `hamt roots` and `hamt gc` manage names and space.

// checkRootArg checks that s can be a ROOT argument, a CID or a name, before the store is opened.
func checkRootArg(s string) error {
	if _, err := cid.Decode(s); err == nil {
		return nil
	}
	if hamt.ValidName(s) == nil {
		return nil
	}
	_, err := parseRoot(s)
	return err
}

// resolveRoot reads a ROOT argument: a CID, or a name of the bbolt store, which it looks up (a
// name no root has is exit status 4) and remembers, so that a command making a new root from it
// moves the name (moveName).
func (a *app) resolveRoot(ctx context.Context, s string) (cid.Cid, error) {
	if c, err := cid.Decode(s); err == nil {
		return c, nil
	}
	if hamt.ValidName(s) != nil {
		return parseRoot(s)
	}
	if a.usesKubo() {
		return cid.Undef, &usageError{fmt.Errorf("%s is not a CID; names of roots need the embedded store (bbolt), not Kubo", shorten(s))}
	}
	var root cid.Cid
	err := a.withBolt(false, func(b *hamt.BoltCAS) error {
		n, err := b.Name(ctx, s)
		if errors.Is(err, hamt.ErrNameNotFound) {
			return notFound(fmt.Errorf("no root is named %q (hamt roots lists the names)", s))
		}
		root = n.Root
		return err
	})
	if err != nil {
		return cid.Undef, err
	}
	a.rootName = s
	return root, nil
}

// moveName points the name the command's ROOT was given by (resolveRoot), or the --name of an
// import, at root, the root the command made from old (cid.Undef: from nothing): only if the
// name still points at old, so that a move by another run in between is not lost.
func (a *app) moveName(ctx context.Context, st *store, old, root cid.Cid) error {
	if a.rootName == "" {
		return nil
	}
	b, ok := st.cas.(*hamt.BoltCAS)
	if !ok {
		return fmt.Errorf("names of roots need the embedded store (bbolt)")
	}
	if !old.Defined() {
		if err := b.SetName(ctx, a.rootName, root); err != nil {
			return fmt.Errorf("name the new root %s %q: %w", root, a.rootName, err)
		}
		return nil
	}
	if err := b.SwapName(ctx, a.rootName, old, root); err != nil {
		return fmt.Errorf("move the name %q to the new root %s: %w", a.rootName, root, err)
	}
	return nil
}

// checkNameFlag checks a --name flag before anything is done.
func (a *app) checkNameFlag(name string) error {
	if name == "" {
		return nil
	}
	if a.usesKubo() {
		return &usageError{errors.New("--name needs the embedded store (bbolt): Kubo keeps roots by pins")}
	}
	if err := hamt.ValidName(name); err != nil {
		return &usageError{err}
	}
	a.rootName = name
	return nil
}

// withBolt opens the bbolt store (read-only unless write) and runs fn on it.
func (a *app) withBolt(write bool, fn func(b *hamt.BoltCAS) error) error {
	if a.usesKubo() {
		return &usageError{errors.New("names and gc need the embedded store (bbolt); Kubo has pins (hamt pin) and its own gc (ipfs repo gc)")}
	}
	return a.withStore(write, false, func(st *store) error {
		b, ok := st.cas.(*hamt.BoltCAS)
		if !ok {
			return errors.New("this store has no names")
		}
		return fn(b)
	})
}

// rootJSON is one line of `hamt roots --json`.
type rootJSON struct {
	Name    string        `json:"name"`
	Root    string        `json:"root"`
	Set     time.Time     `json:"set"`
	History []versionJSON `json:"history,omitempty"`
}

type versionJSON struct {
	Root string    `json:"root"`
	Set  time.Time `json:"set"`
}

func (a *app) rootsCommand() *cobra.Command {
	var asJSON, history bool
	roots := &cobra.Command{
		Use:   "roots",
		Short: "List the names of roots in the store, or set and remove them",
		Long: `Roots lists every name of the bbolt store with its root and when it was set (UTC), one per line:
NAME ROOT TIME. With --history the roots the name pointed at before follow it, newest first,
indented. With --json each name is one JSON object per line (JSON Lines): {"name", "root", "set",
"history": [{"root", "set"}...]}.

A name is a ref for a root: "hamt import DIR --name NAME" names the root it makes, every command
taking a ROOT takes a NAME, and set, rm and convert on a NAME move it to the new root. The roots
a name pointed at before are kept, as its history, until "hamt roots drop-history". "hamt gc" keeps
what the names and their histories reach and removes everything else. Names are letters, digits,
'.', '_', '-' and '/', and never a CID.`,
		Example: `  hamt import ./era5.zarr --name era5
  hamt set era5 temp/c/0/0 chunk.bin
  hamt roots --history
  hamt roots set era5-2024 bafyr4i...
  hamt roots rm era5-2024
  hamt roots drop-history era5`,
		Args: noSubcommand,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.withBolt(false, func(b *hamt.BoltCAS) error {
				names, err := b.Names(cmd.Context())
				if err != nil {
					return err
				}
				for _, n := range names {
					if asJSON {
						r := rootJSON{Name: n.Name, Root: n.Root.String(), Set: n.Set}
						if history {
							for _, h := range n.History {
								r.History = append(r.History, versionJSON{h.Root.String(), h.Set})
							}
						}
						if err := writeJSON(a.stdout, r); err != nil {
							return err
						}
						continue
					}
					if _, err := fmt.Fprintf(a.stdout, "%s %s %s\n", n.Name, n.Root, n.Set.Format(time.RFC3339)); err != nil {
						return err
					}
					if history {
						for _, h := range n.History {
							if _, err := fmt.Fprintf(a.stdout, "  %s %s\n", h.Root, h.Set.Format(time.RFC3339)); err != nil {
								return err
							}
						}
					}
				}
				return nil
			})
		},
	}
	addJSONFlag(roots, &asJSON, "JSON Lines (one object per name)")
	roots.Flags().BoolVar(&history, "history", false, "list each name's previous roots too")
	roots.AddCommand(&cobra.Command{
		Use:   "set NAME ROOT",
		Short: "Point NAME at ROOT (a CID or another name); its previous root goes to its history",
		Example: `  hamt roots set era5 bafyr4i...
  hamt roots set era5-backup era5`,
		Args: args(2, 2),
		RunE: func(cmd *cobra.Command, argv []string) error {
			if err := hamt.ValidName(argv[0]); err != nil {
				return &usageError{err}
			}
			root, err := a.resolveRoot(cmd.Context(), argv[1])
			if err != nil {
				return err
			}
			return a.withBolt(true, func(b *hamt.BoltCAS) error {
				err := b.SetName(cmd.Context(), argv[0], root)
				if errors.Is(err, hamt.ErrNotFound) {
					return notFound(fmt.Errorf("root %s is not in the store", root))
				}
				return err
			})
		},
	})
	roots.AddCommand(&cobra.Command{
		Use:     "rm NAME...",
		Short:   "Remove names and their histories (the next gc removes what only they kept)",
		Example: `  hamt roots rm scratch old/era5`,
		Args:    args(1, math.MaxInt),
		RunE: func(cmd *cobra.Command, argv []string) error {
			return a.withBolt(true, func(b *hamt.BoltCAS) error {
				for _, name := range argv {
					err := b.DeleteName(cmd.Context(), name)
					if errors.Is(err, hamt.ErrNameNotFound) {
						return notFound(fmt.Errorf("no root is named %q", name))
					}
					if err != nil {
						return err
					}
				}
				return nil
			})
		},
	})
	roots.AddCommand(&cobra.Command{
		Use:   "drop-history [NAME...]",
		Short: "Forget the previous roots of the names given, or of every name",
		Example: `  hamt roots drop-history era5
  hamt roots drop-history && hamt gc`,
		Args: args(0, math.MaxInt),
		RunE: func(cmd *cobra.Command, argv []string) error {
			return a.withBolt(true, func(b *hamt.BoltCAS) error {
				names := argv
				if len(names) == 0 {
					all, err := b.Names(cmd.Context())
					if err != nil {
						return err
					}
					for _, n := range all {
						names = append(names, n.Name)
					}
				}
				dropped := 0
				for _, name := range names {
					n, err := b.DropHistory(cmd.Context(), name)
					if errors.Is(err, hamt.ErrNameNotFound) {
						return notFound(fmt.Errorf("no root is named %q", name))
					}
					if err != nil {
						return err
					}
					dropped += n
				}
				fmt.Fprintf(a.stderr, "dropped %d previous roots of %d names\n", dropped, len(names))
				return nil
			})
		},
	})
	return roots
}

// gcJSON is the output of `hamt gc --json`.
type gcJSON struct {
	Roots         int   `json:"roots"`
	BlocksBefore  int   `json:"blocks_before"`
	BytesBefore   int64 `json:"bytes_before"`
	BlocksRemoved int   `json:"blocks_removed"`
	BytesRemoved  int64 `json:"bytes_removed"`
	BlocksAfter   int   `json:"blocks_after"`
	BytesAfter    int64 `json:"bytes_after"`
	FileBefore    int64 `json:"file_before"`
	FileAfter     int64 `json:"file_after"`
	Compacted     bool  `json:"compacted"`
	DryRun        bool  `json:"dry_run"`
}

func (a *app) gcCommand() *cobra.Command {
	var dryRun, asJSON bool
	cmd := &cobra.Command{
		Use:   "gc [ROOT...]",
		Short: "Remove the blocks no named root (nor ROOT) reaches, and compact the store file",
		Long: `Gc keeps every block that a name's root, a root in a name's history (hamt roots --history), or a
ROOT given reaches, removes every other block from the bbolt store, then compacts the file (a
copy without the free space is written beside it and renamed over it), and prints the space
before and after. Failed or interrupted imports, and the old nodes of every set and rm, are what
it removes; a root nobody named is garbage: name it first (hamt roots set) or give it.

If a kept root is missing a block, or is not a dataset, gc removes nothing and fails, naming it;
so does a gc with no named root and no ROOT given, which would remove every block.
A crash or kill during gc loses nothing a kept root reaches. Other runs wait for the store's lock
while gc holds it. --dry-run counts what would go and removes nothing. --json prints one JSON
object: roots, blocks_before, bytes_before, blocks_removed, bytes_removed, blocks_after,
bytes_after, file_before, file_after (bytes), compacted, dry_run.`,
		Example: `  hamt gc --dry-run
  hamt gc
  hamt gc bafyr4i... --json`,
		Args: args(0, math.MaxInt),
		RunE: func(cmd *cobra.Command, argv []string) error {
			var roots []cid.Cid
			for _, s := range argv {
				r, err := a.resolveRoot(cmd.Context(), s)
				if err != nil {
					return err
				}
				roots = append(roots, r)
			}
			a.rootName = "" // nothing here moves a name
			opts := []hamt.GCOption{hamt.WithGCRoots(roots...)}
			if dryRun {
				opts = append(opts, hamt.WithGCDryRun())
			}
			return a.withBolt(true, func(b *hamt.BoltCAS) error {
				// Nothing kept would be every block removed: a store made before names, whose
				// roots are in scripts and notes, emptied by a gc run to reclaim space.
				if len(roots) == 0 {
					kept, err := b.Names(cmd.Context())
					if err != nil {
						return err
					}
					if len(kept) == 0 {
						return fmt.Errorf("the store %s has no named roots and no ROOT was given: gc would remove every block; name the roots to keep (hamt roots set NAME ROOT) or give them, or delete the file to empty the store", b.Path())
					}
				}
				rep, err := b.GC(cmd.Context(), opts...)
				if err != nil && rep.BlocksRemoved == 0 {
					return err
				}
				var werr error
				if asJSON {
					werr = writeJSON(a.stdout, gcJSON(rep))
				} else {
					verb := "removed"
					if dryRun {
						verb = "would remove"
					}
					_, werr = fmt.Fprintf(a.stdout, "%d roots kept; %s %d of %d blocks (%s of %s); %d blocks (%s) left\nfile %s: %s before, %s after\n",
						rep.Roots, verb, rep.BlocksRemoved, rep.BlocksBefore, byteSize(rep.BytesRemoved), byteSize(rep.BytesBefore),
						rep.BlocksAfter, byteSize(rep.BytesAfter), b.Path(), byteSize(rep.FileBefore), byteSize(rep.FileAfter))
				}
				if err == nil {
					err = werr
				}
				return err
			})
		},
	}
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "count what would be removed; remove nothing")
	addJSONFlag(cmd, &asJSON, "one JSON object")
	return cmd
}
