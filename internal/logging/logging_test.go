package logging

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/sluice-db/sluice/internal/failure"
)

func TestRedact(t *testing.T) {
	AddSecret("Sup3r-Secret!")
	cases := map[string]string{
		"connect postgres://bob:hunter22@db:5432/app failed": "connect postgres://bob:xxxxx@db:5432/app failed",
		"dsn bob:hunter22@tcp(127.0.0.1:3306)/app":           "dsn bob:xxxxx@tcp(127.0.0.1:3306)/app",
		"host=db password=hunter22 user=bob":                 "host=db password=xxxxx user=bob",
		"host=db password='a b c' user=bob":                  "host=db password=xxxxx user=bob",
		"Authorization: Bearer abc.DEF-123":                  "Authorization: Bearer xxxxx",
		"login refused using Sup3r-Secret! for bob":          "login refused using xxxxx for bob",
		"mysql://root@127.0.0.1:3306/db":                     "mysql://root@127.0.0.1:3306/db",
		// a password holding an @ runs to the last one before the host
		"status --api http://u:pw@x@127.0.0.1:7199 failed": "status --api http://u:xxxxx@127.0.0.1:7199 failed",
		"GET http://h:7070/api?token=t0k3n&x=1":            "GET http://h:7070/api?token=xxxxx&x=1",
		"GET /x?access_token=abc123 api_key=k3y":           "GET /x?access_token=xxxxx api_key=xxxxx",
		"nothing to hide here":                             "nothing to hide here",
	}
	for in, want := range cases {
		if got := Redact(in); got != want {
			t.Errorf("Redact(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestLoggerRedactsEverywhere(t *testing.T) {
	AddSecret("pw-0123456789")
	var buf bytes.Buffer
	log, _, err := Open(Options{Format: "json", Stderr: &buf})
	if err != nil {
		t.Fatal(err)
	}
	log.With("dsn", "u:pw-0123456789@tcp(h:1)/d").Error("failed with pw-0123456789",
		"error", errors.New("auth pw-0123456789 refused"),
		"password", "anything", "api_token", "tok", "url", "https://u:pw@x/",
		slog.Group("g", "inner", "pw-0123456789"), "list", []string{"pw-0123456789"},
		"code", "SLUICE-X")
	out := buf.String()
	if strings.Contains(out, "pw-0123456789") || strings.Contains(out, "anything") || strings.Contains(out, `"tok"`) || strings.Contains(out, "u:pw@") {
		t.Fatalf("secret in log: %s", out)
	}
	var m map[string]any
	if err := json.Unmarshal(buf.Bytes(), &m); err != nil {
		t.Fatalf("not JSON: %v: %s", err, out)
	}
	if m["code"] != "SLUICE-X" || m["password"] != Mask {
		t.Fatalf("unexpected record %v", m)
	}
}

func TestObserverCountsCodedWarnings(t *testing.T) {
	var mu sync.Mutex
	got := map[string]int{}
	SetObserver(func(l slog.Level, code string) { mu.Lock(); got[code]++; mu.Unlock() })
	defer SetObserver(nil)
	log, _, _ := Open(Options{Format: "json", Stderr: &bytes.Buffer{}})
	log.Info("info", "code", "SLUICE-INFO")
	log.Warn("warn", "code", "SLUICE-W")
	log.With("code", "SLUICE-E").Error("err")
	Error(log, "failed", failure.New(failure.Connection, "SLUICE-TARGET-AUTH", "login refused").With("table", "t"))
	log.Error("no code")
	if got["SLUICE-W"] != 1 || got["SLUICE-E"] != 1 || got["SLUICE-TARGET-AUTH"] != 1 || got["SLUICE-INFO"] != 0 || len(got) != 3 {
		t.Fatalf("observed %v", got)
	}
}

func TestErrorHasCodeAndContext(t *testing.T) {
	var buf bytes.Buffer
	log, _ := New(&buf, "json", false)
	Error(log, "sync failed", failure.New(failure.BadRow, "SLUICE-SYNC-CHUNK", "table t, chunk 3").With("table", "public.t").With("chunk", "3"))
	var m map[string]any
	if err := json.Unmarshal(buf.Bytes(), &m); err != nil {
		t.Fatal(err)
	}
	if m["code"] != "SLUICE-SYNC-CHUNK" || m["table"] != "public.t" || m["chunk"] != "3" || m["exit_status"] != float64(failure.ExitBadRow) {
		t.Fatalf("record %v", m)
	}
}

func TestLogFileRotation(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "sluice.log")
	var stderr bytes.Buffer
	log, closer, err := Open(Options{Format: "text", Stderr: &stderr, File: path, MaxSize: 2000, MaxBackups: 2})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 200; i++ {
		log.Info("a record that takes some room in the file", "i", i, "pad", strings.Repeat("x", 40))
	}
	closer.Close()
	if _, err := os.Stat(path + ".3"); err == nil {
		t.Fatal("more backups kept than asked")
	}
	seen := 0
	for _, p := range []string{path, path + ".1", path + ".2"} {
		st, err := os.Stat(p)
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		if st.Size() > 2000 {
			t.Fatalf("%s is %d bytes, over the 2000 limit", p, st.Size())
		}
		f, _ := os.Open(p)
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			var m map[string]any
			if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
				t.Fatalf("%s: line not JSON (split record?): %q", p, sc.Text())
			}
			seen++
		}
		f.Close()
	}
	if seen == 0 || !strings.Contains(stderr.String(), "i=199") {
		t.Fatalf("records missing: file lines %d", seen)
	}
	// the newest record is in the current file
	data, _ := os.ReadFile(path)
	if !strings.Contains(string(data), `"i":199`) {
		t.Fatalf("current file lacks the newest record: %s", data)
	}
}

