package ops

import (
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/sluice-db/sluice/internal/api"
	"github.com/sluice-db/sluice/internal/testenv"
)

// TestService runs one real sync (slow copy) and checks its API as a
// browser, a script and Prometheus see it.
func TestService(t *testing.T) {
	t.Parallel()
	p := testenv.NewPair(t)
	seed(t, p, 150000)
	ip, hasIP := nonLoopbackIPv4()
	port := testenv.FreePort(t)
	listen := fmt.Sprintf("127.0.0.1:%d", port)
	if hasIP {
		listen = fmt.Sprintf("0.0.0.0:%d", port) // loopback and the machine's own address
	}
	s := startSync(t, p, syncOpts{listen: listen,
		config: "alerts:\n  interval: 1s\n  stress:\n    scope: database\n",
		extra:  []string{"--allow-origin", "https://a.example", "--allow-origin", "http://localhost:3000", "--max-rows-per-sec", "2500"}})
	s.waitFor(t, 60*time.Second, "the copy to start", func(v api.StatusView) bool { return rowsCopied(v) > 0 })

	t.Run("CORS", func(t *testing.T) { checkCORS(t, s.base) })
	t.Run("tokens", func(t *testing.T) { checkTokens(t, s) })
	t.Run("non-loopback reads", func(t *testing.T) {
		if !hasIP {
			t.Skip("this machine has no non-loopback address (hostname -I shows none)")
		}
		checkRemoteReads(t, fmt.Sprintf("http://%s:%d", ip, port))
	})
	t.Run("metrics move", func(t *testing.T) { checkMetricsMove(t, s) })
	t.Run("dashboard in chromium", func(t *testing.T) { checkDashboard(t, s) })

	s.abort(t)
	checkLog(t, "sync output", s.Output(), []string{token}, "SLUICE-API-AUTH", "SLUICE-API-ORIGIN")
}

func acHeaders(h http.Header) []string {
	var out []string
	for k := range h {
		if strings.HasPrefix(k, "Access-Control-") {
			out = append(out, k+": "+h.Get(k))
		}
	}
	return out
}

func varyOrigin(h http.Header) bool {
	for _, v := range h.Values("Vary") {
		for _, part := range strings.Split(v, ",") {
			if strings.TrimSpace(part) == "Origin" {
				return true
			}
		}
	}
	return false
}

