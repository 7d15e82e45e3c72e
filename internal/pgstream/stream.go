// Package pgstream reads a PostgreSQL logical replication slot (pgoutput)
// and turns it into engine-neutral events in commit order. It also owns the
// slot and publication: creating, reusing, inspecting and dropping them.
package pgstream

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/sluice-db/sluice/internal/postgres"
)

// Op is the kind of a row change.
type Op byte

const (
	Insert Op = 'I'
	Update Op = 'U'
	Delete Op = 'D'
)

// Value is one column of a streamed row, in the source's text form.
// Unchanged marks an unchanged TOASTed value that pgoutput left out of an
// UPDATE: the column must not be written.
type Value struct {
	Data      []byte // nil: SQL NULL (when !Unchanged)
	Unchanged bool
}

// Relation describes a published table as the stream last announced it.
type Relation struct {
	ID              uint32
	Schema, Name    string
	Columns         []RelationColumn
	ReplicaIdentity byte // d, n, f, i
}

// RelationColumn is one column of a Relation.
type RelationColumn struct {
	Name    string
	TypeOID uint32
	TypeMod int32 // atttypmod: a length, precision or digits of a second (-1: none)
	Key     bool  // part of the replica identity
}

// Event is one decoded item of the stream. Exactly one field group is set,
// by Kind.
type Event struct {
	Kind       EventKind
	LSN        pglogrepl.LSN // WAL position of the record (commit: end of the transaction)
	CommitTime time.Time     // Begin/Commit
	Xid        uint32        // Begin: the transaction's id
	Relation   *Relation     // Change, RelationChanged
	Op         Op            // Change
	Old        []Value       // Change: key or full old row (Update with K/O, Delete)
	New        []Value       // Change: new row (Insert, Update)
	Truncated  []*Relation   // Truncate
	Prefix     string        // Message
	Content    []byte        // Message
	WALEnd     pglogrepl.LSN // Keepalive: the server's WAL end
}

// EventKind tells which fields of an Event are set.
type EventKind int

const (
	Begin EventKind = iota + 1
	Commit
	Change
	Truncate
	Message
	RelationChanged
	Keepalive
)

// Stream is an open replication connection.
type Stream struct {
	conn        *pgconn.PgConn
	relations   map[uint32]*Relation
	confirmed   atomic.Uint64 // LSN durable on the target: reported to the server
	received    atomic.Uint64 // highest WAL position seen from the server
	lastCommit  atomic.Int64  // commit time (unix nanos) of the last transaction begun in the stream
	handedOver  atomic.Int64  // bytes of the batches Pump handed over and the receiver has not recycled
	sizesMu     sync.Mutex
	sizes       []int64       // those batches' bytes, in the order handed over (and recycled)
	readAhead   int64         // the budget for them (readAheadBytes; tests set less)
	nextReply   time.Time     // the next status update, whatever happens
	sent        pglogrepl.LSN // the confirmed position the last status update reported
	sentAt      time.Time     // when that update went out
	deadline    time.Time     // the connection's read deadline
	confirmWake chan struct{} // Confirm's wake-up for handOver (1-buffered)
	watched     context.Context
	unwatch     func() bool

	socketBuffer int           // over a Unix socket: the walsender's send buffer (bytes); 0 otherwise
	interval     time.Duration // between status updates
}

// statusInterval is how often the client reports its position even when
// the server does not ask; well under wal_sender_timeout (60 s default).
// A server with a shorter timeout gets updates at a third of it.
const statusInterval = 5 * time.Second

// confirmGap is the least time between status updates that report a newer
// confirmed position. The server frees WAL on such an update, so one goes
// out as soon as the target has made changes durable (after each target
// commit under a steady load), not only every statusInterval: a slot
// moves its restart point only when a confirmation passes the candidate it
// noted at a running-transactions record, and holds one candidate at a
// time, so a late confirmation keeps WAL for another such record (up to
// 15 s of it) and, after a backlog, for many. Catching up, when target
// commits come milliseconds apart, updates go out at most this often.
const confirmGap = 100 * time.Millisecond

