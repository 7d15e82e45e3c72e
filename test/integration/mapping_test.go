package integration

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sluice-db/sluice/internal/testenv"
)

const mappingConfig = `
tables:
  customers:
    rename: clients
    where: "active"
    columns:
      name:
        rename: full_name
      secret:
        drop: true
      age:
        type: BIGINT
      email:
        type: VARCHAR(200)
    computed:
      - name: email_lower
        expr: lower(email)
      - name: total
        expr: price * qty
        type: DECIMAL(12,2)
`

// TestConfigMapping renames a table and a column, drops a column, retypes two
// columns, adds computed columns and filters rows, all from sluice.yaml.
func TestConfigMapping(t *testing.T) {
	t.Parallel()
	p := testenv.NewPair(t)
	p.PG(t, `CREATE TABLE customers (
		id integer PRIMARY KEY,
		email varchar(100) NOT NULL,
		name text,
		secret text,
		age integer,
		active boolean NOT NULL,
		price numeric(8,2),
		qty integer)`)
	p.PG(t, `CREATE INDEX customers_name_idx ON customers (name)`)
	p.PG(t, `INSERT INTO customers VALUES
		(1, 'Alice@Example.COM', 'Alice', 'pw1', 30, true, 2.50, 4),
		(2, 'bob@example.com', 'Bob', 'pw2', 40, false, 1.00, 1),
		(3, 'CAROL@EXAMPLE.COM', 'Carol', 'pw3', NULL, true, 19.99, 3),
		(4, 'dave@example.com', 'Dave', 'pw4', 50, false, NULL, NULL),
		(5, 'Eve@Example.com', NULL, NULL, 2147483647, true, NULL, 2)`)
	// a table the config does not mention travels unchanged next to it
	p.PG(t, `CREATE TABLE notes (id integer PRIMARY KEY, body text)`)
	p.PG(t, `INSERT INTO notes VALUES (1, 'untouched')`)

	cfg := filepath.Join(t.TempDir(), "sluice.yaml")
	if err := os.WriteFile(cfg, []byte(mappingConfig), 0o600); err != nil {
		t.Fatal(err)
	}

	plan := testenv.MustRun(t, 0, args(p, "plan", "--config", cfg)...).Stdout
	mustContain(t, "plan output", plan,
		"customers → clients",
		"CREATE TABLE `clients`",
		"customers.name: renamed to clients.full_name",
		"customers.secret: dropped by the mapping",
		"customers.age: type set to BIGINT",
		"customers.email: type set to VARCHAR(200)",
		"customers.email_lower: computed on the source as lower(email)",
		"customers.total: computed on the source as price * qty (DECIMAL(12,2))",
		"customers: only rows WHERE active are copied",
		"notes → notes",
	)
	if strings.Contains(plan, "`secret`") {
		t.Errorf("plan creates the dropped column secret:\n%s", plan)
	}

	testenv.MustRun(t, 0, args(p, "copy", "--config", cfg)...)

	tables := queryRows(t, p.Target, `SELECT table_name FROM information_schema.tables
		WHERE table_schema = DATABASE() AND table_name NOT LIKE '\_sluice%' ORDER BY table_name`)
	if !equalRows(tables, [][]string{{"clients"}, {"notes"}}) {
		t.Errorf("target tables %v, want clients and notes (customers renamed)", tables)
	}

	cols := queryRows(t, p.Target, `SELECT column_name, column_type FROM information_schema.columns
		WHERE table_schema = DATABASE() AND table_name = 'clients' ORDER BY ordinal_position`)
	types := map[string]string{}
	var names []string
	for _, c := range cols {
		names = append(names, c[0])
		types[c[0]] = strings.ToLower(c[1])
	}
	wantNames := []string{"id", "email", "full_name", "age", "active", "price", "qty", "email_lower", "total"}
	if strings.Join(names, ",") != strings.Join(wantNames, ",") {
		t.Errorf("clients has columns %v, want %v (name renamed, secret dropped, two computed)", names, wantNames)
	}
	for col, typ := range map[string]string{"age": "bigint", "email": "varchar(200)", "total": "decimal(12,2)"} {
		if !strings.HasPrefix(types[col], typ) {
			t.Errorf("clients.%s has type %q, want %s as the config says", col, types[col], typ)
		}
	}
	if n := queryOne(t, p.Target, `SELECT COUNT(*) FROM information_schema.statistics
		WHERE table_schema = DATABASE() AND table_name = 'clients' AND column_name = 'full_name'`); n != "1" {
		t.Errorf("the index on the renamed column is missing on the target (%s index columns on full_name)", n)
	}

	rows := queryRows(t, p.Target, "SELECT id, email, full_name, age, active, price, qty, email_lower, total FROM clients ORDER BY id")
	want := [][]string{
		{"1", "Alice@Example.COM", "Alice", "30", "1", "2.50", "4", "alice@example.com", "10.00"},
		{"3", "CAROL@EXAMPLE.COM", "Carol", null, "1", "19.99", "3", "carol@example.com", "59.97"},
		{"5", "Eve@Example.com", null, "2147483647", "1", null, "2", "eve@example.com", null},
	}
	if !equalRows(rows, want) {
		t.Errorf("clients holds\n%v\nwant (inactive rows 2 and 4 filtered out)\n%v", rows, want)
	}
	if got := queryOne(t, p.Target, "SELECT body FROM notes WHERE id = 1"); got != "untouched" {
		t.Errorf("notes.body = %q, want untouched", got)
	}

	r := testenv.MustRun(t, 0, args(p, "verify", "--config", cfg)...)
	mustContain(t, "verify output", r.Stdout,
		"customers → clients: 3 rows compared, equal",
		"notes → notes: 1 rows compared, equal",
		"verify: EQUAL")

	// verify with the mapping really compares the mapped columns: a wrong
	// computed value on the target is a difference
	p.My(t, "UPDATE clients SET total = 10.01 WHERE id = 1")
	r = testenv.MustRun(t, 1, args(p, "verify", "--config", cfg)...)
	mustContain(t, "verify output", r.Stdout, "customers → clients: 3 rows compared, DIFFERENT: 1 changed")
}

