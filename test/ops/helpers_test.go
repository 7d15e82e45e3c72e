package ops

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sluice-db/sluice/internal/api"
	"github.com/sluice-db/sluice/internal/testenv"
)

const token = "ops-test-token-6a1f0c9e"

// syncProc is a running `sluice sync`.
type syncProc struct {
	*testenv.Proc
	pair    *testenv.Pair
	base    string // loopback URL of its API
	listen  string
	slot    string
	logFile string
	target  string
	aborted bool
}

type syncOpts struct {
	listen  string   // default: a free loopback port
	config  string   // YAML, optional
	logFile string   // --log-file, optional
	target  string   // target URL (default the pair's)
	extra   []string // more flags
	noWait  bool     // do not wait for /readyz
}

// seed makes a table of n rows (about 120 bytes each).
func seed(t *testing.T, p *testenv.Pair, n int) {
	t.Helper()
	p.PG(t, `CREATE TABLE events (id bigserial PRIMARY KEY, at timestamptz NOT NULL DEFAULT now(), kind int NOT NULL, body text NOT NULL)`)
	p.PG(t, fmt.Sprintf(`INSERT INTO events (kind, body) SELECT g %% 7, repeat(md5(g::text), 3) FROM generate_series(1, %d) g`, n))
	p.PG(t, `ANALYZE events`)
}

