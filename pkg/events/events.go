// Package events is the format of sluice's application events, version 1,
// and a small emitter an application uses to send them to NATS JetStream.
//
// An application that cannot (or should not) give sluice replication rights
// on its PostgreSQL database emits one event per change of a migrated table:
//
//	{"v":1,"id":"01J…","table":"public.likes","op":"upsert",
//	 "key":{"user_id":7,"post_id":42},
//	 "row":{"user_id":7,"post_id":42,"created_at":"2024-05-01T10:00:00Z"},
//	 "version":1714557600000000}
//
// sluice applies the events to the target through the same mapping as its
// copy (renamed, dropped, retyped and computed columns), idempotently and in
// version order per row: an event whose version is not newer than what the
// target holds for its row is ignored. See docs/EVENTS.md.
package events

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/url"
	"strings"
)

// FormatVersion is the version of the event format this package writes.
const FormatVersion = 1

// Operations.
const (
	OpUpsert = "upsert" // the row now has these values (insert or update)
	OpDelete = "delete" // the row with this key is gone
)

// Event is one change of one row, as the application saw it commit.
type Event struct {
	// V is the format version (1).
	V int `json:"v"`
	// ID identifies the event; a retried emit must reuse it, so JetStream
	// drops the duplicate (within the stream's duplicate window).
	ID string `json:"id"`
	// Table is the source table, "schema.name" or "name" (schema public).
	Table string `json:"table"`
	// Op is OpUpsert or OpDelete.
	Op string `json:"op"`
	// Key holds the row key's columns (source names) and their values.
	Key map[string]any `json:"key"`
	// Row holds every column of the row (source names) for an upsert;
	// columns the mapping drops may be left out. Unused for a delete.
	Row map[string]any `json:"row,omitempty"`
	// Version orders the changes of one row: it must grow with every change
	// of the same key, across deletes and re-inserts (a sequence value taken
	// in the changing transaction, or its commit time in microseconds from
	// one clock).
	Version int64 `json:"version"`
}

// MarshalJSON writes []byte values of Key and Row as PostgreSQL's bytea
// text (\x and hex), which is how sluice reads a bytea column's value:
// encoding/json would write base64, which a bytea column takes as the
// literal characters.
func (e Event) MarshalJSON() ([]byte, error) {
	type plain Event // the same fields, without this method
	p := plain(e)
	p.Key, p.Row = byteaText(e.Key), byteaText(e.Row)
	return json.Marshal(p)
}

// byteaText returns m with its []byte values as bytea text (a copy, only
// when there are any).
func byteaText(m map[string]any) map[string]any {
	var out map[string]any
	for k, v := range m {
		b, ok := v.([]byte)
		if !ok {
			continue
		}
		if out == nil {
			out = maps.Clone(m)
		}
		out[k] = `\x` + hex.EncodeToString(b)
	}
	if out == nil {
		return m
	}
	return out
}

// Validate checks what can be checked without the source schema.
func (e *Event) Validate() error {
	switch {
	case e.V != FormatVersion:
		return fmt.Errorf("event format version %d is not supported (want %d)", e.V, FormatVersion)
	case e.ID == "":
		return errors.New("event has no id")
	case e.Table == "":
		return errors.New("event has no table")
	case e.Op != OpUpsert && e.Op != OpDelete:
		return fmt.Errorf("event op %q is neither %q nor %q", e.Op, OpUpsert, OpDelete)
	case len(e.Key) == 0:
		return errors.New("event has no key")
	case e.Op == OpUpsert && len(e.Row) == 0:
		return errors.New("upsert event has no row")
	case e.Version <= 0:
		return errors.New("event version must be a positive integer")
	}
	return nil
}

