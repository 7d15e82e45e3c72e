package integration

import (
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sluice-db/sluice/internal/testenv"
)

// A target URL for tests that must fail before connecting anywhere.
const unusedTarget = "mysql://root@127.0.0.1:3306/sluice_never_created"

// TestBadCommandLine: malformed or swapped URLs and bad flag values are usage
// errors (exit 2) that name the offending setting, found before connecting.
func TestBadCommandLine(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name  string
		args  []string
		wants []string
	}{
		{"not a URL", []string{"plan", "--source", "notaurl", "--target", unusedTarget},
			[]string{"--source", "notaurl", "postgres://"}},
		{"mysql URL as source", []string{"copy", "--source", "mysql://root@127.0.0.1:3306/x", "--target", unusedTarget},
			[]string{"--source", "MySQL URL", "swapped"}},
		{"postgres URL as target", []string{"verify", "--source", "postgres://postgres@127.0.0.1:5432/x", "--target", "postgres://postgres@127.0.0.1:5432/y"},
			[]string{"--target", "PostgreSQL URL"}},
		{"no source", []string{"copy", "--target", unusedTarget}, []string{"no source database", "--source"}},
		{"bad on-bad-row", []string{"copy", "--source", "postgres://postgres@127.0.0.1:5432/x", "--target", unusedTarget, "--on-bad-row", "maybe"},
			[]string{"--on-bad-row", "maybe"}},
		{"unknown flag", []string{"copy", "--paralel", "2"}, []string{"paralel"}},
		{"bad sslmode", []string{"verify", "--source", "postgres://postgres@127.0.0.1:5432/x?sslmode=bogus", "--target", unusedTarget},
			[]string{"SLUICE-SOURCE-URL", "sslmode is invalid"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := testenv.Run(t, []string{"SLUICE_SOURCE=", "SLUICE_TARGET="}, c.args...)
			if r.Exit != 2 {
				t.Fatalf("sluice %s: exit %d, want 2 (usage)\n%s", strings.Join(c.args, " "), r.Exit, output(r))
			}
			mustContain(t, "error output", output(r), c.wants...)
		})
	}
}

// TestUnreachable: a server that does not answer is a connection error
// (exit 3) naming the server, and a password in the URL is never printed.
func TestUnreachable(t *testing.T) {
	t.Parallel()
	p := testenv.NewPair(t)
	r := testenv.MustRun(t, 3, "plan", "--source", "postgres://postgres@127.0.0.1:1/x", "--target", p.TargetURL)
	mustContain(t, "error output", output(r), "source", "127.0.0.1:1", "cannot connect")

	const pw = "Unreach-pw-42"
	r = testenv.MustRun(t, 3, "plan", "--source", p.SourceURL, "--target", "mysql://root:"+pw+"@127.0.0.1:1/x")
	mustContain(t, "error output", output(r), "target", "127.0.0.1:1", "cannot connect")
	if strings.Contains(output(r), pw) {
		t.Errorf("the target password appears in the output:\n%s", output(r))
	}
}

// createMariaDBUser creates a user with a password and all rights on the
// pair's target database, dropped when the test ends.
func createMariaDBUser(t *testing.T, p *testenv.Pair, user, password string) {
	t.Helper()
	admin := testenv.MySQL(t, "")
	t.Cleanup(func() {
		admin.Exec("DROP USER IF EXISTS '" + user + "'@'%'")
		admin.Close()
	})
	for _, q := range []string{
		"DROP USER IF EXISTS '" + user + "'@'%'",
		"CREATE USER '" + user + "'@'%' IDENTIFIED BY '" + password + "'",
		"GRANT ALL ON `" + p.Name + "`.* TO '" + user + "'@'%'",
	} {
		if _, err := admin.Exec(q); err != nil {
			t.Fatalf("MariaDB: %s: %v", q, err)
		}
	}
}

