package api

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/cors"

	"github.com/sluice-db/sluice/internal/failure"
	"github.com/sluice-db/sluice/internal/fence"
	"github.com/sluice-db/sluice/internal/syncer"
	"github.com/sluice-db/sluice/internal/watch"
)

type fakeSync struct {
	paused    atomic.Bool
	stopped   atomic.Bool
	verifies  atomic.Int32
	failNext  atomic.Bool // the next changed-rows verify fails, as when the target is lost meanwhile
	panicNext atomic.Bool // the next changed-rows verify panics
	release   chan struct{}
	// cutoverRuns: Cutover runs until its context ends, as a real one
	// under the fence ends when its client goes away.
	cutoverRuns atomic.Bool
}

func (f *fakeSync) Status() syncer.Status {
	return syncer.Status{Phase: "copying", Slot: "s", Paused: f.paused.Load(), SourceLSN: "0/10",
		Tables: []syncer.TableStatus{{Source: "public.t", Target: "t", Phase: "copying", RowsCopied: 10, RowsEstimate: 100, ETASeconds: -1}}}
}
func (f *fakeSync) Pause()  { f.paused.Store(true) }
func (f *fakeSync) Resume() { f.paused.Store(false) }
func (f *fakeSync) Stop()   { f.stopped.Store(true) }
func (f *fakeSync) Cutover(ctx context.Context) (*syncer.CutoverReport, error) {
	if f.cutoverRuns.Load() {
		<-ctx.Done()
		return nil, fence.Ended(ctx, fmt.Errorf("cutover: draining the stream to the fence: %w", ctx.Err()))
	}
	return nil, failure.New(failure.Internal, "SLUICE-CUTOVER-LAG", "not caught up")
}
func (f *fakeSync) VerifyChangedRows(ctx context.Context) (syncer.VerifyReport, error) {
	f.verifies.Add(1)
	if f.release != nil {
		<-f.release
	}
	if f.failNext.CompareAndSwap(true, false) {
		return syncer.VerifyReport{}, failure.New(failure.Connection, "SLUICE-VERIFY-COMPARE", "target lost")
	}
	if f.panicNext.CompareAndSwap(true, false) {
		panic("a bug in the verify")
	}
	return syncer.VerifyReport{Mode: "changed", Rows: 3, Differences: 1}, nil
}
func (f *fakeSync) VerifyAll(ctx context.Context) (syncer.VerifyReport, error) {
	return syncer.VerifyReport{Mode: "full", Rows: 100}, nil
}

type lockedBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}
func (l *lockedBuf) String() string { l.mu.Lock(); defer l.mu.Unlock(); return l.b.String() }

const tok = "test-token-0123456789"

func newServer(t *testing.T, opt Options) (*httptest.Server, *fakeSync, *lockedBuf) {
	t.Helper()
	f := &fakeSync{}
	logs := &lockedBuf{}
	opt.Token = tok
	opt.Log = slog.New(slog.NewJSONHandler(logs, nil))
	h, err := New(f, opt)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv, f, logs
}

