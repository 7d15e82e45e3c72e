package synctest

import (
	"strings"
	"testing"
	"time"

	"github.com/sluice-db/sluice/internal/testenv"
)

// TestTableWithoutKey: a pgbench_history-like table (no primary key, no
// unique index) cannot have its updates and deletes streamed by default.
func TestTableWithoutKey(t *testing.T) {
	t.Parallel()
	p := newPair(t)
	p.PG(t, `CREATE TABLE history (tid int, bid int, aid int, delta int, mtime timestamp, filler char(22))`)
	p.PG(t, `INSERT INTO history SELECT g % 10, g % 3, g, g % 1000 - 500, timestamp '2024-01-01' + g * interval '1 second', NULL
		FROM generate_series(1, 2000) g`)
	p.PG(t, `ANALYZE history`)

	t.Run("refused", func(t *testing.T) {
		s := newSync(t, p.SourceURL, p.TargetURL, "--tables", "history")
		proc := s.start()
		code, ok := proc.Wait(60 * time.Second)
		if !ok {
			t.Fatalf("sluice sync --tables history still runs after 60 s; want it refused at once:\n%s", testenv.Tail(proc.Output(), 20))
		}
		out := proc.Output()
		if code != 4 {
			t.Errorf("sluice sync --tables history: exit %d, want 4 (schema problem)\n%s", code, out)
		}
		if !strings.Contains(out, "history") {
			t.Errorf("the refusal does not name the table history:\n%s", out)
		}
		if !strings.Contains(strings.ToUpper(out), "REPLICA IDENTITY FULL") {
			t.Errorf("the refusal does not mention REPLICA IDENTITY FULL, the fix that keeps the table as it is:\n%s", out)
		}
		s.assertNoSlot() // refused before anything was created
	})

	t.Run("replica identity full", func(t *testing.T) {
		p.PG(t, `ALTER TABLE history REPLICA IDENTITY FULL`)
		p.PG(t, `INSERT INTO history SELECT g % 10, g % 3, g, g % 1000 - 500, timestamp '2024-01-01' + g * interval '1 second', NULL
			FROM generate_series(2001, 20000) g`)
		p.PG(t, `ANALYZE history`)
		s := newSync(t, p.SourceURL, p.TargetURL, "--tables", "history", "--chunk-rows", "1000", "--max-rows-per-sec", "2000")
		proc := s.start()
		select {
		case <-proc.Done():
			_, code := proc.Exited()
			t.Fatalf("sluice sync refuses the table even with REPLICA IDENTITY FULL (exit %d): missing feature\n%s", code, testenv.Tail(proc.Output(), 10))
		case <-time.After(time.Second):
		}
		// While the first chunks are copied: rows appended (they land on the
		// last pages, which the copy reads last), updated (new row versions
		// move to free space) and deleted, plus exact duplicates.
		// A keyless table is read in one chunk (its rows cannot be placed in
		// key ranges), so "under way" is the copying phase with its window
		// open: the throttle holds the chunk's end for ~10 s.
		before := s.waitCopying(60*time.Second, "history", 0)
		updated := pgInt(t, p.Source, `SELECT count(*) FROM history WHERE aid % 97 = 0`)
		deleted := pgInt(t, p.Source, `SELECT count(*) FROM history WHERE aid BETWEEN 15000 AND 15050`)
		p.PG(t, `INSERT INTO history SELECT 2, 2, g, 1, timestamp '2024-03-01', 'during copy' FROM generate_series(1, 200) g`)
		p.PG(t, `INSERT INTO history SELECT 1, 1, 7, 7, timestamp '2024-03-02', 'same' FROM generate_series(1, 3) g`)
		p.PG(t, `UPDATE history SET delta = delta + 1 WHERE aid % 97 = 0`)
		p.PG(t, `DELETE FROM history WHERE aid BETWEEN 15000 AND 15050`)
		// Killed once the stream has applied them, with the chunk's window
		// still open: the restarted run reads the chunk again, and the rows
		// it reads include those changes, which must not go in twice.
		s.wait(30*time.Second, "the mid-copy changes applied", func(st testenv.SyncStatus) bool {
			return st.ChangesApplied >= 203+updated+deleted
		})
		if st, err := s.status(); err != nil || st.Phase != "copying" {
			t.Fatalf("the copy ended before the changes were made (status %+v, %v); the test needs them mid-copy", st, err)
		}
		t.Logf("changes made mid-copy, %d rows copied before", before.RowsCopied("history"))
		proc.Kill()
		<-proc.Done()
		proc = s.start()
		s.wait(90*time.Second, "the copy to finish", func(st testenv.SyncStatus) bool { return st.Phase == "streaming" })
		// After the copy: duplicates are legal here; updates and deletes
		// must hit one copy each.
		p.PG(t, `INSERT INTO history SELECT 1, 1, g, 0, timestamp '2024-02-01', 'dup' FROM generate_series(1, 50) g`)
		p.PG(t, `INSERT INTO history SELECT 1, 1, g, 0, timestamp '2024-02-01', 'dup' FROM generate_series(1, 50) g`)
		p.PG(t, `UPDATE history SET delta = delta + 1 WHERE aid % 70 = 0`)
		// an update that changes nothing (MariaDB reports no row changed)
		p.PG(t, `UPDATE history SET delta = delta WHERE aid % 90 = 0`)
		p.PG(t, `DELETE FROM history WHERE aid % 110 = 0`)
		p.PG(t, `DELETE FROM history WHERE ctid IN (SELECT ctid FROM history WHERE filler = 'dup' AND aid <= 10 LIMIT 5)`)
		p.PG(t, `DELETE FROM history WHERE ctid IN (SELECT ctid FROM history WHERE filler = 'same' LIMIT 1)`)
		s.waitCaughtUp(60 * time.Second)
		want := pgInt(t, p.Source, `SELECT count(*) FROM history`)
		var got int64
		if err := p.Target.QueryRow(`SELECT COUNT(*) FROM history`).Scan(&got); err != nil {
			t.Fatal(err)
		}
		if got != want {
			t.Errorf("target has %d rows of history, source %d", got, want)
		}
		for _, q := range []struct{ what, pg, my string }{
			{"rows appended during the copy", `SELECT count(*) FROM history WHERE filler = 'during copy'`, `SELECT COUNT(*) FROM history WHERE filler = 'during copy'`},
			// a lost or doubled update shows in the sum of what they changed
			{"sum of delta over rows updated during and after the copy", `SELECT coalesce(sum(delta), 0) FROM history WHERE aid % 97 = 0 OR aid % 70 = 0`,
				`SELECT COALESCE(SUM(delta), 0) FROM history WHERE aid % 97 = 0 OR aid % 70 = 0`},
			{"equal rows", `SELECT count(*) FROM history WHERE filler = 'same'`, `SELECT COUNT(*) FROM history WHERE filler = 'same'`},
		} {
			w := pgInt(t, p.Source, q.pg)
			var g int64
			if err := p.Target.QueryRow(q.my).Scan(&g); err != nil {
				t.Fatal(err)
			}
			if g != w {
				t.Errorf("%s: target has %d, source %d", q.what, g, w)
			}
		}
		verifyEqual(t, p.SourceURL, p.TargetURL, "history")
		s.abort()
	})
}

