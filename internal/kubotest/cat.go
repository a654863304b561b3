package kubotest

import (
	"encoding/json"
	"fmt"
	"net/http"

	"github.com/ipfs/go-cid"
	"github.com/multiformats/go-multicodec"
	mh "github.com/multiformats/go-multihash"
)

// This file answers /api/v0/cat and /api/v0/dag/stat for raw blocks, the two commands an export
// reads a dataset's values with. Like Kubo, both resolve every argument before they answer, so a
// missing block is a 500 go-ipfs-cmds error and nothing else; cat then sends the blocks' bytes one
// after the other, dag/stat one entry per argument (in order, repeats included). Arguments that
// are not raw blocks are not modelled and are refused the same way.

// rawArguments loads the blocks the arg parameters name, answering the error itself when one is
// missing or not a raw block.
func (s *Server) rawArguments(w http.ResponseWriter, r *http.Request, c *cmdRequest) ([]cid.Cid, [][]byte, bool) {
	args := c.query["arg"]
	if len(args) == 0 {
		badRequest(w, fmt.Errorf("argument %q is required", "ipfs-path"))
		return nil, nil, false
	}
	ids := make([]cid.Cid, len(args))
	data := make([][]byte, len(args))
	for i, a := range args {
		id, err := cid.Decode(a)
		if err != nil {
			writeCmdsError(w, fmt.Sprintf("invalid path %q: %v", a, err))
			return nil, nil, false
		}
		if id.Prefix().Codec != uint64(multicodec.Raw) {
			writeCmdsError(w, fmt.Sprintf("kubotest: %s is not a raw block; only raw blocks are modelled", id))
			return nil, nil, false
		}
		if dec, err := mh.Decode(id.Hash()); err == nil && dec.Code == mh.IDENTITY {
			ids[i], data[i] = id, dec.Digest // its bytes are in the CID, as Kubo's idstore reads them
			continue
		}
		b, err := s.blocks.Get(r.Context(), id)
		if err != nil {
			writeCmdsError(w, fmt.Sprintf("block was not found locally (offline): ipld: could not find %s", id))
			return nil, nil, false
		}
		ids[i], data[i] = id, b.RawData()
	}
	return ids, data, true
}

// rpcCat writes the raw blocks named by the arguments, one after the other.
func (s *Server) rpcCat(w http.ResponseWriter, r *http.Request, c *cmdRequest) {
	c.str("progress", "")
	if c.err != nil {
		badRequest(w, c.err)
		return
	}
	_, data, ok := s.rawArguments(w, r, c)
	if !ok {
		return
	}
	var n int
	for _, d := range data {
		n += len(d)
	}
	w.Header().Set("Content-Type", "text/plain")
	w.Header().Set("X-Stream-Output", "1")
	w.Header().Set("X-Content-Length", fmt.Sprint(n))
	setCmdsHeaders(w.Header())
	w.WriteHeader(http.StatusOK)
	for _, d := range data {
		if _, err := w.Write(d); err != nil {
			return
		}
	}
}

// dagStat is one entry of dag/stat's answer.
type dagStat struct {
	Cid       string
	Size      int64
	NumBlocks int64
}

// rpcDagStat answers the size of each raw block named by the arguments.
func (s *Server) rpcDagStat(w http.ResponseWriter, r *http.Request, c *cmdRequest) {
	c.str("progress", "")
	if c.err != nil {
		badRequest(w, c.err)
		return
	}
	ids, data, ok := s.rawArguments(w, r, c)
	if !ok {
		return
	}
	answer := struct {
		UniqueBlocks int
		TotalSize    int64
		DagStats     []dagStat
	}{}
	seen := map[cid.Cid]bool{}
	for i, id := range ids {
		answer.DagStats = append(answer.DagStats, dagStat{Cid: id.String(), Size: int64(len(data[i])), NumBlocks: 1})
		if !seen[id] {
			seen[id] = true
			answer.UniqueBlocks++
			answer.TotalSize += int64(len(data[i]))
		}
	}
	startChunked(w)
	_ = json.NewEncoder(w).Encode(answer)
}
