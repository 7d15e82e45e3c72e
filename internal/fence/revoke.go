package fence

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/sluice-db/sluice/internal/failure"
	"github.com/sluice-db/sluice/internal/plan"
	"github.com/sluice-db/sluice/internal/postgres"
)

// The revoke fence (--fence revoke) takes the application roles' write
// privileges on the migrated tables away before the lock, and keeps them
// away after a cutover that succeeds: an application instance still
// pointed at the source is refused from then on, instead of writing rows
// that only reach the target through the stream. A cutover that fails
// gives the privileges back, and so does the next run (or abort) after one
// that died with them taken (the grants are recorded on the target first).

// writePrivileges are the privileges the revoke fence takes.
var writePrivileges = []string{"INSERT", "UPDATE", "DELETE", "TRUNCATE"}

// Grant is the write privileges a role holds itself on a table: what the
// revoke fence takes, and what Restore gives back.
type Grant struct {
	Table      string   `json:"table"` // quoted source name
	Role       string   `json:"role"`
	Privileges []string `json:"privileges"`
}

// SQL is the statement that gives the grant back.
func (g Grant) SQL() string {
	return fmt.Sprintf("GRANT %s ON %s TO %s", strings.Join(g.Privileges, ", "), g.Table, pgx.Identifier{g.Role}.Sanitize())
}

// Statements is the GRANT statements that give gs back.
func Statements(gs []Grant) []string {
	out := make([]string, len(gs))
	for i, g := range gs {
		out[i] = g.SQL()
	}
	return out
}

// EncodeGrants and DecodeGrants are grants as the target records them.
func EncodeGrants(gs []Grant) string {
	if len(gs) == 0 {
		return ""
	}
	b, _ := json.Marshal(gs) // strings only: cannot fail
	return string(b)
}

func DecodeGrants(s string) ([]Grant, error) {
	if s == "" {
		return nil, nil
	}
	var gs []Grant
	if err := json.Unmarshal([]byte(s), &gs); err != nil {
		return nil, fmt.Errorf("read the write privileges the revoke fence took: %w", err)
	}
	return gs, nil
}

// WriteGrants lists what the revoke fence takes from roles on tables (what
// was granted to each role itself), after CheckRoles.
func WriteGrants(ctx context.Context, src *postgres.Source, tables []*plan.Table, roles []string) ([]Grant, error) {
	if err := CheckRoles(ctx, src, roles); err != nil {
		return nil, err
	}
	var out []Grant
	for _, role := range roles {
		for _, name := range sourceNames(tables) {
			// The role's own grants (an owner's are implicit while the
			// table's ACL is empty): what REVOKE takes.
			var direct []string
			err := src.Pool.QueryRow(ctx, `SELECT coalesce(array_agg(DISTINCT a.privilege_type), '{}') FROM pg_class c,
					aclexplode(coalesce(c.relacl, acldefault('r', c.relowner))) a
				WHERE c.oid = $1::regclass AND a.grantee = (SELECT oid FROM pg_roles WHERE rolname = $2)
					AND a.privilege_type = ANY ($3)`, name, role, writePrivileges).Scan(&direct)
			if err != nil {
				return nil, fmt.Errorf("cutover: read the privileges of %s on %s: %w", role, name, err)
			}
			if len(direct) > 0 {
				out = append(out, Grant{Table: name, Role: role, Privileges: ordered(direct)})
			}
		}
	}
	return out, nil
}

// Union is a's grants with b's added: one per table and role, with the
// privileges of both.
func Union(a, b []Grant) []Grant {
	var out []Grant
	index := map[[2]string]int{}
	for _, g := range append(append([]Grant(nil), a...), b...) {
		k := [2]string{g.Table, g.Role}
		i, ok := index[k]
		if !ok {
			index[k] = len(out)
			out = append(out, Grant{Table: g.Table, Role: g.Role})
			i = len(out) - 1
		}
		out[i].Privileges = ordered(append(out[i].Privileges, g.Privileges...))
	}
	return out
}

// ordered is privs in writePrivileges' order, for stable statements.
func ordered(privs []string) []string {
	var out []string
	for _, p := range writePrivileges {
		if slices.Contains(privs, p) {
			out = append(out, p)
		}
	}
	return out
}

