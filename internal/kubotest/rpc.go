package kubotest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"runtime"
	"strconv"
	"strings"

	chunk "github.com/ipfs/boxo/chunker"
	"github.com/ipfs/boxo/files"
	"github.com/ipfs/boxo/ipld/merkledag"
	mdtest "github.com/ipfs/boxo/ipld/merkledag/test"
	"github.com/ipfs/boxo/ipld/unixfs/importer/balanced"
	"github.com/ipfs/boxo/ipld/unixfs/importer/helpers"
	"github.com/ipfs/boxo/ipld/unixfs/importer/trickle"
	ipfspinner "github.com/ipfs/boxo/pinning/pinner"
	"github.com/ipfs/go-cid"
	ipld "github.com/ipfs/go-ipld-format"
	mh "github.com/multiformats/go-multihash"
)

// KuboVersion is the Kubo release whose RPC behaviour the server follows; /api/v0/version reports it.
const KuboVersion = "0.42.0"

// serveRPC is the go-ipfs-cmds front door followed by the commands this look-alike knows.
func (s *Server) serveRPC(w http.ResponseWriter, r *http.Request) {
	switch r.Method {
	case http.MethodPost:
	case http.MethodOptions:
		w.Header().Set("Allow", "OPTIONS, POST")
		w.WriteHeader(http.StatusNoContent)
		return
	default:
		w.Header().Set("Allow", "OPTIONS, POST")
		http.Error(w, "405 - Method Not Allowed", http.StatusMethodNotAllowed)
		return
	}
	// Kubo allows no origin unless API.HTTPHeaders says so: any Origin is a possible CSRF.
	if r.Header.Get("Origin") != "" {
		http.Error(w, "403 - Forbidden", http.StatusForbidden)
		return
	}
	var run func(http.ResponseWriter, *http.Request, *cmdRequest)
	switch r.URL.Path {
	case "/api/v0/add":
		run = s.rpcAdd
	case "/api/v0/pin/add":
		run = s.rpcPinAdd
	case "/api/v0/pin/rm":
		run = s.rpcPinRm
	case "/api/v0/pin/update":
		run = s.rpcPinUpdate
	case "/api/v0/pin/ls":
		run = s.rpcPinLs
	case "/api/v0/version":
		run = s.rpcVersion
	case "/api/v0/config":
		run = s.rpcConfig
	case "/api/v0/dag/import":
		run = s.rpcDagImport
	case "/api/v0/cat":
		run = s.rpcCat
	case "/api/v0/dag/stat":
		run = s.rpcDagStat
	default:
		http.Error(w, "404 page not found", http.StatusNotFound)
		return
	}
	w.Header().Set("Vary", "Origin")
	run(w, r, &cmdRequest{query: r.URL.Query()})
}

// cmdRequest reads command options from the query string as go-ipfs-cmds does; a value that does
// not convert to the option's type is a client error, answered 400 text/plain before the command
// runs.
type cmdRequest struct {
	query url.Values
	err   error
}

func (c *cmdRequest) value(name string) (string, bool) {
	v, ok := c.query[name]
	if !ok || c.err != nil {
		return "", false
	}
	if len(v) > 1 {
		c.err = fmt.Errorf("expected key %s to have only a single value, received %v", name, v)
		return "", false
	}
	return v[0], true
}

func (c *cmdRequest) str(name, def string) string {
	if v, ok := c.value(name); ok {
		return v
	}
	return def
}

func (c *cmdRequest) optBool(name string) (v, set bool) {
	s, ok := c.value(name)
	if !ok {
		return false, false
	}
	if s == "" { // a bare flag (?pin) is true, as on the command line
		return true, true
	}
	b, err := strconv.ParseBool(s)
	if err != nil {
		c.err = fmt.Errorf("could not convert value %q to type %q (for option %q)", s, "bool", "-"+name)
		return false, false
	}
	return b, true
}

func (c *cmdRequest) boolean(name string, def bool) bool {
	if v, ok := c.optBool(name); ok {
		return v
	}
	return def
}

