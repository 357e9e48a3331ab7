package upstream

import (
	"fmt"
	"testing"
	"time"
)

func testPool(t *testing.T, kind BalancerKind, hashKey HashKey, n int) *Pool {
	t.Helper()
	s := Settings{Name: "p", Balancer: kind, HashKey: hashKey, Timeout: time.Second, MaxConns: 1}
	for i := 0; i < n; i++ {
		spec, err := ParseTarget(fmt.Sprintf("http://10.0.0.%d:80", i+1))
		if err != nil {
			t.Fatal(err)
		}
		s.Targets = append(s.Targets, spec)
	}
	return NewPool(s, func(string) *Target { return nil })
}

func TestBalancers_SkipTargetsOutOfRotation(t *testing.T) {
	for _, kind := range []BalancerKind{RoundRobin, Weighted, LeastRequest, Hash, Random} {
		t.Run(kind.String(), func(t *testing.T) {
			p := testPool(t, kind, HashKey{Source: HashPath}, 3)
			p.Targets[1].health.ejectedUntil.Store(time.Now().Add(time.Hour).UnixNano())
			for i := 0; i < 300; i++ {
				sel := selection{targets: p.Targets, now: time.Now().UnixNano()}
				if got := p.balancer.pick([]byte(fmt.Sprint("/k", i)), &sel); got == 1 || got < 0 {
					t.Fatalf("pick %d chose %d; target 1 is ejected", i, got)
				}
			}
		})
	}
}

func TestHashRing_AnUnavailableTargetMovesOnlyItsOwnKeys(t *testing.T) {
	p := testPool(t, Hash, HashKey{Source: HashPath}, 4)
	owner := func() []int {
		out := make([]int, 1000)
		for k := range out {
			sel := selection{targets: p.Targets, now: time.Now().UnixNano()}
			out[k] = p.balancer.pick([]byte(fmt.Sprint("/user/", k)), &sel)
		}
		return out
	}
	before := owner()
	p.Targets[2].health.down.Store(true)
	after := owner()
	moved := 0
	for k := range before {
		if before[k] != 2 && after[k] != before[k] {
			t.Fatalf("key %d moved from %d to %d although its target is healthy", k, before[k], after[k])
		}
		if before[k] == 2 {
			moved++
			if after[k] == 2 {
				t.Fatalf("key %d still goes to the unhealthy target", k)
			}
		}
	}
	if moved < 150 {
		t.Errorf("target 2 owned only %d of 1000 keys; the ring is uneven", moved)
	}
}

func TestRetryBudget_AllowsRatioOfRecentRequestsPlusMinimum(t *testing.T) {
	var b retryBudget
	now := int64(1_000)
	for i := 0; i < 100; i++ {
		b.request(now)
	}
	allowed := 0
	for i := 0; i < 100; i++ {
		if b.allow(now, 0.2, 1) {
			allowed++
		}
	}
	// 20% of 100 requests, plus 1 per second over the 10-second window.
	if allowed != 30 {
		t.Fatalf("allowed %d retries, want 30", allowed)
	}
	// Ten seconds later the old requests have left the window.
	if b.allow(now+10, 0.2, 0) {
		t.Fatal("a retry was allowed with no recent requests and no minimum")
	}
}

func TestRetryBudget_WindowSlidesSecondBySecond(t *testing.T) {
	var b retryBudget
	// A steady 10 requests a second: at any moment the window holds the last 10 seconds, 100 requests,
	// so 20% allows 20 retries, never 0 at a window boundary.
	for s := int64(1); s <= 25; s++ {
		for i := 0; i < 10; i++ {
			b.request(s)
		}
		if s < 10 {
			continue
		}
		allowed := 0
		for b.allow(s, 0.2, 0) {
			allowed++
		}
		// Retries taken count from now on; clear them so each second is measured alone.
		b.retries = [budgetWindow]int{}
		if allowed != 20 {
			t.Fatalf("second %d: %d retries allowed, want 20 (a sliding window of 100 requests)", s, allowed)
		}
	}
}
