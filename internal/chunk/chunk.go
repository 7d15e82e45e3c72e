// Package chunk splits a table's key space into ranges that can be copied or
// verified independently, and renders a range as a SQL predicate on either
// engine. Ranges are half-open [Lo, Hi); a nil bound is unbounded.
package chunk

import (
	"encoding/json"
	"fmt"
	"math/big"
	"strings"
)

// Range is one chunk: keys k with Lo <= k < Hi, compared as a row value over
// the key columns. Values are in the source's text form.
type Range struct {
	Lo []string // nil: from the first key
	Hi []string // nil: to the last key (and any key added later)
}

// IntegerRanges splits [min, max] of a single integer key into ranges of
// about rowsPerChunk rows, given an estimate of the rows in the table. The
// first range is open below and the last open above, so keys outside
// [min, max] (rows added since) still fall in a chunk.
func IntegerRanges(min, max *big.Int, estimatedRows int64, rowsPerChunk int) []Range {
	span := new(big.Int).Sub(max, min)
	span.Add(span, big.NewInt(1))
	step := big.NewInt(int64(rowsPerChunk))
	if estimatedRows > int64(rowsPerChunk) {
		// sparse keys: widen the step so each range still holds ~rowsPerChunk rows
		chunks := (estimatedRows + int64(rowsPerChunk) - 1) / int64(rowsPerChunk)
		s := new(big.Int).Div(span, big.NewInt(chunks))
		if s.Cmp(step) > 0 {
			step = s
		}
	}
	if span.Cmp(step) <= 0 {
		return []Range{{}}
	}
	var ranges []Range
	var lo []string
	for b := new(big.Int).Add(min, step); b.Cmp(max) <= 0; b = new(big.Int).Add(b, step) {
		hi := []string{b.String()}
		ranges = append(ranges, Range{Lo: lo, Hi: hi})
		lo = hi
	}
	return append(ranges, Range{Lo: lo})
}

// BoundaryRanges turns sorted boundary keys (every rowsPerChunk-th key of a
// scan in key order) into ranges covering the whole key space.
func BoundaryRanges(boundaries [][]string) []Range {
	ranges := make([]Range, 0, len(boundaries)+1)
	var lo []string
	for _, b := range boundaries {
		ranges = append(ranges, Range{Lo: lo, Hi: b})
		lo = b
	}
	return append(ranges, Range{Lo: lo})
}

// Predicate renders r over the key expressions keys (already quoted, with
// any collation or cast applied) as SQL. literal renders key column i's
// value: a quoted literal for COPY, or a placeholder for a prepared query
// (in which case args collects the values in order).
func Predicate(keys []string, r Range, literal func(i int, v string) string) string {
	var parts []string
	if r.Lo != nil {
		parts = append(parts, compare(keys, ">=", r.Lo, literal))
	}
	if r.Hi != nil {
		parts = append(parts, compare(keys, "<", r.Hi, literal))
	}
	if len(parts) == 0 {
		return "TRUE"
	}
	return strings.Join(parts, " AND ")
}

func compare(keys []string, op string, vals []string, literal func(int, string) string) string {
	lits := make([]string, len(vals))
	for i, v := range vals {
		lits[i] = literal(i, v)
	}
	if len(keys) == 1 {
		return keys[0] + " " + op + " " + lits[0]
	}
	return "(" + strings.Join(keys, ", ") + ") " + op + " (" + strings.Join(lits, ", ") + ")"
}

// Encode and Decode store a key in one text column of the progress table.
// The values are a JSON array behind a unit separator: key text may hold any
// character PostgreSQL allows, the separator included. Bounds stored by
// earlier versions (the values joined by the separator, no JSON) are read by
// DecodeJoined: any text is a valid joined bound (a first value "" then
// `["a","b"]` reads as JSON too), so the progress table records which form a
// row holds rather than guessing from the text.
const sep = "\x1f"

// Encode returns the stored form of a key bound; nil encodes as "".
func Encode(key []string) (string, bool) {
	if key == nil {
		return "", false
	}
	b, err := json.Marshal(key)
	if err != nil { // []string always marshals
		panic(err)
	}
	return sep + string(b), true
}

// Decode is the inverse of Encode; ok=false means an unbounded key.
func Decode(s string, ok bool) ([]string, error) {
	if !ok {
		return nil, nil
	}
	rest, found := strings.CutPrefix(s, sep)
	var key []string
	if !found || json.Unmarshal([]byte(rest), &key) != nil || key == nil {
		return nil, fmt.Errorf("stored chunk bound %q is not in sluice's form", s)
	}
	return key, nil
}

// DecodeJoined reads a bound stored by an earlier version of sluice.
func DecodeJoined(s string, ok bool) []string {
	if !ok {
		return nil
	}
	return strings.Split(s, sep)
}
