// Package events tests the event-driven and partitioned topologies against
// real NATS JetStream, PostgreSQL and MariaDB: each test has its own stream
// and its own databases.
package events

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluice-db/sluice/internal/testenv"
	pubevents "github.com/sluice-db/sluice/pkg/events"
)

const token = "test-token-123"

func natsServer() string {
	if v := os.Getenv("SLUICE_TEST_NATS"); v != "" {
		return v
	}
	return "nats://127.0.0.1:4222"
}

var unsafeChars = regexp.MustCompile(`[^A-Za-z0-9_]`)

// stream is a private JetStream stream for one test.
type stream struct {
	URL  string
	EP   pubevents.Endpoint
	NC   *nats.Conn
	JS   jetstream.JetStream
	Emit *pubevents.Emitter
}

func newStream(t *testing.T) *stream {
	t.Helper()
	if testing.Short() {
		t.Skip("integration test: needs NATS, PostgreSQL and MariaDB (run make test)")
	}
	name := "T_" + unsafeChars.ReplaceAllString(t.Name(), "_")
	if len(name) > 40 {
		name = name[:40]
	}
	name = fmt.Sprintf("%s_%d", name, time.Now().UnixNano()%1_000_000)
	s := &stream{URL: natsServer() + "/" + name}
	var err error
	if s.EP, err = pubevents.ParseURL(s.URL); err != nil {
		t.Fatal(err)
	}
	if s.NC, err = nats.Connect(s.EP.Servers); err != nil {
		t.Fatalf("connect to NATS (is it running? make services): %v", err)
	}
	if s.JS, err = jetstream.New(s.NC); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := pubevents.EnsureStream(ctx, s.JS, s.EP); err != nil {
		t.Fatal(err)
	}
	if s.Emit, err = pubevents.New(s.NC, s.EP); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if !t.Failed() {
			s.JS.DeleteStream(context.Background(), name)
		} else {
			t.Logf("JetStream stream %s kept for inspection", name)
		}
		s.NC.Close()
	})
	return s
}

// publishRaw puts bytes on the events subject of table, as a buggy
// application might.
func (s *stream) publishRaw(t *testing.T, table string, data []byte) {
	t.Helper()
	if _, err := s.JS.Publish(context.Background(), s.EP.EventSubject(table), data); err != nil {
		t.Fatal(err)
	}
}

func (s *stream) emit(t *testing.T, ev pubevents.Event) {
	t.Helper()
	if err := s.Emit.Emit(context.Background(), ev); err != nil {
		t.Fatal(err)
	}
}

// reconfigure changes the stream's configuration (its limits, say).
func (s *stream) reconfigure(t *testing.T, change func(*jetstream.StreamConfig)) {
	t.Helper()
	ctx := context.Background()
	st, err := s.JS.Stream(ctx, s.EP.Stream)
	if err != nil {
		t.Fatal(err)
	}
	cfg := st.CachedInfo().Config
	change(&cfg)
	if _, err := s.JS.UpdateStream(ctx, cfg); err != nil {
		t.Fatal(err)
	}
}

// deadLetters reads every message on the dead-letter subject.
func (s *stream) deadLetters(t *testing.T) []map[string]any {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cons, err := s.JS.OrderedConsumer(ctx, s.EP.Stream, jetstream.OrderedConsumerConfig{FilterSubjects: []string{s.EP.DeadLetterSubject()}})
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.JS.Stream(ctx, s.EP.Stream)
	if err != nil {
		t.Fatal(err)
	}
	_ = info
	var out []map[string]any
	for {
		msg, err := cons.Next(jetstream.FetchMaxWait(500 * time.Millisecond))
		if err != nil {
			break
		}
		var m map[string]any
		if err := json.Unmarshal(msg.Data(), &m); err != nil {
			t.Fatalf("dead letter is not JSON: %s", msg.Data())
		}
		out = append(out, m)
	}
	return out
}