// Rows without a key may repeat, and the copy must keep every copy: while the
// table's one chunk waits for its high watermark (the throttle holds it),
// rows equal to ones it read are inserted again, one copy of a repeated row
// is deleted and an update makes a row equal to another. The chunk as read
// and the stream's changes together must give the source's copies exactly.
func TestKeylessRepeatsDuringCopy(t *testing.T) {
	t.Parallel()
	p := newPair(t)
	p.PG(t, `CREATE TABLE events (kind text, n int)`)
	p.PG(t, `ALTER TABLE events REPLICA IDENTITY FULL`)
	p.PG(t, `INSERT INTO events SELECT 'k' || (g % 50), g % 7 FROM generate_series(1, 20000) g`)
	p.PG(t, `ANALYZE events`)
	s := newSync(t, p.SourceURL, p.TargetURL, "--tables", "events", "--max-rows-per-sec", "2000")
	proc := s.start()
	s.waitCopying(60*time.Second, "events", 0)
	time.Sleep(2 * time.Second) // the chunk is read; its high watermark waits ~10 s
	p.PG(t, `INSERT INTO events SELECT kind, n FROM events WHERE kind = 'k1' LIMIT 30`)
	p.PG(t, `DELETE FROM events WHERE ctid IN (SELECT ctid FROM events WHERE kind = 'k2' AND n = 3 LIMIT 1)`)
	p.PG(t, `UPDATE events SET n = 1 WHERE ctid IN (SELECT ctid FROM events WHERE kind = 'k3' AND n = 2 LIMIT 5)`)
	if st, err := s.status(); err != nil || st.Phase != "copying" {
		t.Fatalf("the copy ended before the changes were made (status %+v, %v); the test needs them mid-copy", st, err)
	}
	s.wait(90*time.Second, "the copy to finish", func(st testenv.SyncStatus) bool { return st.Phase == "streaming" })
	s.waitCaughtUp(60 * time.Second)
	for _, q := range []string{
		`SELECT count(*) FROM events`,
		`SELECT count(*) FROM events WHERE kind = 'k1'`,
		`SELECT count(*) FROM events WHERE kind = 'k2' AND n = 3`,
		`SELECT count(*) FROM events WHERE kind = 'k3' AND n = 1`,
	} {
		want := pgInt(t, p.Source, q)
		var got int64
		if err := p.Target.QueryRow(q).Scan(&got); err != nil {
			t.Fatal(err)
		}
		if got != want {
			t.Errorf("%s: target %d, source %d\n%s", q, got, want, testenv.Tail(proc.Output(), 10))
		}
	}
	verifyEqual(t, p.SourceURL, p.TargetURL, "events")
	s.abort()
}

