package authtest

// This file is the registry's side of the hop token X-Internal-Token-Registry,
// for tests: a verifier that checks a token as the MCP Gateway Registry does
// (registry/auth/proxied_token.py verify_registry_ui_token with PyJWT, and
// the ES256 dispatch of upstream PR #1693), and the registry's choice of
// identity source (registry/auth/dependencies.py nginx_proxied_auth).
//
// It is written from that contract with the standard library only
// (crypto/hmac, crypto/ecdsa, encoding/json): it shares no code
// with the minting (authserver/hoptoken) nor with go-jose, so a mistake in
// either cannot hide in both.

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"net/http"
	"strings"
	"time"
)

// The registry's expectations of a hop token.
const (
	RegistryTokenHeader   = "X-Internal-Token-Registry"
	RegistryTokenIssuer   = "mcp-auth-server"
	RegistryTokenAudience = "mcp-registry-ui"
	RegistryTokenUse      = "mcp-registry-ui"
	// RegistryTokenLeeway is INTERNAL_TOKEN_LEEWAY_SECONDS's default.
	RegistryTokenLeeway = 5 * time.Second
	// registryTokenMaxLen is the longest token the ES256 verifier reads.
	registryTokenMaxLen = 8192
)

// Errors of RegistryVerifier.Verify; the registry answers 401 to each.
var (
	ErrTokenExpired = errors.New("internal token expired")
	ErrTokenInvalid = errors.New("invalid internal token")
)

// RegistryVerifier verifies hop tokens like the registry.
type RegistryVerifier struct {
	// SecretKey is the registry's SECRET_KEY, exactly as it reads it (the
	// raw environment value); nil refuses HS256 tokens.
	SecretKey []byte
	// JWKS returns the auth server's key set (what the registry fetches from
	// internal_jwks_url); nil refuses ES256 tokens.
	JWKS func() ([]byte, error)
	// RejectHS256 is REJECT_HS256_TOKENS.
	RejectHS256 bool
	// Leeway is INTERNAL_TOKEN_LEEWAY_SECONDS; 0 means RegistryTokenLeeway,
	// a negative value none.
	Leeway time.Duration
}

// Verify checks a token at time now and returns its claims (numbers as
// json.Number). An error wraps ErrTokenExpired or ErrTokenInvalid.
func (v *RegistryVerifier) Verify(token string, now time.Time) (map[string]any, error) {
	invalid := func(format string, args ...any) (map[string]any, error) {
		return nil, fmt.Errorf("%w: "+format, append([]any{ErrTokenInvalid}, args...)...)
	}
	if len(token) > registryTokenMaxLen {
		return invalid("longer than %d characters", registryTokenMaxLen)
	}
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return invalid("%d parts, want 3", len(parts))
	}
	rawHeader, err1 := base64.RawURLEncoding.DecodeString(parts[0])
	rawPayload, err2 := base64.RawURLEncoding.DecodeString(parts[1])
	sig, err3 := base64.RawURLEncoding.DecodeString(parts[2])
	if err := errors.Join(err1, err2, err3); err != nil {
		return invalid("base64url: %v", err)
	}
	var header map[string]any
	if err := json.Unmarshal(rawHeader, &header); err != nil {
		return invalid("header: %v", err)
	}
	if _, ok := header["crit"]; ok {
		return invalid("crit header")
	}
	input := []byte(parts[0] + "." + parts[1])
	alg, _ := header["alg"].(string)
	if kid, ok := header["kid"]; ok {
		// A kid means ES256 with a key of the published set.
		kidStr, _ := kid.(string)
		if alg != "ES256" {
			return invalid("alg %q with a kid, want ES256", alg)
		}
		if v.JWKS == nil {
			return invalid("no JWKS configured")
		}
		doc, err := v.JWKS()
		if err != nil {
			return invalid("fetching the JWKS: %v", err)
		}
		keys, err := ParseRegistryJWKS(doc)
		if err != nil {
			return invalid("JWKS: %v", err)
		}
		pub := keys[kidStr]
		if pub == nil {
			return invalid("unknown kid %q", kidStr)
		}
		if len(sig) != 64 {
			return invalid("ES256 signature of %d bytes, want 64", len(sig))
		}
		sum := sha256.Sum256(input)
		r, s := new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])
		if !ecdsa.Verify(pub, sum[:], r, s) {
			return invalid("ES256 signature does not verify")
		}
	} else {
		if alg != "HS256" {
			return invalid("alg %q without a kid, want HS256", alg)
		}
		if v.RejectHS256 {
			return invalid("HS256 tokens are rejected")
		}
		if v.SecretKey == nil {
			return invalid("no SECRET_KEY")
		}
		mac := hmac.New(sha256.New, v.SecretKey)
		mac.Write(input)
		if !hmac.Equal(mac.Sum(nil), sig) {
			return invalid("HS256 signature does not verify")
		}
	}

	dec := json.NewDecoder(bytes.NewReader(rawPayload))
	dec.UseNumber()
	var claims map[string]any
	if err := dec.Decode(&claims); err != nil {
		return invalid("payload: %v", err)
	}
	leeway := v.Leeway
	switch {
	case leeway == 0:
		leeway = RegistryTokenLeeway
	case leeway < 0:
		leeway = 0
	}
	nowSec := float64(now.UnixNano()) / 1e9
	lw := leeway.Seconds()
	// PyJWT's order: exp, iat, nbf, iss, aud; then the registry's token_use.
	exp, ok := intClaim(claims, "exp")
	if !ok {
		return invalid("exp missing or not an integer")
	}
	if float64(exp) <= nowSec-lw {
		return nil, fmt.Errorf("%w: exp %d, now %.3f", ErrTokenExpired, exp, nowSec)
	}
	iat, ok := intClaim(claims, "iat")
	if !ok {
		return invalid("iat missing or not an integer")
	}
	if float64(iat) > nowSec+lw {
		return invalid("iat %d is in the future (now %.3f)", iat, nowSec)
	}
	if _, present := claims["nbf"]; present {
		nbf, ok := intClaim(claims, "nbf")
		if !ok || float64(nbf) > nowSec+lw {
			return invalid("nbf")
		}
	}
	if iss, _ := claims["iss"].(string); iss != RegistryTokenIssuer {
		return invalid("iss %v", claims["iss"])
	}
	if !audienceHas(claims["aud"], RegistryTokenAudience) {
		return invalid("aud %v", claims["aud"])
	}
	if sub, present := claims["sub"]; present {
		if _, ok := sub.(string); !ok {
			return invalid("sub is not a string")
		}
	}
	if use, _ := claims["token_use"].(string); use != RegistryTokenUse {
		return invalid("token_use %v", claims["token_use"])
	}
	return claims, nil
}

