package filters

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/valyala/fasthttp"
	"gopkg.in/yaml.v3"
)

// APIKeyConfig is the `api_key` filter: the request must carry one of the declared keys.
type APIKeyConfig struct {
	// From is where the key is read: "header:NAME" or "query:NAME".
	From string `yaml:"from" default:"header:X-API-Key"`
	// Keys are the accepted keys as SHA-256 digests (hex), each with the consumer it identifies. The
	// keys themselves never appear in the config.
	Keys []APIKeyEntry `yaml:"keys"`
	// KeysFile is a YAML file holding more entries, a list of the same {consumer, sha256} mappings;
	// relative to the config file, read again at every reload.
	KeysFile string `yaml:"keys_file"`
	// HideCredentials removes the key from the request before it goes upstream.
	HideCredentials bool `yaml:"hide_credentials" default:"true"`
	// Realm is named in the WWW-Authenticate field of a 401.
	Realm string `yaml:"realm" default:"weir"`
}

// APIKeyEntry is one accepted key.
type APIKeyEntry struct {
	Consumer string `yaml:"consumer"`
	SHA256   string `yaml:"sha256"`
}

// SourceFiles implements FileSettings: a changed keys file makes a new filter.
func (c APIKeyConfig) SourceFiles() []string { return []string{c.KeysFile} }

// FileSettings is implemented by filter settings that name files: the gateway reads them into the
// filter's identity, so that a reload which changes only a file's content still rebuilds the filter.
type FileSettings interface{ SourceFiles() []string }

// APIKey is a compiled api_key filter.
type APIKey struct {
	header, query string
	keys          map[[sha256.Size]byte][]byte // digest -> consumer
	hide          bool
	challenge     []byte // the WWW-Authenticate value
}

// NewAPIKey validates cfg and builds the filter.
func NewAPIKey(cfg APIKeyConfig, env Env) (*APIKey, error) {
	var errs []error
	a := &APIKey{keys: map[[sha256.Size]byte][]byte{}, hide: cfg.HideCredentials}
	switch {
	case strings.HasPrefix(cfg.From, "header:") && IsToken(cfg.From[len("header:"):]):
		a.header = cfg.From[len("header:"):]
	case strings.HasPrefix(cfg.From, "query:") && cfg.From != "query:":
		a.query = cfg.From[len("query:"):]
	default:
		errs = append(errs, fieldErr("from", "unknown source %q; use header:NAME or query:NAME", cfg.From))
	}
	if err := CheckRealm(cfg.Realm); err != nil {
		errs = append(errs, err)
	}
	add := func(field string, i int, e APIKeyEntry) {
		digest, err := hex.DecodeString(e.SHA256)
		switch {
		case e.Consumer == "" || !ConsumerName(e.Consumer):
			errs = append(errs, fieldErr(fmt.Sprintf("%s[%d].consumer", field, i),
				"a consumer name is required: letters, digits and -_.@: (it is sent upstream as X-Consumer)"))
		case err != nil || len(digest) != sha256.Size:
			errs = append(errs, fieldErr(fmt.Sprintf("%s[%d].sha256", field, i),
				"must be the key's SHA-256 digest as 64 hex digits (printf %%s \"$KEY\" | sha256sum)"))
		default:
			d := [sha256.Size]byte(digest)
			if _, dup := a.keys[d]; dup {
				errs = append(errs, fieldErr(fmt.Sprintf("%s[%d].sha256", field, i), "this key is listed twice"))
			}
			a.keys[d] = []byte(e.Consumer)
		}
	}
	for i, e := range cfg.Keys {
		add("keys", i, e)
	}
	if cfg.KeysFile != "" {
		file := env.Resolve(cfg.KeysFile)
		entries, err := readKeysFile(file)
		if err != nil {
			errs = append(errs, fieldErr("keys_file", "%v", err))
		}
		for i, e := range entries {
			add("keys_file "+filepath.Base(file)+": entry", i, e)
		}
	}
	if len(errs) == 0 && len(a.keys) == 0 {
		errs = append(errs, fieldErr("keys", "no key is declared: list keys or name a keys_file"))
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	a.challenge = []byte(`APIKey realm="` + cfg.Realm + `"`)
	return a, nil
}

func readKeysFile(file string) ([]APIKeyEntry, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("cannot read it: %v", err)
	}
	var entries []APIKeyEntry
	dec := yaml.NewDecoder(strings.NewReader(string(data)))
	dec.KnownFields(true)
	if err := dec.Decode(&entries); err != nil {
		return nil, fmt.Errorf("%s: want a YAML list of {consumer: NAME, sha256: HEX}: %v", file, err)
	}
	return entries, nil
}

// Accepts reports whether key is one of the filter's keys, and where a request must carry it
// ("header:NAME" or "query:NAME"); for tools that show a working request (weir demo).
func (a *APIKey) Accepts(key string) (from string, ok bool) {
	_, ok = a.keys[sha256.Sum256([]byte(key))]
	if a.header != "" {
		return "header:" + a.header, ok
	}
	return "query:" + a.query, ok
}

// Wrap implements Filter.
func (a *APIKey) Wrap(next Handler) Handler { return &apiKeyStep{APIKey: a, next: next} }

type apiKeyStep struct {
	*APIKey
	next Handler
}

func (s *apiKeyStep) Serve(x *Exchange) {
	req := &x.Ctx.Request
	var key []byte
	if s.header != "" {
		key = req.Header.Peek(s.header)
	} else {
		key = req.URI().QueryArgs().Peek(s.query)
	}
	// The presented key is hashed and its digest looked up, never the key compared: what the lookup's
	// timing could reveal is about digests, which an attacker cannot steer toward a valid key (that
	// would take SHA-256 preimages). It is the same guarantee a constant-time comparison gives, for
	// any number of keys.
	consumer, ok := s.keys[sha256.Sum256(key)]
	if len(key) == 0 || !ok {
		x.Ctx.Response.Header.SetBytesV(fasthttp.HeaderWWWAuthenticate, s.challenge)
		reason := "invalid API key"
		if len(key) == 0 {
			reason = "API key required"
		}
		x.Reject(fasthttp.StatusUnauthorized, reason)
		return
	}
	if s.hide {
		if s.header != "" {
			req.Header.Del(s.header)
		} else {
			req.URI().QueryArgs().Del(s.query)
		}
	}
	x.Consumer = consumer
	s.next.Serve(x)
}

// ConsumerName reports whether s can name a consumer: it is sent as a header value and logged as is.
func ConsumerName(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte("-_.@:", c) >= 0:
		default:
			return false
		}
	}
	return len(s) <= 64
}

// CheckRealm: a realm is written inside a quoted string of WWW-Authenticate.
func CheckRealm(realm string) error {
	if realm == "" || strings.ContainsAny(realm, "\"\\\r\n") {
		return fieldErr("realm", "must be a non-empty name without quotes or backslashes")
	}
	return nil
}
