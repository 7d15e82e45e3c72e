package capture_test

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/sluice-db/sluice/internal/capture"
	"github.com/sluice-db/sluice/internal/failure"
	"github.com/sluice-db/sluice/internal/pgstream"
	"github.com/sluice-db/sluice/internal/plan"
	"github.com/sluice-db/sluice/internal/schema"
)

// What a Relation message can say that the plan did not expect.
func TestRelationChanges(t *testing.T) {
	src := &schema.Table{Columns: []schema.Column{
		{Name: "id", Type: schema.Type{OID: 23}},
		{Name: "email", Type: schema.Type{OID: 25}},
	}}
	rel := func(ident byte, cols ...pgstream.RelationColumn) *pgstream.Relation {
		return &pgstream.Relation{ReplicaIdentity: ident, Columns: cols}
	}
	id := pgstream.RelationColumn{Name: "id", TypeOID: 23, Key: true}
	email := pgstream.RelationColumn{Name: "email", TypeOID: 25}
	for _, tc := range []struct {
		name     string
		rel      *pgstream.Relation
		key      []string
		wholeOld bool
		want     []string
	}{
		{"as planned", rel('d', id, email), []string{"id"}, false, nil},
		{"full holds every column", rel('f', pgstream.RelationColumn{Name: "id", TypeOID: 23}, email), []string{"id"}, false, nil},
		{"retyped, dropped, added", rel('d', pgstream.RelationColumn{Name: "id", TypeOID: 20, Key: true}, pgstream.RelationColumn{Name: "mail", TypeOID: 25}), []string{"id"}, false,
			[]string{"column id changed type", "column email was dropped or renamed", "column mail was added"}},
		{"identity on another index", rel('i', pgstream.RelationColumn{Name: "id", TypeOID: 23}, pgstream.RelationColumn{Name: "email", TypeOID: 25, Key: true}), []string{"id"}, false,
			[]string{"REPLICA IDENTITY no longer holds key column id"}},
		{"whole old rows needed", rel('d', id, email), nil, true, []string{"REPLICA IDENTITY is no longer FULL"}},
	} {
		if got := capture.RelationChanges(src, tc.rel, tc.key, tc.wholeOld); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
}

// A stored generated column is not in the stream's Relation before
// PostgreSQL 18: that is not a dropped column.
func TestRelationWithoutGeneratedColumn(t *testing.T) {
	src := &schema.Table{Columns: []schema.Column{
		{Name: "id", Type: schema.Type{OID: 23}},
		{Name: "g", Type: schema.Type{OID: 23}, Generated: "(id * 2)"},
	}}
	rel := &pgstream.Relation{ReplicaIdentity: 'd', Columns: []pgstream.RelationColumn{{Name: "id", TypeOID: 23, Key: true}}}
	if got := capture.RelationChanges(src, rel, []string{"id"}, false); got != nil {
		t.Errorf("a relation without the generated column: %q; want no problem", got)
	}
}

// A generated column the run would stream is refused at start, naming it;
// the sync takes the table once the mapping drops it, the publisher (which
// publishes every source column) does not.
func TestCheckGenerated(t *testing.T) {
	st := &schema.Table{Name: schema.TableName{Schema: "public", Name: "t"}, Columns: []schema.Column{
		{Name: "id", Type: schema.Type{OID: 23}},
		{Name: "g", Type: schema.Type{OID: 23}, Generated: "(id * 2)"},
	}}
	kept := &plan.Table{Source: st, Columns: []plan.Column{{Source: "id"}, {Source: "g"}}}
	dropped := &plan.Table{Source: st, Columns: []plan.Column{{Source: "id"}}}
	var fe *failure.Error
	if err := capture.CheckGenerated(kept, false); !errors.As(err, &fe) || fe.Code != "SLUICE-SYNC-GENERATED" ||
		!strings.Contains(err.Error(), "column g") || !strings.Contains(err.Error(), "drop: true") {
		t.Errorf("generated column kept: %v; want SLUICE-SYNC-GENERATED naming g, with a hint to drop it", err)
	}
	if err := capture.CheckGenerated(dropped, false); err != nil {
		t.Errorf("generated column dropped by the mapping: %v", err)
	}
	if err := capture.CheckGenerated(dropped, true); err == nil {
		t.Error("the publisher took a table with a generated column")
	}
}