const keyMappingConfig = `
tables:
  parent:
    rename: owners
    columns:
      pid: {rename: owner_id}
  child:
    rename: pets
    columns:
      cid: {rename: id}
      pid: {rename: owner_id}
`

// TestConfigRenamedKeys renames key columns and tables that a foreign key
// joins: the foreign key must reference the new names, and verify --repair
// must find rows by the renamed key.
func TestConfigRenamedKeys(t *testing.T) {
	t.Parallel()
	p := testenv.NewPair(t)
	p.PG(t, `CREATE TABLE parent (pid integer PRIMARY KEY, name text NOT NULL)`)
	p.PG(t, `CREATE TABLE child (cid integer PRIMARY KEY, pid integer NOT NULL REFERENCES parent (pid), name text)`)
	p.PG(t, `INSERT INTO parent VALUES (1, 'ann'), (2, 'ben')`)
	p.PG(t, `INSERT INTO child VALUES (10, 1, 'rex'), (11, 1, 'tom'), (12, 2, 'kit')`)
	cfg := filepath.Join(t.TempDir(), "sluice.yaml")
	if err := os.WriteFile(cfg, []byte(keyMappingConfig), 0o600); err != nil {
		t.Fatal(err)
	}

	testenv.MustRun(t, 0, args(p, "copy", "--config", cfg)...)

	fks := queryRows(t, p.Target, `SELECT table_name, column_name, referenced_table_name, referenced_column_name
		FROM information_schema.key_column_usage
		WHERE table_schema = DATABASE() AND referenced_table_name IS NOT NULL`)
	if !equalRows(fks, [][]string{{"pets", "owner_id", "owners", "owner_id"}}) {
		t.Errorf("target foreign keys (table, column, referenced table, column) = %v, want pets.owner_id → owners.owner_id", fks)
	}
	rows := queryRows(t, p.Target, "SELECT id, owner_id, name FROM pets ORDER BY id")
	if !equalRows(rows, [][]string{{"10", "1", "rex"}, {"11", "1", "tom"}, {"12", "2", "kit"}}) {
		t.Errorf("pets holds %v", rows)
	}

	p.My(t, "DELETE FROM pets WHERE id = 11")
	p.My(t, "UPDATE owners SET name = 'BEN' WHERE owner_id = 2")
	r := testenv.MustRun(t, 1, args(p, "verify", "--config", cfg)...)
	mustContain(t, "verify output", r.Stdout, `missing key "11"`, `changed key "2"`)
	testenv.MustRun(t, 0, args(p, "verify", "--config", cfg, "--repair")...)
	rows = queryRows(t, p.Target, "SELECT o.name, p.id, p.name FROM owners o JOIN pets p USING (owner_id) ORDER BY p.id")
	if !equalRows(rows, [][]string{{"ann", "10", "rex"}, {"ann", "11", "tom"}, {"ben", "12", "kit"}}) {
		t.Errorf("after verify --repair the target holds %v", rows)
	}
}

const narrowingConfig = `
tables:
  readings:
    columns:
      counter:
        type: DOUBLE
      amount:
        type: DOUBLE
      label:
        type: CHAR(8)
      small:
        type: FLOAT
`

