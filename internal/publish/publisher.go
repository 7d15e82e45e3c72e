package publish

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/sync/errgroup"

	"github.com/sluice-db/sluice/internal/canonical"
	"github.com/sluice-db/sluice/internal/capture"
	"github.com/sluice-db/sluice/internal/chunk"
	"github.com/sluice-db/sluice/internal/copier"
	"github.com/sluice-db/sluice/internal/deferred"
	"github.com/sluice-db/sluice/internal/events"
	"github.com/sluice-db/sluice/internal/failure"
	"github.com/sluice-db/sluice/internal/mysql"
	"github.com/sluice-db/sluice/internal/pgstream"
	"github.com/sluice-db/sluice/internal/plan"
	"github.com/sluice-db/sluice/internal/postgres"
	"github.com/sluice-db/sluice/internal/progress"
	"github.com/sluice-db/sluice/internal/throttle"
	pubevents "github.com/sluice-db/sluice/pkg/events"
)

// Options tune a publisher.
type Options struct {
	Endpoint    pubevents.Endpoint
	Partitions  int
	Slot        string
	Publication string
	Parallel    int           // chunks read ahead of the stream
	ChunkRows   int           // rows per chunk
	FlushDelay  time.Duration // longest a change waits before the slot is confirmed past it
	Heartbeat   time.Duration
	LockTimeout time.Duration // cutover: give up if the write fence is not granted in this time
	// AutoIncrementGap: cutover starts each target AUTO_INCREMENT this many
	// ids past the source sequence (see fence.Lock.SyncAutoIncrement).
	AutoIncrementGap int64
	CutoverTimeout   time.Duration // cutover: longest the fence may stay up
	Tracker          *progress.Tracker
	Log              *slog.Logger
}

func (o *Options) defaults() {
	if o.Partitions < 1 {
		o.Partitions = 1
	}
	if o.Parallel < 1 {
		o.Parallel = 2
	}
	if o.ChunkRows < 1 {
		o.ChunkRows = 20000
	}
	if o.FlushDelay <= 0 {
		o.FlushDelay = 100 * time.Millisecond
	}
	if o.Heartbeat <= 0 {
		o.Heartbeat = 10 * time.Second
	}
	if o.LockTimeout <= 0 {
		o.LockTimeout = 5 * time.Second
	}
	if o.CutoverTimeout <= 0 {
		o.CutoverTimeout = 30 * time.Second
	}
	if o.Tracker == nil {
		o.Tracker = &progress.Tracker{}
	}
}

// Publisher reads the change stream and publishes it to partitions.
type Publisher struct {
	src            *postgres.Source
	srcConn        string
	tgt            *mysql.Target
	plan           *plan.Plan
	opt            Options
	log            *slog.Logger
	unknown        pgstream.UnknownRelations // read loop only
	tables         []*pubTable
	byName         map[string]*pubTable
	deferredTables []*pubTable // those whose key is DEFERRABLE (see package deferred)
	runID          string
	started        time.Time

	nc     *nats.Conn
	js     jetstream.JetStream
	stream *pgstream.Stream

	// for the status (the watchers' lag and the WAL metrics read it)
	liveStream     atomic.Pointer[pgstream.Stream]
	walRetained    atomic.Int64 // bytes the slot retains, sampled with the heartbeat
	walRetainedMax atomic.Int64

	// loop goroutine only
	txXid   uint32    // the transaction being read
	bufs    []partBuf // rows waiting for their partition's next message
	futures []*pendingAck
	// unacked is each partition's last message not known to be stored
	// (nil: none): the next one of the partition waits for it (publish).
	unacked    []*pendingAck
	txChunks   []doneChunk // chunks published in the transaction being read
	toMark     []doneChunk // chunks published in committed transactions, not yet marked done
	lastCommit pglogrepl.LSN
	confirmed  pglogrepl.LSN

	windowsMu sync.Mutex
	windows   map[string]*window
	commits   pgstream.CommitLog // the stream's recent transactions (loop only)
	reread    func(t *pubTable, ch mysql.StoredChunk, attempt int)
	inflight  chan struct{}

	marksMu sync.Mutex
	marks   []copiedMark // tables whose copy is published, waiting for every partition

	fence     atomic.Pointer[fenceWait]
	cutoverMu sync.Mutex
	cutover   atomic.Pointer[CutoverReport]

	holds    throttle.Holds // the pause and the watchers' holds on the copy
	stop     chan struct{}
	ended    chan struct{} // closed when Run returns
	stopOnce sync.Once

	published  atomic.Int64
	copiedRows atomic.Int64
	confirmedL atomic.Uint64
	received   atomic.Uint64
	parts      atomic.Pointer[[]mysql.PartitionState]
	pubPos     atomic.Pointer[Pos] // position of the last message published
	partMu     sync.Mutex
	partLast   []Pos // by partition: position of the last message published to it
	probesMu   sync.Mutex
	probes     map[string]chan Pos // probe marks waiting for their position
	// schemaStopLSN: where an earlier run stopped for a schema change
	// (see capture.SchemaWatch)
	schemaStopLSN uint64
	rewatch       pgstream.Rewatch // a notice showed a partition to give its TRUNCATE trigger now
}

