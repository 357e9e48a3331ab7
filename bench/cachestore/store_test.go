// Package cachestore compares the in-memory stores weir's cache filter could keep its entries in,
// shaped as weir's memory store is: key = a uint64 (the hash of the cache key), value = a pointer to
// an entry holding the response's bytes (about 1 KiB here). fastcache holds bytes only, so there the
// value is the 1 KiB itself and a hit copies it into the caller's buffer.
//
//	cd bench/cachestore && taskset -c 1 go test -run '^$' -bench . -benchmem -count 5
//	cd bench/cachestore && go test -run . -v          # memory per entry, visibility, API notes
//
// Results and conclusion: bench/results-cache.md, "## Store library".
package cachestore

import (
	"encoding/binary"
	"math/rand/v2"
	"os"
	"os/exec"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/VictoriaMetrics/fastcache"
	"github.com/dgraph-io/ristretto/v2"
	"github.com/maypok86/otter/v2"
)

const (
	nKeys     = 100_000
	valueSize = 1024
	ttl       = 10 * time.Minute
	maxBytes  = 1 << 30 // large enough to hold all nKeys entries in each store
)

// Entry stands for weir's cache.Entry: a pointer to it is what otter and ristretto hold.
type Entry struct{ Body []byte }

func value(i uint64) []byte {
	b := make([]byte, valueSize)
	binary.LittleEndian.PutUint64(b, i)
	return b
}

// keyOf is the uint64 key of entry i: spread like a hash, as weir's maphash keys are.
func keyOf(i uint64) uint64 { return i*0x9E3779B97F4A7C15 + 1 }

func fcKey(dst *[8]byte, k uint64) []byte {
	binary.LittleEndian.PutUint64(dst[:], k)
	return dst[:]
}

// ---- the three stores, filled with nKeys entries ----

func newOtter() *otter.Cache[uint64, *Entry] {
	return otter.Must(&otter.Options[uint64, *Entry]{
		MaximumWeight: maxBytes,
		Weigher:       func(_ uint64, e *Entry) uint32 { return uint32(len(e.Body)) },
		ExpiryCalculator: otter.ExpiryWritingFunc(func(otter.Entry[uint64, *Entry]) time.Duration {
			return ttl
		}),
	})
}

func newRistretto(tb testing.TB) *ristretto.Cache[uint64, *Entry] {
	c, err := ristretto.NewCache(&ristretto.Config[uint64, *Entry]{
		NumCounters: 10 * nKeys,
		MaxCost:     maxBytes,
		BufferItems: 64,
	})
	if err != nil {
		tb.Fatal(err)
	}
	return c
}

func newFastcache() *fastcache.Cache { return fastcache.New(maxBytes) }

func fillOtter() *otter.Cache[uint64, *Entry] {
	c := newOtter()
	for i := range uint64(nKeys) {
		c.Set(keyOf(i), &Entry{Body: value(i)})
	}
	return c
}

// fillRistretto sets every entry and waits for its buffers every 1000 Sets: Set only queues the
// item, and drops it when the queue is full.
func fillRistretto(tb testing.TB) (*ristretto.Cache[uint64, *Entry], int) {
	c := newRistretto(tb)
	dropped := 0
	for i := range uint64(nKeys) {
		if !c.SetWithTTL(keyOf(i), &Entry{Body: value(i)}, valueSize, ttl) {
			dropped++
		}
		if i%1000 == 999 {
			c.Wait()
		}
	}
	c.Wait()
	return c, dropped
}

func fillFastcache() *fastcache.Cache {
	c := newFastcache()
	var kb [8]byte
	for i := range uint64(nKeys) {
		c.Set(fcKey(&kb, keyOf(i)), value(i))
	}
	return c
}

var (
	once       sync.Once
	otterC     *otter.Cache[uint64, *Entry]
	ristrettoC *ristretto.Cache[uint64, *Entry]
	fastC      *fastcache.Cache
	zipfKeys   []uint64 // a zipf-distributed sequence of keys (s=1.1: a hot head, a long tail)
	unifKeys   []uint64
)

