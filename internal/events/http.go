package events

import (
	"bytes"
	"context"
	"crypto/subtle"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/sluice-db/sluice/internal/mysql"
)

// MaxHTTPBatch is the largest request body POST /api/v1/events accepts.
const MaxHTTPBatch = 32 << 20

// BatchError is one refused event of an HTTP batch.
type BatchError struct {
	Index int    `json:"index"`
	ID    string `json:"id,omitempty"`
	Code  string `json:"code"`
	Error string `json:"error"`
}

// BatchResult answers an accepted batch.
type BatchResult struct {
	Accepted int `json:"accepted"`
	Applied  int `json:"applied"`
	Ignored  int `json:"ignored"` // not newer than what the target holds
}

// HTTPError is a refused batch: nothing of it was applied.
type HTTPError struct {
	Status int          `json:"-"`
	Code   string       `json:"code"`
	Msg    string       `json:"error"`
	Errors []BatchError `json:"errors,omitempty"`
}

func (e *HTTPError) Error() string { return e.Msg }

// Handler serves POST /api/v1/events: a batch of events, as a JSON array or
// {"events": [...]}, applied all or nothing. It needs the API token.
func Handler(s *Service, token string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok || token == "" || subtle.ConstantTimeCompare([]byte(got), []byte(token)) != 1 {
			writeJSON(w, http.StatusUnauthorized, &HTTPError{Code: "SLUICE-API-AUTH",
				Msg: "POST /api/v1/events needs the API token: send Authorization: Bearer <token>"})
			return
		}
		if r.Method != http.MethodPost {
			writeJSON(w, http.StatusMethodNotAllowed, &HTTPError{Code: "SLUICE-API-METHOD", Msg: "use POST"})
			return
		}
		body, err := io.ReadAll(io.LimitReader(r.Body, MaxHTTPBatch+1))
		if err != nil {
			writeJSON(w, http.StatusBadRequest, &HTTPError{Code: "SLUICE-EVENTS-BATCH", Msg: "reading the request body: " + err.Error()})
			return
		}
		if len(body) > MaxHTTPBatch {
			s.counts.httpRefused.Add(1)
			writeJSON(w, http.StatusRequestEntityTooLarge, &HTTPError{Code: "SLUICE-EVENTS-BATCH",
				Msg: fmt.Sprintf("batch larger than %d bytes; send smaller batches", MaxHTTPBatch)})
			return
		}
		res, err := s.ApplyBatch(r.Context(), body)
		if err != nil {
			var he *HTTPError
			if !errors.As(err, &he) {
				he = &HTTPError{Status: http.StatusServiceUnavailable, Code: "SLUICE-EVENTS-APPLY", Msg: err.Error()}
			}
			if he.Status >= 500 { // the batch is fine; the sync cannot take it now
				s.counts.httpRetry.Add(1)
			} else {
				s.counts.httpRefused.Add(1)
			}
			writeJSON(w, he.Status, he)
			return
		}
		writeJSON(w, http.StatusOK, res)
	})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