// TestNarrowingTypeIsVerifiedAtTheSourcesPrecision: MariaDB rounds a bigint
// into a DOUBLE and trims a text's trailing spaces into a CHAR without a
// warning, so the copy succeeds; verify must still see the values that
// changed (it compared at the target's precision and said EQUAL).
func TestNarrowingTypeIsVerifiedAtTheSourcesPrecision(t *testing.T) {
	t.Parallel()
	p := testenv.NewPair(t)
	p.PG(t, `CREATE TABLE readings (id integer PRIMARY KEY, counter bigint, amount numeric(30,10), label text, small integer)`)
	// small: 1234567 is exact in a FLOAT, which MariaDB prints as 1234570;
	// 16777217 is not (2^24 + 1).
	p.PG(t, `INSERT INTO readings VALUES
		(1, 42, 19.99, 'plain', 1234567),
		(2, 9007199254740993, 0.0000001, 'ok', 5),
		(3, 7, 0.1000000000, 'spaced  ', 16777216),
		(4, 100000000000000000, 12345678901234567890.5, 'x', 16777217)`)
	cfg := filepath.Join(t.TempDir(), "sluice.yaml")
	if err := os.WriteFile(cfg, []byte(narrowingConfig), 0o600); err != nil {
		t.Fatal(err)
	}
	plan := testenv.MustRun(t, 0, args(p, "plan", "--config", cfg)...).Stdout
	mustContain(t, "plan output", plan,
		"readings.counter: type set to DOUBLE by the mapping (was bigint); the target may round or trim values without a warning",
		"readings.label: type set to CHAR(8) by the mapping (was text); the target may round or trim values without a warning")

	testenv.MustRun(t, 0, args(p, "copy", "--config", cfg)...)
	r := testenv.MustRun(t, 1, args(p, "verify", "--config", cfg)...)
	// Rows 1 (19.99, 42, plain, 1234567) and the exact 1e17, 1e-7 and 2^24
	// survive; 2 loses its counter's last digit, 3 its label's spaces, 4 its
	// amount's digits and its small's last unit.
	mustContain(t, "verify output", r.Stdout, "readings → readings: 4 rows compared, DIFFERENT: 3 changed")
}

const userTypedBytesConfig = `
tables:
  files:
    columns:
      data:
        type: MEDIUMBLOB
      seen:
        type: TINYINT
`

// TestUserTypeKeepsTheValue: a bytea column given another binary type by the
// mapping still arrives as its bytes (it arrived as the text of its hex
// form, which verify, reading the same text, called equal), and a boolean
// given TINYINT as 1 and 0.
func TestUserTypeKeepsTheValue(t *testing.T) {
	t.Parallel()
	p := testenv.NewPair(t)
	p.PG(t, `CREATE TABLE files (id integer PRIMARY KEY, data bytea, seen boolean)`)
	p.PG(t, `INSERT INTO files VALUES (1, '\x0102ff', true), (2, '', false), (3, NULL, NULL)`)
	cfg := filepath.Join(t.TempDir(), "sluice.yaml")
	if err := os.WriteFile(cfg, []byte(userTypedBytesConfig), 0o600); err != nil {
		t.Fatal(err)
	}
	testenv.MustRun(t, 0, args(p, "copy", "--config", cfg)...)
	rows := queryRows(t, p.Target, "SELECT id, COALESCE(HEX(data), 'NULL'), COALESCE(seen, 'NULL') FROM files ORDER BY id")
	if !equalRows(rows, [][]string{{"1", "0102FF", "1"}, {"2", "", "0"}, {"3", "NULL", "NULL"}}) {
		t.Errorf("target holds %v; want the bytes 0102FF, empty and NULL, and seen 1, 0, NULL", rows)
	}
	testenv.MustRun(t, 0, args(p, "verify", "--config", cfg)...)
}

// TestRenameOntoAnotherColumn: a mapping that renames a column onto the
// name another source column keeps failed late, at CREATE TABLE, as a DDL
// error with a hint about types. The plan names both columns (exit 4).
func TestRenameOntoAnotherColumn(t *testing.T) {
	t.Parallel()
	p := testenv.NewPair(t)
	p.PG(t, `CREATE TABLE items (id int PRIMARY KEY, name text, price int)`)
	cfg := filepath.Join(t.TempDir(), "sluice.yaml")
	if err := os.WriteFile(cfg, []byte("tables:\n  items:\n    columns:\n      name: {rename: Price}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	r := testenv.MustRun(t, 4, args(p, "plan", "--config", cfg)...)
	mustContain(t, "plan output", output(r), "SLUICE-CONFIG-COLUMN", "Price", "name", "price")
}
