package config

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"regexp"
	"strconv"
	"strings"

	"github.com/go-sql-driver/mysql"
)

// Mask replaces secrets in everything meant for humans (errors, logs).
const Mask = "xxxxx"

// Target flavors, taken from the URL scheme.
const (
	FlavorMySQL   = "mysql"
	FlavorMariaDB = "mariadb"
)

const (
	defaultPGPort    = 5432
	defaultPGUser    = "postgres"
	defaultMySQLPort = 3306
	defaultMySQLUser = "root"

	exampleSource = "postgres://user:password@127.0.0.1:5432/appdb"
	exampleTarget = "mysql://user:password@127.0.0.1:3306/appdb"
)

// exampleSocket is where Debian's servers put their sockets, by socketParam.
var exampleSocket = map[string]string{"host": "/var/run/postgresql", "socket": "/run/mysqld/mysqld.sock"}

// IsSocket reports whether host (Source.Host, Target.Host) is a Unix socket path.
func IsSocket(host string) bool { return strings.HasPrefix(host, "/") }

// URLError reports a malformed connection URL. Value is always redacted so
// the error can be printed or logged as is.
type URLError struct {
	Setting string // where the value came from: "--source", "SLUICE_SOURCE", ...
	Value   string // the URL as given, password replaced by Mask
	Reason  string // what is wrong, phrased to follow the quoted value
	Example string // a well-formed URL of the expected kind
}

func (e *URLError) Error() string {
	msg := fmt.Sprintf("%s: %q %s", e.Setting, e.Value, e.Reason)
	if e.Example != "" {
		msg += "; example: " + e.Example
	}
	return msg
}

// Source is a parsed PostgreSQL connection URL.
type Source struct {
	Host     string
	Port     int
	User     string
	Password string
	Database string
	Params   url.Values // libpq/pgx parameters such as sslmode
}

// Target is a parsed MySQL/MariaDB connection URL.
type Target struct {
	Flavor   string // FlavorMySQL or FlavorMariaDB
	Host     string
	Port     int
	User     string
	Password string
	Database string
	Params   url.Values // go-sql-driver/mysql parameters such as tls
}

// ParseSource parses a postgres:// or postgresql:// URL. setting names where
// raw came from ("--source", "source in sluice.yaml", "SLUICE_SOURCE") and
// prefixes every error.
func ParseSource(setting, raw string) (Source, error) {
	p, err := parseDBURL(setting, raw, urlKind{
		what:        "a PostgreSQL URL",
		schemes:     []string{"postgres", "postgresql"},
		wrongHint:   map[string]string{"mysql": "a MySQL URL", "mariadb": "a MariaDB URL"},
		example:     exampleSource,
		defaultPort: defaultPGPort,
		defaultUser: defaultPGUser,
		socketParam: "host",
	})
	if err != nil {
		return Source{}, err
	}
	return Source{
		Host: p.host, Port: p.port, User: p.user, Password: p.password,
		Database: p.database, Params: p.params,
	}, nil
}

// ParseTarget parses a mysql:// or mariadb:// URL; see ParseSource for setting.
func ParseTarget(setting, raw string) (Target, error) {
	kind := urlKind{
		what:        "a MySQL/MariaDB URL",
		schemes:     []string{FlavorMySQL, FlavorMariaDB},
		wrongHint:   map[string]string{"postgres": "a PostgreSQL URL", "postgresql": "a PostgreSQL URL"},
		example:     exampleTarget,
		defaultPort: defaultMySQLPort,
		defaultUser: defaultMySQLUser,
		socketParam: "socket",
	}
	p, err := parseDBURL(setting, raw, kind)
	if err != nil {
		return Target{}, err
	}
	t := Target{
		Flavor: p.scheme, Host: p.host, Port: p.port, User: p.user, Password: p.password,
		Database: p.database, Params: p.params,
	}
	// Let the driver vet the parameters now rather than at first connect.
	if _, err := mysql.ParseDSN(t.DSN(nil)); err != nil {
		return Target{}, &URLError{
			Setting: setting, Value: redactRaw(raw),
			Reason:  "has an invalid connection parameter: " + Redact(err.Error(), t.Password),
			Example: kind.example,
		}
	}
	return t, nil
}

