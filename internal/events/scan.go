package events

import (
	"encoding/json"
	"errors"
	"fmt"
	"unicode/utf8"
)

// A small validating JSON scanner for the event envelope: encoding/json
// spends most of an event's decoding time on reflection and maps, and an
// applier decodes tens of thousands of events a second. The scanner checks
// the full JSON grammar and hands out raw member values.

var errJSONEnd = errors.New("unexpected end of JSON")

func skipWS(d []byte, i int) int {
	for i < len(d) && (d[i] == ' ' || d[i] == '\t' || d[i] == '\n' || d[i] == '\r') {
		i++
	}
	return i
}

// scanObject reads the object at d[i:] and calls member for each member with
// its unquoted name and raw value. It returns the index after the object.
func scanObject(d []byte, i int, member func(name []byte, val []byte) error) (int, error) {
	return scanObjectAt(d, i, 0, member)
}

// scanObjectAt is scanObject for an object depth levels down: the depth
// goes on into its members, so that no nesting of objects in objects
// recurses without bound (a deep enough event overflowed the stack, and
// every restart read it again).
func scanObjectAt(d []byte, i, depth int, member func(name []byte, val []byte) error) (int, error) {
	i = skipWS(d, i)
	if i >= len(d) || d[i] != '{' {
		return i, errors.New("expected a JSON object")
	}
	i = skipWS(d, i+1)
	if i < len(d) && d[i] == '}' {
		return i + 1, nil
	}
	var name []byte
	for {
		i = skipWS(d, i)
		if i >= len(d) || d[i] != '"' {
			return i, errors.New("expected a member name")
		}
		end, err := skipString(d, i)
		if err != nil {
			return i, err
		}
		name, err = unquote(d[i:end], name[:0])
		if err != nil {
			return i, err
		}
		i = skipWS(d, end)
		if i >= len(d) || d[i] != ':' {
			return i, errors.New("expected ':' after a member name")
		}
		i = skipWS(d, i+1)
		start := i
		if i, err = skipValue(d, i, depth+1); err != nil {
			return i, err
		}
		if err := member(name, d[start:i]); err != nil {
			return i, err
		}
		i = skipWS(d, i)
		if i >= len(d) {
			return i, errJSONEnd
		}
		switch d[i] {
		case ',':
			i++
		case '}':
			return i + 1, nil
		default:
			return i, fmt.Errorf("unexpected %q in an object", d[i])
		}
	}
}

// skipValue returns the index after the JSON value at d[i:].
func skipValue(d []byte, i, depth int) (int, error) {
	if depth > 64 {
		return i, errors.New("JSON nested too deeply")
	}
	if i >= len(d) {
		return i, errJSONEnd
	}
	switch c := d[i]; {
	case c == '"':
		return skipString(d, i)
	case c == '{':
		return scanObjectAt(d, i, depth, func([]byte, []byte) error { return nil })
	case c == '[':
		i = skipWS(d, i+1)
		if i < len(d) && d[i] == ']' {
			return i + 1, nil
		}
		for {
			var err error
			if i, err = skipValue(d, skipWS(d, i), depth+1); err != nil {
				return i, err
			}
			i = skipWS(d, i)
			if i >= len(d) {
				return i, errJSONEnd
			}
			if d[i] == ']' {
				return i + 1, nil
			}
			if d[i] != ',' {
				return i, fmt.Errorf("unexpected %q in an array", d[i])
			}
			i++
		}
	case c == 't':
		return literal(d, i, "true")
	case c == 'f':
		return literal(d, i, "false")
	case c == 'n':
		return literal(d, i, "null")
	case c == '-' || c >= '0' && c <= '9':
		return skipNumber(d, i)
	}
	return i, fmt.Errorf("unexpected %q", d[i])
}

func literal(d []byte, i int, lit string) (int, error) {
	if len(d)-i < len(lit) || string(d[i:i+len(lit)]) != lit {
		return i, fmt.Errorf("invalid literal at offset %d", i)
	}
	return i + len(lit), nil
}

