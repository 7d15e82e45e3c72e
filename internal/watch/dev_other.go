//go:build !unix

package watch

func deviceOf(path string) (uint64, bool) { return 0, false }
