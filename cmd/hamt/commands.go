package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/hamt-go/hamt"
	"github.com/ipfs/go-cid"
	"github.com/spf13/cobra"
)

// app holds the global flags and the standard streams of one run.
type app struct {
	storePath   string
	kuboRPC     string
	kuboGateway []string
	kubo        bool            // --kubo: the daemon ipfs would use
	kuboAPI     string          // --api: the daemon's RPC API multiaddr
	kuboAt      string          // the RPC API the store uses (kuboOptions), to say where data went
	pin         bool            // --pin: pin each new root made through Kubo
	ctx         context.Context // the run's, for the requests that find the daemon (openStore)
	stdin       io.Reader
	stdout      io.Writer
	stderr      io.Writer
	isTerminal  func() bool
	created     *createdStore // the store file this run created, if it did
	logLevel    string        // --log-level
	logFormat   string        // --log-format
	log         *slog.Logger  // from the two, once the flags are read (see logger)
	rootName    string        // the name the command's ROOT was given by, or its --name (names.go)

	tel *hamt.Telemetry // what the stores opened record with (serve --metrics-listen); nil: nothing
}

func newApp(stdin io.Reader, stdout, stderr io.Writer) *app {
	return &app{stdin: stdin, stdout: stdout, stderr: stderr, isTerminal: stderrIsTerminal}
}

func (a *app) rootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:   "hamt [--store PATH | --kubo | --api MULTIADDR | --kubo-rpc URL] [--kubo-gateway URL] COMMAND",
		Short: "Store Zarr v3 datasets in a HAMT on bbolt or IPFS",
		Long: `hamt stores Zarr v3 datasets (and any key-value map) in a Hash Array Mapped Trie on a
content-addressed store, byte-compatible with py-hamt.

The store is an embedded bbolt file (--store, default $HAMT_STORE or store.bolt in the user's data
directory), or IPFS through a Kubo daemon, found as ipfs finds it: --kubo uses the daemon whose
RPC API address is in $IPFS_PATH/api (default ~/.ipfs/api; a running daemon writes it), --api
MULTIADDR names the API as ipfs --api does (/ip4/127.0.0.1/tcp/5001, /dns/HOST/tcp/PORT/https,
/unix/PATH), --kubo-rpc URL by URL. Writes go to the RPC API; reads go to the gateway the node's
config names (Addresses.Gateway: from $IPFS_PATH/config with --kubo, else asked of the daemon),
or to --kubo-gateway URL (give it several times and reads fail over and are hedged across the
gateways, in order). A gateway that cannot be found is an error, never a guess.

Through Kubo, blocks are added unpinned and every root a command prints is pinned recursively
(one pin per dataset): import pins its root; set, rm and convert move the old root's pin to the
new one (pin update, which unpins the old root), or pin the new root when the old one was not
pinned. --pin=false leaves pins as they are; hamt pin ls|add|rm shows and changes them.

import and car import create a missing bbolt file (and its directory), and remove it again when
they fail without storing a block; the other commands refuse a missing one ("no store at PATH").
Commands that make a new root print its CID as the last line of standard output, and say on
standard error where the data went ("stored in PATH"). With --json, ls, stats, diff, import, car
export, car import and version write JSON to standard output instead of text: one object, or for
listings (ls, diff) JSON Lines, one object per line; fields are snake_case, CIDs strings, sizes
integers.

Errors are one line on standard error, starting "hamt: ". Exit status:
  0  success (diff --exit-code: the datasets are the same)
  1  the command failed (diff --exit-code: the datasets differ)
  2  usage error: an unknown command or flag, a wrong number of arguments, an argument that does
     not parse
  3  internal error: a bug in hamt (please report it)
  4  not found: the key (get, rm), the directory (rm -r, ls --dir) or the root is not there
  5  verify found problems in the data
  6  diff --exit-code failed (other than 4): it cannot say whether the datasets differ`,
		Example: `  ROOT=$(hamt import era5.zarr | tail -1)   # into $HAMT_STORE or the default store
  hamt ls --dir $ROOT
  hamt get $ROOT t2m/zarr.json
  hamt --store /data/era5.bolt serve $ROOT
  hamt --kubo import era5.zarr              # onto IPFS through the local Kubo daemon`,
		SilenceUsage:  true,
		SilenceErrors: true,
		Args:          noSubcommand,
		RunE:          showHelp,
	}
	root.SetOut(a.stdout)
	root.SetErr(a.stderr)
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return &usageError{err} })
	pf := root.PersistentFlags()
	pf.StringVar(&a.storePath, "store", "", "bbolt store file (default $HAMT_STORE or the user's data directory)")
	pf.StringVar(&a.kuboRPC, "kubo-rpc", "", "Kubo RPC API URL, e.g. http://127.0.0.1:5001 (use IPFS instead of a bbolt file)")
	pf.StringArrayVar(&a.kuboGateway, "kubo-gateway", nil, "Kubo gateway URL, e.g. http://127.0.0.1:8080 (repeat for several, in order of preference)")
	pf.BoolVar(&a.kubo, "kubo", false, "use the Kubo daemon ipfs uses: the RPC API in $IPFS_PATH/api (default ~/.ipfs/api), the gateway in its config")
	pf.StringVar(&a.kuboAPI, "api", "", "Kubo RPC API multiaddr, as ipfs --api takes it, e.g. /ip4/127.0.0.1/tcp/5001 (implies --kubo)")
	pf.BoolVar(&a.pin, "pin", true, "through Kubo, pin each new root recursively (set, rm, convert move the old root's pin); --pin=false leaves pins alone")
	a.logFlags(pf)
	root.PersistentPreRunE = func(cmd *cobra.Command, argv []string) error {
		a.ctx = cmd.Context()
		if err := a.setupLog(); err != nil {
			return err
		}
		a.logger().Debug("command", "path", cmd.CommandPath(), "args", argv)
		if a.storePath != "" && a.usesKubo() {
			return &usageError{errors.New("--store names a bbolt file and --kubo/--api/--kubo-rpc/--kubo-gateway a daemon: give one or the other")}
		}
		if a.kuboRPC != "" && a.kuboAPI != "" {
			return &usageError{errors.New("--api and --kubo-rpc both name the RPC API: give one")}
		}
		if err := checkKuboFlags(a.kuboRPC, a.kuboAPI, a.kuboGateway); err != nil {
			return &usageError{err}
		}
		return nil
	}
	root.AddCommand(a.importCommand(), a.exportCommand(), a.lsCommand(), a.getCommand(), a.setCommand(),
		a.rmCommand(), a.serveCommand(), a.statsCommand(), a.diffCommand(), a.convertCommand(), a.carCommand(),
		a.pinCommand(), a.versionCommand(), a.verifyCommand(), a.rootsCommand(), a.gcCommand())
	// --version prints what hamt version does.
	v := buildVersion()
	root.Version = v.Version
	root.SetVersionTemplate(v.text())
	return root
}

