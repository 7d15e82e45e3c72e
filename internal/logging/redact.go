package logging

import (
	"context"
	"log/slog"
	"regexp"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
)

// Mask replaces every secret in the log.
const Mask = "xxxxx"

var secrets struct {
	mu   sync.RWMutex
	list []string // longest first, so a secret containing another is masked whole
}

// AddSecret makes the redactor mask s wherever it appears in a log record
// (message, values, errors). Call it with every password and token as soon
// as it is known. Values shorter than 4 bytes are ignored: masking "a" in
// every message would make the log unreadable and protect nothing.
func AddSecret(s string) {
	if len(s) < 4 {
		return
	}
	secrets.mu.Lock()
	defer secrets.mu.Unlock()
	for _, have := range secrets.list {
		if have == s {
			return
		}
	}
	secrets.list = append(secrets.list, s)
	sort.Slice(secrets.list, func(i, j int) bool { return len(secrets.list[i]) > len(secrets.list[j]) })
}

var (
	// the password runs to the last @ before the host: it may hold an @
	urlUserinfo = regexp.MustCompile(`([A-Za-z][A-Za-z0-9+.-]*://[^:/@\s]*):([^\s/]*)@`)
	dsnUserinfo = regexp.MustCompile(`([^\s:/@(]+):([^@\s/]+)@(tcp|unix)\(`)
	kvPassword  = regexp.MustCompile(`(?i)\b(password|sslpassword|passwd|pwd|token|access_token|api_?key|secret|client_secret)\s*=\s*('[^']*'|"[^"]*"|[^\s&;]+)`)
	bearer      = regexp.MustCompile(`(?i)\b(bearer)\s+[A-Za-z0-9._~+/=-]+`)
	secretKey   = regexp.MustCompile(`(?i)(^|[_.-])(password|passwd|pwd|secret|token|authorization|api_?key)$`)
)

// Redact masks the registered secrets, URL and DSN passwords,
// password=… settings and bearer tokens in s.
func Redact(s string) string {
	secrets.mu.RLock()
	for _, sec := range secrets.list {
		if strings.Contains(s, sec) {
			s = strings.ReplaceAll(s, sec, Mask)
		}
	}
	secrets.mu.RUnlock()
	if strings.Contains(s, "@") {
		s = urlUserinfo.ReplaceAllString(s, "$1:"+Mask+"@")
		s = dsnUserinfo.ReplaceAllString(s, "$1:"+Mask+"@$3(")
	}
	if strings.Contains(s, "=") {
		s = kvPassword.ReplaceAllString(s, "$1="+Mask)
	}
	s = bearer.ReplaceAllString(s, "$1 "+Mask)
	return s
}

// Observer is told of every record at warning level or above that carries
// a stable code (for the errors-by-code metric).
type Observer func(level slog.Level, code string)

var observer atomic.Pointer[Observer]

// SetObserver installs (or, with nil, removes) the observer.
func SetObserver(o Observer) {
	if o == nil {
		observer.Store(nil)
		return
	}
	observer.Store(&o)
}

// redactor is the handler in front of the real ones.
type redactor struct {
	next slog.Handler
	code string // a "code" bound with With, for the observer
}

func (r *redactor) Enabled(ctx context.Context, l slog.Level) bool { return r.next.Enabled(ctx, l) }

func (r *redactor) Handle(ctx context.Context, rec slog.Record) error {
	out := slog.NewRecord(rec.Time, rec.Level, Redact(rec.Message), rec.PC)
	code := r.code
	rec.Attrs(func(a slog.Attr) bool {
		if a.Key == "code" {
			code = a.Value.String()
		}
		out.AddAttrs(redactAttr(a))
		return true
	})
	if rec.Level >= slog.LevelWarn && code != "" {
		if o := observer.Load(); o != nil {
			(*o)(rec.Level, code)
		}
	}
	return r.next.Handle(ctx, out)
}

func (r *redactor) WithAttrs(as []slog.Attr) slog.Handler {
	red := make([]slog.Attr, len(as))
	code := r.code
	for i, a := range as {
		if a.Key == "code" {
			code = a.Value.String()
		}
		red[i] = redactAttr(a)
	}
	return &redactor{next: r.next.WithAttrs(red), code: code}
}

func (r *redactor) WithGroup(name string) slog.Handler {
	return &redactor{next: r.next.WithGroup(name), code: r.code}
}

func redactAttr(a slog.Attr) slog.Attr {
	v := a.Value.Resolve()
	if v.Kind() == slog.KindGroup {
		g := v.Group()
		out := make([]slog.Attr, len(g))
		for i, ga := range g {
			out[i] = redactAttr(ga)
		}
		return slog.Attr{Key: a.Key, Value: slog.GroupValue(out...)}
	}
	if secretKey.MatchString(a.Key) && a.Key != "code" {
		if v.Kind() == slog.KindString && v.String() == "" {
			return slog.Attr{Key: a.Key, Value: v}
		}
		return slog.String(a.Key, Mask)
	}
	switch v.Kind() {
	case slog.KindString:
		return slog.String(a.Key, Redact(v.String()))
	case slog.KindAny:
		switch x := v.Any().(type) {
		case error:
			return slog.String(a.Key, Redact(x.Error()))
		case interface{ String() string }:
			return slog.String(a.Key, Redact(x.String()))
		case []string:
			out := make([]string, len(x))
			for i, s := range x {
				out[i] = Redact(s)
			}
			return slog.Any(a.Key, out)
		case map[string]string:
			out := make(map[string]string, len(x))
			for k, s := range x {
				out[k] = Redact(s)
			}
			return slog.Any(a.Key, out)
		}
	}
	return slog.Attr{Key: a.Key, Value: v}
}
