package events

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/sluice-db/sluice/internal/canonical"
	"github.com/sluice-db/sluice/internal/plan"
	"github.com/sluice-db/sluice/internal/schema"
)

func TestJSONText(t *testing.T) {
	ty := func(name string) schema.Type { return schema.Type{Name: name, Display: name} }
	for _, c := range []struct {
		raw, typ  string
		want      string
		null, can bool
		err       string
	}{
		{raw: `7`, typ: "int8", want: "7", can: true},
		{raw: `"-12"`, typ: "int4", want: "-12", can: true},
		{raw: `9223372036854775807`, typ: "int8", want: "9223372036854775807", can: true},
		{raw: `40000`, typ: "int2", err: "out of range"},
		{raw: `1.5`, typ: "int4", err: "not an integer"},
		{raw: `null`, typ: "int4", null: true, can: true},
		{raw: `true`, typ: "bool", want: "t", can: true},
		{raw: `"f"`, typ: "bool", want: "f", can: true},
		{raw: `"yes"`, typ: "bool", err: "not a boolean"},
		{raw: `"héllo \"x\" 😀"`, typ: "text", want: `héllo "x" 😀`, can: true},
		{raw: `"a\u0000b"`, typ: "text", err: "NUL"},
		{raw: `12`, typ: "text", err: "expected a JSON string"},
		{raw: `"0e4f8b1a-1b2c-4d5e-8f90-a1b2c3d4e5f6"`, typ: "uuid", want: "0e4f8b1a-1b2c-4d5e-8f90-a1b2c3d4e5f6", can: true},
		{raw: `"0E4F8B1A-1B2C-4D5E-8F90-A1B2C3D4E5F6"`, typ: "uuid", want: "0E4F8B1A-1B2C-4D5E-8F90-A1B2C3D4E5F6", can: false},
		{raw: `"2024-05-01T10:00:00Z"`, typ: "timestamptz", want: "2024-05-01T10:00:00Z"},
		{raw: `12.50`, typ: "numeric", want: "12.50"},
		{raw: `{"b": 1,  "a": [1, 2]}`, typ: "jsonb", want: `{"b":1,"a":[1,2]}`},
		{raw: `"a string"`, typ: "json", want: `"a string"`},
	} {
		text, null, can, err := jsonText(json.RawMessage(c.raw), ty(c.typ))
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%s as %s: error %v, want %q", c.raw, c.typ, err, c.err)
			}
			continue
		}
		if err != nil || text != c.want || null != c.null || can != c.can {
			t.Errorf("%s as %s: %q null=%v canonical=%v err=%v; want %q null=%v canonical=%v", c.raw, c.typ, text, null, can, err, c.want, c.null, c.can)
		}
	}
	arr := schema.Type{Name: "_text", Array: true, Elem: "text", Display: "text[]"}
	text, _, _, err := jsonText(json.RawMessage(`["a", null, "q\"uote", ["x"]]`), arr)
	if err != nil || text != `{"a",NULL,"q\"uote",{"x"}}` {
		t.Errorf("array: %q %v", text, err)
	}
	enum := schema.Type{Name: "mood", EnumLabels: []string{"sad", "ok"}, Display: "mood"}
	if _, _, can, err := jsonText(json.RawMessage(`"ok"`), enum); err != nil || !can {
		t.Errorf("enum label: %v", err)
	}
	if _, _, _, err := jsonText(json.RawMessage(`"happy"`), enum); err == nil {
		t.Error("enum accepted a value that is not a label")
	}
}

