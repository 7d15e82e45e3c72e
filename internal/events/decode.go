package events

import (
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/sluice-db/sluice/internal/schema"
	pubevents "github.com/sluice-db/sluice/pkg/events"
)

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
	ev := &Event{}
	var table, op string
	var v, id, key, row, version []byte
	var seenOp bool
	end, err := scanObject(data, 0, func(name, val []byte) error {
		switch string(name) {
		case "v":
			v = val
		case "id":
			id = val
		case "table":
			if val[0] != '"' {
				return errors.New(`"table" must be a string`)
			}
			s, err := unquoteString(val)
			table = s
			return err
		case "op":
			if val[0] != '"' {
				return errors.New(`"op" must be a string`)
			}
			s, err := unquoteString(val)
			op, seenOp = s, true
			return err
		case "key":
			key = val
		case "row":
			row = val
		case "version":
			version = val
		}
		return nil
	})
	if err == nil && skipWS(data, end) != len(data) {
		err = errors.New("more than one JSON value in one event")
	}
	if err != nil {
		return nil, poison("SLUICE-EVENT-JSON", "not a JSON event object: %v", err)
	}
	p := func(code, format string, args ...any) *Poison {
		e := poison(code, format, args...)
		e.ID, e.Table = ev.ID, table
		return e
	}
	if id != nil {
		if id[0] != '"' {
			return nil, p("SLUICE-EVENT-FIELD", `"id" must be a string`)
		}
		ev.ID, _ = unquoteString(id)
	}
	if string(v) != strconv.Itoa(pubevents.FormatVersion) {
		if v == nil {
			return nil, p("SLUICE-EVENT-VERSION", `event has no format version "v" (this sluice reads "v":%d)`, pubevents.FormatVersion)
		}
		return nil, p("SLUICE-EVENT-VERSION", "event format version %s is not supported (this sluice reads %d)", clip(v), pubevents.FormatVersion)
	}
	if ev.ID == "" {
		return nil, p("SLUICE-EVENT-FIELD", `event has no "id"`)
	}
	if table == "" {
		return nil, p("SLUICE-EVENT-FIELD", `event has no "table"`)
	}
	t := c.Lookup(table)
	if t == nil {
		return nil, p("SLUICE-EVENT-TABLE", "unknown table %q (this sync migrates %s)", table, strings.Join(c.names, ", "))
	}
	ev.Table = t
	switch {
	case op == pubevents.OpUpsert:
	case op == pubevents.OpDelete:
		ev.Delete = true
	case !seenOp:
		return nil, p("SLUICE-EVENT-FIELD", `event has no "op" (upsert or delete)`)
	default:
		return nil, p("SLUICE-EVENT-FIELD", `"op" is %q; it must be "upsert" or "delete"`, op)
	}
	n, err := strconv.ParseInt(string(version), 10, 64)
	if err != nil || n <= 0 {
		return nil, p("SLUICE-EVENT-FIELD", `"version" must be a positive 64-bit integer, got %s`, clip(version))
	}
	ev.Version = n

	src := t.Plan.Source.Columns
	vals := make([]Value, len(src))
	set := make([]bool, len(src))
	conv := func(si int, raw []byte) (Value, *Poison) {
		text, null, canonical, err := jsonText(raw, src[si].Type)
		if err != nil {
			return Value{}, p("SLUICE-EVENT-VALUE", "table %s, column %s: %v", t.Name, src[si].Name, err)
		}
		if typ := src[si].Type; !null && tooLong(text, typ) {
			// the source's length limit: the value is not cast to the
			// typed length on the source (a cast would cut it silently)
			return Value{}, p("SLUICE-EVENT-VALUE", "table %s, column %s: %d characters, more than its type %s holds", t.Name, src[si].Name, utf8.RuneCountInString(text), typ.Display)
		}
		return Value{Text: text, Null: null, Canonical: canonical}, nil
	}
	if key == nil || key[0] != '{' {
		return nil, p("SLUICE-EVENT-KEY", `event has no "key" object`)
	}
	var bad *Poison
	keyRaw := make([][]byte, len(src))
	nkey := 0
	if _, err := scanObject(key, 0, func(name, raw []byte) error {
		si := t.SourceIndex(string(name))
		if si < 0 || !t.isKeyIndex(si) {
			bad = p("SLUICE-EVENT-KEY", "table %s: %s in \"key\" is not a key column (the row key is %s)", t.Name, name, t.keyNames())
			return errStop
		}
		v, pe := conv(si, raw)
		if pe != nil {
			bad = pe
			return errStop
		}
		if v.Null {
			bad = p("SLUICE-EVENT-KEY", "table %s: key column %s is null", t.Name, name)
			return errStop
		}
		if !set[si] {
			nkey++
		}
		vals[si], set[si], keyRaw[si] = v, true, raw
		return nil
	}); bad != nil {
		return nil, bad
	} else if err != nil {
		return nil, p("SLUICE-EVENT-JSON", `"key": %v`, err)
	}
	if nkey != len(t.keySrc) {
		for _, si := range t.keySrc {
			if !set[si] {
				return nil, p("SLUICE-EVENT-KEY", "table %s: key column %s is missing from \"key\" (the row key is %s)", t.Name, src[si].Name, t.keyNames())
			}
		}
	}
	if ev.Delete {
		ev.Input = Input{Vals: vals, KeyOnly: true}
		return ev, nil
	}
	if row == nil || row[0] != '{' {
		return nil, p("SLUICE-EVENT-ROW", `upsert event has no "row" object`)
	}
	if _, err := scanObject(row, 0, func(name, raw []byte) error {
		si := t.SourceIndex(string(name))
		if si < 0 {
			bad = p("SLUICE-EVENT-ROW", "table %s has no column %s", t.Name, name)
			return errStop
		}
		v, pe := conv(si, raw)
		if pe != nil {
			bad = pe
			return errStop
		}
		if keyRaw[si] != nil { // a key column: must agree with "key"
			if v.Null || v.Text != vals[si].Text {
				bad = p("SLUICE-EVENT-KEY", "table %s: column %s is %s in \"row\" but %s in \"key\"", t.Name, name, clip(raw), clip(keyRaw[si]))
				return errStop
			}
			return nil
		}
		vals[si], set[si] = v, true
		return nil
	}); bad != nil {
		return nil, bad
	} else if err != nil {
		return nil, p("SLUICE-EVENT-JSON", `"row": %v`, err)
	}
	for si, c := range src {
		if !set[si] {
			if !t.dropped[si] {
				return nil, p("SLUICE-EVENT-ROW", "table %s: \"row\" lacks column %s (an upsert carries the whole row; send null for NULL)", t.Name, c.Name)
			}
			if t.evalReads[si] { // taken as NULL it would decide the filter or a computed value wrongly
				return nil, p("SLUICE-EVENT-ROW", "table %s: \"row\" lacks column %s, which the mapping drops but its row filter or a computed column reads (send it; null for NULL)", t.Name, c.Name)
			}
			vals[si] = Value{Absent: true}
		}
	}
	ev.Input = Input{Vals: vals}
	return ev, nil
}

var errStop = errors.New("stop")

func (t *Table) isKeyIndex(si int) bool {
	for _, k := range t.keySrc {
		if k == si {
			return true
		}
	}
	return false
}

func (t *Table) keyNames() string {
	names := make([]string, len(t.keySrc))
	for i, si := range t.keySrc {
		names[i] = t.Plan.Source.Columns[si].Name
	}
	return "(" + strings.Join(names, ", ") + ")"
}

// tooLong reports a value longer than a varchar(n) or char(n) type holds.
// Trailing spaces do not count: PostgreSQL drops what is spaces past n.
func tooLong(text string, typ schema.Type) bool {
	if typ.Array || typ.Length <= 0 || typ.Name != "varchar" && typ.Name != "bpchar" {
		return false
	}
	return utf8.RuneCountInString(strings.TrimRight(text, " ")) > typ.Length
}
