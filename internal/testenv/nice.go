package testenv

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

// ThreadNices reads the nice value of every thread of process pid (0: this
// process) from /proc, as top and ps show them: thread id → nice.
func ThreadNices(pid int) (map[int]int, error) {
	dir := "/proc/self/task"
	if pid != 0 {
		dir = fmt.Sprintf("/proc/%d/task", pid)
	}
	tasks, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("list the threads of process %d: %w", pid, err)
	}
	out := map[int]int{}
	for _, task := range tasks {
		raw, err := os.ReadFile(dir + "/" + task.Name() + "/stat")
		if err != nil {
			continue // the thread exited
		}
		// The command name, in parentheses, may hold spaces: count fields
		// from after it. Nice is field 19, the 17th after the name.
		stat := string(raw)
		fields := strings.Fields(stat[strings.LastIndexByte(stat, ')')+1:])
		if len(fields) < 17 {
			return nil, fmt.Errorf("thread %s: short stat line %q", task.Name(), stat)
		}
		nice, err := strconv.Atoi(fields[16])
		if err != nil {
			return nil, fmt.Errorf("thread %s: nice field %q: %w", task.Name(), fields[16], err)
		}
		tid, _ := strconv.Atoi(task.Name())
		out[tid] = nice
	}
	return out, nil
}
