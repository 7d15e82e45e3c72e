// Package postgres is the PostgreSQL source side: connecting, reading the
// catalog into schema.Table, and streaming rows out with COPY.
package postgres

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/sluice-db/sluice/internal/failure"
)

// SessionParams pin how the source formats values in text, so the rest of
// sluice can rely on one form: UTC timestamps, ISO dates and intervals, hex
// bytea and exact floats (shortest form on PostgreSQL 12 and later; before
// 12 only 3 prints every digit, 1 rounded float8 to 16) and money in the C
// locale ($1,234.56: another lc_monetary may swap the separators), and a
// backslash in a string literal as itself (pg_get_expr's quoting). And no
// row-level security: a policy would hide rows from the copy and from
// verify alike, which would then call the short copy equal; with
// row_security off a read such a policy would filter fails instead.
var SessionParams = map[string]string{
	"row_security":                "off",
	"application_name":            "sluice",
	"TimeZone":                    "UTC",
	"DateStyle":                   "ISO, YMD",
	"IntervalStyle":               "iso_8601",
	"extra_float_digits":          "3",
	"bytea_output":                "hex",
	"client_encoding":             "UTF8",
	"lc_monetary":                 "C",
	"standard_conforming_strings": "on",
}

// connectTimeout bounds how long an unreachable host can stall a command.
const connectTimeout = 10 * time.Second

// Source is a pool of connections to the source database.
type Source struct {
	Pool    *pgxpool.Pool
	display string // redacted URL for messages
}

// Connect opens a pool of up to maxConns connections and checks that the
// server answers. connString carries the password; display must not.
func Connect(ctx context.Context, connString, display string, maxConns int) (*Source, error) {
	cfg, err := pgxpool.ParseConfig(connString)
	if err != nil {
		// pgx's message quotes the whole connection string first: keep
		// only its reason (which setting, what is wrong with it).
		reason := err.Error()
		if i := strings.Index(reason, "`: "); i >= 0 {
			reason = reason[i+3:]
		}
		return nil, failure.New(failure.Usage, "SLUICE-SOURCE-URL", "source %s: cannot parse connection settings: %s", display, reason).
			WithHint("fix that setting in the source URL; see sluice --help for the URL forms")
	}
	for k, v := range SessionParams {
		cfg.ConnConfig.RuntimeParams[k] = v
	}
	if maxConns < 2 {
		maxConns = 2
	}
	cfg.MaxConns = int32(maxConns)
	cfg.ConnConfig.ConnectTimeout = connectTimeout
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, ClassifyConnectError(err, display)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, ClassifyConnectError(err, display)
	}
	return &Source{Pool: pool, display: display}, nil
}

// Close releases every connection.
func (s *Source) Close() { s.Pool.Close() }

// Display is the redacted URL of the source.
func (s *Source) Display() string { return s.display }

// ClassifyConnectError turns a connection failure into a failure.Error that
// says which of the usual causes it is.
func ClassifyConnectError(err error, display string) error {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch pgErr.Code {
		case "28P01", "28000":
			return failure.New(failure.Connection, "SLUICE-SOURCE-AUTH",
				"source %s: login refused: %s", display, pgErr.Message).
				WithHint("check the user and password in the source URL and pg_hba.conf")
		case "3D000":
			return failure.New(failure.Connection, "SLUICE-SOURCE-NODB",
				"source %s: %s", display, pgErr.Message).
				WithHint("check the database name at the end of the source URL")
		}
		return failure.New(failure.Connection, "SLUICE-SOURCE-CONNECT", "source %s: %s (SQLSTATE %s)", display, pgErr.Message, pgErr.Code)
	}
	var netErr net.Error
	if errors.As(err, &netErr) || strings.Contains(err.Error(), "connect") {
		return failure.New(failure.Connection, "SLUICE-SOURCE-UNREACHABLE",
			"source %s: cannot connect: %s", display, rootCause(err)).
			WithHint("check that PostgreSQL is running and that host and port in the source URL are right")
	}
	return failure.Wrap(err, failure.Connection, "SLUICE-SOURCE-CONNECT", "source %s", display)
}

func rootCause(err error) string {
	for {
		next := errors.Unwrap(err)
		if next == nil {
			return err.Error()
		}
		err = next
	}
}

// Ident quotes a possibly schema-qualified identifier for PostgreSQL.
func Ident(parts ...string) string { return pgx.Identifier(parts).Sanitize() }

// Literal quotes a value as a PostgreSQL string literal. The server runs with
// standard_conforming_strings (the default since 9.1), so only quotes double.
func Literal(v string) string { return "'" + strings.ReplaceAll(v, "'", "''") + "'" }

