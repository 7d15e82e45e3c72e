// Package partbound reads PostgreSQL's partition bounds (the text
// pg_get_expr gives of pg_class.relpartbound) and says which rows they hold
// as a MariaDB condition on the target table. A sync that stops at a
// TRUNCATE of one partition (the stream carries none) uses it to give the
// DELETE that takes the same rows off the target.
package partbound

import (
	"errors"
	"fmt"
	"slices"
	"strings"
)

// Level is a partition's bound within its parent: a leaf's own, then one
// per partitioned table between it and the migrated table.
type Level struct {
	Strategy byte     // the parent's: 'r' range, 'l' list, 'h' hash
	Columns  []string // the parent's partition key, "" for an expression or a column with its own operator class
	Bound    string   // pg_get_expr(relpartbound): FOR VALUES …, or DEFAULT
}

// Target says how a source column reads on the target: its name there and
// the SQL literal of a value given as PostgreSQL's text of it. An error
// says the column cannot be compared there as PostgreSQL compares it.
type Target func(column string) (name string, literal func(text string) (string, error), err error)

// ErrNoCondition is wrapped by Condition's errors: the rows cannot be told
// by a condition the target evaluates the same way (a hash or default
// partition, an expression in the key, a column or type the target orders
// otherwise).
var ErrNoCondition = errors.New("no condition on the target")

// Condition is the MariaDB condition for the rows of a partition whose
// bounds (leaf first) are levels: every level's bound, ANDed.
func Condition(levels []Level, target Target) (string, error) {
	var parts []string
	for _, l := range levels {
		cond, err := levelCondition(l, target)
		if err != nil {
			return "", fmt.Errorf("%w: %s", ErrNoCondition, err)
		}
		for _, c := range cond {
			if !slices.Contains(parts, c) { // a key column's IS NOT NULL at every level
				parts = append(parts, c)
			}
		}
	}
	if len(parts) == 0 {
		return "", fmt.Errorf("%w: the partition has no bound", ErrNoCondition)
	}
	return strings.Join(parts, " AND "), nil
}

// value is one item of a bound: a literal's text, NULL, MINVALUE or
// MAXVALUE.
type value struct {
	text string
	kind byte // 'v' value, 'n' NULL, '-' MINVALUE, '+' MAXVALUE
}

func levelCondition(l Level, target Target) ([]string, error) {
	switch {
	case l.Bound == "DEFAULT":
		return nil, errors.New("a default partition's rows are those no other partition takes, which changes as partitions are added")
	case l.Strategy == 'h':
		return nil, errors.New("a hash partition's rows are told by PostgreSQL's hash function")
	}
	cols := make([]string, len(l.Columns))
	lits := make([]func(string) (string, error), len(l.Columns))
	for i, c := range l.Columns {
		if c == "" {
			return nil, errors.New("the partition key holds an expression, or a column ordered by an operator class of its own")
		}
		var err error
		if cols[i], lits[i], err = target(c); err != nil {
			return nil, err
		}
	}
	switch l.Strategy {
	case 'l':
		list, ok := strings.CutPrefix(l.Bound, "FOR VALUES IN ")
		vals, rest, err := parseList(list)
		if !ok || err != nil || rest != "" || len(cols) != 1 {
			return nil, fmt.Errorf("cannot read list bound %q", l.Bound)
		}
		cond, err := listCondition(cols[0], lits[0], vals)
		if err != nil {
			return nil, err
		}
		return []string{cond}, nil
	case 'r':
		from, ok := strings.CutPrefix(l.Bound, "FOR VALUES FROM ")
		lower, rest, err := parseList(from)
		to, ok2 := strings.CutPrefix(rest, " TO ")
		if !ok || !ok2 || err != nil {
			return nil, fmt.Errorf("cannot read range bound %q", l.Bound)
		}
		upper, rest, err := parseList(to)
		if err != nil || rest != "" || len(lower) != len(cols) || len(upper) != len(cols) {
			return nil, fmt.Errorf("cannot read range bound %q", l.Bound)
		}
		// A row with a NULL in its key is in no range partition, and
		// MariaDB's (a, b) >= (x, y) is true for (a > x, NULL).
		var conds []string
		for _, c := range cols {
			conds = append(conds, c+" IS NOT NULL")
		}
		for _, side := range []struct {
			vals  []value
			lower bool
		}{{lower, true}, {upper, false}} {
			cond, err := rangeCondition(cols, lits, side.vals, side.lower)
			if err != nil {
				return nil, err
			}
			if cond != "" {
				conds = append(conds, cond)
			}
		}
		return conds, nil
	}
	return nil, fmt.Errorf("unknown partition strategy %q", l.Strategy)
}

