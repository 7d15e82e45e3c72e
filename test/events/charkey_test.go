package events

import (
	"net/http"
	"testing"
	"time"

	"github.com/sluice-db/sluice/internal/testenv"
)

// A char(n) key sent in events is the key the copy reads: not cut to one
// character (the cast named "character" is character(1), and 'ab' and 'ac'
// became one key 'a'), and padded to n like the copy's, so an event and a
// copied row of one key are one row.
func TestCharKeyEvents(t *testing.T) {
	p := testenv.NewPair(t)
	p.PG(t, `CREATE TABLE codes (code char(4) PRIMARY KEY, label text)`)
	p.PG(t, `INSERT INTO codes VALUES ('ab', 'copied')`)
	sync := start(t, append([]string{"sync", "--changes=events", "--tables", "codes"}, p.Args()...)...)
	sync.waitFor(t, "the copy", 60*time.Second, func(st eventsStatus) bool { return st.Events.CopyDone })

	body := `[
		{"v":1,"id":"e1","table":"codes","op":"upsert","key":{"code":"ab"},"row":{"code":"ab","label":"from an event"},"version":5},
		{"v":1,"id":"e2","table":"codes","op":"upsert","key":{"code":"ac"},"row":{"code":"ac","label":"another"},"version":5}]`
	if code, resp := sync.post(t, token, body); code != http.StatusOK || resp["applied"] != float64(2) {
		t.Fatalf("events: %d %v", code, resp)
	}
	rows := count(t, p.Target, "SELECT COUNT(*) FROM codes")
	ab := count(t, p.Target, "SELECT COUNT(*) FROM codes WHERE code = 'ab' AND label = 'from an event'")
	if rows != 2 || ab != 1 {
		t.Fatalf("target has %d rows (want 2: ab and ac), ab from the event: %d", rows, ab)
	}
	sync.stop(t)
	p.PG(t, `UPDATE codes SET label = 'from an event' WHERE code = 'ab'`)
	p.PG(t, `INSERT INTO codes VALUES ('ac', 'another')`)
	mustVerify(t, append(p.Args(), "--tables", "codes")...)
}
