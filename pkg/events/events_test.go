package events

import (
	"encoding/json"
	"slices"
	"strings"
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

// A malformed NATS URL is reported without its credentials, and Secrets
// finds them even where the URL does not parse (a / in a password).
func TestURLCredentialsStayOutOfErrors(t *testing.T) {
	cases := []struct {
		url     string
		secrets []string
	}{
		{"nats://natsUser:natsPw%40rd:x/y@127.0.0.1:1/S", []string{"natsPw%40rd:x/y", "natsPw@rd:x/y"}},
		{"nats://u:natsPw/1@127.0.0.1:4222/S", []string{"natsPw/1"}},
		{"nats://natsPwTok/abc@host:4222/S", []string{"natsPwTok/abc"}},
		{"nats://u:pw@x@host:4222/", []string{"pw@x"}}, // parses; the stream is missing
		{"http://u:secretpw@host:4222/S", []string{"secretpw"}},
		{"nats://u:pw@host:4222/?prefix=a@b", []string{"pw"}}, // an @ in the query is not the userinfo's
	}
	for _, c := range cases {
		if got := Secrets(c.url); !slices.Equal(got, c.secrets) {
			t.Errorf("Secrets(%q) = %q, want %q", c.url, got, c.secrets)
		}
		_, err := ParseURL(c.url)
		if err == nil {
			t.Errorf("ParseURL(%q) accepted it", c.url)
			continue
		}
		for _, sec := range c.secrets {
			if strings.Contains(err.Error(), sec) {
				t.Errorf("ParseURL(%q): the error shows the secret %q: %v", c.url, sec, err)
			}
		}
		if !strings.Contains(err.Error(), "xxxxx@") {
			t.Errorf("ParseURL(%q): the error does not show where the credentials were: %v", c.url, err)
		}
	}
	if got := Secrets("nats://127.0.0.1:4222/S"); got != nil {
		t.Errorf("a URL without credentials has secrets %q", got)
	}
}