func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// proc is a sluice process started by a test.
type proc struct {
	cmd    *exec.Cmd
	out    *testenv.Output
	api    string
	exited chan struct{} // closed once the process has exited
}

// start runs sluice. A sync gets a free --listen port and the test token;
// if another process took the port in the meantime, it starts again on
// another one.
func start(t *testing.T, args ...string) *proc {
	t.Helper()
	for attempt := 0; ; attempt++ {
		listen := freePort(t)
		full := append([]string{}, args...)
		if args[0] == "sync" {
			full = append(full, "--listen", listen, "--api-token", token)
		}
		cmd, out := testenv.Start(t, full...)
		p := &proc{cmd: cmd, out: out, api: "http://" + listen, exited: make(chan struct{})}
		go func() { p.cmd.Wait(); close(p.exited) }()
		t.Cleanup(func() {
			p.cmd.Process.Signal(syscall.SIGKILL)
			<-p.exited
		})
		if args[0] != "sync" || attempt == 3 {
			return p
		}
		deadline := time.Now().Add(30 * time.Second)
		for time.Now().Before(deadline) {
			select {
			case <-p.exited:
				if strings.Contains(p.out.String(), "SLUICE-API-LISTEN") {
					deadline = time.Time{} // the port was taken: start again
					continue
				}
				return p
			default:
			}
			if resp, err := http.Get(p.api + "/healthz"); err == nil {
				resp.Body.Close()
				return p
			}
			time.Sleep(20 * time.Millisecond)
		}
		if !deadline.IsZero() {
			return p // not listening yet: the test will say what happened
		}
	}
}

func (p *proc) running() bool {
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

// stop sends SIGTERM and waits for a clean exit.
func (p *proc) stop(t *testing.T) {
	t.Helper()
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
		if code := p.cmd.ProcessState.ExitCode(); code != 0 {
			t.Fatalf("sluice did not stop cleanly (exit %d):\n%s", code, p.out)
		}
	case <-time.After(60 * time.Second):
		p.cmd.Process.Signal(syscall.SIGKILL)
		t.Fatalf("sluice did not stop within 60 s:\n%s", p.out)
	}
}

func (p *proc) kill() {
	p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.exited
}

// wait waits for the process to exit by itself and returns its exit code.
func (p *proc) wait(t *testing.T, limit time.Duration) int {
	t.Helper()
	select {
	case <-p.exited:
	case <-time.After(limit):
		p.kill()
		t.Fatalf("sluice did not exit within %s:\n%s", limit, p.out)
	}
	return p.cmd.ProcessState.ExitCode()
}

// eventsStatus is the part of GET /api/v1/status the tests read.
type eventsStatus struct {
	Phase     string            `json:"phase"`
	Paused    bool              `json:"paused"`
	Throttled map[string]string `json:"throttled"`
	Tables    []struct {
		RowsCopied int64 `json:"rows_copied"`
	} `json:"tables"`
	Events struct {
		Phase         string `json:"phase"`
		LastStreamSeq uint64 `json:"last_stream_seq"`
		Pending       int64  `json:"pending"`
		Applied       int64  `json:"events_applied"`
		Ignored       int64  `json:"events_ignored"`
		Redelivered   int64  `json:"events_redelivered"`
		DeadLettered  int64  `json:"events_dead_lettered"`
		HTTPApplied   int64  `json:"http_events_applied"`
		CopyDone      bool   `json:"copy_done"`
		CaughtUp      bool   `json:"caught_up"`
	} `json:"events"`
}

func (p *proc) status(t *testing.T) (eventsStatus, error) {
	var st eventsStatus
	req, _ := http.NewRequest(http.MethodGet, p.api+"/api/v1/status", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return st, err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		return st, fmt.Errorf("status %d: %s", resp.StatusCode, body)
	}
	return st, json.Unmarshal(body, &st)
}

