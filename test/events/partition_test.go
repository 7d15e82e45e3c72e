package events

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/sluice-db/sluice/internal/testenv"
)

// The publisher copies and streams the source to three JetStream partitions
// while the application writes; three appliers apply them; one applier is
// killed with SIGKILL and restarted. A cutover fence broadcast to every
// partition shows when all have caught up; the target then equals the source.
func TestPartitionedAppliersWithKill(t *testing.T) {
	load := startLikesLoad(t, 500, 100, 4, false)
	p, s, cfg, app := load.p, load.s, load.cfg, load.app

	slot := "sluice_t_part_" + fmt.Sprint(time.Now().UnixNano()%1_000_000)
	pub := start(t, append([]string{"sync", "--publish", s.URL, "--partitions", "3", "--slot", slot, "--config", cfg,
		"--chunk-rows", "5000", "--cutover-timeout", "60s"}, p.Args()...)...)
	t.Cleanup(func() {
		testenv.Run(t, nil, append([]string{"abort", "--slot", slot, "--api", "http://127.0.0.1:1"}, p.Args()...)...)
	})
	appliers := make([]*proc, 3)
	applier := func(i int) *proc {
		return start(t, append([]string{"apply", "--from", s.URL, "--partition", fmt.Sprintf("%d/3", i), "--config", cfg, "--batch-rows", "1000"}, p.Args()...)...)
	}
	for i := range appliers {
		appliers[i] = applier(i)
	}
	time.Sleep(2 * time.Second)
	appliers[1].kill()
	t.Logf("applier 1 killed after %d changes by the application", app.changes.Load())
	time.Sleep(time.Second)
	appliers[1] = applier(1)
	time.Sleep(2 * time.Second)
	load.end()
	t.Logf("the application made %d changes", app.changes.Load())

	// Cutover: fence the source, broadcast the fence, wait for all three.
	if code, body := pub.cutover(t); code != http.StatusOK {
		t.Fatalf("cutover: %d %s\npublisher:\n%s\napplier 1:\n%s", code, body, pub.out, appliers[1].out)
	} else {
		t.Logf("cutover: %s", body)
	}
	var fenced int64
	if err := p.Target.QueryRow("SELECT COUNT(DISTINCT fence) FROM _sluice_partitions WHERE fence <> '' AND partitions = 3").Scan(&fenced); err != nil || fenced != 1 {
		t.Errorf("the partitions do not all show the same fence (%d distinct, %v)", fenced, err)
	}
	if n := count(t, p.Target, "SELECT COUNT(*) FROM _sluice_partitions WHERE partitions = 3 AND fence <> ''"); n != 3 {
		t.Errorf("%d partitions applied the fence, want 3", n)
	}
	if n := count(t, p.Target, "SELECT COUNT(*) FROM _sluice_tables WHERE phase = 'done'"); n != 1 {
		t.Errorf("the table's indexes are not built (phase done on %d tables)", n)
	}
	mustVerify(t, append(p.Args(), "--config", cfg)...)

	finishWaitsForEveryApplier(t, p, slot, pub, appliers[0])
	for _, a := range appliers {
		a.stop(t)
		if !strings.Contains(a.out.String(), "stopped") {
			t.Errorf("applier output:\n%s", a.out)
		}
	}
	pub.stop(t)

	// Aborted while another sync shares the target: the partition progress
	// of this sync's stream goes with its state, the other's state stays.
	p.My(t, `INSERT INTO _sluice_sync_state (slot, publication, phase) VALUES ('other_mig', 'other_mig', 'streaming')`)
	testenv.MustRun(t, 0, append([]string{"abort", "--slot", slot, "--api", "http://127.0.0.1:1"}, p.Args()...)...)
	if n := count(t, p.Target, "SELECT COUNT(*) FROM _sluice_partitions"); n != 0 {
		t.Errorf("after abort %d partition rows of the aborted publisher's stream are left", n)
	}
	if n := count(t, p.Target, "SELECT COUNT(*) FROM _sluice_sync_state WHERE slot = 'other_mig'"); n != 1 {
		t.Errorf("aborting %s removed the other sync's state", slot)
	}
}

