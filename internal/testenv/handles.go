package testenv

import (
	"context"
	"testing"

	"github.com/sluice-db/sluice/internal/config"
	"github.com/sluice-db/sluice/internal/mysql"
	"github.com/sluice-db/sluice/internal/postgres"
)

// Handles opens sluice's own connections to the pair, for tests of a
// package rather than of the binary; they close when the test ends (after
// any clean-up the test registers later, which runs first).
func (p *Pair) Handles(t testing.TB) (*postgres.Source, *mysql.Target) {
	t.Helper()
	ctx := context.Background()
	src, err := postgres.Connect(ctx, p.SourceURL, "source", 4)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(src.Close)
	cfg, err := config.ParseTarget("--target", p.TargetURL)
	if err != nil {
		t.Fatal(err)
	}
	tgt, err := mysql.Connect(ctx, cfg, 4)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tgt.DB.Close() })
	return src, tgt
}
