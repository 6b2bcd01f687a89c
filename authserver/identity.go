package authserver

import (
	"encoding/json"
	"strings"
)

// Method is how a request was authenticated. It is sent in X-Auth-Method.
type Method string

// Authentication methods.
const (
	MethodNetworkTrusted Method = "network-trusted"
	MethodAPIKey         Method = "api-key"
	MethodSession        Method = "session"
	MethodOIDC           Method = "oidc"
)

// Identity is who an allowed request is. It is immutable once built; the
// header values and JSON body the handler sends are computed once, when the
// identity is built, so answering an allowed request formats nothing.
type Identity struct {
	Username string
	ClientID string
	Groups   []string
	Scopes   []string
	Method   Method

	headers [len(identityHeaders)][]string // values, in identityHeaders order
	body    []byte                         // {"valid":true,...}
}

// identityHeaders are the response headers of an allowed request, in
// canonical form. ingress-nginx copies the ones listed in the Ingress's
// auth-response-headers annotation to the upstream request.
var identityHeaders = [...]string{"X-User", "X-Username", "X-Client-Id", "X-Scopes", "X-Groups", "X-Auth-Method"}

// allowBody is the JSON body of an allowed request.
type allowBody struct {
	Valid    bool     `json:"valid"`
	Username string   `json:"username"`
	ClientID string   `json:"client_id"`
	Scopes   []string `json:"scopes"`
	Groups   []string `json:"groups"`
	Method   Method   `json:"method"`
}

// newIdentity builds an identity. Groups and scopes that cannot travel safely
// in a comma- or space-joined header (empty, or holding a comma, white space or
// a control character) are dropped: a group named "x,mcp-registry-admin" must
// not become two groups at the upstream.
func newIdentity(username, clientID string, groups, scopes []string, m Method) *Identity {
	id := &Identity{
		Username: username,
		ClientID: clientID,
		Groups:   headerSafeList(groups),
		Scopes:   headerSafeList(scopes),
		Method:   m,
	}
	id.headers = [len(identityHeaders)][]string{
		{id.Username}, {id.Username}, {id.ClientID},
		{strings.Join(id.Scopes, " ")}, {strings.Join(id.Groups, ",")}, {string(m)},
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

// memSize approximates the bytes id holds beyond its struct: its strings,
// their slices' backing arrays, the joined header values and the body.
func (id *Identity) memSize() int {
	n := len(id.Username) + len(id.ClientID) + len(id.body)
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

func headerSafeList(in []string) []string {
	out := make([]string, 0, len(in))
	for _, s := range in {
		if s != "" && !strings.ContainsFunc(s, func(r rune) bool {
			return r == ',' || r <= ' ' || r == 0x7f
		}) && !containsString(out, s) {
			out = append(out, s)
		}
	}
	return out
}

// headerSafeValue reports whether s can be sent as a header value as is: no
// control character, and no space or tab at either end, which HTTP drops
// from a field value (RFC 9110, section 5.5). " admin" would reach the
// upstream as "admin".
func headerSafeValue(s string) bool {
	return !hasOuterBlank(s) && !strings.ContainsFunc(s, func(r rune) bool { return r < ' ' || r == 0x7f })
}

// hasOuterBlank reports whether s starts or ends with a space or a tab.
func hasOuterBlank(s string) bool {
	return s != "" && (s[0] == ' ' || s[0] == '\t' || s[len(s)-1] == ' ' || s[len(s)-1] == '\t')
}

func containsString(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// scopesFor maps groups to scopes with groupScopes, in a stable order and
// without duplicates.
func scopesFor(groups []string, groupScopes map[string][]string) []string {
	var scopes []string
	for _, g := range groups {
		for _, s := range groupScopes[g] {
			if !containsString(scopes, s) {
				scopes = append(scopes, s)
			}
		}
	}
	return scopes
}
