// Package events keeps target tables in sync from application events (the
// V1→V2 pattern): a backfill copy in chunks plus events consumed from NATS
// JetStream or posted over HTTP, applied through the copy's mapping,
// idempotently and in version order per row. See docs/EVENTS.md.
package events

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/sync/errgroup"
	"golang.org/x/time/rate"

	"github.com/sluice-db/sluice/internal/capture"
	"github.com/sluice-db/sluice/internal/failure"
	"github.com/sluice-db/sluice/internal/mysql"
	"github.com/sluice-db/sluice/internal/plan"
	"github.com/sluice-db/sluice/internal/postgres"
	"github.com/sluice-db/sluice/internal/progress"
	"github.com/sluice-db/sluice/internal/throttle"
	pubevents "github.com/sluice-db/sluice/pkg/events"
)

// Options tune an events sync.
type Options struct {
	Endpoint  *pubevents.Endpoint // the JetStream stream; nil: events come over HTTP only
	Consumer  string              // durable consumer name
	Parallel  int                 // chunks copied at once
	ChunkRows int
	// MaxRowsPerSec paces the backfill's reads of the source; 0: none.
	MaxRowsPerSec float64
	BatchRows     int           // events per target transaction, at most
	BatchDelay    time.Duration // longest an event waits for its batch
	AckWait       time.Duration // JetStream redelivers what is not acknowledged in this time
	// VersionCache bounds the rows of the version table kept in memory
	// (about 40 bytes each); 0: 1,000,000; negative: none.
	VersionCache int
	Tracker      *progress.Tracker
	Log          *slog.Logger
}

func (o *Options) defaults() {
	if o.Parallel < 1 {
		o.Parallel = 2
	}
	if o.ChunkRows < 1 {
		o.ChunkRows = 20000
	}
	if o.BatchRows < 1 {
		o.BatchRows = 5000
	}
	if o.BatchDelay <= 0 {
		o.BatchDelay = 100 * time.Millisecond
	}
	if o.AckWait <= 0 {
		o.AckWait = 2 * time.Minute
	}
	if o.Tracker == nil {
		o.Tracker = &progress.Tracker{}
	}
	if o.Consumer == "" {
		o.Consumer = "sluice_events"
	}
	if o.VersionCache == 0 {
		o.VersionCache = 1_000_000
	}
}

// Service is one running events sync.
type Service struct {
	limiter *rate.Limiter // the backfill's pace; nil: none
	src     *postgres.Source
	tgt     *mysql.Target
	plan    *plan.Plan
	opt     Options
	log     *slog.Logger
	cat     *Catalog
	norm    *Normalizer
	store   *Store

	tables    []*tableState
	byRT      map[*Table]*tableState
	keysBuilt atomic.Bool // the foreign keys exist: set once every table is copied

	applyMu      sync.Mutex          // one apply at a time (JetStream or HTTP)
	cstate       mysql.ConsumerState // JetStream consumer progress (under applyMu)
	hstate       mysql.ConsumerState // HTTP progress (under applyMu)
	ready        chan struct{}       // closed once the tables are prepared
	stop         chan struct{}       // closed by Stop
	stopped      sync.Once
	holds        throttle.Holds // the pause and the watchers' holds on the copy
	counts       counters
	commits      atomic.Int64
	crashAt      int64                              // test hook: exit right after this many commits, before the ack
	dropAcks     bool                               // test hook: never acknowledge
	crashAfterDL bool                               // test hook: exit after sending dead letters, before their commit
	dlSent       map[uint64]bool                    // events dead-lettered, not recorded yet (see unrecordedDeadLetters)
	ownMsgs      map[uint64]bool                    // stream sequences of the dead letters this run sent (see checkGap)
	targetDB     string                             // the target database, named in dead letters
	cons         atomic.Pointer[jetstream.Consumer] // the JetStream consumer, once created
	started      time.Time
	copyErr      atomic.Value     // error
	locks        *mysql.HeldLocks // the events locks, held for the run
	lockLost     func() error     // why the locks were lost; nil while held (set before ready)
}

