package mysql

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sluice-db/sluice/internal/failure"
)

// Claim is one named lock (GET_LOCK) a run must hold, and the error to give
// when another session holds it.
type Claim struct {
	Name string
	Busy error
}

// HeldLocks are named locks held for a whole run on a connection of their
// own: the server releases a named lock when its session ends, so the
// connection is the lock.
type HeldLocks struct {
	conn   *sql.Conn
	names  []string
	stop   chan struct{}
	done   chan struct{} // closed when Guard's watch has ended; nil without Guard
	closed sync.Once
}

// lockSessionTimeout is the locks' session wait_timeout: the connection sits
// idle while it holds them, and the server's default (8 hours) would close
// it and let a second run in beside this one.
const lockSessionTimeout = 31536000 // a year, in seconds

// TakeLocks takes every claim's lock without waiting. A lock another session
// holds fails with that claim's Busy error, and none is kept.
func TakeLocks(ctx context.Context, db *sql.DB, claims []Claim) (*HeldLocks, error) {
	conn, err := db.Conn(ctx)
	if err != nil {
		return nil, fmt.Errorf("target: connect for the run's locks: %w", err)
	}
	if _, err := conn.ExecContext(ctx, fmt.Sprintf("SET SESSION wait_timeout = %d", lockSessionTimeout)); err != nil {
		endSession(conn)
		return nil, fmt.Errorf("target: keep the locks' connection open: %w", err)
	}
	l := &HeldLocks{conn: conn, stop: make(chan struct{})}
	for _, c := range claims {
		var got sql.NullInt64
		if err := conn.QueryRowContext(ctx, "SELECT GET_LOCK(?, 0)", c.Name).Scan(&got); err != nil {
			endSession(conn)
			return nil, fmt.Errorf("target: take the lock %s: %w", c.Name, err)
		}
		if got.Int64 != 1 {
			endSession(conn) // the claims taken before this one go with it
			return nil, c.Busy
		}
		l.names = append(l.names, c.Name)
	}
	return l, nil
}

// Conn is the locks' connection, for statements that must run in the
// session that holds them.
func (l *HeldLocks) Conn() *sql.Conn { return l.conn }

// lockCheckEvery is how often Guard checks the locks: how long two runs may
// write side by side after a target restart, at worst.
const lockCheckEvery = 2 * time.Second

// Guard checks every lockCheckEvery that the session still holds the locks.
// When it does not (the target restarted or the connection was killed, and
// another run may have taken them since) the returned context ends and lost
// says why; until then lost returns nil. The caller stops: its writes are no
// longer fenced. Guard once per HeldLocks; Close ends the watch.
func (l *HeldLocks) Guard(ctx context.Context) (guarded context.Context, lost func() error) {
	guarded, cancel := context.WithCancel(ctx)
	var why atomic.Pointer[error]
	l.done = make(chan struct{})
	go func() {
		defer close(l.done)
		defer cancel()
		t := time.NewTicker(lockCheckEvery)
		defer t.Stop()
		for {
			select {
			case <-l.stop:
				return
			case <-t.C:
			}
			if err := l.check(); err != nil {
				why.Store(&err)
				return
			}
		}
	}()
	return guarded, func() error {
		if err := why.Load(); err != nil {
			return *err
		}
		return nil
	}
}

// check returns an error naming the first lock this session no longer holds.
func (l *HeldLocks) check() error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, name := range l.names {
		var mine sql.NullBool
		err := l.conn.QueryRowContext(ctx, "SELECT IS_USED_LOCK(?) = CONNECTION_ID()", name).Scan(&mine)
		if err == nil && mine.Valid && mine.Bool {
			continue
		}
		why := "another session holds it"
		switch {
		case err != nil:
			why = "its connection failed: " + err.Error()
		case !mine.Valid:
			why = "no session holds it"
		}
		return failure.New(failure.Connection, "SLUICE-TARGET-LOCK-LOST", "the target lock %s was lost (%s)", name, why).
			WithHint("the target restarted or the connection was killed, and another run may write meanwhile; this run stopped: start it again, it resumes where it was")
	}
	return nil
}

// Close releases the locks (by ending their session).
func (l *HeldLocks) Close() {
	l.closed.Do(func() {
		close(l.stop)
		if l.done != nil {
			<-l.done
		}
		endSession(l.conn)
	})
}

// endSession releases conn's named locks and closes its session on the
// server. (Closing a *sql.Conn only hands it back to the pool, where the
// session lives on, locks and all.) The explicit release makes the locks
// free when Close returns; the server would free them too once it noticed
// the closed connection, but a moment later.
func endSession(conn *sql.Conn) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	conn.ExecContext(ctx, "DO RELEASE_ALL_LOCKS()") // best effort: the session's end releases them anyway
	cancel()
	conn.Raw(func(any) error { return driver.ErrBadConn }) // the pool discards it
	conn.Close()
}
