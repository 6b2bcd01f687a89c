package check

import (
	"encoding/json"
	"slices"
	"strings"
	"sync/atomic"
	"unicode"
	"unicode/utf8"
)

// Method is how a request was authenticated. It is sent in X-Auth-Method,
// with the values of the upstream auth server.
type Method string

// Authentication methods. A JWT from an issuer with a preset carries the
// preset's name instead of MethodOIDC ("keycloak", "entra", "cognito",
// "okta", "auth0"), as the upstream auth server names its providers.
const (
	// MethodNetworkTrusted: the static token or a named API key.
	MethodNetworkTrusted Method = "network-trusted"
	// MethodFederation: the federation token of a peer registry.
	MethodFederation Method = "federation-static"
	// MethodSession: the registry web app's session cookie.
	MethodSession Method = "session_cookie"
	// MethodOIDC: a JWT from a generic OpenID Connect issuer.
	MethodOIDC Method = "oidc"
	// MethodDelegated labels, in metrics, requests the policy's delegate
	// allowed; their X-Auth-Method is the delegate's.
	MethodDelegated Method = "delegated"
	// MethodPublic labels, in metrics, requests on a public path: no
	// credential, no identity.
	MethodPublic Method = "public"
)

// Canonical authentication methods: the auth_method claim of the registry's
// hop token (see CanonicalMethod). The registry's own code branches on these
// (its UI on oauth2, its egress vault on per-user methods).
const (
	CanonicalOAuth2           = "oauth2"
	CanonicalNetworkTrusted   = "network-trusted"
	CanonicalFederationStatic = "federation-static"
)

// CanonicalMethod maps an X-Auth-Method value to the canonical method the
// upstream auth server puts in the registry's hop token: every user who
// signed in with an IdP, by session cookie or by JWT, is oauth2; the static
// token and API keys are network-trusted; the federation token is
// federation-static. It accepts this service's values (api-key, session,
// oidc) as well as the upstream auth server's (session_cookie, the IdP
// names keycloak, entra, cognito, okta, auth0, pingfederate, and
// self_signed, jwt, boto3), so that it does not depend on which of them
// X-Auth-Method carries. Any other value passes through unchanged, as
// upstream's does.
func CanonicalMethod(m Method) string {
	// Literals, not the Method constants: their values are being changed to
	// upstream's, and each value must appear once.
	switch s := string(m); s {
	case "network-trusted", "api-key":
		return CanonicalNetworkTrusted
	case "federation-static":
		return CanonicalFederationStatic
	case "oauth2", "session", "session_cookie", "oidc", "generic", "keycloak", "entra", "cognito",
		"okta", "auth0", "pingfederate", "self_signed", "jwt", "boto3":
		return CanonicalOAuth2
	default:
		return s
	}
}

// HopAuthMethod is the auth_method claim of the registry's hop token for
// id: HopMethod when set, else CanonicalMethod(Method).
func (id *Identity) HopAuthMethod() string {
	if id.HopMethod != "" {
		return id.HopMethod
	}
	return CanonicalMethod(id.Method)
}

// Identity is who an allowed request is. It is immutable once built; the
// header values and JSON body the handler sends are computed once, when the
// identity is built, so answering an allowed request formats nothing.
type Identity struct {
	Username string
	ClientID string
	Groups   []string
	Scopes   []string
	Method   Method
	// Subject is the IdP's identifier of the user, the JWT's sub claim; ""
	// for credentials that have none (static tokens, API keys, session
	// cookies). It is not sent in a header; the registry's hop token
	// carries it as egress_user. Set it before the identity is shared.
	Subject string
	// HopMethod, if set, is the auth_method of the registry's hop token
	// instead of CanonicalMethod(Method): a JWT from a named issuer entry
	// (X-Auth-Method is the entry's name) is an IdP user, oauth2, to the
	// registry. Set it before the identity is shared.
	HopMethod string

	headers [len(identityHeaders)][]string // values, in identityHeaders order
	body    []byte                         // {"valid":true,...}

	// token is the last answer token minted for this identity (see
	// CachedToken), nil before the first.
	token atomic.Pointer[tokenSlot]
}

// tokenSlot is an answer token minted for an identity: by whom (a signer,
// compared by identity) and in which second.
type tokenSlot struct {
	minter any
	second int64
	value  []string
}

// CachedToken returns the token minter minted for this identity in second
// (Unix time), as set by CacheToken, or nil. A token whose iat has second
// resolution is the same for every request of that second, so minting it
// once per identity and second is enough. A new minter (a new key, a new
// configuration) never sees another's tokens.
func (id *Identity) CachedToken(minter any, second int64) []string {
	if s := id.token.Load(); s != nil && s.second == second && s.minter == minter {
		return s.value
	}
	return nil
}

// CacheToken records a token minter minted for this identity in second, as
// the one-element header value to answer with. It replaces what was cached:
// one slot per identity.
func (id *Identity) CacheToken(minter any, second int64, value []string) {
	id.token.Store(&tokenSlot{minter: minter, second: second, value: value})
}

