// Package cpuprio lowers the CPU priority of the running process, so that on a
// host it shares with the source database the database wins the processors
// whenever both want them.
package cpuprio

import "fmt"

// MaxNice is the lowest priority a process can take (nice 19).
const MaxNice = 19

// Lower raises the nice value of every thread of the process to nice (0 to
// 19; higher runs later) and returns the value the process runs at after it.
// A process already running at nice or higher is left as it is: lowering a
// nice value back needs privileges, and whoever started it lower chose so.
func Lower(nice int) (int, error) {
	if nice < 0 || nice > MaxNice {
		return 0, fmt.Errorf("nice %d is out of range: give 0 (unchanged) to %d (lowest priority)", nice, MaxNice)
	}
	return lower(nice)
}
