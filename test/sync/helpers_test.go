// Package synctest runs `sluice sync` the way a user does, against live
// PostgreSQL tables under write load, and checks what a user relies on: every
// change arrives exactly once, kills and outages are survived, cutover pauses
// writes briefly and a failed one does not, and nothing is left behind on the
// source (replication slots, publications).
package synctest

import (
	"context"
	"crypto/sha1"
	"encoding/hex"
	"fmt"
	"net/url"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/sluice-db/sluice/internal/testenv"
)

const sharedPG = "postgres://postgres@127.0.0.1:5432"

var unsafeChars = regexp.MustCompile(`[^a-z0-9_]`)

// newPair is testenv.NewPair after dropping replication slots a crashed
// earlier run may have left on the test's database (a slot makes DROP
// DATABASE fail).
func newPair(t *testing.T) *testenv.Pair {
	t.Helper()
	if testing.Short() {
		t.Skip("integration test: needs PostgreSQL and MariaDB (run make test)")
	}
	dropSlots(t, sharedPG+"/postgres", `database = $1`, testenv.DBName(t))
	return testenv.NewPair(t)
}

// dropSlots drops the (inactive) slots matching where on the server.
func dropSlots(t testing.TB, adminURL, where string, arg any) {
	t.Helper()
	ctx := context.Background()
	c, err := pgx.Connect(ctx, adminURL)
	if err != nil {
		t.Fatalf("connect to PostgreSQL: %v", err)
	}
	defer c.Close(ctx)
	if _, err := c.Exec(ctx, `SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE NOT active AND `+where, arg); err != nil {
		t.Logf("dropping stale slots: %v", err)
	}
}

// slotName is a slot (and publication) name of this test alone.
func slotName(t *testing.T) string {
	n := "sluice_st_" + unsafeChars.ReplaceAllString(strings.ToLower(t.Name()), "_")
	if len(n) > 63 { // two long subtest names may share the first 63 bytes
		sum := sha1.Sum([]byte(n))
		n = n[:54] + "_" + hex.EncodeToString(sum[:4])
	}
	return n
}

// syncRun is one migration: `sluice sync` with its own API port and slot,
// restarted as the test (or its supervisor) asks.
type syncRun struct {
	t        *testing.T
	src, tgt string // URLs sluice uses
	slot     string
	listen   string
	api      string
	token    string
	flags    []string

	mu     sync.Mutex
	proc   *testenv.Proc
	env    []string // added to the environment of the syncs started
	starts int
	exits  []string // how earlier processes ended, for the log

	supStop chan struct{}
	supDone chan struct{}
}

// newSync prepares a sync of src to tgt with extra sync flags and makes
// sure the test ends with sluice abort and no slot or publication left.
func newSync(t *testing.T, src, tgt string, flags ...string) *syncRun {
	t.Helper()
	s := &syncRun{t: t, src: src, tgt: tgt, slot: slotName(t), listen: testenv.FreeAddr(t),
		token: "tok-" + slotName(t), flags: flags}
	s.api = "http://" + s.listen
	dropSlots(t, adminURL(src), `slot_name = $1`, s.slot)
	t.Cleanup(func() {
		s.stopSupervisor()
		if p := s.current(); p != nil {
			p.Kill()
		}
		r := testenv.Run(t, nil, s.args("abort", "--slot", s.slot, "--api", s.api, "--api-token", s.token)...)
		if r.Exit != 0 {
			t.Errorf("cleanup: sluice abort: exit %d\n%s%s", r.Exit, r.Stdout, r.Stderr)
		}
		if slot, pub := testenv.SlotAndPublication(t, src, s.slot); slot || pub {
			t.Errorf("cleanup: after sluice abort the source still has slot %v, publication %v named %s", slot, pub, s.slot)
		}
	})
	return s
}

// adminURL is the server of a database URL, database postgres.
func adminURL(dbURL string) string {
	u, err := url.Parse(dbURL)
	if err != nil {
		return dbURL
	}
	u.Path = "/postgres"
	return u.String()
}

// args is a sluice command with this sync's connections.
func (s *syncRun) args(cmd string, extra ...string) []string {
	return append([]string{cmd, "--source", s.src, "--target", s.tgt}, extra...)
}

// start starts `sluice sync` (again).
func (s *syncRun) start() *testenv.Proc {
	s.t.Helper()
	a := s.args("sync", append([]string{"--listen", s.listen, "--slot", s.slot, "--api-token", s.token, "--log-format", "text"}, s.flags...)...)
	p := testenv.StartProcEnv(s.t, s.env, a...)
	s.mu.Lock()
	s.proc = p
	s.starts++
	s.mu.Unlock()
	return p
}

func (s *syncRun) current() *testenv.Proc {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.proc
}

