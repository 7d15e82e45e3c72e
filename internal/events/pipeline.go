package events

import (
	"context"
	"fmt"
)

// Prepare converts decoded events (nil entries are skipped) into versioned
// ops through the plan's mapping. Events the source or the converters
// refuse come back in poison, by index into evs.
func Prepare(ctx context.Context, norm *Normalizer, evs []*Event) ([]Op, map[int]*Poison, error) {
	byTable := map[*Table][]int{}
	var order []*Table
	for i, ev := range evs {
		if ev == nil {
			continue
		}
		if _, ok := byTable[ev.Table]; !ok {
			order = append(order, ev.Table)
		}
		byTable[ev.Table] = append(byTable[ev.Table], i)
	}
	poison := map[int]*Poison{}
	ops := make([]Op, 0, len(evs))
	for _, t := range order {
		idx := byTable[t]
		ins := make([]Input, len(idx))
		for j, i := range idx {
			ins[j] = evs[i].Input
		}
		outs, err := norm.Convert(ctx, t, ins, false)
		if err != nil {
			return nil, nil, fmt.Errorf("source: convert events of %s: %w", t.Name, err)
		}
		for j, out := range outs {
			ev := evs[idx[j]]
			if out.Err != nil {
				poison[idx[j]] = &Poison{Code: "SLUICE-EVENT-VALUE", Reason: fmt.Sprintf("table %s: %v", t.Name, out.Err), ID: ev.ID, Table: t.Name}
				continue
			}
			ops = append(ops, Op{Table: t, Delete: ev.Delete || !out.InFilter, Key: out.Key, Hash: KeyHash(t.Plan, out.Key),
				Row: out.Row, Version: ev.Version, Ref: idx[j]})
		}
	}
	return ops, poison, nil
}
