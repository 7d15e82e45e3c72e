package synctest

import (
	"net/url"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sluice-db/sluice/internal/testenv"
)

// TestSyncOverUnixSockets: with sluice on the databases' own machine, both
// URLs can name the servers' Unix sockets (?host=dir, ?socket=file). The
// whole migration runs over them, the replication stream included: copy,
// a change streamed, cutover, finish, verify equal.
func TestSyncOverUnixSockets(t *testing.T) {
	t.Parallel()
	p := newPair(t)
	var pgDirs, mySocket string
	if err := p.Source.QueryRow(t.Context(), `SHOW unix_socket_directories`).Scan(&pgDirs); err != nil {
		t.Fatal(err)
	}
	if err := p.Target.QueryRow(`SELECT @@socket`).Scan(&mySocket); err != nil {
		t.Fatal(err)
	}
	pgDir, _, _ := strings.Cut(pgDirs, ",")
	if !strings.HasPrefix(pgDir, "/") || !strings.HasPrefix(mySocket, "/") {
		t.Skipf("servers without Unix sockets (PostgreSQL %q, MariaDB %q)", pgDirs, mySocket)
	}
	src := "postgres://postgres@/" + p.Name + "?host=" + url.QueryEscape(strings.TrimSpace(pgDir))
	tgt := "mysql://root@/" + p.Name + "?socket=" + url.QueryEscape(mySocket)

	createOrders(t, p, 3000)
	s := newSync(t, src, tgt)
	s.start()
	s.waitCaughtUp(60 * time.Second)
	// The walsender's end of the socket buffers net.core.wmem_default; below
	// 4 MiB sluice says how to raise it (catching up would run at half speed).
	if b, err := os.ReadFile("/proc/sys/net/core/wmem_default"); err == nil {
		wmem, _ := strconv.Atoi(strings.TrimSpace(string(b)))
		warned := strings.Contains(s.current().Output(), "SLUICE-SOCKET-BUFFER")
		if small := wmem < 4<<20; warned != small {
			t.Errorf("net.core.wmem_default is %d: SLUICE-SOCKET-BUFFER logged %v, want %v\n%s", wmem, warned, small, testenv.Tail(s.current().Output(), 20))
		}
	}
	p.PG(t, `INSERT INTO orders (customer, amount) VALUES (7, 70)`)
	p.PG(t, `UPDATE orders SET amount = amount + 1 WHERE id <= 10`)
	s.waitApplied(30 * time.Second)
	if r := s.cutover(); r.Exit != 0 {
		t.Fatalf("sluice cutover: exit %d\n%s%s", r.Exit, r.Stdout, r.Stderr)
	}
	s.finish()
	if out := verifyEqual(t, src, tgt, "orders"); !strings.Contains(out, "3001 rows") {
		t.Errorf("verify over the sockets did not compare the 3,001 rows:\n%s", out)
	}
}
