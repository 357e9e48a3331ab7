package upstream

import (
	"math/rand/v2"
	"slices"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
)

// selection says which targets a pick may return: not ones already tried for this request, and (unless
// anyHealth) only available ones.
type selection struct {
	targets   []*Target
	tried     uint64 // by index; targets past 64 count as untried
	now       int64
	anyHealth bool
}

func (s *selection) ok(i int) bool {
	if i < 64 && s.tried&(1<<i) != 0 {
		return false
	}
	return s.anyHealth || s.targets[i].Available(s.now)
}

// balancer picks one target index per attempt among those a selection allows. It is one concrete
// type switching on its kind rather than an interface: a *selection passed to an interface method
// escapes to the heap, one allocation per request.
type balancer struct {
	kind     BalancerKind
	rr       roundRobin
	weighted *smoothWeighted
	least    leastRequest
	ring     *hashRing
}

func newBalancer(kind BalancerKind, targets []*Target, weights []int) *balancer {
	b := &balancer{kind: kind}
	switch kind {
	case Weighted:
		b.weighted = newSmoothWeighted(weights)
	case LeastRequest:
		b.least = leastRequest(targets)
	case Hash:
		b.ring = newHashRing(targets, weights)
	}
	return b
}

// pick returns the index of the target for one attempt, -1 if sel allows none. key is the request's
// hash key (only the hash balancer reads it).
func (b *balancer) pick(key []byte, sel *selection) int {
	switch b.kind {
	case Weighted:
		return b.weighted.pick(sel)
	case LeastRequest:
		return b.least.pick(sel)
	case Hash:
		return b.ring.pick(key, sel)
	case Random:
		return scanFrom(rand.IntN(len(sel.targets)), sel)
	}
	return b.rr.pick(sel)
}

// scanFrom returns the first index from start on (wrapping) that sel allows, -1 if none.
func scanFrom(start int, sel *selection) int {
	n := len(sel.targets)
	for i := 0; i < n; i++ {
		if j := (start + i) % n; sel.ok(j) {
			return j
		}
	}
	return -1
}

type roundRobin struct{ next atomic.Uint64 }

func (b *roundRobin) pick(sel *selection) int {
	return scanFrom(int((b.next.Add(1)-1)%uint64(len(sel.targets))), sel)
}

// leastRequest is the power of two choices: of two distinct random targets, the one with fewer requests
// in flight. It avoids the herd that "global least" causes when many requests see the same minimum.
type leastRequest []*Target

func (b leastRequest) pick(sel *selection) int {
	i := scanFrom(rand.IntN(len(b)), sel)
	if i < 0 || len(b) == 1 {
		return i
	}
	// The second choice starts anywhere but at i, so that it is a different target when one is allowed.
	j := scanFrom(i+1+rand.IntN(len(b)-1), sel)
	if j >= 0 && j != i && b[j].InFlight() < b[i].InFlight() {
		return j
	}
	return i
}

// smoothWeighted is nginx's smooth weighted round robin: over any window of sum(weights) picks, each
// target gets exactly its weight, and picks of one target are spread out rather than bunched. Targets
// a pick may not use sit that round out, as in nginx.
type smoothWeighted struct {
	mu      sync.Mutex
	weights []int
	current []int
}

func newSmoothWeighted(weights []int) *smoothWeighted {
	return &smoothWeighted{weights: weights, current: make([]int, len(weights))}
}

func (b *smoothWeighted) pick(sel *selection) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	best, total := -1, 0
	for i, w := range b.weights {
		if !sel.ok(i) {
			continue
		}
		b.current[i] += w
		total += w
		if best < 0 || b.current[i] > b.current[best] {
			best = i
		}
	}
	if best >= 0 {
		b.current[best] -= total
	}
	return best
}

// hashRing is consistent hashing: each target owns pointsPerWeight×weight points on a 64-bit ring and a
// key goes to the owner of the first point at or after its hash. Removing a target hands only its own
// arcs to the neighbours, so only its keys move; a target out of rotation is skipped the same way.
type hashRing struct {
	points []uint64
	owners []int32
	n      int
}

const pointsPerWeight = 160

func newHashRing(targets []*Target, weights []int) *hashRing {
	type point struct {
		h uint64
		t int32
	}
	var pts []point
	for ti, t := range targets {
		// Points hash the target's address, not its position in the list, so reordering or removing
		// other targets leaves this target's points where they were.
		for i := 0; i < pointsPerWeight*weights[ti]; i++ {
			pts = append(pts, point{hashKey([]byte(t.Addr + "#" + strconv.Itoa(i))), int32(ti)})
		}
	}
	sort.Slice(pts, func(i, j int) bool { return pts[i].h < pts[j].h })
	r := &hashRing{points: make([]uint64, len(pts)), owners: make([]int32, len(pts)), n: len(targets)}
	for i, p := range pts {
		r.points[i], r.owners[i] = p.h, p.t
	}
	return r
}

func (r *hashRing) pick(key []byte, sel *selection) int {
	if len(key) == 0 {
		// No key to be sticky on (a missing header or cookie): spread such requests instead of sending
		// them all to the owner of hash("").
		return scanFrom(rand.IntN(r.n), sel)
	}
	i, _ := slices.BinarySearch(r.points, hashKey(key))
	for k := 0; k < len(r.points); k++ {
		if owner := int(r.owners[(i+k)%len(r.points)]); sel.ok(owner) {
			return owner
		}
	}
	return -1
}

// hashKey is FNV-1a with a final avalanche step (from splitmix64), so that keys differing in one byte
// land far apart on the ring. It is deterministic across processes, so every weir instance sends a key
// to the same target.
func hashKey(b []byte) uint64 {
	h := uint64(14695981039346656037)
	for _, c := range b {
		h ^= uint64(c)
		h *= 1099511628211
	}
	h ^= h >> 30
	h *= 0xbf58476d1ce4e5b9
	h ^= h >> 27
	h *= 0x94d049bb133111eb
	h ^= h >> 31
	return h
}
