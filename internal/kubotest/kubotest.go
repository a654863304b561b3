// Package kubotest runs an in-process look-alike of a Kubo node for tests: an RPC server and a
// gateway server on 127.0.0.1, speaking the protocol Kubo v0.42 speaks, so the Kubo store can be
// tested without a daemon installed.
//
// What is real and what is emulated:
//
//   - Real boxo (v0.43.0, the library Kubo is built on): the chunker (chunk.FromString, so size-N,
//     rabin, rabin-min-avg-max and buzhash behave and fail exactly as in Kubo), the UnixFS balanced
//     and trickle importers (helpers.DagBuilderParams with helpers.DefaultLinksPerBlock = 174
//     links per node), the blockstore (over an in-memory datastore, wrapped in an identity store
//     as Kubo does), the blockservice with an offline exchange, the datastore pinner (dspinner),
//     the multipart file reader used by Kubo's RPC (files.NewFileFromPartReader) and the whole
//     gateway: gateway.NewHandler and gateway.NewHostnameHandler over gateway.NewBlocksBackend,
//     with Kubo's defaults (deserialized responses, a 30 s retrieval timeout, 4096 concurrent
//     requests, the "localhost" subdomain gateway). Raw, dag-cbor and dag-pb responses,
//     ?format=raw, ?format=car, Accept negotiation, Range and HEAD are therefore boxo's own.
//   - Emulated, following Kubo's and go-ipfs-cmds' source: the RPC front door (405 for anything but
//     POST with "Allow: OPTIONS, POST", 403 "403 - Forbidden" for any request with an Origin
//     header, 404 "404 page not found" for an unknown command, option-type errors as 400
//     text/plain, command errors as 500 {"Message","Code":0,"Type":"error"}), the commands add,
//     dag/import, pin/add, pin/rm, pin/update, pin/ls, version and config (Addresses.API and
//     Addresses.Gateway, read only) with Kubo's option defaults and reply shapes, and Kubo's
//     API.Authorizations check (403 "Kubo RPC Access Denied: ..."). dag/import reads CARs with
//     go-car as Kubo does (see rpcDagImport for what it leaves out). Kubo has no gateway
//     authentication; with WithBasicAuth or WithBearerToken the gateway answers 401 like a
//     reverse proxy in front of it would.
//   - Not Kubo at all: fault injection (Fault) and request accounting, for testing clients;
//     WithBlockstore, for several servers over one set of blocks (a dataset behind several
//     gateways, each with its own faults).
//
// Add follows Kubo's rules for the CID: the default hash is sha2-256 with CIDv0 and dag-pb leaves;
// any other hash (blake3, as our client sends) implies CIDv1 and raw leaves; cid-version and
// raw-leaves override as in Kubo. A value of at most one chunk therefore comes back as
// CIDv1(raw, blake3(data)) and a larger one as a dag-pb UnixFS file root.
//
// Two deliberate departures from a default Kubo: DNSLink lookups of the Host header are off (they
// would send DNS queries off the machine), and only bare CIDs or /ipfs/CID are accepted as RPC
// path arguments.
//
// A block that is not in the store: the node is offline, so the gateway answers 404 at once, in
// text/plain: "failed to resolve /ipfs/CID: block was not found locally (offline): ipld: could not
// find CID: retrieval: no providers found for the CID (phase: path resolution)" (boxo maps the
// offline exchange's not-found to 404 Not Found); pin/add answers 500 with "pin: block was not
// found locally (offline): ipld: could not find CID". WithOnline makes missing blocks wait like an
// online node that cannot find a provider: the gateway then answers 504 after the retrieval
// timeout, as a real online Kubo does after 30 s.
//
// The gateway does not re-hash what it serves (Kubo's Datastore.HashOnRead is off by default), so
// a block planted with PutRaw under the wrong CID comes back as planted: that is how a client's
// verification of what it reads is tested.
package kubotest

import (
	"context"
	"encoding/base64"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ipfs/boxo/blockservice"
	"github.com/ipfs/boxo/blockstore"
	"github.com/ipfs/boxo/exchange"
	"github.com/ipfs/boxo/exchange/offline"
	"github.com/ipfs/boxo/ipld/merkledag"
	ipfspinner "github.com/ipfs/boxo/pinning/pinner"
	"github.com/ipfs/boxo/pinning/pinner/dspinner"
	blocks "github.com/ipfs/go-block-format"
	"github.com/ipfs/go-cid"
	"github.com/ipfs/go-datastore"
	dssync "github.com/ipfs/go-datastore/sync"
	ipld "github.com/ipfs/go-ipld-format"
)

// Server is a running Kubo look-alike: an RPC server and a gateway server sharing one blockstore
// and one pinner. All methods are safe for concurrent use.
type Server struct {
	cfg config

	blocks  blockstore.Blockstore
	bserv   blockservice.BlockService
	dag     ipld.DAGService
	pinner  ipfspinner.Pinner
	rpc     *endpointServer
	gateway *endpointServer

	faults faultList
	acct   accounting
}

