// Package typemap decides how each PostgreSQL column type is stored in
// MySQL/MariaDB: the target column type, the expression that reads it on the
// source, the conversion of its text form, and how verify compares it.
//
// Everything here is pure logic so it can be unit-tested without servers; the
// round trips through real servers live in the integration tests.
package typemap

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/sluice-db/sluice/internal/canonical"
	"github.com/sluice-db/sluice/internal/schema"
)

// Flavor of the target server.
type Flavor string

const (
	MariaDB Flavor = "mariadb"
	MySQL   Flavor = "mysql"
)

// Converter turns a value in the source's text form (as COPY prints it with
// sluice's session settings) into the target's input form. It returns a
// *BadValue error for values the target cannot hold. A nil Converter means
// the text is the same on both sides.
type Converter func(v []byte) ([]byte, error)

// BadValue is a value the target column cannot hold without loss.
type BadValue struct{ Reason string }

func (e *BadValue) Error() string { return e.Reason }

func bad(format string, args ...any) error { return &BadValue{Reason: fmt.Sprintf(format, args...)} }

// mariaDBJSONDepth is the nesting MariaDB's json_valid (the JSON type's
// check) refuses: as a load's warning for its whole chunk, naming no row.
const mariaDBJSONDepth = 32

// checkJSON refuses a JSON document MariaDB's json_valid (the JSON type's
// check) refuses, which a load reports as one warning of its whole chunk
// and a streamed write as a failed constraint, naming no row: nested
// mariaDBJSONDepth levels or deeper, or a string holding a UTF-16
// surrogate that is not half of a pair (PostgreSQL's json type keeps
// "\ud800"). So it is a bad row named by its key and column, which
// --on-bad-row=skip sets aside.
func checkJSON(v []byte) ([]byte, error) {
	depth, inString := 0, false
	high := false // the last escape was a high surrogate, wanting a low one next
	for i := 0; i < len(v); i++ {
		c := v[i]
		if inString {
			switch {
			case c == '\\' && i+1 < len(v) && v[i+1] == 'u' && i+5 < len(v):
				u, err := strconv.ParseUint(string(v[i+2:i+6]), 16, 16)
				if err != nil {
					return nil, bad("JSON string has a broken \\u escape %q", v[i:i+6])
				}
				switch {
				case u >= 0xd800 && u <= 0xdbff:
					if high {
						return nil, bad("JSON string holds a lone UTF-16 surrogate (\\u%04x), which MariaDB's JSON refuses", u)
					}
					high = true
				case u >= 0xdc00 && u <= 0xdfff:
					if !high {
						return nil, bad("JSON string holds a lone UTF-16 surrogate (\\u%04x), which MariaDB's JSON refuses", u)
					}
					high = false
				case high:
					return nil, bad("JSON string holds a lone UTF-16 surrogate before \\u%04x, which MariaDB's JSON refuses", u)
				}
				i += 5
				continue
			case high:
				return nil, bad("JSON string holds a lone UTF-16 high surrogate, which MariaDB's JSON refuses")
			case c == '\\':
				i++ // the escaped character
			case c == '"':
				inString = false
			}
			continue
		}
		switch c {
		case '"':
			inString = true
		case '[', '{':
			if depth++; depth >= mariaDBJSONDepth {
				return nil, bad("JSON nested %d levels or deeper, which MariaDB's json_valid refuses", mariaDBJSONDepth)
			}
		case ']', '}':
			depth--
		}
	}
	return v, nil
}

// Options describe how a column is used, which changes its mapping.
type Options struct {
	Flavor Flavor
	// InKey: the column is part of the primary key or a unique index, so it
	// needs an indexable type and an exact (binary, no-pad) collation.
	InKey bool
	// AutoIncrement: the column is an identity/serial column that leads a key.
	AutoIncrement bool
	// KeyBytes is how many bytes of InnoDB's 3072 per index a key column
	// may take, for the mappings that follow it (Mapping.FitsKeyBytes);
	// 0: all of them.
	KeyBytes int
}