func TestBadFormatAndFile(t *testing.T) {
	if _, _, err := Open(Options{Format: "yaml"}); failure.Code(err) != "SLUICE-USAGE-LOGFORMAT" {
		t.Fatalf("err = %v", err)
	}
	_, _, err := Open(Options{Format: "json", File: filepath.Join(t.TempDir(), "no", "such", "dir", "x.log")})
	if failure.Code(err) != "SLUICE-USAGE-LOGFILE" {
		t.Fatalf("err = %v", err)
	}

}

// A log file removed or moved away by someone else (an outside logrotate,
// an operator freeing space) is started again at the next rotation; before,
// records went on into the unlinked file for good.
func TestLogFileRemovedFromUnderneath(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sluice.log")
	r, err := OpenRotating(path, 500, 2)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	record := []byte(strings.Repeat("x", 99) + "\n")
	r.Write(record)
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 10; i++ {
		r.Write(record)
	}
	r.Write([]byte("newest\n"))
	data, err := os.ReadFile(path)
	if err != nil || !strings.Contains(string(data), "newest") {
		t.Fatalf("no new log file after the old one was removed: %v %q", err, data)
	}
}

// When a rotation moved the open file to FILE.1 but could not open a new
// FILE, later rotations must not shift that open file on until the oldest
// backup slot removes it with the records in it.
func TestLogFileDetachedIsNotShiftedAway(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sluice.log")
	r, err := OpenRotating(path, 500, 2)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	// the state a failed open leaves: FILE moved to FILE.1, still written
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	r.detached = true
	r.Write([]byte("written while detached\n"))
	// 500-byte files of 100-byte records: the 5th rotates (FILE is opened
	// again), the 10th shifts FILE.1 to FILE.2; before the fix the 10th
	// removed the open file
	for i := 0; i < 12; i++ {
		r.Write([]byte(strings.Repeat("y", 99) + "\n"))
	}
	found := false
	for _, p := range []string{path, path + ".1", path + ".2"} {
		data, _ := os.ReadFile(p)
		found = found || strings.Contains(string(data), "written while detached")
	}
	if !found {
		t.Fatal("the records written while detached were removed by later rotations")
	}
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("FILE not started again: %v", err)
	}
}

// A rotation that fails is reported as a JSON record with a code, like
// every other line (it was one plain-text line on stderr only).
func TestLogRotationFailureIsARecord(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "logs")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	r, err := OpenRotating(filepath.Join(dir, "sluice.log"), 200, 2)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if err := os.RemoveAll(dir); err != nil { // no rename, no new file can succeed now
		t.Fatal(err)
	}
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr := os.Stderr
	os.Stderr = pw
	for i := 0; i < 3; i++ {
		r.Write([]byte(strings.Repeat("z", 99) + "\n"))
	}
	os.Stderr = stderr
	pw.Close()
	out, _ := io.ReadAll(pr)
	var rec map[string]string
	if err := json.Unmarshal(bytes.SplitN(out, []byte("\n"), 2)[0], &rec); err != nil || rec["code"] != "SLUICE-LOG-ROTATE" || rec["level"] != "WARN" {
		t.Fatalf("a failed rotation wrote %q; want a JSON record with code SLUICE-LOG-ROTATE (%v)", out, err)
	}
}