// Option configures a Server in New.
type Option func(*config)

type config struct {
	authorizations []string // exact Authorization header values accepted
	authOn         Endpoint
	online         time.Duration // 0: offline node
	blocks         blockstore.Blockstore
	bodies         bool

	gatewayConfig    any // Addresses.Gateway's value, when gatewayConfigSet (WithGatewayConfig)
	gatewayConfigSet bool
}

// WithBlockstore makes the server keep its blocks in bs instead of a blockstore of its own. Give
// several servers one blockstore (another server's Blockstore()) and they serve the same blocks:
// several gateways in front of one dataset, each with its own faults, accounting and Stop.
func WithBlockstore(bs blockstore.Blockstore) Option {
	return func(c *config) { c.blocks = bs }
}

// WithRequestBodies makes the request log (Log, LastRequest) keep every request's body, for
// tests of what a client uploads (the add's multipart framing).
func WithRequestBodies() Option {
	return func(c *config) { c.bodies = true }
}

// WithBasicAuth makes the server require "Authorization: Basic base64(user:pass)", as Kubo's
// API.Authorizations does with a "basic:user:pass" secret. Several credentials may be configured;
// any one is accepted.
func WithBasicAuth(user, pass string) Option {
	return func(c *config) {
		c.authorizations = append(c.authorizations, "Basic "+base64.StdEncoding.EncodeToString([]byte(user+":"+pass)))
	}
}

// WithBearerToken makes the server require "Authorization: Bearer token", as Kubo's
// API.Authorizations does with a "bearer:token" secret.
func WithBearerToken(token string) Option {
	return func(c *config) { c.authorizations = append(c.authorizations, "Bearer "+token) }
}

// WithAuthOn limits the authentication of WithBasicAuth and WithBearerToken to the given
// endpoints (by default both: RPC answers 403 as Kubo does, the gateway 401 as a proxy would).
func WithAuthOn(e Endpoint) Option {
	return func(c *config) { c.authOn = e }
}

// WithOnline makes the node behave as an online node that cannot find missing blocks: a read of a
// block that is not in the store waits until the request is cancelled, and the gateway gives up
// after retrievalTimeout with 504 Gateway Timeout (Kubo's default is 30 s).
func WithOnline(retrievalTimeout time.Duration) Option {
	return func(c *config) { c.online = retrievalTimeout }
}

// New starts a Server on 127.0.0.1 and registers its Close with t.Cleanup.
func New(t testing.TB, opts ...Option) *Server {
	t.Helper()
	s := &Server{cfg: config{authOn: AnyEndpoint}}
	for _, o := range opts {
		o(&s.cfg)
	}

	ctx := context.Background()
	s.blocks = s.cfg.blocks
	if s.blocks == nil {
		s.blocks = blockstore.NewIdStore(blockstore.NewBlockstore(dssync.MutexWrap(datastore.NewMapDatastore())))
	}
	var exch exchange.Interface = offline.Exchange(s.blocks)
	if s.cfg.online > 0 {
		exch = searchingExchange{exch}
	}
	s.bserv = blockservice.New(s.blocks, exch)
	s.dag = merkledag.NewDAGService(s.bserv)
	p, err := dspinner.New(ctx, dssync.MutexWrap(datastore.NewMapDatastore()), s.dag)
	if err != nil {
		t.Fatalf("kubotest: pinner: %v", err)
	}
	s.pinner = p

	gw, err := s.newGatewayHandler()
	if err != nil {
		t.Fatalf("kubotest: gateway: %v", err)
	}
	// The gateway first: the RPC's config command reads its address.
	s.gateway = startEndpoint(s.account(Gateway, s.withFaults(Gateway, s.withAuth(Gateway, gw))))
	s.rpc = startEndpoint(s.account(RPC, s.withFaults(RPC, s.withAuth(RPC, http.HandlerFunc(s.serveRPC)))))
	t.Cleanup(s.Close)
	return s
}

// RPCURL is the base URL of the RPC server, e.g. "http://127.0.0.1:40123" (no trailing slash).
func (s *Server) RPCURL() string { return s.rpc.url() }

// GatewayURL is the base URL of the gateway server, e.g. "http://127.0.0.1:40124".
func (s *Server) GatewayURL() string { return s.gateway.url() }

// Close shuts both servers down: open connections are cut and Close waits for their handlers to
// return. It is idempotent; New registers it with t.Cleanup.
func (s *Server) Close() {
	s.rpc.close()
	s.gateway.close()
}

// Stop shuts both servers down abruptly: listeners are closed and open connections are cut. Until
// Restart a new connection is refused; a client reusing a kept-alive connection sees it closed
// (EOF or a reset) instead.
func (s *Server) Stop() {
	s.rpc.stop()
	s.gateway.stop()
}

