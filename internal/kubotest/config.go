package kubotest

import (
	"net"
	"net/http"
)

// WithGatewayConfig sets what the config command answers for Addresses.Gateway: a multiaddr
// string or a list of them, or nil for a node whose config has none. By default it is the
// multiaddr of the server's own gateway (/ip4/127.0.0.1/tcp/PORT), as a daemon's config names the
// gateway it serves.
func WithGatewayConfig(v any) Option {
	return func(c *config) { c.gatewayConfig, c.gatewayConfigSet = v, true }
}

// configEntry is Kubo's reply to `config KEY` (core/commands/config.go ConfigField).
type configEntry struct {
	Key   string
	Value any
}

// rpcConfig answers Kubo's config command for the keys a client looks up to find the node:
// Addresses.API and Addresses.Gateway. Setting a value is refused; any other key is answered as
// Kubo answers a key its config lacks.
func (s *Server) rpcConfig(w http.ResponseWriter, r *http.Request, c *cmdRequest) {
	args := c.args("key")
	if c.err != nil {
		badRequest(w, c.err)
		return
	}
	if len(args) > 1 {
		writeCmdsError(w, "kubotest: config: setting values is not supported")
		return
	}
	var v any
	switch args[0] {
	case "Addresses.API":
		// The address this request came in on (s.rpc is set once the server already runs).
		if a, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr); ok {
			v = maddr(a.String())
		}
	case "Addresses.Gateway":
		v = maddr(s.gateway.addr)
		if s.cfg.gatewayConfigSet {
			v = s.cfg.gatewayConfig
		}
	}
	if v == nil {
		// Kubo v0.42.0's answer, checked against the daemon.
		writeCmdsError(w, `failed to get config value: "`+args[0]+` not found"`)
		return
	}
	emitOnce(w, configEntry{Key: args[0], Value: v})
}

// maddr is the multiaddr of a 127.0.0.1 host:port.
func maddr(hostPort string) string {
	host, port, _ := net.SplitHostPort(hostPort)
	return "/ip4/" + host + "/tcp/" + port
}
