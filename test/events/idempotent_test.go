package events

import (
	"os"
	"testing"
	"time"

	"github.com/sluice-db/sluice/internal/testenv"
	pubevents "github.com/sluice-db/sluice/pkg/events"
)

func like(user, post int64, at, note string, version int64) pubevents.Event {
	row := map[string]any{"user_id": user, "post_id": post, "created_at": at, "note": note}
	if note == "" {
		row["note"] = nil
	}
	return pubevents.Event{Table: "public.likes", Op: pubevents.OpUpsert, Key: map[string]any{"user_id": user, "post_id": post}, Row: row, Version: version}
}

func unlike(user, post int64, version int64) pubevents.Event {
	return pubevents.Event{Table: "likes", Op: pubevents.OpDelete, Key: map[string]any{"user_id": user, "post_id": post}, Version: version}
}

// Duplicated, reordered and redelivered events converge to the source: the
// process is killed right after its first target commit, before the
// acknowledgement, so JetStream delivers that batch again; a second consumer
// then replays the whole stream and changes nothing.
func TestDuplicatesReorderingAndCrashBeforeAck(t *testing.T) {
	p := testenv.NewPair(t)
	s := newStream(t)
	cfg := writeConfig(t, likesConfig)
	p.PG(t, likesDDL)
	p.PG(t, `INSERT INTO likes VALUES (1, 1, '2024-05-01 10:00:00+00', 'a'), (1, 2, '2024-05-01 11:00:00+00', 'b'),
		(2, 1, '2024-05-01 12:00:00+00', 'c')`)
	// The source's final state; the events below describe how it got there,
	// delivered with duplicates and out of order.
	p.PG(t, `UPDATE likes SET note = 'a2' WHERE user_id = 1 AND post_id = 1`)
	p.PG(t, `UPDATE likes SET note = 'b-new', created_at = '2024-05-02 23:59:59.123456+00' WHERE user_id = 1 AND post_id = 2`)
	p.PG(t, `INSERT INTO likes VALUES (3, 3, '2024-05-03 08:00:00+00', 'x')`)
	p.PG(t, `DELETE FROM likes WHERE user_id = 2 AND post_id = 1`)

	e1 := like(1, 1, "2024-05-01T10:00:00Z", "a2", 10)
	e1.ID = "e1"
	s.emit(t, e1)
	s.emit(t, e1) // same id: JetStream drops it
	e1b := e1
	e1b.ID = "e1-again" // same change emitted twice by the application
	s.emit(t, e1b)
	s.emit(t, like(3, 3, "2024-05-03 08:00:00+00", "x", 5))
	s.emit(t, like(3, 3, "2024-05-03 07:00:00+00", "old", 3)) // older: ignored
	s.emit(t, unlike(2, 1, 7))
	s.emit(t, like(2, 1, "2024-05-01 12:00:00+00", "resurrected", 6)) // older than the delete: ignored
	s.emit(t, like(1, 2, "2024-05-02T00:00:00+02:00", "b-old", 2))
	s.emit(t, like(1, 2, "2024-05-03T01:59:59.123456+02:00", "b-new", 4))

	args := append([]string{"sync", "--changes=events", "--events", s.URL, "--config", cfg, "--batch-rows", "3"}, p.Args()...)
	os.Setenv("SLUICE_TEST_CRASH_AFTER_COMMITS", "1")
	first := start(t, args...)
	os.Unsetenv("SLUICE_TEST_CRASH_AFTER_COMMITS")
	if code := first.wait(t, 60*time.Second); code != 99 {
		t.Fatalf("expected the test hook to end the first run after its first commit (exit 99), got %d:\n%s", code, first.out)
	}
	// Acknowledgements lost: JetStream delivers again; what the target
	// already holds (stream sequence, row versions) is skipped.
	os.Setenv("SLUICE_TEST_DROP_ACKS", "1")
	second := start(t, args...)
	os.Unsetenv("SLUICE_TEST_DROP_ACKS")
	st := second.waitFor(t, "a redelivery", 60*time.Second, func(st eventsStatus) bool {
		return st.Events.LastStreamSeq == 8 && st.Events.Redelivered >= 3 && st.Events.CopyDone
	})
	second.stop(t)
	third := start(t, args...)
	st = third.waitFor(t, "caught up", 60*time.Second, caughtUp)
	if st.Events.DeadLettered != 0 || st.Events.LastStreamSeq != 8 {
		t.Errorf("unexpected status: %+v\n%s", st.Events, third.out)
	}
	third.stop(t)

	var note, day, at string
	if err := p.Target.QueryRow("SELECT note, liked_on, DATE_FORMAT(liked_at, '%Y-%m-%d %H:%i:%s.%f') FROM post_likes WHERE member_id = 1 AND post_id = 2").Scan(&note, &day, &at); err != nil {
		t.Fatal(err)
	}
	if note != "b-new" || day != "2024-05-02" || at != "2024-05-02 23:59:59.123456" {
		t.Errorf("row (1,2): note %q, liked_on %q, liked_at %q; want b-new, 2024-05-02, 2024-05-02 23:59:59.123456", note, day, at)
	}
	if n := count(t, p.Target, "SELECT COUNT(*) FROM post_likes WHERE member_id = 2"); n != 0 {
		t.Errorf("the deleted row came back (%d rows)", n)
	}
	if n := count(t, p.Target, "SELECT COUNT(*) FROM _sluice_event_versions WHERE deleted"); n != 1 {
		t.Errorf("%d tombstones, want 1", n)
	}
	mustVerify(t, append(p.Args(), "--config", cfg)...)

	// A new consumer reads the stream from its start: every event is old news.
	replay := start(t, append(args, "--consumer", "replay")...)
	st = replay.waitFor(t, "replay caught up", 60*time.Second, func(st eventsStatus) bool { return caughtUp(st) && st.Events.LastStreamSeq > 0 })
	if st.Events.Applied != 0 || st.Events.Ignored < 8 {
		t.Errorf("replaying the stream applied %d events and ignored %d; want 0 applied", st.Events.Applied, st.Events.Ignored)
	}
	replay.stop(t)
	mustVerify(t, append(p.Args(), "--config", cfg)...)
}