// TestPublisherKeyMoveWithToastedColumn: an update that changes a row's key
// and leaves a large (TOASTed) column unchanged reaches the publisher without
// that column (the table is not REPLICA IDENTITY FULL). The publisher reads
// it from the source row at the new key and publishes the row whole; it
// stopped with SLUICE-PUBLISH-MOVE before.
func TestPublisherKeyMoveWithToastedColumn(t *testing.T) {
	p := testenv.NewPair(t)
	s := newStream(t)
	p.PG(t, `CREATE TABLE docs (id integer PRIMARY KEY, title text, body text)`)
	p.PG(t, `INSERT INTO docs SELECT i, 'doc ' || i, (SELECT string_agg(md5(i::text || '-' || g::text), '') FROM generate_series(1, 300) g)
		FROM generate_series(1, 20) i`)
	pub, appliers := startTwoPartitions(t, p, publishArgs(t, p, s, "docs"), s, "docs", nil)

	// Keys move; the body stays as it was, so the change leaves it out. One
	// row moves twice and one moves and is deleted before the publisher
	// reads it back (it may find it gone).
	p.PG(t, `UPDATE docs SET id = id + 100 WHERE id <= 5`)
	p.PG(t, `UPDATE docs SET id = 200, title = 'moved twice' WHERE id = 101`)
	p.PG(t, `UPDATE docs SET id = 300 WHERE id = 6`)
	p.PG(t, `DELETE FROM docs WHERE id = 300`)

	cutoverTwoPartitions(t, p, pub, appliers, "docs")
	if n := count(t, p.Target, "SELECT COUNT(*) FROM docs WHERE id IN (102, 103, 104, 105, 200) AND LENGTH(body) = 9600"); n != 5 {
		t.Errorf("%d of the 5 moved rows hold their whole body on the target, want 5", n)
	}
}

// publishArgs is `sync --publish` of table into s with two partitions, on a
// slot of its own that the test aborts at its end.
func publishArgs(t *testing.T, p *testenv.Pair, s *stream, table string) []string {
	slot := "sluice_t_pub_" + fmt.Sprint(time.Now().UnixNano()%1_000_000)
	t.Cleanup(func() {
		testenv.Run(t, nil, append([]string{"abort", "--slot", slot, "--api", "http://127.0.0.1:1"}, p.Args()...)...)
	})
	return append([]string{"sync", "--publish", s.URL, "--partitions", "2", "--slot", slot, "--tables", table}, p.Args()...)
}

// startTwoPartitions starts the publisher and an applier per partition,
// runs duringCopy (when not nil) and waits until the copy is complete.
func startTwoPartitions(t *testing.T, p *testenv.Pair, args []string, s *stream, table string, duringCopy func(pub *proc)) (*proc, []*proc) {
	pub := start(t, args...)
	var appliers []*proc
	for i := range 2 {
		appliers = append(appliers, start(t, append([]string{"apply", "--from", s.URL, "--partition", fmt.Sprintf("%d/2", i), "--tables", table}, p.Args()...)...))
	}
	if duringCopy != nil {
		duringCopy(pub)
	}
	for deadline := time.Now().Add(60 * time.Second); !strings.Contains(pub.out.String(), "copy complete"); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) || !pub.running() {
			t.Fatalf("the publisher did not finish the copy:\n%s", pub.out)
		}
	}
	return pub, appliers
}

// cutoverTwoPartitions cuts over, verifies table and stops every process.
func cutoverTwoPartitions(t *testing.T, p *testenv.Pair, pub *proc, appliers []*proc, table string) {
	if code, body := pub.cutover(t); code != http.StatusOK {
		t.Fatalf("cutover: %d %s\npublisher:\n%s", code, body, pub.out)
	}
	mustVerify(t, append(p.Args(), "--tables", table)...)
	for _, a := range appliers {
		a.stop(t)
	}
	pub.stop(t)
}

