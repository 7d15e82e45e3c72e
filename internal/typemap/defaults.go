package typemap

import (
	"regexp"
	"strings"

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
	if numberLiteral.MatchString(expr) {
		return strings.Trim(expr, "()"), true, ""
	}
	if isDoubledQuoteLiteral(expr) {
		value := strings.ReplaceAll(expr[1:len(expr)-1], "''", "'")
		switch {
		case m.SQLType == "BOOLEAN":
			if value == "t" || value == "true" {
				return "1", true, ""
			}
			return "0", true, ""
		case strings.HasPrefix(m.SQLType, "JSON"), strings.HasPrefix(m.SQLType, "LONGTEXT"), strings.HasPrefix(m.SQLType, "LONGBLOB"):
			return "(" + QuoteString(value) + ")", true, ""
		}
		return QuoteString(value), true, ""
	}
	return "", false, "default " + col.Default + " has no MySQL translation and is left out; set it on the target if the application relies on it"
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
