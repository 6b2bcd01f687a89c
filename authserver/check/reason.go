package check

// Reason is the machine-readable outcome of a decision. It appears in the
// answers of denials, in debug logs and as a metric label. The set is fixed,
// so metric cardinality is bounded.
type Reason string

// Reasons for allowing.
const (
	ReasonAllowedStaticToken         Reason = "static_token"
	ReasonAllowedStaticTokenPrevious Reason = "static_token_previous"
	ReasonAllowedAPIKey              Reason = "api_key"
	ReasonAllowedAPIKeyPrevious      Reason = "api_key_previous"
	ReasonAllowedSession             Reason = "session"
	ReasonAllowedSessionPrevious     Reason = "session_previous"
	ReasonAllowedOIDC                Reason = "oidc"
	ReasonAllowedFederation          Reason = "federation_token"
	ReasonAllowedFederationPrevious  Reason = "federation_token_previous"
	// ReasonDelegatedAllowed: the policy's delegate (the upstream auth
	// server) allowed the request; its answer headers were relayed.
	ReasonDelegatedAllowed Reason = "delegated"
	// ReasonPublic: a GET, HEAD or OPTIONS on one of the policy's public
	// paths; allowed with no identity and no credential looked at.
	ReasonPublic Reason = "public"
)

// ReasonDelegate is the decision's answer for a request that belongs to the
// policy's delegate: the handler asks it and answers with one of the
// delegated reasons (ReasonDelegatedAllowed, ReasonDelegatedUnauthorized,
// ReasonDelegatedForbidden, ReasonDelegateUnavailable). It is never the
// final answer: a front-end that cannot delegate refuses with it (403).
const ReasonDelegate Reason = "delegate"

// Reasons for denying. Each has a fixed status and message (see
// denyReasons). The auth service answers only 200, 401 and 403: nginx's
// auth_request treats any other status as an error and answers 500.
const (
	ReasonNoPolicy               Reason = "no_policy"
	ReasonUnknownPolicy          Reason = "unknown_policy"
	ReasonBadOriginalURL         Reason = "bad_original_url"
	ReasonBadPath                Reason = "bad_path"
	ReasonAmbiguousAuthorization Reason = "ambiguous_authorization"
	ReasonDuplicatedCredential   Reason = "duplicated_credential"
	ReasonMalformedAuthorization Reason = "malformed_authorization"
	ReasonNoCredentials          Reason = "no_credentials"
	ReasonInvalidCredentials     Reason = "invalid_credentials"
	ReasonRegistryCredOnGateway  Reason = "registry_credential_on_gateway_path"
	ReasonFederationTokenOffPath Reason = "federation_token_off_federation_paths"
	ReasonAPIKeyForbidden        Reason = "api_key_forbidden"
	// ReasonCredentialExpired: a static token or API key matched, but its
	// expiresAt has passed.
	ReasonCredentialExpired       Reason = "credential_expired"
	ReasonSessionInvalid          Reason = "session_invalid"
	ReasonJWTInvalid              Reason = "jwt_invalid"
	ReasonJWTExpired              Reason = "jwt_expired"
	ReasonJWTAudience             Reason = "jwt_audience"
	ReasonJWTUnknownKey           Reason = "jwt_unknown_key"
	ReasonJWTNoUsername           Reason = "jwt_no_username"
	ReasonJWTNotConfigured        Reason = "jwt_not_configured"
	ReasonTooManyFailures         Reason = "too_many_failures"
	ReasonUnsupportedAuthzScheme  Reason = "unsupported_authorization_scheme"
	ReasonOIDCIssuerNotDiscovered Reason = "oidc_issuer_unavailable"
	ReasonDelegatedUnauthorized   Reason = "delegated_unauthorized"
	ReasonDelegatedForbidden      Reason = "delegated_forbidden"
	ReasonDelegateUnavailable     Reason = "delegate_unavailable"
	// ReasonUntrustedProxy: X-Forwarded-* headers from a peer that is not a
	// trusted proxy.
	ReasonUntrustedProxy Reason = "untrusted_proxy"
	// ReasonRegistryTokenUnavailable: the request was allowed and needs the
	// registry's hop token, but the policy's token key is not loaded. It is
	// refused rather than sent on without one (the registry would refuse
	// it anyway, with a 401 the client cannot act on).
	ReasonRegistryTokenUnavailable Reason = "registry_token_unavailable"
	// ReasonConflictingOriginal: /validate got X-Original-URL (or
	// -Method) and X-Forwarded-Uri (or -Host, -Method) that describe
	// different requests. A proxy that sends X-Forwarded-* and passes the
	// client's own headers on (Traefik's ingress-nginx provider) would
	// otherwise let the client choose the URL the decision sees.
	ReasonConflictingOriginal Reason = "conflicting_original_request"
)

