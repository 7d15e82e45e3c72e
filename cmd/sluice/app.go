package main

import (
	"context"
	"log/slog"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/sluice-db/sluice/internal/config"
	"github.com/sluice-db/sluice/internal/copier"
	"github.com/sluice-db/sluice/internal/failure"
	"github.com/sluice-db/sluice/internal/logging"
	"github.com/sluice-db/sluice/internal/mysql"
	"github.com/sluice-db/sluice/internal/plan"
	"github.com/sluice-db/sluice/internal/postgres"
	"github.com/sluice-db/sluice/internal/typemap"
)

// app holds what every command shares: flags, the config file and the logger.
type app struct {
	flags struct {
		source, target, configPath, logFormat, schema string
		logFile, logMaxSize                           string
		logMaxBackups                                 int
	}
	file       *config.File
	log        *slog.Logger
	terminal   bool
	exitStatus int
}

func (a *app) setup(cmd *cobra.Command) error {
	a.terminal = logging.IsTerminal(os.Stderr)
	maxSize, err := config.ParseBytes(a.flags.logMaxSize)
	if err != nil {
		return failure.Wrap(err, failure.Usage, "SLUICE-USAGE-LOGFILE", "--log-max-size")
	}
	log, _, err := logging.Open(logging.Options{Format: a.flags.logFormat, Terminal: a.terminal, Stderr: os.Stderr,
		File: a.flags.logFile, MaxSize: int64(maxSize), MaxBackups: a.flags.logMaxBackups})
	if err != nil {
		return err
	}
	a.log = log
	mysql.LogDriverTo(log)
	if a.flags.configPath != "" {
		f, err := config.LoadFile(a.flags.configPath)
		if err != nil {
			return failure.Wrap(err, failure.Usage, "SLUICE-CONFIG", "config file").With("file", a.flags.configPath)
		}
		a.file = f
	}
	return nil
}

// connect resolves the connection settings (flags > file > environment) and
// opens both databases; create makes the target database when it does not
// exist (commands that write into it), else that is an error.
func (a *app) connect(ctx context.Context, conns int, create bool) (*postgres.Source, *mysql.Target, error) {
	srcCfg, tgtCfg, err := a.resolve()
	if err != nil {
		return nil, nil, err
	}
	src, err := postgres.Connect(ctx, srcCfg.ConnString(), srcCfg.Redacted(), conns)
	if err != nil {
		return nil, nil, err
	}
	open := mysql.Open
	if create {
		open = mysql.Connect
	}
	tgt, err := open(ctx, tgtCfg, conns)
	if err != nil {
		src.Close()
		return nil, nil, err
	}
	a.log.Info("connected", "source", srcCfg.Redacted(), "target", tgtCfg.Redacted(), "target_version", tgt.Version)
	return src, tgt, nil
}

// resolve reads the connection settings: flags > config file > environment.
func (a *app) resolve() (config.Source, config.Target, error) {
	srcCfg, tgtCfg, err := config.Resolve(a.flags.source, a.flags.target, a.file, os.Getenv)
	logging.AddSecret(srcCfg.Password) // the log never shows them, whatever goes wrong
	logging.AddSecret(tgtCfg.Password)
	if err != nil {
		return srcCfg, tgtCfg, failure.Wrap(err, failure.Usage, "SLUICE-CONFIG-URL", "connection settings").
			WithHint("see sluice --help for the URL forms")
	}
	return srcCfg, tgtCfg, nil
}

// planUse says what a command does with its plan.
type planUse int

const (
	forCopy   planUse = iota // creates the target tables: copy, the events paths
	forSync                  // creates them, and takes keyless tables with REPLICA IDENTITY FULL
	forVerify                // reads both sides; takes keyless tables too
)

// buildPlan plans the tables named by --tables (or the whole schema) for a
// run that creates the target tables; a plan with a table that cannot be
// migrated is printed to stderr and its error returned.
func (a *app) buildPlan(ctx context.Context, src *postgres.Source, tgt *mysql.Target, tables string) (*plan.Plan, error) {
	return a.buildPlanFor(ctx, src, tgt, tables, forCopy)
}

// buildPlanFor is buildPlan for the given use: sync and verify take tables
// without a key whose REPLICA IDENTITY is FULL (they can match them on all
// columns), and the commands that create tables first try the new ones on
// the target. Every mapping that is not exact is logged before the run
// starts (sluice plan prints the same list).
func (a *app) buildPlanFor(ctx context.Context, src *postgres.Source, tgt *mysql.Target, tables string, use planUse) (*plan.Plan, error) {
	p, err := a.planTables(ctx, src, tables, use, tgt.Flavor)
	if err != nil {
		return nil, err
	}
	if use != forVerify {
		if err := probeTables(ctx, tgt, p); err != nil {
			return nil, err
		}
	}
	for _, t := range p.Tables {
		for _, warn := range t.Warnings {
			a.log.Warn(warn, "code", "SLUICE-PLAN-WARNING", "table", t.Source.Name.String())
		}
	}
	if err := p.Err(); err != nil { // a table that cannot be migrated: show the whole plan
		printPlan(os.Stderr, p)
		return nil, err
	}
	return p, nil
}

// planTables plans the selected tables.
func (a *app) planTables(ctx context.Context, src *postgres.Source, tables string, use planUse, flavor typemap.Flavor) (*plan.Plan, error) {
	opt := plan.Options{Schema: a.flags.schema, Flavor: flavor, AllowKeyless: use != forCopy, CompareOnly: use == forVerify}
	if tables != "" {
		opt.Tables = strings.Split(tables, ",")
	}
	if a.file != nil {
		opt.Mappings = a.file.Tables
	}
	return plan.Build(ctx, src, opt)
}

// probeTables adds to p's errors the tables the target refuses to create
// (copier.ProbeTables): they are reported before anything is created.
func probeTables(ctx context.Context, tgt *mysql.Target, p *plan.Plan) error {
	refused, err := copier.ProbeTables(ctx, tgt, p)
	if err != nil {
		return err
	}
	p.Errors = append(p.Errors, refused...)
	return nil
}

// copySettings returns the config file's copy section, or zero values.
func (a *app) copySettings() config.CopySettings {
	if a.file == nil {
		return config.CopySettings{}
	}
	return a.file.Copy
}

// copyPace takes the config file's copy: parallel, chunk_rows and
// max_rows_per_sec where the flag was not given: copy and sync read the
// tables alike, and a limit set to spare production must hold for both.
func (a *app) copyPace(f *pflag.FlagSet, parallel, chunkRows *int, maxRate *float64) {
	cs := a.copySettings()
	if !f.Changed("parallel") && cs.Parallel > 0 {
		*parallel = cs.Parallel
	}
	if !f.Changed("chunk-rows") && cs.ChunkRows > 0 {
		*chunkRows = cs.ChunkRows
	}
	if !f.Changed("max-rows-per-sec") && cs.MaxRowsPerSec > 0 {
		*maxRate = cs.MaxRowsPerSec
	}
}