type counters struct {
	received     atomic.Int64
	applied      atomic.Int64
	ignored      atomic.Int64
	redelivered  atomic.Int64
	deadLettered atomic.Int64
	httpApplied  atomic.Int64
	httpIgnored  atomic.Int64
	httpRefused  atomic.Int64 // batches refused as invalid (4xx): the sender must change them
	httpRetry    atomic.Int64 // batches not applied for now (5xx): the sender sends them again
	handled      atomic.Int64 // events applied or ignored by this run
	firstApply   atomic.Int64 // unix nanos
	lastApply    atomic.Int64
	lastSeq      atomic.Uint64
}

type tableState struct {
	rt       *Table
	pending  []mysql.StoredChunk
	left     atomic.Int64
	copied   atomic.Bool
	progress atomic.Pointer[progress.Table] // set once the table is prepared; the status reads it meanwhile
	events   atomic.Int64
}

// New prepares an events sync of the tables of p.
func New(ctx context.Context, src *postgres.Source, tgt *mysql.Target, p *plan.Plan, opt Options) (*Service, error) {
	opt.defaults()
	for _, t := range p.Tables {
		if err := capture.CheckInheritance(t); err != nil {
			return nil, err
		}
	}
	rts, err := LoadTables(ctx, src, p)
	if err != nil {
		return nil, err
	}
	s := &Service{src: src, tgt: tgt, plan: p, opt: opt, log: opt.Log, cat: NewCatalog(rts), norm: &Normalizer{Src: src},
		store: &Store{DB: tgt.DB, CacheRows: max(opt.VersionCache, 0)}, ownMsgs: map[uint64]bool{}, byRT: map[*Table]*tableState{}, ready: make(chan struct{}), stop: make(chan struct{}), started: time.Now()}
	s.holds.Log = opt.Log
	if opt.MaxRowsPerSec > 0 {
		s.limiter = rate.NewLimiter(rate.Limit(opt.MaxRowsPerSec), max(1, min(int(opt.MaxRowsPerSec), 10000)))
	}
	for _, rt := range rts {
		ts := &tableState{rt: rt}
		s.tables = append(s.tables, ts)
		s.byRT[rt] = ts
	}
	// Test hooks (test/events): end the process right after the Nth target
	// commit, before the acknowledgement; leave acknowledgements out so
	// JetStream delivers again after a short AckWait.
	if v := os.Getenv("SLUICE_TEST_CRASH_AFTER_COMMITS"); v != "" {
		s.crashAt, _ = strconv.ParseInt(v, 10, 64)
	}
	s.crashAfterDL = os.Getenv("SLUICE_TEST_CRASH_AFTER_DEADLETTER") != ""
	if os.Getenv("SLUICE_TEST_DROP_ACKS") != "" {
		s.dropAcks = true
		s.opt.AckWait = 2 * time.Second
	}
	return s, nil
}

// Stop ends the sync cleanly: the batch being applied is committed and
// acknowledged, the copy stops after its current chunk.
func (s *Service) Stop() { s.stopped.Do(func() { close(s.stop) }) }

// Pause holds the copy back (events keep flowing).
func (s *Service) Pause() { s.holds.Pause() }

// Resume undoes Pause.
func (s *Service) Resume() { s.holds.Resume() }

// Throttle holds the copy back for reason until Unthrottle(source): the
// watchers protecting the source call it. Events keep being applied.
func (s *Service) Throttle(source, reason string) { s.holds.Throttle(source, reason) }

// Unthrottle lifts the hold set by source.
func (s *Service) Unthrottle(source string) { s.holds.Unthrottle(source) }