// identityHeaders are the response headers of an allowed request, in
// canonical form. ingress-nginx copies the ones listed in the Ingress's
// auth-response-headers annotation to the upstream request.
var identityHeaders = [...]string{"X-User", "X-Username", "X-Client-Id", "X-Scopes", "X-Groups", "X-Auth-Method"}

// NumIdentityHeaders is the number of identity headers.
const NumIdentityHeaders = len(identityHeaders)

// IdentityHeader is the canonical name of identity header i
// (0 <= i < NumIdentityHeaders).
func IdentityHeader(i int) string { return identityHeaders[i] }

// HeaderValues are the identity header values, in IdentityHeader order, each
// a one-element slice ready for an http.Header. They are shared: callers
// must not modify them.
func (id *Identity) HeaderValues() *[NumIdentityHeaders][]string { return &id.headers }

// JSON is the identity as the JSON body of an allowed answer. It is shared:
// callers must not modify it.
func (id *Identity) JSON() []byte { return id.body }

// allowBody is the JSON body of an allowed request.
type allowBody struct {
	Valid    bool     `json:"valid"`
	Username string   `json:"username"`
	ClientID string   `json:"client_id"`
	Scopes   []string `json:"scopes"`
	Groups   []string `json:"groups"`
	Method   Method   `json:"method"`
}

// NewIdentity builds an identity. Groups and scopes that cannot travel safely
// in a comma- or space-joined header (empty, or holding a comma, white space or
// a control character) are dropped: a group named "x,mcp-registry-admin" must
// not become two groups at the upstream.
func NewIdentity(username, clientID string, groups, scopes []string, m Method) *Identity {
	id := &Identity{
		Username: username,
		ClientID: clientID,
		Groups:   SafeList(groups),
		Scopes:   SafeList(scopes),
		Method:   m,
	}
	id.headers = [len(identityHeaders)][]string{
		{id.Username}, {id.Username}, {id.ClientID},
		{strings.Join(id.Scopes, " ")}, {strings.Join(id.Groups, " ")}, {string(m)},
	}
	body, err := json.Marshal(allowBody{
		Valid: true, Username: id.Username, ClientID: id.ClientID,
		Scopes: id.Scopes, Groups: id.Groups, Method: id.Method,
	})
	if err != nil { // cannot happen for strings and string slices
		panic(err)
	}
	id.body = append(body, '\n')
	return id
}

// MemSize approximates the bytes id holds beyond its struct: its strings,
// their slices' backing arrays, the joined header values and the body. A
// cached answer token (CachedToken) is not counted: it is one per identity,
// replaced every second it is used, and about the size of the JSON body.
func (id *Identity) MemSize() int {
	n := len(id.Username) + len(id.ClientID) + len(id.Subject) + len(id.body)
	for _, s := range id.Groups {
		n += 16 + len(s)
	}
	for _, s := range id.Scopes {
		n += 16 + len(s)
	}
	for _, v := range id.headers[3:5] { // X-Scopes, X-Groups: joined copies
		n += len(v[0])
	}
	return n
}

// SafeList returns the values of in that can travel in a comma- or
// space-joined header, without duplicates.
func SafeList(in []string) []string {
	out := make([]string, 0, len(in))
	for _, s := range in {
		if s != "" && utf8.ValidString(s) && !strings.ContainsFunc(s, func(r rune) bool {
			return r == ',' || unicode.IsSpace(r) || unsafeRune(r)
		}) && !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out
}

// HeaderSafe reports whether s can be sent as a header value and read back
// as the same identity: valid UTF-8, no control or format character
// (U+200B, U+202E, …) anywhere, and no white space at either end. HTTP drops
// spaces and tabs around a field value (RFC 9110, section 5.5), and Go's and
// Python's trimming drop Unicode white space too: "network-user\u00a0"
// would reach the registry as "network-user".
func HeaderSafe(s string) bool {
	return utf8.ValidString(s) && !HasOuterBlank(s) && !strings.ContainsFunc(s, unsafeRune)
}

// unsafeRune reports a control or format character.
func unsafeRune(r rune) bool {
	return unicode.IsControl(r) || unicode.Is(unicode.Cf, r)
}

// HasOuterBlank reports whether s starts or ends with white space (Unicode's
// definition: U+00A0, U+0085, U+2028, U+3000, … as well as space and tab).
func HasOuterBlank(s string) bool {
	if s == "" {
		return false
	}
	first, _ := utf8.DecodeRuneInString(s)
	last, _ := utf8.DecodeLastRuneInString(s)
	return unicode.IsSpace(first) || unicode.IsSpace(last)
}

// ScopesFor maps groups to scopes with groupScopes, in a stable order and
// without duplicates.
func ScopesFor(groups []string, groupScopes map[string][]string) []string {
	var scopes []string
	for _, g := range groups {
		for _, s := range groupScopes[g] {
			if !slices.Contains(scopes, s) {
				scopes = append(scopes, s)
			}
		}
	}
	return scopes
}
