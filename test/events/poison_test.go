package events

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/sluice-db/sluice/internal/testenv"
	pubevents "github.com/sluice-db/sluice/pkg/events"
)

// Events that can never be applied go to the dead-letter subject with their
// error, are counted in status and metrics, and the events after them still
// apply.
func TestPoisonEventsGoToDeadLetter(t *testing.T) {
	p := testenv.NewPair(t)
	s := newStream(t)
	// notes.body is narrowed on the target: a longer value is refused there
	cfg := writeConfig(t, likesConfig+`
  notes:
    columns:
      body: {type: "VARCHAR(5)"}
  prices:
    columns:
      amount: {type: "DECIMAL(6,1)"}
`)
	p.PG(t, likesDDL)
	p.PG(t, `INSERT INTO likes VALUES (1, 1, '2024-05-01 10:00:00+00', 'a')`)
	p.PG(t, `CREATE TABLE notes (id int PRIMARY KEY, body text)`)
	p.PG(t, `CREATE TABLE prices (id int PRIMARY KEY, amount numeric)`)
	p.PG(t, `CREATE TABLE handles (id int PRIMARY KEY, name varchar(20) UNIQUE)`)
	p.PG(t, `INSERT INTO handles VALUES (1, 'ann')`)

	args := append([]string{"sync", "--changes=events", "--events", s.URL, "--config", cfg, "--batch-rows", "50"}, p.Args()...)
	sync := start(t, args...)
	sync.waitFor(t, "the copy", 60*time.Second, func(st eventsStatus) bool { return st.Events.CopyDone })

	good := 0
	emitGood := func(user int64) {
		p.PG(t, fmt.Sprintf(`INSERT INTO likes VALUES (%d, 9, '2024-06-01 00:00:00+00', 'ok')`, user))
		s.emit(t, like(user, 9, "2024-06-01T00:00:00Z", "ok", 1))
		good++
	}
	raw := func(table, body string) { s.publishRaw(t, table, []byte(body)) }
	emitGood(100)
	raw("public.nope", `{"v":1,"id":"p1","table":"public.nope","op":"upsert","key":{"id":1},"row":{"id":1},"version":1}`)
	emitGood(101)
	raw("likes", `{"v":1,"id":"p2","table":"likes","op":"delete","key":{"user_id":1},"version":3}`)
	emitGood(102)
	raw("likes", `{"v":1,"id":"p3","table":"likes","op":"upsert","key":{"user_id":"abc","post_id":1},"row":{"created_at":"2024-01-01T00:00:00Z","note":null},"version":3}`)
	emitGood(103)
	// a value only the source can judge: one bad row among good ones in a batch
	raw("likes", `{"v":1,"id":"p4","table":"likes","op":"upsert","key":{"user_id":5,"post_id":5},"row":{"created_at":"not a time","note":null},"version":3}`)
	emitGood(104)
	raw("likes", `this is not JSON`)
	emitGood(105)
	raw("likes", `{"v":2,"id":"p6","table":"likes","op":"upsert","key":{"user_id":6,"post_id":6},"row":{},"version":3}`)
	emitGood(106)
	// the target refuses one row of a batch: only that event is dead-lettered
	note := func(id int, body string) pubevents.Event {
		return pubevents.Event{Table: "notes", Op: pubevents.OpUpsert, Key: map[string]any{"id": id}, Row: map[string]any{"id": id, "body": body}, Version: 1}
	}
	p.PG(t, `INSERT INTO notes VALUES (1, 'short'), (3, 'ok')`)
	for _, e := range []pubevents.Event{note(1, "short"), note(2, "much too long"), note(3, "ok")} {
		s.emit(t, e)
	}
	good += 2
	// the target would round one value (a note, not an error, in strict
	// mode): that event is dead-lettered, not stored changed
	price := func(id int, amount float64) pubevents.Event {
		return pubevents.Event{Table: "prices", Op: pubevents.OpUpsert, Key: map[string]any{"id": id}, Row: map[string]any{"id": id, "amount": amount}, Version: 1}
	}
	p.PG(t, `INSERT INTO prices VALUES (1, 1.5), (3, 2.5)`)
	for _, e := range []pubevents.Event{price(1, 1.5), price(2, 1.25), price(3, 2.5)} {
		s.emit(t, e)
	}
	good += 2
	// a unique value another row holds on the target: dead-lettered, and
	// the dead letter says so (the server's own words are "Division by 0")
	s.emit(t, pubevents.Event{Table: "handles", Op: pubevents.OpUpsert, Key: map[string]any{"id": 2}, Row: map[string]any{"id": 2, "name": "ann"}, Version: 1})
	const poisoned = 9

	st := sync.waitFor(t, "all events handled", 60*time.Second, func(st eventsStatus) bool {
		return caughtUp(st) && st.Events.Applied+st.Events.DeadLettered >= int64(good+poisoned)
	})
	if st.Events.DeadLettered != poisoned || st.Events.Applied != int64(good) {
		t.Errorf("status: %d dead-lettered, %d applied; want %d and %d\n%s", st.Events.DeadLettered, st.Events.Applied, poisoned, good, sync.out)
	}
	dls := s.deadLetters(t)
	if len(dls) != poisoned {
		t.Fatalf("%d messages on %s, want %d: %v", len(dls), s.EP.DeadLetterSubject(), poisoned, dls)
	}
	wantCodes := []string{"SLUICE-EVENT-TABLE", "SLUICE-EVENT-KEY", "SLUICE-EVENT-VALUE", "SLUICE-EVENT-VALUE", "SLUICE-EVENT-JSON", "SLUICE-EVENT-VERSION", "SLUICE-EVENT-TARGET", "SLUICE-EVENT-TARGET", "SLUICE-EVENT-TARGET"}
	for i, dl := range dls {
		if dl["code"] != wantCodes[i] || dl["error"] == "" || dl["stream_seq"] == nil {
			t.Errorf("dead letter %d: %v; want code %s with an error", i, dl, wantCodes[i])
		}
	}
	if !strings.Contains(fmt.Sprint(dls[0]["error"]), "unknown table") || !strings.Contains(fmt.Sprint(dls[3]["error"]), "not a time") {
		t.Errorf("dead letters do not say what is wrong: %v / %v", dls[0]["error"], dls[3]["error"])
	}
	if e := fmt.Sprint(dls[7]["error"]); !strings.Contains(e, "would store another value") || !strings.Contains(e, "column amount") {
		t.Errorf("the dead letter of the rounded price does not name the warning and the column: %s", e)
	}
	if e := fmt.Sprint(dls[8]["error"]); !strings.Contains(e, "unique index") || strings.Contains(e, "Division") {
		t.Errorf("the dead letter of the event whose unique value another row holds does not say so: %s", e)
	}
	metrics := get(t, sync.api+"/metrics")
	if !strings.Contains(metrics, fmt.Sprintf(`sluice_events_total{outcome="dead_lettered",source="jetstream"} %d`, poisoned)) {
		t.Errorf("/metrics does not count the dead letters:\n%s", grep(metrics, "sluice_events"))
	}
	sync.stop(t)
	mustVerify(t, append(p.Args(), "--config", cfg)...)
}

