package fence

import (
	"reflect"
	"testing"
)

// Union keeps what an earlier cutover attempt revoked (and the role no
// longer holds, so a new attempt does not list it) with what this one
// takes: the record must never shrink while privileges are still taken.
func TestUnionKeepsEarlierGrants(t *testing.T) {
	held := []Grant{{Table: `"public"."t"`, Role: "app", Privileges: []string{"INSERT", "DELETE"}}}
	now := []Grant{
		{Table: `"public"."t"`, Role: "app", Privileges: []string{"UPDATE"}},
		{Table: `"public"."u"`, Role: "app", Privileges: []string{"TRUNCATE", "INSERT"}},
	}
	want := []Grant{
		{Table: `"public"."t"`, Role: "app", Privileges: []string{"INSERT", "UPDATE", "DELETE"}},
		{Table: `"public"."u"`, Role: "app", Privileges: []string{"INSERT", "TRUNCATE"}},
	}
	if got := Union(held, now); !reflect.DeepEqual(got, want) {
		t.Errorf("Union = %+v; want %+v", got, want)
	}
	if got := Union(held, nil); !reflect.DeepEqual(got, held) {
		t.Errorf("Union with nothing new = %+v; want the held grants %+v", got, held)
	}
	if got, _ := DecodeGrants(EncodeGrants(want)); !reflect.DeepEqual(got, want) {
		t.Errorf("grants do not survive their record: %+v", got)
	}
}
