package events

import (
	"strings"
	"testing"
	"time"

	"github.com/sluice-db/sluice/internal/testenv"
)

// TestOneEventsSyncPerTargetTable: the version checks trust what one process
// keeps in memory, so a second events sync writing the same target table is
// refused whatever its consumer name (it was let in under another name). A
// consumer name is only claimed within its database: a migration to another
// database on the same server may use the same one (it was refused).
func TestOneEventsSyncPerTargetTable(t *testing.T) {
	a := testenv.NewPair(t)
	s1, s2 := newStream(t), newStream(t)
	cfg := writeConfig(t, likesConfig)
	a.PG(t, likesDDL)
	a.PG(t, `INSERT INTO likes VALUES (1, 1, '2024-05-01 10:00:00+00', 'a')`)
	// b: the same source migrated to a second database on the same server
	b := *a
	b.TargetURL = a.TargetURL + "_b"
	a.My(t, "DROP DATABASE IF EXISTS `"+a.Name+"_b`")
	a.My(t, "CREATE DATABASE `"+a.Name+"_b` CHARACTER SET utf8mb4")
	t.Cleanup(func() { a.My(t, "DROP DATABASE IF EXISTS `"+a.Name+"_b`") })

	sync := func(p *testenv.Pair, s *stream, consumer string) *proc {
		return start(t, append([]string{"sync", "--changes=events", "--events", s.URL, "--consumer", consumer, "--config", cfg}, p.Args()...)...)
	}
	first := sync(a, s1, "shared")
	first.waitFor(t, "caught up", 60*time.Second, caughtUp)

	other := sync(&b, s2, "shared")
	other.waitFor(t, "caught up", 60*time.Second, caughtUp)

	second := sync(a, s1, "another")
	if code := second.wait(t, 60*time.Second); code != 2 {
		t.Fatalf("a second events sync to the same target table exited %d; want 2:\n%s", code, second.out)
	}
	if out := second.out.String(); !strings.Contains(out, "SLUICE-EVENTS-BUSY") || !strings.Contains(out, "post_likes") {
		t.Errorf("the refusal does not name SLUICE-EVENTS-BUSY and the table post_likes:\n%s", out)
	}
	if !first.running() || !other.running() {
		t.Fatalf("the running syncs stopped:\n%s\n%s", first.out, other.out)
	}
	first.stop(t)
	other.stop(t)
}