// waitFor polls the status until cond holds.
func (p *proc) waitFor(t *testing.T, what string, limit time.Duration, cond func(eventsStatus) bool) eventsStatus {
	t.Helper()
	deadline := time.Now().Add(limit)
	var last eventsStatus
	var lastErr error
	for time.Now().Before(deadline) {
		if !p.running() {
			t.Fatalf("sluice exited while waiting for %s:\n%s", what, p.out)
		}
		st, err := p.status(t)
		if err == nil && cond(st) {
			return st
		}
		last, lastErr = st, err
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s; last status %+v (%v)\n%s", what, last, lastErr, p.out)
	return last
}

func caughtUp(st eventsStatus) bool { return st.Events.CaughtUp }

// post sends a batch to POST /api/v1/events.
func (p *proc) post(t *testing.T, auth string, body string) (int, map[string]any) {
	t.Helper()
	return p.postFrom(t, "", auth, body)
}

// postFrom sends a batch as a browser page on origin would (no Origin
// header when origin is empty).
func (p *proc) postFrom(t *testing.T, origin, auth, body string) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, p.api+"/api/v1/events", strings.NewReader(body))
	if auth != "" {
		req.Header.Set("Authorization", "Bearer "+auth)
	}
	if origin != "" {
		req.Header.Set("Origin", origin)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	var m map[string]any
	json.Unmarshal(data, &m)
	return resp.StatusCode, m
}

// control posts to one of the API's control routes (pause, resume) and
// fails the test unless it answers 200.
func (p *proc) control(t *testing.T, what string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, p.api+"/api/v1/"+what, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("POST /api/v1/%s: %d", what, resp.StatusCode)
	}
}

// cutover asks the sync for a cutover and returns the status and body of
// the answer (the cutover's report, or what went wrong).
func (p *proc) cutover(t *testing.T) (int, []byte) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, p.api+"/api/v1/cutover", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := (&http.Client{Timeout: 5 * time.Minute}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, body
}

// writeConfig writes a sluice.yaml for the test and returns its path.
func writeConfig(t *testing.T, yaml string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "sluice.yaml")
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// likesConfig maps likes (V1) to post_likes (V2): renamed columns and a
// computed column.
const likesConfig = `
tables:
  likes:
    rename: post_likes
    columns:
      user_id: {rename: member_id}
      created_at: {rename: liked_at}
    computed:
      - name: liked_on
        expr: "(created_at AT TIME ZONE 'UTC')::date"
`

const likesDDL = `CREATE TABLE likes (
	user_id bigint NOT NULL,
	post_id bigint NOT NULL,
	created_at timestamptz NOT NULL,
	note text,
	PRIMARY KEY (user_id, post_id))`

func mustVerify(t *testing.T, args ...string) {
	t.Helper()
	r := testenv.Run(t, nil, append([]string{"verify"}, args...)...)
	if r.Exit != 0 || !strings.Contains(r.Stdout, "EQUAL") {
		t.Fatalf("verify: exit %d\n%s\n%s", r.Exit, r.Stdout, r.Stderr)
	}
}

func count(t *testing.T, db *sql.DB, q string, args ...any) int64 {
	t.Helper()
	var n int64
	if err := db.QueryRow(q, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	return n
}

// lockTargetTable holds table locked on the target (LOCK TABLES … WRITE in
// a session of its own), as a long statement there would, until unlock
// (which the test's end calls too).
func lockTargetTable(t *testing.T, p *testenv.Pair, table string) (unlock func()) {
	t.Helper()
	conn, err := p.Target.Conn(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.ExecContext(context.Background(), "LOCK TABLES `"+table+"` WRITE"); err != nil {
		conn.Close()
		t.Fatal(err)
	}
	var once sync.Once
	unlock = func() {
		once.Do(func() {
			conn.ExecContext(context.Background(), "UNLOCK TABLES")
			conn.Close()
		})
	}
	t.Cleanup(unlock)
	return unlock
}
