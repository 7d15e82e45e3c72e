package failure

import (
	"errors"
	"strings"
	"testing"
)

// A panic in a guarded function becomes an internal error (exit 10) with
// the stack in its context, not a crash with Go's status 2 (a usage error).
func TestGuardTurnsAPanicIntoAnInternalError(t *testing.T) {
	err := Guard(func() error {
		var m map[string]int
		m["x"] = 1 // panics: assignment to entry in nil map
		return nil
	})
	if got := ExitCode(err); got != ExitInternal {
		t.Fatalf("exit status %d for %v; want %d", got, err, ExitInternal)
	}
	if Code(err) != "SLUICE-PANIC" || !strings.Contains(err.Error(), "nil map") {
		t.Errorf("error %q, code %s; want SLUICE-PANIC naming the panic", err, Code(err))
	}
	if stack := ContextOf(err)["stack"]; !strings.Contains(stack, "failure_test.go") {
		t.Errorf("the stack does not show where it panicked:\n%s", stack)
	}
	want := errors.New("plain")
	if err := Guard(func() error { return want }); err != want {
		t.Errorf("Guard changed an ordinary error: %v", err)
	}
}