// Mapping is how one column travels.
type Mapping struct {
	SQLType string // the target column type, with character set and collation
	Kind    canonical.Kind
	// SourceExpr wraps the quoted source column (or expression) in what the
	// copy SELECTs, e.g. to_json(x) for arrays. Nil means the column itself.
	SourceExpr func(quoted string) string
	// TargetExpr wraps the quoted target column in what verify SELECTs.
	TargetExpr func(quoted string) string
	// LoadExpr, when set, is how LOAD DATA turns the loaded bytes (a user
	// variable) into the column value; the load reads CHARACTER SET binary.
	LoadExpr string
	Convert  Converter
	// StreamConvert, when set, turns a value as the change stream sends it
	// (the plain column, not SourceExpr) into what SourceExpr would have
	// read, before Convert.
	StreamConvert Converter
	// BulkSafe: Convert only normalises (the target stores the unconverted
	// text the same way), so a bulk load may skip it.
	BulkSafe bool
	// Notes are lines for the plan: every mapping that is not exact says how.
	Notes []string
	// FitsKeyBytes: in a key, the column takes at most Options.KeyBytes of
	// the index (a narrower VARCHAR or VARBINARY; longer values are bad rows).
	FitsKeyBytes bool
}

// ConvertText turns a value in the column's text form (what the change
// stream sends) into the target's input form: StreamConvert, then Convert.
func (m Mapping) ConvertText(v []byte) ([]byte, error) {
	var err error
	for _, c := range []Converter{m.StreamConvert, m.Convert} {
		if c == nil {
			continue
		}
		if v, err = c(v); err != nil {
			return nil, err
		}
	}
	return v, nil
}

// TextCollation returns the collation that keeps PostgreSQL's equality for
// text: binary (case and accent sensitive) and NO PAD ('abc' <> 'abc ').
func TextCollation(f Flavor) string {
	if f == MySQL {
		return "utf8mb4_0900_bin"
	}
	return "utf8mb4_nopad_bin"
}

// MaxKeyChars is the longest utf8mb4 VARCHAR an InnoDB index can hold
// (3072 bytes / 4 bytes per character).
const MaxKeyChars = 768

// MaxKeyBytes is InnoDB's limit for one index key.
const MaxKeyBytes = 3072

// maxASCIIVarchar is the longest single-byte VARCHAR that fits MariaDB's
// 65,535-byte row (with its 2 length bytes and a NULL bit).
const maxASCIIVarchar = 65532

// keyLimit is what a key column may take of the index, in characters of
// charBytes bytes.
func keyLimit(opt Options, charBytes int) int {
	if opt.KeyBytes > 0 {
		return max(1, opt.KeyBytes/charBytes)
	}
	return MaxKeyBytes / charBytes
}