// noSubcommand refuses arguments to a command that only groups others: they name an unknown
// subcommand (cobra would print the group's help and exit 0, or exit 1).
func noSubcommand(cmd *cobra.Command, a []string) error {
	if len(a) == 0 {
		return nil
	}
	msg := fmt.Sprintf("unknown command %s for %q", shorten(a[0]), cmd.CommandPath())
	cmd.SuggestionsMinimumDistance = 2 // as cobra's own unknown-command error
	if s := cmd.SuggestionsFor(a[0]); len(s) > 0 {
		msg += fmt.Sprintf(" (did you mean %s?)", strings.Join(s, " or "))
	}
	return &usageError{errors.New(msg)}
}

// showHelp is what a group run without a subcommand does.
func showHelp(cmd *cobra.Command, _ []string) error { return cmd.Help() }

// shorten quotes a command-line argument for an error message, cut to 100 bytes.
func shorten(s string) string {
	if len(s) > 100 {
		return fmt.Sprintf("%q… (%d bytes)", s[:100], len(s))
	}
	return fmt.Sprintf("%q", s)
}

// args checks a command's number of arguments, as a usage error.
func args(min, max int) cobra.PositionalArgs {
	return func(cmd *cobra.Command, a []string) error {
		if len(a) < min || len(a) > max {
			return &usageError{fmt.Errorf("%s takes %s, got %d", cmd.Name(), cmd.Use[len(cmd.Name())+1:], len(a))}
		}
		return nil
	}
}

// positiveFlags checks that each named int flag of a command is at least 1, as a usage error.
func positiveFlags(names ...string) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, _ []string) error {
		for _, n := range names {
			if v, err := cmd.Flags().GetInt(n); err == nil && v < 1 {
				return &usageError{fmt.Errorf("--%s must be at least 1, got %d", n, v)}
			}
		}
		return nil
	}
}

// parseRoot reads a root CID argument.
func parseRoot(s string) (cid.Cid, error) {
	c, err := cid.Decode(s)
	if err != nil {
		return cid.Undef, &usageError{fmt.Errorf("%s is not a CID: %w", shorten(s), err)}
	}
	return c, nil
}

