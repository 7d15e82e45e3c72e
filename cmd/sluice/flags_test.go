package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"github.com/sluice-db/sluice/internal/logging"
	"io"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/sluice-db/sluice/internal/config"
	"github.com/sluice-db/sluice/internal/failure"
	"github.com/sluice-db/sluice/internal/testenv"
)

// runSluice runs the command line in-process and returns its error.
func runSluice(ctx context.Context, args ...string) error {
	root := (&app{}).rootCommand()
	root.SetArgs(append(args, "--log-format", "text"))
	root.SetOut(io.Discard)
	root.SetErr(io.Discard)
	_, err := root.ExecuteContextC(ctx)
	return err
}

// Servers that do not answer: a flag checked before connecting is refused
// with its usage error, one checked too late fails to connect (exit 3).
var nowhere = []string{"--source", "postgres://postgres@127.0.0.1:1/db", "--target", "mysql://root@127.0.0.1:1/db"}

// A flag out of range, or a slot name PostgreSQL would refuse, is a usage
// error (exit 2) naming the flag, found before anything is connected to or
// created, never silently replaced by a default.
func TestBadFlagsAreRefusedUpFront(t *testing.T) {
	for _, c := range []struct {
		args []string
		code string
	}{
		{[]string{"sync", "--slot", "Orders-Mig"}, "SLUICE-USAGE-SLOT"},
		{[]string{"sync", "--slot", strings.Repeat("a", 64)}, "SLUICE-USAGE-SLOT"},
		{[]string{"abort", "--slot", "orders-mig"}, "SLUICE-USAGE-SLOT"},
		{[]string{"finish", "--slot", "Orders"}, "SLUICE-USAGE-SLOT"},
		{[]string{"sync", "--parallel", "0"}, "SLUICE-USAGE-NUMBER"},
		{[]string{"sync", "--chunk-rows", "0"}, "SLUICE-USAGE-NUMBER"},
		{[]string{"sync", "--max-rows-per-sec", "-5"}, "SLUICE-USAGE-NUMBER"},
		{[]string{"sync", "--batch-rows", "0"}, "SLUICE-USAGE-NUMBER"},
		{[]string{"sync", "--batch-delay", "-1s"}, "SLUICE-USAGE-NUMBER"},
		{[]string{"sync", "--stream-procs", "-1"}, "SLUICE-USAGE-NUMBER"},
		{[]string{"sync", "--lag-bound", "0s"}, "SLUICE-USAGE-NUMBER"},
		{[]string{"sync", "--lock-timeout", "0s"}, "SLUICE-USAGE-NUMBER"},
		{[]string{"sync", "--lock-timeout", "500us"}, "SLUICE-USAGE-NUMBER"}, // lock_timeout '0ms' would wait forever
		{[]string{"sync", "--cutover-timeout", "-30s"}, "SLUICE-USAGE-NUMBER"},
		{[]string{"copy", "--chunk-rows", "-1"}, "SLUICE-USAGE-NUMBER"},
		{[]string{"copy", "--max-rows-per-sec", "NaN"}, "SLUICE-USAGE-NUMBER"},
		{[]string{"sync", "--lock-timeout", "40s"}, "SLUICE-USAGE-NUMBER"}, // the fence stays up 30s at most
		{[]string{"verify", "--chunk-rows", "0"}, "SLUICE-USAGE-NUMBER"},
		{[]string{"verify", "--parallel", "-3"}, "SLUICE-USAGE-NUMBER"},
		{[]string{"verify", "--samples", "-1"}, "SLUICE-USAGE-NUMBER"},
		{[]string{"apply", "--batch-rows", "-7", "--from", "nats://127.0.0.1:4222/S"}, "SLUICE-USAGE-NUMBER"},
		{[]string{"apply", "--batch-delay", "-5s", "--from", "nats://127.0.0.1:4222/S"}, "SLUICE-USAGE-NUMBER"},
		{[]string{"abort", "--api", "localhost:7070"}, "SLUICE-API-URL"},
		{[]string{"sync", "--fence", "revoke"}, "SLUICE-USAGE-FENCE"}, // whose privileges?
		{[]string{"sync", "--fence", "wall"}, "SLUICE-USAGE-FENCE"},
		{[]string{"sync", "--fence-role", "app"}, "SLUICE-USAGE-FENCE"}, // without --fence revoke
		{[]string{"sync", "--fence", "revoke", "--fence-role", "app", "--changes", "events"}, "SLUICE-USAGE-FENCE"},
		{[]string{"sync", "--listen", "7070"}, "SLUICE-API-LISTEN"},
		{[]string{"sync", "--listen", "127.0.0.1:99999"}, "SLUICE-API-LISTEN"},
		{[]string{"sync", "--listen", "nohost", "--changes", "events"}, "SLUICE-API-LISTEN"},
		{[]string{"finish", "--wait", "-1s"}, "SLUICE-USAGE-NUMBER"},
		{[]string{"copy", "items"}, "SLUICE-USAGE"}, // not a table name: use --tables
		{[]string{"abort", "myslot"}, "SLUICE-USAGE"},
	} {
		err := runSluice(context.Background(), append(c.args, nowhere...)...)
		if failure.Code(err) != c.code || failure.ExitCode(err) != failure.ExitUsage {
			t.Errorf("sluice %s: %v (code %s, exit %d); want %s, exit 2", strings.Join(c.args, " "), err, failure.Code(err), failure.ExitCode(err), c.code)
			continue
		}
		if flag := c.args[1]; !strings.Contains(err.Error(), flag) {
			t.Errorf("sluice %s: %q does not name %s", strings.Join(c.args, " "), err, flag)
		}
	}
	// the hint names only flags the command has
	if err := runSluice(context.Background(), "cutover", "extra"); err == nil || strings.Contains(err.Error(), "--tables") || strings.Contains(err.Error(), "--slot") {
		t.Errorf("sluice cutover extra: %v; want a usage error that does not point at --tables or --slot, which cutover lacks", err)
	}
	if err := checkSlot("orders_mig_2"); err != nil {
		t.Errorf("a valid slot name refused: %v", err)
	}
}

