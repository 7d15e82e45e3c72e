package partbound

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
)

// target names columns in backquotes and writes numbers bare, other
// values quoted; column "doc" is one the target cannot compare.
func target(column string) (string, func(string) (string, error), error) {
	if column == "doc" {
		return "", nil, errors.New("column doc is jsonb")
	}
	return "`" + column + "`", func(text string) (string, error) {
		if strings.Contains(text, "infinity") {
			return "", fmt.Errorf("%s has no MariaDB form", text)
		}
		if _, err := strconv.ParseFloat(text, 64); err == nil {
			return text, nil
		}
		return "'" + text + "'", nil
	}, nil
}

func TestCondition(t *testing.T) {
	rangeOn := func(bound string, cols ...string) Level { return Level{Strategy: 'r', Columns: cols, Bound: bound} }
	for _, c := range []struct {
		name   string
		levels []Level
		want   string
	}{
		{"integer range", []Level{rangeOn("FOR VALUES FROM (0) TO (50)", "id")}, "`id` IS NOT NULL AND `id` >= 0 AND `id` < 50"},
		{"negative integers come quoted", []Level{rangeOn("FOR VALUES FROM ('-50') TO (0)", "id")}, "`id` IS NOT NULL AND `id` >= -50 AND `id` < 0"},
		{"date range", []Level{rangeOn("FOR VALUES FROM ('2024-01-01') TO ('2024-02-01')", "day")},
			"`day` IS NOT NULL AND `day` >= '2024-01-01' AND `day` < '2024-02-01'"},
		{"unbounded below", []Level{rangeOn("FOR VALUES FROM (MINVALUE) TO (10)", "id")}, "`id` IS NOT NULL AND `id` < 10"},
		{"unbounded above", []Level{rangeOn("FOR VALUES FROM (10) TO (MAXVALUE)", "id")}, "`id` IS NOT NULL AND `id` >= 10"},
		{"two columns", []Level{rangeOn("FOR VALUES FROM (1, 10) TO (1, 20)", "a", "b")},
			"`a` IS NOT NULL AND `b` IS NOT NULL AND (`a`, `b`) >= (1, 10) AND (`a`, `b`) < (1, 20)"},
		{"all of a first column", []Level{rangeOn("FOR VALUES FROM (1, MINVALUE) TO (1, MAXVALUE)", "a", "b")},
			"`a` IS NOT NULL AND `b` IS NOT NULL AND `a` >= 1 AND `a` <= 1"},
		{"past a first column", []Level{rangeOn("FOR VALUES FROM (1, MAXVALUE) TO (3, MINVALUE)", "a", "b")},
			"`a` IS NOT NULL AND `b` IS NOT NULL AND `a` > 1 AND `a` < 3"},
		{"three columns, the last unbounded", []Level{rangeOn("FOR VALUES FROM (1, 2, MINVALUE) TO (1, 5, MINVALUE)", "a", "b", "c")},
			"`a` IS NOT NULL AND `b` IS NOT NULL AND `c` IS NOT NULL AND (`a`, `b`) >= (1, 2) AND (`a`, `b`) < (1, 5)"},
		{"list", []Level{{Strategy: 'l', Columns: []string{"region"}, Bound: "FOR VALUES IN ('eu', 'it''s')"}}, "`region` IN ('eu', 'it's')"},
		{"list with NULL", []Level{{Strategy: 'l', Columns: []string{"region"}, Bound: "FOR VALUES IN ('eu', NULL)"}}, "(`region` IN ('eu') OR `region` IS NULL)"},
		{"a subpartition of the same key", []Level{rangeOn("FOR VALUES FROM (50) TO (95)", "id"), rangeOn("FOR VALUES FROM (50) TO (1000)", "id")},
			"`id` IS NOT NULL AND `id` >= 50 AND `id` < 95 AND `id` < 1000"},
		{"NULL alone", []Level{{Strategy: 'l', Columns: []string{"region"}, Bound: "FOR VALUES IN (NULL)"}}, "`region` IS NULL"},
		{"a subpartition's bound and its parent's", []Level{
			{Strategy: 'l', Columns: []string{"region"}, Bound: "FOR VALUES IN ('eu')"},
			rangeOn("FOR VALUES FROM ('2024-01-01 00:00:00') TO ('2024-02-01 00:00:00')", "at"),
		}, "`region` IN ('eu') AND `at` IS NOT NULL AND `at` >= '2024-01-01 00:00:00' AND `at` < '2024-02-01 00:00:00'"},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := Condition(c.levels, target)
			if err != nil || got != c.want {
				t.Errorf("Condition = %q, %v\nwant        %q", got, err, c.want)
			}
		})
	}
}

// Rows that no condition on the target tells as PostgreSQL does get no
// condition: a wrong DELETE would take rows of other partitions.
func TestNoCondition(t *testing.T) {
	for _, c := range []struct {
		name   string
		levels []Level
		why    string
	}{
		{"hash", []Level{{Strategy: 'h', Columns: []string{"id"}, Bound: "FOR VALUES WITH (modulus 4, remainder 1)"}}, "hash"},
		{"default", []Level{{Strategy: 'r', Columns: []string{"id"}, Bound: "DEFAULT"}}, "default partition"},
		{"default above", []Level{
			{Strategy: 'r', Columns: []string{"id"}, Bound: "FOR VALUES FROM (0) TO (10)"},
			{Strategy: 'l', Columns: []string{"region"}, Bound: "DEFAULT"},
		}, "default partition"},
		{"expression key", []Level{{Strategy: 'r', Columns: []string{""}, Bound: "FOR VALUES FROM (0) TO (10)"}}, "expression"},
		{"column the target cannot compare", []Level{{Strategy: 'l', Columns: []string{"doc"}, Bound: "FOR VALUES IN ('{}')"}}, "jsonb"},
		{"value the target cannot hold", []Level{{Strategy: 'r', Columns: []string{"day"}, Bound: "FOR VALUES FROM ('-infinity') TO ('2024-01-01')"}}, "no MariaDB form"},
		{"escape string", []Level{{Strategy: 'l', Columns: []string{"region"}, Bound: `FOR VALUES IN ('a\b')`}}, "cannot read"},
		{"unterminated", []Level{{Strategy: 'l', Columns: []string{"region"}, Bound: "FOR VALUES IN ('eu)"}}, "cannot read"},
		{"key and bound differ in length", []Level{{Strategy: 'r', Columns: []string{"a", "b"}, Bound: "FOR VALUES FROM (1) TO (2)"}}, "cannot read"},
		{"empty range", []Level{{Strategy: 'r', Columns: []string{"a"}, Bound: "FOR VALUES FROM (MAXVALUE) TO (MAXVALUE)"}}, "empty range"},
		{"none", nil, "no bound"},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := Condition(c.levels, target)
			if !errors.Is(err, ErrNoCondition) || !strings.Contains(err.Error(), c.why) {
				t.Errorf("Condition = %q, %v; want ErrNoCondition saying %q", got, err, c.why)
			}
		})
	}
}
