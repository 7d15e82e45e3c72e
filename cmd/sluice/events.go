package main

// The event-driven and partitioned topologies of `sluice sync`:
//
//	sluice sync --changes=events [--events nats://host:4222/STREAM]   backfill + application events
//	sluice sync --publish nats://host:4222/STREAM --partitions N      pgoutput → JetStream partitions
//	sluice apply --from nats://host:4222/STREAM --partition i/N       one partitioned applier
//
// The HTTP endpoint POST /api/v1/events is added by wrapping the API
// handler here (internal/api is not changed).

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/sluice-db/sluice/internal/api"
	"github.com/sluice-db/sluice/internal/events"
	"github.com/sluice-db/sluice/internal/failure"
	"github.com/sluice-db/sluice/internal/logging"
	"github.com/sluice-db/sluice/internal/metrics"
	"github.com/sluice-db/sluice/internal/progress"
	"github.com/sluice-db/sluice/internal/publish"
	"github.com/sluice-db/sluice/internal/syncer"
	pubevents "github.com/sluice-db/sluice/pkg/events"
)

// eventsFlags are the flags `sluice sync` takes for these topologies.
type eventsFlags struct {
	changes    string
	events     string
	consumer   string
	publish    string
	partitions int
}

func (e *eventsFlags) register(f *pflag.FlagSet) {
	f.StringVar(&e.changes, "changes", "log", "where changes come from: log (the source's logical replication) or events (application events, see docs/EVENTS.md)")
	f.StringVar(&e.events, "events", "", "with --changes=events: the JetStream stream of events, nats://host:4222/STREAM (without it events come only over POST /api/v1/events)")
	f.StringVar(&e.consumer, "consumer", "", "with --changes=events: durable JetStream consumer name (default sluice_events_<target database>)")
	f.StringVar(&e.publish, "publish", "", "publish the change stream to JetStream partitions, nats://host:4222/STREAM, for sluice apply --partition i/N")
	f.IntVar(&e.partitions, "partitions", 1, "with --publish: number of partitions (appliers)")
}

// dispatchEvents runs sync in an events topology when the flags ask for
// one; handled is false for the log-based sync.
func (a *app) dispatchEvents(cmd *cobra.Command, ef *eventsFlags, tables, listen, token string, generated bool, opt syncer.Options) (bool, error) {
	switch {
	case ef.changes != "log" && ef.changes != "events":
		return true, failure.New(failure.Usage, "SLUICE-USAGE-CHANGES", "--changes %q is not a choice", ef.changes).WithHint("use log or events")
	case ef.publish != "" && ef.changes == "events":
		return true, failure.New(failure.Usage, "SLUICE-USAGE-CHANGES", "--publish publishes the source's change log; it does not go with --changes=events")
	case ef.events != "" && ef.changes != "events":
		return true, failure.New(failure.Usage, "SLUICE-USAGE-CHANGES", "--events needs --changes=events")
	case ef.publish != "":
		return true, a.runPublish(cmd, ef, tables, listen, token, generated, opt)
	case ef.changes == "events":
		return true, a.runEventsSync(cmd, ef, tables, listen, token, generated, opt)
	}
	return false, nil
}

func parseEndpoint(flag, raw string) (pubevents.Endpoint, error) {
	// nats://TOKEN@host or nats://user:PASSWORD@host: kept out of every
	// log line and message from here on, its own errors included
	for _, secret := range pubevents.Secrets(raw) {
		logging.AddSecret(secret)
	}
	ep, err := pubevents.ParseURL(raw)
	if err != nil {
		return ep, failure.Wrap(err, failure.Usage, "SLUICE-USAGE-NATS", "%s", flag).WithHint("use nats://host:4222/STREAM")
	}
	return ep, nil
}

