package typemap

import (
	"encoding/hex"
	"fmt"
	"regexp"
	"strings"

	"github.com/sluice-db/sluice/internal/canonical"
	"github.com/sluice-db/sluice/internal/schema"
)

var (
	castSuffix    = regexp.MustCompile(`^\(?(.*?)\)?::[a-z_ ]+(\[\])?(\([0-9, ]+\))?$`)
	numberLiteral = regexp.MustCompile(`^\(?-?[0-9]+(\.[0-9]+)?\)?$`)
)

// Default translates a PostgreSQL column default into a MySQL DEFAULT clause
// (without the keyword). ok is false when it cannot be translated; the note
// then says so for the plan.
func Default(col schema.Column, m Mapping) (clause string, ok bool, note string) {
	expr := strings.TrimSpace(col.Default)
	if expr == "" || strings.EqualFold(expr, "NULL") || strings.HasPrefix(expr, "NULL::") {
		return "", true, ""
	}
	if strings.HasPrefix(expr, "nextval(") {
		if strings.Contains(m.SQLType, "AUTO_INCREMENT") {
			return "", true, ""
		}
		return "", false, "default " + expr + " dropped: AUTO_INCREMENT needs the column to lead a key"
	}
	lower := strings.ToLower(expr)
	switch lower {
	case "true":
		return "1", true, ""
	case "false":
		return "0", true, ""
	case "now()", "current_timestamp", "transaction_timestamp()", "statement_timestamp()", "localtimestamp", "clock_timestamp()":
		if strings.HasPrefix(m.SQLType, "DATETIME") {
			return "CURRENT_TIMESTAMP" + strings.TrimPrefix(m.SQLType, "DATETIME"), true, ""
		}
	case "current_date":
		return "(CURRENT_DATE)", true, ""
	case "gen_random_uuid()", "uuid_generate_v4()":
		return "(UUID())", true, "default " + expr + " becomes UUID(), which generates time-based (version 1) UUIDs"
	}
	if sub := castSuffix.FindStringSubmatch(expr); sub != nil {
		expr = sub[1]
	}
	var value string
	switch {
	case numberLiteral.MatchString(expr):
		value = strings.Trim(expr, "()")
	case isDoubledQuoteLiteral(expr):
		value = strings.ReplaceAll(expr[1:len(expr)-1], "''", "'")
	default:
		return "", false, "default " + col.Default + " has no MySQL translation and is left out; set it on the target if the application relies on it"
	}
	// the literal is the value's text form, as a row would carry it: it
	// takes the same conversion (bytea's hex to bytes, an array to JSON, a
	// timestamptz without its zone)
	v, err := m.ConvertText([]byte(value))
	if err != nil {
		return "", false, fmt.Sprintf("default %s is left out: the target column cannot hold it (%v); set it on the target if the application relies on it", col.Default, err)
	}
	return literal(v, m), true, ""
}

// literal writes a converted value as a DEFAULT for m's column.
func literal(v []byte, m Mapping) string {
	var lit string
	switch m.Kind {
	case canonical.Integer, canonical.Decimal, canonical.Float32, canonical.Float64, canonical.Number, canonical.Bool:
		return string(v)
	case canonical.Bytes:
		lit = "X'" + hex.EncodeToString(v) + "'"
	default:
		lit = QuoteString(string(v))
	}
	if strings.HasPrefix(m.SQLType, "JSON") || strings.HasPrefix(m.SQLType, "LONG") {
		return "(" + lit + ")" // MySQL takes a BLOB, TEXT or JSON default only as an expression
	}
	return lit
}

// isDoubledQuoteLiteral reports a single-quoted literal whose inner quotes are
// all doubled ('it”s').
func isDoubledQuoteLiteral(s string) bool {
	if len(s) < 2 || s[0] != '\'' || s[len(s)-1] != '\'' {
		return false
	}
	inner := strings.ReplaceAll(s[1:len(s)-1], "''", "")
	return !strings.Contains(inner, "'")
}