// checkCORS asserts each CORS rule of the issue on the real server, whose
// allow-list is https://a.example and http://localhost:3000.
func checkCORS(t *testing.T, base string) {
	// Origins are compared as scheme, host and port: these four differ.
	for origin, allowed := range map[string]bool{
		"https://a.example":          true,
		"http://a.example":           false,
		"https://a.example:8443":     false,
		"https://a.example.evil.com": false,
		"http://localhost:3000":      true,
		"http://localhost:3001":      false,
		"null":                       false, // never allowed unless listed
	} {
		for _, path := range []string{"/api/v1/status", "/api/v1/tables", "/api/v1/alerts", "/metrics"} {
			resp, _ := call(t, "GET", base+path, map[string]string{"Origin": origin}, "")
			got := resp.Header.Get("Access-Control-Allow-Origin")
			switch {
			case allowed && got != origin:
				t.Errorf("GET %s from %s: Access-Control-Allow-Origin %q, want the origin", path, origin, got)
			case !allowed && len(acHeaders(resp.Header)) > 0:
				t.Errorf("GET %s from refused %s: CORS headers %v", path, origin, acHeaders(resp.Header))
			}
			if !varyOrigin(resp.Header) {
				t.Errorf("GET %s from %s: no Vary: Origin", path, origin)
			}
			if resp.Header.Get("Access-Control-Allow-Credentials") != "" {
				t.Errorf("credentials allowed without allow_credentials")
			}
		}
	}
	// Vary: Origin also on a response to a request without Origin
	if resp, _ := call(t, "GET", base+"/api/v1/status", nil, ""); !varyOrigin(resp.Header) || len(acHeaders(resp.Header)) > 0 {
		t.Errorf("request without Origin: Vary %v, CORS %v", resp.Header.Values("Vary"), acHeaders(resp.Header))
	}
	// Preflight: only the allowed method and headers, and a max-age.
	resp, _ := call(t, "OPTIONS", base+"/api/v1/pause", map[string]string{"Origin": "https://a.example",
		"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization,content-type"}, "")
	if resp.StatusCode != http.StatusNoContent || resp.Header.Get("Access-Control-Allow-Origin") != "https://a.example" ||
		resp.Header.Get("Access-Control-Allow-Methods") != "POST" ||
		resp.Header.Get("Access-Control-Allow-Headers") != "authorization,content-type" ||
		resp.Header.Get("Access-Control-Max-Age") != "600" || !varyOrigin(resp.Header) {
		t.Errorf("allowed preflight: %d %v", resp.StatusCode, resp.Header)
	}
	for _, h := range []map[string]string{
		{"Origin": "https://a.example", "Access-Control-Request-Method": "DELETE"},
		{"Origin": "https://a.example", "Access-Control-Request-Method": "PUT"},
		{"Origin": "https://a.example", "Access-Control-Request-Method": "OPTIONS"},
		{"Origin": "https://a.example", "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "x-custom"},
		{"Origin": "http://a.example", "Access-Control-Request-Method": "POST"},
		{"Origin": "https://a.example:8443", "Access-Control-Request-Method": "POST"},
		{"Origin": "https://a.example.evil.com", "Access-Control-Request-Method": "POST"},
		{"Origin": "null", "Access-Control-Request-Method": "GET"},
	} {
		resp, _ := call(t, "OPTIONS", base+"/api/v1/pause", h, "")
		if len(acHeaders(resp.Header)) > 0 {
			t.Errorf("refused preflight %v answered with %v", h, acHeaders(resp.Header))
		}
		if !varyOrigin(resp.Header) {
			t.Errorf("preflight %v: no Vary: Origin", h)
		}
	}
	// a page on a refused origin cannot drive the sync, even with the token
	if resp, _ := call(t, "POST", base+"/api/v1/pause", map[string]string{"Origin": "https://a.example.evil.com", "Authorization": "Bearer " + token}, ""); resp.StatusCode != http.StatusForbidden {
		t.Errorf("POST from a refused origin: %d", resp.StatusCode)
	}
}

func checkTokens(t *testing.T, s *syncProc) {
	for _, path := range []string{"/api/v1/pause", "/api/v1/resume", "/api/v1/verify", "/api/v1/cutover", "/api/v1/stop"} {
		if resp, body := call(t, "POST", s.base+path, nil, ""); resp.StatusCode != http.StatusUnauthorized || !strings.Contains(body, "SLUICE-API-AUTH") {
			t.Errorf("POST %s without token: %d %s", path, resp.StatusCode, body)
		}
		if resp, _ := call(t, "POST", s.base+path, map[string]string{"Authorization": "Bearer not-" + token}, ""); resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("POST %s with a wrong token: %d", path, resp.StatusCode)
		}
	}
	if v := s.status(t); v.Paused || v.Cutover != nil {
		t.Fatalf("a refused call changed the sync: %+v", v.Status)
	}
	if resp, body := call(t, "POST", s.base+"/api/v1/pause", bearer(), ""); resp.StatusCode != 200 {
		t.Fatalf("pause with the token: %d %s", resp.StatusCode, body)
	}
	if !s.status(t).Paused {
		t.Fatal("pause with the token did not pause")
	}
	if resp, _ := call(t, "POST", s.base+"/api/v1/resume", bearer(), ""); resp.StatusCode != 200 || s.status(t).Paused {
		t.Fatal("resume with the token did not resume")
	}
	// a wrong token is refused for reads too, even from loopback
	if resp, _ := call(t, "GET", s.base+"/api/v1/status", map[string]string{"Authorization": "Bearer nope"}, ""); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("read with a wrong token: %d", resp.StatusCode)
	}
	// a DNS name in Host (DNS rebinding) needs the token even on loopback
	if resp, _ := call(t, "GET", s.base+"/api/v1/status", map[string]string{"Host": "rebound.evil.example"}, ""); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("read with a DNS Host from loopback: %d", resp.StatusCode)
	}
	// the verify started with the token runs in the background
	if resp, body := call(t, "POST", s.base+"/api/v1/verify", bearer(), `{"mode":"changed"}`); resp.StatusCode != http.StatusAccepted {
		t.Errorf("verify: %d %s", resp.StatusCode, body)
	}
	s.waitFor(t, 30*time.Second, "the verify to finish", func(v api.StatusView) bool { return v.Verify.State == "done" })
}

