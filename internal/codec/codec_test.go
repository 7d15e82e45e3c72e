package codec

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"unsafe"
)

// pgEncode is a test-side COPY TO text encoder: PostgreSQL escapes the
// backslash, the delimiter, newline, CR and \b \f \v; NULL is \N.
func pgEncode(fields [][]byte) []byte {
	var out []byte
	for i, f := range fields {
		if i > 0 {
			out = append(out, '\t')
		}
		if f == nil {
			out = append(out, `\N`...)
			continue
		}
		for _, c := range f {
			switch c {
			case '\\':
				out = append(out, `\\`...)
			case '\t':
				out = append(out, `\t`...)
			case '\n':
				out = append(out, `\n`...)
			case '\r':
				out = append(out, `\r`...)
			case '\b':
				out = append(out, `\b`...)
			case '\f':
				out = append(out, `\f`...)
			case '\v':
				out = append(out, `\v`...)
			default:
				out = append(out, c)
			}
		}
	}
	return out
}

// pgEncodeOdd encodes like pgEncode but spells bytes with the escapes COPY
// FROM accepts and COPY TO never writes: \ooo, \xhh and \ plus a literal.
func pgEncodeOdd(r *rand.Rand, fields [][]byte) []byte {
	var out []byte
	for i, f := range fields {
		if i > 0 {
			out = append(out, '\t')
		}
		if f == nil {
			out = append(out, `\N`...)
			continue
		}
		for _, c := range f {
			switch r.IntN(4) {
			case 0:
				out = fmt.Appendf(out, `\%03o`, c)
			case 1:
				out = fmt.Appendf(out, `\x%02x`, c)
			case 2:
				if !strings.ContainsRune(`0123456789bfnrtvxN`, rune(c)) {
					out = append(out, '\\', c) // covers escaped raw tab/newline too
					break
				}
				fallthrough
			default:
				out = append(out, pgEncode([][]byte{{c}})...)
			}
		}
	}
	return out
}

// refSplit is a byte-at-a-time transcription of PostgreSQL's
// CopyReadAttributesText, used as an oracle for SplitFields.
func refSplit(line []byte) ([][]byte, error) {
	var fields [][]byte
	i := 0
	for {
		start := i
		out := []byte{}
		delim := false
		for i < len(line) {
			c := line[i]
			i++
			if c == '\t' {
				delim = true
				break
			}
			if c == '\\' {
				if i >= len(line) {
					return nil, ErrTrailingBackslash
				}
				c = line[i]
				i++
				switch c {
				case '0', '1', '2', '3', '4', '5', '6', '7':
					v := int(c - '0')
					if i < len(line) && line[i] >= '0' && line[i] <= '7' {
						v = v*8 + int(line[i]-'0')
						i++
						if i < len(line) && line[i] >= '0' && line[i] <= '7' {
							v = v*8 + int(line[i]-'0')
							i++
						}
					}
					c = byte(v & 0377)
				case 'x':
					if i < len(line) {
						if h, ok := unhex(line[i]); ok {
							i++
							if i < len(line) {
								if h2, ok := unhex(line[i]); ok {
									h = h<<4 + h2
									i++
								}
							}
							c = h
						}
					}
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
				}
			}
			out = append(out, c)
		}
		raw := line[start:i]
		if delim {
			raw = raw[:len(raw)-1]
		}
		if string(raw) == `\N` {
			out = nil
		}
		fields = append(fields, out)
		if !delim {
			return fields, nil
		}
	}
}

// mariaDecode reads LOAD DATA input (FIELDS TERMINATED BY '\t' ESCAPED BY
// '\\' LINES TERMINATED BY '\n') the way MariaDB's READ_INFO does: a field
// is NULL when it is exactly `\N`.
func mariaDecode(t testing.TB, data []byte) [][][]byte {
	t.Helper()
	var rows [][][]byte
	var row [][]byte
	field := []byte{}
	null := false
	for i := 0; i < len(data); i++ {
		c := data[i]
		switch c {
		case '\\':
			i++
			if i == len(data) {
				t.Fatalf("LOAD DATA input ends in a backslash: %q", data)
			}
			c = data[i]
			switch c {
			case 'n':
				c = '\n'
			case 't':
				c = '\t'
			case 'r':
				c = '\r'
			case 'b':
				c = '\b'
			case '0':
				c = 0
			case 'Z':
				c = 032
			case 'N':
				null = len(field) == 0
			}
			if c != 'N' {
				null = false
			}
			field = append(field, c)
			continue
		case '\t', '\n':
			if null && len(field) == 1 {
				field = nil
			}
			row = append(row, field)
			field, null = []byte{}, false
			if c == '\n' {
				rows = append(rows, row)
				row = nil
			}
			continue
		}
		null = false
		field = append(field, c)
	}
	if len(field) != 0 || row != nil {
		t.Fatalf("LOAD DATA input lacks a final row terminator: %q", data)
	}
	return rows
}