// TestKeylessChangesAfterARestartBeforeItsIndexes: a keyless table's one
// chunk is written, but the run stops before the table is finished (here
// the state a crash leaves while a key move on another table had read a
// row ahead of the stream, which holds every table's finish back). The
// restarted run must apply the table's changes: its chunk, written
// already, holds none of them. (They were ignored as if the chunk were
// still to be read, and the rows inserted and deleted meanwhile were lost.)
func TestKeylessChangesAfterARestartBeforeItsIndexes(t *testing.T) {
	t.Parallel()
	p := newPair(t)
	p.PG(t, `CREATE TABLE nk (a int, b text)`)
	p.PG(t, `ALTER TABLE nk REPLICA IDENTITY FULL`)
	p.PG(t, `INSERT INTO nk SELECT g, 'x' FROM generate_series(1, 100) g`)
	p.PG(t, `CREATE TABLE k (id int PRIMARY KEY, v int)`)
	p.PG(t, `INSERT INTO k SELECT g, g FROM generate_series(1, 100) g`)
	s := newSync(t, p.SourceURL, p.TargetURL, "--tables", "nk,k")
	proc := s.start()
	s.waitCaughtUp(60 * time.Second)
	proc.Kill()
	<-proc.Done()

	p.PG(t, `INSERT INTO nk SELECT g, 'after' FROM generate_series(1001, 1010) g`)
	p.PG(t, `DELETE FROM nk WHERE a <= 5`)
	ahead := testenv.CurrentLSN(t, p.SourceURL)
	p.My(t, `UPDATE _sluice_tables SET phase = 'copying' WHERE table_name = 'nk'`)
	p.My(t, `UPDATE _sluice_sync_state SET ahead_lsn = ? WHERE slot = ?`, ahead, s.slot)
	s.start()
	s.waitCaughtUp(90 * time.Second)
	if src, tgt := pgInt(t, p.Source, `SELECT count(*) FROM nk`), int64(myInt(t, p, `SELECT COUNT(*) FROM nk`)); src != tgt {
		t.Errorf("keyless table nk after the restart: source %d rows, target %d", src, tgt)
	}
	verifyEqual(t, p.SourceURL, p.TargetURL, "nk")
	s.abort()
}

// TestKeylessJSONThatDiffersInSpaces: PostgreSQL's json keeps its text as
// written, so two rows of a keyless table may differ only in trailing
// spaces. MariaDB compares its JSON (text in a PAD SPACE collation) as
// equal, so matching the row to delete on every column took whichever it
// found first. The stream's delete must remove the row the source deleted.
func TestKeylessJSONThatDiffersInSpaces(t *testing.T) {
	t.Parallel()
	p := newPair(t)
	p.PG(t, `CREATE TABLE nj (a int, j json)`)
	p.PG(t, `ALTER TABLE nj REPLICA IDENTITY FULL`)
	p.PG(t, `INSERT INTO nj VALUES (1, '{"a":1}  '), (1, '{"a":1}')`)
	s := newSync(t, p.SourceURL, p.TargetURL, "--tables", "nj")
	s.start()
	s.waitCaughtUp(60 * time.Second)
	p.PG(t, `DELETE FROM nj WHERE j::text = '{"a":1}'`)
	s.waitCaughtUp(60 * time.Second)
	var j string
	if err := p.Target.QueryRow(`SELECT j FROM nj`).Scan(&j); err != nil {
		t.Fatalf("the one row left on the target: %v", err)
	}
	if want := `{"a":1}  `; j != want {
		t.Errorf("target row: j=%q; want the row the source kept, j=%q", j, want)
	}
	s.abort()
}
