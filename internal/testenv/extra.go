package testenv

// Helpers for live-sync tests: free ports, sluice processes whose output can
// be read while they run, a TCP proxy that can be cut, a private PostgreSQL
// instance that can be restarted, a bounded workload loop, and polling the
// sync's status API.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/sluice-db/sluice/internal/pgstream"
)

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// FreeAddr returns "127.0.0.1:port" for a free port.
func FreeAddr(t testing.TB) string {
	t.Helper()
	return fmt.Sprintf("127.0.0.1:%d", FreePort(t))
}

// Output collects a process's output: a bytes.Buffer safe for one writer
// and many readers, so a test can read it while the process runs.
type Output struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *Output) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *Output) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// Proc is a sluice process started in the background.
type Proc struct {
	Cmd  *exec.Cmd
	out  Output
	done chan struct{}
	exit int
}

// StartProc starts the sluice binary with args. Its stdout and stderr are
// collected (Output); the process is killed when the test ends if it still
// runs.
func StartProc(t testing.TB, args ...string) *Proc {
	t.Helper()
	return StartProcEnv(t, nil, args...)
}

// StartProcEnv is StartProc with env (NAME=value) added to the
// environment.
func StartProcEnv(t testing.TB, env []string, args ...string) *Proc {
	t.Helper()
	p := &Proc{Cmd: exec.Command(Binary(t), args...), done: make(chan struct{})}
	if env != nil {
		p.Cmd.Env = append(os.Environ(), env...)
	}
	p.Cmd.Stdout, p.Cmd.Stderr = &p.out, &p.out
	if err := p.Cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		err := p.Cmd.Wait()
		var ee *exec.ExitError
		switch {
		case err == nil:
		case errors.As(err, &ee):
			p.exit = ee.ExitCode() // -1 when killed by a signal
		default:
			p.exit = -2
		}
		close(p.done)
	}()
	t.Cleanup(func() { p.Kill() })
	return p
}

// Output is what the process printed so far.
func (p *Proc) Output() string { return p.out.String() }

// Done is closed when the process has exited.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Exited reports whether the process has ended, and its exit status.
func (p *Proc) Exited() (bool, int) {
	select {
	case <-p.done:
		return true, p.exit
	default:
		return false, 0
	}
}

// Wait waits up to timeout for the process to end and returns its exit
// status; ok is false if it still runs.
func (p *Proc) Wait(timeout time.Duration) (exit int, ok bool) {
	select {
	case <-p.done:
		return p.exit, true
	case <-time.After(timeout):
		return 0, false
	}
}

// Kill sends SIGKILL (if the process still runs) and waits for it.
func (p *Proc) Kill() {
	if ok, _ := p.Exited(); ok {
		return
	}
	p.Cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

// Tail returns the last n lines of s.
func Tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// Proxy forwards TCP connections to a server and can be cut (listener and
// every connection closed: the server looks unreachable) and restored on
// the same address.
type Proxy struct {
	target string
	addr   string

	mu    sync.Mutex
	ln    net.Listener
	conns map[net.Conn]struct{}

	// commit answers to lose (LoseCommitAnswer): one per entry, on the
	// next COMMIT of a connection that sent a query holding its text
	loseAfter []string
	lost      int
}

// NewProxy starts a proxy to target ("host:port") on a free local port.
func NewProxy(t testing.TB, target string) *Proxy {
	t.Helper()
	p := &Proxy{target: target, conns: map[net.Conn]struct{}{}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p.addr = ln.Addr().String()
	p.serve(ln)
	t.Cleanup(p.Cut)
	return p
}

// Addr is the proxy's "host:port".
func (p *Proxy) Addr() string { return p.addr }

func (p *Proxy) serve(ln net.Listener) {
	p.mu.Lock()
	p.ln = ln
	p.mu.Unlock()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go p.forward(c)
		}
	}()
}

