// Package fence is the source side of a cutover, shared by the sync and the
// publisher: the lock that stops writes to the migrated tables while the
// last changes drain, and the AUTO_INCREMENT step done under it.
package fence

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/sluice-db/sluice/internal/failure"
	"github.com/sluice-db/sluice/internal/mysql"
	"github.com/sluice-db/sluice/internal/plan"
	"github.com/sluice-db/sluice/internal/postgres"
	"github.com/sluice-db/sluice/internal/typemap"
)

// Lock holds LOCK TABLE … IN EXCLUSIVE MODE on the source tables inside an
// open transaction: reads go on, writes wait. Release (deferred right after
// Take) lifts it on every path; Commit ends it once the cutover is done.
type Lock struct {
	Tx        pgx.Tx
	conn      *pgxpool.Conn
	tables    []*plan.Table
	timeout   time.Duration // most the fence may stay up
	Requested time.Time     // writers queue behind the lock from here
	Granted   time.Time
}

const (
	// IdleMargin is how long past its timeout the server lets the fence's
	// transaction sit idle before it ends the session itself
	// (idle_in_transaction_session_timeout): the fence never outlives a
	// sluice whose host died or froze by more than this.
	IdleMargin = 5 * time.Second
	// releaseTimeout bounds the rollback that lifts the fence: on a
	// half-open connection it would hang until TCP keepalive gives up.
	releaseTimeout = 5 * time.Second
)

// Take requests the lock on tables and waits at most lockTimeout for it
// (transactions already writing to them must end first). timeout is the
// most the fence may stay up (see Within); should sluice stop answering
// meanwhile, the server ends the fence's session IdleMargin after that.
func Take(ctx context.Context, src *postgres.Source, tables []*plan.Table, lockTimeout, timeout time.Duration) (*Lock, error) {
	conn, err := src.Pool.Acquire(ctx)
	if err != nil {
		return nil, fmt.Errorf("cutover: source connection for the fence: %w", err)
	}
	tx, err := conn.Begin(ctx)
	if err != nil {
		conn.Release()
		return nil, fmt.Errorf("cutover: begin the fence: %w", err)
	}
	l := &Lock{Tx: tx, conn: conn, tables: tables, timeout: timeout}
	// Writers wait behind the fence for as long as its transaction is open,
	// so it must end with sluice: a host that dies or freezes leaves the
	// session idle in transaction, which the server then ends by itself
	// (instead of when TCP keepalive notices, hours later).
	settings := fmt.Sprintf("SET LOCAL lock_timeout = '%dms'; SET LOCAL idle_in_transaction_session_timeout = '%dms'",
		lockTimeout.Milliseconds(), (timeout + IdleMargin).Milliseconds())
	if _, err := tx.Exec(ctx, settings); err != nil {
		l.Release()
		return nil, fmt.Errorf("cutover: set the fence's timeouts: %w", err)
	}
	names := sourceNames(tables)
	// lock_timeout bounds each table's wait on its own: a writer that ends
	// just in time on each of n tables would hold the fence's request (and
	// every writer queued behind the tables it locked) for n lock timeouts.
	// The statement's timeout bounds the whole request.
	wait := min(lockTimeout, timeout)
	l.Requested = time.Now()
	_, err = tx.Exec(ctx, fmt.Sprintf("SET LOCAL statement_timeout = '%dms'; LOCK TABLE %s IN EXCLUSIVE MODE; SET LOCAL statement_timeout TO DEFAULT",
		wait.Milliseconds(), strings.Join(names, ", ")))
	if err != nil {
		l.Release()
		if pe := (*pgconn.PgError)(nil); errors.As(err, &pe) && pe.Code == "42501" { // refused at once: no writer waited
			return nil, failure.Wrap(err, failure.Usage, "SLUICE-CUTOVER-PRIVILEGE", "cutover: the source user may not fence writes to %s", strings.Join(names, ", ")).
				WithHint("LOCK TABLE … IN EXCLUSIVE MODE needs UPDATE, DELETE or TRUNCATE on each migrated table: GRANT UPDATE ON them TO the sync's user (and SELECT on their sequences, read under the fence), then run sluice cutover again")
		}
		return nil, failure.Wrap(err, failure.Internal, "SLUICE-CUTOVER-LOCK", "cutover: could not fence writes within %s", wait).
			WithHint("long transactions on the source hold the tables; try again, or raise the lock timeout (--lock-timeout)")
	}
	l.Granted = time.Now()
	return l, nil
}

