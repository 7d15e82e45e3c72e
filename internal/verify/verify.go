// Package verify compares source and target table by table in key-ordered
// chunks. Each value is reduced to a canonical encoding (see package
// canonical) so values equal in meaning compare equal across engines; rows
// are matched by key within a chunk and reported as changed, missing (on the
// target) or extra (on the target).
package verify

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"

	"golang.org/x/sync/errgroup"

	"github.com/sluice-db/sluice/internal/canonical"
	"github.com/sluice-db/sluice/internal/chunk"
	"github.com/sluice-db/sluice/internal/codec"
	"github.com/sluice-db/sluice/internal/copier"
	"github.com/sluice-db/sluice/internal/failure"
	"github.com/sluice-db/sluice/internal/mysql"
	"github.com/sluice-db/sluice/internal/plan"
	"github.com/sluice-db/sluice/internal/postgres"
	"github.com/sluice-db/sluice/internal/progress"
	"github.com/sluice-db/sluice/internal/typemap"
)

// Options tune a verification.
type Options struct {
	Parallel  int
	ChunkRows int
	Samples   int  // how many differing rows to show per table
	Repair    bool // rewrite differing rows from the source, then verify again
	Tracker   *progress.Tracker
	Log       *slog.Logger
}

// Difference kinds.
const (
	Changed = "changed"
	Missing = "missing" // on the target
	Extra   = "extra"   // on the target only
)

// Diff is one differing row; values are canonical text for display.
type Diff struct {
	Kind   string
	Key    string
	Source []string
	Target []string
	// SourceNote, TargetNote: why that side has no values to show (the
	// target cannot hold the source row, or holds what cannot be read).
	SourceNote, TargetNote string
	// Index is, from CompareKeys, the position of the differing row's key
	// in the keys asked for; -1 when it cannot be told.
	Index int `json:"-"`

	canonKey []byte // canonical encoding of the key
}

// TableResult is the verdict for one table.
type TableResult struct {
	Source   string
	Target   string
	Columns  []string
	Compared int64 // source rows compared
	Changed  int64
	Missing  int64
	Extra    int64
	Samples  []Diff
	Repaired int64 // rows rewritten by --repair
	Err      error

	repairSource [][]string // source keys (source text) to copy again
	repairTarget [][]any    // target keys to delete
	extraRanges  []extraSet // where the extra rows are, for reading the source again
}

// extraSet is the canonical keys of the extra rows verify found in one range.
type extraSet struct {
	r    chunk.Range
	keys []string
}

// Equal reports whether no difference was found.
func (r *TableResult) Equal() bool { return r.Err == nil && r.Changed+r.Missing+r.Extra == 0 }

// maxRepairKeys bounds memory: beyond it, copying the table again is the fix.
const maxRepairKeys = 200000

// Run verifies every table of p (and repairs, if asked).
func Run(ctx context.Context, src *postgres.Source, tgt *mysql.Target, p *plan.Plan, opt Options) ([]*TableResult, error) {
	if opt.Parallel < 1 {
		opt.Parallel = 4
	}
	if opt.ChunkRows < 1 {
		opt.ChunkRows = 20000
	}
	if opt.Samples < 1 {
		opt.Samples = 10
	}
	if opt.Tracker == nil {
		opt.Tracker = &progress.Tracker{}
	}
	if opt.Log == nil {
		opt.Log = slog.New(slog.DiscardHandler)
	}
	var results []*TableResult
	for _, t := range p.Tables {
		res, err := verifyTable(ctx, src, tgt, t, opt)
		if err != nil {
			return results, err
		}
		switch repairable := opt.Repair && !res.Equal() && res.Err == nil; {
		case repairable && t.Keyless:
			opt.Log.Warn("a table without a key cannot be repaired row by row: its rows are not told apart; drop the target table and let sluice sync copy it again (the source table needs REPLICA IDENTITY FULL; sluice copy needs a key)",
				"code", "SLUICE-VERIFY-NOREPAIR", "table", res.Source)
		case repairable:
			repaired, err := repair(ctx, src, tgt, t, res)
			if err != nil {
				return results, err
			}
			opt.Log.Info("repaired rows; verifying again", "table", res.Source, "rows", repaired)
			res, err = verifyTable(ctx, src, tgt, t, opt)
			if err != nil {
				return results, err
			}
			res.Repaired = repaired
		}
		results = append(results, res)
	}
	return results, nil
}

