package config

import (
	"math"
	"strings"
	"testing"
	"time"
)

func TestAlertDefaults(t *testing.T) {
	c, err := (*File)(nil).ResolveAlerts()
	if err != nil {
		t.Fatal(err)
	}
	if c.Disk != (Limits{70, 80, 90}) || c.Interval != 10*time.Second || c.Protect.Mode != ProtectThrottle ||
		c.Protect.ThrottleAt != 2 || c.Protect.AbortDiskPercent != 95 || c.Protect.AbortWALBytes != 64<<30 ||
		!c.DataDirectories || c.StressScope != "server" || c.LagSeconds != (Limits{30, 120, 600}) {
		t.Fatalf("defaults %+v", c)
	}
}

func TestAlertSettingsParsed(t *testing.T) {
	f, err := parseFile([]byte(`
alerts:
  interval: 2s
  webhook: https://hooks.example.com/services/T/B/secret
  disk:
    warning: 50%
    high: 60
    critical: off
    paths: [/var/lib/sluice]
    source_paths: [/srv/pg/wal]
    target_paths: [/srv/mysql]
    data_directories: false
  wal:
    warning: 500MB
    high: 1GiB
    critical: 2GiB
    keep_percent: {warning: 50}
  lag: {warning: 10s, high: 1m, critical: 5m}
  stress:
    scope: database
    active_sessions: {warning: 5, high: 10, critical: 20}
    longest_query: {warning: 90}
    lock_waits: {critical: off}
protect_source: abort
`))
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Validate(); err != nil {
		t.Fatal(err)
	}
	c, _ := f.ResolveAlerts()
	if c.Disk.Warning != 50 || c.Disk.High != 60 || !math.IsInf(c.Disk.Critical, 1) || c.DataDirectories || c.DiskPaths[0] != "/var/lib/sluice" || len(c.SourcePaths) != 1 || c.SourcePaths[0] != "/srv/pg/wal" || len(c.TargetPaths) != 1 || c.TargetPaths[0] != "/srv/mysql" {
		t.Errorf("disk %+v", c)
	}
	if c.WALBytes != (Limits{500e6, 1 << 30, 2 << 30}) || c.WALKeepPercent.Warning != 50 || c.LagSeconds != (Limits{10, 60, 300}) {
		t.Errorf("wal/lag %+v %+v", c.WALBytes, c.LagSeconds)
	}
	if c.ActiveSessions != (Limits{5, 10, 20}) || c.LongestQuery.Warning != 90 || !math.IsInf(c.LockWaits.Critical, 1) || c.StressScope != "database" {
		t.Errorf("stress %+v", c)
	}
	if c.Protect.Mode != ProtectAbort || c.Protect.AbortWALBytes != 4<<30 {
		t.Errorf("protect %+v", c.Protect)
	}
	f, err = parseFile([]byte("protect_source:\n  mode: abort\n  throttle_at: warning\n  abort_wal: 10GiB\n  abort_disk: 97%\n"))
	if err != nil {
		t.Fatal(err)
	}
	c, err = f.ResolveAlerts()
	if err != nil || c.Protect.ThrottleAt != 1 || c.Protect.AbortWALBytes != 10<<30 || c.Protect.AbortDiskPercent != 97 {
		t.Fatalf("protect mapping: %+v %v", c.Protect, err)
	}
}

// Any level may be off, the lowest too (the docs say so): the others
// must still rise. "warning: off" was refused as "levels must rise".
func TestAlertLevelOff(t *testing.T) {
	f, err := parseFile([]byte("alerts:\n  lag: {warning: off}\n  disk: {warning: off, high: 85%, critical: 95%}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Validate(); err != nil {
		t.Fatalf("warning: off refused: %v", err)
	}
	c, _ := f.ResolveAlerts()
	if !math.IsInf(c.LagSeconds.Warning, 1) || !math.IsInf(c.Disk.Warning, 1) || c.Disk.High != 85 || c.Disk.Critical != 95 {
		t.Errorf("lag %+v, disk %+v", c.LagSeconds, c.Disk)
	}
	f, _ = parseFile([]byte("alerts:\n  disk: {warning: off, high: 95%, critical: 85%}\n"))
	if err := f.Validate(); err == nil || !strings.Contains(err.Error(), "levels must rise") {
		t.Errorf("high above critical with warning off: %v, want refused", err)
	}
}

func TestAlertSettingsRejected(t *testing.T) {
	for yaml, want := range map[string]string{
		"alerts:\n  disk:\n    warnng: 50\n":                         `unknown key "warnng"`,
		"alerts:\n  disk:\n    warning: 150\n":                       "alerts.disk.warning",
		"alerts:\n  disk:\n    warning: 95\n":                        "levels must rise",
		"alerts:\n  wal:\n    high: lots\n":                          "alerts.wal.high",
		"alerts:\n  lag:\n    high: soon\n":                          "alerts.lag.high",
		"alerts:\n  stress:\n    lock_waits: {warning: 1.5}\n":       "alerts.stress.lock_waits.warning",
		"alerts:\n  stress:\n    scope: planet\n":                    "alerts.stress.scope",
		"alerts:\n  interval: 1ms\n":                                 "alerts.interval",
		"alerts:\n  webhook: ftp://x\n":                              "alerts.webhook",
		"protect_source: explode\n":                                  "protect_source",
		"protect_source:\n  mode: abort\n  abort_dsk: 90\n":          `unknown key "abort_dsk"`,
		"protect_source:\n  throttle_at: sometimes\n":                "throttle_at",
		"http:\n  allow_origins: ['https://*.example.com']\n":        "http.allow_origins",
		"http:\n  allow_origins: ['*']\n  allow_credentials: true\n": `"*" is refused`,
		"http:\n  allow_origins: ['*']\n":                            `"*" is refused`,
	} {
		f, err := parseFile([]byte(yaml))
		if err == nil {
			err = f.Validate()
		}
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: error %v, want it to mention %s", yaml, err, want)
		}
	}
	f, _ := parseFile([]byte("alerts:\n  webhook: https://user:pw@x/secret-token\n  interval: 1ms\n"))
	if err := f.Validate(); err == nil || strings.Contains(err.Error(), "secret-token") {
		t.Errorf("webhook URL leaked or not checked: %v", err)
	}
}
