// Package basicauth is the `basic_auth` filter: HTTP Basic authentication (RFC 7617) against bcrypt
// password hashes, with a bounded cache of recent successful checks and a per-client limit on failed
// ones.
package basicauth

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/valyala/fasthttp"
	"golang.org/x/crypto/bcrypt"

	"github.com/weir-gateway/weir/filters"
)

// Config is what the YAML says.
type Config struct {
	// Users maps user names to bcrypt hashes ($2a$, $2b$ or $2y$, as htpasswd -B writes them).
	Users map[string]string `yaml:"users"`
	// UsersFile is an htpasswd file of name:hash lines (bcrypt only), relative to the config file,
	// read again at every reload.
	UsersFile string `yaml:"users_file"`
	// Realm is named in the WWW-Authenticate field of a 401.
	Realm string `yaml:"realm" default:"weir"`
	// HideCredentials removes the Authorization field before the request goes upstream.
	HideCredentials bool `yaml:"hide_credentials" default:"true"`
	// CacheTTL is how long a successful check is remembered, so that a client sending the same
	// credentials again does not pay for bcrypt (tens of milliseconds by design) every time. 0s turns
	// the cache off.
	CacheTTL time.Duration `yaml:"cache_ttl" default:"1m"`
	// MaxCached bounds the cache: when it is full, further successes are not remembered until
	// entries expire.
	MaxCached int `yaml:"max_cached" default:"10000"`
	// MaxFailures failed checks per FailureWindow are allowed per client address (IPv6 by /64);
	// past that the client gets 429 without a check until the window refills. Failures are never
	// cached.
	MaxFailures   int           `yaml:"max_failures" default:"10"`
	FailureWindow time.Duration `yaml:"failure_window" default:"1m"`
}

// SourceFiles implements filters.FileSettings.
func (c Config) SourceFiles() []string { return []string{c.UsersFile} }

// Filter is a compiled basic_auth filter.
type Filter struct {
	users     map[string]user
	challenge []byte
	hide      bool
	now       func() time.Time
	failures  *filters.ClientLimiter
	cache     *cache
}

type user struct {
	name []byte // the consumer
	hash []byte
}

// New validates cfg and builds the filter.
func New(cfg Config, env filters.Env) (*Filter, error) {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, &filters.ConfigError{Field: field, Msg: fmt.Sprintf(format, args...)})
	}
	f := &Filter{users: map[string]user{}, hide: cfg.HideCredentials, now: env.Now}
	add := func(field, name, hash string) {
		switch {
		case !filters.ConsumerName(name) || name == "":
			bad(field, "user name %q: letters, digits and -_.@: only (it is sent upstream as X-Consumer)", name)
		case !bcryptHash(hash):
			bad(field, "the hash of %q is not a bcrypt hash ($2y$...: htpasswd -nbB USER PASSWORD makes one)", name)
		default:
			if _, dup := f.users[name]; dup {
				bad(field, "user %q is declared twice", name)
			}
			f.users[name] = user{name: []byte(name), hash: []byte(hash)}
		}
	}
	names := make([]string, 0, len(cfg.Users))
	for n := range cfg.Users {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		add("users."+n, n, cfg.Users[n])
	}
	if cfg.UsersFile != "" {
		if err := readUsersFile(env.Resolve(cfg.UsersFile), func(line int, name, hash string) {
			add(fmt.Sprintf("users_file line %d", line), name, hash)
		}); err != nil {
			bad("users_file", "%v", err)
		}
	}
	if len(errs) == 0 && len(f.users) == 0 {
		bad("users", "no user is declared: list users or name a users_file")
	}
	if err := filters.CheckRealm(cfg.Realm); err != nil {
		errs = append(errs, err)
	}
	if cfg.CacheTTL < 0 {
		bad("cache_ttl", "must be 0s (no cache) or more")
	}
	if cfg.MaxCached < 1 {
		bad("max_cached", "must be 1 or more")
	}
	if cfg.MaxFailures < 1 {
		bad("max_failures", "must be 1 or more")
	}
	if cfg.FailureWindow <= 0 {
		bad("failure_window", "must be more than zero")
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	f.challenge = []byte(`Basic realm="` + cfg.Realm + `", charset="UTF-8"`)
	f.failures = filters.NewClientLimiter(float64(cfg.MaxFailures)/cfg.FailureWindow.Seconds(), cfg.MaxFailures, 100000)
	if cfg.CacheTTL > 0 {
		f.cache = newCache(cfg.CacheTTL, cfg.MaxCached)
	}
	return f, nil
}

func bcryptHash(h string) bool {
	if _, err := bcrypt.Cost([]byte(h)); err != nil {
		return false
	}
	return strings.HasPrefix(h, "$2a$") || strings.HasPrefix(h, "$2b$") || strings.HasPrefix(h, "$2y$")
}

