// Package globallimit shares a rate_limit across weir replicas through a store (Redis), off the
// request path: each replica takes tokens from the shared bucket in leases and spends them locally.
//
// A lease is sized from the replica's own recent traffic for the key (lease_window of it, at most a
// tenth of burst, at least one token), and the next one is fetched in the background when half of
// the current one is spent. So at a steady load a replica asks the store about once per lease, not
// once per request. A request waits for the store only when its key's lease is empty (a new key, a
// key that was quiet, or a limit so low that leases are single tokens), and then for one round trip,
// bounded by the store's timeout.
//
// Accuracy: the store's bucket is the only source of tokens, so the replicas together never admit
// more than burst + rate × time. They may admit less by the tokens leased and not yet spent, at most
// one lease per replica and key.
package globallimit

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"hash/maphash"
	"math"
	"sync"
	"time"

	"github.com/weir-gateway/weir/filters"
)

// Store holds the shared buckets.
type Store interface {
	// Lease takes up to want tokens from key's bucket (perSecond on average, burst at most; a new
	// bucket starts full). It returns how many it got, the bucket's tokens left, and when granted <
	// want, how long until the rest would be there. It waits at most the store's timeout.
	Lease(key string, perSecond float64, burst, want int) (granted int, remaining int64, wait time.Duration, err error)
	// Up is false while the store is known to be unreachable: callers do not try it then.
	Up() bool
	// Replicas is how many replicas use the store, as last seen; 0 if unknown.
	Replicas() int
	// Timeout bounds one Lease: a request waits for leases at most this long in all.
	Timeout() time.Duration
}

// Limiter is one rate_limit's shared buckets as a replica sees them: a bounded table of leases.
type Limiter struct {
	store     Store
	prefix    string // of the store keys: "rl:" + the limit's ID + ":" (the store adds its own prefix)
	perSecond float64
	burst     int
	window    time.Duration
	minLease  int
	maxLease  int
	leaseTTL  time.Duration
	leases    filters.Counter
	perShard  int
	seed      [2]maphash.Seed
	shards    [shards]shard
	overflow  *lease // the key of requests that find the table full
}

const shards = 16

type shard struct {
	mu     sync.Mutex
	leases map[[16]byte]*lease
	_      [40]byte
}

// lease is one key's tokens taken from the store and not yet spent.
type lease struct {
	key string // in the store

	mu        sync.Mutex
	tokens    int
	fetchedAt int64 // unix ns; tokens older than leaseTTL are given up
	remaining int64 // the store's tokens left at the last fetch
	fetching  chan struct{}
	failed    bool  // the last fetch failed
	notBefore int64 // unix ns: the store had too few tokens; no fetch before then
	seen      int   // requests since the last fetch began
	since     int64 // unix ns of the last fetch's start
	want      int   // the last lease asked for
	lastUse   int64
}

// New builds a limiter for spec on store.
func New(spec filters.SharedLimitSpec, store Store) *Limiter {
	l := &Limiter{store: store, prefix: "rl:" + spec.ID + ":", perSecond: spec.PerSecond, burst: spec.Burst,
		window: spec.LeaseWindow, leases: spec.Leases, perShard: max(spec.MaxKeys/shards, 1),
		seed: [2]maphash.Seed{maphash.MakeSeed(), maphash.MakeSeed()}}
	// A lease holds at most a tenth of burst or a window of the whole rate, whichever is more: what a
	// replica may hold unspent. It holds at least 10 tokens where that fits, so that even a replica
	// with a small share asks the store at most once per 10 requests.
	l.maxLease = max(spec.Burst/10, int(math.Ceil(spec.PerSecond*spec.LeaseWindow.Seconds())), 1)
	l.minLease = min(10, l.maxLease)
	l.leaseTTL = max(time.Second, 10*spec.LeaseWindow)
	if l.leases == nil {
		l.leases = filters.NopCounter{}
	}
	for i := range l.shards {
		l.shards[i].leases = make(map[[16]byte]*lease)
	}
	l.overflow = &lease{key: l.prefix + "overflow"}
	return l
}

