package globallimit_test

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/weir-gateway/weir/filters"
	"github.com/weir-gateway/weir/filters/globallimit"
	"github.com/weir-gateway/weir/redisconn"
	"github.com/weir-gateway/weir/redisconn/redistest"
)

func connect(t testing.TB, srv *redistest.Server) *redisconn.Conn {
	t.Helper()
	c := redisconn.New(redisconn.Settings{Addrs: []string{srv.Addr}, Password: srv.Password, Timeout: 200 * time.Millisecond,
		RetryInterval: 50 * time.Millisecond, KeyPrefix: "test:"}, redisconn.Metrics{}, zerolog.Nop())
	c.Start()
	t.Cleanup(c.Close)
	deadline := time.Now().Add(5 * time.Second)
	for !c.Up() {
		if time.Now().After(deadline) {
			t.Fatal("redis did not come up")
		}
		time.Sleep(5 * time.Millisecond)
	}
	return c
}

func TestLease_TakesWhatTheBucketHoldsAndSaysWhenTheRestComes(t *testing.T) {
	c := connect(t, redistest.Start(t, ""))
	granted, remaining, wait, err := c.Lease("k", 10, 5, 3)
	if err != nil || granted != 3 || remaining != 2 || wait != 0 {
		t.Fatalf("first lease of 3 from a full bucket of 5: granted %d remaining %d wait %v err %v", granted, remaining, wait, err)
	}
	granted, remaining, wait, err = c.Lease("k", 10, 5, 5)
	// 2 left (plus a few ms of refill, under one token); 3 more at 10/s take about 300 ms.
	if err != nil || granted != 2 || remaining != 0 || wait < 250*time.Millisecond || wait > 300*time.Millisecond {
		t.Fatalf("second lease of 5: granted %d remaining %d wait %v err %v; want 2, 0 and about 300ms", granted, remaining, wait, err)
	}
	if granted, _, _, _ := c.Lease("other", 10, 5, 5); granted != 5 {
		t.Errorf("another key's bucket should start full, granted %d", granted)
	}
}

// One replica, many concurrent requests: what is admitted is the bucket's output.
func TestLimiter_AdmitsBurstPlusRateTimesTime(t *testing.T) {
	c := connect(t, redistest.Start(t, ""))
	for _, tc := range []struct {
		perSecond float64
		burst     int
	}{{200, 100}, {5, 5}} {
		l := globallimit.New(filters.SharedLimitSpec{ID: fmt.Sprintf("r%g-b%d", tc.perSecond, tc.burst), PerSecond: tc.perSecond, Burst: tc.burst, MaxKeys: 100,
			LeaseWindow: 100 * time.Millisecond}, c)
		var admitted atomic.Int64
		start := time.Now()
		const run = 2 * time.Second
		var wg sync.WaitGroup
		for range 16 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for time.Since(start) < run {
					switch l.Take([]byte("client"), time.Now()).Verdict {
					case filters.SharedAllowed:
						admitted.Add(1)
					case filters.SharedUnavailable:
						t.Error("redis reported unavailable")
						return
					}
					time.Sleep(time.Millisecond)
				}
			}()
		}
		wg.Wait()
		want := float64(tc.burst) + tc.perSecond*time.Since(start).Seconds()
		if got := float64(admitted.Load()); got > want*1.05+1 || got < want*0.95-1 {
			t.Errorf("rate %g burst %d for %v: admitted %v, want %.0f ±5%%", tc.perSecond, tc.burst, run, got, want)
		}
	}
}

// BenchmarkTake is a global limit's cost per request at a steady load under the limit: leases are
// fetched in the background, one per hundreds of requests here.
func BenchmarkTake(b *testing.B) {
	srv := redistest.Start(b, "")
	c := redisconn.New(redisconn.Settings{Addrs: []string{srv.Addr}, Timeout: time.Second, RetryInterval: 50 * time.Millisecond,
		KeyPrefix: "bench:"}, redisconn.Metrics{}, zerolog.Nop())
	c.Start()
	b.Cleanup(c.Close)
	for !c.Up() {
		time.Sleep(5 * time.Millisecond)
	}
	l := globallimit.New(filters.SharedLimitSpec{ID: "bench", PerSecond: 1e9, Burst: 1e9, MaxKeys: 100,
		LeaseWindow: 100 * time.Millisecond}, c)
	key := []byte{192, 0, 2, 7}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if l.Take(key, time.Now()).Verdict != filters.SharedAllowed {
				b.Error("refused under the limit")
				return
			}
		}
	})
}