func sameFields(a, b [][]byte) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if (a[i] == nil) != (b[i] == nil) || !bytes.Equal(a[i], b[i]) {
			return false
		}
	}
	return true
}

func show(fields [][]byte) string {
	var sb strings.Builder
	sb.WriteByte('[')
	for i, f := range fields {
		if i > 0 {
			sb.WriteByte(' ')
		}
		if f == nil {
			sb.WriteString("NULL")
		} else {
			fmt.Fprintf(&sb, "%q", f)
		}
	}
	sb.WriteByte(']')
	return sb.String()
}

func bs(s string) []byte { return []byte(s) }

func TestSplitFields(t *testing.T) {
	tests := []struct {
		line string
		want [][]byte
	}{
		{``, [][]byte{bs("")}},
		{"\t", [][]byte{bs(""), bs("")}},
		{"a\tbc\t", [][]byte{bs("a"), bs("bc"), bs("")}},
		{`\N`, [][]byte{nil}},
		{"\\N\t\t\\N", [][]byte{nil, bs(""), nil}},
		{`\\N`, [][]byte{bs(`\N`)}},
		{`a\Nb`, [][]byte{bs("aNb")}},
		{`\NN`, [][]byte{bs("NN")}},
		{`N`, [][]byte{bs("N")}},
		{`\\`, [][]byte{bs(`\`)}},
		{`\b`, [][]byte{bs("\b")}},
		{`\f`, [][]byte{bs("\f")}},
		{`\n`, [][]byte{bs("\n")}},
		{`\r`, [][]byte{bs("\r")}},
		{`\t`, [][]byte{bs("\t")}},
		{`\v`, [][]byte{bs("\v")}},
		{`\0`, [][]byte{bs("\x00")}},
		{`\7x`, [][]byte{bs("\x07x")}},
		{`\12`, [][]byte{bs("\n")}},
		{`\101`, [][]byte{bs("A")}},
		{`\1011`, [][]byte{bs("A1")}},
		{`\18`, [][]byte{bs("\x018")}},
		{`\377`, [][]byte{bs("\xff")}},
		{`\777`, [][]byte{bs("\xff")}}, // low 8 bits, as PostgreSQL
		{`\400`, [][]byte{bs("\x00")}},
		{`\x41`, [][]byte{bs("A")}},
		{`\xfF`, [][]byte{bs("\xff")}},
		{`\x4`, [][]byte{bs("\x04")}},
		{`\x4g`, [][]byte{bs("\x04g")}},
		{`\x414`, [][]byte{bs("A4")}},
		{`\xg`, [][]byte{bs("xg")}},
		{`\x`, [][]byte{bs("x")}},
		{`\q\.\"\'`, [][]byte{bs(`q."'`)}},
		{"a\\\tb\tc", [][]byte{bs("a\tb"), bs("c")}}, // backslash + raw tab is data
		{"\\\\\tx", [][]byte{bs(`\`), bs("x")}},
		{"x\\t\\\\\tplain\t\\N\t", [][]byte{bs("x\t\\"), bs("plain"), nil, bs("")}},
		{"\x00\xff\x80\r", [][]byte{bs("\x00\xff\x80\r")}}, // raw bytes pass through
	}
	for _, tt := range tests {
		got, _, err := SplitFields(bs(tt.line), nil, nil)
		if err != nil {
			t.Errorf("SplitFields(%q): %v", tt.line, err)
			continue
		}
		if !sameFields(got, tt.want) {
			t.Errorf("SplitFields(%q) = %s, want %s", tt.line, show(got), show(tt.want))
		}
		ref, err := refSplit(bs(tt.line))
		if err != nil || !sameFields(ref, tt.want) {
			t.Errorf("refSplit(%q) = %s, %v; test table is wrong", tt.line, show(ref), err)
		}
	}
}

func TestSplitFieldsNilLine(t *testing.T) {
	got, _, err := SplitFields(nil, nil, nil)
	if err != nil || len(got) != 1 || got[0] == nil || len(got[0]) != 0 {
		t.Fatalf("SplitFields(nil) = %s, %v; want one empty non-NULL field", show(got), err)
	}
}

func TestSplitFieldsTrailingBackslash(t *testing.T) {
	for _, line := range []string{`\`, `ab\`, "a\t\\", `\\\`, "\\N\t\\"} {
		_, _, err := SplitFields(bs(line), nil, nil)
		if !errors.Is(err, ErrTrailingBackslash) {
			t.Errorf("SplitFields(%q) error = %v, want ErrTrailingBackslash", line, err)
		}
	}
}

func TestSplitFieldsAliasing(t *testing.T) {
	line := bs("plain\tesc\\taped\tlast")
	fields, scratch, err := SplitFields(line, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	// Fast-path fields must point into line, decoded ones into scratch.
	if unsafe.SliceData(fields[0]) != &line[0] || unsafe.SliceData(fields[2]) != &line[16] {
		t.Error("field without backslash was copied")
	}
	if unsafe.SliceData(fields[1]) != unsafe.SliceData(scratch) {
		t.Error("decoded field does not live in scratch")
	}
	for i, f := range fields {
		if len(f) != cap(f) {
			t.Errorf("field %d has len %d cap %d; appending would clobber neighbours", i, len(f), cap(f))
		}
	}
}

func TestSplitFieldsNoAllocs(t *testing.T) {
	line := bs("1\tJohn \\\\ Smith\t\\N\tline1\\nline2\t2024-01-02")
	var sp Splitter
	if _, err := sp.Split(line); err != nil {
		t.Fatal(err)
	}
	allocs := testing.AllocsPerRun(100, func() {
		if _, err := sp.Split(line); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("Splitter.Split allocates %v times per line once warm", allocs)
	}
}

func TestNextLine(t *testing.T) {
	buf := bs("a\tb\n\nc")
	line, rest, ok := NextLine(buf)
	if !ok || string(line) != "a\tb" || string(rest) != "\nc" {
		t.Fatalf("NextLine = %q, %q, %v", line, rest, ok)
	}
	line, rest, ok = NextLine(rest)
	if !ok || string(line) != "" || string(rest) != "c" {
		t.Fatalf("NextLine = %q, %q, %v", line, rest, ok)
	}
	if _, _, ok = NextLine(rest); ok {
		t.Fatal("NextLine found a line without a terminator")
	}
}

func TestAppendLoadDataField(t *testing.T) {
	tests := []struct {
		in   []byte
		want string
	}{
		{nil, `\N`},
		{bs(""), ``},
		{bs("plain text"), `plain text`},
		{bs(`\N`), `\\N`},
		{bs("N"), `N`},
		{bs(`a\b`), `a\\b`},
		{bs("\t"), `\t`},
		{bs("\n"), `\n`},
		{bs("\r"), `\r`},
		{bs("\x00"), `\0`},
		{bs("\\\t\n\r\x00"), `\\\t\n\r\0`},
		{bs("x\x00y\x1a\b\f\v\xff\x80z"), "x\\0y\x1a\b\f\v\xff\x80z"},
	}
	for _, tt := range tests {
		got := AppendLoadDataField(bs("pre"), tt.in)
		if string(got) != "pre"+tt.want {
			t.Errorf("AppendLoadDataField(%q) = %q, want %q", tt.in, got[3:], tt.want)
		}
	}
}

func TestAppendLoadDataRow(t *testing.T) {
	got := AppendLoadDataRow(nil, [][]byte{nil, bs(""), bs("a\tb"), bs(`\`)})
	if want := "\\N\t\ta\\tb\t\\\\\n"; string(got) != want {
		t.Errorf("AppendLoadDataRow = %q, want %q", got, want)
	}
}

// randomRow builds a row biased towards bytes that need escaping.
func randomRow(r *rand.Rand) [][]byte {
	const special = "\\\t\n\r\b\f\v\x00N.x0178"
	row := make([][]byte, 1+r.IntN(6))
	for i := range row {
		if r.IntN(5) == 0 {
			continue // NULL
		}
		f := make([]byte, r.IntN(12))
		for j := range f {
			if r.IntN(2) == 0 {
				f[j] = special[r.IntN(len(special))]
			} else {
				f[j] = byte(r.Uint32())
			}
		}
		row[i] = f
	}
	return row
}

func TestRoundTripCopyText(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	var fields [][]byte
	var scratch []byte
	var err error
	for range 20000 {
		row := randomRow(r)
		for _, line := range [][]byte{pgEncode(row), pgEncodeOdd(r, row)} {
			fields, scratch, err = SplitFields(line, fields, scratch)
			if err != nil || !sameFields(fields, row) {
				t.Fatalf("SplitFields(%q) = %s, %v; want %s", line, show(fields), err, show(row))
			}
		}
	}
}

func TestRoundTripLoadData(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	var rows [][][]byte
	var buf []byte
	for range 20000 {
		row := randomRow(r)
		rows = append(rows, row)
		buf = AppendLoadDataRow(buf, row)
	}
	got := mariaDecode(t, buf)
	if len(got) != len(rows) {
		t.Fatalf("decoded %d rows, want %d", len(got), len(rows))
	}
	for i := range rows {
		if !sameFields(got[i], rows[i]) {
			t.Fatalf("row %d: decoded %s, want %s", i, show(got[i]), show(rows[i]))
		}
	}
}

func FuzzSplitFields(f *testing.F) {
	for _, s := range []string{"", "\t", `\N`, "a\tb\\tc\t\\N", `\x4g\101\777\\`, "a\\\tb", `\`, "\\N\t\\x"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		got, scratch, err := SplitFields(line, nil, nil)
		want, wantErr := refSplit(line)
		if (err != nil) != (wantErr != nil) {
			t.Fatalf("SplitFields(%q) error = %v, reference error = %v", line, err, wantErr)
		}
		if err != nil {
			return
		}
		if !sameFields(got, want) {
			t.Fatalf("SplitFields(%q) = %s, reference %s", line, show(got), show(want))
		}
		// Reusing buffers must not change the answer.
		again, _, err := SplitFields(line, got[:0:0], scratch)
		if err != nil || !sameFields(again, want) {
			t.Fatalf("SplitFields(%q) with reused scratch = %s, %v", line, show(again), err)
		}
		// Canonical re-encoding must round-trip.
		re := pgEncode(want)
		back, _, err := SplitFields(re, nil, nil)
		if err != nil || !sameFields(back, want) {
			t.Fatalf("re-encoded %q split to %s, %v; want %s", re, show(back), err, show(want))
		}
		// And so must the LOAD DATA encoding.
		rows := mariaDecode(t, AppendLoadDataRow(nil, want))
		if len(rows) != 1 || !sameFields(rows[0], want) {
			t.Fatalf("LOAD DATA round trip of %s gave %v", show(want), rows)
		}
	})
}

func BenchmarkSplitAndEncode(b *testing.B) {
	line := []byte("1234567\tJohn O'Reilly\tjohn@example.com\t2024-01-02 03:04:05.123456\tfirst line\\nsecond\\tcolumn")
	var sp Splitter
	var out []byte
	b.SetBytes(int64(len(line)))
	b.ReportAllocs()
	for b.Loop() {
		fields, err := sp.Split(line)
		if err != nil {
			b.Fatal(err)
		}
		out = AppendLoadDataRow(out[:0], fields)
	}
}

func BenchmarkSplitAndEncodePlain(b *testing.B) {
	line := []byte("1234567\tJohn O'Reilly\tjohn@example.com\t2024-01-02 03:04:05.123456\t\\N")
	var sp Splitter
	var out []byte
	b.SetBytes(int64(len(line)))
	b.ReportAllocs()
	for b.Loop() {
		fields, err := sp.Split(line)
		if err != nil {
			b.Fatal(err)
		}
		out = AppendLoadDataRow(out[:0], fields)
	}
}
