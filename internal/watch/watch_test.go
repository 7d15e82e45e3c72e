package watch

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shirou/gopsutil/v4/disk"

	"github.com/sluice-db/sluice/internal/config"
	"github.com/sluice-db/sluice/internal/syncer"
)

type buf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *buf) Write(p []byte) (int, error) { l.mu.Lock(); defer l.mu.Unlock(); return l.b.Write(p) }
func (l *buf) String() string              { l.mu.Lock(); defer l.mu.Unlock(); return l.b.String() }
func (l *buf) Reset()                      { l.mu.Lock(); defer l.mu.Unlock(); l.b.Reset() }

func (l *buf) lines(t *testing.T) []map[string]any {
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(l.String()), "\n") {
		if line == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("log line not JSON: %s", line)
		}
		out = append(out, m)
	}
	return out
}

type recorder struct {
	mu     sync.Mutex
	events []Event
}

func (r *recorder) Notify(e Event) { r.mu.Lock(); r.events = append(r.events, e); r.mu.Unlock() }
func (r *recorder) all() []Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Event(nil), r.events...)
}

func obs(v float64) []Observation {
	return []Observation{{Code: CodeDisk, Subject: "/x", What: "disk usage of /x", Value: v, Unit: UnitPercent,
		Limits: config.Limits{Warning: 70, High: 80, Critical: 90}, Context: map[string]string{"path": "/x"}}}
}

func TestManagerFiresOnceResolvesAndEscalates(t *testing.T) {
	logs := &buf{}
	rec := &recorder{}
	m := NewManager(slog.New(slog.NewJSONHandler(logs, nil)), rec)
	m.Update("disk", obs(50))
	m.Update("disk", obs(72))
	m.Update("disk", obs(75)) // same severity: no event
	m.Update("disk", obs(73))
	m.Update("disk", obs(85))   // high
	m.Update("disk", obs(79.5)) // within hysteresis of 80: stays high
	m.Update("disk", obs(92))   // critical
	m.Update("disk", obs(60))   // resolved
	m.Update("disk", obs(60))
	ev := rec.all()
	var got []string
	for _, e := range ev {
		got = append(got, e.State+":"+e.Severity)
	}
	want := "firing:warning firing:high firing:critical resolved:critical"
	if strings.Join(got, " ") != want {
		t.Fatalf("events %v, want %s", got, want)
	}
	if len(m.Firing()) != 0 {
		t.Fatalf("still firing: %+v", m.Firing())
	}
	if ev[1].Previous != "warning" || ev[3].Value != 60 {
		t.Fatalf("events %+v", ev)
	}
	if f := m.Fired(); f[[2]string{CodeDisk, "warning"}] != 1 || f[[2]string{CodeDisk, "critical"}] != 1 {
		t.Fatalf("fired %v", f)
	}
	lines := logs.lines(t)
	if len(lines) != 4 {
		t.Fatalf("%d log lines, want 4: %s", len(lines), logs.String())
	}
	for _, l := range lines {
		if l["code"] != CodeDisk || l["path"] != "/x" || l["subject"] != "/x" {
			t.Fatalf("log line without code or context: %v", l)
		}
	}
	if lines[0]["level"] != "WARN" || lines[2]["level"] != "ERROR" || lines[3]["level"] != "INFO" || lines[3]["alert"] != "resolved" {
		t.Fatalf("levels: %v", lines)
	}
	// a disk that cannot be measured this round keeps its alert: unknown is
	// not fine, and at critical the copy's pause depends on it
	m.Update("disk", obs(95))
	before := len(rec.all())
	m.Update("disk", []Observation{{Code: CodeDisk, Subject: "/x", Unmeasured: true}})
	if ev := rec.all(); len(ev) != before || len(m.Firing()) != 1 || m.Firing()[0].Severity != "critical" {
		t.Fatalf("unmeasured disk changed its alert: %d events after %d, firing %+v", len(ev), before, m.Firing())
	}
	// a subject no longer observed resolves
	m.Update("disk", nil)
	if ev := rec.all(); ev[len(ev)-1].State != "resolved" {
		t.Fatalf("not resolved when gone: %+v", ev[len(ev)-1])
	}
}

