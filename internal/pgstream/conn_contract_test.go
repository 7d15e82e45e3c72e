package pgstream

import (
	"errors"
	"io"
	"net"
	"testing"
	"time"
)

// loopbackPair dials a loopback listener and returns both ends, the client
// end wrapped by wrap.
func loopbackPair(t *testing.T, wrap func(net.Conn) (net.Conn, error)) (client, server net.Conn) {
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
	wc, err := wrap(c)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { wc.Close() })
	return wc, srv
}

// testConnContract checks what pgconn relies on from the replication
// connection however it is read: bytes in order both ways; a passed read
// deadline is a timeout (also when moved to now during a read, which is how
// pgconn ends a read when a context ends) and leaves the connection usable;
// EOF after the peer closes; net.ErrClosed for a read during Close and a
// write after it.
func testConnContract(t *testing.T, pair func(t *testing.T) (net.Conn, net.Conn)) {
	t.Run("bytes in order", func(t *testing.T) {
		c, srv := pair(t)
		want := make([]byte, 1<<20+12345) // more than socket and read buffers: many full reads
		for i := range want {
			want[i] = byte(i * 13)
		}
		go srv.Write(want)
		got := make([]byte, 0, len(want))
		buf := make([]byte, 7777) // odd-sized reads, across the buffers
		for len(got) < len(want) {
			n, err := c.Read(buf)
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
		if _, err := c.Write([]byte("status")); err != nil {
			t.Fatal(err)
		}
		back := make([]byte, 6)
		if _, err := io.ReadFull(srv, back); err != nil || string(back) != "status" {
			t.Fatalf("server read %q, %v", back, err)
		}
	})
	t.Run("deadlines", func(t *testing.T) {
		c, srv := pair(t)
		c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
		start := time.Now()
		_, err := c.Read(make([]byte, 16))
		var ne net.Error
		if !errors.As(err, &ne) || !ne.Timeout() {
			t.Fatalf("read past the deadline: %v, want a timeout", err)
		}
		if waited := time.Since(start); waited > time.Second {
			t.Errorf("a deadline 50 ms away took %v to end the read", waited)
		}
		c.SetReadDeadline(time.Time{})
		go func() { time.Sleep(30 * time.Millisecond); c.SetDeadline(time.Now()) }()
		if _, err := c.Read(make([]byte, 16)); !errors.As(err, &ne) || !ne.Timeout() {
			t.Fatalf("deadline moved to now during a read: %v, want a timeout", err)
		}
		c.SetDeadline(time.Time{})
		srv.Write([]byte("after"))
		got := make([]byte, 5)
		if _, err := io.ReadFull(c, got); err != nil || string(got) != "after" {
			t.Fatalf("read after the timeouts: %q, %v; the connection must stay usable", got, err)
		}
	})
	t.Run("endings", func(t *testing.T) {
		c, srv := pair(t)
		srv.Write([]byte("last"))
		srv.Close()
		got, err := io.ReadAll(c)
		if err != nil || string(got) != "last" {
			t.Fatalf("read to the peer's close: %q, %v; want \"last\" then EOF", got, err)
		}

		c2, _ := pair(t)
		done := make(chan error, 1)
		go func() { _, err := c2.Read(make([]byte, 16)); done <- err }()
		time.Sleep(30 * time.Millisecond)
		c2.Close()
		select {
		case err := <-done:
			if !errors.Is(err, net.ErrClosed) {
				t.Errorf("read during Close: %v, want net.ErrClosed", err)
			}
		case <-time.After(2 * time.Second):
			t.Fatal("Close did not end a read in progress")
		}
		if _, err := c2.Write([]byte("x")); !errors.Is(err, net.ErrClosed) {
			t.Errorf("write after Close: %v, want net.ErrClosed", err)
		}
	})
}
