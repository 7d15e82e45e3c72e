package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/sluice-db/sluice/internal/api"
	"github.com/sluice-db/sluice/internal/cpuprio"
	"github.com/sluice-db/sluice/internal/failure"
	"github.com/sluice-db/sluice/internal/fence"
	"github.com/sluice-db/sluice/internal/progress"
	"github.com/sluice-db/sluice/internal/syncer"
)

const defaultAPI = "http://127.0.0.1:7070"

func (a *app) syncCommand() *cobra.Command {
	var tables, listen, cutover, slot, token string
	var allowOrigins []string
	var opt syncer.Options
	var ev eventsFlags // --changes, --events, --publish: see events.go
	cmd := &cobra.Command{
		Use:   "sync",
		Short: "Copy the tables while streaming their changes, and keep applying changes until cut over",
		Long: `sync creates (or, when run again, reuses) a publication and a logical replication slot,
copies the tables in chunks merged with the change stream (DBLog watermarks: no locks, no long
snapshot), applies every change in commit order with its source position stored in the target,
and serves status and control on --listen. --cutover=auto cuts over by itself once the copy is
done and the lag is under --lag-bound; otherwise run sluice cutover. Ctrl-C stops cleanly;
running sync again resumes.`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			a.copyPace(cmd.Flags(), &opt.Parallel, &opt.ChunkRows, &opt.MaxRowsPerSec)
			if err := checkSyncFlags(slot, opt); err != nil {
				return err
			}
			if err := checkFence(opt.Cutover, ev.changes == "events" || ev.publish != ""); err != nil {
				return err
			}
			if cutover != "manual" && cutover != "auto" {
				return failure.New(failure.Usage, "SLUICE-USAGE-CUTOVER", "--cutover %q is not a choice", cutover).WithHint("use manual or auto")
			}
			if opt.StreamNice < 0 || opt.StreamNice > cpuprio.MaxNice {
				return failure.New(failure.Usage, "SLUICE-USAGE-NICE", "--stream-nice %d is out of range", opt.StreamNice).
					WithHint("use 0 to keep the priority sluice started with, or up to %d for the lowest", cpuprio.MaxNice)
			}
			if token == "" {
				token = os.Getenv("SLUICE_API_TOKEN")
			}
			if token == "" && a.file != nil {
				token = a.file.HTTP.APIToken
			}
			generated := false
			if token == "" {
				token, generated = api.NewToken(), true
			}
			if handled, err := a.dispatchEvents(cmd, &ev, tables, listen, token, generated, opt); handled {
				return err
			}
			ops, err := a.opsSettings(listen, cmd.Flags().Changed("listen"), allowOrigins)
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			src, tgt, err := a.connect(ctx, opt.Parallel+4, true)
			if err != nil {
				return err
			}
			defer src.Close()
			defer tgt.Close()
			if opt.Cutover.Fence == syncer.FenceRevoke { // a misspelt role is found now, not at the cutover
				if err := fence.CheckRoles(ctx, src, opt.Cutover.FenceRoles); err != nil {
					return err
				}
			}
			p, err := a.buildPlanFor(ctx, src, tgt, tables, forSync)
			if err != nil {
				return err
			}
			if slot == "" {
				slot = syncer.SlotName(tgt.Name)
			}
			opt.Slot, opt.Publication = slot, slot
			opt.AutoCutover = cutover == "auto"
			opt.Log = a.log
			if os.Getenv("GOMAXPROCS") != "" { // the user's choice stands
				opt.StreamProcs = 0
			}
			tracker := &progress.Tracker{}
			opt.Tracker = tracker
			s := syncer.New(src, a.sourceConnString(), tgt, p, opt)
			run, err := a.startOps(ctx, ops, s, src, tgt, slot, token, opsExtras{})
			if err != nil {
				return err
			}
			addr := run.addr
			a.log.Info("API listening", "url", "http://"+addr.String(), "dashboard", "http://"+addr.String()+"/")
			if generated {
				// printed once, to the terminal or the caller, never to the log
				fmt.Fprintf(os.Stderr, "sluice: API token for this sync (needed by sluice cutover/pause): %s\n", token)
				fmt.Fprintf(os.Stderr, "sluice: dashboard: %s\n", dashboardLink(addr, token))
			}
			stopShow := a.showProgress(ctx, tracker)
			// Ctrl-C or SIGTERM stops cleanly: what was received is applied
			// and its position stored, and the process exits 0.
			runCtx, cancelRun := a.stopGracefully(ctx, "stopping: applying what was received; run sync again to resume", s.Stop)
			defer cancelRun()
			report, err := s.Run(runCtx)
			stopShow()
			if err = run.finish(err); err != nil {
				return err
			}
			if report != nil {
				printCutoverReport(cmd.OutOrStdout(), report)
			}
			fmt.Fprintln(cmd.OutOrStdout(), "sync stopped: unless sluice finish or abort stopped it (they drop the slot next), the slot keeps the changes since: run sync again to resume, or sluice finish/abort to clean up")
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&tables, "tables", "", "comma-separated tables (name or schema.name); default: every table of --schema")
	f.StringVar(&listen, "listen", "127.0.0.1:7070", "address of the status and control API")
	f.StringVar(&cutover, "cutover", "manual", "manual (wait for sluice cutover) or auto (cut over once copied and caught up)")
	f.StringVar(&slot, "slot", "", "replication slot and publication name (default: sluice_<target database>)")
	f.StringVar(&token, "api-token", "", "bearer token for API calls that change state (or SLUICE_API_TOKEN; generated and printed when empty)")
	f.StringArrayVar(&allowOrigins, "allow-origin", nil, "origin (scheme://host[:port]) whose web pages may call the API; repeatable (default: same-origin only)")
	f.IntVar(&opt.Parallel, "parallel", 2, "chunks read ahead of the change stream")
	f.IntVar(&opt.ChunkRows, "chunk-rows", 20000, "rows per chunk")
	f.Float64Var(&opt.MaxRowsPerSec, "max-rows-per-sec", 0, "limit the copy to this many rows per second (0: no limit)")
	f.IntVar(&opt.BatchRows, "batch-rows", 5000, "changes per target transaction, at most")
	f.DurationVar(&opt.BatchDelay, "batch-delay", 0, "longest a change waits for its batch (default 500ms; 100ms with --changes=events or --publish)")
	f.IntVar(&opt.StreamProcs, "stream-procs", 1, "CPU cores sluice uses once the copy is done (0: all; GOMAXPROCS in the environment wins)")
	f.IntVar(&opt.StreamNice, "stream-nice", 10, "nice value sluice takes once the copy is done, so a source database on the same host wins the CPU (0: keep the priority it started with; Linux)")
	f.DurationVar(&opt.LagBound, "lag-bound", time.Second, "cutover waits until the lag is under this")
	f.DurationVar(&opt.Cutover.LockTimeout, "lock-timeout", 5*time.Second, "cutover gives up if the write fence is not granted in this time")
	f.DurationVar(&opt.Cutover.Timeout, "cutover-timeout", 30*time.Second, "longest the write fence may stay up before cutover gives up and lifts it")
	f.StringVar(&opt.Cutover.Fence, "fence", syncer.FenceLock, "how cutover stops writes to the source tables: lock (LOCK TABLE … IN EXCLUSIVE MODE while it runs; writers wait, then write to the source again) or revoke (also revoke --fence-role's write privileges first, and keep them revoked after the cutover)")
	f.StringSliceVar(&opt.Cutover.FenceRoles, "fence-role", nil, "with --fence revoke: the role(s) the application writes as, comma-separated")
	f.Int64Var(&opt.Cutover.AutoIncrementGap, "auto-increment-gap", 1000, "cutover starts each target AUTO_INCREMENT this many ids past the source sequence, for writes that still reach the source until the application switches (the stream applies them)")
	ev.register(f)
	return cmd
}

