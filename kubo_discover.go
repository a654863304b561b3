package hamt

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	ma "github.com/multiformats/go-multiaddr"
	manet "github.com/multiformats/go-multiaddr/net"
)

// Finding a Kubo daemon as its own tools (ipfs, kubo/client/rpc) do: the repository is $IPFS_PATH
// or ~/.ipfs; a running daemon writes the multiaddr of its RPC API to the repository's api file;
// the gateway listens where the config's Addresses.Gateway says. Multiaddrs are parsed by
// go-multiaddr, and turned into addresses to dial by its net package (manet.DialArgs), as Kubo
// does.

// ErrKuboNotRunning is returned by KuboRepoAPI when the repository has no api file: no daemon is
// running on it (a running daemon writes its RPC API's address there, and removes it on exit).
var ErrKuboNotRunning = errors.New("no Kubo daemon running on the repository (it has no api file)")

// unixHost is the host of the URL of an RPC API on a Unix socket, as Kubo's client names it: the
// store's own transport dials the socket for it.
const unixHost = "unix"

// KuboRepoPath returns the path of the Kubo repository ipfs uses: $IPFS_PATH, else ~/.ipfs.
func KuboRepoPath() (string, error) {
	if p := os.Getenv("IPFS_PATH"); p != "" {
		return p, nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("kubo repository: %w (set IPFS_PATH)", err)
	}
	return filepath.Join(home, ".ipfs"), nil
}

// KuboRepoAPI returns the multiaddr of the RPC API of the daemon running on the repository at
// repo, from the api file the daemon writes there (e.g. "/ip4/127.0.0.1/tcp/5001"), as ipfs finds
// its daemon. With no api file it returns ErrKuboNotRunning. Give the multiaddr to WithKuboAPI.
func KuboRepoAPI(repo string) (string, error) {
	name := filepath.Join(repo, "api")
	f, err := os.Open(name)
	if errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("%s: %w", name, ErrKuboNotRunning)
	}
	if err != nil {
		return "", fmt.Errorf("kubo api file: %w", err)
	}
	defer f.Close()
	// Kubo reads at most 2 KiB of it, and refuses a longer file.
	b, err := io.ReadAll(io.LimitReader(f, 2048))
	if err != nil {
		return "", fmt.Errorf("kubo api file %s: %w", name, err)
	}
	if len(b) == 2048 {
		return "", fmt.Errorf("kubo api file %s: longer than 2 KiB, not an address", name)
	}
	s := strings.TrimSpace(string(b))
	if _, err := ma.NewMultiaddr(s); err != nil {
		return "", fmt.Errorf("kubo api file %s: %q: %w", name, s, err)
	}
	return s, nil
}

// KuboRepoGateways returns the base URLs of the gateways the repository at repo configures
// (Addresses.Gateway of its config file, one multiaddr or a list), an unspecified address
// (0.0.0.0, ::) read as the loopback one. Addresses on Unix sockets are left out; a config with
// no TCP gateway is an error.
func KuboRepoGateways(repo string) ([]string, error) {
	name := filepath.Join(repo, "config")
	f, err := os.Open(name)
	if err != nil {
		return nil, fmt.Errorf("kubo config: %w", err)
	}
	defer f.Close()
	var cfg struct {
		Addresses struct{ Gateway json.RawMessage }
	}
	if err := json.NewDecoder(io.LimitReader(f, 16<<20)).Decode(&cfg); err != nil {
		return nil, fmt.Errorf("kubo config %s: %w", name, err)
	}
	urls, err := gatewayURLs(cfg.Addresses.Gateway)
	if err != nil {
		return nil, fmt.Errorf("kubo config %s: %w", name, err)
	}
	return urls, nil
}

// DaemonGateways asks the daemon's RPC API where its gateway listens (its config's
// Addresses.Gateway, as `ipfs config Addresses.Gateway` does) and returns the gateways' base
// URLs, as KuboRepoGateways does: for a store that knows only the daemon's RPC API. The addresses
// are the daemon's own: when its RPC API is on another host, an unspecified gateway address
// (0.0.0.0, ::) is read as that host, and a loopback one, which only the daemon's machine
// reaches, is left out (an error when nothing else is left), never read as this machine's.
func (k *KuboCAS) DaemonGateways(ctx context.Context) ([]string, error) {
	var answer struct{ Value json.RawMessage }
	if err := k.rpcCall(ctx, "config", url.Values{"arg": {"Addresses.Gateway"}}, &answer); err != nil {
		return nil, err
	}
	urls, err := gatewayURLsOf(answer.Value, remoteHost(k.rpc.base))
	if err != nil {
		return nil, fmt.Errorf("kubo config Addresses.Gateway: %w", err)
	}
	return urls, nil
}

// WithKuboAPI sets the RPC API by its multiaddr, as `ipfs --api` takes it and a daemon writes it
// to $IPFS_PATH/api (KuboRepoAPI): /ip4/HOST/tcp/PORT, /ip6/…, /dns/NAME/tcp/PORT (followed by
// /https or /tls/http for TLS), or /unix/PATH, a Unix socket, which only the store's own HTTP
// client dials (not one given by WithKuboHTTPClient). It replaces WithKuboRPC, and the other way
// round.
func WithKuboAPI(maddr string) KuboOption {
	return func(o *kuboOptions) error {
		u, socket, err := kuboAddrURL(maddr)
		if err != nil {
			return fmt.Errorf("WithKuboAPI(%q): %w", maddr, err)
		}
		o.rpc, o.rpcSocket = u, socket
		return nil
	}
}

