package integration

import (
	"math"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sluice-db/sluice/internal/testenv"
)

// matrixColumn is one column of the type matrix: its PostgreSQL type, the
// source literal of each row, and what the target must hold for it.
type matrixColumn struct {
	name    string
	pgType  string
	read    string   // how the test reads it on the target; default: the column itself
	values  []string // SQL literals for rows 1–4 (NULL allowed)
	want    []string // the target's text for rows 1–4; null for NULL
	compare func(got, want string) bool
}

// float32Equal compares a FLOAT read back as DOUBLE with a decimal literal
// at single precision: the value the user stored in a PostgreSQL real.
func float32Equal(got, want string) bool {
	if got == null || want == null {
		return got == want
	}
	g, err1 := strconv.ParseFloat(got, 64)
	w, err2 := strconv.ParseFloat(want, 32)
	return err1 == nil && err2 == nil && float32(g) == float32(w)
}

// float64Equal compares doubles numerically (MariaDB prints 1e-30 its own way).
func float64Equal(got, want string) bool {
	if got == null || want == null {
		return got == want
	}
	g, err1 := strconv.ParseFloat(got, 64)
	w, err2 := strconv.ParseFloat(want, 64)
	return err1 == nil && err2 == nil && g == w && !math.IsNaN(g)
}

