// Package config parses connection URLs and the sluice.yaml config file and
// resolves which source and target databases to use.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"regexp"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"
)

// Environment variables consulted by Resolve, after flags and the file.
const (
	EnvSource = "SLUICE_SOURCE"
	EnvTarget = "SLUICE_TARGET"
)

// Bad-row policies for CopySettings.OnBadRow; empty means OnBadRowFail.
const (
	OnBadRowFail = "fail"
	OnBadRowSkip = "skip"
)

// ErrNoSource and ErrNoTarget are returned (wrapped) by Resolve when a
// database is given nowhere.
var (
	ErrNoSource = errors.New("no source database: give --source postgres://…, set source: in the config file, or " + EnvSource)
	ErrNoTarget = errors.New("no target database: give --target mysql://…, set target: in the config file, or " + EnvTarget)
)

// File is the YAML config file. Zero values mean "use the default".
type File struct {
	Source  string                  `yaml:"source"`
	Target  string                  `yaml:"target"`
	Tables  map[string]TableMapping `yaml:"tables"` // key: source table, "name" or "schema.name"
	Copy    CopySettings            `yaml:"copy"`
	HTTP    HTTPSettings            `yaml:"http"`
	Alerts  AlertSettings           `yaml:"alerts"`         // watchers and alerts (ops.go)
	Protect ProtectSettings         `yaml:"protect_source"` // what the watchers may do to protect the source (ops.go)

	path string // for error messages; empty when not loaded from disk
}

// TableMapping customises how one source table is copied.
type TableMapping struct {
	Rename   string                   `yaml:"rename"`   // target table name
	Where    string                   `yaml:"where"`    // row filter: SQL boolean expression evaluated on the source
	Columns  map[string]ColumnMapping `yaml:"columns"`  // key: source column name
	Computed []ComputedColumn         `yaml:"computed"` // extra target columns
}

// ColumnMapping customises one source column.
type ColumnMapping struct {
	Rename string `yaml:"rename"`
	Drop   bool   `yaml:"drop"`
	Type   string `yaml:"type"` // target column type override, e.g. "DECIMAL(12,2)"
}

// ComputedColumn is a target column filled from an expression on the source row.
type ComputedColumn struct {
	Name string `yaml:"name"` // target column name
	Expr string `yaml:"expr"` // SQL expression evaluated on the source row
	Type string `yaml:"type"` // optional; otherwise derived from the expression's type
}

// CopySettings tunes the bulk copy.
type CopySettings struct {
	Parallel      int     `yaml:"parallel"`
	ChunkRows     int     `yaml:"chunk_rows"`
	MaxRowsPerSec float64 `yaml:"max_rows_per_sec"` // 0: unlimited
	OnBadRow      string  `yaml:"on_bad_row"`       // OnBadRowFail or OnBadRowSkip
	RejectFile    string  `yaml:"reject_file"`
}

// HTTPSettings configures the status/control HTTP server.
type HTTPSettings struct {
	Listen       string   `yaml:"listen"`
	APIToken     string   `yaml:"api_token"`
	AllowOrigins []string `yaml:"allow_origins"`
	// AllowCredentials lets allowed origins send credentials (cookies);
	// "*" is refused with it. Bearer tokens need no credentials mode.
	AllowCredentials bool `yaml:"allow_credentials"`
}

// Path returns the file the config was loaded from, or "".
func (f *File) Path() string { return f.path }

// LoadFile reads, strictly decodes and validates a config file.
func LoadFile(path string) (*File, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("config file %s does not exist", path)
		}
		return nil, fmt.Errorf("reading config file: %w", err)
	}
	f, err := parseFile(data)
	if err != nil {
		return nil, fmt.Errorf("config file %s: %w", path, err)
	}
	f.path = path
	if err := f.Validate(); err != nil {
		return nil, err
	}
	return f, nil
}

