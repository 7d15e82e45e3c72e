// Package metrics exposes a running sync in the Prometheus text format on
// its own registry: rows copied, changes applied, lag in seconds and bytes,
// WAL retained, throttle state, errors by code, alerts firing, and what the
// watchers measure (disks, source load).
package metrics

import (
	"log/slog"
	"net/http"
	"sort"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/sluice-db/sluice/internal/syncer"
	"github.com/sluice-db/sluice/internal/watch"
)

// Sources are where the values come from, read at every scrape. Any may be
// nil.
type Sources struct {
	Status   func() syncer.Status
	Alerts   *watch.Manager
	Readings func() watch.Readings
	Version  string
}

// Metrics is the registry and the counters fed from outside.
type Metrics struct {
	Registry *prometheus.Registry
	errors   *prometheus.CounterVec
}

// AlertCodes are the codes sluice_alerts_firing always reports (0 when
// quiet), so alert rules need no absent().
var AlertCodes = []string{watch.CodeDisk, watch.CodeWAL, watch.CodeWALKeep, watch.CodeWALLost, watch.CodeLag,
	watch.CodeSessions, watch.CodeLongQuery, watch.CodeLockWaits, watch.CodeConnections, watch.CodeVerify, watch.CodeAbort}

var severities = []string{"warning", "high", "critical"}

// New builds the registry.
func New(src Sources) *Metrics {
	reg := prometheus.NewRegistry()
	m := &Metrics{Registry: reg,
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sluice_errors_total",
			Help: "Log records at warning level or above, by stable code and level."}, []string{"code", "level"}),
	}
	reg.MustRegister(m.errors, &collector{src: src},
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// ObserveLog counts a warning or error record (logging.SetObserver).
func (m *Metrics) ObserveLog(level slog.Level, code string) {
	lv := "warning"
	if level >= slog.LevelError {
		lv = "error"
	}
	m.errors.WithLabelValues(code, lv).Inc()
}

// Handler serves the registry.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{Registry: m.Registry})
}

type collector struct{ src Sources }

var (
	dInfo          = desc("sluice_info", "Build and sync identity; always 1.", "version", "slot")
	dUptime        = desc("sluice_uptime_seconds", "Seconds since the sync started.")
	dRowsCopied    = desc("sluice_rows_copied_total", "Rows copied, by source table.", "table")
	dRowsEstimate  = desc("sluice_rows_estimate", "Estimated rows to copy, by source table.", "table")
	dRowsRate      = desc("sluice_copy_rows_per_second", "Recent copy rate, by source table.", "table")
	dTableCopied   = desc("sluice_table_copied", "1 once a table's copy is complete and it only streams.", "table")
	dTableChanges  = desc("sluice_table_changes_applied_total", "Changes from the stream applied, by source table.", "table")
	dChanges       = desc("sluice_changes_applied_total", "Changes from the stream applied to the target.")
	dRereads       = desc("sluice_chunks_reread_total", "Chunk reads repeated because a commit raced their low watermark.")
	dLagSeconds    = desc("sluice_lag_seconds", "Replication lag: age of the oldest source commit received and not yet applied (0 when none waits).")
	dLagP99        = desc("sluice_lag_p99_seconds", "99th percentile of the apply lag over recent changes.")
	dApplyLag      = desc("sluice_apply_lag_seconds", "Target commits by lag: source commit of their oldest change to target commit.")
	dLagBytes      = desc("sluice_lag_bytes", "WAL bytes between the source's position and the applied one.")
	dWALRetained   = desc("sluice_wal_retained_bytes", "WAL the replication slot holds back on the source.")
	dWALMax        = desc("sluice_wal_retained_max_bytes", "The most WAL the slot has held back during this run.")
	dWALSafe       = desc("sluice_wal_safe_bytes", "WAL left before max_slot_wal_keep_size invalidates the slot (absent when unlimited).")
	dPaused        = desc("sluice_copy_paused", "1 while the copy is paused by a person.")
	dThrottled     = desc("sluice_copy_throttled", "1 while the copy is held back by a watcher.")
	dThrottle      = desc("sluice_copy_throttle", "1 for each watcher holding the copy back.", "source")
	dCutover       = desc("sluice_cutover_done", "1 once the cutover is done.")
	dAlertsFiring  = desc("sluice_alerts_firing", "Alerts firing now, by code and severity.", "code", "severity")
	dAlertsFired   = desc("sluice_alert_events_total", "Times an alert fired (or changed severity), by code and severity.", "code", "severity")
	dDiskUsed      = desc("sluice_disk_used_ratio", "Used share (0–1) of a watched filesystem.", "path", "roles")
	dDiskTotal     = desc("sluice_disk_total_bytes", "Size of a watched filesystem.", "path", "roles")
	dActive        = desc("sluice_source_active_sessions", "Sessions running a query on the source (sluice's own not counted).")
	dLongest       = desc("sluice_source_longest_query_seconds", "Age of the longest running query on the source.")
	dLockWaits     = desc("sluice_source_lock_waits", "Sessions waiting on a lock on the source.")
	dConnections   = desc("sluice_source_connections", "Client connections to the source.")
	dMaxConnection = desc("sluice_source_max_connections", "max_connections less superuser_reserved_connections on the source.")
)

