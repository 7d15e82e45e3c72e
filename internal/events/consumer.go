package events

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/sync/errgroup"

	"github.com/sluice-db/sluice/internal/failure"
	"github.com/sluice-db/sluice/internal/mysql"
	pubevents "github.com/sluice-db/sluice/pkg/events"
)

// ConnectJetStream connects to the endpoint's servers.
func ConnectJetStream(ep pubevents.Endpoint, name string) (*nats.Conn, jetstream.JetStream, error) {
	nc, err := nats.Connect(ep.Servers, nats.Name(name), nats.MaxReconnects(-1), nats.ReconnectWait(time.Second))
	if err != nil {
		return nil, nil, failure.Wrap(err, failure.Connection, "SLUICE-NATS-CONNECT", "cannot connect to NATS at %s", ep).
			WithHint("check that nats-server runs with JetStream (-js) and that host and port in the URL are right")
	}
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(16384))
	if err != nil {
		nc.Close()
		return nil, nil, err
	}
	return nc, js, nil
}

// consume applies the events of the stream through a durable pull consumer
// with AckAll: a batch is acknowledged (by its last message) only after its
// target transaction, which also stores the last stream sequence, commits.
// After a crash between the two, JetStream redelivers the batch; sequences
// already stored are skipped, and the version check would ignore them anyway.
func (s *Service) consume(ctx context.Context) error {
	ep := *s.opt.Endpoint
	nc, js, err := ConnectJetStream(ep, "sluice-events")
	if err != nil {
		return err
	}
	defer nc.Close()
	stream, err := pubevents.EnsureStream(ctx, js, ep)
	if err != nil {
		return failure.Wrap(err, failure.Connection, "SLUICE-NATS-STREAM", "JetStream stream %s", ep.Stream)
	}
	batch := s.opt.BatchRows
	cons, err := StartConsumer(ctx, js, stream, jetstream.ConsumerConfig{
		Durable:       s.opt.Consumer,
		Description:   "sluice: applies events to the target",
		FilterSubject: ep.EventsFilter(),
		AckPolicy:     jetstream.AckAllPolicy,
		AckWait:       s.opt.AckWait,
		MaxDeliver:    -1,
		MaxAckPending: max(20*batch, 100000),
	}, s.cstate.LastSeq, s.cstate.OwnUntil, s.cstate.Stored)
	if err != nil {
		return err
	}
	s.log.Info("consuming events", "stream", ep.Stream, "subjects", ep.EventsFilter(), "consumer", s.opt.Consumer,
		"dead_letter", ep.DeadLetterSubject(), "last_applied_seq", s.cstate.LastSeq)
	// Read back before any target transaction: the dead letters a crash
	// left unrecorded.
	if s.dlSent, err = s.unrecordedDeadLetters(ctx, js); err != nil {
		return err
	}
	for seq := s.cstate.LastSeq + 1; seq <= s.cstate.OwnUntil; seq++ {
		s.ownMsgs[seq] = true // an earlier run's dead letters right after the last event
	}
	msgs, stopFetch, fetchEnded, err := FetchLoop(cons, batch, s.log.Warn)
	if err != nil {
		return err
	}
	defer stopFetch()
	s.cons.Store(&cons)
	// Two stages: the next batch is decoded and converted (on the source)
	// while the previous one is written to the target. Batches are applied
	// and acknowledged in stream order.
	g, gctx := errgroup.WithContext(ctx)
	ready := make(chan *preparedBatch, 1)
	g.Go(func() error {
		for pb := range ready {
			if err := s.applyBatch(gctx, js, pb); err != nil {
				return err
			}
		}
		return nil
	})
	g.Go(func() error {
		defer close(ready)
		seen := s.cstate.LastSeq
		for {
			b, done := Gather(gctx, s.stop, msgs, batch, s.opt.BatchDelay, nil)
			if len(b) > 0 {
				pb, err := s.prepareBatch(gctx, b, &seen)
				if err != nil {
					return err
				}
				if pb.gapFrom > 0 {
					if err := s.checkGap(gctx, stream, pb.gapFrom, pb.seqs); err != nil {
						return err
					}
				}
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
	if err := g.Wait(); err != nil && ctx.Err() == nil {
		return err
	}
	return nil
}

// checkRemovedWithin looks for messages removed from the middle of the
// stream (a per-subject limit, a message deleted by hand) among the
// sequences from .. the batch's last that the batch skipped: the stream's
// start says nothing of those. Only a stream that has such holes
// (NumDeleted) is asked for them.
func (s *Service) checkRemovedWithin(ctx context.Context, stream jetstream.Stream, info *jetstream.StreamInfo, from uint64, batch []uint64, read map[uint64]bool) error {
	if info.State.NumDeleted == 0 || len(batch) == 0 {
		return nil
	}
	detailed, err := stream.Info(ctx, jetstream.WithDeletedDetails(true))
	if err != nil {
		return failure.Wrap(err, failure.Connection, "SLUICE-NATS-STREAM", "JetStream stream %s", info.Config.Name)
	}
	last := slices.Max(batch)
	for _, seq := range detailed.State.Deleted {
		if seq >= from && seq <= last && !read[seq] && !s.ownMsgs[seq] {
			return failure.New(failure.Schema, "SLUICE-NATS-GAP", "stream %s no longer holds sequence %d, which sluice had not read: messages were removed from its middle (a per-subject limit, or deleted by hand) before sluice applied them",
				info.Config.Name, seq).WithHint("keep the stream without a per-subject limit (max_msgs_per_subject) and do not delete its messages; to start over, drop the target tables and sluice's _sluice_* tables")
		}
	}
	return nil
}

// gapError says whether the stream, holding messages from first on, lost
// some after applied, the last sequence sluice has seen: removed by the
// stream's limits before sluice read them.
func gapError(stream string, first, applied uint64) error {
	if first <= applied+1 {
		return nil
	}
	return failure.New(failure.Schema, "SLUICE-NATS-GAP", "stream %s starts at sequence %d, but sluice has read only up to %d: messages were removed (stream limits) before sluice applied them",
		stream, first, applied).WithHint("raise the stream's limits (max age, bytes, messages); to start over, drop the target tables and sluice's _sluice_* tables")
}

// checkGap runs when a batch skipped sequences after from-1. Other subjects
// of the stream (dead letters, a publisher's changes) leave such holes too;
// only when the stream no longer starts at or before from were messages
// removed unread, unless all of those were dead letters this run sent or
// messages of the batch itself (read, then removed). Asked once per batch,
// not per message; a failed ask is retried.
func (s *Service) checkGap(ctx context.Context, stream jetstream.Stream, from uint64, batch []uint64) error {
	var info *jetstream.StreamInfo
	var err error
	for attempt := 0; attempt < 5; attempt++ {
		if info, err = stream.Info(ctx); err == nil {
			break
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Duration(attempt+1) * 200 * time.Millisecond):
		}
	}
	if err != nil {
		return failure.Wrap(err, failure.Connection, "SLUICE-NATS-STREAM", "JetStream stream %s", stream.CachedInfo().Config.Name)
	}
	first := info.State.FirstSeq
	read := make(map[uint64]bool, len(batch))
	for _, seq := range batch {
		read[seq] = true
	}
	// Taking the lock waits for the batch being applied: its dead letters
	// are in ownMsgs by then.
	s.applyMu.Lock()
	defer s.applyMu.Unlock()
	if first <= from {
		return s.checkRemovedWithin(ctx, stream, info, from, batch, read)
	}
	if first-from <= uint64(len(s.ownMsgs)+len(read)) {
		removed := from
		for removed < first && (s.ownMsgs[removed] || read[removed]) {
			removed++
		}
		if removed == first {
			return nil
		}
	}
	return gapError(info.Config.Name, first, from-1)
}

// StartConsumer (re)creates the durable consumer so that it delivers from
// the message after applied, the last stream sequence the target holds;
// up to known (at least applied) the stream holds nothing unapplied, so the
// stream's limits may have removed that much.
// The target's record is the truth: whatever the server remembers of an
// earlier run (messages delivered to a process that died, pull requests
// still open for it) would otherwise hold them back until AckWait.
//
// stored is when the target last stored progress from the stream: a
// stream made after it (deleted and made again) is another stream, whose
// sequences say nothing of what was applied, even once it has grown past
// applied.
func StartConsumer(ctx context.Context, js jetstream.JetStream, stream jetstream.Stream, cfg jetstream.ConsumerConfig, applied, known uint64, stored time.Time) (jetstream.Consumer, error) {
	name := stream.CachedInfo().Config.Name
	if err := js.DeleteConsumer(ctx, name, cfg.Durable); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
		return nil, failure.Wrap(err, failure.Connection, "SLUICE-NATS-CONSUMER", "JetStream: reset consumer %s on stream %s", cfg.Durable, name)
	}
	cfg.DeliverPolicy = jetstream.DeliverAllPolicy
	if applied > 0 {
		cfg.DeliverPolicy, cfg.OptStartSeq = jetstream.DeliverByStartSequencePolicy, applied+1
		info, err := stream.Info(ctx)
		if err != nil {
			return nil, failure.Wrap(err, failure.Connection, "SLUICE-NATS-STREAM", "JetStream stream %s", name)
		}
		if !stored.IsZero() && info.Created.After(stored.Add(time.Second)) {
			return nil, failure.New(failure.Schema, "SLUICE-NATS-STREAMCHANGED", "stream %s was made at %s, after the target last stored progress from it (%s, up to sequence %d): it was deleted and made again, and the events sluice has not applied are not in it",
				name, info.Created.UTC().Format(time.RFC3339), stored.Format(time.RFC3339), applied).WithHint("to start over, drop the target tables and sluice's _sluice_* tables (docs/EVENTS.md), then run sync again")
		}
		if info.State.LastSeq < applied {
			return nil, failure.New(failure.Schema, "SLUICE-NATS-STREAMCHANGED", "stream %s ends at sequence %d, but the target has applied up to %d from it: the stream was deleted and made again, and the events sluice has not applied are not in it",
				name, info.State.LastSeq, applied).WithHint("to start over, drop the target tables and sluice's _sluice_* tables (docs/EVENTS.md), then run sync again")
		}
		// Also when the stream is empty: its FirstSeq is then LastSeq+1, so
		// events that aged out or were purged unread still show as a gap.
		if err := gapError(name, info.State.FirstSeq, max(applied, known)); err != nil {
			return nil, err
		}
	}
	cons, err := js.CreateConsumer(ctx, name, cfg)
	if err != nil {
		return nil, failure.Wrap(err, failure.Connection, "SLUICE-NATS-CONSUMER", "JetStream: create consumer %s on stream %s", cfg.Durable, name)
	}
	return cons, nil
}

// FetchLoop pulls messages continuously (overlapping pull requests) into a
// channel, so the next batch arrives while one is applied. The channel
// closes when stop is called or the pull ends by itself; ended then says
// why: nil after stop, an error when the consumer was deleted under the run
// (by hand, or by a second sync with the same consumer name), which must not
// pass for a clean stop.
func FetchLoop(cons jetstream.Consumer, batch int, warn func(string, ...any)) (msgs <-chan jetstream.Msg, stop func(), ended func() error, err error) {
	iter, err := cons.Messages(jetstream.PullMaxMessages(2 * batch))
	if err != nil {
		return nil, nil, nil, failure.Wrap(err, failure.Connection, "SLUICE-NATS-CONSUMER", "pull from JetStream")
	}
	out := make(chan jetstream.Msg, batch)
	done := make(chan struct{})
	var lost atomic.Pointer[failure.Error]
	go func() {
		defer close(out)
		var delivered uint64 // the consumer's highest delivery sequence: it was made anew, so 1, 2, 3, …
		for {
			m, err := iter.Next()
			if err != nil {
				if errors.Is(err, jetstream.ErrMsgIteratorClosed) || errors.Is(err, jetstream.ErrConsumerDeleted) {
					select {
					case <-done:
					default:
						lost.Store(failure.Wrap(err, failure.Connection, "SLUICE-NATS-CONSUMER", "JetStream: the consumer stopped delivering").
							WithHint("was it deleted, or did another sync start with the same consumer name? give each sync its own --consumer, then run it again: it resumes from the last applied event"))
					}
					return
				}
				warn("JetStream pull failed; retrying", "code", "SLUICE-NATS-PULL", "error", err.Error())
				select {
				case <-done:
					return
				case <-time.After(200 * time.Millisecond):
				}
				continue
			}
			// Messages on the way when the connection broke are lost, and
			// the pull goes on with later ones; acknowledging those (AckAll)
			// would acknowledge the lost ones unseen. Stop before them: the
			// next run starts after the last one applied.
			if md, err := m.Metadata(); err == nil {
				if md.Sequence.Consumer > delivered+1 { // a redelivery may come again with its first number
					lost.Store(failure.New(failure.Connection, "SLUICE-NATS-LOST", "JetStream delivered message %d of the consumer after %d: the ones between were lost on the way (a reconnect)", md.Sequence.Consumer, delivered).
						WithHint("run it again: it resumes after the last message applied, and they are delivered again"))
					return
				}
				delivered = max(delivered, md.Sequence.Consumer)
			}
			select {
			case out <- m:
			case <-done:
				return
			}
		}
	}()
	var once sync.Once
	stop = func() { once.Do(func() { close(done); iter.Stop() }) }
	ended = func() error {
		if e := lost.Load(); e != nil {
			return e
		}
		return nil
	}
	return out, stop, ended, nil
}

// Gather waits for a first message, then takes more until the batch is full
// or delay passed. done reports Stop or the end of ctx.
// weight, when not nil, says how many items a message holds (size counts
// items, not messages).
func Gather(ctx context.Context, stop <-chan struct{}, msgs <-chan jetstream.Msg, size int, delay time.Duration, weight func(jetstream.Msg) int) ([]jetstream.Msg, bool) {
	var b []jetstream.Msg
	n := 0
	add := func(m jetstream.Msg) {
		b = append(b, m)
		if weight != nil {
			n += weight(m)
		} else {
			n++
		}
	}
	select {
	case m, ok := <-msgs:
		if !ok {
			return nil, true
		}
		add(m)
	case <-stop:
		return nil, true
	case <-ctx.Done():
		return nil, true
	}
	timer := time.NewTimer(delay)
	defer timer.Stop()
	for n < size {
		select {
		case m, ok := <-msgs:
			if !ok {
				return b, true
			}
			add(m)
		case <-timer.C:
			return b, false
		case <-stop:
			return b, true
		case <-ctx.Done():
			return b, true
		}
	}
	return b, false
}

// DeadLetter is what the dead-letter subject receives for an event sluice
// cannot apply.
type DeadLetter struct {
	Error     string          `json:"error"`
	Code      string          `json:"code"`
	EventID   string          `json:"event_id,omitempty"`
	Table     string          `json:"table,omitempty"`
	Stream    string          `json:"stream"`
	StreamSeq uint64          `json:"stream_seq"`
	Subject   string          `json:"subject"`
	Consumer  string          `json:"consumer"`
	Target    string          `json:"target,omitempty"` // the target database
	At        time.Time       `json:"at"`
	Event     json.RawMessage `json:"event,omitempty"` // the event as received, when it is JSON
	Raw       string          `json:"raw,omitempty"`   // the event as received, when it is not
}

// preparedBatch is a batch decoded and converted, ready to be written.
type preparedBatch struct {
	msgs        []jetstream.Msg
	seqs        []uint64
	evs         []*Event
	ops         []Op
	poisoned    map[int]*Poison
	redelivered int
	lastSeq     uint64
	gapFrom     uint64 // the first sequence the batch skipped, 0 if none
}

// prepareBatch decodes and converts a batch. seen is the highest stream
// sequence already taken: messages up to it were applied (or are about to
// be) and come again only because an acknowledgement was lost.
func (s *Service) prepareBatch(ctx context.Context, msgs []jetstream.Msg, seen *uint64) (*preparedBatch, error) {
	s.counts.firstApply.CompareAndSwap(0, time.Now().UnixNano()) // the rate counts from the first batch received
	pb := &preparedBatch{msgs: msgs, seqs: make([]uint64, len(msgs)), evs: make([]*Event, len(msgs)), poisoned: map[int]*Poison{}}
	for i, m := range msgs {
		md, err := m.Metadata()
		if err != nil {
			return nil, fmt.Errorf("JetStream message without metadata: %w", err)
		}
		pb.seqs[i] = md.Sequence.Stream
		if pb.seqs[i] <= *seen {
			pb.redelivered++
			continue
		}
		if *seen > 0 && pb.seqs[i] > *seen+1 && pb.gapFrom == 0 {
			pb.gapFrom = *seen + 1
		}
		*seen = pb.seqs[i]
		ev, p := s.cat.Decode(m.Data())
		if p != nil {
			pb.poisoned[i] = p
			continue
		}
		pb.evs[i] = ev
	}
	pb.lastSeq = *seen
	ops, bad, err := Prepare(ctx, s.norm, pb.evs)
	if err != nil {
		return nil, failure.Wrap(err, failure.Connection, "SLUICE-EVENTS-SOURCE", "events: convert a batch on the source").
			WithHint("run the sync again once the source is reachable: unacknowledged events are delivered again")
	}
	for i, p := range bad {
		pb.poisoned[i] = p
	}
	pb.ops = ops
	return pb, nil
}

// applyBatch writes a prepared batch in one target transaction with the
// consumer's progress, then acknowledges it.
func (s *Service) applyBatch(ctx context.Context, js jetstream.JetStream, pb *preparedBatch) error {
	s.applyMu.Lock()
	defer s.applyMu.Unlock()
	msgs, seqs, evs, ops, poisoned, redelivered := pb.msgs, pb.seqs, pb.evs, pb.ops, pb.poisoned, pb.redelivered
	st := s.cstate
	st.LastSeq = max(st.LastSeq, pb.lastSeq)
	// Dead letters go out before the commit that records them. A crash in
	// between delivers the batch again; the restart finds them on the
	// dead-letter subject and does not send them twice
	// (unrecordedDeadLetters; JetStream drops a duplicate by its id too).
	var dlErr error
	base := st
	newDead := len(poisoned)
	var applied, ignored int
	// record stores the progress; it may run more than once (a deadlock
	// retries the transaction), so it starts from base every time.
	record := func(a, i int) Within {
		return func(ctx context.Context, tx *sql.Tx, _ Result) error {
			st = base
			st.Applied += int64(a)
			st.Ignored += int64(i)
			st.DeadLettered += int64(newDead)
			st.OwnUntil = st.LastSeq
			for s.ownMsgs[st.OwnUntil+1] {
				st.OwnUntil++
			}
			applied, ignored = a, i
			return mysql.StoreConsumerState(ctx, tx, st)
		}
	}
	res, err := s.store.Apply(ctx, ops, func(ctx context.Context, tx *sql.Tx, res Result) error {
		if dlErr = s.deadLetter(ctx, js, msgs, seqs, poisoned); dlErr != nil {
			return dlErr
		}
		a, i := res.Count()
		return record(a, i)(ctx, tx, res)
	})
	if dlErr != nil {
		return dlErr
	}
	var de *DataError
	if errors.As(err, &de) {
		// The target refused some row: apply the ops one by one, send the
		// refused ones to the dead-letter subject, then record the progress.
		var refused map[int]error
		if res, refused, err = s.store.Isolate(ctx, ops); err == nil {
			more := maps.Clone(poisoned) // those sent already are skipped
			for j, e := range refused {
				op := ops[j]
				more[op.Ref] = &Poison{Code: "SLUICE-EVENT-TARGET", Reason: fmt.Sprintf("table %s: the target refused the row: %v", op.Table.Name, e),
					ID: evs[op.Ref].ID, Table: op.Table.Name}
			}
			newDead = len(more)
			if err = s.deadLetter(ctx, js, msgs, seqs, more); err == nil {
				a, _ := res.Count()
				_, err = s.store.Apply(ctx, nil, record(a, len(ops)-a-len(refused)))
			}
		}
	}
	if err != nil {
		return failure.Wrap(err, failure.Connection, "SLUICE-EVENTS-APPLY", "target: apply %d events", len(ops)).
			WithHint("run the sync again once the target is reachable: unacknowledged events are delivered again")
	}
	n := s.commits.Add(1)
	if s.crashAt > 0 && n >= s.crashAt {
		s.log.Error("test hook: exiting after the target commit, before the acknowledgement", "code", "SLUICE-TEST-CRASH", "commits", n)
		os.Exit(99)
	}
	s.cstate = st
	for seq := range s.dlSent { // recorded now: never delivered again
		if seq <= st.LastSeq {
			delete(s.dlSent, seq)
		}
	}
	for seq := range s.ownMsgs { // behind every event read: no later hole reaches them
		if seq < st.LastSeq {
			delete(s.ownMsgs, seq)
		}
	}
	s.noteApplied(ops, res)
	c := &s.counts
	c.received.Add(int64(len(msgs) - redelivered))
	c.applied.Add(int64(applied))
	c.ignored.Add(int64(ignored))
	c.redelivered.Add(int64(redelivered))
	c.deadLettered.Store(st.DeadLettered)
	c.lastSeq.Store(st.LastSeq)
	// AckAll: the last message acknowledges the whole batch.
	if s.dropAcks {
		return nil
	}
	if err := msgs[len(msgs)-1].Ack(); err != nil {
		s.log.Warn("acknowledgement failed; JetStream will deliver the batch again and sluice will skip it", "code", "SLUICE-NATS-ACK", "error", err.Error())
	}
	return nil
}

func (s *Service) deadLetter(ctx context.Context, js jetstream.JetStream, msgs []jetstream.Msg, seqs []uint64, poisoned map[int]*Poison) error {
	ep := s.opt.Endpoint
	idx := make([]int, 0, len(poisoned))
	for i := range poisoned {
		idx = append(idx, i)
	}
	sort.Ints(idx) // in stream order
	for _, i := range idx {
		if s.dlSent[seqs[i]] {
			continue // already on the subject: sent before a crash (or a retried transaction), not recorded yet
		}
		p, m := poisoned[i], msgs[i]
		dl := DeadLetter{Error: p.Reason, Code: p.Code, EventID: p.ID, Table: p.Table, Stream: ep.Stream, StreamSeq: seqs[i],
			Subject: m.Subject(), Consumer: s.opt.Consumer, Target: s.targetDB, At: time.Now().UTC()}
		if json.Valid(m.Data()) {
			dl.Event = m.Data()
		} else {
			dl.Raw = string(m.Data())
		}
		data, _ := json.Marshal(dl)
		ack, err := js.Publish(ctx, ep.DeadLetterSubject(), data, jetstream.WithMsgID(fmt.Sprintf("sluice-dl:%s:%s:%d", ep.Stream, s.opt.Consumer, seqs[i])))
		if err != nil {
			return failure.Wrap(err, failure.Connection, "SLUICE-EVENTS-DEADLETTER", "publish a dead letter to %s", ep.DeadLetterSubject())
		}
		s.log.Warn("event sent to the dead-letter subject", "code", p.Code, "error", p.Reason, "event_id", p.ID, "table", p.Table,
			"stream_seq", seqs[i], "subject", ep.DeadLetterSubject())
		s.dlSent[seqs[i]] = true
		s.ownMsgs[ack.Sequence] = true
	}
	if s.crashAfterDL && len(idx) > 0 {
		s.log.Error("test hook: exiting after dead letters, before the commit that records them", "code", "SLUICE-TEST-CRASH")
		os.Exit(99)
	}
	return nil
}

// unrecordedDeadLetters reads back the dead letters this consumer sent for
// events after the last one the target recorded: they went out before a
// commit that a crash prevented, and the batch comes again. JetStream's
// duplicate window (2 minutes) may be over by then, so sluice skips exactly
// these. A dead letter is published after its event, so reading the subject
// from the sequence after the last recorded one finds them all.
func (s *Service) unrecordedDeadLetters(ctx context.Context, js jetstream.JetStream) (map[uint64]bool, error) {
	ep := s.opt.Endpoint
	sent := map[uint64]bool{}
	fail := func(err error) (map[uint64]bool, error) {
		return nil, failure.Wrap(err, failure.Connection, "SLUICE-EVENTS-DEADLETTER", "read back the dead letters on %s", ep.DeadLetterSubject())
	}
	st, err := js.Stream(ctx, ep.Stream)
	if err != nil {
		return fail(err)
	}
	// One get per dead letter: the server returns the first message at or
	// after seq on the subject, so events in between cost nothing.
	for seq := s.cstate.LastSeq + 1; ; {
		m, err := st.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(ep.DeadLetterSubject()))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return sent, nil
		}
		if err != nil {
			return fail(err)
		}
		var dl DeadLetter
		// Target is empty in dead letters of versions before it was added.
		if json.Unmarshal(m.Data, &dl) == nil && dl.Stream == ep.Stream && dl.Consumer == s.opt.Consumer && (dl.Target == s.targetDB || dl.Target == "") {
			sent[dl.StreamSeq] = true
		}
		seq = m.Sequence + 1
	}
}

// backlog asks JetStream (now, not from a sample) how many events are not
// applied yet: caughtUp means none is waiting in the stream and every one
// delivered is applied. ok is false when JetStream cannot say.
func (s *Service) backlog() (pending int64, caughtUp, ok bool) {
	cp := s.cons.Load()
	if cp == nil {
		return -1, false, false
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	info, err := (*cp).Info(ctx)
	if err != nil {
		return -1, false, false
	}
	// Delivered, not applied yet: sluice acknowledges a batch once it is
	// committed. Delivered.Stream alone is no measure: past the last event
	// the server moves it over messages of other subjects (a dead letter),
	// which the consumer never delivers.
	var unapplied uint64
	if applied := s.counts.lastSeq.Load(); info.NumAckPending > 0 && info.Delivered.Stream > applied {
		unapplied = min(uint64(info.NumAckPending), info.Delivered.Stream-applied)
	}
	pending = int64(info.NumPending) + int64(unapplied)
	return pending, info.NumPending == 0 && unapplied == 0, true
}
