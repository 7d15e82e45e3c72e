// Package publish spreads the source's change stream over JetStream
// partitions so several appliers (processes, possibly on other machines)
// share the work: the publisher reads pgoutput, copies the tables between
// DBLog watermarks, and publishes every row change (and every copied row) to
// the partition its key hashes to, confirming the slot only once JetStream
// has stored them; each applier applies one partition exactly once, with its
// progress stored in the target in the same transaction as the rows.
package publish

import (
	"errors"
	"fmt"
	"hash/fnv"
	"strconv"

	"github.com/sluice-db/sluice/internal/events"
)

// FormatVersion of the partition messages.
const FormatVersion = 1

// Message kinds.
const (
	KindRows = "rows" // row changes and copied rows of one partition, in order
	KindMark = "mark" // a marker broadcast to every partition at one position
)

// RowsHeader carries the number of rows of a rows message, so an applier
// sizes its batches without decoding.
const RowsHeader = "Sluice-Rows"

// Row operations.
const (
	OpUpsert = "upsert" // Cols is the whole row
	OpDelete = "delete" // Cols holds the key columns
	OpPatch  = "patch"  // Cols holds the columns sent; the others are unchanged (TOAST)
)

// Marks.
const (
	MarkCopied = "copied:" // + target table: every copied row of the table is before this mark
	MarkFence  = "fence:"  // + id: a cutover fence; the source took no writes after it
	MarkProbe  = "probe:"  // + id: marks the end of the stream at a moment (cutover waits for it)
)

// Message is one message of a partition, JSON-encoded: a mark, or a run of
// rows (several changes per JetStream message: the broker's cost is per
// message). Values are the source's text form (pgoutput and COPY print the
// same), converted by the applier through the plan exactly like the
// log-based sync does.
type Message struct {
	V     int                `json:"v"`
	Kind  string             `json:"k"`
	Rows  []*Message         `json:"rows,omitempty"` // KindRows: the rows, each with t, op, c, copy, lsn, n
	Table string             `json:"t,omitempty"`    // source "schema.name"
	Op    string             `json:"op,omitempty"`
	Cols  map[string]*string `json:"c,omitempty"` // source column → text (nil: NULL)
	Copy  bool               `json:"copy,omitempty"`
	Mark  string             `json:"mark,omitempty"`
	// Position in the source's commit order: the commit LSN of the
	// transaction and the message's number within it. Strictly increasing
	// within a partition, and the same for a replayed change, so an applier
	// skips what it has applied even if the publisher publishes it again.
	LSN   uint64 `json:"lsn"`
	N     uint32 `json:"n"`
	Parts int    `json:"parts,omitempty"` // the number of partitions it was published for
}

// Pos is a position in the source's commit order.
type Pos struct {
	LSN uint64
	N   uint32
}

// Less orders positions.
func (p Pos) Less(q Pos) bool { return p.LSN < q.LSN || p.LSN == q.LSN && p.N < q.N }

func (p Pos) String() string { return fmt.Sprintf("%X/%X:%d", p.LSN>>32, uint32(p.LSN), p.N) }

// Pos returns the message's position.
func (m *Message) Pos() Pos { return Pos{m.LSN, m.N} }

// Decode reads a message (with a scanner: encoding/json's reflection costs
// more than the rest of applying a change).
func Decode(data []byte) (*Message, error) {
	m, err := decodeOne(data, true)
	if err != nil {
		return nil, fmt.Errorf("partition message is not valid: %w", err)
	}
	if m.V != FormatVersion {
		return nil, fmt.Errorf("partition message format %d is not supported (this sluice reads %d)", m.V, FormatVersion)
	}
	return m, nil
}

func decodeOne(data []byte, top bool) (*Message, error) {
	m := &Message{}
	num := func(raw []byte, bits int) (uint64, error) { return strconv.ParseUint(string(raw), 10, bits) }
	str := func(raw []byte) (string, error) { return events.UnquoteString(raw) }
	err := events.ScanObject(data, func(name, raw []byte) error {
		var err error
		var n uint64
		switch string(name) {
		case "v":
			n, err = num(raw, 16)
			m.V = int(n)
		case "k":
			m.Kind, err = str(raw)
		case "t":
			m.Table, err = str(raw)
		case "op":
			m.Op, err = str(raw)
		case "mark":
			m.Mark, err = str(raw)
		case "copy":
			m.Copy = string(raw) == "true"
		case "lsn":
			m.LSN, err = num(raw, 64)
		case "n":
			n, err = num(raw, 32)
			m.N = uint32(n)
		case "parts":
			n, err = num(raw, 31)
			m.Parts = int(n)
		case "c":
			m.Cols = map[string]*string{}
			err = events.ScanObject(raw, func(col, v []byte) error {
				if string(v) == "null" {
					m.Cols[string(col)] = nil
					return nil
				}
				s, err := str(v)
				m.Cols[string(col)] = &s
				return err
			})
		case "rows":
			if !top {
				return errors.New("rows inside a row")
			}
			err = events.ScanArray(raw, func(item []byte) error {
				r, err := decodeOne(item, false)
				m.Rows = append(m.Rows, r)
				return err
			})
		}
		if err != nil {
			return fmt.Errorf("field %s: %w", name, err)
		}
		return nil
	})
	return m, err
}

// Partition returns the partition of a row: FNV-1a of the table and the key
// text, modulo n. Give the key in one form per row (see partitionKey).
func Partition(table string, key []string, n int) int {
	if n <= 1 {
		return 0
	}
	h := fnv.New64a()
	h.Write([]byte(table))
	for _, k := range key {
		h.Write([]byte{0})
		h.Write([]byte(k))
	}
	return int(h.Sum64() % uint64(n))
}
