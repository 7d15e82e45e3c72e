package chunk

import (
	"math/big"
	"strconv"
	"testing"
)

func TestIntegerRangesCoverEveryKeyOnce(t *testing.T) {
	for _, tc := range []struct {
		min, max  int64
		estimated int64
		per       int
	}{
		{1, 1_000_000, 1_000_000, 20_000},
		{1, 10, 10, 20_000},
		{-500, 500, 0, 100},
		{1, 1_000_000_000, 1000, 100}, // very sparse keys
		{42, 42, 1, 10},
	} {
		ranges := IntegerRanges(big.NewInt(tc.min), big.NewInt(tc.max), tc.estimated, tc.per)
		if ranges[0].Lo != nil || ranges[len(ranges)-1].Hi != nil {
			t.Fatalf("%+v: first range must be open below and last open above: %+v", tc, ranges)
		}
		for i := 1; i < len(ranges); i++ {
			if ranges[i].Lo[0] != ranges[i-1].Hi[0] {
				t.Fatalf("%+v: gap or overlap between range %d and %d", tc, i-1, i)
			}
			lo, _ := strconv.ParseInt(ranges[i].Lo[0], 10, 64)
			if lo <= tc.min || lo > tc.max {
				t.Fatalf("%+v: boundary %d outside (min, max]", tc, lo)
			}
		}
		if tc.estimated > int64(tc.per) {
			want := tc.estimated / int64(tc.per)
			if n := int64(len(ranges)); n < want/2 || n > want*2+1 {
				t.Fatalf("%+v: %d ranges, want about %d", tc, n, want)
			}
		}
	}
}

func TestPredicate(t *testing.T) {
	lit := func(_ int, v string) string { return "'" + v + "'" }
	if got := Predicate([]string{"id"}, Range{}, lit); got != "TRUE" {
		t.Fatalf("unbounded: %s", got)
	}
	if got := Predicate([]string{"id"}, Range{Lo: []string{"5"}, Hi: []string{"9"}}, lit); got != "id >= '5' AND id < '9'" {
		t.Fatalf("single: %s", got)
	}
	got := Predicate([]string{"a", "b"}, Range{Hi: []string{"x", "1"}}, lit)
	if got != "(a, b) < ('x', '1')" {
		t.Fatalf("composite: %s", got)
	}
}

func TestEncodeDecode(t *testing.T) {
	// A key may hold the separator itself, or look like JSON.
	for _, k := range [][]string{nil, {"1"}, {"a b", "ü", ""}, {"a\x1fb"}, {"\x1f", ""}, {`["x"]`}, {""}, {"", `["a","b"]`}} {
		s, ok := Encode(k)
		back, err := Decode(s, ok)
		if err != nil || len(back) != len(k) || (k == nil) != (back == nil) {
			t.Fatalf("%q → %q, %v", k, back, err)
		}
		for i := range k {
			if back[i] != k[i] {
				t.Fatalf("%q → %q", k, back)
			}
		}
	}
}

// A bound that is not in Encode's form is an error, not a guess: read as
// something else it would move the chunk's edge and skip rows.
func TestDecodeRefusesOtherText(t *testing.T) {
	for _, s := range []string{"a\x1f17", "", "\x1f", "\x1f{}", "\x1fnull", `["a"]`} {
		if got, err := Decode(s, true); err == nil {
			t.Errorf("Decode(%q) = %q; want an error", s, got)
		}
	}
}

// The form of earlier versions: values joined by the separator. The second
// case is the one that also reads as JSON after the separator; the progress
// table's bound_format column, not the text, says which form a row holds.
func TestDecodeJoinedReadsTheEarlierForm(t *testing.T) {
	for s, want := range map[string][]string{
		"a\x1f17":           {"a", "17"},
		"\x1f[\"a\",\"b\"]": {"", `["a","b"]`},
		"":                  {""},
	} {
		got := DecodeJoined(s, true)
		if len(got) != len(want) {
			t.Fatalf("DecodeJoined(%q) = %q; want %q", s, got, want)
		}
		for i := range want {
			if got[i] != want[i] {
				t.Fatalf("DecodeJoined(%q) = %q; want %q", s, got, want)
			}
		}
	}
	if DecodeJoined("x", false) != nil {
		t.Fatal("an unbounded side must stay nil")
	}
}
