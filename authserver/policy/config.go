package policy

import (
	"time"

	"github.com/registryauth/registry-auth-operator/authserver/authn/apikey"
	"github.com/registryauth/registry-auth-operator/authserver/authn/federation"
	"github.com/registryauth/registry-auth-operator/authserver/authn/jwt"
	"github.com/registryauth/registry-auth-operator/authserver/authn/session"
	"github.com/registryauth/registry-auth-operator/authserver/authn/statictoken"
	"github.com/registryauth/registry-auth-operator/authserver/hoptoken"
)

// This file holds the input of the compile step: plain configuration with the
// secret bytes already read. The operator builds it from a RegistryAuthPolicy
// and its Secrets (package controllers); standalone mode builds it from the
// environment (package standalone). Nothing here refers to Kubernetes. Each
// credential kind's part is that kind's own Config type.

// PolicyConfig is one policy's configuration, input to Compile.
type PolicyConfig struct {
	Namespace string
	Name      string
	// Generation is the source object's generation, for status and logs.
	Generation int64
	// Created is when the source object was created: of two policies that
	// list one host, the older answers for it.
	Created time.Time
	// Hosts this policy answers for on plain /validate.
	Hosts []string
	// RegistryPathPrefixes are the Registry API prefixes; static tokens and
	// API keys count only under them. Empty means DefaultRegistryPathPrefixes.
	RegistryPathPrefixes []string
	// SessionCookieName: a request carrying this cookie skips static tokens
	// and API keys. Empty means session.DefaultCookieName.
	SessionCookieName string
	// AgentPathPrefixes are the agent (A2A) paths, where only
	// X-Authorization carries the registry credential (Authorization is the
	// agent's). Empty means DefaultAgentPathPrefixes.
	AgentPathPrefixes []string

	FederationToken *federation.Config
	StaticToken     *statictoken.Config
	APIKeys         []apikey.Config
	OIDC            *jwt.Config
	Session         *session.Config
	// Issuers are further JWT issuer entries (spec.issuers), tried after
	// OIDC, in order; each names itself (jwt.Config.Name).
	Issuers []jwt.Config
	// GroupScopes maps a group to the scopes its members get (API keys,
	// sessions and OIDC identities).
	GroupScopes map[string][]string
	// Delegate, when set, is where requests this service does not own go.
	Delegate *DelegateConfig

	// PublicPaths pass without credentials: a GET, HEAD or OPTIONS request
	// whose normalised path is under one of them is allowed (ReasonPublic)
	// with no identity, before any credential is looked at, e.g.
	// /.well-known/oauth-protected-resource, which MCP clients fetch first.
	// Prefixes match as RegistryPathPrefixes do.
	PublicPaths []string
	// ProtectedResource points MCP clients at the resource's metadata in
	// 401 and 403 answers (RFC 9728); nil: plain challenges.
	ProtectedResource *ProtectedResourceConfig

	// RegistryToken configures the registry's hop token
	// (X-Internal-Token-Registry) that allowed answers carry; nil means
	// none. It is not a credential kind: it is minted after the decision,
	// by the handler (see package hoptoken).
	RegistryToken *hoptoken.Config
}

// Key is "namespace/name".
func (c *PolicyConfig) Key() string { return c.Namespace + "/" + c.Name }

// Defaults of the original auth server's paths.
var (
	// DefaultRegistryPathPrefixes are the Registry API paths.
	DefaultRegistryPathPrefixes = []string{"/api/", "/v0.1/"}
	// DefaultAgentPathPrefixes are the agent (A2A) paths.
	DefaultAgentPathPrefixes = []string{"/agent/"}
)