func readUsersFile(file string, add func(line int, name, hash string)) error {
	data, err := os.ReadFile(file)
	if err != nil {
		return fmt.Errorf("cannot read it: %v", err)
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name, hash, ok := strings.Cut(line, ":")
		if !ok {
			return fmt.Errorf("%s:%d: want name:bcrypt-hash, as htpasswd -B writes", file, n)
		}
		add(n, name, hash)
	}
	return sc.Err()
}

// Wrap implements filters.Filter.
func (f *Filter) Wrap(next filters.Handler) filters.Handler { return &step{Filter: f, next: next} }

type step struct {
	*Filter
	next filters.Handler
}

func (s *step) Serve(x *filters.Exchange) {
	h := &x.Ctx.Request.Header
	var buf [512]byte
	name, password, ok := credentials(buf[:], h.Peek(fasthttp.HeaderAuthorization))
	if !ok {
		s.refuse(x, "authentication required")
		return
	}
	now := s.now()
	u, known := s.users[string(name)]
	var key [sha256.Size]byte
	cached := false
	if s.cache != nil && known {
		key = s.cache.key(name, password)
		cached = s.cache.has(key, now)
	}
	if !cached {
		if !s.failures.Allowed(x, now) {
			x.Reject(fasthttp.StatusTooManyRequests, "too many failed authentication attempts")
			return
		}
		// An unknown user is checked against a fixed hash too: the answer takes as long as for a
		// known one with a wrong password, so timing does not tell which user names exist.
		hash := unknownUserHash
		if known {
			hash = u.hash
		}
		// The clone keeps buf on the stack: bcrypt's use of its argument would move it to the heap.
		if bcrypt.CompareHashAndPassword(hash, bytes.Clone(password)) != nil || !known {
			s.failures.Take(x, now)
			s.refuse(x, "invalid credentials")
			return
		}
		if s.cache != nil {
			s.cache.add(key, now)
		}
	}
	if s.hide {
		h.Del(fasthttp.HeaderAuthorization)
	}
	x.Consumer = u.name
	s.next.Serve(x)
}

func (s *step) refuse(x *filters.Exchange, reason string) {
	x.Ctx.Response.Header.SetBytesV(fasthttp.HeaderWWWAuthenticate, s.challenge)
	x.Reject(fasthttp.StatusUnauthorized, reason)
}

// unknownUserHash is checked for user names that do not exist (cost 10, like htpasswd -B).
var unknownUserHash, _ = bcrypt.GenerateFromPassword([]byte("weir: no such user"), 10)

// credentials decodes "Basic base64(name:password)" into buf; name and password point into it.
// Credentials longer than buf are refused.
func credentials(buf, auth []byte) (name, password []byte, ok bool) {
	const prefix = "basic "
	if len(auth) <= len(prefix) || !bytes.EqualFold(auth[:len(prefix)], []byte(prefix)) {
		return nil, nil, false
	}
	enc := bytes.TrimSpace(auth[len(prefix):])
	if base64.StdEncoding.DecodedLen(len(enc)) > len(buf) {
		return nil, nil, false
	}
	n, err := base64.StdEncoding.Decode(buf, enc)
	if err != nil {
		return nil, nil, false
	}
	dec := buf[:n]
	i := bytes.IndexByte(dec, ':')
	if i < 0 {
		return nil, nil, false
	}
	return dec[:i:i], dec[i+1:], true
}

// cache remembers recently verified credentials by a keyed digest (never the password), each until
// ttl after its check. It is bounded by max entries; expired entries are dropped when it fills.
type cache struct {
	ttl    time.Duration
	max    int
	secret [32]byte // keys the digests: they cannot be precomputed, nor matched across processes
	mu     sync.RWMutex
	until  map[[sha256.Size]byte]int64 // Unix ns
}

func newCache(ttl time.Duration, max int) *cache {
	c := &cache{ttl: ttl, max: max, until: make(map[[sha256.Size]byte]int64)}
	_, _ = rand.Read(c.secret[:])
	return c
}

func (c *cache) key(name, password []byte) [sha256.Size]byte {
	var buf [32 + 512]byte
	b := append(append(append(append(buf[:0], c.secret[:]...), name...), 0), password...)
	return sha256.Sum256(b)
}

func (c *cache) has(k [sha256.Size]byte, now time.Time) bool {
	c.mu.RLock()
	until, ok := c.until[k]
	c.mu.RUnlock()
	return ok && now.UnixNano() < until
}

func (c *cache) add(k [sha256.Size]byte, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.until) >= c.max {
		for key, until := range c.until {
			if now.UnixNano() >= until {
				delete(c.until, key)
			}
		}
		if len(c.until) >= c.max {
			return
		}
	}
	c.until[k] = now.Add(c.ttl).UnixNano()
}