// Open starts streaming slot from startLSN (0: from the slot's confirmed
// position). connString is a normal source URL; the replication=database
// parameter is added here.
func Open(ctx context.Context, connString, slot, publication string, startLSN pglogrepl.LSN) (*Stream, error) {
	cfg, err := pgconn.ParseConfig(connString)
	if err != nil {
		return nil, fmt.Errorf("replication connection: %w", err)
	}
	cfg.RuntimeParams["replication"] = "database"
	// pgoutput prints values with the walsender's settings: pin them like
	// every other sluice session so values have one text form.
	for k, v := range postgres.SessionParams {
		cfg.RuntimeParams[k] = v
	}
	cfg.ConnectTimeout = 10 * time.Second
	dial := cfg.DialFunc
	unixBuffer := 0 // the walsender's send buffer when it comes over a Unix socket
	cfg.DialFunc = func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := dial(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		if network == "unix" {
			unixBuffer = socketBuffer()
		}
		pc, err := newPacedConn(c)
		if err != nil {
			return nil, err
		}
		return newPrefetchConn(pc), nil
	}
	conn, err := pgconn.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("replication connection: %w", err)
	}
	interval, err := statusEvery(ctx, conn)
	if err != nil {
		conn.Close(context.Background())
		return nil, err
	}
	args := []string{
		"proto_version '1'",
		"publication_names '" + strings.ReplaceAll(publication, "'", "''") + "'",
		"messages 'true'",
	}
	if err := pglogrepl.StartReplication(ctx, conn, slot, startLSN, pglogrepl.StartReplicationOptions{PluginArgs: args}); err != nil {
		conn.Close(context.Background())
		return nil, fmt.Errorf("start replication on slot %s: %w", slot, err)
	}
	s := &Stream{conn: conn, relations: map[uint32]*Relation{}, nextReply: time.Now().Add(interval), socketBuffer: unixBuffer, interval: interval,
		confirmWake: make(chan struct{}, 1)}
	s.confirmed.Store(uint64(startLSN))
	return s, nil
}

// statusEvery returns how often to send status updates on conn: every
// statusInterval, or a third of the server's wal_sender_timeout if shorter.
func statusEvery(ctx context.Context, conn *pgconn.PgConn) (time.Duration, error) {
	res, err := conn.Exec(ctx, "SHOW wal_sender_timeout").ReadAll()
	if err != nil {
		return 0, fmt.Errorf("replication connection: read wal_sender_timeout: %w", err)
	}
	if len(res) == 0 || len(res[0].Rows) == 0 || len(res[0].Rows[0]) == 0 {
		return statusInterval, nil
	}
	timeout, ok := parseSetting(string(res[0].Rows[0][0]))
	if !ok || timeout <= 0 { // 0 turns the timeout off
		return statusInterval, nil
	}
	return min(statusInterval, max(timeout/3, 10*time.Millisecond)), nil
}

// parseSetting reads a time setting as SHOW prints it ("60s", "500ms",
// "2min"); a bare number is in milliseconds, wal_sender_timeout's unit.
func parseSetting(v string) (time.Duration, bool) {
	i := strings.IndexFunc(v, func(r rune) bool { return r < '0' || r > '9' })
	if i == 0 {
		return 0, false
	}
	num, unit := v, "ms"
	if i > 0 {
		num, unit = v[:i], strings.TrimSpace(v[i:])
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil {
		return 0, false
	}
	units := map[string]time.Duration{"us": time.Microsecond, "ms": time.Millisecond, "s": time.Second, "min": time.Minute, "h": time.Hour, "d": 24 * time.Hour}
	u, ok := units[unit]
	return time.Duration(n) * u, ok
}

// Close reports the confirmed position one last time, so the slot holds no
// more WAL than it must while sluice is stopped, and ends the replication
// connection (the slot stays).
func (s *Stream) Close() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if s.unwatch != nil {
		s.unwatch()
	}
	s.sendStatus(ctx)
	s.conn.Close(ctx)
}

// Confirm records that everything up to lsn is durable on the target, so
// the server may recycle the WAL before it. The reader sends it within
// confirmGap: Confirm wakes a read waiting for data.
func (s *Stream) Confirm(lsn pglogrepl.LSN) {
	for {
		cur := s.confirmed.Load()
		if uint64(lsn) <= cur {
			return
		}
		if s.confirmed.CompareAndSwap(cur, uint64(lsn)) {
			s.conn.Conn().SetReadDeadline(time.Now()) // a read waiting for data
			select {
			case s.confirmWake <- struct{}{}: // a hand-over waiting for the receiver
			default:
			}
			return
		}
	}
}

// Confirmed is the position last confirmed.
func (s *Stream) Confirmed() pglogrepl.LSN { return pglogrepl.LSN(s.confirmed.Load()) }

