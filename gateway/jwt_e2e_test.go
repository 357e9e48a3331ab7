package gateway

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	gojwt "github.com/golang-jwt/jwt/v5"
)

// JWT end to end: a JWKS served by a real HTTP server the test controls, tokens signed in the test
// with generated keys, requests through a real gateway to a recording backend.

// signer is one key pair with its kid and JWS algorithm.
type signer struct {
	kid    string
	method gojwt.SigningMethod
	priv   crypto.Signer
}

func newSigner(t testing.TB, kid, alg string) signer {
	t.Helper()
	var priv crypto.Signer
	var err error
	switch alg {
	case "RS256":
		priv, err = rsa.GenerateKey(rand.Reader, 2048)
	case "ES256":
		priv, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case "EdDSA":
		_, priv, err = ed25519.GenerateKey(rand.Reader)
	}
	if err != nil {
		t.Fatal(err)
	}
	return signer{kid: kid, method: gojwt.GetSigningMethod(alg), priv: priv}
}

func (s signer) jwk() map[string]string {
	b64 := func(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }
	switch pub := s.priv.Public().(type) {
	case *rsa.PublicKey:
		return map[string]string{"kty": "RSA", "kid": s.kid, "use": "sig", "n": b64(pub.N.Bytes()), "e": b64(big.NewInt(int64(pub.E)).Bytes())}
	case *ecdsa.PublicKey:
		raw, _ := pub.Bytes() // 0x04 || X || Y
		return map[string]string{"kty": "EC", "kid": s.kid, "crv": "P-256", "x": b64(raw[1:33]), "y": b64(raw[33:])}
	case ed25519.PublicKey:
		return map[string]string{"kty": "OKP", "kid": s.kid, "crv": "Ed25519", "x": b64(pub)}
	}
	return nil
}

// token signs claims (with iss, aud, exp and iat filled in unless given) under s's kid.
func (s signer) token(t testing.TB, claims gojwt.MapClaims) string {
	t.Helper()
	full := gojwt.MapClaims{"iss": "https://idp.test/", "aud": "orders-api", "sub": "user-1",
		"exp": time.Now().Add(time.Hour).Unix(), "iat": time.Now().Unix()}
	for k, v := range claims {
		if v == nil {
			delete(full, k)
		} else {
			full[k] = v
		}
	}
	tok := gojwt.NewWithClaims(s.method, full)
	tok.Header["kid"] = s.kid
	out, err := tok.SignedString(s.priv)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// jwksServer serves the public keys of the signers it holds; fetches counts its requests.
type jwksServer struct {
	mu      sync.Mutex
	keys    []signer
	down    bool
	fetches atomic.Int64
	url     string
}

func startJWKS(t *testing.T, keys ...signer) *jwksServer {
	j := &jwksServer{keys: keys}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		j.fetches.Add(1)
		j.mu.Lock()
		defer j.mu.Unlock()
		if j.down {
			http.Error(w, "down", http.StatusInternalServerError)
			return
		}
		var set struct {
			Keys []map[string]string `json:"keys"`
		}
		for _, k := range j.keys {
			set.Keys = append(set.Keys, k.jwk())
		}
		w.Header().Set("Content-Type", "application/jwk-set+json")
		_ = json.NewEncoder(w).Encode(set)
	}))
	t.Cleanup(srv.Close)
	j.url = srv.URL + "/jwks.json"
	return j
}

func (j *jwksServer) set(down bool, keys ...signer) {
	j.mu.Lock()
	j.down, j.keys = down, keys
	j.mu.Unlock()
}

func jwtRoute(b, jwks, extra string) string {
	return filterConfig(b, fmt.Sprintf(`      - jwt:
          jwks_url: %s
          issuer: https://idp.test/
          audiences: [orders-api]
          required_claims: {scope: [orders:read]}
          forward_claims: {sub: X-User-Id, email: X-User-Email}
%s`, jwks, extra))
}

func bearer(tok string) []string { return []string{"Authorization", "Bearer " + tok} }

// waitKeys waits for the gateway's first JWKS fetch, so the test starts with keys loaded.
func waitKeys(t *testing.T, gw string, tok string) {
	t.Helper()
	waitFor(t, "the JWKS to be loaded", func() bool {
		return request(t, gw, "GET", "/", bearer(tok)...).StatusCode() != 503
	})
}

