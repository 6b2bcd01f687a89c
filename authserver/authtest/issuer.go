// Package authtest provides a real OpenID Connect issuer served over HTTP on
// 127.0.0.1 for unit tests, end-to-end tests and benchmarks.
//
// The issuer serves a discovery document and a JWKS, and signs tokens with
// go-jose, so verifiers under test (e.g. github.com/coreos/go-oidc/v3) exercise
// their real discovery, key fetching and signature verification code paths.
//
// The package only depends on the standard library and go-jose so it can be
// imported from any test or benchmark.
package authtest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

const (
	// DiscoveryPath is the path, relative to the issuer URL, of the OpenID
	// Connect discovery document.
	DiscoveryPath = "/.well-known/openid-configuration"
	// JWKSPath is the path, relative to the issuer URL, of the JSON Web Key Set.
	// It mirrors Keycloak's layout; clients should read it from discovery.
	JWKSPath = "/protocol/openid-connect/certs"

	// IssuerURLPlaceholder may be used inside the value passed to
	// WithIssuerOverride; it is replaced by the issuer URL once the listener is
	// bound (the random port is not known before). For example
	// WithIssuerOverride(IssuerURLPlaceholder + "/v2.0").
	IssuerURLPlaceholder = "{issuer_url}"
)

// Option configures an Issuer at construction time.
type Option func(*config)

type config struct {
	path              string
	issuerOverride    string
	hasIssuerOverride bool
	alg               jose.SignatureAlgorithm
	jwksCacheControl  string
	github            bool
	tls               bool
}

// WithTLS serves the issuer over HTTPS with a certificate for 127.0.0.1
// that is its own CA: URL() is https://127.0.0.1:PORT and CAPEM() the
// bundle that trusts it (no system root does).
func WithTLS() Option {
	return func(c *config) { c.tls = true }
}

// WithPath serves the issuer under a path, e.g. "/realms/test" like Keycloak:
// URL() then returns http://127.0.0.1:PORT/realms/test and discovery lives at
// URL()+"/.well-known/openid-configuration". A trailing slash is removed.
func WithPath(p string) Option {
	return func(c *config) {
		p = strings.TrimRight(p, "/")
		if p != "" && !strings.HasPrefix(p, "/") {
			p = "/" + p
		}
		c.path = p
	}
}

// WithIssuerOverride makes the "issuer" field of the discovery document differ
// from URL(), to test issuer mismatch handling or to emulate providers such as
// Microsoft Entra ID whose discovery document (v2) advertises an issuer that is
// not the one carried by some tokens (v1). Occurrences of IssuerURLPlaceholder
// in iss are replaced with URL(). Tokens built by Claims still use URL() as
// "iss"; use DiscoveryIssuer to get the advertised value.
func WithIssuerOverride(iss string) Option {
	return func(c *config) {
		c.issuerOverride = iss
		c.hasIssuerOverride = true
	}
}

// WithAlgorithm selects the signing algorithm (default RS256). Supported:
// RS256, RS384, RS512, PS256, PS384, PS512 (RSA-2048 keys), ES256 (P-256),
// ES384 (P-384), ES512 (P-521) and EdDSA (Ed25519). The discovery document
// advertises only this algorithm in id_token_signing_alg_values_supported.
func WithAlgorithm(alg jose.SignatureAlgorithm) Option {
	return func(c *config) { c.alg = alg }
}

// WithJWKSCacheControl sets the Cache-Control header of JWKS responses (by
// default none is sent), e.g. "public, max-age=300".
func WithJWKSCacheControl(v string) Option {
	return func(c *config) { c.jwksCacheControl = v }
}

// WithGitHubShape makes the issuer look like GitHub Actions' token issuer
// (https://token.actions.githubusercontent.com): its discovery document
// (no authorization or token endpoint, response type id_token, GitHub's
// claims_supported) and its JWKS at /.well-known/jwks. Sign tokens with
// GitHubActionsClaims.
func WithGitHubShape() Option {
	return func(c *config) { c.github = true }
}

