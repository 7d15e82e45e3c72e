package events

import (
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/sluice-db/sluice/internal/testenv"
	pubevents "github.com/sluice-db/sluice/pkg/events"
)

// TestNumericKeySpellings: the application sends a numeric key as 1, "1.0"
// or "1.00" (JSON serialisers differ); PostgreSQL and the target take them
// for one row. Versions were kept per spelling, so an older event under
// another spelling overwrote a newer one, and a late upsert passed a
// delete's tombstone. Each must now be ignored.
func TestNumericKeySpellings(t *testing.T) {
	p := testenv.NewPair(t)
	cfg := writeConfig(t, "tables: {}\n")
	p.PG(t, `CREATE TABLE acct (id numeric PRIMARY KEY, v text)`)
	p.PG(t, `INSERT INTO acct VALUES (1.0, 'copied'), (2, 'copied')`)
	sync := start(t, append([]string{"sync", "--changes=events", "--config", cfg, "--tables", "acct"}, p.Args()...)...)
	sync.waitFor(t, "the copy", 60*time.Second, func(st eventsStatus) bool { return st.Events.CopyDone })

	ev := func(op string, id any, v string, version int64) string {
		e := pubevents.Event{V: 1, ID: pubevents.NewID(), Table: "acct", Op: op, Key: map[string]any{"id": id}, Version: version}
		if op == pubevents.OpUpsert {
			e.Row = map[string]any{"id": id, "v": v}
		}
		b, _ := json.Marshal(e)
		return string(b)
	}
	for _, step := range []struct {
		body             string
		applied, ignored float64
	}{
		{ev(pubevents.OpUpsert, 1, "new", 10), 1, 0},
		{ev(pubevents.OpUpsert, "1.0", "old", 5), 0, 1}, // older, another spelling
		{ev(pubevents.OpDelete, "2.00", "", 20), 1, 0},
		{ev(pubevents.OpUpsert, 2, "resurrected", 15), 0, 1}, // older than the delete
	} {
		code, body := sync.post(t, token, "["+step.body+"]")
		if code != http.StatusOK || body["applied"] != step.applied || body["ignored"] != step.ignored {
			t.Errorf("event %s: %d %v; want %v applied, %v ignored", step.body, code, body, step.applied, step.ignored)
		}
	}
	if v := count(t, p.Target, "SELECT COUNT(*) FROM acct WHERE v = 'new'"); v != 1 {
		t.Errorf("row 1 is not the newest event's (%d rows with v = new)", v)
	}
	if n := count(t, p.Target, "SELECT COUNT(*) FROM acct WHERE id = 2"); n != 0 {
		t.Errorf("row 2 came back after its delete")
	}
	if n := count(t, p.Target, "SELECT COUNT(*) FROM _sluice_event_versions"); n != 2 {
		t.Errorf("%d version rows for 2 target rows", n)
	}
	sync.stop(t)
}

// TestBackfillKeepsTheRowRate: --max-rows-per-sec spares the source during
// the events path's backfill as it does during sync's copy; it was ignored
// there (2,000 rows went in some 70 ms). At 1,000 rows a second (the first
// 1,000 of burst), the copy cannot be done in under a second.
func TestBackfillKeepsTheRowRate(t *testing.T) {
	p := testenv.NewPair(t)
	cfg := writeConfig(t, "tables: {}\n")
	p.PG(t, `CREATE TABLE acct (id int PRIMARY KEY, v text)`)
	p.PG(t, `INSERT INTO acct SELECT g, 'v' FROM generate_series(1, 2000) g`)
	began := time.Now()
	sync := start(t, append([]string{"sync", "--changes=events", "--config", cfg, "--tables", "acct", "--chunk-rows", "250", "--max-rows-per-sec", "1000"}, p.Args()...)...)
	sync.waitFor(t, "the copy", 60*time.Second, func(st eventsStatus) bool { return st.Events.CopyDone })
	if took := time.Since(began); took < 900*time.Millisecond {
		t.Errorf("2,000 rows copied in %s at --max-rows-per-sec 1000", took)
	}
	if n := count(t, p.Target, "SELECT COUNT(*) FROM acct"); n != 2000 {
		t.Errorf("%d rows copied, want 2000", n)
	}
	sync.stop(t)
}
