// Package redisconn is weir's connection to the Redis that its replicas share: the client
// (github.com/redis/rueidis), a breaker in front of it, the count of replicas using it, and the
// scripts weir runs there.
//
// A Redis that fails is taken out of use at once: Up reports false, and callers decide locally
// without waiting (rate_limit's on_redis_error). In the background weir tries it again every
// retry_interval, and the first success puts it back. Each change is logged and exported as
// weir_redis_up.
package redisconn

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/rueidis"
	"github.com/rs/zerolog"
)

// Settings say which Redis and how to reach it.
type Settings struct {
	Addrs    []string
	Username string
	Password string
	DB       int
	// Timeout bounds each command; RetryInterval spaces the tries of a Redis that failed.
	Timeout       time.Duration
	RetryInterval time.Duration
	// KeyPrefix starts every key written.
	KeyPrefix string
	// TLS, when not nil, encrypts the connections.
	TLS *tls.Config
}

// Metrics receive the connection's state and command timings; nil funcs are skipped.
type Metrics struct {
	Up       func(up bool)
	Replicas func(n int)
	// Command is called after each command: its name (lease, heartbeat), duration and failure.
	Command func(name string, seconds float64, failed bool)
}

// ErrUnavailable is returned while Redis is out of use.
var ErrUnavailable = errors.New("redis unavailable")

// Conn is one Redis, as configured.
type Conn struct {
	s   Settings
	m   Metrics
	log zerolog.Logger
	id  string // this process among the replicas

	client   atomic.Pointer[rueidis.Client] // nil until connected
	up       atomic.Bool
	logged   atomic.Bool // the first failure was logged (a Redis down from the start was never up)
	replicas atomic.Int64

	once    sync.Once
	kick    chan struct{}
	stop    chan struct{}
	stopped sync.Once
	done    chan struct{}
}

// heartbeatEvery spaces the replica registrations; a replica not seen for replicaTTL is not counted.
const (
	heartbeatEvery = 2 * time.Second
	replicaTTL     = 10 * time.Second
)