// TestPublisherDeferrableKey: a table whose primary key is DEFERRABLE is
// published with REPLICA IDENTITY FULL, each transaction as the end state of
// the keys it touched, so two partitions never see one key held by two
// rows: a shift of every key (what the deferred check allows), a swap and a
// freed key reused end equal. Without FULL the publisher refuses the table.
func TestPublisherDeferrableKey(t *testing.T) {
	p := testenv.NewPair(t)
	s := newStream(t)
	p.PG(t, `CREATE TABLE queue (id integer PRIMARY KEY DEFERRABLE, item text NOT NULL)`)
	p.PG(t, `INSERT INTO queue SELECT g, 'item ' || g FROM generate_series(1, 6000) g`)
	p.PG(t, `UPDATE queue SET id = id + 1`) // what the deferred check allows
	args := publishArgs(t, p, s, "queue")
	refused := testenv.Run(t, nil, append(append([]string{}, args...), "--listen", freePort(t), "--api-token", token)...)
	if refused.Exit == 0 || !strings.Contains(refused.Stderr, "SLUICE-SYNC-DEFERRABLE") || !strings.Contains(refused.Stderr, "REPLICA IDENTITY FULL") {
		t.Fatalf("a DEFERRABLE key without REPLICA IDENTITY FULL: exit %d, want a refusal naming REPLICA IDENTITY FULL:\n%s", refused.Exit, refused.Stderr)
	}

	p.PG(t, `ALTER TABLE queue REPLICA IDENTITY FULL`)
	slow := append(append([]string{}, args...), "--chunk-rows", "500", "--max-rows-per-sec", "3000") // a copy of 2 s
	pub, appliers := startTwoPartitions(t, p, slow, s, "queue", func(pub *proc) {
		// once the first chunks are on the target: a shift while copying
		var n int64
		for deadline := time.Now().Add(30 * time.Second); n == 0 && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
			p.Target.QueryRow("SELECT COUNT(*) FROM queue").Scan(&n) // an error: not created yet
		}
		p.PG(t, `UPDATE queue SET id = id + 1`)
		if strings.Contains(pub.out.String(), "copy complete") {
			t.Errorf("the copy was complete before the shift meant for it (%d rows on the target)", n)
		}
	})
	p.PG(t, `UPDATE queue SET id = id + 1`) // while streaming (a shift down after it would mend what key-by-key lost)
	p.PG(t, `BEGIN; SET CONSTRAINTS ALL DEFERRED;
		UPDATE queue SET id = 0 WHERE id = 10; UPDATE queue SET id = 10 WHERE id = 11; UPDATE queue SET id = 11 WHERE id = 0;
		DELETE FROM queue WHERE id = 20; INSERT INTO queue VALUES (20, 'reused');
		UPDATE queue SET item = item || ' (edited)' WHERE id BETWEEN 100 AND 105; COMMIT`)

	cutoverTwoPartitions(t, p, pub, appliers, "queue")
	if n := count(t, p.Target, "SELECT COUNT(*) FROM queue WHERE (id = 10 AND item = 'item 8') OR (id = 11 AND item = 'item 7') OR (id = 20 AND item = 'reused')"); n != 3 {
		t.Errorf("%d of the 3 swapped or reused keys hold their row on the target, want 3", n)
	}
}

// TestPublisherStopsAtUnseenSchemaChange: a column dropped and added again
// under the same name and type shows nothing in the change stream, yet every
// row lost its value. sluice's event trigger records it, and the publisher
// stops (exit 4, SLUICE-SYNC-SCHEMACHANGE naming the table and the column)
// without publishing a change made after it.
func TestPublisherStopsAtUnseenSchemaChange(t *testing.T) {
	p := testenv.NewPair(t)
	s := newStream(t)
	p.PG(t, `CREATE TABLE notes (id integer PRIMARY KEY, title text)`)
	p.PG(t, `INSERT INTO notes SELECT i, 'note ' || i FROM generate_series(1, 50) i`)
	pub, appliers := startTwoPartitions(t, p, publishArgs(t, p, s, "notes"), s, "notes", nil)
	p.PG(t, `ALTER TABLE notes DROP COLUMN title; ALTER TABLE notes ADD COLUMN title text`)
	p.PG(t, `INSERT INTO notes VALUES (51, 'after the change')`)
	if code := pub.wait(t, 60*time.Second); code != 4 || !strings.Contains(pub.out.String(), "SLUICE-SYNC-SCHEMACHANGE") ||
		!strings.Contains(pub.out.String(), "column title is another column") {
		t.Fatalf("the publisher exited %d; want 4 with SLUICE-SYNC-SCHEMACHANGE naming column title:\n%s", code, pub.out)
	}
	time.Sleep(2 * time.Second) // what the appliers would still apply
	if n := count(t, p.Target, "SELECT COUNT(*) FROM notes WHERE id = 51"); n != 0 {
		t.Errorf("the row inserted after the schema change reached the target")
	}
	for _, a := range appliers {
		a.stop(t)
	}
}

