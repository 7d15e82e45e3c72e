package ops

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluice-db/sluice/internal/api"
	"github.com/sluice-db/sluice/internal/testenv"
)

// hookServer collects what the alert webhook receives.
type hookServer struct {
	*httptest.Server
	mu     sync.Mutex
	bodies []map[string]any
}

func newHook(t *testing.T) *hookServer {
	h := &hookServer{}
	h.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var b map[string]any
		if err := json.NewDecoder(r.Body).Decode(&b); err != nil || r.Method != http.MethodPost {
			t.Errorf("webhook: %s, body not JSON: %v", r.Method, err)
		}
		h.mu.Lock()
		h.bodies = append(h.bodies, b)
		h.mu.Unlock()
	}))
	t.Cleanup(h.Close)
	return h
}

// matching returns the bodies for which keep is true.
func (h *hookServer) matching(keep func(map[string]any) bool) []map[string]any {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []map[string]any
	for _, b := range h.bodies {
		if keep(b) {
			out = append(out, b)
		}
	}
	return out
}

func (h *hookServer) waitFor(t *testing.T, s *syncProc, what string, keep func(map[string]any) bool) map[string]any {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if m := h.matching(keep); len(m) > 0 {
			return m[0]
		}
		if done, code := s.Exited(); done {
			t.Fatalf("waiting for the webhook to receive %s: sync exited %d:\n%s", what, code, testenv.Tail(s.Output(), 30))
		}
		if time.Now().After(deadline) {
			t.Fatalf("the webhook did not receive %s; it got %v", what, h.matching(func(map[string]any) bool { return true }))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// fill writes a file of size bytes.
func fill(t *testing.T, path string, size int) {
	t.Helper()
	if err := os.WriteFile(path, make([]byte, size), 0o600); err != nil {
		t.Fatalf("fill %s: %v", path, err)
	}
}

// TestDiskAlert fills a small tmpfs that sluice writes its log file to:
// the disk alert fires (warning, then critical), is shown by the API and
// /metrics, reaches the webhook once per severity, and resolves when the
// space is freed.
func TestDiskAlert(t *testing.T) {
	t.Parallel()
	p := testenv.NewPair(t)
	mnt := filepath.Join(t.TempDir(), "small")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", mnt).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs for the disk alert (needs root): %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", "-l", mnt).Run() })
	seed(t, p, 2000)
	hook := newHook(t)
	s := startSync(t, p, syncOpts{logFile: filepath.Join(mnt, "sluice.log"),
		config: fmt.Sprintf("alerts:\n  interval: 300ms\n  webhook: %s/hooks/T000/B000/secret\n  stress:\n    scope: database\n", hook.URL)})
	isDisk := func(state, sev string) func(map[string]any) bool {
		return func(b map[string]any) bool {
			subj, _ := b["subject"].(string)
			return b["code"] == "SLUICE-ALERT-DISK" && strings.HasPrefix(subj, mnt) && b["status"] == state && (sev == "" || b["severity"] == sev)
		}
	}

	fill(t, filepath.Join(mnt, "fill"), 6<<20) // 75% of 8 MiB
	b := hook.waitFor(t, s, "the disk warning", isDisk("firing", "warning"))
	if text, _ := b["text"].(string); !strings.Contains(text, "SLUICE-ALERT-DISK") || !strings.Contains(text, mnt) {
		t.Errorf("webhook text %q", text)
	}
	v := s.waitFor(t, 10*time.Second, "the alert in the status", func(v api.StatusView) bool {
		for _, a := range v.Alerts {
			if a.Code == "SLUICE-ALERT-DISK" && strings.HasPrefix(a.Subject, mnt) && a.Severity == "warning" {
				return true
			}
		}
		return false
	})
	if len(v.Throttled) > 0 {
		t.Errorf("a warning on sluice's own disk throttled the copy: %v", v.Throttled)
	}
	if got := metric(t, s.base, `sluice_alerts_firing{code="SLUICE-ALERT-DISK",severity="warning"}`); got < 1 {
		t.Errorf("sluice_alerts_firing for the disk warning = %v", got)
	}

	fill(t, filepath.Join(mnt, "fill"), 7<<20+600<<10) // about 95%
	hook.waitFor(t, s, "the disk critical", isDisk("firing", "critical"))

	time.Sleep(time.Second) // several checks while the condition holds: no repeat
	if n := len(hook.matching(isDisk("firing", "warning"))); n != 1 {
		t.Errorf("the warning reached the webhook %d times", n)
	}
	if n := len(hook.matching(isDisk("firing", "critical"))); n != 1 {
		t.Errorf("the critical reached the webhook %d times", n)
	}

	os.Remove(filepath.Join(mnt, "fill"))
	r := hook.waitFor(t, s, "the disk resolved", isDisk("resolved", ""))
	if text, _ := r["text"].(string); !strings.HasPrefix(text, "[RESOLVED]") {
		t.Errorf("resolved text %q", text)
	}
	s.waitFor(t, 10*time.Second, "the alert to clear", func(v api.StatusView) bool {
		for _, a := range v.Alerts {
			if a.Code == "SLUICE-ALERT-DISK" && strings.HasPrefix(a.Subject, mnt) {
				return false
			}
		}
		return true
	})
	var events struct {
		Events []struct {
			Code  string `json:"code"`
			State string `json:"state"`
		} `json:"events"`
	}
	_, body := call(t, "GET", s.base+"/api/v1/alerts", nil, "")
	json.Unmarshal([]byte(body), &events)
	if len(events.Events) < 3 {
		t.Errorf("alert history %s", body)
	}
	s.abort(t)

	// The log file has the alerts as JSON with code and context; the
	// webhook's URL (a secret, as Slack's are) is never in it.
	data, err := os.ReadFile(filepath.Join(mnt, "sluice.log"))
	if err != nil {
		t.Fatal(err)
	}
	lines := checkLog(t, "log file", string(data), []string{"T000/B000/secret", token}, "SLUICE-ALERT-DISK")
	for _, l := range find(lines, "SLUICE-ALERT-DISK") {
		if l.str("mount") != mnt || l.str("severity") == "" {
			t.Errorf("disk alert line lacks its context: %v", l)
		}
	}
	checkLog(t, "sync output", s.Output(), []string{"T000/B000/secret", token}, "SLUICE-ALERT-DISK")
}