// Run prepares the target, then copies and consumes until Stop or ctx ends.
func (s *Service) Run(ctx context.Context) error {
	err := s.prepare(ctx)
	if s.locks != nil {
		defer s.locks.Close()
	}
	if err != nil {
		return err
	}
	// Losing the locks (the target restarted) ends the run: another may
	// have taken them, and this one's cached versions are no longer the
	// only writer's.
	ctx, s.lockLost = s.locks.Guard(ctx)
	close(s.ready)
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return s.copyAll(gctx) })
	if s.opt.Endpoint != nil {
		g.Go(func() error { return s.consume(gctx) })
	} else {
		g.Go(func() error {
			select {
			case <-s.stop:
			case <-gctx.Done():
			}
			return nil
		})
	}
	err = g.Wait()
	if lost := s.lockLost(); lost != nil {
		return lost
	}
	return err
}

// lockWriters makes this run the one events sync writing each of its
// target tables (the version checks keep a table's versions in memory and
// trust them) and the one using its consumer name in this database (its
// progress row). The named locks are server-wide, so their names hold the
// database; they are hashed to fit GET_LOCK's 64 characters.
func (s *Service) lockWriters(ctx context.Context) (*mysql.HeldLocks, error) {
	var db string
	if err := s.tgt.DB.QueryRowContext(ctx, "SELECT DATABASE()").Scan(&db); err != nil {
		return nil, fmt.Errorf("target: read the database name: %w", err)
	}
	s.targetDB = db
	// A JetStream durable belongs to its stream, the progress row to the
	// database: the consumer name is claimed for both.
	type claim struct{ scope, what, busy string }
	busyConsumer := fmt.Sprintf("another sluice applies events with consumer %s", s.opt.Consumer)
	claims := []claim{{db, "consumer\x00" + s.opt.Consumer, busyConsumer + " to this target"}}
	if s.opt.Endpoint != nil {
		claims = append(claims, claim{"stream\x00" + s.opt.Endpoint.Stream, "consumer\x00" + s.opt.Consumer, busyConsumer + " from stream " + s.opt.Endpoint.Stream})
	}
	for _, ts := range s.tables {
		target := ts.rt.Plan.Target
		claims = append(claims, claim{db, "table\x00" + target, fmt.Sprintf("another sluice applies events to target table %s", target)})
	}
	locks := make([]mysql.Claim, len(claims))
	for i, c := range claims {
		sum := sha256.Sum256([]byte(c.scope + "\x00" + c.what))
		locks[i] = mysql.Claim{Name: "sluice_events:" + hex.EncodeToString(sum[:20]),
			Busy: failure.New(failure.Usage, "SLUICE-EVENTS-BUSY", "%s", c.busy).
				WithHint("stop the other sync first (sluice status shows it): one events sync writes a table at a time")}
	}
	return mysql.TakeLocks(ctx, s.tgt.DB, locks)
}

func (s *Service) prepare(ctx context.Context) error {
	locks, err := s.lockWriters(ctx)
	if err != nil {
		return err
	}
	s.locks = locks
	if err := s.tgt.EnsureProgressTables(ctx); err != nil {
		return err
	}
	if err := s.tgt.EnsureEventTables(ctx); err != nil {
		return err
	}
	s.tgt.WarnIfNotDurable(ctx, s.log)
	if err := s.store.Load(ctx); err != nil {
		return err
	}
	for _, ts := range s.tables {
		if err := s.prepareTable(ctx, ts); err != nil {
			return err
		}
	}
	stream := "http"
	if s.opt.Endpoint != nil {
		stream = s.opt.Endpoint.Stream
	}
	if s.cstate, err = s.tgt.LoadConsumerState(ctx, s.opt.Consumer, stream); err != nil {
		return err
	}
	// Its sequence numbers mean nothing on another stream. A run taking events
	// over HTTP only reads no stream: it keeps its own progress (hstate).
	if s.opt.Endpoint != nil && s.cstate.Stream != stream && s.cstate.LastSeq > 0 {
		return failure.New(failure.Usage, "SLUICE-NATS-STREAMCHANGED", "consumer %s applied events from stream %s up to sequence %d, not from %s",
			s.opt.Consumer, s.cstate.Stream, s.cstate.LastSeq, stream).
			WithHint("run with --events pointing at %s, or give this stream its own --consumer", s.cstate.Stream)
	}
	if s.opt.Endpoint != nil {
		s.cstate.Stream = stream // stored with the first batch: the sequences are this stream's from now on
	}
	if s.hstate, err = s.tgt.LoadConsumerState(ctx, s.opt.Consumer+":http", "http"); err != nil {
		return err
	}
	// Totals go on from what earlier runs stored.
	s.counts.lastSeq.Store(s.cstate.LastSeq)
	s.counts.applied.Store(s.cstate.Applied)
	s.counts.ignored.Store(s.cstate.Ignored)
	s.counts.deadLettered.Store(s.cstate.DeadLettered)
	s.counts.httpApplied.Store(s.hstate.Applied)
	s.counts.httpIgnored.Store(s.hstate.Ignored)
	return nil
}

