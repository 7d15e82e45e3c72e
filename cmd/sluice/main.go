// Command sluice moves live PostgreSQL tables to MySQL/MariaDB without
// downtime: plan, copy, verify (and, later, sync and cut over).
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"regexp"
	"runtime/pprof"
	"strings"
	"syscall"

	mysqldriver "github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/spf13/cobra"

	"github.com/sluice-db/sluice/internal/failure"
	"github.com/sluice-db/sluice/internal/logging"
)

// version is set at build time by `make release`.
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	app := &app{}
	root := app.rootCommand()
	if path := os.Getenv("SLUICE_CPUPROFILE"); path != "" { // for performance work
		if f, err := os.Create(path); err == nil {
			pprof.StartCPUProfile(f)
		}
	}
	var cmd *cobra.Command
	err := failure.Guard(func() (err error) { // a panic is an internal error (exit 10), not Go's status 2
		cmd, err = root.ExecuteContextC(ctx)
		return err
	})
	pprof.StopCPUProfile()
	if path := os.Getenv("SLUICE_MEMPROFILE"); path != "" { // allocations since start
		if f, ferr := os.Create(path); ferr == nil {
			pprof.Lookup("allocs").WriteTo(f, 0)
			f.Close()
		}
	}
	if err == nil {
		os.Exit(app.exitStatus)
	}
	if ctx.Err() != nil && !errors.As(err, new(*failure.Error)) {
		err = failure.Wrap(err, failure.Interrupted, "SLUICE-INTERRUPTED", "interrupted").
			WithHint("run the same command again to resume")
	}
	var fe *failure.Error
	if !errors.As(err, &fe) {
		err = classifyPrivilege(err)
	}
	if !errors.As(err, &fe) {
		if app.log == nil {
			// setup never ran: cobra refused the command line itself
			err = failure.Wrap(err, failure.Usage, "SLUICE-USAGE", "invalid command line").WithHint("see sluice --help")
		} else {
			err = failure.Wrap(err, failure.Internal, "SLUICE-INTERNAL", "unexpected error").
				WithHint("run the command again; if it keeps failing, report this message")
		}
	}
	log := app.log
	if log == nil { // the command line failed before setup: still mask what looks like a secret
		// in the format asked for when it was parsed (else auto: JSON
		// unless stderr is a terminal), as every later line would be
		terminal := logging.IsTerminal(os.Stderr)
		if l, lerr := logging.New(os.Stderr, app.flags.logFormat, terminal); lerr == nil {
			log = l
		} else if l, lerr = logging.New(os.Stderr, "auto", terminal); lerr == nil {
			log = l
		} else {
			log = slog.New(slog.NewTextHandler(os.Stderr, nil))
		}
	}
	if cmd != nil && cmd != root {
		log = log.With("command", cmd.Name()) // context for errors that carry none of their own
	}
	logging.Error(log, "sluice failed", err)
	os.Exit(failure.ExitCode(err))
}

func (a *app) rootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:   "sluice",
		Short: "Move live PostgreSQL tables to MySQL/MariaDB without downtime",
		Long: `sluice copies live PostgreSQL tables to MySQL or MariaDB in short, resumable chunks,
translates the schema (with renames, dropped and computed columns), and verifies that
both sides hold the same data.

Connections: --source postgres://user:pass@host:5432/db  --target mysql://user:pass@host:3306/db
(or mariadb://), or source:/target: in --config sluice.yaml, or SLUICE_SOURCE/SLUICE_TARGET.
Unix sockets: postgres://user@/db?host=/var/run/postgresql, mysql://user@/db?socket=/run/mysqld/mysqld.sock

Exit status: 0 ok, 1 verify found differences, 2 usage or configuration error,
3 cannot connect, 4 schema problem, 5 bad row, 6 interrupted (run again to resume),
10 internal error.`,
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			return a.setup(cmd)
		},
	}
	f := root.PersistentFlags()
	f.StringVar(&a.flags.source, "source", "", "source PostgreSQL URL (postgres://user:pass@host:port/db)")
	f.StringVar(&a.flags.target, "target", "", "target MySQL/MariaDB URL (mysql://… or mariadb://…)")
	f.StringVar(&a.flags.configPath, "config", "", "YAML config file (connections, table and column mappings, copy settings)")
	f.StringVar(&a.flags.logFormat, "log-format", "auto", "log format: auto (text on a terminal, JSON otherwise), json or text")
	f.StringVar(&a.flags.logFile, "log-file", "", "also write the log to this file, as JSON lines, rotated by size")
	f.StringVar(&a.flags.logMaxSize, "log-max-size", "100MiB", "rotate the log file when it would grow past this size")
	f.IntVar(&a.flags.logMaxBackups, "log-max-backups", 5, "rotated log files kept (FILE.1 … FILE.N)")
	f.StringVar(&a.flags.schema, "schema", "public", "source schema whose tables are migrated when --tables is not given")
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error {
		return failure.Wrap(err, failure.Usage, "SLUICE-USAGE", "invalid command line").WithHint("see sluice --help")
	})
	root.AddCommand(a.planCommand(), a.copyCommand(), a.verifyCommand(), a.syncCommand(), a.statusCommand(),
		a.cutoverCommand(), a.cleanupCommand("finish"), a.cleanupCommand("abort"), versionCommand())
	root.AddCommand(a.applyCommand()) // partitioned applier, see events.go
	for _, c := range root.Commands() {
		if c.Args == nil {
			c.Args = noArgs
		}
	}
	return root
}

