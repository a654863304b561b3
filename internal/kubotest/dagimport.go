package kubotest

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"

	"github.com/ipfs/boxo/files"
	blocks "github.com/ipfs/go-block-format"
	"github.com/ipfs/go-cid"
	carv2 "github.com/ipld/go-car/v2"
)

// softBlockLimit is Kubo's cmdutils.SoftBlockLimit: dag/import refuses a larger block unless
// allow-big-block is set.
const softBlockLimit = 2 << 20

// carImportOutput is Kubo's CarImportOutput (core/commands/dag/dag.go): one line per root pinned,
// then the stats when asked for.
type carImportOutput struct {
	Root  *rootMeta       `json:",omitempty"`
	Stats *carImportStats `json:",omitempty"`
}

type rootMeta struct {
	Cid         cid.Cid
	PinErrorMsg string
}

type carImportStats struct {
	BlockCount      uint64
	BlockBytesCount uint64
}

// rpcDagImport is Kubo v0.42's dag import (core/commands/dag/import.go): every file of the
// multipart body is read as a CAR (v1 or v2) with go-car's block reader, which checks every block
// against its CID; blocks go to the blockstore as they come (Kubo batches them, committing at the
// end); the roots of every header are pinned recursively at the end unless pin-roots=false, each
// one reported with the pin's error if it failed (a root absent or incomplete is not an error of
// the command); stats=true adds a line with the blocks and bytes read. A CAR that fails to parse
// fails the command: "import failed at block ..." as a 500 JSON error, since nothing was emitted
// before. Not emulated: the decode of every block by its codec (Kubo refuses a block that does
// not decode), local-only, silent and the fast-provide options (the node is offline).
func (s *Server) rpcDagImport(w http.ResponseWriter, r *http.Request, c *cmdRequest) {
	pinVal, pinSet := c.optBool("pin-roots")
	stats := c.boolean("stats", false)
	bigOK := c.boolean("allow-big-block", false)
	if c.err != nil {
		badRequest(w, c.err)
		return
	}
	pin := !pinSet || pinVal
	dir, ok := fileArgument(w, r)
	if !ok {
		return
	}
	ctx := r.Context()
	var roots []cid.Cid
	seenRoot := map[cid.Cid]bool{}
	var count, size uint64
	importError := func(previous, current blocks.Block, err error) error {
		if current != nil {
			return fmt.Errorf("import failed at block %q: %w", current.Cid(), err)
		}
		if previous != nil {
			return fmt.Errorf("import failed after block %q: %w", previous.Cid(), err)
		}
		return fmt.Errorf("import failed: %w", err)
	}
	it := dir.Entries()
	for it.Next() {
		f, ok := it.Node().(files.File)
		if !ok {
			writeCmdsError(w, "expected a file handle")
			return
		}
		err := func() error {
			defer f.Close()
			car, err := carv2.NewBlockReader(struct{ io.Reader }{f})
			if err != nil {
				return err
			}
			for _, root := range car.Roots {
				if !seenRoot[root] {
					seenRoot[root] = true
					roots = append(roots, root)
				}
			}
			var previous blocks.Block
			for {
				b, err := car.Next()
				if err != nil && err != io.EOF {
					return importError(previous, b, err)
				} else if b == nil {
					return nil
				}
				if !bigOK && len(b.RawData()) > softBlockLimit {
					return importError(previous, b, fmt.Errorf("produced block is over 2MiB: big blocks can't be exchanged with other peers. consider using UnixFS for automatic chunking of bigger files, or pass --allow-big-block to override"))
				}
				if err := s.blocks.Put(ctx, b); err != nil {
					return importError(previous, b, err)
				}
				count++
				size += uint64(len(b.RawData()))
				previous = b
			}
		}()
		if err != nil {
			writeCmdsError(w, err.Error())
			return
		}
	}
	if err := it.Err(); err != nil {
		writeCmdsError(w, err.Error())
		return
	}
	startChunked(w)
	enc := json.NewEncoder(w)
	if pin {
		for _, root := range roots {
			meta := rootMeta{Cid: root}
			if nd, err := s.dag.Get(ctx, root); err != nil {
				meta.PinErrorMsg = err.Error()
			} else if err := s.pinner.Pin(ctx, nd, true, ""); err != nil {
				meta.PinErrorMsg = err.Error()
			} else if err := s.pinner.Flush(ctx); err != nil {
				meta.PinErrorMsg = err.Error()
			}
			_ = enc.Encode(carImportOutput{Root: &meta})
		}
	}
	if stats {
		_ = enc.Encode(carImportOutput{Stats: &carImportStats{BlockCount: count, BlockBytesCount: size}})
	}
}