// Status is the events part of `sluice status`.
type Status struct {
	Phase           string            `json:"phase"`               // preparing, copying, streaming
	Paused          bool              `json:"paused"`              // the copy, by POST /api/v1/pause
	Throttled       map[string]string `json:"throttled,omitempty"` // why the copy is held back, by watcher
	Stream          string            `json:"stream,omitempty"`
	Consumer        string            `json:"consumer"`
	LastStreamSeq   uint64            `json:"last_stream_seq"`
	Pending         int64             `json:"pending"`            // events in the stream not yet applied (-1: unknown)
	Received        int64             `json:"events_received"`    // by this run
	Applied         int64             `json:"events_applied"`     // in all, by every run
	Ignored         int64             `json:"events_ignored"`     // in all: not newer than the target's version of the row
	Redelivered     int64             `json:"events_redelivered"` // by this run: applied before, acknowledgement lost
	DeadLettered    int64             `json:"events_dead_lettered"`
	DeadLetterTo    string            `json:"dead_letter_subject,omitempty"`
	HTTPApplied     int64             `json:"http_events_applied"`
	HTTPIgnored     int64             `json:"http_events_ignored"`
	HTTPRefused     int64             `json:"http_batches_refused"`     // invalid: 4xx
	HTTPRetry       int64             `json:"http_batches_unavailable"` // not applied for now: 5xx, send again
	EventsPerSecond float64           `json:"events_per_second"`        // from the first to the last applied batch of this run
	ApplySeconds    float64           `json:"apply_seconds"`
	UptimeSeconds   float64           `json:"uptime_seconds"`
	Tables          []TableStatus     `json:"tables"`
	LastError       string            `json:"last_error,omitempty"`
	CopyDone        bool              `json:"copy_done"`
	CaughtUp        bool              `json:"caught_up"`               // copy done and nothing pending
	HandledThisRun  int64             `json:"events_handled_this_run"` // applied or ignored, from JetStream and HTTP
}

// TableStatus is one table's part of Status.
type TableStatus struct {
	Source        string  `json:"source"`
	Target        string  `json:"target"`
	Phase         string  `json:"phase"`
	RowsCopied    int64   `json:"rows_copied"`
	RowsEstimate  int64   `json:"rows_estimate"`
	RowsPerSecond float64 `json:"rows_per_second"`
	ETASeconds    float64 `json:"eta_seconds"`
	Events        int64   `json:"events_applied"`
}