type pubTable struct {
	rt       *events.Table
	scan     *plan.Table          // the copy reads the plain source columns
	cols     []string             // source column names
	relIdx   []int                // source column → column of the stream's relation
	notices  capture.TableNotices // the source triggers' notices of it, and its partitions as the loop knows them
	pending  []mysql.StoredChunk
	left     atomic.Int64
	copied   atomic.Bool
	progress atomic.Pointer[progress.Table] // set once the table is prepared; the status reads it meanwhile
	changes  atomic.Int64
	deferred *deferred.Tx[pubRow] // the key is DEFERRABLE: a transaction is published as its end state
}

type doneChunk struct {
	table *pubTable
	no    int
	rows  int64
}

type copiedMark struct {
	table *pubTable
	pos   Pos
}

type fenceWait struct {
	id      string
	reached chan Pos
}

// New prepares a publisher. srcConnString is used for the replication
// connection.
func New(ctx context.Context, src *postgres.Source, srcConnString string, tgt *mysql.Target, p *plan.Plan, opt Options) (*Publisher, error) {
	opt.defaults()
	rts, err := events.LoadTables(ctx, src, p)
	if err != nil {
		return nil, err
	}
	pb := &Publisher{src: src, srcConn: srcConnString, tgt: tgt, plan: p, opt: opt, log: opt.Log, byName: map[string]*pubTable{},
		runID: fmt.Sprintf("%x", time.Now().UnixNano()), started: time.Now(), windows: map[string]*window{}, rewatch: pgstream.NewRewatch(),
		inflight: make(chan struct{}, opt.Parallel), stop: make(chan struct{}), ended: make(chan struct{}), bufs: make([]partBuf, opt.Partitions), unacked: make([]*pendingAck, opt.Partitions),
		partLast: make([]Pos, opt.Partitions), probes: map[string]chan Pos{}}
	pb.holds.Log = opt.Log
	for _, rt := range rts {
		t := &pubTable{rt: rt, notices: capture.NewTableNotices(rt.Plan, pb.rewatch)}
		scan := *rt.Plan
		scan.Columns, scan.Key = nil, nil
		for _, c := range rt.Plan.Source.Columns {
			scan.Columns = append(scan.Columns, plan.Column{Source: c.Name, SourceExpr: postgres.Ident(c.Name), Target: c.Name, SourceType: c.Type})
			t.cols = append(t.cols, c.Name)
		}
		scan.Key = rt.KeySourceIndexes()
		t.scan = &scan
		if rt.Plan.Source.RowKeyDeferrable() { // REPLICA IDENTITY FULL (capture checks)
			t.deferred = t.newDeferredTx()
			pb.deferredTables = append(pb.deferredTables, t)
		}
		pb.tables = append(pb.tables, t)
		pb.byName[rt.Name] = t
	}
	return pb, nil
}

// Stop ends the publisher after confirming what JetStream stored.
func (p *Publisher) Stop() { p.stopOnce.Do(func() { close(p.stop) }) }

// Pause holds the copy back; changes keep flowing.
func (p *Publisher) Pause() { p.holds.Pause() }

// Resume undoes Pause.
func (p *Publisher) Resume() { p.holds.Resume() }

// Throttle holds the copy back for reason until Unthrottle(source): the
// watchers protecting the source call it. Changes keep flowing.
func (p *Publisher) Throttle(source, reason string) { p.holds.Throttle(source, reason) }

// Unthrottle lifts the hold set by source.
func (p *Publisher) Unthrottle(source string) { p.holds.Unthrottle(source) }

// Run prepares slot, publication, target tables and stream, then copies and
// publishes until Stop or ctx ends.
func (p *Publisher) Run(ctx context.Context) error {
	defer func() {
		// A cutover asked for through the API ends with the run; wait
		// until it has lifted its fence, while the connections are open.
		close(p.ended)
		p.cutoverMu.Lock()
		p.cutoverMu.Unlock() // (taken only to wait for the cutover to end)
	}()
	if err := p.prepare(ctx); err != nil {
		return err
	}
	state, err := p.tgt.LoadSyncState(ctx, p.opt.Slot)
	if err != nil {
		return err
	}
	if state.Phase == mysql.PhaseCutover && p.cutover.Load() == nil { // cut over before a restart: never fence again
		p.cutover.Store(&CutoverReport{Fence: "taken by an earlier run", EarlierRun: true})
	}
	nc, js, err := events.ConnectJetStream(p.opt.Endpoint, "sluice-publisher")
	if err != nil {
		return err
	}
	defer nc.Close()
	p.nc, p.js = nc, js
	if _, err := pubevents.EnsureStream(ctx, js, p.opt.Endpoint); err != nil {
		return failure.Wrap(err, failure.Connection, "SLUICE-NATS-STREAM", "JetStream stream %s", p.opt.Endpoint.Stream)
	}
	stream, err := pgstream.Open(ctx, p.srcConn, p.opt.Slot, p.opt.Publication, pglogrepl.LSN(state.AppliedLSN))
	if err != nil {
		return pgstream.StreamError(err, p.opt.Slot, "open the change stream",
			"check that the source allows replication connections (pg_hba.conf) for this user")
	}
	p.stream = stream
	p.liveStream.Store(stream)
	p.sampleSlot(ctx)
	defer stream.Close()
	stream.WarnSmallSocketBuffer(p.log)
	p.confirmed = pglogrepl.LSN(state.AppliedLSN)
	p.confirmedL.Store(state.AppliedLSN)
	p.schemaStopLSN = state.SchemaStopLSN
	p.log.Info("publishing the change stream", "slot", p.opt.Slot, "stream", p.opt.Endpoint.Stream, "partitions", p.opt.Partitions,
		"subjects", p.opt.Endpoint.PartitionSubject(0)+"…", "from", pglogrepl.LSN(state.AppliedLSN).String())

	g, gctx := errgroup.WithContext(ctx)
	evs := make(chan []pgstream.Event, 1024)
	g.Go(func() error { return p.read(gctx, evs) })
	g.Go(func() error {
		if err := p.loop(gctx, evs); err != nil {
			return err
		}
		return errStopped
	})
	p.reread = func(t *pubTable, ch mysql.StoredChunk, attempt int) {
		g.Go(func() error {
			if err := p.copyChunk(gctx, t, ch, attempt); err != nil && gctx.Err() == nil {
				return err
			}
			return nil
		})
	}
	g.Go(func() error { return p.copyChunks(gctx) })
	g.Go(func() error { return p.heartbeat(gctx) })
	g.Go(func() error {
		pgstream.KeepWatchingTruncates(gctx, p.src.Pool, p.opt.Slot, p.opt.Publication, p.log, p.rewatch)
		return nil
	})
	g.Go(func() error { return p.indexer(gctx) })
	for _, t := range p.tables {
		if t.left.Load() == 0 && !t.copied.Load() { // resumed after its last chunk
			g.Go(func() error { return p.emitCopied(gctx, t) })
		}
	}
	err = g.Wait()
	if errors.Is(err, errStopped) {
		err = nil
	}
	return err
}