// GitHubJWKSPath is where a GitHub-shaped issuer serves its JWKS.
const GitHubJWKSPath = "/.well-known/jwks"

// githubClaimsSupported is GitHub's claims_supported, as its discovery
// document lists them.
var githubClaimsSupported = []string{"sub", "aud", "exp", "iat", "iss", "jti", "nbf", "ref", "sha", "repository", "repository_id",
	"repository_owner", "repository_owner_id", "enterprise", "enterprise_id", "run_id", "run_number", "run_attempt",
	"actor", "actor_id", "workflow", "workflow_ref", "workflow_sha", "head_ref", "base_ref", "event_name", "ref_type",
	"ref_protected", "environment", "environment_node_id", "job_workflow_ref", "job_workflow_sha", "repository_visibility",
	"runner_environment", "issuer_scope"}

// GitHubActionsClaims is the claim set of a GitHub Actions OIDC token of
// repository repo (OWNER/NAME), running workflow .github/workflows/ci.yml
// on a push to ref (refs/heads/main), with audience aud, valid for ttl.
func (i *Issuer) GitHubActionsClaims(aud, repo, ref string, ttl time.Duration) map[string]any {
	now := time.Now()
	owner, _, _ := strings.Cut(repo, "/")
	workflowRef := repo + "/.github/workflows/ci.yml@" + ref
	return map[string]any{
		"jti":                   fmt.Sprintf("%x", now.UnixNano()),
		"sub":                   "repo:" + repo + ":ref:" + ref,
		"aud":                   aud,
		"ref":                   ref,
		"sha":                   "d6ea0c0b1c6bb2a9b5d1ab0c6f3e1c1a6f0e9a55",
		"repository":            repo,
		"repository_owner":      owner,
		"repository_owner_id":   "65432",
		"repository_id":         "123456",
		"repository_visibility": "private",
		"run_id":                "9876543210",
		"run_number":            "42",
		"run_attempt":           "1",
		"runner_environment":    "github-hosted",
		"actor":                 "octocat",
		"actor_id":              "583231",
		"workflow":              "ci",
		"workflow_ref":          workflowRef,
		"workflow_sha":          "d6ea0c0b1c6bb2a9b5d1ab0c6f3e1c1a6f0e9a55",
		"job_workflow_ref":      workflowRef,
		"job_workflow_sha":      "d6ea0c0b1c6bb2a9b5d1ab0c6f3e1c1a6f0e9a55",
		"head_ref":              "",
		"base_ref":              "",
		"event_name":            "push",
		"ref_type":              "branch",
		"ref_protected":         "true",
		"iss":                   i.url,
		"nbf":                   now.Add(-5 * time.Second).Unix(),
		"iat":                   now.Unix(),
		"exp":                   now.Add(ttl).Unix(),
	}
}

// signingKey is a private key with its key ID.
type signingKey struct {
	kid  string
	priv crypto.Signer
}

// Issuer is a real OpenID Connect issuer served over HTTP on 127.0.0.1.
//
// All methods are safe for concurrent use, including while verifiers are
// fetching discovery and JWKS documents.
type Issuer struct {
	cfg       config
	srv       *httptest.Server
	url       string
	discovery []byte // immutable after start

	mu   sync.RWMutex
	keys []signingKey // keys[0] is the current signing key; all are published

	unpublishedOnce sync.Once
	unpublished     signingKey
	unpublishedErr  error

	down           atomic.Bool
	discoveryCount atomic.Int64
	jwksCount      atomic.Int64
	closeOnce      sync.Once
}

