package events

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluice-db/sluice/internal/events"
	"github.com/sluice-db/sluice/internal/failure"
	"github.com/sluice-db/sluice/internal/testenv"
	pubevents "github.com/sluice-db/sluice/pkg/events"
)

// TestEventsRemovedUnreadStopTheSync: a stream whose limits are too low for
// the target's pace removes events before sluice reads them. While the sync
// runs, the consumer would step over them without a sign; sluice must stop
// with SLUICE-NATS-GAP (exit 4) instead of carrying on without them.
func TestEventsRemovedUnreadStopTheSync(t *testing.T) {
	p := testenv.NewPair(t)
	s := newStream(t)
	s.reconfigure(t, func(c *jetstream.StreamConfig) { c.MaxMsgs = 5 })
	cfg := writeConfig(t, likesConfig)
	p.PG(t, likesDDL)
	p.PG(t, `INSERT INTO likes VALUES (1, 1, '2024-05-01 10:00:00+00', 'a')`)
	s.emit(t, like(1, 1, "2024-05-01T10:00:00Z", "a", 1))

	run := start(t, append([]string{"sync", "--changes=events", "--events", s.URL, "--batch-rows", "1", "--config", cfg}, p.Args()...)...)
	run.waitFor(t, "caught up", 60*time.Second, caughtUp)

	// The target stalls (a session holds the table) while the application
	// emits more events than the stream keeps.
	unlock := lockTargetTable(t, p, "post_likes")
	for i := int64(2); i <= 40; i++ {
		s.emit(t, like(i, 1, "2024-05-01T10:00:00Z", fmt.Sprint(i), 1))
	}
	time.Sleep(500 * time.Millisecond) // the consumer takes what it can hold
	unlock()

	if code := run.wait(t, 60*time.Second); code != 4 {
		t.Fatalf("sluice sync exited %d after the stream removed unread events; want 4:\n%s", code, run.out)
	}
	if !strings.Contains(run.out.String(), "SLUICE-NATS-GAP") {
		t.Errorf("the exit does not name SLUICE-NATS-GAP:\n%s", run.out)
	}
}

// TestEventRemovedFromTheMiddleIsAGap: a message removed from the middle
// of the stream (a per-subject limit, or deleted by hand) leaves the
// stream's first sequence where it was; sluice must still see that it
// skipped an event it never read, and stop (exit 4, SLUICE-NATS-GAP).
func TestEventRemovedFromTheMiddleIsAGap(t *testing.T) {
	p, s, cfg := likesWithEvents(t, 3)
	st, err := s.JS.Stream(context.Background(), s.EP.Stream)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.DeleteMsg(context.Background(), 2); err != nil {
		t.Fatal(err)
	}
	run := start(t, append([]string{"sync", "--changes=events", "--events", s.URL, "--config", cfg}, p.Args()...)...)
	if code := run.wait(t, 60*time.Second); code != 4 {
		t.Fatalf("sluice sync exited %d after an unread event was removed from the middle of the stream; want 4:\n%s", code, run.out)
	}
	if out := run.out.String(); !strings.Contains(out, "SLUICE-NATS-GAP") || !strings.Contains(out, "no longer holds sequence 2") {
		t.Errorf("the exit does not name SLUICE-NATS-GAP and sequence 2:\n%s", out)
	}
}