// Received is the highest server WAL position seen.
func (s *Stream) Received() pglogrepl.LSN { return pglogrepl.LSN(s.received.Load()) }

// holdSlot is a test hook (SLUICE_TEST_HOLD_SLOT set): the slot is never
// confirmed, as if every confirmation were lost to a kill right after the
// target commit it follows.
var holdSlot = os.Getenv("SLUICE_TEST_HOLD_SLOT") != ""

func (s *Stream) sendStatus(ctx context.Context) error {
	lsn := s.Confirmed()
	if holdSlot {
		lsn = 0 // PostgreSQL ignores an invalid position
	}
	err := pglogrepl.SendStandbyStatusUpdate(ctx, s.conn, pglogrepl.StandbyStatusUpdate{
		WALWritePosition: lsn, WALFlushPosition: lsn, WALApplyPosition: lsn})
	s.sentAt = time.Now()
	s.sent = lsn
	s.nextReply = s.sentAt.Add(s.interval)
	return err
}

// statusDue is when the next status update is to go out: at nextReply, or
// confirmGap after the last one when there is a newer position to confirm.
func (s *Stream) statusDue() time.Time {
	if s.Confirmed() > s.sent {
		if t := s.sentAt.Add(confirmGap); t.Before(s.nextReply) {
			return t
		}
	}
	return s.nextReply
}

// Next returns the next event, answering keepalives and sending status
// updates on the way. It returns a Keepalive event at least every
// statusInterval when the source is quiet.
func (s *Stream) Next(ctx context.Context) (Event, error) {
	s.watch(ctx)
	for {
		if err := ctx.Err(); err != nil {
			return Event{}, err
		}
		due := s.statusDue()
		if !time.Now().Before(due) {
			if err := s.sendStatus(ctx); err != nil {
				return Event{}, fmt.Errorf("replication status update: %w", err)
			}
			due = s.statusDue()
		}
		if !s.deadline.Equal(due) {
			s.deadline = due
			s.conn.Conn().SetReadDeadline(due)
			if err := ctx.Err(); err != nil { // ended meanwhile: its wake-up was just overwritten
				return Event{}, err
			}
			if s.statusDue().Before(due) { // confirmed meanwhile: the same
				continue
			}
		}
		// Not ctx: with a cancellable context pgconn starts a watcher per
		// message, which at thousands of messages a second costs more than
		// decoding them. The read deadline wakes the read for the status
		// update; watch turns ctx's end into a deadline too.
		raw, err := s.conn.ReceiveMessage(context.Background())
		if err != nil {
			if ctx.Err() != nil {
				return Event{}, ctx.Err()
			}
			if pgconn.Timeout(err) {
				// Set again on the next turn: Confirm may have moved it.
				s.deadline = time.Time{}
				continue
			}
			return Event{}, fmt.Errorf("replication stream: %w", err)
		}
		switch m := raw.(type) {
		case *pgproto3.ErrorResponse:
			return Event{}, fmt.Errorf("replication stream: %w", pgconn.ErrorResponseToPgError(m))
		case *pgproto3.CopyData:
			ev, ok, err := s.handle(ctx, m.Data)
			if err != nil || ok {
				return ev, err
			}
		}
	}
}

// watch makes the end of ctx wake a blocked read (once per context).
func (s *Stream) watch(ctx context.Context) {
	if s.watched == ctx {
		return
	}
	if s.unwatch != nil {
		s.unwatch()
	}
	s.watched = ctx
	s.unwatch = context.AfterFunc(ctx, func() { s.conn.Conn().SetReadDeadline(time.Now()) })
}

// Pump reads the stream into out until ctx ends or the stream breaks, a
// transaction at a time (up to pumpBatch events per send): one hand-off
// between goroutines per transaction rather than per change. Return each
// batch with Recycle once its events are copied out.
//
// (Handing over once per socket read instead saved a little more CPU under a
// steady load, but caught up over a Unix socket at the kernel's default
// buffer a quarter slower: 24–28k changes/s against 31–38k.)
func (s *Stream) Pump(ctx context.Context, out chan<- []Event) error {
	batch := newBatch()
	for {
		ev, err := s.Next(ctx)
		if err != nil {
			return err
		}
		batch = append(batch, ev)
		if ev.Kind == Commit || ev.Kind == Keepalive || len(batch) >= pumpBatch {
			if err := s.handOver(ctx, out, batch); err != nil {
				return err
			}
			batch = newBatch()
		}
	}
}

