package main

// The operations side of `sluice sync`: the HTTP API and dashboard,
// /metrics, the watchers with their alerts and webhook, and the source
// protection (throttle, abort at a hard limit).

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluice-db/sluice/internal/api"
	"github.com/sluice-db/sluice/internal/config"
	"github.com/sluice-db/sluice/internal/failure"
	"github.com/sluice-db/sluice/internal/logging"
	"github.com/sluice-db/sluice/internal/metrics"
	"github.com/sluice-db/sluice/internal/mysql"
	"github.com/sluice-db/sluice/internal/pgstream"
	"github.com/sluice-db/sluice/internal/postgres"
	"github.com/sluice-db/sluice/internal/watch"
)

// opsSettings are the sync's HTTP and alert settings, resolved and checked
// before anything connects.
type opsSettings struct {
	listen      string
	origins     []string
	credentials bool
	alerts      config.AlertConfig
}

// opsSettings resolves --listen and --allow-origin (flags win over the
// config file's http: section) and the alerts/protect_source sections.
func (a *app) opsSettings(listen string, listenSet bool, origins []string) (opsSettings, error) {
	st := opsSettings{listen: listen, origins: origins}
	if a.file != nil {
		if !listenSet && a.file.HTTP.Listen != "" {
			st.listen = a.file.HTTP.Listen
		}
		if len(st.origins) == 0 {
			st.origins = a.file.HTTP.AllowOrigins
		}
		st.credentials = a.file.HTTP.AllowCredentials
	}
	// The address's shape is checked now, before anything is connected to
	// or planned; whether it is free is known only when sluice listens.
	if _, port, err := net.SplitHostPort(st.listen); err != nil || !validPort(port) {
		return st, failure.New(failure.Usage, "SLUICE-API-LISTEN", "--listen %q is not host:port", st.listen).
			WithHint("e.g. --listen 127.0.0.1:7070 (port 0 picks a free one)")
	}
	if _, err := api.NewCORS(st.origins, st.credentials); err != nil {
		return st, err
	}
	cfg, err := a.file.ResolveAlerts()
	if err != nil {
		return st, failure.Wrap(err, failure.Usage, "SLUICE-CONFIG", "config file: alerts")
	}
	if cfg.Webhook != "" {
		logging.AddSecret(cfg.Webhook)
	}
	st.alerts = cfg
	return st, nil
}

// opsRun is the running operations side.
type opsRun struct {
	addr    net.Addr
	watcher *watch.Watcher
	webhook *watch.Webhook
	cancel  context.CancelFunc
	stopped chan struct{} // closed when the watchers have returned
	src     *postgres.Source
	slot    string // "" in the events topology, which has none
	s       watchedSync
}

// watchedSync is a sync of any topology as the operations side drives it:
// the API's controls, and the holds the watchers put on its copy.
type watchedSync interface {
	api.Controller
	Throttle(source, reason string)
	Unthrottle(source string)
}

// opsExtras is what a topology adds to the API: its own metrics, routes
// and status fields.
type opsExtras struct {
	metrics func(*prometheus.Registry)
	writes  map[string]http.Handler
	wrap    func(http.Handler) http.Handler
}

// startOps serves the API, dashboard and metrics and starts the watchers.
// slot is "" for the events topology: no WAL to watch, no slot to drop, so
// a hard limit of protect_source alerts and holds the copy, and aborts
// nothing.
func (a *app) startOps(ctx context.Context, st opsSettings, s watchedSync, src *postgres.Source, tgt *mysql.Target, slot, token string, x opsExtras) (*opsRun, error) {
	logging.AddSecret(token)
	srcCfg, tgtCfg, _ := a.resolve()
	manager := watch.NewManager(a.log)
	o := &opsRun{src: src, slot: slot, s: s}
	if st.alerts.Webhook != "" {
		host, _ := os.Hostname()
		o.webhook = watch.NewWebhook(st.alerts.Webhook, st.alerts.WebhookTimeout, map[string]string{"slot": slot, "host": host}, a.log)
		manager.AddNotifier(o.webhook)
	}
	var paths []watch.Path
	if a.flags.logFile != "" {
		if abs, err := filepath.Abs(a.flags.logFile); err == nil {
			paths = append(paths, watch.Path{Path: abs, Role: "log file"})
		}
	}
	for _, p := range st.alerts.DiskPaths {
		paths = append(paths, watch.Path{Path: p, Role: "configured path"})
	}
	for _, p := range st.alerts.SourcePaths { // as the data directory sluice finds itself
		paths = append(paths, watch.Path{Path: p, Role: watch.RoleSourceData})
	}
	for _, p := range st.alerts.TargetPaths {
		paths = append(paths, watch.Path{Path: p, Role: watch.RoleTargetData})
	}
	var abort func(string)
	if slot != "" {
		abort = func(string) { s.Stop(); o.dropCapture() }
	}
	o.watcher = watch.New(s, manager, watch.Options{Config: st.alerts, Source: src.Pool, SourceHost: srcCfg.Host,
		Target: tgt.DB, TargetHost: tgtCfg.Host, Slot: slot, Paths: paths, Log: a.log, Abort: abort})
	m := metrics.New(metrics.Sources{Status: s.Status, Alerts: manager, Readings: o.watcher.Readings, Version: version})
	logging.SetObserver(m.ObserveLog)
	if x.metrics != nil {
		x.metrics(m.Registry)
	}
	h, err := api.New(s, api.Options{Token: token, Log: a.log, AllowOrigins: st.origins, AllowCredentials: st.credentials,
		Alerts: manager, Readings: o.watcher.Readings, Metrics: m.Handler(), Version: version, Context: ctx,
		OnVerify: func(v api.VerifyState) { manager.Update("verify", verifyObservation(v)) }, WriteRoutes: x.writes})
	if err != nil {
		return nil, err
	}
	if x.wrap != nil {
		h = x.wrap(h)
	}
	addr, err := api.Serve(ctx, st.listen, h, a.log)
	if err != nil {
		return nil, err
	}
	o.addr = addr
	wctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	o.cancel, o.stopped = cancel, make(chan struct{})
	go func() {
		defer close(o.stopped)
		// Without its watchers the sync has no alerts and no protection of
		// the source: a panic in them stops it, saying why, rather than let
		// it run on unwatched or crash the process with status 2.
		if err := failure.Guard(func() error { o.watcher.Run(wctx); return nil }); err != nil {
			a.log.Error("the watchers stopped, so the sync stops too: nothing would raise alerts or protect the source", "code", failure.Code(err),
				"error", err.Error(), "stack", failure.ContextOf(err)["stack"])
			s.Stop()
		}
	}()
	return o, nil
}

