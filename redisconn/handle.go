package redisconn

import (
	"sync/atomic"
	"time"
)

// Handle is the Conn in use. Filters hold the Handle, not the Conn: a reload that changes the redis
// settings swaps the Conn under them, and what they hold (a global limit's leases) stays.
type Handle struct{ cur atomic.Pointer[Conn] }

// Set makes c the Conn in use (nil: none).
func (h *Handle) Set(c *Conn) { h.cur.Store(c) }

// Conn is the Conn in use, or nil.
func (h *Handle) Conn() *Conn { return h.cur.Load() }

// Lease is Conn.Lease on the Conn in use.
func (h *Handle) Lease(key string, perSecond float64, burst, want int) (int, int64, time.Duration, error) {
	c := h.cur.Load()
	if c == nil {
		return 0, 0, 0, ErrUnavailable
	}
	return c.Lease(key, perSecond, burst, want)
}

// Up is Conn.Up on the Conn in use; false without one.
func (h *Handle) Up() bool {
	c := h.cur.Load()
	return c != nil && c.Up()
}

// Replicas is Conn.Replicas on the Conn in use; 0 without one.
func (h *Handle) Replicas() int {
	if c := h.cur.Load(); c != nil {
		return c.Replicas()
	}
	return 0
}

// Timeout is the command timeout of the Conn in use; 0 without one.
func (h *Handle) Timeout() time.Duration {
	if c := h.cur.Load(); c != nil {
		return c.Timeout()
	}
	return 0
}
