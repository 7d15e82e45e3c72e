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
		{"int4", "[0:1]={7,8}", "[7,8]"},
		{"timestamptz", `{"2024-01-01 10:00:00+00"}`, `["2024-01-01T10:00:00+00:00"]`},
		{"text", `{"<a&b>"}`, `["<a&b>"]`},
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
	if _, err := ArrayToJSON("int4")([]byte("{1,2")); err == nil {
		t.Error("unterminated array accepted")
	}
}
