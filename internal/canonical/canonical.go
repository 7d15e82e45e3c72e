// Package canonical turns column values into canonical bytes so that the
// verifier can compare what sluice wrote (already in MariaDB's input text
// form) with what MariaDB returns over the text protocol: values that mean
// the same must canonicalise to identical bytes, and different values must
// not.
//
// A canonical value is one tag byte (NULL or not) followed, for non-NULL
// values, by the normalised text. The tag keeps SQL NULL distinct from every
// string, including the empty one; use Value or Format to look inside.
package canonical

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
)

// Kind says how values of a column are normalised before comparison.
type Kind int

const (
	Exact      Kind = iota // bytes as is (text, varchar, enum, lowercase uuid, inet, interval text)
	Integer                // decimal integer text; "-0" == "0", leading zeros dropped
	Decimal                // "1.500" == "1.5"; "-0.00" == "0"; "10" == "10.000"; no exponents
	Float32                // parsed as float32, printed shortest round-trip; -0 == 0
	Float64                // parsed as float64, printed shortest round-trip; -0 == 0
	Bool                   // "t"/"true"/"1" and "f"/"false"/"0", any letter case
	PaddedChar             // CHAR(n): trailing spaces (0x20) are not significant
	Bytes                  // raw bytes (bytea), exact
	Date                   // "YYYY-MM-DD", exact after a shape check
	Time                   // "[-]HH:MM:SS[.ffffff]": trailing fraction zeros and a bare dot dropped
	Timestamp              // "YYYY-MM-DD HH:MM:SS[.ffffff]"; also 'T' and a UTC suffix "Z"/"+00"/"+00:00"
	JSON                   // compact, object keys sorted, numbers normalised, strings unescaped
	Lower                  // ASCII case-insensitive (uuid text): lowercased
	Number                 // a Decimal, or a FLOAT/DOUBLE's text ("1e20"): an integer or decimal mapped to a float type compares at the source's precision
	numKinds
)

var kindNames = [numKinds]string{
	"Exact", "Integer", "Decimal", "Float32", "Float64", "Bool", "PaddedChar",
	"Bytes", "Date", "Time", "Timestamp", "JSON", "Lower", "Number",
}

// String returns the constant's name, e.g. "Timestamp".
func (k Kind) String() string {
	if k >= 0 && k < numKinds {
		return kindNames[k]
	}
	return "Kind(" + strconv.Itoa(int(k)) + ")"
}

// Tag bytes opening every canonical value.
const (
	nullTag  = 'N'
	valueTag = '='
)

// ValueError reports a value that is not valid text for its kind.
type ValueError struct {
	Kind   Kind
	Value  string // possibly shortened
	Reason string // e.g. "is not a time"
}

func (e *ValueError) Error() string {
	return "canonical: " + strconv.Quote(e.Value) + " " + e.Reason
}

// maxErrValue bounds how much of a bad value an error quotes, so a broken
// multi-megabyte JSON document does not flood the log.
const maxErrValue = 64

func valueErr(k Kind, v []byte, reason string) error {
	s := string(v)
	if len(s) > maxErrValue {
		s = s[:maxErrValue] + "..."
	}
	return &ValueError{Kind: k, Value: s, Reason: reason}
}

// KeyForm is a row key value (source text) in one form per value the
// source and the target take as equal, for hashing keys: the numeric 1.0
// and 1.00, the float 0 and -0, the bpchar 'a' and 'a '. Other kinds
// keep their text, which the source prints in one form already (its
// sessions are pinned), so hashes of those stay what they were; a value
// the kind cannot read keeps its text too.
func KeyForm(k Kind, v []byte) []byte {
	switch k {
	case Decimal, Float32, Float64, PaddedChar:
		if c, err := Append(nil, k, v); err == nil {
			return c
		}
	}
	return v
}

