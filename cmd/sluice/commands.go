package main

import (
	"context"
	"fmt"
	"io"
	"math"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/sluice-db/sluice/internal/copier"
	"github.com/sluice-db/sluice/internal/failure"
	"github.com/sluice-db/sluice/internal/mysql"
	"github.com/sluice-db/sluice/internal/plan"
	"github.com/sluice-db/sluice/internal/progress"
	"github.com/sluice-db/sluice/internal/verify"
)

func (a *app) planCommand() *cobra.Command {
	var tables string
	var apply bool
	cmd := &cobra.Command{
		Use:   "plan",
		Short: "Print the target DDL and every mapping that is not exact; --apply creates the tables",
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			src, tgt, err := a.connect(ctx, 2, true)
			if err != nil {
				return err
			}
			defer src.Close()
			defer tgt.Close()
			if !apply && tgt.Created { // made only to try the tables there: gone again, whatever happens below
				defer a.dropPlanDatabase(cmd, tgt)
			}
			p, err := a.planTables(ctx, src, tables, forCopy, tgt.Flavor) // printed below, warnings included
			if err != nil {
				return err
			}
			if err := probeTables(ctx, tgt, p); err != nil {
				return err
			}
			printPlan(cmd.OutOrStdout(), p)
			if err := p.Err(); err != nil {
				return err
			}
			if !apply {
				return nil
			}
			for _, t := range p.Tables {
				exists, err := tgt.TableExists(ctx, t.Target)
				if err != nil {
					return err
				}
				if exists {
					fmt.Fprintf(cmd.OutOrStdout(), "-- %s exists already; left as it is\n", t.Target)
					continue
				}
				if _, err := tgt.DB.ExecContext(ctx, t.CreateTable); err != nil {
					return failure.Wrap(err, failure.Schema, "SLUICE-TARGET-DDL", "target: create table %s", t.Target).With("table", t.Target)
				}
				fmt.Fprintf(cmd.OutOrStdout(), "-- created %s\n", t.Target)
			}
			fmt.Fprintln(cmd.OutOrStdout(), "-- secondary indexes and foreign keys are built by sluice copy after the data")
			return nil
		},
	}
	cmd.Flags().StringVar(&tables, "tables", "", "comma-separated tables (name or schema.name); default: every table of --schema")
	cmd.Flags().BoolVar(&apply, "apply", false, "create the target tables")
	return cmd
}

// dropPlanDatabase drops the target database plan created to try the
// tables there, when it still holds no table, and says so; a failure to
// drop it is a warning: the plan stands.
func (a *app) dropPlanDatabase(cmd *cobra.Command, tgt *mysql.Target) {
	dropped, err := tgt.DropCreated(context.WithoutCancel(cmd.Context()))
	if err != nil {
		a.log.Warn("the target database plan created to try the tables there is left: drop it by hand, or leave it for sluice copy or sync",
			"code", "SLUICE-PLAN-DATABASE", "database", tgt.Name, "error", err.Error())
		return
	}
	if dropped {
		fmt.Fprintf(cmd.OutOrStdout(), "-- the target database %s does not exist yet: plan --apply, copy and sync create it (utf8mb4)\n", tgt.Name)
	}
}

func printPlan(w io.Writer, p *plan.Plan) {
	fmt.Fprintf(w, "-- sluice plan: %d tables, target flavor %s\n", len(p.Tables), p.Flavor)
	for _, t := range p.Tables {
		fmt.Fprintf(w, "\n-- %s → %s (about %d rows)\n%s;\n", t.Source.Name, t.Target, t.Source.EstimatedRows, t.CreateTable)
		if len(t.PostData) > 0 {
			fmt.Fprintln(w, "-- after the data:")
			for _, s := range t.PostData {
				fmt.Fprintf(w, "%s;\n", s.SQL)
			}
		}
		for _, warn := range t.Warnings {
			fmt.Fprintf(w, "-- WARNING %s\n", warn)
		}
	}
	var fks []string
	for _, t := range p.Tables {
		for _, fk := range t.ForeignKeys {
			fks = append(fks, fk.SQL+";")
		}
	}
	if len(fks) > 0 {
		fmt.Fprintf(w, "\n-- foreign keys, once every table is copied:\n%s\n", strings.Join(fks, "\n"))
	}
	for _, err := range p.Errors {
		fmt.Fprintf(w, "-- ERROR %s\n", err)
	}
}

