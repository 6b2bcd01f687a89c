// Package hoptoken mints the MCP Gateway Registry's hop token: the signed
// JWT the registry has trusted, since mid-2026, instead of the plain identity
// headers (X-User, X-Groups, ...). The auth service answers an allowed check
// with it in X-Internal-Token-Registry; nginx copies it to the registry's
// request; the registry verifies it and takes the identity from its claims
// only, and answers 401 to identity headers that come without it.
//
// It is the answer stage, after the decision (Oathkeeper's id_token mutator
// is the model): the decision (package policy) stays a pure function of the
// request, and the handler mints for an allowed request when the proxy asks
// for a token or the policy says to always send one. A policy compiles its
// Config into a Signer; the handler asks the Signer of the policy that
// decided.
//
// The token, as upstream's auth server mints it:
//
//	header  {"alg":"HS256","typ":"JWT"}               (key: the registry's SECRET_KEY, raw bytes)
//	        {"alg":"ES256","kid":"es256-…","typ":"JWT"} (key: a P-256 key; public keys in the JWKS)
//	claims  iss "mcp-auth-server", aud "mcp-registry-ui", token_use "mcp-registry-ui",
//	        sub (the username), iat, exp = iat + TTL, session_id "", groups [...],
//	        auth_method (canonical: oauth2, network-trusted, federation-static),
//	        client_id, egress_user (the IdP subject, or ""), scopes []
//
// Tokens are built with go-jose: this package writes the claims and nothing
// of the JWS format.
package hoptoken

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/registryauth/registry-auth-operator/authserver/authn"
	"github.com/registryauth/registry-auth-operator/authserver/check"
	"github.com/registryauth/registry-auth-operator/authserver/secret"
)

// Headers and the fixed claims.
const (
	// Header is the answer header that carries the token.
	Header = "X-Internal-Token-Registry"
	// RequestHeader, non-empty on the auth request, asks for a token (the
	// upstream nginx sends "X-Registry-Api-Auth: 1" from its /api/
	// locations).
	RequestHeader = "X-Registry-Api-Auth"

	Issuer   = "mcp-auth-server"
	Audience = "mcp-registry-ui"
	TokenUse = "mcp-registry-ui"
)

// Lifetimes.
const (
	// DefaultTTL is upstream's INTERNAL_TOKEN_TTL_SECONDS default.
	DefaultTTL = 30 * time.Second
	// MinTTL is upstream's minimum; shorter TTLs are raised to it.
	MinTTL = 5 * time.Second
	// MaxTTL bounds the TTL here (upstream has no maximum): a hop token is
	// a bearer token for the registry, and a long-lived one could be
	// replayed long after the request it was minted for.
	MaxTTL = 24 * time.Hour
	// DefaultOverlap is how long a replaced ES256 public key stays in the
	// JWKS after a rotation.
	DefaultOverlap = 15 * time.Minute
)

// Mode says when an allowed check is answered with a token.
type Mode string

const (
	// ModeOnRequest mints when the auth request carries a non-empty
	// X-Registry-Api-Auth, as upstream's nginx asks.
	ModeOnRequest Mode = "on-request"
	// ModeAlways also mints for every allowed request on the policy's
	// Registry API paths, for proxies that cannot add a header to the auth
	// request (Traefik ForwardAuth, Envoy ext_authz, ingress-nginx without
	// auth-proxy-set-headers).
	ModeAlways Mode = "always"
)

// Algorithms.
const (
	HS256 = "HS256"
	ES256 = "ES256"
)

// Policy fields the problems name.
const (
	FieldSecretKey  = "spec.registryToken.secretKeyRef"
	FieldSigningKey = "spec.registryToken.signingKeyRef"
	FieldMode       = "spec.registryToken.mode"
	FieldPrevious   = "spec.registryToken.previousKeys"
)

// Config configures the hop token of one policy. A nil *Config means no
// token: the policy answers as before.
type Config struct {
	// SecretKey is the HS256 key: the registry's SECRET_KEY, exactly as the
	// registry reads it. It is used as given, not trimmed: the registry
	// keys its verifier with the raw environment value. Its strength is
	// checked on the trimmed value.
	SecretKey *authn.SecretValue
	// SigningKey, when set, is a PEM P-256 private key, and tokens are
	// ES256 (SecretKey is then not used).
	SigningKey *authn.SecretValue
	// Previous are ES256 public keys replaced by a rotation, each published
	// in the JWKS until its ExpiresAt.
	Previous []PublicKey
	// TTL is the token lifetime; 0 means DefaultTTL. It is rounded down to
	// whole seconds and kept within MinTTL and MaxTTL.
	TTL time.Duration
	// Mode is when to mint; "" means ModeOnRequest.
	Mode Mode
}

