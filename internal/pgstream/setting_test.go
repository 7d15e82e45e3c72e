package pgstream

import (
	"testing"
	"time"
)

// wal_sender_timeout as SHOW prints it.
func TestParseSetting(t *testing.T) {
	for v, want := range map[string]time.Duration{"60s": time.Minute, "500ms": 500 * time.Millisecond, "2min": 2 * time.Minute, "1h": time.Hour, "0": 0, "1500": 1500 * time.Millisecond} {
		if got, ok := parseSetting(v); !ok || got != want {
			t.Errorf("parseSetting(%q) = %v, %v; want %v", v, got, ok, want)
		}
	}
	for _, v := range []string{"", "s", "10 parsecs", "-1"} {
		if got, ok := parseSetting(v); ok {
			t.Errorf("parseSetting(%q) = %v; want not understood", v, got)
		}
	}
}