// sluice status and cutover say why the sync's API gave no answer: a bad
// --api is a usage error, Ctrl-C is an interruption, a timeout says so, and
// only a refused connection means no sync runs there.
func TestAPICallSaysWhyThereIsNoAnswer(t *testing.T) {
	release := make(chan struct{})
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer slow.Close()
	defer close(release)
	gone := httptest.NewServer(http.NotFoundHandler())
	gone.Close()

	check := func(what string, err error, code string, exit int) {
		t.Helper()
		if failure.Code(err) != code || failure.ExitCode(err) != exit {
			t.Errorf("%s: %v (code %s, exit %d); want %s, exit %d", what, err, failure.Code(err), failure.ExitCode(err), code, exit)
		}
	}
	check("--api without a scheme", runSluice(context.Background(), "status", "--api", "localhost:7070"), "SLUICE-API-URL", failure.ExitUsage)
	check("--api without a host", runSluice(context.Background(), "cutover", "--api", "http://"), "SLUICE-API-URL", failure.ExitUsage)
	check("nothing listening", runSluice(context.Background(), "status", "--api", gone.URL), "SLUICE-API-UNREACHABLE", failure.ExitConnection)
	check("--api with a path", runSluice(context.Background(), "status", "--api", "http://127.0.0.1:7070/prefix"), "SLUICE-API-URL", failure.ExitUsage)
	check("--api with a query", runSluice(context.Background(), "status", "--api", "http://127.0.0.1:7070/?token=x"), "SLUICE-API-URL", failure.ExitUsage)
	// another web server at --api: said so, not an internal error with no code
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/api/v1/status" {
			w.Write([]byte("<html>hello</html>"))
			return
		}
		http.NotFound(w, r)
	}))
	defer other.Close()
	check("another server (200, HTML)", runSluice(context.Background(), "status", "--api", other.URL), "SLUICE-API-RESPONSE", failure.ExitUsage)
	check("another server (404)", runSluice(context.Background(), "cutover", "--api", other.URL), "SLUICE-API-RESPONSE", failure.ExitUsage)

	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(200*time.Millisecond, cancel) // Ctrl-C
	check("Ctrl-C while waiting", runSluice(ctx, "cutover", "--api", slow.URL), "SLUICE-INTERRUPTED", failure.ExitInterrupted)

	defer func(d time.Duration) { apiTimeout = d }(apiTimeout)
	apiTimeout = 200 * time.Millisecond
	err := runSluice(context.Background(), "cutover", "--api", slow.URL)
	check("no answer in time", err, "SLUICE-API-TIMEOUT", failure.ExitConnection)
	var fe *failure.Error
	if errors.As(err, &fe) && !strings.Contains(fe.Message, "did not answer") {
		t.Errorf("the timeout does not say so: %q", fe.Message)
	}
}