func (c *cmdRequest) optInt(name string) (int, bool) {
	s, ok := c.value(name)
	if !ok {
		return 0, false
	}
	n, err := strconv.Atoi(s)
	if err != nil {
		c.err = fmt.Errorf("could not convert value %q to type %q (for option %q)", s, "int", "-"+name)
		return 0, false
	}
	return n, true
}

// args returns the positional arguments (?arg=...), requiring at least min of them.
func (c *cmdRequest) args(names ...string) []string {
	a := c.query["arg"]
	if c.err == nil && len(a) < len(names) {
		c.err = fmt.Errorf("argument %q is required", names[len(a)])
	}
	return a
}

// badRequest answers an option or argument error as go-ipfs-cmds does: 400, text/plain.
func badRequest(w http.ResponseWriter, err error) {
	http.Error(w, err.Error(), http.StatusBadRequest)
}

// emitOnce writes a command's single JSON value (cmds.EmitOnce: no X-Chunked-Output header).
func emitOnce(w http.ResponseWriter, v any) {
	setCmdsHeaders(w.Header())
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_ = json.NewEncoder(w).Encode(v)
}

// startChunked begins a command's stream of JSON values (cmds' X-Chunked-Output answer).
func startChunked(w http.ResponseWriter) {
	setCmdsHeaders(w.Header())
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Chunked-Output", "1")
	w.WriteHeader(http.StatusOK)
}

func setCmdsHeaders(h http.Header) {
	h.Set("Access-Control-Allow-Headers", "X-Stream-Output, X-Chunked-Output, X-Content-Length")
	h.Set("Access-Control-Expose-Headers", "X-Stream-Output, X-Chunked-Output, X-Content-Length")
	h.Set("Trailer", "X-Stream-Error")
}

// addEvent is Kubo's add output line (core/commands/add.go AddEvent).
type addEvent struct {
	Name  string
	Hash  string `json:",omitempty"`
	Bytes int64  `json:",omitempty"`
	Size  string `json:",omitempty"`
}

// addParams are the import settings of one add, resolved as Kubo's UnixfsAddOptions does.
type addParams struct {
	prefix    cid.Prefix
	rawLeaves bool
	chunker   string
	trickle   bool
	maxLinks  int
	onlyHash  bool
}

func (s *Server) rpcAdd(w http.ResponseWriter, r *http.Request, c *cmdRequest) {
	hashName := c.str("hash", "sha2-256")
	chunker := c.str("chunker", "size-262144")
	pin := c.boolean("pin", true)
	rawLeaves, rawSet := c.optBool("raw-leaves")
	cidVersion, cidSet := c.optInt("cid-version")
	useTrickle := c.boolean("trickle", false)
	onlyHash := c.boolean("only-hash", false)
	maxLinks, linksSet := c.optInt("max-file-links")
	if c.err != nil {
		badRequest(w, c.err)
		return
	}
	dir, ok := fileArgument(w, r)
	if !ok {
		return
	}

	code, ok := mh.Names[strings.ToLower(hashName)]
	if !ok {
		writeCmdsError(w, fmt.Sprintf("unrecognized hash function: %s", strings.ToLower(hashName)))
		return
	}
	p := addParams{chunker: chunker, trickle: useTrickle, onlyHash: onlyHash, maxLinks: helpers.DefaultLinksPerBlock}
	if linksSet && maxLinks > 0 {
		p.maxLinks = maxLinks
	}
	if !cidSet {
		cidVersion = -1
	}
	var err error
	if p.prefix, p.rawLeaves, err = addPrefix(code, cidVersion, rawLeaves, rawSet); err != nil {
		writeCmdsError(w, err.Error())
		return
	}

	// Events are streamed as NDJSON; the headers go out with the first one, so an error before it
	// is a 500 JSON error and one after it is the X-Stream-Error trailer, as in go-ipfs-cmds.
	emitted := false
	fail := func(err error) {
		if !emitted {
			writeCmdsError(w, err.Error())
			return
		}
		w.Header().Set("X-Stream-Error", err.Error())
	}
	added := 0
	it := dir.Entries()
	for it.Next() {
		f, ok := it.Node().(files.File)
		if !ok {
			fail(errors.New("kubotest: adding directories is not supported"))
			return
		}
		nd, err := s.importFile(r.Context(), f, p)
		_ = f.Close()
		if err == nil && pin && !onlyHash {
			err = s.pinner.PinWithMode(r.Context(), nd.Cid(), ipfspinner.Recursive, "")
			if err == nil {
				err = s.pinner.Flush(r.Context())
			}
		}
		if err != nil {
			fail(err)
			return
		}
		size, err := nd.Size()
		if err != nil {
			fail(err)
			return
		}
		if !emitted {
			startChunked(w)
			emitted = true
		}
		_ = json.NewEncoder(w).Encode(addEvent{Name: it.Name(), Hash: nd.Cid().String(), Size: strconv.FormatUint(size, 10)})
		if fl, ok := w.(http.Flusher); ok {
			fl.Flush()
		}
		added++
	}
	if err := it.Err(); err != nil {
		fail(err)
		return
	}
	if added == 0 {
		fail(errors.New("expected a file argument"))
	}
}

