// Package logging builds sluice's structured logger: JSON lines when stderr is
// not a terminal (for log shippers), readable text when it is.
package logging

import (
	"fmt"
	"io"
	"log/slog"
	"os"

	"golang.org/x/term"

	"github.com/sluice-db/sluice/internal/failure"
)

// IsTerminal reports whether f is a terminal.
func IsTerminal(f *os.File) bool { return term.IsTerminal(int(f.Fd())) }

// New returns a logger writing to w in format "json", "text" or "auto".
func New(w io.Writer, format string, terminal bool) (*slog.Logger, error) {
	opts := &slog.HandlerOptions{Level: slog.LevelInfo}
	switch format {
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "", "auto":
		if terminal {
			return slog.New(slog.NewTextHandler(w, opts)), nil
		}
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, failure.New(failure.Usage, "SLUICE-USAGE-LOGFORMAT", "--log-format %q is not a log format", format).
		WithHint("use auto, json or text")
}

// Error logs err with its stable code, its context and what to do.
func Error(log *slog.Logger, msg string, err error) {
	attrs := []any{"code", failure.Code(err), "error", err.Error()}
	for k, v := range failure.ContextOf(err) {
		attrs = append(attrs, k, v)
	}
	attrs = append(attrs, "exit_status", failure.ExitCode(err))
	log.Error(msg, attrs...)
}

// Fatalf is for errors before a logger exists.
func Fatalf(w io.Writer, format string, args ...any) { fmt.Fprintf(w, "sluice: "+format+"\n", args...) }
