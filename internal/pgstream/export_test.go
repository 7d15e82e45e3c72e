package pgstream

// SetReadAheadBytes sets the read-ahead budget for a test and returns the
// function that restores it.
func SetReadAheadBytes(n int64) (restore func()) {
	old := readAheadBytes
	readAheadBytes = n
	return func() { readAheadBytes = old }
}