// New prepares a connection; nothing is dialed before Start.
func New(s Settings, m Metrics, log zerolog.Logger) *Conn {
	var id [8]byte
	_, _ = rand.Read(id[:])
	return &Conn{s: s, m: m, log: log.With().Strs("redis", s.Addrs).Logger(), id: hex.EncodeToString(id[:]),
		kick: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
}

// Start connects in the background and keeps the connection checked. It may be called more than once.
func (c *Conn) Start() { c.once.Do(func() { go c.run() }) }

// Close stops the checks and closes the client.
func (c *Conn) Close() {
	c.stopped.Do(func() { close(c.stop) })
	c.Start() // so that run is there to close done
	<-c.done
	if cl := c.client.Load(); cl != nil {
		(*cl).Close()
	}
}

// Up reports whether Redis is in use: connected, and its last command succeeded.
func (c *Conn) Up() bool { return c.up.Load() }

// Replicas is the number of weir processes that registered with this Redis in the last 10 s; 0 if
// unknown.
func (c *Conn) Replicas() int { return int(c.replicas.Load()) }

// Timeout bounds each command.
func (c *Conn) Timeout() time.Duration { return c.s.Timeout }

// KeyPrefix is the prefix of every key written.
func (c *Conn) KeyPrefix() string { return c.s.KeyPrefix }

func (c *Conn) run() {
	defer close(c.done)
	for {
		c.check()
		wait := heartbeatEvery
		if !c.up.Load() {
			wait = c.s.RetryInterval
		}
		t := time.NewTimer(wait)
		select {
		case <-c.stop:
			t.Stop()
			return
		case <-c.kick:
		case <-t.C:
		}
		t.Stop()
	}
}

// check connects if needed, then registers this replica and reads the count: the heartbeat doubles as
// the probe of a Redis that is down.
func (c *Conn) check() {
	cl := c.client.Load()
	if cl == nil {
		opt := rueidis.ClientOption{InitAddress: c.s.Addrs, Username: c.s.Username, Password: c.s.Password,
			SelectDB: c.s.DB, TLSConfig: c.s.TLS, DisableCache: true,
			// A dead Redis must be noticed within a command timeout, not TCP keep-alive's minutes.
			ConnWriteTimeout: max(c.s.Timeout, 100*time.Millisecond) * 4}
		opt.Dialer.Timeout = max(c.s.Timeout, 100*time.Millisecond)
		client, err := rueidis.NewClient(opt)
		if err != nil {
			c.down(err)
			return
		}
		c.client.Store(&client)
		cl = &client
	}
	ctx, cancel := context.WithTimeout(context.Background(), c.s.Timeout)
	defer cancel()
	start := time.Now()
	n, err := heartbeat.Exec(ctx, *cl, []string{c.s.KeyPrefix + "replicas"},
		[]string{c.id, strconv.FormatInt(replicaTTL.Milliseconds(), 10)}).AsInt64()
	c.observe("heartbeat", start, err)
	if err != nil {
		c.down(err)
		return
	}
	c.replicas.Store(n)
	if c.m.Replicas != nil {
		c.m.Replicas(int(n))
	}
	c.setUp()
}

func (c *Conn) observe(name string, start time.Time, err error) {
	if c.m.Command != nil {
		c.m.Command(name, time.Since(start).Seconds(), err != nil)
	}
}

func (c *Conn) setUp() {
	if !c.up.Swap(true) {
		c.log.Info().Int64("replicas", c.replicas.Load()).Msg("redis is up; global rate limits are shared again")
		if c.m.Up != nil {
			c.m.Up(true)
		}
	}
}

// down takes Redis out of use after err, and has it tried again in the background. The client is
// dropped too: the next try dials afresh, so that no connection from before the failure (a Redis that
// restarted has reset them all) is used once Redis answers again.
func (c *Conn) down(err error) {
	if cl := c.client.Swap(nil); cl != nil {
		go (*cl).Close()
	}
	wasUp, first := c.up.Swap(false), !c.logged.Swap(true)
	if wasUp || first {
		c.log.Warn().Err(err).Dur("retry_interval", c.s.RetryInterval).
			Msg("redis unavailable; global rate limits decide locally until it answers")
		if c.m.Up != nil {
			c.m.Up(false)
		}
	}
}

// inUse returns the client while Redis is in use; commands fail at once with ErrUnavailable otherwise.
func (c *Conn) inUse() (rueidis.Client, bool) {
	cl := c.client.Load()
	if cl == nil || !c.up.Load() {
		return nil, false
	}
	return *cl, true
}

// Lease takes up to want tokens from the token bucket at key (perSecond, burst; a new bucket starts
// full), atomically in Redis, with Redis's clock. See globallimit.
func (c *Conn) Lease(key string, perSecond float64, burst, want int) (granted int, remaining int64, wait time.Duration, err error) {
	cl, ok := c.inUse()
	if !ok {
		return 0, 0, 0, ErrUnavailable
	}
	ctx, cancel := context.WithTimeout(context.Background(), c.s.Timeout)
	defer cancel()
	start := time.Now()
	vals, err := takeTokens.Exec(ctx, cl, []string{c.s.KeyPrefix + key}, []string{
		strconv.FormatFloat(perSecond, 'g', -1, 64), strconv.Itoa(burst), strconv.Itoa(want)}).AsIntSlice()
	c.observe("lease", start, err)
	if err == nil && len(vals) != 3 {
		err = errors.New("unexpected reply to the lease script")
	}
	if err != nil {
		c.fail(err)
		return 0, 0, 0, err
	}
	return int(vals[0]), vals[1], time.Duration(vals[2]) * time.Microsecond, nil
}

// takeTokens is a token bucket refilled by Redis's own clock (replicas' clocks do not matter). The
// bucket expires once it would be full again: then it is the same as a new one.
var takeTokens = rueidis.NewLuaScript(`
local rate, burst, want = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local v = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens, ts = tonumber(v[1]), tonumber(v[2])
if tokens == nil or ts == nil then
  tokens, ts = burst, now
end
if now > ts then
  tokens = math.min(burst, tokens + (now - ts) * rate / 1e6)
  ts = now
end
local granted = math.max(0, math.min(want, math.floor(tokens)))
tokens = tokens - granted
redis.call('HSET', KEYS[1], 'tokens', string.format('%.17g', tokens), 'ts', string.format('%d', ts))
redis.call('PEXPIRE', KEYS[1], math.ceil((burst - tokens) * 1000 / rate) + 1000)
local wait = 0
if granted < want then
  wait = math.ceil((want - granted - tokens) * 1e6 / rate)
end
return {granted, math.floor(tokens), wait}
`)

// heartbeat registers a replica and counts those seen within ARGV[2] ms.
var heartbeat = rueidis.NewLuaScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[2])
redis.call('ZADD', KEYS[1], now, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - ttl)
redis.call('PEXPIRE', KEYS[1], ttl)
return redis.call('ZCARD', KEYS[1])
`)

// Get returns the value at key (under the key prefix); nil and no error when there is none. A
// failure takes Redis out of use, as for a lease.
func (c *Conn) Get(key string) ([]byte, error) {
	cl, ok := c.inUse()
	if !ok {
		return nil, ErrUnavailable
	}
	ctx, cancel := context.WithTimeout(context.Background(), c.s.Timeout)
	defer cancel()
	start := time.Now()
	b, err := cl.Do(ctx, cl.B().Get().Key(c.s.KeyPrefix+key).Build()).AsBytes()
	if rueidis.IsRedisNil(err) {
		c.observe("cache_get", start, nil)
		return nil, nil
	}
	c.observe("cache_get", start, err)
	if err != nil {
		c.fail(err)
		return nil, err
	}
	return b, nil
}

// Set stores value at key (under the key prefix) for ttl.
func (c *Conn) Set(key string, value []byte, ttl time.Duration) error {
	cl, ok := c.inUse()
	if !ok {
		return ErrUnavailable
	}
	ctx, cancel := context.WithTimeout(context.Background(), c.s.Timeout)
	defer cancel()
	start := time.Now()
	err := cl.Do(ctx, cl.B().Set().Key(c.s.KeyPrefix+key).Value(rueidis.BinaryString(value)).
		PxMilliseconds(max(ttl.Milliseconds(), 1)).Build()).Error()
	c.observe("cache_set", start, err)
	if err != nil {
		c.fail(err)
	}
	return err
}

// DeletePrefix deletes the keys (under the key prefix) that start with prefix, scanning the keyspace
// in batches (on every node of a cluster), and says how many went.
func (c *Conn) DeletePrefix(prefix string) (int, error) {
	client, ok := c.inUse()
	if !ok {
		return 0, ErrUnavailable
	}
	pattern := globEscape(c.s.KeyPrefix+prefix) + "*"
	deleted := 0
	for _, node := range client.Nodes() {
		var cursor uint64
		for {
			ctx, cancel := context.WithTimeout(context.Background(), c.s.Timeout)
			entry, err := node.Do(ctx, node.B().Scan().Cursor(cursor).Match(pattern).Count(500).Build()).AsScanEntry()
			if err == nil && len(entry.Elements) > 0 {
				var n int64
				n, err = node.Do(ctx, node.B().Unlink().Key(entry.Elements...).Build()).AsInt64()
				deleted += int(n)
			}
			cancel()
			if err != nil {
				c.fail(err)
				return deleted, err
			}
			if cursor = entry.Cursor; cursor == 0 {
				break
			}
		}
	}
	return deleted, nil
}

// globEscape quotes the characters SCAN's MATCH would read as a pattern.
func globEscape(s string) string {
	var b []byte
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '*', '?', '[', ']', '\\':
			b = append(b, '\\')
		}
		b = append(b, s[i])
	}
	return string(b)
}

// fail takes Redis out of use after a failed command and has the background check try it again.
func (c *Conn) fail(err error) {
	c.down(err)
	select {
	case c.kick <- struct{}{}:
	default:
	}
}