// ConnString returns a URL pgx accepts, password included. Use it only to
// connect; print Redacted instead.
func (s Source) ConnString() string {
	return buildURL("postgres", s.User, s.Password, s.Host, s.Port, s.Database, s.Params, "host")
}

// Redacted returns the URL with the password replaced by Mask.
func (s Source) Redacted() string {
	return buildURL("postgres", s.User, maskIfSet(s.Password), s.Host, s.Port, s.Database, redactParams(s.Params), "host")
}

// String is Redacted so %v and %s never leak the password.
func (s Source) String() string { return s.Redacted() }

// GoString keeps %#v from dumping the Password field.
func (s Source) GoString() string { return "config.Source(" + strconv.Quote(s.Redacted()) + ")" }

// LogValue keeps slog handlers (JSON included) from dumping the Password field.
func (s Source) LogValue() slog.Value { return slog.StringValue(s.Redacted()) }

// MarshalJSON renders the redacted URL so status output never leaks secrets.
func (s Source) MarshalJSON() ([]byte, error) { return json.Marshal(s.Redacted()) }

// DSN returns a go-sql-driver/mysql DSN, password included. extra is merged
// over the URL's parameters: the caller's needs (e.g. parseTime) win.
func (t Target) DSN(extra map[string]string) string {
	return t.dsn(t.Database, extra)
}

// ServerDSN is DSN without a database, for connecting before it exists.
func (t Target) ServerDSN(extra map[string]string) string {
	return t.dsn("", extra)
}

func (t Target) dsn(db string, extra map[string]string) string {
	cfg := mysql.NewConfig()
	cfg.User = t.User
	cfg.Passwd = t.Password
	cfg.Net, cfg.Addr = "tcp", net.JoinHostPort(t.Host, strconv.Itoa(t.Port))
	if IsSocket(t.Host) {
		cfg.Net, cfg.Addr = "unix", t.Host
	}
	cfg.DBName = db
	if len(t.Params)+len(extra) > 0 {
		cfg.Params = make(map[string]string, len(t.Params)+len(extra))
		for k, v := range t.Params {
			if len(v) > 0 {
				cfg.Params[k] = v[len(v)-1]
			}
		}
		for k, v := range extra {
			cfg.Params[k] = v
		}
	}
	return cfg.FormatDSN()
}

// Redacted returns the URL with the password replaced by Mask.
func (t Target) Redacted() string {
	return buildURL(t.scheme(), t.User, maskIfSet(t.Password), t.Host, t.Port, t.Database, redactParams(t.Params), "socket")
}

// String is Redacted so %v and %s never leak the password.
func (t Target) String() string { return t.Redacted() }

// GoString keeps %#v from dumping the Password field.
func (t Target) GoString() string { return "config.Target(" + strconv.Quote(t.Redacted()) + ")" }

// LogValue keeps slog handlers (JSON included) from dumping the Password field.
func (t Target) LogValue() slog.Value { return slog.StringValue(t.Redacted()) }

// MarshalJSON renders the redacted URL so status output never leaks secrets.
func (t Target) MarshalJSON() ([]byte, error) { return json.Marshal(t.Redacted()) }

func (t Target) scheme() string {
	if t.Flavor == "" {
		return FlavorMySQL
	}
	return t.Flavor
}

// Redact replaces every occurrence of each non-empty secret in s with Mask.
func Redact(s string, secrets ...string) string {
	for _, sec := range secrets {
		if sec != "" {
			s = strings.ReplaceAll(s, sec, Mask)
		}
	}
	return s
}

type urlKind struct {
	what        string
	schemes     []string
	wrongHint   map[string]string // other known schemes -> what they are
	example     string
	defaultPort int
	defaultUser string
	// socketParam is the query parameter that names a Unix socket in place
	// of the host: "host" (a directory, as libpq has it) or "socket" (a file).
	socketParam string
}

