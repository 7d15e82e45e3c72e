package capture_test

import (
	"reflect"
	"testing"

	"github.com/sluice-db/sluice/internal/capture"
	"github.com/sluice-db/sluice/internal/pgstream"
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
