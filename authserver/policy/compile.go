package policy

import (
	"fmt"
	"slices"
	"time"

	"github.com/registryauth/registry-auth-operator/authserver/authn"
	"github.com/registryauth/registry-auth-operator/authserver/authn/apikey"
	"github.com/registryauth/registry-auth-operator/authserver/authn/federation"
	"github.com/registryauth/registry-auth-operator/authserver/authn/jwt"
	"github.com/registryauth/registry-auth-operator/authserver/authn/session"
	"github.com/registryauth/registry-auth-operator/authserver/authn/statictoken"
	"github.com/registryauth/registry-auth-operator/authserver/hoptoken"
	"github.com/registryauth/registry-auth-operator/authserver/pathnorm"
)

// Policy is a compiled, immutable policy: what Decide reads. Secrets are held
// as digests (the session key excepted: an HMAC key must be kept to verify).
type Policy struct {
	key        string
	namespace  string
	name       string
	generation int64
	created    time.Time
	hosts      []string

	registryPrefixes []string
	agentPrefixes    []string
	skipCookie       string // session cookie that skips static credentials
	// static is set when a kind compares static credentials (a static
	// token, API keys): only then is a bearer token hashed.
	static bool

	// authenticators are the credential kinds, in the order a request
	// tries them (see kinds).
	authenticators []authn.Authenticator

	// delegate is where requests this policy does not own go (nil: none).
	delegate *Delegate
	// publicPaths pass without credentials (GET, HEAD, OPTIONS).
	publicPaths []string
	// protected is the protected resource metadata of challenges.
	protected *protectedResource
	// registryToken mints the registry's hop token for allowed requests;
	// nil when none is configured.
	registryToken *hoptoken.Signer

	// Fingerprints of the credentials in force, for status.
	fingerprints Fingerprints
	// expiries of the credentials in force that have one.
	expiries Expiries
}

// Expiries are when the static credentials of a compiled policy stop being
// accepted. Only those in force and with an expiresAt are listed.
type Expiries struct {
	// StaticToken is the static token's expiry, zero when none.
	StaticToken time.Time
	// APIKeys maps the name of each API key that has an expiry to it.
	APIKeys map[string]time.Time
}

// Expiries returns when the credentials in force expire.
func (p *Policy) Expiries() Expiries { return p.expiries }

// Delegate returns where the policy sends what it does not own, nil when
// nowhere.
func (p *Policy) Delegate() *Delegate { return p.delegate }

// Fingerprints of the credentials a compiled policy holds.
type Fingerprints struct {
	// StaticToken is the static token's fingerprint, "" when none is loaded.
	StaticToken string
	// FederationToken is the federation token's fingerprint, "" when none
	// is loaded.
	FederationToken string
	// APIKeys maps each loaded key's name to its fingerprint.
	APIKeys map[string]string
	// Session reports whether a session signing key is loaded (its
	// fingerprint is the loader's to tell: the key is kept, not a digest).
	Session bool
}

// Key is "namespace/name".
func (p *Policy) Key() string { return p.key }

// Generation is the generation of the source object.
func (p *Policy) Generation() int64 { return p.generation }

// Hosts are the hosts the policy answers for.
func (p *Policy) Hosts() []string { return p.hosts }

// Fingerprints returns the fingerprints of the credentials in force.
func (p *Policy) Fingerprints() Fingerprints { return p.fingerprints }

// RegistryToken is the signer of the registry's hop token, nil when the
// policy has none. A configured token whose key could not be loaded has a
// signer that refuses (hoptoken.Signer.Available).
func (p *Policy) RegistryToken() *hoptoken.Signer { return p.registryToken }

// RegistryPath reports whether a normalised path is under the policy's
// Registry API prefixes.
func (p *Policy) RegistryPath(path string) bool { return pathnorm.HasPrefix(path, p.registryPrefixes) }

// CompileOptions tune Compile.
type CompileOptions struct {
	// TokenCacheSize is the number of verified JWTs (and session cookies)
	// cached per policy; 0 means DefaultTokenCacheSize, negative disables
	// the cache.
	TokenCacheSize int
}

// DefaultTokenCacheSize is the number of verified tokens kept per policy.
const DefaultTokenCacheSize = authn.DefaultTokenCacheSize

// kind is one credential kind: it compiles its part of a policy's
// configuration into an authenticator (added to p, in this order) and
// reports its problems.
type kind struct {
	name    string
	compile func(cfg *PolicyConfig, env *authn.Env, p *Policy) []authn.Problem
}