func (p *Proxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln == nil {
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *Proxy) forward(client net.Conn) {
	server, err := net.DialTimeout("tcp", p.target, 5*time.Second)
	if err != nil {
		client.Close()
		return
	}
	if !p.track(client) || !p.track(server) {
		client.Close()
		server.Close()
		return
	}
	var wg sync.WaitGroup
	var swallow atomic.Bool // the server's answers no longer reach the client
	pipe := func(dst, src net.Conn) {
		defer wg.Done()
		io.Copy(dst, src)
		dst.Close()
		src.Close()
	}
	toClient := func() { // pipe(client, server), until swallow is set
		defer wg.Done()
		buf := make([]byte, 64<<10)
		for {
			n, err := server.Read(buf)
			if swallow.Load() || (n > 0 && write(client, buf[:n]) != nil) || err != nil {
				break
			}
		}
		client.Close()
		server.Close()
	}
	wg.Add(2)
	if p.losesCommits() {
		go p.toServerLosingCommits(server, client, &swallow, &wg)
		go toClient()
	} else {
		go pipe(server, client)
		go pipe(client, server)
	}
	wg.Wait()
	p.mu.Lock()
	delete(p.conns, client)
	delete(p.conns, server)
	p.mu.Unlock()
}

// comQueryCommit is a MySQL client's COMMIT: a COM_QUERY packet (length 7,
// sequence 0, command 3) with the text COMMIT, as database/sql's Tx.Commit
// sends it through go-sql-driver/mysql.
var comQueryCommit = []byte("\x07\x00\x00\x00\x03COMMIT")

// LoseCommitAnswer makes the proxy lose the server's answer to one COMMIT:
// the next one a connection sends after a query that holds after ("" for
// any). The COMMIT reaches the server, which commits; 300 ms later the
// connection is closed with the answer held back, so the client cannot
// know whether its transaction committed. Arm it before the client
// connects: only connections made after the first call are watched.
func (p *Proxy) LoseCommitAnswer(after string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.loseAfter = append(p.loseAfter, after)
}

// CommitAnswersLost is how many COMMIT answers the proxy has lost so far.
func (p *Proxy) CommitAnswersLost() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.lost
}

func (p *Proxy) losesCommits() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.loseAfter != nil
}

// takeLoss claims the first armed loss whose text the connection sent
// since its last COMMIT (seen), if any.
func (p *Proxy) takeLoss(seen map[string]bool) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	for i, after := range p.loseAfter {
		if after == "" || seen[after] {
			p.loseAfter = append(p.loseAfter[:i:i], p.loseAfter[i+1:]...)
			p.lost++
			return true
		}
	}
	return false
}

// armedTexts are the texts armed losses wait for.
func (p *Proxy) armedTexts() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.loseAfter...)
}

// toServerLosingCommits forwards what the client sends, watching for a
// COMMIT whose answer an armed LoseCommitAnswer wants lost.
func (p *Proxy) toServerLosingCommits(server, client net.Conn, swallow *atomic.Bool, wg *sync.WaitGroup) {
	defer wg.Done()
	defer server.Close()
	defer client.Close()
	seen := map[string]bool{} // armed texts sent since the last COMMIT
	var tail []byte           // the end of the previous read: a text may span two
	buf := make([]byte, 64<<10)
	for {
		n, err := client.Read(buf)
		chunk := buf[:n]
		window := append(tail, chunk...)
		for _, text := range p.armedTexts() {
			if text != "" && bytes.Contains(window, []byte(text)) {
				seen[text] = true
			}
		}
		if bytes.Contains(window, comQueryCommit) {
			if p.takeLoss(seen) {
				swallow.Store(true) // before the server can answer
				server.Write(chunk)
				time.Sleep(300 * time.Millisecond) // the server commits
				return
			}
			clear(seen)
			window = window[:0] // this COMMIT must not match again in the next read's window
		}
		tail = append(tail[:0], window[max(0, len(window)-64):]...)
		if (n > 0 && write(server, chunk) != nil) || err != nil {
			return
		}
	}
}

// write is dst.Write for a condition: a net.Conn writes all of b or fails.
func write(dst net.Conn, b []byte) error {
	_, err := dst.Write(b)
	return err
}