// TestWrongPassword: a refused login is a connection error (exit 3) that
// says so, without printing the password that was tried.
func TestWrongPassword(t *testing.T) {
	t.Parallel()
	p := testenv.NewPair(t)
	createMariaDBUser(t, p, "sluice_t_wrongpw", "Right-pw-7")
	p.PG(t, `CREATE TABLE a (id integer PRIMARY KEY)`)

	const wrong = "Wr0ng-Secret-xyz"
	target := "mysql://sluice_t_wrongpw:" + wrong + "@127.0.0.1:3306/" + p.Name
	r := testenv.MustRun(t, 3, "copy", "--source", p.SourceURL, "--target", target)
	mustContain(t, "error output", output(r), "target", "login refused", "sluice_t_wrongpw")
	if strings.Contains(output(r), wrong) {
		t.Errorf("the wrong password appears in the output:\n%s", output(r))
	}
}

// TestPasswordNotPrinted copies and verifies with a password-protected
// target user: it works, and the password appears in no output.
func TestPasswordNotPrinted(t *testing.T) {
	t.Parallel()
	p := testenv.NewPair(t)
	const pw = "S3cret-pw!"
	createMariaDBUser(t, p, "sluice_t_pwok", pw)
	p.PG(t, `CREATE TABLE a (id integer PRIMARY KEY, v text)`)
	p.PG(t, `INSERT INTO a VALUES (1, 'one'), (2, 'two')`)

	target := "mysql://sluice_t_pwok:" + pw + "@127.0.0.1:3306/" + p.Name
	for _, cmd := range []string{"plan", "copy", "verify"} {
		r := testenv.MustRun(t, 0, cmd, "--source", p.SourceURL, "--target", target)
		if strings.Contains(output(r), pw) {
			t.Errorf("sluice %s prints the password:\n%s", cmd, output(r))
		}
	}
	if got := queryOne(t, p.Target, "SELECT GROUP_CONCAT(v ORDER BY id) FROM a"); got != "one,two" {
		t.Errorf("target a.v = %q, want one,two", got)
	}
	// a command line refused before sluice sets up its logging: a URL
	// typed in the wrong place is still masked
	for _, args := range [][]string{{target}, {"copy", "--parallel", target}} {
		r := testenv.MustRun(t, 2, args...)
		if strings.Contains(output(r), pw) || !strings.Contains(output(r), "sluice_t_pwok") {
			t.Errorf("sluice %v (a usage error) shows the password, or not the URL masked:\n%s", args[:len(args)-1], output(r))
		}
	}
}

// TestCopyWithoutTemporaryTables: plan tries each new table on the target
// as a temporary table; a target user without the CREATE TEMPORARY TABLES
// privilege still plans and copies (the tables themselves are created as
// usual), rather than every table being reported refused.
func TestCopyWithoutTemporaryTables(t *testing.T) {
	t.Parallel()
	p := testenv.NewPair(t)
	createMariaDBUser(t, p, "sluice_t_notmp", "No-tmp-pw-1")
	admin := testenv.MySQL(t, "")
	defer admin.Close()
	if _, err := admin.Exec("REVOKE CREATE TEMPORARY TABLES ON `" + p.Name + "`.* FROM 'sluice_t_notmp'@'%'"); err != nil {
		t.Fatal(err)
	}
	p.PG(t, `CREATE TABLE a (id integer PRIMARY KEY, v text)`)
	p.PG(t, `INSERT INTO a VALUES (1, 'one'), (2, 'two')`)
	target := "mysql://sluice_t_notmp:No-tmp-pw-1@127.0.0.1:3306/" + p.Name
	for _, cmd := range []string{"plan", "copy"} {
		testenv.MustRun(t, 0, cmd, "--source", p.SourceURL, "--target", target)
	}
	if got := queryOne(t, p.Target, "SELECT GROUP_CONCAT(v ORDER BY id) FROM a"); got != "one,two" {
		t.Errorf("target a.v = %q, want one,two", got)
	}
}

