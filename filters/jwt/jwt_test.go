package jwt

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"

	gojwt "github.com/golang-jwt/jwt/v5"
	"github.com/valyala/fasthttp"

	"github.com/weir-gateway/weir/filters"
)

func TestParseJWKS(t *testing.T) {
	for name, tc := range map[string]struct {
		set  string
		kids []string
		err  bool
	}{
		"an encryption key and an HMAC key are skipped": {
			set:  `{"keys":[{"kty":"oct","k":"c2VjcmV0","kid":"h"},{"kty":"OKP","crv":"Ed25519","use":"sig","kid":"e","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"},{"kty":"OKP","crv":"Ed25519","use":"enc","kid":"x","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}]}`,
			kids: []string{"e"},
		},
		"an EC point off the curve": {
			set: `{"keys":[{"kty":"EC","crv":"P-256","kid":"p","x":"` + b64(make([]byte, 32)) + `","y":"` + b64(make([]byte, 32)) + `"}]}`,
			err: true,
		},
		"a short RSA modulus": {set: `{"keys":[{"kty":"RSA","kid":"r","n":"AQAB","e":"AQAB"}]}`, err: true},
		"no usable key":       {set: `{"keys":[{"kty":"oct","k":"c2VjcmV0"}]}`, err: true},
		"not JSON":            {set: `<html>`, err: true},
	} {
		k, err := parseJWKS([]byte(tc.set))
		if (err != nil) != tc.err {
			t.Errorf("%s: err %v, want error %v", name, err, tc.err)
			continue
		}
		if len(k) != len(tc.kids) {
			t.Errorf("%s: %d keys, want %v", name, len(k), tc.kids)
		}
		for _, kid := range tc.kids {
			if _, ok := k[kid]; !ok {
				t.Errorf("%s: kid %q missing", name, kid)
			}
		}
	}
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func TestMaxAge(t *testing.T) {
	for cc, want := range map[string]time.Duration{
		"": 0, "max-age=600": 10 * time.Minute, "public, max-age=60, must-revalidate": time.Minute,
		"no-store, max-age=60": 0, "max-age=x": 0, "max-age=999999": 24 * time.Hour,
	} {
		if got := maxAge(cc); got != want {
			t.Errorf("maxAge(%q) = %v, want %v", cc, got, want)
		}
	}
}

func TestHolds(t *testing.T) {
	for _, tc := range []struct {
		claim any
		want  []string
		ok    bool
	}{
		{"orders:read orders:write", []string{"orders:read"}, true},
		{"orders:read orders:write", []string{"orders:read", "orders:write"}, true},
		{"orders:reader", []string{"orders:read"}, false},
		{[]any{"admin", "ops"}, []string{"ops"}, true},
		{[]any{"admin", 3.0}, []string{"3"}, false},
		{true, []string{"true"}, true},
		{nil, []string{"x"}, false},
	} {
		if got := holds(tc.claim, tc.want); got != tc.ok {
			t.Errorf("holds(%#v, %v) = %v, want %v", tc.claim, tc.want, got, tc.ok)
		}
	}
}

// benchFilter builds a filter on a JWKS file holding the key and returns a token maker for it.
func benchFilter(b testing.TB, alg string, cached int) (*Filter, func(sub string) []byte) {
	f, mk, _ := benchFilterForger(b, alg, cached)
	return f, mk
}

// benchFilterForger is benchFilter that also returns a forger: it makes the same tokens under the
// same kid, signed by a key the JWKS does not hold.
func benchFilterForger(b testing.TB, alg string, cached int) (f *Filter, mk, forge func(sub string) []byte) {
	f, priv, forger := testFilter(b, alg, cached)
	signed := func(key crypto.Signer) func(sub string) []byte {
		return func(sub string) []byte { return sign(b, alg, "k", key, goodClaims(sub)) }
	}
	return f, signed(priv), signed(forger)
}

// testFilter builds a filter on a JWKS file holding one key under kid "k", and returns that key's
// private half and a forger's (another key of the same type).
func testFilter(b testing.TB, alg string, cached int) (f *Filter, priv, forger crypto.Signer) {
	var jwk map[string]string
	switch alg {
	case "RS256":
		k, _ := rsa.GenerateKey(rand.Reader, 2048)
		priv, jwk = k, map[string]string{"kty": "RSA", "kid": "k", "n": b64(k.N.Bytes()), "e": b64(big.NewInt(int64(k.E)).Bytes())}
		forger, _ = rsa.GenerateKey(rand.Reader, 2048)
	case "ES256":
		k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		raw, _ := k.PublicKey.Bytes()
		priv, jwk = k, map[string]string{"kty": "EC", "kid": "k", "crv": "P-256", "x": b64(raw[1:33]), "y": b64(raw[33:])}
		forger, _ = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	}
	set, _ := json.Marshal(map[string]any{"keys": []map[string]string{jwk}})
	file := filepath.Join(b.TempDir(), "jwks.json")
	if err := os.WriteFile(file, set, 0o600); err != nil {
		b.Fatal(err)
	}
	f, err := New(Config{JWKSFile: file, Issuer: "https://idp/", Audiences: []string{"api"}, Algorithms: []string{alg},
		Leeway: time.Second, RequireExp: true, RequiredClaims: map[string][]string{"scope": {"read"}},
		ForwardClaims: map[string]string{"email": "X-User-Email"}, ConsumerClaim: "sub", JWKSRefresh: time.Minute,
		JWKSMinRefresh: time.Second, JWKSTimeout: time.Second, MaxCachedTokens: cached, Realm: "weir"}, filters.Env{Now: time.Now})
	if err != nil {
		b.Fatal(err)
	}
	return f, priv, forger
}

// goodClaims are claims testFilter's filter accepts.
func goodClaims(sub string) gojwt.MapClaims {
	return gojwt.MapClaims{"iss": "https://idp/", "aud": "api", "sub": sub, "email": sub + "@example.com",
		"scope": "read write", "exp": time.Now().Add(time.Hour).Unix(), "iat": time.Now().Unix()}
}

// sign returns an Authorization value carrying claims signed by key under kid.
func sign(b testing.TB, alg, kid string, key crypto.Signer, claims gojwt.MapClaims) []byte {
	tok := gojwt.NewWithClaims(gojwt.GetSigningMethod(alg), claims)
	tok.Header["kid"] = kid
	s, err := tok.SignedString(key)
	if err != nil {
		b.Fatal(err)
	}
	return []byte("Bearer " + s)
}

type pass struct{}

func (pass) Serve(x *filters.Exchange) { x.Ctx.Response.SetStatusCode(200) }

func run(b testing.TB, h filters.Handler, ctx *fasthttp.RequestCtx, auth []byte) {
	serve(b, h, ctx, auth, 0)
}

// serve runs one request with auth through h and fails b unless the filter answered status (0: passed).
func serve(b testing.TB, h filters.Handler, ctx *fasthttp.RequestCtx, auth []byte, status int) {
	ctx.Request.Header.SetBytesV("Authorization", auth)
	x := filters.AcquireExchange(ctx)
	h.Serve(x)
	if x.Status != status {
		b.Fatalf("status %d (%s), want %d", x.Status, x.Reason, status)
	}
	filters.ReleaseExchange(x)
}

// A forged token repeated is refused from the cache of refusals: no signature check, which would
// allocate (the parse alone does), so the repeat allocates nothing. With the caches off, every
// refusal checks the signature again.
func TestRepeatedForgedTokenIsRefusedFromTheCache(t *testing.T) {
	for name, tc := range map[string]struct {
		cached int
		allocs bool
	}{
		"caches on":  {cached: 100, allocs: false},
		"caches off": {cached: 0, allocs: true},
	} {
		t.Run(name, func(t *testing.T) {
			f, mk, forge := benchFilterForger(t, "ES256", tc.cached)
			h := f.Wrap(pass{})
			var ctx fasthttp.RequestCtx
			forged := forge("user-1")
			serve(t, h, &ctx, forged, fasthttp.StatusUnauthorized)
			got := testing.AllocsPerRun(50, func() { serve(t, h, &ctx, forged, fasthttp.StatusUnauthorized) })
			if (got > 0) != tc.allocs {
				t.Fatalf("a repeated forged token allocated %.1f times per request", got)
			}
			// The refusals' cache is apart: the good token still passes, cached or not.
			run(t, h, &ctx, mk("user-1"))
		})
	}
}

// BenchmarkJWT: the same token again (a cache hit), a token never seen (the full check; the
// cache is off so that every iteration does it), a forged token repeated (refused from the cache of
// refusals), and 10,000 distinct tokens in turn (a cache of 10,000 holds them all after the first
// round).
func BenchmarkJWT(b *testing.B) {
	for _, alg := range []string{"RS256", "ES256"} {
		b.Run(alg+"/repeated", func(b *testing.B) {
			f, mk := benchFilter(b, alg, 10000)
			h, auth := f.Wrap(pass{}), mk("user-1")
			var ctx fasthttp.RequestCtx
			run(b, h, &ctx, auth)
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				run(b, h, &ctx, auth)
			}
		})
		b.Run(alg+"/first-seen", func(b *testing.B) {
			f, mk := benchFilter(b, alg, 0)
			h, auth := f.Wrap(pass{}), mk("user-1")
			var ctx fasthttp.RequestCtx
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				run(b, h, &ctx, auth)
			}
		})
		b.Run(alg+"/forged-repeated", func(b *testing.B) {
			f, _, forge := benchFilterForger(b, alg, 10000)
			h, auth := f.Wrap(pass{}), forge("user-1")
			var ctx fasthttp.RequestCtx
			serve(b, h, &ctx, auth, fasthttp.StatusUnauthorized)
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				serve(b, h, &ctx, auth, fasthttp.StatusUnauthorized)
			}
		})
		b.Run(alg+"/10000-distinct", func(b *testing.B) {
			f, mk := benchFilter(b, alg, 10000)
			h := f.Wrap(pass{})
			toks := make([][]byte, 10000)
			for i := range toks {
				toks[i] = mk(fmt.Sprint("user-", i))
			}
			var ctx fasthttp.RequestCtx
			for _, t := range toks {
				run(b, h, &ctx, t)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				run(b, h, &ctx, toks[i%len(toks)])
			}
		})
	}
}

