//go:build unix

package pgstream

import (
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"
)

// pacedConn is the replication connection's socket taken out of Go's network
// poller and read by polling, readWait apart while the stream is busy.
//
// Why: the walsender sends every decoded message as its own packet. Go's
// poller watches sockets edge-triggered, so each packet wakes the process
// even when nobody is reading — over a thousand wake-ups (context switches)
// a second under pgbench, which on a host shared with the source is CPU
// taken from it. Here packets pile up in the socket between reads and are
// taken in one system call; no thread is woken when one arrives, which also
// makes the walsender's sends cheaper. Catching up, reads come back full and
// the next follows at once. The socket stays non-blocking and is read and
// written with raw system calls, which never block, so the Go scheduler has
// no thread to hand off or monitor for them either.
type pacedConn struct {
	fd            int
	local, remote net.Addr
	wait          time.Duration // before the next read: 0 after a full one
	pace          time.Duration // the pause once the socket is drained: readWait, less when it fills
	drained       int           // bytes read since the last pause

	readDeadline, writeDeadline connDeadline

	// use is held (shared) during each system call and (exclusive) by Close,
	// so the descriptor is never closed under a read and then reused.
	use    sync.RWMutex
	closed atomic.Bool
}

// readWait is the pause after a read that emptied the socket; on a busy
// stream it adds at most that to the lag (the apply batch waits 100 ms
// anyway). With nothing arriving the pause doubles up to idleWait, so an
// idle stream costs a few wake-ups a second and the first change after a
// quiet spell waits at most idleWait.
//
// The pause also has to end before the socket is full, or the walsender
// blocks and the stream is capped at one socket's worth per pause. Over TCP
// the kernel grows the receive buffer to megabytes, but a Unix socket holds
// what the sender's buffer does: with Linux's default (see WantSocketBuffer)
// about 200 of the walsender's one-message packets, some 40 KB. So when more
// than fillBytes came in one go the pause halves (down to minWait), and when little came it doubles
// back to readWait: catching up over a Unix socket, the stream runs as fast
// as the walsender sends, and under a steady load the pause stays readWait.
const (
	readWait  = 10 * time.Millisecond
	minWait   = 500 * time.Microsecond
	idleWait  = 80 * time.Millisecond
	fillBytes = 16 << 10
)

// newPacedConn takes c's socket out of the poller; a connection without one
// (none in practice) is returned unchanged.
func newPacedConn(c net.Conn) (net.Conn, error) {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return c, nil
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return c, nil
	}
	fd := -1
	var dupErr error
	if err := raw.Control(func(f uintptr) {
		syscall.ForkLock.RLock()
		fd, dupErr = syscall.Dup(int(f))
		if dupErr == nil {
			syscall.CloseOnExec(fd)
		}
		syscall.ForkLock.RUnlock()
	}); err != nil || dupErr != nil {
		c.Close()
		return nil, os.NewSyscallError("dup", errors.Join(err, dupErr))
	}
	pc := &pacedConn{fd: fd, local: c.LocalAddr(), remote: c.RemoteAddr(), pace: readWait}
	// Closing c removes its descriptor from the poller; the socket lives on
	// in the duplicate, which the poller never saw.
	c.Close()
	if err := syscall.SetNonblock(fd, true); err != nil { // shared with c's: already so
		syscall.Close(fd)
		return nil, os.NewSyscallError("fcntl", err)
	}
	return pc, nil
}

func (c *pacedConn) Read(b []byte) (int, error) {
	c.use.RLock()
	defer c.use.RUnlock()
	for {
		if c.wait > 0 {
			time.Sleep(c.wait)
		}
		if err := c.check(&c.readDeadline); err != nil {
			return 0, err
		}
		n, err := c.syscall(syscall.SYS_READ, b)
		switch {
		case err == syscall.EAGAIN && c.drained > 0: // the last read emptied the socket to the byte
			c.pace = nextPace(c.pace, c.drained)
			c.wait, c.drained = c.pace, 0
			continue
		case err == syscall.EAGAIN: // nothing came during a whole pause
			c.pace = readWait
			c.wait = min(max(2*c.wait, readWait), idleWait)
			continue
		case err == syscall.EINTR:
			continue
		case err != nil:
			return 0, &net.OpError{Op: "read", Net: c.remote.Network(), Source: c.local, Addr: c.remote, Err: os.NewSyscallError("read", err)}
		case n == 0 && len(b) > 0:
			return 0, io.EOF
		}
		c.wait = 0
		c.drained += n
		if n < len(b)/4 { // the socket is (nearly) empty: let it fill
			c.pace = nextPace(c.pace, c.drained)
			c.wait, c.drained = c.pace, 0
		}
		return n, nil
	}
}

// nextPace is the pause after a read streak that drained the socket of
// drained bytes: shorter when it came close to full, longer when it did not.
func nextPace(pace time.Duration, drained int) time.Duration {
	switch {
	case drained >= fillBytes:
		return max(pace/2, minWait)
	case drained < fillBytes/4:
		return min(pace*2, readWait)
	}
	return pace
}

func (c *pacedConn) Write(b []byte) (int, error) {
	c.use.RLock()
	defer c.use.RUnlock()
	written := 0
	for written < len(b) {
		if err := c.check(&c.writeDeadline); err != nil {
			return written, err
		}
		n, err := c.syscall(syscall.SYS_WRITE, b[written:])
		if err == syscall.EAGAIN { // the send buffer is full (status updates are tiny: rare)
			time.Sleep(time.Millisecond)
			continue
		}
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return written, &net.OpError{Op: "write", Net: c.remote.Network(), Source: c.local, Addr: c.remote, Err: os.NewSyscallError("write", err)}
		}
		written += n
	}
	return written, nil
}

// syscall reads or writes b without blocking. A raw system call: the socket
// is non-blocking, so the scheduler need not be told (which would wake its
// monitor thread on every call).
func (c *pacedConn) syscall(trap uintptr, b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	n, _, errno := syscall.RawSyscall(trap, uintptr(c.fd), uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)))
	if errno != 0 {
		return 0, errno
	}
	return int(n), nil
}

// check reports a closed connection or a passed deadline.
func (c *pacedConn) check(d *connDeadline) error {
	if c.closed.Load() {
		return net.ErrClosed
	}
	if d.passed() {
		return os.ErrDeadlineExceeded
	}
	return nil
}

// Close waits for a read in progress to see the flag, then closes.
func (c *pacedConn) Close() error {
	if c.closed.Swap(true) {
		return net.ErrClosed
	}
	c.use.Lock()
	defer c.use.Unlock()
	return syscall.Close(c.fd)
}

func (c *pacedConn) LocalAddr() net.Addr  { return c.local }
func (c *pacedConn) RemoteAddr() net.Addr { return c.remote }

func (c *pacedConn) SetDeadline(t time.Time) error {
	c.SetReadDeadline(t)
	return c.SetWriteDeadline(t)
}

func (c *pacedConn) SetReadDeadline(t time.Time) error {
	c.readDeadline.set(t)
	return nil
}

func (c *pacedConn) SetWriteDeadline(t time.Time) error {
	c.writeDeadline.set(t)
	return nil
}
