//go:build unix

package watch

import (
	"os"
	"syscall"
)

// deviceOf identifies the filesystem path is on.
func deviceOf(path string) (uint64, bool) {
	st, err := os.Stat(path)
	if err != nil {
		return 0, false
	}
	if s, ok := st.Sys().(*syscall.Stat_t); ok {
		return uint64(s.Dev), true
	}
	return 0, false
}