func parseFile(data []byte) (*File, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true) // a misspelt key must not be silently ignored
	var f File
	if err := dec.Decode(&f); err != nil {
		if errors.Is(err, io.EOF) { // empty file
			return &f, nil
		}
		var te *yaml.TypeError
		if errors.As(err, &te) {
			msgs := make([]string, len(te.Errors))
			for i, m := range te.Errors {
				msgs[i] = unknownField.ReplaceAllString(m, `unknown key "$1" (check its spelling)`)
			}
			return nil, errors.New(strings.Join(msgs, "; "))
		}
		return nil, err
	}
	return &f, nil
}

// unknownField rewrites yaml.v3's "field x not found in type config.T",
// which exposes Go type names to users.
var unknownField = regexp.MustCompile(`field (\S+) not found in type \S+`)

// Validate checks the file for contradictions that the YAML schema cannot
// express. All problems are reported at once, one per line.
func (f *File) Validate() error {
	var probs []string
	add := func(format string, args ...any) { probs = append(probs, fmt.Sprintf(format, args...)) }

	targets := map[string]string{} // target table -> source key, to catch two tables landing on one
	for _, key := range sortedKeys(f.Tables) {
		tm := f.Tables[key]
		where := fmt.Sprintf("tables.%s", key)
		if !validTableKey(key) {
			add(`%s: table key must be "name" or "schema.name"`, where)
		}
		target := tm.Rename
		if target == "" {
			target = key[strings.LastIndex(key, ".")+1:]
		}
		if prev, ok := targets[strings.ToLower(target)]; ok {
			add("%s: target table %q is also the target of tables.%s; rename one of them", where, target, prev)
		} else {
			targets[strings.ToLower(target)] = key
		}

		cols := map[string]string{} // target column (lower-cased: MariaDB names are case-insensitive) -> origin
		for _, col := range sortedKeys(tm.Columns) {
			cm := tm.Columns[col]
			cw := fmt.Sprintf("%s.columns.%s", where, col)
			if cm.Drop && cm.Rename != "" {
				add("%s: drop and rename cannot both be set; remove rename to drop the column, or drop to keep it", cw)
			}
			if cm.Drop && cm.Type != "" {
				add("%s: drop and type cannot both be set; a dropped column has no target type", cw)
			}
			if !plainSQLType(cm.Type) {
				add("%s: type %q is not a plain column type (it holds a statement separator, backquote, comment, unclosed quote or parenthesis, or a comma outside parentheses); give one such as DECIMAL(12,2)", cw, cm.Type)
			}
			if cm.Drop {
				continue
			}
			name := cm.Rename
			if name == "" {
				name = col
			}
			if prev, ok := cols[strings.ToLower(name)]; ok {
				add("%s: target column %q is also produced by %s; rename one of them", cw, name, prev)
			} else {
				cols[strings.ToLower(name)] = cw
			}
		}
		for i, cc := range tm.Computed {
			cw := fmt.Sprintf("%s.computed[%d]", where, i)
			if cc.Name != "" {
				cw = fmt.Sprintf("%s.computed[%d] (%s)", where, i, cc.Name)
			}
			if strings.TrimSpace(cc.Name) == "" {
				add("%s: name is empty; set the target column name", cw)
			}
			if strings.TrimSpace(cc.Expr) == "" {
				add("%s: expr is empty; set the SQL expression that computes the value", cw)
			}
			if !plainSQLType(cc.Type) {
				add("%s: type %q is not a plain column type (it holds a statement separator, backquote, comment, unclosed quote or parenthesis, or a comma outside parentheses); give one such as DECIMAL(12,2)", cw, cc.Type)
			}
			if cc.Name == "" {
				continue
			}
			if prev, ok := cols[strings.ToLower(cc.Name)]; ok {
				add("%s: target column %q is also produced by %s; rename the computed column or that column", cw, cc.Name, prev)
			} else {
				cols[strings.ToLower(cc.Name)] = cw
			}
		}
	}

	c := f.Copy
	switch c.OnBadRow {
	case "", OnBadRowFail, OnBadRowSkip:
	default:
		add("copy.on_bad_row: %q is not valid; use %q or %q", c.OnBadRow, OnBadRowFail, OnBadRowSkip)
	}
	if c.Parallel < 0 {
		add("copy.parallel: %d is negative; use a positive number, or 0 for the default", c.Parallel)
	}
	if c.ChunkRows < 0 {
		add("copy.chunk_rows: %d is negative; use a positive number, or 0 for the default", c.ChunkRows)
	}
	if c.MaxRowsPerSec < 0 || math.IsNaN(c.MaxRowsPerSec) || math.IsInf(c.MaxRowsPerSec, 0) {
		add("copy.max_rows_per_sec: %v is not valid; use a positive number, or 0 for unlimited", c.MaxRowsPerSec)
	}

	probs = append(probs, f.validateOps()...)

	if len(probs) == 0 {
		return nil
	}
	return fmt.Errorf("%s is invalid:\n  %s", f.describe(), strings.Join(probs, "\n  "))
}