// kinds are the credential kinds, in the order a request tries them:
//
//  1. the federation token, on the federation and peers API, when no
//     session cookie is sent (before the others, as upstream);
//  2. the static token, on Registry API paths, likewise;
//  3. named API keys, likewise;
//  4. the session cookie;
//  5. a JWT bearer token of one of the policy's issuers (spec.oidc, then
//     spec.issuers in order).
//
// A bearer token that is not the static token or an API key falls through to
// the JWT check, so IdP tokens keep working on Registry API paths. On gateway
// paths static tokens and API keys never count.
//
// A new kind is a package under authn/ with a Config, a Compile and an
// Authenticator, a field in PolicyConfig, and an entry here.
var kinds = []kind{
	{"federationToken", func(cfg *PolicyConfig, env *authn.Env, p *Policy) []authn.Problem {
		a, probs := federation.Compile(cfg.FederationToken, env)
		if a != nil {
			p.authenticators = append(p.authenticators, a)
			p.static = true
			p.fingerprints.FederationToken = a.Fingerprint()
		}
		return probs
	}},
	{"staticToken", func(cfg *PolicyConfig, env *authn.Env, p *Policy) []authn.Problem {
		a, probs := statictoken.Compile(cfg.StaticToken, env)
		if a != nil {
			p.authenticators = append(p.authenticators, a)
			p.static = true
			p.fingerprints.StaticToken = a.Fingerprint()
			p.expiries.StaticToken = a.ExpiresAt()
		}
		return probs
	}},
	{"apiKeys", func(cfg *PolicyConfig, env *authn.Env, p *Policy) []authn.Problem {
		a, probs := apikey.Compile(cfg.APIKeys, env)
		if a != nil {
			p.authenticators = append(p.authenticators, a)
			p.static = true
			p.fingerprints.APIKeys = a.Fingerprints()
			p.expiries.APIKeys = a.Expiries()
		}
		return probs
	}},
	{"session", func(cfg *PolicyConfig, env *authn.Env, p *Policy) []authn.Problem {
		a, probs := session.Compile(cfg.Session, env)
		if a != nil {
			p.authenticators = append(p.authenticators, a)
			p.fingerprints.Session = true
		}
		return probs
	}},
	{"jwt", func(cfg *PolicyConfig, env *authn.Env, p *Policy) []authn.Problem {
		var issuers []*jwt.Config
		if cfg.OIDC != nil {
			issuers = append(issuers, cfg.OIDC)
		}
		for i := range cfg.Issuers {
			issuers = append(issuers, &cfg.Issuers[i])
		}
		a, probs := jwt.CompileAll(issuers, env)
		p.authenticators = append(p.authenticators, a)
		return probs
	}},
}

// Compile turns one policy's configuration into an immutable Policy. It is a
// pure function: no I/O, no clock (previous tokens carry their own expiry).
//
// Compile never fails as a whole. Each part that cannot be put in force (a
// secret that is missing, empty or weak, an invalid path prefix, an issuer
// never discovered) is left out of the policy and reported as a Problem; the
// rest works. Leaving a credential out always means refusing it: nothing opens
// access that a complete configuration would not.
func Compile(cfg PolicyConfig, opts CompileOptions) (*Policy, []authn.Problem) {
	var probs []authn.Problem
	add := func(field, format string, args ...any) {
		probs = append(probs, authn.Problem{Reason: authn.ProblemInvalidSpec, Field: field, Message: fmt.Sprintf(format, args...)})
	}
	p := &Policy{
		key:          cfg.Key(),
		namespace:    cfg.Namespace,
		name:         cfg.Name,
		generation:   cfg.Generation,
		created:      cfg.Created,
		skipCookie:   cfg.SessionCookieName,
		fingerprints: Fingerprints{APIKeys: map[string]string{}},
	}
	if p.skipCookie == "" {
		p.skipCookie = session.DefaultCookieName
	}
	for _, raw := range cfg.Hosts {
		h := pathnorm.Host(raw)
		if h == "" {
			add("spec.hosts", "host %q is not a valid host name", raw)
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
			add("spec.staticToken.pathPrefixes", "%v", err)
			continue
		}
		p.registryPrefixes = append(p.registryPrefixes, pre)
	}

	agents := cfg.AgentPathPrefixes
	if len(agents) == 0 {
		agents = DefaultAgentPathPrefixes
	}
	for _, pre := range agents {
		if err := pathnorm.CheckPrefix(pre); err != nil {
			// Dropping it would let Authorization count there: keep the
			// default's protection instead.
			add("spec.agentPathPrefixes", "%v", err)
			continue
		}
		p.agentPrefixes = append(p.agentPrefixes, pre)
	}
	if len(p.agentPrefixes) == 0 {
		p.agentPrefixes = DefaultAgentPathPrefixes
	}

	env := &authn.Env{
		RegistryPrefixes: p.registryPrefixes,
		GroupScopes:      cfg.GroupScopes,
		TokenCacheSize:   opts.TokenCacheSize,
	}
	if env.TokenCacheSize == 0 {
		env.TokenCacheSize = DefaultTokenCacheSize
	}
	for _, k := range kinds {
		probs = append(probs, k.compile(&cfg, env, p)...)
	}
	for _, pre := range cfg.PublicPaths {
		if err := pathnorm.CheckPrefix(pre); err != nil {
			add("spec.publicPaths", "%v", err)
			continue
		}
		p.publicPaths = append(p.publicPaths, pre)
	}
	if cfg.ProtectedResource != nil {
		pr, err := compileProtectedResource(cfg.ProtectedResource)
		if err != nil {
			add("spec.protectedResource", "%v", err)
		}
		p.protected = pr
	}
	if cfg.Delegate != nil {
		d, err := compileDelegate(cfg.Delegate)
		if err != nil {
			// Without its delegate the policy refuses what it would have
			// sent there: nothing opens.
			add("spec.delegate", "%v", err)
		}
		p.delegate = d
	}
	signer, tprobs := hoptoken.Compile(cfg.RegistryToken)
	p.registryToken = signer
	probs = append(probs, tprobs...)
	return p, probs
}
