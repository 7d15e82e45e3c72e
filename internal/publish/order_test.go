package publish

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/sluice-db/sluice/internal/events"
	pubevents "github.com/sluice-db/sluice/pkg/events"
)

// A partition's messages reach the stream in the order published, or its
// applier skips the rows of the one stored later (at or before a position
// it applied). A message that meets "no responders" (the stream briefly
// without a leader) is sent again by the NATS client 250 ms later; one of
// the same partition published meanwhile was stored first. publish now
// waits for the partition's last message to be stored.
func TestPublishKeepsAPartitionsOrder(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test: needs NATS JetStream (run make test)")
	}
	ep := pubevents.Endpoint{Servers: "nats://127.0.0.1:4222", Stream: fmt.Sprintf("T_publish_order_%d", time.Now().UnixNano()%1_000_000), Prefix: fmt.Sprintf("t_publish_order_%d", time.Now().UnixNano()%1_000_000)}
	nc, js, err := events.ConnectJetStream(ep, "order-test")
	if err != nil {
		t.Fatalf("connect to NATS (is it running? make services): %v", err)
	}
	defer nc.Close()
	ctx := context.Background()
	defer js.DeleteStream(ctx, ep.Stream)
	p := &Publisher{opt: Options{Endpoint: ep, Partitions: 1}, js: js, unacked: make([]*pendingAck, 1)}
	subject := ep.PartitionSubject(0)
	created := make(chan error, 1)
	go func() { // the stream comes back while the first message waits for its retry
		time.Sleep(50 * time.Millisecond)
		_, err := pubevents.EnsureStream(ctx, js, ep)
		created <- err
	}()
	if err := p.publish(ctx, &nats.Msg{Subject: subject, Data: []byte("first")}, "first", 0); err != nil {
		t.Fatal(err)
	}
	if err := <-created; err != nil {
		t.Fatal(err)
	}
	if err := p.publish(ctx, &nats.Msg{Subject: subject, Data: []byte("second")}, "second", 0); err != nil {
		t.Fatal(err)
	}
	if err := p.awaitAcks(ctx); err != nil {
		t.Fatal(err)
	}
	stream, err := js.Stream(ctx, ep.Stream)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for seq := uint64(1); seq <= 2; seq++ {
		m, err := stream.GetMsg(ctx, seq)
		if err != nil {
			t.Fatalf("stream sequence %d: %v", seq, err)
		}
		got = append(got, string(m.Data))
	}
	if got[0] != "first" || got[1] != "second" {
		t.Fatalf("the stream holds %v; want the partition's messages in the order published: [first second]", got)
	}
}
