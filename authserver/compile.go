package authserver

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/registryauth/registry-auth-operator/authserver/secret"

	"github.com/registryauth/registry-auth-operator/authserver/pathnorm"
)

// Policy is a compiled, immutable policy: what Decide reads. Secrets are held
// as digests (the session key excepted: an HMAC key must be kept to verify).
type Policy struct {
	key        string
	namespace  string
	name       string
	generation int64
	hosts      []string

	registryPrefixes []string
	skipCookie       string // session cookie that skips static token and API keys

	static  *staticAuth
	apiKeys []apiKeyAuth
	session *sessionAuth
	jwt     *jwtAuth
	// jwtProblem is set when OIDC is configured but no issuer was ever
	// discovered: bearer JWTs are refused with ReasonOIDCIssuerNotDiscovered.
	jwtUnavailable bool

	// Fingerprints of the credentials in force, for status.
	fingerprints Fingerprints
}

// Fingerprints of the credentials a compiled policy holds.
type Fingerprints struct {
	// StaticToken is the static token's fingerprint, "" when none is loaded.
	StaticToken string
	// APIKeys maps each loaded key's name to its fingerprint.
	APIKeys map[string]string
}

// Key is "namespace/name".
func (p *Policy) Key() string { return p.key }

// Generation is the generation of the source object.
func (p *Policy) Generation() int64 { return p.generation }

// Hosts are the hosts the policy answers for.
func (p *Policy) Hosts() []string { return p.hosts }

// Fingerprints returns the fingerprints of the credentials in force.
func (p *Policy) Fingerprints() Fingerprints { return p.fingerprints }

type staticAuth struct {
	digests  secret.Digests
	identity *Identity
}

type apiKeyAuth struct {
	name     string
	digests  secret.Digests
	prefixes []string // nil: all Registry API paths
	methods  []string // nil: all methods
	identity *Identity
}

type sessionAuth struct {
	cookie   string
	verifier *sessionVerifier
	scopes   map[string][]string
	cache    *tokenCache
}

// authenticate verifies a session cookie and returns its identity, or nil.
// Verified cookies are cached by digest until they expire (at most
// maxCachedTokenTTL), as JWTs are.
func (s *sessionAuth) authenticate(cookie string, now time.Time) *Identity {
	d := secret.DigestString(cookie)
	if id := s.cache.get(&d, now); id != nil {
		return id
	}
	claims, _, ok := s.verifier.verify(cookie, now)
	if !ok {
		return nil
	}
	groups := headerSafeList(claims.Groups)
	id := newIdentity(claims.Username, claims.Username, groups, scopesFor(groups, s.scopes), MethodSession)
	if until := s.verifier.expiry(cookie); until.After(now) {
		if limit := now.Add(maxCachedTokenTTL); until.After(limit) {
			until = limit
		}
		s.cache.put(&d, id, until, now)
	}
	return id
}

// CompileOptions tune Compile.
type CompileOptions struct {
	// TokenCacheSize is the number of verified JWTs cached; 0 means
	// DefaultTokenCacheSize, negative disables the cache.
	TokenCacheSize int
}

