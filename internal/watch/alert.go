// Package watch looks after a running sync and the servers around it: the
// disks sluice and the databases write to, the WAL the replication slot
// holds back, the replication lag and how stressed the source is. It raises
// alerts (log, dashboard, /metrics, webhook) when a threshold is crossed,
// once per change of severity and with a "resolved" when the condition
// clears, and it protects the source: it holds the copy back while the
// source is stressed or the lag is high, pauses it while retained WAL or a
// data directory's disk is critical (streaming goes on, so the slot drains),
// and with protect_source: abort stops the migration and drops the slot
// before the source's disk fills.
package watch

import (
	"fmt"
	"log/slog"
	"math"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/sluice-db/sluice/internal/config"
)

// Severity of an alert; OK is no alert.
type Severity int

// Severities, in rising order.
const (
	OK Severity = iota
	Warning
	High
	Critical
)

func (s Severity) String() string {
	switch s {
	case Warning:
		return "warning"
	case High:
		return "high"
	case Critical:
		return "critical"
	}
	return "ok"
}

// Of is the severity of value against limits.
func Of(value float64, l config.Limits) Severity {
	switch {
	case value >= l.Critical:
		return Critical
	case value >= l.High:
		return High
	case value >= l.Warning:
		return Warning
	}
	return OK
}

func limitOf(l config.Limits, s Severity) float64 {
	switch s {
	case Warning:
		return l.Warning
	case High:
		return l.High
	case Critical:
		return l.Critical
	}
	return math.Inf(1)
}

// Units of Observation.Value.
const (
	UnitPercent = "percent"
	UnitBytes   = "bytes"
	UnitSeconds = "seconds"
	UnitCount   = "count"
)

// Stable alert codes, explained in docs/OPERATIONS.md.
const (
	CodeDisk        = "SLUICE-ALERT-DISK"
	CodeWAL         = "SLUICE-ALERT-WAL"
	CodeWALKeep     = "SLUICE-ALERT-WAL-KEEP"
	CodeWALLost     = "SLUICE-ALERT-WAL-LOST"
	CodeLag         = "SLUICE-ALERT-LAG"
	CodeSessions    = "SLUICE-ALERT-STRESS-SESSIONS"
	CodeLongQuery   = "SLUICE-ALERT-STRESS-QUERY"
	CodeLockWaits   = "SLUICE-ALERT-STRESS-LOCKS"
	CodeConnections = "SLUICE-ALERT-STRESS-CONNECTIONS"
	CodeVerify      = "SLUICE-ALERT-VERIFY"
	CodeAbort       = "SLUICE-PROTECT-ABORT"
	CodeCheck       = "SLUICE-WATCH-CHECK"
	CodeWebhook     = "SLUICE-ALERT-WEBHOOK"
)

// Observation is one measure taken by a check.
type Observation struct {
	Code    string
	Subject string // what is measured, e.g. "/var/lib/postgresql (source data directory)"
	What    string // for messages: "disk usage of /var/lib/postgresql (source data directory)"
	Hint    string // what to do
	Value   float64
	Unit    string
	Limits  config.Limits
	Context map[string]string
	// Unmeasured says the check could not read the value this round: an
	// alert on Subject keeps its last state instead of resolving.
	Unmeasured bool
}

// Alert is a condition that holds now.
type Alert struct {
	Key       string            `json:"key"`
	Code      string            `json:"code"`
	Check     string            `json:"check"`
	Subject   string            `json:"subject"`
	Severity  string            `json:"severity"`
	Message   string            `json:"message"`
	Hint      string            `json:"hint,omitempty"`
	Value     float64           `json:"value"`
	Threshold float64           `json:"threshold"`
	Unit      string            `json:"unit"`
	Since     time.Time         `json:"since"`
	Context   map[string]string `json:"context,omitempty"`
	sev       Severity
}

// Event is a change: an alert firing (or changing severity) or resolved.
type Event struct {
	Alert
	State    string    `json:"state"` // firing or resolved
	Previous string    `json:"previous_severity,omitempty"`
	At       time.Time `json:"at"`
}

// Notifier receives every event (the webhook).
type Notifier interface{ Notify(Event) }

// hysteresis: a firing alert lowers its severity (or resolves) only once the
// value is this much (relatively) under the level it fired at, so a value
// hovering at a threshold does not flap.
const hysteresis = 0.02

const historySize = 200

// Manager keeps the alerts that fire and tells the log and the notifiers
// about every change, never about the same condition twice.
type Manager struct {
	log       *slog.Logger
	mu        sync.Mutex
	firing    map[string]*Alert   // by key
	byCheck   map[string][]string // check → keys it reported
	history   []Event
	fired     map[[2]string]float64 // code, severity → times fired
	notifiers []Notifier
}

// NewManager makes a manager logging to log.
func NewManager(log *slog.Logger, notifiers ...Notifier) *Manager {
	return &Manager{log: log, firing: map[string]*Alert{}, byCheck: map[string][]string{},
		fired: map[[2]string]float64{}, notifiers: notifiers}
}

// AddNotifier adds a notifier for the events from now on.
func (m *Manager) AddNotifier(n Notifier) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.notifiers = append(m.notifiers, n)
}

