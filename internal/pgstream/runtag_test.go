package pgstream_test

import (
	"context"
	"testing"

	"github.com/sluice-db/sluice/internal/pgstream"
)

// A run's tag on its publication is how a run tells its own slot from
// another migration's of the same name: it reads back what was set, and a
// publication without sluice's tag (none, someone's own comment, or none
// at all) names no run.
func TestPublicationRunTag(t *testing.T) {
	p, pool := likesSource(t)
	ctx := context.Background()
	pub := p.Name
	run := func() string {
		t.Helper()
		r, err := pgstream.PublicationRun(ctx, pool, pub)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	if r := run(); r != "" {
		t.Errorf("no publication: run %q, want none", r)
	}
	p.PG(t, `CREATE PUBLICATION `+pub+` FOR TABLE likes`)
	t.Cleanup(func() { p.PG(t, `DROP PUBLICATION IF EXISTS `+pub) })
	if r := run(); r != "" {
		t.Errorf("an untagged publication: run %q, want none", r)
	}
	p.PG(t, `COMMENT ON PUBLICATION `+pub+` IS 'the team''s feed'`)
	if r := run(); r != "" {
		t.Errorf("a publication with someone's own comment: run %q, want none", r)
	}
	if err := pgstream.TagPublication(ctx, pool, pub, "0123abcd"); err != nil {
		t.Fatal(err)
	}
	if r := run(); r != "0123abcd" {
		t.Errorf("after TagPublication: run %q, want 0123abcd", r)
	}
}