// listCondition is col IN (…), with OR col IS NULL when the list holds
// NULL.
func listCondition(col string, lit func(string) (string, error), vals []value) (string, error) {
	var in []string
	null := false
	for _, v := range vals {
		switch v.kind {
		case 'n':
			null = true
			continue
		case '-', '+':
			return "", errors.New("MINVALUE or MAXVALUE in a list bound")
		}
		s, err := lit(v.text)
		if err != nil {
			return "", err
		}
		in = append(in, s)
	}
	switch {
	case len(in) == 0:
		return col + " IS NULL", nil
	case null:
		return "(" + col + " IN (" + strings.Join(in, ", ") + ") OR " + col + " IS NULL)", nil
	}
	return col + " IN (" + strings.Join(in, ", ") + ")", nil
}

// rangeCondition is one side of a range: the key is at or above the lower
// bound, below the upper one. PostgreSQL compares the key with the bound
// column by column; a MINVALUE or MAXVALUE ends the comparison there (the
// columns after it hold one too), so the columns before it compare with
// >= or > (lower), <= or < (upper).
func rangeCondition(cols []string, lits []func(string) (string, error), vals []value, lower bool) (string, error) {
	n, op := len(vals), map[bool]string{true: ">=", false: "<"}[lower]
	for i, v := range vals {
		if v.kind == 'n' {
			return "", errors.New("NULL in a range bound")
		}
		if v.kind == '-' || v.kind == '+' {
			n, op = i, infiniteOp(lower, v.kind == '+')
			break
		}
	}
	if n == 0 {
		if lower && op == ">=" || !lower && op == "<=" { // from MINVALUE, to MAXVALUE: no bound on this side
			return "", nil
		}
		return "", errors.New("an empty range")
	}
	left, right := cols[:n], make([]string, n)
	for i := range right {
		var err error
		if right[i], err = lits[i](vals[i].text); err != nil {
			return "", err
		}
	}
	if n == 1 {
		return left[0] + " " + op + " " + right[0], nil
	}
	return "(" + strings.Join(left, ", ") + ") " + op + " (" + strings.Join(right, ", ") + ")", nil
}

// infiniteOp compares the columns before a MINVALUE or MAXVALUE: a key
// equal to them is above (MINVALUE) or below (MAXVALUE) the bound.
func infiniteOp(lower, maxValue bool) string {
	switch {
	case lower && maxValue:
		return ">"
	case lower:
		return ">="
	case maxValue:
		return "<="
	}
	return "<"
}

// parseList reads "(item, item, …)" at the start of s, each item a quoted
// literal (a quote in it doubled), a bare one (a number, true, false), NULL,
// MINVALUE or MAXVALUE, and returns what follows it.
func parseList(s string) ([]value, string, error) {
	if !strings.HasPrefix(s, "(") {
		return nil, s, errors.New("no list")
	}
	s = s[1:]
	var vals []value
	for {
		var v value
		switch {
		case strings.HasPrefix(s, "'"):
			var b strings.Builder
			i := 1
			for ; i < len(s); i++ {
				if s[i] == '\\' { // sluice's sessions print one as itself (standard_conforming_strings); no key type it writes has one
					return nil, s, errors.New("a backslash in a literal")
				}
				if s[i] == '\'' {
					if i+1 < len(s) && s[i+1] == '\'' {
						b.WriteByte('\'')
						i++
						continue
					}
					break
				}
				b.WriteByte(s[i])
			}
			if i >= len(s) {
				return nil, s, errors.New("an unterminated literal")
			}
			v, s = value{text: b.String(), kind: 'v'}, s[i+1:]
		default:
			end := strings.IndexAny(s, ",)")
			if end <= 0 {
				return nil, s, errors.New("an empty item")
			}
			word := s[:end]
			switch word {
			case "NULL":
				v.kind = 'n'
			case "MINVALUE":
				v.kind = '-'
			case "MAXVALUE":
				v.kind = '+'
			default:
				v = value{text: word, kind: 'v'}
			}
			s = s[end:]
		}
		vals = append(vals, v)
		switch {
		case strings.HasPrefix(s, ", "):
			s = s[2:]
		case strings.HasPrefix(s, ")"):
			return vals, s[1:], nil
		default:
			return nil, s, errors.New("no separator")
		}
	}
}