func TestJWT_ValidTokensPassAndForwardClaims(t *testing.T) {
	b := startRecordingBackend(t, "b", nil)
	signers := []signer{newSigner(t, "rsa", "RS256"), newSigner(t, "ec", "ES256"), newSigner(t, "ed", "EdDSA")}
	jwks := startJWKS(t, signers...)
	gw, _ := startGateway(t, jwtRoute(b.Addr, jwks.url, ""))
	for _, s := range signers {
		tok := s.token(t, gojwt.MapClaims{"sub": "user-" + s.kid, "email": s.kid + "@example.com", "scope": "orders:read orders:write"})
		waitKeys(t, gw, tok)
		b.reset()
		header := append(bearer(tok), "X-User-Id", "spoofed", "X-User-Email", "spoofed@evil")
		for range 2 { // the second time from the verified-token cache
			expectStatus(t, request(t, gw, "GET", "/orders", header...), 200, s.method.Alg())
			got := b.take(t)
			if got.Header.Values("X-User-Id")[0] != "user-"+s.kid || len(got.Header.Values("X-User-Id")) != 1 ||
				got.Header.Get("X-User-Email") != s.kid+"@example.com" || got.Header.Get("X-Consumer") != "user-"+s.kid {
				t.Errorf("%s: upstream got X-User-Id %q, X-User-Email %q, X-Consumer %q", s.method.Alg(),
					got.Header.Values("X-User-Id"), got.Header.Get("X-User-Email"), got.Header.Get("X-Consumer"))
			}
			if got.Header.Get("Authorization") == "" {
				t.Errorf("%s: the token was not passed on (the upstream may want it)", s.method.Alg())
			}
		}
	}
	// A token without email forwards no X-User-Email, and a client's own is still removed.
	tok := signers[0].token(t, gojwt.MapClaims{"scope": "orders:read"})
	expectStatus(t, request(t, gw, "GET", "/", append(bearer(tok), "X-User-Email", "spoofed@evil")...), 200, "no email claim")
	if v := b.take(t).Header.Get("X-User-Email"); v != "" {
		t.Errorf("X-User-Email %q reached the upstream", v)
	}
}

func TestJWT_BadTokensAre401AndMissingScopeIs403(t *testing.T) {
	b := startRecordingBackend(t, "b", nil)
	rs := newSigner(t, "rsa", "RS256")
	jwks := startJWKS(t, rs)
	gw, _ := startGateway(t, jwtRoute(b.Addr, jwks.url, "          leeway: 5s\n"))
	good := rs.token(t, gojwt.MapClaims{"scope": "orders:read"})
	waitKeys(t, gw, good)
	b.reset()

	other := newSigner(t, "rsa", "RS256") // same kid, another key: a forged signature
	pubDER, _ := x509.MarshalPKIXPublicKey(rs.priv.Public())
	hs := gojwt.NewWithClaims(gojwt.SigningMethodHS256, gojwt.MapClaims{"iss": "https://idp.test/", "aud": "orders-api",
		"exp": time.Now().Add(time.Hour).Unix(), "scope": "orders:read"})
	hs.Header["kid"] = "rsa"
	confused, _ := hs.SignedString(pubDER) // HMAC "keyed" with the RSA public key
	none := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","typ":"JWT","kid":"rsa"}`)) + "." +
		strings.Split(good, ".")[1] + "."
	for name, tok := range map[string]string{
		"expired":                       rs.token(t, gojwt.MapClaims{"scope": "orders:read", "exp": time.Now().Add(-time.Minute).Unix()}),
		"not yet valid":                 rs.token(t, gojwt.MapClaims{"scope": "orders:read", "nbf": time.Now().Add(time.Minute).Unix()}),
		"issued in a future":            rs.token(t, gojwt.MapClaims{"scope": "orders:read", "iat": time.Now().Add(time.Minute).Unix()}),
		"no exp":                        rs.token(t, gojwt.MapClaims{"scope": "orders:read", "exp": nil}),
		"wrong issuer":                  rs.token(t, gojwt.MapClaims{"scope": "orders:read", "iss": "https://evil.test/"}),
		"wrong audience":                rs.token(t, gojwt.MapClaims{"scope": "orders:read", "aud": "billing-api"}),
		"bad signature":                 other.token(t, gojwt.MapClaims{"scope": "orders:read"}),
		"alg none":                      none,
		"HS256 with the RSA public key": confused,
		"garbage":                       "not.a.token",
	} {
		resp := request(t, gw, "GET", "/", bearer(tok)...)
		expectStatus(t, resp, 401, name)
		if got := string(resp.Header.Peek("WWW-Authenticate")); got != `Bearer realm="weir", error="invalid_token"` {
			t.Errorf("%s: WWW-Authenticate %q", name, got)
		}
	}
	resp := request(t, gw, "GET", "/")
	expectStatus(t, resp, 401, "no token")
	if got := string(resp.Header.Peek("WWW-Authenticate")); got != `Bearer realm="weir"` {
		t.Errorf("no token: WWW-Authenticate %q", got)
	}
	resp = request(t, gw, "GET", "/", bearer(rs.token(t, gojwt.MapClaims{"scope": "orders:write"}))...)
	expectStatus(t, resp, 403, "without the required scope")
	if got := string(resp.Header.Peek("WWW-Authenticate")); !strings.Contains(got, `error="insufficient_scope"`) {
		t.Errorf("403: WWW-Authenticate %q", got)
	}
	// Within the leeway, an expired token still passes.
	expectStatus(t, request(t, gw, "GET", "/", bearer(rs.token(t, gojwt.MapClaims{"scope": "orders:read",
		"exp": time.Now().Add(-2 * time.Second).Unix()}))...), 200, "expired 2 s ago, leeway 5 s")
	b.take(t)
	b.expectNone(t)
}