func (f *File) describe() string {
	if f.path == "" {
		return "config file"
	}
	return "config file " + f.path
}

// settingName names a key of this file for error messages, e.g. "source in sluice.yaml".
func (f *File) settingName(key string) string {
	if f.path == "" {
		return key + " in the config file"
	}
	return key + " in " + f.path
}

func validTableKey(key string) bool {
	parts := strings.Split(key, ".")
	if len(parts) > 2 {
		return false
	}
	for _, p := range parts {
		if strings.TrimSpace(p) == "" {
			return false
		}
	}
	return true
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// Resolve picks the source and target URLs, each independently, by
// precedence flags > file > environment, and parses them. file may be nil;
// env nil means os.Getenv. Errors name where the bad value came from; a
// problem with each of source and target is reported together.
func Resolve(flagSource, flagTarget string, file *File, env func(string) string) (Source, Target, error) {
	if env == nil {
		env = os.Getenv
	}
	if file == nil {
		file = &File{}
	}
	var errs []error

	var src Source
	if setting, raw := pick("--source", flagSource, file.settingName("source"), file.Source, EnvSource, env(EnvSource)); setting == "" {
		errs = append(errs, ErrNoSource)
	} else if s, err := ParseSource(setting, raw); err != nil {
		errs = append(errs, err)
	} else {
		src = s
	}

	var tgt Target
	if setting, raw := pick("--target", flagTarget, file.settingName("target"), file.Target, EnvTarget, env(EnvTarget)); setting == "" {
		errs = append(errs, ErrNoTarget)
	} else if t, err := ParseTarget(setting, raw); err != nil {
		errs = append(errs, err)
	} else {
		tgt = t
	}

	if len(errs) > 0 {
		return Source{}, Target{}, errors.Join(errs...)
	}
	return src, tgt, nil
}

// pick returns the first non-blank value of (setting, value) pairs and its setting name.
func pick(pairs ...string) (setting, value string) {
	for i := 0; i+1 < len(pairs); i += 2 {
		if strings.TrimSpace(pairs[i+1]) != "" {
			return pairs[i], pairs[i+1]
		}
	}
	return "", ""
}

// plainSQLType reports whether a column type from the config holds nothing
// but a type: no statement separator, backquote or comment outside its
// quoted strings (ENUM('a;b') is fine). The type goes into CREATE TABLE as
// written, on a connection that runs several statements in one query.
func plainSQLType(t string) bool {
	var quote byte // ' or ": MariaDB (without ANSI_QUOTES) reads both as strings
	depth := 0     // parentheses: DECIMAL(12,2), ENUM('a','b')
	for i := 0; i < len(t); i++ {
		c := t[i]
		switch {
		case quote != 0 && c == '\\':
			i++ // an escaped character
		case quote != 0:
			if c == quote {
				quote = 0 // '' inside a string closes and reopens it
			}
		case c == '\'', c == '"':
			quote = c
		case c == ';', c == '`', c == '#':
			return false
		case c == '-' && i+1 < len(t) && t[i+1] == '-', c == '/' && i+1 < len(t) && t[i+1] == '*':
			return false
		case c == '(':
			depth++
		case c == ')':
			if depth--; depth < 0 {
				return false
			}
		case c == ',' && depth == 0: // "INT, p INT" would add a column to the DDL
			return false
		}
	}
	return quote == 0 && depth == 0
}