// verifyObservation turns a finished verify into the verify alert's state.
func verifyObservation(v api.VerifyState) []watch.Observation {
	if v.Report == nil {
		return nil
	}
	return []watch.Observation{{Code: watch.CodeVerify, Subject: "verify", What: "rows that differ after a " + v.Report.Mode + " verify",
		Value: float64(v.Report.Differences), Unit: watch.UnitCount,
		Limits: config.Limits{Warning: config.Off, High: 1, Critical: config.Off},
		Hint:   "compare the rows named in GET /api/v1/verify; run sluice verify --repair after the sync has caught up if they persist"}}
}

// finish stops the watchers and, if they aborted the migration to protect
// the source, drops the slot and publication. It returns the error the
// command ends with, with the sync's position added to its context.
func (o *opsRun) finish(runErr error) error {
	o.cancel()
	<-o.stopped // a check still running would query connections about to close
	defer func() {
		if o.webhook != nil {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			o.webhook.Close(ctx)
			cancel()
		}
		logging.SetObserver(nil)
	}()
	if runErr != nil {
		var fe *failure.Error
		if errors.As(runErr, &fe) {
			st := o.s.Status()
			if _, ok := fe.Context["slot"]; !ok && o.slot != "" {
				fe.With("slot", o.slot)
			}
			if _, ok := fe.Context["applied_lsn"]; !ok && st.AppliedLSN != "" {
				fe.With("applied_lsn", st.AppliedLSN)
			}
		}
	}
	reason := o.watcher.Aborted()
	if reason == "" {
		return runErr
	}
	ferr := failure.New(failure.Interrupted, watch.CodeAbort, "protect_source: migration aborted to protect the source: %s", reason).
		With("slot", o.slot).
		WithHint("the replication slot and publication are dropped, so the source frees its WAL; the migration must start over: run sluice abort, empty the target tables, then sluice sync")
	if err := o.dropCapture(); err != nil {
		ferr.Err = fmt.Errorf("dropping the slot failed too: %w", err)
		ferr.Hint = "drop it by hand now: SELECT pg_drop_replication_slot('" + o.slot + "'); " + ferr.Hint
	}
	return ferr
}

// dropCapture drops the slot and publication. protect_source calls it the
// moment it aborts: the sync may be in a step that reads no stream for
// hours (building a big table's indexes), and the WAL must be freed now,
// not when that step ends. finish calls it again once the sync has
// stopped, for a slot the sync was still creating at that moment.
func (o *opsRun) dropCapture() error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	return pgstream.Drop(ctx, o.src.Pool, o.slot, o.slot)
}

// dashboardLink is the dashboard's URL with the token in the fragment,
// which the browser never sends to the server; the page keeps it in
// sessionStorage and drops it from the address bar.
func dashboardLink(addr net.Addr, token string) string {
	host, port, err := net.SplitHostPort(addr.String())
	if err != nil {
		return "http://" + addr.String() + "/"
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	return "http://" + net.JoinHostPort(host, port) + "/#token=" + token
}

// printOpsStatus adds to `sluice status` why the copy is held back and
// the alerts that fire.
func printOpsStatus(w io.Writer, v api.StatusView) {
	for source, why := range v.Throttled {
		fmt.Fprintf(w, "copy held back by %s: %s\n", source, why)
	}
	for _, a := range v.Alerts {
		fmt.Fprintf(w, "ALERT %s %s: %s\n", strings.ToUpper(a.Severity), a.Code, a.Message)
	}
}

// validPort reports whether p is a port number (0 lets the system pick) or
// a service name the system knows (http), as net.Listen takes them.
func validPort(p string) bool {
	_, err := net.LookupPort("tcp", p)
	return err == nil
}