// defaultStorePath is $HAMT_STORE, or store.bolt in the user's data directory.
func defaultStorePath() (string, error) {
	if p := os.Getenv("HAMT_STORE"); p != "" {
		return p, nil
	}
	var dir string
	switch {
	case os.Getenv("XDG_DATA_HOME") != "":
		dir = os.Getenv("XDG_DATA_HOME")
	case runtime.GOOS == "windows":
		dir = os.Getenv("LocalAppData")
	case runtime.GOOS == "darwin":
		home, err := os.UserHomeDir()
		if err != nil {
			return "", err
		}
		dir = filepath.Join(home, "Library", "Application Support")
	default:
		home, err := os.UserHomeDir()
		if err != nil {
			return "", err
		}
		dir = filepath.Join(home, ".local", "share")
	}
	if dir == "" {
		return "", errors.New("no data directory: set HAMT_STORE or --store")
	}
	return filepath.Join(dir, "hamt", "store.bolt"), nil
}

// store is an open CAS, how to close it, and where it is (a bbolt file's absolute path, or the
// Kubo daemon's RPC API), to tell the user where the data went.
type store struct {
	cas   hamt.CAS
	close func() error
	where string
}

// openStore opens the store the flags name, for writing or read-only; a missing bbolt file is
// created only if create.
func (a *app) openStore(write, create bool) (*store, error) {
	if a.usesKubo() {
		a.logger().Debug("store", "kind", "kubo", "write", write)
		return a.openKubo(a.ctx, true)
	}
	path := a.storePath
	if path == "" {
		var err error
		if path, err = defaultStorePath(); err != nil {
			return nil, err
		}
	}
	a.logger().Debug("store", "kind", "bolt", "path", path, "write", write)
	return a.openBolt(path, write, create)
}

// onRoot reads arg as a root CID or a name (resolveRoot) and runs fn on the dataset at it, as
// withZarr does.
func (a *app) onRoot(cmd *cobra.Command, arg string, write bool, fn func(cid.Cid, hamt.ZarrDataset, *store) error, opts ...hamt.LayoutOption) error {
	root, err := a.resolveRoot(cmd.Context(), arg)
	if err != nil {
		return err
	}
	return a.withZarr(cmd.Context(), root, write, func(z hamt.ZarrDataset, st *store) error { return fn(root, z, st) }, opts...)
}

// withZarr opens the store and the dataset at root, in the layout its root block says (a HAMT or
// a sharded root; read-only unless write; with opts), runs fn, and closes the store, reporting the
// first error. The store must exist: the root is to be found in it.
func (a *app) withZarr(ctx context.Context, root cid.Cid, write bool, fn func(hamt.ZarrDataset, *store) error, opts ...hamt.LayoutOption) error {
	if write {
		opts = append(opts, hamt.WithZarrWrite())
	}
	return a.withStore(write, false, func(st *store) error {
		z, err := openZarr(ctx, st, root, opts...)
		if err != nil {
			return err
		}
		return fn(z, st)
	})
}

// withStore opens the store (openStore), runs fn on it and closes it, reporting fn's error or
// else the close's.
func (a *app) withStore(write, create bool, fn func(*store) error) (err error) {
	st, err := a.openStore(write, create)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := st.close(); err == nil {
			err = cerr
		}
	}()
	return fn(st)
}

