package main

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"

	"github.com/hamt-go/hamt"
	"github.com/ipfs/go-cid"
)

// statsReport is what stats says of a dataset, as text or (--json) as one JSON object: the root
// and its layout, then the HAMT's statistics or the sharded root's.
type statsReport struct {
	Root   string `json:"root"`
	Layout string `json:"layout"` // "hamt" or "sharded"
	*hamtStats
	*shardedStats
}

// hamtStats describes a HAMT (hamt.TreeStats).
type hamtStats struct {
	Keys         int     `json:"keys"`
	Values       int     `json:"values"`      // distinct value blocks
	ValueBytes   int64   `json:"value_bytes"` // their bytes, each once
	Nodes        int     `json:"nodes"`
	NodeBytes    int64   `json:"node_bytes"`
	Depth        int     `json:"depth"`          // the deepest node's; the root is depth 0
	NodesAtDepth []int   `json:"nodes_at_depth"` // nodes at each depth
	Buckets      int     `json:"buckets"`
	BucketFill   []int   `json:"bucket_fill"` // [n]: buckets holding n keys ([0] unused)
	MeanFill     float64 `json:"mean_fill"`   // keys per bucket
	MaxBucket    int     `json:"max_bucket"`  // keys in the fullest bucket
	Links        int     `json:"links"`
}

// shardedStats describes a sharded root: its arrays and their totals.
type shardedStats struct {
	Version      int          `json:"version"`
	Arrays       []arrayStats `json:"arrays"`
	Shards       int          `json:"shards"`
	StoredShards int          `json:"stored_shards"` // shards not null in the root
	Chunks       int64        `json:"chunks"`        // chunks present
	GridChunks   int64        `json:"grid_chunks"`   // chunk slots of the grids
}

// arrayStats describes one array (chunk index) of a sharded root.
type arrayStats struct {
	Path           string  `json:"path"`             // a v1 root's: the primary array's
	Shape          []int64 `json:"shape"`            // the array's shape
	ChunkShape     []int64 `json:"chunk_shape"`      // its chunks' shape
	ChunksPerShard int     `json:"chunks_per_shard"` // chunk slots per shard block
	Shards         int     `json:"shards"`           // shards of its index
	StoredShards   int     `json:"stored_shards"`    // those not null
	Chunks         int64   `json:"chunks"`           // chunks present
	GridChunks     int64   `json:"grid_chunks"`      // chunk slots of its grid
}

// zarrStats describes the flushed dataset z at root on cas.
func zarrStats(ctx context.Context, cas hamt.CAS, root cid.Cid, z hamt.ZarrDataset) (*statsReport, error) {
	s, ok := z.(*hamt.ShardedZarrStore)
	if !ok {
		st, err := hamt.Inspect(ctx, cas, root, true)
		if err != nil {
			return nil, err
		}
		return &statsReport{Root: root.String(), Layout: "hamt", hamtStats: &hamtStats{
			Keys: st.Keys, Values: st.Values, ValueBytes: st.ValueBytes, Nodes: st.Nodes, NodeBytes: st.NodeBytes,
			Depth: len(st.NodesAtDepth) - 1, NodesAtDepth: st.NodesAtDepth, Buckets: st.Buckets, BucketFill: st.BucketFill,
			MeanFill: st.AvgFill, MaxBucket: st.MaxBucket, Links: st.Links,
		}}, nil
	}
	arrays := s.Arrays()
	slices.SortFunc(arrays, func(x, y hamt.ShardedArray) int { return strings.Compare(x.Path, y.Path) })
	sh := &shardedStats{Version: s.Version(), Arrays: []arrayStats{}}
	for _, arr := range arrays {
		n, err := s.ChunkCount(ctx, arr.Path)
		if err != nil {
			return nil, err
		}
		path := arr.Path
		if s.Version() == 1 {
			path = arr.Primary // a v1 root's one index serves its primary array
		}
		sh.Arrays = append(sh.Arrays, arrayStats{Path: path, Shape: arr.Shape, ChunkShape: arr.ChunkShape,
			ChunksPerShard: arr.ChunksPerShard, Shards: arr.Shards, StoredShards: arr.StoredShards, Chunks: n, GridChunks: arr.Chunks})
		sh.Shards += arr.Shards
		sh.StoredShards += arr.StoredShards
		sh.Chunks += n
		sh.GridChunks += arr.Chunks
	}
	return &statsReport{Root: root.String(), Layout: "sharded", shardedStats: sh}, nil
}

// writeText writes r as stats prints it.
func (r *statsReport) writeText(w io.Writer) error {
	if h := r.hamtStats; h != nil {
		var depths, fill []string
		for d, n := range h.NodesAtDepth {
			depths = append(depths, fmt.Sprintf("%d:%d", d, n))
		}
		for k, n := range h.BucketFill {
			if n > 0 {
				fill = append(fill, fmt.Sprintf("%d:%d", k, n))
			}
		}
		_, err := fmt.Fprintf(w, `keys          %d
values        %d distinct, %s
nodes         %d, %s
depth         %d (nodes per depth %s)
buckets       %d, mean %.2f keys, largest %d (buckets by keys %s)
links         %d
`, h.Keys, h.Values, byteSize(h.ValueBytes), h.Nodes, byteSize(h.NodeBytes), h.Depth,
			strings.Join(depths, " "), h.Buckets, h.MeanFill, h.MaxBucket, strings.Join(fill, " "), h.Links)
		return err
	}
	s := r.shardedStats
	width := 0
	for _, arr := range s.Arrays {
		width = max(width, len(strconv.Quote(arr.Path)))
	}
	var b strings.Builder
	for _, arr := range s.Arrays {
		fmt.Fprintf(&b, "  %-*q shape %v, chunks %v, %d chunks per shard, shards %d (%d non-null), chunks %d of %d%s\n",
			width, arr.Path, arr.Shape, arr.ChunkShape, arr.ChunksPerShard, arr.Shards, arr.StoredShards, arr.Chunks, arr.GridChunks, percent(arr.Chunks, arr.GridChunks))
	}
	_, err := fmt.Fprintf(w, `layout        sharded v%d
arrays        %d
%sshards        %d, %d non-null
chunks        %d of %d%s
`, s.Version, len(s.Arrays), b.String(), s.Shards, s.StoredShards, s.Chunks, s.GridChunks, percent(s.Chunks, s.GridChunks))
	return err
}