// readAheadBytes bounds the row data Pump hands over ahead of the
// receiver (Recycle gives it back): out's length bounds batches, but a
// batch of wide rows can be megabytes, and a receiver busy for long (a
// table's indexes being built, a slow target) let gigabytes pile up.
const readAheadBytes = 64 << 20

// handedOut counts a batch of size bytes handed to the receiver.
func (s *Stream) handedOut(size int64) {
	s.sizesMu.Lock()
	s.sizes = append(s.sizes, size)
	s.sizesMu.Unlock()
	s.handedOver.Add(size)
}

// takeBack uncounts the batch handedOut counted last, which was not sent.
func (s *Stream) takeBack(size int64) {
	s.sizesMu.Lock()
	s.sizes = s.sizes[:len(s.sizes)-1]
	s.sizesMu.Unlock()
	s.handedOver.Add(-size)
}

// batchBytes is the row data a batch holds.
func batchBytes(b []Event) int64 {
	var n int64
	for i := range b {
		n += int64(len(b[i].Content))
		for _, v := range b[i].New {
			n += int64(len(v.Data))
		}
		for _, v := range b[i].Old {
			n += int64(len(v.Data))
		}
	}
	return n
}

// handOver sends batch to out. While the receiver is busy (a table's
// indexes being built, a slow target) nothing reads the stream, so the
// status updates go on from here: without them the server would end the
// connection after wal_sender_timeout.
func (s *Stream) handOver(ctx context.Context, out chan<- []Event, batch []Event) error {
	size := batchBytes(batch)
	// over the budget, wait for the receiver to recycle (a batch alone
	// bigger than the budget goes when nothing else is out)
	budget := s.readAhead
	if budget == 0 {
		budget = readAheadBytes
	}
	room := func() bool { h := s.handedOver.Load(); return h == 0 || h+size <= budget }
	// The batch is counted before it can be received (the receiver may
	// recycle it at once), and taken back when it was not sent.
	if room() {
		s.handedOut(size)
		select {
		case out <- batch:
			return nil
		default:
			s.takeBack(size)
		}
	}
	t := time.NewTimer(time.Until(s.statusDue()))
	defer t.Stop()
	for {
		var send chan<- []Event
		var poll <-chan time.Time
		if room() {
			s.handedOut(size)
			send = out
		} else { // no send until the receiver gives bytes back
			poll = time.After(10 * time.Millisecond)
		}
		select {
		case send <- batch:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		case <-s.confirmWake:
		case <-t.C:
		case <-poll:
		}
		if send != nil {
			s.takeBack(size)
		}
		if !time.Now().Before(s.statusDue()) {
			if err := s.sendStatus(ctx); err != nil {
				return fmt.Errorf("replication status update: %w", err)
			}
		}
		t.Reset(time.Until(s.statusDue()))
	}
}

// batches recycles the slices Pump hands out: a new one per hand-off was
// most of what a busy stream allocated (and the GC's work).
var batches = sync.Pool{New: func() any { b := make([]Event, 0, 16); return &b }}

func newBatch() []Event { return (*batches.Get().(*[]Event))[:0] }

// Recycle takes back a batch from Pump whose events the caller has copied
// out (an Event is copied by value; nothing may keep a pointer into b),
// and gives its bytes back to the read-ahead budget.
func (s *Stream) Recycle(b []Event) {
	if cap(b) == 0 {
		return
	}
	// the receiver takes batches in the order handed over, and recycles
	// each before the next
	s.sizesMu.Lock()
	if len(s.sizes) > 0 {
		s.handedOver.Add(-s.sizes[0])
		s.sizes = s.sizes[1:]
	}
	s.sizesMu.Unlock()
	clear(b) // drop the rows they point to
	b = b[:0]
	batches.Put(&b)
}

const pumpBatch = 256

func (s *Stream) handle(ctx context.Context, data []byte) (Event, bool, error) {
	if len(data) == 0 {
		return Event{}, false, nil
	}
	switch data[0] {
	case pglogrepl.PrimaryKeepaliveMessageByteID:
		ka, err := pglogrepl.ParsePrimaryKeepaliveMessage(data[1:])
		if err != nil {
			return Event{}, false, err
		}
		s.noteReceived(ka.ServerWALEnd)
		if ka.ReplyRequested {
			if err := s.sendStatus(ctx); err != nil {
				return Event{}, false, err
			}
		}
		return Event{Kind: Keepalive, WALEnd: ka.ServerWALEnd}, true, nil
	case pglogrepl.XLogDataByteID:
		xld, err := pglogrepl.ParseXLogData(data[1:])
		if err != nil {
			return Event{}, false, err
		}
		s.noteReceived(xld.ServerWALEnd)
		return s.decode(xld)
	}
	return Event{}, false, nil
}

