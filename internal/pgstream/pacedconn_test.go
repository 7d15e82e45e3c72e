//go:build unix

package pgstream

import (
	"net"
	"testing"
	"time"
)

func TestPacedConn(t *testing.T) {
	testConnContract(t, func(t *testing.T) (net.Conn, net.Conn) {
		c, srv := loopbackPair(t, newPacedConn)
		if _, ok := c.(*pacedConn); !ok {
			t.Fatalf("a TCP connection was not taken out of the poller: %T", c)
		}
		return c, srv
	})
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
