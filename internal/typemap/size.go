package typemap

import (
	"math"
	"strconv"
	"strings"
)

// MaxRowBytes is MySQL's limit for a row: every column's largest value
// (a BLOB or TEXT counts only its pointer) and the NULL bits.
const MaxRowBytes = 65535

// Size is how much a column of a MySQL type takes at most.
type Size struct {
	Row int // bytes toward MaxRowBytes, with a VARCHAR's length bytes
	Key int // bytes in an index (0 for a BLOB or TEXT: indexed only by a prefix)
	// CharBytes is the bytes per character of a text type, 1 for the
	// others: an index prefix counts characters.
	CharBytes int
	Blob      bool // BLOB, TEXT or JSON, which an index takes only a prefix of
	Varying   bool // VARCHAR, VARBINARY, BLOB or TEXT: an index may take a prefix
}

// SizeOf returns the size of a column type as sluice writes it ("VARCHAR(20)
// CHARACTER SET utf8mb4 COLLATE …", "DECIMAL(12,2)"). A text type without a
// character set is taken as utf8mb4, the target tables' default. Types it
// does not know count 8 bytes.
func SizeOf(sqlType string) Size {
	u := strings.ToUpper(strings.TrimSpace(sqlType))
	name := u
	if i := strings.IndexAny(u, "( "); i >= 0 {
		name = u[:i]
	}
	var args []int
	if rest, ok := strings.CutPrefix(u[len(name):], "("); ok {
		if inner, _, ok := strings.Cut(rest, ")"); ok {
			for _, a := range strings.Split(inner, ",") {
				n, _ := strconv.Atoi(strings.TrimSpace(a))
				args = append(args, n)
			}
		}
	}
	arg := func(i, def int) int {
		if i < len(args) {
			return args[i]
		}
		return def
	}
	cb := 4
	switch {
	case strings.Contains(u, "UTF8MB4"):
	case strings.Contains(u, "ASCII"), strings.Contains(u, "LATIN1"), strings.Contains(u, "CHARACTER SET BINARY"):
		cb = 1
	case strings.Contains(u, "UTF8"):
		cb = 3
	}
	fixed := func(n int) Size { return Size{Row: n, Key: n, CharBytes: 1} }
	varying := func(n, cb int) Size {
		lengthBytes := 1
		if n*cb > 255 {
			lengthBytes = 2
		}
		return Size{Row: n*cb + lengthBytes, Key: n * cb, CharBytes: cb, Varying: true}
	}
	blob := func(pointer, cb int) Size { return Size{Row: pointer, CharBytes: cb, Blob: true, Varying: true} }
	switch name {
	case "BOOL", "BOOLEAN", "TINYINT", "YEAR":
		return fixed(1)
	case "SMALLINT":
		return fixed(2)
	case "MEDIUMINT", "DATE":
		return fixed(3)
	case "INT", "INTEGER":
		return fixed(4)
	case "BIGINT", "DOUBLE", "REAL", "SET":
		return fixed(8)
	case "FLOAT":
		if len(args) == 1 && args[0] > 24 {
			return fixed(8)
		}
		return fixed(4)
	case "DECIMAL", "NUMERIC":
		p, s := arg(0, 10), arg(1, 0)
		return fixed(decimalBytes(p-s) + decimalBytes(s))
	case "TIME":
		return fixed(3 + (arg(0, 0)+1)/2)
	case "DATETIME":
		return fixed(5 + (arg(0, 0)+1)/2)
	case "TIMESTAMP":
		return fixed(4 + (arg(0, 0)+1)/2)
	case "ENUM":
		return fixed(2)
	case "UUID", "INET6":
		return fixed(16)
	case "BIT":
		return fixed((arg(0, 1) + 7) / 8)
	case "CHAR":
		return Size{Row: arg(0, 1) * cb, Key: arg(0, 1) * cb, CharBytes: cb}
	case "BINARY":
		return fixed(arg(0, 1))
	case "VARCHAR":
		return varying(arg(0, 0), cb)
	case "VARBINARY":
		return varying(arg(0, 0), 1)
	case "TINYTEXT":
		return blob(9, cb)
	case "TEXT":
		return blob(10, cb)
	case "MEDIUMTEXT":
		return blob(11, cb)
	case "LONGTEXT", "JSON":
		return blob(12, cb)
	case "TINYBLOB":
		return blob(9, 1)
	case "BLOB":
		return blob(10, 1)
	case "MEDIUMBLOB":
		return blob(11, 1)
	case "LONGBLOB":
		return blob(12, 1)
	}
	return fixed(8)
}

// decimalBytes is what DECIMAL stores digits in: 4 bytes per 9, and 1–4
// for the rest.
func decimalBytes(digits int) int {
	return digits/9*4 + [9]int{0, 1, 1, 2, 2, 3, 3, 4, 4}[digits%9]
}

// LongText returns the LONGTEXT type with the character set and collation of
// a VARCHAR type; ok is false for other types. It holds every value the
// VARCHAR holds, the same way, and takes 12 bytes of the row.
func LongText(sqlType string) (string, bool) {
	rest, ok := strings.CutPrefix(sqlType, "VARCHAR(")
	if !ok {
		return "", false
	}
	_, attrs, ok := strings.Cut(rest, ")")
	if !ok {
		return "", false
	}
	return "LONGTEXT" + attrs, true
}

// IntegerMax is the largest value a column of an integer type holds
// ("INT", "BIGINT UNSIGNED AUTO_INCREMENT"), at most the largest int64;
// the largest int64 for any other type.
func IntegerMax(sqlType string) int64 {
	u := strings.ToUpper(strings.TrimSpace(sqlType))
	name, _, _ := strings.Cut(u, " ")
	name, _, _ = strings.Cut(name, "(")
	bytes := map[string]int{"TINYINT": 1, "SMALLINT": 2, "MEDIUMINT": 3, "INT": 4, "INTEGER": 4}[name]
	if bytes == 0 { // BIGINT, or not an integer
		return math.MaxInt64
	}
	bits := 8*bytes - 1
	if strings.Contains(u, "UNSIGNED") {
		bits++
	}
	return 1<<bits - 1
}
