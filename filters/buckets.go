package filters

import (
	"encoding/binary"
	"hash/maphash"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// bucketTable holds one token bucket per key, bounded in memory whatever keys clients send.
//
// It is sharded so that concurrent requests rarely contend on a lock. Each shard holds at most its
// share of max_keys. A full shard first drops its idle entries: a bucket that has refilled to its
// burst is indistinguishable from a new one, so dropping it changes nothing for its client. If the
// shard is still full, the new key shares the overflow bucket; active keys are never evicted, so a
// flood of new keys cannot reset a legitimate client's bucket.
type bucketTable struct {
	limit    rate.Limit
	burst    int
	seed     maphash.Seed
	seed2    maphash.Seed // for digestKey's second half
	perShard int
	shards   []bucketShard
	overflow *rate.Limiter
}

type bucketShard struct {
	mu        sync.Mutex
	buckets   map[string]*rate.Limiter
	lastSweep time.Time
	_         [40]byte // keep neighbouring shards' locks off one cache line
}

const maxShards = 64

// sweepEvery spaces out sweeps of a full shard: while an attacker keeps a shard full of active keys,
// each new key would otherwise scan the whole shard.
const sweepEvery = time.Second

func newBucketTable(limit rate.Limit, burst, maxKeys int) *bucketTable {
	// At least 256 keys per shard: with fewer, uneven hashing fills some shards while others are empty,
	// and a small table would turn away keys it has room for.
	shards := min(max(maxKeys/256, 1), maxShards)
	t := &bucketTable{
		limit:    limit,
		burst:    burst,
		seed:     maphash.MakeSeed(),
		seed2:    maphash.MakeSeed(),
		perShard: maxKeys / shards,
		shards:   make([]bucketShard, shards),
		overflow: rate.NewLimiter(limit, burst),
	}
	for i := range t.shards {
		t.shards[i].buckets = make(map[string]*rate.Limiter)
	}
	return t
}

// get returns key's bucket, creating it if there is room. Looking up an existing key does not
// allocate; only a new key's entry does. Keys are at most 16 bytes (see digestKey), so max_keys bounds
// the table's memory, not just its length.
func (t *bucketTable) get(key []byte, now time.Time) *rate.Limiter {
	s := &t.shards[maphash.Bytes(t.seed, key)%uint64(len(t.shards))]
	s.mu.Lock()
	defer s.mu.Unlock()
	if b, ok := s.buckets[string(key)]; ok {
		return b
	}
	if len(s.buckets) >= t.perShard && now.Sub(s.lastSweep) >= sweepEvery {
		s.lastSweep = now
		for k, b := range s.buckets {
			if b.TokensAt(now) >= float64(t.burst) {
				delete(s.buckets, k)
			}
		}
	}
	if len(s.buckets) >= t.perShard {
		return t.overflow
	}
	b := rate.NewLimiter(t.limit, t.burst) // starts full
	s.buckets[string(key)] = b
	return b
}

// digestKey stands a 128-bit digest in for a client-chosen key (a header value of up to the header size
// limit), so that the table holds 16 bytes per key whatever clients send. The digest is keyed with the
// table's random seeds: a client cannot make keys collide on purpose.
func (t *bucketTable) digestKey(dst, key []byte) []byte {
	if len(key) == 0 {
		return dst
	}
	dst = binary.LittleEndian.AppendUint64(dst, maphash.Bytes(t.seed, key))
	return binary.LittleEndian.AppendUint64(dst, maphash.Bytes(t.seed2, key))
}

// len counts the keys held, for tests and metrics.
func (t *bucketTable) len() int {
	n := 0
	for i := range t.shards {
		s := &t.shards[i]
		s.mu.Lock()
		n += len(s.buckets)
		s.mu.Unlock()
	}
	return n
}

// ClientLimiter is a token bucket per client address (IPv6 by /64), bounded like rate_limit's table,
// for filters that limit something other than requests (basic_auth's failed checks).
type ClientLimiter struct{ t *bucketTable }

// NewClientLimiter allows perSecond events per client on average, burst at once, for up to maxKeys
// clients tracked.
func NewClientLimiter(perSecond float64, burst, maxKeys int) *ClientLimiter {
	return &ClientLimiter{t: newBucketTable(rate.Limit(perSecond), burst, maxKeys)}
}

// Allowed reports whether x's client has a token left, without taking one.
func (l *ClientLimiter) Allowed(x *Exchange, now time.Time) bool {
	var buf [16]byte
	return l.t.get(clientKey(buf[:0], x), now).TokensAt(now) >= 1
}

// Take takes a token from x's client's bucket.
func (l *ClientLimiter) Take(x *Exchange, now time.Time) {
	var buf [16]byte
	l.t.get(clientKey(buf[:0], x), now).AllowN(now, 1)
}
