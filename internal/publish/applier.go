package publish

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/sync/errgroup"

	"github.com/sluice-db/sluice/internal/apply"
	"github.com/sluice-db/sluice/internal/events"
	"github.com/sluice-db/sluice/internal/failure"
	"github.com/sluice-db/sluice/internal/mysql"
	"github.com/sluice-db/sluice/internal/plan"
	"github.com/sluice-db/sluice/internal/postgres"
	pubevents "github.com/sluice-db/sluice/pkg/events"
)

// ApplierOptions configure one partitioned applier.
type ApplierOptions struct {
	Endpoint   pubevents.Endpoint
	Partition  int
	Partitions int
	BatchRows  int
	BatchDelay time.Duration
	Log        *slog.Logger
}

// Applier applies one partition of a published change stream.
type Applier struct {
	src    *postgres.Source
	tgt    *mysql.Target
	plan   *plan.Plan
	opt    ApplierOptions
	log    *slog.Logger
	tables map[string]*applyTable // source "schema.name"
	norm   *events.Normalizer
	app    *apply.Applier
	state  mysql.PartitionState
	next   mysql.PartitionState // what the next commit stores
	stop   chan struct{}
	halt   atomic.Bool

	applied  atomic.Int64
	lastSeq  atomic.Uint64
	pending  atomic.Int64
	started  time.Time
	firstAt  atomic.Int64
	lastAt   atomic.Int64
	appliedN atomic.Int64 // messages applied by this run
}

type applyTable struct {
	rt *events.Table
	at *apply.Table
}

// NewApplier prepares an applier for opt.Partition of opt.Partitions.
func NewApplier(src *postgres.Source, tgt *mysql.Target, p *plan.Plan, opt ApplierOptions) *Applier {
	if opt.BatchRows < 1 {
		opt.BatchRows = 5000
	}
	if opt.BatchDelay <= 0 {
		opt.BatchDelay = 100 * time.Millisecond
	}
	return &Applier{src: src, tgt: tgt, plan: p, opt: opt, log: opt.Log, tables: map[string]*applyTable{},
		norm: &events.Normalizer{Src: src}, stop: make(chan struct{}), started: time.Now()}
}

// Stop ends the applier after the batch being applied.
func (a *Applier) Stop() {
	if a.halt.CompareAndSwap(false, true) {
		close(a.stop)
	}
}

func (a *Applier) name() string {
	return fmt.Sprintf("sluice_apply_%dof%d", a.opt.Partition, a.opt.Partitions)
}

