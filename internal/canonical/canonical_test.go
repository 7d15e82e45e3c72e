package canonical

import (
	"bytes"
	"errors"
	"slices"
	"strings"
	"testing"
)

// null stands for SQL NULL in the tables below.
const null = "\x00<NULL>"

func val(s string) []byte {
	if s == null {
		return nil
	}
	return []byte(s)
}

func TestEqualAndDiffer(t *testing.T) {
	tests := []struct {
		kind  Kind
		same  [][]string // each group canonicalises to one form
		apart []string   // all pairwise different
	}{
		{Exact, [][]string{{"abc"}}, []string{"abc", "ABC", "abc ", " abc", "", null}},
		{Integer, [][]string{{"0", "-0", "00", "+0"}, {"42", "042", "+42"}, {"-7", "-007"}},
			[]string{"0", "1", "-1", "10", "100", "9223372036854775807", "18446744073709551616", null}},
		{Decimal, [][]string{
			{"1.5", "1.50", "1.500", "01.5", "+1.5"},
			{"0", "-0", "-0.00", "0.0", ".0", "0.", "000"},
			{"10", "10.000", "10."},
			{"-0.05", "-.050", "-0.0500"},
			{"100", "100.00"},
		}, []string{"1.5", "1.05", "15", "0.15", "-1.5", "10", "1", "100", "0", "0.001", null}},
		// An integer or decimal source value against what a DOUBLE column printed.
		{Number, [][]string{
			{"9007199254740992", "9.007199254740992e15", "9007199254740992.0"},
			{"0.0000001", "1e-7", "1E-07"},
			{"100000000000000000000", "1e20"},
		}, []string{"9007199254740993", "9007199254740992", "0.1", "0.10000000000000001", "1e21", "NaN", "Infinity", "-Infinity", null}},
		{Float32, [][]string{
			{"0.1", "0.10000000149011612", "1e-1", "0.100000001"},
			{"0", "-0", "0.0", "-0.0"},
			{"3.4028235e+38", "340282350000000000000000000000000000000"},
			{"Infinity", "inf", "+Inf"},
			{"-Infinity", "-inf"},
			{"NaN", "nan"},
		}, []string{"0.1", "0.2", "0.10000001", "1", "-1", "Infinity", "-Infinity", "NaN", null}},
		{Float64, [][]string{
			{"0.1", "0.1000000000000000055511151231257827", "1e-1"},
			{"1.5", "1.50", "15e-1"},
			{"0", "-0"},
		}, []string{"0.1", "0.10000000149011612", "0.30000000000000004", "0.3", null}},
		{Bool, [][]string{{"t", "true", "1", "TRUE", "T"}, {"f", "false", "0", "False"}},
			[]string{"t", "f", null}},
		{PaddedChar, [][]string{{"ab", "ab ", "ab   "}, {"", "   "}, {" ab", " ab "}},
			[]string{"ab", " ab", "ab\t", "ab\n", "", "Ab", null}},
		{Bytes, [][]string{{"\x00\xff"}},
			[]string{"\x00", "\x00\x00", "", "N", "=", "\xff", "a", "A", null}},
		{Date, [][]string{{"2024-01-02"}}, []string{"2024-01-02", "2024-01-03", "0000-00-00", null}},
		{Time, [][]string{
			{"10:00:00.500000", "10:00:00.5", "10:00:00.50"},
			{"10:00:00.000000", "10:00:00", "10:00:00."},
			{"00:00:00", "-00:00:00", "-00:00:00.000"},
			{"-838:59:59", "-838:59:59.0"},
		}, []string{"10:00:00", "10:00:00.5", "10:00:00.05", "-10:00:00", "24:00:00", "838:59:59", null}},
		{Timestamp, [][]string{
			{"2024-01-02 03:04:05.120000", "2024-01-02 03:04:05.12+00", "2024-01-02T03:04:05.12Z",
				"2024-01-02 03:04:05.12+00:00", "2024-01-02 03:04:05.12"},
			{"2024-01-02 03:04:05", "2024-01-02 03:04:05.000000", "2024-01-02 03:04:05.", "2024-01-02T03:04:05+00"},
		}, []string{"2024-01-02 03:04:05", "2024-01-02 03:04:05.12", "2024-01-02 03:04:05.012",
			"2024-01-02 03:04:06", "2024-01-03 03:04:05", null}},
		{JSON, [][]string{
			{`{"b":1,"a":[1,2]}`, ` { "a" : [ 1 , 2 ] , "b" : 1 } `, "{\n\t\"b\": 1.0,\n\t\"a\": [1, 2.00]\n}"},
			{`"A\u00e9"`, `"Aé"`, `"\u0041\u00E9"`},
			{`"\/"`, `"/"`},
			{`1.5`, `1.50`, `15e-1`, `0.15E+1`, `1.5e0`},
			{`100`, `1e2`, `1E+2`, `100.0`, `10e1`},
			{`0`, `-0`, `0.0`, `-0e5`},
			{`1e100`, `10e99`, `1.0E+100`},
			{`[]`, `[ ]`},
			{`{}`, `{ }`},
			{`null`, ` null `},
			// a key given twice stays twice, its members in the order written
			{`{"p":"x","p":"y","a":1}`, `{"a":1, "p":"x", "p":"y"}`},
		}, []string{`{"p":"y","p":"x","a":1}`, `{"p":"y","a":1}`, `{"p":"x","a":1}`, `{"a":[1,2],"b":1}`, `{"a":[2,1],"b":1}`, `{"a":[1,2]}`, `{"A":[1,2],"b":1}`,
			`[1,2]`, `[2,1]`, `"1"`, `1`, `1.05`, `1.5`, `0.15`, `true`, `false`, `null`, `"null"`, `""`,
			`{}`, `[]`, `[null]`, `"a\"b"`, `"a\\b"`, `"a\nb"`, null}},
		{Lower, [][]string{
			{"A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11", "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", "a0EEbc99-9c0b-4ef8-bb6d-6bb9bd380a11"},
		}, []string{"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a12", "", null}},
	}
	for _, tt := range tests {
		canon := func(s string) string {
			t.Helper()
			c, err := Append(nil, tt.kind, val(s))
			if err != nil {
				t.Fatalf("%v: Append(%q): %v", tt.kind, s, err)
			}
			return string(c)
		}
		for _, group := range tt.same {
			want := canon(group[0])
			for _, s := range group[1:] {
				if got := canon(s); got != want {
					t.Errorf("%v: %q → %q but %q → %q; want equal", tt.kind, s, got, group[0], want)
				}
			}
		}
		seen := map[string]string{}
		for _, s := range tt.apart {
			c := canon(s)
			if prev, dup := seen[c]; dup {
				t.Errorf("%v: %q and %q both → %q; want different", tt.kind, prev, s, c)
			}
			seen[c] = s
		}
	}
}

