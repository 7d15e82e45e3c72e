package mysql_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"testing"

	"github.com/sluice-db/sluice/internal/mysql"
	"github.com/sluice-db/sluice/internal/testenv"
)

// What the driver reports by itself (a connection the server closed) goes
// to sluice's log as a structured warning, not as a bare line on stderr.
func TestDriverLogsAreStructured(t *testing.T) {
	p := testenv.NewPair(t)
	ctx := context.Background()
	var buf bytes.Buffer
	mysql.LogDriverTo(slog.New(slog.NewJSONHandler(&buf, nil)))
	defer mysql.LogDriverTo(slog.New(slog.DiscardHandler))
	tgt := connectTarget(t, p)
	conn, err := tgt.DB.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var id int64
	if err := conn.QueryRowContext(ctx, "SELECT CONNECTION_ID()").Scan(&id); err != nil {
		t.Fatal(err)
	}
	if _, err := tgt.DB.ExecContext(ctx, "KILL ?", id); err != nil {
		t.Fatal(err)
	}
	if err := conn.QueryRowContext(ctx, "SELECT 1").Scan(new(int)); err == nil {
		t.Fatal("a query on a killed connection succeeded")
	}
	var line struct{ Level, Msg, Code, Message string }
	if err := json.Unmarshal(bytes.TrimSpace(buf.Bytes()), &line); err != nil {
		t.Fatalf("the driver's report is not one JSON log line (%v): %q", err, buf.String())
	}
	if line.Level != "WARN" || line.Code != "SLUICE-TARGET-DRIVER" || line.Message == "" {
		t.Fatalf("driver report = %+v; want a WARN with code SLUICE-TARGET-DRIVER and the driver's message", line)
	}
}
