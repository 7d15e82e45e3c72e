package api

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"time"

	"github.com/sluice-db/sluice/internal/failure"
	"github.com/sluice-db/sluice/internal/syncer"
)

// VerifyState is GET /api/v1/verify, and part of the status.
type VerifyState struct {
	State      string               `json:"state"` // idle, running, done, failed
	Mode       string               `json:"mode,omitempty"`
	StartedAt  *time.Time           `json:"started_at,omitempty"`
	FinishedAt *time.Time           `json:"finished_at,omitempty"`
	Report     *syncer.VerifyReport `json:"report,omitempty"`
	// LastReport is the report of the last verify that finished, kept
	// while the next one runs and after it failed: the rows it named as
	// differing are still the best knowledge there is.
	LastReport *syncer.VerifyReport `json:"last_report,omitempty"`
	Error      string               `json:"error,omitempty"`
	Code       string               `json:"code,omitempty"`
}

func (s *server) verifyState() VerifyState {
	s.verify.mu.Lock()
	defer s.verify.mu.Unlock()
	return s.verify.state
}

// startVerify is POST /api/v1/verify: {"mode": "changed"} (the default)
// compares the rows changed since the sync started, {"mode": "full"} every
// row. It answers 202 at once; the result shows in GET /api/v1/verify, the
// status and, when rows differ, as an alert.
func (s *server) startVerify(w http.ResponseWriter, r *http.Request) {
	v, ok := s.c.(Verifier)
	if !ok {
		s.fail(w, r, http.StatusNotImplemented, failure.New(failure.Usage, "SLUICE-API-VERIFY", "this sync cannot verify through the API"))
		return
	}
	var req struct {
		Mode string `json:"mode"`
	}
	body, _ := io.ReadAll(io.LimitReader(r.Body, 4096))
	if len(body) > 0 {
		if err := json.Unmarshal(body, &req); err != nil {
			s.fail(w, r, http.StatusBadRequest, failure.New(failure.Usage, "SLUICE-API-VERIFY", "request body is not JSON: %v", err).
				WithHint(`send {"mode": "changed"} or {"mode": "full"}`))
			return
		}
	}
	if q := r.URL.Query().Get("mode"); q != "" {
		req.Mode = q
	}
	if req.Mode == "" {
		req.Mode = "changed"
	}
	if req.Mode != "changed" && req.Mode != "full" {
		s.fail(w, r, http.StatusBadRequest, failure.New(failure.Usage, "SLUICE-API-VERIFY", "verify mode %q is not changed or full", req.Mode))
		return
	}
	if phase := s.c.Status().Phase; req.Mode == "full" && (phase == "copying" || phase == "starting") {
		s.fail(w, r, http.StatusConflict, failure.New(failure.Usage, "SLUICE-API-VERIFY",
			"the copy is not done: a full verify now would count every row not copied yet as missing").
			WithHint(`verify the changed rows ({"mode": "changed"}), or wait until every table streams`))
		return
	}
	s.verify.mu.Lock()
	if s.verify.state.State == "running" {
		st := s.verify.state
		s.verify.mu.Unlock()
		s.fail(w, r, http.StatusConflict, failure.New(failure.Usage, "SLUICE-API-VERIFY", "a %s verify is already running (since %s)",
			st.Mode, st.StartedAt.Format(time.RFC3339)).WithHint("wait for it: GET /api/v1/verify"))
		return
	}
	now := time.Now()
	last := s.verify.state.Report
	if last == nil {
		last = s.verify.state.LastReport
	}
	s.verify.state = VerifyState{State: "running", Mode: req.Mode, StartedAt: &now, LastReport: last}
	st := s.verify.state
	s.verify.mu.Unlock()
	s.opt.Log.Info("verify started through the API", "mode", req.Mode, "remote", r.RemoteAddr)
	go s.runVerify(v, req.Mode)
	w.Header().Set("Location", "/api/v1/verify")
	writeJSON(w, http.StatusAccepted, st)
}

func (s *server) runVerify(v Verifier, mode string) {
	ctx := s.opt.Context
	if ctx == nil {
		ctx = context.Background()
	}
	var rep syncer.VerifyReport
	// A panic on this goroutine would end the whole sync with Go's status
	// 2 and an unstructured trace: the verify fails instead.
	err := failure.Guard(func() (err error) {
		if mode == "full" {
			rep, err = v.VerifyAll(ctx)
		} else {
			rep, err = v.VerifyChangedRows(ctx)
		}
		return err
	})
	done := time.Now()
	s.verify.mu.Lock()
	st := s.verify.state
	st.FinishedAt = &done
	if err != nil {
		st.State, st.Error, st.Code = "failed", err.Error(), failure.Code(err)
	} else {
		st.State, st.Report, st.LastReport = "done", &rep, nil
	}
	s.verify.state = st
	s.verify.mu.Unlock()
	if err != nil {
		attrs := []any{"code", failure.Code(err), "error", err.Error(), "mode", mode}
		for k, val := range failure.ContextOf(err) {
			attrs = append(attrs, k, val)
		}
		s.opt.Log.Error("verify failed", attrs...)
	} else {
		s.opt.Log.Info("verify done", "mode", mode, "rows_compared", rep.Rows, "differences", rep.Differences)
	}
	if s.opt.OnVerify != nil && err == nil {
		s.opt.OnVerify(st)
	}
}