func TestCanonicalText(t *testing.T) {
	tests := []struct {
		kind Kind
		in   string
		want string
	}{
		{Integer, "-0", "0"},
		{Decimal, "-0.00", "0"},
		{Decimal, "10.000", "10"},
		{Decimal, ".5", "0.5"},
		{Decimal, "-001.2300", "-1.23"},
		{Decimal, "12345678901234567890123456789.123456789000", "12345678901234567890123456789.123456789"},
		{Decimal, "0.00000000000000000000000000000000000001", "0.00000000000000000000000000000000000001"},
		{Float32, "0.10000000149011612", "0.1"},
		{Float64, "-0", "0"},
		{Bool, "true", "1"},
		{Bool, "f", "0"},
		{PaddedChar, "ab  ", "ab"},
		{Lower, "ABC-def", "abc-def"},
		{Time, "10:00:00.500000", "10:00:00.5"},
		{Time, "-01:30:00.000", "-01:30:00"},
		{Timestamp, "2024-01-02T03:04:05.120000Z", "2024-01-02 03:04:05.12"},
		{JSON, `{"b":1,"a":[1,2.50]}`, `{"a":[1,2.5],"b":1}`},
		{JSON, `{"a":"<&>\u2028","b":"\u0001\t"}`, "{\"a\":\"<&>\u2028\",\"b\":\"\\u0001\\t\"}"},
		{JSON, `0.00001e-3`, `0.00000001`},
		{JSON, `1e100`, `1e100`},
		{JSON, `-1.2345e-80`, `-1.2345e-80`},
		{JSON, `12e64`, `120000000000000000000000000000000000000000000000000000000000000000`},
	}
	for _, tt := range tests {
		c, err := Append([]byte("x"), tt.kind, []byte(tt.in))
		if err != nil {
			t.Errorf("%v: Append(%q): %v", tt.kind, tt.in, err)
			continue
		}
		if got := Value(c[1:]); string(got) != tt.want {
			t.Errorf("%v: Append(%q) = %q, want %q", tt.kind, tt.in, got, tt.want)
		}
	}
}