// TestEmptiedStreamIsAGap: the sync stops; meanwhile events are emitted and
// then all removed from the stream unread (purged, or aged out). Started
// again, the sync must see the gap at once (exit 4, SLUICE-NATS-GAP), not
// wait for an event that may never come (a cutover after V1 stopped).
func TestEmptiedStreamIsAGap(t *testing.T) {
	p := testenv.NewPair(t)
	s := newStream(t)
	cfg := writeConfig(t, likesConfig)
	p.PG(t, likesDDL)
	s.emit(t, like(1, 1, "2024-05-01T10:00:00Z", "a", 1))
	args := append([]string{"sync", "--changes=events", "--events", s.URL, "--config", cfg}, p.Args()...)
	run := start(t, args...)
	run.waitFor(t, "caught up", 60*time.Second, caughtUp)
	run.stop(t)
	for i := int64(2); i <= 5; i++ {
		s.emit(t, like(i, 1, "2024-05-01T10:00:00Z", fmt.Sprint(i), 1))
	}
	st, err := s.JS.Stream(context.Background(), s.EP.Stream)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Purge(context.Background()); err != nil {
		t.Fatal(err)
	}
	again := start(t, args...)
	if code := again.wait(t, 60*time.Second); code != 4 || !strings.Contains(again.out.String(), "SLUICE-NATS-GAP") {
		t.Fatalf("sluice sync on a stream emptied of unread events exited %d; want 4 with SLUICE-NATS-GAP:\n%s", code, again.out)
	}
}

// TestRecreatedStreamIsRefused: while the sync is stopped, the stream is
// deleted and made again (the application's emitter makes it when it is
// missing) and takes more events than sluice had applied from the old one.
// Its sequences say nothing of the old stream's: starting after the stored
// one skipped the new stream's first events without a word. The sync must
// refuse it (exit 4, SLUICE-NATS-STREAMCHANGED).
func TestRecreatedStreamIsRefused(t *testing.T) {
	p, s, cfg := likesWithEvents(t, 3)
	args := append([]string{"sync", "--changes=events", "--events", s.URL, "--config", cfg}, p.Args()...)
	run := start(t, args...)
	run.waitFor(t, "caught up", 60*time.Second, caughtUp)
	run.stop(t)
	ctx := context.Background()
	cfgStream, err := s.JS.Stream(ctx, s.EP.Stream)
	if err != nil {
		t.Fatal(err)
	}
	streamConfig := cfgStream.CachedInfo().Config
	if err := s.JS.DeleteStream(ctx, s.EP.Stream); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1100 * time.Millisecond) // made again later than the last progress stored, by more than the clocks' allowance
	if _, err := s.JS.CreateStream(ctx, streamConfig); err != nil {
		t.Fatal(err)
	}
	for i := int64(10); i <= 14; i++ {
		s.emit(t, like(i, 1, "2024-05-01T10:00:00Z", fmt.Sprint(i), 1))
	}
	again := start(t, args...)
	if code := again.wait(t, 60*time.Second); code != 4 || !strings.Contains(again.out.String(), "SLUICE-NATS-STREAMCHANGED") {
		t.Fatalf("sluice sync on a stream made again exited %d; want 4 with SLUICE-NATS-STREAMCHANGED:\n%s", code, again.out)
	}
}

// TestHTTPRunAfterAStreamRun: a sync that took events from JetStream, stopped
// and started again taking them over HTTP only (no --events) reads no stream,
// so its consumer's progress on the stream is no reason to refuse it; the
// stream's progress stays for when the stream comes back.
func TestHTTPRunAfterAStreamRun(t *testing.T) {
	p, s, cfg := likesWithEvents(t, 3)
	p.PG(t, `INSERT INTO likes SELECT g, 1, '2024-05-01 10:00:00+00', g::text FROM generate_series(1, 3) g`) // what the events say
	streamArgs := append([]string{"sync", "--changes=events", "--events", s.URL, "--config", cfg}, p.Args()...)
	run := start(t, streamArgs...)
	run.waitFor(t, "caught up", 60*time.Second, caughtUp)
	run.stop(t)

	httpRun := start(t, append([]string{"sync", "--changes=events", "--config", cfg}, p.Args()...)...)
	httpRun.waitFor(t, "the copy", 60*time.Second, func(st eventsStatus) bool { return st.Events.CopyDone })
	e := like(20, 20, "2024-06-01T00:00:00Z", "over http", 1)
	e.V, e.ID = 1, pubevents.NewID()
	batch, _ := json.Marshal([]pubevents.Event{e})
	if code, body := httpRun.post(t, token, string(batch)); code != http.StatusOK || body["applied"] != float64(1) {
		t.Fatalf("an event over HTTP after a JetStream run: %d %v; want it applied\n%s", code, body, httpRun.out)
	}
	httpRun.stop(t)
	p.PG(t, `INSERT INTO likes VALUES (20, 20, '2024-06-01 00:00:00+00', 'over http')`)

	// back on the stream: it goes on after the events it applied before
	p.PG(t, `INSERT INTO likes VALUES (21, 21, '2024-06-01 00:00:00+00', 'stream again')`)
	s.emit(t, like(21, 21, "2024-06-01T00:00:00Z", "stream again", 1))
	again := start(t, streamArgs...)
	again.waitFor(t, "the new event", 60*time.Second, func(st eventsStatus) bool { return caughtUp(st) && st.Events.Redelivered == 0 })
	again.stop(t)
	mustVerify(t, append(p.Args(), "--config", cfg)...)
}

