//go:build !linux

package cpuprio

import (
	"errors"
	"runtime"
)

// lower is not implemented off Linux: sluice's deployments run there, and
// elsewhere a nice value set with the nice command applies to the whole process.
func lower(nice int) (int, error) {
	return 0, errors.New("lowering sluice's own CPU priority is supported on Linux only; on " + runtime.GOOS + " start it with the nice command")
}