type verifier struct {
	src   *postgres.Source
	tgt   *mysql.Target
	t     *plan.Table
	kinds []canonical.Kind
	keyK  []canonical.Kind
	res   *TableResult
	opt   Options
	prog  *progress.Table
	mu    sync.Mutex
}

// newVerifier returns a verifier of t that knows how to canonicalise its
// rows and keys.
func newVerifier(src *postgres.Source, tgt *mysql.Target, t *plan.Table) *verifier {
	v := &verifier{src: src, tgt: tgt, t: t}
	for _, c := range t.Columns {
		v.kinds = append(v.kinds, c.Kind)
	}
	for _, k := range t.Key {
		v.keyK = append(v.keyK, t.Columns[k].Kind)
	}
	return v
}

func verifyTable(ctx context.Context, src *postgres.Source, tgt *mysql.Target, t *plan.Table, opt Options) (*TableResult, error) {
	v := newVerifier(src, tgt, t)
	v.opt = opt
	v.res = &TableResult{Source: t.Source.Name.String(), Target: t.Target, Columns: t.TargetColumns()}
	exists, err := tgt.TableExists(ctx, t.Target)
	if err != nil {
		return nil, err
	}
	if !exists {
		v.res.Err = fmt.Errorf("target table %s does not exist; run sluice copy first", t.Target)
		return v.res, nil
	}
	v.prog = opt.Tracker.Add(v.res.Source, t.Source.EstimatedRows, 0)
	v.prog.SetPhase("verifying")
	if t.Keyless {
		if err := v.multiset(ctx); err != nil {
			return nil, err
		}
		v.prog.SetPhase("done")
		return v.res, nil
	}
	ranges := []chunk.Range{{}}
	if t.KeyOrderAgrees() {
		bounds, err := src.KeyBoundaries(ctx, t.Source.Name, t.KeyExprsSource(), opt.ChunkRows)
		if err != nil {
			return nil, err
		}
		ranges = chunk.BoundaryRanges(bounds)
		for _, r := range ranges {
			if _, _, err := t.TargetQuery(r); err != nil {
				opt.Log.Info("comparing the table in one piece: a key range bound has no form on the target ("+err.Error()+"); its rows are differences verify reports",
					"table", t.Source.Name.String())
				ranges = []chunk.Range{{}}
				break
			}
		}
	} else {
		opt.Log.Info("comparing the table in one piece: its key sorts differently in PostgreSQL and on the target, so key ranges would not select the same rows on both sides",
			"table", t.Source.Name.String())
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(opt.Parallel)
	for _, r := range ranges {
		g.Go(func() error { return failure.Guard(func() error { return v.chunk(gctx, r) }) })
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	v.prog.SetPhase("done")
	return v.res, nil
}

type row struct {
	canon []byte // canonical encoding of every column
	key   []byte // canonical encoding of the key columns
	raw   []string
}

func (v *verifier) chunk(ctx context.Context, r chunk.Range) error {
	q, args, err := v.t.TargetQuery(r)
	if err != nil {
		return fmt.Errorf("verify %s: chunk bound: %w", v.t.Source.Name, err)
	}
	res, err := v.compare(ctx, v.t.SourceQuery(r), q, args)
	if err != nil {
		return err
	}
	v.prog.AddRows(res.compared)
	v.mu.Lock()
	defer v.mu.Unlock()
	v.res.Compared += res.compared
	v.res.Changed += res.changed
	v.res.Missing += res.missing
	v.res.Extra += res.extra
	for _, d := range res.diffs {
		if len(v.res.Samples) < v.opt.Samples {
			v.res.Samples = append(v.res.Samples, d)
		}
	}
	if len(v.res.repairSource)+len(res.repairSrc) <= maxRepairKeys {
		v.res.repairSource = append(v.res.repairSource, res.repairSrc...)
		v.res.repairTarget = append(v.res.repairTarget, res.repairTgt...)
		if len(res.extraKeys) > 0 {
			v.res.extraRanges = append(v.res.extraRanges, extraSet{r: r, keys: res.extraKeys})
		}
	}
	return nil
}

// multiset compares a table without a key as a whole: equal rows are
// interchangeable, so each side is a multiset of canonical rows.
func (v *verifier) multiset(ctx context.Context) error {
	counts := map[string]int{}
	var compared int64
	err := copier.ScanRows(ctx, v.src, v.t, v.t.SourceQuery(chunk.Range{}), func(_ []string, vals [][]byte) error {
		canon, err := canonical.HashRow(nil, v.kinds, vals)
		if err != nil {
			return fmt.Errorf("verify %s: a source value cannot be compared: %w", v.t.Source.Name, err)
		}
		counts[string(canon)]++
		compared++
		return nil
	})
	if err != nil {
		var bv *typemap.BadValue
		if errors.As(err, &bv) {
			return fmt.Errorf("verify %s: %w", v.t.Source.Name, err)
		}
		return err
	}
	q, args, _ := v.t.TargetQuery(chunk.Range{})
	rows, err := v.tgt.DB.QueryContext(ctx, q, args...)
	if err != nil {
		return mysql.QueryError(err, "verify %s: read target table %s", v.t.Source.Name, v.t.Target)
	}
	defer rows.Close()
	vals := make([]sql.RawBytes, len(v.t.Columns))
	ptrs := make([]any, len(vals))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	fields := make([][]byte, len(vals))
	unreadable := 0
	for rows.Next() {
		if err := rows.Scan(ptrs...); err != nil {
			return fmt.Errorf("verify %s: read target: %w", v.t.Target, err)
		}
		for i, b := range vals {
			fields[i] = b
			if b != nil && len(b) == 0 {
				fields[i] = []byte{}
			}
		}
		canon, err := canonical.HashRow(nil, v.kinds, fields)
		if err != nil { // equals no source row: an extra one, each shown apart
			unreadable++
			canon = append(targetUnreadable(err), fmt.Sprintf(" (unreadable row %d)", unreadable)...)
		}
		counts[string(canon)]--
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("verify %s: read target: %w", v.t.Target, err)
	}
	v.res.Compared = compared
	for canon, n := range counts {
		switch {
		case n > 0:
			v.res.Missing += int64(n)
			if len(v.res.Samples) < v.opt.Samples {
				v.res.Samples = append(v.res.Samples, Diff{Kind: Missing, Key: "(no key)", Source: display([]byte(canon)), SourceNote: note([]byte(canon))})
			}
		case n < 0:
			v.res.Extra += int64(-n)
			if len(v.res.Samples) < v.opt.Samples {
				v.res.Samples = append(v.res.Samples, Diff{Kind: Extra, Key: "(no key)", Target: display([]byte(canon)), TargetNote: note([]byte(canon))})
			}
		}
	}
	v.prog.AddRows(compared)
	return nil
}

// comparison is the outcome of comparing one set of rows.
type comparison struct {
	compared                int64
	changed, missing, extra int64
	diffs                   []Diff
	repairSrc               [][]string
	repairTgt               [][]any
	extraKeys               []string // canonical keys of the extra rows
}

// compare reads the rows of sourceQuery (via COPY) and of targetQuery and
// matches them by key.
func (v *verifier) compare(ctx context.Context, sourceQuery, targetQuery string, args []any) (*comparison, error) {
	source, order, err := v.readSource(ctx, sourceQuery)
	if err != nil {
		return nil, err
	}
	rows, err := v.tgt.DB.QueryContext(ctx, targetQuery, args...)
	if err != nil {
		return nil, mysql.QueryError(err, "verify %s: read target table %s", v.t.Source.Name, v.t.Target)
	}
	defer rows.Close()
	vals := make([]sql.RawBytes, len(v.t.Columns))
	ptrs := make([]any, len(vals))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	fields := make([][]byte, len(vals))
	res := &comparison{compared: int64(len(order))}
	for rows.Next() {
		if err := rows.Scan(ptrs...); err != nil {
			return nil, fmt.Errorf("verify %s: read target: %w", v.t.Target, err)
		}
		for i, b := range vals {
			fields[i] = b // nil for NULL
			if b != nil && len(b) == 0 {
				fields[i] = []byte{}
			}
		}
		trow, err := v.encode(fields, "target")
		if err != nil {
			return nil, err
		}
		key := string(trow.key)
		srow, ok := source[key]
		switch {
		case !ok:
			res.extra++
			res.diffs = append(res.diffs, Diff{Kind: Extra, Key: formatKey(trow.key), Target: display(trow.canon), TargetNote: note(trow.canon), canonKey: trow.key})
			res.repairTgt = append(res.repairTgt, v.targetKey(fields))
			res.extraKeys = append(res.extraKeys, key)
		case !bytes.Equal(srow.canon, trow.canon):
			res.changed++
			res.diffs = append(res.diffs, Diff{Kind: Changed, Key: formatKey(trow.key), Source: display(srow.canon), SourceNote: note(srow.canon), Target: display(trow.canon), TargetNote: note(trow.canon), canonKey: trow.key})
			res.repairSrc = append(res.repairSrc, srow.raw)
			res.repairTgt = append(res.repairTgt, v.targetKey(fields))
			delete(source, key)
		default:
			delete(source, key)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("verify %s: read target: %w", v.t.Target, err)
	}
	for _, k := range order {
		if srow, ok := source[k]; ok {
			res.missing++
			res.diffs = append(res.diffs, Diff{Kind: Missing, Key: formatKey(srow.key), Source: display(srow.canon), SourceNote: note(srow.canon), canonKey: srow.key})
			res.repairSrc = append(res.repairSrc, srow.raw)
		}
	}
	return res, nil
}

// readSource reads the rows of sourceQuery (via COPY), indexed by canonical
// key, and the keys in the order read.
func (v *verifier) readSource(ctx context.Context, sourceQuery string) (map[string]row, []string, error) {
	source := map[string]row{}
	var order []string
	sr := &sourceReader{v: v, rows: source, order: &order}
	sr.lines.Line = sr.line
	if err := v.src.CopyOut(ctx, sourceQuery, &sr.lines); err != nil {
		if sr.err != nil {
			return nil, nil, sr.err
		}
		return nil, nil, fmt.Errorf("verify %s: %w", v.t.Source.Name, err)
	}
	return source, order, nil
}

// CompareKeys compares the rows with the given keys (source text form) on
// both sides, for checking just the rows that changed.
func CompareKeys(ctx context.Context, src *postgres.Source, tgt *mysql.Target, t *plan.Table, keys [][]string) ([]Diff, error) {
	if len(keys) == 0 {
		return nil, nil
	}
	v := newVerifier(src, tgt, t)
	var diffs []Diff
	const batch = 1000
	for start := 0; start < len(keys); start += batch {
		part := keys[start:min(start+batch, len(keys))]
		q, args, err := t.TargetKeysQuery(part)
		if err != nil {
			return nil, err
		}
		res, err := v.compare(ctx, t.KeyFilterSource(part), q, args)
		if err != nil {
			return nil, err
		}
		if len(res.diffs) > 0 {
			index := v.keyIndex(part)
			for _, d := range res.diffs {
				d.Index = -1
				if i, ok := index[string(d.canonKey)]; ok {
					d.Index = start + i
				}
				diffs = append(diffs, d)
			}
		}
	}
	return diffs, nil
}

// keyIndex maps the canonical encoding of each key (source text form) to
// its position in keys. A key that cannot be encoded is left out.
func (v *verifier) keyIndex(keys [][]string) map[string]int {
	index := make(map[string]int, len(keys))
	vals := make([][]byte, len(v.t.Key))
	for i, key := range keys {
		ok := len(key) == len(vals)
		for j := 0; ok && j < len(key); j++ {
			vals[j] = []byte(key[j])
			if conv := v.t.Columns[v.t.Key[j]].Convert; conv != nil {
				out, err := conv(vals[j])
				ok = err == nil
				vals[j] = out
			}
		}
		if !ok {
			continue
		}
		if canon, err := canonical.HashRow(nil, v.keyK, vals); err == nil {
			index[string(canon)] = i
		}
	}
	return index
}

// encode canonicalises one row; side names it in errors. A target value
// that cannot be read as its kind (a 2 in a BOOLEAN column, written there
// by hand) makes the row one that equals no source row, not an error: it is
// a difference verify must show.
func (v *verifier) encode(fields [][]byte, side string) (row, error) {
	canon, err := canonical.HashRow(nil, v.kinds, fields)
	if err != nil && side == "target" {
		canon, err = targetUnreadable(err), nil
	}
	if err != nil {
		return row{}, fmt.Errorf("verify %s: a %s value cannot be compared: %w", v.t.Source.Name, side, err)
	}
	keyVals := make([][]byte, len(v.t.Key))
	for i, k := range v.t.Key {
		keyVals[i] = fields[k]
	}
	key, err := canonical.HashRow(nil, v.keyK, keyVals)
	if err != nil && side == "target" { // an extra row, told apart by its values
		key, err = fmt.Appendf(targetUnreadable(err), " (key %q)", keyVals), nil
	}
	if err != nil {
		return row{}, fmt.Errorf("verify %s: a %s key cannot be compared: %w", v.t.Source.Name, side, err)
	}
	return row{canon: canon, key: key}, nil
}

// targetKey copies the key values of a target row for a later DELETE.
func (v *verifier) targetKey(fields [][]byte) []any {
	out := make([]any, len(v.t.Key))
	for i, k := range v.t.Key {
		out[i] = string(fields[k])
	}
	return out
}

// sourceReader receives the source's COPY output, converts each row as the
// copy would, and indexes it by canonical key.
type sourceReader struct {
	v     *verifier
	rows  map[string]row
	order *[]string
	lines codec.LineWriter
	split codec.Splitter
	err   error
}

func (s *sourceReader) line(line []byte) error {
	if err := s.parse(line); err != nil {
		s.err = err
		return err
	}
	return nil
}

func (s *sourceReader) parse(line []byte) error {
	fields, err := s.split.Split(line)
	if err != nil {
		return err
	}
	raw := make([]string, len(s.v.t.Key))
	for i, k := range s.v.t.Key {
		raw[i] = string(fields[k])
	}
	conv := make([][]byte, len(fields))
	var unconvertible string
	keyUnconvertible := false
	for i, c := range s.v.t.Columns {
		conv[i] = fields[i]
		if fields[i] != nil && c.Convert != nil {
			out, err := c.Convert(fields[i])
			if err != nil {
				// A value the target cannot hold (a row copy rejected): the
				// row can never be equal, so it shows as a difference.
				unconvertible = fmt.Sprintf("column %s: %v", c.Target, err)
				keyUnconvertible = keyUnconvertible || slices.Contains(s.v.t.Key, i)
				out = nil
			}
			conv[i] = out
		}
	}
	r, err := s.v.encode(conv, "source")
	if err != nil {
		return err
	}
	if unconvertible != "" {
		r.canon = append([]byte{unconvertibleMark}, "the target cannot hold this row's "+unconvertible...)
	}
	if keyUnconvertible {
		// Its key has no target form (NaN in a float key): keyed by its
		// source text, so such rows stay apart instead of sharing a NULL key.
		r.key = append([]byte{unconvertibleMark}, strings.Join(raw, ",")...)
	}
	r.raw = raw
	k := string(r.key)
	s.rows[k] = r
	*s.order = append(*s.order, k)
	return nil
}

// unconvertibleMark starts the canonical form of a source row the target
// cannot hold; no HashRow encoding starts with it (a length prefix's first
// byte is 0 for any value under 16 MiB).
const unconvertibleMark = 0xff

// targetUnreadable is the canonical form of a target row holding a value
// that cannot be read as its column's kind: it starts with
// unconvertibleMark, so it equals no source row's form.
func targetUnreadable(err error) []byte {
	return append([]byte{unconvertibleMark}, "the target holds a value that cannot be read as the source's type: "+err.Error()...)
}

// display is a row's values as text, or nil for a row that has none to
// show (see note).
func display(canon []byte) []string {
	if len(canon) > 0 && canon[0] == unconvertibleMark {
		return nil
	}
	vals, err := canonical.SplitRow(canon)
	if err != nil {
		return []string{"?"}
	}
	out := make([]string, len(vals))
	for i, v := range vals {
		out[i] = canonical.Format(v)
	}
	return out
}

// note says why a row has no values to show: the target cannot hold it,
// or holds what cannot be read as the source's type; "" otherwise.
func note(canon []byte) string {
	if len(canon) > 0 && canon[0] == unconvertibleMark {
		return string(canon[1:])
	}
	return ""
}

func formatKey(canon []byte) string {
	if n := note(canon); n != "" {
		return n // a key with no target form: its source text
	}
	return strings.Join(display(canon), ",")
}

// repair deletes the changed and extra rows from the target and copies the
// changed and missing rows, and extra rows the source holds by now, again
// from the source, in one transaction.
func repair(ctx context.Context, src *postgres.Source, tgt *mysql.Target, t *plan.Table, res *TableResult) (int64, error) {
	if res.Changed+res.Missing+res.Extra > maxRepairKeys {
		return 0, fmt.Errorf("verify %s: %d differing rows are too many to repair row by row; drop the target table and copy it again",
			t.Source.Name, res.Changed+res.Missing+res.Extra)
	}
	tx, err := tgt.DB.BeginTx(ctx, nil)
	if err != nil {
		return 0, fmt.Errorf("repair %s: %w", t.Target, err)
	}
	defer tx.Rollback()
	const batch = 500
	for start := 0; start < len(res.repairTarget); start += batch {
		keys := res.repairTarget[start:min(start+batch, len(res.repairTarget))]
		var args []any
		for _, k := range keys {
			args = append(args, k...)
		}
		if _, err := tx.ExecContext(ctx, t.DeleteKeysTarget(len(keys)), args...); err != nil {
			return 0, fmt.Errorf("repair %s: delete differing rows: %w", t.Target, err)
		}
	}
	back, err := extrasOnSourceNow(ctx, src, tgt, t, res.extraRanges)
	if err != nil {
		return 0, err
	}
	copyKeys := append(res.repairSource[:len(res.repairSource):len(res.repairSource)], back...)
	var repaired int64
	for start := 0; start < len(copyKeys); start += batch {
		keys := copyKeys[start:min(start+batch, len(copyKeys))]
		// a row the target cannot hold stays missing, and is reported so
		n, err := copier.CopyKeys(ctx, src, tx, t, keys, true)
		if err != nil {
			return 0, err
		}
		repaired += n
	}
	if err := tx.Commit(); err != nil {
		return 0, fmt.Errorf("repair %s: commit: %w", t.Target, err)
	}
	// rows rewritten from the source plus extra rows deleted for good
	return repaired + res.Extra - int64(len(back)), nil
}

// extrasOnSourceNow reads the ranges holding extra rows from the source
// again and returns the keys (source text) of those extra rows the source
// holds now. Why: an extra row may be one the source gained after verify
// read it, which a running sync applied to the target before verify read
// that; deleting it would lose it for good, as the sync has passed it.
// Called after the repair deleted the rows, so their locks hold the sync's
// later writes of them until the rows copied back are committed.
func extrasOnSourceNow(ctx context.Context, src *postgres.Source, tgt *mysql.Target, t *plan.Table, sets []extraSet) ([][]string, error) {
	v := newVerifier(src, tgt, t)
	var back [][]string
	for _, set := range sets {
		rows, _, err := v.readSource(ctx, t.SourceQuery(set.r))
		if err != nil {
			return nil, err
		}
		for _, k := range set.keys {
			if r, ok := rows[k]; ok {
				back = append(back, r.raw)
			}
		}
	}
	return back, nil
}
