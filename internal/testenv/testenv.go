// Package testenv gives integration tests real, private databases on the
// servers `make test` starts (scripts/services.sh), and runs the sluice
// binary the way a user does. Tests skip with -short.
package testenv

import (
	"bytes"
	"context"
	"crypto/sha1"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	_ "github.com/go-sql-driver/mysql" // the target driver
	"github.com/jackc/pgx/v5"
)

// Server addresses; override with SLUICE_TEST_PG / SLUICE_TEST_MYSQL
// (URLs without a database name).
func pgServer() string    { return envOr("SLUICE_TEST_PG", "postgres://postgres@127.0.0.1:5432") }
func mysqlServer() string { return envOr("SLUICE_TEST_MYSQL", "mysql://root@127.0.0.1:3306") }

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

// DBName is a database name unique to the test: the test binary (package)
// and the test's name, shortened with a hash when too long for MySQL.
func DBName(t testing.TB) string {
	pkg := strings.TrimSuffix(filepath.Base(os.Args[0]), ".test")
	name := unsafe.ReplaceAllString(strings.ToLower("sluice_"+pkg+"_"+t.Name()), "_")
	if len(name) > 60 {
		sum := sha1.Sum([]byte(name))
		name = name[:50] + "_" + hex.EncodeToString(sum[:4])
	}
	return name
}

// Pair is a fresh source database and a fresh target database.
type Pair struct {
	Name      string
	SourceURL string // postgres://…/name
	TargetURL string // mysql://…/name
	Source    *pgx.Conn
	Target    *sql.DB
}

var unsafe = regexp.MustCompile(`[^a-z0-9_]`)

// NewPair creates empty databases named after the test on both servers and
// drops them when the test ends (unless it failed, so they can be looked at).
func NewPair(t testing.TB) *Pair {
	t.Helper()
	if testing.Short() {
		t.Skip("integration test: needs PostgreSQL and MariaDB (run make test)")
	}
	name := DBName(t)
	p := &Pair{Name: name, SourceURL: pgServer() + "/" + name, TargetURL: mysqlServer() + "/" + name}
	ctx := context.Background()
	admin, err := pgx.Connect(ctx, pgServer()+"/postgres")
	if err != nil {
		t.Fatalf("connect to PostgreSQL (is it running? make services): %v", err)
	}
	defer admin.Close(ctx)
	mustPG(t, admin, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)")
	mustPG(t, admin, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize())
	p.Source, err = pgx.Connect(ctx, p.SourceURL)
	if err != nil {
		t.Fatalf("connect to %s: %v", p.SourceURL, err)
	}
	p.Target = MySQL(t, "")
	mustMy(t, p.Target, "DROP DATABASE IF EXISTS `"+name+"`")
	mustMy(t, p.Target, "CREATE DATABASE `"+name+"` CHARACTER SET utf8mb4")
	mustMy(t, p.Target, "USE `"+name+"`")
	p.Target.Close()
	p.Target = MySQL(t, name)
	t.Cleanup(func() {
		p.Source.Close(context.Background())
		p.Target.Close()
		if t.Failed() {
			t.Logf("databases %s kept for inspection", name)
			return
		}
		if admin, err := pgx.Connect(context.Background(), pgServer()+"/postgres"); err == nil {
			admin.Exec(context.Background(), "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)")
			admin.Close(context.Background())
		}
		if db, err := sql.Open("mysql", dsn("")); err == nil {
			db.Exec("DROP DATABASE IF EXISTS `" + name + "`")
			db.Close()
		}
	})
	return p
}

// dsn turns the MySQL server URL into a go-sql-driver DSN for database db,
// with the session pinned like sluice's (UTC, utf8mb4).
func dsn(db string) string {
	u := strings.TrimPrefix(strings.TrimPrefix(mysqlServer(), "mysql://"), "mariadb://")
	userinfo, host := "root", u
	if i := strings.LastIndexByte(u, '@'); i >= 0 {
		userinfo, host = u[:i], u[i+1:]
	}
	return fmt.Sprintf("%s@tcp(%s)/%s?charset=utf8mb4&collation=utf8mb4_bin&time_zone=%%27%%2B00%%3A00%%27&multiStatements=true", userinfo, host, db)
}

