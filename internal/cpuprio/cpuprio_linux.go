package cpuprio

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"syscall"
)

// lower renices each thread: on Linux a nice value belongs to a thread, not
// to the process, and a new thread takes its creator's. Go starts threads at
// any time, so the list is read again until a pass finds none left to change;
// threads started after that come from reniced ones.
func lower(nice int) (int, error) {
	for pass := 0; pass < 10; pass++ {
		changed, err := lowerThreads(nice)
		if err != nil || changed == 0 {
			return current(), err
		}
	}
	return current(), nil
}

func lowerThreads(nice int) (changed int, err error) {
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		return 0, fmt.Errorf("list the process's threads: %w", err)
	}
	for _, task := range tasks {
		tid, convErr := strconv.Atoi(task.Name())
		if convErr != nil {
			continue
		}
		raw, getErr := syscall.Getpriority(syscall.PRIO_PROCESS, tid)
		if errors.Is(getErr, syscall.ESRCH) {
			continue // the thread has exited
		}
		if getErr != nil {
			return changed, fmt.Errorf("read the priority of thread %d: %w", tid, getErr)
		}
		if 20-raw >= nice { // the system call returns 20 - nice
			continue
		}
		if setErr := syscall.Setpriority(syscall.PRIO_PROCESS, tid, nice); setErr != nil && !errors.Is(setErr, syscall.ESRCH) {
			return changed, fmt.Errorf("set the priority of thread %d to nice %d: %w", tid, nice, setErr)
		}
		changed++
	}
	return changed, nil
}

// current is the calling thread's nice value.
func current() int {
	raw, err := syscall.Getpriority(syscall.PRIO_PROCESS, 0)
	if err != nil {
		return 0
	}
	return 20 - raw
}
