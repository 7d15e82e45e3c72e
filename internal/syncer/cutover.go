package syncer

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/sluice-db/sluice/internal/copier"
	"github.com/sluice-db/sluice/internal/failure"
	"github.com/sluice-db/sluice/internal/fence"
	"github.com/sluice-db/sluice/internal/mysql"
	"github.com/sluice-db/sluice/internal/pgstream"
	"github.com/sluice-db/sluice/internal/plan"
	"github.com/sluice-db/sluice/internal/verify"
)

// CutoverOptions tune the switch.
type CutoverOptions struct {
	// Fence is how writes to the source tables are stopped: FenceLock
	// takes LOCK TABLE … IN EXCLUSIVE MODE (reads go on, writes wait) for
	// the duration of the cutover; FenceRevoke first revokes FenceRoles'
	// write privileges on the tables (see fence.WriteGrants), and keeps
	// them revoked once the cutover is done.
	Fence        string
	FenceRoles   []string
	LockTimeout  time.Duration // give up if the lock is not granted in this time
	Timeout      time.Duration // most the fence may stay up
	CatchUpLimit time.Duration // most to wait for the lag to get under the bound first
	// AutoIncrementGap is how many ids past the source sequence each target
	// AUTO_INCREMENT starts, for writes that still reach the source (and are
	// streamed) until the application has switched.
	AutoIncrementGap int64
}

// The fence methods.
const (
	FenceLock   = "lock"
	FenceRevoke = "revoke"
)

func (o *CutoverOptions) defaults() {
	if o.Fence == "" {
		o.Fence = FenceLock
	}
	if o.LockTimeout <= 0 {
		o.LockTimeout = 5 * time.Second
	}
	if o.Timeout <= 0 {
		o.Timeout = 30 * time.Second
	}
	if o.CatchUpLimit <= 0 {
		o.CatchUpLimit = 10 * time.Minute
	}
}

// CutoverReport says what a cutover did.
type CutoverReport struct {
	Fence           string           `json:"fence"`
	WritePauseMS    float64          `json:"write_pause_ms"` // from the lock request to done: what writers see
	LockWaitMS      float64          `json:"lock_wait_ms"`   // lock request until granted (transactions already running finish)
	DrainMS         float64          `json:"drain_ms"`       // fence until the stream had applied everything before it
	RowsVerified    int              `json:"rows_verified"`  // changed rows compared under the fence
	RowsVerifiedPre int              `json:"rows_verified_before_fence"`
	AutoIncrement   map[string]int64 `json:"auto_increment,omitempty"`
	// MissingUniqueIndexes: the source's unique indexes the target tables
	// lack ("table: index (columns)"), made on the source during the sync.
	MissingUniqueIndexes []string `json:"missing_unique_indexes,omitempty"`
	// Revoked: the revoke fence's privileges, which stay taken after the
	// cutover, as the GRANT statements that give them back.
	Revoked []string `json:"revoked,omitempty"`
	// AutoIncrementUnknown: target columns (table.column) whose source
	// sequence was not found; their AUTO_INCREMENT is left for the person.
	AutoIncrementUnknown []string  `json:"auto_increment_unknown,omitempty"`
	FenceLSN             string    `json:"fence_lsn"`
	FinishedAt           time.Time `json:"finished_at"`
	// EarlierRun: the target records a cutover an earlier run of this
	// sync made; this run did not fence, and has no figures of it.
	EarlierRun bool `json:"earlier_run,omitempty"`
	// Events: the events topology's cutover, which fences nothing: the
	// application stopped writing, and every event was applied.
	Events bool `json:"events,omitempty"`
	// DeadLettered: events that could not be applied (in all, every run):
	// the target lacks their changes.
	DeadLettered int64 `json:"events_dead_lettered,omitempty"`
	// The sync's figures at the cutover, for the report.
	ChangesApplied      int64   `json:"changes_applied"`
	LagP50Seconds       float64 `json:"lag_p50_seconds"`
	LagP99Seconds       float64 `json:"lag_p99_seconds"`
	WALRetainedMaxBytes int64   `json:"wal_retained_max_bytes"`
}