// Cut closes the listener and every open connection: new connections are
// refused and existing ones break.
func (p *Proxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln != nil {
		p.ln.Close()
		p.ln = nil
	}
	for c := range p.conns {
		c.Close()
		delete(p.conns, c)
	}
}

// Restore listens again on the same address.
func (p *Proxy) Restore(t testing.TB) {
	t.Helper()
	var ln net.Listener
	var err error
	for i := 0; i < 50; i++ {
		if ln, err = net.Listen("tcp", p.addr); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("proxy: listen again on %s: %v", p.addr, err)
	}
	p.serve(ln)
}

// ViaProxy returns url (scheme://user@host:port/db) with its host:port
// replaced by addr.
func ViaProxy(url, addr string) string {
	scheme, rest, _ := strings.Cut(url, "://")
	userinfo := ""
	if i := strings.LastIndexByte(rest, '@'); i >= 0 {
		userinfo, rest = rest[:i+1], rest[i+1:]
	}
	path := ""
	if i := strings.IndexByte(rest, '/'); i >= 0 {
		path = rest[i:]
	}
	return scheme + "://" + userinfo + addr + path
}

// PrivatePG is a PostgreSQL instance of this test alone, so it can be
// stopped and restarted without touching the shared server.
type PrivatePG struct {
	Dir  string // data directory
	Sock string // unix socket directory
	Port int
	bin  string
}

const pgBin = "/usr/lib/postgresql/15/bin"

// StartPrivatePG initdb's a cluster in a temporary directory (as the
// postgres user: the tests run as root), with wal_level=logical and trust
// authentication on a free port, starts it, and stops it when the test
// ends.
func StartPrivatePG(t testing.TB) *PrivatePG {
	t.Helper()
	if testing.Short() {
		t.Skip("integration test: needs PostgreSQL binaries")
	}
	if _, err := os.Stat(filepath.Join(pgBin, "initdb")); err != nil {
		t.Skipf("no PostgreSQL 15 binaries in %s", pgBin)
	}
	pgUser, err := user.Lookup("postgres")
	if err != nil {
		t.Fatalf("private PostgreSQL needs the postgres user: %v", err)
	}
	uid, _ := strconv.Atoi(pgUser.Uid)
	gid, _ := strconv.Atoi(pgUser.Gid)
	base := t.TempDir()
	// t.TempDir's directories are 0700 root: let postgres through
	for d := base; d != os.TempDir() && d != "/" && d != "."; d = filepath.Dir(d) {
		os.Chmod(d, 0o755)
	}
	pg := &PrivatePG{Dir: filepath.Join(base, "data"), Sock: filepath.Join(base, "sock"), Port: FreePort(t), bin: pgBin}
	for _, d := range []string{pg.Dir, pg.Sock} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(d, uid, gid); err != nil {
			t.Fatal(err)
		}
	}
	pg.run(t, "initdb", "-D", pg.Dir, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--locale=C.UTF-8", "--no-sync")
	conf := fmt.Sprintf(`
listen_addresses = '127.0.0.1'
port = %d
unix_socket_directories = '%s'
wal_level = logical
max_replication_slots = 10
max_wal_senders = 10
fsync = off
synchronous_commit = off
full_page_writes = off
shared_buffers = 32MB
max_connections = 60
`, pg.Port, pg.Sock)
	f, err := os.OpenFile(filepath.Join(pg.Dir, "postgresql.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(conf); err != nil {
		t.Fatal(err)
	}
	f.Close()
	t.Cleanup(func() { pg.ctl(t, "stop", "-m", "immediate") })
	pg.ctl(t, "start")
	return pg
}

func (pg *PrivatePG) run(t testing.TB, prog string, args ...string) string {
	t.Helper()
	cmd := exec.Command("runuser", append([]string{"-u", "postgres", "--", filepath.Join(pg.bin, prog)}, args...)...)
	cmd.Dir = "/"
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", prog, strings.Join(args, " "), err, out)
	}
	return string(out)
}