// Map maps one source column type.
func Map(t schema.Type, opt Options) Mapping {
	text := "CHARACTER SET utf8mb4 COLLATE " + TextCollation(opt.Flavor)
	ascii := "CHARACTER SET ascii COLLATE ascii_bin"
	if t.Array {
		notes := []string{fmt.Sprintf("%s becomes a JSON array (MySQL has no array type); an array whose index does not start at 1 ([0:2]={…}) is refused as a bad row, JSON cannot keep its bounds", t.Display)}
		if t.Elem == "json" || t.Elem == "jsonb" {
			notes = append(notes, fmt.Sprintf("%s: an element that is JSON null and a NULL element both become null in the JSON array", t.Display))
		}
		// to_json drops an array's bounds: such a value is sent as a marker
		// that checkArrayJSON refuses.
		check, stream := checkArrayJSON(t.Elem), ArrayToJSON(t.Elem)
		if opt.Flavor == MariaDB { // the array's JSON meets json_valid as a whole
			check, stream = chainConv(check, checkJSON), chainConv(stream, checkJSON)
		}
		return Mapping{SQLType: "JSON", Kind: canonical.JSON, StreamConvert: stream, Convert: check,
			SourceExpr: wrap(`CASE WHEN array_dims(%[1]s) !~ '^(\[1:[0-9]+\])+$' THEN 'bounds ' || array_dims(%[1]s) ELSE to_json(%[1]s)::text END`),
			Notes:      notes}
	}
	if len(t.EnumLabels) > 0 {
		if l, ok := spacedLabel(t.EnumLabels); ok {
			// MariaDB strips trailing spaces from ENUM labels: 'b ' would be
			// stored as 'b', and labels 'a' and 'a ' refused as duplicates
			return Mapping{SQLType: fmt.Sprintf("VARCHAR(%d) %s", maxEnumLabel, text), Kind: canonical.Exact,
				Notes: []string{fmt.Sprintf("enum %s becomes VARCHAR(%d) holding its labels' text: label %s ends in a space, which a MySQL ENUM drops; the target does not restrict the column to the labels", t.Display, maxEnumLabel, QuoteString(l))}}
		}
		labels := make([]string, len(t.EnumLabels))
		for i, l := range t.EnumLabels {
			labels[i] = QuoteString(l)
		}
		return Mapping{SQLType: "ENUM(" + strings.Join(labels, ",") + ") " + text, Kind: canonical.Exact}
	}
	auto := ""
	if opt.AutoIncrement {
		auto = " AUTO_INCREMENT"
	}
	switch t.Name {
	case "int2":
		return Mapping{SQLType: "SMALLINT" + auto, Kind: canonical.Integer}
	case "int4":
		return Mapping{SQLType: "INT" + auto, Kind: canonical.Integer}
	case "int8":
		return Mapping{SQLType: "BIGINT" + auto, Kind: canonical.Integer}
	case "oid", "xid", "cid":
		return Mapping{SQLType: "INT UNSIGNED", Kind: canonical.Integer}
	case "numeric":
		return mapNumeric(t)
	case "money":
		return Mapping{SQLType: "DECIMAL(19,2)", Kind: canonical.Decimal, SourceExpr: wrap("%s::numeric"), StreamConvert: moneyToNumeric,
			Convert: decimalChecker(17, 2), Notes: []string{"money becomes DECIMAL(19,2) (the currency symbol and locale formatting are not kept)"}}
	case "float4":
		return Mapping{SQLType: "FLOAT", Kind: canonical.Float32, Convert: checkFloat32,
			TargetExpr: wrap("CAST(%s AS DOUBLE)"), Notes: []string{negativeZero}}
	case "float8":
		return Mapping{SQLType: "DOUBLE", Kind: canonical.Float64, Convert: checkFloat, Notes: []string{negativeZero}}
	case "bool":
		return Mapping{SQLType: "BOOLEAN", Kind: canonical.Bool, Convert: convertBool}
	case "text", "varchar", "name", "citext":
		return mapText(t, opt, text)
	case "char":
		// PostgreSQL's one-byte "char": a space is a value (CHAR(1) would
		// drop it), and PostgreSQL 15 prints a byte over 127 as \ooo
		return Mapping{SQLType: "VARCHAR(4) " + text, Kind: canonical.Exact, BulkSafe: true,
			Notes: []string{`"char" becomes VARCHAR(4) holding its byte as PostgreSQL prints it (a space kept; a byte over 127 as \ooo)`}}
	case "bpchar":
		n := t.Length
		if n < 1 {
			// bpchar without a length holds any length (character, written
			// as such, is char(1) and has one); trailing spaces do not count
			// The target's VARCHAR or TEXT keeps trailing spaces, and the
			// copy trims them: compared exactly, a space added on the
			// target shows.
			m := mapText(t, opt, text)
			conv := m.Convert
			m.BulkSafe = false
			m.Convert = trimPadding
			if conv != nil { // a key's length limit
				m.Convert = chainConv(trimPadding, conv)
			}
			return m
		}
		if n <= 255 {
			// CHAR drops trailing spaces itself, so a bulk load may send them
			return Mapping{SQLType: fmt.Sprintf("CHAR(%d) %s", n, text), Kind: canonical.PaddedChar, Convert: trimPadding, BulkSafe: true}
		}
		return Mapping{SQLType: fmt.Sprintf("VARCHAR(%d) %s", n, text), Kind: canonical.Exact, Convert: trimPadding,
			Notes: []string{fmt.Sprintf("%s becomes VARCHAR(%d): MySQL CHAR holds at most 255 characters; trailing spaces are kept as sent", t.Display, n)}}
	case "bytea":
		if opt.InKey {
			n := keyLimit(opt, 1)
			return Mapping{SQLType: fmt.Sprintf("VARBINARY(%d)", n), Kind: canonical.Bytes, Convert: chainConv(decodeHexBytea, maxBytes(n)), FitsKeyBytes: true,
				Notes: []string{fmt.Sprintf("bytea in a key becomes VARBINARY(%d), the most its index leaves room for in InnoDB's 3072 bytes: longer values are rejected as bad rows", n)}}
		}
		return Mapping{SQLType: "LONGBLOB", Kind: canonical.Bytes, Convert: decodeHexBytea}
	case "date":
		return Mapping{SQLType: "DATE", Kind: canonical.Date, Convert: checkDate}
	case "time":
		return Mapping{SQLType: fmt.Sprintf("TIME(%d)", FracDigits(t)), Kind: canonical.Time}
	case "timestamp":
		return Mapping{SQLType: fmt.Sprintf("DATETIME(%d)", FracDigits(t)), Kind: canonical.Timestamp, Convert: convertTimestamp(false)}
	case "timestamptz":
		return Mapping{SQLType: fmt.Sprintf("DATETIME(%d)", FracDigits(t)), Kind: canonical.Timestamp, Convert: convertTimestamp(true),
			Notes: []string{"timestamp with time zone becomes DATETIME in UTC (sluice pins both sessions to UTC; read it back with time_zone='+00:00')"}}
	case "timetz":
		return Mapping{SQLType: "VARCHAR(32) " + ascii, Kind: canonical.Exact,
			Notes: []string{"time with time zone becomes text such as 10:30:00+02 (MySQL has no such type)"}}
	case "interval":
		return Mapping{SQLType: "VARCHAR(64) " + ascii, Kind: canonical.Exact,
			Notes: []string{"interval becomes ISO 8601 text such as P1Y2M3DT04H05M06S (MySQL has no interval type)"}}
	case "uuid":
		if opt.Flavor == MySQL {
			return Mapping{SQLType: "CHAR(36) " + ascii, Kind: canonical.Lower,
				Notes: []string{"uuid becomes CHAR(36) (MySQL has no uuid type)"}}
		}
		// MariaDB's UUID type orders time-based UUIDs differently from
		// PostgreSQL; range scans compare it as text to keep one order.
		return Mapping{SQLType: "UUID", Kind: canonical.Lower, LoadExpr: "CONVERT(%s USING ascii)"}
	case "json", "jsonb":
		m := Mapping{SQLType: "JSON", Kind: canonical.JSON}
		if opt.Flavor == MariaDB {
			m.Notes = []string{t.Name + " becomes JSON, which MariaDB stores as LONGTEXT with a json_valid check (a document nested 32 levels or deeper, or a string with a lone UTF-16 surrogate such as \\ud800, is a bad row)"}
			m.Convert = checkJSON
		}
		return m
	case "inet", "cidr":
		return Mapping{SQLType: "VARCHAR(43) " + ascii, Kind: canonical.Exact,
			Notes: []string{t.Name + " becomes text such as 192.168.0.1/24 (MySQL has no network address type)"}}
	case "macaddr", "macaddr8":
		return Mapping{SQLType: "VARCHAR(23) " + ascii, Kind: canonical.Exact,
			Notes: []string{t.Name + " becomes text"}}
	case "bit", "varbit":
		n := t.Length
		switch {
		case n >= 1 && n <= maxASCIIVarchar:
			return Mapping{SQLType: fmt.Sprintf("VARCHAR(%d) %s", n, ascii), Kind: canonical.Exact,
				Notes: []string{t.Display + " becomes a text of 0 and 1"}}
		case opt.InKey:
			n = keyLimit(opt, 1)
			return Mapping{SQLType: fmt.Sprintf("VARCHAR(%d) %s", n, ascii), Kind: canonical.Exact, Convert: maxBytes(n), FitsKeyBytes: true,
				Notes: []string{fmt.Sprintf("%s in a key becomes a text of 0 and 1 in VARCHAR(%d), the most its index leaves room for: longer values are rejected as bad rows", t.Display, n)}}
		}
		return Mapping{SQLType: "LONGTEXT " + ascii, Kind: canonical.Exact,
			Notes: []string{t.Display + " becomes a text of 0 and 1 (LONGTEXT)"}}
	}
	return Mapping{SQLType: "LONGTEXT " + text, Kind: canonical.Exact, SourceExpr: wrap("%s::text"),
		Notes: []string{fmt.Sprintf("%s has no MySQL equivalent and is stored as its text form", t.Display)}}
}

