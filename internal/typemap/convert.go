package typemap

import (
	"bytes"
	"encoding/hex"
	"strconv"
	"unicode/utf8"

	"github.com/sluice-db/sluice/internal/schema"
)

var (
	one  = []byte("1")
	zero = []byte("0")
)

// convertBool takes PostgreSQL's output form of a boolean (t, f), and the
// text a bool::text cast gives (true, false: key range bounds are read so).
func convertBool(v []byte) ([]byte, error) {
	switch string(v) {
	case "t", "true":
		return one, nil
	case "f", "false":
		return zero, nil
	}
	return nil, bad("%q is not a boolean", v)
}

// checkFloat32 sends a real exactly: PostgreSQL prints the shortest text that
// reads back as the same float32 (3.4028235e+38), which MariaDB parses as a
// double just above FLOAT's range; the float32's exact double form is in it.
func checkFloat32(v []byte) ([]byte, error) {
	if _, err := checkFloat(v); err != nil {
		return nil, err
	}
	f, err := strconv.ParseFloat(string(v), 32)
	if err != nil {
		return nil, bad("%q is not a real", v)
	}
	return strconv.AppendFloat(nil, f, 'g', -1, 64), nil
}

func checkFloat(v []byte) ([]byte, error) {
	switch string(v) {
	case "NaN", "Infinity", "-Infinity":
		return nil, bad("%s has no MySQL form (FLOAT/DOUBLE hold only finite numbers)", v)
	}
	return v, nil
}

// decimalChecker rejects NaN, ±Infinity and values that DECIMAL(intDigits+frac,
// frac) would round or refuse. Trailing fractional zeros are harmless.
func decimalChecker(intDigits, frac int) Converter {
	return func(v []byte) ([]byte, error) {
		s := v
		switch string(s) {
		case "NaN", "Infinity", "-Infinity":
			return nil, bad("numeric %s has no MySQL DECIMAL form", s)
		}
		if len(s) > 0 && (s[0] == '-' || s[0] == '+') {
			s = s[1:]
		}
		whole, fraction := s, []byte(nil)
		if i := bytes.IndexByte(s, '.'); i >= 0 {
			whole, fraction = s[:i], s[i+1:]
		}
		whole = bytes.TrimLeft(whole, "0")
		fraction = bytes.TrimRight(fraction, "0")
		if len(whole) > intDigits {
			return nil, bad("numeric %s has %d digits before the point; the target DECIMAL holds %d", v, len(whole), intDigits)
		}
		if len(fraction) > frac {
			return nil, bad("numeric %s has %d digits after the point; the target DECIMAL keeps %d and would round it", v, len(fraction), frac)
		}
		return v, nil
	}
}

// decodeHexBytea turns PostgreSQL's hex bytea output (\x0a0b…) into raw bytes.
func decodeHexBytea(v []byte) ([]byte, error) {
	if len(v) < 2 || v[0] != '\\' || v[1] != 'x' {
		return nil, bad("bytea value is not in hex format")
	}
	out := make([]byte, hex.DecodedLen(len(v)-2))
	if _, err := hex.Decode(out, v[2:]); err != nil {
		return nil, bad("bytea value is not valid hex: %v", err)
	}
	return out, nil
}

func maxBytes(n int) Converter {
	return func(v []byte) ([]byte, error) {
		if len(v) > n {
			return nil, bad("value of %d bytes is longer than the %d the target column holds", len(v), n)
		}
		return v, nil
	}
}

func maxChars(n int) Converter {
	return func(v []byte) ([]byte, error) {
		if len(v) > n && utf8.RuneCount(v) > n {
			return nil, bad("text of %d characters is longer than the %d the target column holds", utf8.RuneCount(v), n)
		}
		return v, nil
	}
}

func chainConv(convs ...Converter) Converter {
	return func(v []byte) ([]byte, error) {
		var err error
		for _, c := range convs {
			if v, err = c(v); err != nil {
				return nil, err
			}
		}
		return v, nil
	}
}

// checkDate accepts YYYY-MM-DD within MySQL's range (years 1000–9999 are
// documented; MariaDB stores 0001–9999). Infinity and BC dates are refused.
func checkDate(v []byte) ([]byte, error) {
	if err := checkYear(v); err != nil {
		return nil, err
	}
	return v, nil
}

func checkYear(v []byte) error {
	switch string(v) {
	case "infinity", "-infinity":
		return bad("%s has no MySQL date/time form", v)
	}
	if bytes.HasSuffix(v, []byte(" BC")) {
		return bad("%s is before year 1 AD, which MySQL cannot store", v)
	}
	if len(v) < 5 || v[4] != '-' {
		return bad("%s is outside MySQL's date range (years 0001–9999)", v)
	}
	if string(v[:4]) == "0000" {
		return bad("%s is outside MySQL's date range (years 0001–9999)", v)
	}
	return nil
}

// convertTimestamp checks the range and, for timestamptz, drops the "+00"
// that PostgreSQL prints in a UTC session: the target stores UTC DATETIME.
func convertTimestamp(withZone bool) Converter {
	return func(v []byte) ([]byte, error) {
		if err := checkYear(v); err != nil {
			return nil, err
		}
		if !withZone {
			return v, nil
		}
		return stripUTC(v)
	}
}

// stripUTC leaves out a timestamptz's zone, which the session pins to UTC.
func stripUTC(v []byte) ([]byte, error) {
	if bytes.HasSuffix(v, []byte("+00")) {
		return v[:len(v)-3], nil
	}
	return nil, bad("timestamp %s is not in UTC; the source session time zone must be UTC", v)
}

// TextForm is the conversion a value of type t needs, whatever the target
// type, for MySQL to read PostgreSQL's text as the same value: bytea's hex
// as its bytes, a boolean's t/f as 1/0, a timestamptz without its zone,
// char(n) without its padding. A column whose target type the user sets
// keeps it and drops the range checks of the type sluice would have chosen.
// nil when the text needs no change.
func TextForm(t schema.Type) Converter {
	if t.Array {
		return checkArrayJSON(t.Elem) // the JSON to_json gives, or the marker of an array with bounds
	}
	switch t.Name {
	case "bytea":
		return decodeHexBytea
	case "bool":
		return convertBool
	case "timestamptz":
		return stripUTC
	case "bpchar", "char":
		return trimPadding
	}
	return nil
}

// moneyToNumeric reads money's text form ($1,234.56 or -$1,234.56 in the
// C/en_US locales) as the numeric that money::numeric gives.
func moneyToNumeric(v []byte) ([]byte, error) {
	out := make([]byte, 0, len(v))
	for _, c := range v {
		switch {
		case c == '-' || c == '.' || (c >= '0' && c <= '9'):
			out = append(out, c)
		case c == '$' || c == ',' || c == ' ':
		default:
			return nil, bad("money value %q is not in a locale sluice reads; set lc_monetary to C on the source", v)
		}
	}
	return out, nil
}

// trimPadding drops the trailing spaces PostgreSQL pads char(n) with: they
// carry no meaning there, MariaDB strips them from CHAR anyway, and under a
// NO PAD collation a padded key would not match the stored one.
func trimPadding(v []byte) ([]byte, error) { return bytes.TrimRight(v, " "), nil }