var errStopped = errors.New("publisher stopped")

func (p *Publisher) prepare(ctx context.Context) error {
	if err := p.tgt.EnsurePartitionsTable(ctx); err != nil {
		return err
	}
	plans := make([]*plan.Table, len(p.tables))
	for i, t := range p.tables {
		plans[i] = t.rt.Plan
	}
	start := capture.Start{Source: p.src, Target: p.tgt, Slot: p.opt.Slot, Publication: p.opt.Publication,
		Tables: plans, Phase: "publishing", Log: p.log, AllColumns: true, Stream: p.opt.Endpoint.Stream, Partitions: p.opt.Partitions} // it publishes every source column
	return start.Prepare(ctx, func(ctx context.Context, i int) error { return p.prepareTable(ctx, p.tables[i]) })
}

func (p *Publisher) prepareTable(ctx context.Context, t *pubTable) error {
	pt := t.rt.Plan
	state, err := copier.StartTable(ctx, p.src, p.tgt, pt, p.opt.ChunkRows, p.log)
	if err != nil {
		return err
	}
	t.pending = state.Pending
	t.left.Store(int64(len(t.pending)))
	t.copied.Store(state.Done)
	t.progress.Store(p.opt.Tracker.Add(pt.Source.Name.String(), max(pt.Source.EstimatedRows, state.RowsDone), state.RowsDone))
	if state.Done {
		t.progress.Load().SetPhase("streaming")
	} else {
		t.progress.Load().SetPhase("copying")
	}
	return nil
}

func (p *Publisher) read(ctx context.Context, out chan<- []pgstream.Event) error {
	err := p.stream.Pump(ctx, out)
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return pgstream.StreamError(err, p.opt.Slot, "change stream broken",
		"run the publisher again: it resumes from the last position JetStream stored")
}