// UntilStopped is ctx, ended too when any of stopped closes: a cutover
// asked for through the API runs on the request's context, and a sync that
// stops meanwhile no longer drains the stream to the fence, which would
// then hold writers until its timeout. ErrStopped is the cause.
func UntilStopped(ctx context.Context, stopped ...<-chan struct{}) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancelCause(ctx)
	for _, ch := range stopped {
		go func() {
			select {
			case <-ch:
				cancel(ErrStopped)
			case <-ctx.Done():
			}
		}()
	}
	return ctx, func() { cancel(context.Canceled) }
}

// Ended names why a cutover ended early when ctx (from UntilStopped) has
// ended: ErrStopped when the sync stopped, else ErrCancelled (its caller
// went away). An error that says more (a step that failed on its own, or
// the fence's timeout, which ends a context under ctx) passes as it is.
func Ended(ctx context.Context, err error) error {
	if err == nil || ctx.Err() == nil {
		return err
	}
	if code := failure.Code(err); code != "SLUICE-INTERNAL" && code != "SLUICE-CUTOVER-LOCK" && !errors.Is(err, context.Canceled) {
		return err
	}
	if errors.Is(context.Cause(ctx), ErrStopped) {
		return ErrStopped
	}
	return ErrCancelled
}

// LogFailed logs a cutover that failed: an error, or a warning when it
// was stopped or its caller went away (the person's doing).
func LogFailed(log *slog.Logger, msg string, err error) {
	logf := log.Error
	if failure.ExitCode(err) == failure.ExitInterrupted {
		logf = log.Warn
	}
	logf(msg, "code", failure.Code(err), "error", err.Error())
}

// ErrStopped ends a cutover whose sync stopped while it ran.
var ErrStopped = failure.New(failure.Interrupted, "SLUICE-CUTOVER-STOPPED", "cutover: the sync stopped while the cutover ran; the fence is lifted (and write privileges it revoked are given back)").
	WithHint("start sluice sync again (it resumes) and run sluice cutover once it streams")

// ErrCancelled ends a cutover whose caller went away: the client's Ctrl-C
// or closed connection, or the sync's own shutdown for --cutover=auto.
var ErrCancelled = failure.New(failure.Interrupted, "SLUICE-CUTOVER-CANCELLED", "cutover: its caller went away (Ctrl-C on sluice cutover, a closed connection) or the sync is shutting down, so the cutover ended; the fence is lifted (and write privileges it revoked are given back)").
	WithHint("run sluice cutover again when ready")

// Within gives the steps under the fence a context that ends the fence's
// timeout after the lock request (writers queue from there, so that is how
// long the fence may hold them), and overtime, which turns the error of a
// step that ran out of that time into SLUICE-CUTOVER-TIMEOUT naming the step.
func (l *Lock) Within(ctx context.Context) (fctx context.Context, cancel context.CancelFunc, overtime func(step string, err error) error) {
	timeout := l.timeout
	fctx, cancel = context.WithDeadline(ctx, l.Requested.Add(timeout))
	overtime = func(step string, err error) error {
		if ctx.Err() == nil && errors.Is(fctx.Err(), context.DeadlineExceeded) {
			return failure.New(failure.Internal, "SLUICE-CUTOVER-TIMEOUT", "cutover: %s did not end within the %s the fence may stay up", step, timeout).
				WithHint("the fence is lifted; check sluice status and try again, or raise --cutover-timeout")
		}
		return err
	}
	return fctx, cancel, overtime
}

// Release rolls the fence's transaction back (a no-op after Commit) and
// returns its connection: the source is writable as before. A rollback
// that fails or does not answer within releaseTimeout (a half-open
// connection) closes the connection instead, so the caller is not held
// (nor the next cutover behind it); the server then ends the transaction
// when it notices the connection is gone, IdleMargin after the fence's
// timeout at the latest.
func (l *Lock) Release() {
	ctx, cancel := context.WithTimeout(context.Background(), releaseTimeout)
	defer cancel()
	if err := l.Tx.Rollback(ctx); err != nil && !errors.Is(err, pgx.ErrTxClosed) {
		cctx, ccancel := context.WithTimeout(context.Background(), time.Second)
		l.conn.Conn().Close(cctx) // the pool then discards it
		ccancel()
	}
	l.conn.Release()
}

// Commit ends the fence after a successful cutover.
func (l *Lock) Commit(ctx context.Context) error {
	if err := l.Tx.Commit(ctx); err != nil {
		return fmt.Errorf("cutover: end the fence: %w", err)
	}
	return nil
}