// Reasons for denying a verified JWT: the token is valid, its issuer
// entry's limits refuse it.
const (
	// ReasonClaimRuleFailed: the JWT verified, but its claims fail a claim
	// rule of its issuer entry (or a rule or mapping could not be
	// evaluated).
	ReasonClaimRuleFailed Reason = "claim_rule_failed"
	// ReasonJWTRegistryOnly: the JWT verified, but its issuer entry limits
	// its identities to Registry API paths.
	ReasonJWTRegistryOnly Reason = "jwt_registry_paths_only"
)

// allReasons lists every reason, those for allowing first.
var allReasons = [...]Reason{
	ReasonAllowedStaticToken, ReasonAllowedStaticTokenPrevious, ReasonAllowedAPIKey,
	ReasonAllowedAPIKeyPrevious, ReasonAllowedSession, ReasonAllowedSessionPrevious, ReasonAllowedOIDC,
	ReasonAllowedFederation, ReasonAllowedFederationPrevious, ReasonDelegatedAllowed, ReasonPublic,

	ReasonNoPolicy, ReasonUnknownPolicy, ReasonBadOriginalURL,
	ReasonBadPath, ReasonAmbiguousAuthorization, ReasonDuplicatedCredential, ReasonMalformedAuthorization,
	ReasonNoCredentials, ReasonInvalidCredentials, ReasonRegistryCredOnGateway, ReasonFederationTokenOffPath,
	ReasonAPIKeyForbidden, ReasonCredentialExpired, ReasonSessionInvalid, ReasonJWTInvalid, ReasonJWTExpired,
	ReasonJWTAudience, ReasonJWTUnknownKey, ReasonJWTNoUsername, ReasonJWTNotConfigured,
	ReasonClaimRuleFailed, ReasonJWTRegistryOnly,
	ReasonTooManyFailures, ReasonUnsupportedAuthzScheme, ReasonOIDCIssuerNotDiscovered,
	ReasonUntrustedProxy, ReasonRegistryTokenUnavailable, ReasonConflictingOriginal,
	ReasonDelegate, ReasonDelegatedUnauthorized, ReasonDelegatedForbidden, ReasonDelegateUnavailable,
	ReasonUnlisted,
}

// NumReasons is the number of reasons, ReasonUnlisted included. It is a
// constant: the metrics keep one counter per reason in a fixed-size array.
const NumReasons = len(allReasons)

// ReasonAt returns the reason with index i (0 <= i < NumReasons).
func ReasonAt(i int) Reason { return allReasons[i] }

// Index is the reason's position among all reasons, and false for a reason
// that is not listed.
func (r Reason) Index() (int, bool) {
	i, ok := reasonIndex[r]
	return i, ok
}

// ReasonUnlisted counts, in the metrics, a reason missing from allReasons
// (a bug TestEveryReasonIsCounted is there to catch).
const ReasonUnlisted Reason = "unlisted"

// allowMethod is the authentication method of each reason for allowing.
var allowMethod = map[Reason]Method{
	ReasonAllowedStaticToken:         MethodNetworkTrusted,
	ReasonAllowedStaticTokenPrevious: MethodNetworkTrusted,
	ReasonAllowedAPIKey:              MethodNetworkTrusted,
	ReasonAllowedAPIKeyPrevious:      MethodNetworkTrusted,
	ReasonAllowedSession:             MethodSession,
	ReasonAllowedSessionPrevious:     MethodSession,
	ReasonAllowedOIDC:                MethodOIDC,
	ReasonAllowedFederation:          MethodFederation,
	ReasonAllowedFederationPrevious:  MethodFederation,
	ReasonDelegatedAllowed:           MethodDelegated,
	ReasonPublic:                     MethodPublic,
}

// reasonIndex is each reason's position in allReasons.
var reasonIndex = func() map[Reason]int {
	m := make(map[Reason]int, len(allReasons))
	for i, r := range allReasons {
		m[r] = i
	}
	return m
}()

// Method returns the authentication method of a reason for allowing, and
// false for a reason for denying.
func (r Reason) Method() (Method, bool) {
	m, ok := allowMethod[r]
	return m, ok
}

// The statuses of decisions. The auth service answers nothing else: nginx's
// auth_request turns any other status into a 500 for the client.
const (
	StatusOK           = 200
	StatusUnauthorized = 401
	StatusForbidden    = 403
)

// denyReason is a deny reason's status and message.
type denyReason struct {
	status  int
	message string
}

var denyReasons = map[Reason]*denyReason{}

func defineDeny(r Reason, status int, message string) {
	denyReasons[r] = &denyReason{status: status, message: message}
}

// Denies reports whether r is a reason for denying.
func (r Reason) Denies() bool { return denyReasons[r] != nil }