// POST /api/v1/events refuses a request without the token, and a malformed
// batch with a clear error, applying nothing of it; a good batch applies.
func TestEventsEndpoint(t *testing.T) {
	p := testenv.NewPair(t)
	cfg := writeConfig(t, likesConfig)
	p.PG(t, likesDDL)
	p.PG(t, `INSERT INTO likes VALUES (1, 1, '2024-05-01 10:00:00+00', 'a')`)
	sync := start(t, append([]string{"sync", "--changes=events", "--config", cfg}, p.Args()...)...)
	sync.waitFor(t, "the copy", 60*time.Second, func(st eventsStatus) bool { return st.Events.CopyDone })

	ev := func(e pubevents.Event) string {
		e.V = 1
		if e.ID == "" {
			e.ID = pubevents.NewID()
		}
		b, _ := json.Marshal(e)
		return string(b)
	}
	good := ev(like(2, 2, "2024-05-02T10:00:00Z", "two", 1))
	good2 := ev(unlike(1, 1, 2))
	if code, body := sync.post(t, "", "["+good+"]"); code != http.StatusUnauthorized || body["code"] != "SLUICE-API-AUTH" {
		t.Errorf("without a token: %d %v", code, body)
	}
	if code, _ := sync.post(t, "wrong", "["+good+"]"); code != http.StatusUnauthorized {
		t.Errorf("with a wrong token: %d", code)
	}
	// the events endpoint follows the API's rules for writes: a page on an
	// origin the allow-list does not name is refused, token or not
	if code, body := sync.postFrom(t, "https://evil.example", token, "["+good+"]"); code != http.StatusForbidden || body["code"] != "SLUICE-API-ORIGIN" {
		t.Errorf("from a foreign origin: %d %v", code, body)
	}
	for _, bad := range []struct{ body, want string }{
		{`{"events": [` + good + `, {"v":1,"id":"x","table":"likes","op":"upsert","key":{"user_id":3},"row":{},"version":1}]}`, "event 1: table public.likes: key column post_id is missing"},
		{`[` + good + `, ` + ev(like(3, 3, "yesterday-ish", "bad time", 1)) + `]`, "event 1"},
		{`[` + good + `,`, "malformed batch"},
		{`[]`, "no events"},
		{`{"rows": []}`, `no "events" array`},
	} {
		code, body := sync.post(t, token, bad.body)
		msg := fmt.Sprint(body["error"])
		if code != http.StatusBadRequest || !strings.Contains(msg, bad.want) || !strings.Contains(msg, "nothing was applied") {
			t.Errorf("batch %.60s…: %d %q; want 400 mentioning %q and that nothing was applied", bad.body, code, msg, bad.want)
		}
	}
	if n := count(t, p.Target, "SELECT COUNT(*) FROM post_likes"); n != 1 {
		t.Fatalf("refused batches changed the target: %d rows", n)
	}
	// counted as invalid, the kind a sender must fix (the unauthorized ones are no batch)
	if m := get(t, sync.api+"/metrics"); !strings.Contains(m, `sluice_events_http_batches_refused_total{reason="invalid"} 5`) ||
		!strings.Contains(m, `sluice_events_http_batches_refused_total{reason="unavailable"} 0`) {
		t.Errorf("/metrics after 5 invalid batches:\n%s", grep(m, "batches_refused"))
	}
	if n := count(t, p.Target, "SELECT COUNT(*) FROM _sluice_event_versions"); n != 0 {
		t.Fatalf("refused batches stored %d versions", n)
	}
	code, body := sync.post(t, token, `{"events": [`+good+`, `+good2+`]}`)
	if code != http.StatusOK || body["applied"] != float64(2) {
		t.Fatalf("good batch: %d %v", code, body)
	}
	code, body = sync.post(t, token, `[`+good+`, `+good2+`]`)
	if code != http.StatusOK || body["applied"] != float64(0) || body["ignored"] != float64(2) {
		t.Fatalf("the same batch again: %d %v; want everything ignored", code, body)
	}
	// another method than POST: the API's JSON error, not the mux's text
	req, _ := http.NewRequest(http.MethodGet, sync.api+"/api/v1/events", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	if resp, err := http.DefaultClient.Do(req); err != nil {
		t.Fatal(err)
	} else {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusMethodNotAllowed || !strings.Contains(string(b), "SLUICE-API-METHOD") {
			t.Errorf("GET /api/v1/events: %d %s; want 405 with SLUICE-API-METHOD", resp.StatusCode, b)
		}
	}
	// a pause shows in status and /metrics, as in a log-based sync
	sync.control(t, "pause")
	if st, err := sync.status(t); err != nil || !st.Paused {
		t.Errorf("status after a pause: paused %v (%v), want true", st.Paused, err)
	}
	if m := get(t, sync.api+"/metrics"); !strings.Contains(m, "sluice_copy_paused 1") {
		t.Errorf("/metrics after a pause:\n%s", grep(m, "paused"))
	}
	sync.control(t, "resume")
	// status speaks of events, not of a slot's WAL and byte lag
	if r := testenv.MustRun(t, 0, "status", "--api", sync.api, "--api-token", token); !strings.Contains(r.Stdout, "events over HTTP") ||
		!strings.Contains(r.Stdout, "2 events applied") || strings.Contains(r.Stdout, "WAL retained") {
		t.Errorf("sluice status of an events sync:\n%s\nwant the events over HTTP and 2 events applied, no WAL", r.Stdout)
	}
	// the cutover fences nothing and says what comes next here: abort, not finish
	r := testenv.MustRun(t, 0, "cutover", "--api", sync.api, "--api-token", token)
	if !strings.Contains(r.Stdout, "nothing was fenced") || !strings.Contains(r.Stdout, "sluice abort") || strings.Contains(r.Stdout, "finish") {
		t.Errorf("sluice cutover of an events sync says:\n%s\nwant that nothing was fenced and that sluice abort comes next (finish refuses here)", r.Stdout)
	}
	sync.stop(t)
	p.PG(t, `INSERT INTO likes VALUES (2, 2, '2024-05-02 10:00:00+00', 'two')`)
	p.PG(t, `DELETE FROM likes WHERE user_id = 1 AND post_id = 1`)
	mustVerify(t, append(p.Args(), "--config", cfg)...)
}

// TestNotReadyWhilePreparing: while an events sync cannot prepare its
// tables (a session holds its target table locked), /readyz answers 503,
// as POST /api/v1/events does, so a load balancer sends no events yet;
// once the lock is gone both are ready.
func TestNotReadyWhilePreparing(t *testing.T) {
	p := testenv.NewPair(t)
	cfg := writeConfig(t, likesConfig)
	p.PG(t, likesDDL)
	testenv.MustRun(t, 0, append([]string{"plan", "--apply", "--config", cfg}, p.Args()...)...)
	unlock := lockTargetTable(t, p, "post_likes")
	release := time.AfterFunc(30*time.Second, unlock) // never hang the test
	defer release.Stop()
	sync := start(t, append([]string{"sync", "--changes=events", "--config", cfg}, p.Args()...)...)
	ready := func() int {
		resp, err := http.Get(sync.api + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	time.Sleep(time.Second)
	e := like(2, 2, "2024-05-02T10:00:00Z", "two", 1)
	e.V, e.ID = 1, pubevents.NewID()
	batch, _ := json.Marshal([]pubevents.Event{e})
	if code, body := sync.post(t, token, string(batch)); code != http.StatusServiceUnavailable {
		t.Fatalf("POST /api/v1/events while the target table is locked: %d %v; the test needs the sync still preparing\n%s", code, body, sync.out)
	}
	if code := ready(); code != http.StatusServiceUnavailable {
		t.Errorf("/readyz while the sync prepares (events refused with 503): %d, want 503", code)
	}
	unlock()
	sync.waitFor(t, "the copy", 60*time.Second, func(st eventsStatus) bool { return st.Events.CopyDone })
	if code := ready(); code != http.StatusOK {
		t.Errorf("/readyz once the events sync runs: %d, want 200", code)
	}
	// the batch answered 503 is one to send again, not an invalid one
	if m := get(t, sync.api+"/metrics"); !strings.Contains(m, `sluice_events_http_batches_refused_total{reason="unavailable"} 1`) ||
		!strings.Contains(m, `sluice_events_http_batches_refused_total{reason="invalid"} 0`) {
		t.Errorf("/metrics after a batch sent while preparing:\n%s", grep(m, "batches_refused"))
	}
	sync.stop(t)
}

func get(t *testing.T, url string) string {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

func grep(text, sub string) string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// TestCutoverSaysEventsWereDeadLettered: an event that could not be
// applied went to the dead letters, so the sync counts as caught up, and
// the cutover said "every event is applied" while the target lacked the
// row. It now says how many could not be applied, and where they are.
func TestCutoverSaysEventsWereDeadLettered(t *testing.T) {
	p := testenv.NewPair(t)
	s := newStream(t)
	cfg := writeConfig(t, likesConfig)
	p.PG(t, likesDDL)
	sync := start(t, append([]string{"sync", "--changes=events", "--events", s.URL, "--config", cfg}, p.Args()...)...)
	sync.waitFor(t, "caught up", 60*time.Second, caughtUp)
	p.PG(t, `INSERT INTO likes VALUES (5, 5, '2024-05-01 10:00:00+00', 'x')`)
	s.emit(t, like(5, 5, "not a time", "x", 1)) // the application's bug: poison
	sync.waitFor(t, "the dead letter", 30*time.Second, func(st eventsStatus) bool { return st.Events.DeadLettered == 1 })
	r := testenv.Run(t, nil, "cutover", "--api", sync.api, "--api-token", token)
	if out := r.Stdout + r.Stderr; strings.Contains(out, "every event is applied") || !strings.Contains(out, "1 could NOT be applied") || !strings.Contains(out, "deadletter") {
		t.Errorf("cutover with a dead-lettered event: exit %d; want it to say 1 could not be applied and where to find it\n%s", r.Exit, out)
	}
	sync.stop(t)
}