// Signer mints one policy's hop tokens. It is immutable and shared by
// concurrent requests; a configuration change compiles a new one, and with
// it every token cached on identities is minted again.
type Signer struct {
	mode   Mode
	ttl    int64 // seconds
	alg    string
	keyID  string // ES256: the kid; HS256: the key's fingerprint
	signer jose.Signer
	// current is the ES256 key in force, previous the replaced ones: the
	// JWKS.
	current  *PublicKey
	previous []PublicKey
}

// ErrUnavailable: a token is configured but no usable key is loaded (the
// policy reports why).
var ErrUnavailable = errors.New("the registry token is configured but its key is not loaded")

// ErrNoSubject: the identity has no username; no token is minted for it.
var ErrNoSubject = errors.New("no token is minted for an identity without a username")

// Compile loads a hop token configuration. It returns nil when cfg is nil.
// When the token is configured but no key can be put in force (a missing,
// empty or weak secret key, a signing key that does not parse), it returns
// a Signer that mints nothing (Available false), and the problems: the
// requests that need a token are then refused, never sent on without one.
// Compile is pure: no I/O, no clock (previous keys carry their expiry).
func Compile(cfg *Config) (*Signer, []authn.Problem) {
	if cfg == nil {
		return nil, nil
	}
	var probs []authn.Problem
	s := &Signer{mode: cfg.Mode, ttl: int64(cfg.TTL / time.Second)}
	switch s.mode {
	case "":
		s.mode = ModeOnRequest
	case ModeOnRequest, ModeAlways:
	default:
		probs = append(probs, authn.Problem{Reason: authn.ProblemInvalidSpec, Field: FieldMode,
			Message: fmt.Sprintf("mode %q is not on-request or always; tokens are minted on request only", cfg.Mode)})
		s.mode = ModeOnRequest
	}
	switch {
	case cfg.TTL == 0:
		s.ttl = int64(DefaultTTL / time.Second)
	case s.ttl < int64(MinTTL/time.Second):
		s.ttl = int64(MinTTL / time.Second)
	case s.ttl > int64(MaxTTL/time.Second):
		s.ttl = int64(MaxTTL / time.Second)
	}

	switch {
	case cfg.SigningKey != nil:
		if p := s.loadES256(*cfg.SigningKey); p != nil {
			probs = append(probs, *p)
		}
	case cfg.SecretKey != nil:
		if p := s.loadHS256(*cfg.SecretKey); p != nil {
			probs = append(probs, *p)
		}
	default:
		probs = append(probs, authn.Problem{Reason: authn.ProblemInvalidSpec, Field: FieldSecretKey,
			Message: "the registry token needs a key: secretKeyRef (HS256, the registry's SECRET_KEY) or signingKeyRef (ES256)"})
	}

	for _, pk := range cfg.Previous {
		if s.current != nil && pk.KeyID == s.current.KeyID {
			continue // rotated back: in force, not previous
		}
		parsed, err := ParsePublicJWK(pk.JWK)
		if err != nil || parsed.KeyID != pk.KeyID {
			// Previous keys come from the operator's state; one that does
			// not parse is left out of the JWKS (tokens it signed fail).
			probs = append(probs, authn.Problem{Reason: authn.ProblemInvalidSpec, Field: FieldPrevious,
				Message: fmt.Sprintf("previous public key %q cannot be read back and is not published", pk.KeyID)})
			continue
		}
		parsed.ExpiresAt = pk.ExpiresAt
		s.previous = append(s.previous, parsed)
	}
	return s, probs
}

func (s *Signer) loadHS256(sv authn.SecretValue) *authn.Problem {
	s.alg = HS256
	if sv.Problem != nil {
		p := *sv.Problem
		if p.Field == "" {
			p.Field = FieldSecretKey
		}
		p.Message += "; requests that need a registry token are refused"
		return &p
	}
	if w, msg := secret.Check(secret.Clean(sv.Value), false); w != secret.Strong {
		reason := authn.ProblemTokenTooWeak
		if w == secret.Empty {
			reason = authn.ProblemTokenEmpty
		}
		return &authn.Problem{Reason: reason, Field: FieldSecretKey,
			Message: msg + "; requests that need a registry token are refused"}
	}
	key := append([]byte(nil), sv.Value...) // raw: the registry's verifier key
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.HS256, Key: key}, (&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		return &authn.Problem{Reason: authn.ProblemInvalidSpec, Field: FieldSecretKey, Message: "cannot make an HS256 signer: " + err.Error()}
	}
	s.signer = signer
	s.keyID = secret.Fingerprint(key)
	return nil
}