func init() {
	const (
		s401 = StatusUnauthorized
		s403 = StatusForbidden
	)
	defineDeny(ReasonNoPolicy, s403, "no policy answers for this host; call /validate/<namespace>/<name> or list the host in a policy's spec.hosts")
	defineDeny(ReasonUnknownPolicy, s403, "the policy named in the path is not loaded")
	defineDeny(ReasonBadOriginalURL, s403, "the original request is missing or malformed (X-Original-URL must be an absolute http(s) URL and X-Original-Method a method; X-Forwarded-Host, X-Forwarded-Uri and X-Forwarded-Method for /forward-auth; the /ext-authz prefix for Envoy; Path and Method for /ngf-auth)")
	defineDeny(ReasonBadPath, s403, "the request path cannot be normalised safely (a '.' or '..' segment, bad percent-encoding, or a control character)")
	defineDeny(ReasonAmbiguousAuthorization, s401, "more than one Authorization or X-Authorization value was sent")
	defineDeny(ReasonDuplicatedCredential, s401, "on agent paths Authorization is the agent's credential: it must not repeat the registry credential sent in X-Authorization")
	defineDeny(ReasonMalformedAuthorization, s401, "the Authorization header is not 'Bearer <token>'")
	defineDeny(ReasonUnsupportedAuthzScheme, s401, "only Bearer authorization is supported")
	defineDeny(ReasonNoCredentials, s401, "no credentials: send 'Authorization: Bearer <token>' or a session cookie")
	defineDeny(ReasonInvalidCredentials, s401, "the credentials were not accepted")
	defineDeny(ReasonRegistryCredOnGateway, s401, "static tokens and API keys are accepted on Registry API paths only; gateway paths need an IdP token or a session")
	defineDeny(ReasonFederationTokenOffPath, s403, "the federation token is accepted on the federation and peers API only")
	defineDeny(ReasonAPIKeyForbidden, s403, "this API key does not allow this method or path")
	defineDeny(ReasonCredentialExpired, s401, "the static token or API key has expired (its expiresAt has passed); ask its owner for a new one")
	defineDeny(ReasonSessionInvalid, s401, "the session cookie is invalid or expired")
	defineDeny(ReasonJWTInvalid, s401, "the bearer token is not a valid token of the configured issuer")
	defineDeny(ReasonJWTExpired, s401, "the bearer token has expired")
	defineDeny(ReasonJWTAudience, s401, "the bearer token was issued for another audience")
	defineDeny(ReasonJWTUnknownKey, s401, "the bearer token was signed with a key the issuer does not publish")
	defineDeny(ReasonJWTNoUsername, s401, "the bearer token has no usable username claim")
	defineDeny(ReasonJWTNotConfigured, s401, "the bearer token was not accepted and no IdP is configured for this policy")
	defineDeny(ReasonClaimRuleFailed, s403, "the bearer token is valid but its claims do not satisfy the claim rules of its issuer")
	defineDeny(ReasonJWTRegistryOnly, s403, "tokens of this issuer are accepted on Registry API paths only")
	defineDeny(ReasonOIDCIssuerNotDiscovered, s401, "the IdP has not been reached yet; bearer JWTs cannot be verified")
	defineDeny(ReasonTooManyFailures, s403, "too many failed attempts from this client; try again later")
	defineDeny(ReasonDelegate, s403, "the request belongs to the upstream auth server (the policy's delegate), which this route cannot ask")
	defineDeny(ReasonDelegatedUnauthorized, s401, "the upstream auth server (the policy's delegate) did not authenticate the request; its answer headers are relayed")
	defineDeny(ReasonDelegatedForbidden, s403, "the upstream auth server (the policy's delegate) refused the request; its answer headers are relayed")
	defineDeny(ReasonDelegateUnavailable, s403, "the upstream auth server (the policy's delegate) could not be asked: it is down, slow, overloaded or gave an answer other than 2xx, 401 or 403")
	defineDeny(ReasonUntrustedProxy, s403, "X-Forwarded-* headers are only believed from a trusted proxy (--trusted-proxies)")
	defineDeny(ReasonConflictingOriginal, s403, "X-Original-URL or X-Original-Method disagrees with X-Forwarded-Host, X-Forwarded-Uri or X-Forwarded-Method; a proxy that sends X-Forwarded-* (Traefik, also its ingress-nginx provider) must call /forward-auth")
	defineDeny(ReasonRegistryTokenUnavailable, s403, "the request needs the registry token (X-Internal-Token-Registry) and the policy's registry token key is not loaded; see the policy's status")
}

// Status is the HTTP status of a deny reason (200 for allow reasons).
func (r Reason) Status() int {
	if d := denyReasons[r]; d != nil {
		return d.status
	}
	return StatusOK
}

// Message is the human-readable text of a deny reason.
func (r Reason) Message() string {
	if d := denyReasons[r]; d != nil {
		return d.message
	}
	return ""
}