// Revoke takes the grants away, all or none (one transaction), and only
// if then none of roles may write to tables: REVOKE takes only what was
// granted to the role itself, not what it has through PUBLIC or a role it
// belongs to. A transaction of a role that is writing already goes on:
// the lock that follows waits for it.
func Revoke(ctx context.Context, src *postgres.Source, grants []Grant, tables []*plan.Table, roles []string) error {
	tx, err := src.Pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("cutover: revoke write privileges: %w", err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	for _, g := range grants {
		stmt := fmt.Sprintf("REVOKE %s ON %s FROM %s", strings.Join(g.Privileges, ", "), g.Table, pgx.Identifier{g.Role}.Sanitize())
		if _, err := tx.Exec(ctx, stmt); err != nil {
			if pe := (*pgconn.PgError)(nil); errors.As(err, &pe) && pe.Code == "42501" {
				return failure.Wrap(err, failure.Usage, "SLUICE-CUTOVER-PRIVILEGE", "cutover: the source user may not revoke the write privileges of %s on %s", g.Role, g.Table).
					WithHint("run the sync as the tables' owner (or a role that holds their privileges WITH GRANT OPTION), or use --fence lock")
			}
			return fmt.Errorf("cutover: %s: %w", stmt, err)
		}
	}
	for _, role := range roles {
		for _, name := range sourceNames(tables) {
			// INSERT and UPDATE may also be granted on columns alone
			var still []string
			if err := tx.QueryRow(ctx, `SELECT coalesce(array_agg(p), '{}') FROM unnest($3::text[]) p
				WHERE CASE WHEN p IN ('INSERT', 'UPDATE') THEN has_any_column_privilege($1, $2::regclass, p) ELSE has_table_privilege($1, $2::regclass, p) END`,
				role, name, writePrivileges).Scan(&still); err != nil {
				return fmt.Errorf("cutover: check the privileges of %s on %s: %w", role, name, err)
			}
			if len(still) > 0 {
				return failure.New(failure.Usage, "SLUICE-CUTOVER-FENCEROLE", "cutover: --fence-role %s would still have %s on %s through PUBLIC, a role it belongs to or privileges on columns, which revoking its own table privileges does not take; nothing was revoked", role, strings.Join(still, ", "), name).
					WithHint("grant the application role its write privileges itself, on the table (and revoke them from PUBLIC, its group roles and its columns), or use --fence lock")
			}
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("cutover: revoke write privileges: %w", err)
	}
	return nil
}

// Restore gives the grants back, all or none.
func Restore(ctx context.Context, src *postgres.Source, grants []Grant) error {
	tx, err := src.Pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("restore write privileges: %w", err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	for _, g := range grants {
		if _, err := tx.Exec(ctx, g.SQL()); err != nil {
			return fmt.Errorf("restore write privileges: %s: %w", g.SQL(), err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("restore write privileges: %w", err)
	}
	return nil
}

// CheckRoles refuses fence roles the revoke fence cannot stop: one that
// does not exist, a superuser (no privilege stops one), and the sync's own
// user or a role it inherits from (the fence's lock needs the write
// privileges revoking would take). The sync checks them when it starts.
func CheckRoles(ctx context.Context, src *postgres.Source, roles []string) error {
	for _, role := range roles {
		var super bool
		err := src.Pool.QueryRow(ctx, `SELECT rolsuper FROM pg_roles WHERE rolname = $1`, role).Scan(&super)
		if errors.Is(err, pgx.ErrNoRows) {
			return failure.New(failure.Usage, "SLUICE-CUTOVER-FENCEROLE", "cutover: --fence-role %s: the source has no such role", role).
				WithHint("name the role the application connects as (SELECT rolname FROM pg_roles)")
		}
		if err != nil {
			return fmt.Errorf("cutover: look up role %s: %w", role, err)
		}
		if super {
			return failure.New(failure.Usage, "SLUICE-CUTOVER-FENCEROLE", "cutover: --fence-role %s is a superuser, whom no privilege stops", role).
				WithHint("connect the application as a role without SUPERUSER, or use --fence lock")
		}
		// The fence's lock needs a write privilege of the sync's own user,
		// which revoking its (or an inherited role's) privileges would take;
		// a superuser needs none (and pg_has_role says yes to every role).
		var own bool
		if err := src.Pool.QueryRow(ctx, `SELECT NOT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) AND pg_has_role(current_user, $1, 'USAGE')`, role).Scan(&own); err != nil {
			return fmt.Errorf("cutover: look up role %s: %w", role, err)
		}
		if own {
			return failure.New(failure.Usage, "SLUICE-CUTOVER-FENCEROLE", "cutover: --fence-role %s is the sync's own user or a role it inherits privileges from; the fence's lock needs the write privileges revoking would take", role).
				WithHint("run the sync as another user (the tables' owner, with the application connecting as its own role), or use --fence lock")
		}
	}
	return nil
}