func (pg *PrivatePG) ctl(t testing.TB, action string, args ...string) {
	t.Helper()
	all := append([]string{action, "-D", pg.Dir, "-w", "-t", "60", "-l", filepath.Join(pg.Dir, "server.log")}, args...)
	cmd := exec.Command("runuser", append([]string{"-u", "postgres", "--", filepath.Join(pg.bin, "pg_ctl")}, all...)...)
	cmd.Dir = "/"
	out, err := cmd.CombinedOutput()
	if err != nil && action != "stop" {
		log, _ := os.ReadFile(filepath.Join(pg.Dir, "server.log"))
		t.Fatalf("pg_ctl %s: %v\n%s\nserver log:\n%s", action, err, out, Tail(string(log), 30))
	}
}

// Stop shuts the instance down (fast: sessions are ended).
func (pg *PrivatePG) Stop(t testing.TB) { t.Helper(); pg.ctl(t, "stop", "-m", "fast") }

// Start starts it again.
func (pg *PrivatePG) Start(t testing.TB) { t.Helper(); pg.ctl(t, "start") }

// Restart is pg_ctl restart -m fast.
func (pg *PrivatePG) Restart(t testing.TB) { t.Helper(); pg.ctl(t, "restart", "-m", "fast") }

// URL is the TCP URL of database db on the instance.
func (pg *PrivatePG) URL(db string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s", pg.Port, db)
}

