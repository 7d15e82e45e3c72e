package ops

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sluice-db/sluice/internal/testenv"
)

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// TestErrorLogs drives sluice into the error paths an operator meets —
// a refused login, a bad config file, a forbidden CORS setting, refused API
// calls, a dead webhook — with a MariaDB user that has a password. Every
// line is JSON, every warning and error has a stable code and context, and
// the password appears nowhere: not on stderr, not in the log file.
func TestErrorLogs(t *testing.T) {
	t.Parallel()
	p := testenv.NewPair(t)
	seed(t, p, 3000)
	user := "ops_" + randomHex(4)
	password := "Pw-" + randomHex(12)
	for _, host := range []string{"%", "localhost", "127.0.0.1"} {
		p.My(t, fmt.Sprintf("CREATE USER '%s'@'%s' IDENTIFIED BY '%s'", user, host, password))
		p.My(t, fmt.Sprintf("GRANT ALL PRIVILEGES ON `%s`.* TO '%s'@'%s'", p.Name, user, host))
	}
	t.Cleanup(func() {
		db := testenv.MySQL(t, "")
		defer db.Close()
		for _, host := range []string{"%", "localhost", "127.0.0.1"} {
			db.Exec(fmt.Sprintf("DROP USER IF EXISTS '%s'@'%s'", user, host))
		}
	})
	u, _ := url.Parse(p.TargetURL)
	withPassword := func(pw string) string {
		v := *u
		v.User = url.UserPassword(user, pw)
		return v.String()
	}
	target := withPassword(password)
	wrong := withPassword(password + "-wrong")
	secrets := []string{password, url.QueryEscape(password), token, "hooksecret"}
	logDir := t.TempDir()
	logFile := filepath.Join(logDir, "sluice.log")
	writeConfig := func(yaml string) string {
		path := filepath.Join(t.TempDir(), "sluice.yaml")
		os.WriteFile(path, []byte(yaml), 0o600)
		return path
	}
	base := []string{"sync", "--log-format", "json", "--log-file", logFile, "--source", p.SourceURL, "--slot", p.Name, "--tables", "events",
		"--listen", testenv.FreeAddr(t), "--api-token", token}

	// 1. the target refuses the login
	r := testenv.Run(t, nil, append(base, "--target", wrong)...)
	if r.Exit != 3 {
		t.Fatalf("wrong password: exit %d\n%s", r.Exit, r.Stderr)
	}
	lines := checkLog(t, "wrong password", r.Stderr, secrets, "SLUICE-TARGET-AUTH")
	if l := find(lines, "SLUICE-TARGET-AUTH"); len(l) == 0 || l[0].str("command") != "sync" || !strings.Contains(l[0].str("error"), user) {
		t.Errorf("login refusal line: %v", l)
	}

	// 2. a config file with a misspelt key
	r = testenv.Run(t, nil, append(base, "--target", target, "--config", writeConfig("alerts:\n  disk:\n    warnig: 50\n"))...)
	if r.Exit != 2 {
		t.Fatalf("bad config: exit %d\n%s", r.Exit, r.Stderr)
	}
	lines = checkLog(t, "bad config", r.Stderr, secrets, "SLUICE-CONFIG")
	if l := find(lines, "SLUICE-CONFIG"); len(l) == 0 || !strings.Contains(l[0].str("file"), "sluice.yaml") {
		t.Errorf("config error line: %v", l)
	}

	// 3. "*" is refused at start, as a flag and in the file
	r = testenv.Run(t, nil, append(base, "--target", target, "--allow-origin", "*")...)
	if r.Exit != 2 {
		t.Fatalf(`--allow-origin "*": exit %d\n%s`, r.Exit, r.Stderr)
	}
	checkLog(t, `--allow-origin "*"`, r.Stderr, secrets, "SLUICE-CONFIG-CORS")
	r = testenv.Run(t, nil, append(base, "--target", target, "--config", writeConfig("http:\n  allow_origins: ['*']\n"))...)
	if r.Exit != 2 || !strings.Contains(r.Stderr, "allow_origins") {
		t.Fatalf(`"*" in the file: exit %d\n%s`, r.Exit, r.Stderr)
	}
	checkLog(t, `"*" in the file`, r.Stderr, secrets, "SLUICE-CONFIG")

	// 4. a running sync: refused API calls and a dead webhook
	dead := testenv.FreeAddr(t) // nothing listens there
	s := startSync(t, p, syncOpts{target: target, logFile: logFile,
		config: fmt.Sprintf("alerts:\n  interval: 300ms\n  webhook: http://%s/hooksecret\n  disk:\n    warning: 0.1%%\n  stress:\n    scope: database\n", dead)})
	call(t, "POST", s.base+"/api/v1/pause", nil, "")
	call(t, "POST", s.base+"/api/v1/pause", map[string]string{"Authorization": "Bearer " + password}, "")
	call(t, "POST", s.base+"/api/v1/resume", map[string]string{"Origin": "https://evil.example", "Authorization": "Bearer " + token}, "")
	call(t, "POST", s.base+"/api/v1/verify", bearer(), `{"mode":"everything"}`)
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(s.Output(), "SLUICE-ALERT-WEBHOOK") {
		if time.Now().After(deadline) {
			t.Fatalf("no webhook failure logged:\n%s", testenv.Tail(s.Output(), 20))
		}
		time.Sleep(200 * time.Millisecond)
	}
	s.abort(t)
	lines = checkLog(t, "sync output", s.Output(), secrets, "SLUICE-API-AUTH", "SLUICE-API-ORIGIN", "SLUICE-API-VERIFY",
		"SLUICE-ALERT-WEBHOOK", "SLUICE-ALERT-DISK")
	if len(find(lines, "SLUICE-API-AUTH")) < 2 {
		t.Errorf("a refused API call was not logged")
	}
	for _, l := range find(lines, "SLUICE-ALERT-WEBHOOK") {
		if l.str("webhook_host") != dead || l.str("alert") == "" {
			t.Errorf("webhook failure line lacks its context: %v", l)
		}
	}
	connected := false
	for _, l := range lines {
		if l.str("msg") == "connected" && strings.Contains(l.str("target"), user+":xxxxx@") {
			connected = true
		}
	}
	if !connected {
		t.Errorf("the connected line does not show the target with its password masked")
	}

	// The log file holds all runs, as JSON, without the password.
	data, err := os.ReadFile(logFile)
	if err != nil {
		t.Fatal(err)
	}
	checkLog(t, "log file", string(data), secrets, "SLUICE-TARGET-AUTH", "SLUICE-CONFIG-CORS", "SLUICE-API-AUTH", "SLUICE-ALERT-WEBHOOK")
}
