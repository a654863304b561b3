package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"

	"github.com/hamt-go/hamt"
	"github.com/ipfs/go-cid"
	ma "github.com/multiformats/go-multiaddr"
	manet "github.com/multiformats/go-multiaddr/net"
	"github.com/spf13/cobra"
)

// usesKubo reports whether the flags name a Kubo daemon rather than a bbolt file.
func (a *app) usesKubo() bool {
	return a.kubo || a.kuboAPI != "" || a.kuboRPC != "" || len(a.kuboGateway) > 0
}

// checkKuboFlags checks that the --kubo-rpc, --api and --kubo-gateway values given parse, before
// the command touches any store: one that does not is a usage error, not a daemon that failed.
// Making a KuboCAS only parses its options; no request is sent.
func checkKuboFlags(rpc, api string, gateways []string) error {
	var opts []hamt.KuboOption
	if rpc != "" {
		opts = append(opts, hamt.WithKuboRPC(rpc))
	}
	if api != "" {
		opts = append(opts, hamt.WithKuboAPI(api))
	}
	if len(gateways) > 0 {
		opts = append(opts, hamt.WithKuboGateways(gateways...))
	}
	if len(opts) == 0 {
		return nil
	}
	k, err := hamt.NewKuboCAS(opts...)
	if err != nil {
		return err
	}
	return k.Close()
}

// kuboOptions finds the daemon the flags name as ipfs finds its own, and returns the options of a
// store on it. The RPC API is --kubo-rpc, else --api, else the multiaddr a running daemon wrote
// to $IPFS_PATH/api (~/.ipfs/api). The gateways are --kubo-gateway, else (when gateways is set:
// the command reads) the config's Addresses.Gateway: the repository's config file when the API
// came from the repository, else the daemon's answer to `config Addresses.Gateway`. Nothing is
// assumed: a gateway that cannot be found is an error naming the flag to give.
func (a *app) kuboOptions(ctx context.Context, gateways bool) ([]hamt.KuboOption, error) {
	var opts []hamt.KuboOption
	repo := ""
	switch {
	case a.kuboRPC != "":
		opts = append(opts, hamt.WithKuboRPC(a.kuboRPC))
		a.kuboAt = a.kuboRPC
	case a.kuboAPI != "":
		opts = append(opts, hamt.WithKuboAPI(a.kuboAPI))
		a.kuboAt = a.kuboAPI
	default:
		path, err := hamt.KuboRepoPath()
		var api string
		if err == nil {
			api, err = hamt.KuboRepoAPI(path)
		}
		switch {
		case err == nil:
			opts = append(opts, hamt.WithKuboAPI(api))
			a.kuboAt = api
			if localAPI(api) { // an api file naming another host: the daemon there has its own config
				repo = path
			}
		case errors.Is(err, hamt.ErrKuboNotRunning) && len(a.kuboGateway) > 0:
			// Gateways alone, for reading: the RPC API stays hamt.DefaultKuboRPC, as it always has.
			a.kuboAt = hamt.DefaultKuboRPC
		case errors.Is(err, hamt.ErrKuboNotRunning):
			return nil, fmt.Errorf("no Kubo daemon found: %w; start `ipfs daemon`, set IPFS_PATH to its repository, or give --api or --kubo-rpc", err)
		default:
			return nil, fmt.Errorf("find the Kubo daemon: %w", err)
		}
	}
	switch {
	case len(a.kuboGateway) > 0:
		return append(opts, hamt.WithKuboGateways(a.kuboGateway...)), nil
	case !gateways:
		return opts, nil
	}
	if repo != "" {
		if urls, err := hamt.KuboRepoGateways(repo); err == nil {
			return append(opts, hamt.WithKuboGateways(urls...)), nil
		}
	}
	k, err := hamt.NewKuboCAS(opts...)
	if err != nil {
		return nil, err
	}
	defer k.Close()
	urls, err := k.DaemonGateways(ctx)
	if err != nil {
		err = fmt.Errorf("no --kubo-gateway given, and the Kubo daemon did not say where its gateway is: %w; give --kubo-gateway URL", err)
		if errors.As(err, new(net.Error)) || ctx.Err() != nil {
			return nil, err // the daemon is not there: a failure, not the command line's
		}
		return nil, &usageError{err}
	}
	return append(opts, hamt.WithKuboGateways(urls...)), nil
}

// localAPI reports whether the multiaddr api is on this machine: a Unix socket, a loopback or
// unspecified IP, or localhost.
func localAPI(api string) bool {
	m, err := ma.NewMultiaddr(api)
	if err != nil {
		return false
	}
	for _, c := range m {
		switch c.Protocol().Code {
		case ma.P_UNIX:
			return true
		case ma.P_DNS, ma.P_DNS4, ma.P_DNS6:
			return strings.EqualFold(c.Value(), "localhost")
		}
	}
	return manet.IsIPLoopback(m) || manet.IsIPUnspecified(m)
}

