package syncer

import (
	"database/sql/driver"
	"errors"
	"io"
	"net"
	"strings"

	gomysql "github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/sluice-db/sluice/internal/failure"
)

// maxUnknownRetries bounds the retries, in a row, of errors not known to
// be a connection problem.
const maxUnknownRetries = 5

// retryable tells a broken connection (resume by itself) from a problem a
// person has to fix (schema change, bad value, configuration).
func retryable(err error) bool {
	var fe *failure.Error
	if errors.As(err, &fe) {
		return fe.Kind == failure.Connection
	}
	return true
}

// connectionLost reports an unclassified error that is still plainly a
// lost or refused connection to either server (a source restart drops every
// pooled connection, and each may fail one attempt): such errors are
// retried without limit, like the classified ones.
func connectionLost(err error) bool {
	var netErr net.Error
	if errors.As(err, &netErr) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, driver.ErrBadConn) || errors.Is(err, gomysql.ErrInvalidConn) || pgconn.Timeout(err) {
		return true
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		// connection exception, operator intervention (shutdown, restart),
		// insufficient resources (too many connections)
		return strings.HasPrefix(pe.Code, "08") || strings.HasPrefix(pe.Code, "57P") || strings.HasPrefix(pe.Code, "53")
	}
	var connectErr *pgconn.ConnectError
	return errors.As(err, &connectErr) || strings.Contains(err.Error(), "conn closed")
}