func (a *app) copyCommand() *cobra.Command {
	var tables, onBadRow, rejectFile string
	var parallel, chunkRows int
	var maxRate float64
	cmd := &cobra.Command{
		Use:   "copy",
		Short: "Copy the tables in resumable key-ordered chunks, then build indexes and foreign keys",
		RunE: func(cmd *cobra.Command, _ []string) error {
			cs := a.copySettings()
			f := cmd.Flags()
			a.copyPace(f, &parallel, &chunkRows, &maxRate)
			if !f.Changed("on-bad-row") && cs.OnBadRow != "" {
				onBadRow = cs.OnBadRow
			}
			if !f.Changed("reject-file") && cs.RejectFile != "" {
				rejectFile = cs.RejectFile
			}
			if onBadRow != "fail" && onBadRow != "skip" {
				return failure.New(failure.Usage, "SLUICE-USAGE-BADROW", "--on-bad-row %q is not a choice", onBadRow).WithHint("use fail or skip")
			}
			if err := checkNumbers(paceFlags(parallel, chunkRows, maxRate)...); err != nil {
				return err
			}
			ctx := cmd.Context()
			src, tgt, err := a.connect(ctx, parallel+2, true)
			if err != nil {
				return err
			}
			defer src.Close()
			defer tgt.Close()
			p, err := a.buildPlan(ctx, src, tgt, tables)
			if err != nil {
				return err
			}
			tracker := &progress.Tracker{}
			stopShow := a.showProgress(ctx, tracker)
			res, err := copier.Run(ctx, src, tgt, p, copier.Options{Parallel: parallel, ChunkRows: chunkRows, MaxRowsPerSec: maxRate,
				SkipBadRows: onBadRow == "skip", RejectFile: rejectFile, Tracker: tracker, Log: a.log})
			stopShow()
			if res != nil {
				printCopyReport(cmd.OutOrStdout(), res, rejectFile)
			}
			if err != nil {
				return err
			}
			return res.Err()
		},
	}
	f := cmd.Flags()
	f.StringVar(&tables, "tables", "", "comma-separated tables (name or schema.name); default: every table of --schema")
	f.IntVar(&parallel, "parallel", 4, "chunks copied at once")
	f.IntVar(&chunkRows, "chunk-rows", 20000, "rows per chunk (one source read and one target transaction each)")
	f.Float64Var(&maxRate, "max-rows-per-sec", 0, "limit the copy to this many rows per second (0: no limit)")
	f.StringVar(&onBadRow, "on-bad-row", "fail", "a value the target cannot hold: fail (stop that table) or skip (write the row to --reject-file)")
	f.StringVar(&rejectFile, "reject-file", "sluice-rejects.jsonl", "where --on-bad-row=skip writes rejected rows (JSON lines)")
	return cmd
}

// numberFlag is a numeric flag's value and whether it is out of range.
type numberFlag struct {
	name  string
	value any
	bad   bool
	want  string // the range, for the hint
}

// checkNumbers refuses the first flag out of range with SLUICE-USAGE-NUMBER
// naming it: a value is never swapped for a default behind the user's back.
func checkNumbers(flags ...numberFlag) error {
	for _, f := range flags {
		if f.bad {
			return failure.New(failure.Usage, "SLUICE-USAGE-NUMBER", "%s %v is out of range", f.name, f.value).
				With("flag", f.name).WithHint("use %s", f.want)
		}
	}
	return nil
}

// paceFlags are the copy's pace flags, which copy and sync share.
func paceFlags(parallel, chunkRows int, maxRate float64) []numberFlag {
	return []numberFlag{
		{"--parallel", parallel, parallel < 1, "1 or more"},
		{"--chunk-rows", chunkRows, chunkRows < 1, "1 or more"},
		{"--max-rows-per-sec", maxRate, maxRate < 0 || math.IsNaN(maxRate), "0 (no limit) or more"},
	}
}

// stopGracefully gives a long run (sync, publisher, applier) a context of
// its own: when ctx ends (Ctrl-C, SIGTERM) it logs stopping (if not ""),
// calls stop so the run finishes what it holds (applies what was received,
// stores its position) and returns, and cancels the run's context 30 s later
// so a stuck target cannot hang the exit. Call cancel when the run is over.
func (a *app) stopGracefully(ctx context.Context, stopping string, stop func()) (runCtx context.Context, cancel func()) {
	runCtx, cancel = context.WithCancel(context.WithoutCancel(ctx))
	go func() {
		select {
		case <-ctx.Done():
		case <-runCtx.Done():
			return
		}
		if stopping != "" {
			a.log.Info(stopping)
		}
		stop()
		time.AfterFunc(30*time.Second, cancel)
	}()
	return runCtx, cancel
}

// showProgress draws progress on a terminal, or logs it every 10 s.
func (a *app) showProgress(ctx context.Context, tr *progress.Tracker) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	interval := 10 * time.Second
	if a.terminal {
		interval = 500 * time.Millisecond
	}
	go func() {
		defer close(done)
		tr.Show(ctx, os.Stderr, a.terminal, a.log, interval)
	}()
	return func() { cancel(); <-done }
}

