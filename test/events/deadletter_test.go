package events

import (
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluice-db/sluice/internal/testenv"
)

// TestDeadLetterNotSentTwiceAfterACrash: dead letters go out before the
// commit that records them. sluice killed in between and started again once
// JetStream's duplicate window is over must not send them a second time:
// whoever reads the dead-letter subject would handle the event twice.
func TestDeadLetterNotSentTwiceAfterACrash(t *testing.T) {
	p := testenv.NewPair(t)
	s := newStream(t)
	// the duplicate window runs out while sluice is down
	s.reconfigure(t, func(c *jetstream.StreamConfig) { c.Duplicates = time.Second })
	cfg := writeConfig(t, likesConfig)
	p.PG(t, likesDDL)
	args := append([]string{"sync", "--changes=events", "--events", s.URL, "--config", cfg}, p.Args()...)

	s.publishRaw(t, "likes", []byte(`this is not JSON`))
	p.PG(t, `INSERT INTO likes VALUES (7, 7, '2024-06-01 00:00:00+00', 'ok')`)
	s.emit(t, like(7, 7, "2024-06-01T00:00:00Z", "ok", 1))

	t.Setenv("SLUICE_TEST_CRASH_AFTER_DEADLETTER", "1")
	crashed := start(t, args...)
	if code := crashed.wait(t, 60*time.Second); code != 99 {
		t.Fatalf("the test hook did not end sluice after the dead letter (exit %d):\n%s", code, crashed.out)
	}
	if n := len(s.deadLetters(t)); n != 1 {
		t.Fatalf("%d dead letters before the restart, want 1", n)
	}
	time.Sleep(1500 * time.Millisecond)
	t.Setenv("SLUICE_TEST_CRASH_AFTER_DEADLETTER", "")

	run := start(t, args...)
	st2 := run.waitFor(t, "caught up", 60*time.Second, func(st eventsStatus) bool { return caughtUp(st) && st.Events.Applied >= 1 })
	if n := len(s.deadLetters(t)); n != 1 {
		t.Errorf("%d dead letters after the restart, want 1 (sent again)", n)
	}
	if st2.Events.DeadLettered != 1 {
		t.Errorf("status counts %d dead letters, want 1", st2.Events.DeadLettered)
	}
	run.stop(t)
	mustVerify(t, append([]string{"--config", cfg}, p.Args()...)...)
}
