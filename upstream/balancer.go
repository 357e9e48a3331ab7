package upstream

import (
	"math/rand/v2"
	"slices"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
)

// balancer picks one target per attempt. key is the request's hash key (only the hash balancer reads it).
type balancer interface {
	pick(key []byte) *Target
}

func newBalancer(kind BalancerKind, targets []*Target, weights []int) balancer {
	switch kind {
	case Weighted:
		return newSmoothWeighted(targets, weights)
	case LeastRequest:
		return leastRequest(targets)
	case Hash:
		return newHashRing(targets, weights)
	case Random:
		return random(targets)
	}
	return &roundRobin{targets: targets}
}

type roundRobin struct {
	next    atomic.Uint64
	targets []*Target
}

func (b *roundRobin) pick([]byte) *Target {
	return b.targets[(b.next.Add(1)-1)%uint64(len(b.targets))]
}

type random []*Target

func (b random) pick([]byte) *Target { return b[rand.IntN(len(b))] }

// leastRequest is the power of two choices: of two distinct random targets, the one with fewer requests
// in flight. It avoids the herd that "global least" causes when many requests see the same minimum.
type leastRequest []*Target

func (b leastRequest) pick([]byte) *Target {
	if len(b) == 1 {
		return b[0]
	}
	i := rand.IntN(len(b))
	j := rand.IntN(len(b) - 1)
	if j >= i {
		j++
	}
	if b[j].InFlight() < b[i].InFlight() {
		return b[j]
	}
	return b[i]
}

// smoothWeighted is nginx's smooth weighted round robin: over any window of sum(weights) picks, each
// target gets exactly its weight, and picks of one target are spread out rather than bunched.
type smoothWeighted struct {
	mu      sync.Mutex
	targets []*Target
	weights []int
	current []int
	total   int
}

func newSmoothWeighted(targets []*Target, weights []int) *smoothWeighted {
	b := &smoothWeighted{targets: targets, weights: weights, current: make([]int, len(targets))}
	for _, w := range weights {
		b.total += w
	}
	return b
}

func (b *smoothWeighted) pick([]byte) *Target {
	b.mu.Lock()
	best := 0
	for i, w := range b.weights {
		b.current[i] += w
		if b.current[i] > b.current[best] {
			best = i
		}
	}
	b.current[best] -= b.total
	b.mu.Unlock()
	return b.targets[best]
}

// hashRing is consistent hashing: each target owns pointsPerWeight×weight points on a 64-bit ring and a
// key goes to the owner of the first point at or after its hash. Removing a target hands only its own
// arcs to the neighbours, so only its keys move.
type hashRing struct {
	points  []uint64
	owners  []*Target
	targets []*Target
}

const pointsPerWeight = 160

func newHashRing(targets []*Target, weights []int) *hashRing {
	type point struct {
		h uint64
		t *Target
	}
	var pts []point
	for ti, t := range targets {
		// Points hash the target's address, not its position in the list, so reordering or removing
		// other targets leaves this target's points where they were.
		for i := 0; i < pointsPerWeight*weights[ti]; i++ {
			pts = append(pts, point{hashKey([]byte(t.Addr + "#" + strconv.Itoa(i))), t})
		}
	}
	sort.Slice(pts, func(i, j int) bool { return pts[i].h < pts[j].h })
	r := &hashRing{points: make([]uint64, len(pts)), owners: make([]*Target, len(pts)), targets: targets}
	for i, p := range pts {
		r.points[i], r.owners[i] = p.h, p.t
	}
	return r
}

func (r *hashRing) pick(key []byte) *Target {
	if len(key) == 0 {
		// No key to be sticky on (a missing header or cookie): spread such requests instead of sending
		// them all to the owner of hash("").
		return r.targets[rand.IntN(len(r.targets))]
	}
	i, _ := slices.BinarySearch(r.points, hashKey(key))
	if i == len(r.points) {
		i = 0
	}
	return r.owners[i]
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
