package cache

import (
	"bytes"
	"hash/maphash"
	"time"

	"github.com/maypok86/otter/v2"
	"github.com/rs/zerolog"

	"github.com/weir-gateway/weir/filters"
)

// A filter keeps its entries in one of two stores, a memoryStore or a redisStore, called directly (an
// interface would make every key escape to the heap). Lookups go by the key's hash and check the key
// itself, so that a memory lookup needs no string made from the key.

func (f *Filter) get(h uint64, key []byte) *Entry {
	if f.memory != nil {
		return f.memory.get(h, key)
	}
	return f.redis.get(key)
}

func (f *Filter) set(h uint64, e *Entry) {
	if f.memory != nil {
		f.memory.set(h, e)
		return
	}
	f.redis.set(e)
}

// memoryStore is an otter cache bounded by weight: each entry weighs its size in bytes, and otter's
// W-TinyLFU admission keeps one-off responses from pushing out the popular ones. Entries expire once
// they may no longer be served (Entry.keep).
type memoryStore struct {
	c *otter.Cache[uint64, *Entry]
}

func newMemoryStore(maxBytes int64, keepValidated time.Duration, evicted filters.Counter) *memoryStore {
	return &memoryStore{c: otter.Must(&otter.Options[uint64, *Entry]{
		MaximumWeight: uint64(maxBytes),
		Weigher:       func(_ uint64, e *Entry) uint32 { return uint32(min(e.size(), 1<<31)) },
		ExpiryCalculator: otter.ExpiryWritingFunc(func(en otter.Entry[uint64, *Entry]) time.Duration {
			return en.Value.keep(keepValidated)
		}),
		OnDeletion: func(ev otter.DeletionEvent[uint64, *Entry]) {
			if ev.Cause == otter.CauseOverflow {
				evicted.Inc()
			}
		},
		// Maintenance (eviction, expiry, the admission sketch) runs on the goroutine that stored the
		// entry, not on a goroutine started per store: on a 100 % miss load (bench/cachemiss.sh, two
		// runs of 5 rounds each way) a miss cost 10.6-10.8 µs of CPU more than an uncached request with
		// otter's default, 9.2 µs with this. Nothing the cache calls back (the weigher, the
		// expiry, OnDeletion's counter) touches the cache, so running under its locks is safe.
		Executor: func(fn func()) { fn() },
	})}
}

func (m *memoryStore) get(h uint64, key []byte) *Entry {
	e, ok := m.c.GetIfPresent(h)
	if !ok || !bytes.Equal(e.Key, key) {
		return nil // absent, or another key with the same hash: a miss, and the next store replaces it
	}
	return e
}

func (m *memoryStore) set(h uint64, e *Entry) { m.c.Set(h, e) }

func (m *memoryStore) purge(prefix []byte) int {
	n := 0
	for h, e := range m.c.All() {
		if bytes.HasPrefix(e.Key, prefix) {
			if _, ok := m.c.Invalidate(h); ok {
				n++
			}
		}
	}
	return n
}

func (m *memoryStore) held() int64 { return int64(m.c.WeightedSize()) }

// close stops otter's maintenance goroutines, for a filter a reload replaced.
func (m *memoryStore) close() { m.c.StopAllGoroutines() }

// redisStore keeps entries in the Redis every replica shares, under cache:<route>:<key>. A Redis that
// is down or slow makes lookups misses and stores no-ops (the connection's breaker answers at once);
// the gateway never fails a request for it.
type redisStore struct {
	r             filters.SharedCache
	prefix        string // cache:<route>:
	keepValidated time.Duration
	log           zerolog.Logger
}

func (r *redisStore) get(key []byte) *Entry {
	b, err := r.r.Get(r.prefix + string(key))
	if err != nil || b == nil {
		return nil
	}
	e, err := decode(b)
	if err != nil || !bytes.Equal(e.Key, key) {
		return nil
	}
	return e
}

func (r *redisStore) set(e *Entry) {
	// Redis expires the key itself; a failed store is only a later miss.
	_ = r.r.Set(r.prefix+string(e.Key), e.encode(), e.keep(r.keepValidated))
}

func (r *redisStore) purge(prefix []byte) int {
	n, err := r.r.DeletePrefix(r.prefix + string(prefix))
	if err != nil {
		r.log.Warn().Err(err).Msg("cache purge in redis failed; entries there expire on their own")
	}
	return n
}

// hashKey is the memory store's hash of a key.
func hashKey(seed maphash.Seed, key []byte) uint64 { return maphash.Bytes(seed, key) }