// A NATS URL's token (nats://TOKEN@host) or password is registered as a
// secret before anything can print the URL: ParseURL's own error quotes it.
func TestNATSCredentialsKeptOutOfLogs(t *testing.T) {
	for _, raw := range []string{"nats://s3cr3tT0kenXYZ@127.0.0.1:4222/", "nats://bob:pAssw0rdXYZ@127.0.0.1:4222/"} {
		_, err := parseEndpoint("--events", raw)
		if err == nil {
			t.Fatalf("%s: accepted without a stream", raw)
		}
		if out := logging.Redact(err.Error()); strings.Contains(out, "s3cr3tT0kenXYZ") || strings.Contains(out, "pAssw0rdXYZ") {
			t.Errorf("the error as logged shows the credential: %s", out)
		}
	}
}

// status, cutover, finish and abort find the running sync's API and token
// as the sync does: flags, then the environment, then the config file
// (http.listen, http.api_token); they asked the default port without the
// file's token and got a 401.
func TestAPIClientReadsTheConfigFile(t *testing.T) {
	a := &app{file: &config.File{HTTP: config.HTTPSettings{Listen: "0.0.0.0:7555", APIToken: "file-token"}}}
	t.Setenv("SLUICE_API_TOKEN", "")
	cmd := a.cutoverCommand()
	if base, tok := a.apiClient(cmd, defaultAPI, ""); base != "http://127.0.0.1:7555" || tok != "file-token" {
		t.Errorf("from the file: %s %q; want http://127.0.0.1:7555 and the file's token", base, tok)
	}
	t.Setenv("SLUICE_API_TOKEN", "env-token")
	if _, tok := a.apiClient(cmd, defaultAPI, ""); tok != "env-token" {
		t.Errorf("SLUICE_API_TOKEN does not win over the file: %q", tok)
	}
	if err := cmd.Flags().Set("api", "http://10.0.0.5:7070"); err != nil {
		t.Fatal(err)
	}
	if base, tok := a.apiClient(cmd, "http://10.0.0.5:7070", "flag-token"); base != "http://10.0.0.5:7070" || tok != "flag-token" {
		t.Errorf("flags do not win: %s %q", base, tok)
	}
}

// A command line refused before the logger is set up is reported in the
// log format asked for (it was text whatever --log-format said).
func TestEarlyErrorInTheAskedFormat(t *testing.T) {
	out, err := exec.Command(testenv.Binary(t), "plan", "--log-format", "json", "--bogus").CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != failure.ExitUsage {
		t.Fatalf("exit: %v, want %d", err, failure.ExitUsage)
	}
	var rec map[string]any
	if err := json.Unmarshal(bytes.TrimSpace(out), &rec); err != nil || rec["code"] != "SLUICE-USAGE" {
		t.Errorf("not one JSON record with code SLUICE-USAGE (%v):\n%s", err, out)
	}
}

// Words given by mistake are quoted in the refusal, a URL's credentials
// masked: `sluice apply nats://TOKEN@host/S` without --from printed the token.
func TestStrayArgumentsKeepCredentialsOut(t *testing.T) {
	err := runSluice(context.Background(), "copy", "nats://s3cr3ttokenXYZ@127.0.0.1:4222/S", "postgres://u:pAss@w0rd@h/db")
	if failure.Code(err) != "SLUICE-USAGE" {
		t.Fatalf("stray arguments: %v, want SLUICE-USAGE", err)
	}
	if msg := err.Error(); strings.Contains(msg, "s3cr3ttokenXYZ") || strings.Contains(msg, "pAss") || !strings.Contains(msg, "127.0.0.1:4222/S") {
		t.Errorf("the refusal shows a credential, or not the argument: %s", msg)
	}
}
