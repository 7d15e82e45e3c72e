package config

import (
	"fmt"
	"math"
	"net/url"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/sluice-db/sluice/internal/api/origin"
)

// AlertSettings is the `alerts:` section: what the watchers look at, when
// they raise an alert and where alerts go besides the log, the dashboard and
// /metrics. Every threshold has three levels (warning, high, critical);
// leave one out for its default, or write "off" to disable it.
type AlertSettings struct {
	Interval       time.Duration `yaml:"interval"`        // how often the watchers look; default 10s
	Webhook        string        `yaml:"webhook"`         // optional: a JSON POST (Slack-compatible) per alert change
	WebhookTimeout time.Duration `yaml:"webhook_timeout"` // default 5s
	Disk           DiskAlerts    `yaml:"disk"`
	WAL            WALAlerts     `yaml:"wal"`
	Lag            Levels        `yaml:"lag"` // replication lag, a duration
	Stress         StressAlerts  `yaml:"stress"`
}

// DiskAlerts watch the filesystems sluice writes to (log file, reject
// file, extra paths) and the databases' data directories when they are on
// this machine.
type DiskAlerts struct {
	Levels          `yaml:",inline"` // percent used
	Paths           []string         `yaml:"paths"`            // more paths to watch
	SourcePaths     []string         `yaml:"source_paths"`     // the source's data or WAL directory, given by hand: they protect the source as found ones do
	TargetPaths     []string         `yaml:"target_paths"`     // the target's data directory, given by hand: its disk holds the copy back as a found one does
	DataDirectories *bool            `yaml:"data_directories"` // default true: the source's (and target's) data directory when local
}

// WALAlerts watch the WAL the replication slot holds back.
type WALAlerts struct {
	Levels      `yaml:",inline"` // retained bytes, e.g. 8GiB
	KeepPercent Levels           `yaml:"keep_percent"` // share of max_slot_wal_keep_size used
}

// StressAlerts watch how busy the source is.
type StressAlerts struct {
	Scope          string `yaml:"scope"`           // server (default) or database
	ActiveSessions Levels `yaml:"active_sessions"` // sessions running a query (sluice's own not counted)
	LongestQuery   Levels `yaml:"longest_query"`   // the oldest running query, a duration
	LockWaits      Levels `yaml:"lock_waits"`      // sessions waiting on a lock
	Connections    Levels `yaml:"connections"`     // connections as a percentage of max_connections
}

// Levels are the three thresholds of one measure.
type Levels struct {
	Warning  Threshold `yaml:"warning"`
	High     Threshold `yaml:"high"`
	Critical Threshold `yaml:"critical"`
}

// Threshold is one level as written: a number, a number with a unit
// (70%, 30s, 8GiB) or "off". It is checked and converted by Validate.
type Threshold struct {
	raw string
	set bool
}

// UnmarshalYAML takes a scalar only.
func (t *Threshold) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("line %d: a threshold is a single value such as 70%%, 30s, 8GiB or off", n.Line)
	}
	t.raw, t.set = strings.TrimSpace(n.Value), true
	return nil
}

// ProtectSettings is the `protect_source:` section. It may be written as a
// single word (`protect_source: abort`) or as a mapping.
type ProtectSettings struct {
	Mode       string    // throttle (default), abort or off
	ThrottleAt string    // warning, high (default) or critical: the stress and lag level that holds the copy back
	AbortWAL   Threshold // hard limit of retained WAL for mode abort; default twice alerts.wal.critical
	AbortDisk  Threshold // hard limit of the source disk for mode abort; default 95%
	set        bool
}

// Protect modes.
const (
	ProtectThrottle = "throttle"
	ProtectAbort    = "abort"
	ProtectOff      = "off"
)

