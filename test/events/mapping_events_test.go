package events

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/sluice-db/sluice/internal/testenv"
	pubevents "github.com/sluice-db/sluice/pkg/events"
)

// postOne posts one upsert of likes (1, 1) with row and returns the answer.
func postOne(t *testing.T, sync *proc, row map[string]any) (int, string) {
	t.Helper()
	ev := pubevents.Event{V: 1, ID: pubevents.NewID(), Table: "public.likes", Op: pubevents.OpUpsert,
		Key: map[string]any{"user_id": 1, "post_id": 1}, Row: row, Version: 10}
	b, _ := json.Marshal([]pubevents.Event{ev})
	code, body := sync.post(t, token, string(b))
	return code, fmt.Sprint(body)
}

// TestEventWithoutAColumnTheFilterReads: an event may leave out a column
// the mapping drops, but not one the row filter reads. Taken as NULL,
// "deleted_at IS NULL" held for a like soft-deleted on the source, and the
// row the copy leaves behind was written to the target. It is refused
// (400, SLUICE-EVENT-ROW naming the column); sent, it decides the filter.
func TestEventWithoutAColumnTheFilterReads(t *testing.T) {
	p := testenv.NewPair(t)
	cfg := writeConfig(t, "tables:\n  likes:\n    where: \"deleted_at IS NULL\"\n    columns:\n      deleted_at: {drop: true}\n")
	p.PG(t, `CREATE TABLE likes (user_id bigint NOT NULL, post_id bigint NOT NULL, deleted_at timestamptz, PRIMARY KEY (user_id, post_id))`)
	p.PG(t, `INSERT INTO likes VALUES (1, 1, NULL)`)
	sync := start(t, append([]string{"sync", "--changes=events", "--config", cfg}, p.Args()...)...)
	sync.waitFor(t, "the copy", 60*time.Second, func(st eventsStatus) bool { return st.Events.CopyDone })
	p.PG(t, `UPDATE likes SET deleted_at = now() WHERE user_id = 1 AND post_id = 1`)
	if code, body := postOne(t, sync, map[string]any{"user_id": 1, "post_id": 1}); code != http.StatusBadRequest || !strings.Contains(body, "SLUICE-EVENT-ROW") || !strings.Contains(body, "deleted_at") {
		t.Fatalf("an upsert without deleted_at, which the filter reads: %d %s; want 400 with SLUICE-EVENT-ROW naming deleted_at", code, body)
	}
	if code, body := postOne(t, sync, map[string]any{"user_id": 1, "post_id": 1, "deleted_at": "2026-12-07T10:00:00Z"}); code != http.StatusOK {
		t.Fatalf("the same upsert with deleted_at: %d %s; want 200", code, body)
	}
	if n := count(t, p.Target, "SELECT COUNT(*) FROM likes"); n != 0 {
		t.Errorf("the soft-deleted like is on the target (%d rows); the filter leaves it out", n)
	}
	sync.stop(t)
	mustVerify(t, append(p.Args(), "--config", cfg)...)
}

// TestEventLongerThanItsType: a value longer than the source column's
// varchar(n) was stored when the mapping widened the target column (TEXT):
// a value the source could never hold. It is refused, naming the column.
func TestEventLongerThanItsType(t *testing.T) {
	p := testenv.NewPair(t)
	cfg := writeConfig(t, "tables:\n  likes:\n    columns:\n      note: {type: TEXT}\n")
	p.PG(t, `CREATE TABLE likes (user_id bigint NOT NULL, post_id bigint NOT NULL, note varchar(5), PRIMARY KEY (user_id, post_id))`)
	sync := start(t, append([]string{"sync", "--changes=events", "--config", cfg}, p.Args()...)...)
	sync.waitFor(t, "the copy", 60*time.Second, func(st eventsStatus) bool { return st.Events.CopyDone })
	if code, body := postOne(t, sync, map[string]any{"note": "much too long"}); code != http.StatusBadRequest || !strings.Contains(body, "SLUICE-EVENT-VALUE") || !strings.Contains(body, "note") {
		t.Fatalf("a 13-character note for varchar(5): %d %s; want 400 with SLUICE-EVENT-VALUE naming note", code, body)
	}
	if code, body := postOne(t, sync, map[string]any{"note": "fine   "}); code != http.StatusOK { // spaces past n are PostgreSQL's to drop
		t.Fatalf("a note of 4 characters and trailing spaces: %d %s; want 200", code, body)
	}
	sync.stop(t)
}

// TestHTTPBatchNamesTheEventTheTargetRefused: the target refuses one
// event's value (the mapping narrowed the column). The 400 quoted only
// MariaDB's "at row N" (the row's place in a statement, not the batch) and
// named no event; it now lists the event by index and id.
func TestHTTPBatchNamesTheEventTheTargetRefused(t *testing.T) {
	p := testenv.NewPair(t)
	cfg := writeConfig(t, "tables:\n  likes:\n    columns:\n      note: {type: \"VARCHAR(3)\"}\n")
	p.PG(t, `CREATE TABLE likes (user_id bigint NOT NULL, post_id bigint NOT NULL, note text, PRIMARY KEY (user_id, post_id))`)
	sync := start(t, append([]string{"sync", "--changes=events", "--config", cfg}, p.Args()...)...)
	sync.waitFor(t, "the copy", 60*time.Second, func(st eventsStatus) bool { return st.Events.CopyDone })
	var evs []pubevents.Event
	for i := 1; i <= 3; i++ {
		note := "ok"
		if i == 2 {
			note = "much too long"
		}
		evs = append(evs, pubevents.Event{V: 1, ID: fmt.Sprintf("ev-%d", i), Table: "likes", Op: pubevents.OpUpsert,
			Key: map[string]any{"user_id": i, "post_id": i}, Row: map[string]any{"note": note}, Version: 1})
	}
	b, _ := json.Marshal(evs)
	code, body := sync.post(t, token, string(b))
	errs, _ := body["errors"].([]any)
	if code != http.StatusBadRequest || len(errs) != 1 {
		t.Fatalf("a batch whose second event the target refuses: %d %v; want 400 listing one event", code, body)
	}
	if e, _ := errs[0].(map[string]any); e["index"] != float64(1) || e["id"] != "ev-2" {
		t.Errorf("the refused event is listed as %v; want index 1, id ev-2", errs[0])
	}
	if n := count(t, p.Target, "SELECT COUNT(*) FROM likes"); n != 0 {
		t.Errorf("the refused batch left %d rows on the target; want none (all or nothing)", n)
	}
	sync.stop(t)
}