// waitNice waits until every thread of the sync process runs at nice want.
func (s *syncRun) waitNice(timeout time.Duration, want int) {
	s.t.Helper()
	if runtime.GOOS != "linux" {
		return // --stream-nice is Linux's
	}
	pid := s.current().Cmd.Process.Pid
	var nices map[int]int
	for end := time.Now().Add(timeout); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
		var err error
		if nices, err = testenv.ThreadNices(pid); err != nil {
			s.t.Fatal(err)
		}
		off := 0
		for _, n := range nices {
			if n != want {
				off++
			}
		}
		if off == 0 && len(nices) > 0 {
			return
		}
	}
	s.t.Fatalf("sluice sync (pid %d) streams with threads at nice %v (thread → nice), want all at %d", pid, nices, want)
}

// alive returns an error if the sync process has exited (and no supervisor
// restarts it).
func (s *syncRun) alive() error {
	if s.supStop != nil {
		return nil
	}
	p := s.current()
	if p == nil {
		return fmt.Errorf("sync not started")
	}
	if done, code := p.Exited(); done {
		return fmt.Errorf("sluice sync exited with status %d:\n%s", code, testenv.Tail(p.Output(), 40))
	}
	return nil
}

// status reads the status now.
func (s *syncRun) status() (testenv.SyncStatus, error) { return testenv.GetStatus(s.api) }

// wait polls the status until cond holds.
func (s *syncRun) wait(timeout time.Duration, what string, cond func(testenv.SyncStatus) bool) testenv.SyncStatus {
	s.t.Helper()
	return testenv.WaitStatus(s.t, s.api, timeout, what, s.alive, cond)
}

// waitCopying waits until the copy has started and is still going.
func (s *syncRun) waitCopying(timeout time.Duration, table string, minRows int64) testenv.SyncStatus {
	s.t.Helper()
	return s.wait(timeout, "the copy to be under way", func(st testenv.SyncStatus) bool {
		return st.Phase == "copying" && st.RowsCopied(table) >= minRows
	})
}

// waitCaughtUp waits until every table is copied and the target has
// applied everything the source had written when it was called: phase
// streaming, lag 0 bytes, applied position at or past the source's WAL
// position read now.
func (s *syncRun) waitCaughtUp(timeout time.Duration) testenv.SyncStatus {
	s.t.Helper()
	want := testenv.CurrentLSN(s.t, s.src)
	return s.wait(timeout, fmt.Sprintf("phase streaming, lag 0 and applied position past %X", want), func(st testenv.SyncStatus) bool {
		return (st.Phase == "streaming" || st.Phase == "cut over") && st.LagBytes == 0 && st.Applied() >= want
	})
}

// abort runs sluice abort against this sync, waits for the sync process to
// end and checks that neither slot nor publication is left.
func (s *syncRun) abort() {
	s.t.Helper()
	s.stopSupervisor()
	r := testenv.MustRun(s.t, 0, s.args("abort", "--slot", s.slot, "--api", s.api, "--api-token", s.token)...)
	if !strings.Contains(r.Stdout, "dropped replication slot and publication "+s.slot) {
		s.t.Errorf("sluice abort output does not say it dropped %s:\n%s", s.slot, r.Stdout)
	}
	if p := s.current(); p != nil {
		if _, ok := p.Wait(20 * time.Second); !ok {
			s.t.Errorf("sluice sync still runs 20 s after sluice abort stopped it:\n%s", testenv.Tail(p.Output(), 20))
			p.Kill()
		}
	}
	s.assertNoSlot()
}

// assertNoSlot fails unless the source has neither a slot, a publication
// nor schema-change triggers of this sync's name.
func (s *syncRun) assertNoSlot() {
	s.t.Helper()
	if slot, pub := testenv.SlotAndPublication(s.t, s.src, s.slot); slot || pub {
		s.t.Errorf("the source still has replication slot: %v, publication: %v named %s", slot, pub, s.slot)
	}
	if events, tables, functions := testenv.SchemaWatch(s.t, s.src, s.slot); events+tables+functions > 0 {
		s.t.Errorf("the source still has %d event triggers, %d TRUNCATE triggers and %d functions of sync %s", events, tables, functions, s.slot)
	}
}

// supervise restarts the sync whenever it exits, like systemd with
// Restart=on-failure and RestartSec=1, until stopSupervisor.
func (s *syncRun) supervise() {
	s.supStop, s.supDone = make(chan struct{}), make(chan struct{})
	go func() {
		defer close(s.supDone)
		for {
			p := s.current()
			select {
			case <-s.supStop:
				return
			case <-p.Done():
			}
			_, code := p.Exited()
			s.mu.Lock()
			s.exits = append(s.exits, fmt.Sprintf("exit %d after: %s", code, exitSummary(p.Output())))
			s.mu.Unlock()
			select {
			case <-s.supStop:
				return
			case <-time.After(time.Second):
			}
			s.startQuiet()
		}
	}()
}