func do(t *testing.T, method, url string, hdr map[string]string, body string) *http.Response {
	t.Helper()
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	for k, v := range hdr {
		if k == "Host" {
			req.Host = v
			continue
		}
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp
}

func acHeaders(h http.Header) []string {
	var out []string
	for k := range h {
		if strings.HasPrefix(k, "Access-Control-") {
			out = append(out, k)
		}
	}
	return out
}

func hasVaryOrigin(h http.Header) bool {
	for _, v := range h.Values("Vary") {
		for _, p := range strings.Split(v, ",") {
			if strings.TrimSpace(p) == "Origin" {
				return true
			}
		}
	}
	return false
}

func TestCORSDefaultIsSameOriginOnly(t *testing.T) {
	srv, _, _ := newServer(t, Options{})
	for _, o := range []string{"https://a.example", "null", "http://127.0.0.1:1"} {
		r := do(t, "GET", srv.URL+"/api/v1/status", map[string]string{"Origin": o}, "")
		if r.StatusCode != 200 || len(acHeaders(r.Header)) > 0 || !hasVaryOrigin(r.Header) {
			t.Errorf("origin %s: status %d, CORS headers %v, Vary %v", o, r.StatusCode, acHeaders(r.Header), r.Header.Values("Vary"))
		}
		p := do(t, "OPTIONS", srv.URL+"/api/v1/pause", map[string]string{"Origin": o, "Access-Control-Request-Method": "POST"}, "")
		if len(acHeaders(p.Header)) > 0 || !hasVaryOrigin(p.Header) {
			t.Errorf("preflight from %s: CORS headers %v", o, acHeaders(p.Header))
		}
	}
}

func TestCORSAllowList(t *testing.T) {
	srv, _, _ := newServer(t, Options{AllowOrigins: []string{"https://a.example", "http://localhost:3000"}})
	cases := map[string]bool{
		"https://a.example":          true,
		"http://a.example":           false,
		"https://a.example:8443":     false,
		"https://a.example.evil.com": false,
		"https://evil.com":           false,
		"null":                       false,
		"http://localhost:3000":      true,
		"http://localhost:3001":      false,
		"https://a.example/":         false,
	}
	for o, allowed := range cases {
		r := do(t, "GET", srv.URL+"/api/v1/status", map[string]string{"Origin": o}, "")
		got := r.Header.Get("Access-Control-Allow-Origin")
		if !hasVaryOrigin(r.Header) {
			t.Errorf("%s: no Vary: Origin", o)
		}
		if allowed && got != o {
			t.Errorf("%s: Access-Control-Allow-Origin = %q, want the origin", o, got)
		}
		if !allowed && len(acHeaders(r.Header)) > 0 {
			t.Errorf("%s: CORS headers %v on a refused origin", o, acHeaders(r.Header))
		}
		if r.Header.Get("Access-Control-Allow-Credentials") != "" {
			t.Errorf("%s: credentials allowed without allow_credentials", o)
		}
	}
	// preflight: only the allowed method and headers, and a max-age
	p := do(t, "OPTIONS", srv.URL+"/api/v1/pause", map[string]string{"Origin": "https://a.example",
		"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization,content-type"}, "")
	if p.StatusCode != http.StatusNoContent || p.Header.Get("Access-Control-Allow-Origin") != "https://a.example" ||
		p.Header.Get("Access-Control-Allow-Methods") != "POST" || p.Header.Get("Access-Control-Allow-Headers") != "authorization,content-type" ||
		p.Header.Get("Access-Control-Max-Age") != "600" || !hasVaryOrigin(p.Header) {
		t.Errorf("preflight: %d %v", p.StatusCode, p.Header)
	}
	for _, bad := range []map[string]string{
		{"Origin": "https://a.example", "Access-Control-Request-Method": "DELETE"},
		{"Origin": "https://a.example", "Access-Control-Request-Method": "OPTIONS"},
		{"Origin": "https://a.example", "Access-Control-Request-Method": "PUT"},
		{"Origin": "https://a.example", "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "x-evil"},
		{"Origin": "https://a.example.evil.com", "Access-Control-Request-Method": "POST"},
		{"Origin": "null", "Access-Control-Request-Method": "GET"},
	} {
		p := do(t, "OPTIONS", srv.URL+"/api/v1/pause", bad, "")
		if len(acHeaders(p.Header)) > 0 {
			t.Errorf("preflight %v: CORS headers %v", bad, acHeaders(p.Header))
		}
	}
}

func TestCORSStarAndNull(t *testing.T) {
	// "*" is refused, with or without credentials: the API would answer
	// every web page the operator opens
	for _, creds := range []bool{false, true} {
		if _, err := NewCORS([]string{"*"}, creds); failure.Code(err) != "SLUICE-CONFIG-CORS" {
			t.Fatalf(`"*" (credentials %v): %v`, creds, err)
		}
	}
	if _, err := NewCORS([]string{"https://*.example.com"}, false); failure.Code(err) != "SLUICE-CONFIG-CORS" {
		t.Fatalf("wildcard entry: %v", err)
	}
	srv2, _, _ := newServer(t, Options{AllowOrigins: []string{"null"}, AllowCredentials: true})
	r := do(t, "GET", srv2.URL+"/api/v1/status", map[string]string{"Origin": "null"}, "")
	if r.Header.Get("Access-Control-Allow-Origin") != "null" || r.Header.Get("Access-Control-Allow-Credentials") != "true" {
		t.Errorf(`listed "null" not allowed: %v`, r.Header)
	}
}

func TestAuth(t *testing.T) {
	srv, f, logs := newServer(t, Options{AllowOrigins: []string{"https://a.example"}})
	if r := do(t, "POST", srv.URL+"/api/v1/pause", nil, ""); r.StatusCode != 401 || f.paused.Load() {
		t.Fatalf("no token: %d", r.StatusCode)
	}
	if r := do(t, "POST", srv.URL+"/api/v1/pause", map[string]string{"Authorization": "Bearer nope"}, ""); r.StatusCode != 401 || f.paused.Load() {
		t.Fatalf("wrong token: %d", r.StatusCode)
	}
	if r := do(t, "POST", srv.URL+"/api/v1/pause", map[string]string{"Authorization": "Bearer " + tok, "Origin": "https://evil.example"}, ""); r.StatusCode != 403 || f.paused.Load() {
		t.Fatalf("foreign origin: %d", r.StatusCode)
	}
	if r := do(t, "POST", srv.URL+"/api/v1/pause", map[string]string{"Authorization": "Bearer " + tok, "Origin": srv.URL}, ""); r.StatusCode != 200 || !f.paused.Load() {
		t.Fatalf("same origin with token: %d", r.StatusCode)
	}
	if r := do(t, "POST", srv.URL+"/api/v1/resume", map[string]string{"Authorization": "bearer " + tok, "Origin": "https://a.example"}, ""); r.StatusCode != 200 || f.paused.Load() {
		t.Fatalf("allowed origin with token (scheme written \"bearer\"): %d", r.StatusCode)
	}
	// reads: loopback needs no token, but a DNS name in Host does (rebinding)
	if r := do(t, "GET", srv.URL+"/api/v1/status", nil, ""); r.StatusCode != 200 {
		t.Fatalf("loopback read: %d", r.StatusCode)
	}
	if r := do(t, "GET", srv.URL+"/api/v1/status", map[string]string{"Host": "localhost:1234"}, ""); r.StatusCode != 200 {
		t.Fatalf("loopback read as localhost: %d", r.StatusCode)
	}
	if r := do(t, "GET", srv.URL+"/api/v1/status", map[string]string{"Host": "rebind.evil.example:80"}, ""); r.StatusCode != 401 {
		t.Fatalf("read with a DNS Host: %d", r.StatusCode)
	}
	// another host's address: passed on by something on this host (a proxy
	// keeping the client's Host, a TCP forwarder) for anyone
	for _, host := range []string{"203.0.113.5", "10.1.2.3:7171", "[2001:db8::1]:7070"} {
		if r := do(t, "GET", srv.URL+"/api/v1/status", map[string]string{"Host": host}, ""); r.StatusCode != 401 {
			t.Errorf("read with Host %s from loopback: %d, want 401", host, r.StatusCode)
		}
	}
	if r := do(t, "GET", srv.URL+"/api/v1/status", map[string]string{"Host": "[::1]:7070"}, ""); r.StatusCode != 200 {
		t.Fatalf("loopback read as [::1]: %d", r.StatusCode)
	}
	if r := do(t, "GET", srv.URL+"/api/v1/status", map[string]string{"Host": "rebind.evil.example", "Authorization": "Bearer " + tok}, ""); r.StatusCode != 200 {
		t.Fatalf("read with a DNS Host and the token: %d", r.StatusCode)
	}
	if r := do(t, "GET", srv.URL+"/api/v1/status", map[string]string{"Authorization": "Bearer wrong"}, ""); r.StatusCode != 401 {
		t.Fatalf("read with a wrong token: %d", r.StatusCode)
	}
	for _, p := range []string{"/healthz", "/readyz", "/"} {
		if r := do(t, "GET", srv.URL+p, map[string]string{"Host": "x.example"}, ""); r.StatusCode != 200 {
			t.Errorf("%s: %d", p, r.StatusCode)
		}
	}
	// every refusal is one JSON log line with a code; the token never appears
	for _, line := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("log line not JSON: %s", line)
		}
		if m["level"] == "WARN" && (m["code"] == nil || m["path"] == nil || m["remote"] == nil) {
			t.Errorf("refusal without code or context: %s", line)
		}
		if strings.Contains(line, tok) {
			t.Errorf("token in log: %s", line)
		}
	}
	if !strings.Contains(logs.String(), "SLUICE-API-ORIGIN") || strings.Count(logs.String(), "SLUICE-API-AUTH") < 3 {
		t.Errorf("refusals not logged: %s", logs.String())
	}
	// a proxy on this host passes requests on from 127.0.0.1 for anyone:
	// then reads need the token too
	for _, h := range []string{"X-Forwarded-For", "Forwarded", "X-Real-IP"} {
		if r := do(t, "GET", srv.URL+"/api/v1/status", map[string]string{h: "203.0.113.9"}, ""); r.StatusCode != 401 {
			t.Errorf("a read passed on by a proxy (%s) without the token: %d", h, r.StatusCode)
		}
	}
	if r := do(t, "GET", srv.URL+"/api/v1/status", map[string]string{"X-Forwarded-For": "203.0.113.9", "Authorization": "Bearer " + tok}, ""); r.StatusCode != 200 {
		t.Errorf("a read passed on by a proxy with the token: %d", r.StatusCode)
	}
	// a client varying the headers its refusals quote is still logged once
	before := strings.Count(logs.String(), "SLUICE-API-ORIGIN")
	for i := range 20 {
		do(t, "POST", srv.URL+"/api/v1/pause", map[string]string{"Authorization": "Bearer " + tok, "Origin": fmt.Sprintf("https://evil%d.example", i)}, "")
	}
	if n := strings.Count(logs.String(), "SLUICE-API-ORIGIN") - before; n > 1 {
		t.Errorf("20 refusals with varied origins from one client logged %d times; want at most once a minute", n)
	}
}