// opsFromFlags resolves the API and alert settings as the log-based sync
// does: --listen and --allow-origin, else the config file.
func (a *app) opsFromFlags(cmd *cobra.Command, listen string) (opsSettings, error) {
	origins, _ := cmd.Flags().GetStringArray("allow-origin")
	return a.opsSettings(listen, cmd.Flags().Changed("listen"), origins)
}

// eventsController lets the sync API drive an events sync.
type eventsController struct {
	svc *events.Service
}

func (c eventsController) Status() syncer.Status {
	es := c.svc.Status()
	// The text status reads "slot S; applied A of B": the consumer, then the
	// stream position, what is pending and the dead letters.
	st := syncer.Status{Phase: es.Phase, Topology: "events", Slot: fmt.Sprintf("events %s/%s", es.Stream, es.Consumer),
		AppliedLSN:     fmt.Sprintf("stream seq %d", es.LastStreamSeq),
		SourceLSN:      fmt.Sprintf("seq %d (%d pending, %d dead-lettered)", es.LastStreamSeq+uint64(max(es.Pending, 0)), es.Pending, es.DeadLettered),
		ChangesApplied: es.Applied + es.HTTPApplied, UptimeSeconds: es.UptimeSeconds}
	if es.Stream == "" {
		st.Slot = "events over HTTP"
		st.SourceLSN = fmt.Sprintf("HTTP (%d batches refused as invalid, %d to send again)", es.HTTPRefused, es.HTTPRetry)
	}
	st.Paused, st.Throttled = es.Paused, es.Throttled
	if es.Phase == "preparing" {
		st.SourceLSN = "" // /readyz answers 503 until events are taken
	}
	for _, t := range es.Tables {
		st.Tables = append(st.Tables, syncer.TableStatus{Source: t.Source, Target: t.Target, Phase: t.Phase, RowsCopied: t.RowsCopied,
			RowsEstimate: t.RowsEstimate, RowsPerSecond: t.RowsPerSecond, ETASeconds: t.ETASeconds, ChangesApplied: t.Events})
	}
	return st
}
func (c eventsController) Pause()  { c.svc.Pause() }
func (c eventsController) Resume() { c.svc.Resume() }
func (c eventsController) Stop()   { c.svc.Stop() }
func (c eventsController) Throttle(source, reason string) {
	c.svc.Throttle(source, reason)
}
func (c eventsController) Unthrottle(source string) { c.svc.Unthrottle(source) }

// Cutover in the events topology is the application's switch: once V1 has
// stopped emitting, it waits until the copy is done and every event is
// applied.
func (c eventsController) Cutover(ctx context.Context) (*syncer.CutoverReport, error) {
	r, err := c.svc.WaitDrained(ctx, 10*time.Minute)
	if err != nil {
		return nil, failure.Wrap(err, failure.Internal, "SLUICE-CUTOVER-DRAIN", "cutover: events not drained").
			WithHint("stop the writes (and events) of the old application first; sluice status shows what is pending")
	}
	return &syncer.CutoverReport{Fence: "none: events drained (the old application's writes stopped first)", DrainMS: r.WaitedMS,
		ChangesApplied: r.Applied, DeadLettered: r.DeadLettered, FinishedAt: time.Now(), Events: true}, nil
}

// withStatusExtra serves GET /api/v1/status from h with extra fields added
// (the topology's own status), keeping everything h reports.
func withStatusExtra(h http.Handler, key string, extra func() any) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/", h)
	mux.HandleFunc("GET /api/v1/status", func(w http.ResponseWriter, r *http.Request) {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, r)
		var body map[string]any
		if rec.Code != http.StatusOK || json.Unmarshal(rec.Body.Bytes(), &body) != nil {
			for k, v := range rec.Header() {
				w.Header()[k] = v
			}
			w.WriteHeader(rec.Code)
			w.Write(rec.Body.Bytes())
			return
		}
		body[key] = extra()
		for k, v := range rec.Header() {
			w.Header()[k] = v
		}
		w.Header().Del("Content-Length")
		var buf bytes.Buffer
		enc := json.NewEncoder(&buf)
		enc.SetIndent("", "  ")
		enc.Encode(body)
		w.WriteHeader(http.StatusOK)
		w.Write(buf.Bytes())
	})
	return mux
}

