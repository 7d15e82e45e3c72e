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

// Two columns renamed into each other's places keep every name and type;
// only the order tells.
func TestRelationColumnsSwapped(t *testing.T) {
	src := &schema.Table{Columns: []schema.Column{
		{Name: "id", Type: schema.Type{OID: 23}}, {Name: "a", Type: schema.Type{OID: 23}}, {Name: "b", Type: schema.Type{OID: 23}},
	}}
	rel := &pgstream.Relation{ReplicaIdentity: 'd', Columns: []pgstream.RelationColumn{
		{Name: "id", TypeOID: 23, Key: true}, {Name: "b", TypeOID: 23}, {Name: "a", TypeOID: 23},
	}}
	got := capture.RelationChanges(src, rel, []string{"id"}, false)
	if len(got) != 1 || !strings.Contains(got[0], "another order (id, b, a, planned id, a, b)") {
		t.Errorf("swapped columns: %q; want one problem naming both orders", got)
	}
}

// What the source's event trigger records that the stream cannot show.
func TestNoticeChanges(t *testing.T) {
	src := &schema.Table{Name: schema.TableName{Schema: "public", Name: "ev"}, OID: 7, Columns: []schema.Column{
		{Name: "id", Type: schema.Type{OID: 23}, Num: 1}, {Name: "a", Type: schema.Type{OID: 23}, Num: 2}, {Name: "b", Type: schema.Type{OID: 23}, Num: 3},
	}}
	shape := func(name string, bNum int16) pgstream.DDLNotice {
		return pgstream.DDLNotice{OID: 7, Schema: "public", Name: name, Identity: "d", Columns: []pgstream.DDLColumn{
			{Num: 1, Name: "id", Type: 23, Mod: -1, Key: true}, {Num: 2, Name: "a", Type: 23, Mod: -1}, {Num: bNum, Name: "b", Type: 23, Mod: -1},
		}}
	}
	for _, tc := range []struct {
		name   string
		notice pgstream.DDLNotice
		want   string // "" for no problem
	}{
		{"a constraint added", shape("ev", 3), ""},
		{"b dropped and added again", shape("ev", 4), "column b is another column than the one copied"},
		{"rows rewritten by a type change", pgstream.DDLNotice{OID: 7, Rewrite: pgstream.RewriteColumns}, "rewrote the values"},
		{"rewritten to another access method", pgstream.DDLNotice{OID: 7, Rewrite: 8}, ""},
		{"dropped", pgstream.DDLNotice{OID: 7, Dropped: true}, "it was dropped"},
		{"a partition truncated", pgstream.DDLNotice{OID: 8, Name: "public.ev_1", Truncated: true, Bound: "((id >= 0) AND (id < 50))"},
			"its partition public.ev_1 was truncated: the rows it held left the source without a change in the stream (delete on the target the rows where (in PostgreSQL's terms) ((id >= 0) AND (id < 50)), or run sluice verify --repair --tables ev once the sync runs again)"},
		{"a hash partition truncated", pgstream.DDLNotice{OID: 8, Name: "public.ev_1", Truncated: true, Bound: "satisfies_hash_partition('28971'::oid, 2, 0, id)"},
			"sluice cannot tell them by a condition: once the sync runs again, sluice verify --repair --tables ev finds them"},
		{"a partition truncated, its bound unknown", pgstream.DDLNotice{OID: 8, Name: "public.ev_1", Truncated: true}, "sluice cannot tell them by a condition: once the sync runs again, sluice verify --repair --tables ev finds them"},
		{"the table itself truncated (the stream shows it)", pgstream.DDLNotice{OID: 7, Name: "public.ev", Truncated: true}, ""},
	} {
		src.Columns[0].TypeMod, src.Columns[1].TypeMod, src.Columns[2].TypeMod = -1, -1, -1
		problems, err := capture.NoticeChanges(src, nil, tc.notice, []string{"id"}, false)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if got := strings.Join(problems, "; "); tc.want == "" && got != "" || !strings.Contains(got, tc.want) {
			t.Errorf("%s: %q; want %q", tc.name, got, tc.want)
		}
	}
	var fe *failure.Error
	if _, err := capture.NoticeChanges(src, nil, shape("ev_old", 3), []string{"id"}, false); !errors.As(err, &fe) || fe.Code != "SLUICE-SYNC-SCHEMACHANGE" || !strings.Contains(err.Error(), "renamed to public.ev_old") {
		t.Errorf("renamed table: %v; want SLUICE-SYNC-SCHEMACHANGE naming the new name", err)
	}
}

// A notice is read from sluice's message in the WAL, as the trigger writes
// it (oids as numbers); other sluice messages are not notices.
func TestParseDDLNotice(t *testing.T) {
	n, ok, err := pgstream.ParseDDLNotice([]byte(`D:{"oid" : 16390, "schema" : "public", "name" : "ev", "identity" : "d", "columns" : [{"num" : 1, "name" : "id", "type" : 23, "mod" : -1, "key" : true}]}`))
	if !ok || err != nil || n.OID != 16390 || n.Relation().ReplicaIdentity != 'd' || len(n.Columns) != 1 || !n.Columns[0].Key {
		t.Errorf("notice: %+v %v %v", n, ok, err)
	}
	n, ok, err = pgstream.ParseDDLNotice([]byte(`D:{"oid" : 16391, "name" : "public.ev_1", "truncated" : true, "ancestors" : [16390], "bound" : "(true)"}`))
	if !ok || err != nil || !n.Truncated || n.Bound != "" || n.Name != "public.ev_1" || len(n.Ancestors) != 1 || n.Ancestors[0] != 16390 {
		t.Errorf("TRUNCATE notice: %+v %v %v", n, ok, err)
	}
	if _, ok, _ := pgstream.ParseDDLNotice([]byte("W:12:lo")); ok {
		t.Error("a watermark was read as a schema-change notice")
	}
	if _, ok, err := pgstream.ParseDDLNotice([]byte(`D:{"oid": "16390"}`)); !ok || err == nil {
		t.Error("a malformed notice was read without an error")
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