// addPrefix applies Kubo's rules: a hash other than sha2-256 implies CIDv1, CIDv0 is the default
// otherwise, and CIDv1 implies raw leaves unless raw-leaves says otherwise.
func addPrefix(code uint64, version int, rawLeaves, rawSet bool) (cid.Prefix, bool, error) {
	if code != mh.SHA2_256 {
		switch version {
		case 0:
			return cid.Prefix{}, false, errors.New("CIDv0 only supports sha2-256")
		case 1, -1:
			version = 1
		default:
			return cid.Prefix{}, false, fmt.Errorf("unknown CID version: %d", version)
		}
	} else if version < 0 {
		version = 0
	}
	if version > 0 && !rawSet {
		rawLeaves = true
	}
	prefix, err := merkledag.PrefixForCidVersion(version)
	if err != nil {
		return cid.Prefix{}, false, err
	}
	prefix.MhType = code
	prefix.MhLength = -1
	return prefix, rawLeaves, nil
}

// importFile is Kubo's Adder.add: chunk, lay out the UnixFS DAG and store its blocks.
func (s *Server) importFile(ctx context.Context, r io.Reader, p addParams) (ipld.Node, error) {
	spl, err := chunk.FromString(r, p.chunker)
	if err != nil {
		return nil, err
	}
	dserv := s.dag
	if p.onlyHash {
		dserv = mdtest.Mock()
	}
	buffered := ipld.NewBufferedDAG(ctx, dserv)
	params := helpers.DagBuilderParams{
		Dagserv:    buffered,
		RawLeaves:  p.rawLeaves,
		Maxlinks:   p.maxLinks,
		CidBuilder: p.prefix,
	}
	db, err := params.New(spl)
	if err != nil {
		return nil, err
	}
	var nd ipld.Node
	if p.trickle {
		nd, err = trickle.Layout(db)
	} else {
		nd, err = balanced.Layout(db)
	}
	if err != nil {
		return nil, err
	}
	return nd, buffered.Commit()
}

// parsePathArg accepts what Kubo's cmdutils.PathOrCidPath does for an immutable root: a CID or
// /ipfs/CID. Paths below a root are not supported here.
func parsePathArg(arg string) (cid.Cid, error) {
	s := strings.TrimPrefix(arg, "/ipfs/")
	c, err := cid.Decode(strings.TrimSuffix(s, "/"))
	if err != nil || strings.Contains(strings.TrimSuffix(s, "/"), "/") {
		return cid.Undef, fmt.Errorf("invalid path %q: %v", arg, err)
	}
	return c, nil
}

// pinOutput is Kubo's PinOutput and AddPinOutput (Progress is never sent without --progress).
type pinOutput struct {
	Pins []string
}

