// Package codec moves rows from PostgreSQL's COPY text format (as produced
// by COPY ... TO STDOUT) into the input format of MariaDB's
//
//	LOAD DATA LOCAL INFILE ... CHARACTER SET binary
//	FIELDS TERMINATED BY '\t' ESCAPED BY '\\' LINES TERMINATED BY '\n'
//
// Everything here is pure and allocation-light: callers own and reuse all
// buffers, so the hot copy loop does not allocate per row.
package codec

import (
	"bytes"
	"errors"
	"slices"
)

// ErrTrailingBackslash reports a COPY line whose last byte is an unpaired
// backslash. PostgreSQL never emits one, so it means truncated or corrupt
// input; failing loudly beats silently dropping a byte of user data.
var ErrTrailingBackslash = errors.New("codec: COPY line ends in an unpaired backslash")

// emptyField is returned for empty fields when the input line is nil, so
// that an empty string is never confused with NULL (which is nil).
var emptyField = []byte{}

// NextLine splits buf at the first '\n'. line excludes the terminator and
// rest starts after it. ok is false when buf holds no complete line; then
// line and rest are nil and the caller should read more input.
//
// In COPY text output a newline inside a value is always escaped as "\n",
// so every raw '\n' is a row terminator.
func NextLine(buf []byte) (line, rest []byte, ok bool) {
	i := bytes.IndexByte(buf, '\n')
	if i < 0 {
		return nil, nil, false
	}
	return buf[:i:i], buf[i+1:], true
}

// SplitFields splits one COPY text-format line (without its trailing '\n')
// into fields, appending them to fields[:0] and returning the result.
//
// A field that is exactly `\N` is NULL and is returned as nil; every other
// field, including the empty string, is non-nil. Escapes are decoded the
// way PostgreSQL's COPY FROM does: \\ \b \f \n \r \t \v, \ddd (1-3 octal
// digits, taken modulo 256), \xh or \xhh (hex), and a backslash before any
// other byte (including a raw tab) stands for that byte.
//
// Fields without a backslash are subslices of line (no copy). Fields that
// needed decoding live in scratch, which is reset to scratch[:0], grown as
// needed and returned for reuse. Returned fields therefore stay valid only
// while line is unchanged and until scratch is passed to the next call.
// Every field is capped (len == cap), so appending to one cannot clobber its
// neighbours.
func SplitFields(line []byte, fields [][]byte, scratch []byte) ([][]byte, []byte, error) {
	fields = fields[:0]
	scratch = scratch[:0]
	for {
		end := bytes.IndexByte(line, '\t')
		field := line
		if end >= 0 {
			field = line[:end]
		}
		switch {
		case bytes.IndexByte(field, '\\') < 0:
			// Fast path: nothing to decode, hand out the input itself.
			if field == nil {
				field = emptyField
			}
			fields = append(fields, field[:len(field):len(field)])
		case len(field) == 2 && field[1] == 'N':
			fields = append(fields, nil)
		default:
			// The decoded field is never longer than the rest of the line,
			// so one grow per line suffices; earlier fields keep pointing at
			// the old array if a grow moves it, which is still correct.
			scratch = slices.Grow(scratch, len(line))
			start := len(scratch)
			var n int
			var err error
			scratch, n, err = decodeField(scratch, line)
			if err != nil {
				return fields, scratch, err
			}
			fields = append(fields, scratch[start:len(scratch):len(scratch)])
			// An escaped tab means the field may extend past end.
			if n < len(line) {
				end = n
			} else {
				end = -1
			}
		}
		if end < 0 {
			return fields, scratch, nil
		}
		line = line[end+1:]
	}
}