// ApplyBatch checks a whole batch, then applies it in one target
// transaction; a batch with any invalid event is refused whole (*HTTPError).
func (s *Service) ApplyBatch(ctx context.Context, body []byte) (*BatchResult, error) {
	select {
	case <-s.ready:
	default:
		return nil, &HTTPError{Status: http.StatusServiceUnavailable, Code: "SLUICE-EVENTS-NOTREADY", Msg: "the sync is still preparing its tables; try again in a moment"}
	}
	raws, err := splitBatch(body)
	if err != nil {
		return nil, &HTTPError{Status: http.StatusBadRequest, Code: "SLUICE-EVENTS-BATCH",
			Msg: "malformed batch: " + err.Error() + `; send a JSON array of events or {"events": [...]}; nothing was applied`}
	}
	evs := make([]*Event, len(raws))
	var bad []BatchError
	for i, raw := range raws {
		ev, p := s.cat.Decode(raw)
		if p != nil {
			bad = append(bad, BatchError{Index: i, ID: p.ID, Code: p.Code, Error: p.Reason})
			continue
		}
		evs[i] = ev
	}
	refuse := func(bad []BatchError) error {
		first := bad[0]
		return &HTTPError{Status: http.StatusBadRequest, Code: "SLUICE-EVENTS-BATCH", Errors: bad,
			Msg: fmt.Sprintf("batch refused: %d of %d events are invalid (first: event %d: %s); nothing was applied", len(bad), len(raws), first.Index, first.Error)}
	}
	if len(bad) > 0 {
		return nil, refuse(bad)
	}
	ops, poisoned, err := Prepare(ctx, s.norm, evs)
	if err != nil {
		return nil, err
	}
	if len(poisoned) > 0 {
		for i := range evs {
			if p, ok := poisoned[i]; ok {
				bad = append(bad, BatchError{Index: i, ID: p.ID, Code: p.Code, Error: p.Reason})
			}
		}
		return nil, refuse(bad)
	}
	s.applyMu.Lock()
	defer s.applyMu.Unlock()
	if lost := s.lockLost(); lost != nil { // the run is stopping: another may write the tables now
		return nil, &HTTPError{Status: http.StatusServiceUnavailable, Code: "SLUICE-TARGET-LOCK-LOST",
			Msg: "this sync lost its lock on the target tables and is stopping; send the batch again once it is restarted"}
	}
	base := s.hstate
	var st mysql.ConsumerState
	res, err := s.store.Apply(ctx, ops, func(ctx context.Context, tx *sql.Tx, res Result) error {
		a, i := res.Count()
		st = base
		st.Applied += int64(a)
		st.Ignored += int64(i)
		return mysql.StoreConsumerState(ctx, tx, st)
	})
	var de *DataError
	if errors.As(err, &de) {
		return nil, &HTTPError{Status: http.StatusBadRequest, Code: "SLUICE-EVENTS-TARGET", Errors: s.refusedByTarget(ctx, evs, ops),
			Msg: "the target refused a row of the batch: " + err.Error() + "; nothing was applied"}
	}
	if err != nil {
		return nil, err
	}
	s.hstate = st
	s.noteApplied(ops, res)
	a, i := res.Count()
	s.counts.httpApplied.Add(int64(a))
	s.counts.httpIgnored.Add(int64(i))
	return &BatchResult{Accepted: len(raws), Applied: a, Ignored: len(raws) - a}, nil
}

// errDryRun rolls a trial transaction back.
var errDryRun = errors.New("dry run")

// refusedByTarget names the events of a batch the target refused: each op
// is tried alone in a transaction that is rolled back (the batch is all or
// nothing, so none is applied). Called with applyMu held.
func (s *Service) refusedByTarget(ctx context.Context, evs []*Event, ops []Op) []BatchError {
	var out []BatchError
	for i := range ops {
		_, err := s.store.Apply(ctx, ops[i:i+1], func(context.Context, *sql.Tx, Result) error { return errDryRun })
		var de *DataError
		if errors.As(err, &de) {
			ref := ops[i].Ref
			out = append(out, BatchError{Index: ref, ID: evs[ref].ID, Code: "SLUICE-EVENTS-TARGET",
				Error: fmt.Sprintf("table %s, key %s: %v", ops[i].Table.Name, strings.Join(ops[i].Key, ","), err)})
		}
	}
	return out
}

// splitBatch accepts [e, e, …] or {"events": [e, e, …]}.
func splitBatch(body []byte) ([]json.RawMessage, error) {
	body = bytes.TrimSpace(body)
	if len(body) == 0 {
		return nil, errors.New("empty body")
	}
	var raws []json.RawMessage
	switch body[0] {
	case '[':
		if err := json.Unmarshal(body, &raws); err != nil {
			return nil, fmt.Errorf("not a JSON array: %v", err)
		}
	case '{':
		var wrapper struct {
			Events *[]json.RawMessage `json:"events"`
		}
		if err := json.Unmarshal(body, &wrapper); err != nil {
			return nil, fmt.Errorf("not a JSON object: %v", err)
		}
		if wrapper.Events == nil {
			return nil, errors.New(`the object has no "events" array`)
		}
		raws = *wrapper.Events
	default:
		return nil, errors.New("not JSON")
	}
	if len(raws) == 0 {
		return nil, errors.New("no events in the batch")
	}
	return raws, nil
}
