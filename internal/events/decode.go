package events

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"

	pubevents "github.com/sluice-db/sluice/pkg/events"
)

// wireEvent is an event as it arrives; values stay raw JSON until the
// column's type is known.
type wireEvent struct {
	V       json.RawMessage            `json:"v"`
	ID      json.RawMessage            `json:"id"`
	Table   string                     `json:"table"`
	Op      string                     `json:"op"`
	Key     map[string]json.RawMessage `json:"key"`
	Row     map[string]json.RawMessage `json:"row"`
	Version json.RawMessage            `json:"version"`
}

// Event is a decoded, checked event, not yet converted.
type Event struct {
	ID      string
	Table   *Table
	Delete  bool
	Version int64
	Input   Input
}

// Poison is an event that can never be applied; it goes to the dead-letter
// subject (or, over HTTP, fails its batch).
type Poison struct {
	Code   string // SLUICE-EVENT-…
	Reason string
	ID     string
	Table  string
}

func (p *Poison) Error() string { return p.Reason }

func poison(code, format string, args ...any) *Poison {
	return &Poison{Code: code, Reason: fmt.Sprintf(format, args...)}
}

// Catalog finds tables by the names events use.
type Catalog struct {
	byName map[string]*Table
	names  []string
}

// NewCatalog indexes tables by "schema.name", and by "name" for schema public.
func NewCatalog(tables []*Table) *Catalog {
	c := &Catalog{byName: map[string]*Table{}}
	for _, t := range tables {
		c.byName[t.Name] = t
		if t.Plan.Source.Name.Schema == "public" {
			c.byName[t.Plan.Source.Name.Name] = t
		}
		c.names = append(c.names, t.Name)
	}
	sort.Strings(c.names)
	return c
}

// Lookup returns the table named name, or nil.
func (c *Catalog) Lookup(name string) *Table { return c.byName[name] }

// Decode parses and checks one event against the plan.
func (c *Catalog) Decode(data []byte) (*Event, *Poison) {
	var w wireEvent
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&w); err != nil {
		return nil, poison("SLUICE-EVENT-JSON", "not a JSON event object: %v", err)
	}
	if dec.More() {
		return nil, poison("SLUICE-EVENT-JSON", "more than one JSON value in one event")
	}
	ev := &Event{}
	p := func(code, format string, args ...any) *Poison {
		e := poison(code, format, args...)
		e.ID, e.Table = ev.ID, w.Table
		return e
	}
	if len(w.ID) > 0 {
		if err := json.Unmarshal(w.ID, &ev.ID); err != nil {
			return nil, p("SLUICE-EVENT-FIELD", `"id" must be a string`)
		}
	}
	if v := string(bytes.TrimSpace(w.V)); v != strconv.Itoa(pubevents.FormatVersion) {
		if v == "" {
			return nil, p("SLUICE-EVENT-VERSION", `event has no format version "v" (this sluice reads "v":%d)`, pubevents.FormatVersion)
		}
		return nil, p("SLUICE-EVENT-VERSION", "event format version %s is not supported (this sluice reads %d)", v, pubevents.FormatVersion)
	}
	if ev.ID == "" {
		return nil, p("SLUICE-EVENT-FIELD", `event has no "id"`)
	}
	if w.Table == "" {
		return nil, p("SLUICE-EVENT-FIELD", `event has no "table"`)
	}
	t := c.Lookup(w.Table)
	if t == nil {
		return nil, p("SLUICE-EVENT-TABLE", "unknown table %q (this sync migrates %s)", w.Table, strings.Join(c.names, ", "))
	}
	ev.Table = t
	switch w.Op {
	case pubevents.OpUpsert:
	case pubevents.OpDelete:
		ev.Delete = true
	default:
		return nil, p("SLUICE-EVENT-FIELD", `"op" is %q; it must be "upsert" or "delete"`, w.Op)
	}
	version, err := strconv.ParseInt(string(bytes.TrimSpace(w.Version)), 10, 64)
	if err != nil || version <= 0 {
		return nil, p("SLUICE-EVENT-FIELD", `"version" must be a positive 64-bit integer, got %s`, clip(w.Version))
	}
	ev.Version = version

	src := t.Plan.Source.Columns
	vals := make([]Value, len(src))
	set := make([]bool, len(src))
	conv := func(col string, raw json.RawMessage) (Value, *Poison) {
		si := t.SourceIndex(col)
		text, null, canonical, err := jsonText(raw, src[si].Type)
		if err != nil {
			return Value{}, p("SLUICE-EVENT-VALUE", "table %s, column %s: %v", t.Name, col, err)
		}
		return Value{Text: text, Null: null, Canonical: canonical}, nil
	}
	if len(w.Key) == 0 {
		return nil, p("SLUICE-EVENT-KEY", `event has no "key"`)
	}
	for _, si := range t.keySrc {
		name := src[si].Name
		raw, ok := w.Key[name]
		if !ok {
			return nil, p("SLUICE-EVENT-KEY", "table %s: key column %s is missing from \"key\" (the row key is %s)", t.Name, name, t.keyNames())
		}
		v, bad := conv(name, raw)
		if bad != nil {
			return nil, bad
		}
		if v.Null {
			return nil, p("SLUICE-EVENT-KEY", "table %s: key column %s is null", t.Name, name)
		}
		vals[si], set[si] = v, true
	}
	if len(w.Key) != len(t.keySrc) {
		for name := range w.Key {
			if !t.isKey(name) {
				return nil, p("SLUICE-EVENT-KEY", "table %s: %s in \"key\" is not a key column (the row key is %s)", t.Name, name, t.keyNames())
			}
		}
	}
	if ev.Delete {
		ev.Input = Input{Vals: vals, KeyOnly: true}
		return ev, nil
	}
	if len(w.Row) == 0 {
		return nil, p("SLUICE-EVENT-ROW", `upsert event has no "row"`)
	}
	for name, raw := range w.Row {
		si := t.SourceIndex(name)
		if si < 0 {
			return nil, p("SLUICE-EVENT-ROW", "table %s has no column %s", t.Name, name)
		}
		v, bad := conv(name, raw)
		if bad != nil {
			return nil, bad
		}
		if set[si] { // a key column: must agree with "key"
			if v.Null || v.Text != vals[si].Text {
				return nil, p("SLUICE-EVENT-KEY", "table %s: column %s is %s in \"row\" but %s in \"key\"", t.Name, name, clip(raw), clip(w.Key[name]))
			}
			continue
		}
		vals[si], set[si] = v, true
	}
	for si, c := range src {
		if !set[si] {
			if !t.dropped[si] {
				return nil, p("SLUICE-EVENT-ROW", "table %s: \"row\" lacks column %s (an upsert carries the whole row; send null for NULL)", t.Name, c.Name)
			}
			vals[si] = Value{Absent: true}
		}
	}
	ev.Input = Input{Vals: vals}
	return ev, nil
}

func (t *Table) keyNames() string {
	names := make([]string, len(t.keySrc))
	for i, si := range t.keySrc {
		names[i] = t.Plan.Source.Columns[si].Name
	}
	return "(" + strings.Join(names, ", ") + ")"
}

func (t *Table) isKey(name string) bool {
	si := t.SourceIndex(name)
	for _, k := range t.keySrc {
		if k == si {
			return true
		}
	}
	return false
}