// noArgs refuses words after a command: `sluice copy items` would otherwise
// copy every table of the schema, and `sluice abort myslot` drop the
// default slot.
func noArgs(cmd *cobra.Command, args []string) error {
	if len(args) == 0 {
		return nil
	}
	shown := make([]string, len(args))
	for i, arg := range args {
		shown[i] = userinfoMasked.ReplaceAllString(arg, "://"+logging.Mask+"@") // a URL's token or password
	}
	// Point at the flags the words were likely meant for, if it has them.
	var meant []string
	if cmd.Flags().Lookup("tables") != nil {
		meant = append(meant, "tables with --tables a,b")
	}
	if cmd.Flags().Lookup("slot") != nil {
		meant = append(meant, "a slot with --slot")
	}
	hint := fmt.Sprintf("sluice %s --help lists its flags", cmd.Name())
	if len(meant) > 0 {
		hint = "give " + strings.Join(meant, " and ") + " (" + hint + ")"
	}
	return failure.New(failure.Usage, "SLUICE-USAGE", "sluice %s takes no arguments, but was given %q", cmd.Name(), strings.Join(shown, " ")).
		WithHint("%s", hint)
}

// userinfoMasked matches a URL's credentials, to the last @ (a password may
// hold one).
var userinfoMasked = regexp.MustCompile(`://.*@`)

func versionCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version",
		RunE: func(cmd *cobra.Command, _ []string) error {
			fmt.Fprintln(cmd.OutOrStdout(), "sluice", version)
			return nil
		},
	}
}

// classifyPrivilege names a privilege the database refused, wherever the
// command met it (reading a table, a sequence, a catalog): that is the
// user's to grant, not an internal error to report. Other errors pass.
func classifyPrivilege(err error) error {
	if pe := (*pgconn.PgError)(nil); errors.As(err, &pe) && pe.Code == "42501" && strings.Contains(pe.Message, "row-level security") {
		return failure.Wrap(err, failure.Schema, "SLUICE-SOURCE-PRIVILEGE", "the source user may not read every row: %s", pe.Message).
			WithHint("a row-level security policy would hide rows from sluice, which reads with row_security off so that a partial copy cannot pass for whole: run sluice as the table's owner or a role WITH BYPASSRLS (ALTER ROLE … BYPASSRLS)")
	}
	if pe := (*pgconn.PgError)(nil); errors.As(err, &pe) && pe.Code == "42501" {
		return failure.Wrap(err, failure.Schema, "SLUICE-SOURCE-PRIVILEGE", "the source user lacks a privilege: %s", pe.Message).
			WithHint("GRANT what the message names TO the source user (for a table: GRANT SELECT ON it, and USAGE ON its schema), then run the command again; docs/OPERATIONS.md, \"Before you start\", lists what each command needs")
	}
	if me := (*mysqldriver.MySQLError)(nil); errors.As(err, &me) && (me.Number == 1044 || me.Number == 1142 || me.Number == 1227) {
		return failure.Wrap(err, failure.Schema, "SLUICE-TARGET-PRIVILEGE", "the target user lacks a privilege: %s", me.Message).
			WithHint("GRANT what the message names TO the target user, then run the command again; docs/OPERATIONS.md, \"Before you start\", lists what each command needs")
	}
	return err
}
