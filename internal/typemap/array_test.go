package typemap

import "testing"

func TestArrayToJSON(t *testing.T) {
	cases := []struct{ elem, in, want string }{
		{"int4", "{1,2,3}", "[1,2,3]"},
		{"int4", "{}", "[]"},
		{"int4", "{{1,2},{3,NULL}}", "[[1,2],[3,null]]"},
		{"text", `{"a b","c\"d",NULL,plain}`, `["a b","c\"d",null,"plain"]`},
		{"text", `{"NULL"}`, `["NULL"]`},
		{"bool", "{t,f}", "[true,false]"},
		{"float8", "{1.5,NaN}", `[1.5,"NaN"]`},
		{"timestamptz", `{"2024-01-01 10:00:00+00"}`, `["2024-01-01T10:00:00+00:00"]`},
		{"text", `{"<a&b>"}`, `["<a&b>"]`},
		// a literal backslash-u sequence stays one (it was unescaped into <)
		{"text", `{"\\u003c","x\\u0026y"}`, `["\\u003c","x\\u0026y"]`},
		{"oid", "{1,4294967295}", `["1","4294967295"]`}, // to_json quotes oids
		// as to_json spells them (checked against PostgreSQL 15): U+2028 and
		// U+2029 as they are, control characters as \b \f or \u00xx
		{"text", "{\"a\u2028b\u2029\",\"\x01\b\f\x7f\x1f\",\"tab\there\"}", "[\"a\u2028b\u2029\",\"\\u0001\\b\\f\x7f\\u001f\",\"tab\\there\"]"},
	}
	for _, c := range cases {
		got, err := ArrayToJSON(c.elem)([]byte(c.in))
		if err != nil {
			t.Fatalf("%s %s: %v", c.elem, c.in, err)
		}
		if string(got) != c.want {
			t.Errorf("%s %s: got %s, want %s", c.elem, c.in, got, c.want)
		}
	}
	for _, bad := range []struct{ elem, in string }{
		{"int4", "{1,2"},        // unterminated
		{"int4", "[0:1]={7,8}"}, // bounds JSON cannot keep
		{"timestamptz", `{"0044-03-15 12:00:00+00 BC"}`}, // before year 1
	} {
		if out, err := ArrayToJSON(bad.elem)([]byte(bad.in)); err == nil {
			t.Errorf("%s %s accepted as %s", bad.elem, bad.in, out)
		}
	}
}
