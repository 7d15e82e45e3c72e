package events

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/sluice-db/sluice/internal/schema"
)

// An event carries JSON values; sluice turns each into the source's text
// form for its column, the form COPY prints and the copy's converters read.
// For a few types the JSON value fixes that text exactly (integers, text,
// booleans, lower-case uuids, enum labels): those are converted here, and a
// batch made only of them skips the source. Every other value (timestamps,
// numerics, JSON, arrays, bytea, …) is cast on the source, which parses and
// prints it the way it would the stored value.

// jsonText converts one JSON value for a column of type typ. canonical says
// the text is exactly what the source would print.
func jsonText(raw json.RawMessage, typ schema.Type) (text string, null, canonical bool, err error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return "", false, false, errors.New("empty value")
	}
	first := raw[0]
	if first == 'n' {
		return "", true, true, nil
	}
	str := func() (string, error) {
		if first != '"' {
			return "", fmt.Errorf("expected a JSON string for %s, got %s", typ.Display, clip(raw))
		}
		s, err := unquoteString(raw)
		if err != nil {
			return "", err
		}
		if strings.IndexByte(s, 0) >= 0 {
			return "", errors.New("text contains a NUL character, which PostgreSQL cannot store")
		}
		return s, nil
	}
	if typ.Array {
		switch first {
		case '[':
			s, err := jsonArrayToPG(raw)
			return s, false, false, err
		case '"':
			s, err := str() // an array literal such as {1,2,3}
			return s, false, false, err
		}
		return "", false, false, fmt.Errorf("expected a JSON array for %s, got %s", typ.Display, clip(raw))
	}
	if len(typ.EnumLabels) > 0 {
		s, err := str()
		if err != nil {
			return "", false, false, err
		}
		for _, l := range typ.EnumLabels {
			if l == s {
				return s, false, true, nil
			}
		}
		return "", false, false, fmt.Errorf("%q is not a label of %s", s, typ.Display)
	}
	switch typ.Name {
	case "int2", "int4", "int8", "oid", "xid", "cid":
		s := string(raw)
		if first == '"' {
			if s, err = str(); err != nil {
				return "", false, false, err
			}
		}
		bits := map[string]int{"int2": 16, "int4": 32, "int8": 64}[typ.Name]
		if bits == 0 { // unsigned 32-bit types
			n, err := strconv.ParseUint(s, 10, 32)
			if err != nil {
				return "", false, false, fmt.Errorf("%s is not a %s", clip(raw), typ.Display)
			}
			return strconv.FormatUint(n, 10), false, true, nil
		}
		n, err := strconv.ParseInt(s, 10, bits)
		if err != nil {
			if ne, ok := err.(*strconv.NumError); ok && ne.Err == strconv.ErrRange {
				return "", false, false, fmt.Errorf("%s is out of range for %s", clip(raw), typ.Display)
			}
			return "", false, false, fmt.Errorf("%s is not an integer", clip(raw))
		}
		return strconv.FormatInt(n, 10), false, true, nil
	case "bool":
		switch string(raw) {
		case "true", `"t"`, `"true"`:
			return "t", false, true, nil
		case "false", `"f"`, `"false"`:
			return "f", false, true, nil
		}
		return "", false, false, fmt.Errorf("%s is not a boolean", clip(raw))
	case "text", "varchar", "citext":
		s, err := str()
		return s, false, err == nil, err
	case "uuid":
		s, err := str()
		return s, false, err == nil && canonicalUUID(s), err
	case "json", "jsonb":
		var b bytes.Buffer
		if err := json.Compact(&b, raw); err != nil {
			return "", false, false, err
		}
		return b.String(), false, false, nil
	case "numeric", "float4", "float8", "money":
		if first == '"' {
			s, err := str()
			return s, false, false, err
		}
		if first == '-' || (first >= '0' && first <= '9') {
			return string(raw), false, false, nil
		}
		return "", false, false, fmt.Errorf("%s is not a number", clip(raw))
	}
	switch first {
	case '"':
		s, err := str()
		return s, false, false, err
	case '{', '[':
		return "", false, false, fmt.Errorf("expected a scalar value for %s, got %s", typ.Display, clip(raw))
	}
	return string(raw), false, false, nil // a number or boolean, as the source reads its text
}

func canonicalUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
				return false
			}
		}
	}
	return true
}

// jsonArrayToPG writes a JSON array as a PostgreSQL array literal.
func jsonArrayToPG(raw json.RawMessage) (string, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return "", err
	}
	arr, ok := v.([]any)
	if !ok {
		return "", errors.New("not an array")
	}
	var b strings.Builder
	if err := appendPGArray(&b, arr); err != nil {
		return "", err
	}
	return b.String(), nil
}

func appendPGArray(b *strings.Builder, arr []any) error {
	b.WriteByte('{')
	for i, e := range arr {
		if i > 0 {
			b.WriteByte(',')
		}
		switch x := e.(type) {
		case nil:
			b.WriteString("NULL")
		case []any:
			if err := appendPGArray(b, x); err != nil {
				return err
			}
		case json.Number:
			b.WriteString(x.String())
		case bool:
			b.WriteString(strconv.FormatBool(x))
		case string:
			if strings.IndexByte(x, 0) >= 0 {
				return errors.New("array element contains a NUL character")
			}
			quotePGElem(b, x)
		default: // an object: json[]/jsonb[] element
			data, err := json.Marshal(x)
			if err != nil {
				return err
			}
			quotePGElem(b, string(data))
		}
	}
	b.WriteByte('}')
	return nil
}

func quotePGElem(b *strings.Builder, s string) {
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		if s[i] == '"' || s[i] == '\\' {
			b.WriteByte('\\')
		}
		b.WriteByte(s[i])
	}
	b.WriteByte('"')
}

func clip(raw []byte) string {
	const max = 80
	if len(raw) > max {
		return string(raw[:max]) + "…"
	}
	return string(raw)
}
