package typemap

import (
	"bytes"
	"strings"
)

// ArrayToJSON converts PostgreSQL's array text form ({1,2}, {"a b",NULL},
// {{1,2},{3,4}}) into the JSON that to_json() gives for the same array, so
// rows that arrive through the change stream match rows the copy read with
// to_json(). elem is the element type name (int4, text, timestamptz …).
func ArrayToJSON(elem string) Converter {
	return func(v []byte) ([]byte, error) {
		if len(v) > 0 && v[0] == '[' {
			// Explicit bounds ([0:2]={…}): JSON has no place for them, and
			// to_json drops them, so [2:3]={1,2} and {1,2} would be one value.
			bounds, _, _ := bytes.Cut(v, []byte("="))
			return nil, bad("array with bounds %s does not start at index 1; JSON cannot keep its bounds", bounds)
		}
		p := arrayParser{src: v, elem: elem}
		out, err := p.value(nil)
		if err != nil {
			return nil, err
		}
		if p.pos != len(p.src) {
			return nil, bad("array %q has trailing text", v)
		}
		return out, nil
	}
}

// checkArrayJSON returns the check of the copy's to_json of an array of
// elem: it refuses the marker the copy's select gives for an array whose
// index does not start at 1 (see Map), and a date or timestamp before year
// 1 AD, as the stream's ArrayToJSON does; it passes the JSON of any other.
func checkArrayJSON(elem string) Converter {
	dated := elem == "date" || elem == "timestamp" || elem == "timestamptz"
	return func(v []byte) ([]byte, error) {
		if bounds, ok := bytes.CutPrefix(v, []byte("bounds ")); ok {
			return nil, bad("array with bounds %s does not start at index 1; JSON cannot keep its bounds", bounds)
		}
		if dated && bytes.Contains(v, []byte(` BC"`)) {
			return nil, bad("array %s holds an element before year 1 AD, which MySQL cannot store", v)
		}
		return v, nil
	}
}

type arrayParser struct {
	src  []byte
	pos  int
	elem string
}

func (p *arrayParser) value(dst []byte) ([]byte, error) {
	if p.pos >= len(p.src) {
		return nil, bad("array text ends early")
	}
	if p.src[p.pos] == '{' {
		p.pos++
		dst = append(dst, '[')
		if p.pos < len(p.src) && p.src[p.pos] == '}' {
			p.pos++
			return append(dst, ']'), nil
		}
		for {
			var err error
			if dst, err = p.value(dst); err != nil {
				return nil, err
			}
			if p.pos >= len(p.src) {
				return nil, bad("array text ends early")
			}
			c := p.src[p.pos]
			p.pos++
			if c == '}' {
				return append(dst, ']'), nil
			}
			if c != ',' {
				return nil, bad("unexpected %q in array text", c)
			}
			dst = append(dst, ',')
		}
	}
	var raw []byte
	if p.src[p.pos] == '"' {
		p.pos++
		for p.pos < len(p.src) && p.src[p.pos] != '"' {
			if p.src[p.pos] == '\\' && p.pos+1 < len(p.src) {
				p.pos++
			}
			raw = append(raw, p.src[p.pos])
			p.pos++
		}
		if p.pos >= len(p.src) {
			return nil, bad("unterminated quoted array element")
		}
		p.pos++
	} else {
		start := p.pos
		for p.pos < len(p.src) && p.src[p.pos] != ',' && p.src[p.pos] != '}' {
			p.pos++
		}
		raw = p.src[start:p.pos]
		if string(raw) == "NULL" {
			return append(dst, "null"...), nil
		}
	}
	return p.element(dst, raw)
}

// element renders one element as to_json would.
func (p *arrayParser) element(dst, raw []byte) ([]byte, error) {
	switch p.elem {
	case "int2", "int4", "int8", "float4", "float8", "numeric":
		switch string(raw) {
		case "NaN", "Infinity", "-Infinity":
			return appendJSONString(dst, string(raw)), nil
		}
		return append(dst, raw...), nil
	case "bool":
		if string(raw) == "t" {
			return append(dst, "true"...), nil
		}
		return append(dst, "false"...), nil
	case "json", "jsonb":
		return append(dst, raw...), nil
	case "timestamp", "timestamptz", "date":
		if bytes.HasSuffix(raw, []byte(" BC")) { // refused as a column value too
			return nil, bad("array element %s is before year 1 AD, which MySQL cannot store", raw)
		}
		if p.elem == "date" {
			break
		}
		s := strings.Replace(string(raw), " ", "T", 1)
		if p.elem == "timestamptz" && strings.HasSuffix(s, "+00") {
			s += ":00"
		}
		return appendJSONString(dst, s), nil
	}
	return appendJSONString(dst, string(raw)), nil
}

// appendJSONString writes s as a JSON string byte for byte as to_json
// does (PostgreSQL's escape_json): only the quote, the backslash and
// control characters are escaped. json.Marshal also escapes <, >, & and
// U+2028/U+2029, and a streamed value spelt otherwise than the copied one
// would not match it where rows are matched on all their columns.
func appendJSONString(dst []byte, s string) []byte {
	const hex = "0123456789abcdef"
	dst = append(dst, '"')
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '"', '\\':
			dst = append(dst, '\\', c)
		case '\b':
			dst = append(dst, '\\', 'b')
		case '\f':
			dst = append(dst, '\\', 'f')
		case '\n':
			dst = append(dst, '\\', 'n')
		case '\r':
			dst = append(dst, '\\', 'r')
		case '\t':
			dst = append(dst, '\\', 't')
		default:
			if c < ' ' {
				dst = append(dst, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			} else {
				dst = append(dst, c)
			}
		}
	}
	return append(dst, '"')
}
