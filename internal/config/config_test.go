package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func writeFile(t *testing.T, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "sluice.yaml")
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

const realisticYAML = `# Migrate the shop database from PostgreSQL to MariaDB.
source: postgres://migrator:pg%40secret@pg.internal:5432/shop?sslmode=require
target: mariadb://migrator:maria-secret@[::1]:3306/shop

tables:
  public.customers:
    rename: clients
    where: "deleted_at IS NULL"
    columns:
      email:
        rename: email_address
      password_hash:
        drop: true
      balance:
        type: DECIMAL(12,2)
    computed:
      - name: full_name
        expr: "first_name || ' ' || last_name"
        type: VARCHAR(255)
      - name: migrated_at
        expr: now()
  orders:
    where: created_at >= '2020-01-01'
    columns:
      notes:
        drop: true
      total:
        rename: total_amount
        type: DECIMAL(14,2)

copy:
  parallel: 8
  chunk_rows: 50000
  max_rows_per_sec: 2500.5
  on_bad_row: skip
  reject_file: /var/lib/sluice/rejects.jsonl

http:
  listen: 127.0.0.1:8080
  api_token: tok-123
  allow_origins:
    - https://admin.example.com
`

func TestLoadFileRealistic(t *testing.T) {
	path := writeFile(t, realisticYAML)
	f, err := LoadFile(path)
	if err != nil {
		t.Fatalf("LoadFile: %v", err)
	}
	if f.Path() != path {
		t.Errorf("Path() = %q, want %q", f.Path(), path)
	}

	cust, ok := f.Tables["public.customers"]
	if !ok {
		t.Fatalf("tables: %v, want public.customers", f.Tables)
	}
	if cust.Rename != "clients" || cust.Where != "deleted_at IS NULL" {
		t.Errorf("customers rename/where = %q/%q", cust.Rename, cust.Where)
	}
	if got := cust.Columns["email"]; got != (ColumnMapping{Rename: "email_address"}) {
		t.Errorf("email mapping = %+v", got)
	}
	if got := cust.Columns["password_hash"]; got != (ColumnMapping{Drop: true}) {
		t.Errorf("password_hash mapping = %+v", got)
	}
	if got := cust.Columns["balance"]; got != (ColumnMapping{Type: "DECIMAL(12,2)"}) {
		t.Errorf("balance mapping = %+v", got)
	}
	if len(cust.Computed) != 2 ||
		cust.Computed[0] != (ComputedColumn{Name: "full_name", Expr: "first_name || ' ' || last_name", Type: "VARCHAR(255)"}) ||
		cust.Computed[1] != (ComputedColumn{Name: "migrated_at", Expr: "now()"}) {
		t.Errorf("computed = %+v", cust.Computed)
	}
	orders := f.Tables["orders"]
	if orders.Where != "created_at >= '2020-01-01'" || orders.Rename != "" {
		t.Errorf("orders = %+v", orders)
	}
	if got := orders.Columns["total"]; got != (ColumnMapping{Rename: "total_amount", Type: "DECIMAL(14,2)"}) {
		t.Errorf("total mapping = %+v", got)
	}

	wantCopy := CopySettings{Parallel: 8, ChunkRows: 50000, MaxRowsPerSec: 2500.5, OnBadRow: "skip", RejectFile: "/var/lib/sluice/rejects.jsonl"}
	if f.Copy != wantCopy {
		t.Errorf("copy = %+v, want %+v", f.Copy, wantCopy)
	}
	if f.HTTP.Listen != "127.0.0.1:8080" || f.HTTP.APIToken != "tok-123" ||
		len(f.HTTP.AllowOrigins) != 1 || f.HTTP.AllowOrigins[0] != "https://admin.example.com" {
		t.Errorf("http = %+v", f.HTTP)
	}

	src, tgt, err := Resolve("", "", f, func(string) string { return "" })
	if err != nil {
		t.Fatalf("Resolve: %v", err)
	}
	if src.Password != "pg@secret" || src.Host != "pg.internal" || src.Params.Get("sslmode") != "require" {
		t.Errorf("source = %s (pw-ok=%v)", src, src.Password == "pg@secret")
	}
	if tgt.Flavor != FlavorMariaDB || tgt.Host != "::1" || tgt.Password != "maria-secret" || tgt.Database != "shop" {
		t.Errorf("target = %s", tgt)
	}
}