func (a *app) importCommand() *cobra.Command {
	var workers, bucket, perShard int
	var stats, asJSON bool
	var layoutName, into, prefix, name string
	cmd := &cobra.Command{
		Use:   "import [--into ROOT] [--prefix P] DIR",
		Short: "Import a Zarr directory (every regular file), or add it to a dataset, and print the new root",
		Long: `Import stores every regular file under DIR in a new map, keyed by its slash-separated path
relative to DIR, flushes it, and prints the root CID as the last line. With --stats the new map's
statistics are printed before the root. Through Kubo the root is pinned (recursively: the blocks
are added unpinned) unless --pin=false.

Progress goes to standard error, never to standard output: on a terminal (or with --progress) a
bar counts the files and bytes found while DIR is listed, then the files and bytes copied, with
the rate since the copy began and the time left at that rate; then one summary line, the only
output without a terminal or with --no-progress.

DIR must be a directory (if DIR itself is a symbolic link to one, that link is followed). Below
DIR nothing is followed: symbolic links, devices, sockets and pipes are skipped and counted. Each
file is opened relative to DIR and checked to be the regular file the listing saw; a file that is
replaced, removed or written to during the import fails it, naming the file, as does a file name
that is not valid UTF-8. Nothing is printed and no root is made when the import fails.

--layout picks how the keys are laid out in blocks: hamt (the default: every key in a HAMT, as
py-hamt's ZarrHAMTStore) or sharded (py-hamt's ShardedZarrStore, sharded_zarr_v2: each array's
chunk CIDs in flat lists of --chunks-per-shard entries, metadata in the root). Metadata documents
are stored first, parents before children: the sharded layout registers each array from its
zarr.json (or .zarray) and refuses a chunk of an array it does not know. As py-hamt's, it wants
arrays under a group (0/temp, not temp: a directory with arrays beside a root zarr.json is refused;
put the dataset in a subdirectory 0), adds a group zarr.json for every parent of an array that has
none, and removes consolidated_metadata from a root zarr.json when every array sits under a group.
--chunks-per-shard defaults to py-hamt's 6250.

--prefix P stores each file under P/ (the file c/9/0 becomes P/c/9/0). --into ROOT adds the files
to the dataset at ROOT instead of a new one (in ROOT's layout, which --layout cannot change; give
the --bucket-size it was imported with), in one new root, flushed once: with --prefix, that
appends an array, or a time slice of one (its zarr.json with the grown shape, and the new chunks),
without a set per file. A key ROOT already holds is overwritten; the summary says how many keys
were added and how many replaced. A sharded root grows an array whose new zarr.json says so (the
metadata is stored first) and refuses a chunk of an array it does not know. Through Kubo the pin
of ROOT moves to the new root (pin update) unless --pin=false.

The last line on standard error says where the data went (the bbolt file, or the Kubo daemon's RPC
API). With --json, standard output is one JSON object instead of the statistics and the root:
"root", "into" and "prefix" (when given), "files", "bytes", "skipped" (not regular files),
"added", "replaced", "store", and with --stats "stats" (as stats --json writes it).`,
		Example: `  ROOT=$(hamt import era5.zarr | tail -1)
  hamt import --layout sharded --prefix 0 era5.zarr       # py-hamt's sharded layout wants a group
  ROOT2=$(hamt import --into $ROOT --prefix t2m t2m-2025-01.zarr | tail -1)   # append a slice
  hamt import --name era5 era5.zarr && hamt import --into era5 --prefix t2m t2m-2025-02.zarr   # the name moves
  hamt import --json era5.zarr | jq -r .root`,
		Args: args(1, 1),
		RunE: func(cmd *cobra.Command, argv []string) (err error) {
			ctx := cmd.Context()
			var old cid.Cid
			var layout hamt.Layout
			var opts []hamt.LayoutOption
			if into != "" {
				if name != "" {
					return &usageError{errors.New("--name names a new dataset; --into NAME moves the name NAME to the new root")}
				}
				if old, opts, err = a.intoFlags(cmd, into, bucket, perShard); err != nil {
					return err
				}
			} else if layout, opts, err = layoutFlags(cmd, layoutName, bucket, perShard); err != nil {
				return err
			}
			if err := a.checkNameFlag(name); err != nil {
				return err
			}
			st, err := a.openStore(true, into == "")
			if err != nil {
				return err
			}
			defer func() {
				if cerr := st.close(); err == nil {
					err = cerr
				}
			}()
			bw, err := bulkWriter(ctx, st)
			if err != nil {
				return err
			}
			defer bw.close()
			z, err := a.importTarget(ctx, cmd, &store{cas: bw.cas, where: st.where}, old, layout, opts)
			if err != nil {
				return err
			}
			p := newProgress(a.stderr, a.showBar(cmd), "import")
			s, err := hamt.ImportDir(ctx, z, argv[0], hamt.WithDirWorkers(workers), hamt.WithProgress(p.update), hamt.WithKeyPrefix(prefix))
			p.finish(s.Files, s.Bytes, s.Skipped, err)
			if err != nil {
				return err
			}
			root, err := z.Flush(ctx)
			if err != nil {
				return err
			}
			if err := bw.commit(ctx); err != nil {
				return err
			}
			if err := a.pinRoot(ctx, st, old, root); err != nil {
				return err
			}
			return a.reportImport(ctx, st, z, importReport{Root: root.String(), Into: into, Prefix: prefix, Files: s.Files,
				Bytes: s.Bytes, Skipped: s.Skipped, Added: s.Files - s.Replaced, Replaced: s.Replaced, Store: st.where}, stats, asJSON)
		},
	}
	cmd.PreRunE = positiveFlags("workers", "bucket-size")
	cmd.Flags().IntVar(&workers, "workers", 16, "files read and saved at once")
	addLayoutFlags(cmd, &layoutName, &bucket, &perShard)
	addProgressFlags(cmd)
	cmd.Flags().BoolVar(&stats, "stats", false, "print the new dataset's statistics before its root")
	cmd.Flags().StringVar(&into, "into", "", "add the files to the dataset at `ROOT` (keys it holds are overwritten) instead of a new one")
	cmd.Flags().StringVar(&prefix, "prefix", "", "store each file under `P`/ (with --into: where the files go in the dataset)")
	addJSONFlag(cmd, &asJSON, "one JSON object (the root, counts, bytes, store)")
	cmd.Flags().StringVar(&name, "name", "", "name the new root (bbolt store; see hamt roots)")
	return cmd
}