// loop publishes the stream in commit order.
func (p *Publisher) loop(ctx context.Context, evs <-chan []pgstream.Event) error {
	byRel := map[uint32]*pubTable{}
	var (
		inTx, skipTx bool
		txLSN        uint64
		n            uint32
		unflushed    time.Time
	)
	tick := time.NewTicker(p.opt.FlushDelay)
	defer tick.Stop()
	ddl := &capture.SchemaWatch{Target: p.tgt, Slot: p.opt.Slot, StoppedAt: p.schemaStopLSN, Log: p.log, Check: p.checkNotice,
		TargetOf: func(oid uint32) string {
			if t := p.byOID(oid); t != nil {
				return t.rt.Plan.Target
			}
			return ""
		}}
	stopCh, stopping := p.stop, false
	next := func() uint32 { n++; return n - 1 }
	var pending, received []pgstream.Event // the rest of the last batch received; all of it
	defer func() { p.stream.Recycle(received) }()
	for {
		if len(pending) == 0 {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-stopCh:
				stopCh, stopping = nil, true
				if !inTx {
					return p.flush(ctx)
				}
				continue
			case <-tick.C:
				if !inTx && !unflushed.IsZero() && time.Since(unflushed) >= p.opt.FlushDelay {
					if err := p.flush(ctx); err != nil {
						return err
					}
					unflushed = time.Time{}
				}
				continue
			case b := <-evs:
				p.stream.Recycle(received) // its events were copied out
				received, pending = b, b
			}
			continue
		}
		ev := pending[0]
		pending = pending[1:]
		switch ev.Kind {
		case pgstream.Begin:
			p.commits.Add(ev.Xid)
			p.txXid = ev.Xid
			inTx, n, txLSN = true, 0, uint64(ev.LSN)
			skipTx = ev.LSN < p.confirmed // replayed after a restart: already stored
			p.beginDeferred()
			ddl.Begin()
		case pgstream.Commit:
			inTx = false
			if skipTx {
				continue
			}
			if err := ddl.Commit(ev.LSN); err != nil {
				return err
			}
			if err := p.endDeferred(ctx, txLSN, next); err != nil {
				return err
			}
			p.lastCommit = ev.LSN
			p.toMark = append(p.toMark, p.txChunks...)
			p.txChunks = p.txChunks[:0]
			if unflushed.IsZero() {
				unflushed = time.Now()
			}
			if stopping {
				return p.flush(ctx)
			}
			if len(p.futures) >= 8000 {
				if err := p.flush(ctx); err != nil {
					return err
				}
				unflushed = time.Time{}
			}
		case pgstream.RelationChanged:
			t := p.byName[ev.Relation.Schema+"."+ev.Relation.Name]
			if t == nil {
				if known := p.byOID(ev.Relation.ID); known != nil {
					return capture.Renamed(known.rt.Plan.Source, ev.Relation)
				}
				continue // warned of at its first change: a partition's own description comes with its root's
			}
			if err := t.bind(ev.Relation); err != nil {
				return err
			}
			byRel[ev.Relation.ID] = t
		case pgstream.Change:
			if skipTx {
				continue
			}
			t := byRel[ev.Relation.ID]
			if t == nil {
				p.unknown.Warn(p.log, ev.Relation)
				continue
			}
			if err := p.change(ctx, t, ev, txLSN, next); err != nil {
				return err
			}
		case pgstream.Truncate:
			if skipTx {
				continue
			}
			for _, rel := range ev.Truncated {
				if t := byRel[rel.ID]; t != nil {
					return failure.New(failure.Schema, "SLUICE-PUBLISH-TRUNCATE", "table %s was truncated on the source; a TRUNCATE cannot be applied by independent partitions", t.rt.Name).
						With("table", t.rt.Name).WithHint("the publisher stopped before publishing it: run sluice abort, drop the target tables and the stream, and start again")
				}
			}
		case pgstream.Message:
			if ev.Prefix != pgstream.MessagePrefix || skipTx {
				continue
			}
			if notice, ok, err := pgstream.ParseDDLNotice(ev.Content); ok {
				if err != nil {
					return err
				}
				if notice.Truncated {
					// what was published before it may be applied after a
					// DELETE the user ran, and some of it is published again
					notice.NoCondition = "the appliers apply what was published before the stop after it, some of it again when the publisher runs again"
				}
				ddl.Notice(notice)
				continue
			}
			if err := p.message(ctx, string(ev.Content), txLSN, next); err != nil {
				return err
			}
		case pgstream.Keepalive:
			if !inTx && len(p.futures) == 0 && len(p.toMark) == 0 && p.lastCommit <= p.confirmed && ev.WALEnd > p.confirmed && p.buffered() == 0 {
				p.confirmed = ev.WALEnd
				p.confirmedL.Store(uint64(ev.WALEnd))
				p.stream.Confirm(ev.WALEnd)
			}
		}
	}
}

func (p *Publisher) buffered() int {
	n := 0
	for _, b := range p.bufs {
		n += len(b.rows)
	}
	return n
}

// flush waits until JetStream stored everything published, marks the
// chunks published so far done, then confirms the slot: the source may
// recycle the WAL only once JetStream holds the changes.
func (p *Publisher) flush(ctx context.Context) error {
	if err := p.flushParts(ctx); err != nil {
		return err
	}
	if err := p.awaitAcks(ctx); err != nil {
		return err
	}
	if len(p.toMark) > 0 {
		tx, err := p.tgt.DB.BeginTx(ctx, nil)
		if err != nil {
			return fmt.Errorf("target: begin: %w", err)
		}
		for _, c := range p.toMark {
			if err := mysql.MarkChunkDone(ctx, tx, c.table.rt.Plan.Target, c.no, c.rows, 0); err != nil {
				tx.Rollback()
				return err
			}
		}
		if err := tx.Commit(); err != nil {
			return fmt.Errorf("target: record published chunks: %w", err)
		}
		for _, c := range p.toMark {
			<-p.inflight
			if c.table.left.Add(-1) == 0 {
				go p.emitCopied(ctx, c.table)
			}
		}
		p.toMark = p.toMark[:0]
	}
	if p.lastCommit > p.confirmed {
		// Stored before the slot is confirmed: a restart then never starts
		// behind the slot's position with the target believing otherwise.
		if err := mysql.StoreAppliedLSN(ctx, p.tgt.DB, p.opt.Slot, uint64(p.lastCommit)); err != nil {
			return err
		}
		p.confirmed = p.lastCommit
		p.confirmedL.Store(uint64(p.confirmed))
		p.stream.Confirm(p.confirmed)
	}
	return nil
}

func (p *Publisher) awaitAcks(ctx context.Context) error {
	for _, a := range p.futures {
		if err := a.wait(ctx); err != nil {
			return err
		}
	}
	clear(p.futures)
	p.futures = p.futures[:0]
	clear(p.unacked)
	return nil
}

// pendingAck is a message published and the acknowledgement it waits for.
type pendingAck struct {
	f      jetstream.PubAckFuture
	stored bool // acknowledged: a future answers once, so it is not asked again
}