// SyncAutoIncrement moves each target AUTO_INCREMENT past its source
// sequence, read inside the fence so no writer can take a value after it,
// by gap more: writes that still reach the source until the application
// has switched take the sequence's next values, and the stream applies them
// after the cutover; the target's own inserts must not take the same ids
// (the streamed row would overwrite theirs). A descending sequence is left
// alone (its values never meet the target's, which count up). It returns
// the value set per target table, and the target columns whose sequence
// it could not find (a default that computes the name): their
// AUTO_INCREMENT is left as it is, for the person to set.
func (l *Lock) SyncAutoIncrement(ctx context.Context, tgt *mysql.Target, gap int64, log *slog.Logger) (set map[string]int64, unknown []string, err error) {
	set = map[string]int64{}
	for _, t := range l.tables {
		for _, c := range t.Columns {
			if !strings.Contains(c.SQLType, "AUTO_INCREMENT") {
				continue
			}
			seq, err := l.sequenceOf(ctx, t, c)
			if err != nil {
				return nil, nil, err
			}
			if seq == "" {
				unknown = append(unknown, t.Target+"."+c.Target)
				log.Warn(fmt.Sprintf("cutover: the sequence behind %s.%s's default was not found, so the AUTO_INCREMENT of %s is left as it is: the target's own inserts may take ids that writes still reaching the source take too", t.Source.Name, c.Source, t.Target),
					"code", "SLUICE-CUTOVER-AUTOINC", "table", t.Target, "column", c.Target,
					"hint", fmt.Sprintf("before the application writes to the target, ALTER TABLE %s AUTO_INCREMENT = a value past every id the source will hand out", typemap.QuoteIdent(t.Target)))
				continue
			}
			var last, increment, seqMax int64
			var called bool
			if err := l.Tx.QueryRow(ctx, "SELECT s.last_value, s.is_called, p.seqincrement, p.seqmax FROM "+seq+" s, pg_sequence p WHERE p.seqrelid = $1::regclass",
				seq).Scan(&last, &called, &increment, &seqMax); err != nil {
				if pe := (*pgconn.PgError)(nil); errors.As(err, &pe) && pe.Code == "42501" {
					return nil, nil, failure.Wrap(err, failure.Usage, "SLUICE-CUTOVER-PRIVILEGE", "cutover: the source user may not read sequence %s of %s.%s", seq, t.Source.Name, c.Source).
						WithHint("GRANT SELECT ON SEQUENCE %s TO the sync's user, then run sluice cutover again (the fence is lifted)", seq)
				}
				return nil, nil, fmt.Errorf("cutover: read sequence %s: %w", seq, err)
			}
			if increment < 0 {
				continue
			}
			next := last
			if called {
				next = addCapped(next, increment)
			}
			// The gap stops at the last value the sequence or the target
			// column can take: a target AUTO_INCREMENT past the column's
			// range makes every insert there fail.
			next = max(min(addCapped(next, gap), seqMax, typemap.IntegerMax(c.SQLType)), next, 1)
			if _, err := tgt.DB.ExecContext(ctx, fmt.Sprintf("ALTER TABLE %s AUTO_INCREMENT = %d", typemap.QuoteIdent(t.Target), next)); err != nil {
				return nil, nil, fmt.Errorf("cutover: set AUTO_INCREMENT of %s: %w", t.Target, err)
			}
			set[t.Target] = next
		}
	}
	return set, unknown, nil
}

// sequenceOf names the sequence column c's values come from, or "": the
// one its default's nextval('…'::regclass) depends on, or one the default
// names as text (nextval('…'::text) records no dependency), or else the
// identity's. The sequence the column owns does not come first: a serial
// whose default was pointed at another sequence still owns its old one,
// whose value is stale.
func (l *Lock) sequenceOf(ctx context.Context, t *plan.Table, c plan.Column) (string, error) {
	var seq *string
	err := l.Tx.QueryRow(ctx, `WITH def AS (
			SELECT ad.oid, pg_get_expr(ad.adbin, ad.adrelid) AS expr FROM pg_attrdef ad
			JOIN pg_attribute a ON a.attrelid = ad.adrelid AND a.attnum = ad.adnum
			WHERE ad.adrelid = $1::text::regclass AND a.attname = $2::text)
		SELECT coalesce(
			(SELECT d.refobjid::regclass::text FROM def
				JOIN pg_depend d ON d.classid = 'pg_attrdef'::regclass AND d.objid = def.oid AND d.refclassid = 'pg_class'::regclass
				JOIN pg_class s ON s.oid = d.refobjid AND s.relkind = 'S' LIMIT 1),
			(SELECT to_regclass(replace((regexp_match(expr, $3))[1], '''''', ''''))::text FROM def),
			pg_get_serial_sequence($1::text, $2::text))`,
		postgres.Ident(t.Source.Name.Schema, t.Source.Name.Name), c.Source, `^nextval\(\('((?:[^']|'')+)'::text\)::regclass\)$`).Scan(&seq)
	if err != nil {
		return "", fmt.Errorf("cutover: sequence of %s.%s: %w", t.Source.Name, c.Source, err)
	}
	if seq == nil {
		return "", nil
	}
	return *seq, nil
}

