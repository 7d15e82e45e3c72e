package pgstream

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

func TestSocketBufferReadsTheHostDefault(t *testing.T) {
	dir := t.TempDir()
	old := wmemDefaultPath
	t.Cleanup(func() { wmemDefaultPath = old })

	wmemDefaultPath = filepath.Join(dir, "wmem_default")
	if err := os.WriteFile(wmemDefaultPath, []byte("212992\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := socketBuffer(); got != 212992 {
		t.Errorf("socketBuffer() = %d, want 212992", got)
	}
	wmemDefaultPath = filepath.Join(dir, "missing")
	if got := socketBuffer(); got != 0 {
		t.Errorf("socketBuffer() without the file = %d, want 0 (unknown: no warning)", got)
	}
}

func TestWarnSmallSocketBuffer(t *testing.T) {
	for _, tc := range []struct {
		name   string
		buffer int
		want   bool
	}{
		{"TCP, or a host that does not say", 0, false},
		{"Linux default", 212992, true},
		{"raised as advised", WantSocketBuffer, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			smallBufferWarned = sync.Once{}
			var out bytes.Buffer
			log := slog.New(slog.NewTextHandler(&out, nil))
			s := &Stream{socketBuffer: tc.buffer}
			s.WarnSmallSocketBuffer(log)
			s.WarnSmallSocketBuffer(log) // a reconnect: still one line
			if got := strings.Count(out.String(), "SLUICE-SOCKET-BUFFER"); got != map[bool]int{true: 1, false: 0}[tc.want] {
				t.Fatalf("logged SLUICE-SOCKET-BUFFER %d times for a %d-byte buffer:\n%s", got, tc.buffer, out.String())
			}
			if tc.want && !strings.Contains(out.String(), "net.core.wmem_default=4194304") {
				t.Errorf("the warning does not say what to set:\n%s", out.String())
			}
		})
	}
}
