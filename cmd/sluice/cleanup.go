package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/spf13/cobra"

	"github.com/sluice-db/sluice/internal/failure"
	"github.com/sluice-db/sluice/internal/fence"
	"github.com/sluice-db/sluice/internal/mysql"
	"github.com/sluice-db/sluice/internal/pgstream"
	"github.com/sluice-db/sluice/internal/postgres"
	"github.com/sluice-db/sluice/internal/publish"
	"github.com/sluice-db/sluice/internal/syncer"
)

// cleanupCommand is finish (after a cutover) and abort (instead of one):
// both drop the slot and publication and sluice's metadata on the target.
func (a *app) cleanupCommand(name string) *cobra.Command {
	var slot, apiURL, token, run string
	var wait time.Duration
	short := "Drop the replication slot, the publication and sluice's metadata after a cutover"
	if name == "abort" {
		short = "Stop a migration without cutting over: drop the replication slot, the publication and sluice's metadata"
	}
	cmd := &cobra.Command{
		Use:   name,
		Short: short,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkAPIURL(apiURL); err != nil {
				return err
			}
			if slot != "" {
				if err := checkSlot(slot); err != nil {
					return err
				}
			}
			if err := checkNumbers(numberFlag{"--wait", wait, wait < 0, "0 or more, e.g. 1m"}); err != nil {
				return err
			}
			c := cleanup{a: a, name: name, slot: slot, confirmedRun: run, wait: wait, out: cmd.OutOrStdout()}
			base, tok := a.apiClient(cmd, apiURL, token)
			return c.run(cmd.Context(), func(ctx context.Context) {
				// A sync of this slot still running on this machine is
				// asked to stop first; one elsewhere loses its replication
				// connection when the slot is dropped. A sync of another
				// migration answering at --api is left alone: its status
				// names another publication (an events sync has none).
				var st struct {
					Publication string `json:"publication"`
				}
				if apiCall(ctx, http.MethodGet, base, "/api/v1/status", tok, &st) != nil {
					return
				}
				if st.Publication != "" && st.Publication != c.pub {
					a.log.Info("the sync answering at --api is another one: left running", "api", base, "its_publication", st.Publication, "publication", c.pub)
					return
				}
				var stopped map[string]any
				if apiCall(ctx, http.MethodPost, base, "/api/v1/stop", tok, &stopped) == nil {
					time.Sleep(time.Second)
				}
			})
		},
	}
	cmd.Flags().StringVar(&slot, "slot", "", "replication slot and publication name (default: sluice_<target database>)")
	cmd.Flags().StringVar(&apiURL, "api", defaultAPI, "URL of a running sync to stop first")
	cmd.Flags().StringVar(&token, "api-token", "", "API token (or SLUICE_API_TOKEN)")
	if name == "finish" {
		cmd.Flags().DurationVar(&wait, "wait", time.Minute, "longest wait for the running sync to apply what the source committed before finish began")
	} else {
		cmd.Flags().StringVar(&run, "run", "", "drop a slot this target records no run on: the id of the sluice run that made it, as the refusal (SLUICE-SLOT-UNRECORDED) names it")
	}
	return cmd
}

// cleanup is one finish or abort.
type cleanup struct {
	a    *app
	name string // finish or abort
	slot string // --slot; run sets the default (sluice_<target database>) when empty
	pub  string
	// state is what the target records of this sync; nil when it cannot be
	// reached or records nothing.
	state *mysql.SyncState
	// othersSlot: the slot and publication of that name were made by
	// another migration's run (the publication's tag says so), after this
	// one failed while preparing or lost its slot; abort leaves them.
	othersSlot bool
	// confirmedRun is abort's --run: the person says the slot made by
	// that run, which this target records nothing of, is this migration's.
	confirmedRun string
	wait         time.Duration // finish: for the sync to apply what came before it
	out          io.Writer
}