// openKubo opens a store on the daemon the flags name; see kuboOptions.
func (a *app) openKubo(ctx context.Context, gateways bool) (*store, error) {
	opts, err := a.kuboOptions(ctx, gateways)
	if err != nil {
		return nil, err
	}
	k, err := hamt.NewKuboCAS(append(opts, hamt.WithKuboTelemetry(a.tel))...)
	if err != nil {
		return nil, err
	}
	return &store{cas: k, close: k.Close, where: "the Kubo daemon at " + a.kuboAt}, nil
}

// pinRoot moves the name of old, if it was given by one, to root (moveName), and pins root, a
// root the command made (from old, or from nothing when old is cid.Undef),
// when the store is a Kubo daemon and --pin is on: by moving old's recursive pin to it (pin
// update: Kubo walks only what changed, and old is unpinned), or when old is not pinned (Kubo
// refuses the update) by pinning root. Blocks are added unpinned; this one recursive pin keeps
// all of them.
func (a *app) pinRoot(ctx context.Context, st *store, old, root cid.Cid) error {
	if err := a.moveName(ctx, st, old, root); err != nil {
		return err
	}
	k, ok := st.cas.(*hamt.KuboCAS)
	if !ok || !a.pin {
		return nil
	}
	if old.Defined() && old != root {
		err := k.PinUpdate(ctx, old, root)
		var ke *hamt.KuboError
		if err == nil {
			return nil
		} else if !errors.As(err, &ke) {
			return fmt.Errorf("move the pin of %s to the new root %s: %w", old, root, err)
		}
	}
	if err := k.Pin(ctx, root); err != nil {
		return fmt.Errorf("pin the new root %s: %w (its blocks are stored but unpinned: `hamt pin add %s` pins them; --pin=false skips pinning)", root, err, root)
	}
	return nil
}

func (a *app) pinCommand() *cobra.Command {
	pin := &cobra.Command{
		Use:   "pin",
		Short: "List, add or remove the recursive pins of a Kubo daemon",
		Long: `Pin manages the recursive pins of the Kubo daemon (--kubo, --api or --kubo-rpc), which keep a root
and every block it reaches through the daemon's garbage collection. Commands that make a root
through Kubo pin it already (see --pin); these are for the rest. A bbolt store keeps every block
and has no pins.`,
		Example: `  hamt --kubo pin ls
  hamt --kubo pin add $ROOT
  hamt --api /ip4/127.0.0.1/tcp/5001 pin rm $ROOT`,
		Args: noSubcommand,
		RunE: showHelp,
	}
	withKubo := func(cmd *cobra.Command, fn func(*hamt.KuboCAS) error) (err error) {
		if !a.usesKubo() {
			return &usageError{errors.New("pins are a Kubo daemon's: give --kubo, --api or --kubo-rpc (a bbolt store keeps every block)")}
		}
		st, err := a.openKubo(cmd.Context(), false)
		if err != nil {
			return err
		}
		defer func() {
			if cerr := st.close(); err == nil {
				err = cerr
			}
		}()
		return fn(st.cas.(*hamt.KuboCAS))
	}
	pin.AddCommand(&cobra.Command{
		Use:     "ls",
		Short:   "List the daemon's recursive pins, one CID a line",
		Example: "  hamt --kubo pin ls",
		Args:    args(0, 0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withKubo(cmd, func(k *hamt.KuboCAS) error {
				pins, err := k.ListPins(cmd.Context())
				if err != nil {
					return err
				}
				for _, p := range pins {
					if _, err := fmt.Fprintln(a.stdout, p); err != nil {
						return err
					}
				}
				return nil
			})
		},
	})
	pin.AddCommand(&cobra.Command{
		Use:     "add ROOT",
		Short:   "Pin ROOT and every block it reaches (recursively)",
		Example: "  hamt --kubo pin add $ROOT",
		Args:    args(1, 1),
		RunE: func(cmd *cobra.Command, argv []string) error {
			root, err := parseRoot(argv[0])
			if err != nil {
				return err
			}
			return withKubo(cmd, func(k *hamt.KuboCAS) error { return k.Pin(cmd.Context(), root) })
		},
	})
	pin.AddCommand(&cobra.Command{
		Use:     "rm ROOT",
		Short:   "Remove the recursive pin of ROOT",
		Example: "  hamt --kubo pin rm $ROOT",
		Args:    args(1, 1),
		RunE: func(cmd *cobra.Command, argv []string) error {
			root, err := parseRoot(argv[0])
			if err != nil {
				return err
			}
			return withKubo(cmd, func(k *hamt.KuboCAS) error { return k.Unpin(cmd.Context(), root) })
		},
	})
	return pin
}
