package config

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"reflect"
	"strings"
	"testing"

	"github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5/pgconn"
)

// secret is distinctive so any leak shows up in a substring check.
const secret = "s3cr3tPW"

func assertNoSecret(t *testing.T, what, s string, secrets ...string) {
	t.Helper()
	for _, sec := range append([]string{secret}, secrets...) {
		if sec != "" && strings.Contains(s, sec) {
			t.Errorf("%s leaks the password %q: %s", what, sec, s)
		}
	}
}

func TestParseSource(t *testing.T) {
	tests := []struct {
		name string
		raw  string
		want Source
	}{
		{"full", "postgres://app:" + secret + "@db.example.com:6543/appdb?sslmode=require",
			Source{Host: "db.example.com", Port: 6543, User: "app", Password: secret, Database: "appdb",
				Params: url.Values{"sslmode": {"require"}}}},
		{"postgresql scheme and defaults", "postgresql://localhost/appdb",
			Source{Host: "localhost", Port: 5432, User: "postgres", Database: "appdb"}},
		{"upper-case scheme", "POSTGRES://localhost/appdb",
			Source{Host: "localhost", Port: 5432, User: "postgres", Database: "appdb"}},
		{"user without password", "postgres://bob@h/db",
			Source{Host: "h", Port: 5432, User: "bob", Database: "db"}},
		{"empty user keeps default", "postgres://:" + secret + "@h/db",
			Source{Host: "h", Port: 5432, User: "postgres", Password: secret, Database: "db"}},
		{"percent-encoded password", "postgres://app:p%40ss%2Fw%3Ard@h/db",
			Source{Host: "h", Port: 5432, User: "app", Password: "p@ss/w:rd", Database: "db"}},
		{"unescaped specials in password", "postgres://app:p@ss/w?#d@h/db",
			Source{Host: "h", Port: 5432, User: "app", Password: "p@ss/w?#d", Database: "db"}},
		{"ipv6", "postgres://app:" + secret + "@[::1]:5433/db",
			Source{Host: "::1", Port: 5433, User: "app", Password: secret, Database: "db"}},
		{"ipv6 default port", "postgres://[2001:db8::7]/db",
			Source{Host: "2001:db8::7", Port: 5432, User: "postgres", Database: "db"}},
		{"encoded database", "postgres://h/my%20db",
			Source{Host: "h", Port: 5432, User: "postgres", Database: "my db"}},
		{"surrounding space", "  postgres://h/db\n",
			Source{Host: "h", Port: 5432, User: "postgres", Database: "db"}},
		{"unix socket directory", "postgres://app:" + secret + "@/db?host=/var/run/postgresql&sslmode=disable",
			Source{Host: "/var/run/postgresql", Port: 5432, User: "app", Password: secret, Database: "db",
				Params: url.Values{"sslmode": {"disable"}}}},
		{"unix socket with port", "postgres:///db?host=%2Ftmp&port=5433",
			Source{Host: "/tmp", Port: 5433, User: "postgres", Database: "db"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseSource("--source", tt.raw)
			if err != nil {
				t.Fatalf("ParseSource(%q): %v", tt.raw, err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("ParseSource(%q)\n got %s\nwant %s", tt.raw, fields(got), fields(tt.want))
			}

			// ConnString carries the password and round-trips through pgx.
			cfg, err := pgconn.ParseConfig(got.ConnString())
			if err != nil {
				t.Fatalf("pgconn.ParseConfig(ConnString()): %v", err)
			}
			if cfg.Host != got.Host || int(cfg.Port) != got.Port || cfg.User != got.User ||
				cfg.Password != got.Password || cfg.Database != got.Database {
				t.Errorf("pgx parsed ConnString %q as host=%q port=%d user=%q db=%q pw-ok=%v",
					got.ConnString(), cfg.Host, cfg.Port, cfg.User, cfg.Database, cfg.Password == got.Password)
			}

			assertRedacted(t, got, got.Password)
			if got.Password != "" && !strings.Contains(got.Redacted(), ":"+Mask+"@") {
				t.Errorf("Redacted() = %q, want the password shown as %s", got.Redacted(), Mask)
			}
			if got.Password == "" && strings.Contains(got.Redacted(), Mask) {
				t.Errorf("Redacted() = %q, want no password part", got.Redacted())
			}
		})
	}
}

// fields shows every field, password included, for test failure output
// (String and %#v deliberately hide it).
func fields(v any) string {
	rv := reflect.ValueOf(v)
	var b strings.Builder
	for i := 0; i < rv.NumField(); i++ {
		fmt.Fprintf(&b, "%s=%q ", rv.Type().Field(i).Name, fmt.Sprint(rv.Field(i).Interface()))
	}
	return b.String()
}

// assertRedacted checks every human-facing rendering of v.
func assertRedacted(t *testing.T, v interface {
	Redacted() string
	String() string
}, pw string) {
	t.Helper()
	if pw == "" {
		return
	}
	js, _ := json.Marshal(v)
	var logBuf strings.Builder
	slog.New(slog.NewJSONHandler(&logBuf, nil)).Info("x", "db", v)
	for what, s := range map[string]string{
		"Redacted()": v.Redacted(),
		"String()":   v.String(),
		"%v":         fmt.Sprintf("%v", v),
		"%+v":        fmt.Sprintf("%+v", v),
		"%#v":        fmt.Sprintf("%#v", v),
		"json":       string(js),
		"slog":       logBuf.String(),
	} {
		assertNoSecret(t, what, s, pw)
	}
}

func TestSourceRedactsPasswordParam(t *testing.T) {
	s, err := ParseSource("--source", "postgres://h/db?password="+secret+"&sslmode=disable")
	if err != nil {
		t.Fatal(err)
	}
	assertRedacted(t, s, secret)
	if !strings.Contains(s.ConnString(), secret) {
		t.Errorf("ConnString() = %q, want the password parameter kept", s.ConnString())
	}
	if want := "postgres://postgres@h:5432/db?password=xxxxx&sslmode=disable"; s.Redacted() != want {
		t.Errorf("Redacted() = %q, want %q", s.Redacted(), want)
	}
}

func TestSourceRedactedFormat(t *testing.T) {
	s, err := ParseSource("SLUICE_SOURCE", "postgres://app:"+secret+"@[::1]/appdb?sslmode=require")
	if err != nil {
		t.Fatal(err)
	}
	if want := "postgres://app:xxxxx@[::1]:5432/appdb?sslmode=require"; s.Redacted() != want {
		t.Errorf("Redacted() = %q, want %q", s.Redacted(), want)
	}
}

func TestParseTarget(t *testing.T) {
	tests := []struct {
		name string
		raw  string
		want Target
	}{
		{"mysql full", "mysql://app:" + secret + "@db.example.com:3307/shop?tls=skip-verify",
			Target{Flavor: "mysql", Host: "db.example.com", Port: 3307, User: "app", Password: secret, Database: "shop",
				Params: url.Values{"tls": {"skip-verify"}}}},
		{"mariadb defaults", "mariadb://localhost/shop",
			Target{Flavor: "mariadb", Host: "localhost", Port: 3306, User: "root", Database: "shop"}},
		{"percent-encoded password", "mysql://root:p%40ss@h/shop",
			Target{Flavor: "mysql", Host: "h", Port: 3306, User: "root", Password: "p@ss", Database: "shop"}},
		{"special characters in password", "mysql://root:p@ss/w?r%25d:x@h/shop",
			Target{Flavor: "mysql", Host: "h", Port: 3306, User: "root", Password: "p@ss/w?r%d:x", Database: "shop"}},
		{"ipv6", "mariadb://root:" + secret + "@[::1]:3306/shop",
			Target{Flavor: "mariadb", Host: "::1", Port: 3306, User: "root", Password: secret, Database: "shop"}},
		{"unix socket", "mariadb://root:" + secret + "@/shop?socket=/run/mysqld/mysqld.sock",
			Target{Flavor: "mariadb", Host: "/run/mysqld/mysqld.sock", Port: 3306, User: "root", Password: secret, Database: "shop"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseTarget("--target", tt.raw)
			if err != nil {
				t.Fatalf("ParseTarget(%q): %v", tt.raw, err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("ParseTarget(%q)\n got %s\nwant %s", tt.raw, fields(got), fields(tt.want))
			}

			cfg, err := mysql.ParseDSN(got.DSN(map[string]string{"parseTime": "true", "sql_mode": "'ANSI_QUOTES'"}))
			if err != nil {
				t.Fatalf("mysql.ParseDSN(DSN()): %v", err)
			}
			wantNet := "tcp"
			if IsSocket(got.Host) {
				wantNet = "unix"
				if cfg.Addr != got.Host {
					t.Errorf("DSN addr = %q, want the socket %q", cfg.Addr, got.Host)
				}
			}
			if cfg.User != got.User || cfg.Passwd != got.Password || cfg.DBName != got.Database || cfg.Net != wantNet {
				t.Errorf("DSN parsed back as user=%q db=%q net=%q pw-ok=%v", cfg.User, cfg.DBName, cfg.Net, cfg.Passwd == got.Password)
			}
			if again, err := ParseTarget("redacted", got.Redacted()); err != nil || again.Host != got.Host || again.Port != got.Port {
				t.Errorf("Redacted() %q does not parse back to the same server: %+v, %v", got.Redacted(), again, err)
			}
			if wantAddr := fmt.Sprintf("[%s]:%d", got.Host, got.Port); strings.Contains(got.Host, ":") && cfg.Addr != wantAddr {
				t.Errorf("DSN addr = %q, want %q", cfg.Addr, wantAddr)
			}
			if !cfg.ParseTime || cfg.Params["sql_mode"] != "'ANSI_QUOTES'" {
				t.Errorf("extra params not applied: parseTime=%v params=%v", cfg.ParseTime, cfg.Params)
			}
			if tls := got.Params.Get("tls"); tls != "" && cfg.TLSConfig != tls {
				t.Errorf("URL param tls=%q not carried into DSN (got %q)", tls, cfg.TLSConfig)
			}

			server, err := mysql.ParseDSN(got.ServerDSN(nil))
			if err != nil {
				t.Fatalf("mysql.ParseDSN(ServerDSN()): %v", err)
			}
			if server.DBName != "" || server.User != got.User || server.Passwd != got.Password {
				t.Errorf("ServerDSN parsed back as db=%q user=%q pw-ok=%v", server.DBName, server.User, server.Passwd == got.Password)
			}

			assertRedacted(t, got, got.Password)
			if !strings.HasPrefix(got.Redacted(), got.Flavor+"://") {
				t.Errorf("Redacted() = %q, want scheme %s", got.Redacted(), got.Flavor)
			}
		})
	}
}

func TestTargetDSNExtraOverridesURL(t *testing.T) {
	tg, err := ParseTarget("--target", "mysql://root@h/db?parseTime=false&time_zone=%27%2B00%3A00%27")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := mysql.ParseDSN(tg.DSN(map[string]string{"parseTime": "true"}))
	if err != nil {
		t.Fatal(err)
	}
	if !cfg.ParseTime {
		t.Error("extra parseTime=true did not override the URL's parseTime=false")
	}
	if cfg.Params["time_zone"] != "'+00:00'" {
		t.Errorf("time_zone = %q, want '+00:00'", cfg.Params["time_zone"])
	}
}

func TestURLErrors(t *testing.T) {
	tests := []struct {
		name    string
		target  bool // ParseTarget instead of ParseSource
		raw     string
		reason  string // substring of Reason
		wantVal string // expected redacted Value, if checked
	}{
		{name: "empty", raw: "", reason: "is empty"},
		{name: "blank", raw: "   ", reason: "is empty"},
		{name: "no scheme", raw: "app:" + secret + "@localhost/db", reason: "must start with postgres://", wantVal: "app:xxxxx@localhost/db"},
		{name: "keyword dsn", raw: "host=h user=app password=" + secret + " dbname=db", reason: "must start with postgres://"},
		{name: "mysql url to source", raw: "mysql://root:" + secret + "@h/db", reason: "is not a PostgreSQL URL: scheme must be postgres:// or postgresql://", wantVal: "mysql://root:xxxxx@h/db"},
		{name: "http scheme", raw: "http://u:" + secret + "@h/db", reason: "scheme must be"},
		{name: "missing host", raw: "postgres://app:" + secret + "@/db", reason: "has no host"},
		{name: "missing host no userinfo", raw: "postgres:///db", reason: "has no host"},
		{name: "socket must be a path", raw: "postgres:///db?host=relative", reason: "or a Unix socket: postgres://user@/db?host=/var/run/postgresql"},
		{name: "host and socket", raw: "postgres://h/db?host=/tmp", reason: "names both a host (h) and a Unix socket (host=/tmp)"},
		{name: "target host and socket", target: true, raw: "mysql://h/db?socket=/tmp/m.sock", reason: "keep one"},
		{name: "non-numeric port", raw: "postgres://app:" + secret + "@h:abc/db", reason: `invalid port "abc"`},
		{name: "port out of range", raw: "postgres://app:" + secret + "@h:70000/db", reason: `invalid port "70000"`},
		{name: "port zero", raw: "postgres://h:0/db", reason: `invalid port "0"`},
		{name: "missing database", raw: "postgres://app:" + secret + "@h:5432", reason: "has no database name"},
		{name: "missing database slash", raw: "postgres://app:" + secret + "@h:5432/?sslmode=require", reason: "has no database name"},
		{name: "two path segments", raw: "postgres://h/db/x", reason: "only one path segment"},
		{name: "bad escape in password", raw: "postgres://app:" + secret + "%zz@h/db", reason: "malformed %-escape in the password"},
		{name: "bad escape in query", raw: "postgres://app:" + secret + "@h/db?x=%zz", reason: "malformed query parameters"},
		{name: "password in bad query", raw: "postgres://h/db?password=" + secret + "&x=%zz", reason: "malformed query parameters"},
		{name: "fragment", raw: "postgres://app:" + secret + "@h/db#x", reason: "contains '#'"},
		{name: "ipv6 no brackets", raw: "postgres://app:" + secret + "@::1/db", reason: "without brackets"},
		{name: "ipv6 unclosed", raw: "postgres://app:" + secret + "@[::1/db", reason: "closing ']'"},
		{name: "ipv6 junk after", raw: "postgres://[::1]x/db", reason: "unexpected text after the IPv6 host"},

		{name: "target empty", target: true, raw: "", reason: "is empty"},
		{name: "postgres url to target", target: true, raw: "postgres://app:" + secret + "@h/db", reason: "is not a MySQL/MariaDB URL: scheme must be mysql:// or mariadb://", wantVal: "postgres://app:xxxxx@h/db"},
		{name: "mysql driver dsn to target", target: true, raw: "root:" + secret + "@tcp(h:3306)/db", reason: "must start with mysql://"},
		{name: "target missing host", target: true, raw: "mysql://root:" + secret + "@:3306/db", reason: "has no host"},
		{name: "target bad port", target: true, raw: "mysql://root:" + secret + "@h:x/db", reason: `invalid port "x"`},
		{name: "target port range", target: true, raw: "mariadb://root:" + secret + "@h:99999/db", reason: "invalid port"},
		{name: "target missing database", target: true, raw: "mysql://root:" + secret + "@h", reason: "has no database name"},
		{name: "target bad driver param", target: true, raw: "mysql://root:" + secret + "@h/db?parseTime=maybe", reason: "invalid connection parameter"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			setting := "--source"
			var err error
			if tt.target {
				setting = "--target"
				_, err = ParseTarget(setting, tt.raw)
			} else {
				_, err = ParseSource(setting, tt.raw)
			}
			if err == nil {
				t.Fatalf("want error for %q", tt.raw)
			}
			var ue *URLError
			if !errors.As(err, &ue) {
				t.Fatalf("error %T %v is not a *URLError", err, err)
			}
			if ue.Setting != setting {
				t.Errorf("Setting = %q, want %q", ue.Setting, setting)
			}
			if !strings.Contains(ue.Reason, tt.reason) {
				t.Errorf("Reason = %q, want it to contain %q", ue.Reason, tt.reason)
			}
			if tt.wantVal != "" && ue.Value != tt.wantVal {
				t.Errorf("Value = %q, want %q", ue.Value, tt.wantVal)
			}
			msg := err.Error()
			if !strings.HasPrefix(msg, setting+": ") || !strings.Contains(msg, "; example: ") {
				t.Errorf("Error() = %q, want %q prefix and an example", msg, setting)
			}
			assertNoSecret(t, "Error()", msg)
			assertNoSecret(t, "Value", ue.Value)
		})
	}
}

func TestURLErrorMessage(t *testing.T) {
	_, err := ParseSource("--source", "mysql://root:"+secret+"@h/db")
	want := `--source: "mysql://root:xxxxx@h/db" is not a PostgreSQL URL: scheme must be postgres:// or postgresql://`
	if err == nil || !strings.HasPrefix(err.Error(), want) ||
		!strings.HasSuffix(err.Error(), "; example: postgres://user:password@127.0.0.1:5432/appdb") {
		t.Errorf("got %v\nwant %s … ; example: postgres://user:password@127.0.0.1:5432/appdb", err, want)
	}
}

func TestRedactRaw(t *testing.T) {
	tests := map[string]string{
		"postgres://u:" + secret + "@h/db":                   "postgres://u:xxxxx@h/db",
		"postgres://u:p@" + secret + "@h/db":                 "postgres://u:xxxxx@h/db",
		"postgres://u@h/db":                                  "postgres://u@h/db",
		"postgres://h/db?password=" + secret + "&a=b":        "postgres://h/db?password=xxxxx&a=b",
		"postgres://u@h:5432/db?password=p@ss:w/rd" + secret: "postgres://u@h:5432/db?password=xxxxx",
		"host=h password='" + secret + " x' dbname=db":       "host=h password=xxxxx dbname=db",
		"u:" + secret + "@tcp(h:3306)/db":                    "u:xxxxx@tcp(h:3306)/db",
		"":                                                   "",
	}
	for in, want := range tests {
		if got := redactRaw(in); got != want {
			t.Errorf("redactRaw(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestRedact(t *testing.T) {
	tests := []struct {
		in      string
		secrets []string
		want    string
	}{
		{"token abc and abc", []string{"abc"}, "token xxxxx and xxxxx"},
		{"a=1 b=2", []string{"1", "", "2"}, "a=xxxxx b=xxxxx"},
		{"nothing here", nil, "nothing here"},
		{"keep", []string{""}, "keep"},
	}
	for _, tt := range tests {
		if got := Redact(tt.in, tt.secrets...); got != tt.want {
			t.Errorf("Redact(%q, %q) = %q, want %q", tt.in, tt.secrets, got, tt.want)
		}
	}
}