// Run applies the partition until Stop or ctx ends.
func (a *Applier) Run(ctx context.Context) (err error) {
	ep := a.opt.Endpoint
	if err := a.tgt.EnsurePartitionsTable(ctx); err != nil {
		return err
	}
	// One applier per partition: a named lock held for the whole run.
	locks, err := mysql.TakeLocks(ctx, a.tgt.DB, []mysql.Claim{{Name: fmt.Sprintf("sluice_apply:%s:%d", ep.Stream, a.opt.Partition),
		Busy: failure.New(failure.Usage, "SLUICE-APPLY-BUSY", "another applier runs partition %d of stream %s", a.opt.Partition, ep.Stream).
			WithHint("each partition has exactly one applier; stop the other one first")}})
	if err != nil {
		return err
	}
	defer locks.Close()
	ctx, lockLost := locks.Guard(ctx)
	defer func() { // whatever step the loss interrupted, it is the reason
		if lost := lockLost(); lost != nil {
			err = lost
		}
	}()
	st, err := a.tgt.LoadPartition(ctx, ep.Stream, a.opt.Partition, a.opt.Partitions)
	if err != nil {
		return err
	}
	if st.Partitions != a.opt.Partitions && st.LastSeq > 0 {
		return failure.New(failure.Usage, "SLUICE-APPLY-PARTITIONS", "partition %d of stream %s was applied as one of %d partitions, not %d",
			a.opt.Partition, ep.Stream, st.Partitions, a.opt.Partitions).WithHint("run the appliers with --partition i/%d", st.Partitions)
	}
	st.Partitions = a.opt.Partitions
	a.state = st
	a.lastSeq.Store(st.LastSeq)
	a.applied.Store(st.Applied)
	// NATS first: a wrong --from is reported now, not after waiting
	// (forever) for tables a publisher that cannot be reached never makes.
	nc, js, err := events.ConnectJetStream(ep, a.name())
	if err != nil {
		return err
	}
	defer nc.Close()
	if err := a.waitTables(ctx); err != nil || a.halt.Load() {
		return err
	}
	rts, err := events.LoadTables(ctx, a.src, a.plan)
	if err != nil {
		return err
	}
	for _, rt := range rts {
		a.tables[rt.Name] = &applyTable{rt: rt, at: apply.NewTable(rt.Plan)}
	}
	a.app = apply.New(a.tgt.DB, a.log, func(ctx context.Context, tx *sql.Tx) error { return mysql.StorePartition(ctx, tx, a.next) })

	stream, err := pubevents.EnsureStream(ctx, js, ep)
	if err != nil {
		return failure.Wrap(err, failure.Connection, "SLUICE-NATS-STREAM", "JetStream stream %s", ep.Stream)
	}
	cons, err := events.StartConsumer(ctx, js, stream, jetstream.ConsumerConfig{
		Durable:       a.name(),
		Description:   fmt.Sprintf("sluice: applies partition %d of %d", a.opt.Partition, a.opt.Partitions),
		FilterSubject: ep.PartitionSubject(a.opt.Partition),
		AckPolicy:     jetstream.AckAllPolicy,
		AckWait:       2 * time.Minute,
		MaxDeliver:    -1,
		MaxAckPending: max(20*a.opt.BatchRows, 100000),
	}, st.LastSeq, st.LastSeq, st.Stored)
	if err != nil {
		return err
	}
	a.log.Info("applying partition", "stream", ep.Stream, "partition", a.opt.Partition, "partitions", a.opt.Partitions,
		"subject", ep.PartitionSubject(a.opt.Partition), "last_applied_seq", st.LastSeq, "position", Pos{st.PosLSN, st.PosN}.String())
	msgs, stopFetch, fetchEnded, err := events.FetchLoop(cons, max(a.opt.BatchRows/16, 64), a.log.Warn)
	if err != nil {
		return err
	}
	defer stopFetch()
	go a.sample(ctx, cons)
	// Two stages: the next batch is decoded and converted while the previous
	// one is written; batches commit and are acknowledged in order.
	g, gctx := errgroup.WithContext(ctx)
	ready := make(chan *preparedBatch, 1)
	g.Go(func() error {
		for pb := range ready {
			if err := a.commitBatch(gctx, pb); err != nil {
				return err
			}
		}
		return nil
	})
	g.Go(func() error {
		defer close(ready)
		state := a.state
		for {
			b, done := events.Gather(gctx, a.stop, msgs, a.opt.BatchRows, a.opt.BatchDelay, rowsOf)
			if len(b) > 0 {
				pb, err := a.prepareBatch(gctx, b, state)
				if err != nil {
					return err
				}
				state = pb.next
				select {
				case ready <- pb:
				case <-gctx.Done():
					return nil
				}
			}
			if done {
				return fetchEnded()
			}
		}
	})
	err = g.Wait()
	if err != nil && ctx.Err() == nil {
		return err
	}
	return nil
}

// rowsOf is how many rows a partition message holds.
func rowsOf(m jetstream.Msg) int {
	if n, err := strconv.Atoi(m.Headers().Get(RowsHeader)); err == nil && n > 0 {
		return n
	}
	return 1
}

// waitTables waits until the publisher has created the target tables.
func (a *Applier) waitTables(ctx context.Context) error {
	logged := false
	for {
		missing := ""
		for _, t := range a.plan.Tables {
			ok, err := a.tgt.TableExists(ctx, t.Target)
			if err != nil {
				return err
			}
			if !ok {
				missing = t.Target
				break
			}
		}
		if missing == "" {
			return nil
		}
		if !logged {
			a.log.Info("waiting for the publisher to create the target tables", "table", missing)
			logged = true
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-a.stop:
			return nil
		case <-time.After(500 * time.Millisecond):
		}
	}
}

type pendingRow struct {
	msg *Message
	t   *applyTable
	in  int // index into the table's inputs
}

// preparedBatch is a batch decoded and converted, ready to be written.
type preparedBatch struct {
	msgs []jetstream.Msg
	ops  []apply.Op
	n    int64
	next mysql.PartitionState // the progress once it is applied
}