// addCapped is a+b (b >= 0), or the largest int64 when that overflows: a
// sequence used up to its end.
func addCapped(a, b int64) int64 {
	if a > math.MaxInt64-b {
		return math.MaxInt64
	}
	return a + b
}

// Blocker is a session whose transaction holds a lock on a fenced table
// that the fence's EXCLUSIVE lock would queue behind (any write takes one).
type Blocker struct {
	PID     int
	State   string // pg_stat_activity.state: "idle in transaction", "active", …
	Backend string // client backend, autovacuum worker, …
	Table   string
	Mode    string
	Age     time.Duration // since its transaction began
	// App is its application_name and client address: who to ask. Not its
	// last statement, which may carry values that must not reach a log.
	App string
}

func (b Blocker) String() string {
	what := b.State
	if what == "" {
		what = b.Backend
	}
	return fmt.Sprintf("process %d (%s, transaction open for %s, %s on %s, from %s)",
		b.PID, what, b.Age.Round(time.Second), b.Mode, b.Table, b.App)
}

// Blockers lists the sessions whose transaction, open longer than minAge,
// holds a lock on tables (or their partitions or children) that conflicts
// with the fence: ones a fence
// requested now would most likely wait for until its lock timeout, holding
// up every writer meanwhile. An autovacuum worker is left out unless it
// runs to prevent wraparound: any other gives way to a lock request. Without
// pg_monitor (or superuser) other users' sessions are not seen.
func Blockers(ctx context.Context, src *postgres.Source, tables []*plan.Table, minAge time.Duration) ([]Blocker, error) {
	names := sourceNames(tables)
	// The fence locks each table's partitions and inheritance children
	// too, and a write or an autovacuum holds the one it touches.
	rows, err := src.Pool.Query(ctx, `WITH RECURSIVE fenced(relid) AS (
			SELECT unnest($1::text[]::regclass[])::oid
			UNION SELECT i.inhrelid FROM pg_inherits i JOIN fenced f ON i.inhparent = f.relid)
		SELECT a.pid, coalesce(a.state, ''), coalesce(a.backend_type, ''), l.relation::regclass::text, l.mode,
			extract(epoch FROM now() - a.xact_start)::float8,
			coalesce(nullif(a.application_name, ''), 'no application_name') || ' at ' || coalesce(host(a.client_addr), 'local socket')
		FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
		WHERE l.granted AND l.locktype = 'relation' AND l.relation IN (SELECT relid FROM fenced)
			AND l.mode IN ('RowShareLock', 'RowExclusiveLock', 'ShareUpdateExclusiveLock', 'ShareLock', 'ShareRowExclusiveLock', 'ExclusiveLock', 'AccessExclusiveLock')
			AND l.pid <> pg_backend_pid()
			AND a.xact_start < now() - make_interval(secs => $2)
			AND NOT (a.backend_type = 'autovacuum worker' AND a.query NOT LIKE '%(to prevent wraparound)%')
		ORDER BY a.xact_start`, names, minAge.Seconds())
	if err != nil {
		return nil, fmt.Errorf("cutover: look for transactions holding the tables: %w", err)
	}
	var out []Blocker
	for rows.Next() {
		var b Blocker
		var age float64
		if err := rows.Scan(&b.PID, &b.State, &b.Backend, &b.Table, &b.Mode, &age, &b.App); err != nil {
			return nil, fmt.Errorf("cutover: look for transactions holding the tables: %w", err)
		}
		b.Age = time.Duration(age * float64(time.Second))
		out = append(out, b)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("cutover: look for transactions holding the tables: %w", err)
	}
	return out, nil
}

// sourceNames are the tables' quoted source names.
func sourceNames(tables []*plan.Table) []string {
	names := make([]string, len(tables))
	for i, t := range tables {
		names[i] = postgres.Ident(t.Source.Name.Schema, t.Source.Name.Name)
	}
	return names
}
