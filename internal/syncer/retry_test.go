package syncer

import (
	"errors"
	"fmt"
	"io"
	"testing"

	gomysql "github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/sluice-db/sluice/internal/failure"
)

func TestConnectionLost(t *testing.T) {
	wrap := func(err error) error { return fmt.Errorf("table public.orders, chunk 3: %w", err) }
	lost := []error{
		wrap(&pgconn.PgError{Code: "57P01", Message: "terminating connection due to administrator command"}),
		wrap(&pgconn.PgError{Code: "08006", Message: "connection failure"}),
		wrap(io.ErrUnexpectedEOF),
		wrap(gomysql.ErrInvalidConn),
	}
	for _, err := range lost {
		if !connectionLost(err) {
			t.Errorf("%v: not seen as a lost connection; the sync would stop retrying it after %d attempts", err, maxUnknownRetries)
		}
	}
	kept := []error{
		wrap(&pgconn.PgError{Code: "42501", Message: "permission denied for table orders"}),
		wrap(errors.New("decode pgoutput message: unknown message type")),
	}
	for _, err := range kept {
		if connectionLost(err) {
			t.Errorf("%v: seen as a lost connection; it would be retried forever", err)
		}
	}
}

func TestRetryable(t *testing.T) {
	if retryable(failure.New(failure.Schema, "SLUICE-SYNC-SLOTLOST", "slot lost")) {
		t.Error("a lost slot is retried: the sync would loop forever on changes that are gone")
	}
	if retryable(failure.New(failure.BadRow, "SLUICE-SYNC-REFUSED", "refused")) {
		t.Error("a refused row is retried: it fails the same way every time")
	}
	if !retryable(failure.New(failure.Connection, "SLUICE-SYNC-APPLY", "target gone")) {
		t.Error("a lost target connection is not retried")
	}
}
