package synctest

import (
	"context"
	"fmt"
	"math/rand/v2"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/sluice-db/sluice/internal/testenv"
)

const bigLen = 20000 // bytes of a TOASTed value: repeat(md5(…), 625)

// TestEveryKindOfChange syncs a table while it is being copied and after,
// with inserts, updates, primary key changes, updates that leave a TOASTed
// column out of the stream, deletes (also of rows the copy has not reached)
// and a TRUNCATE of a second table, then checks the target equals the
// source and no TOASTed value was lost.
func TestEveryKindOfChange(t *testing.T) {
	t.Parallel()
	p := newPair(t)
	p.PG(t, `CREATE TABLE items (id bigint PRIMARY KEY, name text NOT NULL, n int, big text)`)
	// EXTERNAL: stored out of line and uncompressed, so an UPDATE that does
	// not touch it streams it as "unchanged TOAST"
	p.PG(t, `ALTER TABLE items ALTER COLUMN big SET STORAGE EXTERNAL`)
	p.PG(t, `INSERT INTO items SELECT g, 'item ' || g, g % 1000,
		CASE WHEN g % 40 = 0 THEN repeat(md5(g::text), 625) END FROM generate_series(1, 20000) g`)
	p.PG(t, `CREATE TABLE tags (id bigint PRIMARY KEY, label text NOT NULL)`)
	p.PG(t, `INSERT INTO tags SELECT g, 'tag ' || g FROM generate_series(1, 1000) g`)
	p.PG(t, `ANALYZE items`)
	p.PG(t, `ANALYZE tags`)
	if n := pgInt(t, p.Source, `SELECT count(*) FROM items WHERE pg_column_size(big) >= $1`, bigLen); n != 500 {
		t.Fatalf("setup: %d big values stored uncompressed, want 500", n)
	}

	// throttled, so the changes below land while chunks are being copied
	s := newSync(t, p.SourceURL, p.TargetURL, "--chunk-rows", "500", "--max-rows-per-sec", "2500")
	s.start()
	s.waitCopying(60*time.Second, "items", 1000)

	src := p.Source
	// While copying: a random mix of changes on their own connection …
	mix := testenv.StartWorkload(t, p.SourceURL, testenv.WorkloadOptions{Duration: 20 * time.Second, Pause: 5 * time.Millisecond},
		itemsMix(100000))
	// … and each kind at least once, on rows already copied and not yet.
	before := s.waitCopying(10*time.Second, "items", 1000)
	pgExec(t, src, `INSERT INTO items SELECT g, 'new ' || g, g % 7, CASE WHEN g % 4 = 0 THEN repeat(md5('n' || g), 625) END
		FROM generate_series(20001, 20200) g`)
	pgExec(t, src, `UPDATE items SET name = name || ' updated', n = n + 1 WHERE id % 97 = 0 AND id <= 20000`)
	// primary key changes; 120 and 15000 hold TOASTed values (streamed as unchanged)
	pgExec(t, src, `UPDATE items SET id = id + 300000 WHERE id IN (101, 120, 15000, 15001, 19999)`)
	// … and one from a chunk not yet copied into a key an early chunk, done,
	// has free: the target has no row to move, and the chunk will not have it
	pgExec(t, src, `UPDATE items SET id = 101 WHERE id = 19960`)
	// only the int column of rows whose big text is set: big is left out of the stream
	pgExec(t, src, `UPDATE items SET n = -n - 1 WHERE id % 40 = 0 AND id % 3 = 0`)
	// rows in chunks the copy has not reached, and some it has
	pgExec(t, src, `DELETE FROM items WHERE id BETWEEN 18000 AND 18120 OR id BETWEEN 200 AND 260`)
	pgExec(t, src, `TRUNCATE tags`)
	pgExec(t, src, `INSERT INTO tags SELECT g, 'after truncate ' || g FROM generate_series(5001, 5100) g`)
	after, err := s.status()
	if err != nil {
		t.Fatal(err)
	}
	if after.Phase != "copying" || after.RowsCopied("items") >= 17500 {
		t.Fatalf("the copy went too fast for the test: %d rows copied before, %d after the changes (phase %s); the changes were meant to land mid-copy",
			before.RowsCopied("items"), after.RowsCopied("items"), after.Phase)
	}
	t.Logf("mid-copy changes made while %d..%d of 20000 rows were copied", before.RowsCopied("items"), after.RowsCopied("items"))

	s.wait(90*time.Second, "the copy to finish", func(st testenv.SyncStatus) bool { return st.Phase == "streaming" })
	// Only the stream is left: sluice yields the processors to a source on
	// its host (--stream-nice, 10 by default), every thread of it.
	s.waitNice(10*time.Second, 10)
	ops, errs, first := mix.Stop()
	if first != nil {
		t.Fatalf("workload: %v", first)
	}
	t.Logf("random changes during the copy: %d transactions (%d errors)", ops, errs)

	// After the copy: every kind again.
	pgExec(t, src, `INSERT INTO items SELECT g, 'later ' || g, 1, repeat(md5('l' || g), 625) FROM generate_series(40001, 40050) g`)
	pgExec(t, src, `UPDATE items SET name = 'renamed', big = repeat(md5('changed' || id), 625) WHERE id IN (400, 800)`)
	pgExec(t, src, `UPDATE items SET big = NULL WHERE id = 1200`)
	pgExec(t, src, `UPDATE items SET big = repeat(md5('was null' || id), 625) WHERE id = 1201`)
	pgExec(t, src, `UPDATE items SET id = id + 500000 WHERE id IN (1600, 1601, 40040)`)
	pgExec(t, src, `UPDATE items SET n = n + 7 WHERE id % 40 = 0 AND id % 5 = 0`)
	pgExec(t, src, `DELETE FROM items WHERE id BETWEEN 3000 AND 3100 OR id = 40001`)
	pgExec(t, src, `TRUNCATE tags`)
	pgExec(t, src, `INSERT INTO tags SELECT g, 'second truncate ' || g FROM generate_series(9001, 9010) g`)
	// a transaction mixing them, with a key moving back and forth
	tx, err := src.Begin(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{
		`UPDATE items SET id = 700000 WHERE id = 2000`,
		`UPDATE items SET n = 12345 WHERE id = 700000`,
		`INSERT INTO items VALUES (2000, 'reused key', 1, repeat('zz', 10000))`,
		`DELETE FROM items WHERE id = 2040`,
		`UPDATE items SET n = 1 WHERE id = 2080`,
	} {
		if _, err := tx.Exec(context.Background(), q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	if err := tx.Commit(context.Background()); err != nil {
		t.Fatal(err)
	}

	s.waitCaughtUp(90 * time.Second)
	out := verifyEqual(t, p.SourceURL, p.TargetURL, "items", "tags")
	wantItems := pgInt(t, src, `SELECT count(*) FROM items`)
	if !regexp.MustCompile(`items → items: ` + strconv.FormatInt(wantItems, 10) + ` rows compared, equal`).MatchString(out) {
		t.Errorf("verify did not compare all %d rows of items:\n%s", wantItems, out)
	}

	// TOASTed values on the target: same rows hold one, same length and content.
	type big struct {
		id     int64
		length int64
		sum    string
	}
	srcBig := map[int64]big{}
	rows, err := src.Query(context.Background(), `SELECT id, length(big), md5(big) FROM items WHERE big IS NOT NULL`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var b big
		if err := rows.Scan(&b.id, &b.length, &b.sum); err != nil {
			t.Fatal(err)
		}
		srcBig[b.id] = b
	}
	if rows.Err() != nil {
		t.Fatal(rows.Err())
	}
	if len(srcBig) < 400 {
		t.Fatalf("only %d rows with big values left on the source; the check proves little", len(srcBig))
	}
	trows, err := p.Target.Query(`SELECT id, LENGTH(big), MD5(big) FROM items WHERE big IS NOT NULL`)
	if err != nil {
		t.Fatal(err)
	}
	defer trows.Close()
	seen := 0
	for trows.Next() {
		var b big
		if err := trows.Scan(&b.id, &b.length, &b.sum); err != nil {
			t.Fatal(err)
		}
		seen++
		if want, ok := srcBig[b.id]; !ok {
			t.Errorf("target row %d has a big value, the source's has none", b.id)
		} else if want != b {
			t.Errorf("target row %d: big value of %d bytes (md5 %s), source %d bytes (md5 %s)", b.id, b.length, b.sum, want.length, want.sum)
		}
	}
	if seen != len(srcBig) {
		var nulls []int64
		for id := range srcBig {
			var isNull bool
			if err := p.Target.QueryRow(`SELECT big IS NULL FROM items WHERE id = ?`, id).Scan(&isNull); err == nil && isNull {
				nulls = append(nulls, id)
			}
		}
		t.Errorf("target has %d rows with a big value, source %d; NULL on the target but set on the source: %v", seen, len(srcBig), nulls)
	}
	// the rows whose TOASTed value was left out of an update, in particular
	checked := 0
	for _, id := range []int64{120 + 300000, 15000 + 300000, 1600 + 500000, 700000, 600, 19800, 2080, 1320} {
		if srcBig[id].length != bigLen { // the random changes moved or deleted it
			continue
		}
		checked++
		var length int64
		if err := p.Target.QueryRow(`SELECT COALESCE(LENGTH(big), -1) FROM items WHERE id = ?`, id).Scan(&length); err != nil {
			t.Errorf("target row %d: %v", id, err)
		} else if length != bigLen {
			t.Errorf("target row %d: big is %d bytes long (-1: NULL), want %d", id, length, bigLen)
		}
	}
	t.Logf("%d rows with big values compared; %d of them had it left out of a streamed update", len(srcBig), checked)

	s.abort()
}

// itemsMix is one random change to items per call: inserts (some with big
// values), updates, updates leaving big out, key changes and deletes.
func itemsMix(newKeys int64) func(ctx context.Context, c *pgx.Conn, rng *rand.Rand) error {
	next := newKeys
	return func(ctx context.Context, c *pgx.Conn, rng *rand.Rand) error {
		id := 1 + rng.Int64N(20000)
		var err error
		switch rng.IntN(6) {
		case 0:
			next++
			var big *string
			if next%3 == 0 {
				v := strings.Repeat(fmt.Sprintf("%032x", rng.Uint64()), bigLen/32)
				big = &v
			}
			_, err = c.Exec(ctx, `INSERT INTO items VALUES ($1, 'mix', 1, $2)`, next, big)
		case 1:
			_, err = c.Exec(ctx, `UPDATE items SET name = 'mix ' || $2, n = n + 1 WHERE id = $1`, id, strconv.Itoa(rng.IntN(1000)))
		case 2: // a row with a big value, big not touched
			_, err = c.Exec(ctx, `UPDATE items SET n = n + 1 WHERE id = $1`, id-id%40+40)
		case 3:
			next++
			_, err = c.Exec(ctx, `UPDATE items SET id = $2 WHERE id = $1`, id-id%40+40, next)
		case 4:
			_, err = c.Exec(ctx, `DELETE FROM items WHERE id = $1`, id)
		case 5: // several in one transaction
			tx, terr := c.Begin(ctx)
			if terr != nil {
				return terr
			}
			defer tx.Rollback(ctx)
			next++
			if _, err = tx.Exec(ctx, `INSERT INTO items VALUES ($1, 'mix tx', 2, NULL)`, next); err != nil {
				return err
			}
			if _, err = tx.Exec(ctx, `UPDATE items SET n = n * 2 WHERE id = $1`, id-id%40+40); err != nil {
				return err
			}
			if _, err = tx.Exec(ctx, `DELETE FROM items WHERE id = $1`, id+1); err != nil {
				return err
			}
			err = tx.Commit(ctx)
		}
		return err
	}
}

// TestUniqueValueMovesBetweenRows: within one batch a unique value leaves
// one row and goes to another that the batch inserted first. Written as net
// effects in first-touched order, the new row's upsert meets the old holder
// of the value: MariaDB's ON DUPLICATE KEY UPDATE would then update that
// other row and drop the new one without an error. The target must end as
// the source, swap included.
func TestUniqueValueMovesBetweenRows(t *testing.T) {
	t.Parallel()
	p := newPair(t)
	p.PG(t, `CREATE TABLE users (id int PRIMARY KEY, email text NOT NULL UNIQUE, name text NOT NULL)`)
	p.PG(t, `INSERT INTO users VALUES (1, 'x@example.com', 'Ann'), (3, 'p@example.com', 'Cy'), (4, 'q@example.com', 'Di')`)
	// a uuid key becomes MariaDB's UUID type, which the upsert's guard must accept
	p.PG(t, `CREATE TABLE tokens (id uuid PRIMARY KEY, code text NOT NULL UNIQUE)`)
	p.PG(t, `INSERT INTO tokens VALUES ('00000000-0000-0000-0000-000000000001', 'a')`)
	s := newSync(t, p.SourceURL, p.TargetURL)
	s.start()
	s.waitCaughtUp(60 * time.Second)

	// one transaction, so one batch: user 2 is touched first, then takes
	// user 1's address after user 1 gave it up
	p.PG(t, `BEGIN;
		INSERT INTO users VALUES (2, 'w@example.com', 'Bo');
		UPDATE users SET email = 'y@example.com' WHERE id = 1;
		UPDATE users SET email = 'x@example.com' WHERE id = 2;
		COMMIT`)
	p.PG(t, `BEGIN;
		INSERT INTO tokens VALUES ('00000000-0000-0000-0000-000000000002', 'b');
		UPDATE tokens SET code = 'c' WHERE code = 'a';
		UPDATE tokens SET code = 'a' WHERE code = 'b';
		INSERT INTO tokens VALUES ('00000000-0000-0000-0000-000000000003', 'd');
		COMMIT`)
	s.waitCaughtUp(60 * time.Second)
	verifyEqual(t, p.SourceURL, p.TargetURL, "users", "tokens")
	// and a swap between two existing rows, through a third value
	p.PG(t, `BEGIN;
		UPDATE users SET email = 'tmp@example.com' WHERE id = 3;
		UPDATE users SET email = 'p@example.com' WHERE id = 4;
		UPDATE users SET email = 'q@example.com' WHERE id = 3;
		COMMIT`)
	s.waitCaughtUp(60 * time.Second)
	verifyEqual(t, p.SourceURL, p.TargetURL, "users", "tokens")
}

// TestDeferrableUniqueConstraint: a unique constraint the source checks at
// commit (DEFERRABLE) lets one statement shift every value by one and one
// transaction swap two. MySQL checks uniqueness row by row and would refuse
// both when replayed, so the target gets a plain index, with a warning
// logged before the run, and the sync applies them and ends equal.
func TestDeferrableUniqueConstraint(t *testing.T) {
	t.Parallel()
	p := newPair(t)
	p.PG(t, `CREATE TABLE slots (id int PRIMARY KEY, pos int NOT NULL, CONSTRAINT one_per_pos UNIQUE (pos) DEFERRABLE)`)
	p.PG(t, `INSERT INTO slots SELECT g, g FROM generate_series(1, 3000) g`)
	s := newSync(t, p.SourceURL, p.TargetURL)
	proc := s.start()
	s.waitCaughtUp(60 * time.Second)

	p.PG(t, `UPDATE slots SET pos = pos + 1`) // checked at the statement's end: fine on the source
	p.PG(t, `BEGIN; SET CONSTRAINTS one_per_pos DEFERRED;
		UPDATE slots SET pos = 3 WHERE id = 1; UPDATE slots SET pos = 2 WHERE id = 2; COMMIT`)
	s.waitCaughtUp(60 * time.Second)
	if err := s.alive(); err != nil {
		t.Fatal(err)
	}
	out := proc.Output()
	if !strings.Contains(out, "SLUICE-PLAN-WARNING") || !strings.Contains(out, "one_per_pos is DEFERRABLE") {
		t.Errorf("no warning about the DEFERRABLE constraint before the run:\n%s", testenv.Tail(out, 20))
	}
	var nonUnique int
	if err := p.Target.QueryRow(`SELECT non_unique FROM information_schema.statistics
		WHERE table_schema = DATABASE() AND table_name = 'slots' AND index_name = 'one_per_pos'`).Scan(&nonUnique); err != nil {
		t.Fatalf("index one_per_pos on the target: %v", err)
	}
	if nonUnique != 1 {
		t.Errorf("target index one_per_pos is unique; want a plain index for a DEFERRABLE constraint")
	}
	verifyEqual(t, p.SourceURL, p.TargetURL, "slots")
}

// One source transaction writing 300 rows of 60 kB reaches the target in
// statements of at most 4 MiB of values: as one statement (18 MB) it would
// be over MariaDB's default max_allowed_packet of 16 MiB. (The test server
// allows 256 MiB; TestPartEnd checks where statements are cut.)
func TestWideRowsStream(t *testing.T) {
	t.Parallel()
	p := newPair(t)
	p.PG(t, `CREATE TABLE pages (id int PRIMARY KEY, body text)`)
	s := newSync(t, p.SourceURL, p.TargetURL, "--tables", "pages")
	s.start()
	s.waitCaughtUp(60 * time.Second)
	p.PG(t, `INSERT INTO pages SELECT g, repeat(md5(g::text), 1875) FROM generate_series(1, 300) g`)
	s.waitCaughtUp(90 * time.Second)
	var n, size int64
	if err := p.Target.QueryRow(`SELECT COUNT(*), COALESCE(SUM(LENGTH(body)), 0) FROM pages`).Scan(&n, &size); err != nil {
		t.Fatal(err)
	}
	if n != 300 || size != 300*60000 {
		t.Fatalf("target has %d rows, %d bytes of body; want 300 rows of 60,000", n, size)
	}
	verifyEqual(t, p.SourceURL, p.TargetURL, "pages")
	s.abort()
}

// TestStatusCountsCommittedChanges: status counts a change once the target
// has committed it, per table and in its header alike (their sum). While a
// batch waits for its --batch-delay the table's count does not run ahead of
// the rows the target holds; once caught up each table shows exactly the
// changes made to it (a key change is one change).
func TestStatusCountsCommittedChanges(t *testing.T) {
	t.Parallel()
	p := newPair(t)
	p.PG(t, `CREATE TABLE a (id int PRIMARY KEY, v int)`)
	p.PG(t, `CREATE TABLE b (id int PRIMARY KEY, v int)`)
	p.PG(t, `INSERT INTO b SELECT g, g FROM generate_series(1, 20) g`)
	s := newSync(t, p.SourceURL, p.TargetURL, "--tables", "a,b", "--batch-delay", "2s")
	s.start()
	s.waitCaughtUp(60 * time.Second)
	p.PG(t, `INSERT INTO a SELECT g, g FROM generate_series(1, 50) g`)
	deadline := time.Now().Add(1500 * time.Millisecond) // within the batch delay
	for time.Now().Before(deadline) {
		st, err := s.status()
		if err != nil {
			t.Fatal(err)
		}
		if held := int64(myInt(t, p, `SELECT COUNT(*) FROM a`)); st.Changes("a") > held {
			t.Fatalf("status counts %d changes of a applied while the target holds %d of its rows", st.Changes("a"), held)
		}
		time.Sleep(50 * time.Millisecond)
	}
	p.PG(t, `UPDATE a SET v = v + 1 WHERE id <= 30`)
	p.PG(t, `DELETE FROM a WHERE id > 40`)
	p.PG(t, `UPDATE b SET id = id + 100 WHERE id <= 7`) // key changes
	st := s.waitCaughtUp(60 * time.Second)
	if a, b := st.Changes("a"), st.Changes("b"); a != 50+30+10 || b != 7 || st.ChangesApplied != a+b {
		t.Errorf("status: a %d, b %d changes applied, header %d; want a 90, b 7 and the header their sum 97", a, b, st.ChangesApplied)
	}
	s.abort()
}

// Keys beyond a double's precision: MariaDB compares a DECIMAL column with a
// list of strings as doubles, so when it scans the table rather than look
// each key up, deleting half the keys of a range deleted all of them.
func TestWideDecimalKeys(t *testing.T) {
	t.Parallel()
	p := newPair(t)
	p.PG(t, `CREATE TABLE ledger (id numeric(20,0) PRIMARY KEY, note text)`)
	p.PG(t, `INSERT INTO ledger SELECT 12345678901234567000 + g, 'n' || g FROM generate_series(0, 399) g`)
	s := newSync(t, p.SourceURL, p.TargetURL, "--tables", "ledger")
	s.start()
	s.waitCaughtUp(60 * time.Second)
	p.My(t, `ANALYZE TABLE ledger`)
	p.PG(t, `DELETE FROM ledger WHERE (id - 12345678901234567000) % 2 = 0`) // one statement: one batch
	s.waitCaughtUp(60 * time.Second)
	var n, odd int
	if err := p.Target.QueryRow(`SELECT COUNT(*), COALESCE(SUM(MOD(id, 2)), 0) FROM ledger`).Scan(&n, &odd); err != nil {
		t.Fatal(err)
	}
	if n != 200 || odd != 200 {
		t.Fatalf("target keeps %d rows, %d of them odd; want the 200 odd keys", n, odd)
	}
	verifyEqual(t, p.SourceURL, p.TargetURL, "ledger")
	s.abort()
}