// UnmarshalYAML accepts `protect_source: abort` and the mapping form,
// strictly: an unknown key is an error, as everywhere in the file.
func (p *ProtectSettings) UnmarshalYAML(n *yaml.Node) error {
	p.set = true
	switch n.Kind {
	case yaml.ScalarNode:
		p.Mode = strings.TrimSpace(n.Value)
		return nil
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			var err error
			switch k.Value {
			case "mode":
				err = v.Decode(&p.Mode)
			case "throttle_at":
				err = v.Decode(&p.ThrottleAt)
			case "abort_wal":
				err = v.Decode(&p.AbortWAL)
			case "abort_disk":
				err = v.Decode(&p.AbortDisk)
			default:
				return fmt.Errorf("line %d: protect_source: unknown key %q (check its spelling; keys: mode, throttle_at, abort_wal, abort_disk)", k.Line, k.Value)
			}
			if err != nil {
				return fmt.Errorf("line %d: protect_source.%s: %v", v.Line, k.Value, err)
			}
		}
		return nil
	}
	return fmt.Errorf("line %d: protect_source is a mode (throttle, abort, off) or a mapping", n.Line)
}

// Limits are resolved thresholds; +Inf means off.
type Limits struct {
	Warning, High, Critical float64
}

// Off is the value of a disabled level.
var Off = math.Inf(1)

// AlertConfig is the alerts and protect_source sections resolved: defaults
// filled in, units converted (seconds, bytes, percent, counts).
type AlertConfig struct {
	Interval        time.Duration
	Webhook         string
	WebhookTimeout  time.Duration
	Disk            Limits // percent used
	DiskPaths       []string
	SourcePaths     []string
	TargetPaths     []string
	DataDirectories bool
	WALBytes        Limits
	WALKeepPercent  Limits
	LagSeconds      Limits
	StressScope     string // server or database
	ActiveSessions  Limits
	LongestQuery    Limits // seconds
	LockWaits       Limits
	Connections     Limits // percent of max_connections
	Protect         ProtectConfig
}

// ProtectConfig is protect_source resolved.
type ProtectConfig struct {
	Mode             string
	ThrottleAt       int // 1 warning, 2 high, 3 critical
	AbortWALBytes    float64
	AbortDiskPercent float64
}

type unit int

const (
	unitPercent unit = iota
	unitCount
	unitSeconds
	unitBytes
)

// Defaults, documented in docs/OPERATIONS.md.
var (
	defaultDisk           = Limits{70, 80, 90}
	defaultWALBytes       = Limits{2 << 30, 8 << 30, 32 << 30}
	defaultWALKeep        = Limits{70, 80, 90}
	defaultLag            = Limits{30, 120, 600}
	defaultActiveSessions = Limits{32, 64, 128}
	defaultLongestQuery   = Limits{300, 900, 3600}
	defaultLockWaits      = Limits{5, 10, 20}
	defaultConnections    = Limits{70, 80, 90}
)

// ResolveAlerts resolves the alerts and protect_source sections (f may be
// nil). Validate reports the same problems.
func (f *File) ResolveAlerts() (AlertConfig, error) {
	if f == nil {
		f = &File{}
	}
	cfg, probs := f.resolveAlerts()
	if len(probs) > 0 {
		return cfg, fmt.Errorf("%s", strings.Join(probs, "; "))
	}
	return cfg, nil
}

