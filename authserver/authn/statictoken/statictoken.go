// Package statictoken is the shared static API token of the original auth
// server (REGISTRY_STATIC_TOKEN_AUTH_ENABLED + REGISTRY_API_TOKEN): one
// secret, one fixed identity, on Registry API paths only.
package statictoken

import (
	"context"
	"time"

	"github.com/registryauth/registry-auth-operator/authserver/authn"
	"github.com/registryauth/registry-auth-operator/authserver/check"
	"github.com/registryauth/registry-auth-operator/authserver/secret"
)

// IdentityConfig is a fixed identity.
type IdentityConfig struct {
	Username string
	ClientID string
	Groups   []string
	Scopes   []string
}

// DefaultIdentity is the original auth server's identity for the static
// token.
var DefaultIdentity = IdentityConfig{
	Username: "network-user",
	ClientID: "network-trusted",
	Groups:   []string{"mcp-registry-admin"},
	Scopes:   []string{"mcp-registry-admin", "mcp-servers-unrestricted/read", "mcp-servers-unrestricted/execute"},
}

// Config configures the shared static API token.
type Config struct {
	Enabled bool
	Token   authn.SecretValue
	// Previous are replaced tokens still inside their grace window, by
	// digest. Entries whose ExpiresAt has passed are ignored.
	Previous []secret.PreviousDigest
	// Identity given on success. Zero fields take DefaultIdentity's.
	Identity IdentityConfig
	// ExpiresAt, when not zero, is when the token stops being accepted:
	// from that instant on, a request with it (current or previous value)
	// is refused with check.ReasonCredentialExpired.
	ExpiresAt time.Time
}

// Field is the policy field the static token's problems name.
const Field = "spec.staticToken"

// Authenticator accepts the static token.
type Authenticator struct {
	digests     secret.Digests
	identity    *check.Identity
	fingerprint string
	expires     time.Time // zero: never
}

// Compile loads the static token. It returns nil when the token is not
// enabled or cannot be loaded (then with the problem).
func Compile(cfg *Config, _ *authn.Env) (*Authenticator, []authn.Problem) {
	if cfg == nil || !cfg.Enabled {
		return nil, nil
	}
	d, prob := authn.LoadDigest(cfg.Token, Field)
	if prob != nil {
		return nil, []authn.Problem{*prob}
	}
	id := cfg.Identity
	def := DefaultIdentity
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
	if !check.HeaderSafe(id.Username) || !check.HeaderSafe(id.ClientID) {
		return nil, []authn.Problem{{Reason: authn.ProblemInvalidSpec, Field: Field + ".identity",
			Message: "username and clientID must not contain control characters, nor start or end with a space"}}
	}
	return &Authenticator{
		digests:     secret.Digests{Current: d, Previous: authn.ClonePrevious(cfg.Previous, d)},
		identity:    check.NewIdentity(id.Username, id.ClientID, id.Groups, id.Scopes, check.MethodNetworkTrusted),
		fingerprint: d.Fingerprint(),
		expires:     cfg.ExpiresAt,
	}, nil
}

// Fingerprint is the fingerprint of the token in force.
func (a *Authenticator) Fingerprint() string { return a.fingerprint }

// ExpiresAt is when the token stops being accepted; zero when never.
func (a *Authenticator) ExpiresAt() time.Time { return a.expires }

// Identity is the identity the token grants.
func (a *Authenticator) Identity() *check.Identity { return a.identity }

// Authenticate compares a static bearer token with the token and the
// previous ones still in their grace window. A match on a path that is not a
// Registry API path is refused: static credentials never open gateway paths.
func (a *Authenticator) Authenticate(_ context.Context, in authn.Input) authn.Result {
	if !in.Static {
		return authn.Result{}
	}
	if in.Throttled {
		return authn.DenyWith(check.ReasonTooManyFailures)
	}
	ok, prev := a.digests.Match(&in.Digest, in.Now)
	if !ok {
		return authn.Result{Mismatch: true}
	}
	if authn.Expired(a.expires, in.Now) {
		return authn.DenyWith(check.ReasonCredentialExpired)
	}
	if !in.Registry {
		return authn.DenyWith(check.ReasonRegistryCredOnGateway)
	}
	reason := check.ReasonAllowedStaticToken
	if prev {
		reason = check.ReasonAllowedStaticTokenPrevious
	}
	return authn.AllowAs(reason, a.identity)
}
