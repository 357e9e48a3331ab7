package jwt

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
)

// key is one verification key of a JWKS.
type key struct {
	pub crypto.PublicKey
	alg string // the JWK's own "alg", if it names one: the token must use exactly that
}

// keys is one version of a JWKS, by kid. Keys without a kid are under "".
type keys map[string]key

// parseJWKS reads a JWK Set (RFC 7517), keeping the signature keys weir can verify with: RSA, EC
// (P-256, P-384, P-521) and OKP Ed25519. Other keys (encryption keys, symmetric ones, unknown
// types) are skipped; a set with no usable key is an error.
func parseJWKS(data []byte) (keys, error) {
	var set struct {
		Keys []struct {
			Kty, Kid, Use, Alg, Crv, N, E, X, Y string
		} `json:"keys"`
	}
	if err := json.Unmarshal(data, &set); err != nil {
		return nil, fmt.Errorf("not a JWK Set: %v", err)
	}
	out := keys{}
	for i, k := range set.Keys {
		if k.Use != "" && k.Use != "sig" {
			continue
		}
		pub, err := publicKey(k.Kty, k.Crv, k.N, k.E, k.X, k.Y)
		if err != nil {
			return nil, fmt.Errorf("key %d (kid %q): %v", i, k.Kid, err)
		}
		if pub != nil {
			out[k.Kid] = key{pub: pub, alg: k.Alg}
		}
	}
	if len(out) == 0 {
		return nil, errors.New("the set holds no RSA, EC or Ed25519 signature key")
	}
	return out, nil
}

func publicKey(kty, crv, n, e, x, y string) (crypto.PublicKey, error) {
	b64 := base64.RawURLEncoding
	switch kty {
	case "RSA":
		nb, err1 := b64.DecodeString(n)
		eb, err2 := b64.DecodeString(e)
		if err1 != nil || err2 != nil || len(nb) < 256 || len(eb) == 0 || len(eb) > 4 {
			return nil, errors.New("an RSA key needs n (2048 bits or more) and e, base64url")
		}
		exp := 0
		for _, b := range eb {
			exp = exp<<8 | int(b)
		}
		return &rsa.PublicKey{N: new(big.Int).SetBytes(nb), E: exp}, nil
	case "EC":
		var curve elliptic.Curve
		switch crv {
		case "P-256":
			curve = elliptic.P256()
		case "P-384":
			curve = elliptic.P384()
		case "P-521":
			curve = elliptic.P521()
		default:
			return nil, nil // a curve weir does not verify with
		}
		xb, err1 := b64.DecodeString(x)
		yb, err2 := b64.DecodeString(y)
		size := (curve.Params().BitSize + 7) / 8
		if err1 != nil || err2 != nil || len(xb) != size || len(yb) != size {
			return nil, fmt.Errorf("an %s key needs x and y of %d bytes, base64url", crv, size)
		}
		// Through the uncompressed point encoding, which checks that the point is on the curve.
		point := append(append([]byte{4}, xb...), yb...)
		pub, err := ecdsa.ParseUncompressedPublicKey(curve, point)
		if err != nil {
			return nil, fmt.Errorf("the %s point is not on the curve", crv)
		}
		return pub, nil
	case "OKP":
		if crv != "Ed25519" {
			return nil, nil
		}
		xb, err := b64.DecodeString(x)
		if err != nil || len(xb) != ed25519.PublicKeySize {
			return nil, errors.New("an Ed25519 key needs x of 32 bytes, base64url")
		}
		return ed25519.PublicKey(xb), nil
	}
	return nil, nil
}

// generation is one version of a set's keys with its number, published together: a verdict names the
// generation of the very key that checked it, which two separate loads (keys, then a counter) could
// not promise while a refresh stores a new version between them.
type generation struct {
	keys keys
	n    uint64
}

// keySet is one JWKS source (a URL or a file) with its current keys. URL sets live in a process-wide
// registry (setFor), so that config reloads, and every route naming the same URL, share one set and
// one refresher; a set nobody has asked for in a while stops refreshing until it is used again.
type keySet struct {
	source    string
	url       bool
	client    *http.Client
	log       zerolog.Logger
	refresh   time.Duration // background refresh, unless the JWKS's Cache-Control says longer
	minGap    time.Duration // at least this long between fetches made because of an unknown kid
	current   atomic.Pointer[generation]
	fetches   atomic.Int64 // for tests and logs
	lastUsed  atomic.Int64 // Unix ns
	mu        sync.Mutex
	running   bool          // a refresher goroutine is running
	lastFetch time.Time     // when the last fetch started
	inflight  chan struct{} // closed when the fetch under way ends
	err       error         // the last fetch's error, nil after a success
}

var (
	registryMu sync.Mutex
	registry   = map[string]*keySet{}
)

// idleStop: a URL set no request used for this long stops refreshing (it resumes on use).
const idleStop = 30 * time.Minute

// setFor returns the shared set of url, created on first use. refresh and minGap of the latest
// caller win: they are the serving config's.
func setFor(url string, refresh, minGap, timeout time.Duration, log zerolog.Logger) *keySet {
	registryMu.Lock()
	defer registryMu.Unlock()
	ks := registry[url]
	if ks == nil {
		ks = &keySet{source: url, url: true, client: &http.Client{Timeout: timeout}, log: log}
		registry[url] = ks
	}
	ks.mu.Lock()
	ks.refresh, ks.minGap, ks.client.Timeout = refresh, minGap, timeout
	ks.mu.Unlock()
	ks.touch()
	return ks
}

// fileSet reads a JWKS file once: a file changes with the config (it is part of the filter's identity).
func fileSet(path string) (*keySet, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("cannot read it: %v", err)
	}
	k, err := parseJWKS(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %v", path, err)
	}
	ks := &keySet{source: path}
	ks.current.Store(&generation{keys: k, n: 1})
	return ks, nil
}