// NewIssuer starts an issuer on 127.0.0.1 (random port) with one signing key
// (RSA-2048, RS256, unless WithAlgorithm says otherwise). It registers
// tb.Cleanup(Close) and fails the test via tb.Fatalf if the issuer cannot start.
func NewIssuer(tb testing.TB, opts ...Option) *Issuer {
	tb.Helper()
	i, err := StartIssuer(opts...)
	if err != nil {
		tb.Fatalf("authtest: starting OIDC issuer: %v", err)
		return nil
	}
	tb.Cleanup(i.Close)
	return i
}

// StartIssuer is NewIssuer without testing.TB (for benchmarks and tools); the
// caller must call Close.
func StartIssuer(opts ...Option) (*Issuer, error) {
	cfg := config{alg: jose.RS256}
	for _, o := range opts {
		o(&cfg)
	}
	key, err := newSigningKey(cfg.alg)
	if err != nil {
		return nil, err
	}

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("authtest: listening on 127.0.0.1: %w", err)
	}
	i := &Issuer{cfg: cfg, keys: []signingKey{key}}
	i.url = "http://" + l.Addr().String() + cfg.path
	if cfg.tls {
		i.url = "https://" + l.Addr().String() + cfg.path
	}

	issuer := i.url
	if cfg.hasIssuerOverride {
		issuer = strings.ReplaceAll(cfg.issuerOverride, IssuerURLPlaceholder, i.url)
	}
	doc := map[string]any{
		"issuer":                                issuer,
		"authorization_endpoint":                i.url + "/protocol/openid-connect/auth",
		"token_endpoint":                        i.url + "/protocol/openid-connect/token",
		"userinfo_endpoint":                     i.url + "/protocol/openid-connect/userinfo",
		"jwks_uri":                              i.url + JWKSPath,
		"response_types_supported":              []string{"code", "id_token", "code id_token"},
		"subject_types_supported":               []string{"public"},
		"id_token_signing_alg_values_supported": []string{string(cfg.alg)},
		"scopes_supported":                      []string{"openid", "profile", "email", "groups"},
		"claims_supported":                      []string{"iss", "sub", "aud", "exp", "iat", "nbf", "preferred_username", "groups"},
		"grant_types_supported":                 []string{"authorization_code", "client_credentials"},
	}
	if cfg.github {
		doc = map[string]any{
			"issuer":                                issuer,
			"jwks_uri":                              i.url + GitHubJWKSPath,
			"subject_types_supported":               []string{"public", "pairwise"},
			"response_types_supported":              []string{"id_token"},
			"claims_supported":                      githubClaimsSupported,
			"id_token_signing_alg_values_supported": []string{string(cfg.alg)},
			"scopes_supported":                      []string{"openid"},
		}
	}
	i.discovery, err = json.Marshal(doc)
	if err != nil {
		_ = l.Close()
		return nil, fmt.Errorf("authtest: encoding discovery document: %w", err)
	}

	srv := httptest.NewUnstartedServer(http.HandlerFunc(i.serveHTTP))
	// Replace httptest's own listener to guarantee a 127.0.0.1 (IPv4) binding.
	_ = srv.Listener.Close()
	srv.Listener = l
	srv.Config.ReadHeaderTimeout = 10 * time.Second
	if cfg.tls {
		srv.StartTLS()
	} else {
		srv.Start()
	}
	i.srv = srv
	return i, nil
}

// URL returns the issuer URL, e.g. http://127.0.0.1:PORT (plus the WithPath
// path, if any). It is the value of "iss" in tokens built by Claims and, unless
// WithIssuerOverride is used, of "issuer" in the discovery document.
func (i *Issuer) URL() string { return i.url }

// DiscoveryIssuer returns the "issuer" value advertised by the discovery
// document: URL() unless WithIssuerOverride was used.
func (i *Issuer) DiscoveryIssuer() string {
	var d struct {
		Issuer string `json:"issuer"`
	}
	_ = json.Unmarshal(i.discovery, &d)
	return d.Issuer
}

