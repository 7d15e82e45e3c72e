package synctest

import (
	"context"
	"strings"
	"testing"
	"time"
)

// The replica identity decides what a delete or a key change tells about
// its row, so sluice checks it against the key it matches rows on: at the
// start and whenever the source changes it.
func TestReplicaIdentity(t *testing.T) {
	t.Parallel()
	p := newPair(t)

	// USING INDEX on another unique index: a delete would name the row by
	// email, sluice looks it up by id. Refused before anything is created.
	t.Run("another index refused", func(t *testing.T) {
		p.PG(t, `CREATE TABLE members (id int PRIMARY KEY, email text NOT NULL UNIQUE, name text)`)
		p.PG(t, `ALTER TABLE members REPLICA IDENTITY USING INDEX members_email_key`)
		s := newSync(t, p.SourceURL, p.TargetURL, "--tables", "members")
		proc := s.start()
		code, ok := proc.Wait(60 * time.Second)
		if !ok {
			t.Fatal("sluice sync still runs after 60 s; want it refused at once")
		}
		out := proc.Output()
		if code != 4 {
			t.Errorf("exit %d, want 4 (schema problem)\n%s", code, out)
		}
		for _, want := range []string{"SLUICE-SYNC-IDENTITY", "members", "members_email_key", "REPLICA IDENTITY DEFAULT"} {
			if !strings.Contains(out, want) {
				t.Errorf("the refusal does not mention %q:\n%s", want, out)
			}
		}
		s.assertNoSlot()
	})

	// FULL when planned, DEFAULT later: old rows then hold the key alone, and
	// a key change keeping a TOASTed value must not take the others' NULLs.
	// An incompressible TOASTed key must still find its row on an update.
	t.Run("changed while streaming", func(t *testing.T) {
		p.PG(t, `CREATE TABLE docs (id text PRIMARY KEY, slug text NOT NULL UNIQUE, version int, body text, a text, b text)`)
		p.PG(t, `ALTER TABLE docs REPLICA IDENTITY FULL`)
		// md5 chains are incompressible: pglz leaves them out of line as is
		p.PG(t, `INSERT INTO docs SELECT 'd' || g, 's' || g, 1, (SELECT string_agg(md5(g::text || i::text), '') FROM generate_series(1, 400) i) FROM generate_series(1, 20) g`)
		// A key stored out of line, yet short enough for the target's key: the
		// row is over the TOAST threshold (2 kB) and the key its largest value.
		p.PG(t, `INSERT INTO docs SELECT (SELECT string_agg(md5(i::text), '') FROM generate_series(1, 22) i), 'long', 1, m, m, m
			FROM (SELECT string_agg(md5((i * 7)::text), '') AS m FROM generate_series(1, 19) i) x`)
		var toast string
		if err := p.Source.QueryRow(context.Background(), `SELECT reltoastrelid::regclass::text FROM pg_class WHERE oid = 'docs'::regclass`).Scan(&toast); err != nil {
			t.Fatal(err)
		}
		if n := pgInt(t, p.Source, `SELECT count(*) FROM `+toast+` WHERE length(chunk_data) = 704`); n != 1 {
			t.Fatalf("the long key (704 bytes) is not in the TOAST table %s; the test needs it out of line", toast)
		}
		s := newSync(t, p.SourceURL, p.TargetURL, "--tables", "docs")
		proc := s.start()
		s.waitCaughtUp(60 * time.Second)
		p.PG(t, `ALTER TABLE docs REPLICA IDENTITY DEFAULT`)
		p.PG(t, `UPDATE docs SET id = id || '-moved', version = 2 WHERE id IN ('d1', 'd2')`)
		p.PG(t, `UPDATE docs SET version = 3 WHERE slug = 'long'`)
		s.waitCaughtUp(60 * time.Second)
		var nullBodies, longKeyVersion int
		if err := p.Target.QueryRow(`SELECT COUNT(*) FROM docs WHERE body IS NULL`).Scan(&nullBodies); err != nil {
			t.Fatal(err)
		}
		if nullBodies != 0 {
			t.Errorf("%d rows lost their TOASTed body on a key change after REPLICA IDENTITY went back to DEFAULT", nullBodies)
		}
		if err := p.Target.QueryRow(`SELECT version FROM docs WHERE slug = 'long'`).Scan(&longKeyVersion); err != nil || longKeyVersion != 3 {
			t.Errorf("the row with a TOASTed key has version %d (%v); want 3", longKeyVersion, err)
		}
		verifyEqual(t, p.SourceURL, p.TargetURL, "docs")

		// Now an identity without the key: the sync stops, naming it.
		p.PG(t, `ALTER TABLE docs REPLICA IDENTITY USING INDEX docs_slug_key`)
		p.PG(t, `DELETE FROM docs WHERE id = 'd3'`)
		code, ok := proc.Wait(60 * time.Second)
		if !ok {
			t.Fatal("the sync kept running after the replica identity lost the key")
		}
		out := proc.Output()
		if code != 4 || !strings.Contains(out, "SLUICE-SYNC-SCHEMACHANGE") || !strings.Contains(out, "REPLICA IDENTITY no longer holds key column id") {
			t.Errorf("exit %d; want 4 with SLUICE-SYNC-SCHEMACHANGE naming key column id\n%s", code, out)
		}
		s.abort()
	})
}