// eventsCollector exports the events counters to /metrics.
type eventsCollector struct{ svc *events.Service }

var (
	mEvents      = prometheus.NewDesc("sluice_events_total", "Application events by outcome: applied, ignored (not newer than the target's row), redelivered (applied before), dead_lettered; source jetstream or http.", []string{"outcome", "source"}, nil)
	mPending     = prometheus.NewDesc("sluice_events_pending", "Events in the JetStream stream not yet applied (-1 when unknown).", nil, nil)
	mEventsRate  = prometheus.NewDesc("sluice_events_per_second", "Events applied per second, from the first to the last batch of this run.", nil, nil)
	mHTTPRefused = prometheus.NewDesc("sluice_events_http_batches_refused_total", "Batches POST /api/v1/events did not apply, by reason: invalid (4xx, the sender must change them) or unavailable (5xx, send them again).", []string{"reason"}, nil)
)

func (c eventsCollector) Describe(ch chan<- *prometheus.Desc) { prometheus.DescribeByCollect(c, ch) }
func (c eventsCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.svc.Status()
	counter := func(v int64, labels ...string) {
		ch <- metrics.Const(mEvents, prometheus.CounterValue, float64(v), labels...)
	}
	counter(st.Applied, "applied", "jetstream")
	counter(st.Ignored, "ignored", "jetstream")
	counter(st.Redelivered, "redelivered", "jetstream")
	counter(st.DeadLettered, "dead_lettered", "jetstream")
	counter(st.HTTPApplied, "applied", "http")
	counter(st.HTTPIgnored, "ignored", "http")
	ch <- metrics.Const(mPending, prometheus.GaugeValue, float64(st.Pending))
	ch <- metrics.Const(mEventsRate, prometheus.GaugeValue, st.EventsPerSecond)
	ch <- metrics.Const(mHTTPRefused, prometheus.CounterValue, float64(st.HTTPRefused), "invalid")
	ch <- metrics.Const(mHTTPRefused, prometheus.CounterValue, float64(st.HTTPRetry), "unavailable")
}

func (a *app) runEventsSync(cmd *cobra.Command, ef *eventsFlags, tables, listen, token string, generated bool, opt syncer.Options) error {
	ctx := cmd.Context()
	ops, err := a.opsFromFlags(cmd, listen)
	if err != nil {
		return err
	}
	var ep *pubevents.Endpoint
	if ef.events != "" {
		e, err := parseEndpoint("--events", ef.events)
		if err != nil {
			return err
		}
		ep = &e
	}
	src, tgt, err := a.connect(ctx, opt.Parallel+4, true)
	if err != nil {
		return err
	}
	defer src.Close()
	defer tgt.Close()
	p, err := a.buildPlan(ctx, src, tgt, tables)
	if err != nil {
		return err
	}
	consumer := ef.consumer
	if consumer == "" {
		consumer = "sluice_events_" + strings.TrimPrefix(syncer.SlotName(tgt.Name), "sluice_")
	}
	tracker := &progress.Tracker{}
	svc, err := events.New(ctx, src, tgt, p, events.Options{Endpoint: ep, Consumer: consumer, Parallel: opt.Parallel, ChunkRows: opt.ChunkRows,
		MaxRowsPerSec: opt.MaxRowsPerSec, BatchRows: opt.BatchRows, BatchDelay: opt.BatchDelay, Tracker: tracker, Log: a.log})
	if err != nil {
		return err
	}
	run, err := a.startOps(ctx, ops, eventsController{svc}, src, tgt, "", token, opsExtras{
		metrics: func(r *prometheus.Registry) { r.MustRegister(eventsCollector{svc}) },
		// any method: the handler answers another than POST with a JSON 405
		// (SLUICE-API-METHOD), where the mux would answer in plain text
		writes: map[string]http.Handler{"/api/v1/events": events.Handler(svc, token)},
		wrap: func(h http.Handler) http.Handler {
			return withStatusExtra(h, "events", func() any { return svc.Status() })
		}})
	if err != nil {
		return err
	}
	a.log.Info("API listening", "url", "http://"+run.addr.String(), "events_endpoint", "POST /api/v1/events")
	if generated {
		fmt.Fprintf(os.Stderr, "sluice: API token for this sync (needed by POST /api/v1/events, sluice cutover/pause): %s\n", token)
		fmt.Fprintf(os.Stderr, "sluice: dashboard: %s\n", dashboardLink(run.addr, token))
	}
	stopShow := a.showProgress(ctx, tracker)
	runCtx, cancelRun := a.stopGracefully(ctx, "stopping: committing the batch being applied; run sync again to resume", svc.Stop)
	defer cancelRun()
	err = svc.Run(runCtx)
	stopShow()
	if err = run.finish(err); err != nil {
		return err
	}
	st := svc.Status()
	fmt.Fprintf(cmd.OutOrStdout(), "events sync stopped: %d events applied, %d ignored as not newer, %d redelivered, %d dead-lettered; %d over HTTP; last stream sequence %d. Run it again to resume.\n",
		st.Applied, st.Ignored, st.Redelivered, st.DeadLettered, st.HTTPApplied, st.LastStreamSeq)
	return nil
}