// Restart brings both servers back on the same addresses after Stop, with the same blocks and pins.
func (s *Server) Restart() error {
	if err := s.rpc.restart(); err != nil {
		return err
	}
	return s.gateway.restart()
}

// Blockstore is the node's blockstore, shared by the RPC and the gateway.
func (s *Server) Blockstore() blockstore.Blockstore { return s.blocks }

// Put stores a block as it is, without checking that its bytes match its CID, so a test can also
// plant a corrupt block.
func (s *Server) Put(b blocks.Block) {
	if err := s.blocks.Put(context.Background(), b); err != nil {
		panic("kubotest: put into an in-memory blockstore: " + err.Error()) // unreachable
	}
}

// PutRaw stores data under id without checking that it hashes to id.
func (s *Server) PutRaw(id cid.Cid, data []byte) {
	b, err := blocks.NewBlockWithCid(data, id)
	if err != nil {
		panic("kubotest: " + err.Error()) // only with the u.Debug hash check of go-block-format
	}
	s.Put(b)
}

// Has reports whether the blockstore holds id.
func (s *Server) Has(id cid.Cid) bool {
	ok, err := s.blocks.Has(context.Background(), id)
	return err == nil && ok
}

// Get returns the stored bytes of id.
func (s *Server) Get(id cid.Cid) ([]byte, bool) {
	b, err := s.blocks.Get(context.Background(), id)
	if err != nil {
		return nil, false
	}
	return b.RawData(), true
}

// Delete removes id from the blockstore (to make a block go missing).
func (s *Server) Delete(id cid.Cid) {
	_ = s.blocks.DeleteBlock(context.Background(), id)
}

// Pinned reports how id is pinned: "recursive", "direct", "indirect" or "" when it is not.
func (s *Server) Pinned(id cid.Cid) string {
	how, ok, err := s.pinner.IsPinned(context.Background(), id)
	if err != nil || !ok {
		return ""
	}
	switch how {
	case "recursive", "direct":
		return how
	}
	return "indirect" // boxo names the recursive root it is pinned through
}

// withAuth applies the configured authorizations to endpoint e.
func (s *Server) withAuth(e Endpoint, next http.Handler) http.Handler {
	if len(s.cfg.authorizations) == 0 || s.cfg.authOn&e == 0 {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got := r.Header.Get("Authorization")
		for _, a := range s.cfg.authorizations {
			if got == a {
				next.ServeHTTP(w, r)
				return
			}
		}
		if e == RPC {
			// Kubo's withAuthSecrets (core/corehttp/commands.go).
			http.Error(w, "Kubo RPC Access Denied: Please provide a valid authorization token as defined in the API.Authorizations configuration.", http.StatusForbidden)
			return
		}
		scheme, _, _ := strings.Cut(s.cfg.authorizations[0], " ")
		w.Header().Set("WWW-Authenticate", scheme+` realm="kubotest"`)
		http.Error(w, "401 Unauthorized", http.StatusUnauthorized)
	})
}

// searchingExchange is the exchange of an online node that never finds a provider: a block that
// is not local is waited for until the caller gives up.
type searchingExchange struct{ exchange.Interface }

func (x searchingExchange) GetBlock(ctx context.Context, c cid.Cid) (blocks.Block, error) {
	<-ctx.Done()
	return nil, ctx.Err()
}

func (x searchingExchange) GetBlocks(ctx context.Context, ks []cid.Cid) (<-chan blocks.Block, error) {
	out := make(chan blocks.Block)
	go func() {
		<-ctx.Done()
		close(out)
	}()
	return out, nil
}

// endpointServer is one httptest server that can be stopped abruptly and brought back on the
// same address.
type endpointServer struct {
	handler http.Handler

	mu      sync.Mutex
	addr    string
	current *httptest.Server
	old     []*httptest.Server
	stopped bool
}

func startEndpoint(h http.Handler) *endpointServer {
	srv := httptest.NewServer(h) // listens on 127.0.0.1 only
	return &endpointServer{handler: h, addr: srv.Listener.Addr().String(), current: srv}
}

func (e *endpointServer) url() string { return "http://" + e.addr }

func (e *endpointServer) stop() {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.stopped {
		return
	}
	e.stopped = true
	_ = e.current.Listener.Close()
	e.current.CloseClientConnections()
}

func (e *endpointServer) restart() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if !e.stopped {
		return nil
	}
	l, err := net.Listen("tcp", e.addr)
	if err != nil {
		return err
	}
	srv := httptest.NewUnstartedServer(e.handler)
	_ = srv.Listener.Close()
	srv.Listener = l
	srv.Start()
	e.old = append(e.old, e.current)
	e.current = srv
	e.stopped = false
	return nil
}

func (e *endpointServer) close() {
	e.mu.Lock()
	all := append(e.old, e.current)
	e.old, e.stopped = nil, true
	e.mu.Unlock()
	for _, srv := range all {
		srv.CloseClientConnections() // delayed handlers end when their client goes
		srv.Close()
	}
}