// MySQL opens the target server (database db, or none).
func MySQL(t testing.TB, db string) *sql.DB {
	t.Helper()
	conn, err := sql.Open("mysql", dsn(db))
	if err != nil {
		t.Fatal(err)
	}
	if err := conn.Ping(); err != nil {
		t.Fatalf("connect to MariaDB (is it running? make services): %v", err)
	}
	conn.SetMaxOpenConns(1) // keeps USE and session settings on one connection
	return conn
}

func mustPG(t testing.TB, c *pgx.Conn, q string, args ...any) {
	t.Helper()
	if _, err := c.Exec(context.Background(), q, args...); err != nil {
		t.Fatalf("PostgreSQL: %s: %v", q, err)
	}
}

func mustMy(t testing.TB, db *sql.DB, q string, args ...any) {
	t.Helper()
	if _, err := db.Exec(q, args...); err != nil {
		t.Fatalf("MariaDB: %s: %v", q, err)
	}
}

// PG runs SQL on the source database.
func (p *Pair) PG(t testing.TB, q string, args ...any) { t.Helper(); mustPG(t, p.Source, q, args...) }

// My runs SQL on the target database.
func (p *Pair) My(t testing.TB, q string, args ...any) { t.Helper(); mustMy(t, p.Target, q, args...) }

// Args returns --source and --target for this pair.
func (p *Pair) Args() []string { return []string{"--source", p.SourceURL, "--target", p.TargetURL} }

// Result of running the binary.
type Result struct {
	Stdout, Stderr string
	Exit           int
}

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// Binary builds cmd/sluice once per test process and returns its path
// (with -race when SLUICE_TEST_RACE is set).
func Binary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		_, file, _, _ := runtime.Caller(0)
		root := filepath.Join(filepath.Dir(file), "..", "..")
		dir, err := os.MkdirTemp("", "sluice-bin")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "sluice")
		args := []string{"build", "-o", binPath}
		if os.Getenv("SLUICE_TEST_RACE") != "" {
			// the race detector in the binary: a race prints a report and
			// makes sluice exit 66, which the tests see
			args = append(args, "-race")
		}
		cmd := exec.Command("go", append(args, "./cmd/sluice")...)
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// Run runs sluice with args (and extra environment) and waits up to 10 minutes.
func Run(t testing.TB, env []string, args ...string) Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, Binary(t), args...)
	cmd.Env = append(os.Environ(), env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	res := Result{Stdout: out.String(), Stderr: errb.String()}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		res.Exit = ee.ExitCode()
	default:
		t.Fatalf("run sluice %v: %v", args, err)
	}
	return res
}

// MustRun runs sluice and fails the test unless it exits with want.
func MustRun(t testing.TB, want int, args ...string) Result {
	t.Helper()
	r := Run(t, nil, args...)
	if r.Exit != want {
		t.Fatalf("sluice %s: exit %d, want %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), r.Exit, want, r.Stdout, r.Stderr)
	}
	return r
}

// Start starts sluice without waiting (for kill tests).
func Start(t testing.TB, args ...string) (*exec.Cmd, *Output) {
	t.Helper()
	cmd := exec.Command(Binary(t), args...)
	out := &Output{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return cmd, out
}

// FixturesDir finds ../shared/fixtures from the repository root.
func FixturesDir(t testing.TB) string {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	root := filepath.Join(filepath.Dir(file), "..", "..")
	for _, d := range []string{filepath.Join(root, "..", "shared", "fixtures"), os.Getenv("SLUICE_FIXTURES")} {
		if d == "" {
			continue
		}
		if _, err := os.Stat(d); err == nil {
			return d
		}
	}
	t.Fatalf("fixtures not found: expected ../shared/fixtures next to the repository (or set SLUICE_FIXTURES)")
	return ""
}