// checkSyncFlags refuses a --slot PostgreSQL would not take and numbers
// out of range, before anything is created.
func checkSyncFlags(slot string, opt syncer.Options) error {
	if slot != "" {
		if err := checkSlot(slot); err != nil {
			return err
		}
	}
	return checkNumbers(append(paceFlags(opt.Parallel, opt.ChunkRows, opt.MaxRowsPerSec),
		numberFlag{"--batch-rows", opt.BatchRows, opt.BatchRows < 1, "1 or more"},
		numberFlag{"--batch-delay", opt.BatchDelay, opt.BatchDelay < 0, "0 (the default for the topology) or more"},
		numberFlag{"--stream-procs", opt.StreamProcs, opt.StreamProcs < 0, "0 (all cores) or more"},
		numberFlag{"--lag-bound", opt.LagBound, opt.LagBound <= 0, "a duration above 0, e.g. 1s"},
		// PostgreSQL counts lock_timeout in milliseconds, and 0 waits forever.
		numberFlag{"--lock-timeout", opt.Cutover.LockTimeout, opt.Cutover.LockTimeout < time.Millisecond, "1ms or more, e.g. 5s"},
		numberFlag{"--cutover-timeout", opt.Cutover.Timeout, opt.Cutover.Timeout < time.Millisecond, "1ms or more, e.g. 30s"},
		// writers queue behind the fence's lock request: a wait longer than
		// the fence may stay up stalls them and can never succeed
		numberFlag{"--lock-timeout", opt.Cutover.LockTimeout, opt.Cutover.LockTimeout >= opt.Cutover.Timeout,
			fmt.Sprintf("less than --cutover-timeout (%s)", opt.Cutover.Timeout)},
		numberFlag{"--auto-increment-gap", opt.Cutover.AutoIncrementGap, opt.Cutover.AutoIncrementGap < 0, "0 or more, e.g. 1000"},
	)...)
}

