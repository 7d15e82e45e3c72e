package syncer

import "testing"

// A cutover takes the changed keys to check them; when it fails, the keys it
// had not confirmed equal go back, or a later cutover would never check them.
func TestChangedKeysRestoredAfterAFailedCutover(t *testing.T) {
	var c changedKeys
	orders, items := &table{}, &table{}
	c.add(orders, "1")
	c.add(orders, "2")
	taken, _ := c.take()
	if len(taken[orders]) != 2 || c.count() != 0 {
		t.Fatalf("take returned %d keys and left %d; want 2 and 0", len(taken[orders]), c.count())
	}
	c.add(items, "9") // changed meanwhile
	c.restore(map[*table][]string{orders: {"1", "2"}})
	c.restore(map[*table][]string{orders: {"2"}}) // given back twice: still one key
	if c.count() != 3 {
		t.Fatalf("after the restore %d keys wait to be checked; want 3 (orders 1 and 2, items 9)", c.count())
	}
	again, _ := c.take()
	if _, ok := again[orders]["1"]; !ok || len(again[items]) != 1 {
		t.Fatalf("keys after the restore: %v", again)
	}
}