// TestThrottleOnStress holds sessions busy on the source: the throttle
// engages (the copy stops, streaming goes on), and releases after.
func TestThrottleOnStress(t *testing.T) {
	t.Parallel()
	p := testenv.NewPair(t)
	seed(t, p, 100000)
	s := startSync(t, p, syncOpts{
		config: "alerts:\n  interval: 500ms\n  stress:\n    scope: database\n    active_sessions: {warning: 5, high: 1000, critical: 2000}\nprotect_source:\n  throttle_at: warning\n",
		extra:  []string{"--max-rows-per-sec", "2000"}})
	s.waitFor(t, 60*time.Second, "the copy to start", func(v api.StatusView) bool { return rowsCopied(v) > 0 })

	stopStress := testenv.BusySessions(t, p.SourceURL, 10)

	v := s.waitFor(t, 20*time.Second, "the stress throttle", func(v api.StatusView) bool { return v.Throttled["stress"] != "" })
	if !strings.Contains(v.Throttled["stress"], "sessions running a query") {
		t.Errorf("throttle reason %q", v.Throttled["stress"])
	}
	r1 := s.settled(t, "throttled")
	time.Sleep(3 * time.Second)
	v = s.status(t)
	if r2 := rowsCopied(v); r2 != r1 {
		t.Errorf("the copy went on while throttled: %d → %d", r1, r2)
	}
	if v.Readings == nil || v.Readings.Stress == nil || v.Readings.Stress.ActiveSessions < 10 {
		t.Errorf("stress readings %+v", v.Readings)
	}
	if got := metric(t, s.base, "sluice_copy_throttled"); got != 1 {
		t.Errorf("sluice_copy_throttled = %v", got)
	}
	if got := metric(t, s.base, `sluice_copy_throttle{source="stress"}`); got != 1 {
		t.Errorf(`sluice_copy_throttle{source="stress"} = %v`, got)
	}
	// streaming goes on while the copy is held back
	c1 := v.ChangesApplied
	s.pair.PG(t, `INSERT INTO events (kind, body) SELECT 8, 'during the throttle' FROM generate_series(1, 10)`)
	s.waitFor(t, 20*time.Second, "changes applied while throttled", func(v api.StatusView) bool { return v.ChangesApplied >= c1+10 })

	stopStress()
	v = s.waitFor(t, 20*time.Second, "the throttle to release", func(v api.StatusView) bool { return len(v.Throttled) == 0 })
	s.waitFor(t, 20*time.Second, "the copy to go on", func(v api.StatusView) bool { return rowsCopied(v) > r1 })
	if got := metric(t, s.base, "sluice_copy_throttled"); got != 0 {
		t.Errorf("sluice_copy_throttled after release = %v", got)
	}
	s.abort(t)
	lines := checkLog(t, "sync output", s.Output(), []string{token}, "SLUICE-THROTTLE", "SLUICE-ALERT-STRESS-SESSIONS")
	resolved := false
	for _, l := range lines {
		if l.str("code") == "SLUICE-ALERT-STRESS-SESSIONS" && l.str("alert") == "resolved" {
			resolved = true
		}
	}
	if !resolved {
		t.Error("no resolved line for the stress alert")
	}
}

// TestProtectSourceAbort: with protect_source: abort and a hard limit the
// source's disk is over, sluice stops the migration and drops the slot.
func TestProtectSourceAbort(t *testing.T) {
	t.Parallel()
	p := testenv.NewPair(t)
	var dir string
	if err := p.Source.QueryRow(context.Background(), "SHOW data_directory").Scan(&dir); err != nil {
		t.Skipf("cannot read data_directory: %v", err)
	}
	if _, err := os.Stat(dir); err != nil {
		t.Skipf("the source's data directory %s is not on this machine", dir)
	}
	seed(t, p, 20000)
	s := startSync(t, p, syncOpts{noWait: true,
		config: "alerts:\n  interval: 300ms\nprotect_source:\n  mode: abort\n  abort_disk: 0.5%\n",
		extra:  []string{"--max-rows-per-sec", "1000"}})
	code, ok := s.Wait(90 * time.Second)
	if !ok {
		t.Fatalf("sluice sync did not abort:\n%s", testenv.Tail(s.Output(), 30))
	}
	if code != 6 {
		t.Errorf("exit status %d, want 6", code)
	}
	lines := checkLog(t, "sync output", s.Output(), []string{token}, "SLUICE-PROTECT-ABORT")
	final := false
	for _, l := range find(lines, "SLUICE-PROTECT-ABORT") {
		if l.str("msg") == "sluice failed" && l.str("slot") == s.slot {
			final = true
		}
	}
	if !final {
		t.Errorf("no final error line with the slot:\n%s", testenv.Tail(s.Output(), 20))
	}
	if slot, pub := testenv.SlotAndPublication(t, p.SourceURL, s.slot); slot || pub {
		t.Errorf("after the abort: slot %v, publication %v", slot, pub)
	}
}
