package events

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sluice-db/sluice/internal/testenv"
	pubevents "github.com/sluice-db/sluice/pkg/events"
)

// TestUniqueValueSettledByALaterEvent: while a table is copied its unique
// indexes do not exist yet, and events of different rows come in any
// order. Row 50 gave its name up and row 500 took it; only row 500's event
// has arrived when the copy ends, so the name is held twice and the unique
// index cannot be built. The sync does not stop (it used to exit 4, and
// again on every restart, before the settling event could be sent): it
// warns, keeps the copy undone and tries again, and builds the index once
// row 50's event arrives.
func TestUniqueValueSettledByALaterEvent(t *testing.T) {
	p := testenv.NewPair(t)
	p.PG(t, `CREATE TABLE handles (id int PRIMARY KEY, name varchar(20) NOT NULL UNIQUE)`)
	p.PG(t, `INSERT INTO handles SELECT g, 'n' || g FROM generate_series(1, 200) g`)
	sync := start(t, append([]string{"sync", "--changes=events", "--tables", "handles", "--parallel", "1",
		"--chunk-rows", "50", "--max-rows-per-sec", "25"}, p.Args()...)...)
	sync.waitFor(t, "the first chunk (ids 1 to 50) copied", 60*time.Second, func(st eventsStatus) bool {
		return len(st.Tables) == 1 && st.Tables[0].RowsCopied >= 50
	})
	sync.control(t, "pause")
	p.PG(t, `UPDATE handles SET name = 'w50' WHERE id = 50`)
	p.PG(t, `INSERT INTO handles VALUES (500, 'n50')`)
	post := func(id int, name string) {
		t.Helper()
		e := pubevents.Event{V: 1, ID: pubevents.NewID(), Table: "handles", Op: pubevents.OpUpsert,
			Key: map[string]any{"id": id}, Row: map[string]any{"id": id, "name": name}, Version: 2}
		batch, _ := json.Marshal([]pubevents.Event{e})
		if code, body := sync.post(t, token, string(batch)); code != http.StatusOK {
			t.Fatalf("POST the event of row %d: %d %v\n%s", id, code, body, sync.out)
		}
	}
	post(500, "n50") // row 50's event, giving the name up, is late
	sync.control(t, "resume")
	for deadline := time.Now().Add(60 * time.Second); !strings.Contains(sync.out.String(), "SLUICE-EVENTS-UNIQUE"); time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) || !sync.running() {
			t.Fatalf("no SLUICE-EVENTS-UNIQUE warning (the unique index waits for events) within 60 s, or the sync stopped:\n%s", sync.out)
		}
	}
	time.Sleep(6 * time.Second) // past a retry
	if !sync.running() {
		t.Fatalf("the sync stopped over a unique value an event still to come settles:\n%s", sync.out)
	}
	if st, err := sync.status(t); err != nil || st.Events.CopyDone {
		t.Fatalf("status while the unique index cannot be built: copy done %v (%v); want not done, so a cutover waits", st.Events.CopyDone, err)
	}
	post(50, "w50")
	sync.waitFor(t, "the copy, its unique index built", 60*time.Second, func(st eventsStatus) bool { return st.Events.CopyDone })
	sync.stop(t)
	mustVerify(t, append(p.Args(), "--tables", "handles")...)
}

// TestUniqueValueNoEventSettles: the mapping gives a unique text column a
// case-insensitive collation, and the source holds 'Bob' and 'bob' in two
// rows. The unique index can never be built, whatever events come: the
// sync waited forever ("tried again while events are applied"). It stops
// with SLUICE-EVENTS-COLLISION (exit 4) naming both rows and the column.
func TestUniqueValueNoEventSettles(t *testing.T) {
	p := testenv.NewPair(t)
	p.PG(t, `CREATE TABLE people (id int PRIMARY KEY, name varchar(20) NOT NULL UNIQUE)`)
	p.PG(t, `INSERT INTO people VALUES (1, 'Bob'), (2, 'bob'), (3, 'Ann')`)
	cfg := filepath.Join(t.TempDir(), "sluice.yaml")
	if err := os.WriteFile(cfg, []byte("tables:\n  people:\n    columns:\n      name: {type: \"VARCHAR(20) COLLATE utf8mb4_general_ci\"}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	sync := start(t, append([]string{"sync", "--changes=events", "--tables", "people", "--config", cfg}, p.Args()...)...)
	select {
	case <-sync.exited:
	case <-time.After(60 * time.Second):
		t.Fatalf("the sync still waits 60 s after the copy for a unique value no event can settle:\n%s", sync.out)
	}
	out := sync.out.String()
	if code := sync.cmd.ProcessState.ExitCode(); code != 4 || !strings.Contains(out, "SLUICE-EVENTS-COLLISION") || !strings.Contains(out, "id=1") || !strings.Contains(out, "id=2") || !strings.Contains(out, "name") {
		t.Fatalf("sync over a value the mapping's collation holds twice: exit %d; want 4 with SLUICE-EVENTS-COLLISION naming rows id=1 and id=2 and column name\n%s", code, out)
	}
}
