// Package failure gives every error sluice reports a stable code and a process
// exit status, so scripts can tell "the target is unreachable" from "the data
// differs" without parsing messages.
package failure

import (
	"errors"
	"fmt"
	"runtime/debug"
)

// Exit statuses, documented in docs/CONFIGURATION.md. verify uses 0 and 1 for
// its verdict; every error is 2 or above.
const (
	ExitOK          = 0
	ExitDifferences = 1 // verify found rows that differ
	ExitUsage       = 2 // bad flag, URL or config file
	ExitConnection  = 3 // a server cannot be reached or refused the login
	ExitSchema      = 4 // missing table, no usable key, unsupported definition
	ExitBadRow      = 5 // a value the target cannot hold (without --on-bad-row=skip)
	ExitInterrupted = 6 // stopped by a signal; run again to resume
	ExitInternal    = 10
)

// Kind groups errors by what the user has to do about them.
type Kind int

const (
	Internal Kind = iota
	Usage
	Connection
	Schema
	BadRow
	Interrupted
)

func (k Kind) exitCode() int {
	switch k {
	case Usage:
		return ExitUsage
	case Connection:
		return ExitConnection
	case Schema:
		return ExitSchema
	case BadRow:
		return ExitBadRow
	case Interrupted:
		return ExitInterrupted
	}
	return ExitInternal
}

// Error is an error with a stable code (e.g. "SLUICE-SCHEMA-NOKEY") and the
// context a user needs: which table, key or column, and what to do.
type Error struct {
	Kind    Kind
	Code    string
	Message string
	Hint    string            // what to do about it
	Context map[string]string // table, column, key, chunk … for structured logs
	Err     error             // the underlying cause, if any
}

func (e *Error) Error() string {
	msg := e.Message
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	if e.Hint != "" {
		msg += " (" + e.Hint + ")"
	}
	return msg
}

func (e *Error) Unwrap() error { return e.Err }

// New makes an Error.
func New(kind Kind, code, format string, args ...any) *Error {
	return &Error{Kind: kind, Code: code, Message: fmt.Sprintf(format, args...)}
}

// Wrap makes an Error around a cause.
func Wrap(err error, kind Kind, code, format string, args ...any) *Error {
	return &Error{Kind: kind, Code: code, Message: fmt.Sprintf(format, args...), Err: err}
}

// WithHint sets what the user should do.
func (e *Error) WithHint(format string, args ...any) *Error {
	e.Hint = fmt.Sprintf(format, args...)
	return e
}

// With adds structured context.
func (e *Error) With(key, value string) *Error {
	if e.Context == nil {
		e.Context = map[string]string{}
	}
	e.Context[key] = value
	return e
}

// ExitCode maps any error to the process exit status.
func ExitCode(err error) int {
	if err == nil {
		return ExitOK
	}
	var fe *Error
	if errors.As(err, &fe) {
		return fe.Kind.exitCode()
	}
	return ExitInternal
}

// KindOfExit is the kind whose exit status is code (Internal for any other
// status): what a client of the sync's API makes of the exit status the
// sync gave an error, so a refusal exits the same through the API as in
// the process that made it.
func KindOfExit(code int) Kind {
	for k := Internal; k <= Interrupted; k++ {
		if k.exitCode() == code {
			return k
		}
	}
	return Internal
}

// Code returns the stable code of err, or "SLUICE-INTERNAL".
func Code(err error) string {
	var fe *Error
	if errors.As(err, &fe) {
		return fe.Code
	}
	return "SLUICE-INTERNAL"
}

// ContextOf returns the structured context of err, if any.
func ContextOf(err error) map[string]string {
	var fe *Error
	if errors.As(err, &fe) {
		return fe.Context
	}
	return nil
}

// Guard runs fn and turns a panic in it into an internal error (exit 10,
// SLUICE-PANIC) whose context holds the stack. Run a goroutine's body
// through it: a panic then ends the command like any other failure, logged
// as "sluice failed" with its exit status, instead of crashing the process
// with Go's status 2, which reads as a usage error (and which a service
// manager is told not to restart after).
func Guard(fn func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = New(Internal, "SLUICE-PANIC", "internal error: panic: %v", r).
				With("stack", string(debug.Stack())).
				WithHint("please report this message with its stack; running the command again resumes")
		}
	}()
	return fn()
}