// checkFence refuses a fence method sluice does not have, and revoke
// without roles (or roles without revoke). The events and partitioned
// topologies fence with the lock only.
func checkFence(c syncer.CutoverOptions, otherTopology bool) error {
	switch {
	case c.Fence != syncer.FenceLock && c.Fence != syncer.FenceRevoke:
		return failure.New(failure.Usage, "SLUICE-USAGE-FENCE", "--fence %q is not a choice", c.Fence).WithHint("use lock or revoke")
	case c.Fence == syncer.FenceRevoke && otherTopology:
		return failure.New(failure.Usage, "SLUICE-USAGE-FENCE", "--fence revoke is for a sync from the source's log; --changes=events and --publish fence with the lock").
			WithHint("leave --fence out")
	case c.Fence == syncer.FenceRevoke && len(c.FenceRoles) == 0:
		return failure.New(failure.Usage, "SLUICE-USAGE-FENCE", "--fence revoke needs --fence-role: the role(s) whose write privileges it revokes").
			WithHint("e.g. --fence revoke --fence-role app (the role the application connects as)")
	case c.Fence == syncer.FenceLock && len(c.FenceRoles) > 0:
		return failure.New(failure.Usage, "SLUICE-USAGE-FENCE", "--fence-role goes with --fence revoke").
			WithHint("add --fence revoke, or leave --fence-role out")
	}
	return nil
}

// slotName is what PostgreSQL takes as a replication slot's name.
var slotName = regexp.MustCompile(`^[a-z0-9_]{1,63}$`)

// checkSlot refuses a --slot PostgreSQL would not create (it names the
// publication too), before sync creates anything.
func checkSlot(slot string) error {
	if slotName.MatchString(slot) {
		return nil
	}
	return failure.New(failure.Usage, "SLUICE-USAGE-SLOT", "--slot %q is not a valid replication slot name", slot).
		With("flag", "--slot").
		WithHint("use 1 to 63 lower-case letters, digits and underscores, e.g. orders_mig (it names the publication too)")
}

func printCutoverReport(w io.Writer, r *syncer.CutoverReport) {
	if r.Events && r.DeadLettered > 0 {
		fmt.Fprintf(w, "cutover done: the copy is done and every event was taken (%d applied; waited %.1f ms), but %d could NOT be applied and were dead-lettered: the target lacks their changes (SLUICE-CUTOVER-DEADLETTER)\n", r.ChangesApplied, r.DrainMS, r.DeadLettered)
		fmt.Fprintln(w, "read them from the stream's deadletter subject (docs/EVENTS.md), fix and send them again before the application writes to the target; then stop this sync and run sluice abort")
		return
	}
	if r.Events {
		fmt.Fprintf(w, "cutover done: the copy is done and every event is applied (%d in all; waited %.1f ms); nothing was fenced\n", r.ChangesApplied, r.DrainMS)
		fmt.Fprintln(w, "point the application at the target, stop this sync, then run sluice abort to remove sluice's bookkeeping from the target")
		return
	}
	if r.EarlierRun {
		fmt.Fprintln(w, "cutover done by an earlier run of this sync (the target records it); nothing was fenced now")
		fmt.Fprintln(w, "the sync goes on streaming writes that still reach the source; once the application writes to the target, run sluice finish")
		return
	}
	fmt.Fprintf(w, "cutover done: write pause %.1f ms (fence %s, granted after %.1f ms; stream drained in %.1f ms), %d changed rows verified under the fence, %d before\n",
		r.WritePauseMS, r.Fence, r.LockWaitMS, r.DrainMS, r.RowsVerified, r.RowsVerifiedPre)
	for t, v := range r.AutoIncrement {
		fmt.Fprintf(w, "  %s AUTO_INCREMENT set to %d\n", t, v)
	}
	for _, m := range r.MissingUniqueIndexes {
		fmt.Fprintf(w, "  the target lacks the source's unique index %s (SLUICE-CUTOVER-INDEX): create it before the application writes there\n", m)
	}
	if len(r.Revoked) > 0 {
		fmt.Fprintf(w, "  the application's write privileges on the source tables stay revoked; to give them back: %s\n", strings.Join(r.Revoked, "; "))
	}
	for _, c := range r.AutoIncrementUnknown {
		fmt.Fprintf(w, "  %s: its source sequence was not found, AUTO_INCREMENT left as it is (SLUICE-CUTOVER-AUTOINC): set it past the source's ids before the application writes to the target\n", c)
	}
	fmt.Fprintf(w, "changes applied: %d; lag p50 %.3f s, p99 %.3f s over the last %d target commits (the copy's too, when that recent); most WAL retained by the slot: %d bytes\n",
		r.ChangesApplied, r.LagP50Seconds, r.LagP99Seconds, syncer.LagWindow, r.WALRetainedMaxBytes)
	fmt.Fprintln(w, "the sync goes on streaming writes that still reach the source; once the application writes to the target, run sluice finish")
}

