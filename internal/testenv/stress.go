package testenv

import (
	"context"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"
)

// BusySessions keeps n sessions on the source at url running a query (a
// pg_sleep of up to 30 s), as a rush of users would, to raise the stress
// alert. The returned stop ends them and waits; it runs at the test's end
// too.
func BusySessions(t testing.TB, url string, n int) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := pgx.Connect(ctx, url)
			if err != nil {
				if ctx.Err() == nil {
					t.Errorf("stress session: %v", err)
				}
				return
			}
			defer c.Close(context.Background())
			c.Exec(ctx, "SELECT pg_sleep(30)") // ends early when ctx is cancelled
		}()
	}
	var once sync.Once
	stop = func() { once.Do(func() { cancel(); wg.Wait() }) }
	t.Cleanup(stop)
	return stop
}
