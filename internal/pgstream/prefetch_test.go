package pgstream

import (
	"errors"
	"io"
	"net"
	"testing"
	"time"
)

// prefetchPair dials a loopback listener and wraps the client end.
func prefetchPair(t *testing.T) (*prefetchConn, net.Conn) {
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
	p := newPrefetchConn(c)
	t.Cleanup(func() { p.Close(); srv.Close() })
	return p, srv
}

// Bytes come out in order across many buffers, read in odd sizes.
func TestPrefetchConnKeepsOrder(t *testing.T) {
	p, srv := prefetchPair(t)
	want := make([]byte, 3*prefetchChunk+12345)
	for i := range want {
		want[i] = byte(i * 13)
	}
	go srv.Write(want)
	got := make([]byte, 0, len(want))
	buf := make([]byte, 7777)
	for len(got) < len(want) {
		n, err := p.Read(buf)
		if err != nil {
			t.Fatalf("after %d bytes: %v", len(got), err)
		}
		got = append(got, buf[:n]...)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("byte %d = %d, want %d", i, got[i], want[i])
		}
	}
	if _, err := p.Write([]byte("status")); err != nil {
		t.Fatal(err)
	}
	back := make([]byte, 6)
	if _, err := io.ReadFull(srv, back); err != nil || string(back) != "status" {
		t.Fatalf("server read %q, %v; writes must pass straight through", back, err)
	}
}

// pgconn ends a read by moving the deadline to now (a context ended) and
// keeps the connection after a timeout: both must work with nothing coming.
func TestPrefetchConnDeadlines(t *testing.T) {
	p, srv := prefetchPair(t)
	p.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	start := time.Now()
	_, err := p.Read(make([]byte, 16))
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("read past the deadline: %v, want a timeout", err)
	}
	if waited := time.Since(start); waited > time.Second {
		t.Errorf("a deadline 50 ms away took %v to end the read", waited)
	}
	p.SetReadDeadline(time.Time{})
	go func() { time.Sleep(30 * time.Millisecond); p.SetDeadline(time.Now()) }()
	if _, err := p.Read(make([]byte, 16)); !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("deadline moved to now during a read: %v, want a timeout", err)
	}
	p.SetDeadline(time.Time{})
	srv.Write([]byte("after"))
	got := make([]byte, 5)
	if _, err := io.ReadFull(p, got); err != nil || string(got) != "after" {
		t.Fatalf("read after the timeouts: %q, %v; the connection must stay usable", got, err)
	}
}

func TestPrefetchConnEndings(t *testing.T) {
	p, srv := prefetchPair(t)
	srv.Write([]byte("last"))
	srv.Close()
	got, err := io.ReadAll(p)
	if err != nil || string(got) != "last" {
		t.Fatalf("read to the peer's close: %q, %v; want \"last\" then EOF", got, err)
	}

	p2, _ := prefetchPair(t)
	done := make(chan error, 1)
	go func() { _, err := p2.Read(make([]byte, 16)); done <- err }()
	time.Sleep(30 * time.Millisecond)
	p2.Close()
	select {
	case err := <-done:
		if !errors.Is(err, net.ErrClosed) {
			t.Errorf("read during Close: %v, want net.ErrClosed", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("Close did not end a read in progress")
	}
}
