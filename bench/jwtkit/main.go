// Command jwtkit makes the key material of bench/features.sh's jwt scenario: a fresh ECDSA P-256 key,
// its public half as a JWKS file for the jwt filter's jwks_file, and one ES256 token signed with it,
// printed on stdout. The token carries the issuer and audience of bench/configs/weir-jwt.yaml, a sub
// and a scope claim (forwarded and required there), and expires after -ttl.
//
// Usage: jwtkit -jwks bench/.build/jwt/jwks.json [-ttl 2h] > token
package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// The claims bench/configs/weir-jwt.yaml checks.
const (
	issuer   = "https://idp.bench.local/"
	audience = "bench-api"
	keyID    = "bench"
)

func main() {
	jwksPath := flag.String("jwks", "", "where to write the JWKS holding the public key")
	ttl := flag.Duration("ttl", 2*time.Hour, "how long the token stays valid")
	flag.Parse()
	if *jwksPath == "" {
		fmt.Fprintln(os.Stderr, "jwtkit: -jwks is required")
		os.Exit(2)
	}
	if err := run(*jwksPath, *ttl); err != nil {
		fmt.Fprintln(os.Stderr, "jwtkit:", err)
		os.Exit(1)
	}
}

func run(jwksPath string, ttl time.Duration) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	b64 := base64.RawURLEncoding.EncodeToString
	x, y := make([]byte, 32), make([]byte, 32)
	key.X.FillBytes(x)
	key.Y.FillBytes(y)
	set, err := json.Marshal(map[string]any{"keys": []map[string]string{{
		"kty": "EC", "crv": "P-256", "kid": keyID, "use": "sig", "alg": "ES256", "x": b64(x), "y": b64(y),
	}}})
	if err != nil {
		return err
	}
	if err := os.WriteFile(jwksPath, set, 0o644); err != nil {
		return err
	}
	now := time.Now()
	token := jwt.NewWithClaims(jwt.SigningMethodES256, jwt.MapClaims{
		"iss": issuer, "aud": audience, "sub": "bench-client", "scope": "bench:read",
		"iat": now.Unix(), "exp": now.Add(ttl).Unix(),
	})
	token.Header["kid"] = keyID
	signed, err := token.SignedString(key)
	if err != nil {
		return err
	}
	fmt.Println(signed)
	return nil
}
