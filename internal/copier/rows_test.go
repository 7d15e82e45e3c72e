package copier

import "testing"

// A COPY line may go to LOAD DATA untouched only when every escape in it
// means the same to both: PostgreSQL's \f, \v, octal and hex escapes do not.
func TestLoadDataSafe(t *testing.T) {
	for line, want := range map[string]bool{
		"1\tplain\t\\N":         true,
		`tab\there`:             true,
		`back\\slash`:           true,
		`back\\fine`:            true, // an escaped backslash followed by f
		`form\ffeed`:            false,
		`vertical\vtab`:         false,
		`octal\101`:             false,
		`hex\x41`:               false,
		"newline\\nand\\rthere": true,
	} {
		if got := loadDataSafe([]byte(line)); got != want {
			t.Errorf("loadDataSafe(%q) = %v, want %v", line, got, want)
		}
	}
}
