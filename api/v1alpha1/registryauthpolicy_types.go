/*
Copyright 2026 The registry-auth-operator Authors.

Licensed under the Apache License, Version 2.0 (the "License");
you may not use this file except in compliance with the License.
You may obtain a copy of the License at

    http://www.apache.org/licenses/LICENSE-2.0

Unless required by applicable law or agreed to in writing, software
distributed under the License is distributed on an "AS IS" BASIS,
WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
See the License for the specific language governing permissions and
limitations under the License.
*/

package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Condition types and reasons reported in RegistryAuthPolicy status.
const (
	// ConditionReady is True when every credential source the policy names
	// was loaded into the auth service and nothing is degraded.
	ConditionReady = "Ready"

	// ReasonLoaded: the whole policy is in force.
	ReasonLoaded = "Loaded"
	// ReasonSecretNotFound: a referenced Secret does not exist. The
	// credential it would hold is not accepted.
	ReasonSecretNotFound = "SecretNotFound"
	// ReasonSecretNotOptedIn: a referenced Secret lacks the label
	// registryauth.io/credential=true; it is not read as a credential.
	ReasonSecretNotOptedIn = "SecretNotOptedIn"
	// ReasonKeyMissing: a referenced Secret lacks the named key.
	ReasonKeyMissing = "KeyMissing"
	// ReasonTokenEmpty: the static token is enabled but its value is empty;
	// the policy falls back to IdP (JWT) authentication.
	ReasonTokenEmpty = "TokenEmpty"
	// ReasonTokenTooWeak: a token or key is shorter than 32 characters, a
	// known placeholder, or (static tokens and API keys) contains characters
	// a Bearer token cannot carry or has the shape of a JWT.
	ReasonTokenTooWeak = "TokenTooWeak"
	// ReasonOIDCDiscoveryFailed: the issuer's discovery document could not be
	// fetched. The last good verifier, if any, stays in use.
	ReasonOIDCDiscoveryFailed = "OIDCDiscoveryFailed"
	// ReasonInvalidSpec: the spec passed API validation but cannot be compiled
	// (for example an API key path prefix outside the Registry API prefixes).
	ReasonInvalidSpec = "InvalidSpec"
	// ReasonHostConflict: an older policy holds one of this policy's hosts;
	// plain /validate requests for that host go there.
	ReasonHostConflict = "HostConflict"
	// ReasonHostNotGranted: one of this policy's hosts is not granted to its
	// namespace (the operator's --host-grants).
	ReasonHostNotGranted = "HostNotGranted"
	// ReasonSigningKeyInvalid: the registry token's signing key is not an
	// unencrypted PEM P-256 private key. Requests that need a registry
	// token are refused (registry_token_unavailable).
	ReasonSigningKeyInvalid = "SigningKeyInvalid"
	// ReasonClaimRuleInvalid: a claim rule or claim mapping of an issuer in
	// spec.issuers does not compile; the issuer's tokens are refused
	// (claim_rule_failed). The message names the rule.
	ReasonClaimRuleInvalid = "ClaimRuleInvalid"
)

// Credential lifecycle conditions: set while the policy has a static token or
// API key in force with an expiresAt, removed otherwise. Both are "abnormal
// true": True means something needs doing.
const (
	// ConditionCredentialExpiring is True while a static token or API key
	// is within spec.expiryWarning of its expiresAt (reason
	// ReasonExpiresSoon); the message names them and when they expire.
	ConditionCredentialExpiring = "CredentialExpiring"
	// ConditionCredentialExpired is True once a static token or API key is
	// past its expiresAt and refused (reason ReasonExpired).
	ConditionCredentialExpired = "CredentialExpired"

	// ReasonExpiresSoon: a credential expires within spec.expiryWarning.
	ReasonExpiresSoon = "ExpiresSoon"
	// ReasonExpired: a credential is past its expiresAt.
	ReasonExpired = "Expired"
	// ReasonNotDue: no credential is (about to be) expired.
	ReasonNotDue = "NotDue"
)

// Registry token modes (spec.registryToken.mode).
const (
	RegistryTokenOnRequest = "on-request"
	RegistryTokenAlways    = "always"
)