// Compile turns one policy's configuration into an immutable Policy. It is a
// pure function: no I/O, no clock (previous tokens carry their own expiry).
//
// Compile never fails as a whole. Each part that cannot be put in force (a
// secret that is missing, empty or weak, an invalid path prefix, an issuer
// never discovered) is left out of the policy and reported as a Problem; the
// rest works. Leaving a credential out always means refusing it: nothing opens
// access that a complete configuration would not.
func Compile(cfg PolicyConfig, opts CompileOptions) (*Policy, []Problem) {
	var probs []Problem
	add := func(reason, field, format string, args ...any) {
		probs = append(probs, Problem{Reason: reason, Field: field, Message: fmt.Sprintf(format, args...)})
	}
	p := &Policy{
		key:        cfg.Key(),
		namespace:  cfg.Namespace,
		name:       cfg.Name,
		generation: cfg.Generation,
		skipCookie: cfg.SessionCookieName,
		fingerprints: Fingerprints{
			APIKeys: map[string]string{},
		},
	}
	if p.skipCookie == "" {
		p.skipCookie = DefaultSessionCookieName
	}
	for _, raw := range cfg.Hosts {
		h := pathnorm.Host(raw)
		if h == "" {
			add(ProblemInvalidSpec, "spec.hosts", "host %q is not a valid host name", raw)
			continue
		}
		if !slices.Contains(p.hosts, h) {
			p.hosts = append(p.hosts, h)
		}
	}

	// Registry API prefixes. Invalid prefixes are dropped; with none left
	// the defaults would widen access, so static tokens and API keys are
	// then left out entirely (registryPrefixes stays empty: nothing matches).
	prefixes := cfg.RegistryPathPrefixes
	if len(prefixes) == 0 {
		prefixes = DefaultRegistryPathPrefixes
	}
	for _, pre := range prefixes {
		if err := pathnorm.CheckPrefix(pre); err != nil {
			add(ProblemInvalidSpec, "spec.staticToken.pathPrefixes", "%v", err)
			continue
		}
		p.registryPrefixes = append(p.registryPrefixes, pre)
	}

	if st := cfg.StaticToken; st != nil && st.Enabled {
		field := "spec.staticToken"
		if d, prob := loadSecret(st.Token, field); prob != nil {
			probs = append(probs, *prob)
		} else {
			id := st.Identity
			def := DefaultStaticIdentity
			if id.Username == "" {
				id.Username = def.Username
			}
			if id.ClientID == "" {
				id.ClientID = def.ClientID
			}
			if id.Groups == nil {
				id.Groups = def.Groups
			}
			if id.Scopes == nil {
				id.Scopes = def.Scopes
			}
			if !headerSafeValue(id.Username) || !headerSafeValue(id.ClientID) {
				add(ProblemInvalidSpec, field+".identity", "username and clientID must not contain control characters, nor start or end with a space")
			} else {
				p.static = &staticAuth{
					digests:  secret.Digests{Current: d, Previous: clonePrevious(st.Previous, d)},
					identity: newIdentity(id.Username, id.ClientID, id.Groups, id.Scopes, MethodNetworkTrusted),
				}
				p.fingerprints.StaticToken = d.Fingerprint()
			}
		}
	}

	seen := map[string]bool{}
	for i, k := range cfg.APIKeys {
		field := fmt.Sprintf("spec.apiKeys[%s]", k.Name)
		if k.Name == "" || !headerSafeValue(k.Name) || strings.ContainsAny(k.Name, " ,") {
			add(ProblemInvalidSpec, fmt.Sprintf("spec.apiKeys[%d]", i), "API key name %q is empty or has spaces, commas or control characters", k.Name)
			continue
		}
		if seen[k.Name] {
			add(ProblemInvalidSpec, field, "API key name %q is used twice; names must be unique", k.Name)
			continue
		}
		seen[k.Name] = true
		ak, err := compileAPIKeyLimits(k, p.registryPrefixes)
		if err != nil {
			add(ProblemInvalidSpec, field, "%v", err)
			continue
		}
		d, prob := loadSecret(k.Key, field)
		if prob != nil {
			probs = append(probs, *prob)
			continue
		}
		ak.digests = secret.Digests{Current: d, Previous: clonePrevious(k.Previous, d)}
		groups := headerSafeList(k.Groups)
		ak.identity = newIdentity(k.Name, k.Name, groups, scopesFor(groups, cfg.GroupScopes), MethodAPIKey)
		p.apiKeys = append(p.apiKeys, ak)
		p.fingerprints.APIKeys[k.Name] = d.Fingerprint()
	}

	if s := cfg.Session; s != nil {
		field := "spec.session"
		var keys [][]byte
		for _, sv := range s.SecretKeys {
			v, prob := loadSecretValue(sv, field+".secretKeyRef", false)
			if prob != nil {
				probs = append(probs, *prob)
				continue
			}
			keys = append(keys, v)
		}
		maxAge := s.MaxAge
		if maxAge <= 0 {
			maxAge = DefaultSessionMaxAge
		}
		name := s.CookieName
		if name == "" {
			name = DefaultSessionCookieName
		}
		if len(keys) > 0 {
			p.session = &sessionAuth{cookie: name, verifier: newSessionVerifier(keys, maxAge), scopes: cfg.GroupScopes, cache: newTokenCache(cacheSize(opts))}
		}
	}

	if o := cfg.OIDC; o != nil {
		field := "spec.oidc"
		switch {
		case len(o.Audiences) == 0:
			add(ProblemInvalidSpec, field+".audiences", "at least one audience is required")
		case o.Issuer == nil:
			p.jwtUnavailable = true
			if o.Problem != nil {
				probs = append(probs, *o.Problem)
			} else {
				add(ProblemOIDCDiscoveryFailed, field, "issuer %s has not been discovered", o.IssuerURL)
			}
		default:
			p.jwt = newJWTAuth(o, cfg.GroupScopes, cacheSize(opts))
			if o.Problem != nil {
				// Discovery failed but an earlier one succeeded: keep
				// verifying with it, and report.
				probs = append(probs, *o.Problem)
			}
		}
	}
	return p, probs
}