// Update records what check observed this round. Alerts of the check that
// are not observed any more resolve.
func (m *Manager) Update(check string, obs []Observation) {
	now := time.Now()
	var events []Event
	m.mu.Lock()
	seen := map[string]bool{}
	for _, o := range obs {
		key := o.Code + "|" + o.Subject
		seen[key] = true
		if o.Unmeasured {
			continue
		}
		prev := m.firing[key]
		sev := Of(o.Value, o.Limits)
		if prev != nil && sev < prev.sev && o.Value >= limitOf(o.Limits, prev.sev)*(1-hysteresis) {
			sev = prev.sev
		}
		switch {
		case prev == nil && sev == OK:
		case prev == nil || prev.sev != sev:
			if sev == OK {
				delete(m.firing, key)
				ev := Event{Alert: *prev, State: "resolved", Previous: prev.Severity, At: now}
				ev.Value, ev.Message = o.Value, fmt.Sprintf("%s is back to %s", o.What, formatValue(o.Value, o.Unit))
				events = append(events, ev)
				continue
			}
			a := &Alert{Key: key, Code: o.Code, Check: check, Subject: o.Subject, Severity: sev.String(), sev: sev,
				Hint: o.Hint, Value: o.Value, Threshold: limitOf(o.Limits, sev), Unit: o.Unit, Since: now, Context: o.Context}
			a.Message = fmt.Sprintf("%s is %s (%s at %s)", o.What, formatValue(o.Value, o.Unit), sev, formatValue(a.Threshold, o.Unit))
			ev := Event{Alert: *a, State: "firing", At: now}
			if prev != nil {
				a.Since = prev.Since
				ev.Since = prev.Since
				ev.Previous = prev.Severity
			}
			m.firing[key] = a
			m.fired[[2]string{o.Code, a.Severity}]++
			events = append(events, ev)
		default: // same severity: refresh what it reads now, no event
			prev.Value, prev.Context, prev.Hint = o.Value, o.Context, o.Hint
			prev.Message = fmt.Sprintf("%s is %s (%s at %s)", o.What, formatValue(o.Value, o.Unit), prev.sev, formatValue(prev.Threshold, o.Unit))
		}
	}
	for _, key := range m.byCheck[check] {
		if a := m.firing[key]; a != nil && !seen[key] {
			delete(m.firing, key)
			events = append(events, Event{Alert: *a, State: "resolved", Previous: a.Severity, At: now})
			events[len(events)-1].Message = a.Subject + ": no longer observed"
		}
	}
	keys := make([]string, 0, len(seen))
	for k := range seen {
		keys = append(keys, k)
	}
	m.byCheck[check] = keys
	for i := range events {
		m.history = append(m.history, events[i])
	}
	if len(m.history) > historySize {
		m.history = append([]Event(nil), m.history[len(m.history)-historySize:]...)
	}
	notifiers := append([]Notifier(nil), m.notifiers...)
	m.mu.Unlock()
	for _, ev := range events {
		m.logEvent(ev)
		for _, n := range notifiers {
			n.Notify(ev)
		}
	}
}

func (m *Manager) logEvent(ev Event) {
	attrs := []any{"code", ev.Code, "alert", ev.State, "severity", ev.Severity, "subject", ev.Subject,
		"value", ev.Value, "threshold", ev.Threshold, "unit", ev.Unit}
	if ev.Previous != "" {
		attrs = append(attrs, "previous_severity", ev.Previous)
	}
	keys := make([]string, 0, len(ev.Context))
	for k := range ev.Context {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		attrs = append(attrs, k, ev.Context[k])
	}
	if ev.State == "resolved" {
		m.log.Info("alert resolved: "+ev.Message, attrs...)
		return
	}
	if ev.Hint != "" {
		attrs = append(attrs, "hint", ev.Hint)
	}
	if ev.sev >= High {
		m.log.Error("alert: "+ev.Message, attrs...)
	} else {
		m.log.Warn("alert: "+ev.Message, attrs...)
	}
}

// Firing returns the alerts that hold now, the most severe first.
func (m *Manager) Firing() []Alert {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]Alert, 0, len(m.firing))
	for _, a := range m.firing {
		out = append(out, *a)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].sev != out[j].sev {
			return out[i].sev > out[j].sev
		}
		return out[i].Key < out[j].Key
	})
	return out
}

// Events returns the recent changes, oldest first.
func (m *Manager) Events() []Event {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]Event(nil), m.history...)
}

// Fired returns how often each (code, severity) has fired.
func (m *Manager) Fired() map[[2]string]float64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make(map[[2]string]float64, len(m.fired))
	for k, v := range m.fired {
		out[k] = v
	}
	return out
}

// MaxSeverity is the highest severity firing for codes (all when none given).
func (m *Manager) MaxSeverity(codes ...string) (Severity, string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	best, msg := OK, ""
	for _, a := range m.firing {
		match := len(codes) == 0
		for _, c := range codes {
			if a.Code == c {
				match = true
			}
		}
		if match && (a.sev > best || (a.sev == best && a.Message < msg)) {
			best, msg = a.sev, a.Message
		}
	}
	return best, msg
}

func formatValue(v float64, unit string) string {
	if math.IsInf(v, 1) {
		return "off"
	}
	switch unit {
	case UnitPercent:
		return strconv.FormatFloat(v, 'f', 1, 64) + "%"
	case UnitBytes:
		return config.FormatBytes(v)
	case UnitSeconds:
		return (time.Duration(v * float64(time.Second))).Round(100 * time.Millisecond).String()
	}
	return strconv.FormatFloat(v, 'f', -1, 64)
}