func (f *File) resolveAlerts() (AlertConfig, []string) {
	var probs []string
	add := func(format string, args ...any) { probs = append(probs, fmt.Sprintf(format, args...)) }
	a := f.Alerts
	c := AlertConfig{Interval: a.Interval, Webhook: a.Webhook, WebhookTimeout: a.WebhookTimeout,
		DiskPaths: a.Disk.Paths, SourcePaths: a.Disk.SourcePaths, TargetPaths: a.Disk.TargetPaths, DataDirectories: a.Disk.DataDirectories == nil || *a.Disk.DataDirectories,
		StressScope: a.Stress.Scope}
	if c.Interval == 0 {
		c.Interval = 10 * time.Second
	} else if c.Interval < 100*time.Millisecond {
		add("alerts.interval: %s is too short; use at least 100ms (default 10s)", c.Interval)
	}
	if c.WebhookTimeout == 0 {
		c.WebhookTimeout = 5 * time.Second
	} else if c.WebhookTimeout < 0 {
		add("alerts.webhook_timeout: %s is negative", c.WebhookTimeout)
	}
	if c.Webhook != "" {
		u, err := url.Parse(c.Webhook)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			add("alerts.webhook: not an http(s) URL (the value is not shown: webhook URLs are secrets)")
		}
	}
	switch c.StressScope {
	case "":
		c.StressScope = "server"
	case "server", "database":
	default:
		add("alerts.stress.scope: %q is not valid; use server or database", c.StressScope)
	}
	levels := func(key string, l Levels, u unit, def Limits) Limits {
		out := def
		for _, t := range []struct {
			name string
			th   Threshold
			dst  *float64
		}{{"warning", l.Warning, &out.Warning}, {"high", l.High, &out.High}, {"critical", l.Critical, &out.Critical}} {
			if !t.th.set {
				continue
			}
			v, err := parseThreshold(t.th.raw, u)
			if err != nil {
				add("%s.%s: %v", key, t.name, err)
				continue
			}
			*t.dst = v
		}
		// a level set off (+Inf) is left out: the others must still rise
		prev := math.Inf(-1)
		for _, v := range []float64{out.Warning, out.High, out.Critical} {
			if math.IsInf(v, 1) {
				continue
			}
			if v < prev {
				add("%s: levels must rise: warning %s ≤ high %s ≤ critical %s (a level set off is left out)", key, show(out.Warning, u), show(out.High, u), show(out.Critical, u))
				break
			}
			prev = v
		}
		return out
	}
	c.Disk = levels("alerts.disk", a.Disk.Levels, unitPercent, defaultDisk)
	c.WALBytes = levels("alerts.wal", a.WAL.Levels, unitBytes, defaultWALBytes)
	c.WALKeepPercent = levels("alerts.wal.keep_percent", a.WAL.KeepPercent, unitPercent, defaultWALKeep)
	c.LagSeconds = levels("alerts.lag", a.Lag, unitSeconds, defaultLag)
	c.ActiveSessions = levels("alerts.stress.active_sessions", a.Stress.ActiveSessions, unitCount, defaultActiveSessions)
	c.LongestQuery = levels("alerts.stress.longest_query", a.Stress.LongestQuery, unitSeconds, defaultLongestQuery)
	c.LockWaits = levels("alerts.stress.lock_waits", a.Stress.LockWaits, unitCount, defaultLockWaits)
	c.Connections = levels("alerts.stress.connections", a.Stress.Connections, unitPercent, defaultConnections)
	for i, p := range c.DiskPaths {
		if strings.TrimSpace(p) == "" {
			add("alerts.disk.paths[%d]: empty path", i)
		}
	}
	for i, p := range c.SourcePaths {
		if strings.TrimSpace(p) == "" {
			add("alerts.disk.source_paths[%d]: empty path", i)
		}
	}
	for i, p := range c.TargetPaths {
		if strings.TrimSpace(p) == "" {
			add("alerts.disk.target_paths[%d]: empty path", i)
		}
	}

	p := f.Protect
	c.Protect = ProtectConfig{Mode: p.Mode, ThrottleAt: 2, AbortDiskPercent: 95}
	switch p.Mode {
	case "":
		c.Protect.Mode = ProtectThrottle
	case ProtectThrottle, ProtectAbort, ProtectOff:
	default:
		add("protect_source: mode %q is not valid; use throttle, abort or off", p.Mode)
	}
	switch p.ThrottleAt {
	case "", "high":
	case "warning":
		c.Protect.ThrottleAt = 1
	case "critical":
		c.Protect.ThrottleAt = 3
	default:
		add("protect_source.throttle_at: %q is not valid; use warning, high or critical", p.ThrottleAt)
	}
	c.Protect.AbortWALBytes = 2 * c.WALBytes.Critical
	if p.AbortWAL.set {
		if v, err := parseThreshold(p.AbortWAL.raw, unitBytes); err != nil {
			add("protect_source.abort_wal: %v", err)
		} else {
			c.Protect.AbortWALBytes = v
		}
	}
	if p.AbortDisk.set {
		if v, err := parseThreshold(p.AbortDisk.raw, unitPercent); err != nil {
			add("protect_source.abort_disk: %v", err)
		} else {
			c.Protect.AbortDiskPercent = v
		}
	}
	return c, probs
}

