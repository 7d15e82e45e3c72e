package capture

import (
	"testing"

	"github.com/sluice-db/sluice/internal/partbound"
	"github.com/sluice-db/sluice/internal/pgstream"
	"github.com/sluice-db/sluice/internal/plan"
	"github.com/sluice-db/sluice/internal/schema"
	"github.com/sluice-db/sluice/internal/typemap"
)

// column maps a source column of type name (with precision and scale,
// -1 for none) as sluice's plan does, under another name on the target;
// sqlType, when set, stands for a type the user set, which keeps the
// kind and converts the text only.
func column(source, name string, precision, scale int, sqlType string) plan.Column {
	st := schema.Type{Name: name, Display: name, Precision: precision, Scale: scale, Length: -1}
	m := typemap.Map(st, typemap.Options{Flavor: typemap.MariaDB})
	if sqlType != "" {
		m.SQLType, m.Convert = sqlType, typemap.TextForm(st)
	}
	return plan.Column{Source: source, Target: "v2_" + source, SQLType: m.SQLType, Kind: m.Kind, Convert: m.Convert, StreamConvert: m.StreamConvert, SourceType: st}
}

// The DELETE a truncated partition's stop gives names the target's table
// and columns and writes the bounds as the target's values; it is left
// out when the target may compare the key otherwise.
func TestTargetDelete(t *testing.T) {
	tbl := &plan.Table{Target: "events_v2", Columns: []plan.Column{
		column("id", "int8", -1, -1, ""), column("at", "timestamptz", 6, -1, ""), column("day", "date", -1, -1, ""), column("region", "text", -1, -1, ""),
		column("amount", "numeric", 12, 2, ""), column("code", "int4", -1, -1, "VARCHAR(10)"), column("price", "money", -1, -1, ""),
		column("ms", "timestamp", 6, -1, "DATETIME(3)"), column("ms3", "timestamp", 3, -1, ""),
	}}
	bound := func(strategy byte, col, b string) pgstream.PartitionBound {
		return pgstream.PartitionBound{Constraint: "(…)", Parents: []uint32{10},
			Levels: []partbound.Level{{Strategy: strategy, Columns: []string{col}, Bound: b}}}
	}
	for _, c := range []struct {
		name string
		b    pgstream.PartitionBound
		want string
	}{
		{"bigint", bound('r', "id", "FOR VALUES FROM ('-5') TO ('100')"), "DELETE FROM `events_v2` WHERE `v2_id` IS NOT NULL AND `v2_id` >= -5 AND `v2_id` < 100"},
		{"timestamptz in UTC", bound('r', "at", "FOR VALUES FROM ('2024-01-01 00:00:00+00') TO ('2024-02-01 00:00:00.5+00')"),
			"DELETE FROM `events_v2` WHERE `v2_at` IS NOT NULL AND `v2_at` >= '2024-01-01 00:00:00' AND `v2_at` < '2024-02-01 00:00:00.5'"},
		{"date list", bound('l', "day", "FOR VALUES IN ('2024-01-01', NULL)"), "DELETE FROM `events_v2` WHERE (`v2_day` IN ('2024-01-01') OR `v2_day` IS NULL)"},
		{"numeric", bound('r', "amount", "FOR VALUES FROM (0.5) TO ('10')"), "DELETE FROM `events_v2` WHERE `v2_amount` IS NOT NULL AND `v2_amount` >= 0.5 AND `v2_amount` < 10"},
		{"money as its numeric", bound('r', "price", "FOR VALUES FROM ('$0.00') TO ('$1,000.00')"),
			"DELETE FROM `events_v2` WHERE `v2_price` IS NOT NULL AND `v2_price` >= 0.00 AND `v2_price` < 1000.00"},
		{"timestamp(3)", bound('r', "ms3", "FOR VALUES FROM ('2024-01-01 00:00:00') TO ('2024-01-01 00:00:00.5')"),
			"DELETE FROM `events_v2` WHERE `v2_ms3` IS NOT NULL AND `v2_ms3` >= '2024-01-01 00:00:00' AND `v2_ms3` < '2024-01-01 00:00:00.5'"},
		// the target cut (MariaDB) or rounded (MySQL) the rows' microseconds
		{"a timestamp(6) the user keeps to milliseconds", bound('r', "ms", "FOR VALUES FROM ('2024-01-01 00:00:00') TO ('2024-01-01 00:00:00.5')"), ""},
		{"numeric past its scale", bound('r', "amount", "FOR VALUES FROM (0.005) TO ('10')"), ""},
		{"text: collations differ", bound('l', "region", "FOR VALUES IN ('eu')"), ""},
		{"an integer the user made text", bound('l', "code", "FOR VALUES IN (1)"), ""},
		{"a date MariaDB cannot hold", bound('r', "day", "FOR VALUES FROM ('-infinity') TO ('2024-01-01')"), ""},
		{"a timestamptz out of UTC", bound('r', "at", "FOR VALUES FROM ('2024-01-01 00:00:00+02') TO ('2024-02-01 00:00:00+02')"), ""},
		{"a column not migrated", bound('r', "gone", "FOR VALUES FROM (1) TO (2)"), ""},
		{"a constraint not read", pgstream.PartitionBound{Levels: bound('r', "id", "FOR VALUES FROM (0) TO (1)").Levels, Parents: []uint32{10}}, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := targetDelete(tbl, c.b); got != c.want {
				t.Errorf("targetDelete = %q\nwant           %q", got, c.want)
			}
		})
	}
}