func printCopyReport(w io.Writer, res *copier.Result, rejectFile string) {
	fmt.Fprintf(w, "%-30s %-24s %12s %12s %9s %10s  %s\n", "table", "target", "rows", "this run", "rejected", "rows/s", "result")
	var total, copied, rejected int64
	for _, t := range res.Tables {
		rate := 0.0
		if t.Elapsed > 0 {
			rate = float64(t.Copied) / t.Elapsed.Seconds()
		}
		result := "ok"
		if t.Err != nil {
			result = "FAILED: " + t.Err.Error()
		}
		fmt.Fprintf(w, "%-30s %-24s %12d %12d %9d %10.0f  %s\n", t.Source, t.Target, t.Rows, t.Copied, t.Rejected, rate, result)
		total += t.Rows
		copied += t.Copied
		rejected += t.Rejected
	}
	fmt.Fprintf(w, "copied %d rows this run (%d in all) in %s: %.0f rows/s\n", copied, total, res.Elapsed.Round(time.Millisecond),
		float64(copied)/max(res.Elapsed.Seconds(), 0.001))
	if rejected > 0 {
		fmt.Fprintf(w, "%d rows rejected: see %s\n", rejected, rejectFile)
	}
}

func (a *app) verifyCommand() *cobra.Command {
	var tables string
	var repair bool
	var parallel, chunkRows, samples int
	cmd := &cobra.Command{
		Use:   "verify",
		Short: "Compare source and target row by row; exit 0 equal, 1 differences, 2 or more on error",
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			if err := checkNumbers(
				numberFlag{"--parallel", parallel, parallel < 1, "1 or more"},
				numberFlag{"--chunk-rows", chunkRows, chunkRows < 1, "1 or more"},
				numberFlag{"--samples", samples, samples < 1, "1 or more"}); err != nil {
				return err
			}
			src, tgt, err := a.connect(ctx, parallel+2, false) // verify only reads: a misspelt database is not created
			if err != nil {
				return err
			}
			defer src.Close()
			defer tgt.Close()
			p, err := a.buildPlanFor(ctx, src, tgt, tables, forVerify)
			if err != nil {
				return err
			}
			start := time.Now()
			results, err := verify.Run(ctx, src, tgt, p, verify.Options{Parallel: parallel, ChunkRows: chunkRows, Samples: samples,
				Repair: repair, Log: a.log})
			if err != nil {
				return err
			}
			equal := printVerifyReport(cmd.OutOrStdout(), results, time.Since(start))
			for _, r := range results {
				if r.Err != nil { // a table that could not be compared: the report names it
					return failure.Wrap(r.Err, failure.Schema, "SLUICE-VERIFY-TABLE", "verify %s", r.Source).With("table", r.Source).
						WithHint("create and fill the target table (sluice plan --apply, then copy or sync), or leave it out with --tables")
				}
			}
			if !equal {
				a.exitStatus = failure.ExitDifferences
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&tables, "tables", "", "comma-separated tables (name or schema.name); default: every table of --schema")
	f.BoolVar(&repair, "repair", false, "rewrite differing rows from the source, then verify again")
	f.IntVar(&parallel, "parallel", 4, "chunks compared at once")
	f.IntVar(&chunkRows, "chunk-rows", 20000, "rows per chunk")
	f.IntVar(&samples, "samples", 10, "differing rows shown per table")
	return cmd
}

func printVerifyReport(w io.Writer, results []*verify.TableResult, elapsed time.Duration) bool {
	allEqual := true
	var compared int64
	for _, r := range results {
		compared += r.Compared
		switch {
		case r.Err != nil:
			allEqual = false
			fmt.Fprintf(w, "%s → %s: ERROR %v\n", r.Source, r.Target, r.Err)
			continue
		case r.Equal():
			fmt.Fprintf(w, "%s → %s: %d rows compared, equal", r.Source, r.Target, r.Compared)
		default:
			allEqual = false
			fmt.Fprintf(w, "%s → %s: %d rows compared, DIFFERENT: %d changed, %d missing on the target, %d extra on the target",
				r.Source, r.Target, r.Compared, r.Changed, r.Missing, r.Extra)
		}
		if r.Repaired > 0 {
			fmt.Fprintf(w, " (after repairing %d rows)", r.Repaired)
		}
		fmt.Fprintln(w)
		for _, d := range r.Samples {
			fmt.Fprintf(w, "  %s key %s\n", d.Kind, d.Key)
			switch {
			case d.SourceNote != "":
				fmt.Fprintf(w, "    source: (%s)\n", d.SourceNote)
			case d.Source != nil:
				fmt.Fprintf(w, "    source: %s\n", formatRow(r.Columns, d.Source))
			}
			switch {
			case d.TargetNote != "":
				fmt.Fprintf(w, "    target: (%s)\n", d.TargetNote)
			case d.Target != nil:
				fmt.Fprintf(w, "    target: %s\n", formatRow(r.Columns, d.Target))
			}
		}
	}
	verdict := "EQUAL"
	if !allEqual {
		verdict = "DIFFERENT"
	}
	fmt.Fprintf(w, "verify: %s (%d tables, %d rows compared in %s)\n", verdict, len(results), compared, elapsed.Round(time.Millisecond))
	return allEqual
}

func formatRow(cols, vals []string) string {
	parts := make([]string, len(vals))
	for i, v := range vals {
		name := "?"
		if i < len(cols) {
			name = cols[i]
		}
		parts[i] = name + "=" + v
	}
	return strings.Join(parts, " ")
}