func TestNull(t *testing.T) {
	for k := range numKinds {
		n, err := Append(nil, k, nil)
		if err != nil {
			t.Fatalf("%v: Append(NULL): %v", k, err)
		}
		if Value(n) != nil || Format(n) != "NULL" {
			t.Errorf("%v: NULL canonical %q does not read back as NULL", k, n)
		}
		for _, s := range []string{"", "N", "NULL", "\\N", "0"} {
			c, err := Append(nil, k, []byte(s))
			if err != nil {
				continue // not valid for this kind
			}
			if bytes.Equal(c, n) {
				t.Errorf("%v: %q canonicalises like NULL", k, s)
			}
			if v := Value(c); v == nil {
				t.Errorf("%v: Value(%q) = %q", k, c, v)
			}
		}
	}
	empty, _ := Append(nil, Exact, []byte{})
	if Format(empty) != `""` {
		t.Errorf("Format(empty) = %s", Format(empty))
	}
}

func TestErrors(t *testing.T) {
	tests := []struct {
		kind Kind
		in   string
		want string
	}{
		{Time, "12:xx", `canonical: "12:xx" is not a time`},
		{Time, "1:00:00", `canonical: "1:00:00" is not a time`},
		{Time, "10:00:00x", `canonical: "10:00:00x" is not a time`},
		{Integer, "", `canonical: "" is not an integer`},
		{Integer, "1.0", `canonical: "1.0" is not an integer`},
		{Integer, "-", `canonical: "-" is not an integer`},
		{Decimal, "1e5", `canonical: "1e5" is not a decimal`},
		{Number, "1e999", `canonical: "1e999" is not a number`},
		{Number, "abc", `canonical: "abc" is not a number`},
		{Decimal, ".", `canonical: "." is not a decimal`},
		{Decimal, "NaN", `canonical: "NaN" is not a decimal`},
		{Decimal, "1.2.3", `canonical: "1.2.3" is not a decimal`},
		{Float32, "abc", `canonical: "abc" is not a floating-point number`},
		{Float32, "1e39", `canonical: "1e39" is out of range for Float32`},
		{Float64, "", `canonical: "" is not a floating-point number`},
		{Bool, "yes", `canonical: "yes" is not a boolean`},
		{Date, "2024-1-02", `canonical: "2024-1-02" is not a date`},
		{Timestamp, "2024-01-02 03:04:05+02", `canonical: "2024-01-02 03:04:05+02" has a non-UTC offset`},
		{Timestamp, "2024-01-02 03:04:05-00:30", `canonical: "2024-01-02 03:04:05-00:30" has a non-UTC offset`},
		{Timestamp, "2024-01-02", `canonical: "2024-01-02" is not a timestamp`},
		{Timestamp, "2024-01-02 03:04", `canonical: "2024-01-02 03:04" is not a timestamp`},
		{Timestamp, "2024-01-02 03:04:05 BC", `canonical: "2024-01-02 03:04:05 BC" is not a timestamp`},
		{JSON, `{"a":1`, `canonical: "{\"a\":1" is not valid JSON: unexpected EOF`},
		{JSON, `{} {}`, `canonical: "{} {}" is not valid JSON: data after the top-level value`},
		{JSON, ``, `canonical: "" is not valid JSON: EOF`},
	}
	for _, tt := range tests {
		out, err := Append([]byte("keep"), tt.kind, []byte(tt.in))
		if err == nil {
			t.Errorf("%v: Append(%q) = %q, want error", tt.kind, tt.in, out)
			continue
		}
		if err.Error() != tt.want {
			t.Errorf("%v: Append(%q) error %q, want %q", tt.kind, tt.in, err, tt.want)
		}
		var ve *ValueError
		if !errors.As(err, &ve) || ve.Kind != tt.kind {
			t.Errorf("%v: Append(%q) error %#v is not a *ValueError of its kind", tt.kind, tt.in, err)
		}
		if string(out) != "keep" {
			t.Errorf("%v: Append(%q) changed dst to %q on error", tt.kind, tt.in, out)
		}
	}
	long := strings.Repeat("x", 1000)
	_, err := Append(nil, Integer, []byte(long))
	if err == nil || len(err.Error()) > 120 {
		t.Errorf("error for a long value is not shortened: %v", err)
	}
	if _, err := Append(nil, Kind(99), []byte("1")); err == nil {
		t.Error("unknown kind accepted")
	}
}

func TestKindString(t *testing.T) {
	if Timestamp.String() != "Timestamp" || Lower.String() != "Lower" || Exact.String() != "Exact" {
		t.Error("wrong Kind names")
	}
	if Kind(42).String() != "Kind(42)" {
		t.Errorf("Kind(42).String() = %q", Kind(42).String())
	}
}