// run removes the sync on c.slot: the source's slot and publication first
// (they retain WAL), then what the target records of it. abort drops the
// source's side even when the target cannot be reached, and then fails
// saying the target's part is left. stop asks a running sync to stop.
func (c *cleanup) run(ctx context.Context, stop func(context.Context)) error {
	srcCfg, tgtCfg, err := c.a.resolve()
	if err != nil {
		return err
	}
	if c.slot == "" {
		c.slot = syncer.SlotName(tgtCfg.Database)
	}
	c.pub = c.slot
	src, err := postgres.Connect(ctx, srcCfg.ConnString(), srcCfg.Redacted(), 2)
	if err != nil {
		return err
	}
	defer src.Close()
	tgt, tgtErr := mysql.Open(ctx, tgtCfg, 2)
	noDatabase := failure.Code(tgtErr) == "SLUICE-TARGET-NODB"
	switch {
	case tgtErr == nil:
		defer tgt.Close()
	case c.name == "finish": // only the target says whether the cutover happened
		return tgtErr
	case noDatabase: // nothing is recorded there: a slot is this migration's only as checkTarget allows
	default:
		c.a.log.Warn("the target cannot be reached: dropping the replication slot and publication on the source only",
			"code", "SLUICE-ABORT-TARGET", "slot", c.slot, "error", tgtErr.Error())
	}
	slotExists, err := pgstream.SlotExists(ctx, src.Pool, c.slot)
	if err != nil {
		return fmt.Errorf("source: look up replication slot %s: %w", c.slot, err)
	}
	var others []mysql.SyncState
	if tgt != nil {
		var done bool
		if others, done, err = c.checkTarget(ctx, src, tgt, slotExists); err != nil || done {
			return err
		}
	} else if noDatabase && slotExists {
		if err := c.checkUnrecordedSlot(ctx, src); err != nil {
			return err
		}
	}
	if err := c.revokedGrants(ctx, src); err != nil {
		return err
	}
	// Read before the publication goes: the tables whose copy progress is
	// this sync's, when other syncs keep the bookkeeping tables.
	tables, err := syncTables(ctx, src, c.state, c.pub)
	if err != nil {
		return err
	}
	if c.name == "finish" && slotExists {
		if err := c.drained(ctx, src, tgt); err != nil {
			return err
		}
	}
	dropped := fmt.Sprintf("dropped replication slot and publication %s on the source", c.slot)
	if c.othersSlot {
		c.a.log.Warn(fmt.Sprintf("replication slot %s and its publication were made by another migration's run, after this one failed while preparing or lost its slot: %s leaves them", c.slot, c.name),
			"code", "SLUICE-SLOT-OTHERS", "slot", c.slot,
			"hint", "give this migration a slot of its own with --slot when it starts again")
		dropped = fmt.Sprintf("left replication slot and publication %s on the source (another migration's)", c.slot)
	} else {
		stop(ctx)
		if err := pgstream.Drop(ctx, src.Pool, c.slot, c.pub); err != nil {
			return c.dropFailed(ctx, err)
		}
	}
	if !slotExists { // run twice, or after a crash before the slot was made: say what was there
		dropped = fmt.Sprintf("found no replication slot %s on the source (its publication, if any, is dropped)", c.slot)
	}
	if noDatabase {
		fmt.Fprintf(c.out, "%s: %s; the target database %s does not exist, so nothing of sluice's is there\n", c.name, dropped, tgtCfg.Database)
		return nil
	}
	if tgt == nil {
		fmt.Fprintf(c.out, "%s: %s; sluice's metadata on the target is NOT removed (the target cannot be reached)\n", c.name, dropped)
		return failure.Wrap(tgtErr, failure.Connection, "SLUICE-ABORT-TARGET",
			"abort: replication slot and publication %s are dropped on the source, but the target cannot be reached: sluice's metadata there is not removed", c.slot).
			With("slot", c.slot).
			WithHint("once the target is reachable run sluice abort --slot %s again to remove it. Keep every sluice sync of this migration stopped until then: one that starts meanwhile finds its state and may create the slot again (SELECT pg_drop_replication_slot('%s') on the source drops it)", c.slot, c.slot)
	}
	if len(others) == 0 {
		if err := tgt.DropMetadata(ctx); err != nil {
			return err
		}
		fmt.Fprintf(c.out, "%s: %s and sluice's metadata on the target\n", c.name, dropped)
		return nil
	}
	if err := tgt.RemoveSync(ctx, c.slot, c.ownTables(ctx, src, tables, others), c.ownStream(others)); err != nil {
		return err
	}
	fmt.Fprintf(c.out, "%s: %s and its state on the target; sluice's bookkeeping tables stay for the syncs on %s\n",
		c.name, dropped, slotList(others))
	return nil
}

