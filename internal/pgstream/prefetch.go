package pgstream

import (
	"net"
	"os"
	"sync"
	"time"
)

// prefetchConn reads the replication connection ahead into memory, up to
// prefetchChunks reads of prefetchChunk bytes, on a goroutine that does
// nothing else.
//
// Why: working off a backlog, the walsender blocks whenever its socket is
// full, and a Unix socket holds only the walsender's send buffer (208 KiB by
// the kernel's default, about 200 of its one-message packets; see
// WantSocketBuffer). Read by the goroutine that also decodes the messages,
// the socket stayed full while a batch was decoded and the walsender waited.
// Emptied at once into memory, it lets the walsender decode its next
// messages while sluice decodes the last ones: catching up at the kernel's
// default buffer went from about 41k to about 65k changes/s here
// (docs/DESIGN-NOTES.md). The buffers in flight are bounded, so a
// walsender that outruns sluice blocks as before, only later.
type prefetchConn struct {
	net.Conn // reads go through fill; writes, addresses and write deadlines to it

	chunks chan *[]byte // filled buffers, in order; closed after the last
	cur    *[]byte      // the buffer being read from
	off    int          // how much of cur was read
	err    error        // why fill stopped; read after chunks is closed

	readDeadline connDeadline
	kick         chan struct{} // wakes a Read waiting when the deadline moves
	done         chan struct{} // closed by Close: fill stops
	closeOnce    sync.Once
}

const (
	prefetchChunk  = 64 << 10
	prefetchChunks = 64 // with prefetchChunk: 4 MiB, as much as WantSocketBuffer
)

var chunkPool = sync.Pool{New: func() any { b := make([]byte, prefetchChunk); return &b }}

func newPrefetchConn(c net.Conn) *prefetchConn {
	p := &prefetchConn{Conn: c, chunks: make(chan *[]byte, prefetchChunks),
		kick: make(chan struct{}, 1), done: make(chan struct{})}
	go p.fill()
	return p
}

// fill reads the connection until it fails or is closed.
func (p *prefetchConn) fill() {
	defer close(p.chunks)
	for {
		buf := chunkPool.Get().(*[]byte)
		*buf = (*buf)[:cap(*buf)]
		n, err := p.Conn.Read(*buf)
		if n > 0 {
			*buf = (*buf)[:n]
			select {
			case p.chunks <- buf:
			case <-p.done:
				p.err = net.ErrClosed
				return
			}
		} else {
			chunkPool.Put(buf)
		}
		if err != nil {
			p.err = err
			return
		}
	}
}

// Read returns prefetched bytes, waiting for them until the read deadline.
func (p *prefetchConn) Read(b []byte) (int, error) {
	select {
	case <-p.done:
		return 0, net.ErrClosed
	default:
	}
	for p.cur == nil {
		if err := p.next(); err != nil {
			return 0, err
		}
	}
	n := copy(b, (*p.cur)[p.off:])
	p.off += n
	if p.off == len(*p.cur) {
		chunkPool.Put(p.cur)
		p.cur, p.off = nil, 0
	}
	return n, nil
}

// next takes the next filled buffer, or returns when the deadline passes
// or moves (pgconn moves it to interrupt a read when a context ends).
func (p *prefetchConn) next() error {
	select {
	case buf, ok := <-p.chunks:
		return p.take(buf, ok)
	default:
	}
	var timeout <-chan time.Time
	if wait, ok := p.readDeadline.left(); ok {
		if wait <= 0 {
			return os.ErrDeadlineExceeded
		}
		t := time.NewTimer(wait)
		defer t.Stop()
		timeout = t.C
	}
	select {
	case buf, ok := <-p.chunks:
		return p.take(buf, ok)
	case <-p.kick:
	case <-timeout:
	}
	return nil
}

func (p *prefetchConn) take(buf *[]byte, ok bool) error {
	if !ok {
		return p.err
	}
	p.cur = buf
	return nil
}

func (p *prefetchConn) SetDeadline(t time.Time) error {
	p.SetReadDeadline(t)
	return p.Conn.SetWriteDeadline(t)
}

func (p *prefetchConn) SetReadDeadline(t time.Time) error {
	p.readDeadline.set(t)
	select {
	case p.kick <- struct{}{}:
	default: // a wake-up is already pending
	}
	return nil
}

// Close ends the connection and fill with it.
func (p *prefetchConn) Close() error {
	p.closeOnce.Do(func() { close(p.done) })
	return p.Conn.Close()
}