func checkRemoteReads(t *testing.T, remote string) {
	// the client's address is the machine's own non-loopback address
	for _, path := range []string{"/api/v1/status", "/api/v1/tables", "/api/v1/alerts", "/api/v1/verify", "/metrics"} {
		resp, body := call(t, "GET", remote+path, nil, "")
		if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(body, "SLUICE-API-AUTH") {
			t.Errorf("GET %s from a non-loopback address without token: %d", path, resp.StatusCode)
		}
		if resp, _ := call(t, "GET", remote+path, map[string]string{"Authorization": "Bearer wrong"}, ""); resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("GET %s from a non-loopback address with a wrong token: %d", path, resp.StatusCode)
		}
		if resp, _ := call(t, "GET", remote+path, bearer(), ""); resp.StatusCode != 200 {
			t.Errorf("GET %s from a non-loopback address with the token: %d", path, resp.StatusCode)
		}
	}
	for _, path := range []string{"/healthz", "/readyz", "/"} {
		if resp, _ := call(t, "GET", remote+path, nil, ""); resp.StatusCode != 200 {
			t.Errorf("GET %s from a non-loopback address: %d", path, resp.StatusCode)
		}
	}
	host, _, _ := net.SplitHostPort(strings.TrimPrefix(remote, "http://"))
	if net.ParseIP(host).IsLoopback() {
		t.Fatalf("%s is loopback", host)
	}
}

func checkMetricsMove(t *testing.T, s *syncProc) {
	_, body := call(t, "GET", s.base+"/metrics", nil, "")
	for _, line := range strings.Split(strings.TrimSpace(body), "\n") {
		if !strings.HasPrefix(line, "#") && !metricLine.MatchString(line) {
			t.Fatalf("not Prometheus text format: %q", line)
		}
	}
	for _, name := range []string{"sluice_rows_copied_total", "sluice_changes_applied_total", "sluice_lag_seconds", "sluice_lag_bytes",
		"sluice_wal_retained_bytes", "sluice_copy_throttled", "sluice_errors_total", "sluice_alerts_firing", "sluice_source_active_sessions"} {
		if !strings.Contains(body, "\n"+name) && !strings.HasPrefix(body, name) {
			t.Errorf("/metrics lacks %s", name)
		}
	}
	series := fmt.Sprintf(`sluice_rows_copied_total{table=%q}`, s.status(t).Tables[0].Source)
	r1 := metric(t, s.base, series)
	c1 := metric(t, s.base, "sluice_changes_applied_total")
	e1 := metric(t, s.base, `sluice_errors_total{code="SLUICE-API-AUTH",level="warning"}`)
	// changes made on the source now reach the target through the stream
	s.pair.PG(t, `UPDATE events SET body = body || '!' WHERE id <= 50`)
	s.pair.PG(t, `INSERT INTO events (kind, body) SELECT 9, 'new' FROM generate_series(1, 20)`)
	deadline := time.Now().Add(30 * time.Second)
	for {
		r2 := metric(t, s.base, series)
		c2 := metric(t, s.base, "sluice_changes_applied_total")
		if r2 > r1 && c2 >= c1+70 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("metrics did not move: rows %v → %v, changes %v → %v", r1, r2, c1, c2)
		}
		time.Sleep(300 * time.Millisecond)
	}
	if e1 < 1 {
		t.Errorf("refused API calls are not counted in sluice_errors_total: %v", e1)
	}
	if v := metric(t, s.base, "sluice_wal_retained_bytes"); v <= 0 {
		t.Errorf("sluice_wal_retained_bytes = %v", v)
	}
}