func (s *Server) rpcPinAdd(w http.ResponseWriter, r *http.Request, c *cmdRequest) {
	recursive := c.boolean("recursive", true)
	name := c.str("name", "")
	args := c.args("ipfs-path")
	if c.err != nil {
		badRequest(w, c.err)
		return
	}
	ctx := r.Context()
	added := make([]string, 0, len(args))
	for _, a := range args {
		id, err := parsePathArg(a)
		if err != nil {
			writeCmdsError(w, err.Error())
			return
		}
		nd, err := s.dag.Get(ctx, id)
		if err != nil {
			writeCmdsError(w, "pin: "+err.Error())
			return
		}
		if err := s.pinner.Pin(ctx, nd, recursive, name); err != nil {
			writeCmdsError(w, "pin: "+err.Error())
			return
		}
		if err := s.pinner.Flush(ctx); err != nil {
			writeCmdsError(w, err.Error())
			return
		}
		added = append(added, id.String())
	}
	emitOnce(w, pinOutput{Pins: added})
}

func (s *Server) rpcPinRm(w http.ResponseWriter, r *http.Request, c *cmdRequest) {
	recursive := c.boolean("recursive", true)
	args := c.args("ipfs-path")
	if c.err != nil {
		badRequest(w, c.err)
		return
	}
	ctx := r.Context()
	pins := make([]string, 0, len(args))
	for _, a := range args {
		id, err := parsePathArg(a)
		if err != nil {
			writeCmdsError(w, err.Error())
			return
		}
		pins = append(pins, id.String())
		if err := s.pinner.Unpin(ctx, id, recursive); err != nil {
			writeCmdsError(w, err.Error())
			return
		}
		if err := s.pinner.Flush(ctx); err != nil {
			writeCmdsError(w, err.Error())
			return
		}
	}
	emitOnce(w, pinOutput{Pins: pins})
}

func (s *Server) rpcPinUpdate(w http.ResponseWriter, r *http.Request, c *cmdRequest) {
	unpin := c.boolean("unpin", true)
	args := c.args("from-path", "to-path")
	if c.err == nil && len(args) > 2 {
		c.err = fmt.Errorf("expected 2 arguments, got %d", len(args))
	}
	if c.err != nil {
		badRequest(w, c.err)
		return
	}
	from, err := parsePathArg(args[0])
	if err != nil {
		writeCmdsError(w, err.Error())
		return
	}
	to, err := parsePathArg(args[1])
	if err != nil {
		writeCmdsError(w, err.Error())
		return
	}
	if err := s.pinner.Update(r.Context(), from, to, unpin); err != nil {
		writeCmdsError(w, err.Error())
		return
	}
	if err := s.pinner.Flush(r.Context()); err != nil {
		writeCmdsError(w, err.Error())
		return
	}
	emitOnce(w, pinOutput{Pins: []string{from.String(), to.String()}})
}

// pinLsType and pinLsObject are Kubo's PinLsType and PinLsObject (core/commands/pin/pin.go):
// the non-streamed reply is {"Keys":{cid:{"Type","Name"}}}, the streamed one a line per pin.
type pinLsType struct {
	Type string
	Name string
}

type pinLsList struct {
	Keys map[string]pinLsType `json:",omitempty"`
}

type pinLsObject struct {
	Cid  string `json:",omitempty"`
	Name string `json:",omitempty"`
	Type string `json:",omitempty"`
}

func (s *Server) rpcPinLs(w http.ResponseWriter, r *http.Request, c *cmdRequest) {
	typ := c.str("type", "all")
	stream := c.boolean("stream", false)
	args := c.query["arg"]
	if c.err != nil {
		badRequest(w, c.err)
		return
	}
	switch typ {
	case "all", "direct", "indirect", "recursive":
	default:
		writeCmdsError(w, fmt.Sprintf("invalid type '%s', must be one of {direct, indirect, recursive, all}", typ))
		return
	}
	var pins []pinLsObject
	var err error
	if len(args) > 0 {
		pins, err = s.pinLsKeys(r.Context(), typ, args)
	} else {
		pins, err = s.pinLsAll(r.Context(), typ)
	}
	if err != nil {
		writeCmdsError(w, err.Error())
		return
	}
	if !stream {
		list := pinLsList{Keys: map[string]pinLsType{}}
		for _, p := range pins {
			list.Keys[p.Cid] = pinLsType{Type: p.Type, Name: p.Name}
		}
		emitOnce(w, list)
		return
	}
	startChunked(w)
	enc := json.NewEncoder(w)
	for _, p := range pins {
		_ = enc.Encode(p)
	}
}

