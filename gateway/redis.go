package gateway

import (
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	"github.com/weir-gateway/weir/filters"
	"github.com/weir-gateway/weir/filters/globallimit"
	"github.com/weir-gateway/weir/redisconn"
)

// snapshotRedis is a snapshot's Redis: conn is nil without a redis block. handle is shared by every
// snapshot of the process (taken over from the previous one): global limits hold it, and activate
// points it at this snapshot's conn.
type snapshotRedis struct {
	conn   *redisconn.Conn
	handle *redisconn.Handle
	// key is the conn's identity: a reload with the same key keeps the connection.
	key string
}

// redis checks the redis block and builds, or takes over from the previous snapshot, its connection.
func (c *compiler) redis(s *Snapshot) {
	if prev := c.opts.Previous; prev != nil && prev.redis.handle != nil {
		s.redis.handle = prev.redis.handle
	} else {
		s.redis.handle = &redisconn.Handle{}
	}
	rc := c.cfg.Redis
	if rc == nil {
		return
	}
	settings := redisconn.Settings{Addrs: rc.Addrs, Username: rc.Username, DB: rc.DB, Timeout: rc.Timeout,
		RetryInterval: rc.RetryInterval, KeyPrefix: rc.KeyPrefix}
	if len(rc.Addrs) == 0 {
		c.problem("redis.addrs", "needs at least one address, like [\"127.0.0.1:6379\"] (several for a Redis Cluster)")
	}
	for i, a := range rc.Addrs {
		if _, port, err := net.SplitHostPort(a); err != nil || port == "" {
			c.problem(fmt.Sprintf("redis.addrs[%d]", i), "invalid address %q; write it like \"127.0.0.1:6379\" or \"redis:6379\"", a)
		}
	}
	if rc.DB < 0 || rc.DB > 15 && len(rc.Addrs) == 1 {
		c.problem("redis.db", "must be between 0 and 15 (Redis's default databases), got %d", rc.DB)
	}
	if rc.DB != 0 && len(rc.Addrs) > 1 {
		c.problem("redis.db", "a Redis Cluster has only database 0")
	}
	c.positive("redis.timeout", rc.Timeout)
	c.positive("redis.retry_interval", rc.RetryInterval)
	if strings.ContainsAny(rc.KeyPrefix, " \r\n") {
		c.problem("redis.key_prefix", "must not contain spaces or line breaks")
	}
	var secret []byte // what the identity needs of files: their digests
	if f := rc.PasswordFile; f != "" {
		data, err := os.ReadFile(c.resolveFile(f))
		if err != nil {
			c.problem("redis.password_file", "cannot read the password: %v", err)
		} else if settings.Password = string(bytes.TrimSpace(data)); settings.Password == "" {
			c.problem("redis.password_file", "%s is empty", f)
		}
		sum := sha256.Sum256(data)
		secret = append(secret, sum[:]...)
	}
	if t := rc.TLS; t.Enabled {
		settings.TLS = &tls.Config{MinVersion: tls.VersionTLS12, ServerName: t.ServerName}
		if t.CAFile != "" {
			data, err := os.ReadFile(c.resolveFile(t.CAFile))
			pool := x509.NewCertPool()
			switch {
			case err != nil:
				c.problem("redis.tls.ca_file", "cannot read the CA bundle: %v", err)
			case !pool.AppendCertsFromPEM(data):
				c.problem("redis.tls.ca_file", "%s holds no PEM certificate", t.CAFile)
			}
			settings.TLS.RootCAs = pool
			sum := sha256.Sum256(data)
			secret = append(secret, sum[:]...)
		}
	} else if t.CAFile != "" || t.ServerName != "" {
		c.problem("redis.tls", "ca_file and server_name are read only with enabled: true")
	}
	s.redis.key = fmt.Sprintf("%q|%s|%d|%s|%s|%s|%v|%s|%s|%s", rc.Addrs, rc.Username, rc.DB, rc.Timeout, rc.RetryInterval,
		rc.KeyPrefix, rc.TLS.Enabled, rc.TLS.ServerName, rc.TLS.CAFile, hex.EncodeToString(secret))
	if prev := c.opts.Previous; prev != nil && prev.redis.key == s.redis.key {
		s.redis.conn = prev.redis.conn
		return
	}
	if c.sink.err() != nil {
		return
	}
	s.redis.conn = redisconn.New(settings, c.redisMetrics(), c.opts.Log)
}

func (c *compiler) redisMetrics() redisconn.Metrics {
	m := c.opts.Metrics
	if m == nil {
		return redisconn.Metrics{}
	}
	return redisconn.Metrics{
		Up: func(up bool) {
			if up {
				m.redisUp.Set(1)
			} else {
				m.redisUp.Set(0)
			}
		},
		Replicas: func(n int) { m.redisReplicas.Set(float64(n)) },
		Command: func(name string, seconds float64, failed bool) {
			m.redisCommands.WithLabelValues(name).Observe(seconds)
			if failed {
				m.redisErrors.WithLabelValues(name).Inc()
			}
		},
	}
}

// sharedLimits is filters.Env.SharedLimits for a config with a redis block, nil without one.
func (c *compiler) sharedLimits(s *Snapshot) func(filters.SharedLimitSpec) (filters.SharedLimiter, error) {
	if c.cfg.Redis == nil {
		return nil
	}
	return func(spec filters.SharedLimitSpec) (filters.SharedLimiter, error) {
		return globallimit.New(spec, s.redis.handle), nil
	}
}

// activateRedis points the shared handle at this snapshot's conn and starts it.
func (s *Snapshot) activateRedis() {
	if s.redis.handle == nil {
		return
	}
	if s.redis.conn != nil {
		s.redis.conn.Start()
	} else if m := s.metrics; m != nil {
		m.redisUp.Set(0)
	}
	s.redis.handle.Set(s.redis.conn)
}

// closeAfter closes what an old snapshot held once the requests still running on it had grace.
func closeAfter(grace time.Duration, close func()) {
	time.Sleep(grace)
	close()
}

// redisCache is filters.SharedCache on the snapshot's Redis handle: the Conn in use when each
// command runs, so a reload that changes the redis block moves the caches with it.
type redisCache struct{ h *redisconn.Handle }

func (r redisCache) Get(key string) ([]byte, error) {
	if c := r.h.Conn(); c != nil {
		return c.Get(key)
	}
	return nil, redisconn.ErrUnavailable
}

func (r redisCache) Set(key string, value []byte, ttl time.Duration) error {
	if c := r.h.Conn(); c != nil {
		return c.Set(key, value, ttl)
	}
	return redisconn.ErrUnavailable
}

func (r redisCache) DeletePrefix(prefix string) (int, error) {
	if c := r.h.Conn(); c != nil {
		return c.DeletePrefix(prefix)
	}
	return 0, redisconn.ErrUnavailable
}

// sharedCache is filters.Env.SharedCache for a config with a redis block, nil without one.
func (c *compiler) sharedCache(s *Snapshot) filters.SharedCache {
	if c.cfg.Redis == nil {
		return nil
	}
	return redisCache{s.redis.handle}
}