// Take implements filters.SharedLimiter.
func (l *Limiter) Take(key []byte, now time.Time) filters.SharedDecision {
	ns := now.UnixNano()
	e := l.lease(key, ns)
	e.mu.Lock()
	e.seen++
	e.lastUse = ns
	if e.tokens > 0 && ns-e.fetchedAt > int64(l.leaseTTL) {
		// Taken from the store long ago: the bucket has refilled since, and spending them now on top
		// of a fresh burst would let the key through faster than its limit.
		e.tokens = 0
	}
	var deadline int64 // set when the request first waits
	for round := 0; ; round++ {
		if e.tokens > 0 {
			e.tokens--
			if e.fetching == nil && e.want > 1 && e.tokens <= e.want/2 && ns >= e.notBefore && l.store.Up() {
				l.fetch(e, ns) // prefetch: the next lease arrives before this one runs out
			}
			d := filters.SharedDecision{Verdict: filters.SharedAllowed, Remaining: e.remaining + int64(e.tokens)}
			e.mu.Unlock()
			return d
		}
		if ns < e.notBefore {
			wait := time.Duration(e.notBefore - ns)
			e.mu.Unlock()
			return filters.SharedDecision{Verdict: filters.SharedRefused, RetryAfter: wait}
		}
		if !l.store.Up() || (round > 0 && e.failed) {
			e.mu.Unlock()
			return filters.SharedDecision{Verdict: filters.SharedUnavailable, Replicas: l.store.Replicas()}
		}
		if deadline == 0 {
			deadline = ns + int64(l.store.Timeout())
		} else if ns >= deadline {
			// Leases came and went to other requests for as long as one may wait: the key is busier
			// than its leases.
			e.mu.Unlock()
			return filters.SharedDecision{Verdict: filters.SharedRefused, RetryAfter: time.Second}
		}
		if e.fetching == nil {
			l.fetch(e, ns)
		}
		done := e.fetching
		e.mu.Unlock()
		if round == 0 {
			<-done // the fetch ends within the store's timeout
		} else if !waitUntil(done, deadline) {
			return filters.SharedDecision{Verdict: filters.SharedRefused, RetryAfter: time.Second}
		}
		e.mu.Lock()
		ns = time.Now().UnixNano()
	}
}

// waitUntil waits for done until the deadline (unix ns) and reports whether done came first.
func waitUntil(done <-chan struct{}, deadline int64) bool {
	t := time.NewTimer(time.Until(time.Unix(0, deadline)))
	defer t.Stop()
	select {
	case <-done:
		return true
	case <-t.C:
		return false
	}
}

// fetch starts a lease for e in the background; e.mu is held.
func (l *Limiter) fetch(e *lease, ns int64) {
	want := l.minLease
	if elapsed := ns - e.since; e.since != 0 && elapsed > 0 {
		// The key's recent rate here, times the window: what this replica will spend in that time.
		perSecond := float64(e.seen) / (float64(elapsed) / 1e9)
		want = int(math.Ceil(perSecond * l.window.Seconds()))
	}
	want = min(max(want, l.minLease), l.maxLease)
	l.leases.Inc()
	e.want, e.seen, e.since = want, 0, ns
	done := make(chan struct{})
	e.fetching = done
	go func() {
		granted, remaining, wait, err := l.store.Lease(e.key, l.perSecond, l.burst, want)
		e.mu.Lock()
		e.failed = err != nil
		if err == nil {
			e.tokens += granted
			e.fetchedAt = time.Now().UnixNano()
			e.remaining = remaining
			if granted < want {
				e.notBefore = time.Now().Add(wait).UnixNano()
			}
		}
		e.fetching = nil
		e.mu.Unlock()
		close(done)
	}()
}

// lease finds key's lease, making it if there is room.
func (l *Limiter) lease(key []byte, ns int64) *lease {
	var id [16]byte
	binary.LittleEndian.PutUint64(id[:8], maphash.Bytes(l.seed[0], key))
	binary.LittleEndian.PutUint64(id[8:], maphash.Bytes(l.seed[1], key))
	s := &l.shards[id[0]%shards]
	s.mu.Lock()
	defer s.mu.Unlock()
	if e, ok := s.leases[id]; ok {
		return e
	}
	if len(s.leases) >= l.perShard {
		l.sweep(s, ns)
		if len(s.leases) >= l.perShard {
			return l.overflow
		}
	}
	e := &lease{key: l.storeKey(key)}
	s.leases[id] = e
	return e
}

// idleAfter is how long an unused lease is kept when its shard is full: its leftover tokens are
// given up (the store's bucket refills meanwhile anyway).
const idleAfter = 10 * time.Second

func (l *Limiter) sweep(s *shard, ns int64) {
	for id, e := range s.leases {
		if e.mu.TryLock() {
			if e.fetching == nil && ns-e.lastUse > int64(idleAfter) {
				delete(s.leases, id)
			}
			e.mu.Unlock()
		}
	}
}

// storeKey names key's bucket in the store. Keys can be credentials (an API key header): the store
// sees a SHA-256 digest of them, the same on every replica.
func (l *Limiter) storeKey(key []byte) string {
	if len(key) == 0 {
		return l.prefix + "-" // the route's bucket, or requests without the key
	}
	sum := sha256.Sum256(key)
	return l.prefix + hex.EncodeToString(sum[:16])
}