// The type matrix: rows 1 and 2 hold the extremes and awkward values, row 3
// zeros, row 4 NULL everywhere.
var typeMatrix = []matrixColumn{
	{name: "i2", pgType: "smallint",
		values: []string{"32767", "-32768", "0", "NULL"},
		want:   []string{"32767", "-32768", "0", null}},
	{name: "i4", pgType: "integer",
		values: []string{"2147483647", "-2147483648", "0", "NULL"},
		want:   []string{"2147483647", "-2147483648", "0", null}},
	{name: "i8", pgType: "bigint",
		values: []string{"9223372036854775807", "-9223372036854775808", "0", "NULL"},
		want:   []string{"9223372036854775807", "-9223372036854775808", "0", null}},
	{name: "n", pgType: "numeric(12,4)",
		values: []string{"12345678.1234", "-0.5", "0", "NULL"},
		want:   []string{"12345678.1234", "-0.5000", "0.0000", null}},
	{name: "nu", pgType: "numeric",
		values: []string{"123456789.123456789", "-0.5", "0", "NULL"},
		want: []string{"123456789.123456789000000000000000000000", "-0.500000000000000000000000000000",
			"0.000000000000000000000000000000", null}},
	{name: "f4", pgType: "real", read: "CAST(f4 AS DOUBLE)",
		values:  []string{"3.1415927", "1e-30", "'-0'", "NULL"},
		want:    []string{"3.1415927", "1e-30", "0", null},
		compare: float32Equal},
	{name: "f8", pgType: "double precision",
		values:  []string{"3.1415927", "1e-30", "'-0'", "NULL"},
		want:    []string{"3.1415927", "1e-30", "0", null},
		compare: float64Equal},
	{name: "b", pgType: "boolean",
		values: []string{"true", "false", "NULL", "NULL"},
		want:   []string{"1", "0", null, null}},
	{name: "t", pgType: "text",
		values: []string{"'안녕하세요 세계'", `E'tab\there\nnewline \\ backslash'`, "''", "NULL"},
		want:   []string{"안녕하세요 세계", "tab\there\nnewline \\ backslash", "", null}},
	{name: "vc", pgType: "varchar(20)",
		values: []string{"'😀🎉 emoji'", `'\N'`, "'café naïve Ångström'", "NULL"},
		want:   []string{"😀🎉 emoji", `\N`, "café naïve Ångström", null}},
	{name: "c", pgType: "char(10)",
		values: []string{"'가나'", "'ab'", "'é'", "NULL"},
		want:   []string{"가나", "ab", "é", null}},
	{name: "by", pgType: "bytea", read: "HEX(`by`)",
		values: []string{`'\x00090a5cff'`, `'\x'`, "NULL", "NULL"},
		want:   []string{"00090A5CFF", "", null, null}},
	{name: "d", pgType: "date",
		values: []string{"'2024-02-29'", "'0001-01-01'", "'9999-12-31'", "NULL"},
		want:   []string{"2024-02-29", "0001-01-01", "9999-12-31", null}},
	{name: "tm", pgType: "time",
		values: []string{"'13:45:30.123456'", "'00:00:00'", "'23:59:59.999999'", "NULL"},
		want:   []string{"13:45:30.123456", "00:00:00.000000", "23:59:59.999999", null}},
	{name: "ts", pgType: "timestamp",
		values: []string{"'2024-06-01 12:34:56.789'", "'1970-01-01 00:00:00'", "'9999-12-31 23:59:59.999999'", "NULL"},
		want:   []string{"2024-06-01 12:34:56.789000", "1970-01-01 00:00:00.000000", "9999-12-31 23:59:59.999999", null}},
	{name: "tz", pgType: "timestamptz",
		values: []string{"'2024-06-01 12:00:00+02'", "'2024-01-01 00:00:00.000001+00'", "'2023-12-31 23:30:00-05:30'", "NULL"},
		want:   []string{"2024-06-01 10:00:00.000000", "2024-01-01 00:00:00.000001", "2024-01-01 05:00:00.000000", null}},
	{name: "iv", pgType: "interval",
		values: []string{"'1 year 2 months 3 days 04:05:06'", "'-2 hours'", "'0'", "NULL"},
		want:   []string{"P1Y2M3DT4H5M6S", "PT-2H", "PT0S", null}},
	{name: "u", pgType: "uuid",
		values: []string{"'A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11'", "'00000000-0000-0000-0000-000000000000'", "NULL", "NULL"},
		want:   []string{"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", "00000000-0000-0000-0000-000000000000", null, null}},
	{name: "j", pgType: "json",
		values: []string{`'{"b":1,  "a":2}'`, "'[]'", `'"ü"'`, "NULL"},
		want:   []string{`{"b":1,  "a":2}`, "[]", `"ü"`, null}},
	{name: "jb", pgType: "jsonb",
		values: []string{`'{"b":1, "a":[true,null,"x"]}'`, `'"str"'`, "'1.50'", "NULL"},
		want:   []string{`{"a": [true, null, "x"], "b": 1}`, `"str"`, "1.50", null}},
	{name: "ia", pgType: "int[]",
		values: []string{"'{1,2,3}'", "'{}'", "'{NULL,-7}'", "NULL"},
		want:   []string{"[1,2,3]", "[]", "[null,-7]", null}},
	{name: "ta", pgType: "text[]",
		values: []string{`'{"a","b c","ü"}'`, `'{NULL,""}'`, `ARRAY['x"y']`, "NULL"},
		want:   []string{`["a","b c","ü"]`, `[null,""]`, `["x\"y"]`, null}},
	{name: "m", pgType: "mood",
		values: []string{"'happy'", "'sad'", "'ok'", "NULL"},
		want:   []string{"happy", "sad", "ok", null}},
	{name: "dm", pgType: "posint",
		values: []string{"42", "1", "2147483647", "NULL"},
		want:   []string{"42", "1", "2147483647", null}},
	{name: "ip", pgType: "inet",
		values: []string{"'192.168.0.1/24'", "'::1'", "'10.1.2.3'", "NULL"},
		want:   []string{"192.168.0.1/24", "::1", "10.1.2.3", null}},
	{name: "cd", pgType: "cidr",
		values: []string{"'10.0.0.0/8'", "'2001:db8::/32'", "'192.168.1.0/24'", "NULL"},
		want:   []string{"10.0.0.0/8", "2001:db8::/32", "192.168.1.0/24", null}},
}

func createTypeMatrix(t *testing.T, p *testenv.Pair) {
	t.Helper()
	p.PG(t, `CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy')`)
	p.PG(t, `CREATE DOMAIN posint AS integer CHECK (VALUE > 0)`)
	cols := []string{"id integer PRIMARY KEY"}
	for _, c := range typeMatrix {
		cols = append(cols, c.name+" "+c.pgType)
	}
	p.PG(t, "CREATE TABLE types (\n"+strings.Join(cols, ",\n")+")")
	for row := 0; row < 4; row++ {
		names, vals := []string{"id"}, []string{strconv.Itoa(row + 1)}
		for _, c := range typeMatrix {
			names = append(names, c.name)
			vals = append(vals, c.values[row])
		}
		p.PG(t, "INSERT INTO types ("+strings.Join(names, ", ")+") VALUES ("+strings.Join(vals, ", ")+")")
	}
}

// warningLine returns the plan's WARNING line about column (table.column)
// that contains phrase, or "".
func warningLine(planOut, column, phrase string) string {
	for _, l := range strings.Split(planOut, "\n") {
		if strings.HasPrefix(l, "-- WARNING") && strings.Contains(l, column+":") && strings.Contains(l, phrase) {
			return l
		}
	}
	return ""
}