// Append appends the canonical form of v, a value of kind k, to dst.
// v == nil is SQL NULL and yields a form no non-NULL value can have.
// On error dst is returned unchanged and the error says what is wrong.
func Append(dst []byte, k Kind, v []byte) ([]byte, error) {
	if k < 0 || k >= numKinds {
		return dst, fmt.Errorf("canonical: unknown kind %v", k)
	}
	if v == nil {
		return append(dst, nullTag), nil
	}
	start := len(dst)
	dst = append(dst, valueTag)
	var err error
	switch k {
	case Exact, Bytes:
		dst = append(dst, v...)
	case Integer:
		dst, err = appendInteger(dst, v)
	case Decimal:
		dst, err = appendDecimal(dst, v)
	case Float32:
		dst, err = appendFloat(dst, v, 32)
	case Float64:
		dst, err = appendFloat(dst, v, 64)
	case Bool:
		dst, err = appendBool(dst, v)
	case PaddedChar:
		dst = append(dst, bytes.TrimRight(v, " ")...)
	case Date:
		if !isDate(v) {
			err = valueErr(Date, v, "is not a date")
		}
		dst = append(dst, v...)
	case Time:
		dst, err = appendTime(dst, v)
	case Timestamp:
		dst, err = appendTimestamp(dst, v)
	case JSON:
		dst, err = appendJSON(dst, v)
	case Lower:
		dst = appendLower(dst, v)
	case Number:
		dst, err = appendNumber(dst, v)
	}
	if err != nil {
		return dst[:start], err
	}
	return dst, nil
}

// Equal reports whether a and b, both of kind k, canonicalise identically.
func Equal(k Kind, a, b []byte) (bool, error) {
	var bufA, bufB [64]byte // avoids allocating for ordinary values
	ca, err := Append(bufA[:0], k, a)
	if err != nil {
		return false, err
	}
	cb, err := Append(bufB[:0], k, b)
	if err != nil {
		return false, err
	}
	return bytes.Equal(ca, cb), nil
}

// Value returns the normalised text inside one canonical value (as made by
// Append): nil for NULL, a non-nil slice otherwise.
func Value(canon []byte) []byte {
	if len(canon) == 0 || canon[0] != valueTag {
		return nil
	}
	return canon[1:len(canon):len(canon)]
}

