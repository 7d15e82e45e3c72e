package events

import (
	"context"
	"strings"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	pubevents "github.com/sluice-db/sluice/pkg/events"
)

// TestFlushReportsFailedAsyncEmits: JetStream refuses two of three
// asynchronous emits (a stream that keeps one message and discards new
// ones). Flush returned nil all the same, and an application that trusted
// it lost those events without a word. It reports them.
func TestFlushReportsFailedAsyncEmits(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test: needs NATS (run make test)")
	}
	name := "T_" + unsafeChars.ReplaceAllString(t.Name(), "_")
	nc, err := nats.Connect(natsServer())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	js.DeleteStream(ctx, name)
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: name, Subjects: []string{name + ".>"}, MaxMsgs: 1, Discard: jetstream.DiscardNew}); err != nil {
		t.Fatal(err)
	}
	defer js.DeleteStream(ctx, name)
	em, err := pubevents.New(nc, pubevents.Endpoint{Servers: natsServer(), Stream: name, Prefix: name})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if _, err := em.EmitAsync(pubevents.Event{Table: "public.likes", Op: pubevents.OpDelete, Key: map[string]any{"id": i}, Version: int64(i + 1)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := em.Flush(ctx); err == nil || !strings.Contains(err.Error(), "2 asynchronous emits were not stored") {
		t.Fatalf("Flush after JetStream refused 2 of 3 emits: %v; want an error saying 2 were not stored", err)
	}
	if err := em.Flush(ctx); err != nil {
		t.Errorf("a second Flush with nothing new: %v; want nil (each failure is reported once)", err)
	}
}
