package plan

import (
	"testing"

	"github.com/sluice-db/sluice/internal/schema"
)

func TestEnforcedUnique(t *testing.T) {
	tbl := &Table{
		Source: &schema.Table{Indexes: []schema.Index{
			{Name: "users_email_key", Columns: []string{"email"}, Unique: true},
			{Name: "users_name_idx", Columns: []string{"name"}},
			{Name: "users_lower_key", Columns: []string{"nick"}, Unique: true, Unsupported: "an expression index"},
		}},
		Columns: []Column{{Source: "id", Target: "id"}, {Source: "email", Target: "mail"}, {Source: "name", Target: "name"}, {Source: "nick", Target: "nick"}},
		Key:     []int{0},
	}
	cases := []struct {
		cols []string
		want bool
	}{
		{[]string{"mail"}, true},         // the source's unique email, renamed
		{[]string{"name", "mail"}, true}, // wider than a unique set: still unique
		{[]string{"id", "name"}, true},   // includes the key
		{[]string{"name"}, false},        // a plain index on the source
		{[]string{"nick"}, false},        // unique only through an expression the target lacks
		{[]string{"email"}, false},       // the source's name, not the target's
	}
	for _, c := range cases {
		if got := tbl.EnforcedUnique(c.cols); got != c.want {
			t.Errorf("EnforcedUnique(%v) = %v, want %v", c.cols, got, c.want)
		}
	}
}
