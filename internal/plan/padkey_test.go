package plan

import (
	"testing"

	"github.com/sluice-db/sluice/internal/schema"
)

// An event's char(n) key takes the copy's form: padded to n; over n only
// when what is over is spaces, else refused as PostgreSQL would.
func TestPadKey(t *testing.T) {
	c := Column{SourceType: schema.Type{Name: "bpchar", Length: 4, Display: "character(4)"}}
	for in, want := range map[string]string{"ab": "ab  ", "abcd": "abcd", "": "    ", "ab      ": "ab  ", "äö": "äö  "} {
		if got, err := c.PadKey(in); err != nil || got != want {
			t.Errorf("PadKey(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	if got, err := c.PadKey("abcde"); err == nil {
		t.Errorf("PadKey(abcde) = %q; want an error (too long for character(4))", got)
	}
	text := Column{SourceType: schema.Type{Name: "text", Length: -1}}
	if got, _ := text.PadKey("ab "); got != "ab " {
		t.Errorf("a text key changed: %q", got)
	}
}