type fenceWait struct {
	id      string
	reached chan struct{}
}

// Cutover waits for the copy to finish and the lag to fall under the
// bound, fences writes on the source, drains the stream up to the fence,
// verifies the rows changed since the last check, moves each AUTO_INCREMENT
// past its source sequence and lifts the fence. Any failure lifts the fence
// and leaves the sync running.
func (s *Syncer) Cutover(ctx context.Context) (*CutoverReport, error) {
	return s.cutover(ctx, false)
}

// cutover is Cutover; auto (--cutover=auto) first looks for transactions
// that would hold the fence up and does not request it while one does.
func (s *Syncer) cutover(ctx context.Context, auto bool) (_ *CutoverReport, err error) {
	if !s.cutoverMu.TryLock() {
		return nil, failure.New(failure.Usage, "SLUICE-CUTOVER-BUSY", "a cutover is already running")
	}
	defer s.cutoverMu.Unlock()
	if r := s.status.cutover.Load(); r != nil {
		return r, nil
	}
	ctx, cancel := fence.UntilStopped(ctx, s.stop, s.ended)
	defer cancel()
	defer func() { err = fence.Ended(ctx, err) }()
	if err := s.waitCaughtUp(ctx); err != nil {
		return nil, err
	}
	// Verify what changed so far while writes still flow, so little is left
	// to check while they are fenced: each round checks what changed during
	// the one before, so the rounds shrink as long as checking is faster
	// than writing, down to what changes in a moment.
	var recheck map[*table][]string
	preVerified := 0
	for round := 1; ; round++ {
		var n int
		var err error
		if recheck, n, err = s.verifyChanged(ctx, recheck, false); err != nil {
			return nil, err
		}
		preVerified += n
		left := s.changed.count() + countKeys(recheck)
		if left <= fencedVerifyKeys || round == maxPreVerifyRounds || left >= n {
			break
		}
	}
	report, err := s.fencedCutover(ctx, recheck, auto)
	if err != nil {
		err = fence.Ended(ctx, err)
		s.changed.restore(recheck) // rows that differed before the fence: a later cutover checks them again
		// requestAutoCutover logs its own failures, with the next attempt
		if !auto {
			fence.LogFailed(s.log, "cutover failed; the fence is lifted and the sync goes on", err)
		}
		return nil, err
	}
	report.RowsVerifiedPre = preVerified
	report.MissingUniqueIndexes = s.missingUniqueIndexes(ctx)
	st := s.Status()
	report.ChangesApplied, report.LagP50Seconds, report.LagP99Seconds, report.WALRetainedMaxBytes =
		st.ChangesApplied, st.LagP50Seconds, st.LagP99Seconds, st.WALRetainedMaxBytes
	// The fence is committed: the cutover happened, and a stop or a client
	// that went away must not keep the target from recording it.
	rctx, rcancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer rcancel()
	if err := s.tgt.RecordCutover(rctx, s.opt.Slot); err != nil {
		return nil, err
	}
	s.status.cutover.Store(report)
	s.log.Info("cutover done", "write_pause_ms", report.WritePauseMS, "rows_verified", report.RowsVerified)
	return report, nil
}

const (
	// fencedVerifyKeys is how few changed rows the rounds before the fence
	// aim to leave for the fenced section (a few milliseconds of checking).
	fencedVerifyKeys = 2000
	// maxPreVerifyRounds bounds the rounds when writes outpace checking.
	maxPreVerifyRounds = 8
)