func mapText(t schema.Type, opt Options, text string) Mapping {
	n := t.Length
	if t.Name == "name" {
		n = 63
	}
	limit := keyLimit(opt, 4)
	if opt.InKey && (n < 0 || n > limit) {
		return Mapping{SQLType: fmt.Sprintf("VARCHAR(%d) %s", limit, text), Kind: canonical.Exact, Convert: maxChars(limit), FitsKeyBytes: true,
			Notes: []string{fmt.Sprintf("%s in a key becomes VARCHAR(%d), the most its index leaves room for in InnoDB's 3072 bytes: longer values are rejected as bad rows", t.Display, limit)}}
	}
	if n < 0 || n > 16383 { // 16383 utf8mb4 characters is the most VARCHAR holds
		return Mapping{SQLType: "LONGTEXT " + text, Kind: canonical.Exact}
	}
	return Mapping{SQLType: fmt.Sprintf("VARCHAR(%d) %s", n, text), Kind: canonical.Exact, FitsKeyBytes: opt.InKey}
}

// maxEnumLabel is the longest enum label PostgreSQL takes, in bytes.
const maxEnumLabel = 63

// negativeZero is the note of a float column.
const negativeZero = "-0 is stored as 0 (MariaDB keeps no sign on a zero; verify counts them equal)"