// Status reports the sync now.
func (s *Service) Status() Status {
	c := &s.counts
	st := Status{Consumer: s.opt.Consumer, LastStreamSeq: c.lastSeq.Load(), Pending: -1,
		Received: c.received.Load(), Applied: c.applied.Load(), Ignored: c.ignored.Load(), Redelivered: c.redelivered.Load(),
		DeadLettered: c.deadLettered.Load(), HTTPApplied: c.httpApplied.Load(), HTTPIgnored: c.httpIgnored.Load(),
		HTTPRefused: c.httpRefused.Load(), HTTPRetry: c.httpRetry.Load(), UptimeSeconds: time.Since(s.started).Seconds(), CopyDone: s.copyDone(), Paused: s.holds.Paused(), Throttled: s.holds.Reasons()}
	st.HandledThisRun = c.handled.Load()
	if s.opt.Endpoint != nil {
		st.Stream, st.DeadLetterTo = s.opt.Endpoint.Stream, s.opt.Endpoint.DeadLetterSubject()
	}
	if f, l := c.firstApply.Load(), c.lastApply.Load(); f != 0 && l > f {
		st.ApplySeconds = float64(l-f) / 1e9
		st.EventsPerSecond = float64(st.HandledThisRun) / st.ApplySeconds
	}
	if e, ok := s.copyErr.Load().(string); ok {
		st.LastError = e
	}
	st.Phase = "streaming"
	for _, ts := range s.tables {
		prog := ts.progress.Load()
		if prog == nil {
			continue
		}
		snap := prog.Snapshot()
		if !ts.copied.Load() {
			st.Phase = "copying"
		}
		eta := -1.0
		if snap.ETA >= 0 {
			eta = snap.ETA.Seconds()
		}
		st.Tables = append(st.Tables, TableStatus{Source: ts.rt.Name, Target: ts.rt.Plan.Target, Phase: snap.Phase, RowsCopied: snap.Rows,
			RowsEstimate: snap.Total, RowsPerSecond: snap.RowsPerSec, ETASeconds: eta, Events: ts.events.Load()})
	}
	select {
	case <-s.ready:
	default: // POST /api/v1/events answers 503 until the tables are prepared
		st.Phase = "preparing"
	}
	if s.opt.Endpoint == nil {
		st.Pending, st.CaughtUp = 0, st.CopyDone
	} else if pending, caughtUp, ok := s.backlog(); ok {
		st.Pending, st.CaughtUp = pending, st.CopyDone && caughtUp
	}
	return st
}

// copyDone: every table copied, with its indexes and the foreign keys.
func (s *Service) copyDone() bool { return s.tablesCopied() && s.keysBuilt.Load() }

func (s *Service) tablesCopied() bool {
	for _, ts := range s.tables {
		if !ts.copied.Load() {
			return false
		}
	}
	return len(s.tables) > 0
}

// DrainReport says how a drain ended.
type DrainReport struct {
	WaitedMS     float64 `json:"waited_ms"`
	Applied      int64   `json:"events_applied"` // from the stream and over HTTP
	DeadLettered int64   `json:"events_dead_lettered"`
	LastSeq      uint64  `json:"last_stream_seq"`
}

// WaitDrained waits until the copy is done and every event in the stream
// is applied: the moment to switch the application over, once V1 stopped
// emitting.
func (s *Service) WaitDrained(ctx context.Context, limit time.Duration) (*DrainReport, error) {
	start := time.Now()
	deadline := start.Add(limit)
	for {
		if st := s.Status(); st.CaughtUp {
			if st.DeadLettered > 0 {
				s.log.Warn("drained, but events were dead-lettered: the target lacks their changes", "code", "SLUICE-CUTOVER-DEADLETTER", "events", st.DeadLettered,
					"hint", "read them from the stream's deadletter subject (docs/EVENTS.md), fix and send them again before the application writes to the target")
			}
			return &DrainReport{WaitedMS: float64(time.Since(start).Microseconds()) / 1000, Applied: st.Applied + st.HTTPApplied,
				DeadLettered: st.DeadLettered, LastSeq: st.LastStreamSeq}, nil
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("events are still pending after %s", limit)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// noteApplied updates the counters after a commit.
func (s *Service) noteApplied(ops []Op, res Result) {
	now := time.Now().UnixNano()
	s.counts.firstApply.CompareAndSwap(0, now)
	s.counts.lastApply.Store(now)
	s.counts.handled.Add(int64(len(ops)))
	for i, op := range ops {
		if res.Applied[i] {
			s.byRT[op.Table].events.Add(1)
		}
	}
}