func (s *Syncer) waitCaughtUp(ctx context.Context) error {
	deadline := time.Now().Add(s.opt.Cutover.CatchUpLimit)
	// Twice in a row: between a batch's write and the next transaction the
	// lag reads zero for a moment even when a backlog waits.
	underBound := 0
	for {
		if s.copyDone() && s.lag() < s.opt.LagBound {
			if underBound++; underBound == 2 {
				return nil
			}
		} else {
			underBound = 0
		}
		if time.Now().After(deadline) {
			return failure.New(failure.Internal, "SLUICE-CUTOVER-LAG", "cutover gave up: the copy is not done or the lag stayed above %s for %s",
				s.opt.LagBound, s.opt.Cutover.CatchUpLimit).WithHint("check sluice status; lower the write load or raise --lag-bound")
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (s *Syncer) fencedCutover(ctx context.Context, preDiffs map[*table][]string, auto bool) (_ *CutoverReport, err error) {
	if auto {
		if err := s.checkBlockers(ctx); err != nil {
			return nil, err
		}
	}
	revokeStart := time.Now()
	var revoked []fence.Grant
	if s.opt.Cutover.Fence == FenceRevoke {
		if revoked, err = s.revokeWrites(ctx); err != nil {
			return nil, err
		}
		defer func() { // after the lock is released below
			if err != nil {
				s.restoreWrites(revoked)
			}
		}()
	}
	lock, err := fence.Take(ctx, s.src, s.tablePlans(), s.opt.Cutover.LockTimeout, s.opt.Cutover.Timeout)
	if err != nil {
		return nil, err
	}
	defer func() { // after the release below: how long a failed attempt held writers up
		if err != nil {
			s.log.Warn("write fence lifted after a failed cutover", "code", "SLUICE-CUTOVER-LIFTED",
				"write_pause_ms", ms(time.Since(lock.Requested)), "reason", failure.Code(err))
		}
	}()
	defer lock.Release() // lifts the fence on every failure
	lockStart, fenced := lock.Requested, lock.Granted
	if s.opt.Cutover.Fence == FenceRevoke {
		lockStart = revokeStart // the application's writes were refused from there
	}
	// The fence stays up for Timeout at most: every step under it runs in fctx.
	fctx, cancel, overtime := lock.Within(ctx)
	defer cancel()
	s.windowsMu.Lock()
	fw := &fenceWait{id: fmt.Sprintf("F:%s:%d", s.runID, fenced.UnixNano()), reached: make(chan struct{})}
	s.windowsMu.Unlock()
	s.fence.Store(fw)
	defer s.fence.Store(nil)
	// The fence is a transactional message committed after the lock was
	// granted: every write to the tables committed before it, and its commit
	// flushes the WAL so the stream delivers it at once.
	lsn, err := pgstream.Emit(fctx, s.src.Pool, true, fw.id)
	if err != nil {
		return nil, overtime("writing the fence", err)
	}
	select {
	case <-fw.reached:
	case <-fctx.Done():
		return nil, overtime("draining the stream to the fence", fctx.Err())
	}
	drained := time.Since(fenced)
	_, post, err := s.verifyChanged(fctx, preDiffs, true)
	if err != nil {
		return nil, overtime("verifying the changed rows", err)
	}
	verified := time.Since(fenced)
	autoInc, autoIncUnknown, err := lock.SyncAutoIncrement(fctx, s.tgt, s.opt.Cutover.AutoIncrementGap, s.log)
	if err != nil {
		return nil, overtime("setting AUTO_INCREMENT", err)
	}
	if err := lock.Commit(fctx); err != nil {
		return nil, overtime("lifting the fence", err)
	}
	// Writers queue behind the lock from the moment it is requested, so
	// the pause they see starts there, not when it is granted, and ends
	// when the fence's transaction has committed.
	lockWait := fenced.Sub(lockStart)
	pause := time.Since(lockStart)
	s.log.Info("cutover fenced section", "lock_wait_ms", ms(lockWait), "drain_ms", ms(drained),
		"verify_ms", ms(verified-drained), "auto_increment_and_commit_ms", ms(pause-lockWait-verified), "rows_verified", post)
	return &CutoverReport{Fence: s.opt.Cutover.Fence, Revoked: fence.Statements(revoked), WritePauseMS: ms(pause), LockWaitMS: ms(lockWait), DrainMS: ms(drained),
		RowsVerified: post, AutoIncrement: autoInc, AutoIncrementUnknown: autoIncUnknown, FenceLSN: lsn.String(), FinishedAt: time.Now()}, nil
}

// verifyChanged compares the rows changed since the last call, plus
// recheck, between source and target. Before the fence a difference may be
// a change still in flight, so the keys of a table with differences come
// back to be checked again under the fence; under the fence any difference
// fails the cutover. verified counts the rows found equal.
func (s *Syncer) verifyChanged(ctx context.Context, recheck map[*table][]string, fenced bool) (map[*table][]string, int, error) {
	changed, overflow := s.changed.take()
	if overflow {
		s.log.Warn("more rows changed since the copy than cutover re-checks; run sluice verify after the cutover",
			"code", "SLUICE-CUTOVER-MANYCHANGES", "limit", maxChangedKeys)
	}
	byTable := map[*table][]string{}
	for t, keys := range changed {
		for k := range keys {
			byTable[t] = append(byTable[t], k)
		}
	}
	for t, keys := range recheck {
		byTable[t] = append(byTable[t], keys...)
	}
	again := map[*table][]string{}
	verified := 0
	for t, keys := range byTable {
		split := make([][]string, len(keys))
		for i, k := range keys {
			split[i] = strings.Split(k, "\x00")
		}
		diffs, err := verify.CompareKeys(ctx, s.src, s.tgt, t.plan, split)
		if err != nil {
			s.changed.restore(byTable) // not all of them compared: a later cutover checks them again
			return nil, 0, err
		}
		if len(diffs) == 0 {
			verified += len(keys)
			continue
		}
		if fenced {
			s.changed.restore(byTable)
			d := diffs[0]
			return nil, 0, failure.New(failure.Internal, "SLUICE-CUTOVER-VERIFY", "cutover: %d changed rows of %s differ after the stream drained (first: %s key %s)",
				len(diffs), t.plan.Source.Name, d.Kind, d.Key).With("table", t.plan.Source.Name.String()).
				WithHint("the fence is lifted; run sluice verify --tables %s and report this", t.plan.Source.Name)
		}
		// Before the fence a difference may be a change in flight: check
		// those rows again (all of the table's if one cannot be told).
		for _, d := range diffs {
			if d.Index < 0 {
				again[t] = keys
				break
			}
			again[t] = append(again[t], keys[d.Index])
		}
		// The rows checked again count once, when they compare equal.
		verified += len(keys) - len(again[t])
	}
	return again, verified, nil
}

// ms is d in milliseconds, to the microsecond.
func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func countKeys(m map[*table][]string) int {
	n := 0
	for _, k := range m {
		n += len(k)
	}
	return n
}

// tablePlans lists the synced tables' plans.
func (s *Syncer) tablePlans() []*plan.Table {
	out := make([]*plan.Table, len(s.tables))
	for i, t := range s.tables {
		out[i] = t.plan
	}
	return out
}

// changedKeys remembers which rows changed, per table, up to a bound.
type changedKeys struct {
	mu       sync.Mutex
	keys     map[*table]map[string]struct{}
	n        int
	overflow bool
}

const maxChangedKeys = 1_000_000

func (c *changedKeys) add(t *table, key string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.overflow {
		return
	}
	if c.keys == nil {
		c.keys = map[*table]map[string]struct{}{}
	}
	m := c.keys[t]
	if m == nil {
		m = map[string]struct{}{}
		c.keys[t] = m
	}
	if _, ok := m[key]; !ok {
		m[key] = struct{}{}
		c.n++
		if c.n > maxChangedKeys {
			c.overflow, c.keys, c.n = true, nil, 0
		}
	}
}

// restore gives back keys taken but not confirmed equal, so that a failed
// cutover does not lose them.
func (c *changedKeys) restore(keys map[*table][]string) {
	for t, ks := range keys {
		for _, k := range ks {
			c.add(t, k)
		}
	}
}

// count is how many keys were gathered since the last take.
func (c *changedKeys) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n
}

// take returns the keys gathered so far and starts afresh.
func (c *changedKeys) take() (map[*table]map[string]struct{}, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	k, o := c.keys, c.overflow
	c.keys, c.n, c.overflow = nil, 0, false
	return k, o
}

// checkBlockers refuses to request the fence while a transaction open
// longer than the lock timeout holds one of the tables (a session idle in
// transaction, an anti-wraparound vacuum): the lock request would queue
// behind it, and every writer behind the request, until the lock timeout,
// and the fence still fail.
func (s *Syncer) checkBlockers(ctx context.Context) error {
	blockers, err := fence.Blockers(ctx, s.src, s.tablePlans(), s.opt.Cutover.LockTimeout)
	if err != nil {
		return err
	}
	if len(blockers) == 0 {
		return nil
	}
	b := blockers[0]
	return failure.New(failure.Internal, "SLUICE-CUTOVER-BLOCKED", "cutover not attempted: %s holds a lock the write fence would wait for (%d such sessions)",
		b, len(blockers)).With("pid", fmt.Sprint(b.PID)).With("table", b.Table).
		WithHint("requesting the fence would stall writes for --lock-timeout and still fail; end that transaction (SELECT pg_terminate_backend(%d) on the source) or let it finish: sluice tries again by itself", b.PID)
}

// Automatic cutover attempts that fail are retried after a pause that
// doubles each time, up to maxAutoRetry: an attempt that requests the fence
// stalls writers for up to --lock-timeout, and whatever made it fail (a long
// transaction) may last.
const (
	firstAutoRetry = 5 * time.Second
	maxAutoRetry   = 5 * time.Minute
)

// nextAutoRetry is the pause after an automatic attempt failed, given the
// one before (0 after none).
func nextAutoRetry(prev time.Duration) time.Duration {
	if prev <= 0 {
		return firstAutoRetry
	}
	return min(2*prev, maxAutoRetry)
}

// requestAutoCutover runs a cutover for --cutover=auto; a failed attempt is
// retried after a growing pause (nextAutoRetry), one the run's end cut
// short (a broken stream: the sync resumes) by the resumed run.
func (s *Syncer) requestAutoCutover(ctx context.Context) {
	s.log.Info("copy done and lag under the bound: cutting over", "lag_bound", s.opt.LagBound.String())
	_, err := s.cutover(ctx, true)
	if err == nil {
		return
	}
	if ctx.Err() != nil { // the run ended: the next one tries again
		s.status.autoTried.Store(false)
		return
	}
	s.autoRetry = nextAutoRetry(s.autoRetry)
	level := slog.LevelError
	if failure.Code(err) == "SLUICE-CUTOVER-BLOCKED" { // skipped: the fence was not requested
		level = slog.LevelWarn
	}
	s.log.Log(ctx, level, "automatic cutover failed; the sync goes on and tries again later", "code", failure.Code(err), "error", err.Error(),
		"retry_in", s.autoRetry.String(), "next_attempt", time.Now().Add(s.autoRetry).Format(time.RFC3339))
	select {
	case <-ctx.Done():
	case <-time.After(s.autoRetry):
	}
	s.status.autoTried.Store(false)
}

// revokeWrites takes the fence roles' write privileges on the tables,
// recording them on the target first: a run that dies before its cutover
// is recorded gives them back when it restarts (or sluice abort does).
func (s *Syncer) revokeWrites(ctx context.Context) ([]fence.Grant, error) {
	grants, err := fence.WriteGrants(ctx, s.src, s.tablePlans(), s.opt.Cutover.FenceRoles)
	if err != nil {
		return nil, err
	}
	// What an earlier attempt took and still holds (its cutover committed
	// but was not recorded, or giving them back failed) stays recorded:
	// the role holds none of it now, so this attempt's list lacks it.
	state, err := s.tgt.LoadSyncState(ctx, s.opt.Slot)
	if err != nil {
		return nil, err
	}
	if state != nil {
		held, err := fence.DecodeGrants(state.RevokedGrants)
		if err != nil {
			return nil, err
		}
		grants = fence.Union(held, grants)
	}
	if err := s.tgt.RecordRevokedGrants(ctx, s.opt.Slot, fence.EncodeGrants(grants)); err != nil {
		return nil, err
	}
	if err := fence.Revoke(ctx, s.src, grants, s.tablePlans(), s.opt.Cutover.FenceRoles); err != nil {
		if state == nil || state.RevokedGrants == "" {
			s.forgetRevoked() // nothing was taken, now or before
		}
		return nil, err
	}
	s.log.Info("write privileges revoked for the cutover", "roles", strings.Join(s.opt.Cutover.FenceRoles, ","), "grants", len(grants))
	return grants, nil
}

// restoreWrites gives back what revokeWrites took, when the cutover failed
// or was interrupted. It does so whatever ended the cutover's context.
func (s *Syncer) restoreWrites(grants []fence.Grant) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := fence.Restore(ctx, s.src, grants); err != nil {
		s.log.Error("the write privileges the fence revoked could not be given back: the application cannot write to these tables on the source", "code", "SLUICE-CUTOVER-RESTORE",
			"error", err.Error(), "hint", "run on the source: "+strings.Join(fence.Statements(grants), "; ")+" (or restart sluice sync, or run sluice abort, which try again)")
		return
	}
	s.forgetRevoked()
	s.log.Info("write privileges given back after the failed cutover", "grants", len(grants))
}

// forgetRevoked clears the record of revoked privileges; a record left
// behind only makes a later run try to give them back again.
func (s *Syncer) forgetRevoked() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.tgt.RecordRevokedGrants(ctx, s.opt.Slot, ""); err != nil {
		s.log.Warn("could not clear the record of the privileges the fence revoked", "error", err.Error())
	}
}

