// Package resume checks that a copy killed with SIGKILL at random moments
// and run again ends with every row exactly once.
package resume

import (
	"context"
	"math/rand/v2"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sluice-db/sluice/internal/testenv"
)

func TestCopySurvivesKill9(t *testing.T) {
	p := testenv.NewPair(t)
	p.PG(t, `CREATE TABLE events (
		id bigserial PRIMARY KEY, at timestamptz NOT NULL, user_id int NOT NULL,
		body text NOT NULL, payload jsonb)`)
	p.PG(t, `INSERT INTO events (at, user_id, body, payload)
		SELECT now() - g * interval '1 second', g % 1000, repeat('로그 😀 ', 1 + g % 7), jsonb_build_object('n', g)
		FROM generate_series(1, 300000) g`)
	p.PG(t, `ANALYZE events`)
	args := append([]string{"copy", "--chunk-rows", "5000", "--parallel", "2"}, p.Args()...)

	kills := 0
	for round := 0; round < 5; round++ {
		cmd, out := testenv.Start(t, args...)
		time.Sleep(time.Duration(150+rand.IntN(1200)) * time.Millisecond)
		if err := cmd.Process.Signal(syscall.SIGKILL); err == nil {
			kills++
		}
		cmd.Wait()
		if strings.Contains(out.String(), "duplicate") {
			t.Fatalf("round %d: duplicate key while resuming:\n%s", round, out)
		}
	}
	if kills == 0 {
		t.Fatal("the copy was never killed; the test proves nothing")
	}
	testenv.MustRun(t, 0, args...)

	var rows, distinct, recorded int64
	if err := p.Target.QueryRow(`SELECT COUNT(*), COUNT(DISTINCT id) FROM events`).Scan(&rows, &distinct); err != nil {
		t.Fatal(err)
	}
	if err := p.Target.QueryRow(`SELECT SUM(rows_copied) FROM _sluice_copy_chunks WHERE table_name = 'events'`).Scan(&recorded); err != nil {
		t.Fatal(err)
	}
	var want int64
	if err := p.Source.QueryRow(context.Background(), `SELECT COUNT(*) FROM events`).Scan(&want); err != nil {
		t.Fatal(err)
	}
	if rows != want || distinct != want || recorded != want {
		t.Fatalf("after %d kills: target has %d rows (%d distinct), progress records %d, source has %d", kills, rows, distinct, recorded, want)
	}
	v := testenv.MustRun(t, 0, append([]string{"verify"}, p.Args()...)...)
	if !strings.Contains(v.Stdout, "300000 rows compared, equal") {
		t.Fatalf("verify after kills:\n%s", v.Stdout)
	}
}