func startSync(t *testing.T, p *testenv.Pair, o syncOpts) *syncProc {
	t.Helper()
	if o.listen == "" {
		o.listen = testenv.FreeAddr(t)
	}
	if o.target == "" {
		o.target = p.TargetURL
	}
	s := &syncProc{pair: p, listen: o.listen, slot: p.Name, logFile: o.logFile, target: o.target}
	_, port, _ := net.SplitHostPort(o.listen)
	s.base = "http://127.0.0.1:" + port
	args := []string{"sync", "--log-format", "json", "--listen", o.listen, "--api-token", token, "--slot", s.slot,
		"--source", p.SourceURL, "--target", o.target, "--chunk-rows", "500", "--tables", "events"}
	if o.config != "" {
		path := filepath.Join(t.TempDir(), "sluice.yaml")
		if err := os.WriteFile(path, []byte(o.config), 0o600); err != nil {
			t.Fatal(err)
		}
		args = append(args, "--config", path)
	}
	if o.logFile != "" {
		args = append(args, "--log-file", o.logFile)
	}
	args = append(args, o.extra...)
	s.Proc = testenv.StartProc(t, args...)
	t.Cleanup(func() { s.abort(t) })
	if o.noWait {
		return s
	}
	deadline := time.Now().Add(90 * time.Second)
	for {
		if done, code := s.Exited(); done {
			t.Fatalf("sluice sync exited %d before it was ready:\n%s", code, testenv.Tail(s.Output(), 40))
		}
		if r, err := http.Get(s.base + "/readyz"); err == nil {
			r.Body.Close()
			if r.StatusCode == 200 {
				return s
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("sluice sync not ready after 90s:\n%s", testenv.Tail(s.Output(), 40))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// abort stops the sync through `sluice abort` (which asks the running sync
// to stop, then drops the slot, publication and metadata) and waits for it.
func (s *syncProc) abort(t *testing.T) {
	if s.aborted {
		return
	}
	s.aborted = true
	r := testenv.Run(t, nil, "abort", "--log-format", "json", "--slot", s.slot, "--api", s.base, "--api-token", token,
		"--source", s.pair.SourceURL, "--target", s.target)
	if r.Exit != 0 {
		t.Logf("sluice abort exited %d:\n%s", r.Exit, r.Stderr)
	}
	if _, ok := s.Wait(30 * time.Second); !ok {
		t.Logf("sluice sync did not stop after abort; killing it")
		s.Kill()
	}
}

// status reads the full status view.
func (s *syncProc) status(t *testing.T) api.StatusView {
	t.Helper()
	var v api.StatusView
	resp, body := call(t, "GET", s.base+"/api/v1/status", nil, "")
	if resp.StatusCode != 200 {
		t.Fatalf("GET status: %d %s", resp.StatusCode, body)
	}
	if err := json.Unmarshal([]byte(body), &v); err != nil {
		t.Fatalf("status: %v: %s", err, body)
	}
	return v
}

func rowsCopied(v api.StatusView) int64 {
	var n int64
	for _, t := range v.Tables {
		n += t.RowsCopied
	}
	return n
}

// waitFor polls cond until it holds; it fails the test after timeout, or at
// once when the sync has exited.
func (s *syncProc) waitFor(t *testing.T, timeout time.Duration, what string, cond func(api.StatusView) bool) api.StatusView {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if done, code := s.Exited(); done {
			t.Fatalf("waiting for %s: sluice sync exited %d:\n%s", what, code, testenv.Tail(s.Output(), 40))
		}
		v := s.status(t)
		if cond(v) {
			return v
		}
		if time.Now().After(deadline) {
			b, _ := json.Marshal(v)
			t.Fatalf("waiting for %s: not after %s; status %s", what, timeout, b)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

var httpClient = &http.Client{Timeout: 30 * time.Second}

// call sends one request; headers may set "Host".
func call(t *testing.T, method, url string, hdr map[string]string, body string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		if k == "Host" {
			req.Host = v
			continue
		}
		req.Header.Set(k, v)
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func bearer() map[string]string { return map[string]string{"Authorization": "Bearer " + token} }

// metric reads one sample from /metrics (-1 when absent).
func metric(t *testing.T, base, series string) float64 {
	t.Helper()
	_, body := call(t, "GET", base+"/metrics", nil, "")
	for _, line := range strings.Split(body, "\n") {
		if strings.HasPrefix(line, series+" ") {
			v, err := strconv.ParseFloat(strings.TrimSpace(line[len(series):]), 64)
			if err == nil {
				return v
			}
		}
	}
	return -1
}

// nonLoopbackIPv4 is an address of this machine other than loopback, as
// `hostname -I` shows.
func nonLoopbackIPv4() (string, bool) {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return "", false
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil && !n.IP.IsLoopback() && !n.IP.IsLinkLocalUnicast() {
			return n.IP.String(), true
		}
	}
	return "", false
}

// ---------- the log ----------

// logLine is one parsed JSON log line.
type logLine map[string]any

func (l logLine) str(k string) string { s, _ := l[k].(string); return s }

// notContext are the keys of a log record that are not context.
var notContext = map[string]bool{"time": true, "level": true, "msg": true, "code": true, "error": true, "hint": true, "exit_status": true}

func (l logLine) hasContext() bool {
	for k := range l {
		if !notContext[k] {
			return true
		}
	}
	return false
}

// checkLog checks every line of a log (the process's output or a log
// file): lines that look like JSON must be JSON; warnings and errors carry
// a code; the lines of the codes in want carry context too, and each of
// them appears; no line contains a secret. It returns the parsed lines.
func checkLog(t *testing.T, name, text string, secrets []string, want ...string) []logLine {
	t.Helper()
	var lines []logLine
	seen := map[string]bool{}
	sc := bufio.NewScanner(strings.NewReader(text))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		raw := sc.Text()
		for _, sec := range secrets {
			if sec != "" && strings.Contains(raw, sec) {
				t.Errorf("%s: a secret is in the log: %s", name, redactForReport(raw, sec))
			}
		}
		if !strings.HasPrefix(strings.TrimSpace(raw), "{") {
			continue // stdout of the command (reports), not the log
		}
		var l logLine
		if err := json.Unmarshal([]byte(raw), &l); err != nil {
			t.Errorf("%s: log line is not valid JSON: %v: %s", name, err, raw)
			continue
		}
		lines = append(lines, l)
		lvl := l.str("level")
		if lvl != "WARN" && lvl != "ERROR" {
			continue
		}
		code := l.str("code")
		if code == "" {
			t.Errorf("%s: %s line without a code: %s", name, lvl, raw)
			continue
		}
		seen[code] = true
		for _, w := range want {
			if code == w && !l.hasContext() {
				t.Errorf("%s: %s line without context: %s", name, code, raw)
			}
		}
	}
	for _, w := range want {
		if !seen[w] {
			t.Errorf("%s: no warning or error line with code %s", name, w)
		}
	}
	return lines
}

func redactForReport(s, secret string) string { return strings.ReplaceAll(s, secret, "<SECRET>") }

// find returns the lines whose code is code.
func find(lines []logLine, code string) []logLine {
	var out []logLine
	for _, l := range lines {
		if l.str("code") == code {
			out = append(out, l)
		}
	}
	return out
}

var metricLine = regexp.MustCompile(`^[a-zA-Z_:][a-zA-Z0-9_:]*(\{[^}]*\})? \S+$`)

// sleepCtx is for goroutines that hold sessions open.
func sleepCtx(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

// settled waits until the rows copied stop moving (chunks already read when
// the copy was held back are applied first) and returns the count; it fails
// the test if they keep moving for 20 seconds.
func (s *syncProc) settled(t *testing.T, why string) int64 {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	last := rowsCopied(s.status(t))
	for {
		time.Sleep(1500 * time.Millisecond)
		now := rowsCopied(s.status(t))
		if now == last {
			return now
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: the copy keeps going (%d rows)", why, now)
		}
		last = now
	}
}