// TestTypeMatrix round-trips every supported type through both servers:
// plan warns about the lossy mappings, copy stores exact values, and verify
// finds no difference (CHAR padding, float text, timestamptz and JSON key
// order/whitespace included).
func TestTypeMatrix(t *testing.T) {
	t.Parallel()
	p := testenv.NewPair(t)
	createTypeMatrix(t, p)

	plan := testenv.MustRun(t, 0, args(p, "plan")...).Stdout
	for _, w := range []struct{ column, phrase string }{
		{"types.tz", "timestamp with time zone becomes DATETIME in UTC"},
		{"types.iv", "interval becomes ISO 8601 text"},
		{"types.ia", "becomes a JSON array"},
		{"types.ta", "becomes a JSON array"},
		{"types.ip", "inet becomes text"},
		{"types.cd", "cidr becomes text"},
		{"types.dm", "domain posint"},
		{"types.nu", "DECIMAL(65,30)"},
	} {
		if warningLine(plan, w.column, w.phrase) == "" {
			t.Errorf("plan has no WARNING for %s saying %q:\n%s", w.column, w.phrase, plan)
		}
	}
	// exact mappings must not drown the real warnings in noise
	for _, col := range []string{"i2", "i4", "i8", "n", "b", "t", "vc", "d", "ts", "m"} {
		if l := warningLine(plan, "types."+col, ""); l != "" {
			t.Errorf("plan warns about %s, whose mapping is exact: %s", col, l)
		}
	}

	testenv.MustRun(t, 0, args(p, "copy")...)

	sel := []string{"id"}
	for _, c := range typeMatrix {
		if c.read != "" {
			sel = append(sel, c.read)
		} else {
			sel = append(sel, "`"+c.name+"`")
		}
	}
	rows := queryRows(t, p.Target, "SELECT "+strings.Join(sel, ", ")+" FROM types ORDER BY id")
	if len(rows) != 4 {
		t.Fatalf("target holds %d rows, want 4: %v", len(rows), rows)
	}
	for r, row := range rows {
		if row[0] != strconv.Itoa(r+1) {
			t.Fatalf("row %d has id %s", r+1, row[0])
		}
		for i, c := range typeMatrix {
			got, want := row[i+1], c.want[r]
			eq := got == want
			if c.compare != nil {
				eq = c.compare(got, want)
			}
			if !eq {
				t.Errorf("%s (%s) row %d: source %s, target holds %q, want %q", c.name, c.pgType, r+1, c.values[r], got, want)
			}
		}
	}

	// the target sees JSON as JSON, not just as text
	if got := queryOne(t, p.Target, "SELECT JSON_EXTRACT(j, '$.a') + JSON_LENGTH(ia) FROM types WHERE id = 1"); got != "5" {
		t.Errorf("JSON_EXTRACT(j,'$.a') + JSON_LENGTH(ia) on the target = %s, want 5", got)
	}
	// timestamptz is UTC on the target whatever the reading session's zone
	if got := queryOne(t, p.Target, "SELECT COUNT(*) FROM types WHERE tz = '2024-06-01 10:00:00'"); got != "1" {
		t.Errorf("target rows with tz = '2024-06-01 10:00:00' (UTC): %s, want 1", got)
	}

	r := testenv.MustRun(t, 0, args(p, "verify")...)
	mustContain(t, "verify output", r.Stdout, "types → types: 4 rows compared, equal", "verify: EQUAL")
}

// TestAutoIncrement checks that identity, serial and bigserial keys become
// AUTO_INCREMENT and that the target continues after the largest copied id,
// not after the row count.
func TestAutoIncrement(t *testing.T) {
	t.Parallel()
	p := testenv.NewPair(t)
	p.PG(t, `CREATE TABLE ident (id integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY, v text)`)
	p.PG(t, `CREATE TABLE ser (id serial PRIMARY KEY, v text)`)
	p.PG(t, `CREATE TABLE bigser (id bigserial PRIMARY KEY, v text)`)
	p.PG(t, `INSERT INTO ident (v) VALUES ('a'), ('b')`)
	p.PG(t, `INSERT INTO ident (id, v) OVERRIDING SYSTEM VALUE VALUES (100, 'c')`)
	p.PG(t, `INSERT INTO ser (v) VALUES ('a'), ('b')`)
	p.PG(t, `INSERT INTO ser (id, v) VALUES (50, 'c')`)
	p.PG(t, `INSERT INTO bigser (v) VALUES ('a')`)
	p.PG(t, `INSERT INTO bigser (id, v) VALUES (7000, 'c')`)

	testenv.MustRun(t, 0, args(p, "copy")...)

	for _, c := range []struct {
		table, next string
	}{{"ident", "101"}, {"ser", "51"}, {"bigser", "7001"}} {
		extra := queryOne(t, p.Target, `SELECT extra FROM information_schema.columns
			WHERE table_schema = DATABASE() AND table_name = ? AND column_name = 'id'`, c.table)
		if !strings.Contains(strings.ToLower(extra), "auto_increment") {
			t.Errorf("%s.id: information_schema.columns.extra = %q, want auto_increment", c.table, extra)
			continue
		}
		p.My(t, "INSERT INTO "+c.table+" (v) VALUES ('new')")
		if got := queryOne(t, p.Target, "SELECT id FROM "+c.table+" WHERE v = 'new'"); got != c.next {
			t.Errorf("%s: a row inserted on the target without id got id %s, want %s (max copied id + 1)", c.table, got, c.next)
		}
	}
}

