// Package api serves a running sync over HTTP: the dashboard, status for
// people and scripts, /metrics, and the few commands that change the sync
// (pause, resume, verify, cutover, stop).
//
// Access: calls that change anything need the bearer token, from everyone.
// Reads (status, tables, alerts, metrics) need it too, except from a
// loopback client that addressed the server by a loopback name or an IP
// address (so a web page that rebinds its own domain name to 127.0.0.1
// cannot read them). Cross-origin use from browsers follows the CORS
// allow-list (cors.go); by default there is none.
package api

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/sluice-db/sluice/internal/failure"
	"github.com/sluice-db/sluice/internal/syncer"
	"github.com/sluice-db/sluice/internal/watch"
)

// Controller is what the API drives: a running sync.
type Controller interface {
	Status() syncer.Status
	Pause()
	Resume()
	Cutover(ctx context.Context) (*syncer.CutoverReport, error)
	Stop()
}

// Verifier runs verifies in the background (optional; *syncer.Syncer is one).
type Verifier interface {
	VerifyChangedRows(ctx context.Context) (syncer.VerifyReport, error)
	VerifyAll(ctx context.Context) (syncer.VerifyReport, error)
}

// Options configure the server.
type Options struct {
	Token            string // bearer token for calls that change state
	Log              *slog.Logger
	AllowOrigins     []string              // CORS allow-list; empty: same-origin only
	AllowCredentials bool                  // let allowed origins send credentials; refuses "*"
	Alerts           *watch.Manager        // nil: no alerts
	Readings         func() watch.Readings // nil: no disk/WAL/stress readings
	Metrics          http.Handler          // nil: no /metrics
	Version          string
	OnVerify         func(VerifyState) // told when a verify started through the API ends with a report (not when it fails)
	Context          context.Context   // verifies started through the API end with it; nil: they run to their end
	// WriteRoutes are more routes that change state ("POST /api/v1/events"):
	// they get the same token, origin and header rules as the API's own.
	WriteRoutes map[string]http.Handler
}

// NewToken makes a random token for a sync started without one.
func NewToken() string {
	b := make([]byte, 24)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// StatusView is GET /api/v1/status: the sync's status and what the
// watchers see. It embeds syncer.Status, so `sluice status` reads it as is.
type StatusView struct {
	syncer.Status
	Version  string          `json:"version,omitempty"`
	Alerts   []watch.Alert   `json:"alerts"`
	Readings *watch.Readings `json:"readings,omitempty"`
	Verify   VerifyState     `json:"verify"`
}

// Handler returns the API's routes. It panics on an invalid CORS
// allow-list; use New to get the error instead.
func Handler(c Controller, opt Options) http.Handler {
	h, err := New(c, opt)
	if err != nil {
		panic(err)
	}
	return h
}

// New returns the API's routes, or an error for an invalid CORS allow-list.
func New(c Controller, opt Options) (http.Handler, error) {
	if opt.Log == nil {
		opt.Log = slog.Default()
	}
	cors, err := NewCORS(opt.AllowOrigins, opt.AllowCredentials)
	if err != nil {
		return nil, err
	}
	s := &server{c: c, opt: opt, cors: cors, logged: map[string]time.Time{}}
	s.verify.state = VerifyState{State: "idle"}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/v1/status", s.read(func(w http.ResponseWriter, r *http.Request) { writeJSON(w, http.StatusOK, s.statusView()) }))
	mux.HandleFunc("GET /api/v1/tables", s.read(func(w http.ResponseWriter, r *http.Request) { writeJSON(w, http.StatusOK, c.Status().Tables) }))
	mux.HandleFunc("GET /api/v1/alerts", s.read(func(w http.ResponseWriter, r *http.Request) {
		out := map[string]any{"firing": []watch.Alert{}, "events": []watch.Event{}}
		if opt.Alerts != nil {
			out["firing"], out["events"] = nonNil(opt.Alerts.Firing()), nonNil(opt.Alerts.Events())
		}
		writeJSON(w, http.StatusOK, out)
	}))
	mux.HandleFunc("GET /api/v1/verify", s.read(func(w http.ResponseWriter, r *http.Request) { writeJSON(w, http.StatusOK, s.verifyState()) }))
	mux.HandleFunc("POST /api/v1/pause", s.write(func(w http.ResponseWriter, r *http.Request) {
		c.Pause()
		s.opt.Log.Info("copy paused through the API", "remote", r.RemoteAddr)
		writeJSON(w, http.StatusOK, map[string]any{"paused": true})
	}))
	mux.HandleFunc("POST /api/v1/resume", s.write(func(w http.ResponseWriter, r *http.Request) {
		c.Resume()
		s.opt.Log.Info("copy resumed through the API", "remote", r.RemoteAddr)
		writeJSON(w, http.StatusOK, map[string]any{"paused": false})
	}))
	mux.HandleFunc("POST /api/v1/verify", s.write(s.startVerify))
	mux.HandleFunc("POST /api/v1/cutover", s.write(func(w http.ResponseWriter, r *http.Request) {
		s.opt.Log.Info("cutover requested through the API", "remote", r.RemoteAddr)
		report, err := c.Cutover(r.Context())
		if err != nil && r.Context().Err() != nil && failure.Code(err) == "SLUICE-CUTOVER-CANCELLED" {
			// The client went away, which ends the cutover (its Ctrl-C
			// lifts the fence): the person's doing, not sluice's fault.
			s.fail(w, r, statusClientClosedRequest, err)
			return
		}
		if err != nil {
			s.fail(w, r, http.StatusConflict, err)
			return
		}
		writeJSON(w, http.StatusOK, report)
	}))
	mux.HandleFunc("POST /api/v1/stop", s.write(func(w http.ResponseWriter, r *http.Request) {
		s.opt.Log.Info("stop requested through the API", "remote", r.RemoteAddr)
		c.Stop()
		writeJSON(w, http.StatusOK, map[string]any{"stopping": true})
	}))
	if opt.Metrics != nil {
		mux.Handle("GET /metrics", s.read(opt.Metrics.ServeHTTP))
	}
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok\n") })
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		// ready once the sync streams: its source position is known
		if st := c.Status(); st.SourceLSN == "" || st.SourceLSN == "0/0" {
			w.WriteHeader(http.StatusServiceUnavailable)
			io.WriteString(w, "starting\n")
			return
		}
		io.WriteString(w, "ok\n")
	})
	for pattern, h := range opt.WriteRoutes {
		mux.HandleFunc(pattern, s.write(h.ServeHTTP))
	}
	mux.HandleFunc("GET /{$}", serveDashboard)
	mux.Handle("GET /assets/", assetHandler())
	return cors.Handler(secureHeaders(mux)), nil
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

