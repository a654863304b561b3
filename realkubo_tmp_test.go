package hamt_test

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/hamt-go/hamt"
	"github.com/multiformats/go-multicodec"
)

func TestTmpRealKuboWalk(t *testing.T) {
	rpc, gw := os.Getenv("HAMT_KUBO_RPC"), os.Getenv("HAMT_KUBO_GATEWAY")
	if rpc == "" {
		t.Skip()
	}
	ctx := context.Background()
	k, err := hamt.NewKuboCAS(hamt.WithKuboRPC(rpc), hamt.WithKuboGateway(gw))
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()
	mem, root := walkBenchOnce()
	nodes := &nodeRecorder{CAS: mem}
	if _, err := walkKeysOf(mustOpen(t, ctx, nodes, root).Keys(ctx)); err != nil {
		t.Fatal(err)
	}
	for i, data := range nodes.blocks {
		id, err := k.Save(ctx, data, multicodec.DagCbor)
		if err != nil || !id.Equals(nodes.ids[i]) {
			t.Fatalf("save: %v %s %s", err, id, nodes.ids[i])
		}
	}
	t.Logf("%d node blocks on the daemon", len(nodes.blocks))
	for round := range 3 {
		for _, par := range []int{1, 32} {
			st := time.Now()
			m := mustOpen(t, ctx, k, root, hamt.WithWalkParallelism(par))
			n, err := walkKeysOf(m.Keys(ctx))
			if err != nil || n != walkBenchKeys {
				t.Fatal(n, err)
			}
			t.Logf("round %d parallelism %d: Keys %v", round, par, time.Since(st))
		}
	}
}
