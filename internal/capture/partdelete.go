package capture

import (
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/sluice-db/sluice/internal/canonical"
	"github.com/sluice-db/sluice/internal/partbound"
	"github.com/sluice-db/sluice/internal/pgstream"
	"github.com/sluice-db/sluice/internal/plan"
	"github.com/sluice-db/sluice/internal/typemap"
)

// targetDelete is the DELETE that takes a truncated partition's rows off
// t's target table, from its bound b, or "" when no condition on the
// target tells them as PostgreSQL does.
func targetDelete(t *plan.Table, b pgstream.PartitionBound) string {
	if b.Constraint == "" { // below a default partition
		return ""
	}
	cond, err := partbound.Condition(b.Levels, partitionKeyOnTarget(t))
	if err != nil {
		return ""
	}
	return "DELETE FROM " + typemap.QuoteIdent(t.Target) + " WHERE " + cond
}

// orderedKind is a kind of value MariaDB orders as PostgreSQL does, in the
// target types sluice maps it to: the text of each value, once converted
// as the stream's values are, is a literal MariaDB compares as the value.
// Text is not among them: the two engines' collations order it otherwise.
type orderedKind struct {
	targets []*regexp.Regexp // the target column's type
	value   *regexp.Regexp   // the converted value
	quote   bool
}

var (
	integerTypes = regexp.MustCompile(`^(TINYINT|SMALLINT|MEDIUMINT|INT|INTEGER|BIGINT)\b`)
	decimalTypes = regexp.MustCompile(`^(DECIMAL|NUMERIC)\b`)
	orderedKinds = map[canonical.Kind]orderedKind{
		canonical.Integer: {[]*regexp.Regexp{integerTypes, decimalTypes}, regexp.MustCompile(`^-?[0-9]+$`), false},
		canonical.Decimal: {[]*regexp.Regexp{decimalTypes}, regexp.MustCompile(`^-?[0-9]+(\.[0-9]+)?$`), false},
		canonical.Date:    {[]*regexp.Regexp{regexp.MustCompile(`^DATE$`)}, regexp.MustCompile(`^[0-9]{4}-[0-9]{2}-[0-9]{2}$`), true},
		canonical.Timestamp: {[]*regexp.Regexp{regexp.MustCompile(`^DATETIME\b`)},
			regexp.MustCompile(`^[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?$`), true},
	}
)

// partitionKeyOnTarget says how t's source columns read on its target
// table, for the partition key columns whose values compare there as on
// the source.
func partitionKeyOnTarget(t *plan.Table) partbound.Target {
	return func(column string) (string, func(string) (string, error), error) {
		i := slices.IndexFunc(t.Columns, func(c plan.Column) bool { return c.Source == column })
		if i < 0 {
			return "", nil, fmt.Errorf("column %s is not migrated", column)
		}
		c := t.Columns[i]
		kind, ok := orderedKinds[c.Kind]
		sqlType := strings.ToUpper(c.SQLType)
		if !ok || c.SourceType.Array || !slices.ContainsFunc(kind.targets, func(re *regexp.Regexp) bool { return re.MatchString(sqlType) }) {
			return "", nil, fmt.Errorf("column %s (%s as %s) may compare otherwise on the target", column, c.SourceType.Display, c.SQLType)
		}
		if c.Kind == canonical.Timestamp && datetimeDigits(sqlType) < typemap.FracDigits(c.SourceType) {
			// The target cut (MariaDB) or rounded (MySQL) the rows' fractions:
			// a row just under a bound may sit at it there.
			return "", nil, fmt.Errorf("column %s (%s as %s) keeps fewer digits of a second on the target", column, c.SourceType.Display, c.SQLType)
		}
		return typemap.QuoteIdent(c.Target), func(text string) (string, error) {
			v, err := typemap.Mapping{StreamConvert: c.StreamConvert, Convert: c.Convert}.ConvertText([]byte(text)) // as a streamed value
			if err != nil {
				return "", fmt.Errorf("column %s: %w", column, err)
			}
			if !kind.value.Match(v) {
				return "", fmt.Errorf("column %s: value %q is not one sluice writes as a literal", column, v)
			}
			if kind.quote {
				return "'" + string(v) + "'", nil
			}
			return string(v), nil
		}, nil
	}
}

var datetimePrecision = regexp.MustCompile(`^DATETIME\((\d)\)`)

// datetimeDigits is the fractional digits a DATETIME(n) type keeps.
func datetimeDigits(sqlType string) int {
	if m := datetimePrecision.FindStringSubmatch(sqlType); m != nil {
		return int(m[1][0] - '0')
	}
	return 0
}
