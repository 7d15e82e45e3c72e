package syncer

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/sluice-db/sluice/internal/mysql"
	"github.com/sluice-db/sluice/internal/plan"
)

// A throttle raised while the next chunk waits for a free slot (the chunks
// before it still being applied) holds that chunk back too: the wait can be
// long, and the source may have come under stress meanwhile.
func TestThrottleHoldsAChunkWaitingForItsSlot(t *testing.T) {
	tbl := &table{plan: &plan.Table{Target: "items"}, pending: []mysql.StoredChunk{{No: 1}}}
	s := &Syncer{log: slog.New(slog.NewTextHandler(io.Discard, nil)), tables: []*table{tbl},
		windows: map[string]*window{}, inflight: make(chan struct{}, 1)}
	s.inflight <- struct{}{} // the one slot: a chunk read and not yet applied
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		defer func() {
			if r := recover(); r != nil { // this Syncer has no source to read
				done <- fmt.Errorf("the chunk was read: %v", r)
			}
		}()
		done <- s.copyChunks(ctx)
	}()
	time.Sleep(100 * time.Millisecond) // copyChunks waits for the slot
	s.Throttle("test", "the source is busy")
	<-s.inflight // the chunk before is applied: the slot is free
	time.Sleep(500 * time.Millisecond)
	s.windowsMu.Lock()
	opened := len(s.windows)
	s.windowsMu.Unlock()
	if opened != 0 {
		t.Fatalf("a chunk was read while the copy was throttled (%d windows opened)", opened)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
