package cpuprio

import (
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/sluice-db/sluice/internal/testenv"
)

// threadNices is every thread's nice value, as /proc shows it.
func threadNices(t *testing.T) map[int]int {
	t.Helper()
	nices, err := testenv.ThreadNices(0)
	if err != nil {
		t.Skipf("no /proc here: %v", err)
	}
	return nices
}

// startThreads makes the runtime start n more threads (each goroutine holds
// its own while it waits) and returns a function that lets them go.
func startThreads(n int) func() {
	var ready, done sync.WaitGroup
	release := make(chan struct{})
	for i := 0; i < n; i++ {
		ready.Add(1)
		done.Add(1)
		go func() {
			defer done.Done()
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			ready.Done()
			<-release
		}()
	}
	ready.Wait()
	return func() { close(release); done.Wait() }
}

func TestLowerReachesEveryThreadOldAndNew(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("per-thread nice values are Linux's")
	}
	before := threadNices(t)
	base := 0
	for _, n := range before {
		if n > base {
			base = n
		}
	}
	if base >= 15 {
		t.Skipf("the test already runs at nice %d", base)
	}
	release := startThreads(4) // threads that exist before the call
	defer release()
	want := base + 3
	got, err := Lower(want)
	if err != nil {
		t.Fatal(err)
	}
	if got != want {
		t.Fatalf("Lower(%d) reported nice %d", want, got)
	}
	releaseLater := startThreads(4) // threads started after it inherit it
	defer releaseLater()
	nices := threadNices(t)
	if len(nices) < 8 {
		t.Fatalf("expected at least 8 threads, found %d", len(nices))
	}
	for tid, n := range nices {
		if n != want {
			t.Errorf("thread %d runs at nice %d, want %d", tid, n, want)
		}
	}

	// Asking for a higher priority than the process has leaves it as it is.
	if got, err := Lower(want - 1); err != nil || got != want {
		t.Fatalf("Lower(%d) after nice %d: got nice %d, err %v; want it unchanged", want-1, want, got, err)
	}
	for tid, n := range threadNices(t) {
		if n != want {
			t.Errorf("thread %d moved to nice %d after a request for a higher priority", tid, n)
		}
	}
}

func TestLowerRefusesOutOfRange(t *testing.T) {
	for _, nice := range []int{-1, 20} {
		_, err := Lower(nice)
		if err == nil || !strings.Contains(err.Error(), strconv.Itoa(nice)) || !strings.Contains(err.Error(), "19") {
			t.Errorf("Lower(%d): want an error naming the value and the range, got %v", nice, err)
		}
	}
}
