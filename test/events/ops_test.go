package events

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/sluice-db/sluice/internal/testenv"
	pubevents "github.com/sluice-db/sluice/pkg/events"
)

// TestWatchersProtectTheSourceInEventsMode: the alerts and the source's
// protection run in the events topology as in the log-based sync. Ten
// sessions busy on the source raise the stress alert, which holds the
// backfill (it reads the source) while events are still applied; the copy
// goes on once they end.
func TestWatchersProtectTheSourceInEventsMode(t *testing.T) {
	p := testenv.NewPair(t)
	p.PG(t, `CREATE TABLE items (id int PRIMARY KEY, v text NOT NULL)`)
	p.PG(t, `INSERT INTO items SELECT g, repeat(md5(g::text), 3) FROM generate_series(1, 40000) g`)
	cfg := writeConfig(t, "alerts:\n  interval: 300ms\n  stress:\n    scope: database\n    active_sessions: {warning: 5, high: 1000, critical: 2000}\nprotect_source:\n  throttle_at: warning\n")
	es := start(t, append([]string{"sync", "--changes=events", "--tables", "items", "--config", cfg,
		"--chunk-rows", "500", "--max-rows-per-sec", "2000"}, p.Args()...)...)
	es.waitFor(t, "the copy to start", 60*time.Second, func(st eventsStatus) bool {
		return len(st.Tables) == 1 && st.Tables[0].RowsCopied > 0
	})

	stopStress := testenv.BusySessions(t, p.SourceURL, 10)

	es.waitFor(t, "the stress throttle", 20*time.Second, func(st eventsStatus) bool { return st.Throttled["stress"] != "" })
	if alerts := get(t, es.api+"/api/v1/alerts"); !strings.Contains(alerts, "SLUICE-ALERT-STRESS-SESSIONS") {
		t.Errorf("/api/v1/alerts while ten sessions are busy on the source:\n%s", alerts)
	}
	if m := get(t, es.api+"/metrics"); !strings.Contains(m, "sluice_alerts_firing") || !strings.Contains(m, `sluice_copy_throttle{source="stress"} 1`) {
		t.Errorf("/metrics lacks the alerts or the throttle:\n%s", grep(m, "sluice_"))
	}
	time.Sleep(time.Second) // the chunk under way when the hold came ends
	held := es.waitFor(t, "status", 10*time.Second, func(eventsStatus) bool { return true }).Tables[0].RowsCopied
	// events are applied while the backfill waits
	e := pubevents.Event{V: 1, ID: pubevents.NewID(), Table: "items", Op: pubevents.OpUpsert,
		Key: map[string]any{"id": 1}, Row: map[string]any{"id": 1, "v": "changed"}, Version: 2}
	p.PG(t, `UPDATE items SET v = 'changed' WHERE id = 1`)
	batch, _ := json.Marshal([]pubevents.Event{e})
	if code, body := es.post(t, token, string(batch)); code != http.StatusOK || body["applied"] != float64(1) {
		t.Errorf("an event while the backfill is held: %d %v", code, body)
	}
	time.Sleep(2 * time.Second)
	if now := es.waitFor(t, "status", 10*time.Second, func(eventsStatus) bool { return true }).Tables[0].RowsCopied; now != held {
		t.Errorf("the backfill went on while the source was stressed: %d → %d rows", held, now)
	}

	stopStress()
	es.waitFor(t, "the throttle to release", 30*time.Second, func(st eventsStatus) bool { return len(st.Throttled) == 0 })
	es.waitFor(t, "the copy", 120*time.Second, func(st eventsStatus) bool { return st.Events.CopyDone })
	es.stop(t)
	mustVerify(t, append(p.Args(), "--tables", "items")...)
}