func TestDashboardHeaders(t *testing.T) {
	srv, _, _ := newServer(t, Options{})
	resp, err := http.Get(srv.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	csp := resp.Header.Get("Content-Security-Policy")
	if !strings.Contains(csp, "script-src 'self'") || !strings.Contains(csp, "frame-ancestors 'none'") || resp.Header.Get("X-Frame-Options") != "DENY" {
		t.Errorf("headers %v", resp.Header)
	}
	if !strings.Contains(string(body), "/assets/app.js") || strings.Contains(string(body), "https://") {
		t.Errorf("page refers to something outside the binary")
	}
	for _, a := range []string{"/assets/app.js", "/assets/app.css"} {
		r := do(t, "GET", srv.URL+a, nil, "")
		if r.StatusCode != 200 {
			t.Errorf("%s: %d", a, r.StatusCode)
		}
	}
	js, _ := dashboardFS.ReadFile("dashboard/app.js")
	css, _ := dashboardFS.ReadFile("dashboard/app.css")
	for _, s := range []string{strings.ReplaceAll(string(js), "'http://www.w3.org/2000/svg'", ""), string(css)} {
		if strings.Contains(s, "http://") || strings.Contains(s, "https://") || strings.Contains(s, "@import") || strings.Contains(s, "url(") || strings.Contains(s, "//cdn") {
			t.Errorf("an asset loads something from elsewhere")
		}
	}
	if strings.Contains(string(js), "innerHTML") {
		t.Errorf("app.js uses innerHTML; values must go in as text")
	}
}

// A panic in a verify started through the API ran on a goroutine of its
// own, and ended the whole sync with Go's status 2 and a raw trace (which
// systemd is told not to restart after): the verify fails with
// SLUICE-PANIC instead, and the sync goes on.
func TestVerifyPanicFailsTheVerifyOnly(t *testing.T) {
	srv, f, logs := newServer(t, Options{})
	f.panicNext.Store(true)
	if r := do(t, "POST", srv.URL+"/api/v1/verify", map[string]string{"Authorization": "Bearer " + tok}, `{"mode":"changed"}`); r.StatusCode != http.StatusAccepted {
		t.Fatalf("verify: %d", r.StatusCode)
	}
	v := waitVerify(t, srv.URL, "failed")
	if v.Verify.Code != "SLUICE-PANIC" {
		t.Fatalf("verify after a panic: %+v; want failed with SLUICE-PANIC", v.Verify)
	}
	// the state is set before the line is logged
	for deadline := time.Now().Add(5 * time.Second); !strings.Contains(logs.String(), `"code":"SLUICE-PANIC"`); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no SLUICE-PANIC log line:\n%s", logs)
		}
	}
}