func (a *app) exportCommand() *cobra.Command {
	var workers int
	var replace bool
	cmd := &cobra.Command{
		Use:   "export ROOT DIR",
		Short: "Write every key of ROOT as a file under DIR",
		Long: `Export writes every key of the map at ROOT as a file under DIR, the key's slashes making
subdirectories, so that DIR then holds exactly the dataset.

DIR must not exist (it is created), or be an empty directory; a non-empty DIR (an older export,
say, whose stale chunks a Zarr reader would take for data) is refused unless --replace is given,
which deletes everything DIR held once the new export is completely written. If DIR itself is a
symbolic link to a directory, that link is followed.

Every key is checked before anything is written: a key that cannot be a file name (not a clean
relative path, a NUL byte, an element over 255 bytes, a name the system refuses, a key that
another key needs as a directory) fails the export, naming the key and the reason. Files are
written inside DIR only, never through a symbolic link, into a hidden .hamt-export-* directory
whose entries are moved into place once all are written. An export that fails leaves DIR as it
was; one killed midway can leave the hidden directory, which --replace clears.

Progress goes to standard error: on a terminal (or with --progress) a bar counts the keys listed,
then the files and bytes written, with the rate and the time left (by files: sizes are not known
ahead); then one summary line, the only output without a terminal or with --no-progress.

From Kubo the map's nodes come from the gateway and the values from the RPC API, 500 to a cat
request (their sizes from dag/stat), each written straight into its file and hashed against its
CID. A daemon whose RPC API does not answer dag/stat is read in one gateway request instead, a CAR
stream checked block by block as it arrives, copied into a temporary file ($TMPDIR) as large as
the dataset, removed when the export ends; files are written as their values arrive.`,
		Example: `  hamt export $ROOT era5.zarr
  hamt export --replace $ROOT era5.zarr    # over an older export`,
		Args: args(2, 2),
		RunE: func(cmd *cobra.Command, argv []string) error {
			return a.onRoot(cmd, argv[0], false, func(root cid.Cid, z hamt.ZarrDataset, st *store) error {
				z, done, err := fetchedZarr(cmd.Context(), root, z, st)
				if err != nil {
					return err
				}
				defer done()
				p := newProgress(a.stderr, a.showBar(cmd), "export")
				opts := []hamt.DirOption{hamt.WithDirWorkers(workers), hamt.WithProgress(p.update)}
				if replace {
					opts = append(opts, hamt.WithReplace())
				}
				s, err := hamt.ExportDir(cmd.Context(), z, argv[1], opts...)
				p.finish(s.Files, s.Bytes, 0, err)
				if errors.Is(err, hamt.ErrDirNotEmpty) && !replace {
					return fmt.Errorf("%w; give --replace to replace its contents", err)
				}
				return err
			})
		},
	}
	cmd.PreRunE = positiveFlags("workers")
	cmd.Flags().IntVar(&workers, "workers", 16, "values loaded and written at once")
	addProgressFlags(cmd)
	cmd.Flags().BoolVar(&replace, "replace", false, "replace the contents of a non-empty DIR (deleted once the new export is written)")
	return cmd
}

func (a *app) getCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "get ROOT KEY",
		Short: "Write the value of KEY to standard output",
		Long: `Get writes the value of KEY to standard output, read and written in pieces of at most 1 MiB, so
memory stays bounded whatever the value's size. A value that cannot be read (a block missing or
corrupt) fails before anything is written; should a later piece fail, the command exits 1 after
writing a prefix of the value. A KEY that is not there exits with status 4.`,
		Example: `  hamt get $ROOT surface/temp/zarr.json | jq .shape
  hamt get $ROOT surface/temp/c/0/0 > chunk.bin
  hamt get $ROOT maybe/there >/dev/null 2>&1; [ $? -eq 4 ] && echo "no such key"`,
		Args: args(2, 2),
		RunE: func(cmd *cobra.Command, argv []string) error {
			return a.onRoot(cmd, argv[0], false, func(root cid.Cid, z hamt.ZarrDataset, _ *store) error {
				v, err := z.Open(cmd.Context(), argv[1])
				if err == nil {
					_, err = v.WriteTo(cmd.Context(), a.stdout, hamt.ByteRange{})
				}
				if errors.Is(err, hamt.ErrNotFound) {
					return notFound(fmt.Errorf("no key %q in %s", argv[1], root))
				}
				return err
			})
		},
	}
}