func TestWebhook(t *testing.T) {
	var mu sync.Mutex
	var bodies []map[string]any
	fails := 1
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		if fails > 0 { // the first attempt fails: the sender retries
			fails--
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		var b map[string]any
		json.NewDecoder(r.Body).Decode(&b)
		if r.Header.Get("Content-Type") != "application/json" {
			t.Errorf("content type %s", r.Header.Get("Content-Type"))
		}
		bodies = append(bodies, b)
	}))
	defer srv.Close()
	logs := &buf{}
	log := slog.New(slog.NewJSONHandler(logs, nil))
	wh := NewWebhook(srv.URL+"/hooks/SECRET-PATH", time.Second, map[string]string{"slot": "s1", "host": "h"}, log)
	wh.backoff = 10 * time.Millisecond
	m := NewManager(log, wh)
	m.Update("disk", obs(91))
	m.Update("disk", obs(10))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	wh.Close(ctx)
	// a verify or a check that ends while sluice stops still reports: it
	// must neither panic (a send on the closed queue) nor be sent
	m.Update("disk", obs(95))
	mu.Lock()
	defer mu.Unlock()
	if len(bodies) != 2 {
		t.Fatalf("webhook got %d bodies", len(bodies))
	}
	if bodies[0]["status"] != "firing" || bodies[0]["severity"] != "critical" || bodies[0]["code"] != CodeDisk ||
		!strings.Contains(bodies[0]["text"].(string), "[FIRING critical] SLUICE-ALERT-DISK") || bodies[0]["slot"] != "s1" {
		t.Fatalf("firing body %v", bodies[0])
	}
	if bodies[1]["status"] != "resolved" || !strings.HasPrefix(bodies[1]["text"].(string), "[RESOLVED]") {
		t.Fatalf("resolved body %v", bodies[1])
	}

	// a dead webhook is logged with a code, without its secret URL, also
	// when Go spells the URL otherwise than the configuration (the scheme
	// in capitals, a password)
	for _, u := range []string{"http://127.0.0.1:1/hooks/SECRET-PATH", "HTTP://127.0.0.1:1/hooks/SECRET-PATH", "http://user:pw@127.0.0.1:1/hooks/SECRET-PATH"} {
		logs.Reset()
		dead := NewWebhook(u, 200*time.Millisecond, nil, log)
		dead.backoff = time.Millisecond
		dead.Notify(Event{Alert: Alert{Code: CodeLag}, State: "firing"})
		dead.Close(ctx)
		if !strings.Contains(logs.String(), CodeWebhook) || strings.Contains(logs.String(), "SECRET-PATH") {
			t.Fatalf("dead webhook %s log: %s", u, logs.String())
		}
	}
}

type fakeSync struct {
	mu        sync.Mutex
	st        syncer.Status
	throttled map[string]string
}

func (f *fakeSync) Status() syncer.Status { f.mu.Lock(); defer f.mu.Unlock(); return f.st }
func (f *fakeSync) Throttle(source, reason string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.throttled == nil {
		f.throttled = map[string]string{}
	}
	f.throttled[source] = reason
}
func (f *fakeSync) Unthrottle(source string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.throttled, source)
}
func (f *fakeSync) held() map[string]string {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := map[string]string{}
	for k, v := range f.throttled {
		out[k] = v
	}
	return out
}

func defaults(t *testing.T) config.AlertConfig {
	c, err := (&config.File{}).ResolveAlerts()
	if err != nil {
		t.Fatal(err)
	}
	c.Interval = 10 * time.Millisecond
	return c
}