// A token signed by the key a refresh is putting in place under the same kid, checked while the
// refresh happens, passes once the refresh is done: whatever the check saw, its verdict names the
// generation of the key it used, so a refusal by the old key is voided by the new generation. Each
// round moves the refresh a little later into the check (a busy wait), to land inside it now and then.
func TestJWT_ATokenOfTheNewKeyPassesAfterARotationThatRanDuringItsCheck(t *testing.T) {
	f, mk, _ := benchFilterForger(t, "ES256", 100)
	h := f.Wrap(pass{})
	newKeys := f.set.current.Load().keys
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	oldKeys := keys{"k": {pub: &other.PublicKey}}
	tok := mk("user-1")
	var ctx fasthttp.RequestCtx
	n := f.set.current.Load().n
	for i := range 4000 {
		n++
		f.set.current.Store(&generation{keys: oldKeys, n: n})
		done := make(chan struct{})
		go func() {
			defer close(done)
			var ctx fasthttp.RequestCtx
			ctx.Request.Header.SetBytesV("Authorization", tok)
			x := filters.AcquireExchange(&ctx)
			h.Serve(x) // passes or is refused, depending on which keys it saw
			filters.ReleaseExchange(x)
		}()
		for start, d := time.Now(), time.Duration(i%1600)*50*time.Nanosecond; time.Since(start) < d; {
		}
		n++
		f.set.current.Store(&generation{keys: newKeys, n: n})
		<-done
		serve(t, h, &ctx, tok, 0)
	}
}

