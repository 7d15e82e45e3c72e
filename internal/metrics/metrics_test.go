package metrics

import (
	"io"
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/sluice-db/sluice/internal/config"
	"github.com/sluice-db/sluice/internal/syncer"
	"github.com/sluice-db/sluice/internal/watch"
)

func TestScrape(t *testing.T) {
	rows := int64(10)
	m := watch.NewManager(slog.New(slog.NewJSONHandler(io.Discard, nil)))
	m.Update("lag", []watch.Observation{{Code: watch.CodeLag, Subject: "lag", What: "lag", Value: 100, Unit: watch.UnitSeconds,
		Limits: config.Limits{Warning: 10, High: 50, Critical: 1000}}})
	safe := int64(4096)
	met := New(Sources{Version: "v1.2.3",
		Status: func() syncer.Status {
			return syncer.Status{Slot: "s", LagSeconds: 1.5, LagBytes: 77,
				LagHistogram: syncer.LagHistogram{Bounds: []float64{0.1, 1}, Counts: []uint64{3, 5}, Count: 6, Sum: 12.5}, WALRetainedBytes: 1234, ChangesApplied: 9, ChunksReread: 2, Paused: true,
				Throttled: map[string]string{"stress": "busy"},
				Tables:    []syncer.TableStatus{{Source: "public.t", Phase: "copying", RowsCopied: rows, RowsEstimate: 100}}}
		},
		Alerts: m,
		Readings: func() watch.Readings {
			return watch.Readings{Disks: []watch.DiskReading{{Path: "/", Roles: []string{"log file"}, UsedPercent: 50, TotalBytes: 10}},
				WAL: &watch.WALReading{SafeBytes: &safe}, Stress: &watch.StressReading{ActiveSessions: 3, LockWaits: 1}}
		}})
	met.ObserveLog(slog.LevelError, "SLUICE-TARGET-AUTH")
	met.ObserveLog(slog.LevelWarn, "SLUICE-API-AUTH")
	scrape := func() string {
		rec := httptest.NewRecorder()
		met.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
		return rec.Body.String()
	}
	out := scrape()
	for _, want := range []string{
		`sluice_info{slot="s",version="v1.2.3"} 1`,
		`sluice_rows_copied_total{table="public.t"} 10`,
		`sluice_changes_applied_total 9`,
		`sluice_chunks_reread_total 2`,
		`sluice_lag_seconds 1.5`,
		`sluice_lag_bytes 77`,
		`sluice_apply_lag_seconds_bucket{le="0.1"} 3`,
		`sluice_apply_lag_seconds_bucket{le="1"} 5`,
		`sluice_apply_lag_seconds_bucket{le="+Inf"} 6`,
		`sluice_apply_lag_seconds_count 6`,
		`sluice_wal_retained_bytes 1234`,
		`sluice_wal_safe_bytes 4096`,
		`sluice_copy_paused 1`,
		`sluice_copy_throttled 1`,
		`sluice_copy_throttle{source="stress"} 1`,
		`sluice_errors_total{code="SLUICE-TARGET-AUTH",level="error"} 1`,
		`sluice_errors_total{code="SLUICE-API-AUTH",level="warning"} 1`,
		`sluice_alerts_firing{code="SLUICE-ALERT-LAG",severity="high"} 1`,
		`sluice_alerts_firing{code="SLUICE-ALERT-DISK",severity="critical"} 0`,
		`sluice_alert_events_total{code="SLUICE-ALERT-LAG",severity="high"} 1`,
		`sluice_disk_used_ratio{path="/",roles="log file"} 0.5`,
		`sluice_source_active_sessions 3`,
		`sluice_source_lock_waits 1`,
		`# TYPE sluice_rows_copied_total counter`,
		`go_goroutines`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("missing %s", want)
		}
	}
	rows = 20
	if !strings.Contains(scrape(), `sluice_rows_copied_total{table="public.t"} 20`) {
		t.Error("value did not move")
	}
}

// A label value that is not UTF-8 (a table name from a SQL_ASCII database)
// must not panic the scrape, which would end the whole sync.
func TestConstRepairsLabels(t *testing.T) {
	d := prometheus.NewDesc("sluice_test", "test", []string{"table"}, nil)
	m := Const(d, prometheus.GaugeValue, 1, "caf\xe9")
	var out dto.Metric
	if err := m.Write(&out); err != nil {
		t.Fatalf("a metric with a repaired label: %v", err)
	}
	if got := out.GetLabel()[0].GetValue(); got != "caf\uFFFD" {
		t.Fatalf("label %q, want %q", got, "caf\uFFFD")
	}
}