func TestLagThrottleAndRelease(t *testing.T) {
	f := &fakeSync{}
	cfg := defaults(t)
	cfg.LagSeconds = config.Limits{Warning: 1, High: 5, Critical: 60}
	w := New(f, NewManager(slog.New(slog.NewJSONHandler(io.Discard, nil))), Options{Config: cfg})
	ctx := context.Background()
	f.st.LagSeconds = 2
	w.Check(ctx)
	if len(f.held()) != 0 {
		t.Fatalf("throttled at warning with throttle_at high: %v", f.held())
	}
	f.st.LagSeconds = 7
	w.Check(ctx)
	if _, ok := f.held()[ThrottleLag]; !ok {
		t.Fatalf("lag over high did not throttle: %v", f.held())
	}
	f.st.LagSeconds = 0
	w.Check(ctx)
	if len(f.held()) != 0 {
		t.Fatalf("not released: %v", f.held())
	}
	cfg.Protect.Mode = config.ProtectOff
	w.opt.Config = cfg
	f.st.LagSeconds = 100
	w.Check(ctx)
	if len(f.held()) != 0 {
		t.Fatalf("protect_source off still throttles: %v", f.held())
	}
}

// diskUnderTest is a directory to watch and how full its disk is now.
func diskUnderTest(t *testing.T) (dir string, usedPercent float64) {
	t.Helper()
	dir = t.TempDir()
	u, err := disk.Usage(dir)
	if err != nil {
		t.Fatal(err)
	}
	return dir, u.UsedPercent
}

func TestDiskAlertAndAbort(t *testing.T) {
	dir, used := diskUnderTest(t)
	f := &fakeSync{}
	cfg := defaults(t)
	cfg.Disk = config.Limits{Warning: used / 2, High: config.Off, Critical: config.Off}
	rec := &recorder{}
	logs := &buf{}
	m := NewManager(slog.New(slog.NewJSONHandler(logs, nil)), rec)
	aborted := 0
	w := New(f, m, Options{Config: cfg, Paths: []Path{{dir + "/sluice.log", "log file"}, {dir, RoleSourceData}},
		Log: slog.New(slog.NewJSONHandler(logs, nil)), Abort: func(string) { aborted++ }})
	w.Check(context.Background())
	r := w.Readings()
	if len(r.Disks) != 1 || len(r.Disks[0].Roles) != 2 {
		t.Fatalf("readings %+v (one filesystem, two roles)", r.Disks)
	}
	if fl := m.Firing(); len(fl) != 1 || fl[0].Severity != "warning" || fl[0].Code != CodeDisk {
		t.Fatalf("firing %+v", fl)
	}
	if len(f.held()) != 0 {
		t.Fatalf("warning throttled: %v", f.held())
	}
	// critical on a database disk holds the copy back
	cfg.Disk.Critical = used / 2
	cfg.Disk.High = used / 2
	w.opt.Config = cfg
	w.Check(context.Background())
	if _, ok := f.held()[ThrottleDisk]; !ok {
		t.Fatalf("critical source disk did not throttle: %v", f.held())
	}
	// protect_source: abort at the hard limit: called once
	cfg.Protect.Mode = config.ProtectAbort
	cfg.Protect.AbortDiskPercent = used / 2
	w.opt.Config = cfg
	w.Check(context.Background())
	w.Check(context.Background())
	if aborted != 1 || w.Aborted() == "" {
		t.Fatalf("aborted %d times (%q)", aborted, w.Aborted())
	}
	if !strings.Contains(logs.String(), CodeAbort) {
		t.Fatalf("abort not logged")
	}
	// the condition clears: resolved, throttle released
	cfg.Disk = config.Limits{Warning: 99.99, High: 99.99, Critical: 99.99}
	cfg.Protect.Mode = config.ProtectThrottle
	w.opt.Config = cfg
	w.Check(context.Background())
	if len(m.Firing()) != 1 || len(f.held()) != 0 { // the abort alert stays: the migration is gone
		t.Fatalf("after clearing: firing %+v held %v", m.Firing(), f.held())
	}
	var states []string
	for _, e := range rec.all() {
		if e.Code == CodeDisk {
			states = append(states, e.State+":"+e.Severity)
		}
	}
	if strings.Join(states, " ") != "firing:warning firing:critical resolved:critical" {
		t.Fatalf("disk events %v", states)
	}
}