func desc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc(name, help, labels, nil)
}

func (c *collector) Describe(ch chan<- *prometheus.Desc) { prometheus.DescribeByCollect(c, ch) }

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// Const is prometheus.MustNewConstMetric without the panic: a collection
// runs on the scrape's goroutine, where a panic ends the whole process, and
// label values come from the databases (a table name of a SQL_ASCII
// database need not be UTF-8, which Prometheus requires). Such a value is
// repaired; any other error becomes an invalid metric, which the scrape
// reports.
func Const(d *prometheus.Desc, t prometheus.ValueType, v float64, labels ...string) prometheus.Metric {
	for i, l := range labels {
		labels[i] = strings.ToValidUTF8(l, "\uFFFD")
	}
	m, err := prometheus.NewConstMetric(d, t, v, labels...)
	if err != nil {
		return prometheus.NewInvalidMetric(d, err)
	}
	return m
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- Const(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- Const(d, prometheus.CounterValue, v, labels...)
	}
	if c.src.Status != nil {
		st := c.src.Status()
		gauge(dInfo, 1, c.src.Version, st.Slot)
		gauge(dUptime, st.UptimeSeconds)
		for _, t := range st.Tables {
			counter(dRowsCopied, float64(t.RowsCopied), t.Source)
			gauge(dRowsEstimate, float64(t.RowsEstimate), t.Source)
			gauge(dRowsRate, t.RowsPerSecond, t.Source)
			gauge(dTableCopied, b2f(t.Phase == "streaming" || t.Phase == "done"), t.Source)
			counter(dTableChanges, float64(t.ChangesApplied), t.Source)
		}
		counter(dChanges, float64(st.ChangesApplied))
		counter(dRereads, float64(st.ChunksReread))
		gauge(dLagSeconds, st.LagSeconds)
		gauge(dLagP99, st.LagP99Seconds)
		if h := st.LagHistogram; h.Counts != nil {
			buckets := make(map[float64]uint64, len(h.Bounds))
			for i, b := range h.Bounds {
				buckets[b] = h.Counts[i]
			}
			ch <- prometheus.MustNewConstHistogram(dApplyLag, h.Count, h.Sum, buckets)
		}
		gauge(dLagBytes, float64(st.LagBytes))
		gauge(dWALRetained, float64(st.WALRetainedBytes))
		gauge(dWALMax, float64(st.WALRetainedMaxBytes))
		gauge(dPaused, b2f(st.Paused))
		gauge(dThrottled, b2f(len(st.Throttled) > 0))
		sources := make([]string, 0, len(st.Throttled))
		for s := range st.Throttled {
			sources = append(sources, s)
		}
		sort.Strings(sources)
		for _, s := range sources {
			gauge(dThrottle, 1, s)
		}
		gauge(dCutover, b2f(st.Cutover != nil))
	}
	if c.src.Alerts != nil {
		firing := map[[2]string]float64{}
		for _, a := range c.src.Alerts.Firing() {
			firing[[2]string{a.Code, a.Severity}]++
		}
		fired := c.src.Alerts.Fired()
		codes := append([]string(nil), AlertCodes...)
		for k := range firing {
			if !contains(codes, k[0]) {
				codes = append(codes, k[0])
			}
		}
		for _, code := range codes {
			for _, sev := range severities {
				k := [2]string{code, sev}
				gauge(dAlertsFiring, firing[k], code, sev)
				counter(dAlertsFired, fired[k], code, sev)
			}
		}
	}
	if c.src.Readings != nil {
		r := c.src.Readings()
		for _, d := range r.Disks {
			roles := joinRoles(d.Roles)
			gauge(dDiskUsed, d.UsedPercent/100, d.Path, roles)
			gauge(dDiskTotal, float64(d.TotalBytes), d.Path, roles)
		}
		if r.WAL != nil && r.WAL.SafeBytes != nil {
			gauge(dWALSafe, float64(*r.WAL.SafeBytes))
		}
		if s := r.Stress; s != nil {
			gauge(dActive, float64(s.ActiveSessions))
			gauge(dLongest, s.LongestQuerySeconds)
			gauge(dLockWaits, float64(s.LockWaits))
			gauge(dConnections, float64(s.Connections))
			gauge(dMaxConnection, float64(s.MaxConnections))
		}
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func joinRoles(roles []string) string {
	out := ""
	for i, r := range roles {
		if i > 0 {
			out += ","
		}
		out += r
	}
	return out
}
