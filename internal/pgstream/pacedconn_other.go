//go:build !unix

package pgstream

import "net"

// newPacedConn keeps the connection as it is where raw socket reads are not
// available (see pacedconn.go).
func newPacedConn(c net.Conn) (net.Conn, error) { return c, nil }