// wait waits until JetStream stored the message.
func (a *pendingAck) wait(ctx context.Context) error {
	if a.stored {
		return nil
	}
	select {
	case <-a.f.Ok():
		a.stored = true
		return nil
	case err := <-a.f.Err():
		return failure.Wrap(err, failure.Connection, "SLUICE-PUBLISH-ACK", "JetStream did not store a message on %s", a.f.Msg().Subject).
			WithHint("run the publisher again: it resumes from the last position JetStream stored")
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Rows travel several per JetStream message (the broker's cost is per
// message): up to rowsPerMessage rows or bytesPerMessage bytes of one
// partition, in order.
const (
	rowsPerMessage  = 128
	bytesPerMessage = 256 << 10
)

// partBuf collects the rows of one partition for its next message.
type partBuf struct {
	rows        [][]byte
	bytes       int
	first, last Pos
}

// sendRow queues a row for its partition.
func (p *Publisher) sendRow(ctx context.Context, part int, m *Message) error {
	data, err := json.Marshal(m)
	if err != nil {
		return err
	}
	b := &p.bufs[part]
	if len(b.rows) == 0 {
		b.first = m.Pos()
	}
	b.last = m.Pos()
	b.rows = append(b.rows, data)
	b.bytes += len(data)
	p.published.Add(1)
	pos := m.Pos()
	p.pubPos.Store(&pos)
	p.partMu.Lock()
	p.partLast[part] = pos
	p.partMu.Unlock()
	if len(b.rows) >= rowsPerMessage || b.bytes >= bytesPerMessage {
		return p.flushPart(ctx, part)
	}
	return nil
}

// flushPart publishes the queued rows of a partition as one message.
func (p *Publisher) flushPart(ctx context.Context, part int) error {
	b := &p.bufs[part]
	if len(b.rows) == 0 {
		return nil
	}
	data := make([]byte, 0, b.bytes+len(b.rows)+64)
	data = fmt.Appendf(data, `{"v":%d,"k":%q,"parts":%d,"rows":[`, FormatVersion, KindRows, p.opt.Partitions)
	for i, r := range b.rows {
		if i > 0 {
			data = append(data, ',')
		}
		data = append(data, r...)
	}
	data = append(data, "]}"...)
	msg := &nats.Msg{Subject: p.opt.Endpoint.PartitionSubject(part), Data: data, Header: nats.Header{}}
	msg.Header.Set(RowsHeader, strconv.Itoa(len(b.rows)))
	// The same rows of a partition between the same positions are the same
	// message: a publisher that resumes may publish it again, and JetStream
	// drops the duplicate (the applier would skip it by position anyway).
	id := fmt.Sprintf("%s:%d:%d:%d:%d:%d", p.opt.Slot, b.first.LSN, b.first.N, b.last.LSN, b.last.N, part)
	b.rows, b.bytes = b.rows[:0], 0
	return p.publish(ctx, msg, id, part)
}

// flushParts publishes every partition's queued rows.
func (p *Publisher) flushParts(ctx context.Context) error {
	for part := range p.bufs {
		if err := p.flushPart(ctx, part); err != nil {
			return err
		}
	}
	return nil
}

// publish sends a message of partition part asynchronously; awaitAcks
// collects the acks. A partition's messages must reach the stream in
// order (its applier skips rows at or before a position it has applied),
// so each waits until the partition's last one is stored: with two on the
// way, the client's retry of the first (no responders, while the stream
// elects a leader) stored it after the second, and one that failed left
// a hole the second went past. Partitions still overlap.
func (p *Publisher) publish(ctx context.Context, msg *nats.Msg, id string, part int) error {
	if a := p.unacked[part]; a != nil {
		if err := a.wait(ctx); err != nil {
			return err
		}
	}
	for {
		f, err := p.js.PublishMsgAsync(msg, jetstream.WithMsgID(id), jetstream.WithExpectStream(p.opt.Endpoint.Stream))
		if errors.Is(err, jetstream.ErrTooManyStalledMsgs) {
			if err := p.awaitAcks(ctx); err != nil {
				return err
			}
			continue
		}
		if err != nil {
			return failure.Wrap(err, failure.Connection, "SLUICE-PUBLISH", "publish to %s", msg.Subject)
		}
		a := &pendingAck{f: f}
		p.futures = append(p.futures, a)
		p.unacked[part] = a
		break
	}
	if len(p.futures) >= 4000 {
		return p.awaitAcks(ctx)
	}
	return nil
}

// broadcast publishes a mark to every partition at one position, after the
// rows queued before it.
func (p *Publisher) broadcast(ctx context.Context, mark string, pos Pos) error {
	if err := p.flushParts(ctx); err != nil {
		return err
	}
	for part := 0; part < p.opt.Partitions; part++ {
		data, err := json.Marshal(&Message{V: FormatVersion, Kind: KindMark, Mark: mark, LSN: pos.LSN, N: pos.N, Parts: p.opt.Partitions})
		if err != nil {
			return err
		}
		msg := &nats.Msg{Subject: p.opt.Endpoint.PartitionSubject(part), Data: data}
		if err := p.publish(ctx, msg, fmt.Sprintf("%s:mark:%d:%d:%d", p.opt.Slot, pos.LSN, pos.N, part), part); err != nil {
			return err
		}
	}
	p.pubPos.Store(&pos)
	p.partMu.Lock()
	for part := range p.partLast {
		p.partLast[part] = pos
	}
	p.partMu.Unlock()
	return nil
}

// bind maps a relation the stream announced onto the table's source
// columns; a schema change stops the publisher before it publishes wrong data.
func (t *pubTable) bind(rel *pgstream.Relation) error {
	pos := map[string]int{}
	for i, c := range rel.Columns {
		pos[c.Name] = i
	}
	src := t.rt.Plan.Source
	// A DEFERRABLE key needs every change's whole old row.
	problems := capture.RelationChanges(src, rel, src.RowKey(), t.deferred != nil)
	t.relIdx = make([]int, len(t.cols))
	for i, c := range src.Columns {
		t.relIdx[i] = pos[c.Name]
	}
	return t.schemaChanged(problems)
}

// checkNotice stops the publisher on a schema change the source's event
// trigger recorded that leaves a table in another shape.
func (p *Publisher) checkNotice(n pgstream.DDLNotice) error {
	i := slices.IndexFunc(p.tables, func(t *pubTable) bool { return t.notices.Concerns(n) })
	if i < 0 {
		return nil
	}
	t := p.tables[i]
	problems, err := t.notices.Changes(n, p.src.Pool, p.log, t.deferred != nil)
	if err != nil {
		return err
	}
	return t.schemaChanged(problems)
}

// schemaChanged is the error for problems found in the source table's
// shape; nil when there are none.
func (t *pubTable) schemaChanged(problems []string) error {
	if len(problems) == 0 {
		return nil
	}
	return failure.New(failure.Schema, "SLUICE-SYNC-SCHEMACHANGE", "source table %s changed while publishing: %s", t.rt.Name, strings.Join(problems, "; ")).
		With("table", t.rt.Name).
		WithHint("the publisher stopped before publishing wrong data: apply the same change to the target table (and the mapping), then run it again; it goes on past this change")
}

// byOID finds the published table with the source OID; nil for another.
func (p *Publisher) byOID(oid uint32) *pubTable {
	for _, t := range p.tables {
		if t.rt.Plan.Source.OID == oid {
			return t
		}
	}
	return nil
}

// row reads streamed values by source column: cols holds the sent columns,
// key the key's text; partial reports unchanged TOASTed columns left out.
func (t *pubTable) row(vals, old []pgstream.Value, full bool) (cols map[string]*string, key []string, partial bool, err error) {
	if t.relIdx == nil {
		return nil, nil, false, fmt.Errorf("table %s: change before its relation was described", t.rt.Name)
	}
	cols = make(map[string]*string, len(t.cols))
	for i, name := range t.cols {
		v := vals[t.relIdx[i]]
		if v.Unchanged && full && old != nil && !old[t.relIdx[i]].Unchanged {
			v = old[t.relIdx[i]]
		}
		if v.Unchanged {
			partial = true
			continue
		}
		if v.Data == nil {
			cols[name] = nil
			continue
		}
		s := string(v.Data)
		cols[name] = &s
	}
	for _, si := range t.rt.KeySourceIndexes() {
		v, ok := cols[t.cols[si]]
		if !ok && old != nil { // an unchanged TOASTed key column
			if o := old[t.relIdx[si]]; o.Data != nil {
				s := string(o.Data)
				v, ok = &s, true
				cols[t.cols[si]] = v
			}
		}
		if !ok || v == nil {
			return nil, nil, false, fmt.Errorf("table %s: a change without its key column %s", t.rt.Name, t.cols[si])
		}
		key = append(key, *v)
	}
	return cols, key, partial, nil
}

// partitionKey is key (source text, in plan key order) in the form the
// target compares, so every change to one target row goes to one partition:
// PostgreSQL takes 1.0 and 1.00 for one numeric key, 0 and -0 for one
// float, 'a' and 'a ' for one bpchar, and so does the target, but their
// texts would hash apart and two appliers would apply the row's changes in
// no fixed order.
func (t *pubTable) partitionKey(key []string) []string {
	out := make([]string, len(key))
	for i, k := range key {
		out[i] = k
		if i < len(t.rt.Plan.Key) {
			out[i] = string(canonical.KeyForm(t.rt.Plan.Columns[t.rt.Plan.Key[i]].Kind, []byte(k)))
		}
	}
	return out
}

// refetch fills in the columns an update left out (TOASTed values it did
// not change) from the source row at key, when the update also moved the
// row to that key: the applier has no row under the new key to merge them
// into. The row is read as it is now, which may be later than the change;
// the changes after it follow in the stream and bring it to the same end.
// found is false when no row holds the key any more.
func (p *Publisher) refetch(ctx context.Context, t *pubTable, cols map[string]*string, key []string) (found bool, err error) {
	var missing, sel []string
	for _, name := range t.cols {
		if _, ok := cols[name]; !ok {
			missing = append(missing, name)
			sel = append(sel, postgres.Ident(name)+"::text")
		}
	}
	var where []string
	args := []any{pgx.QueryExecModeSimpleProtocol} // key text as literals, typed by their columns
	for i, si := range t.rt.KeySourceIndexes() {
		where = append(where, fmt.Sprintf("%s = $%d", postgres.Ident(t.cols[si]), i+1))
		args = append(args, key[i])
	}
	q := fmt.Sprintf("SELECT %s FROM %s WHERE %s", strings.Join(sel, ", "),
		postgres.Ident(t.rt.Plan.Source.Name.Schema, t.rt.Plan.Source.Name.Name), strings.Join(where, " AND "))
	// the row as the transaction being read left it, at least
	if err := p.src.WaitVisible(ctx, []uint32{p.txXid}, 30*time.Second); err != nil {
		return false, err
	}
	vals := make([]*string, len(missing))
	ptrs := make([]any, len(missing))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	err = p.src.Pool.QueryRow(ctx, q, args...).Scan(ptrs...)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, failure.Wrap(err, failure.Connection, "SLUICE-PUBLISH-REFETCH", "table %s: read the row an update moved to another key", t.rt.Name).
			With("table", t.rt.Name).WithHint("run the sync again once the source answers: it resumes from the last change published")
	}
	for i, name := range missing {
		cols[name] = vals[i]
	}
	return true, nil
}

func keyOnly(t *pubTable, cols map[string]*string) map[string]*string {
	out := make(map[string]*string, len(t.rt.KeySourceIndexes()))
	for _, si := range t.rt.KeySourceIndexes() {
		out[t.cols[si]] = cols[t.cols[si]]
	}
	return out
}

// change publishes one row change.
func (p *Publisher) change(ctx context.Context, t *pubTable, ev pgstream.Event, lsn uint64, next func() uint32) error {
	if t.deferred != nil {
		return p.deferredChange(t, ev)
	}
	full := ev.Relation.ReplicaIdentity == 'f' // whole old rows, as the relation streams now
	emit := func(op string, cols map[string]*string, key []string) error {
		return p.emit(ctx, t, op, cols, key, lsn, next)
	}
	t.changes.Add(1)
	switch ev.Op {
	case pgstream.Insert:
		cols, key, _, err := t.row(ev.New, nil, false)
		if err != nil {
			return err
		}
		return emit(OpUpsert, cols, key)
	case pgstream.Delete:
		cols, key, _, err := t.row(ev.Old, nil, false)
		if err != nil {
			return err
		}
		return emit(OpDelete, keyOnly(t, cols), key)
	case pgstream.Update:
		cols, key, partial, err := t.row(ev.New, ev.Old, full)
		if err != nil {
			return err
		}
		if ev.Old != nil {
			oldCols, oldKey, _, err := t.row(ev.Old, nil, false)
			if err == nil && strings.Join(oldKey, "\x00") != strings.Join(key, "\x00") {
				found := true
				if partial {
					if found, err = p.refetch(ctx, t, cols, key); err != nil {
						return err
					}
				}
				if err := emit(OpDelete, keyOnly(t, oldCols), oldKey); err != nil {
					return err
				}
				if !found { // gone since: a later change in the stream says where
					// The upsert's position is used up all the same: a replay
					// after a crash may find the row, and every later change
					// of the transaction must keep its position either way
					// (appliers skip by position).
					next()
					return nil
				}
				return emit(OpUpsert, cols, key)
			}
		}
		if partial {
			return emit(OpPatch, cols, key)
		}
		return emit(OpUpsert, cols, key)
	}
	return nil
}

// emit publishes one row's message to the key's partition.
func (p *Publisher) emit(ctx context.Context, t *pubTable, op string, cols map[string]*string, key []string, lsn uint64, next func() uint32) error {
	p.seen(t, op, cols, strings.Join(key, "\x00"))
	m := &Message{Table: t.rt.Name, Op: op, Cols: cols, LSN: lsn, N: next()}
	return p.sendRow(ctx, Partition(t.rt.Name, t.partitionKey(key), p.opt.Partitions), m)
}

// message handles sluice's own WAL messages: watermarks, fences and
// copied-table marks.
func (p *Publisher) message(ctx context.Context, content string, lsn uint64, next func() uint32) error {
	kind, rest, ok := strings.Cut(content, ":")
	if !ok {
		return nil
	}
	switch kind {
	case "L", "H":
		return p.watermark(ctx, kind, rest, lsn, next)
	case "F":
		pos := Pos{lsn, next()}
		if err := p.broadcast(ctx, MarkFence+content, pos); err != nil {
			return err
		}
		if f := p.fence.Load(); f != nil && f.id == content {
			select {
			case f.reached <- pos:
			default:
			}
		}
	case "P":
		pos := Pos{lsn, next()}
		if err := p.broadcast(ctx, MarkProbe+content, pos); err != nil {
			return err
		}
		p.probesMu.Lock()
		if ch := p.probes[content]; ch != nil {
			ch <- pos
			delete(p.probes, content)
		}
		p.probesMu.Unlock()
	case "C":
		run, target, ok := strings.Cut(rest, ":")
		if !ok || run != p.runID {
			return nil
		}
		for _, t := range p.tables {
			if t.rt.Plan.Target == target {
				pos := Pos{lsn, next()}
				if err := p.broadcast(ctx, MarkCopied+target, pos); err != nil {
					return err
				}
				p.marksMu.Lock()
				p.marks = append(p.marks, copiedMark{table: t, pos: pos})
				p.marksMu.Unlock()
			}
		}
	}
	return nil
}

// probe broadcasts a mark to every partition at the current end of the
// stream and returns its position: once every partition has applied it,
// each has applied everything published before.
func (p *Publisher) probe(ctx context.Context) (Pos, error) {
	id := fmt.Sprintf("P:%s:%d", p.runID, time.Now().UnixNano())
	ch := make(chan Pos, 1)
	p.probesMu.Lock()
	p.probes[id] = ch
	p.probesMu.Unlock()
	defer func() {
		p.probesMu.Lock()
		delete(p.probes, id)
		p.probesMu.Unlock()
	}()
	if _, err := pgstream.Emit(ctx, p.src.Pool, true, id); err != nil {
		return Pos{}, err
	}
	select {
	case pos := <-ch:
		return pos, nil
	case <-time.After(time.Minute):
		return Pos{}, failure.New(failure.Internal, "SLUICE-PUBLISH-PROBE", "the publisher did not see its own mark within a minute").
			WithHint("check sluice status and the publisher's log")
	case <-ctx.Done():
		return Pos{}, ctx.Err()
	}
}

// emitCopied writes the mark after which every partition holds all of the
// table's copied rows.
func (p *Publisher) emitCopied(ctx context.Context, t *pubTable) error {
	if _, err := pgstream.Emit(ctx, p.src.Pool, true, "C:"+p.runID+":"+t.rt.Plan.Target); err != nil && ctx.Err() == nil {
		p.log.Warn("could not mark a table copied; run the publisher again to build its indexes", "code", "SLUICE-PUBLISH-MARK", "error", err.Error())
	}
	return nil
}

func (p *Publisher) heartbeat(ctx context.Context) error {
	t := time.NewTicker(p.opt.Heartbeat)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			if _, err := pgstream.Emit(ctx, p.src.Pool, true, "hb"); err != nil && ctx.Err() == nil {
				p.log.Warn("heartbeat failed", "code", "SLUICE-SYNC-HEARTBEAT", "error", err.Error())
			}
			p.sampleSlot(ctx)
		}
	}
}

