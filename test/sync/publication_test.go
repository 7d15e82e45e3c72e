package synctest

import (
	"strings"
	"testing"
	"time"

	"github.com/sluice-db/sluice/internal/testenv"
)

// TestAlteredPublicationRestored: sluice's publication altered, while the
// sync was down, to publish no deletes: a delete made then never reaches
// the stream. The next start says so (naming the publication and what it
// missed, with verify --repair as the way to bring the target back) and
// publishes every kind of change again; verify --repair then finds the
// missed delete and the target ends equal.
func TestAlteredPublicationRestored(t *testing.T) {
	t.Parallel()
	p, s, proc := syncedEv(t, plain)
	proc.Kill()
	p.PG(t, `ALTER PUBLICATION `+s.slot+` SET (publish = 'insert, update')`)
	p.PG(t, `DELETE FROM ev WHERE id = 1`)
	proc = s.start()
	s.waitCaughtUp(60 * time.Second)
	if out := proc.Output(); !strings.Contains(out, "SLUICE-SYNC-PUBLICATION") || !strings.Contains(out, "to publish no DELETE, TRUNCATE") {
		t.Errorf("the sync did not say its publication had been altered:\n%s", testenv.Tail(out, 10))
	}
	p.PG(t, `DELETE FROM ev WHERE id = 2`)
	waitFor(t, 60*time.Second, "the delete of row 2 applied", func() bool {
		var n int
		return p.Target.QueryRow(`SELECT COUNT(*) FROM ev WHERE id = 2`).Scan(&n) == nil && n == 0
	})
	testenv.MustRun(t, 0, "verify", "--source", p.SourceURL, "--target", p.TargetURL, "--tables", "ev", "--repair")
	verifyEqual(t, p.SourceURL, p.TargetURL, "ev")
	s.abort()
}

// TestWarnsOfANonDurableTarget: the slot is confirmed once the target's
// commit returns; with innodb_flush_log_at_trx_commit = 2 a target host
// crash loses commits the source will not send again, so the sync says so
// at start.
func TestWarnsOfANonDurableTarget(t *testing.T) {
	p := newPair(t)
	createOrders(t, p, 10)
	p.My(t, `SET GLOBAL innodb_flush_log_at_trx_commit = 2`)
	t.Cleanup(func() { p.My(t, `SET GLOBAL innodb_flush_log_at_trx_commit = 1`) })
	s := newSync(t, p.SourceURL, p.TargetURL)
	proc := s.start()
	waitFor(t, 60*time.Second, "a SLUICE-TARGET-DURABILITY warning", func() bool {
		return strings.Contains(proc.Output(), "SLUICE-TARGET-DURABILITY")
	})
	p.My(t, `SET GLOBAL innodb_flush_log_at_trx_commit = 1`)
	s.waitCaughtUp(60 * time.Second)
}
