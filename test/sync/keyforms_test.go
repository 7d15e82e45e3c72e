package synctest

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/sluice-db/sluice/internal/testenv"
)

// TestPartitionedTableStreams: a partitioned table's changes are published
// under its partitions' names unless the publication publishes through the
// root; sync knew only the table's own name and dropped every change
// without a word (and a cutover then verified nothing). Updates, deletes
// and inserts in both partitions, during and after the copy, must arrive.
func TestPartitionedTableStreams(t *testing.T) {
	t.Parallel()
	p := newPair(t)
	p.PG(t, `CREATE TABLE events (id int PRIMARY KEY, v text NOT NULL) PARTITION BY RANGE (id)`)
	p.PG(t, `CREATE TABLE events_low PARTITION OF events FOR VALUES FROM (1) TO (1000)`)
	p.PG(t, `CREATE TABLE events_high PARTITION OF events FOR VALUES FROM (1000) TO (3000)`)
	p.PG(t, `INSERT INTO events SELECT g, 'v' || g FROM generate_series(1, 1500) g`)
	plan := testenv.MustRun(t, 0, "plan", "--source", p.SourceURL, "--target", p.TargetURL, "--tables", "events").Stdout
	if !strings.Contains(plan, "events: partitioned") || !strings.Contains(plan, "a TRUNCATE, DETACH or DROP of one of its partitions, or an ATTACH of a table holding rows, reaches no change stream") {
		t.Errorf("the plan does not say that a partition's TRUNCATE is not streamed:\n%s", plan)
	}
	s := newSync(t, p.SourceURL, p.TargetURL, "--chunk-rows", "200", "--max-rows-per-sec", "1000")
	proc := s.start()
	s.waitCopying(60*time.Second, "events", 200)
	p.PG(t, `UPDATE events SET v = 'during' WHERE id % 100 = 7`) // rows of both partitions, copied or not
	s.waitCaughtUp(60 * time.Second)
	p.PG(t, `UPDATE events SET v = 'after' WHERE id <= 10 OR id BETWEEN 1000 AND 1010`)
	p.PG(t, `DELETE FROM events WHERE id BETWEEN 1100 AND 1109 OR id BETWEEN 500 AND 504`)
	p.PG(t, `INSERT INTO events VALUES (1900, 'new high'), (502, 'new low')`)
	s.waitCaughtUp(60 * time.Second)
	// 12 left of those updated during the copy, 21 after, 2 inserted
	if n := myInt(t, p, `SELECT COUNT(*) FROM events WHERE v IN ('during', 'after', 'new high', 'new low')`); n != 35 {
		t.Errorf("the target holds %d rows the stream changed; want 35", n)
	}
	verifyEqual(t, p.SourceURL, p.TargetURL, "events")
	// pgoutput describes each partition along with the root it streams
	// the partition's changes under: that is not a table the sync skips
	if out := proc.Output(); strings.Contains(out, "SLUICE-SYNC-UNKNOWNTABLE") {
		t.Errorf("the sync warns of skipped changes of a partition whose changes it applies:\n%s", testenv.Tail(out, 10))
	}

	// A table someone adds to the publication is not this sync's: its
	// changes are not applied, and the log says so instead of nothing.
	p.PG(t, `CREATE TABLE stray (id int PRIMARY KEY)`)
	p.PG(t, `ALTER PUBLICATION `+s.slot+` ADD TABLE stray`)
	p.PG(t, `INSERT INTO stray VALUES (1)`)
	p.PG(t, `UPDATE events SET v = 'last' WHERE id = 1`)
	s.waitCaughtUp(60 * time.Second)
	if out := proc.Output(); !strings.Contains(out, "SLUICE-SYNC-UNKNOWNTABLE") || !strings.Contains(out, "public.stray") {
		t.Errorf("the sync does not say it skips the changes of stray:\n%s", testenv.Tail(out, 10))
	}
}

// TestMoneyKeyInsideCopyWindow: a money key is copied as numeric text
// (11.00) and streamed as money text ($11.00). The watermark window matched
// a change to the chunk's rows by that text, so nothing matched: a row
// deleted or updated while its chunk was being read came back, or stayed
// old, when the chunk was written. Changes made all through a slow copy
// must all hold at the end.
func TestMoneyKeyInsideCopyWindow(t *testing.T) {
	t.Parallel()
	p := newPair(t)
	p.PG(t, `CREATE TABLE prices (id money PRIMARY KEY, v text NOT NULL)`)
	p.PG(t, `INSERT INTO prices SELECT g::numeric::money, 'v' || g FROM generate_series(1, 2000) g`)
	s := newSync(t, p.SourceURL, p.TargetURL, "--chunk-rows", "250", "--max-rows-per-sec", "500")
	s.start()
	s.waitCopying(60*time.Second, "prices", 1)
	for i := 0; i < 40; i++ { // some land while their chunk is read (its window is open)
		p.PG(t, fmt.Sprintf(`DELETE FROM prices WHERE id = %d::numeric::money`, 1+(i*47)%2000))
		p.PG(t, fmt.Sprintf(`UPDATE prices SET v = 'upd' WHERE id = %d::numeric::money`, 2+(i*31)%2000))
		time.Sleep(100 * time.Millisecond)
	}
	s.waitCaughtUp(90 * time.Second)
	verifyEqual(t, p.SourceURL, p.TargetURL, "prices")
}

// TestMoneyInAnotherLocale: a source database whose lc_monetary is German
// prints money as "1.234,56 €", which read as C money would be wrong or
// refused. sluice pins lc_monetary=C on its connections, the replication
// connection included, so copied and streamed money arrive as numbers and
// verify finds both sides equal.
func TestMoneyInAnotherLocale(t *testing.T) {
	t.Parallel()
	p := newPair(t)
	p.PG(t, `ALTER DATABASE `+p.Name+` SET lc_monetary = 'de_DE.UTF-8'`)
	p.PG(t, `CREATE TABLE prices (id int PRIMARY KEY, price money NOT NULL)`)
	p.PG(t, `INSERT INTO prices SELECT g, g * 1000.5 FROM generate_series(1, 100) g`)
	ctx := context.Background()
	c, err := pgx.Connect(ctx, p.SourceURL)
	if err != nil {
		t.Fatal(err)
	}
	var shown string
	err = c.QueryRow(ctx, `SELECT price::text FROM prices WHERE id = 7`).Scan(&shown)
	c.Close(ctx)
	if err != nil || shown != "7.003,50 €" {
		t.Fatalf("a new session of the source shows money as %q (%v); want the German form 7.003,50 €, or the test proves nothing", shown, err)
	}
	s := newSync(t, p.SourceURL, p.TargetURL)
	s.start()
	s.waitCaughtUp(60 * time.Second)
	p.PG(t, `UPDATE prices SET price = price * 2 WHERE id <= 10`)
	p.PG(t, `INSERT INTO prices VALUES (101, 1234567.89)`)
	s.waitCaughtUp(60 * time.Second)
	var copied, streamed, inserted string
	if err := p.Target.QueryRow(`SELECT (SELECT price FROM prices WHERE id = 20), (SELECT price FROM prices WHERE id = 7), (SELECT price FROM prices WHERE id = 101)`).
		Scan(&copied, &streamed, &inserted); err != nil {
		t.Fatal(err)
	}
	if copied != "20010.00" || streamed != "14007.00" || inserted != "1234567.89" {
		t.Errorf("target money: copied %s, updated %s, inserted %s; want 20010.00, 14007.00 and 1234567.89", copied, streamed, inserted)
	}
	verifyEqual(t, p.SourceURL, p.TargetURL, "prices")
	s.abort()
}
