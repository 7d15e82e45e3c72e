package pgstream

import "log/slog"

// UnknownRelations warns, once per relation, that the stream carries
// changes of a table the run does not migrate: they are not applied. (Its
// description alone is no such sign: pgoutput describes a partition along
// with the root it publishes the partition's changes under.) The
// publication holds only the run's tables (a partitioned one publishes
// through its root), so someone changed it, or it was made by an older
// build that published partitions under their own names; saying so beats
// dropping the changes without a word. The zero value is ready to use; not
// safe for concurrent use (the stream's reading loop owns it).
type UnknownRelations struct{ seen map[string]bool }

// Warn logs rel, of a change, unless it was logged before.
func (u *UnknownRelations) Warn(log *slog.Logger, rel *Relation) {
	name := rel.Schema + "." + rel.Name
	if u.seen[name] {
		return
	}
	if u.seen == nil {
		u.seen = map[string]bool{}
	}
	u.seen[name] = true
	log.Warn("the change stream carries changes of a table this run does not migrate; they are not applied (was the publication changed?)",
		"code", "SLUICE-SYNC-UNKNOWNTABLE", "table", name)
}