// CreateDB creates database name and returns a connection to it.
func (pg *PrivatePG) CreateDB(t testing.TB, name string) *pgx.Conn {
	t.Helper()
	ctx := context.Background()
	admin, err := pgx.Connect(ctx, pg.URL("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(ctx)
	mustPG(t, admin, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize())
	c, err := pgx.Connect(ctx, pg.URL(name))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

// SyncStatus is the part of GET /api/v1/status the tests read.
type SyncStatus struct {
	Phase          string  `json:"phase"`
	Slot           string  `json:"slot"`
	Paused         bool    `json:"paused"`
	AppliedLSN     string  `json:"applied_lsn"`
	SourceLSN      string  `json:"source_lsn"`
	LagBytes       int64   `json:"lag_bytes"`
	LagSeconds     float64 `json:"lag_seconds"`
	ChangesApplied int64   `json:"changes_applied"`
	ChunksReread   int64   `json:"chunks_reread"`
	Tables         []struct {
		Source       string `json:"source"`
		Target       string `json:"target"`
		Phase        string `json:"phase"`
		RowsCopied   int64  `json:"rows_copied"`
		RowsEstimate int64  `json:"rows_estimate"`
		// ChangesApplied: changes of the table the target has committed
		ChangesApplied int64 `json:"changes_applied"`
	} `json:"tables"`
	Cutover json.RawMessage `json:"cutover,omitempty"`
}

// Applied is AppliedLSN as a number (0 if it does not parse).
func (s SyncStatus) Applied() uint64 { n, _ := ParseLSN(s.AppliedLSN); return n }

// RowsCopied is the rows copied of the table whose source or target name
// is table.
func (s SyncStatus) RowsCopied(table string) int64 {
	for _, t := range s.Tables {
		if t.Source == table || t.Target == table || strings.HasSuffix(t.Source, "."+table) {
			return t.RowsCopied
		}
	}
	return -1
}

// Changes is the changes applied to the table whose source or target
// name is table (-1 when status has no such table).
func (s SyncStatus) Changes(table string) int64 {
	for _, t := range s.Tables {
		if t.Source == table || t.Target == table || strings.HasSuffix(t.Source, "."+table) {
			return t.ChangesApplied
		}
	}
	return -1
}

// ParseLSN parses PostgreSQL's X/Y form.
func ParseLSN(s string) (uint64, error) {
	hi, lo, ok := strings.Cut(s, "/")
	if !ok {
		return 0, fmt.Errorf("bad LSN %q", s)
	}
	h, err := strconv.ParseUint(hi, 16, 32)
	if err != nil {
		return 0, fmt.Errorf("bad LSN %q", s)
	}
	l, err := strconv.ParseUint(lo, 16, 32)
	if err != nil {
		return 0, fmt.Errorf("bad LSN %q", s)
	}
	return h<<32 | l, nil
}

var statusClient = &http.Client{Timeout: 5 * time.Second}

// GetStatus reads a running sync's status from its API (base like
// http://127.0.0.1:7070).
func GetStatus(base string) (SyncStatus, error) {
	var st SyncStatus
	resp, err := statusClient.Get(strings.TrimRight(base, "/") + "/api/v1/status")
	if err != nil {
		return st, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return st, err
	}
	if resp.StatusCode != http.StatusOK {
		return st, fmt.Errorf("GET /api/v1/status: %s: %s", resp.Status, body)
	}
	if err := json.Unmarshal(body, &st); err != nil {
		return st, fmt.Errorf("GET /api/v1/status: %v: %s", err, body)
	}
	return st, nil
}

// WaitStatus polls the status API until cond holds and returns that
// status. It fails the test after timeout, or at once if alive (when not
// nil) reports the sync is gone.
func WaitStatus(t testing.TB, base string, timeout time.Duration, what string, alive func() error, cond func(SyncStatus) bool) SyncStatus {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var last SyncStatus
	var lastErr error
	for {
		st, err := GetStatus(base)
		if err == nil {
			last, lastErr = st, nil
			if cond(st) {
				return st
			}
		} else {
			lastErr = err
		}
		if alive != nil {
			if err := alive(); err != nil {
				t.Fatalf("waiting for %s: %v", what, err)
			}
		}
		if time.Now().After(deadline) {
			b, _ := json.Marshal(last)
			t.Fatalf("waiting for %s: not after %s; last status %s (error %v)", what, timeout, b, lastErr)
		}
		time.Sleep(150 * time.Millisecond)
	}
}

// SlotAndPublication reports whether the server at pgURL has a replication
// slot named name, and whether the database of pgURL has a publication of
// that name.
func SlotAndPublication(t testing.TB, pgURL, name string) (slot, publication bool) {
	t.Helper()
	pgQueryRow(t, pgURL, `SELECT EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = $1),
		EXISTS (SELECT 1 FROM pg_publication WHERE pubname = $1)`, []any{name}, &slot, &publication)
	return slot, publication
}

// pgQueryRow runs one query on a connection of its own and scans its row.
func pgQueryRow(t testing.TB, pgURL, query string, args []any, dest ...any) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, pgURL)
	if err != nil {
		t.Fatalf("connect to %s: %v", pgURL, err)
	}
	defer c.Close(context.Background())
	if err := c.QueryRow(ctx, query, args...).Scan(dest...); err != nil {
		t.Fatal(err)
	}
}

// SchemaWatch counts what sluice installs on the source for the run on
// slot: event triggers, TRUNCATE triggers on partitions, and functions.
func SchemaWatch(t testing.TB, pgURL, slot string) (eventTriggers, tableTriggers, functions int) {
	t.Helper()
	events, table, fns := pgstream.SchemaWatchNames(slot)
	pgQueryRow(t, pgURL, `SELECT (SELECT count(*) FROM pg_event_trigger WHERE evtname = ANY ($1)),
		(SELECT count(*) FROM pg_trigger WHERE tgname = $2),
		(SELECT count(*) FROM pg_proc WHERE proname = ANY ($3))`, []any{events, table, fns}, &eventTriggers, &tableTriggers, &functions)
	return eventTriggers, tableTriggers, functions
}

// Workload runs a step function in a loop on its own connection until
// stopped or its time is up.
type Workload struct {
	cancel context.CancelFunc
	done   chan struct{}

	gate sync.Mutex // held by a step, or by Hold

	mu    sync.Mutex
	ops   int
	errs  int
	first error
}

// Hold pauses the loop after the step in flight; Release resumes it.
func (w *Workload) Hold() { w.gate.Lock() }

// Release undoes Hold.
func (w *Workload) Release() { w.gate.Unlock() }

// WorkloadOptions tune StartWorkload.
type WorkloadOptions struct {
	Duration time.Duration // most it runs (0: until Stop)
	Pause    time.Duration // between steps
	// Tolerant makes errors (the server restarting) count instead of stop
	// the loop: the connection is opened again and the loop goes on.
	Tolerant bool
	Seed     uint64
}

// StartWorkload runs step on a connection to connString until Stop or the
// duration ends. Without Tolerant the first error ends the loop and is
// returned by Stop.
func StartWorkload(t testing.TB, connString string, opt WorkloadOptions, step func(ctx context.Context, c *pgx.Conn, rng *rand.Rand) error) *Workload {
	t.Helper()
	var ctx context.Context
	var cancel context.CancelFunc
	if opt.Duration > 0 {
		ctx, cancel = context.WithTimeout(context.Background(), opt.Duration)
	} else {
		ctx, cancel = context.WithCancel(context.Background())
	}
	w := &Workload{cancel: cancel, done: make(chan struct{})}
	seed := opt.Seed
	if seed == 0 {
		seed = rand.Uint64()
	}
	rng := rand.New(rand.NewPCG(seed, seed^0x5eed))
	go func() {
		defer close(w.done)
		var c *pgx.Conn
		defer func() {
			if c != nil {
				c.Close(context.Background())
			}
		}()
		for ctx.Err() == nil {
			if c == nil || c.IsClosed() {
				var err error
				cctx, ccancel := context.WithTimeout(ctx, 5*time.Second)
				c, err = pgx.Connect(cctx, connString)
				ccancel()
				if err != nil {
					c = nil
					if ctx.Err() != nil || !w.fail(err, opt.Tolerant) {
						return
					}
					sleepCtx(ctx, 200*time.Millisecond)
					continue
				}
			}
			// The step is never cut off by Stop: a statement abandoned
			// mid-flight can still commit on the server after Stop returned,
			// and a test then compares against a source still changing.
			sctx, scancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
			w.gate.Lock()
			err := step(sctx, c, rng)
			w.gate.Unlock()
			scancel()
			if err != nil {
				if ctx.Err() != nil {
					return
				}
				if !w.fail(err, opt.Tolerant) {
					return
				}
				c.Close(context.Background())
				c = nil
				sleepCtx(ctx, 100*time.Millisecond)
				continue
			}
			w.mu.Lock()
			w.ops++
			w.mu.Unlock()
			if opt.Pause > 0 {
				sleepCtx(ctx, opt.Pause)
			}
		}
	}()
	t.Cleanup(func() { w.Stop() })
	return w
}

func (w *Workload) fail(err error, tolerant bool) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.errs++
	if w.first == nil {
		w.first = err
	}
	return tolerant
}

