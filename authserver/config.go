package authserver

import (
	"time"

	"github.com/registryauth/registry-auth-operator/authserver/secret"
)

// This file holds the input of the compile step: plain configuration with the
// secret bytes already read. The operator builds it from a RegistryAuthPolicy
// and its Secrets; standalone mode builds it from the environment. Nothing
// here refers to Kubernetes.

// Problem reasons. They are the condition reasons of RegistryAuthPolicy
// status, and the operator copies them verbatim.
const (
	ProblemSecretNotFound      = "SecretNotFound"
	ProblemKeyMissing          = "KeyMissing"
	ProblemTokenEmpty          = "TokenEmpty"
	ProblemTokenTooWeak        = "TokenTooWeak"
	ProblemOIDCDiscoveryFailed = "OIDCDiscoveryFailed"
	ProblemInvalidSpec         = "InvalidSpec"
	ProblemHostConflict        = "HostConflict"
)

// Problem is something in a policy that could not be put in force. The
// credential concerned is left out of the compiled policy (fail closed); the
// rest of the policy works.
type Problem struct {
	// Reason is one of the Reason constants.
	Reason string
	// Field names the part of the policy, e.g. "spec.staticToken" or
	// `spec.apiKeys[ci]`.
	Field string
	// Message says what is wrong and how to fix it. It never holds a secret.
	Message string
}

func (p Problem) Error() string { return p.Field + ": " + p.Message + " (" + p.Reason + ")" }

// SecretValue is a secret read from its source, or the reason it could not be
// read.
type SecretValue struct {
	// Value is the raw secret. Compile trims surrounding white space.
	Value []byte
	// Problem, when set, says why Value could not be read (e.g.
	// ProblemSecretNotFound, ProblemKeyMissing). The credential is not loaded.
	Problem *Problem
}

// PolicyConfig is one policy's configuration, input to Compile.
type PolicyConfig struct {
	Namespace string
	Name      string
	// Generation is the source object's generation, for status and logs.
	Generation int64
	// Hosts this policy answers for on plain /validate.
	Hosts []string
	// RegistryPathPrefixes are the Registry API prefixes; static tokens and
	// API keys count only under them. Empty means DefaultRegistryPathPrefixes.
	RegistryPathPrefixes []string
	// SessionCookieName: a request carrying this cookie skips static tokens
	// and API keys. Empty means DefaultSessionCookieName.
	SessionCookieName string

	StaticToken *StaticTokenConfig
	APIKeys     []APIKeyConfig
	OIDC        *OIDCConfig
	Session     *SessionConfig
	// GroupScopes maps a group to the scopes its members get (API keys,
	// sessions and OIDC identities).
	GroupScopes map[string][]string
}

// Key is "namespace/name".
func (c *PolicyConfig) Key() string { return c.Namespace + "/" + c.Name }

// Defaults of the original auth server.
var (
	DefaultRegistryPathPrefixes = []string{"/api/", "/v0.1/"}
	DefaultStaticIdentity       = IdentityConfig{
		Username: "network-user",
		ClientID: "network-trusted",
		Groups:   []string{"mcp-registry-admin"},
		Scopes:   []string{"mcp-registry-admin", "mcp-servers-unrestricted/read", "mcp-servers-unrestricted/execute"},
	}
)

const (
	DefaultSessionCookieName = "mcp_gateway_session"
	DefaultSessionMaxAge     = 8 * time.Hour
)

// IdentityConfig is a fixed identity.
type IdentityConfig struct {
	Username string
	ClientID string
	Groups   []string
	Scopes   []string
}

// StaticTokenConfig configures the shared static API token.
type StaticTokenConfig struct {
	Enabled bool
	Token   SecretValue
	// Previous are replaced tokens still inside their grace window, by
	// digest. Entries whose ExpiresAt has passed are ignored.
	Previous []secret.PreviousDigest
	// Identity given on success. Zero fields take DefaultStaticIdentity's.
	Identity IdentityConfig
}

// APIKeyConfig configures one named API key.
type APIKeyConfig struct {
	Name     string
	Key      SecretValue
	Previous []secret.PreviousDigest
	Groups   []string
	// PathPrefixes narrows the key; each must be under a Registry API
	// prefix. Empty means all Registry API paths.
	PathPrefixes []string
	// Methods narrows the key to these HTTP methods. Empty means all.
	Methods []string
}

// OIDC presets.
const (
	PresetGeneric  = "generic"
	PresetKeycloak = "keycloak"
	PresetEntra    = "entra"
	PresetCognito  = "cognito"
)

// OIDCConfig configures IdP JWT bearer tokens.
type OIDCConfig struct {
	IssuerURL     string
	Audiences     []string
	UsernameClaim string
	GroupsClaim   string
	Preset        string
	// Issuer is the discovered issuer (see OIDCIssuers.Resolve). Nil means
	// discovery has not succeeded yet: JWTs are refused. Problem then says
	// why.
	Issuer  *Issuer
	Problem *Problem
}

// SessionConfig configures browser session cookies.
type SessionConfig struct {
	CookieName string
	// SecretKeys verify the cookie signature; more than one while the web
	// app's SECRET_KEY is being rotated.
	SecretKeys []SecretValue
	MaxAge     time.Duration
}
