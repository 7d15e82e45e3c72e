package ops

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/sluice-db/sluice/internal/api"
)

const chromiumPath = "/usr/bin/chromium"

// needChromium finds Debian's chromium, installing it when it is missing
// and this process may (make test installs it through scripts/services.sh).
func needChromium(t *testing.T) {
	t.Helper()
	if _, err := os.Stat(chromiumPath); err == nil {
		return
	}
	if os.Geteuid() == 0 {
		if _, err := exec.LookPath("apt-get"); err == nil {
			t.Logf("installing chromium with apt-get")
			cmd := exec.Command("bash", "-c", "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium")
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Logf("apt-get install chromium: %v\n%s", err, out)
			}
		}
	}
	if _, err := os.Stat(chromiumPath); err != nil {
		t.Skipf("%s is missing and could not be installed (apt-get install chromium): the dashboard is not tested in a browser", chromiumPath)
	}
}

// checkDashboard opens the dashboard in headless Chromium: it loads, shows
// progress that changes, and its pause button pauses the copy.
func checkDashboard(t *testing.T, s *syncProc) {
	needChromium(t)
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromiumPath),
		chromedp.Flag("headless", true),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-quic", true),
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1400, 1400),
	}
	actx, cancelA := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancelA()
	bctx, cancelB := chromedp.NewContext(actx)
	defer cancelB()
	// the first run starts the browser: no timeout on its context
	if err := chromedp.Do(bctx, chromedp.Navigate("about:blank")); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	do := func(what string, steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		ctx, cancel := context.WithTimeout(bctx, time.Minute)
		defer cancel()
		if err := chromedp.Do(ctx, steps...); err != nil {
			t.Fatalf("browser: %s: %v", what, err)
		}
	}
	get := func(what string, a chromedp.Action[string]) string {
		t.Helper()
		ctx, cancel := context.WithTimeout(bctx, time.Minute)
		defer cancel()
		v, err := chromedp.Run(ctx, a)
		if err != nil {
			t.Fatalf("browser: %s: %v", what, err)
		}
		return v
	}

	// The token comes in the URL fragment (never sent to the server) and
	// moves to sessionStorage; the address bar loses it.
	do("open the dashboard", chromedp.Navigate(s.base+"/#token="+token), chromedp.WaitVisible(chromedp.CSS(`#tables tbody tr[data-table]`)))
	hash := get("read location.hash", chromedp.Evaluate[string](`location.hash`))
	stored := get("read sessionStorage", chromedp.Evaluate[string](`sessionStorage.getItem('sluice.api-token') || ''`))
	if hash != "" || stored != token {
		t.Fatalf("token handling: hash %q, stored %v", hash, stored != "")
	}

	// Read in one script: the page redraws the table every second, and a
	// node found by one call could be gone when the next reads its text.
	rowsText := func() string {
		return get("read the progress", chromedp.Evaluate[string](`(document.querySelector('#tables tbody tr[data-table] td.rows') || {}).textContent || ''`))
	}
	first := rowsText()
	var changed string
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(500 * time.Millisecond) {
		if changed = rowsText(); changed != first {
			break
		}
	}
	if changed == first {
		t.Fatalf("the dashboard's progress did not change: %q", first)
	}
	t.Logf("dashboard progress: %q → %q", first, changed)
	phase := get("read the phase", chromedp.Text(chromedp.ID("phase")))
	lag := get("read the lag", chromedp.Text(chromedp.ID("lag")))
	if !strings.Contains(phase, "copying") || lag == "–" {
		t.Errorf("tiles: phase %q lag %q", phase, lag)
	}
	do("the rows/s chart is drawn", chromedp.WaitReady(chromedp.CSS(`#chart-rows polyline`)))
	ctx, cancel := context.WithTimeout(bctx, time.Minute)
	points, err := chromedp.Run(ctx, chromedp.AttributeValue(chromedp.CSS(`#chart-rows polyline`), "points"))
	cancel()
	if err != nil || strings.Count(points.Value, ",") < 2 {
		t.Errorf("chart points %q (%v)", points.Value, err)
	}

	// The pause button pauses the copy.
	do("pause", chromedp.Click(chromedp.ID("btn-pause")), chromedp.WaitVisible(chromedp.ID("paused")))
	s.waitFor(t, 10*time.Second, "paused=true", func(v api.StatusView) bool { return v.Paused })
	before := s.settled(t, "paused from the dashboard")
	time.Sleep(1500 * time.Millisecond) // the page polls every second
	shownBefore := rowsText()
	time.Sleep(3 * time.Second)
	after := s.status(t)
	if rowsCopied(after) != before || !after.Paused {
		t.Fatalf("the copy went on while paused: %d → %d rows", before, rowsCopied(after))
	}
	if shown := rowsText(); shown != shownBefore {
		t.Errorf("the dashboard shows the rows moving while paused: %q → %q", shownBefore, shown)
	}
	ctx, cancel = context.WithTimeout(bctx, time.Minute)
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	cancel()
	if err == nil {
		shot := filepath.Join(os.TempDir(), "sluice-dashboard-paused.png")
		os.WriteFile(shot, png, 0o644)
		t.Logf("screenshot: %s", shot)
	}

	// Cutover asks for confirmation; cancelling does nothing.
	do("open the cutover dialog", chromedp.Click(chromedp.ID("btn-cutover")), chromedp.WaitVisible(chromedp.ID("cutover-dialog")))
	if open := get("dialog state", chromedp.Evaluate[string](`String(document.getElementById('cutover-dialog').open)`)); open != "true" {
		t.Fatal("cutover did not ask for confirmation")
	}
	do("cancel the cutover", chromedp.Click(chromedp.ID("cutover-cancel")), chromedp.WaitNotVisible(chromedp.ID("cutover-dialog")))
	if v := s.status(t); v.Cutover != nil {
		t.Fatal("a cancelled cutover ran")
	}

	// Resume from the page: the copy goes on.
	do("resume", chromedp.Click(chromedp.ID("btn-resume")), chromedp.WaitNotVisible(chromedp.ID("paused")))
	s.waitFor(t, 20*time.Second, "the copy to go on", func(v api.StatusView) bool { return !v.Paused && rowsCopied(v) > before })
}