// spacedLabel returns a label that ends in a space.
func spacedLabel(labels []string) (string, bool) {
	for _, l := range labels {
		if strings.HasSuffix(l, " ") {
			return l, true
		}
	}
	return "", false
}

// MySQL DECIMAL holds 65 digits with at most 30 after the point.
const (
	maxDecimalDigits = 65
	maxDecimalScale  = 30
)

// mapNumeric keeps numeric(p,s) exact. PostgreSQL 15 also takes a scale
// above the precision (numeric(2,5): below 0.001, five decimals) and a
// negative one (numeric(2,-3): whole thousands up to 99,000); MySQL wants
// 0 <= s <= p, so those get the digits before and after the point they hold.
func mapNumeric(t schema.Type) Mapping {
	p, s := t.Precision, t.Scale
	if p > 0 {
		frac, whole := max(s, 0), max(p-s, 0)
		if whole+frac <= maxDecimalDigits && frac <= maxDecimalScale {
			return Mapping{SQLType: fmt.Sprintf("DECIMAL(%d,%d)", whole+frac, frac), Kind: canonical.Decimal, Convert: decimalChecker(whole, frac)}
		}
	}
	return Mapping{SQLType: fmt.Sprintf("DECIMAL(%d,%d)", maxDecimalDigits, maxDecimalScale), Kind: canonical.Decimal,
		Convert: decimalChecker(maxDecimalDigits-maxDecimalScale, maxDecimalScale),
		Notes:   []string{fmt.Sprintf("%s becomes DECIMAL(65,30): values with more than 35 digits before the point or 30 after it are rejected as bad rows", t.Display)}}
}

// FracDigits is the digits of a second a time or timestamp type keeps (6
// when unbounded; MySQL keeps no more).
func FracDigits(t schema.Type) int {
	if t.Precision >= 0 && t.Precision < 6 {
		return t.Precision
	}
	return 6
}

func wrap(format string) func(string) string {
	return func(q string) string { return fmt.Sprintf(format, q) }
}

// QuoteIdent quotes an identifier for MySQL.
func QuoteIdent(name string) string { return "`" + strings.ReplaceAll(name, "`", "``") + "`" }

// QuoteString quotes a string literal for MySQL (with backslash escapes on,
// the server default).
func QuoteString(s string) string {
	s = strings.ReplaceAll(s, `\`, `\\`)
	return "'" + strings.ReplaceAll(s, "'", "''") + "'"
}