// JWKSURL returns the URL of the JSON Web Key Set (also advertised as
// "jwks_uri" by discovery).
func (i *Issuer) JWKSURL() string { return i.url + i.jwksPath() }

func (i *Issuer) jwksPath() string {
	if i.cfg.github {
		return GitHubJWKSPath
	}
	return JWKSPath
}

// Algorithm returns the signing algorithm used by Sign.
func (i *Issuer) Algorithm() jose.SignatureAlgorithm { return i.cfg.alg }

// CAPEM is the PEM certificate that trusts a WithTLS issuer (nil without
// TLS).
func (i *Issuer) CAPEM() []byte {
	c := i.srv.Certificate()
	if c == nil {
		return nil
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
}

// Close stops the server, waiting for in-flight requests. It is idempotent.
func (i *Issuer) Close() {
	i.closeOnce.Do(func() {
		i.srv.Close()
	})
}

// Sign returns a compact JWS of the claims, signed with the current key
// (RS256 by default) and carrying its kid and "typ":"JWT" in the header. Sign
// fills nothing in; see Claims for a typical claim set. It panics if the
// claims cannot be encoded to JSON or signing fails (test helper semantics).
func (i *Issuer) Sign(claims map[string]any) string {
	i.mu.RLock()
	key := i.keys[0]
	i.mu.RUnlock()
	return mustSign(key, i.cfg.alg, claims)
}

// SignWithUnpublishedKey signs the claims like Sign but with a key (and kid)
// that is never published in the JWKS, to test unknown-kid handling. The
// key is generated on first use and reused afterwards.
func (i *Issuer) SignWithUnpublishedKey(claims map[string]any) string {
	i.unpublishedOnce.Do(func() {
		i.unpublished, i.unpublishedErr = newSigningKey(i.cfg.alg)
	})
	if i.unpublishedErr != nil {
		panic(i.unpublishedErr)
	}
	return mustSign(i.unpublished, i.cfg.alg, claims)
}

// Claims returns a typical valid claim set: iss=URL(), aud=audience,
// sub="sub-"+username, preferred_username=username, groups (never null: nil
// becomes []), iat=nbf=now and exp=now+ttl (a negative ttl yields an expired
// token). The map is fresh on every call and can be modified before Sign.
func (i *Issuer) Claims(audience, username string, groups []string, ttl time.Duration) map[string]any {
	now := time.Now()
	g := make([]string, len(groups)) // a copy, and [] rather than null for nil
	copy(g, groups)
	return map[string]any{
		"iss":                i.url,
		"aud":                audience,
		"sub":                "sub-" + username,
		"preferred_username": username,
		"groups":             g,
		"iat":                now.Unix(),
		"nbf":                now.Unix(),
		"exp":                now.Add(ttl).Unix(),
	}
}

// RotateKey generates a new signing key and makes it current: Sign uses it
// from now on, and the JWKS publishes the new key followed by the old ones
// (drop them with DropOldKeys).
func (i *Issuer) RotateKey() {
	key, err := newSigningKey(i.cfg.alg)
	if err != nil {
		panic(err)
	}
	i.mu.Lock()
	defer i.mu.Unlock()
	i.keys = append([]signingKey{key}, i.keys...)
}

// DropOldKeys removes every key but the current one from the JWKS.
func (i *Issuer) DropOldKeys() {
	i.mu.Lock()
	defer i.mu.Unlock()
	i.keys = i.keys[:1:1]
}

// CurrentKeyID returns the kid of the key Sign currently uses.
func (i *Issuer) CurrentKeyID() string {
	i.mu.RLock()
	defer i.mu.RUnlock()
	return i.keys[0].kid
}

// SetDown(true) makes every endpoint answer 503 Service Unavailable,
// simulating an unreachable issuer; SetDown(false) recovers. Requests are
// still counted while down.
func (i *Issuer) SetDown(down bool) { i.down.Store(down) }

// DiscoveryRequests returns how many requests the discovery endpoint received
// (including those answered 503 while down).
func (i *Issuer) DiscoveryRequests() int64 { return i.discoveryCount.Load() }

// JWKSRequests returns how many requests the JWKS endpoint received
// (including those answered 503 while down).
func (i *Issuer) JWKSRequests() int64 { return i.jwksCount.Load() }

func (i *Issuer) serveHTTP(w http.ResponseWriter, r *http.Request) {
	var serve func(http.ResponseWriter)
	switch r.URL.Path {
	case i.cfg.path + DiscoveryPath:
		i.discoveryCount.Add(1)
		serve = i.serveDiscovery
	case i.cfg.path + i.jwksPath():
		i.jwksCount.Add(1)
		serve = i.serveJWKS
	}
	if i.down.Load() {
		http.Error(w, "issuer is down", http.StatusServiceUnavailable)
		return
	}
	if serve == nil {
		http.NotFound(w, r)
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	serve(w)
}

func (i *Issuer) serveDiscovery(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(i.discovery)
}

func (i *Issuer) serveJWKS(w http.ResponseWriter) {
	i.mu.RLock()
	set := jose.JSONWebKeySet{Keys: make([]jose.JSONWebKey, 0, len(i.keys))}
	for _, k := range i.keys {
		set.Keys = append(set.Keys, jose.JSONWebKey{
			Key:       k.priv.Public(),
			KeyID:     k.kid,
			Algorithm: string(i.cfg.alg),
			Use:       "sig",
		})
	}
	i.mu.RUnlock()
	body, err := json.Marshal(set)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	if i.cfg.jwksCacheControl != "" {
		w.Header().Set("Cache-Control", i.cfg.jwksCacheControl)
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(body)
}

// newSigningKey generates a private key suitable for alg, with a kid derived
// from the RFC 7638 thumbprint of its public key.
func newSigningKey(alg jose.SignatureAlgorithm) (signingKey, error) {
	var (
		priv crypto.Signer
		err  error
	)
	switch alg {
	case jose.RS256, jose.RS384, jose.RS512, jose.PS256, jose.PS384, jose.PS512:
		priv, err = rsa.GenerateKey(rand.Reader, 2048)
	case jose.ES256:
		priv, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case jose.ES384:
		priv, err = ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	case jose.ES512:
		priv, err = ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
	case jose.EdDSA:
		_, priv, err = ed25519.GenerateKey(rand.Reader)
	default:
		return signingKey{}, fmt.Errorf("authtest: unsupported signing algorithm %q", alg)
	}
	if err != nil {
		return signingKey{}, fmt.Errorf("authtest: generating %s key: %w", alg, err)
	}
	jwk := jose.JSONWebKey{Key: priv.Public()}
	tp, err := jwk.Thumbprint(crypto.SHA256)
	if err != nil {
		return signingKey{}, fmt.Errorf("authtest: computing key thumbprint: %w", err)
	}
	return signingKey{kid: base64.RawURLEncoding.EncodeToString(tp), priv: priv}, nil
}

func mustSign(key signingKey, alg jose.SignatureAlgorithm, claims map[string]any) string {
	payload, err := json.Marshal(claims)
	if err != nil {
		panic(fmt.Sprintf("authtest: encoding claims: %v", err))
	}
	signer, err := jose.NewSigner(
		jose.SigningKey{Algorithm: alg, Key: jose.JSONWebKey{Key: key.priv, KeyID: key.kid}},
		(&jose.SignerOptions{}).WithType("JWT"),
	)
	if err != nil {
		panic(fmt.Sprintf("authtest: creating signer: %v", err))
	}
	jws, err := signer.Sign(payload)
	if err != nil {
		panic(fmt.Sprintf("authtest: signing: %v", err))
	}
	compact, err := jws.CompactSerialize()
	if err != nil {
		panic(fmt.Sprintf("authtest: serializing JWS: %v", err))
	}
	return compact
}