// TestIdentifiers copies a table with a non-ASCII name and columns named
// with reserved words.
func TestIdentifiers(t *testing.T) {
	t.Parallel()
	p := testenv.NewPair(t)
	p.PG(t, `CREATE TABLE "좋아요" ("select" integer PRIMARY KEY, "order" text, "from" date)`)
	p.PG(t, `INSERT INTO "좋아요" VALUES (1, '첫째', '2024-01-02'), (2, 'second', NULL)`)

	testenv.MustRun(t, 0, args(p, "copy")...)

	rows := queryRows(t, p.Target, "SELECT `select`, `order`, `from` FROM `좋아요` ORDER BY `select`")
	want := [][]string{{"1", "첫째", "2024-01-02"}, {"2", "second", null}}
	if !equalRows(rows, want) {
		t.Errorf("target 좋아요 holds %v, want %v", rows, want)
	}
	r := testenv.MustRun(t, 0, args(p, "verify")...)
	mustContain(t, "verify output", r.Stdout, "좋아요: 2 rows compared, equal")
}

// TestTextKeyCollation: keys that differ only in case or trailing spaces are
// distinct in PostgreSQL and must stay distinct (no duplicate-key error, no
// merged rows) on the target.
func TestTextKeyCollation(t *testing.T) {
	t.Parallel()
	p := testenv.NewPair(t)
	p.PG(t, `CREATE TABLE ck (k text PRIMARY KEY, n integer)`)
	p.PG(t, `INSERT INTO ck VALUES ('abc', 1), ('ABC', 2), ('abc ', 3)`)

	testenv.MustRun(t, 0, args(p, "copy")...)

	rows := queryRows(t, p.Target, "SELECT HEX(k), n FROM ck ORDER BY n")
	want := [][]string{{"616263", "1"}, {"414243", "2"}, {"61626320", "3"}}
	if !equalRows(rows, want) {
		t.Errorf("target ck holds (hex key, n) %v, want %v", rows, want)
	}
	if got := queryOne(t, p.Target, "SELECT COUNT(DISTINCT k) FROM ck"); got != "3" {
		t.Errorf("target ck has %s distinct keys, want 3", got)
	}
	if got := queryOne(t, p.Target, "SELECT COUNT(*) FROM ck WHERE k = 'abc'"); got != "1" {
		t.Errorf("target: SELECT COUNT(*) FROM ck WHERE k = 'abc' = %s, want 1 (as on PostgreSQL)", got)
	}
	testenv.MustRun(t, 0, args(p, "verify")...)
}

func equalRows(a, b [][]string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if len(a[i]) != len(b[i]) {
			return false
		}
		for j := range a[i] {
			if a[i][j] != b[i][j] {
				return false
			}
		}
	}
	return true
}

// TestSparseIntegerKey copies a small table whose bigint keys are far apart
// (as with time-based or externally assigned ids). Four rows must copy in
// seconds, whatever the distance between the keys.
func TestSparseIntegerKey(t *testing.T) {
	t.Parallel()
	p := testenv.NewPair(t)
	p.PG(t, `CREATE TABLE sparse (id bigint PRIMARY KEY, v text)`)
	p.PG(t, `INSERT INTO sparse VALUES (1, 'a'), (2, 'b'), (3, 'c'), (3000000000, 'd')`)

	r, ok := runWithTimeout(t, 20*time.Second, args(p, "copy")...)
	if !ok {
		t.Fatalf("sluice copy of a 4-row table with keys 1…3000000000 did not finish in 20 s "+
			"(it plans key ranges of --chunk-rows ids each over the whole key span)\noutput so far:\n%s", output(r))
	}
	if r.Exit != 0 {
		t.Fatalf("sluice copy: exit %d\n%s", r.Exit, output(r))
	}
	rows := queryRows(t, p.Target, "SELECT id, v FROM sparse ORDER BY id")
	want := [][]string{{"1", "a"}, {"2", "b"}, {"3", "c"}, {"3000000000", "d"}}
	if !equalRows(rows, want) {
		t.Errorf("target sparse holds %v, want %v", rows, want)
	}
}