type parsedURL struct {
	scheme, user, password, host, database string
	port                                   int
	params                                 url.Values
}

// parseDBURL splits by hand instead of using url.Parse: url.Parse rejects
// unescaped @ / ? # in passwords and its errors quote the whole input.
// The userinfo ends at the LAST '@', so a password may contain any character
// unescaped; '@' in the database name or parameters must be written as %40.
func parseDBURL(setting, raw string, k urlKind) (parsedURL, error) {
	raw = strings.TrimSpace(raw)
	fail := func(format string, args ...any) (parsedURL, error) {
		return parsedURL{}, &URLError{Setting: setting, Value: redactRaw(raw), Reason: fmt.Sprintf(format, args...), Example: k.example}
	}
	wantSchemes := k.schemes[0] + ":// or " + k.schemes[1] + "://"
	if raw == "" {
		return fail("is empty: expected %s", k.what)
	}
	scheme, rest, ok := strings.Cut(raw, "://")
	if !ok {
		return fail("is not %s: it must start with %s", k.what, wantSchemes)
	}
	scheme = strings.ToLower(scheme)
	if scheme != k.schemes[0] && scheme != k.schemes[1] {
		if other, ok := k.wrongHint[scheme]; ok {
			return fail("is not %s: scheme must be %s (this is %s: are source and target swapped?)", k.what, wantSchemes, other)
		}
		return fail("is not %s: scheme must be %s", k.what, wantSchemes)
	}

	p := parsedURL{scheme: scheme, port: k.defaultPort, user: k.defaultUser}
	if at := strings.LastIndex(rest, "@"); at >= 0 {
		userinfo := rest[:at]
		rest = rest[at+1:]
		u, pw, hasPW := strings.Cut(userinfo, ":")
		user, err := url.PathUnescape(u)
		if err != nil {
			return fail("has a malformed %%-escape in the user name: write a literal %% as %%25")
		}
		if user != "" {
			p.user = user
		}
		if hasPW {
			if p.password, err = url.PathUnescape(pw); err != nil {
				return fail("has a malformed %%-escape in the password: write a literal %% as %%25")
			}
		}
	}
	if strings.Contains(rest, "#") {
		return fail("contains '#' after the host: percent-encode it as %%23")
	}
	rest, rawQuery, _ := strings.Cut(rest, "?")
	hostport, path, _ := strings.Cut(rest, "/")

	host, portStr, err := splitHostPort(hostport)
	if err != "" {
		return fail("%s", err)
	}
	params, qerr := url.ParseQuery(rawQuery)
	if qerr != nil {
		return fail("has malformed query parameters: check their %%-escapes")
	}
	// A Unix socket stands in for the host: ?host=/dir (PostgreSQL) or
	// ?socket=/file (MySQL). On the database's own machine it spares both
	// ends the TCP stack, which the source pays for on every message sent.
	if socket := params.Get(k.socketParam); socket != "" && strings.HasPrefix(socket, "/") {
		if host != "" {
			return fail("names both a host (%s) and a Unix socket (%s=%s): keep one", host, k.socketParam, socket)
		}
		host = socket
		params.Del(k.socketParam)
		if portStr == "" {
			portStr = params.Get("port") // libpq's way to pick the socket file with no host in the URL
		}
		params.Del("port")
	}
	if host == "" {
		return fail("has no host: put the server name or address after %s:// (or a Unix socket: %s://user@/db?%s=%s)",
			scheme, scheme, k.socketParam, exampleSocket[k.socketParam])
	}
	p.host = host
	if portStr != "" {
		n, err := strconv.Atoi(portStr)
		if err != nil || n < 1 || n > 65535 {
			return fail("has an invalid port %q: it must be a number from 1 to 65535", portStr)
		}
		p.port = n
	}

	db, uerr := url.PathUnescape(path)
	if uerr != nil {
		return fail("has a malformed %%-escape in the database name")
	}
	if db == "" {
		return fail("has no database name: add /dbname after the host")
	}
	if strings.Contains(path, "/") {
		return fail("has a '/' in the database name: only one path segment is allowed")
	}
	p.database = db
	if len(params) > 0 {
		p.params = params
	}
	return p, nil
}