// sampleSlot reads how much WAL the slot retains, for the status.
func (p *Publisher) sampleSlot(ctx context.Context) {
	st, err := pgstream.Status(ctx, p.src.Pool, p.opt.Slot)
	if err != nil {
		return
	}
	p.walRetained.Store(st.RetainedBytes)
	if st.RetainedBytes > p.walRetainedMax.Load() {
		p.walRetainedMax.Store(st.RetainedBytes)
	}
}

// lag is how long ago the source committed the newest transaction the
// stream has read while JetStream has not stored everything read (0 when
// it has): a floor of the publishing lag, which grows while publishing
// stalls.
func (p *Publisher) lag() time.Duration {
	s := p.liveStream.Load()
	if s == nil || uint64(s.Received()) <= p.confirmedL.Load() {
		return 0
	}
	if last := s.LastCommitReceived(); !last.IsZero() {
		return max(time.Since(last), 0)
	}
	return 0
}

// indexer reads the partitions' progress, and builds a table's indexes
// once every partition has applied past its copied mark.
func (p *Publisher) indexer(ctx context.Context) error {
	t := time.NewTicker(300 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		parts, err := p.tgt.Partitions(ctx, p.opt.Endpoint.Stream)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			p.log.Warn("could not read the partitions' progress", "code", "SLUICE-PUBLISH-PARTITIONS", "error", err.Error())
			continue
		}
		p.parts.Store(&parts)
		p.marksMu.Lock()
		var ready []copiedMark
		keep := p.marks[:0]
		for _, m := range p.marks {
			if AllPast(parts, p.opt.Partitions, m.pos) {
				ready = append(ready, m)
			} else {
				keep = append(keep, m)
			}
		}
		p.marks = keep
		p.marksMu.Unlock()
		for _, m := range ready {
			if err := p.finishTable(ctx, m.table); err != nil {
				return err
			}
		}
	}
}