// BenchmarkCachePutWhenFull: a put into a full cache of entries that do not expire (refusals of
// forged tokens carry no exp), as a stream of distinct forged tokens makes once the cache is full.
func BenchmarkCachePutWhenFull(b *testing.B) {
	const max = 10000
	c, v := newCache(max), &verdict{status: fasthttp.StatusUnauthorized}
	var k [sha256.Size]byte
	for i := range max {
		binary.BigEndian.PutUint64(k[:], uint64(i))
		c.put(k, v)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		binary.BigEndian.PutUint64(k[:], uint64(max+i))
		c.put(k, v)
	}
}

// Which refusals are remembered: those that cost a signature check and that time cannot undo. A
// token refused before its key was found (malformed, unknown kid, an algorithm not allowed) would
// cost no signature check again, and one refused for its nbf or iat may pass a moment later.
func TestJWT_WhichRefusalsAreRemembered(t *testing.T) {
	hour := time.Now().Add(time.Hour).Unix()
	with := func(k string, v any) gojwt.MapClaims {
		c := goodClaims("user-1")
		c[k] = v
		return c
	}
	for _, tc := range []struct {
		desc   string
		token  func(priv, forger crypto.Signer) []byte
		status int
		kept   bool
	}{
		{"forged signature", func(_, forger crypto.Signer) []byte { return sign(t, "ES256", "k", forger, goodClaims("user-1")) }, 401, true},
		{"expired", func(priv, _ crypto.Signer) []byte {
			return sign(t, "ES256", "k", priv, with("exp", time.Now().Add(-time.Hour).Unix()))
		}, 401, true},
		{"another issuer", func(priv, _ crypto.Signer) []byte { return sign(t, "ES256", "k", priv, with("iss", "https://other/")) }, 401, true},
		{"another audience", func(priv, _ crypto.Signer) []byte { return sign(t, "ES256", "k", priv, with("aud", "other")) }, 401, true},
		{"required scope missing", func(priv, _ crypto.Signer) []byte { return sign(t, "ES256", "k", priv, with("scope", "write")) }, 403, true},
		{"nbf ahead", func(priv, _ crypto.Signer) []byte { return sign(t, "ES256", "k", priv, with("nbf", hour)) }, 401, false},
		{"iat ahead", func(priv, _ crypto.Signer) []byte { return sign(t, "ES256", "k", priv, with("iat", hour)) }, 401, false},
		{"unknown kid", func(priv, _ crypto.Signer) []byte { return sign(t, "ES256", "other", priv, goodClaims("user-1")) }, 401, false},
		{"malformed", func(crypto.Signer, crypto.Signer) []byte { return []byte("Bearer not.a.token") }, 401, false},
		{"algorithm not allowed", func(crypto.Signer, crypto.Signer) []byte {
			s, _ := gojwt.NewWithClaims(gojwt.SigningMethodHS256, goodClaims("user-1")).SignedString([]byte("secret"))
			return []byte("Bearer " + s)
		}, 401, false},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			f, priv, forger := testFilter(t, "ES256", 100)
			h := f.Wrap(pass{})
			var ctx fasthttp.RequestCtx
			serve(t, h, &ctx, tc.token(priv, forger), tc.status)
			f.rejected.mu.RLock()
			kept := len(f.rejected.m) == 1
			f.rejected.mu.RUnlock()
			if kept != tc.kept {
				t.Fatalf("refusal remembered: %v, want %v", kept, tc.kept)
			}
		})
	}
}

// A JWK whose alg is narrowed under the same kid and public key (to an algorithm other than the
// token's) voids the token's cached acceptance: the next request is checked again, and refused.
func TestJWT_AKeyNarrowedToAnotherAlgorithmVoidsTheTokensItPassed(t *testing.T) {
	f, mk, _ := benchFilterForger(t, "ES256", 100)
	h := f.Wrap(pass{})
	tok := mk("user-1")
	var ctx fasthttp.RequestCtx
	serve(t, h, &ctx, tok, 0)
	serve(t, h, &ctx, tok, 0) // from the cache
	cur := f.set.current.Load()
	k := cur.keys["k"]
	k.alg = "ES384"
	f.set.current.Store(&generation{keys: keys{"k": k}, n: cur.n + 1})
	serve(t, h, &ctx, tok, fasthttp.StatusUnauthorized)
}