func (s *Signer) loadES256(sv authn.SecretValue) *authn.Problem {
	s.alg = ES256
	if sv.Problem != nil {
		p := *sv.Problem
		if p.Field == "" {
			p.Field = FieldSigningKey
		}
		p.Message += "; requests that need a registry token are refused"
		return &p
	}
	key, err := ParseSigningKey(sv.Value)
	if err != nil {
		return &authn.Problem{Reason: authn.ProblemSigningKeyInvalid, Field: FieldSigningKey,
			Message: err.Error() + "; requests that need a registry token are refused"}
	}
	pk, err := PublicKeyOf(&key.PublicKey)
	if err != nil {
		return &authn.Problem{Reason: authn.ProblemSigningKeyInvalid, Field: FieldSigningKey, Message: err.Error()}
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: jose.JSONWebKey{Key: key, KeyID: pk.KeyID}},
		(&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		return &authn.Problem{Reason: authn.ProblemSigningKeyInvalid, Field: FieldSigningKey, Message: "cannot make an ES256 signer: " + err.Error()}
	}
	s.signer = signer
	s.keyID = pk.KeyID
	s.current = &pk
	return nil
}

// Available reports whether a key is loaded: false means tokens are
// configured but cannot be minted.
func (s *Signer) Available() bool { return s.signer != nil }

// Mode is when tokens are minted.
func (s *Signer) Mode() Mode { return s.mode }

// TTL is the token lifetime.
func (s *Signer) TTL() time.Duration { return time.Duration(s.ttl) * time.Second }

// Algorithm is HS256 or ES256.
func (s *Signer) Algorithm() string { return s.alg }

// KeyID identifies the key in force: the kid for ES256, the secret key's
// fingerprint (12 hex digits of its SHA-256) for HS256; "" when none is
// loaded.
func (s *Signer) KeyID() string { return s.keyID }

// Current is the ES256 public key in force, nil for HS256 or when none is
// loaded.
func (s *Signer) Current() *PublicKey { return s.current }

// Previous are the replaced ES256 public keys still published at now.
func (s *Signer) Previous(now time.Time) []PublicKey {
	var out []PublicKey
	for _, pk := range s.previous {
		if now.Before(pk.ExpiresAt) {
			out = append(out, pk)
		}
	}
	return out
}

// JWKS is the key set document at now: the ES256 key in force, then the
// replaced keys still inside their overlap. With HS256 (or no key) it is an
// empty set.
func (s *Signer) JWKS(now time.Time) []byte {
	keys := make([]json.RawMessage, 0, 1+len(s.previous))
	if s.current != nil {
		keys = append(keys, s.current.JWK)
	}
	for _, pk := range s.Previous(now) {
		keys = append(keys, pk.JWK)
	}
	b, _ := json.Marshal(struct {
		Keys []json.RawMessage `json:"keys"`
	}{keys})
	return b
}

// claims are the token's claims, in upstream's order.
type claims struct {
	Iss        string   `json:"iss"`
	Aud        string   `json:"aud"`
	Sub        string   `json:"sub"`
	Scopes     []string `json:"scopes"`
	Iat        int64    `json:"iat"`
	Exp        int64    `json:"exp"`
	SessionID  string   `json:"session_id"`
	Groups     []string `json:"groups"`
	AuthMethod string   `json:"auth_method"`
	ClientID   string   `json:"client_id"`
	EgressUser string   `json:"egress_user"`
	TokenUse   string   `json:"token_use"`
}

var noScopes = []string{}

// Mint returns the token for id at now, as the one-element value of the
// answer header. The same identity in the same second gets the same token
// (iat has second resolution): it is minted once, then read from the
// identity's slot.
func (s *Signer) Mint(id *check.Identity, now time.Time) ([]string, error) {
	if s.signer == nil {
		return nil, ErrUnavailable
	}
	if id == nil || id.Username == "" {
		return nil, ErrNoSubject
	}
	sec := now.Unix()
	if v := id.CachedToken(s, sec); v != nil {
		return v, nil
	}
	tok, err := s.mint(id, sec)
	if err != nil {
		return nil, err
	}
	v := []string{tok}
	id.CacheToken(s, sec, v)
	return v, nil
}

func (s *Signer) mint(id *check.Identity, iat int64) (string, error) {
	groups := id.Groups
	if groups == nil {
		groups = noScopes // [] rather than null
	}
	payload, err := json.Marshal(claims{
		Iss:        Issuer,
		Aud:        Audience,
		Sub:        id.Username,
		Scopes:     noScopes,
		Iat:        iat,
		Exp:        iat + s.ttl,
		SessionID:  "",
		Groups:     groups,
		AuthMethod: id.HopAuthMethod(),
		ClientID:   id.ClientID,
		EgressUser: id.Subject,
		TokenUse:   TokenUse,
	})
	if err != nil {
		return "", err
	}
	jws, err := s.signer.Sign(payload)
	if err != nil {
		return "", err
	}
	return jws.CompactSerialize()
}
