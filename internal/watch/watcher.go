package watch

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/shirou/gopsutil/v4/disk"

	"github.com/sluice-db/sluice/internal/config"
	"github.com/sluice-db/sluice/internal/pgstream"
	"github.com/sluice-db/sluice/internal/syncer"
)

// Controller is the running sync, as the watcher sees it.
type Controller interface {
	Status() syncer.Status
	Throttle(source, reason string)
	Unthrottle(source string)
}

// Path is a place sluice (or a database it talks to) writes to.
type Path struct {
	Path string
	Role string // "log file", "source data directory", …
}

// Throttle sources the watcher sets on the syncer.
const (
	ThrottleStress = "stress"
	ThrottleLag    = "lag"
	ThrottleWAL    = "wal"
	ThrottleDisk   = "disk"
	// ThrottleLimit holds the copy at a hard limit of protect_source: abort
	// where there is no slot to drop (the events topology).
	ThrottleLimit = "hard limit"
)

// Roles of the databases' directories; a critical disk under one of them
// holds the copy back.
const (
	RoleSourceData = "source data directory"
	RoleSourceWAL  = "source WAL directory"
	RoleTargetData = "target data directory"
)

// Options configure a Watcher.
type Options struct {
	Config     config.AlertConfig
	Source     *pgxpool.Pool // nil: no source checks
	SourceHost string        // host of the source URL, to tell whether its data directory is local
	Target     *sql.DB       // nil: no target data directory
	TargetHost string
	Slot       string
	Paths      []Path // filesystems sluice writes to
	Log        *slog.Logger
	// Abort is called once when protect_source is abort and a hard limit is
	// reached; it must stop the sync and drop the slot.
	Abort func(reason string)
}

// Readings are the latest measures, for the dashboard and /metrics.
type Readings struct {
	At     time.Time      `json:"at"`
	Disks  []DiskReading  `json:"disks"`
	WAL    *WALReading    `json:"wal,omitempty"`
	Stress *StressReading `json:"stress,omitempty"`
}

// DiskReading is one filesystem.
type DiskReading struct {
	Path        string   `json:"path"`
	Roles       []string `json:"roles"`
	TotalBytes  uint64   `json:"total_bytes"`
	UsedBytes   uint64   `json:"used_bytes"`
	UsedPercent float64  `json:"used_percent"`
}

// WALReading is the slot's retained WAL.
type WALReading struct {
	RetainedBytes int64  `json:"retained_bytes"`
	SafeBytes     *int64 `json:"safe_bytes,omitempty"` // left before max_slot_wal_keep_size; nil: unlimited
	Status        string `json:"status"`
}

// StressReading is how busy the source is.
type StressReading struct {
	ActiveSessions      int     `json:"active_sessions"`
	LongestQuerySeconds float64 `json:"longest_query_seconds"`
	LockWaits           int     `json:"lock_waits"`
	Connections         int     `json:"connections"`
	MaxConnections      int     `json:"max_connections"`
	ConnectionsPercent  float64 `json:"connections_percent"`
}

// Watcher runs the checks every Config.Interval.
type Watcher struct {
	c   Controller
	opt Options
	m   *Manager
	log *slog.Logger

	mu        sync.Mutex
	readings  Readings
	paths     []Path
	dirsFound bool // data directories looked up
	// sourceDirFound, targetDirFound: that database's data directory was read
	sourceDirFound, targetDirFound bool
	failing                        map[string]bool
	abortOnce                      sync.Once
	aborted                        string
}

// New makes a watcher; m receives the alerts.
func New(c Controller, m *Manager, opt Options) *Watcher {
	if opt.Log == nil {
		opt.Log = slog.Default()
	}
	return &Watcher{c: c, opt: opt, m: m, log: opt.Log, paths: append([]Path(nil), opt.Paths...), failing: map[string]bool{}}
}

