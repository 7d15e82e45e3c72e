package pgstream

// SetReadAheadBytes sets the stream's read-ahead budget for a test; call it
// before Pump.
func (s *Stream) SetReadAheadBytes(n int64) { s.readAhead = n }
