package origin

import (
	"strings"
	"testing"
)

func TestParseAndEqual(t *testing.T) {
	same := [][2]string{
		{"https://a.example", "https://a.example:443"},
		{"https://a.example", "HTTPS://A.Example"},
		{"https://a.example/", "https://a.example"},
		{"http://a.example", "http://a.example:80"},
		{"http://[::1]:8080", "http://[0:0:0:0:0:0:0:1]:8080"},
		{"null", "null"},
	}
	for _, c := range same {
		a, err1 := Parse(c[0])
		b, err2 := Parse(c[1])
		if err1 != nil || err2 != nil || !a.Equal(b) {
			t.Errorf("%s and %s should be the same origin (%v %v)", c[0], c[1], err1, err2)
		}
	}
	different := []string{"https://a.example", "http://a.example", "https://a.example:8443", "https://a.example.evil.com",
		"https://evil.com", "https://b.a.example", "null"}
	for i, x := range different {
		for j, y := range different {
			a, _ := Parse(x)
			b, _ := Parse(y)
			if (i == j) != a.Equal(b) {
				t.Errorf("Equal(%s, %s) = %v", x, y, a.Equal(b))
			}
		}
	}
	for _, bad := range []string{"", "a.example", "https://", "https://*.example.com", "https://a.example/path", "https://u@a.example",
		"https://a.example?x", "https://a.example:0", "https://a.example:99999", "https://a.example:+80", "*", "https://a.exämple",
		"https://[::1", "1http://a"} {
		if _, err := Parse(bad); err == nil {
			t.Errorf("Parse(%q) accepted", bad)
		}
	}
	if o, _ := Parse("https://a.example:443"); o.String() != "https://a.example" {
		t.Errorf("String = %s", o.String())
	}
}

func TestList(t *testing.T) {
	l, err := ParseList([]string{"https://a.example", "http://localhost:3000"})
	if err != nil {
		t.Fatal(err)
	}
	for o, want := range map[string]bool{
		"https://a.example": true, "http://a.example": false, "https://a.example:8443": false,
		"https://a.example.evil.com": false, "http://localhost:3000": true, "http://localhost": false,
		"null": false, "": false, "https://a.example/": false, "https://a.example, https://b.example": false,
	} {
		if got := l.Allows(o); got != want {
			t.Errorf("Allows(%q) = %v, want %v", o, got, want)
		}
	}
	// "*" is refused: an API open to every origin is open to every web
	// page its operator visits
	if _, err := ParseList([]string{"https://a.example", "*"}); err == nil || !strings.Contains(err.Error(), `"*" is refused`) {
		t.Errorf(`"*" accepted: %v`, err)
	}
	withNull, _ := ParseList([]string{"null"})
	if !withNull.Allows("null") || withNull.Allows("https://x.example") {
		t.Error(`a listed "null" matches only "null"`)
	}
	if _, err := ParseList([]string{"https://ok.example", "https://*.bad.example", "nope"}); err == nil {
		t.Error("bad entries accepted")
	}
	empty, _ := ParseList(nil)
	if !empty.Empty() || empty.Allows("https://a.example") {
		t.Error("empty list must allow nothing")
	}
}