// validateOps checks the http, alerts and protect_source sections.
func (f *File) validateOps() []string {
	var probs []string
	if _, err := origin.ParseList(f.HTTP.AllowOrigins); err != nil {
		probs = append(probs, "http.allow_origins: "+err.Error())
	}
	_, more := f.resolveAlerts()
	return append(probs, more...)
}

func show(v float64, u unit) string {
	if math.IsInf(v, 1) {
		return "off"
	}
	switch u {
	case unitPercent:
		return strconv.FormatFloat(v, 'f', -1, 64) + "%"
	case unitSeconds:
		return (time.Duration(v * float64(time.Second))).String()
	case unitBytes:
		return FormatBytes(v)
	}
	return strconv.FormatFloat(v, 'f', -1, 64)
}

// FormatBytes writes a byte count with a binary unit (for messages).
func FormatBytes(v float64) string {
	units := []string{"B", "KiB", "MiB", "GiB", "TiB", "PiB"}
	i := 0
	for v >= 1024 && i < len(units)-1 {
		v /= 1024
		i++
	}
	if i == 0 {
		return strconv.FormatFloat(v, 'f', 0, 64) + " B"
	}
	return strconv.FormatFloat(v, 'f', 1, 64) + " " + units[i]
}

func parseThreshold(raw string, u unit) (float64, error) {
	s := strings.TrimSpace(raw)
	if strings.EqualFold(s, "off") {
		return Off, nil
	}
	switch u {
	case unitPercent:
		v, err := strconv.ParseFloat(strings.TrimSpace(strings.TrimSuffix(s, "%")), 64)
		if err != nil || math.IsNaN(v) || v <= 0 || v > 100 {
			return 0, fmt.Errorf("%q is not a percentage between 0 and 100 (or off)", raw)
		}
		return v, nil
	case unitCount:
		v, err := strconv.ParseUint(s, 10, 31)
		if err != nil || v == 0 {
			return 0, fmt.Errorf("%q is not a positive whole number (or off)", raw)
		}
		return float64(v), nil
	case unitSeconds:
		if v, err := strconv.ParseFloat(s, 64); err == nil && v > 0 && !math.IsInf(v, 0) {
			return v, nil
		}
		d, err := time.ParseDuration(s)
		if err != nil || d <= 0 {
			return 0, fmt.Errorf("%q is not a duration such as 30s, 5m or 1h (or off)", raw)
		}
		return d.Seconds(), nil
	case unitBytes:
		v, err := ParseBytes(s)
		if err != nil {
			return 0, err
		}
		return v, nil
	}
	return 0, fmt.Errorf("unknown unit")
}

// ParseBytes reads a size: a plain number of bytes or a number with a unit,
// kB/MB/GB/TB (powers of 1000) or KiB/MiB/GiB/TiB (powers of 1024).
func ParseBytes(raw string) (float64, error) {
	s := strings.TrimSpace(raw)
	i := len(s)
	for i > 0 && (s[i-1] < '0' || s[i-1] > '9') && s[i-1] != '.' {
		i--
	}
	num, suffix := strings.TrimSpace(s[:i]), strings.ToLower(strings.TrimSpace(s[i:]))
	mult := map[string]float64{"": 1, "b": 1, "kb": 1e3, "mb": 1e6, "gb": 1e9, "tb": 1e12,
		"k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40,
		"kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30, "tib": 1 << 40}[suffix]
	v, err := strconv.ParseFloat(num, 64)
	if err != nil || mult == 0 || v <= 0 || math.IsInf(v, 0) {
		return 0, fmt.Errorf("%q is not a size such as 500MB, 8GiB or 1073741824 (or off)", raw)
	}
	return v * mult, nil
}