// Manager is where the alerts are.
func (w *Watcher) Manager() *Manager { return w.m }

// Readings returns the latest measures.
func (w *Watcher) Readings() Readings {
	w.mu.Lock()
	defer w.mu.Unlock()
	r := w.readings
	r.Disks = append([]DiskReading(nil), r.Disks...)
	return r
}

// Aborted returns why the watcher aborted the migration, or "".
func (w *Watcher) Aborted() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.aborted
}

// Run checks until ctx ends.
func (w *Watcher) Run(ctx context.Context) {
	t := time.NewTicker(w.opt.Config.Interval)
	defer t.Stop()
	for {
		w.Check(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Check runs every check once and acts on the result.
func (w *Watcher) Check(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, max(5*time.Second, w.opt.Config.Interval))
	defer cancel()
	if !w.dirsFound {
		w.findDataDirectories(ctx)
	}
	st := w.c.Status()
	r := Readings{At: time.Now()}

	disks, diskObs := w.checkDisks()
	r.Disks = disks
	w.m.Update("disk", diskObs)

	if w.opt.Source != nil && w.opt.Slot != "" {
		wal, obs, err := w.checkWAL(ctx)
		if w.result(ctx, "wal", err) {
			r.WAL = wal
			w.m.Update("wal", obs)
		}
	}
	w.m.Update("lag", []Observation{{Code: CodeLag, Subject: "replication lag", What: "the replication lag",
		Value: st.LagSeconds, Unit: UnitSeconds, Limits: w.opt.Config.LagSeconds,
		Hint:    "the target applies changes slower than the source makes them: check the target's load, raise --batch-rows, or lower the write load",
		Context: map[string]string{"applied_lsn": st.AppliedLSN, "source_lsn": st.SourceLSN}}})

	if w.opt.Source != nil {
		stress, obs, err := w.checkStress(ctx)
		if w.result(ctx, "stress", err) {
			r.Stress = stress
			w.m.Update("stress", obs)
		}
	}
	w.mu.Lock()
	prevWAL, prevStress := w.readings.WAL, w.readings.Stress
	if r.WAL == nil {
		r.WAL = prevWAL
	}
	if r.Stress == nil {
		r.Stress = prevStress
	}
	w.readings = r
	w.mu.Unlock()
	w.protect(r)
}

// result logs a check that failed (once, until it works again) and reports
// whether it succeeded.
func (w *Watcher) result(ctx context.Context, check string, err error) bool {
	if err == nil {
		if w.failing[check] {
			w.log.Info("watch check works again", "check", check)
			delete(w.failing, check)
		}
		return true
	}
	if ctx.Err() != nil || errors.Is(err, errNoSlot) {
		return false
	}
	if !w.failing[check] {
		w.failing[check] = true
		w.log.Warn("watch check failed; its alerts keep their last state", "code", CodeCheck, "check", check, "error", err.Error())
	}
	return false
}

// protect drives the copy throttle and, with protect_source: abort, the
// abort at a hard limit.
func (w *Watcher) protect(r Readings) {
	p := w.opt.Config.Protect
	if p.Mode == config.ProtectOff {
		return
	}
	set := func(source string, on bool, why string) {
		if on {
			w.c.Throttle(source, why)
		} else {
			w.c.Unthrottle(source)
		}
	}
	sev, msg := w.m.MaxSeverity(CodeSessions, CodeLongQuery, CodeLockWaits, CodeConnections)
	set(ThrottleStress, sev >= Severity(p.ThrottleAt), "source stressed: "+msg)
	sev, msg = w.m.MaxSeverity(CodeLag)
	set(ThrottleLag, sev >= Severity(p.ThrottleAt), msg)
	sev, msg = w.m.MaxSeverity(CodeWAL, CodeWALKeep, CodeWALLost)
	set(ThrottleWAL, sev >= Critical, msg+"; streaming goes on so the slot drains")
	diskCritical, diskMsg := false, ""
	for _, a := range w.m.Firing() {
		if a.Code == CodeDisk && a.sev >= Critical && isDatabaseDisk(a.Subject) {
			diskCritical, diskMsg = true, a.Message
		}
	}
	set(ThrottleDisk, diskCritical, diskMsg)

	if p.Mode != config.ProtectAbort {
		return
	}
	var obs []Observation
	reason := ""
	hint := "protect_source: abort stopped the migration and dropped the slot; free the disk, then start again with sluice sync"
	if w.opt.Abort == nil { // no slot to drop: the copy, which reads the source, waits instead
		hint = "protect_source: abort: this sync has no slot to drop; the copy is held until the disk is below the limit: free the disk"
	}
	if r.WAL != nil {
		o := Observation{Code: CodeAbort, Subject: "retained WAL hard limit", What: "WAL retained by slot " + w.opt.Slot,
			Value: float64(r.WAL.RetainedBytes), Unit: UnitBytes, Limits: config.Limits{Warning: config.Off, High: config.Off, Critical: p.AbortWALBytes},
			Hint: hint}
		obs = append(obs, o)
		if o.Value >= p.AbortWALBytes {
			reason = fmt.Sprintf("the slot retains %s of WAL, at the hard limit %s", config.FormatBytes(o.Value), config.FormatBytes(p.AbortWALBytes))
		}
	}
	for _, d := range r.Disks {
		if !hasSourceRole(d.Roles) {
			continue
		}
		o := Observation{Code: CodeAbort, Subject: d.Path + " hard limit", What: "disk usage of " + d.Path + " (" + strings.Join(d.Roles, ", ") + ")",
			Value: d.UsedPercent, Unit: UnitPercent, Limits: config.Limits{Warning: config.Off, High: config.Off, Critical: p.AbortDiskPercent},
			Hint: hint}
		obs = append(obs, o)
		if o.Value >= p.AbortDiskPercent && reason == "" {
			reason = fmt.Sprintf("the source's disk %s is %.1f%% full, at the hard limit %g%%", d.Path, d.UsedPercent, p.AbortDiskPercent)
		}
	}
	w.m.Update("protect", obs)
	if w.opt.Abort == nil {
		set(ThrottleLimit, reason != "", reason)
		return
	}
	if reason != "" {
		w.abortOnce.Do(func() {
			w.mu.Lock()
			w.aborted = reason
			w.mu.Unlock()
			w.log.Error("protect_source: aborting the migration and dropping the slot", "code", CodeAbort, "slot", w.opt.Slot, "reason", reason)
			w.opt.Abort(reason)
		})
	}
}

func isDatabaseDisk(subject string) bool {
	return strings.Contains(subject, RoleSourceData) || strings.Contains(subject, RoleSourceWAL) || strings.Contains(subject, RoleTargetData)
}

func hasSourceRole(roles []string) bool {
	for _, r := range roles {
		if r == RoleSourceData || r == RoleSourceWAL {
			return true
		}
	}
	return false
}

// findDataDirectories adds the source's (and target's) data directory when
// the database runs on this machine. A query that fails is tried again at
// the next check; a directory sluice cannot read is said once, because its
// disk then goes unwatched (and unprotected) unless the user lists it.
func (w *Watcher) findDataDirectories(ctx context.Context) {
	if !w.opt.Config.DataDirectories {
		w.dirsFound = true
		return
	}
	found := true
	if w.opt.Source != nil && IsLocalHost(w.opt.SourceHost) && !w.sourceDirFound {
		var dir string
		if err := w.opt.Source.QueryRow(ctx, "SHOW data_directory").Scan(&dir); err != nil {
			found = false
			if ctx.Err() != nil { // stopping: no failure to report
				return
			}
			w.warnOnce("datadir:source", "cannot read the source's data_directory; its disk is not watched until it can be",
				err, "", "grant pg_read_all_settings to the source user, or list the path under alerts.disk.source_paths")
		} else {
			w.sourceDirFound = true
			if w.addDirectory(dir, RoleSourceData) {
				// pg_wal may be a link to another filesystem; inside a data
				// directory only its owner may read, so say so if it fails.
				if walDir, err := filepath.EvalSymlinks(filepath.Join(dir, "pg_wal")); err == nil {
					w.paths = append(w.paths, Path{walDir, RoleSourceWAL})
				} else {
					w.warnOnce("datadir:source-wal", "cannot resolve the source's pg_wal; a separate WAL filesystem is not watched",
						err, filepath.Join(dir, "pg_wal"), "list the WAL directory under alerts.disk.source_paths, or run sluice as a user that may read the data directory")
				}
			}
		}
	}
	if w.opt.Target != nil && IsLocalHost(w.opt.TargetHost) && !w.targetDirFound {
		var dir string
		if err := w.opt.Target.QueryRowContext(ctx, "SELECT @@datadir").Scan(&dir); err != nil {
			found = false
			if ctx.Err() != nil {
				return
			}
			w.warnOnce("datadir:target", "cannot read the target's datadir; its disk is not watched until it can be",
				err, "", "list the path under alerts.disk.target_paths")
		} else {
			w.targetDirFound = true
			w.addDirectory(filepath.Clean(dir), RoleTargetData)
		}
	}
	w.dirsFound = found
}

// addDirectory watches dir's disk and reports whether dir could be read.
func (w *Watcher) addDirectory(dir, role string) bool {
	st, err := os.Stat(dir)
	if err == nil && !st.IsDir() {
		err = fmt.Errorf("not a directory")
	}
	if err != nil {
		w.warnOnce("datadir:"+role, "cannot read the "+role+"; its disk is not watched", err, dir,
			"list the path (or another on the same filesystem) under alerts.disk.source_paths (alerts.disk.paths for the target's), or let sluice's user read it")
		return false
	}
	w.paths = append(w.paths, Path{dir, role})
	return true
}

// warnOnce logs a failed lookup the first time it fails.
func (w *Watcher) warnOnce(key, msg string, err error, path, hint string) {
	if w.failing[key] {
		return
	}
	w.failing[key] = true
	attrs := []any{"code", CodeCheck, "check", "disk", "error", err.Error(), "hint", hint}
	if path != "" {
		attrs = append(attrs, "path", path)
	}
	w.log.Warn(msg, attrs...)
}

// IsLocalHost reports whether host (from a connection URL) is this machine:
// empty, a Unix socket directory, localhost, a loopback address or one of
// this machine's addresses.
func IsLocalHost(host string) bool {
	if host == "" || strings.HasPrefix(host, "/") || strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(strings.Trim(host, "[]"))
	if ip == nil {
		if name, err := os.Hostname(); err == nil && strings.EqualFold(name, host) {
			return true
		}
		return false
	}
	if ip.IsLoopback() {
		return true
	}
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return false
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.Equal(ip) {
			return true
		}
	}
	return false
}

// checkDisks measures every watched filesystem once, however many paths
// are on it.
func (w *Watcher) checkDisks() ([]DiskReading, []Observation) {
	type fs struct {
		path  string
		roles []string
		paths []string
	}
	var order []string
	byDev := map[string]*fs{}
	for _, p := range w.paths {
		dir := p.Path
		if st, err := os.Stat(dir); err != nil || !st.IsDir() {
			dir = filepath.Dir(dir) // a file, or one not created yet
		}
		key := "path:" + dir
		if dev, ok := deviceOf(dir); ok {
			key = fmt.Sprint("dev:", dev)
		}
		f := byDev[key]
		if f == nil {
			f = &fs{path: mountPoint(dir)}
			byDev[key] = f
			order = append(order, key)
		}
		if !contains(f.roles, p.Role) {
			f.roles = append(f.roles, p.Role)
		}
		if !contains(f.paths, p.Path) {
			f.paths = append(f.paths, p.Path)
		}
	}
	var readings []DiskReading
	var obs []Observation
	for _, key := range order {
		f := byDev[key]
		sort.Strings(f.roles)
		roles := strings.Join(f.roles, ", ")
		subject := f.path + " (" + roles + ")"
		u, err := disk.Usage(f.path)
		if err != nil {
			if !w.failing["disk:"+f.path] {
				w.failing["disk:"+f.path] = true
				w.log.Warn("cannot measure a disk", "code", CodeCheck, "check", "disk", "path", f.path, "error", err.Error())
			}
			// A disk that cannot be read is not a disk that is fine: its
			// alert, and the copy's pause at critical, stay as they were.
			obs = append(obs, Observation{Code: CodeDisk, Subject: subject, Unmeasured: true})
			continue
		}
		delete(w.failing, "disk:"+f.path)
		readings = append(readings, DiskReading{Path: f.path, Roles: f.roles, TotalBytes: u.Total, UsedBytes: u.Used, UsedPercent: u.UsedPercent})
		hint := "free space on this filesystem or grow it"
		if isDatabaseDisk(roles) {
			hint = "free space on the database's filesystem; at critical sluice pauses the copy (streaming goes on so the slot drains)"
		}
		obs = append(obs, Observation{Code: CodeDisk, Subject: subject,
			What:  "disk usage of " + subject,
			Value: u.UsedPercent, Unit: UnitPercent, Limits: w.opt.Config.Disk, Hint: hint,
			Context: map[string]string{"mount": f.path, "paths": strings.Join(f.paths, ", "), "roles": roles, "free_bytes": fmt.Sprint(u.Free)}})
	}
	return readings, obs
}

// mountPoint walks up from dir while the filesystem stays the same.
func mountPoint(dir string) string {
	dev, ok := deviceOf(dir)
	if !ok {
		return dir
	}
	for {
		parent := filepath.Dir(dir)
		if parent == dir {
			return dir
		}
		if pdev, ok := deviceOf(parent); !ok || pdev != dev {
			return dir
		}
		dir = parent
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

var errNoSlot = errors.New("the slot does not exist yet")

func (w *Watcher) checkWAL(ctx context.Context) (*WALReading, []Observation, error) {
	if ok, err := pgstream.SlotExists(ctx, w.opt.Source, w.opt.Slot); err != nil {
		return nil, nil, err
	} else if !ok {
		return nil, nil, errNoSlot
	}
	st, err := pgstream.Status(ctx, w.opt.Source, w.opt.Slot)
	if err != nil {
		return nil, nil, err
	}
	r := &WALReading{RetainedBytes: st.RetainedBytes, SafeBytes: st.SafeWALBytes, Status: st.WALStatus}
	ctxMap := map[string]string{"slot": w.opt.Slot, "wal_status": st.WALStatus, "source_lsn": st.CurrentLSN.String()}
	obs := []Observation{{Code: CodeWAL, Subject: "slot " + w.opt.Slot, What: "WAL retained by slot " + w.opt.Slot,
		Value: float64(st.RetainedBytes), Unit: UnitBytes, Limits: w.opt.Config.WALBytes, Context: ctxMap,
		Hint: "the slot holds WAL until sluice confirms it: check the lag and the target; at critical sluice pauses the copy so streaming can drain the slot"}}
	if st.SafeWALBytes != nil {
		total := float64(st.RetainedBytes + *st.SafeWALBytes)
		pct := 100.0
		if total > 0 {
			pct = 100 * float64(st.RetainedBytes) / total
		}
		obs = append(obs, Observation{Code: CodeWALKeep, Subject: "slot " + w.opt.Slot, What: "share of max_slot_wal_keep_size used by slot " + w.opt.Slot,
			Value: pct, Unit: UnitPercent, Limits: w.opt.Config.WALKeepPercent, Context: ctxMap,
			Hint: "past max_slot_wal_keep_size PostgreSQL invalidates the slot and the sync must start over: let it drain, or raise max_slot_wal_keep_size"})
	}
	lost := 0.0
	if st.WALStatus == "unreserved" || st.WALStatus == "lost" {
		lost = 1
	}
	obs = append(obs, Observation{Code: CodeWALLost, Subject: "slot " + w.opt.Slot, What: "slot " + w.opt.Slot + " wal_status " + st.WALStatus,
		Value: lost, Unit: UnitCount, Limits: config.Limits{Warning: config.Off, High: config.Off, Critical: 1}, Context: ctxMap,
		Hint: "the slot is about to lose (or lost) WAL it needs: if lost, run sluice abort and start the migration again"})
	return r, obs, nil
}

const stressQuery = `
WITH a AS (
	SELECT * FROM pg_stat_activity
	WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()
	  AND coalesce(application_name, '') <> 'sluice'
	  AND ($1::text = 'server' OR datname = current_database())
)
SELECT
	(SELECT count(*) FROM a WHERE state = 'active'),
	coalesce((SELECT extract(epoch FROM max(clock_timestamp() - query_start)) FROM a WHERE state = 'active'), 0)::float8,
	(SELECT count(*) FROM a WHERE wait_event_type = 'Lock'),
	(SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'),
	current_setting('max_connections')::int - current_setting('superuser_reserved_connections')::int`

func (w *Watcher) checkStress(ctx context.Context) (*StressReading, []Observation, error) {
	var r StressReading
	var active, locks, conns int64
	if err := w.opt.Source.QueryRow(ctx, stressQuery, w.opt.Config.StressScope).Scan(&active, &r.LongestQuerySeconds, &locks, &conns, &r.MaxConnections); err != nil {
		return nil, nil, fmt.Errorf("source: read pg_stat_activity: %w", err)
	}
	r.ActiveSessions, r.LockWaits, r.Connections = int(active), int(locks), int(conns)
	if r.MaxConnections > 0 {
		r.ConnectionsPercent = 100 * float64(r.Connections) / float64(r.MaxConnections)
	}
	scope := w.opt.Config.StressScope
	c := w.opt.Config
	ctxMap := map[string]string{"scope": scope}
	obs := []Observation{
		{Code: CodeSessions, Subject: "source active sessions", What: "sessions running a query on the source (" + scope + ")",
			Value: float64(r.ActiveSessions), Unit: UnitCount, Limits: c.ActiveSessions, Context: ctxMap,
			Hint: "the source is busy; sluice holds the copy back until it calms down (streaming goes on)"},
		{Code: CodeLongQuery, Subject: "source longest query", What: "the longest running query on the source (" + scope + ")",
			Value: r.LongestQuerySeconds, Unit: UnitSeconds, Limits: c.LongestQuery, Context: ctxMap,
			Hint: "look at pg_stat_activity for the query; a long transaction also holds back vacuum and WAL"},
		{Code: CodeLockWaits, Subject: "source lock waits", What: "sessions waiting on a lock on the source (" + scope + ")",
			Value: float64(r.LockWaits), Unit: UnitCount, Limits: c.LockWaits, Context: ctxMap,
			Hint: "find the blocker with pg_blocking_pids(); sluice holds the copy back meanwhile"},
		{Code: CodeConnections, Subject: "source connections", What: "connections to the source, of max_connections",
			Value: r.ConnectionsPercent, Unit: UnitPercent, Limits: c.Connections,
			Context: map[string]string{"connections": fmt.Sprint(r.Connections), "max_connections": fmt.Sprint(r.MaxConnections)},
			Hint:    "the source is running out of connections: look for leaks or a connection storm; lower sluice's --parallel"},
	}
	return &r, obs, nil
}
