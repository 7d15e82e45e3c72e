// Package mysql is the MySQL/MariaDB target side: connecting with pinned
// session settings, creating tables, bulk loading with LOAD DATA, and keeping
// sluice's progress in the target so it commits with the rows.
package mysql

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync/atomic"
	"time"

	gomysql "github.com/go-sql-driver/mysql"

	"github.com/sluice-db/sluice/internal/config"
	"github.com/sluice-db/sluice/internal/failure"
	"github.com/sluice-db/sluice/internal/typemap"
)

// sessionParams pin every target session: UTC so DATETIME holds UTC, strict
// mode so nothing is truncated silently, NO_AUTO_VALUE_ON_ZERO so a copied
// id 0 stays 0, and no foreign key checks while tables fill in any order
// (the source enforced them already).
var sessionParams = map[string]string{
	"charset":            "utf8mb4",
	"collation":          "utf8mb4_bin",
	"time_zone":          "'+00:00'",
	"sql_mode":           "'STRICT_ALL_TABLES,NO_AUTO_VALUE_ON_ZERO,NO_ENGINE_SUBSTITUTION,ERROR_FOR_DIVISION_BY_ZERO'",
	"foreign_key_checks": "0",
	"interpolateParams":  "true",
	"multiStatements":    "true", // ExecWrite reads a write's warnings in the same round trip
	"timeout":            "10s",
}

// Target is a pool of connections to the target database.
type Target struct {
	DB      *sql.DB
	Flavor  typemap.Flavor
	Version string
	Name    string // database name
	Created bool   // Connect created the database (it did not exist)
	display string
}

// Connect opens the target database, creating it (utf8mb4) when it does not
// exist yet: for the commands that write into it.
func Connect(ctx context.Context, t config.Target, maxConns int) (*Target, error) {
	return connect(ctx, t, maxConns, true)
}

// Open opens the target database, which must exist: for the commands that
// only read it or clean it up, where a misspelt name must not leave a new
// empty database behind (SLUICE-TARGET-NODB, exit 3).
func Open(ctx context.Context, t config.Target, maxConns int) (*Target, error) {
	return connect(ctx, t, maxConns, false)
}

func connect(ctx context.Context, t config.Target, maxConns int, create bool) (*Target, error) {
	display := t.Redacted()
	db, err := open(ctx, t.DSN(sessionParams), maxConns)
	created := false
	var myErr *gomysql.MySQLError
	if errors.As(err, &myErr) && myErr.Number == 1049 && !create {
		return nil, failure.New(failure.Connection, "SLUICE-TARGET-NODB", "target %s: database %s does not exist", display, t.Database).
			With("database", t.Database).
			WithHint("check the database name in the target URL (sluice copy, sync and plan --apply create it; this command does not)")
	}
	if errors.As(err, &myErr) && myErr.Number == 1049 { // unknown database
		if err := createDatabase(ctx, t); err != nil {
			return nil, classify(err, display)
		}
		db, err = open(ctx, t.DSN(sessionParams), maxConns)
		created = err == nil
	}
	if err != nil {
		return nil, classify(err, display)
	}
	tg := &Target{DB: db, Name: t.Database, Created: created, display: display, Flavor: typemap.MySQL}
	if err := db.QueryRowContext(ctx, "SELECT VERSION()").Scan(&tg.Version); err != nil {
		db.Close()
		return nil, classify(err, display)
	}
	if strings.Contains(strings.ToLower(tg.Version), "mariadb") {
		tg.Flavor = typemap.MariaDB
	}
	return tg, nil
}

func open(ctx context.Context, dsn string, maxConns int) (*sql.DB, error) {
	db, err := sql.Open("mysql", dsn)
	if err != nil {
		return nil, err
	}
	if maxConns < 2 {
		maxConns = 2
	}
	db.SetMaxOpenConns(maxConns)
	db.SetMaxIdleConns(maxConns)
	db.SetConnMaxIdleTime(5 * time.Minute)
	pingCtx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	if err := db.PingContext(pingCtx); err != nil {
		db.Close()
		return nil, err
	}
	return db, nil
}