// publishController lets the sync API drive a publisher.
type publishController struct {
	pub *publish.Publisher
}

func (c publishController) Status() syncer.Status {
	ps := c.pub.Status()
	st := syncer.Status{Phase: ps.Phase, Slot: ps.Slot, Publication: ps.Slot, Paused: ps.Paused, Throttled: ps.Throttled, AppliedLSN: ps.ConfirmedLSN,
		SourceLSN: ps.ConfirmedLSN, UptimeSeconds: ps.UptimeSeconds,
		LagSeconds: ps.LagSeconds, WALRetainedBytes: ps.WALRetainedBytes, WALRetainedMaxBytes: ps.WALRetainedMaxBytes}
	caughtUp := 0
	for _, part := range ps.Parts {
		if part.CaughtUp {
			caughtUp++
		}
	}
	st.Slot = fmt.Sprintf("%s → %s, %d partitions", ps.Slot, ps.Stream, ps.Partitions)
	st.AppliedLSN = fmt.Sprintf("%d/%d partitions (caught up)", caughtUp, ps.Partitions)
	st.SourceLSN = "published up to " + ps.ConfirmedLSN
	for _, t := range ps.Tables {
		st.Tables = append(st.Tables, syncer.TableStatus{Source: t.Source, Target: t.Target, Phase: t.Phase, RowsCopied: t.RowsCopied,
			RowsEstimate: t.RowsEstimate, RowsPerSecond: t.RowsPerSecond, ETASeconds: t.ETASeconds, ChangesApplied: t.Changes})
		st.ChangesApplied += t.Changes // the header is the tables' sum, as in sync
	}
	if ps.Cutover != nil {
		st.Cutover = publishReport(ps.Cutover)
	}
	return st
}
func (c publishController) Pause()  { c.pub.Pause() }
func (c publishController) Resume() { c.pub.Resume() }
func (c publishController) Stop()   { c.pub.Stop() }
func (c publishController) Throttle(source, reason string) {
	c.pub.Throttle(source, reason)
}
func (c publishController) Unthrottle(source string) { c.pub.Unthrottle(source) }
func (c publishController) Cutover(ctx context.Context) (*syncer.CutoverReport, error) {
	r, err := c.pub.Cutover(ctx)
	if err != nil {
		return nil, err
	}
	return publishReport(r), nil
}

