package events

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Emitter publishes events to a JetStream stream. It is safe for concurrent
// use. Emit after the source transaction commits: an event for a change that
// rolled back would be applied all the same.
type Emitter struct {
	nc    *nats.Conn
	js    jetstream.JetStream
	ep    Endpoint
	owned bool

	// Asynchronous publishes that failed since the last Flush: a publish
	// JetStream refused counts as done to PublishAsyncComplete too.
	mu     sync.Mutex
	failed int
	first  error
}

// Connect opens a connection to the endpoint named by rawURL (see ParseURL)
// and creates its stream when it does not exist yet.
func Connect(ctx context.Context, rawURL string) (*Emitter, error) {
	ep, err := ParseURL(rawURL)
	if err != nil {
		return nil, err
	}
	nc, err := nats.Connect(ep.Servers, nats.Name("sluice-events-emitter"), nats.MaxReconnects(-1))
	if err != nil {
		return nil, fmt.Errorf("connect to NATS at %s: %w", ep, err)
	}
	e, err := New(nc, ep)
	if err != nil {
		nc.Close()
		return nil, err
	}
	e.owned = true
	if _, err := EnsureStream(ctx, e.js, ep); err != nil {
		nc.Close()
		return nil, err
	}
	return e, nil
}

// New wraps an existing connection.
func New(nc *nats.Conn, ep Endpoint) (*Emitter, error) {
	e := &Emitter{nc: nc, ep: ep}
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(8192), jetstream.WithPublishAsyncErrHandler(e.asyncFailed))
	if err != nil {
		return nil, err
	}
	e.js = js
	return e, nil
}

// asyncFailed records an asynchronous publish JetStream did not store.
func (e *Emitter) asyncFailed(_ jetstream.JetStream, msg *nats.Msg, err error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.failed++; e.first == nil {
		e.first = fmt.Errorf("emit event %s: %w", msg.Header.Get(jetstream.MsgIDHeader), err)
	}
}

// Close closes the connection if Connect opened it, after pending
// asynchronous publishes are acknowledged (or 10 s passed).
func (e *Emitter) Close() {
	select {
	case <-e.js.PublishAsyncComplete():
	case <-time.After(10 * time.Second):
	}
	if e.owned {
		e.nc.Close()
	}
}

// Upsert emits that the row with key now holds row, at version.
func (e *Emitter) Upsert(ctx context.Context, table string, key, row map[string]any, version int64) error {
	return e.Emit(ctx, Event{Table: table, Op: OpUpsert, Key: key, Row: row, Version: version})
}

// Delete emits that the row with key is gone, at version.
func (e *Emitter) Delete(ctx context.Context, table string, key map[string]any, version int64) error {
	return e.Emit(ctx, Event{Table: table, Op: OpDelete, Key: key, Version: version})
}

// Emit publishes ev and waits until JetStream has stored it. V and ID are
// filled in when zero.
func (e *Emitter) Emit(ctx context.Context, ev Event) error {
	msg, err := e.message(&ev)
	if err != nil {
		return err
	}
	if _, err := e.js.PublishMsg(ctx, msg, jetstream.WithMsgID(ev.ID), jetstream.WithExpectStream(e.ep.Stream)); err != nil {
		return fmt.Errorf("emit event %s: %w", ev.ID, err)
	}
	return nil
}

// EmitAsync publishes ev without waiting; the returned future reports
// whether JetStream stored it. Call Flush before exiting (and before the
// source's changes count as published): it reports emits not stored.
func (e *Emitter) EmitAsync(ev Event) (jetstream.PubAckFuture, error) {
	msg, err := e.message(&ev)
	if err != nil {
		return nil, err
	}
	return e.js.PublishMsgAsync(msg, jetstream.WithMsgID(ev.ID), jetstream.WithExpectStream(e.ep.Stream))
}

// Flush waits until every asynchronous publish is answered, and returns an
// error when any of them since the last Flush was not stored (their
// events are lost unless emitted again: send them again with the same id).
func (e *Emitter) Flush(ctx context.Context) error {
	select {
	case <-e.js.PublishAsyncComplete():
	case <-ctx.Done():
		return ctx.Err()
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	n, first := e.failed, e.first
	e.failed, e.first = 0, nil
	if n > 0 {
		return fmt.Errorf("%d asynchronous emits were not stored; the first: %w", n, first)
	}
	return nil
}

func (e *Emitter) message(ev *Event) (*nats.Msg, error) {
	if ev.V == 0 {
		ev.V = FormatVersion
	}
	if ev.ID == "" {
		ev.ID = NewID()
	}
	if err := ev.Validate(); err != nil {
		return nil, err
	}
	data, err := json.Marshal(ev)
	if err != nil {
		return nil, fmt.Errorf("encode event: %w", err)
	}
	return &nats.Msg{Subject: e.ep.EventSubject(ev.Table), Data: data}, nil
}

// EnsureStream returns the endpoint's stream, creating it (file storage,
// subjects PREFIX.>, 2-minute duplicate window) when it does not exist. An
// existing stream is used as it is, but it must capture PREFIX.>.
func EnsureStream(ctx context.Context, js jetstream.JetStream, ep Endpoint) (jetstream.Stream, error) {
	st, err := js.Stream(ctx, ep.Stream)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		st, err = js.CreateStream(ctx, jetstream.StreamConfig{
			Name:       ep.Stream,
			Subjects:   []string{ep.AllSubjects()},
			Storage:    jetstream.FileStorage,
			Retention:  jetstream.LimitsPolicy,
			Duplicates: 2 * time.Minute,
		})
		if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
			st, err = js.Stream(ctx, ep.Stream)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("JetStream stream %s: %w", ep.Stream, err)
	}
	covered := false
	for _, s := range st.CachedInfo().Config.Subjects {
		if s == ep.AllSubjects() || s == ">" {
			covered = true
		}
	}
	if !covered {
		return nil, fmt.Errorf("JetStream stream %s captures %v, not %s: give the prefix its subjects use with ?prefix=… in the URL, or add %s to the stream",
			ep.Stream, st.CachedInfo().Config.Subjects, ep.AllSubjects(), ep.AllSubjects())
	}
	return st, nil
}