func (s *Server) pinLsKeys(ctx context.Context, typ string, args []string) ([]pinLsObject, error) {
	mode, _ := ipfspinner.StringToMode(typ)
	var out []pinLsObject
	for _, a := range args {
		id, err := parsePathArg(a)
		if err != nil {
			return nil, err
		}
		how, pinned, err := s.pinner.IsPinnedWithType(ctx, id, mode)
		if err != nil {
			return nil, err
		}
		if !pinned {
			return nil, fmt.Errorf("path '/ipfs/%s' is not pinned", id)
		}
		switch how {
		case "direct", "indirect", "recursive", "internal":
		default:
			how = "indirect through " + how
		}
		out = append(out, pinLsObject{Cid: id.String(), Type: how})
	}
	return out, nil
}

// pinLsAll lists recursive pins, then direct ones, then the blocks below recursive pins, each CID
// once, as Kubo's PinAPI.Ls does.
func (s *Server) pinLsAll(ctx context.Context, typ string) ([]pinLsObject, error) {
	seen := cid.NewSet()
	var out []pinLsObject
	emit := func(ch <-chan ipfspinner.StreamedPin, how string) ([]cid.Cid, error) {
		var keys []cid.Cid
		for p := range ch {
			if p.Err != nil {
				return nil, p.Err
			}
			keys = append(keys, p.Pin.Key)
			if how != "" && seen.Visit(p.Pin.Key) {
				out = append(out, pinLsObject{Cid: p.Pin.Key.String(), Type: how, Name: p.Pin.Name})
			}
		}
		return keys, nil
	}
	show := func(t string) string {
		if typ == "all" || typ == t {
			return t
		}
		return ""
	}
	recursive, err := emit(s.pinner.RecursiveKeys(ctx, false), show("recursive"))
	if err != nil {
		return nil, err
	}
	direct, err := emit(s.pinner.DirectKeys(ctx, false), show("direct"))
	if err != nil {
		return nil, err
	}
	if show("indirect") == "" {
		return out, nil
	}
	if typ == "indirect" {
		// Indirect listing hides what is pinned directly or recursively.
		for _, k := range append(direct, recursive...) {
			seen.Add(k)
		}
	}
	getLinks := merkledag.GetLinksWithDAG(s.dag)
	for _, k := range recursive {
		err := merkledag.Walk(ctx, getLinks, k, func(c cid.Cid) bool {
			if !seen.Visit(c) {
				return false
			}
			out = append(out, pinLsObject{Cid: c.String(), Type: "indirect"})
			return true
		}, merkledag.SkipRoot())
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

// versionInfo is Kubo's /api/v0/version reply.
type versionInfo struct {
	Version string
	Commit  string
	Repo    string
	System  string
	Golang  string
}

func (s *Server) rpcVersion(w http.ResponseWriter, _ *http.Request, c *cmdRequest) {
	if c.err != nil {
		badRequest(w, c.err)
		return
	}
	emitOnce(w, versionInfo{
		Version: KuboVersion, Commit: "kubotest", Repo: "18",
		System: runtime.GOARCH + "/" + runtime.GOOS, Golang: runtime.Version(),
	})
}

// fileArgument reads a command's file argument, the multipart body of its request, as go-ipfs-cmds
// does; without one it answers 400 "file argument 'path' is required", as Kubo does.
func fileArgument(w http.ResponseWriter, r *http.Request) (files.Directory, bool) {
	mediatype, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if mediatype != "multipart/form-data" {
		badRequest(w, errors.New("file argument 'path' is required"))
		return nil, false
	}
	mr, err := r.MultipartReader()
	if err != nil {
		badRequest(w, err)
		return nil, false
	}
	dir, err := files.NewFileFromPartReader(mr, mediatype)
	if err != nil {
		badRequest(w, err)
		return nil, false
	}
	return dir, true
}
