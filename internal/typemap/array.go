package typemap

import (
	"bytes"
	"encoding/json"
	"strings"
)

// ArrayToJSON converts PostgreSQL's array text form ({1,2}, {"a b",NULL},
// {{1,2},{3,4}}) into the JSON that to_json() gives for the same array, so
// rows that arrive through the change stream match rows the copy read with
// to_json(). elem is the element type name (int4, text, timestamptz …).
func ArrayToJSON(elem string) Converter {
	return func(v []byte) ([]byte, error) {
		if i := bytes.IndexByte(v, '='); i > 0 && v[0] == '[' {
			v = v[i+1:] // drop explicit bounds such as [0:2]=
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
	quoted := false
	if p.src[p.pos] == '"' {
		quoted = true
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
	return p.element(dst, raw, quoted), nil
}

// element renders one element as to_json would.
func (p *arrayParser) element(dst, raw []byte, quoted bool) []byte {
	switch p.elem {
	case "int2", "int4", "int8", "float4", "float8", "numeric", "oid":
		switch string(raw) {
		case "NaN", "Infinity", "-Infinity":
			return appendJSONString(dst, string(raw))
		}
		return append(dst, raw...)
	case "bool":
		if string(raw) == "t" {
			return append(dst, "true"...)
		}
		return append(dst, "false"...)
	case "json", "jsonb":
		return append(dst, raw...)
	case "timestamp", "timestamptz":
		s := strings.Replace(string(raw), " ", "T", 1)
		if p.elem == "timestamptz" && strings.HasSuffix(s, "+00") {
			s += ":00"
		}
		return appendJSONString(dst, s)
	}
	_ = quoted
	return appendJSONString(dst, string(raw))
}

func appendJSONString(dst []byte, s string) []byte {
	b, _ := json.Marshal(s)
	// json.Marshal escapes <, > and & for HTML; to_json does not.
	b = bytes.ReplaceAll(b, []byte(`\u003c`), []byte("<"))
	b = bytes.ReplaceAll(b, []byte(`\u003e`), []byte(">"))
	b = bytes.ReplaceAll(b, []byte(`\u0026`), []byte("&"))
	return append(dst, b...)
}