func sleepCtx(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

// Ops is the number of steps done so far.
func (w *Workload) Ops() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.ops
}

// Stop ends the loop and waits for it. It returns the steps done, the
// errors seen and the first error.
func (w *Workload) Stop() (ops, errs int, first error) {
	w.cancel()
	<-w.done
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.ops, w.errs, w.first
}

// Running reports whether the loop still runs (a non-tolerant loop stops
// at its first error).
func (w *Workload) Running() bool {
	select {
	case <-w.done:
		return false
	default:
		return true
	}
}

// CurrentLSN returns the end of the WAL the server at pgURL has inserted:
// every commit made so far lies before it. (pg_current_wal_lsn is only what
// was written out; with synchronous_commit=off, as on the private test
// server, commits already visible can lie past it, and a wait for "caught
// up" would end before they are applied.)
func CurrentLSN(t testing.TB, pgURL string) uint64 {
	t.Helper()
	ctx := context.Background()
	c, err := pgx.Connect(ctx, pgURL)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	var s string
	if err := c.QueryRow(ctx, "SELECT pg_current_wal_insert_lsn()::text").Scan(&s); err != nil {
		t.Fatal(err)
	}
	n, err := ParseLSN(s)
	if err != nil {
		t.Fatal(err)
	}
	return n
}