func (a *app) setCommand() *cobra.Command {
	var bucket int
	cmd := &cobra.Command{
		Use:   "set ROOT KEY FILE|-",
		Short: "Set KEY to the bytes of FILE (- for standard input) and print the new root",
		Long: `Set reads the value whole from FILE (- for standard input) before it opens the store, so a
slow producer does not hold the store's lock, then sets KEY to it and prints the new root. A value
larger than the store takes (2 GiB - 2 bytes on a bbolt store) is refused before it is read. On a
HAMT root, give the --bucket-size the dataset was imported with (a root does not record it), so
the new root is the one an import of the same files gives. Through Kubo the pin of ROOT moves to
the new root (pin update; the new root is pinned if ROOT was not) unless --pin=false.`,
		Example: `  ROOT2=$(hamt set $ROOT surface/temp/c/0/0 chunk.bin | tail -1)
  echo '{"zarr_format": 3, "node_type": "group"}' | hamt set $ROOT extra/zarr.json -`,
		Args: args(3, 3),
		RunE: func(cmd *cobra.Command, argv []string) error {
			if err := checkRootArg(argv[0]); err != nil {
				return err
			}
			if err := a.requireStore(); err != nil {
				return err
			}
			v, err := readValue(argv[2], a.stdin, a.valueLimit())
			if err != nil {
				return err
			}
			return a.onRoot(cmd, argv[0], true, func(root cid.Cid, z hamt.ZarrDataset, st *store) error {
				if err := z.Set(cmd.Context(), argv[1], v); err != nil {
					return err
				}
				// The sharded layout ignores a chunk outside its array's grid, as py-hamt does: say
				// so rather than print an unchanged root.
				switch ok, err := z.Exists(cmd.Context(), argv[1]); {
				case err != nil:
					return err
				case !ok:
					return fmt.Errorf("the dataset's layout did not store %q (a chunk outside its array's grid?)", argv[1])
				}
				return a.printFlushed(cmd.Context(), z, st, root)
			}, hamt.WithMapOptions(hamt.WithBucketSize(bucket)))
		},
	}
	cmd.Flags().IntVar(&bucket, "bucket-size", hamt.DefaultBucketSize, "hamt layout: the bucket size the dataset was written with")
	cmd.PreRunE = positiveFlags("bucket-size")
	return cmd
}