// TestPlanCreatesNothing: sluice plan only looks. Against a target database
// that does not exist yet it still tries each table on the server (so a
// table InnoDB refuses is reported, exit 4), says that copy and sync will
// create the database, and leaves none behind; plan --apply creates it.
func TestPlanCreatesNothing(t *testing.T) {
	t.Parallel()
	p := testenv.NewPair(t)
	cols := make([]string, 40)
	for i := range cols {
		cols[i] = fmt.Sprintf("c%d char(60)", i) // 9,600 bytes: over InnoDB's 8,126 in a page
	}
	p.PG(t, `CREATE TABLE wide (id bigint PRIMARY KEY, `+strings.Join(cols, ", ")+`)`)
	p.PG(t, `CREATE TABLE fine (id integer PRIMARY KEY, v text)`)
	absent := p.Name + "_absent"
	t.Cleanup(func() { p.My(t, "DROP DATABASE IF EXISTS `"+absent+"`") })
	target := strings.TrimSuffix(p.TargetURL, p.Name) + absent
	exists := func() bool {
		return queryOne(t, p.Target, "SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = ?", absent) == "1"
	}

	r := testenv.Run(t, nil, "plan", "--source", p.SourceURL, "--target", target, "--tables", "fine")
	if r.Exit != 0 || !strings.Contains(r.Stdout, "CREATE TABLE `fine`") || !strings.Contains(r.Stdout, absent+" does not exist yet") {
		t.Errorf("plan against a missing target database: exit %d; want 0, the DDL of fine and a line saying %s does not exist yet\n%s%s", r.Exit, absent, r.Stdout, r.Stderr)
	}
	if exists() {
		t.Errorf("plan without --apply left the target database %s behind", absent)
	}
	r = testenv.Run(t, nil, "plan", "--source", p.SourceURL, "--target", target)
	if r.Exit != 4 || !strings.Contains(r.Stdout, "-- ERROR") || !strings.Contains(r.Stdout+r.Stderr, "8126") {
		t.Errorf("plan of a table InnoDB refuses, against a missing database: exit %d; want 4 with the server's 8126-byte reason\n%s%s", r.Exit, r.Stdout, r.Stderr)
	}
	if exists() {
		t.Errorf("a refused plan left the target database %s behind", absent)
	}
	testenv.MustRun(t, 0, "plan", "--apply", "--source", p.SourceURL, "--target", target, "--tables", "fine")
	if !exists() || queryOne(t, p.Target, "SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_NAME = 'fine'", absent) != "1" {
		t.Errorf("plan --apply did not create the database %s with the table fine", absent)
	}
}

// TestSchemaProblems: a table that does not exist, or has no key, stops the
// run with exit 4 and a message naming the table and what to do.
func TestSchemaProblems(t *testing.T) {
	t.Parallel()
	p := testenv.NewPair(t)
	p.PG(t, `CREATE TABLE fine (id integer PRIMARY KEY)`)
	p.PG(t, `CREATE TABLE keyless (a integer, b text)`)
	p.PG(t, `INSERT INTO keyless VALUES (1, 'x'), (1, 'x')`)

	for _, cmd := range []string{"plan", "copy"} {
		r := testenv.MustRun(t, 4, args(p, cmd, "--tables", "nosuch")...)
		mustContain(t, cmd+" --tables nosuch output", output(r), "nosuch", "does not exist")
	}
	// a list that trims to nothing names no table: refused, not "0 tables EQUAL"
	for _, cmd := range []string{"verify", "copy", "sync"} {
		r := testenv.MustRun(t, 2, args(p, cmd, "--tables", " , ")...)
		mustContain(t, cmd+" --tables ' , ' output", output(r), "SLUICE-USAGE-TABLES", "--tables")
	}
	// one table named twice (with and without its schema) is one table
	testenv.MustRun(t, 0, args(p, "plan", "--tables", "fine,public.fine")...)
	r := testenv.MustRun(t, 4, args(p, "copy", "--tables", "fine,keyless")...)
	mustContain(t, "copy of a table without key", output(r), "keyless", "primary key")
	if n := queryOne(t, p.Target, `SELECT COUNT(*) FROM information_schema.tables
		WHERE table_schema = DATABASE() AND table_name IN ('fine', 'keyless')`); n != "0" {
		t.Errorf("copy created %s tables on the target although the plan has an error", n)
	}
	// verify compares a table without key as a multiset of rows, whatever
	// its REPLICA IDENTITY (it streams nothing): duplicates count
	p.My(t, `CREATE TABLE keyless (a int, b text)`)
	p.My(t, `INSERT INTO keyless VALUES (1, 'x'), (1, 'x')`)
	testenv.MustRun(t, 0, args(p, "verify", "--tables", "keyless")...)
	p.My(t, `DELETE FROM keyless LIMIT 1`)
	r = testenv.MustRun(t, 1, args(p, "verify", "--tables", "keyless")...)
	mustContain(t, "verify of a keyless table missing a duplicate", r.Stdout, "1 missing on the target")
}