func skipNumber(d []byte, i int) (int, error) {
	start := i
	if d[i] == '-' {
		i++
	}
	digits := func() int {
		n := 0
		for i < len(d) && d[i] >= '0' && d[i] <= '9' {
			i++
			n++
		}
		return n
	}
	if i < len(d) && d[i] == '0' {
		i++
	} else if digits() == 0 {
		return i, fmt.Errorf("invalid number at offset %d", start)
	}
	if i < len(d) && d[i] == '.' {
		i++
		if digits() == 0 {
			return i, fmt.Errorf("invalid number at offset %d", start)
		}
	}
	if i < len(d) && (d[i] == 'e' || d[i] == 'E') {
		i++
		if i < len(d) && (d[i] == '+' || d[i] == '-') {
			i++
		}
		if digits() == 0 {
			return i, fmt.Errorf("invalid number at offset %d", start)
		}
	}
	return i, nil
}

// skipString returns the index after the string starting at d[i] ('"').
func skipString(d []byte, i int) (int, error) {
	for j := i + 1; j < len(d); j++ {
		switch c := d[j]; {
		case c == '"':
			if !utf8.Valid(d[i+1 : j]) {
				return j, errors.New("string is not valid UTF-8")
			}
			return j + 1, nil
		case c == '\\':
			j++
			if j >= len(d) {
				return j, errJSONEnd
			}
			switch d[j] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
			case 'u':
				if j+4 >= len(d) {
					return j, errJSONEnd
				}
				for k := 1; k <= 4; k++ {
					if _, ok := unhex(d[j+k]); !ok {
						return j, errors.New("invalid \\u escape")
					}
				}
				j += 4
			default:
				return j, fmt.Errorf("invalid escape \\%c", d[j])
			}
		case c < 0x20:
			return j, errors.New("control character in a string")
		}
	}
	return len(d), errJSONEnd
}

func unhex(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	case c >= 'A' && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// unquote appends the contents of the JSON string raw (quotes included) to
// dst. Invalid UTF-8 is refused (encoding/json would replace it silently).
func unquote(raw []byte, dst []byte) ([]byte, error) {
	body := raw[1 : len(raw)-1]
	if !utf8.Valid(body) {
		return nil, errors.New("string is not valid UTF-8")
	}
	escaped := false
	for _, c := range body {
		if c == '\\' {
			escaped = true
			break
		}
	}
	if !escaped {
		return append(dst, body...), nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return nil, err
	}
	return append(dst, s...), nil
}

// unquoteString is unquote to a new string.
func unquoteString(raw []byte) (string, error) {
	b, err := unquote(raw, nil)
	return string(b), err
}

// ScanObject reads the JSON object at the start of d and calls member for
// each member with its unquoted name and raw value (valid only during the
// call). The whole of d must be the one object.
func ScanObject(d []byte, member func(name, raw []byte) error) error {
	end, err := scanObject(d, 0, member)
	if err == nil && skipWS(d, end) != len(d) {
		err = errors.New("more than one JSON value")
	}
	return err
}

// UnquoteString returns the contents of the JSON string raw.
func UnquoteString(raw []byte) (string, error) {
	if len(raw) < 2 || raw[0] != '"' {
		return "", errors.New("not a JSON string")
	}
	return unquoteString(raw)
}

// ScanArray reads the JSON array d and calls item with each element's raw
// value (valid only during the call).
func ScanArray(d []byte, item func(raw []byte) error) error {
	i := skipWS(d, 0)
	if i >= len(d) || d[i] != '[' {
		return errors.New("expected a JSON array")
	}
	i = skipWS(d, i+1)
	if i < len(d) && d[i] == ']' {
		i++
	} else {
		for {
			start := i
			end, err := skipValue(d, i, 1)
			if err != nil {
				return err
			}
			if err := item(d[start:end]); err != nil {
				return err
			}
			i = skipWS(d, end)
			if i >= len(d) {
				return errJSONEnd
			}
			if d[i] == ']' {
				i++
				break
			}
			if d[i] != ',' {
				return fmt.Errorf("unexpected %q in an array", d[i])
			}
			i = skipWS(d, i+1)
		}
	}
	if skipWS(d, i) != len(d) {
		return errors.New("more than one JSON value")
	}
	return nil
}