// AllPast reports whether each of the n partitions has applied pos.
func AllPast(parts []mysql.PartitionState, n int, pos Pos) bool {
	seen := 0
	for _, st := range parts {
		if st.Partition >= n || st.Partitions != n {
			continue
		}
		if (Pos{st.PosLSN, st.PosN}).Less(pos) {
			return false
		}
		seen++
	}
	return seen == n
}

func (p *Publisher) finishTable(ctx context.Context, t *pubTable) error {
	pt := t.rt.Plan
	t.progress.Load().SetPhase("indexing")
	if err := copier.BuildIndexes(ctx, p.tgt, pt, p.log); err != nil {
		return err
	}
	if err := p.tgt.SetPhase(ctx, pt.Target, pt.Source.Name.String(), mysql.PhaseDone); err != nil {
		return err
	}
	t.copied.Store(true)
	t.progress.Load().SetPhase("streaming")
	p.log.Info("table copied by every partition; indexes built", "table", t.rt.Name)
	if p.copyDone() {
		if err := copier.CreateForeignKeys(ctx, p.tgt, p.plan); err != nil {
			return err
		}
		p.log.Info("copy complete; every table is streaming", "tables", len(p.tables))
	}
	return nil
}

func (p *Publisher) copyDone() bool {
	for _, t := range p.tables {
		if !t.copied.Load() {
			return false
		}
	}
	return true
}

// chunkQuery selects the plain source columns of range r, in key order.
func (t *pubTable) chunkQuery(r chunk.Range) string {
	pt := t.rt.Plan
	cols := make([]string, len(t.cols))
	for i, c := range t.cols {
		cols[i] = postgres.Ident(c)
	}
	keys := pt.KeyExprsSource()
	where := chunk.Predicate(keys, r, func(i int, v string) string {
		return postgres.Literal(v) + "::" + plan.CastType(pt.Columns[pt.Key[i]].SourceType)
	})
	if pt.Filter != "" {
		where += " AND (" + pt.Filter + ")"
	}
	return fmt.Sprintf("SELECT %s FROM %s WHERE %s ORDER BY %s", strings.Join(cols, ", "),
		postgres.Ident(pt.Source.Name.Schema, pt.Source.Name.Name), where, strings.Join(keys, ", "))
}