// remoteHost returns the host of the RPC API at base when it is on another machine: "" for a
// loopback or unspecified address (dialled as loopback), localhost or a Unix socket.
func remoteHost(base string) string {
	u, err := url.Parse(base)
	if err != nil {
		return ""
	}
	h := u.Hostname()
	if ip := net.ParseIP(h); h == unixHost || strings.EqualFold(h, "localhost") || ip != nil && (ip.IsLoopback() || ip.IsUnspecified()) {
		return ""
	}
	return h
}

// gatewayURLs reads Addresses.Gateway, a multiaddr or a list of them, as base URLs.
func gatewayURLs(raw json.RawMessage) ([]string, error) { return gatewayURLsOf(raw, "") }

// gatewayURLsOf is gatewayURLs for a daemon on host remote ("" for this machine): its unspecified
// addresses are that host, and its loopback ones are left out.
func gatewayURLsOf(raw json.RawMessage, remote string) ([]string, error) {
	var addrs []string
	var one string
	if err := json.Unmarshal(raw, &one); err == nil {
		addrs = []string{one}
	} else if err := json.Unmarshal(raw, &addrs); err != nil {
		return nil, fmt.Errorf("Addresses.Gateway %.100q: not a multiaddr or a list of them", raw)
	}
	var urls []string
	for _, a := range addrs {
		u, socket, err := kuboAddrURLAt(a, remote)
		if err != nil {
			return nil, fmt.Errorf("Addresses.Gateway: %w", err)
		}
		if socket == "" && (remote == "" || remoteHost(u) != "") {
			urls = append(urls, u)
		}
	}
	if len(urls) == 0 && remote != "" {
		return nil, fmt.Errorf("Addresses.Gateway %.100q: no gateway reachable from here (the daemon is on %s, its gateway on its own loopback or a Unix socket)", raw, remote)
	}
	if len(urls) == 0 {
		return nil, fmt.Errorf("Addresses.Gateway %.100q: no gateway on a TCP address", raw)
	}
	return urls, nil
}

// kuboAddrURL turns a multiaddr as Kubo writes them into an http(s) base URL, as Kubo's client
// does: https when it has /https or /tls, an unspecified IP as the loopback one. A Unix socket
// gives the URL http://unix and the socket's path.
func kuboAddrURL(s string) (base, socket string, err error) { return kuboAddrURLAt(s, "") }

// kuboAddrURLAt is kuboAddrURL for an address of host remote ("" for this machine): an
// unspecified IP is read as remote when it is set.
func kuboAddrURLAt(s, remote string) (base, socket string, err error) {
	m, err := ma.NewMultiaddr(strings.TrimSpace(s))
	if err != nil {
		return "", "", fmt.Errorf("%q is not a multiaddr: %w", s, err)
	}
	scheme := "http"
	var dial ma.Multiaddr
	for _, c := range m {
		switch c.Protocol().Code {
		case ma.P_HTTPS, ma.P_TLS:
			scheme = "https"
		case ma.P_HTTP:
		default:
			dial = append(dial, c)
		}
	}
	network, host, err := manet.DialArgs(dial)
	if err != nil {
		return "", "", fmt.Errorf("%q: %w", s, err)
	}
	switch network {
	case "unix":
		return "http://" + unixHost, host, nil
	case "tcp", "tcp4", "tcp6":
	default:
		return "", "", fmt.Errorf("%q is not a TCP or Unix socket address", s)
	}
	h, port, err := net.SplitHostPort(host)
	if err != nil {
		return "", "", fmt.Errorf("%q: %w", s, err)
	}
	if ip := net.ParseIP(h); ip != nil && ip.IsUnspecified() {
		h = "127.0.0.1"
		if ip.To4() == nil {
			h = "::1"
		}
		if remote != "" {
			h = remote
		}
	}
	if i := strings.IndexByte(h, '%'); i >= 0 {
		h = h[:i] + "%25" + url.PathEscape(h[i+1:]) // an IPv6 zone, escaped in a URL (RFC 6874)
	}
	base = scheme + "://" + net.JoinHostPort(h, port)
	// A DNS name may hold what a URL's host cannot (a space, a slash, an @).
	if p, err := url.Parse(base); err != nil || p.Hostname() == "" || p.Port() != port || p.User != nil ||
		p.Path != "" || p.RawQuery != "" || p.Fragment != "" {
		return "", "", fmt.Errorf("%q: %q is no URL's host", s, h)
	}
	return base, "", nil
}

// dialUnixRPC makes a transport dial the Unix socket for the host of an RPC API on one, and
// never send its requests through a proxy.
func dialUnixRPC(tr *http.Transport, socket string) {
	dial := tr.DialContext
	tr.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		if addr == unixHost+":80" {
			var d net.Dialer
			return d.DialContext(ctx, "unix", socket)
		}
		return dial(ctx, network, addr)
	}
	proxy := tr.Proxy
	tr.Proxy = func(r *http.Request) (*url.URL, error) {
		if r.URL.Host == unixHost || proxy == nil {
			return nil, nil
		}
		return proxy(r)
	}
}