// SecretKeySelector names one key of a Secret in the policy's namespace.
type SecretKeySelector struct {
	// name of the Secret. It must be in the same namespace as the policy
	// and carry the label registryauth.io/credential=true: a Secret without
	// it is not read (SecretNotOptedIn).
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
	Name string `json:"name"`

	// key within the Secret's data that holds the value.
	// +kubebuilder:default=token
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[-._a-zA-Z0-9]+$`
	// +optional
	Key string `json:"key,omitempty"`
}

// DefaultSecretKey is the key read when a SecretKeySelector names none (the
// API server defaults it too; objects built in code may leave it empty).
const DefaultSecretKey = "token"

// KeyOrDefault is the key to read: Key, or DefaultSecretKey.
func (s SecretKeySelector) KeyOrDefault() string {
	if s.Key == "" {
		return DefaultSecretKey
	}
	return s.Key
}

// IdentitySpec is the identity a request authenticated by the static token
// is given. The auth service returns it to the ingress in X-User, X-Username,
// X-Client-Id, X-Groups and X-Scopes.
type IdentitySpec struct {
	// username returned in X-User and X-Username.
	// +kubebuilder:default=network-user
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=256
	// +optional
	Username string `json:"username,omitempty"`

	// clientID returned in X-Client-Id.
	// +kubebuilder:default=network-trusted
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=256
	// +optional
	ClientID string `json:"clientID,omitempty"`

	// groups returned in X-Groups (space-joined).
	// +kubebuilder:default={"mcp-registry-admin"}
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:MinLength=1
	// +kubebuilder:validation:items:MaxLength=256
	// +kubebuilder:validation:items:Pattern=`^[^,\s]+$`
	// +listType=atomic
	// +optional
	Groups []string `json:"groups,omitempty"`

	// scopes returned in X-Scopes (space-joined). Each identity field
	// defaults on its own: setting username or groups alone keeps these
	// admin scopes; set scopes too for a narrower identity.
	// +kubebuilder:default={"mcp-registry-admin","mcp-servers-unrestricted/read","mcp-servers-unrestricted/execute"}
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:MinLength=1
	// +kubebuilder:validation:items:MaxLength=256
	// +kubebuilder:validation:items:Pattern=`^\S+$`
	// +listType=atomic
	// +optional
	Scopes []string `json:"scopes,omitempty"`
}

// StaticTokenSpec configures the shared static API token for Registry API
// paths (the "network-trusted" bypass of IdP authentication).
// +kubebuilder:validation:XValidation:rule="!self.enabled || has(self.secretRef)",message="secretRef is required when enabled is true"
// +kubebuilder:validation:XValidation:rule="!has(self.rotationGracePeriod) || (duration(self.rotationGracePeriod) >= duration('0s') && duration(self.rotationGracePeriod) <= duration('24h'))",message="rotationGracePeriod must be between 0s and 24h"
type StaticTokenSpec struct {
	// enabled turns the static token on. Clients then send it as
	// "Authorization: Bearer <token>" on Registry API paths.
	// +kubebuilder:default=false
	// +optional
	Enabled bool `json:"enabled"`

	// secretRef names the Secret key that holds the token. The token must be
	// at least 32 characters and may not be a known placeholder. Required
	// when enabled is true.
	// +optional
	SecretRef *SecretKeySelector `json:"secretRef,omitempty"`

	// pathPrefixes are the Registry API path prefixes. Static tokens and API
	// keys are only accepted under these; every other path is a gateway path
	// that needs IdP authentication. Matching uses the normalised path.
	// +kubebuilder:default={"/api/","/v0.1/"}
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=32
	// +kubebuilder:validation:items:Pattern=`^/[^?#\s]*$`
	// +kubebuilder:validation:items:MaxLength=256
	// +listType=atomic
	// +optional
	PathPrefixes []string `json:"pathPrefixes,omitempty"`

	// sessionCookieName is the browser session cookie. A request that carries
	// it skips the static token and API keys and goes the session way.
	// +kubebuilder:default=mcp_gateway_session
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=128
	// +kubebuilder:validation:Pattern=`^[!#$%&'*+\-.^_|~0-9A-Za-z]+$`
	// +optional
	SessionCookieName string `json:"sessionCookieName,omitempty"`

	// identity given to requests authenticated by the static token.
	// +kubebuilder:default={}
	// +optional
	Identity IdentitySpec `json:"identity,omitempty"`

	// rotationGracePeriod keeps the previous token valid for this long after
	// the Secret changes, so clients can move to the new one. 0s (the
	// default) revokes the previous token at once. At most 24h. Lowering it
	// shortens a window already running; setting 0s ends it.
	// +kubebuilder:default="0s"
	// +kubebuilder:validation:Type=string
	// +optional
	RotationGracePeriod *metav1.Duration `json:"rotationGracePeriod,omitempty"`

	// expiresAt, when set, is when the static token stops being accepted
	// (RFC 3339, e.g. 2026-12-31T00:00:00Z): from that instant on it is
	// refused with credential_expired, on every replica, whichever of its
	// values is sent. It belongs to the entry, not to a value: rotating the
	// Secret does not move it. The policy reports CredentialExpiring
	// expiryWarning before it and CredentialExpired after it.
	// +optional
	ExpiresAt *metav1.Time `json:"expiresAt,omitempty"`
}

// FederationTokenSpec is the federation token a peer registry sends to read
// this registry's federation and peers API (the upstream auth server's
// FEDERATION_STATIC_TOKEN). It is tried before the static token and the API
// keys; a value that does not match goes on to them.
// +kubebuilder:validation:XValidation:rule="!self.enabled || has(self.secretRef)",message="secretRef is required when enabled is true"
// +kubebuilder:validation:XValidation:rule="!has(self.rotationGracePeriod) || (duration(self.rotationGracePeriod) >= duration('0s') && duration(self.rotationGracePeriod) <= duration('24h'))",message="rotationGracePeriod must be between 0s and 24h"
type FederationTokenSpec struct {
	// enabled turns the federation token on.
	// +kubebuilder:default=false
	// +optional
	Enabled bool `json:"enabled"`

	// secretRef names the Secret key that holds the token (at least 32
	// characters, not a known placeholder). Required when enabled is true.
	// +optional
	SecretRef *SecretKeySelector `json:"secretRef,omitempty"`

	// pathPrefixes are where the token counts; each must lie under the
	// Registry API prefixes. Empty means /api/federation/ and /api/peers
	// (itself and under /api/peers/). Matching uses the normalised path.
	// +kubebuilder:validation:MaxItems=16
	// +kubebuilder:validation:items:Pattern=`^/[^?#\s]*$`
	// +kubebuilder:validation:items:MaxLength=256
	// +listType=atomic
	// +optional
	PathPrefixes []string `json:"pathPrefixes,omitempty"`

	// groups of the peer identity (username federation-peer, client and
	// X-Auth-Method federation-static, scope federation/read). Upstream sends
	// none; a registry that maps a group such as federation-service to the
	// federation scopes needs it here.
	// +kubebuilder:validation:MaxItems=16
	// +kubebuilder:validation:items:MinLength=1
	// +kubebuilder:validation:items:MaxLength=256
	// +kubebuilder:validation:items:Pattern=`^[^,\s]+$`
	// +listType=atomic
	// +optional
	Groups []string `json:"groups,omitempty"`

	// rotationGracePeriod keeps the previous token valid for this long after
	// the Secret changes. 0s (the default) revokes it at once. At most 24h.
	// +kubebuilder:default="0s"
	// +kubebuilder:validation:Type=string
	// +optional
	RotationGracePeriod *metav1.Duration `json:"rotationGracePeriod,omitempty"`
}

// DelegateSpec names the upstream auth server (the MCP Gateway Registry's own
// auth_server) that decides what this service does not own.
// +kubebuilder:validation:XValidation:rule="!has(self.timeout) || (duration(self.timeout) > duration('0s') && duration(self.timeout) <= duration('10s'))",message="timeout must be more than 0s and at most 10s"
type DelegateSpec struct {
	// url is the upstream auth server's auth endpoint, e.g.
	// http://auth-server.registry.svc:8888/validate. Its host must be one the
	// cluster admin allows (--allowed-delegate-hosts, Helm value
	// allowedDelegateHosts). It gets the same auth
	// request (method and headers) and its status and answer headers
	// (identity headers, X-Internal-Token*, rate-limit headers,
	// WWW-Authenticate) are relayed unchanged.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=2048
	// +kubebuilder:validation:Pattern=`^https?://[^\s?#@]+$`
	URL string `json:"url"`

	// timeout bounds one delegated check. A delegate that does not answer in
	// time gets the request refused (delegate_unavailable, 403).
	// +kubebuilder:default="5s"
	// +kubebuilder:validation:Type=string
	// +optional
	Timeout *metav1.Duration `json:"timeout,omitempty"`

	// gatewayPaths sends every request on a path outside the Registry API
	// to the delegate, whatever credential it carries: today's registry
	// routes MCP traffic through the upstream auth server's /mcp-proxy,
	// whose hop token that server mints. Without it only browser sessions
	// kept in the registry's store and tokens of issuers this policy does
	// not know go there.
	// +optional
	GatewayPaths bool `json:"gatewayPaths,omitempty"`

	// maxConcurrent bounds the delegated checks in flight to this URL, per
	// replica; past it requests are refused at once (delegate_unavailable).
	// +kubebuilder:default=256
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=4096
	// +optional
	MaxConcurrent int32 `json:"maxConcurrent,omitempty"`
}

// APIKeySpec is one named API key. Its name is the username and client id of
// the requests it authenticates.
// +kubebuilder:validation:XValidation:rule="!has(self.rotationGracePeriod) || (duration(self.rotationGracePeriod) >= duration('0s') && duration(self.rotationGracePeriod) <= duration('24h'))",message="rotationGracePeriod must be between 0s and 24h"
type APIKeySpec struct {
	// name of the key, returned as username and client id.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-zA-Z0-9]([-._a-zA-Z0-9]*[a-zA-Z0-9])?$`
	Name string `json:"name"`

	// secretRef names the Secret key that holds the API key (at least 32
	// characters).
	SecretRef SecretKeySelector `json:"secretRef"`

	// groups of the key's identity; groupScopes maps them to scopes.
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:MinLength=1
	// +kubebuilder:validation:items:MaxLength=256
	// +kubebuilder:validation:items:Pattern=`^[^,\s]+$`
	// +listType=atomic
	// +optional
	Groups []string `json:"groups,omitempty"`

	// pathPrefixes narrows the key to these paths. Each must lie under one of
	// the Registry API prefixes (staticToken.pathPrefixes). Empty means all
	// Registry API paths.
	// +kubebuilder:validation:MaxItems=32
	// +kubebuilder:validation:items:Pattern=`^/[^?#\s]*$`
	// +kubebuilder:validation:items:MaxLength=256
	// +listType=atomic
	// +optional
	PathPrefixes []string `json:"pathPrefixes,omitempty"`

	// methods narrows the key to these HTTP methods, e.g. [GET, HEAD] for a
	// read-only key. Empty means every method. A key with methods or
	// pathPrefixes refuses a request that carries a method-override header
	// (X-HTTP-Method-Override, X-HTTP-Method, X-Method-Override) or a ';'
	// path parameter, which could get round its limits.
	// +kubebuilder:validation:MaxItems=9
	// +kubebuilder:validation:items:Enum=GET;HEAD;POST;PUT;PATCH;DELETE;OPTIONS
	// +listType=set
	// +optional
	Methods []string `json:"methods,omitempty"`

	// rotationGracePeriod keeps the previous key valid for this long after
	// the Secret changes. Default 0s, at most 24h.
	// +kubebuilder:default="0s"
	// +kubebuilder:validation:Type=string
	// +optional
	RotationGracePeriod *metav1.Duration `json:"rotationGracePeriod,omitempty"`
	// expiresAt, when set, is when the key stops being accepted (RFC 3339):
	// from that instant on it is refused with credential_expired, whichever
	// of its values is sent. Rotating the Secret does not move it.
	// +optional
	ExpiresAt *metav1.Time `json:"expiresAt,omitempty"`
}

// CABundleRef names the PEM bundle of certificate authorities that an
// issuer's TLS certificate is checked against, instead of the system roots:
// a private IdP. Exactly one of configMapKeyRef and secretKeyRef is set;
// either is in the policy's namespace. A CA bundle is public data, so a
// ConfigMap needs no opt-in label; a Secret is read only with the label
// registryauth.io/credential=true, as any Secret the operator reads.
// +kubebuilder:validation:XValidation:rule="has(self.configMapKeyRef) != has(self.secretKeyRef)",message="exactly one of configMapKeyRef and secretKeyRef"
type CABundleRef struct {
	// configMapKeyRef: a key of a ConfigMap that holds the PEM bundle.
	// +optional
	ConfigMapKeyRef *CABundleKeySelector `json:"configMapKeyRef,omitempty"`

	// secretKeyRef: a key of a Secret that holds the PEM bundle. The Secret
	// must carry the label registryauth.io/credential=true.
	// +optional
	SecretKeyRef *CABundleKeySelector `json:"secretKeyRef,omitempty"`
}

// CABundleKeySelector names one key of a ConfigMap or Secret in the
// policy's namespace.
type CABundleKeySelector struct {
	// name of the ConfigMap or Secret.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
	Name string `json:"name"`

	// key that holds the PEM bundle (ca.crt, for instance).
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[-._a-zA-Z0-9]+$`
	Key string `json:"key"`
}

// OIDCSpec configures IdP-issued JWT bearer tokens (Keycloak, Entra ID,
// Cognito or any OpenID Connect issuer).
type OIDCSpec struct {
	// issuerURL is the issuer; discovery is read from
	// <issuerURL>/.well-known/openid-configuration. It must be https (the
	// operator admits plain http only on loopback, with
	// --allow-insecure-loopback). When discovery fails, status says so and
	// the operator's log says why.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=2048
	// +kubebuilder:validation:Pattern=`^https?://[^\s?#]+$`
	IssuerURL string `json:"issuerURL"`

	// audiences accepted in the token's aud claim (or, for the keycloak
	// preset, its azp claim; for the cognito preset, the client_id claim of
	// an access token). At least one is required.
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=16
	// +kubebuilder:validation:items:MinLength=1
	// +kubebuilder:validation:items:MaxLength=512
	// +listType=set
	Audiences []string `json:"audiences"`

	// usernameClaim is the claim used as username; a dotted name
	// (realm_access.name) is looked up in nested objects when no top-level
	// claim has it. Empty means the preset's
	// default: preferred_username then sub (keycloak, generic),
	// preferred_username, upn, unique_name then sub (entra), username,
	// cognito:username then sub (cognito), sub then preferred_username
	// (okta), nickname then sub (auth0).
	// +kubebuilder:validation:MaxLength=256
	// +optional
	UsernameClaim string `json:"usernameClaim,omitempty"`

	// groupsClaim is the claim that holds the groups; a dotted name
	// (realm_access.roles) is looked up in nested objects when no top-level
	// claim has it. Empty means the preset's default: groups (keycloak,
	// entra, okta, generic), cognito:groups (cognito), or
	// https://mcp-gateway/groups then permissions (auth0).
	// +kubebuilder:validation:MaxLength=256
	// +optional
	GroupsClaim string `json:"groupsClaim,omitempty"`

	// preset adapts checks to the IdP: "keycloak" also accepts a token whose
	// azp (the requesting client) is one of the audiences, as Keycloak's
	// access tokens often carry aud "account"; "entra" accepts both the v1
	// (sts.windows.net) and v2 issuer of the tenant; "cognito" accepts access
	// tokens that carry client_id instead of aud; "okta" takes the client
	// from cid; "auth0" reads groups from its namespaced claim. A JWT user's
	// X-Auth-Method is the preset's name, or "oidc" for generic.
	// +kubebuilder:validation:Enum=keycloak;entra;cognito;okta;auth0;generic
	// +kubebuilder:default=generic
	// +optional
	Preset string `json:"preset,omitempty"`

	// caBundleRef: the certificate authorities the issuer's TLS
	// certificate is checked against (discovery and JWKS), instead of the
	// system roots. When it cannot be read or holds no valid PEM
	// certificate, status says so and the issuer's tokens are refused.
	// +optional
	CABundleRef *CABundleRef `json:"caBundleRef,omitempty"`
}

// Issuer presets beyond OIDCSpec's: workload identities.
const (
	// PresetGitHubActions: GitHub Actions' OIDC tokens; issuerURL defaults
	// to https://token.actions.githubusercontent.com.
	PresetGitHubActions = "github-actions"
	// PresetGitLab: GitLab CI's id_tokens; issuerURL defaults to
	// https://gitlab.com (set it for a self-managed GitLab).
	PresetGitLab = "gitlab"
	// PresetKubernetes: ServiceAccount tokens of the cluster the operator
	// runs in, read through its API server; issuerURL must be empty.
	PresetKubernetes = "kubernetes"
)

// IssuerSpec is one issuer of JWT bearer tokens: an IdP, or a workload
// identity issuer such as GitHub Actions, GitLab CI or this cluster's
// ServiceAccount tokens, for CI without shared secrets.
// +kubebuilder:validation:XValidation:rule="!has(self.preset) || self.preset != 'kubernetes' || !has(self.issuerURL)",message="issuerURL must be empty for the kubernetes preset: it means this cluster's service account issuer"
// +kubebuilder:validation:XValidation:rule="has(self.issuerURL) || (has(self.preset) && self.preset in ['kubernetes', 'github-actions', 'gitlab'])",message="issuerURL is required unless the preset is kubernetes, github-actions or gitlab"
// +kubebuilder:validation:XValidation:rule="!has(self.preset) || self.preset != 'kubernetes' || !has(self.caBundleRef)",message="caBundleRef must be empty for the kubernetes preset: it uses the cluster's CA"
type IssuerSpec struct {
	// name of the entry, unique in the policy. It is the X-Auth-Method of
	// the entry's users, and names the entry in status and events.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	Name string `json:"name"`

	// preset: one of OIDCSpec's presets (keycloak, entra, cognito, okta,
	// auth0, generic), or a workload identity: "github-actions" (issuerURL
	// defaults to https://token.actions.githubusercontent.com), "gitlab"
	// (defaults to https://gitlab.com), "kubernetes" (this cluster's
	// ServiceAccount tokens, read through the API server; issuerURL must
	// be empty, and no audience may be the API server's own). The workload
	// presets take the username from sub and give no groups; map groups
	// with claimMappings.groups.
	// +kubebuilder:validation:Enum=keycloak;entra;cognito;okta;auth0;generic;github-actions;gitlab;kubernetes
	// +kubebuilder:default=generic
	// +optional
	Preset string `json:"preset,omitempty"`

	// issuerURL is the issuer; discovery is read from
	// <issuerURL>/.well-known/openid-configuration. It must be https (plain
	// http only on loopback, with the operator's --allow-insecure-loopback).
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=2048
	// +kubebuilder:validation:Pattern=`^https?://[^\s?#]+$`
	// +optional
	IssuerURL string `json:"issuerURL,omitempty"`

	// audiences accepted in the token's aud claim. At least one is
	// required. Choose one that names this registry
	// (https://registry.example.com): a token minted for it is then good
	// for nothing else.
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=16
	// +kubebuilder:validation:items:MinLength=1
	// +kubebuilder:validation:items:MaxLength=512
	// +listType=set
	Audiences []string `json:"audiences"`

	// claimMappings say where the username and the groups come from;
	// groupScopes maps the groups to scopes. Empty means the preset's.
	// +optional
	ClaimMappings *ClaimMappingsSpec `json:"claimMappings,omitempty"`

	// claimValidationRules must all hold for a token to be accepted: CEL
	// expressions over the verified claims, e.g.
	// claims.repository == "acme/registry-sync" && claims.ref == "refs/heads/main",
	// or, for the kubernetes preset,
	// claims["kubernetes.io"].namespace == "ci". An absent claim is an
	// error and fails the rule: guard with has(claims.x). A token that
	// verifies but fails a rule is refused with claim_rule_failed (403).
	// Each evaluation is bounded by a cost limit; a rule that does not
	// compile sets ClaimRuleInvalid, naming it, and the entry's tokens are
	// refused.
	// +kubebuilder:validation:MaxItems=16
	// +listType=atomic
	// +optional
	ClaimValidationRules []ClaimValidationRule `json:"claimValidationRules,omitempty"`

	// registryOnly limits the entry's identities to the Registry API paths
	// (staticToken.pathPrefixes), like the static token: a CI identity then
	// cannot reach MCP gateway paths (jwt_registry_paths_only, 403).
	// +optional
	RegistryOnly bool `json:"registryOnly,omitempty"`

	// caBundleRef: the certificate authorities the issuer's TLS
	// certificate is checked against (discovery and JWKS), instead of the
	// system roots: a private IdP. Not with the kubernetes preset, which
	// uses the cluster's CA. When it cannot be read or holds no valid PEM
	// certificate, status says so and the entry's tokens are refused.
	// +optional
	CABundleRef *CABundleRef `json:"caBundleRef,omitempty"`
}

// ClaimMappingsSpec maps claims to the identity.
type ClaimMappingsSpec struct {
	// username: a claim (dotted names are looked up in nested objects) or
	// a CEL expression giving a string, e.g. claims.repository.
	// +optional
	Username *ClaimOrExpression `json:"username,omitempty"`

	// groups: a claim holding a string or a list of strings, or a CEL
	// expression giving one, e.g. ["ci-" + claims.repository_owner].
	// +optional
	Groups *ClaimOrExpression `json:"groups,omitempty"`
}

// ClaimOrExpression is a claim name or a CEL expression over claims.
// +kubebuilder:validation:XValidation:rule="has(self.claim) != has(self.expression)",message="exactly one of claim and expression"
type ClaimOrExpression struct {
	// claim is the claim's name.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=256
	// +optional
	Claim string `json:"claim,omitempty"`

	// expression is a CEL expression over claims.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=4096
	// +optional
	Expression string `json:"expression,omitempty"`
}

// ClaimValidationRule is a CEL expression that must evaluate to true.
type ClaimValidationRule struct {
	// expression over claims, evaluating to a bool.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=4096
	Expression string `json:"expression"`

	// message says what the rule requires; status and the log show it.
	// +kubebuilder:validation:MaxLength=256
	// +optional
	Message string `json:"message,omitempty"`
}

// SessionSpec configures browser session cookies made by the registry web
// app with itsdangerous.URLSafeTimedSerializer(SECRET_KEY).
// +kubebuilder:validation:XValidation:rule="!has(self.maxAge) || duration(self.maxAge) > duration('0s')",message="maxAge must be a positive duration such as 8h"
// +kubebuilder:validation:XValidation:rule="!has(self.rotationGracePeriod) || (duration(self.rotationGracePeriod) >= duration('0s') && duration(self.rotationGracePeriod) <= duration('24h'))",message="rotationGracePeriod must be between 0s and 24h"
type SessionSpec struct {
	// cookieName is the session cookie's name.
	// +kubebuilder:default=mcp_gateway_session
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=128
	// +kubebuilder:validation:Pattern=`^[!#$%&'*+\-.^_|~0-9A-Za-z]+$`
	// +optional
	CookieName string `json:"cookieName,omitempty"`

	// secretKeyRef names the Secret key that holds the web app's SECRET_KEY.
	SecretKeyRef SecretKeySelector `json:"secretKeyRef"`

	// maxAge is how long a cookie stays valid after it was signed.
	// +kubebuilder:default="8h"
	// +kubebuilder:validation:Type=string
	// +optional
	MaxAge *metav1.Duration `json:"maxAge,omitempty"`

	// rotationGracePeriod keeps accepting cookies signed with the previous
	// SECRET_KEY for this long after the Secret changes, so that rotating
	// the key does not log every browser out at once. 0s (the default)
	// refuses them at once. At most 24h. The registry token (hop token)
	// signs with the new key at once. Each auth service replica keeps the
	// previous key in its memory only (never in another Secret, status or
	// log): a replica that starts during a window never saw it and refuses
	// the previous key's cookies.
	// +kubebuilder:default="0s"
	// +kubebuilder:validation:Type=string
	// +optional
	RotationGracePeriod *metav1.Duration `json:"rotationGracePeriod,omitempty"`
}

// RegistryTokenSpec configures the MCP Gateway Registry's hop token: the
// signed JWT (X-Internal-Token-Registry) that allowed answers carry and that
// the registry, since mid-2026, trusts instead of the identity headers.
// +kubebuilder:validation:XValidation:rule="has(self.secretKeyRef) || has(self.signingKeyRef)",message="secretKeyRef or signingKeyRef is required"
// +kubebuilder:validation:XValidation:rule="!has(self.ttl) || (duration(self.ttl) >= duration('5s') && duration(self.ttl) <= duration('24h'))",message="ttl must be between 5s and 24h"
// +kubebuilder:validation:XValidation:rule="!has(self.jwksOverlap) || (duration(self.jwksOverlap) >= duration('0s') && duration(self.jwksOverlap) <= duration('168h'))",message="jwksOverlap must be between 0s and 168h"
type RegistryTokenSpec struct {
	// secretKeyRef names the Secret key that holds the registry's
	// SECRET_KEY: the same Secret key the registry's Deployment passes to
	// it as SECRET_KEY. Tokens are HS256, keyed with the value exactly as
	// stored (a trailing newline included), because the registry keys its
	// verifier with the raw environment value. Not used when signingKeyRef
	// is set.
	// +optional
	SecretKeyRef *SecretKeySelector `json:"secretKeyRef,omitempty"`

	// signingKeyRef names a Secret key that holds an unencrypted PEM P-256
	// private key. Tokens are then ES256, with kid "es256-" and the key's
	// RFC 7638 thumbprint, and the public keys are served at
	// /.well-known/internal-jwks.json/<namespace>/<name> on the auth port.
	// Replacing the value rotates the key without a restart; the replaced
	// public key stays published for jwksOverlap. Deleting the Secret, or
	// a value that does not parse, withdraws every published key at once.
	// +optional
	SigningKeyRef *SecretKeySelector `json:"signingKeyRef,omitempty"`

	// ttl is the token lifetime (exp - iat), 5s to 24h; whole seconds.
	// +kubebuilder:default="30s"
	// +kubebuilder:validation:Type=string
	// +optional
	TTL *metav1.Duration `json:"ttl,omitempty"`

	// mode is when an allowed request is answered with a token:
	// "on-request" when the auth request carries a non-empty
	// X-Registry-Api-Auth header (what the registry's own nginx sends from
	// its /api/ locations), "always" also on every allowed request on the
	// Registry API paths (staticToken.pathPrefixes), for proxies that
	// cannot add a header to the auth request (Traefik, Envoy Gateway,
	// ingress-nginx without auth-proxy-set-headers).
	// +kubebuilder:validation:Enum=on-request;always
	// +kubebuilder:default=on-request
	// +optional
	Mode string `json:"mode,omitempty"`

	// jwksOverlap is how long a replaced ES256 public key stays in the
	// JWKS after signingKeyRef's value changes, so tokens it signed still
	// verify at a registry that refreshes its key set. 0s to 168h.
	// Lowering it shortens an overlap already running; 0s ends it.
	// +kubebuilder:default="15m"
	// +kubebuilder:validation:Type=string
	// +optional
	JWKSOverlap *metav1.Duration `json:"jwksOverlap,omitempty"`
}

// RegistryAuthPolicySpec defines how requests to one MCP server registry are
// authenticated.
// +kubebuilder:validation:XValidation:rule="!has(self.groupScopes) || self.groupScopes.all(g, size(g) > 0 && size(g) <= 256)",message="groupScopes keys must be 1 to 256 characters"
// +kubebuilder:validation:XValidation:rule="!has(self.expiryWarning) || (duration(self.expiryWarning) >= duration('0s') && duration(self.expiryWarning) <= duration('2160h'))",message="expiryWarning must be between 0s and 2160h"
type RegistryAuthPolicySpec struct {
	// hosts are the ingress hosts this policy answers for when the ingress
	// calls plain /validate (the host is read from X-Original-URL). A host
	// counts only when the cluster admin granted it to the policy's namespace
	// (the operator's --host-grants; HostNotGranted otherwise); of the
	// policies a host is granted to, the oldest answers for it and a newer
	// one reports HostConflict. /validate/<namespace>/<name> selects a policy
	// without hosts or grants.
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:MaxLength=253
	// +kubebuilder:validation:items:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
	// +listType=set
	// +optional
	Hosts []string `json:"hosts,omitempty"`

	// staticToken is the shared static API token for Registry API paths.
	// +optional
	StaticToken *StaticTokenSpec `json:"staticToken,omitempty"`

	// delegate is the upstream auth server that decides what this service
	// does not own: browser sessions the registry keeps in its own store,
	// tokens of issuers the policy does not know, and, with gatewayPaths,
	// MCP traffic. Static credentials and the policy's JWT issuers are still
	// decided here.
	// +optional
	Delegate *DelegateSpec `json:"delegate,omitempty"`

	// federationToken is the token peer registries send to read the
	// federation and peers API.
	// +optional
	FederationToken *FederationTokenSpec `json:"federationToken,omitempty"`

	// apiKeys are named keys for Registry API paths, each with its own
	// identity, groups and optional path and method limits. Names are unique.
	// +kubebuilder:validation:MaxItems=64
	// +listType=map
	// +listMapKey=name
	// +optional
	APIKeys []APIKeySpec `json:"apiKeys,omitempty"`

	// oidc accepts IdP-issued JWT bearer tokens on every path.
	// +optional
	OIDC *OIDCSpec `json:"oidc,omitempty"`

	// issuers are further issuers of JWT bearer tokens, tried after oidc
	// in order: IdPs, and workload identities for CI without shared
	// secrets (GitHub Actions, GitLab CI, this cluster's ServiceAccount
	// tokens), each with its audiences, claim mappings, claim rules and
	// optional limit to the Registry API paths. Names are unique.
	// +kubebuilder:validation:MaxItems=16
	// +listType=map
	// +listMapKey=name
	// +optional
	Issuers []IssuerSpec `json:"issuers,omitempty"`

	// session accepts the registry web app's signed session cookie.
	// +optional
	Session *SessionSpec `json:"session,omitempty"`

	// groupScopes maps a group to the scopes its members get (API keys,
	// session and OIDC identities).
	// +kubebuilder:validation:MaxProperties=256
	// +optional
	GroupScopes map[string][]string `json:"groupScopes,omitempty"`

	// agentPathPrefixes are the agent (A2A) paths. There the Authorization
	// header is the agent's own credential: only X-Authorization carries the
	// registry credential, and the same bearer token in both headers is
	// refused. Elsewhere a non-empty X-Authorization wins over
	// Authorization. Empty means /agent/ (the registry's A2A paths; add the
	// registry's root path when it has one).
	// +kubebuilder:validation:MaxItems=8
	// +kubebuilder:validation:items:Pattern=`^/[^?#\s]*$`
	// +kubebuilder:validation:items:MaxLength=256
	// +listType=atomic
	// +optional
	AgentPathPrefixes []string `json:"agentPathPrefixes,omitempty"`

	// registryToken answers allowed requests with the registry's signed hop
	// token (X-Internal-Token-Registry). A registry of mid-2026 or later
	// refuses identity headers that come without it.
	// +optional
	RegistryToken *RegistryTokenSpec `json:"registryToken,omitempty"`

	// publicPaths pass without credentials: a GET, HEAD or OPTIONS request
	// whose normalised path is one of them or under it is allowed with no
	// identity headers, and a token it carries is not looked at (metrics:
	// reason public). For the protected resource metadata MCP clients
	// fetch first, e.g. /.well-known/oauth-protected-resource. A prefix
	// ending in / matches as a string prefix, others at a segment boundary.
	// +kubebuilder:validation:MaxItems=16
	// +kubebuilder:validation:items:Pattern=`^/[^?#\s]*$`
	// +kubebuilder:validation:items:MaxLength=256
	// +listType=atomic
	// +optional
	PublicPaths []string `json:"publicPaths,omitempty"`

	// protectedResource points MCP clients (the MCP authorization spec,
	// 2025-06-18 onward) at the resource's metadata (RFC 9728): a 401 on a
	// gateway path carries WWW-Authenticate: Bearer
	// resource_metadata="<url>" (and scope), a 403 for a credential that
	// does not reach the request error="insufficient_scope" with the same.
	// +optional
	ProtectedResource *ProtectedResourceSpec `json:"protectedResource,omitempty"`
	// expiryWarning is how long before a static token's or API key's
	// expiresAt the policy reports the CredentialExpiring condition (and a
	// Warning event). Default 168h (7 days), at most 2160h (90 days); 0s
	// reports only the expiry itself.
	// +kubebuilder:default="168h"
	// +kubebuilder:validation:Type=string
	// +optional
	ExpiryWarning *metav1.Duration `json:"expiryWarning,omitempty"`
}

// ProtectedResourceSpec is the protected resource metadata of challenges.
type ProtectedResourceSpec struct {
	// metadataURL is the resource metadata URL: absolute http(s), or a
	// template with {scheme}, {host} (the request's host, lower case,
	// without its port) and {path} (the normalised request path), e.g.
	// https://{host}/.well-known/oauth-protected-resource{path}.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=2048
	MetadataURL string `json:"metadataURL"`

	// scopes are advertised in the challenge's scope parameter.
	// +kubebuilder:validation:MaxItems=32
	// +kubebuilder:validation:items:MaxLength=256
	// +listType=atomic
	// +optional
	Scopes []string `json:"scopes,omitempty"`

	// registryPaths challenges on the Registry API paths
	// (staticToken.pathPrefixes) too; by default only gateway paths are.
	// +optional
	RegistryPaths bool `json:"registryPaths,omitempty"`
}

// CredentialStatus reports a loaded token or key by fingerprint only.
type CredentialStatus struct {
	// fingerprint is the first 12 hex digits of the SHA-256 of the value in
	// force. It is never the value itself.
	// +optional
	Fingerprint string `json:"fingerprint,omitempty"`

	// rotatedAt is when the value now in force was written to its Secret
	// (the Secret's last write, as recorded by the API server).
	// +optional
	RotatedAt *metav1.Time `json:"rotatedAt,omitempty"`

	// previousFingerprint is the fingerprint of the value replaced last, while
	// it is still accepted during the rotation grace period.
	// +optional
	PreviousFingerprint string `json:"previousFingerprint,omitempty"`

	// previousExpiresAt is when the previous value stops being accepted.
	// +optional
	PreviousExpiresAt *metav1.Time `json:"previousExpiresAt,omitempty"`
}

// APIKeyStatus is the CredentialStatus of one named API key.
type APIKeyStatus struct {
	// name of the API key.
	Name string `json:"name"`

	CredentialStatus `json:",inline"`
}

// RegistryTokenStatus reports the registry token's key in force, by
// fingerprint or key id only.
type RegistryTokenStatus struct {
	// algorithm is HS256 or ES256.
	// +optional
	Algorithm string `json:"algorithm,omitempty"`

	// keyID identifies the key that signs: for ES256 the kid
	// ("es256-..."), for HS256 the first 12 hex digits of the SHA-256 of
	// the secret key as stored.
	// +optional
	KeyID string `json:"keyID,omitempty"`

	// rotatedAt is when the ES256 signing key in force was written to its
	// Secret.
	// +optional
	RotatedAt *metav1.Time `json:"rotatedAt,omitempty"`

	// previousKeys are replaced ES256 public keys still published in the
	// JWKS.
	// +listType=map
	// +listMapKey=keyID
	// +optional
	PreviousKeys []PreviousKeyStatus `json:"previousKeys,omitempty"`
}

// PreviousKeyStatus is a replaced ES256 public key still in the JWKS.
type PreviousKeyStatus struct {
	// keyID is the key's kid.
	KeyID string `json:"keyID"`

	// expiresAt is when it leaves the JWKS.
	// +optional
	ExpiresAt *metav1.Time `json:"expiresAt,omitempty"`
}

// RegistryAuthPolicyStatus is the observed state of a RegistryAuthPolicy.
type RegistryAuthPolicyStatus struct {
	// observedGeneration is the spec generation the status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// conditions: Ready, with a reason such as SecretNotFound,
	// SecretNotOptedIn, KeyMissing,
	// TokenEmpty, TokenTooWeak, OIDCDiscoveryFailed, InvalidSpec,
	// HostConflict, SigningKeyInvalid or ClaimRuleInvalid when it is False;
	// CredentialExpiring and CredentialExpired while a static token or API
	// key in force has an expiresAt (True: within expiryWarning of it, or
	// past it).
	// +listType=map
	// +listMapKey=type
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// staticToken reports the static token in force.
	// +optional
	StaticToken *CredentialStatus `json:"staticToken,omitempty"`

	// federationToken reports the federation token in force.
	// +optional
	FederationToken *CredentialStatus `json:"federationToken,omitempty"`

	// session reports the session signing key in force (spec.session).
	// +optional
	Session *CredentialStatus `json:"session,omitempty"`

	// apiKeys reports each API key in force.
	// +listType=map
	// +listMapKey=name
	// +optional
	APIKeys []APIKeyStatus `json:"apiKeys,omitempty"`

	// registryToken reports the registry token's key in force.
	// +optional
	RegistryToken *RegistryTokenStatus `json:"registryToken,omitempty"`
}

// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=rap,categories=registryauth
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Reason",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].reason`,priority=1
// +kubebuilder:printcolumn:name="Token",type=string,JSONPath=`.status.staticToken.fingerprint`
// +kubebuilder:printcolumn:name="Rotated",type=date,JSONPath=`.status.staticToken.rotatedAt`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`

// RegistryAuthPolicy configures how the auth service authenticates requests
// to an MCP server registry behind an ingress: a static API token and named
// API keys for Registry API paths, IdP-issued JWTs, and browser session
// cookies.
type RegistryAuthPolicy struct {
	metav1.TypeMeta `json:",inline"`

	// metadata is a standard object metadata.
	// +optional
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec defines how requests are authenticated.
	// +required
	Spec RegistryAuthPolicySpec `json:"spec"`

	// status reports what is in force.
	// +optional
	Status RegistryAuthPolicyStatus `json:"status,omitempty"`
}

// +kubebuilder:object:root=true

// RegistryAuthPolicyList contains a list of RegistryAuthPolicy.
type RegistryAuthPolicyList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []RegistryAuthPolicy `json:"items"`
}

func init() {
	SchemeBuilder.Register(&RegistryAuthPolicy{}, &RegistryAuthPolicyList{})
}