// TestPublisherStopsAtPartitionTruncate: a TRUNCATE of one partition of a
// published partitioned table reaches no change stream; sluice's trigger
// on the partition tells, and the publisher stops (exit 4) naming the
// partition, where the appliers kept its rows. It names no rows to delete:
// the appliers may still apply rows published before the stop after such a
// DELETE; verify --repair, once they caught up, is right.
func TestPublisherStopsAtPartitionTruncate(t *testing.T) {
	p := testenv.NewPair(t)
	s := newStream(t)
	p.PG(t, `CREATE TABLE notes (id integer PRIMARY KEY, title text) PARTITION BY RANGE (id);
		CREATE TABLE notes_low PARTITION OF notes FOR VALUES FROM (0) TO (30); CREATE TABLE notes_high PARTITION OF notes FOR VALUES FROM (30) TO (1000)`)
	p.PG(t, `INSERT INTO notes SELECT i, 'note ' || i FROM generate_series(1, 50) i`)
	pub, appliers := startTwoPartitions(t, p, publishArgs(t, p, s, "notes"), s, "notes", nil)
	p.PG(t, `TRUNCATE notes_low`)
	if code := pub.wait(t, 60*time.Second); code != 4 || !strings.Contains(pub.out.String(), "SLUICE-SYNC-SCHEMACHANGE") ||
		!strings.Contains(pub.out.String(), "its partition public.notes_low was truncated") || !strings.Contains(pub.out.String(), "the appliers apply what was published before the stop after it") || strings.Contains(pub.out.String(), "DELETE FROM") {
		t.Fatalf("the publisher exited %d; want 4 with SLUICE-SYNC-SCHEMACHANGE naming partition notes_low and its bound:\n%s", code, pub.out)
	}
	for _, a := range appliers {
		a.stop(t)
	}
}

// TestPublisherRestartKeepsPartitionCount: a publisher resumed with another
// --partitions would route keys to appliers that stand at other positions;
// it is refused (exit 4, SLUICE-PUBLISH-PARTITIONCOUNT naming the recorded
// count), and resumed with the recorded count it publishes on.
func TestPublisherRestartKeepsPartitionCount(t *testing.T) {
	p := testenv.NewPair(t)
	s := newStream(t)
	p.PG(t, `CREATE TABLE notes (id integer PRIMARY KEY, title text)`)
	p.PG(t, `INSERT INTO notes SELECT i, 'note ' || i FROM generate_series(1, 50) i`)
	args := publishArgs(t, p, s, "notes")
	pub, appliers := startTwoPartitions(t, p, args, s, "notes", nil)
	pub.stop(t)

	three := slices.Clone(args)
	three[slices.Index(three, "--partitions")+1] = "3"
	refused := start(t, three...)
	if code := refused.wait(t, 60*time.Second); code != 4 || !strings.Contains(refused.out.String(), "SLUICE-PUBLISH-PARTITIONCOUNT") || !strings.Contains(refused.out.String(), "--partitions 2") {
		t.Fatalf("a publisher resumed with 3 partitions where 2 were used: exit %d, want 4 with SLUICE-PUBLISH-PARTITIONCOUNT and a hint to use --partitions 2:\n%s", code, refused.out)
	}
	pub = start(t, args...)
	p.PG(t, `INSERT INTO notes VALUES (51, 'after the restart')`)
	cutoverTwoPartitions(t, p, pub, appliers, "notes")
	if n := count(t, p.Target, "SELECT COUNT(*) FROM notes WHERE id = 51"); n != 1 {
		t.Errorf("the row inserted after the restart is not on the target")
	}
}