// Format renders one canonical value for humans: NULL or a quoted string.
func Format(canon []byte) string {
	v := Value(canon)
	if v == nil {
		return "NULL"
	}
	return strconv.Quote(string(v))
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

func allDigits(s []byte) bool {
	for _, c := range s {
		if !isDigit(c) {
			return false
		}
	}
	return true
}

func appendInteger(dst, v []byte) ([]byte, error) {
	s, neg := v, false
	if len(s) > 0 && (s[0] == '-' || s[0] == '+') {
		neg, s = s[0] == '-', s[1:]
	}
	if len(s) == 0 || !allDigits(s) {
		return dst, valueErr(Integer, v, "is not an integer")
	}
	for len(s) > 1 && s[0] == '0' {
		s = s[1:]
	}
	if neg && s[0] != '0' { // "-0" is "0"
		dst = append(dst, '-')
	}
	return append(dst, s...), nil
}

func appendDecimal(dst, v []byte) ([]byte, error) {
	s, neg := v, false
	if len(s) > 0 && (s[0] == '-' || s[0] == '+') {
		neg, s = s[0] == '-', s[1:]
	}
	intPart, frac, _ := bytes.Cut(s, []byte{'.'})
	if len(intPart)+len(frac) == 0 || !allDigits(intPart) || !allDigits(frac) {
		return dst, valueErr(Decimal, v, "is not a decimal")
	}
	return appendDigits(dst, neg, intPart, frac, len(intPart), false), nil
}

// appendNumber reads exponent notation, which only a float column prints, as
// the float64 it is and writes that plainly: the shortest decimal that reads
// back as the same float. A decimal value that did not survive the trip to
// the float column (9007199254740993 stored as 9007199254740992) differs.
// PostgreSQL's numeric NaN and ±Infinity (which no MariaDB column holds)
// keep their own forms, so such a source row shows as a difference.
func appendNumber(dst, v []byte) ([]byte, error) {
	switch string(v) {
	case "NaN", "Infinity", "-Infinity":
		return append(dst, v...), nil
	}
	if bytes.ContainsAny(v, "eE") {
		f, err := strconv.ParseFloat(string(v), 64)
		if err != nil || math.IsInf(f, 0) {
			return dst, valueErr(Number, v, "is not a number")
		}
		v = strconv.AppendFloat(nil, f, 'f', -1, 64)
	}
	out, err := appendDecimal(dst, v)
	if err != nil {
		return dst, valueErr(Number, v, "is not a number")
	}
	return out, nil
}

// appendDigits writes the number whose digits are intPart followed by frac,
// with the decimal point after the first point digits (point may lie outside
// the digits), in plain notation without redundant zeros. With sci set,
// far-out points use d.ddde±N instead, so a tiny JSON text like 1e999999
// cannot expand to a megabyte; the choice depends only on the value, so it
// stays canonical. Decimal passes sci=false: its input has no exponent, so
// plain output is never longer than the input.
func appendDigits(dst []byte, neg bool, intPart, frac []byte, point int, sci bool) []byte {
	// Trim leading zeros (they shift the point) and trailing zeros.
	for len(intPart) > 0 && intPart[0] == '0' {
		intPart, point = intPart[1:], point-1
	}
	if len(intPart) == 0 {
		for len(frac) > 0 && frac[0] == '0' {
			frac, point = frac[1:], point-1
		}
	}
	if len(frac) > 0 {
		frac = bytes.TrimRight(frac, "0")
		if len(frac) == 0 {
			intPart = bytes.TrimRight(intPart, "0")
		}
	} else {
		intPart = bytes.TrimRight(intPart, "0")
	}
	n := len(intPart) + len(frac)
	if n == 0 {
		return append(dst, '0') // any zero, signed or not
	}
	if neg {
		dst = append(dst, '-')
	}
	// digit(i) returns the i-th significant digit.
	digit := func(i int) byte {
		if i < len(intPart) {
			return intPart[i]
		}
		return frac[i-len(intPart)]
	}
	const maxShift = 64
	switch {
	case sci && (point < -maxShift || point > n+maxShift):
		dst = append(dst, digit(0))
		if n > 1 {
			dst = append(dst, '.')
			for i := 1; i < n; i++ {
				dst = append(dst, digit(i))
			}
		}
		dst = append(dst, 'e')
		return strconv.AppendInt(dst, int64(point-1), 10)
	case point <= 0:
		dst = append(dst, '0', '.')
		for range -point {
			dst = append(dst, '0')
		}
		point = 0
	}
	for i := range n {
		if i == point && i > 0 {
			dst = append(dst, '.')
		}
		dst = append(dst, digit(i))
	}
	for i := n; i < point; i++ {
		dst = append(dst, '0')
	}
	return dst
}

func appendFloat(dst, v []byte, bits int) ([]byte, error) {
	k := Float64
	if bits == 32 {
		k = Float32
	}
	f, err := strconv.ParseFloat(string(v), bits)
	if err != nil {
		if errors.Is(err, strconv.ErrRange) {
			return dst, valueErr(k, v, "is out of range for "+k.String())
		}
		return dst, valueErr(k, v, "is not a floating-point number")
	}
	if f == 0 {
		f = 0 // -0 compares equal to 0 in SQL
	}
	return strconv.AppendFloat(dst, f, 'g', -1, bits), nil
}

func appendBool(dst, v []byte) ([]byte, error) {
	switch {
	case bytes.EqualFold(v, []byte("t")), bytes.EqualFold(v, []byte("true")), string(v) == "1":
		return append(dst, '1'), nil
	case bytes.EqualFold(v, []byte("f")), bytes.EqualFold(v, []byte("false")), string(v) == "0":
		return append(dst, '0'), nil
	}
	return dst, valueErr(Bool, v, "is not a boolean")
}

func appendLower(dst, v []byte) []byte {
	start := len(dst)
	dst = append(dst, v...)
	for i := start; i < len(dst); i++ {
		if c := dst[i]; c >= 'A' && c <= 'Z' {
			dst[i] = c + ('a' - 'A')
		}
	}
	return dst
}

// isDate checks the YYYY-MM-DD shape (MariaDB's zero date included).
func isDate(v []byte) bool {
	return len(v) == 10 && v[4] == '-' && v[7] == '-' &&
		allDigits(v[:4]) && allDigits(v[5:7]) && allDigits(v[8:])
}

// clock parses "HH:MM:SS[.fff]" with at least minHour hour digits at the
// start of v. It returns the length of "HH:MM:SS", the fraction digits with
// trailing zeros removed, and the length consumed; ok is false on bad shape.
func clock(v []byte, minHour, maxHour int) (whole int, frac []byte, n int, ok bool) {
	h := 0
	for h < len(v) && isDigit(v[h]) {
		h++
	}
	if h < minHour || h > maxHour || len(v) < h+6 ||
		v[h] != ':' || !allDigits(v[h+1:h+3]) || v[h+3] != ':' || !allDigits(v[h+4:h+6]) {
		return 0, nil, 0, false
	}
	whole, n = h+6, h+6
	if n < len(v) && v[n] == '.' {
		n++
		f := n
		for n < len(v) && isDigit(v[n]) {
			n++
		}
		frac = bytes.TrimRight(v[f:n], "0")
	}
	return whole, frac, n, true
}

func appendClock(dst, v []byte, whole int, frac []byte) []byte {
	dst = append(dst, v[:whole]...)
	if len(frac) > 0 {
		dst = append(dst, '.')
		dst = append(dst, frac...)
	}
	return dst
}

func appendTime(dst, v []byte) ([]byte, error) {
	s, neg := v, false
	if len(s) > 0 && s[0] == '-' { // MariaDB TIME may be negative
		neg, s = true, s[1:]
	}
	// MariaDB TIME hours reach 838; PostgreSQL's never exceed 24.
	whole, frac, n, ok := clock(s, 2, 3)
	if !ok || n != len(s) {
		return dst, valueErr(Time, v, "is not a time")
	}
	if neg && (len(frac) > 0 || bytes.ContainsFunc(s[:whole], func(r rune) bool { return r >= '1' && r <= '9' })) {
		dst = append(dst, '-') // but "-00:00:00" is just midnight
	}
	return appendClock(dst, s, whole, frac), nil
}

func appendTimestamp(dst, v []byte) ([]byte, error) {
	if len(v) < 11 || !isDate(v[:10]) || (v[10] != ' ' && v[10] != 'T') {
		return dst, valueErr(Timestamp, v, "is not a timestamp")
	}
	whole, frac, n, ok := clock(v[11:], 2, 2)
	if !ok {
		return dst, valueErr(Timestamp, v, "is not a timestamp")
	}
	switch zone := string(v[11+n:]); zone {
	case "", "Z", "+00", "+00:00":
	default:
		if zone[0] == '+' || zone[0] == '-' {
			return dst, valueErr(Timestamp, v, "has a non-UTC offset")
		}
		return dst, valueErr(Timestamp, v, "is not a timestamp")
	}
	dst = append(dst, v[:10]...)
	dst = append(dst, ' ')
	return appendClock(dst, v[11:], whole, frac), nil
}

func appendJSON(dst, v []byte) ([]byte, error) {
	dec := json.NewDecoder(bytes.NewReader(v))
	dec.UseNumber()
	doc, err := decodeJSON(dec, false)
	if err != nil {
		return dst, valueErr(JSON, v, "is not valid JSON: "+err.Error())
	}
	if _, err := dec.Token(); err != io.EOF {
		return dst, valueErr(JSON, v, "is not valid JSON: data after the top-level value")
	}
	return appendJSONValue(dst, doc), nil
}

// jsonObject is an object's members in the order written. Unlike a map it
// keeps a key given twice: MariaDB reads the first, jsonb keeps the last,
// so {"a":1,"a":2} must not compare equal to {"a":2}.
type jsonObject []jsonMember

type jsonMember struct {
	key string
	val any
}

// decodeJSON reads one value: nil, bool, json.Number, string, []any or
// jsonObject. Inside a container (nested) the input ending is unexpected.
func decodeJSON(dec *json.Decoder, nested bool) (any, error) {
	tok, err := token(dec, nested)
	if err != nil {
		return nil, err
	}
	delim, ok := tok.(json.Delim)
	if !ok {
		return tok, nil
	}
	switch delim {
	case '[':
		arr := []any{}
		for dec.More() {
			e, err := decodeJSON(dec, true)
			if err != nil {
				return nil, err
			}
			arr = append(arr, e)
		}
		_, err := token(dec, true) // ]
		return arr, err
	case '{':
		obj := jsonObject{}
		for dec.More() {
			k, err := token(dec, true)
			if err != nil {
				return nil, err
			}
			key, ok := k.(string)
			if !ok {
				return nil, fmt.Errorf("object key %v is not a string", k)
			}
			val, err := decodeJSON(dec, true)
			if err != nil {
				return nil, err
			}
			obj = append(obj, jsonMember{key, val})
		}
		_, err := token(dec, true) // }
		return obj, err
	}
	return nil, fmt.Errorf("unexpected %v", delim)
}

// token reads the next token; inside a container (nested) the input ending
// is unexpected.
func token(dec *json.Decoder, nested bool) (json.Token, error) {
	tok, err := dec.Token()
	if err == io.EOF && nested {
		err = io.ErrUnexpectedEOF
	}
	return tok, err
}

// appendJSONValue writes doc compactly with object keys sorted bytewise (a
// key given twice keeps both members, in their order). Strings are
// re-escaped minimally, so "\u0041" and "A" come out the same.
func appendJSONValue(dst []byte, doc any) []byte {
	switch x := doc.(type) {
	case nil:
		return append(dst, "null"...)
	case bool:
		return strconv.AppendBool(dst, x)
	case json.Number:
		return appendJSONNumber(dst, string(x))
	case string:
		return appendJSONString(dst, x)
	case []any:
		dst = append(dst, '[')
		for i, e := range x {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = appendJSONValue(dst, e)
		}
		return append(dst, ']')
	case jsonObject:
		sorted := slices.Clone(x)
		slices.SortStableFunc(sorted, func(a, b jsonMember) int { return strings.Compare(a.key, b.key) })
		dst = append(dst, '{')
		for i, m := range sorted {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = appendJSONString(dst, m.key)
			dst = append(dst, ':')
			dst = appendJSONValue(dst, m.val)
		}
		return append(dst, '}')
	}
	panic(fmt.Sprintf("canonical: unexpected JSON value %T", doc)) // decodeJSON never yields others
}

// appendJSONNumber normalises a number the decoder already validated
// (-?int(.frac)?([eE][+-]?exp)?): 1.50, 1.5e0 and 15E-1 all become 1.5.
func appendJSONNumber(dst []byte, num string) []byte {
	s := []byte(num)
	neg := s[0] == '-'
	if neg {
		s = s[1:]
	}
	exp := 0
	if i := bytes.IndexAny(s, "eE"); i >= 0 {
		e, err := strconv.Atoi(string(s[i+1:]))
		if err != nil || e > 1e9 || e < -1e9 {
			return append(dst, num...) // absurd exponent: keep the text
		}
		exp, s = e, s[:i]
	}
	intPart, frac, _ := bytes.Cut(s, []byte{'.'})
	return appendDigits(dst, neg, intPart, frac, len(intPart)+exp, true)
}

func appendJSONString(dst []byte, s string) []byte {
	const hexDigits = "0123456789abcdef"
	dst = append(dst, '"')
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '"' || c == '\\':
			dst = append(dst, '\\', c)
		case c == '\n':
			dst = append(dst, '\\', 'n')
		case c == '\r':
			dst = append(dst, '\\', 'r')
		case c == '\t':
			dst = append(dst, '\\', 't')
		case c < 0x20:
			dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&15])
		default:
			dst = append(dst, c)
		}
	}
	return append(dst, '"')
}