func intClaim(claims map[string]any, name string) (int64, bool) {
	n, ok := claims[name].(json.Number)
	if !ok {
		return 0, false
	}
	i, err := n.Int64()
	return i, err == nil
}

func audienceHas(aud any, want string) bool {
	switch a := aud.(type) {
	case string:
		return a == want
	case []any:
		for _, x := range a {
			if s, ok := x.(string); ok && s == want {
				return true
			}
		}
	}
	return false
}

// ParseRegistryJWKS reads an internal JWKS document: every key must be an
// EC P-256 public key for ES256 whose kid is "es256-" + the base64url
// RFC 7638 SHA-256 thumbprint of its public JWK, computed here from the
// coordinates.
func ParseRegistryJWKS(doc []byte) (map[string]*ecdsa.PublicKey, error) {
	var set struct {
		Keys []map[string]any `json:"keys"`
	}
	if err := json.Unmarshal(doc, &set); err != nil {
		return nil, err
	}
	if set.Keys == nil {
		return nil, errors.New(`no "keys" list`)
	}
	out := map[string]*ecdsa.PublicKey{}
	for i, k := range set.Keys {
		str := func(name string) string { s, _ := k[name].(string); return s }
		if str("kty") != "EC" || str("crv") != "P-256" || str("alg") != "ES256" || str("use") != "sig" {
			return nil, fmt.Errorf("key %d: kty %q crv %q alg %q use %q, want EC, P-256, ES256, sig", i, str("kty"), str("crv"), str("alg"), str("use"))
		}
		if _, ok := k["d"]; ok {
			return nil, fmt.Errorf("key %d holds a private part", i)
		}
		x, errX := base64.RawURLEncoding.DecodeString(str("x"))
		y, errY := base64.RawURLEncoding.DecodeString(str("y"))
		if errX != nil || errY != nil || len(x) != 32 || len(y) != 32 {
			return nil, fmt.Errorf("key %d: x and y must be 32 bytes, base64url without padding", i)
		}
		pub, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), append(append([]byte{4}, x...), y...))
		if err != nil {
			return nil, fmt.Errorf("key %d: not a point of P-256: %w", i, err)
		}
		// RFC 7638: the required members in lexicographic order, no
		// white space.
		thumb := sha256.Sum256([]byte(`{"crv":"P-256","kty":"EC","x":"` + str("x") + `","y":"` + str("y") + `"}`))
		kid := "es256-" + base64.RawURLEncoding.EncodeToString(thumb[:])
		if str("kid") != kid {
			return nil, fmt.Errorf("key %d: kid %q, want %q (es256- and the RFC 7638 thumbprint)", i, str("kid"), kid)
		}
		if out[kid] != nil {
			return nil, fmt.Errorf("kid %q twice", kid)
		}
		out[kid] = pub
	}
	return out, nil
}

// RegistryIdentity is what the registry makes of a request that reached
// one of its /api/ routes through nginx: the identity from a valid hop
// token, else refusals as nginx_proxied_auth answers them.
type RegistryIdentity struct {
	// Status is 200 when the token verified, else 401.
	Status int
	// Detail is the registry's error detail on a 401.
	Detail string
	// Claims are the verified token's claims.
	Claims map[string]any
}

// Check decides a request's headers as the registry's nginx_proxied_auth
// does (NGINX_DISABLE_API_AUTH_REQUEST unset): a non-empty hop token is the
// only source of identity and must verify; without one, X-User or
// X-Username is taken for a forgery and refused; without either the
// registry would look for its own session cookie, which this test registry
// has none of.
func (v *RegistryVerifier) Check(h http.Header, now time.Time) RegistryIdentity {
	if tok := h.Get(RegistryTokenHeader); tok != "" {
		claims, err := v.Verify(tok, now)
		switch {
		case errors.Is(err, ErrTokenExpired):
			return RegistryIdentity{Status: http.StatusUnauthorized, Detail: "Internal token expired"}
		case err != nil:
			return RegistryIdentity{Status: http.StatusUnauthorized, Detail: "Invalid internal token: " + err.Error()}
		}
		return RegistryIdentity{Status: http.StatusOK, Claims: claims}
	}
	if h.Get("X-User") != "" || h.Get("X-Username") != "" {
		return RegistryIdentity{Status: http.StatusUnauthorized, Detail: "Authentication required"}
	}
	return RegistryIdentity{Status: http.StatusUnauthorized, Detail: "Not authenticated (no session)"}
}
