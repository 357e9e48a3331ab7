package upstream

// Counter counts events. weir's are Prometheus counters; a pool without metrics uses a no-op.
type Counter interface{ Inc() }

type nopCounter struct{}

func (nopCounter) Inc() {}

// TargetCounters are one target's counters within one pool.
type TargetCounters struct {
	Attempts      Counter // attempts sent to the target
	ConnectErrors Counter // no connection could be made (refused or timed out)
	Timeouts      Counter // the attempt timed out
	StatusErrors  Counter // the target answered 5xx
	OtherErrors   Counter // closed the connection, malformed answer, answer too large
	Ejections     Counter // passive health took the target out
}

// PoolCounters resolves a pool's counters once, when the pool is built, so that requests only
// increment.
type PoolCounters struct {
	Retries Counter
	Target  func(addr string) TargetCounters
	Streams *StreamCounters // nil: not counted
}

func nopTargetCounters() TargetCounters {
	n := nopCounter{}
	return TargetCounters{n, n, n, n, n, n}
}