func TestLoadFileEmpty(t *testing.T) {
	f, err := LoadFile(writeFile(t, ""))
	if err != nil {
		t.Fatalf("empty file: %v", err)
	}
	if f.Source != "" || len(f.Tables) != 0 {
		t.Errorf("empty file decoded as %+v", f)
	}
}

func TestLoadFileNotFound(t *testing.T) {
	path := filepath.Join(t.TempDir(), "nope.yaml")
	_, err := LoadFile(path)
	if err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "does not exist") {
		t.Fatalf("err = %v, want it to name %s and say it does not exist", err, path)
	}
}

func TestLoadFileUnknownKey(t *testing.T) {
	tests := []struct {
		name, yaml, key, line string
	}{
		{"top level", "source: postgres://h/db\ntraget: mysql://h/db\n", `"traget"`, "line 2"},
		{"column", "tables:\n  t:\n    columns:\n      c:\n        renam: x\n", `"renam"`, "line 5"},
		{"copy", "copy:\n  paralel: 4\n", `"paralel"`, "line 2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := writeFile(t, tt.yaml)
			_, err := LoadFile(path)
			if err == nil {
				t.Fatal("want an error for an unknown key")
			}
			for _, want := range []string{path, "unknown key " + tt.key, tt.line} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("err = %q, want it to contain %q", err, want)
				}
			}
			if strings.Contains(err.Error(), "config.") {
				t.Errorf("err = %q exposes Go type names", err)
			}
		})
	}
}

func TestLoadFileSyntaxError(t *testing.T) {
	path := writeFile(t, "tables:\n  t: [unclosed\n")
	_, err := LoadFile(path)
	if err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "line") {
		t.Fatalf("err = %v, want the path and a line number", err)
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want []string // substrings of the error
	}{
		{"rename and drop", "tables:\n  orders:\n    columns:\n      note:\n        rename: n\n        drop: true\n",
			[]string{"tables.orders.columns.note", "drop and rename cannot both be set"}},
		{"drop and type", "tables:\n  public.orders:\n    columns:\n      note:\n        drop: true\n        type: TEXT\n",
			[]string{"tables.public.orders.columns.note", "drop and type cannot both be set"}},
		{"computed type with a comment", "tables:\n  orders:\n    computed:\n      - name: x\n        expr: 1\n        type: INT -- x\n",
			[]string{"tables.orders.computed[0] (x)", "not a plain column type"}},
		{"type with an open quote", "tables:\n  orders:\n    columns:\n      note:\n        type: \"ENUM('a)\"\n",
			[]string{"tables.orders.columns.note", "not a plain column type"}},
		{"type with a second statement", "tables:\n  orders:\n    columns:\n      note:\n        type: 'TEXT; DROP TABLE users'\n",
			[]string{"tables.orders.columns.note", "not a plain column type"}},
		{"type that adds a column", "tables:\n  orders:\n    columns:\n      note:\n        type: 'INT, p INT'\n",
			[]string{"tables.orders.columns.note", "not a plain column type"}},
		{"type with an unclosed double quote", "tables:\n  orders:\n    columns:\n      note:\n        type: 'VARCHAR(9) COMMENT \"a'\n",
			[]string{"tables.orders.columns.note", "not a plain column type"}},
		{"type with an unclosed parenthesis", "tables:\n  orders:\n    columns:\n      note:\n        type: 'DECIMAL(12,2'\n",
			[]string{"tables.orders.columns.note", "not a plain column type"}},
		{"computed empty name", "tables:\n  orders:\n    computed:\n      - expr: now()\n",
			[]string{"tables.orders.computed[0]", "name is empty"}},
		{"computed empty expr", "tables:\n  orders:\n    computed:\n      - name: x\n",
			[]string{"tables.orders.computed[0] (x)", "expr is empty"}},
		{"computed collides with renamed column", "tables:\n  orders:\n    columns:\n      total:\n        rename: amount\n    computed:\n      - name: amount\n        expr: total * 2\n",
			[]string{"tables.orders.computed[0] (amount)", `target column "amount" is also produced by tables.orders.columns.total`}},
		{"computed collides with typed column", "tables:\n  orders:\n    columns:\n      total:\n        type: INT\n    computed:\n      - name: Total\n        expr: 1\n",
			[]string{`target column "Total" is also produced by tables.orders.columns.total`}},
		{"computed duplicates", "tables:\n  orders:\n    computed:\n      - {name: a, expr: '1'}\n      - {name: a, expr: '2'}\n",
			[]string{"tables.orders.computed[1] (a)", "also produced by tables.orders.computed[0]"}},
		{"two columns renamed alike", "tables:\n  t:\n    columns:\n      a: {rename: c}\n      b: {rename: c}\n",
			[]string{"tables.t.columns.b", `target column "c" is also produced by tables.t.columns.a`}},
		{"two tables onto one", "tables:\n  a: {rename: c}\n  b: {rename: c}\n",
			[]string{"tables.b", `target table "c" is also the target of tables.a`}},
		{"bad table key", "tables:\n  a.b.c: {}\n", []string{"tables.a.b.c", `"name" or "schema.name"`}},
		{"on_bad_row", "copy:\n  on_bad_row: ignore\n", []string{"copy.on_bad_row", `"ignore"`, `"fail"`, `"skip"`}},
		{"negative parallel", "copy:\n  parallel: -1\n", []string{"copy.parallel", "negative"}},
		{"negative chunk_rows", "copy:\n  chunk_rows: -5\n", []string{"copy.chunk_rows", "negative"}},
		{"negative max_rows_per_sec", "copy:\n  max_rows_per_sec: -0.5\n", []string{"copy.max_rows_per_sec", "-0.5"}},
		{"nan max_rows_per_sec", "copy:\n  max_rows_per_sec: .nan\n", []string{"copy.max_rows_per_sec", "NaN"}},
		{"several at once", "copy:\n  parallel: -1\n  on_bad_row: x\n", []string{"copy.parallel", "copy.on_bad_row"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := writeFile(t, tt.yaml)
			_, err := LoadFile(path)
			if err == nil {
				t.Fatal("want a validation error")
			}
			for _, want := range append([]string{path}, tt.want...) {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("err = %q\nwant it to contain %q", err, want)
				}
			}
		})
	}
}

