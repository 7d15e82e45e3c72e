//go:build unix

package pgstream

import (
	"errors"
	"io"
	"net"
	"testing"
	"time"
)

// pacedPair dials a loopback listener and wraps the client end.
func pacedPair(t *testing.T) (client net.Conn, server net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	srv, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	pc, err := newPacedConn(c)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := pc.(*pacedConn); !ok {
		t.Fatalf("a TCP connection was not taken out of the poller: %T", pc)
	}
	t.Cleanup(func() { pc.Close() })
	return pc, srv
}

func TestPacedConnCarriesBytesBothWays(t *testing.T) {
	pc, srv := pacedPair(t)
	want := make([]byte, 1<<20) // more than a socket buffer: reads must come back full and keep going
	for i := range want {
		want[i] = byte(i * 7)
	}
	go srv.Write(want)
	got := make([]byte, len(want))
	if _, err := io.ReadFull(pc, got); err != nil {
		t.Fatalf("read 1 MiB: %v", err)
	}
	for i := range got {
		if got[i] != want[i] {
			t.Fatalf("byte %d = %d, want %d", i, got[i], want[i])
		}
	}
	if _, err := pc.Write([]byte("status")); err != nil {
		t.Fatal(err)
	}
	back := make([]byte, 6)
	if _, err := io.ReadFull(srv, back); err != nil || string(back) != "status" {
		t.Fatalf("server read %q, %v", back, err)
	}
}

// A passed deadline is a timeout (pgconn keeps the connection after one);
// the stream uses it for status updates and to stop.
func TestPacedConnDeadlineIsATimeout(t *testing.T) {
	pc, _ := pacedPair(t)
	pc.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	start := time.Now()
	_, err := pc.Read(make([]byte, 16))
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("read past the deadline: %v, want a timeout", err)
	}
	if waited := time.Since(start); waited > time.Second {
		t.Errorf("deadline 50 ms away took %v to end the read", waited)
	}
	pc.SetReadDeadline(time.Time{}) // cleared: reads work again
	go func() { time.Sleep(20 * time.Millisecond); pc.(*pacedConn).readDeadline.Store(time.Now().UnixNano()) }()
	if _, err := pc.Read(make([]byte, 16)); !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("deadline moved to now during a read: %v, want a timeout", err)
	}
}

func TestPacedConnEndings(t *testing.T) {
	pc, srv := pacedPair(t)
	srv.Write([]byte("last"))
	srv.Close()
	got, err := io.ReadAll(pc)
	if err != nil || string(got) != "last" {
		t.Fatalf("read to the peer's close: %q, %v; want \"last\" then EOF", got, err)
	}

	pc2, _ := pacedPair(t)
	done := make(chan error, 1)
	go func() { _, err := pc2.Read(make([]byte, 16)); done <- err }()
	time.Sleep(30 * time.Millisecond)
	pc2.Close()
	select {
	case err := <-done:
		if !errors.Is(err, net.ErrClosed) {
			t.Errorf("read during Close: %v, want net.ErrClosed", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("Close did not end a read in progress")
	}
	if _, err := pc2.Write([]byte("x")); !errors.Is(err, net.ErrClosed) {
		t.Errorf("write after Close: %v, want net.ErrClosed", err)
	}
}

// TestNextPace: a read streak that nearly filled the socket shortens the
// pause (a Unix socket holds only ~40 KB of the walsender's packets, and a
// full one stops the stream until the next read); a thin one lengthens it
// back to readWait, never past it or below minWait.
func TestNextPace(t *testing.T) {
	tests := []struct {
		name    string
		pace    time.Duration
		drained int
		want    time.Duration
	}{
		{"full socket halves the pause", readWait, fillBytes, readWait / 2},
		{"keeps halving while it fills", readWait / 2, 3 * fillBytes, readWait / 4},
		{"never below minWait", minWait, 10 * fillBytes, minWait},
		{"thin streak doubles back", readWait / 4, fillBytes/4 - 1, readWait / 2},
		{"never above readWait", readWait, 0, readWait},
		{"in between: steady", readWait / 2, fillBytes / 2, readWait / 2},
	}
	for _, tt := range tests {
		if got := nextPace(tt.pace, tt.drained); got != tt.want {
			t.Errorf("%s: nextPace(%v, %d) = %v, want %v", tt.name, tt.pace, tt.drained, got, tt.want)
		}
	}
}
