package pgstream

import (
	"net"
	"testing"
)

func TestPrefetchConn(t *testing.T) {
	testConnContract(t, func(t *testing.T) (net.Conn, net.Conn) {
		return loopbackPair(t, func(c net.Conn) (net.Conn, error) { return newPrefetchConn(c), nil })
	})
}

// Over the paced reader, as the stream uses it.
func TestPrefetchConnOverPacedConn(t *testing.T) {
	testConnContract(t, func(t *testing.T) (net.Conn, net.Conn) {
		return loopbackPair(t, func(c net.Conn) (net.Conn, error) {
			pc, err := newPacedConn(c)
			if err != nil {
				return nil, err
			}
			return newPrefetchConn(pc), nil
		})
	})
}