// drained makes sure the sync has applied every change the source
// committed before finish began: dropping the slot drops any change not
// applied yet, for good. A running sync has until --wait to confirm a
// message written now; a stopped one must have left no row change behind.
// A publisher confirms what JetStream stored, so with partitions the wait
// goes on until every applier has applied that message, which the
// publisher hands to every partition (a probe mark).
func (c *cleanup) drained(ctx context.Context, src *postgres.Source, tgt *mysql.Target) error {
	mark, err := pgstream.Emit(ctx, src.Pool, true, fmt.Sprintf("P:finish:%d", time.Now().UnixNano()))
	if err != nil {
		return err
	}
	partitions := 0
	if c.state != nil {
		partitions = c.state.Partitions
	}
	deadline := time.Now().Add(c.wait)
	behind := func(format string, args ...any) *failure.Error {
		return failure.New(failure.Usage, "SLUICE-FINISH-BEHIND", "finish: "+format, args...).With("slot", c.slot)
	}
	for {
		p, err := pgstream.Progress(ctx, src.Pool, c.slot)
		if err != nil {
			return err
		}
		switch {
		case p.Confirmed >= mark && partitions == 0:
			return nil
		case p.Confirmed >= mark:
			parts, err := tgt.Partitions(ctx, c.state.Stream)
			if err != nil || publish.AllPast(parts, partitions, publish.Pos{LSN: uint64(mark)}) {
				return err
			}
		case !p.Active && partitions > 0:
			return behind("no publisher runs on slot %s, so finish cannot tell whether the appliers have applied what the source committed before it began; dropping the slot now could lose changes", c.slot).
				WithHint("start sluice sync --publish again with its appliers running, wait until they are caught up, then run sluice finish")
		case !p.Active:
			// What the target holds now (a sync that ran during --wait may
			// have written more), though the slot may not be confirmed that
			// far: a sync killed after its target commit, before it confirmed.
			// The slot is moved there first, as a resumed sync would confirm
			// it, so the peek reads only what is not applied.
			state, err := tgt.LoadSyncState(ctx, c.slot)
			if err != nil {
				return err
			}
			if state != nil && pglogrepl.LSN(state.AppliedLSN) > p.Confirmed {
				if err := pgstream.AdvanceSlot(ctx, src.Pool, c.slot, pglogrepl.LSN(state.AppliedLSN)); err != nil {
					if p, perr := pgstream.Progress(ctx, src.Pool, c.slot); perr != nil || !p.Active {
						return err
					}
					break // a sync started meanwhile: wait for it as for a running one
				}
			}
			n, more, err := pgstream.UnreadChanges(ctx, src.Pool, c.slot, c.pub, mark)
			if err != nil || n == 0 && !more {
				return err
			}
			count := fmt.Sprint(n)
			switch {
			case more && n == 0: // only other messages in what it read
				count = "possibly"
			case more:
				count += " or more"
			}
			return behind("slot %s holds %s row changes the source committed that the target has not applied (no sync is running on it); dropping it now would lose them", c.slot, count).
				WithHint("run sluice sync again (it resumes), wait until sluice status shows no lag, then run sluice finish")
		}
		if time.Now().After(deadline) {
			return behind("the sync on slot %s has not applied what the source committed before finish began within --wait %s (the slot is confirmed to %s, finish began at %s)", c.slot, c.wait, p.Confirmed, mark).
				WithHint("look at sluice status and the sync's log (is the target reachable? do the appliers run?), then run sluice finish again, with a longer --wait if it is catching up")
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// checkTarget reads what the target records and refuses what must not be
// dropped: a slot nothing is known of while other syncs are recorded (a
// missing or wrong --slot would otherwise drop their state), and, for
// finish, a sync not cut over. It returns the syncs on other slots, and
// done when there is nothing to finish (it says so).
func (c *cleanup) checkTarget(ctx context.Context, src *postgres.Source, tgt *mysql.Target, slotExists bool) (others []mysql.SyncState, done bool, err error) {
	state, err := tgt.LoadSyncState(ctx, c.slot)
	if err != nil {
		return nil, false, err
	}
	if others, err = tgt.OtherSyncs(ctx, c.slot); err != nil {
		return nil, false, err
	}
	if state != nil {
		c.pub = state.Publication
		c.state = state
		if slotExists && state.RunID != "" {
			run, err := pgstream.PublicationRun(ctx, src.Pool, c.pub)
			if err != nil {
				return nil, false, err
			}
			c.othersSlot = run != "" && run != state.RunID
		}
	}
	if state == nil && slotExists {
		if err := c.checkUnrecordedSlot(ctx, src); err != nil {
			return nil, false, err
		}
	}
	if state == nil && len(others) > 0 && !slotExists {
		_, pubExists, err := pgstream.PublicationTables(ctx, src.Pool, c.pub)
		if err != nil {
			return nil, false, err
		}
		if !pubExists {
			return nil, false, failure.New(failure.Usage, "SLUICE-SLOT-UNKNOWN", "%s: no sync is recorded on slot %s, and the source has no such slot or publication; the target records syncs on %s",
				c.name, c.slot, slotList(others)).With("slot", c.slot).
				WithHint("name the sync with --slot, e.g. sluice %s --slot %s", c.name, others[0].Slot)
		}
	}
	if c.name != "finish" {
		return others, false, nil
	}
	if state == nil && !slotExists { // finished already, never started, or an events sync
		events, err := tgt.TableExists(ctx, mysql.EventVersionsTable)
		if err != nil {
			return nil, false, err
		}
		if events {
			return nil, false, failure.New(failure.Usage, "SLUICE-FINISH-NOCUTOVER", "no log-based or partitioned sync is recorded for slot %s, but an events sync's bookkeeping is on the target", c.slot).
				WithHint("an events sync has no slot to finish: once the application writes to the target, stop the events sync and run sluice abort, which removes its bookkeeping")
		}
		fmt.Fprintf(c.out, "nothing to finish: no sync state on the target and no replication slot %s on the source (finished or aborted already)\n", c.slot)
		return others, true, nil
	}
	if state == nil || state.Phase != mysql.PhaseCutover {
		return nil, false, failure.New(failure.Usage, "SLUICE-FINISH-NOCUTOVER", "no cutover is recorded for slot %s", c.slot).
			WithHint("run sluice cutover first, or sluice abort to stop without cutting over")
	}
	return others, false, nil
}

// syncTables names, as the copy progress does, the tables of a sync: those
// the target records, or for a sync recorded by an older build the tables
// of its publication (gone once an abort dropped it).
func syncTables(ctx context.Context, src *postgres.Source, st *mysql.SyncState, pub string) ([]string, error) {
	if st != nil && len(st.Tables) > 0 {
		return st.Tables, nil
	}
	published, _, err := pgstream.PublicationTables(ctx, src.Pool, pub)
	if err != nil {
		return nil, err
	}
	names := make([]string, len(published))
	for i, t := range published {
		names[i] = t.String()
	}
	return names, nil
}

// ownTables returns those of tables that no other recorded sync captures.
func (c *cleanup) ownTables(ctx context.Context, src *postgres.Source, tables []string, others []mysql.SyncState) []string {
	shared := map[string]bool{}
	for _, o := range others {
		theirs, err := syncTables(ctx, src, &o, o.Publication)
		if err != nil { // keep every table's progress rather than guess
			c.a.log.Warn("could not read another sync's publication; the copy progress of this sync's tables is kept", "publication", o.Publication, "error", err.Error())
			return nil
		}
		for _, t := range theirs {
			shared[t] = true
		}
	}
	var own []string
	for _, t := range tables {
		if !shared[t] {
			own = append(own, t)
		}
	}
	return own
}

// ownStream returns this sync's published stream unless another recorded
// sync publishes to it too: its partition progress is then kept.
func (c *cleanup) ownStream(others []mysql.SyncState) string {
	if c.state == nil || c.state.Stream == "" {
		return ""
	}
	for _, o := range others {
		if o.Stream == c.state.Stream {
			return ""
		}
	}
	return c.state.Stream
}

// dropFailed adds to a failed drop on the source how to do it by hand.
func (c *cleanup) dropFailed(ctx context.Context, err error) error {
	if ctx.Err() != nil || failure.Code(err) != "SLUICE-INTERNAL" {
		return err // interrupted, or classified with its own hint (SLUICE-SYNC-SLOTBUSY names the statements)
	}
	triggers, _, _ := pgstream.SchemaWatchNames(c.slot)
	var drops strings.Builder
	for _, t := range triggers {
		fmt.Fprintf(&drops, " DROP EVENT TRIGGER IF EXISTS %s;", t)
	}
	for _, f := range pgstream.WatchFunctions(c.slot) {
		fmt.Fprintf(&drops, " DROP FUNCTION IF EXISTS %s CASCADE;", f) // CASCADE: the partitions' TRUNCATE triggers
	}
	return failure.Wrap(err, failure.Internal, "SLUICE-ABORT-SOURCE", "%s: could not drop replication slot, publication or triggers %s on the source", c.name, c.slot).
		With("slot", c.slot).
		// lock_timeout: the CASCADE locks every partition at once, against its readers too
		WithHint("run sluice %s --slot %s again, or on the source: SELECT pg_drop_replication_slot('%s'); DROP PUBLICATION IF EXISTS %s; SET lock_timeout = '1s';%s DROP SCHEMA IF EXISTS _sluice; (the last fails while another sync uses it)",
			c.name, c.slot, c.slot, c.pub, drops.String())
}

// slotList names the slots of syncs for a message.
func slotList(syncs []mysql.SyncState) string {
	names := make([]string, len(syncs))
	for i, s := range syncs {
		names[i] = s.Slot
	}
	return "slot " + strings.Join(names, ", slot ")
}

// checkUnrecordedSlot refuses to drop a slot the target records no run on
// (or has no database for) when it may be another migration's: one in use
// is (one from this source database into a target database of the same
// name elsewhere); an idle one that some sluice run made may be, stopped
// for now, so it is dropped only when the person names that run (--run).
// One made before runs were tagged cannot be told apart, and is dropped.
func (c *cleanup) checkUnrecordedSlot(ctx context.Context, src *postgres.Source) error {
	if p, err := pgstream.Progress(ctx, src.Pool, c.slot); err != nil {
		return err
	} else if p.Active {
		return failure.New(failure.Usage, "SLUICE-SLOT-INUSE", "%s: replication slot %s is in use by a running sync, but this target records no run on it: it is another migration's, and sluice leaves it", c.name, c.slot).
			With("slot", c.slot).
			WithHint("give this migration's own slot with --slot; if the running sync is this migration's after all, stop it first")
	}
	run, err := pgstream.PublicationRun(ctx, src.Pool, c.pub)
	if err != nil {
		return err
	}
	if run != "" && run != c.confirmedRun {
		return failure.New(failure.Usage, "SLUICE-SLOT-UNRECORDED", "%s: replication slot %s was made by sluice run %s, which this target records nothing of: another migration's (from this source database into a target database of the same name elsewhere) that is stopped for now, or a leftover of this migration whose state on the target was removed; sluice leaves it", c.name, c.slot, run).
			With("slot", c.slot).
			WithHint("if no other migration uses slot %s, sluice abort --slot %s --run %s drops it; otherwise give this migration a slot of its own with --slot", c.slot, c.slot, run)
	}
	return nil
}

// revokedGrants deals with the write privileges a cutover's revoke fence
// took from the application (the target records them until they are given
// back): abort, a way back to the source, gives them back; finish leaves
// them taken, as the cutover meant, and says how to give them back.
func (c *cleanup) revokedGrants(ctx context.Context, src *postgres.Source) error {
	if c.state == nil || c.state.RevokedGrants == "" {
		return nil
	}
	grants, err := fence.DecodeGrants(c.state.RevokedGrants)
	if err != nil {
		return err
	}
	if c.name == "finish" {
		fmt.Fprintf(c.out, "%s: the application's write privileges on the source tables stay revoked (--fence revoke); to give them back: %s\n", c.name, strings.Join(fence.Statements(grants), "; "))
		return nil
	}
	if err := fence.Restore(ctx, src, grants); err != nil {
		return failure.Wrap(err, failure.Connection, "SLUICE-CUTOVER-RESTORE", "%s: could not give back the write privileges the cutover's fence revoked; nothing was removed", c.name).
			WithHint("run sluice %s again once the source takes the GRANT", c.name)
	}
	fmt.Fprintf(c.out, "%s: gave back the application's write privileges the cutover's fence had revoked (%d grants)\n", c.name, len(grants))
	return nil
}