// LastCommitReceived is the commit time of the last transaction the
// stream has begun to deliver (zero before the first).
func (s *Stream) LastCommitReceived() time.Time {
	if n := s.lastCommit.Load(); n != 0 {
		return time.Unix(0, n)
	}
	return time.Time{}
}

func (s *Stream) noteReceived(lsn pglogrepl.LSN) {
	if uint64(lsn) > s.received.Load() {
		s.received.Store(uint64(lsn))
	}
}

func (s *Stream) decode(xld pglogrepl.XLogData) (Event, bool, error) {
	msg, err := pglogrepl.Parse(xld.WALData)
	if err != nil {
		return Event{}, false, fmt.Errorf("decode pgoutput message: %w", err)
	}
	switch m := msg.(type) {
	case *pglogrepl.BeginMessage:
		s.lastCommit.Store(m.CommitTime.UnixNano())
		return Event{Kind: Begin, LSN: m.FinalLSN, CommitTime: m.CommitTime, Xid: m.Xid}, true, nil
	case *pglogrepl.CommitMessage:
		return Event{Kind: Commit, LSN: m.TransactionEndLSN, CommitTime: m.CommitTime}, true, nil
	case *pglogrepl.RelationMessage:
		rel := &Relation{ID: m.RelationID, Schema: m.Namespace, Name: m.RelationName, ReplicaIdentity: m.ReplicaIdentity}
		for _, c := range m.Columns {
			rel.Columns = append(rel.Columns, RelationColumn{Name: c.Name, TypeOID: c.DataType, TypeMod: c.TypeModifier, Key: c.Flags&1 != 0})
		}
		s.relations[m.RelationID] = rel
		return Event{Kind: RelationChanged, LSN: xld.WALStart, Relation: rel}, true, nil
	case *pglogrepl.InsertMessage:
		rel, err := s.relation(m.RelationID)
		if err != nil {
			return Event{}, false, err
		}
		return Event{Kind: Change, LSN: xld.WALStart, Relation: rel, Op: Insert, New: values(m.Tuple)}, true, nil
	case *pglogrepl.UpdateMessage:
		rel, err := s.relation(m.RelationID)
		if err != nil {
			return Event{}, false, err
		}
		return Event{Kind: Change, LSN: xld.WALStart, Relation: rel, Op: Update, Old: values(m.OldTuple), New: values(m.NewTuple)}, true, nil
	case *pglogrepl.DeleteMessage:
		rel, err := s.relation(m.RelationID)
		if err != nil {
			return Event{}, false, err
		}
		return Event{Kind: Change, LSN: xld.WALStart, Relation: rel, Op: Delete, Old: values(m.OldTuple)}, true, nil
	case *pglogrepl.TruncateMessage:
		ev := Event{Kind: Truncate, LSN: xld.WALStart}
		for _, id := range m.RelationIDs {
			rel, err := s.relation(id)
			if err != nil {
				return Event{}, false, err
			}
			ev.Truncated = append(ev.Truncated, rel)
		}
		return ev, true, nil
	case *pglogrepl.LogicalDecodingMessage:
		return Event{Kind: Message, LSN: m.LSN, Prefix: m.Prefix, Content: append([]byte(nil), m.Content...)}, true, nil
	}
	return Event{}, false, nil // origin, type: nothing to do
}

func (s *Stream) relation(id uint32) (*Relation, error) {
	rel, ok := s.relations[id]
	if !ok {
		return nil, fmt.Errorf("pgoutput sent a change for relation %d before describing it", id)
	}
	return rel, nil
}

// values copies a tuple out of the receive buffer, which pgconn reuses.
func values(t *pglogrepl.TupleData) []Value {
	if t == nil {
		return nil
	}
	out := make([]Value, len(t.Columns))
	for i, c := range t.Columns {
		switch c.DataType {
		case pglogrepl.TupleDataTypeNull:
		case pglogrepl.TupleDataTypeToast:
			out[i].Unchanged = true
		default:
			out[i].Data = append(make([]byte, 0, len(c.Data)), c.Data...)
		}
	}
	return out
}

// ErrSlotInUse means another process is streaming from the slot.
var ErrSlotInUse = errors.New("replication slot is in use by another process")