type server struct {
	c    Controller
	opt  Options
	cors *CORS

	logMu  sync.Mutex
	logged map[string]time.Time // refusals logged lately, so a polling client cannot flood the log

	verify struct {
		mu    sync.Mutex
		state VerifyState
	}
}

func (s *server) statusView() StatusView {
	v := StatusView{Status: s.c.Status(), Version: s.opt.Version, Alerts: []watch.Alert{}, Verify: s.verifyState()}
	if s.opt.Alerts != nil {
		v.Alerts = nonNil(s.opt.Alerts.Firing())
	}
	if s.opt.Readings != nil {
		r := s.opt.Readings()
		v.Readings = &r
	}
	return v
}

// read allows loopback clients, and others with the token.
func (s *server) read(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if s.authorized(r) {
			h(w, r)
			return
		}
		// Loopback reads need no token, unless a proxy on this host passed
		// the request on: it comes from 127.0.0.1 on behalf of anyone.
		if isLoopback(r.RemoteAddr) && loopbackHost(r.Host) && !hasAuth(r) && !proxied(r) {
			h(w, r)
			return
		}
		var err *failure.Error
		switch {
		case hasAuth(r):
			err = failure.New(failure.Usage, "SLUICE-API-AUTH", "wrong API token for %s %s", r.Method, r.URL.Path).
				WithHint("send the token printed when the sync started, or given with --api-token")
		case isLoopback(r.RemoteAddr) && proxied(r):
			err = failure.New(failure.Usage, "SLUICE-API-AUTH", "reads passed on by a proxy need the API token").
				WithHint("send Authorization: Bearer <token>")
		case isLoopback(r.RemoteAddr):
			err = failure.New(failure.Usage, "SLUICE-API-AUTH", "reads addressed to host %q need the API token", r.Host).
				WithHint("open http://127.0.0.1:PORT or http://localhost:PORT, or send Authorization: Bearer <token>")
		default:
			host, _, _ := net.SplitHostPort(r.RemoteAddr)
			err = failure.New(failure.Usage, "SLUICE-API-AUTH", "reads from %s need the API token", host).
				WithHint("send Authorization: Bearer <token>")
		}
		s.fail(w, r, http.StatusUnauthorized, err)
	}
}

// write needs the token from everyone, and refuses browsers on other
// origins that the allow-list does not name.
func (s *server) write(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if o := r.Header.Get("Origin"); o != "" && !sameOrigin(r) && !s.cors.Allows(o) {
			s.fail(w, r, http.StatusForbidden, failure.New(failure.Usage, "SLUICE-API-ORIGIN",
				"%s %s from origin %q, which is not allowed", r.Method, r.URL.Path, o).
				WithHint("add the origin with --allow-origin (or http.allow_origins) if it should control the sync"))
			return
		}
		if !s.authorized(r) {
			what := "needs the API token"
			if hasAuth(r) {
				what = "was sent a wrong API token"
			}
			s.fail(w, r, http.StatusUnauthorized, failure.New(failure.Usage, "SLUICE-API-AUTH",
				"%s %s %s", r.Method, r.URL.Path, what).WithHint("send Authorization: Bearer <token> (printed when the sync started, or --api-token)"))
			return
		}
		h(w, r)
	}
}