const seqLen = 1 << 20

func setup(tb testing.TB) {
	once.Do(func() {
		otterC = fillOtter()
		ristrettoC, _ = fillRistretto(tb)
		fastC = fillFastcache()
		r := rand.New(rand.NewPCG(1, 2))
		z := rand.NewZipf(r, 1.1, 1, nKeys-1)
		zipfKeys, unifKeys = make([]uint64, seqLen), make([]uint64, seqLen)
		for i := range seqLen {
			zipfKeys[i] = keyOf(z.Uint64())
			unifKeys[i] = keyOf(r.Uint64N(nKeys))
		}
		for _, k := range unifKeys[:1000] {
			if _, ok := ristrettoC.Get(k); !ok {
				tb.Fatalf("ristretto lost key %d after the fill", k)
			}
		}
	})
}

// ---- (a) hit cost ----

type getter func(k uint64, buf *[]byte) bool

func getters() []struct {
	name string
	get  getter
} {
	return []struct {
		name string
		get  getter
	}{
		{"otter", func(k uint64, _ *[]byte) bool { e, ok := otterC.GetIfPresent(k); return ok && len(e.Body) == valueSize }},
		{"ristretto", func(k uint64, _ *[]byte) bool { e, ok := ristrettoC.Get(k); return ok && len(e.Body) == valueSize }},
		{"fastcache", func(k uint64, buf *[]byte) bool {
			var kb [8]byte
			var ok bool
			*buf, ok = fastC.HasGet((*buf)[:0], fcKey(&kb, k))
			return ok && len(*buf) == valueSize
		}},
	}
}

func BenchmarkHit(b *testing.B) {
	setup(b)
	for _, dist := range []struct {
		name string
		keys []uint64
	}{{"zipf", zipfKeys}, {"uniform", unifKeys}} {
		for _, g := range getters() {
			b.Run(dist.name+"/"+g.name+"/serial", func(b *testing.B) {
				buf := make([]byte, 0, valueSize)
				miss := 0
				i := 0
				for b.Loop() {
					if !g.get(dist.keys[i&(seqLen-1)], &buf) {
						miss++
					}
					i++
				}
				b.ReportMetric(float64(miss)/float64(i), "misses/op")
			})
			b.Run(dist.name+"/"+g.name+"/parallel", func(b *testing.B) {
				var mu sync.Mutex
				misses, total := 0, 0
				var seed uint64
				b.RunParallel(func(pb *testing.PB) {
					mu.Lock()
					seed++
					i := int(seed * 7919 * 131)
					mu.Unlock()
					buf := make([]byte, 0, valueSize)
					miss, n := 0, 0
					for pb.Next() {
						if !g.get(dist.keys[i&(seqLen-1)], &buf) {
							miss++
						}
						i++
						n++
					}
					mu.Lock()
					misses += miss
					total += n
					mu.Unlock()
				})
				b.ReportMetric(float64(misses)/float64(max(total, 1)), "misses/op")
			})
		}
	}
}

// BenchmarkSet is the store half of a miss: a new 1 KiB entry under a key already held (so the bound
// is never reached and nothing is evicted). The entry's allocation is counted too, as a miss pays it.
func BenchmarkSet(b *testing.B) {
	setup(b)
	b.Run("otter", func(b *testing.B) {
		i := uint64(0)
		for b.Loop() {
			otterC.Set(keyOf(i%nKeys), &Entry{Body: value(i)})
			i++
		}
	})
	b.Run("ristretto", func(b *testing.B) {
		i, dropped := uint64(0), 0
		for b.Loop() {
			if !ristrettoC.SetWithTTL(keyOf(i%nKeys), &Entry{Body: value(i)}, valueSize, ttl) {
				dropped++
			}
			i++
		}
		ristrettoC.Wait()
		b.ReportMetric(float64(dropped)/float64(i), "dropped/op")
	})
	b.Run("fastcache", func(b *testing.B) {
		var kb [8]byte
		i := uint64(0)
		for b.Loop() {
			fastC.Set(fcKey(&kb, keyOf(i%nKeys)), value(i))
			i++
		}
	})
}