// TestCompositeTextKey copies tables whose primary key combines an integer
// with a text column (tenant id + slug, a common shape): the target key must
// fit InnoDB's 3072-byte limit together with the other key columns.
func TestCompositeTextKey(t *testing.T) {
	t.Parallel()
	p := testenv.NewPair(t)
	p.PG(t, `CREATE TABLE pages (tenant_id integer, slug text, body text, PRIMARY KEY (tenant_id, slug))`)
	p.PG(t, `INSERT INTO pages VALUES (1, 'home', 'a'), (1, 'Home', 'b'), (2, 'home', 'c')`)
	p.PG(t, `CREATE TABLE tags (name varchar(1000), lang char(2), PRIMARY KEY (name, lang))`)
	p.PG(t, `INSERT INTO tags VALUES ('x', 'en'), ('x', 'de')`)

	r := testenv.Run(t, nil, args(p, "copy")...)
	if r.Exit != 0 {
		t.Fatalf("sluice copy of tables keyed (integer, text) and (varchar(1000), char(2)): exit %d, want 0\n%s", r.Exit, output(r))
	}
	rows := queryRows(t, p.Target, "SELECT tenant_id, slug, body FROM pages ORDER BY tenant_id, body")
	if !equalRows(rows, [][]string{{"1", "home", "a"}, {"1", "Home", "b"}, {"2", "home", "c"}}) {
		t.Errorf("target pages holds %v", rows)
	}
	if got := queryOne(t, p.Target, "SELECT COUNT(*) FROM tags"); got != "2" {
		t.Errorf("target tags holds %s rows, want 2", got)
	}
	testenv.MustRun(t, 0, args(p, "verify")...)
}

// TestFloatExtremes copies the largest, smallest and subnormal values of
// real and double precision: all are finite numbers MariaDB can store.
func TestFloatExtremes(t *testing.T) {
	t.Parallel()
	p := testenv.NewPair(t)
	p.PG(t, `CREATE TABLE fx (id integer PRIMARY KEY, f4 real, f8 double precision)`)
	p.PG(t, `INSERT INTO fx VALUES
		(1, 1.4e-45, 5e-324),
		(2, 1.1754944e-38, 2.2250738585072014e-308),
		(3, 3.4028233e38, 1.7976931348623157e308),
		(4, -3.4028233e38, -1.7976931348623157e308),
		(5, 3.4028235e38, 1),
		(6, -3.4028235e38, -1)`)

	r := testenv.Run(t, nil, args(p, "copy")...)
	if r.Exit != 0 {
		t.Fatalf("sluice copy of finite real/double values: exit %d, want 0 (rows 5 and 6 hold ±3.4028235e38, "+
			"the largest real, which PostgreSQL prints as a decimal slightly above float32's maximum)\n%s", r.Exit, output(r))
	}
	want := [][]string{
		{"1", "1.4e-45", "5e-324"},
		{"2", "1.1754944e-38", "2.2250738585072014e-308"},
		{"3", "3.4028233e38", "1.7976931348623157e308"},
		{"4", "-3.4028233e38", "-1.7976931348623157e308"},
		{"5", "3.4028235e38", "1"},
		{"6", "-3.4028235e38", "-1"},
	}
	rows := queryRows(t, p.Target, "SELECT id, CAST(f4 AS DOUBLE), f8 FROM fx ORDER BY id")
	if len(rows) != len(want) {
		t.Fatalf("target fx holds %d rows, want %d", len(rows), len(want))
	}
	for i, w := range want {
		if !float32Equal(rows[i][1], w[1]) || !float64Equal(rows[i][2], w[2]) {
			t.Errorf("row %s: target (f4, f8) = (%s, %s), want (%s, %s)", w[0], rows[i][1], rows[i][2], w[1], w[2])
		}
	}
	testenv.MustRun(t, 0, args(p, "verify")...)
}