func cacheSize(opts CompileOptions) int {
	if opts.TokenCacheSize == 0 {
		return DefaultTokenCacheSize
	}
	return opts.TokenCacheSize
}

// loadSecret cleans and checks a token or key and returns its digest.
func loadSecret(sv SecretValue, field string) (secret.Digest, *Problem) {
	v, prob := loadSecretValue(sv, field, true)
	if prob != nil {
		return secret.Digest{}, prob
	}
	return secret.DigestOf(v), nil
}

// loadSecretValue cleans and checks a bearer credential or, with bearer
// false, a session signing key.
func loadSecretValue(sv SecretValue, field string, bearer bool) ([]byte, *Problem) {
	if sv.Problem != nil {
		p := *sv.Problem
		if p.Field == "" {
			p.Field = field
		}
		return nil, &p
	}
	v := secret.Clean(sv.Value)
	if w, msg := secret.Check(v, bearer); w != secret.Strong {
		reason := ProblemTokenTooWeak
		switch {
		case w == secret.Empty && bearer:
			reason = ProblemTokenEmpty
			msg += "; static token and API key authentication are off for it, IdP (JWT) authentication still applies"
		case w == secret.Empty:
			reason = ProblemTokenEmpty
			msg += "; session cookies signed with it are not accepted, other credentials still apply"
		}
		return nil, &Problem{Reason: reason, Field: field, Message: msg}
	}
	return v, nil
}

// clonePrevious copies the previous digests, dropping the current one (a
// token rotated back is current, not previous).
func clonePrevious(prev []secret.PreviousDigest, current secret.Digest) []secret.PreviousDigest {
	var out []secret.PreviousDigest
	for _, p := range prev {
		if p.Digest != current {
			out = append(out, p)
		}
	}
	return out
}

func compileAPIKeyLimits(k APIKeyConfig, registry []string) (apiKeyAuth, error) {
	ak := apiKeyAuth{name: k.Name}
	for _, pre := range k.PathPrefixes {
		if err := pathnorm.CheckPrefix(pre); err != nil {
			return ak, err
		}
		// A narrower prefix must lie under a Registry API prefix: API keys
		// never count on gateway paths.
		if !pathnorm.HasPrefix(pre, registry) && !slices.Contains(registry, pre) {
			return ak, fmt.Errorf("path prefix %q is not under the Registry API prefixes %v", pre, registry)
		}
		ak.prefixes = append(ak.prefixes, pre)
	}
	for _, m := range k.Methods {
		m = strings.ToUpper(m)
		switch m {
		case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete, http.MethodOptions:
		default:
			return ak, fmt.Errorf("method %q is not one of GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS", m)
		}
		if !slices.Contains(ak.methods, m) {
			ak.methods = append(ak.methods, m)
		}
	}
	return ak, nil
}
