package pgstream

import (
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
)

// WantSocketBuffer is the send buffer the walsender's end of a Unix-socket
// connection should have. PostgreSQL does not set SO_SNDBUF, so that end gets
// the kernel's default, net.core.wmem_default: 208 KiB on Linux, which holds
// only about 200 of the walsender's one-message packets. Working off a
// backlog, the walsender then waits whenever sluice has not emptied it yet
// (prefetchConn keeps that short); with 4 MiB it runs ahead, and a catch-up
// here ran about half as fast again (docs/DESIGN-NOTES.md).
const WantSocketBuffer = 4 << 20

// wmemDefaultPath is where Linux shows net.core.wmem_default.
var wmemDefaultPath = "/proc/sys/net/core/wmem_default"

// socketBuffer reads the default send buffer that a new socket on this host
// gets; 0 where the host does not say (not Linux, or /proc unreadable).
func socketBuffer() int {
	b, err := os.ReadFile(wmemDefaultPath)
	if err != nil {
		return 0
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return 0
	}
	return n
}

// smallBufferWarned keeps the warning to one per process: a sync that
// reconnects after an error would otherwise repeat it.
var smallBufferWarned sync.Once

// WarnSmallSocketBuffer logs SLUICE-SOCKET-BUFFER once when the stream comes
// over a Unix socket whose walsender end buffers less than WantSocketBuffer.
// A Unix socket means sluice runs on the source's host, so the host's
// setting is the walsender's.
func (s *Stream) WarnSmallSocketBuffer(log *slog.Logger) {
	if s.socketBuffer == 0 || s.socketBuffer >= WantSocketBuffer {
		return
	}
	smallBufferWarned.Do(func() {
		log.Warn("the change stream comes over a Unix socket with a small send buffer: catching up after a stop runs at about two thirds of the speed",
			"code", "SLUICE-SOCKET-BUFFER", "net.core.wmem_default", s.socketBuffer,
			"fix", "on the source host: sysctl -w net.core.wmem_default="+strconv.Itoa(WantSocketBuffer)+", then restart sync (it resumes); see docs/OPERATIONS.md")
	})
}