// TestTableProblemsReportedTogether: a table the plan cannot make (a key
// too wide for an index) made the probe of the target's tables stop with
// an internal error (exit 10); one the target refuses for
// a reason the probe did not know (two column names that differ only in
// case) stopped the probe silently, and the tables after it went untried.
// Each is reported with its code, exit 4, the others too, with a table the
// config maps that the source lacks (a misspelt name left its mapping
// unused) and where: conditions the source cannot evaluate (which failed
// every chunk of the copy as an internal error).
func TestTableProblemsReportedTogether(t *testing.T) {
	t.Parallel()
	p := testenv.NewPair(t)
	p.PG(t, `CREATE TABLE likes (id int PRIMARY KEY, v text)`)
	p.PG(t, `CREATE TABLE "CaseCols" ("A" int PRIMARY KEY, "a" int)`)
	p.PG(t, `CREATE TABLE wide (k char(1000) PRIMARY KEY)`)
	p.PG(t, `CREATE TABLE zkarr (k int[] PRIMARY KEY)`)
	cfg := filepath.Join(t.TempDir(), "sluice.yaml")
	if err := os.WriteFile(cfg, []byte("tables:\n  likes:\n    where: nosuchcol > 1\n    columns:\n      nosuch: {rename: x}\n  like: {rename: y}\n  wide: {where: \"'yes'\"}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	r := testenv.MustRun(t, 4, args(p, "plan", "--config", cfg)...)
	mustContain(t, "plan output", output(r), `maps column "nosuch"`, `maps table "like"`, `where: "nosuchcol > 1" is not a condition`, `where: "'yes'" is not a condition`, "table wide: the primary key (k) needs", "refuses table CaseCols", "refuses table zkarr")
	if strings.Contains(output(r), "SLUICE-INTERNAL") {
		t.Errorf("plan reported an internal error:\n%s", output(r))
	}
}

// TestDeepJSONIsABadRow: MariaDB's json_valid refuses a document nested
// 32 levels or deeper, as a warning of the whole load: the copy failed the
// table naming no row, and --on-bad-row=skip could not set the row aside.
// It is a bad row named by its key and column like any other.
func TestDeepJSONIsABadRow(t *testing.T) {
	t.Parallel()
	p := testenv.NewPair(t)
	p.PG(t, `CREATE TABLE docs (id int PRIMARY KEY, body jsonb)`)
	p.PG(t, `INSERT INTO docs VALUES (1, '{"a": [1, {"b": "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["}]}'),
		(2, (repeat('[', 40) || repeat(']', 40))::jsonb), (3, (repeat('[', 31) || repeat(']', 31))::jsonb)`)
	r := testenv.MustRun(t, 5, args(p, "copy")...)
	mustContain(t, "copy output", output(r), "docs", "id=2", "column body", "nested 32 levels")
	rejects := filepath.Join(t.TempDir(), "rejects.jsonl")
	testenv.MustRun(t, 0, args(p, "copy", "--on-bad-row=skip", "--reject-file", rejects)...)
	if rows := queryRows(t, p.Target, "SELECT id FROM docs ORDER BY id"); !equalRows(rows, [][]string{{"1"}, {"3"}}) {
		t.Errorf("target docs holds %v, want rows 1 and 3 (brackets inside a string are no nesting; 31 levels fit)", rows)
	}

	// json (not jsonb) keeps a lone UTF-16 surrogate, which MariaDB's JSON
	// refuses; a jsonb[] of 31 levels is 32 as one JSON array; a date[]
	// before year 1 is refused by the stream, and so by the copy
	p.PG(t, `CREATE TABLE notes (id int PRIMARY KEY, body json, deep jsonb[], days date[])`)
	p.PG(t, `INSERT INTO notes VALUES (1, '"\ud800"', NULL, NULL), (2, '"\ud83d\ude00"', NULL, NULL),
		(3, NULL, ARRAY[(repeat('[', 31) || repeat(']', 31))::jsonb], NULL), (4, NULL, NULL, ARRAY['0044-03-15 BC'::date]), (5, NULL, NULL, ARRAY['2024-01-01'::date])`)
	r = testenv.MustRun(t, 0, args(p, "copy", "--tables", "notes", "--on-bad-row=skip", "--reject-file", rejects)...)
	mustContain(t, "copy output", output(r), "3 rows rejected")
	if rows := queryRows(t, p.Target, "SELECT id FROM notes ORDER BY id"); !equalRows(rows, [][]string{{"2"}, {"5"}}) {
		t.Errorf("target notes holds %v, want rows 2 and 5 (a surrogate pair is fine)", rows)
	}
}

// TestBadRowFailThenSkip: NaN in a numeric column stops the copy with exit 5
// naming table, key and column; run again with --on-bad-row=skip, the other
// rows are copied and the bad one is written to the reject file.
func TestBadRowFailThenSkip(t *testing.T) {
	t.Parallel()
	p := testenv.NewPair(t)
	p.PG(t, `CREATE TABLE prices (id integer PRIMARY KEY, amount numeric(10,2), note text)`)
	p.PG(t, `INSERT INTO prices VALUES (1, 1.50, 'ok'), (2, 'NaN', 'bad'), (3, 2.25, 'ok too')`)

	r := testenv.MustRun(t, 5, args(p, "copy")...)
	mustContain(t, "copy output", output(r), "prices", "id=2", "column amount", "NaN")

	// A reject file that cannot be written is a usage error found before any
	// chunk commits (else the rejected row would be counted and never kept).
	missingDir := filepath.Join(t.TempDir(), "no", "such", "dir", "rejects.jsonl")
	r = testenv.MustRun(t, 2, args(p, "copy", "--on-bad-row=skip", "--reject-file", missingDir)...)
	mustContain(t, "copy output", output(r), "SLUICE-REJECTFILE")
	if rows := queryRows(t, p.Target, "SELECT id FROM prices"); len(rows) != 0 {
		t.Errorf("copy with an unwritable reject file wrote rows %v; want none", rows)
	}

	rejects := filepath.Join(t.TempDir(), "rejects.jsonl")
	r = testenv.MustRun(t, 0, args(p, "copy", "--on-bad-row=skip", "--reject-file", rejects)...)
	mustContain(t, "copy output", r.Stdout, "1 rows rejected", rejects)

	rows := queryRows(t, p.Target, "SELECT id, amount, note FROM prices ORDER BY id")
	if !equalRows(rows, [][]string{{"1", "1.50", "ok"}, {"3", "2.25", "ok too"}}) {
		t.Errorf("target prices holds %v, want rows 1 and 3", rows)
	}

	data, err := os.ReadFile(rejects)
	if err != nil {
		t.Fatalf("reject file: %v", err)
	}
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	if len(lines) != 1 {
		t.Fatalf("reject file has %d lines, want 1:\n%s", len(lines), data)
	}
	var rej struct {
		Table  string            `json:"table"`
		Key    map[string]string `json:"key"`
		Column string            `json:"column"`
		Reason string            `json:"reason"`
	}
	if err := json.Unmarshal([]byte(lines[0]), &rej); err != nil {
		t.Fatalf("reject line is not JSON: %v\n%s", err, lines[0])
	}
	if rej.Table != "prices" || rej.Key["id"] != "2" || len(rej.Key) != 1 || rej.Column != "amount" || !strings.Contains(rej.Reason, "NaN") {
		t.Errorf("reject line = %s; want table prices, key {id: 2}, column amount and a reason naming NaN", lines[0])
	}
	// verify names the rejected row as missing and says why, instead of
	// printing the reason as the value of the first column ("id=the target …")
	r = testenv.MustRun(t, 1, args(p, "verify")...)
	mustContain(t, "verify output", r.Stdout, `missing key "2"`, "source: (the target cannot hold this row's column amount")
}

// TestBadValuesRejected: values MySQL cannot store (±Infinity, infinite
// timestamps, dates before year 1 or after 9999) each stop the copy of
// their table with exit 5, naming table, key and column.
func TestBadValuesRejected(t *testing.T) {
	t.Parallel()
	p := testenv.NewPair(t)
	for _, c := range []struct {
		table, typ, value string
	}{
		{"posinf", "double precision", "'Infinity'"},
		{"neginf", "double precision", "'-Infinity'"},
		{"realnan", "real", "'NaN'"},
		{"tsinf", "timestamp", "'infinity'"},
		{"tzneginf", "timestamptz", "'-infinity'"},
		{"year0", "date", "'0001-01-01 BC'"},
		{"julian", "date", "'4713-01-01 BC'"},
		{"year10000", "date", "'10000-01-01'"},
		{"tsbc", "timestamp", "'0044-03-15 12:00:00 BC'"},
	} {
		p.PG(t, "CREATE TABLE "+c.table+" (id integer PRIMARY KEY, v "+c.typ+")")
		p.PG(t, "INSERT INTO "+c.table+" VALUES (1, NULL), (7, "+c.value+"), (9, NULL)")
		r := testenv.Run(t, nil, args(p, "copy", "--tables", c.table)...)
		if r.Exit != 5 {
			t.Errorf("%s %s: copy exit %d, want 5 (bad row)\n%s", c.typ, c.value, r.Exit, output(r))
			continue
		}
		mustContain(t, c.typ+" "+c.value+" copy output", output(r), c.table, "id=7", "column v")
	}
}

// TestSourcePrivilegeNamed: a source user that may not read a table got
// "SLUICE-INTERNAL unexpected error … report this message" (exit 10). It is
// the user's to grant: SLUICE-SOURCE-PRIVILEGE, exit 4, naming the table.
func TestSourcePrivilegeNamed(t *testing.T) {
	t.Parallel()
	p := testenv.NewPair(t)
	p.PG(t, `CREATE TABLE hidden (id int PRIMARY KEY, v text)`)
	p.PG(t, `INSERT INTO hidden VALUES (1, 'a')`)
	role := testenv.DBName(t) + "_nobody"
	p.PG(t, `DROP ROLE IF EXISTS `+role+`; CREATE ROLE `+role+` LOGIN`)
	t.Cleanup(func() { p.PG(t, `DROP OWNED BY `+role+`; DROP ROLE `+role) })
	u, err := url.Parse(p.SourceURL)
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.User(role)
	for _, cmd := range []string{"copy", "verify"} {
		r := testenv.MustRun(t, 4, cmd, "--source", u.String(), "--target", p.TargetURL, "--tables", "hidden")
		mustContain(t, cmd+" as a user who may not read hidden", output(r), "SLUICE-SOURCE-PRIVILEGE", "hidden", "GRANT")
	}
}

// TestMisspeltTargetDatabaseIsNotCreated: verify and abort only read or
// clean up the target; a misspelt database name made them create an empty
// database (and verify then said "run sluice copy first", abort "found no
// replication slot" with exit 0). verify says the database does not exist
// (exit 3); abort has nothing of sluice's to remove there; neither creates it.
func TestMisspeltTargetDatabaseIsNotCreated(t *testing.T) {
	t.Parallel()
	p := testenv.NewPair(t)
	p.PG(t, `CREATE TABLE items (id int PRIMARY KEY)`)
	typo := p.Name + "_typo"
	t.Cleanup(func() { p.My(t, "DROP DATABASE IF EXISTS `"+typo+"`") })
	target := strings.TrimSuffix(p.TargetURL, p.Name) + typo
	r := testenv.MustRun(t, 3, "verify", "--source", p.SourceURL, "--target", target, "--tables", "items")
	mustContain(t, "verify into a database that does not exist", output(r), "SLUICE-TARGET-NODB", typo)
	r = testenv.MustRun(t, 0, "abort", "--source", p.SourceURL, "--target", target, "--api", "http://127.0.0.1:1")
	mustContain(t, "abort on a database that does not exist", output(r), "does not exist")
	if n := queryOne(t, p.Target, `SELECT COUNT(*) FROM information_schema.schemata WHERE schema_name = ?`, typo); n != "0" {
		t.Errorf("verify or abort created the misspelt target database %s", typo)
	}
}

// TestRowLevelSecurityIsNotACopy: a source user under a row-level security
// policy read only the rows the policy let through, in the copy and in
// verify alike, which then called the half copy EQUAL. sluice reads with
// row_security off, so such a read fails, naming BYPASSRLS, and copies
// nothing it cannot copy whole.
func TestRowLevelSecurityIsNotACopy(t *testing.T) {
	t.Parallel()
	p := testenv.NewPair(t)
	role := testenv.DBName(t) + "_reader"
	p.PG(t, `DROP ROLE IF EXISTS `+role+`; CREATE ROLE `+role+` LOGIN`)
	t.Cleanup(func() { p.PG(t, `DROP OWNED BY `+role+`; DROP ROLE `+role) })
	p.PG(t, `CREATE TABLE sec (id int PRIMARY KEY, owner text)`)
	p.PG(t, `INSERT INTO sec SELECT g, CASE WHEN g % 2 = 0 THEN '`+role+`' ELSE 'other' END FROM generate_series(1, 10) g`)
	p.PG(t, `ALTER TABLE sec ENABLE ROW LEVEL SECURITY; CREATE POLICY mine ON sec FOR SELECT USING (owner = current_user); GRANT SELECT ON sec TO `+role)
	u, err := url.Parse(p.SourceURL)
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.User(role)
	r := testenv.MustRun(t, 4, "copy", "--source", u.String(), "--target", p.TargetURL, "--tables", "sec")
	mustContain(t, "copy as a user under a row-level security policy", output(r), "SLUICE-SOURCE-PRIVILEGE", "row-level security", "BYPASSRLS")
	r = testenv.MustRun(t, 4, "verify", "--source", u.String(), "--target", p.TargetURL, "--tables", "sec")
	mustContain(t, "verify as a user under a row-level security policy", output(r), "SLUICE-SOURCE-PRIVILEGE", "row-level security")
	// the owner reads every row: copied whole and equal
	testenv.MustRun(t, 0, "copy", "--source", p.SourceURL, "--target", p.TargetURL, "--tables", "sec")
	testenv.MustRun(t, 0, "verify", "--source", p.SourceURL, "--target", p.TargetURL, "--tables", "sec")
	if n := queryOne(t, p.Target, `SELECT COUNT(*) FROM sec`); n != "10" {
		t.Errorf("the owner's copy holds %s rows; want 10", n)
	}
}

// TestCopyAfterTheTargetTableWasDropped: the target table was dropped by
// hand after a copy; sluice's bookkeeping still recorded it as copied, so
// copy printed "table already copied" and exited 0 with no table there.
func TestCopyAfterTheTargetTableWasDropped(t *testing.T) {
	t.Parallel()
	p := testenv.NewPair(t)
	p.PG(t, `CREATE TABLE items (id int PRIMARY KEY)`)
	p.PG(t, `INSERT INTO items SELECT generate_series(1, 10)`)
	testenv.MustRun(t, 0, args(p, "copy", "--tables", "items")...)
	p.My(t, "DROP TABLE items")
	r := testenv.MustRun(t, 4, args(p, "copy", "--tables", "items")...)
	mustContain(t, "copy of a table dropped on the target", output(r), "SLUICE-COPY-TABLEGONE", "items", "sluice abort")
	testenv.MustRun(t, 0, args(p, "abort", "--api", "http://127.0.0.1:1")...)
	testenv.MustRun(t, 0, args(p, "copy", "--tables", "items")...)
	if n := queryOne(t, p.Target, `SELECT COUNT(*) FROM items`); n != "10" {
		t.Errorf("the copy after abort holds %s rows; want 10", n)
	}
}