// decodeField decodes one field from the start of line up to the first
// unescaped tab (or the end), appending the value to dst. n is the number of
// bytes consumed, i.e. the index of the terminating tab or len(line).
func decodeField(dst, line []byte) (_ []byte, n int, _ error) {
	for n < len(line) {
		c := line[n]
		if c == '\t' {
			break
		}
		if c != '\\' {
			// Copy the whole literal run at once.
			j := n + 1
			for j < len(line) && line[j] != '\\' && line[j] != '\t' {
				j++
			}
			dst = append(dst, line[n:j]...)
			n = j
			continue
		}
		n++
		if n == len(line) {
			return dst, n, ErrTrailingBackslash
		}
		c = line[n]
		n++
		switch c {
		case 'b':
			c = '\b'
		case 'f':
			c = '\f'
		case 'n':
			c = '\n'
		case 'r':
			c = '\r'
		case 't':
			c = '\t'
		case 'v':
			c = '\v'
		case '0', '1', '2', '3', '4', '5', '6', '7':
			v := int(c - '0')
			for k := 0; k < 2 && n < len(line) && line[n] >= '0' && line[n] <= '7'; k++ {
				v = v<<3 | int(line[n]-'0')
				n++
			}
			c = byte(v) // PostgreSQL keeps the low 8 bits of \4xx-\7xx too
		case 'x':
			// Without a hex digit, "\x" is just 'x' (PostgreSQL does the same).
			if n < len(line) {
				if h, ok := unhex(line[n]); ok {
					v := h
					n++
					if n < len(line) {
						if h, ok := unhex(line[n]); ok {
							v = v<<4 | h
							n++
						}
					}
					c = v
				}
			}
		}
		dst = append(dst, c)
	}
	return dst, n, nil
}

func unhex(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	case c >= 'A' && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// Splitter wraps SplitFields with its own reusable buffers.
// The zero value is ready to use; a Splitter is not safe for concurrent use.
type Splitter struct {
	fields  [][]byte
	scratch []byte
}

// Split splits line like SplitFields. The returned slice and the decoded
// fields are valid until the next call to Split or until line changes.
func (s *Splitter) Split(line []byte) ([][]byte, error) {
	var err error
	s.fields, s.scratch, err = SplitFields(line, s.fields, s.scratch)
	return s.fields, err
}

// LOAD DATA separators matching FIELDS TERMINATED BY '\t' and
// LINES TERMINATED BY '\n'.
const (
	FieldSeparator = '\t'
	RowTerminator  = '\n'
)

// loadDataEscape maps each byte that must be escaped for LOAD DATA to the
// letter following the backslash; 0 means "write raw". The separators and
// the escape char must be escaped to stay unambiguous; NUL is written as \0
// as MariaDB's own SELECT ... INTO OUTFILE does.
var loadDataEscape = [256]byte{
	'\\': '\\',
	'\t': 't',
	'\n': 'n',
	'\r': 'r',
	0:    '0',
}

// AppendLoadDataField appends v encoded as one LOAD DATA field (without a
// separator) and returns the extended buffer. nil is SQL NULL and becomes
// `\N`; an empty non-nil slice is the empty string. Backslash, tab, newline,
// carriage return and NUL are backslash-escaped; every other byte is written
// raw, so arbitrary binary data (bytea) survives with CHARACTER SET binary.
func AppendLoadDataField(dst, v []byte) []byte {
	if v == nil {
		return append(dst, '\\', 'N')
	}
	start := 0
	for i, c := range v {
		if e := loadDataEscape[c]; e != 0 {
			dst = append(dst, v[start:i]...)
			dst = append(dst, '\\', e)
			start = i + 1
		}
	}
	// Fast path: with nothing to escape this is the only append.
	return append(dst, v[start:]...)
}

// AppendLoadDataRow appends fields as one complete LOAD DATA row: encoded
// fields joined by FieldSeparator and terminated by RowTerminator.
//
// A row of zero fields is an empty line, just as in COPY text format; the
// format cannot tell it from a row holding one empty string.
func AppendLoadDataRow(dst []byte, fields [][]byte) []byte {
	for i, f := range fields {
		if i > 0 {
			dst = append(dst, FieldSeparator)
		}
		dst = AppendLoadDataField(dst, f)
	}
	return append(dst, RowTerminator)
}