func (a *app) rmCommand() *cobra.Command {
	var legacy, recursive, all bool
	var bucket int
	cmd := &cobra.Command{
		Use:   "rm [-r] ROOT KEY|DIR",
		Short: "Remove KEY (or with -r every key under DIR) and print the new root",
		Long: `Rm removes KEY and prints the new root. As py-hamt 3.5 does, every node on KEY's path left with
at most --bucket-size keys (default 4; give the one the dataset was imported with, which a root
does not record) is folded back into a bucket, so the root is the one an import of the remaining
keys with that --bucket-size gives. With --legacy-deletes
nothing is folded, as in py-hamt 3.3.2, whose roots after deletes this reproduces. (On a sharded
root, rm clears the chunk's slot or the metadata key; there is nothing to fold.) Through Kubo the
pin of ROOT moves to the new root (pin update; the new root is pinned if ROOT was not) unless
--pin=false.

With -r, rm removes the directory DIR: every key under DIR/ and the key DIR itself, matched by
whole path elements (rm -r ROOT a/t removes a/t/c/0, not a/temp/c/0), all in one new root, flushed
once; it says on standard error how many keys went. An empty DIR (the whole dataset) is refused:
give rm -r --all ROOT to remove every key. A KEY or DIR that is not there exits with status 4.`,
		Example: `  hamt rm $ROOT surface/temp/c/0/0        # one key
  hamt rm -r $ROOT surface/temp            # the array surface/temp: its zarr.json and chunks
  hamt rm -r $ROOT surface/temp/c/1        # a slice of its chunks
  hamt rm -r --all $ROOT                   # every key: the empty dataset's root`,
		Args: func(cmd *cobra.Command, argv []string) error {
			switch {
			case all && !recursive:
				return &usageError{errors.New("--all is for rm -r")}
			case all && len(argv) != 1:
				return &usageError{fmt.Errorf("rm -r --all takes ROOT, got %d arguments", len(argv))}
			case !all && len(argv) != 2:
				return &usageError{fmt.Errorf("rm takes ROOT KEY (rm -r: ROOT DIR), got %d arguments", len(argv))}
			case recursive && !all && strings.Trim(argv[1], "/") == "":
				return &usageError{fmt.Errorf("rm -r of %q would remove every key: give rm -r --all ROOT", argv[1])}
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, argv []string) error {
			opts := []hamt.LayoutOption{hamt.WithMapOptions(hamt.WithBucketSize(bucket))}
			if legacy {
				opts = append(opts, hamt.WithMapOptions(hamt.WithLegacyDeletes()))
			}
			if recursive {
				dir := ""
				if !all {
					dir = argv[1]
				}
				return a.onRoot(cmd, argv[0], true, func(root cid.Cid, z hamt.ZarrDataset, st *store) error {
					return a.removeAll(cmd.Context(), z, st, root, dir)
				}, opts...)
			}
			return a.onRoot(cmd, argv[0], true, func(root cid.Cid, z hamt.ZarrDataset, st *store) error {
				// Zarr's Delete takes a missing key for done; rm says so instead.
				present, err := z.Exists(cmd.Context(), argv[1])
				if err != nil {
					return err
				}
				if !present {
					return notFound(fmt.Errorf("no key %q in %s", argv[1], root))
				}
				if err := z.Delete(cmd.Context(), argv[1]); err != nil {
					return err
				}
				return a.printFlushed(cmd.Context(), z, st, root)
			}, opts...)
		},
	}
	cmd.Flags().BoolVarP(&recursive, "recursive", "r", false, "remove the directory DIR: every key under DIR/ and DIR itself")
	cmd.Flags().BoolVar(&all, "all", false, "with -r and no DIR: remove every key of ROOT")
	cmd.Flags().BoolVar(&legacy, "legacy-deletes", false, "delete as py-hamt 3.3.2 does: never fold nodes back into buckets")
	cmd.Flags().IntVar(&bucket, "bucket-size", hamt.DefaultBucketSize, "hamt layout: the bucket size the dataset was written with")
	cmd.PreRunE = positiveFlags("bucket-size")
	return cmd
}

// printFlushed flushes z, made from the dataset at old on st, pins its new root (pinRoot) and
// prints it.
func (a *app) printFlushed(ctx context.Context, z hamt.ZarrDataset, st *store, old cid.Cid) error {
	root, err := z.Flush(ctx)
	if err != nil {
		return err
	}
	if err := a.pinRoot(ctx, st, old, root); err != nil {
		return err
	}
	fmt.Fprintf(a.stderr, "stored in %s\n", st.where)
	_, err = fmt.Fprintln(a.stdout, root)
	return err
}

// shutdownGrace is how long serve lets requests in flight finish after SIGINT or SIGTERM before it
// closes their connections.
const shutdownGrace = 5 * time.Second

func (a *app) serveCommand() *cobra.Command {
	var listen, metricsListen string
	var readTimeout, writeTimeout, idleTimeout time.Duration
	cmd := &cobra.Command{
		Use:   "serve ROOT",
		Short: "Serve the keys of ROOT read-only over HTTP for Zarr clients",
		Long: `Serve answers GET and HEAD for every key of ROOT (the URL path is the key), with Range
requests, ETags and immutable caching, so zarr-python (FsspecStore) or zarrita (FetchStore) can open
http://ADDR/ as a Zarr store. Every answer lets pages of any origin read it (CORS), including the
400 or 431 net/http gives by itself to a malformed request or one with headers over 1 MiB. It logs
one record per request to standard error (--log-format text or json): the client's address, the
method, the path, the Range asked for, the status, the bytes sent and the time taken.

Values are read and sent in pieces of at most 1 MiB, so each request holds about that much memory
whatever the size of the value. Clients that hold a connection without using it are dropped:
  --read-timeout   to send a request, headers and body (headers alone get at most 10s)
  --write-timeout  to take each piece of up to 1 MiB of an answer: a slow download that keeps
                   reading goes on, a client that stops reading is dropped
  --idle-timeout   between requests on a kept-alive connection
A timeout of 0 means none.

--metrics-listen ADDR also serves Prometheus metrics at http://ADDR/metrics, on a listener of its
own with the same timeouts: requests (http_server_request_duration_seconds, by method and
status), store loads (hamt_cas_load_requests_total, hamt_cas_load_duration_seconds, by store and
status), the read cache (hamt_cache_hits_total, hamt_cache_misses_total), Kubo retries and gateway
failovers, and the process's own (go_*, process_*). The README's Observability section lists them.

On SIGINT or SIGTERM it stops taking connections, lets requests in flight finish for 5s, then
closes the connections still open and exits 0.`,
		Example: `  hamt serve $ROOT                          # http://127.0.0.1:8000/
  hamt serve --listen 0.0.0.0:8080 $ROOT    # on every interface
  hamt serve --metrics-listen 127.0.0.1:9464 $ROOT   # and metrics at http://127.0.0.1:9464/metrics
  # then, in Python: zarr.open_group("http://127.0.0.1:8000/", mode="r")`,
		Args: args(1, 1),
		RunE: func(cmd *cobra.Command, argv []string) (err error) {
			if metricsListen != "" {
				if err := checkMetricsAddr(metricsListen, listen); err != nil {
					return err
				}
			}
			root, err := a.resolveRoot(cmd.Context(), argv[0])
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			var met *metricsServer // nil: no metrics
			if metricsListen != "" {
				if met, err = newMetrics(ctx, a.logger()); err != nil {
					return err
				}
				defer func() {
					if cerr := met.Close(); err == nil {
						err = cerr
					}
				}()
				a.tel = met.telemetry() // the stores openStore opens record with it
			}
			newServer := func(h http.Handler) *http.Server {
				srv := &http.Server{
					Handler:           h,
					ReadHeaderTimeout: 10 * time.Second,
					ReadTimeout:       readTimeout,
					WriteTimeout:      writeTimeout,
					IdleTimeout:       idleTimeout,
				}
				if readTimeout > 0 {
					srv.ReadHeaderTimeout = min(srv.ReadHeaderTimeout, readTimeout)
				}
				if idleTimeout <= 0 {
					srv.IdleTimeout = -1 // none, rather than net/http's fallback to ReadTimeout
				}
				return srv
			}
			return a.withZarr(ctx, root, false, func(z hamt.ZarrDataset, _ *store) error {
				ln, err := net.Listen("tcp", listen)
				if err != nil {
					return err
				}
				// The store is closed when this function returns: every handler must be done by then.
				var inFlight sync.WaitGroup
				srv := newServer(counted(&inFlight, logRequests(a.logger(), hamt.NewZarrHandler(z, hamt.WithHandlerTelemetry(a.tel)))))
				var metricsURL string
				if met != nil {
					addr, err := met.start(metricsListen, newServer)
					if err != nil {
						_ = ln.Close()
						return err
					}
					metricsURL = fmt.Sprintf("http://%s%s", addr, metricsPath)
				}
				url := fmt.Sprintf("http://%s/", ln.Addr())
				a.notice(ctx, fmt.Sprintf("serving %s on %s", root, url), "serving", slog.String("root", root.String()), slog.String("url", url))
				if met != nil {
					a.notice(ctx, "metrics on "+metricsURL, "metrics", slog.String("url", metricsURL))
				}
				done := make(chan error, 1)
				go func() { done <- srv.Serve(hamt.CORSListener(srv, ln)) }()
				select {
				case err := <-done:
					// Serve failed: kept-alive connections would go on serving, from a store about
					// to close. Close them first.
					_ = srv.Close()
					inFlight.Wait()
					return err
				case <-met.stoppedEarly():
					_ = srv.Close()
					<-done
					inFlight.Wait()
					return met.Err()
				case <-ctx.Done():
				}
				sctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
				defer cancel()
				if err := srv.Shutdown(sctx); err != nil {
					// Clients that stopped reading would hold the shutdown forever.
					a.logger().Warn(fmt.Sprintf("requests still in flight after %s: closing their connections", shutdownGrace))
					_ = srv.Close() // its error is the listener's, already closed by Shutdown
				}
				<-done
				inFlight.Wait()
				if err := met.Close(); err != nil {
					return err
				}
				a.notice(ctx, "stopped", "stopped")
				return nil
			}, hamt.WithMapOptions(hamt.WithTelemetry(a.tel)))
		},
	}
	f := cmd.Flags()
	f.StringVar(&listen, "listen", "127.0.0.1:8000", "address to listen on (host:port; port 0 picks a free one)")
	f.StringVar(&metricsListen, "metrics-listen", "", "also serve Prometheus metrics at http://ADDR/metrics (host:port; port 0 picks a free one; default: none)")
	f.DurationVar(&readTimeout, "read-timeout", 30*time.Second, "time a client has to send a request (0: none)")
	f.DurationVar(&writeTimeout, "write-timeout", 30*time.Second, "time a client has to take each piece of up to 1 MiB of an answer (0: none)")
	f.DurationVar(&idleTimeout, "idle-timeout", 60*time.Second, "time a kept-alive connection may wait for its next request (0: none)")
	return cmd
}

// counted tracks the requests in flight in wg.
func counted(wg *sync.WaitGroup, next http.Handler) http.Handler {
	return http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		wg.Add(1)
		defer wg.Done()
		next.ServeHTTP(rw, r)
	})
}

// statusWriter remembers the status and size of a response.
type statusWriter struct {
	http.ResponseWriter
	status int
	bytes  int64
}

func (w *statusWriter) WriteHeader(s int) { w.status = s; w.ResponseWriter.WriteHeader(s) }

// Unwrap gives http.ResponseController the connection's writer, for the handler's deadlines.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
func (w *statusWriter) Write(b []byte) (int, error) {
	n, err := w.ResponseWriter.Write(b)
	w.bytes += int64(n)
	return n, err
}