func TestScanRejectsInvalidJSON(t *testing.T) {
	for _, bad := range []string{`{"a":}`, `{"a":1,}`, `{"a":tru}`, `{"a":"x\q"}`, `{"a":01}`, `{"a":1} {}`, `{"a":"` + "\xff" + `"}`, `[1]`, `{"a":"b` + "\n" + `"}`} {
		if err := ScanObject([]byte(bad), func(_, _ []byte) error { return nil }); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	var got []string
	err := ScanObject([]byte(` {"a" : [1, {"b": null}, -2.5e3], "c\u0064": "\u00e9"} `), func(name, raw []byte) error {
		got = append(got, string(name)+"="+string(raw))
		return nil
	})
	if err != nil || strings.Join(got, ";") != `a=[1, {"b": null}, -2.5e3];cd="\u00e9"` {
		t.Errorf("scan: %v %v", got, err)
	}
}

// Objects nested in objects count toward the depth limit too: a deep
// enough event overflowed the stack (a fatal error no recover catches), and
// every restart read it again.
func TestScanRefusesDeepObjects(t *testing.T) {
	deep := strings.Repeat(`{"a":`, 100) + "1" + strings.Repeat("}", 100)
	if err := ScanObject([]byte(deep), func(_, _ []byte) error { return nil }); err == nil || !strings.Contains(err.Error(), "nested too deeply") {
		t.Errorf("100 nested objects: %v; want refused as nested too deeply", err)
	}
	shallow := strings.Repeat(`{"a":`, 60) + "1" + strings.Repeat("}", 60)
	if err := ScanObject([]byte(shallow), func(_, _ []byte) error { return nil }); err != nil {
		t.Errorf("60 nested objects: %v; want accepted", err)
	}
}

func likesTable(computed bool) *Table {
	st := &schema.Table{Name: schema.TableName{Schema: "public", Name: "likes"}, PrimaryKey: []string{"user_id", "post_id"},
		Columns: []schema.Column{{Name: "user_id", Type: schema.Type{Name: "int8"}}, {Name: "post_id", Type: schema.Type{Name: "int8"}},
			{Name: "created_at", Type: schema.Type{Name: "timestamptz"}}, {Name: "secret", Type: schema.Type{Name: "text"}}}}
	pt := &plan.Table{Source: st, Target: "post_likes", Key: []int{0, 1}, Columns: []plan.Column{
		{Source: "user_id", SourceExpr: `"user_id"`, Target: "member_id", SourceType: st.Columns[0].Type},
		{Source: "post_id", SourceExpr: `"post_id"`, Target: "post_id", SourceType: st.Columns[1].Type},
		{Source: "created_at", SourceExpr: `"created_at"`, Target: "liked_at", SourceType: st.Columns[2].Type}}}
	if computed {
		pt.Columns = append(pt.Columns, plan.Column{SourceExpr: "((created_at AT TIME ZONE 'UTC')::date)", Target: "liked_on"})
	}
	return NewTable(pt, []string{"bigint", "bigint", "timestamp with time zone", "text"})
}

func TestDecode(t *testing.T) {
	c := NewCatalog([]*Table{likesTable(true)})
	ev, p := c.Decode([]byte(`{"v":1,"id":"e1","table":"likes","op":"upsert","key":{"user_id":7,"post_id":"42"},
		"row":{"user_id":7,"post_id":42,"created_at":"2024-06-01T00:00:00Z"},"version":12}`))
	if p != nil {
		t.Fatal(p)
	}
	if ev.Version != 12 || ev.Delete || ev.Input.Vals[1].Text != "42" || !ev.Input.Vals[3].Absent || ev.Input.Vals[2].Canonical {
		t.Errorf("decoded %+v", ev.Input.Vals)
	}
	for _, c2 := range []struct{ body, code, msg string }{
		{`{"v":1,"id":"x","table":"nope","op":"upsert","key":{"id":1},"row":{"id":1},"version":1}`, "SLUICE-EVENT-TABLE", "unknown table"},
		{`{"v":1,"id":"x","table":"likes","op":"delete","key":{"user_id":1},"version":1}`, "SLUICE-EVENT-KEY", "post_id is missing"},
		{`{"v":1,"id":"x","table":"likes","op":"delete","key":{"user_id":1,"post_id":2,"created_at":"x"},"version":1}`, "SLUICE-EVENT-KEY", "not a key column"},
		{`{"v":1,"id":"x","table":"likes","op":"upsert","key":{"user_id":1,"post_id":2},"row":{"user_id":1,"post_id":2},"version":1}`, "SLUICE-EVENT-ROW", "lacks column created_at"},
		{`{"v":1,"id":"x","table":"likes","op":"upsert","key":{"user_id":1,"post_id":2},"row":{"user_id":3,"post_id":2,"created_at":"x"},"version":1}`, "SLUICE-EVENT-KEY", "in \"row\" but"},
		{`{"v":1,"id":"x","table":"likes","op":"upsert","key":{"user_id":"abc","post_id":2},"row":{},"version":1}`, "SLUICE-EVENT-VALUE", "not an integer"},
		{`{"v":1,"id":"x","table":"likes","op":"merge","key":{"user_id":1,"post_id":2},"version":1}`, "SLUICE-EVENT-FIELD", `"op"`},
		{`{"v":1,"id":"x","table":"likes","op":"delete","key":{"user_id":1,"post_id":2},"version":0}`, "SLUICE-EVENT-FIELD", "positive"},
		{`{"v":2,"id":"x"}`, "SLUICE-EVENT-VERSION", "not supported"},
		{`{"id":"x"}`, "SLUICE-EVENT-VERSION", `no format version`},
		{`{"v":1,"table":"likes"}`, "SLUICE-EVENT-FIELD", `no "id"`},
		{`not json`, "SLUICE-EVENT-JSON", "not a JSON event"},
	} {
		_, p := c.Decode([]byte(c2.body))
		if p == nil || p.Code != c2.code || !strings.Contains(p.Reason, c2.msg) {
			t.Errorf("%s: %+v; want %s mentioning %q", c2.body, p, c2.code, c2.msg)
		}
	}
}

func TestGoPathConversion(t *testing.T) {
	tb := likesTable(false)
	ins := []Input{{Vals: []Value{{Text: "7", Canonical: true}, {Text: "42", Canonical: true}, {Text: "x"}, {Absent: true}}}}
	if tb.canonical(ins[0], false) {
		t.Error("a timestamptz text taken as canonical")
	}
	if !tb.canonical(ins[0], true) {
		t.Error("integer key not canonical")
	}
	out := tb.goRow(Input{Vals: ins[0].Vals, KeyOnly: true}, false)
	if out.Err != nil || strings.Join(out.Key, ",") != "7,42" || string(out.Row[0].Data) != "7" || out.Row[2].Data != nil {
		t.Errorf("key-only row: %+v", out)
	}
	a, b := &plan.Table{Target: "a"}, &plan.Table{Target: "b"}
	if KeyHash(a, []string{"1", "2"}) == KeyHash(a, []string{"12"}) || KeyHash(a, []string{"1"}) == KeyHash(b, []string{"1"}) {
		t.Error("key hashes collide")
	}
}

// One version row per target row: spellings the source and the target take
// for one key value hash alike (an older event for {"id": "1.0"} must not
// pass the version of {"id": 1}); other values stay apart.
func TestKeyHashOneRowOneHash(t *testing.T) {
	table := func(k canonical.Kind) *plan.Table {
		return &plan.Table{Target: "t", Columns: []plan.Column{{Kind: k}}, Key: []int{0}}
	}
	for _, c := range []struct {
		kind       canonical.Kind
		same, diff []string
	}{
		{canonical.Decimal, []string{"1", "1.0", "1.00"}, []string{"1.01", "10"}},
		{canonical.Float64, []string{"0", "-0"}, []string{"1"}},
		{canonical.PaddedChar, []string{"a", "a ", "a   "}, []string{"b", " a"}},
		{canonical.Exact, []string{"a"}, []string{"a ", "A"}},
	} {
		tb := table(c.kind)
		want := KeyHash(tb, []string{c.same[0]})
		for _, k := range c.same[1:] {
			if KeyHash(tb, []string{k}) != want {
				t.Errorf("%s key %q hashes apart from %q", c.kind, k, c.same[0])
			}
		}
		for _, k := range c.diff {
			if KeyHash(tb, []string{k}) == want {
				t.Errorf("%s key %q hashes as %q", c.kind, k, c.same[0])
			}
		}
	}
}
