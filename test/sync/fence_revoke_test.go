package synctest

import (
	"context"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/sluice-db/sluice/internal/fence"
	"github.com/sluice-db/sluice/internal/testenv"
)

// TestRevokeFence: --fence revoke takes the application role's write
// privileges on the migrated tables for the cutover and keeps them taken
// after it, so an application instance still on the source is refused
// instead of writing rows the target gets only through the stream. Every
// way the cutover does not happen gives them back: a role that would keep
// writing through PUBLIC is refused before anything is revoked; a cutover
// that times out restores them; a run that died with them taken restores
// them when it starts again; a retry keeps the record of what an earlier
// attempt took; and abort (the way back) restores them after a cutover.
func TestRevokeFence(t *testing.T) {
	t.Parallel()
	p := newPair(t)
	createOrders(t, p, 200)
	role := testenv.DBName(t) + "_app"
	p.PG(t, `DROP ROLE IF EXISTS `+role+`; CREATE ROLE `+role+` LOGIN`)
	t.Cleanup(func() { p.PG(t, `DROP OWNED BY `+role+`; DROP ROLE `+role) })
	p.PG(t, `GRANT SELECT, INSERT, UPDATE, DELETE ON orders TO `+role)
	s := newSync(t, p.SourceURL, p.TargetURL, "--fence", "revoke", "--fence-role", role, "--lock-timeout", "1s", "--cutover-timeout", "3s")
	proc := s.start()
	s.waitCaughtUp(60 * time.Second)
	ctx := context.Background()
	mayInsert := func() bool {
		t.Helper()
		var ok bool
		if err := p.Source.QueryRow(ctx, `SELECT has_table_privilege($1, 'orders', 'INSERT')`, role).Scan(&ok); err != nil {
			t.Fatal(err)
		}
		return ok
	}

	// a role that may write through PUBLIC cannot be fenced by revoking
	p.PG(t, `GRANT UPDATE ON orders TO PUBLIC`)
	if r := s.cutover(); r.Exit != 2 || !strings.Contains(r.Stdout+r.Stderr, "SLUICE-CUTOVER-FENCEROLE") || !mayInsert() {
		t.Fatalf("cutover with UPDATE granted to PUBLIC: exit %d, role may insert %v; want exit 2 with SLUICE-CUTOVER-FENCEROLE and nothing revoked\n%s%s", r.Exit, mayInsert(), r.Stdout, r.Stderr)
	}
	p.PG(t, `REVOKE UPDATE ON orders FROM PUBLIC`)

	// a cutover that times out under the fence gives the privileges back
	release := stallTarget(t, p)
	r := s.cutover()
	release()
	if out := r.Stdout + r.Stderr; r.Exit == 0 || !strings.Contains(out, "SLUICE-CUTOVER-TIMEOUT") {
		t.Fatalf("cutover with a stalled target: exit %d; want SLUICE-CUTOVER-TIMEOUT\n%s", r.Exit, out)
	}
	if !mayInsert() {
		t.Fatalf("after a cutover that timed out the application role may not insert: the revoked privileges were not given back")
	}

	// a run that died with the privileges revoked gives them back when it starts again
	proc.Kill()
	<-proc.Done()
	grants := []fence.Grant{{Table: `"public"."orders"`, Role: role, Privileges: []string{"INSERT", "UPDATE", "DELETE"}}}
	p.PG(t, `REVOKE INSERT, UPDATE, DELETE ON orders FROM `+role)
	p.My(t, `UPDATE _sluice_sync_state SET revoked_grants = ? WHERE slot = ?`, fence.EncodeGrants(grants), s.slot)
	s.start()
	waitFor(t, 30*time.Second, "the restarted sync to give the revoked privileges back", mayInsert)
	s.waitCaughtUp(60 * time.Second)

	// a privilege held only on a column is not taken by revoking the
	// table's (revoking UPDATE on the table would take it, but the role
	// holds no UPDATE on the table to revoke)
	p.PG(t, `REVOKE UPDATE ON orders FROM `+role+`; GRANT UPDATE (status) ON orders TO `+role)
	if r := s.cutover(); r.Exit != 2 || !strings.Contains(r.Stdout+r.Stderr, "SLUICE-CUTOVER-FENCEROLE") || !mayInsert() {
		t.Fatalf("cutover with UPDATE granted on a column: exit %d, role may insert %v; want exit 2 with SLUICE-CUTOVER-FENCEROLE and nothing revoked\n%s%s", r.Exit, mayInsert(), r.Stdout, r.Stderr)
	}
	p.PG(t, `REVOKE UPDATE (status) ON orders FROM `+role+`; GRANT UPDATE ON orders TO `+role)

	// an earlier attempt whose fence committed but whose cutover was not
	// recorded holds the privileges: the next attempt finds none to take,
	// and must keep the record of them
	p.PG(t, `REVOKE INSERT, UPDATE, DELETE ON orders FROM `+role)
	p.My(t, `UPDATE _sluice_sync_state SET revoked_grants = ? WHERE slot = ?`, fence.EncodeGrants(grants), s.slot)

	// the cutover keeps them revoked: the application is refused on the source
	r = s.cutover()
	if out := r.Stdout + r.Stderr; r.Exit != 0 || !strings.Contains(out, "stay revoked") || !strings.Contains(out, `GRANT INSERT, UPDATE, DELETE ON "public"."orders" TO`) {
		t.Fatalf("cutover with --fence revoke: exit %d; want 0, saying the privileges stay revoked and how to grant them\n%s", r.Exit, out)
	}
	u, err := url.Parse(p.SourceURL)
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.User(role)
	app := connect(t, u.String())
	if _, err := app.Exec(ctx, `INSERT INTO orders (id, customer, amount) VALUES (900001, 1, 1)`); err == nil || !strings.Contains(err.Error(), "permission denied") {
		t.Errorf("an insert by the application role after the cutover: %v; want permission denied", err)
	}
	app.Close(ctx)
	verifyEqual(t, p.SourceURL, p.TargetURL, "orders")

	// abort, the way back to the source, gives them back
	s.stopSupervisor()
	r = testenv.MustRun(t, 0, s.args("abort", "--slot", s.slot, "--api", s.api, "--api-token", s.token)...)
	if !strings.Contains(r.Stdout, "gave back") || !mayInsert() {
		t.Errorf("abort after a revoke cutover: role may insert %v; want the privileges given back\n%s", mayInsert(), r.Stdout)
	}
}
