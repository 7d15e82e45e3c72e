// Package logging builds sluice's structured logger: JSON lines when stderr is
// not a terminal (for log shippers), readable text when it is, and
// optionally a JSON log file rotated by size. Every record passes through a
// redactor first: passwords, tokens and URL credentials are never written.
package logging

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"

	"golang.org/x/term"

	"github.com/sluice-db/sluice/internal/failure"
)

// IsTerminal reports whether f is a terminal.
func IsTerminal(f *os.File) bool { return term.IsTerminal(int(f.Fd())) }

// Options configure Open.
type Options struct {
	Format     string    // for Stderr: auto (text on a terminal, JSON otherwise), json or text
	Terminal   bool      // whether Stderr is a terminal
	Stderr     io.Writer // nil: os.Stderr
	File       string    // optional log file: JSON lines, rotated by size
	MaxSize    int64     // bytes before the file is rotated; default 100 MiB
	MaxBackups int       // rotated files kept (FILE.1 … FILE.N); default 5
	Level      slog.Level
}

// New returns a logger writing to w in format "json", "text" or "auto".
func New(w io.Writer, format string, terminal bool) (*slog.Logger, error) {
	log, _, err := Open(Options{Format: format, Terminal: terminal, Stderr: w})
	return log, err
}

// Open builds the logger described by opt. The closer closes the log file
// (a no-op without one).
func Open(opt Options) (*slog.Logger, io.Closer, error) {
	if opt.Stderr == nil {
		opt.Stderr = os.Stderr
	}
	hopts := &slog.HandlerOptions{Level: opt.Level}
	var h slog.Handler
	switch opt.Format {
	case "json":
		h = slog.NewJSONHandler(opt.Stderr, hopts)
	case "text":
		h = slog.NewTextHandler(opt.Stderr, hopts)
	case "", "auto":
		if opt.Terminal {
			h = slog.NewTextHandler(opt.Stderr, hopts)
		} else {
			h = slog.NewJSONHandler(opt.Stderr, hopts)
		}
	default:
		return nil, nil, failure.New(failure.Usage, "SLUICE-USAGE-LOGFORMAT", "--log-format %q is not a log format", opt.Format).
			WithHint("use auto, json or text")
	}
	var closer io.Closer = nopCloser{}
	if opt.File != "" {
		if opt.MaxSize < 0 || opt.MaxBackups < 0 {
			return nil, nil, failure.New(failure.Usage, "SLUICE-USAGE-LOGFILE", "--log-max-size and --log-max-backups cannot be negative")
		}
		rf, err := OpenRotating(opt.File, opt.MaxSize, opt.MaxBackups)
		if err != nil {
			return nil, nil, failure.Wrap(err, failure.Usage, "SLUICE-USAGE-LOGFILE", "cannot open the log file").With("file", opt.File).
				WithHint("check that the directory exists and is writable, or choose another --log-file")
		}
		h = fanout{h, slog.NewJSONHandler(rf, hopts)}
		closer = rf
	}
	return slog.New(&redactor{next: h}), closer, nil
}

type nopCloser struct{}

func (nopCloser) Close() error { return nil }

// fanout sends every record to each handler.
type fanout []slog.Handler

func (f fanout) Enabled(ctx context.Context, l slog.Level) bool {
	for _, h := range f {
		if h.Enabled(ctx, l) {
			return true
		}
	}
	return false
}

func (f fanout) Handle(ctx context.Context, r slog.Record) error {
	var first error
	for _, h := range f {
		if h.Enabled(ctx, r.Level) {
			if err := h.Handle(ctx, r.Clone()); err != nil && first == nil {
				first = err
			}
		}
	}
	return first
}

func (f fanout) WithAttrs(as []slog.Attr) slog.Handler {
	out := make(fanout, len(f))
	for i, h := range f {
		out[i] = h.WithAttrs(as)
	}
	return out
}

func (f fanout) WithGroup(name string) slog.Handler {
	out := make(fanout, len(f))
	for i, h := range f {
		out[i] = h.WithGroup(name)
	}
	return out
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
func Fatalf(w io.Writer, format string, args ...any) {
	fmt.Fprintf(w, "sluice: "+Redact(format)+"\n", redactArgs(args)...)
}

func redactArgs(args []any) []any {
	out := make([]any, len(args))
	for i, a := range args {
		switch v := a.(type) {
		case string:
			out[i] = Redact(v)
		case error:
			out[i] = Redact(v.Error())
		default:
			out[i] = a
		}
	}
	return out
}
