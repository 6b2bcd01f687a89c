// Package federation is the federation static token of the upstream auth
// server (FEDERATION_STATIC_TOKEN_AUTH_ENABLED + FEDERATION_STATIC_TOKEN):
// the shared secret a peer registry sends to read this registry's federation
// and peers API. It counts on those paths only, before the static token and
// the API keys, and gives the fixed peer identity.
package federation

import (
	"context"
	"fmt"
	"slices"

	"github.com/registryauth/registry-auth-operator/authserver/authn"
	"github.com/registryauth/registry-auth-operator/authserver/check"
	"github.com/registryauth/registry-auth-operator/authserver/pathnorm"
	"github.com/registryauth/registry-auth-operator/authserver/secret"
)

// Defaults of the upstream auth server.
var (
	// DefaultPathPrefixes are the federation and peers API: under
	// /api/federation/, and /api/peers itself or under /api/peers/ (a prefix
	// without a trailing slash matches at a segment boundary, so
	// /api/peersX is not a peers path).
	DefaultPathPrefixes = []string{"/api/federation/", "/api/peers"}
	// DefaultIdentity is the peer's identity: no groups, the
	// federation/read scope.
	DefaultIdentity = IdentityConfig{
		Username: "federation-peer",
		ClientID: "federation-static",
		Scopes:   []string{"federation/read"},
	}
)

// IdentityConfig is the fixed identity of the federation token.
type IdentityConfig struct {
	Username string
	ClientID string
	Groups   []string
	Scopes   []string
}

// Config configures the federation token.
type Config struct {
	Enabled bool
	Token   authn.SecretValue
	// Previous are replaced tokens still inside their grace window.
	Previous []secret.PreviousDigest
	// PathPrefixes are where the token counts; each must lie under a
	// Registry API prefix. Empty means DefaultPathPrefixes.
	PathPrefixes []string
	// Identity given on success. Zero fields take DefaultIdentity's.
	Identity IdentityConfig
}

// Field is the policy field the federation token's problems name.
const Field = "spec.federationToken"

// Authenticator accepts the federation token on the federation paths.
type Authenticator struct {
	digests     secret.Digests
	prefixes    []string
	identity    *check.Identity
	fingerprint string
}

// Compile loads the federation token. It returns nil when the token is not
// enabled or cannot be loaded (then with the problem).
func Compile(cfg *Config, env *authn.Env) (*Authenticator, []authn.Problem) {
	if cfg == nil || !cfg.Enabled {
		return nil, nil
	}
	prefixes := cfg.PathPrefixes
	if len(prefixes) == 0 {
		prefixes = DefaultPathPrefixes
	}
	a := &Authenticator{}
	for _, pre := range prefixes {
		if err := pathnorm.CheckPrefix(pre); err != nil {
			return nil, []authn.Problem{{Reason: authn.ProblemInvalidSpec, Field: Field + ".pathPrefixes", Message: err.Error()}}
		}
		if !pathnorm.HasPrefix(pre, env.RegistryPrefixes) && !slices.Contains(env.RegistryPrefixes, pre) {
			return nil, []authn.Problem{{Reason: authn.ProblemInvalidSpec, Field: Field + ".pathPrefixes",
				Message: fmt.Sprintf("path prefix %q is not under the Registry API prefixes %v", pre, env.RegistryPrefixes)}}
		}
		a.prefixes = append(a.prefixes, pre)
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
	a.digests = secret.Digests{Current: d, Previous: authn.ClonePrevious(cfg.Previous, d)}
	a.identity = check.NewIdentity(id.Username, id.ClientID, id.Groups, id.Scopes, check.MethodFederation)
	a.fingerprint = d.Fingerprint()
	return a, nil
}

// Fingerprint is the fingerprint of the token in force.
func (a *Authenticator) Fingerprint() string { return a.fingerprint }

// Authenticate compares a static bearer token with the federation token and
// the previous ones in their grace window. A mismatch goes on to the static
// token and the API keys; a match off the federation paths is refused.
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
	if !in.Registry || !pathnorm.HasPrefix(in.Path, a.prefixes) {
		return authn.DenyWith(check.ReasonFederationTokenOffPath)
	}
	reason := check.ReasonAllowedFederation
	if prev {
		reason = check.ReasonAllowedFederationPrevious
	}
	return authn.AllowAs(reason, a.identity)
}