// ---- (b) memory per entry ----

func rssBytes(t *testing.T) uint64 {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		t.Skip("no /proc/self/statm")
	}
	f := strings.Fields(string(b))
	pages, _ := strconv.ParseUint(f[1], 10, 64)
	return pages * uint64(os.Getpagesize())
}

type memSample struct{ heapInuse, rss uint64 }

func sample(t *testing.T) memSample {
	runtime.GC()
	debug.FreeOSMemory() // GCs again and returns what is free to the OS, so RSS counts what is live
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return memSample{m.HeapInuse, rssBytes(t)}
}

// TestMemoryPerEntry fills each store with nKeys entries of 1 KiB, each in a process of its own (this
// test binary run again with CACHESTORE_MEM=name), and logs, per entry, what the heap (HeapInuse) and
// the process (RSS) grew by beyond the 1 KiB payload. fastcache keeps its data in memory it maps
// itself, outside Go's heap, so for it only the RSS figure counts.
func TestMemoryPerEntry(t *testing.T) {
	if name := os.Getenv("CACHESTORE_MEM"); name != "" {
		measureMemory(t, name)
		return
	}
	for _, name := range []string{"otter", "ristretto", "fastcache"} {
		cmd := exec.Command(os.Args[0], "-test.run", "^TestMemoryPerEntry$", "-test.v", "-test.count", "1")
		cmd.Env = append(os.Environ(), "CACHESTORE_MEM="+name)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%s: %v\n%s", name, err, out)
		}
		for _, line := range strings.Split(string(out), "\n") {
			if strings.Contains(line, "overhead/entry") || strings.Contains(line, "dropped") {
				_, msg, _ := strings.Cut(strings.TrimSpace(line), ": ")
				t.Log(msg)
			}
		}
	}
}

func measureMemory(t *testing.T, name string) {
	payload := float64(nKeys * valueSize)
	report := func(before, after memSample, held int) {
		if held != nKeys {
			t.Errorf("%s holds %d of %d entries", name, held, nKeys)
		}
		t.Logf("%-9s heap overhead/entry %6.1f B   RSS overhead/entry %6.1f B   (heap +%.1f MiB, RSS +%.1f MiB, entries held %d)",
			name, (float64(after.heapInuse)-float64(before.heapInuse)-payload)/nKeys,
			(float64(after.rss)-float64(before.rss)-payload)/nKeys,
			(float64(after.heapInuse)-float64(before.heapInuse))/(1<<20), (float64(after.rss)-float64(before.rss))/(1<<20), held)
	}
	switch name {
	case "otter":
		before := sample(t)
		c := fillOtter()
		after := sample(t)
		held := 0
		for i := range uint64(nKeys) {
			if _, ok := c.GetIfPresent(keyOf(i)); ok {
				held++
			}
		}
		report(before, after, held)
		runtime.KeepAlive(c)
	case "ristretto":
		before := sample(t)
		c, dropped := fillRistretto(t)
		after := sample(t)
		held := 0
		for i := range uint64(nKeys) {
			if _, ok := c.Get(keyOf(i)); ok {
				held++
			}
		}
		t.Logf("ristretto: %d Sets dropped (Wait every 1000 Sets)", dropped)
		report(before, after, held)
		runtime.KeepAlive(c)
	case "fastcache":
		before := sample(t)
		c := fillFastcache()
		after := sample(t)
		held := 0
		var kb [8]byte
		for i := range uint64(nKeys) {
			if c.Has(fcKey(&kb, keyOf(i))) {
				held++
			}
		}
		report(before, after, held)
		runtime.KeepAlive(c)
	default:
		t.Fatalf("unknown store %q", name)
	}
}