func publishReport(r *publish.CutoverReport) *syncer.CutoverReport {
	return &syncer.CutoverReport{Fence: fmt.Sprintf("%s, applied by all %d partitions", r.Fence, r.Partitions), WritePauseMS: r.WritePauseMS, LockWaitMS: r.LockWaitMS,
		DrainMS: r.DrainMS, AutoIncrement: r.AutoIncrement, AutoIncrementUnknown: r.AutoIncrementUnknown, FenceLSN: r.FenceLSN, FinishedAt: r.FinishedAt, ChangesApplied: r.Published,
		EarlierRun: r.EarlierRun}
}

func (a *app) runPublish(cmd *cobra.Command, ef *eventsFlags, tables, listen, token string, generated bool, opt syncer.Options) error {
	ctx := cmd.Context()
	ops, err := a.opsFromFlags(cmd, listen)
	if err != nil {
		return err
	}
	ep, err := parseEndpoint("--publish", ef.publish)
	if err != nil {
		return err
	}
	if ef.partitions < 1 || ef.partitions > 1024 {
		return failure.New(failure.Usage, "SLUICE-USAGE-PARTITIONS", "--partitions %d: give 1 to 1024", ef.partitions)
	}
	src, tgt, err := a.connect(ctx, opt.Parallel+4, true)
	if err != nil {
		return err
	}
	defer src.Close()
	defer tgt.Close()
	p, err := a.buildPlan(ctx, src, tgt, tables)
	if err != nil {
		return err
	}
	slot, _ := cmd.Flags().GetString("slot")
	if slot == "" {
		slot = syncer.SlotName(tgt.Name)
	}
	tracker := &progress.Tracker{}
	pub, err := publish.New(ctx, src, a.sourceConnString(), tgt, p, publish.Options{Endpoint: ep, Partitions: ef.partitions, Slot: slot, Publication: slot,
		Parallel: opt.Parallel, ChunkRows: opt.ChunkRows, FlushDelay: opt.BatchDelay, LockTimeout: opt.Cutover.LockTimeout,
		CutoverTimeout: opt.Cutover.Timeout, AutoIncrementGap: opt.Cutover.AutoIncrementGap, Tracker: tracker, Log: a.log})
	if err != nil {
		return err
	}
	run, err := a.startOps(ctx, ops, publishController{pub}, src, tgt, slot, token, opsExtras{
		wrap: func(h http.Handler) http.Handler {
			return withStatusExtra(h, "publish", func() any { return pub.Status() })
		}})
	if err != nil {
		return err
	}
	a.log.Info("API listening", "url", "http://"+run.addr.String())
	if generated {
		fmt.Fprintf(os.Stderr, "sluice: API token for this sync (needed by sluice cutover/pause): %s\n", token)
		fmt.Fprintf(os.Stderr, "sluice: dashboard: %s\n", dashboardLink(run.addr, token))
	}
	stopShow := a.showProgress(ctx, tracker)
	runCtx, cancelRun := a.stopGracefully(ctx, "stopping: confirming what JetStream stored; run the publisher again to resume", pub.Stop)
	defer cancelRun()
	err = pub.Run(runCtx)
	stopShow()
	if err = run.finish(err); err != nil {
		return err
	}
	st := pub.Status()
	if st.Cutover != nil {
		printCutoverReport(cmd.OutOrStdout(), publishReport(st.Cutover))
	}
	fmt.Fprintf(cmd.OutOrStdout(), "publisher stopped: %d messages published to %d partitions; the slot keeps the changes since %s: run it again to resume\n",
		st.Published, st.Partitions, st.ConfirmedLSN)
	return nil
}

// isLoopbackHost reports a listen host that only this machine reaches.
func isLoopbackHost(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(strings.Trim(host, "[]"))
	return ip != nil && ip.IsLoopback()
}

