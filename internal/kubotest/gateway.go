package kubotest

import (
	"net/http"
	"time"

	"github.com/ipfs/boxo/gateway"
	"github.com/prometheus/client_golang/prometheus"
)

// Kubo's gateway defaults (docs/config.md: Gateway.RetrievalTimeout, Gateway.MaxConcurrentRequests).
const (
	kuboRetrievalTimeout      = 30 * time.Second
	kuboMaxConcurrentRequests = 4096
)

// newGatewayHandler builds the gateway the way Kubo's corehttp does: boxo's path handler behind
// its hostname handler, over a blocks backend on the node's blockservice, with CORS headers.
func (s *Server) newGatewayHandler() (http.Handler, error) {
	// A registry per server: boxo registers its metrics, and two servers in one test process must
	// not collide on the default registerer.
	reg := prometheus.NewRegistry()
	backend, err := gateway.NewBlocksBackend(s.bserv, gateway.WithPrometheusRegistry(reg))
	if err != nil {
		return nil, err
	}
	timeout := kuboRetrievalTimeout
	if s.cfg.online > 0 {
		timeout = s.cfg.online
	}
	c := gateway.Config{
		DeserializedResponses: true,
		// Kubo resolves DNSLink names in the Host header by default; here that would send DNS
		// queries off the machine, and tests address the gateway by IP anyway.
		NoDNSLink: true,
		PublicGateways: map[string]*gateway.PublicGateway{
			// Kubo's implicit default: http://localhost:8080/ipfs/CID redirects to CID.ipfs.localhost.
			"localhost": {Paths: []string{"/ipfs", "/ipns"}, UseSubdomains: true, DeserializedResponses: true, NoDNSLink: true},
		},
		RetrievalTimeout:      timeout,
		MaxConcurrentRequests: kuboMaxConcurrentRequests,
		MetricsRegistry:       reg,
	}
	h := gateway.NewHandler(c, backend)
	h = gateway.NewHostnameHandler(c, backend, h)
	return gateway.NewHeaders(nil).ApplyCors().Wrap(h), nil
}