func hasAuth(r *http.Request) bool { return r.Header.Get("Authorization") != "" }

// proxied reports a request a reverse proxy passed on (the headers nginx,
// Caddy, HAProxy and others add).
func proxied(r *http.Request) bool {
	for _, h := range []string{"Forwarded", "X-Forwarded-For", "X-Forwarded-Host", "X-Real-Ip"} {
		if r.Header.Get(h) != "" {
			return true
		}
	}
	return false
}

// statusClientClosedRequest answers a request whose client went away
// before the answer (nginx's 499): nobody reads it, but the log says why.
const statusClientClosedRequest = 499

func (s *server) authorized(r *http.Request) bool {
	scheme, got, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	ok = ok && strings.EqualFold(scheme, "Bearer") // the scheme is case-insensitive (RFC 7235)
	return ok && s.opt.Token != "" && subtle.ConstantTimeCompare([]byte(got), []byte(s.opt.Token)) == 1
}

// fail answers with the error as JSON and logs it (each kind of refusal
// from one client at most once a minute).
func (s *server) fail(w http.ResponseWriter, r *http.Request, status int, err error) {
	writeError(w, status, err)
	host, _, _ := net.SplitHostPort(r.RemoteAddr)
	// Not the message: it quotes headers the client chooses (Origin, Host),
	// and a client could vary them to flood the log.
	key := fmt.Sprint(failure.Code(err), " ", host, " ", r.Method, " ", r.URL.Path, " ", hasAuth(r))
	s.logMu.Lock()
	last, seen := s.logged[key]
	now := time.Now()
	if !seen || now.Sub(last) > time.Minute {
		if len(s.logged) > 1000 {
			s.logged = map[string]time.Time{}
		}
		s.logged[key] = now
	} else {
		s.logMu.Unlock()
		return
	}
	s.logMu.Unlock()
	attrs := []any{"code", failure.Code(err), "error", err.Error(), "status", status, "remote", r.RemoteAddr,
		"method", r.Method, "path", r.URL.Path}
	if o := r.Header.Get("Origin"); o != "" {
		attrs = append(attrs, "origin", o)
	}
	for k, v := range failure.ContextOf(err) {
		attrs = append(attrs, k, v)
	}
	if status >= 500 || status == http.StatusConflict {
		s.opt.Log.Error("API request failed", attrs...)
	} else {
		s.opt.Log.Warn("API request refused", attrs...)
	}
}

func isLoopback(remote string) bool {
	host, _, err := net.SplitHostPort(remote)
	if err != nil {
		return false
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// loopbackHost reports whether a Host header is safe for tokenless reads:
// localhost or a loopback (or unspecified) IP literal. A DNS name could be
// an attacker's, rebound to 127.0.0.1 so that a page of theirs reads the
// API same-origin; any other address means the request was meant for
// another host, and came through something on this one (a proxy that sets
// no X-Forwarded-For, a TCP forwarder) on behalf of anyone.
func loopbackHost(hostport string) bool {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	host = strings.Trim(host, "[]")
	if strings.EqualFold(host, "localhost") || strings.HasSuffix(strings.ToLower(host), ".localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && (ip.IsLoopback() || ip.IsUnspecified())
}

// LocalReads serves h, which only reads, by the rule of the API's reads
// without a token: to loopback clients that address the server by
// localhost or an IP literal and come through no proxy. For servers that
// have no token (`sluice apply --listen`).
func LocalReads(h http.Handler, log *slog.Logger) http.Handler {
	if log == nil {
		log = slog.Default()
	}
	s := &server{opt: Options{Log: log}, logged: map[string]time.Time{}}
	return secureHeaders(s.read(h.ServeHTTP))
}

func secureHeaders(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hd := w.Header()
		hd.Set("X-Content-Type-Options", "nosniff")
		hd.Set("Referrer-Policy", "no-referrer")
		hd.Set("X-Frame-Options", "DENY")
		hd.Set("Cache-Control", "no-store")
		h.ServeHTTP(w, r)
	})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

func writeError(w http.ResponseWriter, status int, err error) {
	body := map[string]any{"error": err.Error(), "code": failure.Code(err), "exit": failure.ExitCode(err)}
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
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: time.Minute, IdleTimeout: 2 * time.Minute,
		MaxHeaderBytes: 64 << 10,
		// net/http's own messages (a handler's recovered panic, a TLS
		// handshake error) as structured, redacted log lines
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelError)}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
	}()
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("API server stopped", "code", "SLUICE-API-SERVE", "error", err.Error())
		}
	}()
	return ln.Addr(), nil
}