func TestEqual(t *testing.T) {
	eq, err := Equal(Decimal, []byte("1.5"), []byte("1.500"))
	if err != nil || !eq {
		t.Errorf("Equal(1.5, 1.500) = %v, %v", eq, err)
	}
	eq, err = Equal(Exact, nil, []byte(""))
	if err != nil || eq {
		t.Errorf("Equal(NULL, '') = %v, %v", eq, err)
	}
	if _, err = Equal(Integer, []byte("1"), []byte("x")); err == nil {
		t.Error("Equal accepted a bad integer")
	}
}

var rowKinds = []Kind{Integer, Exact, Decimal, Timestamp, Bool, Float64}

func TestHashRow(t *testing.T) {
	pgRow := [][]byte{[]byte("42"), []byte("héllo"), []byte("1.50"), []byte("2024-01-02 03:04:05.120000+00"), []byte("t"), nil}
	myRow := [][]byte{[]byte("42"), []byte("héllo"), []byte("1.5"), []byte("2024-01-02 03:04:05.12"), []byte("1"), nil}
	a, err := HashRow(nil, rowKinds, pgRow)
	if err != nil {
		t.Fatal(err)
	}
	b, err := HashRow([]byte("prefix"), rowKinds, myRow)
	if err != nil {
		t.Fatal(err)
	}
	if Sum(a) != Sum(b[len("prefix"):]) {
		t.Errorf("equal rows hash differently:\n%q\n%q", a, b)
	}
	vals, err := SplitRow(a)
	if err != nil || len(vals) != len(rowKinds) {
		t.Fatalf("SplitRow = %d values, %v", len(vals), err)
	}
	var shown []string
	for _, v := range vals {
		shown = append(shown, Format(v))
	}
	if got, want := strings.Join(shown, " "), `"42" "héllo" "1.5" "2024-01-02 03:04:05.12" "1" NULL`; got != want {
		t.Errorf("formatted row = %s, want %s", got, want)
	}

	// Moving bytes between columns must change the hash.
	two := []Kind{Exact, Exact}
	x, _ := HashRow(nil, two, [][]byte{[]byte("ab"), []byte("c")})
	y, _ := HashRow(nil, two, [][]byte{[]byte("a"), []byte("bc")})
	z, _ := HashRow(nil, two, [][]byte{[]byte("abc"), []byte("")})
	w, _ := HashRow(nil, two, [][]byte{[]byte("abc"), nil})
	digests := map[Digest]bool{Sum(x): true, Sum(y): true, Sum(z): true, Sum(w): true}
	if len(digests) != 4 {
		t.Error("differently split rows share a hash")
	}
	if s := Sum(x).String(); len(s) != 32 {
		t.Errorf("Digest.String() = %q", s)
	}

	// Errors name the column and leave dst alone.
	bad := slices.Clone(myRow)
	bad[3] = []byte("2024-01-02 03:04:05+01")
	out, err := HashRow([]byte("keep"), rowKinds, bad)
	if err == nil || string(out) != "keep" {
		t.Fatalf("HashRow with a bad value = %q, %v", out, err)
	}
	if want := `column 3 (Timestamp): canonical: "2024-01-02 03:04:05+01" has a non-UTC offset`; err.Error() != want {
		t.Errorf("error = %q, want %q", err, want)
	}
	var ve *ValueError
	if !errors.As(err, &ve) {
		t.Error("HashRow error does not wrap *ValueError")
	}
	if _, err := HashRow(nil, rowKinds, myRow[:2]); err == nil {
		t.Error("HashRow accepted a short row")
	}
	if _, err := SplitRow([]byte{0, 0, 0, 9, '='}); err == nil {
		t.Error("SplitRow accepted a corrupt encoding")
	}
}

func BenchmarkHashRow(b *testing.B) {
	row := [][]byte{[]byte("1234567"), []byte("john@example.com"), []byte("1234.5600"),
		[]byte("2024-01-02 03:04:05.123000"), []byte("t"), []byte("0.1")}
	var buf []byte
	b.ReportAllocs()
	for b.Loop() {
		var err error
		buf, err = HashRow(buf[:0], rowKinds, row)
		if err != nil {
			b.Fatal(err)
		}
		_ = Sum(buf)
	}
}

// FuzzAppend checks that no input panics and that canonical text is a fixed
// point: canonicalising it again changes nothing.
func FuzzAppend(f *testing.F) {
	for _, s := range []string{"1.50", "-0", "10:00:00.500", "2024-01-02T03:04:05Z", `{"b":[1e2,"\u00e9"],"a":null}`, "0.1", "t"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		for k := range numKinds {
			c, err := Append(nil, k, []byte(s))
			if err != nil {
				continue
			}
			again, err := Append(nil, k, Value(c))
			if err != nil || !bytes.Equal(again, c) {
				t.Fatalf("%v: %q → %q → %q, %v", k, s, c, again, err)
			}
		}
	})
}