// A token signed by a new key is accepted after one refetch; a flood of tokens naming unknown kids
// refetches at most once per jwks_min_refresh; a key removed from the set voids the tokens it had
// verified, cached or not.
func TestJWT_KeyRotationRefetchesAtMostOncePerMinRefresh(t *testing.T) {
	b := startRecordingBackend(t, "b", nil)
	old, next := newSigner(t, "k1", "ES256"), newSigner(t, "k2", "ES256")
	jwks := startJWKS(t, old)
	gw, _ := startGateway(t, jwtRoute(b.Addr, jwks.url, "          jwks_min_refresh: 300ms\n          jwks_refresh: 1h\n"))
	oldTok := old.token(t, gojwt.MapClaims{"scope": "orders:read"})
	waitKeys(t, gw, oldTok)
	expectStatus(t, request(t, gw, "GET", "/", bearer(oldTok)...), 200, "old key")
	time.Sleep(350 * time.Millisecond) // past min_refresh since the first fetch
	before := jwks.fetches.Load()

	jwks.set(false, old, next)
	expectStatus(t, request(t, gw, "GET", "/", bearer(next.token(t, gojwt.MapClaims{"scope": "orders:read"}))...), 200, "rotated-in key")
	if n := jwks.fetches.Load() - before; n != 1 {
		t.Fatalf("the new kid caused %d fetches, want 1", n)
	}
	for i := range 50 {
		stranger := newSigner(t, fmt.Sprint("unknown-", i), "ES256")
		expectStatus(t, request(t, gw, "GET", "/", bearer(stranger.token(t, gojwt.MapClaims{"scope": "orders:read"}))...), 401, "unknown kid")
	}
	if n := jwks.fetches.Load() - before; n != 1 {
		t.Fatalf("50 unknown kids within min_refresh caused %d more fetches, want none", n-1)
	}

	// k1 leaves the set; once the set is fetched again (the next unknown kid after min_refresh),
	// k1's tokens are refused, the one in the cache too.
	jwks.set(false, next)
	time.Sleep(350 * time.Millisecond)
	expectStatus(t, request(t, gw, "GET", "/", bearer(newSigner(t, "unknown-x", "ES256").token(t, nil))...), 401, "unknown kid")
	expectStatus(t, request(t, gw, "GET", "/", bearer(oldTok)...), 401, "a token of the removed key")
}

func TestJWT_JWKSDownKeepsTheLastKeysAndNoKeysYetIs503(t *testing.T) {
	b := startRecordingBackend(t, "b", nil)
	rs := newSigner(t, "rsa", "RS256")
	jwks := startJWKS(t, rs)
	gw, _ := startGateway(t, jwtRoute(b.Addr, jwks.url, "          jwks_refresh: 50ms\n          jwks_min_refresh: 50ms\n          max_cached_tokens: 0\n"))
	tok := rs.token(t, gojwt.MapClaims{"scope": "orders:read"})
	waitKeys(t, gw, tok)
	jwks.set(true, rs)
	before := jwks.fetches.Load()
	waitFor(t, "failed refreshes", func() bool { return jwks.fetches.Load() >= before+3 })
	expectStatus(t, request(t, gw, "GET", "/", bearer(tok)...), 200, "JWKS server failing: the last good keys")

	// A set that was never fetched: 503 with Retry-After, not 401.
	dead := startJWKS(t, rs)
	dead.set(true)
	gw2, _ := startGateway(t, jwtRoute(b.Addr, dead.url, ""))
	resp := request(t, gw2, "GET", "/", bearer(tok)...)
	expectStatus(t, resp, 503, "no keys loaded yet")
	if string(resp.Header.Peek("Retry-After")) != "1" {
		t.Errorf("503 without Retry-After")
	}
}