// HashRow appends an unambiguous encoding of a row to dst: each column's
// canonical value (see Append) preceded by its length as 4 big-endian bytes,
// so ("ab","c") and ("a","bc") differ. Pass the result to Sum for a digest
// and to SplitRow to show the values. On error dst is returned unchanged
// and the error names the column.
func HashRow(dst []byte, kinds []Kind, values [][]byte) ([]byte, error) {
	if len(kinds) != len(values) {
		return dst, fmt.Errorf("canonical: row has %d values for %d column kinds", len(values), len(kinds))
	}
	start := len(dst)
	for i, k := range kinds {
		at := len(dst)
		dst = append(dst, 0, 0, 0, 0)
		var err error
		dst, err = Append(dst, k, values[i])
		if err != nil {
			return dst[:start], fmt.Errorf("column %d (%v): %w", i, k, err)
		}
		binary.BigEndian.PutUint32(dst[at:], uint32(len(dst)-at-4))
	}
	return dst, nil
}

// SplitRow returns the canonical values of a row encoded by HashRow, as
// subslices of encoded (use Value or Format on each).
func SplitRow(encoded []byte) ([][]byte, error) {
	var vals [][]byte
	for len(encoded) > 0 {
		if len(encoded) < 4 {
			return vals, errors.New("canonical: truncated row encoding")
		}
		n := binary.BigEndian.Uint32(encoded)
		encoded = encoded[4:]
		if uint64(n) > uint64(len(encoded)) || n == 0 {
			return vals, errors.New("canonical: corrupt row encoding")
		}
		vals = append(vals, encoded[:n:n])
		encoded = encoded[n:]
	}
	return vals, nil
}

// Digest is a 128-bit row hash: SHA-256 truncated, stable across processes
// and machines (unlike hash/maphash), with negligible collision odds.
type Digest [16]byte

// Sum hashes a row encoding produced by HashRow.
func Sum(encoded []byte) Digest {
	full := sha256.Sum256(encoded)
	return Digest(full[:16])
}

// String returns the digest in lowercase hex.
func (d Digest) String() string { return hex.EncodeToString(d[:]) }