// sourceConnString resolves the source again for the replication connection.
func (a *app) sourceConnString() string {
	src, _, err := a.resolve()
	if err != nil {
		return ""
	}
	return src.ConnString()
}

// apiTimeout bounds one API call (a cutover waits for the copy and the
// lag first).
var apiTimeout = 15 * time.Minute

// checkAPIURL refuses an --api that is not an http(s) URL with a host, such
// as localhost:7070, before anything is sent.
func checkAPIURL(base string) error {
	u, err := url.Parse(base)
	if err == nil && (u.Scheme != "http" && u.Scheme != "https" || u.Host == "") {
		err = errors.New("want http://host:port or https://host:port")
	}
	if err == nil && (strings.Trim(u.Path, "/") != "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil) {
		err = errors.New("the API's address has no path, query, fragment or user: want http://host:port")
	}
	if err != nil {
		return failure.Wrap(err, failure.Usage, "SLUICE-API-URL", "--api %q is not the URL of a sync's API", base).
			With("flag", "--api").WithHint("use http://host:port, as sluice sync printed it (default %s)", defaultAPI)
	}
	return nil
}

// apiCall sends one request to a running sync's API.
func apiCall(ctx context.Context, method, base, path, token string, out any) error {
	if err := checkAPIURL(base); err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimRight(base, "/")+path, bytes.NewReader(nil))
	if err != nil {
		return failure.Wrap(err, failure.Usage, "SLUICE-API-URL", "--api %q", base)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	client := &http.Client{Timeout: apiTimeout}
	resp, err := client.Do(req)
	if err != nil {
		return apiError(ctx, err, method, base, path)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return apiError(ctx, err, method, base, path)
	}
	if resp.StatusCode >= 300 {
		var e struct {
			Error string `json:"error"`
			Code  string `json:"code"`
			Exit  int    `json:"exit"`
		}
		if json.Unmarshal(body, &e) != nil || e.Code == "" {
			return notTheAPI(method, base, path, fmt.Sprintf("HTTP %d", resp.StatusCode))
		}
		return failure.New(failure.KindOfExit(e.Exit), e.Code, "%s %s: %s", method, path, e.Error)
	}
	if err := json.Unmarshal(body, out); err != nil {
		return notTheAPI(method, base, path, "an answer that is not its JSON")
	}
	return nil
}

// notTheAPI is the error for an answer at --api that no sluice sync gives.
func notTheAPI(method, base, path, what string) error {
	return failure.New(failure.Usage, "SLUICE-API-RESPONSE", "%s %s: %s answered with %s: it is not a sluice sync's API", method, path, base, what).
		With("flag", "--api").
		WithHint("give --api the address sluice sync printed (its --listen, default %s)", defaultAPI)
}

// apiError says why a request got no answer: the user interrupted it, it
// timed out, or nothing answers at base.
func apiError(ctx context.Context, err error, method, base, path string) error {
	var netErr net.Error
	switch {
	case ctx.Err() != nil:
		return failure.Wrap(ctx.Err(), failure.Interrupted, "SLUICE-INTERRUPTED", "%s %s at %s interrupted", method, path, base).
			WithHint("sluice status shows the sync's state (a cutover stops with its request and lifts its fence); run the command again")
	case errors.As(err, &netErr) && netErr.Timeout():
		return failure.Wrap(err, failure.Connection, "SLUICE-API-TIMEOUT", "the sync at %s did not answer %s %s within %s", base, method, path, apiTimeout).
			WithHint("check sluice status and the sync's log; the request may still be running in the sync")
	}
	return failure.Wrap(err, failure.Connection, "SLUICE-API-UNREACHABLE", "no running sync answers at %s", base).
		WithHint("start sluice sync first, or give its address with --api")
}