func TestValidateAccepts(t *testing.T) {
	// Replacing a dropped column with a computed one of the same name is legitimate.
	yaml := "tables:\n  t:\n    columns:\n      total: {drop: true}\n      state: {type: \"ENUM('on;off', 'it''s -- fine')\"}\n    computed:\n      - {name: total, expr: 'price * qty'}\ncopy:\n  on_bad_row: fail\n"
	if _, err := LoadFile(writeFile(t, yaml)); err != nil {
		t.Fatalf("LoadFile: %v", err)
	}
}

func TestResolvePrecedence(t *testing.T) {
	const (
		flagSrc = "postgres://flag-host/db"
		fileSrc = "postgres://file-host/db"
		envSrc  = "postgres://env-host/db"
		flagTgt = "mysql://flag-host/db"
		fileTgt = "mysql://file-host/db"
		envTgt  = "mysql://env-host/db"
	)
	tests := []struct {
		name                 string
		flagS, fileS, envS   string
		flagT, fileT, envT   string
		wantSHost, wantTHost string
	}{
		{"all set: flags win", flagSrc, fileSrc, envSrc, flagTgt, fileTgt, envTgt, "flag-host", "flag-host"},
		{"no flags: file wins", "", fileSrc, envSrc, "", fileTgt, envTgt, "file-host", "file-host"},
		{"env only", "", "", envSrc, "", "", envTgt, "env-host", "env-host"},
		{"source flag, target file", flagSrc, fileSrc, envSrc, "", fileTgt, envTgt, "flag-host", "file-host"},
		{"source env, target flag", "", "", envSrc, flagTgt, fileTgt, envTgt, "env-host", "flag-host"},
		{"source file, target env", "", fileSrc, envSrc, "", "", envTgt, "file-host", "env-host"},
		{"source flag, target env", flagSrc, "", "", "", "", envTgt, "flag-host", "env-host"},
		{"source file beats env, target flag", "", fileSrc, envSrc, flagTgt, "", envTgt, "file-host", "flag-host"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := map[string]string{EnvSource: tt.envS, EnvTarget: tt.envT}
			file := &File{Source: tt.fileS, Target: tt.fileT}
			src, tgt, err := Resolve(tt.flagS, tt.flagT, file, func(k string) string { return env[k] })
			if err != nil {
				t.Fatalf("Resolve: %v", err)
			}
			if src.Host != tt.wantSHost || tgt.Host != tt.wantTHost {
				t.Errorf("source host %q, target host %q; want %q, %q", src.Host, tgt.Host, tt.wantSHost, tt.wantTHost)
			}
		})
	}
}