func TestVerifyInBackground(t *testing.T) {
	var got []VerifyState
	var mu sync.Mutex
	srv, f, _ := newServer(t, Options{OnVerify: func(v VerifyState) { mu.Lock(); got = append(got, v); mu.Unlock() }})
	f.release = make(chan struct{})
	auth := map[string]string{"Authorization": "Bearer " + tok}
	if r := do(t, "POST", srv.URL+"/api/v1/verify", auth, `{"mode":"changed"}`); r.StatusCode != http.StatusAccepted {
		t.Fatalf("verify: %d", r.StatusCode)
	}
	if r := do(t, "POST", srv.URL+"/api/v1/verify", auth, ``); r.StatusCode != http.StatusConflict {
		t.Fatalf("second verify while one runs: %d", r.StatusCode)
	}
	if r := do(t, "POST", srv.URL+"/api/v1/verify", auth, `{"mode":"full"}`); r.StatusCode != http.StatusConflict {
		t.Fatalf("full verify while copying: %d", r.StatusCode)
	}
	if r := do(t, "POST", srv.URL+"/api/v1/verify", auth, `{"mode":"half"}`); r.StatusCode != http.StatusBadRequest {
		t.Fatalf("bad mode: %d", r.StatusCode)
	}
	close(f.release)
	v := waitVerify(t, srv.URL, "done")
	if v.Verify.Report.Differences != 1 || v.Tables[0].Source != "public.t" {
		t.Fatalf("status %+v", v)
	}
	calls := func() []VerifyState {
		deadline := time.Now().Add(5 * time.Second)
		for {
			mu.Lock()
			n := append([]VerifyState(nil), got...)
			mu.Unlock()
			if len(n) > 0 || time.Now().After(deadline) {
				return n
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	if c := calls(); len(c) != 1 || c[0].Report.Rows != 3 {
		t.Fatalf("OnVerify: %+v", c)
	}

	// A verify that fails says nothing about the rows: the differences the
	// last one found stay on record, and the alert is not told they are gone.
	f.failNext.Store(true)
	if r := do(t, "POST", srv.URL+"/api/v1/verify", auth, ``); r.StatusCode != http.StatusAccepted {
		t.Fatalf("verify again: %d", r.StatusCode)
	}
	v = waitVerify(t, srv.URL, "failed")
	if v.Verify.Code != "SLUICE-VERIFY-COMPARE" || v.Verify.Report != nil || v.Verify.LastReport == nil || v.Verify.LastReport.Differences != 1 {
		t.Fatalf("failed verify: %+v", v.Verify)
	}
	if c := calls(); len(c) != 1 {
		t.Fatalf("OnVerify called for a failed verify: %+v", c)
	}
}

// waitVerify polls the status until the verify is in state.
func waitVerify(t *testing.T, url, state string) StatusView {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		resp, err := http.Get(url + "/api/v1/status")
		if err != nil {
			t.Fatal(err)
		}
		var v StatusView
		json.NewDecoder(resp.Body).Decode(&v)
		resp.Body.Close()
		if v.Verify.State == state {
			return v
		}
		if time.Now().After(deadline) {
			t.Fatalf("verify did not reach %s: %+v", state, v.Verify)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestAlertsEndpoint(t *testing.T) {
	m := watch.NewManager(slog.New(slog.NewJSONHandler(io.Discard, nil)))
	m.Update("lag", []watch.Observation{{Code: watch.CodeLag, Subject: "lag", What: "lag", Value: 100, Unit: watch.UnitSeconds,
		Limits: configLimits(10, 50, 1000)}})
	srv, _, _ := newServer(t, Options{Alerts: m})
	resp, err := http.Get(srv.URL + "/api/v1/alerts")
	if err != nil {
		t.Fatal(err)
	}
	var out struct {
		Firing []watch.Alert `json:"firing"`
		Events []watch.Event `json:"events"`
	}
	json.NewDecoder(resp.Body).Decode(&out)
	resp.Body.Close()
	if len(out.Firing) != 1 || out.Firing[0].Severity != "high" || len(out.Events) != 1 {
		t.Fatalf("alerts %+v", out)
	}
}

// TestRSCorsAlone records where rs/cors by itself falls short of the
// policy, which is why CORS wraps it (cors.go). If the library changes, this
// test says so.
func TestRSCorsAlone(t *testing.T) {
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {})
	get := func(c *cors.Cors, origin string) http.Header {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest("GET", "/", nil)
		req.Header.Set("Origin", origin)
		c.Handler(ok).ServeHTTP(rec, req)
		return rec.Header()
	}
	// an empty allow-list allows every origin
	if get(cors.New(cors.Options{}), "https://evil.example").Get("Access-Control-Allow-Origin") == "" {
		t.Log("rs/cors: an empty AllowedOrigins no longer allows all")
	}
	// "*" also allows the opaque origin "null"
	if get(cors.New(cors.Options{AllowedOrigins: []string{"*"}}), "null").Get("Access-Control-Allow-Origin") == "" {
		t.Log(`rs/cors: "*" no longer allows "null"`)
	}
	// entries are strings: the default port makes a listed origin fail to match, a wildcard matches too much
	if get(cors.New(cors.Options{AllowedOrigins: []string{"https://a.example:443"}}), "https://a.example").Get("Access-Control-Allow-Origin") != "" {
		t.Log("rs/cors: now compares origins as tuples")
	}
	if get(cors.New(cors.Options{AllowedOrigins: []string{"https://*.example"}}), "https://x.y.example").Get("Access-Control-Allow-Origin") == "" {
		t.Log("rs/cors: wildcards no longer match several labels")
	}
	// a preflight asking for OPTIONS is always accepted
	rec := httptest.NewRecorder()
	req := httptest.NewRequest("OPTIONS", "/", nil)
	req.Header.Set("Origin", "https://a.example")
	req.Header.Set("Access-Control-Request-Method", "OPTIONS")
	cors.New(cors.Options{AllowedOrigins: []string{"https://a.example"}, AllowedMethods: []string{"GET"}}).Handler(ok).ServeHTTP(rec, req)
	if rec.Header().Get("Access-Control-Allow-Methods") != "OPTIONS" {
		t.Log("rs/cors: no longer accepts OPTIONS as a preflight's method")
	}

	// The wrapper fixes each of them.
	c, _ := NewCORS(nil, false)
	if h := get(c.inner, "https://evil.example"); h.Get("Access-Control-Allow-Origin") != "" {
		t.Error("empty list allows an origin")
	}
	c, _ = NewCORS([]string{"https://a.example"}, false)
	if h := get(c.inner, "null"); h.Get("Access-Control-Allow-Origin") != "" {
		t.Error(`an allow-list without "null" allows "null"`)
	}
	c, _ = NewCORS([]string{"https://a.example:443"}, false)
	if h := get(c.inner, "https://a.example"); h.Get("Access-Control-Allow-Origin") != "https://a.example" {
		t.Error("https://a.example:443 does not match https://a.example")
	}
	rec = httptest.NewRecorder()
	c.Handler(ok).ServeHTTP(rec, func() *http.Request {
		r := httptest.NewRequest("OPTIONS", "/", nil)
		r.Header.Set("Origin", "https://a.example")
		r.Header.Set("Access-Control-Request-Method", "OPTIONS")
		return r
	}())
	if len(acHeaders(rec.Header())) > 0 {
		t.Errorf("preflight for OPTIONS answered: %v", rec.Header())
	}
}

// A cutover whose client went away (Ctrl-C on sluice cutover) ends there;
// that was logged as an API request failing with SLUICE-INTERNAL, an error
// that counts in sluice_errors_total and can page someone for nothing.
func TestCutoverWhoseClientLeftIsNotAnInternalError(t *testing.T) {
	srv, f, logs := newServer(t, Options{})
	f.cutoverRuns.Store(true)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "POST", srv.URL+"/api/v1/cutover", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	if resp, err := http.DefaultClient.Do(req); err == nil {
		resp.Body.Close()
		t.Fatalf("the cutover answered %d before its client gave up", resp.StatusCode)
	}
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(logs.String(), "SLUICE-CUTOVER-CANCELLED") && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	out := logs.String()
	if !strings.Contains(out, `"level":"WARN","msg":"API request refused","code":"SLUICE-CUTOVER-CANCELLED"`) || strings.Contains(out, "SLUICE-INTERNAL") {
		t.Errorf("log of a cutover whose client went away: want a warning with SLUICE-CUTOVER-CANCELLED, no SLUICE-INTERNAL\n%s", out)
	}
}