// prepareBatch decodes and converts a batch; state is the progress after
// the batches before it.
func (a *Applier) prepareBatch(ctx context.Context, msgs []jetstream.Msg, state mysql.PartitionState) (*preparedBatch, error) {
	a.firstAt.CompareAndSwap(0, time.Now().UnixNano()) // the rate counts from the first batch received
	next := state
	var rows []pendingRow
	inputs := map[*applyTable][]events.Input{}
	var order []*applyTable
	for _, m := range msgs {
		md, err := m.Metadata()
		if err != nil {
			return nil, fmt.Errorf("JetStream message without metadata: %w", err)
		}
		seq := md.Sequence.Stream
		if seq <= next.LastSeq {
			continue // delivered again after a lost acknowledgement
		}
		next.LastSeq = seq
		msg, err := Decode(m.Data())
		if err != nil {
			return nil, failure.Wrap(err, failure.Internal, "SLUICE-APPLY-MESSAGE", "partition %d, stream sequence %d", a.opt.Partition, seq)
		}
		if msg.Parts != a.opt.Partitions {
			return nil, failure.New(failure.Usage, "SLUICE-APPLY-PARTITIONS", "stream sequence %d was published for %d partitions; this applier runs %d/%d",
				seq, msg.Parts, a.opt.Partition, a.opt.Partitions).WithHint("run the appliers with --partition i/%d", msg.Parts)
		}
		switch msg.Kind {
		case KindMark:
			if !(Pos{next.PosLSN, next.PosN}).Less(msg.Pos()) {
				continue // published again by a publisher that resumed: already applied
			}
			next.PosLSN, next.PosN = msg.LSN, msg.N
			if id, ok := strings.CutPrefix(msg.Mark, MarkFence); ok {
				next.Fence = id
			}
		case KindRows:
			for _, row := range msg.Rows {
				if !(Pos{next.PosLSN, next.PosN}).Less(row.Pos()) {
					continue // published again by a publisher that resumed: already applied
				}
				next.PosLSN, next.PosN = row.LSN, row.N
				t := a.tables[row.Table]
				if t == nil {
					return nil, failure.New(failure.Schema, "SLUICE-APPLY-TABLE", "partition %d carries changes of %s, which this applier's plan does not have", a.opt.Partition, row.Table).
						WithHint("give sluice apply the same --tables and --config as the publisher")
				}
				in, err := input(t.rt, row)
				if err != nil {
					return nil, failure.Wrap(err, failure.Internal, "SLUICE-APPLY-MESSAGE", "partition %d, stream sequence %d", a.opt.Partition, seq)
				}
				if _, ok := inputs[t]; !ok {
					order = append(order, t)
				}
				rows = append(rows, pendingRow{msg: row, t: t, in: len(inputs[t])})
				inputs[t] = append(inputs[t], in)
			}
		default:
			return nil, failure.New(failure.Internal, "SLUICE-APPLY-MESSAGE", "partition %d, stream sequence %d: unknown message kind %q", a.opt.Partition, seq, msg.Kind)
		}
	}
	outs := map[*applyTable][]events.Output{}
	for _, t := range order {
		o, err := a.norm.Convert(ctx, t.rt, inputs[t], true)
		if err != nil {
			return nil, failure.Wrap(err, failure.Connection, "SLUICE-APPLY-SOURCE", "source: evaluate computed columns of %s", t.rt.Name)
		}
		outs[t] = o
	}
	pb := &preparedBatch{msgs: msgs, ops: make([]apply.Op, 0, len(rows))}
	for _, r := range rows {
		out := outs[r.t][r.in]
		if out.Err != nil {
			key := strings.Join(out.Key, ",")
			return nil, failure.Wrap(out.Err, failure.BadRow, "SLUICE-APPLY-BADROW", "table %s, key %s", r.t.rt.Name, key).
				With("table", r.t.rt.Name).With("key", key).
				WithHint("fix the value on the source or map the column to a type that holds it, then run the applier again")
		}
		op := apply.Op{Table: r.t.at, Key: strings.Join(out.Key, "\x00"), Row: out.Row}
		switch {
		case r.msg.Op == OpDelete || !out.InFilter:
			op.Kind = apply.Delete
		case r.msg.Op == OpPatch:
			op.Kind = apply.Patch
		default:
			op.Kind = apply.Upsert
		}
		pb.ops = append(pb.ops, op)
	}
	pb.n = int64(len(rows))
	next.Applied += pb.n
	pb.next = next
	return pb, nil
}

// commitBatch writes a prepared batch with its progress, then acknowledges it.
func (a *Applier) commitBatch(ctx context.Context, pb *preparedBatch) error {
	for _, op := range pb.ops {
		a.app.Add(op)
	}
	next, msgs := pb.next, pb.msgs
	a.next = next
	if err := a.commit(ctx); err != nil {
		return err
	}
	a.state = next
	a.lastAt.Store(time.Now().UnixNano())
	a.applied.Store(next.Applied)
	a.appliedN.Add(pb.n)
	a.lastSeq.Store(next.LastSeq)
	if err := msgs[len(msgs)-1].Ack(); err != nil {
		a.log.Warn("acknowledgement failed; JetStream will deliver the batch again and the applier will skip it", "code", "SLUICE-NATS-ACK", "error", err.Error())
	}
	return nil
}