// TestDeadLettersAgedOutAreNoGap: the stream's limits removing only a dead
// letter this sync sent (it sits in the same stream, after the last event)
// loses no event: the sync goes on when the next event arrives, and starts
// again after a stop.
func TestDeadLettersAgedOutAreNoGap(t *testing.T) {
	p := testenv.NewPair(t)
	s := newStream(t)
	s.reconfigure(t, func(c *jetstream.StreamConfig) { c.MaxAge, c.Duplicates = 2*time.Second, time.Second })
	cfg := writeConfig(t, likesConfig)
	p.PG(t, likesDDL)
	run := start(t, append([]string{"sync", "--changes=events", "--events", s.URL, "--config", cfg}, p.Args()...)...)
	run.waitFor(t, "the copy", 60*time.Second, func(st eventsStatus) bool { return st.Events.CopyDone })

	s.publishRaw(t, "likes", []byte(`this is not JSON`))
	run.waitFor(t, "the dead letter", 30*time.Second, func(st eventsStatus) bool { return st.Events.DeadLettered == 1 })
	time.Sleep(4 * time.Second) // the event and its dead letter age out

	p.PG(t, `INSERT INTO likes VALUES (7, 7, '2024-06-01 00:00:00+00', 'ok')`)
	s.emit(t, like(7, 7, "2024-06-01T00:00:00Z", "ok", 1))
	run.waitFor(t, "the next event", 30*time.Second, func(st eventsStatus) bool { return st.Events.Applied >= 1 })

	// The same across a restart: the target records that the sequences
	// after the last event are its own dead letters.
	s.publishRaw(t, "likes", []byte(`not JSON either`))
	run.waitFor(t, "the second dead letter", 30*time.Second, func(st eventsStatus) bool { return st.Events.DeadLettered == 2 })
	run.stop(t)
	time.Sleep(4 * time.Second)
	p.PG(t, `INSERT INTO likes VALUES (8, 8, '2024-06-01 00:00:00+00', 'ok')`)
	s.emit(t, like(8, 8, "2024-06-01T00:00:00Z", "ok", 1))
	again := start(t, append([]string{"sync", "--changes=events", "--events", s.URL, "--config", cfg}, p.Args()...)...)
	again.waitFor(t, "the event after the restart", 30*time.Second, func(st eventsStatus) bool { return st.Events.Applied >= 2 })
	again.stop(t)
}