// TestPublisherKilledAndRestarted: the publisher is killed with SIGKILL
// during the copy and again while streaming, under writes that change one
// row a transaction and a hundred. Each time it starts again from the
// slot's last confirmed position and publishes again what JetStream may
// already hold (the same message ids, the same positions: the appliers skip
// what they applied). No change may be lost: the target ends equal to the
// source. (Skipping the first 30 transactions after a restart made verify
// find changed rows.)
func TestPublisherKilledAndRestarted(t *testing.T) {
	const users = 1000
	load := startLikesLoad(t, users, 100, 3, false)
	p, s, cfg, app := load.p, load.s, load.cfg, load.app
	var batches atomic.Int64
	load.wg.Add(1)
	go func() { // a transaction of many changes, across both partitions
		defer load.wg.Done()
		for i := 0; ; i++ {
			select {
			case <-load.stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
			if _, err := app.pool.Exec(context.Background(), `UPDATE likes SET note = 'batch ' || $1::int WHERE user_id = $2`, i, 1+i%users); err != nil {
				t.Errorf("batch update: %v", err)
				return
			}
			batches.Add(1)
		}
	}()

	slot := "sluice_t_pubkill_" + fmt.Sprint(time.Now().UnixNano()%1_000_000)
	args := append([]string{"sync", "--publish", s.URL, "--partitions", "2", "--slot", slot, "--config", cfg,
		"--chunk-rows", "2000", "--cutover-timeout", "60s"}, p.Args()...)
	t.Cleanup(func() {
		testenv.Run(t, nil, append([]string{"abort", "--slot", slot, "--api", "http://127.0.0.1:1"}, p.Args()...)...)
	})
	pub := start(t, args...)
	appliers := make([]*proc, 2)
	for i := range appliers {
		appliers[i] = start(t, append([]string{"apply", "--from", s.URL, "--partition", fmt.Sprintf("%d/2", i), "--config", cfg, "--batch-rows", "500"}, p.Args()...)...)
	}
	pub.waitFor(t, "the copy to be under way", 60*time.Second, func(st eventsStatus) bool { return st.Phase == "copying" })
	pub.kill()
	t.Logf("publisher killed while copying, after %d changes", app.changes.Load())
	pub = start(t, args...)
	pub.waitFor(t, "the copy to end", 120*time.Second, func(st eventsStatus) bool { return st.Phase == "streaming" })
	time.Sleep(1500 * time.Millisecond) // streaming under the writes
	pub.kill()
	t.Logf("publisher killed again while streaming, after %d changes and %d batch updates", app.changes.Load(), batches.Load())
	pub = start(t, args...)
	time.Sleep(1500 * time.Millisecond)
	load.end()
	t.Logf("the application made %d changes and %d batch updates", app.changes.Load(), batches.Load())

	if code, body := pub.cutover(t); code != http.StatusOK {
		t.Fatalf("cutover: %d %s\npublisher:\n%s", code, body, pub.out)
	}
	mustVerify(t, append(p.Args(), "--config", cfg)...)

	// killed after its cutover and restarted: it knows the cutover from the
	// target, and a cutover asked again fences nothing
	pub.kill()
	pub = start(t, args...)
	pub.waitFor(t, "the restarted publisher to say it is cut over", 60*time.Second, func(st eventsStatus) bool { return st.Phase == "cut over" })
	code, body := pub.cutover(t)
	var again struct {
		EarlierRun bool `json:"earlier_run"`
	}
	if json.Unmarshal(body, &again); code != http.StatusOK || !again.EarlierRun {
		t.Errorf("cutover asked of a publisher restarted after its cutover: %d %s; want 200 saying an earlier run did it", code, body)
	}
	if strings.Contains(pub.out.String(), "cutover done") {
		t.Errorf("the restarted publisher cut over (fenced the source) again:\n%s", pub.out)
	}

	finishWaitsForEveryApplier(t, p, slot, pub, appliers[0])
	for _, a := range appliers {
		a.stop(t)
	}
	pub.stop(t)
}

// finishWaitsForEveryApplier checks that finish waits for every applier,
// not only the publisher: with one applier frozen, a change published to
// JetStream is not on the target yet, and dropping the slot and the
// partition progress would lose it. finish refuses, the publisher runs on.
func finishWaitsForEveryApplier(t *testing.T, p *testenv.Pair, slot string, pub, frozen *proc) {
	t.Helper()
	frozen.cmd.Process.Signal(syscall.SIGSTOP)
	p.PG(t, `UPDATE likes SET note = 'after cutover'`)
	r := testenv.Run(t, nil, append([]string{"finish", "--slot", slot, "--api", pub.api, "--api-token", token, "--wait", "3s"}, p.Args()...)...)
	frozen.cmd.Process.Signal(syscall.SIGCONT)
	if out := r.Stdout + r.Stderr; r.Exit != 2 || !strings.Contains(out, "SLUICE-FINISH-BEHIND") {
		t.Fatalf("finish with an applier behind: exit %d, want 2 with SLUICE-FINISH-BEHIND\n%s", r.Exit, out)
	}
	if !pub.running() {
		t.Fatalf("the refused finish stopped the publisher:\n%s", pub.out)
	}
}

// TestApplierWithUnreachableNATS: an applier whose --from names a NATS
// server nobody runs waited forever "for the publisher to create the
// target tables" (it looked at the target before connecting to NATS).
// It must fail at once with SLUICE-NATS-CONNECT (exit 3).
func TestApplierWithUnreachableNATS(t *testing.T) {
	t.Parallel()
	p := testenv.NewPair(t)
	p.PG(t, `CREATE TABLE items (id int PRIMARY KEY)`)
	r := testenv.Run(t, nil, append([]string{"apply", "--from", "nats://127.0.0.1:1/NOSTREAM", "--partition", "0/1", "--tables", "items"}, p.Args()...)...)
	if out := r.Stdout + r.Stderr; r.Exit != 3 || !strings.Contains(out, "SLUICE-NATS-CONNECT") {
		t.Fatalf("sluice apply --from a NATS server nobody runs: exit %d; want 3 with SLUICE-NATS-CONNECT\n%s", r.Exit, out)
	}
}

// TestPublisherStatusHasLagAndWAL: the publisher's status left lag and the
// WAL its slot retains at 0, so the lag alert and throttle never fired and
// sluice_wal_retained_bytes read 0 while the slot held WAL. They are read.
func TestPublisherStatusHasLagAndWAL(t *testing.T) {
	p := testenv.NewPair(t)
	s := newStream(t)
	p.PG(t, `CREATE TABLE docs (id int PRIMARY KEY, body text)`)
	p.PG(t, `INSERT INTO docs SELECT g, 'x' FROM generate_series(1, 100) g`)
	pub := start(t, publishArgs(t, p, s, "docs")...)
	p.PG(t, `UPDATE docs SET body = 'y'`)
	deadline := time.Now().Add(30 * time.Second)
	for {
		var st struct {
			WALRetained    int64   `json:"wal_retained_bytes"`
			WALRetainedMax int64   `json:"wal_retained_max_bytes"`
			Lag            float64 `json:"lag_seconds"`
		}
		resp, err := http.Get(pub.api + "/api/v1/status")
		if err == nil {
			json.NewDecoder(resp.Body).Decode(&st)
			resp.Body.Close()
		}
		if st.WALRetained > 0 && st.WALRetainedMax >= st.WALRetained && st.Lag >= 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the publisher's status reads wal_retained_bytes %d, wal_retained_max_bytes %d 30 s after the updates; want the slot's retained WAL\n%s", st.WALRetained, st.WALRetainedMax, pub.out)
		}
		time.Sleep(200 * time.Millisecond)
	}
	pub.stop(t)
}
