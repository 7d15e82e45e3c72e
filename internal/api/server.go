// Package api serves a running sync over HTTP: status for people and
// scripts, and the few commands that change it (pause, resume, cutover).
// Reads are open to loopback clients; anything that changes state needs
// the bearer token.
package api

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/sluice-db/sluice/internal/failure"
	"github.com/sluice-db/sluice/internal/syncer"
)

// Controller is what the API drives: a running sync.
type Controller interface {
	Status() syncer.Status
	Pause()
	Resume()
	Cutover(ctx context.Context) (*syncer.CutoverReport, error)
	Stop()
}

// Options configure the server.
type Options struct {
	Token string // bearer token for calls that change state
	Log   *slog.Logger
}

// NewToken makes a random token for a sync started without one.
func NewToken() string {
	b := make([]byte, 24)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// Handler returns the API's routes.
func Handler(c Controller, opt Options) http.Handler {
	mux := http.NewServeMux()
	s := &server{c: c, opt: opt}
	mux.HandleFunc("GET /api/v1/status", s.read(func(w http.ResponseWriter, r *http.Request) { writeJSON(w, http.StatusOK, c.Status()) }))
	mux.HandleFunc("GET /api/v1/tables", s.read(func(w http.ResponseWriter, r *http.Request) { writeJSON(w, http.StatusOK, c.Status().Tables) }))
	mux.HandleFunc("POST /api/v1/pause", s.write(func(w http.ResponseWriter, r *http.Request) {
		c.Pause()
		writeJSON(w, http.StatusOK, map[string]any{"paused": true})
	}))
	mux.HandleFunc("POST /api/v1/resume", s.write(func(w http.ResponseWriter, r *http.Request) {
		c.Resume()
		writeJSON(w, http.StatusOK, map[string]any{"paused": false})
	}))
	mux.HandleFunc("POST /api/v1/cutover", s.write(func(w http.ResponseWriter, r *http.Request) {
		report, err := c.Cutover(r.Context())
		if err != nil {
			writeError(w, http.StatusConflict, err)
			return
		}
		writeJSON(w, http.StatusOK, report)
	}))
	mux.HandleFunc("POST /api/v1/stop", s.write(func(w http.ResponseWriter, r *http.Request) {
		c.Stop()
		writeJSON(w, http.StatusOK, map[string]any{"stopping": true})
	}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok\n")) })
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok\n")) })
	return mux
}

type server struct {
	c   Controller
	opt Options
}

// read allows loopback clients, and others with the token.
func (s *server) read(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if !isLoopback(r.RemoteAddr) && !s.authorized(r) {
			writeError(w, http.StatusUnauthorized, failure.New(failure.Usage, "SLUICE-API-AUTH",
				"reads from %s need the API token", r.RemoteAddr).WithHint("send Authorization: Bearer <token>"))
			return
		}
		h(w, r)
	}
}

// write needs the token from everyone.
func (s *server) write(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if !s.authorized(r) {
			writeError(w, http.StatusUnauthorized, failure.New(failure.Usage, "SLUICE-API-AUTH",
				"%s %s needs the API token", r.Method, r.URL.Path).WithHint("send Authorization: Bearer <token> (printed when the sync started, or --api-token)"))
			return
		}
		h(w, r)
	}
}

func (s *server) authorized(r *http.Request) bool {
	got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	return ok && s.opt.Token != "" && subtle.ConstantTimeCompare([]byte(got), []byte(s.opt.Token)) == 1
}

func isLoopback(remote string) bool {
	host, _, err := net.SplitHostPort(remote)
	if err != nil {
		return false
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

func writeError(w http.ResponseWriter, status int, err error) {
	body := map[string]any{"error": err.Error(), "code": failure.Code(err)}
	if ctx := failure.ContextOf(err); len(ctx) > 0 {
		body["context"] = ctx
	}
	writeJSON(w, status, body)
}

// Serve runs the handler on addr until ctx ends.
func Serve(ctx context.Context, addr string, h http.Handler, log *slog.Logger) (net.Addr, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, failure.Wrap(err, failure.Usage, "SLUICE-API-LISTEN", "cannot listen on %s", addr).
			WithHint("choose another --listen address, or stop what uses this one")
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
	}()
	go func() {
		if err := srv.Serve(ln); err != nil && err != http.ErrServerClosed {
			log.Error("API server stopped", "code", "SLUICE-API-SERVE", "error", err.Error())
		}
	}()
	return ln.Addr(), nil
}