// CopyOut runs `COPY (query) TO STDOUT` and streams the text-format rows to w.
// COPY takes no bind parameters, so query must carry its values as literals.
func (s *Source) CopyOut(ctx context.Context, query string, w io.Writer) error {
	conn, err := s.Pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("source: acquire connection: %w", err)
	}
	defer conn.Release()
	if _, err := conn.Conn().PgConn().CopyTo(ctx, w, "COPY ("+query+") TO STDOUT"); err != nil {
		return fmt.Errorf("source: %w", err)
	}
	return nil
}

// Snapshot is what a chunk read's snapshot could see, in the replication
// stream's terms (xids, low 32 bits): a transaction is visible if it began
// before Xmax and was not still running.
type Snapshot struct {
	Xmax    uint32
	Running []uint32
}

// Sees reports whether the snapshot saw xid's changes (committed before it).
// Xids compare modulo 2^32, as PostgreSQL's do: a window is a few seconds.
func (s Snapshot) Sees(xid uint32) bool {
	return int32(xid-s.Xmax) < 0 && !slices.Contains(s.Running, xid)
}

// CopyOutRunning is CopyOut in a short read-only REPEATABLE READ transaction
// that also returns its snapshot: the transactions still running for it are
// not in the rows, whatever their commit's place in the WAL.
func (s *Source) CopyOutRunning(ctx context.Context, query string, w io.Writer) (Snapshot, error) {
	conn, err := s.Pool.Acquire(ctx)
	if err != nil {
		return Snapshot{}, fmt.Errorf("source: acquire connection: %w", err)
	}
	defer conn.Release()
	tx, err := conn.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return Snapshot{}, fmt.Errorf("source: begin the chunk read: %w", err)
	}
	defer tx.Rollback(context.Background())
	// The first statement takes the transaction's snapshot; COPY reads with it.
	var xmax int64
	var running []int64
	if err := tx.QueryRow(ctx, `SELECT pg_snapshot_xmax(s)::text::bigint % 4294967296,
		coalesce((SELECT array_agg(x::text::bigint % 4294967296) FROM pg_snapshot_xip(s) x), '{}')
		FROM pg_current_snapshot() s`).Scan(&xmax, &running); err != nil {
		return Snapshot{}, fmt.Errorf("source: snapshot of the chunk read: %w", err)
	}
	if _, err := tx.Conn().PgConn().CopyTo(ctx, w, "COPY ("+query+") TO STDOUT"); err != nil {
		return Snapshot{}, fmt.Errorf("source: %w", err)
	}
	if err := tx.Commit(ctx); err != nil {
		return Snapshot{}, fmt.Errorf("source: end the chunk read: %w", err)
	}
	snap := Snapshot{Xmax: uint32(xmax), Running: make([]uint32, len(running))}
	for i, x := range running {
		snap.Running[i] = uint32(x)
	}
	return snap, nil
}

// WaitVisible waits until every transaction of xids (committed ones, as
// the change stream delivered them) is visible to a new snapshot, for up
// to timeout. The stream can deliver a commit before the source shows it:
// the committing session ends its transaction only after a synchronous
// standby answered. A read of the source's current rows in between would
// miss what that transaction wrote.
func (s *Source) WaitVisible(ctx context.Context, xids []uint32, timeout time.Duration) error {
	if len(xids) == 0 {
		return nil
	}
	ids := make([]int64, len(xids))
	for i, x := range xids {
		ids[i] = int64(x)
	}
	// each 32-bit id takes the epoch of the snapshot's xmax (or the one
	// before, for an id above it)
	const query = `WITH s AS (SELECT pg_current_snapshot() AS snap),
		m AS (SELECT snap, pg_snapshot_xmax(snap)::text::bigint AS xmax FROM s),
		e AS (SELECT snap, xmax, ((xmax >> 32) << 32) + x AS full_id FROM m, unnest($1::bigint[]) x)
		SELECT coalesce(bool_and(pg_visible_in_snapshot(
			(CASE WHEN full_id > xmax THEN full_id - 4294967296 ELSE full_id END)::text::xid8, snap)), true)
		FROM e`
	deadline := time.Now().Add(timeout)
	for {
		var visible bool
		if err := s.Pool.QueryRow(ctx, query, ids).Scan(&visible); err != nil {
			return fmt.Errorf("source: check that the transactions streamed are visible: %w", err)
		}
		if visible {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("source: transactions the stream delivered as committed are still not visible after %s (a synchronous standby not answering?)", timeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
}