// TestDeliveriesLostOnAReconnect: messages on the way when the connection
// to NATS broke are lost, and the pull goes on with later ones. Delivered
// past them, a consumer that acknowledges with AckAll (the events path, the
// appliers) would acknowledge them unseen: FetchLoop must stop before the
// gap, with SLUICE-NATS-LOST, so the next run starts after the last message
// applied.
func TestDeliveriesLostOnAReconnect(t *testing.T) {
	s := newStream(t)
	ctx := context.Background()
	subject := s.EP.PartitionSubject(0)
	for i := 0; i < 20000; i++ {
		if _, err := s.JS.PublishMsgAsync(&nats.Msg{Subject: subject, Data: make([]byte, 200)}); err != nil {
			t.Fatal(err)
		}
	}
	<-s.JS.PublishAsyncComplete()

	px := newBlipProxy(t, strings.TrimPrefix(natsServer(), "nats://"))
	ep := s.EP
	ep.Servers = "nats://" + px.addr()
	nc, js, err := events.ConnectJetStream(ep, "lost-test")
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	st, err := js.Stream(ctx, ep.Stream)
	if err != nil {
		t.Fatal(err)
	}
	cons, err := events.StartConsumer(ctx, js, st, jetstream.ConsumerConfig{Durable: "lost_test", FilterSubject: subject,
		AckPolicy: jetstream.AckAllPolicy, AckWait: 2 * time.Minute, MaxDeliver: -1, MaxAckPending: 100000}, 0, 0, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	msgs, stop, ended, err := events.FetchLoop(cons, 312, t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	var last uint64
	deadline := time.After(60 * time.Second)
	for n := 0; ; n++ {
		select {
		case m, ok := <-msgs:
			if !ok {
				if err := ended(); failure.Code(err) != "SLUICE-NATS-LOST" {
					t.Fatalf("the pull ended after stream sequence %d with %v; want SLUICE-NATS-LOST", last, err)
				}
				return
			}
			md, err := m.Metadata()
			if err != nil {
				t.Fatal(err)
			}
			if seq := md.Sequence.Stream; seq > last+1 {
				t.Fatalf("delivered stream sequence %d after %d: %d messages lost on the reconnect went unseen", seq, last, seq-last-1)
			} else if seq == last+1 {
				last = seq
			}
			if n == 3000 {
				go px.blip()
			}
			if last == 20000 {
				t.Skip("the blip lost no message in flight this time: nothing to check")
			}
		case <-deadline:
			t.Fatalf("no end of the pull after stream sequence %d", last)
		}
	}
}

// blipProxy forwards TCP to a server; blip drops what the server sends for
// a moment, then closes the client side: a network blip that loses the
// messages on the way.
type blipProxy struct {
	ln      net.Listener
	target  string
	drop    atomic.Bool
	mu      sync.Mutex
	clients []net.Conn
}

func newBlipProxy(t *testing.T, target string) *blipProxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &blipProxy{ln: ln, target: target}
	t.Cleanup(func() { ln.Close(); p.closeClients() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			server, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.clients = append(p.clients, c)
			p.mu.Unlock()
			go func() { io.Copy(server, c); server.Close() }()
			go func() {
				buf := make([]byte, 32<<10)
				for {
					n, err := server.Read(buf)
					if n > 0 && !p.drop.Load() {
						if _, werr := c.Write(buf[:n]); werr != nil {
							return
						}
					}
					if err != nil {
						c.Close()
						return
					}
				}
			}()
		}
	}()
	return p
}

func (p *blipProxy) addr() string { return p.ln.Addr().String() }

func (p *blipProxy) closeClients() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.clients {
		c.Close()
	}
	p.clients = nil
}

func (p *blipProxy) blip() {
	p.drop.Store(true)
	time.Sleep(300 * time.Millisecond)
	p.closeClients()
	p.drop.Store(false)
}

// likesWithEvents makes a pair with the likes table, a stream and a
// config mapping it, and emits n likes (posts 1, users 1..n).
func likesWithEvents(t *testing.T, n int64) (*testenv.Pair, *stream, string) {
	t.Helper()
	p := testenv.NewPair(t)
	s := newStream(t)
	cfg := writeConfig(t, likesConfig)
	p.PG(t, likesDDL)
	for i := int64(1); i <= n; i++ {
		s.emit(t, like(i, 1, "2024-05-01T10:00:00Z", fmt.Sprint(i), 1))
	}
	return p, s, cfg
}
