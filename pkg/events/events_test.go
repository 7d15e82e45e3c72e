package events

import (
	"encoding/json"
	"testing"
)

// A []byte value goes out as bytea text, which sluice reads as those bytes
// (encoding/json alone writes base64, stored as its characters), and the
// caller's maps are left as they were.
func TestBytesAreByteaText(t *testing.T) {
	row := map[string]any{"id": 7, "blob": []byte{0x0a, 0x0b, 0xff}}
	data, err := json.Marshal(Event{V: FormatVersion, ID: "x", Table: "files", Op: OpUpsert, Key: map[string]any{"id": 7}, Row: row, Version: 1})
	if err != nil {
		t.Fatal(err)
	}
	var back struct {
		Row map[string]any `json:"row"`
	}
	if err := json.Unmarshal(data, &back); err != nil {
		t.Fatal(err)
	}
	if got := back.Row["blob"]; got != `\x0a0bff` {
		t.Fatalf("blob sent as %v; want \\x0a0bff (%s)", got, data)
	}
	if _, ok := row["blob"].([]byte); !ok {
		t.Fatal("the caller's row was changed")
	}
}