// splitHostPort returns a reason string rather than an error so the caller
// wraps it in a URLError; net.SplitHostPort's errors quote the input.
func splitHostPort(hp string) (host, port, reason string) {
	if strings.HasPrefix(hp, "[") {
		end := strings.Index(hp, "]")
		if end < 0 {
			return "", "", "has an IPv6 host without a closing ']'"
		}
		host, after := hp[1:end], hp[end+1:]
		if after != "" && !strings.HasPrefix(after, ":") {
			return "", "", "has unexpected text after the IPv6 host: expected [addr]:port"
		}
		h, err := url.PathUnescape(host) // zone ids are written %25eth0
		if err != nil {
			return "", "", "has a malformed %-escape in the host"
		}
		return h, strings.TrimPrefix(after, ":"), ""
	}
	switch strings.Count(hp, ":") {
	case 0:
		host = hp
	case 1:
		host, port, _ = strings.Cut(hp, ":")
	default:
		return "", "", "has an IPv6 host without brackets: write it as [::1]:5432"
	}
	if strings.ContainsAny(host, " \t\r\n%") {
		return "", "", fmt.Sprintf("has an invalid host %q", host)
	}
	return host, port, ""
}

// buildURL writes a URL parseDBURL reads back; a socket host goes in the
// query as socketParam (with the port, which names PostgreSQL's socket file).
func buildURL(scheme, user, password, host string, port int, db string, params url.Values, socketParam string) string {
	u := url.URL{Scheme: scheme, Path: "/" + db}
	if IsSocket(host) {
		q := make(url.Values, len(params)+2)
		for k, v := range params {
			q[k] = v
		}
		q.Set(socketParam, host)
		if socketParam == "host" {
			q.Set("port", strconv.Itoa(port))
		}
		params = q
	} else {
		u.Host = net.JoinHostPort(host, strconv.Itoa(port))
	}
	u.RawQuery = params.Encode()
	if password != "" {
		u.User = url.UserPassword(user, password)
	} else {
		u.User = url.User(user)
	}
	return u.String()
}

func maskIfSet(pw string) string {
	if pw == "" {
		return ""
	}
	return Mask
}

// passwordParam matches libpq parameters that carry secrets.
func passwordParam(k string) bool {
	k = strings.ToLower(k)
	return k == "password" || k == "sslpassword"
}

func redactParams(params url.Values) url.Values {
	if len(params) == 0 {
		return nil
	}
	out := make(url.Values, len(params))
	for k, v := range params {
		if passwordParam(k) {
			v = []string{Mask}
		}
		out[k] = v
	}
	return out
}

// passwordKV matches password=... in URL queries and libpq keyword/value
// strings (someone may paste "host=h password=s" where a URL belongs).
var passwordKV = regexp.MustCompile(`(?i)((?:ssl)?password\s*=\s*)('[^']*'|[^&\s]*)`)

// redactRaw masks the password in input that may not parse. It mirrors
// parseDBURL (userinfo ends at the last '@') and so errs on over-masking.
func redactRaw(raw string) string {
	// password=… first: an @ in it would be taken for the end of the userinfo
	raw = passwordKV.ReplaceAllString(raw, "${1}"+Mask)
	prefix, rest := "", raw
	if i := strings.Index(raw, "://"); i >= 0 {
		prefix, rest = raw[:i+3], raw[i+3:]
	}
	if at := strings.LastIndex(rest, "@"); at >= 0 {
		if user, _, hasPW := strings.Cut(rest[:at], ":"); hasPW {
			rest = user + ":" + Mask + rest[at:]
		}
	}
	return passwordKV.ReplaceAllString(prefix+rest, "${1}"+Mask)
}