// restoreInterruptedRevoke gives back the privileges a cutover's revoke
// fence took in a run that ended before the cutover was recorded. Not
// while a cutover of this process runs (it holds cutoverMu): the state is
// read again under the lock, as that cutover may have been recorded since.
func (s *Syncer) restoreInterruptedRevoke(ctx context.Context) {
	if !s.cutoverMu.TryLock() {
		return
	}
	defer s.cutoverMu.Unlock()
	state, err := s.tgt.LoadSyncState(ctx, s.opt.Slot)
	if err != nil || state == nil || state.RevokedGrants == "" || state.Phase == mysql.PhaseCutover {
		return
	}
	grants, err := fence.DecodeGrants(state.RevokedGrants)
	if err != nil {
		s.log.Error("cannot read the write privileges an interrupted cutover revoked", "code", "SLUICE-CUTOVER-RESTORE", "error", err.Error())
		return
	}
	s.log.Warn("a cutover was interrupted with the application's write privileges revoked: giving them back", "code", "SLUICE-CUTOVER-RESTORE", "grants", len(grants))
	s.restoreWrites(grants)
}

// missingUniqueIndexes lists the source's unique indexes the target tables
// lack and warns of each: a cutover does not stop for them (the data is
// whole), but the target would not enforce what the application relies on.
//
// It runs after the fence is lifted, and for a few seconds at most: reading
// the catalog can wait behind a session's lock on a table (an ALTER), which
// must neither delay the fence nor hold the cutover up.
func (s *Syncer) missingUniqueIndexes(ctx context.Context) []string {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	var out []string
	for _, t := range s.tablePlans() {
		missing, err := copier.MissingUniqueIndexes(ctx, s.src, s.tgt, t)
		if err != nil {
			s.log.Warn("could not compare the tables' unique indexes before the cutover", "table", t.Target, "error", err.Error())
			continue
		}
		for _, m := range missing {
			s.log.Warn("the source has a unique index the target table lacks (made on the source during the sync?): the target would not enforce it after the switch",
				"code", "SLUICE-CUTOVER-INDEX", "table", t.Target, "index", m,
				"hint", "create it on the target (ALTER TABLE … ADD UNIQUE INDEX) before the application writes there")
			out = append(out, t.Target+": "+m)
		}
	}
	return out
}