// commit writes the batch. A unique secondary index can refuse a row for a
// while when a value moves between rows of different partitions (the other
// partition has not applied its part yet): that is retried.
func (a *Applier) commit(ctx context.Context) error {
	deadline := time.Now().Add(2 * time.Minute)
	for attempt := 0; ; attempt++ {
		err := a.app.Commit(ctx, nil)
		if err == nil {
			return nil
		}
		transient := mysql.IsDuplicate(err) || mysql.IsTransient(err)
		if !transient || time.Now().After(deadline) || ctx.Err() != nil {
			if fe := (*failure.Error)(nil); errors.As(err, &fe) {
				return err // classified where it was found (a value the target would change)
			}
			if mysql.IsDuplicate(err) {
				return failure.Wrap(err, failure.BadRow, "SLUICE-APPLY-COMMIT", "partition %d: apply a batch", a.opt.Partition).
					WithHint("a unique index refused a value that another partition should have freed; check that every partition's applier runs (a value swapped between rows of different partitions in one transaction cannot be applied by partitions)")
			}
			kind := failure.Connection
			if mysql.IsDataError(err) {
				kind = failure.BadRow
			}
			return failure.Wrap(err, kind, "SLUICE-APPLY-COMMIT", "partition %d: apply a batch", a.opt.Partition).
				WithHint("run the applier again once the target is reachable (or the refused value is fixed): it resumes from its last committed batch")
		}
		if attempt == 0 {
			a.log.Warn("batch refused for now; retrying", "code", "SLUICE-APPLY-RETRY", "error", err.Error())
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Duration(min(attempt+1, 20)) * 50 * time.Millisecond):
		}
	}
}

// input lays a row message out by source column.
func input(t *events.Table, m *Message) (events.Input, error) {
	vals := make([]events.Value, t.SourceColumns())
	for i := range vals {
		vals[i].Absent = true
	}
	for name, v := range m.Cols {
		i := t.SourceIndex(name)
		if i < 0 {
			return events.Input{}, fmt.Errorf("table %s has no column %s", t.Name, name)
		}
		if v == nil {
			vals[i] = events.Value{Null: true, Canonical: true}
		} else {
			vals[i] = events.Value{Text: *v, Canonical: true}
		}
	}
	if m.Op == OpUpsert { // the whole row was sent
		for i, v := range vals {
			if v.Absent {
				return events.Input{}, fmt.Errorf("table %s: upsert without column %s", t.Name, t.Plan.Source.Columns[i].Name)
			}
		}
	}
	return events.Input{Vals: vals, KeyOnly: m.Op == OpDelete}, nil
}

// ApplierStatus is what an applier reports.
type ApplierStatus struct {
	Partition       int     `json:"partition"`
	Partitions      int     `json:"partitions"`
	LastSeq         uint64  `json:"last_stream_seq"`
	Applied         int64   `json:"applied"`
	AppliedThisRun  int64   `json:"applied_this_run"`
	Pending         int64   `json:"pending"`
	ChangesPerSec   float64 `json:"changes_per_second"`
	UptimeSeconds   float64 `json:"uptime_seconds"`
	ApplySeconds    float64 `json:"apply_seconds"`
	FirstBatchTime  string  `json:"first_batch_at,omitempty"` // when this run received its first batch
	LastAppliedTime string  `json:"last_applied_at,omitempty"`
}

// Status reports the applier now.
func (a *Applier) Status() ApplierStatus {
	st := ApplierStatus{Partition: a.opt.Partition, Partitions: a.opt.Partitions, LastSeq: a.lastSeq.Load(), Applied: a.applied.Load(),
		AppliedThisRun: a.appliedN.Load(), Pending: a.pending.Load(), UptimeSeconds: time.Since(a.started).Seconds()}
	if f, l := a.firstAt.Load(), a.lastAt.Load(); f != 0 && l > f {
		st.ApplySeconds = float64(l-f) / 1e9
		st.ChangesPerSec = float64(st.AppliedThisRun) / st.ApplySeconds
		st.FirstBatchTime = time.Unix(0, f).UTC().Format(time.RFC3339Nano)
		st.LastAppliedTime = time.Unix(0, l).UTC().Format(time.RFC3339Nano)
	}
	return st
}

func (a *Applier) sample(ctx context.Context, cons jetstream.Consumer) {
	a.pending.Store(-1)
	t := time.NewTicker(500 * time.Millisecond)
	defer t.Stop()
	lastLog := time.Now()
	for {
		ictx, cancel := context.WithTimeout(ctx, 2*time.Second)
		info, err := cons.Info(ictx)
		cancel()
		if err == nil {
			a.pending.Store(int64(info.NumPending) + int64(info.NumAckPending))
		}
		if time.Since(lastLog) >= 10*time.Second {
			lastLog = time.Now()
			st := a.Status()
			a.log.Info("partition progress", "partition", st.Partition, "applied", st.Applied, "pending", st.Pending, "last_stream_seq", st.LastSeq)
		}
		select {
		case <-ctx.Done():
			return
		case <-a.stop:
			return
		case <-t.C:
		}
	}
}