// touch notes a use and makes sure a URL set's refresher runs.
func (ks *keySet) touch() {
	ks.lastUsed.Store(time.Now().UnixNano())
	if !ks.url {
		return
	}
	ks.mu.Lock()
	defer ks.mu.Unlock()
	if !ks.running {
		ks.running = true
		go ks.refresher()
	}
}

// refresher fetches at once, then every refresh (or after the JWKS response's Cache-Control max-age,
// when it has one, but never sooner than minGap), retrying a failed fetch after minGap, until the set has gone unused for idleStop.
func (ks *keySet) refresher() {
	for {
		wait := ks.fetch()
		if time.Since(time.Unix(0, ks.lastUsed.Load())) > idleStop {
			ks.mu.Lock()
			ks.running = false
			ks.mu.Unlock()
			return
		}
		time.Sleep(wait)
	}
}

// lookup finds kid in the current keys. On a miss it refetches the set, at most once per minGap,
// and waits for that fetch (one fetch however many requests miss at once). ready is false when no
// version of the set has been loaded yet.
func (ks *keySet) lookup(kid string) (k key, gen uint64, found, ready bool) {
	if cur := ks.current.Load(); cur != nil {
		if k, found = cur.keys[kid]; found {
			return k, cur.n, true, true
		}
	}
	if ks.url {
		ks.mu.Lock()
		ch := ks.inflight
		if ch == nil && time.Since(ks.lastFetch) >= ks.minGap {
			ks.mu.Unlock()
			ks.fetch()
		} else {
			ks.mu.Unlock()
			if ch != nil {
				<-ch
			}
		}
	}
	cur := ks.current.Load()
	if cur == nil {
		return key{}, 0, false, false
	}
	k, found = cur.keys[kid]
	return k, cur.n, found, true
}

// fetch gets the set now (or waits for the fetch under way) and returns how long until the next
// background refresh. A failed fetch keeps the keys the set has.
func (ks *keySet) fetch() time.Duration {
	ks.mu.Lock()
	if ch := ks.inflight; ch != nil {
		ks.mu.Unlock()
		<-ch
		return ks.refresh
	}
	ch := make(chan struct{})
	ks.inflight, ks.lastFetch = ch, time.Now()
	refresh, minGap := ks.refresh, ks.minGap
	ks.mu.Unlock()

	k, maxAge, err := ks.get()
	ks.fetches.Add(1)
	wait := refresh
	if err == nil {
		// Only one fetch runs at a time (inflight), so the generation numbers cannot repeat.
		if old := ks.current.Load(); old == nil || !sameKeys(old.keys, k) {
			var n uint64
			if old != nil {
				n = old.n
			}
			ks.current.Store(&generation{keys: k, n: n + 1})
		}
		if maxAge > 0 { // the server says how long its set stays fresh
			wait = max(maxAge, minGap)
		}
	} else {
		wait = minGap
		// Only a change of state is logged: a JWKS server down for an hour is one line, not 120.
		ks.mu.Lock()
		first := ks.err == nil
		ks.mu.Unlock()
		if first {
			ev := ks.log.Error().Str("jwks_url", ks.source).Err(err)
			if ks.current.Load() != nil {
				ev.Msg("JWKS fetch failed; the last good keys stay in use")
			} else {
				ev.Msg("JWKS fetch failed and no keys are loaded yet: requests get 503")
			}
		}
	}
	ks.mu.Lock()
	if err == nil && ks.err != nil {
		ks.log.Info().Str("jwks_url", ks.source).Msg("JWKS fetched again")
	}
	ks.err, ks.inflight = err, nil
	ks.mu.Unlock()
	close(ch)
	return wait
}

// maxJWKSBytes bounds what a JWKS server may send.
const maxJWKSBytes = 1 << 20

func (ks *keySet) get() (keys, time.Duration, error) {
	ctx, cancel := context.WithTimeout(context.Background(), ks.client.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, ks.source, nil)
	if err != nil {
		return nil, 0, err
	}
	req.Header.Set("Accept", "application/jwk-set+json, application/json")
	resp, err := ks.client.Do(req)
	if err != nil {
		return nil, 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, 0, fmt.Errorf("status %d", resp.StatusCode)
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxJWKSBytes+1))
	if err != nil {
		return nil, 0, err
	}
	if len(data) > maxJWKSBytes {
		return nil, 0, fmt.Errorf("the set is larger than %d bytes", maxJWKSBytes)
	}
	k, err := parseJWKS(data)
	return k, maxAge(resp.Header.Get("Cache-Control")), err
}

// maxAge reads Cache-Control's max-age (0 when absent or no-cache/no-store).
func maxAge(cc string) time.Duration {
	for part := range strings.SplitSeq(cc, ",") {
		part = strings.TrimSpace(strings.ToLower(part))
		if part == "no-cache" || part == "no-store" {
			return 0
		}
		if v, ok := strings.CutPrefix(part, "max-age="); ok {
			if s, err := strconv.Atoi(v); err == nil && s > 0 {
				return min(time.Duration(s)*time.Second, 24*time.Hour)
			}
		}
	}
	return 0
}

func sameKeys(a, b keys) bool {
	if len(a) != len(b) {
		return false
	}
	for kid, ka := range a {
		kb, ok := b[kid]
		if !ok || !ka.same(kb) {
			return false
		}
	}
	return true
}

// same: the same public key with the same JWK alg, which narrows the algorithms it verifies.
func (k key) same(o key) bool {
	type equaler interface{ Equal(crypto.PublicKey) bool }
	e, ok := k.pub.(equaler)
	return k.alg == o.alg && ok && e.Equal(o.pub)
}