func TestResolveNilFile(t *testing.T) {
	env := map[string]string{EnvSource: "postgres://e/db", EnvTarget: "mariadb://e/db"}
	src, tgt, err := Resolve("", "", nil, func(k string) string { return env[k] })
	if err != nil || src.Host != "e" || tgt.Flavor != FlavorMariaDB {
		t.Fatalf("Resolve = %v, %v, %v", src, tgt, err)
	}
}

func TestResolveErrorsNameOrigin(t *testing.T) {
	path := writeFile(t, "source: postgres://u:"+secret+"@h\ntarget: mysql://h/db\n")
	file, err := LoadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name               string
		flagS, flagT       string
		env                map[string]string
		want               []string
		wantSetting        string
		wantNoSrc, wantNoT bool
	}{
		{name: "flag", flagS: "mysql://u:" + secret + "@h/db", want: []string{`--source: "mysql://u:xxxxx@h/db" is not a PostgreSQL URL`}, wantSetting: "--source"},
		{name: "file", want: []string{"source in " + path + `: "postgres://u:xxxxx@h" has no database name`}, wantSetting: "source in " + path},
		{name: "env target", flagS: "postgres://h/db", env: map[string]string{EnvTarget: "mysql://u:" + secret + "@h:0/db"},
			want: []string{`SLUICE_TARGET: "mysql://u:xxxxx@h:0/db" has an invalid port`}, wantSetting: "SLUICE_TARGET"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := file
			if tt.env != nil {
				f = &File{}
			}
			_, _, err := Resolve(tt.flagS, tt.flagT, f, func(k string) string { return tt.env[k] })
			if err == nil {
				t.Fatal("want an error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("err = %q\nwant it to contain %q", err, w)
				}
			}
			var ue *URLError
			if !errors.As(err, &ue) || ue.Setting != tt.wantSetting {
				t.Errorf("err = %v, want a *URLError with Setting %q", err, tt.wantSetting)
			}
			assertNoSecret(t, "Resolve error", err.Error())
		})
	}
}

func TestResolveMissing(t *testing.T) {
	none := func(string) string { return "" }

	_, _, err := Resolve("", "mysql://h/db", nil, none)
	if !errors.Is(err, ErrNoSource) || errors.Is(err, ErrNoTarget) {
		t.Fatalf("err = %v, want only ErrNoSource", err)
	}
	want := "no source database: give --source postgres://…, set source: in the config file, or SLUICE_SOURCE"
	if err.Error() != want {
		t.Errorf("err = %q\nwant %q", err, want)
	}

	_, _, err = Resolve("postgres://h/db", "  ", &File{}, none)
	if !errors.Is(err, ErrNoTarget) || errors.Is(err, ErrNoSource) {
		t.Fatalf("err = %v, want only ErrNoTarget", err)
	}

	// Both problems are reported together.
	_, _, err = Resolve("", "postgres://h/db", nil, none)
	var ue *URLError
	if !errors.Is(err, ErrNoSource) || !errors.As(err, &ue) || ue.Setting != "--target" {
		t.Errorf("err = %v, want ErrNoSource and a --target URLError", err)
	}
}

// The type check must let every real column type through, commas and
// quotes inside parentheses or strings included, and stop what would put
// a second column or statement into the DDL.
func TestPlainSQLType(t *testing.T) {
	for _, ok := range []string{"DECIMAL(12,2)", "DECIMAL(10,2) UNSIGNED", "ENUM('a','b')", "SET('x','y,z')", "ENUM(\"a)\",\"b\")",
		"VARCHAR(20) CHARACTER SET latin1", "DATETIME(3)", "VARCHAR(9) DEFAULT 'a,b'", "INT COMMENT \"x, y\"", "TEXT COMMENT 'it''s'"} {
		if !plainSQLType(ok) {
			t.Errorf("plainSQLType(%q) = false; want a real column type accepted", ok)
		}
	}
	for _, bad := range []string{"INT, p INT", "DECIMAL(12,2", "INT)", "TEXT; DROP TABLE users", "INT -- x", "VARCHAR(9) COMMENT \"a", "INT /* x */", "`x` INT"} {
		if plainSQLType(bad) {
			t.Errorf("plainSQLType(%q) = true; want it refused", bad)
		}
	}
}