func (a *app) statusCommand() *cobra.Command {
	var apiURL, token string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show a running sync: per table phase, rows, changes, lag and retained WAL",
		RunE: func(cmd *cobra.Command, _ []string) error {
			var view api.StatusView // syncer.Status plus alerts and readings
			base, tok := a.apiClient(cmd, apiURL, token)
			if err := apiCall(cmd.Context(), http.MethodGet, base, "/api/v1/status", tok, &view); err != nil {
				return err
			}
			st := view.Status
			w := cmd.OutOrStdout()
			if asJSON {
				enc := json.NewEncoder(w)
				enc.SetIndent("", "  ")
				return enc.Encode(view)
			}
			paused := map[bool]string{true: " (copy paused)"}[st.Paused]
			if st.Topology == "events" { // no slot, WAL or byte lag: the events' own positions
				fmt.Fprintf(w, "phase %s%s; %s; applied %s of %s; %d events applied\n", st.Phase, paused, st.Slot, st.AppliedLSN, st.SourceLSN, st.ChangesApplied)
			} else {
				fmt.Fprintf(w, "phase %s%s; slot %s; applied %s of %s; lag %d bytes, %.2f s (p99 %.2f s); WAL retained %d bytes; %d changes applied\n",
					st.Phase, paused, st.Slot, st.AppliedLSN, st.SourceLSN, st.LagBytes, st.LagSeconds,
					st.LagP99Seconds, st.WALRetainedBytes, st.ChangesApplied)
			}
			fmt.Fprintf(w, "%-28s %-24s %-10s %12s %12s %10s %8s\n", "table", "target", "phase", "rows", "changes", "rows/s", "ETA")
			for _, t := range st.Tables {
				eta := "-"
				if t.ETASeconds >= 0 {
					eta = (time.Duration(t.ETASeconds) * time.Second).String()
				}
				fmt.Fprintf(w, "%-28s %-24s %-10s %12d %12d %10.0f %8s\n", t.Source, t.Target, t.Phase, t.RowsCopied, t.ChangesApplied, t.RowsPerSecond, eta)
			}
			printOpsStatus(w, view)
			return nil
		},
	}
	cmd.Flags().StringVar(&apiURL, "api", defaultAPI, "URL of the running sync's API")
	cmd.Flags().StringVar(&token, "api-token", "", "API token (or SLUICE_API_TOKEN); needed only from another machine")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the status as JSON")
	return cmd
}

// apiClient resolves where the running sync's API is and its token, as
// the sync itself does: --api, else the config file's http.listen, else
// the default; --api-token, else SLUICE_API_TOKEN, else http.api_token.
func (a *app) apiClient(cmd *cobra.Command, apiURL, token string) (base, tok string) {
	base, tok = apiURL, token
	if !cmd.Flags().Changed("api") && a.file != nil && a.file.HTTP.Listen != "" {
		host, port, err := net.SplitHostPort(a.file.HTTP.Listen)
		if err == nil {
			if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() { // listening everywhere: ask here
				host = "127.0.0.1"
			}
			base = "http://" + net.JoinHostPort(host, port)
		}
	}
	if tok == "" {
		tok = os.Getenv("SLUICE_API_TOKEN")
	}
	if tok == "" && a.file != nil {
		tok = a.file.HTTP.APIToken
	}
	return base, tok
}

func (a *app) cutoverCommand() *cobra.Command {
	var apiURL, token string
	cmd := &cobra.Command{
		Use:   "cutover",
		Short: "Fence writes on the source, drain the stream, verify the changed rows, set AUTO_INCREMENT and report the write pause",
		RunE: func(cmd *cobra.Command, _ []string) error {
			var r syncer.CutoverReport
			base, tok := a.apiClient(cmd, apiURL, token)
			if err := apiCall(cmd.Context(), http.MethodPost, base, "/api/v1/cutover", tok, &r); err != nil {
				return err
			}
			printCutoverReport(cmd.OutOrStdout(), &r)
			return nil
		},
	}
	cmd.Flags().StringVar(&apiURL, "api", defaultAPI, "URL of the running sync's API")
	cmd.Flags().StringVar(&token, "api-token", "", "API token (or SLUICE_API_TOKEN)")
	return cmd
}