// NewID returns a random event id (32 hex digits).
func NewID() string {
	b := make([]byte, 16)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// Endpoint is a JetStream stream named by a URL:
//
//	nats://[user:password@]host:port/STREAM[?prefix=SUBJECT_PREFIX]
//
// Subjects live under the prefix (default: the stream name): events under
// PREFIX.events.<table>, dead letters on PREFIX.deadletter and partitioned
// changes on PREFIX.changes.<i>. The stream captures PREFIX.>.
type Endpoint struct {
	Servers string // nats://host:port, with credentials if any
	Stream  string
	Prefix  string
}

// ParseURL reads an Endpoint.
func ParseURL(s string) (Endpoint, error) {
	shown := hideUserinfo(s) // errors quote the URL without its credentials
	u, err := url.Parse(s)
	if err != nil {
		return Endpoint{}, fmt.Errorf("NATS URL %q is not a URL (a password holding / ? # or %% must be percent-encoded)", shown)
	}
	if u.Scheme != "nats" && u.Scheme != "tls" {
		return Endpoint{}, fmt.Errorf("NATS URL %q: scheme must be nats:// (or tls://)", shown)
	}
	if u.Host == "" {
		return Endpoint{}, fmt.Errorf("NATS URL %q has no host", shown)
	}
	stream := strings.Trim(u.Path, "/")
	if stream == "" || strings.ContainsAny(stream, ".*>/ \t") {
		return Endpoint{}, fmt.Errorf("NATS URL %q: the path must name the JetStream stream (letters, digits, - and _), as in nats://127.0.0.1:4222/LIKES", shown)
	}
	ep := Endpoint{Stream: stream, Prefix: stream}
	if p := u.Query().Get("prefix"); p != "" {
		if strings.ContainsAny(p, "*> \t") || strings.HasPrefix(p, ".") || strings.HasSuffix(p, ".") {
			return Endpoint{}, fmt.Errorf("NATS URL %q: prefix %q is not a plain subject", shown, p)
		}
		ep.Prefix = p
	}
	srv := url.URL{Scheme: u.Scheme, User: u.User, Host: u.Host}
	ep.Servers = srv.String()
	return ep, nil
}

// userinfo splits s at its credentials: what comes before them (the
// scheme and "://"), the credentials, and the rest. The credentials run to
// the last @, as a password may hold an @ (or a / when it is not encoded,
// which makes s no URL at all). ok is false without credentials.
func userinfo(s string) (before, creds, rest string, ok bool) {
	i := strings.Index(s, "://")
	if i < 0 {
		return "", "", "", false
	}
	at := strings.LastIndex(s[i+3:], "@")
	if at < 0 {
		return "", "", "", false
	}
	return s[:i+3], s[i+3 : i+3+at], s[i+3+at+1:], true
}

// hideUserinfo is s with its credentials masked, for messages.
func hideUserinfo(s string) string {
	before, _, rest, ok := userinfo(s)
	if !ok {
		return s
	}
	return before + "xxxxx@" + rest
}

// Secrets returns the secrets a NATS URL holds: the password of
// user:password, or the token, each as written and decoded, for a log
// redactor to mask. It works on strings that are no valid URL too.
func Secrets(s string) []string {
	_, creds, _, ok := userinfo(s)
	if u, err := url.Parse(s); err == nil && u.User != nil {
		// a URL: its credentials end at the @ before the host (one may
		// follow in the query)
		before, _, _, _ := userinfo(s)
		if at := strings.LastIndex(s[len(before):], "@"+u.Host); at >= 0 {
			creds, ok = s[len(before):len(before)+at], true
		}
	}
	if !ok {
		return nil
	}
	secret := creds
	if _, pw, found := strings.Cut(creds, ":"); found {
		secret = pw
	}
	out := []string{secret}
	if decoded, err := url.PathUnescape(secret); err == nil && decoded != secret {
		out = append(out, decoded)
	}
	return out
}

// String is the endpoint without credentials.
func (e Endpoint) String() string {
	u, err := url.Parse(e.Servers)
	if err != nil {
		return e.Stream
	}
	u.User = nil
	s := u.String() + "/" + e.Stream
	if e.Prefix != e.Stream {
		s += "?prefix=" + e.Prefix
	}
	return s
}

// EventSubject is the subject events of table are published on.
func (e Endpoint) EventSubject(table string) string {
	return e.Prefix + ".events." + subjectToken(table)
}

// EventsFilter matches every event subject.
func (e Endpoint) EventsFilter() string { return e.Prefix + ".events.>" }

// DeadLetterSubject receives the events sluice could not apply.
func (e Endpoint) DeadLetterSubject() string { return e.Prefix + ".deadletter" }

// PartitionSubject carries partition i of the published change stream.
func (e Endpoint) PartitionSubject(i int) string { return fmt.Sprintf("%s.changes.%d", e.Prefix, i) }

// AllSubjects is what the stream must capture.
func (e Endpoint) AllSubjects() string { return e.Prefix + ".>" }

// subjectToken keeps a table name usable in a subject ("public.likes" stays
// two tokens; wildcards and spaces become _).
func subjectToken(s string) string {
	return strings.Map(func(r rune) rune {
		switch r {
		case '*', '>', ' ', '\t', '\r', '\n':
			return '_'
		}
		return r
	}, strings.Trim(s, "."))
}