func createDatabase(ctx context.Context, t config.Target) error {
	db, err := open(ctx, t.ServerDSN(map[string]string{"timeout": "10s"}), 1)
	if err != nil {
		return err
	}
	defer db.Close()
	_, err = db.ExecContext(ctx, "CREATE DATABASE IF NOT EXISTS "+typemap.QuoteIdent(t.Database)+" CHARACTER SET utf8mb4")
	return err
}

// DropCreated drops the database Connect created, when it still holds no
// table and no other session uses it: what a command that only looks (plan
// without --apply) leaves behind is nothing, and a sync or copy that
// connected to the new database meanwhile keeps it. It reports whether the
// database is gone; a database another session uses is left with an error
// saying so.
func (t *Target) DropCreated(ctx context.Context) (bool, error) {
	if !t.Created {
		return false, nil
	}
	t.DB.SetMaxIdleConns(0) // this pool's own other sessions leave
	conn, err := t.DB.Conn(ctx)
	if err != nil {
		return false, fmt.Errorf("target: drop the database %s created to check the plan: %w", t.Name, err)
	}
	defer conn.Close()
	for attempt := 0; ; attempt++ {
		var tables, sessions int
		if err := conn.QueryRowContext(ctx, `SELECT (SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = ?),
			(SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE DB = ? AND ID <> CONNECTION_ID())`, t.Name, t.Name).Scan(&tables, &sessions); err != nil {
			return false, fmt.Errorf("target: count the tables and sessions of %s: %w", t.Name, err)
		}
		if tables > 0 {
			return false, nil
		}
		if sessions == 0 {
			break
		}
		if attempt == 20 { // a closed session leaves the list within moments; this one stays
			return false, fmt.Errorf("target: %d other sessions use the database %s that plan created: it is left for them", sessions, t.Name)
		}
		select {
		case <-ctx.Done():
			return false, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	if _, err := conn.ExecContext(ctx, "DROP DATABASE "+typemap.QuoteIdent(t.Name)); err != nil {
		return false, fmt.Errorf("target: drop the database %s created to check the plan: %w", t.Name, err)
	}
	return true, nil
}

func classify(err error, display string) error {
	var myErr *gomysql.MySQLError
	if errors.As(err, &myErr) {
		switch myErr.Number {
		case 1045, 1044, 1698:
			return failure.New(failure.Connection, "SLUICE-TARGET-AUTH", "target %s: login refused: %s", display, myErr.Message).
				WithHint("check the user and password in the target URL and the user's grants")
		}
		return failure.New(failure.Connection, "SLUICE-TARGET-CONNECT", "target %s: %s (error %d)", display, myErr.Message, myErr.Number)
	}
	var netErr net.Error
	if errors.As(err, &netErr) || errors.Is(err, context.DeadlineExceeded) || strings.Contains(err.Error(), "connect") {
		return failure.New(failure.Connection, "SLUICE-TARGET-UNREACHABLE", "target %s: cannot connect: %v", display, err).
			WithHint("check that MySQL/MariaDB is running and that host and port in the target URL are right")
	}
	return failure.Wrap(err, failure.Connection, "SLUICE-TARGET-CONNECT", "target %s", display)
}

// Close releases every connection.
func (t *Target) Close() error { return t.DB.Close() }

// Display is the redacted URL of the target.
func (t *Target) Display() string { return t.display }

// TableExists reports whether the target database has the table.
func (t *Target) TableExists(ctx context.Context, name string) (bool, error) {
	var n int
	err := t.DB.QueryRowContext(ctx, `SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = DATABASE() AND table_name = ?`, name).Scan(&n)
	if err != nil {
		return false, fmt.Errorf("target: look up table %s: %w", name, err)
	}
	return n > 0, nil
}

// IndexExists reports whether the table has an index or constraint so named.
func (t *Target) IndexExists(ctx context.Context, table, index string) (bool, error) {
	var n int
	err := t.DB.QueryRowContext(ctx, `
		SELECT (SELECT COUNT(*) FROM information_schema.statistics WHERE table_schema = DATABASE() AND table_name = ? AND index_name = ?)
		     + (SELECT COUNT(*) FROM information_schema.table_constraints WHERE table_schema = DATABASE() AND table_name = ? AND constraint_name = ?)`,
		table, index, table, index).Scan(&n)
	if err != nil {
		return false, fmt.Errorf("target: look up index %s on %s: %w", index, table, err)
	}
	return n > 0, nil
}

// HasRows reports whether a table holds at least one row.
func (t *Target) HasRows(ctx context.Context, table string) (bool, error) {
	var one int
	err := t.DB.QueryRowContext(ctx, "SELECT 1 FROM "+typemap.QuoteIdent(table)+" LIMIT 1").Scan(&one)
	if err == sql.ErrNoRows {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("target: read %s: %w", table, err)
	}
	return true, nil
}

var readerSeq atomic.Int64

// LoadData bulk-loads rows (LOAD DATA text format: tab-separated, \N for
// NULL, backslash escapes, raw bytes) into table within tx, and fails if the
// server changed or refused any value: with LOCAL, MySQL downgrades data
// errors to warnings, so every warning is treated as an error here.
//
// With replace, rows replace those with the same key. REPLACE also deletes
// every row one of them matches on a unique index; an index the source does
// not enforce (Replace.Enforced) could thus delete rows the source still
// has, so one is refused, checked under the table's metadata lock, which
// the transaction then holds: no index is added before it commits.
func LoadData(ctx context.Context, tx *sql.Tx, table string, columns []LoadColumn, rows io.Reader, replace *Replace) (int64, error) {
	if replace != nil {
		if err := replace.guard(ctx, tx, table); err != nil {
			return 0, err
		}
	}
	name := fmt.Sprintf("sluice-%d", readerSeq.Add(1))
	gomysql.RegisterReaderHandler(name, func() io.Reader { return rows })
	defer gomysql.DeregisterReaderHandler(name)
	cols := make([]string, len(columns))
	var sets []string
	for i, c := range columns {
		cols[i] = typemap.QuoteIdent(c.Name)
		if c.Expr != "" {
			v := fmt.Sprintf("@sluice_v%d", i)
			cols[i] = v
			sets = append(sets, typemap.QuoteIdent(c.Name)+" = "+fmt.Sprintf(c.Expr, v))
		}
	}
	mode := ""
	if replace != nil {
		mode = "REPLACE "
	}
	stmt := fmt.Sprintf("LOAD DATA LOCAL INFILE 'Reader::%s' %sINTO TABLE %s CHARACTER SET binary "+
		"FIELDS TERMINATED BY '\\t' ESCAPED BY '\\\\' LINES TERMINATED BY '\\n' (%s)",
		name, mode, typemap.QuoteIdent(table), strings.Join(cols, ", "))
	if len(sets) > 0 {
		stmt += " SET " + strings.Join(sets, ", ")
	}
	res, err := tx.ExecContext(ctx, stmt)
	if err != nil {
		return 0, err
	}
	n, _ := res.RowsAffected()
	if err := loadWarnings(ctx, tx, table); err != nil {
		return n, err
	}
	return n, nil
}

// LoadColumn is a target column of a load; Expr, if set, is a fmt pattern
// applied to the loaded bytes (e.g. a CONVERT for a type that cannot take
// binary input).
type LoadColumn struct {
	Name string
	Expr string
}

// QueryError classifies an error from a statement on the target: a table or
// column that is not there is a schema problem (the target does not match
// the plan), a lost connection is a connection problem.
func QueryError(err error, format string, args ...any) error {
	var myErr *gomysql.MySQLError
	if errors.As(err, &myErr) {
		switch myErr.Number {
		case 1054, 1146, 1356, 1049:
			return failure.Wrap(err, failure.Schema, "SLUICE-TARGET-SCHEMA", format, args...).
				WithHint("the target table does not match what sluice plans: compare it with sluice plan, or drop it and copy again")
		}
		return failure.Wrap(err, failure.Internal, "SLUICE-TARGET-QUERY", format, args...)
	}
	return failure.Wrap(err, failure.Connection, "SLUICE-TARGET-CONNECTION", format, args...).
		WithHint("check that MySQL/MariaDB is reachable, then run the command again")
}

// Querier is what reads the catalog: the pool or a transaction.
type Querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

// uniqueIndexes returns the columns of each unique index of table other
// than its primary key.
func uniqueIndexes(ctx context.Context, q Querier, table string) (map[string][]string, error) {
	rows, err := q.QueryContext(ctx, `SELECT index_name, column_name FROM information_schema.statistics
		WHERE table_schema = DATABASE() AND table_name = ? AND non_unique = 0 AND index_name <> 'PRIMARY'
		ORDER BY index_name, seq_in_index`, table)
	if err != nil {
		return nil, fmt.Errorf("target: read the unique indexes of %s: %w", table, err)
	}
	defer rows.Close()
	out := map[string][]string{}
	for rows.Next() {
		var name, col string
		if err := rows.Scan(&name, &col); err != nil {
			return nil, fmt.Errorf("target: read the unique indexes of %s: %w", table, err)
		}
		out[name] = append(out[name], col)
	}
	return out, rows.Err()
}

// Replace is LoadData's REPLACE mode for a table copied from Source.
type Replace struct {
	Source   string                   // the source table, for messages
	Enforced func(cols []string) bool // the source enforces a unique index on these target columns
}

// RefuseExtraUnique refuses a unique index of table (read through q) that
// the source does not enforce: the source may hold rows it refuses, and
// bulk loads (REPLACE) would delete the rows it matches without a word.
func (r *Replace) RefuseExtraUnique(ctx context.Context, q Querier, table string) error {
	indexes, err := uniqueIndexes(ctx, q, table)
	if err != nil {
		return err
	}
	for name, cols := range indexes {
		if !r.Enforced(cols) {
			return failure.New(failure.Schema, "SLUICE-TARGET-UNIQUE",
				"target table %s has unique index %s on (%s), which the source table %s does not enforce", table, name, strings.Join(cols, ", "), r.Source).
				With("table", table).With("index", name).
				WithHint("rows the source allows would be refused or overwrite each other: drop the index for the migration (ALTER TABLE %s DROP INDEX %s) and add it after the cutover, or make the source enforce it first", table, name)
		}
	}
	return nil
}

// guard takes table's metadata lock for tx (held until it ends, so no
// index can be added meanwhile), then refuses an index REPLACE must not meet.
// FOR UPDATE takes the write lock the load needs anyway: a read lock first
// could deadlock with an ALTER waiting between the two. LIMIT 0 locks no row.
func (r *Replace) guard(ctx context.Context, tx *sql.Tx, table string) error {
	if _, err := tx.ExecContext(ctx, "SELECT 1 FROM "+typemap.QuoteIdent(table)+" LIMIT 0 FOR UPDATE"); err != nil {
		return fmt.Errorf("target: open %s: %w", table, err)
	}
	return r.RefuseExtraUnique(ctx, tx, table)
}

// LogDriverTo sends what the MySQL driver reports on its own (a connection
// the server dropped, found when it is next used) to log, as structured
// warnings; otherwise the driver prints bare lines to stderr.
func LogDriverTo(log *slog.Logger) {
	gomysql.SetLogger(driverLog{log})
}

type driverLog struct{ log *slog.Logger }

func (d driverLog) Print(v ...any) {
	d.log.Warn("target driver", "code", "SLUICE-TARGET-DRIVER", "message", strings.TrimSpace(fmt.Sprint(v...)))
}

// WarnIfNotDurable logs a warning when the target's InnoDB does not make
// each commit durable (innodb_flush_log_at_trx_commit other than 1): a
// stream consumer acknowledges its source (confirms the slot, acks the
// message) once the target's commit returns, and a target host that
// crashes then can lose commits the source will never send again.
func (t *Target) WarnIfNotDurable(ctx context.Context, log *slog.Logger) {
	var flush int
	if log == nil {
		return
	}
	if err := t.DB.QueryRowContext(ctx, "SELECT @@innodb_flush_log_at_trx_commit").Scan(&flush); err != nil || flush == 1 {
		return
	}
	log.Warn(fmt.Sprintf("the target's innodb_flush_log_at_trx_commit is %d: a commit is durable only about a second later, but sluice tells the source it has the changes as soon as the commit returns; if the target's host crashes, the last changes are lost and the source does not send them again", flush),
		"code", "SLUICE-TARGET-DURABILITY",
		"hint", "SET GLOBAL innodb_flush_log_at_trx_commit = 1 on the target for the migration (and in its configuration file); or run sluice verify --repair after a target crash")
}