// applyCommand is `sluice apply --from nats://…/STREAM --partition i/N`.
func (a *app) applyCommand() *cobra.Command {
	var from, part, tables, listen string
	var batchRows int
	var batchDelay time.Duration
	cmd := &cobra.Command{
		Use:   "apply",
		Short: "Apply one partition of a change stream published with sluice sync --publish",
		Long: `apply consumes partition i of N of a change stream that sluice sync --publish puts on a
JetStream stream, and applies it to the target exactly once: the partition's progress (stream
sequence and source position) is stored in the target in the same transaction as its rows.
Run one applier per partition, on any machine that reaches NATS, the source (for the schema)
and the target; give every applier the same --tables/--config as the publisher. Ctrl-C stops
cleanly; running it again resumes.`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			if from == "" {
				return failure.New(failure.Usage, "SLUICE-USAGE-NATS", "--from is required").WithHint("use --from nats://host:4222/STREAM")
			}
			ep, err := parseEndpoint("--from", from)
			if err != nil {
				return err
			}
			if err := checkNumbers(numberFlag{"--batch-rows", batchRows, batchRows < 1, "1 or more"},
				numberFlag{"--batch-delay", batchDelay, batchDelay < 0, "0 or more"}); err != nil {
				return err
			}
			var i, n int
			if _, err := fmt.Sscanf(part, "%d/%d", &i, &n); err != nil || n < 1 || i < 0 || i >= n || fmt.Sprintf("%d/%d", i, n) != part {
				return failure.New(failure.Usage, "SLUICE-USAGE-PARTITION", "--partition %q is not i/N with 0 <= i < N", part).WithHint("e.g. --partition 0/3")
			}
			if host, _, err := net.SplitHostPort(listen); listen != "" && (err != nil || !isLoopbackHost(host)) {
				return failure.New(failure.Usage, "SLUICE-API-LISTEN", "apply --listen %q: the applier's status has no token, so it is served on loopback only", listen).
					WithHint("use --listen 127.0.0.1:PORT (or [::1]:PORT) and read it on that host, or through an SSH tunnel")
			}
			src, tgt, err := a.connect(ctx, 4, true)
			if err != nil {
				return err
			}
			defer src.Close()
			defer tgt.Close()
			p, err := a.buildPlan(ctx, src, tgt, tables)
			if err != nil {
				return err
			}
			ap := publish.NewApplier(src, tgt, p, publish.ApplierOptions{Endpoint: ep, Partition: i, Partitions: n,
				BatchRows: batchRows, BatchDelay: batchDelay, Log: a.log})
			if listen != "" {
				mux := http.NewServeMux()
				mux.HandleFunc("GET /api/v1/status", func(w http.ResponseWriter, r *http.Request) {
					w.Header().Set("Content-Type", "application/json")
					json.NewEncoder(w).Encode(ap.Status())
				})
				addr, err := api.Serve(ctx, listen, api.LocalReads(mux, a.log), a.log)
				if err != nil {
					return err
				}
				a.log.Info("status listening", "url", "http://"+addr.String()+"/api/v1/status")
			}
			runCtx, cancelRun := a.stopGracefully(ctx, "stopping: committing the batch being applied; run the applier again to resume", ap.Stop)
			defer cancelRun()
			if err := ap.Run(runCtx); err != nil {
				return err
			}
			st := ap.Status()
			fmt.Fprintf(cmd.OutOrStdout(), "applier %d/%d stopped: %d changes applied (%d this run), last stream sequence %d; run it again to resume\n",
				i, n, st.Applied, st.AppliedThisRun, st.LastSeq)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&from, "from", "", "the JetStream stream the publisher writes, nats://host:4222/STREAM")
	f.StringVar(&part, "partition", "0/1", "which partition to apply, i/N (0 <= i < N)")
	f.StringVar(&tables, "tables", "", "the publisher's --tables")
	f.StringVar(&listen, "listen", "", "serve this applier's status as JSON on this address (default: none)")
	f.IntVar(&batchRows, "batch-rows", 5000, "changes per target transaction, at most")
	f.DurationVar(&batchDelay, "batch-delay", 100*time.Millisecond, "longest a change waits for its batch")
	return cmd
}