// TestHardLimitWithoutASlot: protect_source: abort in a sync with no slot
// to drop (the events topology, Abort nil) holds the copy at the hard
// limit, says so in the alert's hint, and lets it go once under it.
func TestHardLimitWithoutASlot(t *testing.T) {
	dir, used := diskUnderTest(t)
	f := &fakeSync{}
	cfg := defaults(t)
	cfg.Disk = config.Limits{Warning: config.Off, High: config.Off, Critical: config.Off}
	cfg.Protect.Mode = config.ProtectAbort
	cfg.Protect.AbortDiskPercent = used / 2
	m := NewManager(slog.New(slog.NewJSONHandler(&buf{}, nil)))
	w := New(f, m, Options{Config: cfg, Paths: []Path{{dir, RoleSourceData}}, Log: slog.New(slog.NewJSONHandler(&buf{}, nil))})
	w.Check(context.Background())
	if why := f.held()[ThrottleLimit]; why == "" {
		t.Fatalf("the hard limit did not hold the copy: %v", f.held())
	}
	if fl := m.Firing(); len(fl) != 1 || fl[0].Code != CodeAbort || !strings.Contains(fl[0].Hint, "no slot to drop") {
		t.Fatalf("firing %+v; want the hard limit's alert saying there is no slot to drop", fl)
	}
	if w.Aborted() != "" {
		t.Fatalf("aborted %q without an Abort", w.Aborted())
	}
	cfg.Protect.AbortDiskPercent = 99.99
	w.opt.Config = cfg
	w.Check(context.Background())
	if len(f.held()) != 0 {
		t.Fatalf("still held under the limit: %v", f.held())
	}
}

func TestIsLocalHost(t *testing.T) {
	name, _ := os.Hostname()
	for h, want := range map[string]bool{"": true, "localhost": true, "127.0.0.1": true, "::1": true, "[::1]": true,
		"/var/run/postgresql": true, name: true, "db.example.com": false, "203.0.113.9": false} {
		if got := IsLocalHost(h); got != want {
			t.Errorf("IsLocalHost(%q) = %v", h, got)
		}
	}
}

// panicOnce is a transport whose first request panics, as a bug in the
// sender would; later requests go out.
type panicOnce struct{ panicked atomic.Bool }

func (p *panicOnce) RoundTrip(r *http.Request) (*http.Response, error) {
	if p.panicked.CompareAndSwap(false, true) {
		panic("test: the sender broke")
	}
	return http.DefaultTransport.RoundTrip(r)
}

// A panic while sending one alert is logged with its stack and the next
// alert still goes out: the process neither dies with status 2 nor goes
// silent.
func TestWebhookSurvivesAPanic(t *testing.T) {
	var got atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { got.Add(1) }))
	defer srv.Close()
	logs := &buf{}
	wh := NewWebhook(srv.URL, time.Second, nil, slog.New(slog.NewJSONHandler(logs, nil)))
	wh.client.Transport = &panicOnce{} // before the first Notify: the queue orders it before the sender reads it
	wh.Notify(Event{Alert: Alert{Code: CodeDisk}, State: "firing"})
	wh.Notify(Event{Alert: Alert{Code: CodeLag}, State: "firing"})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	wh.Close(ctx)
	if got.Load() != 1 {
		t.Errorf("the webhook received %d alerts after the sender panicked on the first; want the second", got.Load())
	}
	if l := logs.String(); !strings.Contains(l, "SLUICE-PANIC") || !strings.Contains(l, `"stack":`) || !strings.Contains(l, CodeDisk) {
		t.Errorf("the panic is not logged with its code, stack and alert: %s", l)
	}
}

// A firing alert whose severity holds still reads what the check reads now:
// its context kept the figures of the moment it fired (free bytes 3000
// next to a usage that had grown).
func TestFiringAlertReadsTheCurrentContext(t *testing.T) {
	m := NewManager(slog.New(slog.NewJSONHandler(&buf{}, nil)), &recorder{})
	at := func(v float64, free string) []Observation {
		o := obs(v)
		o[0].Context = map[string]string{"path": "/x", "free_bytes": free}
		return o
	}
	m.Update("disk", at(72, "3000"))
	m.Update("disk", at(79, "200"))
	f := m.Firing()
	if len(f) != 1 || f[0].Value != 79 || f[0].Context["free_bytes"] != "200" {
		t.Fatalf("firing %+v; want value 79 with free_bytes 200", f)
	}
}
