package hamt

import (
	"context"
	"fmt"
	"testing"

	"github.com/hamt-go/hamt/internal/kubotest"
	"github.com/multiformats/go-multicodec"
)

// TestKuboBulkStartsANewStreamPastItsLimit: a stream ends after its block limit (kept small
// here) and the next Save starts another, so the CAR writer's index stays bounded; every block
// reaches Kubo.
func TestKuboBulkStartsANewStreamPastItsLimit(t *testing.T) {
	srv := kubotest.New(t)
	k, err := NewKuboCAS(WithKuboRPC(srv.RPCURL()), WithKuboGateway(srv.GatewayURL()))
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()
	ctx := context.Background()
	b, err := k.Bulk(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	b.maxBlocks = 3
	var saved []string
	for i := range 7 {
		id, err := b.Save(ctx, []byte(fmt.Sprint("block ", i)), multicodec.Raw)
		if err != nil {
			t.Fatal(err)
		}
		saved = append(saved, id.KeyString())
	}
	if err := b.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if b.Streams() != 3 || srv.Requests("/api/v0/dag/import") != 4 {
		t.Errorf("%d streams, %d dag/import requests; want 3 and 4 (the probe)", b.Streams(), srv.Requests("/api/v0/dag/import"))
	}
	for _, key := range saved {
		if !srv.Has(cidBytes(key).cid()) {
			t.Errorf("block %s not stored", cidBytes(key).cid())
		}
	}
}