// startQuiet is start for the supervisor goroutine (no t.Helper/Fatal from
// another goroutine: a failed exec is recorded instead).
func (s *syncRun) startQuiet() {
	a := s.args("sync", append([]string{"--listen", s.listen, "--slot", s.slot, "--api-token", s.token, "--log-format", "text"}, s.flags...)...)
	p := testenv.StartProcEnv(s.t, s.env, a...)
	s.mu.Lock()
	s.proc = p
	s.starts++
	s.mu.Unlock()
}

func (s *syncRun) stopSupervisor() {
	if s.supStop == nil {
		return
	}
	select {
	case <-s.supStop:
	default:
		close(s.supStop)
	}
	<-s.supDone
}

// restarts says how often the sync process was started after the first.
func (s *syncRun) restarts() (int, []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.starts - 1, append([]string(nil), s.exits...)
}

// stopWorkload stops w and fails the test if it failed.
func stopWorkload(t *testing.T, w *testenv.Workload) {
	t.Helper()
	ops, _, first := w.Stop()
	if first != nil {
		t.Fatalf("workload: %v", first)
	}
	t.Logf("workload: %d transactions", ops)
}

// verifyEqual runs sluice verify and fails unless it exits 0 with every
// table equal; it returns the output.
func verifyEqual(t *testing.T, src, tgt string, tables ...string) string {
	t.Helper()
	a := []string{"verify", "--source", src, "--target", tgt}
	if len(tables) > 0 {
		a = append(a, "--tables", strings.Join(tables, ","))
	}
	r := testenv.Run(t, nil, a...)
	if r.Exit != 0 || !strings.Contains(r.Stdout, "verify: EQUAL") {
		t.Fatalf("sluice verify: exit %d, want 0 and EQUAL\nstdout:\n%s\nstderr:\n%s", r.Exit, r.Stdout, testenv.Tail(r.Stderr, 20))
	}
	return r.Stdout
}

// pgInt runs a query returning one integer on c.
func pgInt(t testing.TB, c *pgx.Conn, q string, args ...any) int64 {
	t.Helper()
	var n int64
	if err := c.QueryRow(context.Background(), q, args...).Scan(&n); err != nil {
		t.Fatalf("PostgreSQL: %s: %v", q, err)
	}
	return n
}

// pgExec runs a statement on c.
func pgExec(t testing.TB, c *pgx.Conn, q string, args ...any) {
	t.Helper()
	if _, err := c.Exec(context.Background(), q, args...); err != nil {
		t.Fatalf("PostgreSQL: %s: %v", q, err)
	}
}

// connect opens a connection to url for the test.
func connect(t testing.TB, url string) *pgx.Conn {
	t.Helper()
	c, err := pgx.Connect(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

// exitSummary is the part of a dead process's output that says why: a Go
// panic with its first frames, or the last log lines.
func exitSummary(out string) string {
	if i := strings.Index(out, "panic: "); i >= 0 {
		lines := strings.Split(out[i:], "\n")
		return strings.Join(lines[:min(len(lines), 12)], "\n")
	}
	return testenv.Tail(out, 3)
}

// waitStopped waits for a sync that must stop by itself and fails the test
// unless it exited with exit and its log names code and every one of names.
func waitStopped(t *testing.T, proc *testenv.Proc, exit int, code string, names ...string) {
	t.Helper()
	got, ok := proc.Wait(60 * time.Second)
	if !ok {
		t.Fatalf("sluice sync kept running; want it to stop with %s:\n%s", code, testenv.Tail(proc.Output(), 20))
	}
	out := proc.Output()
	named := strings.Contains(out, code)
	for _, n := range names {
		named = named && strings.Contains(out, n)
	}
	if got != exit || !named {
		t.Fatalf("exit %d; want %d with %s naming %s:\n%s", got, exit, code, strings.Join(names, ", "), testenv.Tail(out, 20))
	}
}

// refusedAtStart starts the sync, which must refuse to run (exit 4 with
// code, naming every one of names) before it creates a replication slot.
func (s *syncRun) refusedAtStart(code string, names ...string) {
	s.t.Helper()
	p := s.start()
	waitStopped(s.t, p, 4, code, names...)
	// the refusal is what it says; the watchers it stopped add no noise
	// (a check cut short reads as a privilege the user lacks)
	if strings.Contains(p.Output(), "SLUICE-WATCH-CHECK") {
		s.t.Errorf("a refused start warns of watch checks:\n%s", testenv.Tail(p.Output(), 20))
	}
	if slot, _ := testenv.SlotAndPublication(s.t, s.src, s.slot); slot {
		s.t.Errorf("the refused start left replication slot %s on the source", s.slot)
	}
}