func TestJWT_TokenFromACookieAndKeysFromAFile(t *testing.T) {
	b := startRecordingBackend(t, "b", nil)
	ed := newSigner(t, "ed", "EdDSA")
	set, _ := json.Marshal(map[string]any{"keys": []map[string]string{ed.jwk()}})
	file := writeConfigFile(t, string(set)) // any file name does
	gw, _ := startGateway(t, filterConfig(b.Addr, fmt.Sprintf(`      - jwt:
          jwks_file: %s
          from: [header:Authorization, cookie:session]
          consumer_claim: email
`, file)))
	tok := ed.token(t, gojwt.MapClaims{"email": "ann@example.com"})
	expectStatus(t, request(t, gw, "GET", "/", "Cookie", "theme=dark; session="+tok), 200, "token in the session cookie")
	if got := b.take(t).Header.Get("X-Consumer"); got != "ann@example.com" {
		t.Errorf("X-Consumer %q, want the email claim", got)
	}
	expectStatus(t, request(t, gw, "GET", "/", "Cookie", "theme=dark"), 401, "no session cookie")
}

// Refused tokens whose signature was checked are remembered, but never past what made them
// refusals: a forged token is refused again from the cache, and passes once its kid's key becomes
// the one that signed it; a token refused only for its nbf passes when the clock reaches nbf.
func TestJWT_RefusalsAreRememberedOnlyWhileTheyHold(t *testing.T) {
	b := startRecordingBackend(t, "b", nil)
	key, other := newSigner(t, "k1", "ES256"), newSigner(t, "k1", "ES256") // one kid, two keys
	jwks := startJWKS(t, key)
	gw, _ := startGateway(t, jwtRoute(b.Addr, jwks.url, "          leeway: 0s\n          jwks_min_refresh: 300ms\n          jwks_refresh: 1h\n"))
	waitKeys(t, gw, key.token(t, gojwt.MapClaims{"scope": "orders:read"}))
	b.reset()

	forged := other.token(t, gojwt.MapClaims{"scope": "orders:read"})
	notYet := key.token(t, gojwt.MapClaims{"scope": "orders:read", "nbf": time.Now().Add(2 * time.Second).Unix()})
	for i := range 3 {
		expectStatus(t, request(t, gw, "GET", "/", bearer(forged)...), 401, fmt.Sprint("forged, request ", i+1))
		expectStatus(t, request(t, gw, "GET", "/", bearer(notYet)...), 401, fmt.Sprint("before nbf, request ", i+1))
	}

	// k1 becomes the other key: fetched again for the next unknown kid after min_refresh.
	jwks.set(false, other)
	time.Sleep(350 * time.Millisecond)
	before := jwks.fetches.Load()
	expectStatus(t, request(t, gw, "GET", "/", bearer(newSigner(t, "unknown", "ES256").token(t, nil))...), 401, "unknown kid")
	if jwks.fetches.Load() == before {
		t.Fatal("an unknown kid after min_refresh did not fetch the set")
	}
	expectStatus(t, request(t, gw, "GET", "/", bearer(forged)...), 200, "the refused token, now signed by k1's key")
	b.take(t)

	// notYet was signed by the key that left; one signed by the current key, refused for its nbf
	// until then, passes after it.
	nbf := time.Now().Add(2 * time.Second).Unix() // at least a second away
	notYet = other.token(t, gojwt.MapClaims{"scope": "orders:read", "nbf": nbf})
	expectStatus(t, request(t, gw, "GET", "/", bearer(notYet)...), 401, "before nbf")
	time.Sleep(time.Until(time.Unix(nbf, 0)) + 50*time.Millisecond)
	expectStatus(t, request(t, gw, "GET", "/", bearer(notYet)...), 200, "after nbf")
	b.take(t)
	b.expectNone(t)
}