// ---- (c) what weir needs ----

// TestSetVisibility: is a value that was just Set returned by the next Get?
func TestSetVisibility(t *testing.T) {
	o := newOtter()
	defer o.StopAllGoroutines()
	r := newRistretto(t)
	defer r.Close()
	f := newFastcache()
	defer f.Reset()
	var kb [8]byte
	const tries = 1000
	oSeen, rSeen, rSeenAfterWait, fSeen, rDropped := 0, 0, 0, 0, 0
	for i := range uint64(tries) {
		k := keyOf(i)
		o.Set(k, &Entry{Body: value(i)})
		if _, ok := o.GetIfPresent(k); ok {
			oSeen++
		}
		if !r.SetWithTTL(k, &Entry{Body: value(i)}, valueSize, ttl) {
			rDropped++
		}
		if _, ok := r.Get(k); ok {
			rSeen++
		}
		r.Wait()
		if _, ok := r.Get(k); ok {
			rSeenAfterWait++
		}
		f.Set(fcKey(&kb, k), value(i))
		if f.Has(fcKey(&kb, k)) {
			fSeen++
		}
	}
	t.Logf("Get right after Set finds it: otter %d/%d, ristretto %d/%d (after Wait: %d/%d, Sets dropped %d), fastcache %d/%d",
		oSeen, tries, rSeen, tries, rSeenAfterWait, tries, rDropped, fSeen, tries)
	// Dropped Sets without Wait, in a burst (as concurrent misses would store).
	r2 := newRistretto(t)
	defer r2.Close()
	burstDropped := 0
	for i := range uint64(nKeys) {
		if !r2.SetWithTTL(keyOf(i), &Entry{Body: value(i)}, valueSize, ttl) {
			burstDropped++
		}
	}
	r2.Wait()
	held := 0
	for i := range uint64(nKeys) {
		if _, ok := r2.Get(keyOf(i)); ok {
			held++
		}
	}
	t.Logf("ristretto, %d Sets in a burst without Wait: %d refused by Set, %d held afterwards", nKeys, burstDropped, held)
}

// TestExpiryAndIteration checks per-entry expiry and iteration where the API has them.
func TestExpiryAndIteration(t *testing.T) {
	o := otter.Must(&otter.Options[uint64, *Entry]{
		MaximumWeight: maxBytes,
		Weigher:       func(_ uint64, e *Entry) uint32 { return uint32(len(e.Body)) },
		ExpiryCalculator: otter.ExpiryWritingFunc(func(e otter.Entry[uint64, *Entry]) time.Duration {
			return time.Duration(e.Key) * 50 * time.Millisecond // key 1: 50ms, key 100: 5s
		}),
	})
	defer o.StopAllGoroutines()
	r := newRistretto(t)
	defer r.Close()
	o.Set(1, &Entry{Body: value(1)})
	o.Set(100, &Entry{Body: value(100)})
	r.SetWithTTL(1, &Entry{Body: value(1)}, valueSize, 50*time.Millisecond)
	r.SetWithTTL(100, &Entry{Body: value(100)}, valueSize, 5*time.Second)
	r.Wait()
	time.Sleep(200 * time.Millisecond)
	_, o1 := o.GetIfPresent(1)
	_, o100 := o.GetIfPresent(100)
	_, r1 := r.Get(1)
	_, r100 := r.Get(100)
	t.Logf("after 200ms (ttl 50ms vs 5s): otter has 1=%v 100=%v; ristretto has 1=%v 100=%v; fastcache has no expiry", o1, o100, r1, r100)
	if o1 || !o100 || r1 || !r100 {
		t.Errorf("per-entry expiry not as expected")
	}
	on, rn := 0, 0
	for range o.All() {
		on++
	}
	r.IterValues(func(*Entry) bool { rn++; return false })
	t.Logf("iteration: otter All() saw %d entries (keys and values); ristretto IterValues saw %d (values only); fastcache has none", on, rn)
}
