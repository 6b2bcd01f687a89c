package policy_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"

	"github.com/registryauth/registry-auth-operator/authserver/authn"
	"github.com/registryauth/registry-auth-operator/authserver/authn/apikey"
	"github.com/registryauth/registry-auth-operator/authserver/authn/federation"
	"github.com/registryauth/registry-auth-operator/authserver/authn/jwt"
	"github.com/registryauth/registry-auth-operator/authserver/authn/session"
	"github.com/registryauth/registry-auth-operator/authserver/authn/statictoken"
	"github.com/registryauth/registry-auth-operator/authserver/authtest"
	"github.com/registryauth/registry-auth-operator/authserver/check"
	"github.com/registryauth/registry-auth-operator/authserver/hoptoken"
	. "github.com/registryauth/registry-auth-operator/authserver/internal/policytest"
	"github.com/registryauth/registry-auth-operator/authserver/pathnorm"
	. "github.com/registryauth/registry-auth-operator/authserver/policy"
	"github.com/registryauth/registry-auth-operator/authserver/secret"
)

// request is a check as nginx describes it (X-Original-URL and
// X-Original-Method); the tables read it the way the nginx front-end does.
type request struct {
	Policy         string
	OriginalURL    string
	OriginalMethod string
	Authorization  []string
	XAuthorization []string
	Cookie         []string
}

// checkRequest maps r to a check.Request as the nginx front-end does; false
// when the original URL does not split.
func checkRequest(r *request) (*check.Request, bool) {
	scheme, host, path, ok := check.SplitURL(r.OriginalURL)
	if !ok {
		return nil, false
	}
	return &check.Request{
		Policy: r.Policy, Method: r.OriginalMethod, Scheme: scheme, Host: host, Path: path,
		Authorization: r.Authorization, XAuthorization: r.XAuthorization, Cookie: r.Cookie,
	}, true
}

// decideURL decides r like the nginx front-end: an original URL that does
// not split is bad_original_url before any policy is chosen.
func decideURL(ctx context.Context, snap *Snapshot, r *request, now time.Time) Decision {
	req, ok := checkRequest(r)
	if !ok {
		return Decision{Reason: check.ReasonBadOriginalURL}
	}
	return Decide(ctx, snap, req, now)
}

func TestDecideTable(t *testing.T) {
	validCookie := "mcp_gateway_session=" + SessionCookie(t, "alice", []string{"readers"}, Now.Add(-time.Hour))
	expiredCookie := "mcp_gateway_session=" + SessionCookie(t, "alice", []string{"readers"}, Now.Add(-9*time.Hour))
	const u = "http://registry.example.com"

	type want struct {
		reason   check.Reason
		username string
		method   check.Method
	}
	allowStatic := want{check.ReasonAllowedStaticToken, "network-user", check.MethodNetworkTrusted}
	cases := []struct {
		name string
		req  request
		want want
	}{
		// Rule 1: static token on Registry API paths.
		{"static on /api/", request{OriginalURL: u + "/api/servers", Authorization: Bearer(TokStatic)}, allowStatic},
		{"static on /v0.1/", request{OriginalURL: u + "/v0.1/servers?limit=5", Authorization: Bearer(TokStatic)}, allowStatic},
		{"static with lower-case scheme", request{OriginalURL: u + "/api/x", Authorization: []string{"bearer " + TokStatic}}, allowStatic},
		{"static with upper-case scheme", request{OriginalURL: u + "/api/x", Authorization: []string{"BEARER " + TokStatic}}, allowStatic},
		{"static with extra spaces after scheme", request{OriginalURL: u + "/api/x", Authorization: []string{"Bearer    " + TokStatic}}, allowStatic},
		{"static via X-Authorization", request{OriginalURL: u + "/api/x", XAuthorization: Bearer(TokStatic)}, allowStatic},
		{"static in both headers, same value", request{OriginalURL: u + "/api/x", Authorization: Bearer(TokStatic), XAuthorization: Bearer(TokStatic)}, allowStatic},
		{"static with https and port", request{OriginalURL: "https://REGISTRY.example.com:8443/api/x", Authorization: Bearer(TokStatic)}, allowStatic},
		{"static on gateway path", request{OriginalURL: u + "/mcpserver/mcp", Authorization: Bearer(TokStatic)}, want{reason: check.ReasonRegistryCredOnGateway}},
		{"static on /api without slash", request{OriginalURL: u + "/api", Authorization: Bearer(TokStatic)}, want{reason: check.ReasonRegistryCredOnGateway}},
		{"static on /apix", request{OriginalURL: u + "/apix/servers", Authorization: Bearer(TokStatic)}, want{reason: check.ReasonRegistryCredOnGateway}},
		{"static on upper-case /API/", request{OriginalURL: u + "/API/servers", Authorization: Bearer(TokStatic)}, want{reason: check.ReasonRegistryCredOnGateway}},
		{"static, query names /api/", request{OriginalURL: u + "/mcpserver/mcp?next=/api/servers", Authorization: Bearer(TokStatic)}, want{reason: check.ReasonRegistryCredOnGateway}},
		// Dot segments are refused: nginx resolves them but forwards the raw
		// URI, which the upstream may read differently.
		{"static, dot-dot out of /api/", request{OriginalURL: u + "/api/../mcpserver/mcp", Authorization: Bearer(TokStatic)}, want{reason: check.ReasonBadPath}},
		{"static, encoded dot-dot out of /api/", request{OriginalURL: u + "/api/%2e%2e/mcpserver/mcp", Authorization: Bearer(TokStatic)}, want{reason: check.ReasonBadPath}},
		{"static, encoded slash and dot-dot", request{OriginalURL: u + "/api/..%2fmcpserver/mcp", Authorization: Bearer(TokStatic)}, want{reason: check.ReasonBadPath}},
		{"static, dot-dot into /api/", request{OriginalURL: u + "/mcpserver/../api/servers", Authorization: Bearer(TokStatic)}, want{reason: check.ReasonBadPath}},
		{"static, encoded slashes and dot-dot inside /api/", request{OriginalURL: u + "/api/servers%2F..%2Fagents", Authorization: Bearer(TokStatic)}, want{reason: check.ReasonBadPath}},
		{"static, dot segment inside /api/", request{OriginalURL: u + "/api/./servers", Authorization: Bearer(TokStatic)}, want{reason: check.ReasonBadPath}},
		{"static, double slash", request{OriginalURL: u + "//api//servers", Authorization: Bearer(TokStatic)}, allowStatic},
		{"static, leading double slash", request{OriginalURL: u + "//api/servers", Authorization: Bearer(TokStatic)}, allowStatic},
		{"static, inner double slash", request{OriginalURL: u + "/api//servers", Authorization: Bearer(TokStatic)}, allowStatic},
		{"static, three dots is no dot segment", request{OriginalURL: u + "/api/.../servers", Authorization: Bearer(TokStatic)}, allowStatic},
		{"static, semicolon parameter", request{OriginalURL: u + "/api;x=1/servers", Authorization: Bearer(TokStatic)}, want{reason: check.ReasonRegistryCredOnGateway}},
		{"static, unicode look-alike a", request{OriginalURL: u + "/\u0430pi/servers", Authorization: Bearer(TokStatic)}, want{reason: check.ReasonRegistryCredOnGateway}},
		{"wrong static token falls through", request{OriginalURL: u + "/api/servers", Authorization: Bearer(TokStatic2)}, want{reason: check.ReasonInvalidCredentials}},
		{"token differs in last byte", request{OriginalURL: u + "/api/servers", Authorization: Bearer(TokStatic[:len(TokStatic)-1] + "0")}, want{reason: check.ReasonInvalidCredentials}},
		{"token prefix only", request{OriginalURL: u + "/api/servers", Authorization: Bearer(TokStatic[:len(TokStatic)-1])}, want{reason: check.ReasonInvalidCredentials}},
		{"token with extra byte", request{OriginalURL: u + "/api/servers", Authorization: Bearer(TokStatic + "0")}, want{reason: check.ReasonInvalidCredentials}},

		// The session cookie skips the static path.
		{"static with session cookie goes the session way", request{OriginalURL: u + "/api/servers", Authorization: Bearer(TokStatic), Cookie: []string{validCookie}}, want{check.ReasonAllowedSession, "alice", check.MethodSession}},
		{"static with invalid session cookie", request{OriginalURL: u + "/api/servers", Authorization: Bearer(TokStatic), Cookie: []string{"mcp_gateway_session=garbage"}}, want{reason: check.ReasonInvalidCredentials}},
		{"static with empty session cookie", request{OriginalURL: u + "/api/servers", Authorization: Bearer(TokStatic), Cookie: []string{"mcp_gateway_session="}}, want{reason: check.ReasonInvalidCredentials}},
		{"static with other cookies", request{OriginalURL: u + "/api/servers", Authorization: Bearer(TokStatic), Cookie: []string{"theme=dark; lang=en"}}, allowStatic},

		// Rule 2: API keys.
		{"read key GET", request{OriginalURL: u + "/api/servers", OriginalMethod: "GET", Authorization: Bearer(TokReadKey)}, want{check.ReasonAllowedAPIKey, "ci-read", check.MethodNetworkTrusted}},
		{"read key head lower-case", request{OriginalURL: u + "/v0.1/servers", OriginalMethod: "head", Authorization: Bearer(TokReadKey)}, want{check.ReasonAllowedAPIKey, "ci-read", check.MethodNetworkTrusted}},
		{"read key POST", request{OriginalURL: u + "/api/servers", OriginalMethod: "POST", Authorization: Bearer(TokReadKey)}, want{reason: check.ReasonAPIKeyForbidden}},
		{"read key without method", request{OriginalURL: u + "/api/servers", Authorization: Bearer(TokReadKey)}, want{reason: check.ReasonAPIKeyForbidden}},
		{"write key in its prefix", request{OriginalURL: u + "/api/servers/x", OriginalMethod: "POST", Authorization: Bearer(TokWriteKey)}, want{check.ReasonAllowedAPIKey, "ci-write", check.MethodNetworkTrusted}},
		{"write key outside its prefix", request{OriginalURL: u + "/api/agents", OriginalMethod: "POST", Authorization: Bearer(TokWriteKey)}, want{reason: check.ReasonAPIKeyForbidden}},
		{"write key prefix needs segment boundary", request{OriginalURL: u + "/api/serversx", OriginalMethod: "GET", Authorization: Bearer(TokWriteKey)}, want{reason: check.ReasonAPIKeyForbidden}},
		{"write key, dot-dot into its prefix", request{OriginalURL: u + "/api/agents/x/../../servers/foo", OriginalMethod: "POST", Authorization: Bearer(TokWriteKey)}, want{reason: check.ReasonBadPath}},
		{"write key, the same path without dots", request{OriginalURL: u + "/api/servers/foo", OriginalMethod: "POST", Authorization: Bearer(TokWriteKey)}, want{check.ReasonAllowedAPIKey, "ci-write", check.MethodNetworkTrusted}},
		{"write key, double slashes into its prefix", request{OriginalURL: u + "//api//servers/foo", OriginalMethod: "POST", Authorization: Bearer(TokWriteKey)}, want{check.ReasonAllowedAPIKey, "ci-write", check.MethodNetworkTrusted}},
		{"write key, dot-dot out of its prefix", request{OriginalURL: u + "/api/servers/../agents", OriginalMethod: "POST", Authorization: Bearer(TokWriteKey)}, want{reason: check.ReasonBadPath}},
		{"API key on gateway path", request{OriginalURL: u + "/mcpserver/mcp", OriginalMethod: "GET", Authorization: Bearer(TokReadKey)}, want{reason: check.ReasonRegistryCredOnGateway}},
		{"API key with session cookie", request{OriginalURL: u + "/api/servers", OriginalMethod: "GET", Authorization: Bearer(TokReadKey), Cookie: []string{validCookie}}, want{check.ReasonAllowedSession, "alice", check.MethodSession}},

		// Rule 3: session cookie.
		{"session on gateway path", request{OriginalURL: u + "/mcpserver/mcp", Cookie: []string{validCookie}}, want{check.ReasonAllowedSession, "alice", check.MethodSession}},
		{"session among other cookies", request{OriginalURL: u + "/mcpserver/mcp", Cookie: []string{"a=b; " + validCookie + "; c=d"}}, want{check.ReasonAllowedSession, "alice", check.MethodSession}},
		{"session in second Cookie header", request{OriginalURL: u + "/mcpserver/mcp", Cookie: []string{"a=b", validCookie}}, want{check.ReasonAllowedSession, "alice", check.MethodSession}},
		// Which of two values counts differs between frameworks (Starlette
		// takes the last): neither is used.
		{"session cookie twice, different values", request{OriginalURL: u + "/mcpserver/mcp", Cookie: []string{validCookie + "; " + expiredCookie}}, want{reason: check.ReasonSessionInvalid}},
		{"session cookie twice, the valid one last", request{OriginalURL: u + "/mcpserver/mcp", Cookie: []string{expiredCookie, validCookie}}, want{reason: check.ReasonSessionInvalid}},
		// Starlette and Django trim cookie names and values: "name =B" is
		// the session cookie there, so it is here.
		{"session cookie twice, the second name with a space", request{OriginalURL: u + "/mcpserver/mcp", Cookie: []string{validCookie + "; mcp_gateway_session =" + strings.TrimPrefix(expiredCookie, "mcp_gateway_session=")}}, want{reason: check.ReasonSessionInvalid}},
		{"session cookie with spaces around name and value", request{OriginalURL: u + "/mcpserver/mcp", Cookie: []string{"a=b;  mcp_gateway_session = " + strings.TrimPrefix(validCookie, "mcp_gateway_session=") + " ; c=d"}}, want{check.ReasonAllowedSession, "alice", check.MethodSession}},
		{"session cookie twice, same value", request{OriginalURL: u + "/mcpserver/mcp", Cookie: []string{validCookie + "; " + validCookie}}, want{check.ReasonAllowedSession, "alice", check.MethodSession}},
		{"static with the session cookie twice still skips the static path", request{OriginalURL: u + "/api/servers", Authorization: Bearer(TokStatic), Cookie: []string{validCookie, expiredCookie}}, want{reason: check.ReasonInvalidCredentials}},
		{"expired session", request{OriginalURL: u + "/mcpserver/mcp", Cookie: []string{expiredCookie}}, want{reason: check.ReasonSessionInvalid}},
		{"tampered session", request{OriginalURL: u + "/mcpserver/mcp", Cookie: []string{validCookie[:len(validCookie)-2] + "AA"}}, want{reason: check.ReasonSessionInvalid}},
		{"session, dot segment", request{OriginalURL: u + "/mcpserver/./mcp", Cookie: []string{validCookie}}, want{reason: check.ReasonBadPath}},
		{"no credentials, dot-dot", request{OriginalURL: u + "/mcpserver/../api/servers"}, want{reason: check.ReasonBadPath}},

		// Nothing / malformed.
		{"no credentials", request{OriginalURL: u + "/api/servers"}, want{reason: check.ReasonNoCredentials}},
		{"no credentials on gateway", request{OriginalURL: u + "/mcpserver/mcp"}, want{reason: check.ReasonNoCredentials}},
		{"empty bearer", request{OriginalURL: u + "/api/servers", Authorization: []string{"Bearer "}}, want{reason: check.ReasonMalformedAuthorization}},
		{"bearer only", request{OriginalURL: u + "/api/servers", Authorization: []string{"Bearer"}}, want{reason: check.ReasonMalformedAuthorization}},
		{"bearer with tab", request{OriginalURL: u + "/api/servers", Authorization: []string{"Bearer\t" + TokStatic}}, want{reason: check.ReasonMalformedAuthorization}},
		{"bearer token with inner space", request{OriginalURL: u + "/api/servers", Authorization: []string{"Bearer " + TokStatic[:10] + " " + TokStatic[10:]}}, want{reason: check.ReasonMalformedAuthorization}},
		{"bearer with non-ASCII", request{OriginalURL: u + "/api/servers", Authorization: []string{"Bearer " + TokStatic + "\xff"}}, want{reason: check.ReasonMalformedAuthorization}},
		{"bearer with NUL", request{OriginalURL: u + "/api/servers", Authorization: []string{"Bearer " + TokStatic + "\x00"}}, want{reason: check.ReasonMalformedAuthorization}},
		{"basic scheme", request{OriginalURL: u + "/api/servers", Authorization: []string{"Basic dXNlcjpwYXNz"}}, want{reason: check.ReasonUnsupportedAuthzScheme}},
		{"two Authorization headers", request{OriginalURL: u + "/api/servers", Authorization: []string{"Bearer " + TokStatic, "Bearer " + TokStatic}}, want{reason: check.ReasonAmbiguousAuthorization}},
		{"two X-Authorization headers", request{OriginalURL: u + "/api/servers", XAuthorization: []string{"Bearer " + TokStatic, "Bearer " + TokStatic}}, want{reason: check.ReasonAmbiguousAuthorization}},
		// Which header carries the credential (upstream #988).
		{"X-Authorization wins over Authorization", request{OriginalURL: u + "/api/servers", Authorization: Bearer(TokStatic2), XAuthorization: Bearer(TokStatic)}, allowStatic},
		{"X-Authorization wins even when it fails", request{OriginalURL: u + "/api/servers", Authorization: Bearer(TokStatic), XAuthorization: Bearer(TokStatic2)}, want{reason: check.ReasonInvalidCredentials}},
		{"empty X-Authorization is ignored", request{OriginalURL: u + "/api/servers", Authorization: Bearer(TokStatic), XAuthorization: []string{""}}, allowStatic},
		// Agent paths: Authorization is the agent's, X-Authorization the
		// registry's. (Static credentials count on Registry API paths only;
		// the session shows which credential was read.)
		{"agent path reads X-Authorization only", request{OriginalURL: u + "/agent/travel/invoke", Authorization: Bearer(TokStatic)}, want{reason: check.ReasonNoCredentials}},
		{"agent path, X-Authorization read", request{OriginalURL: u + "/agent/travel/invoke", XAuthorization: Bearer(TokStatic)}, want{reason: check.ReasonRegistryCredOnGateway}},
		{"agent path, the same bearer in both", request{OriginalURL: u + "/agent/travel/invoke", Authorization: Bearer(TokStatic), XAuthorization: []string{"bearer  " + TokStatic + " "}}, want{reason: check.ReasonDuplicatedCredential}},
		{"agent path, different bearers", request{OriginalURL: u + "/agent/travel/invoke", Authorization: Bearer(TokStatic2), XAuthorization: Bearer(TokReadKey)}, want{reason: check.ReasonRegistryCredOnGateway}},
		{"agent path, a session with an agent credential", request{OriginalURL: u + "/agent/travel/invoke", Authorization: Bearer(TokStatic2), Cookie: []string{validCookie}}, want{check.ReasonAllowedSession, "alice", check.MethodSession}},
		{"not an agent path outside the prefix", request{OriginalURL: u + "/agents/x", Authorization: Bearer(TokStatic)}, want{reason: check.ReasonRegistryCredOnGateway}},
		{"JWT-shaped bearer without OIDC", request{OriginalURL: u + "/api/servers", Authorization: Bearer("eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln")}, want{reason: check.ReasonJWTNotConfigured}},
		{"huge bearer", request{OriginalURL: u + "/api/servers", Authorization: Bearer(strings.Repeat("a", 60000))}, want{reason: check.ReasonInvalidCredentials}},

		// Original URL and path.
		{"missing X-Original-URL", request{Authorization: Bearer(TokStatic)}, want{reason: check.ReasonBadOriginalURL}},
		{"relative X-Original-URL", request{OriginalURL: "/api/servers", Authorization: Bearer(TokStatic)}, want{reason: check.ReasonBadOriginalURL}},
		{"ftp X-Original-URL", request{OriginalURL: "ftp://registry.example.com/api/servers", Authorization: Bearer(TokStatic)}, want{reason: check.ReasonBadOriginalURL}},
		{"userinfo in X-Original-URL", request{OriginalURL: "http://user@registry.example.com/api/servers", Authorization: Bearer(TokStatic)}, want{reason: check.ReasonBadOriginalURL}},
		{"host only", request{OriginalURL: u, Authorization: Bearer(TokStatic)}, want{reason: check.ReasonRegistryCredOnGateway}},
		{"dot-dot above root", request{OriginalURL: u + "/../api/servers", Authorization: Bearer(TokStatic)}, want{reason: check.ReasonBadPath}},
		{"bad percent-encoding", request{OriginalURL: u + "/api/%zz", Authorization: Bearer(TokStatic)}, want{reason: check.ReasonBadPath}},
		{"encoded NUL", request{OriginalURL: u + "/api/%00", Authorization: Bearer(TokStatic)}, want{reason: check.ReasonBadPath}},
		{"raw fragment", request{OriginalURL: u + "/api/x#/../../mcpserver", Authorization: Bearer(TokStatic)}, want{reason: check.ReasonBadPath}},
		{"encoded question mark", request{OriginalURL: u + "/api/x%3F/../../mcpserver", Authorization: Bearer(TokStatic)}, want{reason: check.ReasonBadPath}},
		{"control character", request{OriginalURL: u + "/api/x\x01", Authorization: Bearer(TokStatic)}, want{reason: check.ReasonBadPath}},
		{"unknown host", request{OriginalURL: "http://other.example.com/api/servers", Authorization: Bearer(TokStatic)}, want{reason: check.ReasonNoPolicy}},
		{"unknown policy by name", request{Policy: "team/nope", OriginalURL: u + "/api/servers", Authorization: Bearer(TokStatic)}, want{reason: check.ReasonUnknownPolicy}},
		{"policy by name ignores host", request{Policy: "team/registry", OriginalURL: "http://other.example.com/api/servers", Authorization: Bearer(TokStatic)}, allowStatic},
	}
	p := CompileOK(t, BasePolicy())
	snap := SnapshotOf(p)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			d := decideURL(context.Background(), snap, &tc.req, Now)
			g.Expect(d.Reason).To(Equal(tc.want.reason))
			if tc.want.username == "" {
				g.Expect(d.Allowed()).To(BeFalse())
				g.Expect(d.Status()).To(BeElementOf(http.StatusUnauthorized, http.StatusForbidden))
				return
			}
			g.Expect(d.Status()).To(Equal(http.StatusOK))
			g.Expect(d.Identity.Username).To(Equal(tc.want.username))
			g.Expect(d.Identity.Method).To(Equal(tc.want.method))
		})
	}
}

func TestDecideIdentities(t *testing.T) {
	g := NewWithT(t)
	snap := SnapshotOf(CompileOK(t, BasePolicy()))
	const u = "http://registry.example.com"

	d := decideURL(context.Background(), snap, &request{OriginalURL: u + "/api/servers", Authorization: Bearer(TokStatic)}, Now)
	id := d.Identity
	g.Expect(id.Username).To(Equal("network-user"))
	g.Expect(id.ClientID).To(Equal("network-trusted"))
	g.Expect(id.Groups).To(Equal([]string{"mcp-registry-admin"}))
	g.Expect(id.Scopes).To(Equal([]string{"mcp-registry-admin", "mcp-servers-unrestricted/read", "mcp-servers-unrestricted/execute"}))
	g.Expect(id.Method).To(Equal(check.MethodNetworkTrusted))

	d = decideURL(context.Background(), snap, &request{OriginalURL: u + "/api/servers", OriginalMethod: "GET", Authorization: Bearer(TokWriteKey)}, Now)
	g.Expect(d.Identity.ClientID).To(Equal("ci-write"))
	g.Expect(d.Identity.Groups).To(Equal([]string{"writers"}))
	g.Expect(d.Identity.Scopes).To(Equal([]string{"registry/read", "registry/write"}))
	g.Expect(d.CredentialName).To(Equal("ci-write"))

	c := "mcp_gateway_session=" + SessionCookie(t, "bob", []string{"readers", "x,mcp-registry-admin", "writers"}, Now)
	d = decideURL(context.Background(), snap, &request{OriginalURL: u + "/mcpserver/mcp", Cookie: []string{c}}, Now)
	g.Expect(d.Identity.Username).To(Equal("bob"))
	// A group with a comma would turn into two groups at the upstream.
	g.Expect(d.Identity.Groups).To(Equal([]string{"readers", "writers"}))
	g.Expect(d.Identity.Scopes).To(Equal([]string{"registry/read", "registry/write"}))
}

func TestDecideCustomIdentityAndPrefixes(t *testing.T) {
	g := NewWithT(t)
	cfg := BasePolicy()
	cfg.RegistryPathPrefixes = []string{"/registry/", "/v1"}
	cfg.SessionCookieName = "ui_session"
	cfg.APIKeys = nil
	cfg.StaticToken.Identity = statictoken.IdentityConfig{Username: "ci", ClientID: "pipeline", Groups: []string{}, Scopes: []string{"read"}}
	snap := SnapshotOf(CompileOK(t, cfg))
	const u = "http://registry.example.com"
	decide := func(path string, cookies ...string) Decision {
		return decideURL(context.Background(), snap, &request{OriginalURL: u + path, Authorization: Bearer(TokStatic), Cookie: cookies}, Now)
	}
	d := decide("/registry/servers")
	g.Expect(d.Reason).To(Equal(check.ReasonAllowedStaticToken))
	g.Expect(d.Identity.Username).To(Equal("ci"))
	g.Expect(d.Identity.ClientID).To(Equal("pipeline"))
	g.Expect(d.Identity.Groups).To(BeEmpty())
	g.Expect(d.Identity.Scopes).To(Equal([]string{"read"}))
	g.Expect(decide("/v1").Reason).To(Equal(check.ReasonAllowedStaticToken))
	g.Expect(decide("/v1/x").Reason).To(Equal(check.ReasonAllowedStaticToken))
	g.Expect(decide("/v10").Reason).To(Equal(check.ReasonRegistryCredOnGateway))
	g.Expect(decide("/api/servers").Reason).To(Equal(check.ReasonRegistryCredOnGateway))
	// The configured cookie name skips; the default one no longer does.
	g.Expect(decide("/registry/servers", "ui_session=x").Reason).To(Equal(check.ReasonInvalidCredentials))
	g.Expect(decide("/registry/servers", "mcp_gateway_session=x").Reason).To(Equal(check.ReasonAllowedStaticToken))
}

func TestDecidePreviousTokens(t *testing.T) {
	g := NewWithT(t)
	cfg := BasePolicy()
	cfg.StaticToken.Token = authn.SecretValue{Value: []byte(TokStatic2)}
	cfg.StaticToken.Previous = []secret.PreviousDigest{{Digest: secret.DigestOf([]byte(TokStatic)), ExpiresAt: Now.Add(time.Minute)}}
	snap := SnapshotOf(CompileOK(t, cfg))
	req := func(tok string) *request {
		return &request{OriginalURL: "http://registry.example.com/api/servers", Authorization: Bearer(tok)}
	}
	g.Expect(decideURL(context.Background(), snap, req(TokStatic2), Now).Reason).To(Equal(check.ReasonAllowedStaticToken))
	g.Expect(decideURL(context.Background(), snap, req(TokStatic), Now).Reason).To(Equal(check.ReasonAllowedStaticTokenPrevious))
	g.Expect(decideURL(context.Background(), snap, req(TokStatic), Now.Add(59*time.Second)).Reason).To(Equal(check.ReasonAllowedStaticTokenPrevious))
	// The window ends exactly at ExpiresAt, without a recompile.
	g.Expect(decideURL(context.Background(), snap, req(TokStatic), Now.Add(time.Minute)).Reason).To(Equal(check.ReasonInvalidCredentials))
	g.Expect(decideURL(context.Background(), snap, req(TokStatic2), Now.Add(time.Hour)).Reason).To(Equal(check.ReasonAllowedStaticToken))

	// A previous digest equal to the current one is current, not previous.
	cfg.StaticToken.Previous = []secret.PreviousDigest{{Digest: secret.DigestOf([]byte(TokStatic2)), ExpiresAt: Now.Add(time.Minute)}}
	snap = SnapshotOf(CompileOK(t, cfg))
	g.Expect(decideURL(context.Background(), snap, req(TokStatic2), Now.Add(time.Hour)).Reason).To(Equal(check.ReasonAllowedStaticToken))
}

func TestCompileProblems(t *testing.T) {
	req := func(tok string) *request {
		return &request{OriginalURL: "http://registry.example.com/api/servers", OriginalMethod: "GET", Authorization: Bearer(tok)}
	}
	cases := []struct {
		name        string
		mutate      func(*PolicyConfig)
		wantReasons []string
		// tok is refused after compile; okTok is still allowed.
		tok, okTok string
	}{
		{"empty token falls back", func(c *PolicyConfig) { c.StaticToken.Token.Value = []byte("  \n") }, []string{authn.ProblemTokenEmpty}, TokStatic, TokReadKey},
		{"short token", func(c *PolicyConfig) { c.StaticToken.Token.Value = []byte("abc123") }, []string{authn.ProblemTokenTooWeak}, "abc123", TokReadKey},
		{"31 characters", func(c *PolicyConfig) { c.StaticToken.Token.Value = []byte(TokStatic[:31]) }, []string{authn.ProblemTokenTooWeak}, TokStatic[:31], TokReadKey},
		{"placeholder", func(c *PolicyConfig) { c.StaticToken.Token.Value = []byte("your-generated-token-0123456789abcdef") }, []string{authn.ProblemTokenTooWeak}, "your-generated-token-0123456789abcdef", TokReadKey},
		{"changeme repeated", func(c *PolicyConfig) { c.StaticToken.Token.Value = []byte(strings.Repeat("changeme", 5)) }, []string{authn.ProblemTokenTooWeak}, strings.Repeat("changeme", 5), TokReadKey},
		{"low diversity", func(c *PolicyConfig) { c.StaticToken.Token.Value = []byte(strings.Repeat("ab", 20)) }, []string{authn.ProblemTokenTooWeak}, strings.Repeat("ab", 20), TokReadKey},
		{"inner space", func(c *PolicyConfig) { c.StaticToken.Token.Value = []byte(TokStatic[:20] + " " + TokStatic[20:]) }, []string{authn.ProblemTokenTooWeak}, TokStatic, TokReadKey},
		{"secret not found", func(c *PolicyConfig) {
			c.StaticToken.Token = authn.SecretValue{Problem: &authn.Problem{Reason: authn.ProblemSecretNotFound, Message: "Secret x not found"}}
		}, []string{authn.ProblemSecretNotFound}, TokStatic, TokReadKey},
		{"weak API key", func(c *PolicyConfig) { c.APIKeys[0].Key.Value = []byte("short") }, []string{authn.ProblemTokenTooWeak}, "short", TokStatic},
		// A JWT-shaped secret would skip the failure limit (JWT-shaped
		// bearers go to the JWT check): it is refused.
		{"JWT-shaped API key", func(c *PolicyConfig) { c.APIKeys[0].Key.Value = []byte(JWTShapedKey) }, []string{authn.ProblemTokenTooWeak}, JWTShapedKey, TokStatic},
		{"API key prefix outside Registry API", func(c *PolicyConfig) { c.APIKeys[0].PathPrefixes = []string{"/mcpserver/"} }, []string{authn.ProblemInvalidSpec}, TokReadKey, TokStatic},
		{"API key prefix not normal", func(c *PolicyConfig) { c.APIKeys[0].PathPrefixes = []string{"/api/../mcpserver/"} }, []string{authn.ProblemInvalidSpec}, TokReadKey, TokStatic},
		{"API key bad method", func(c *PolicyConfig) { c.APIKeys[0].Methods = []string{"BREW"} }, []string{authn.ProblemInvalidSpec}, TokReadKey, TokStatic},
		{"duplicate API key name", func(c *PolicyConfig) { c.APIKeys[1].Name = "ci-read" }, []string{authn.ProblemInvalidSpec}, TokWriteKey, TokReadKey},
		{"bad registry prefix", func(c *PolicyConfig) { c.RegistryPathPrefixes = []string{"api/"} }, []string{authn.ProblemInvalidSpec, authn.ProblemInvalidSpec}, TokStatic, ""},
		{"static identity username with a control character", func(c *PolicyConfig) { c.StaticToken.Identity.Username = "ci\r\nX-Groups: x" }, []string{authn.ProblemInvalidSpec}, TokStatic, TokReadKey},
		{"static identity username with a trailing space", func(c *PolicyConfig) { c.StaticToken.Identity.Username = "admin " }, []string{authn.ProblemInvalidSpec}, TokStatic, TokReadKey},
		{"static identity client id with a leading space", func(c *PolicyConfig) { c.StaticToken.Identity.ClientID = " ci" }, []string{authn.ProblemInvalidSpec}, TokStatic, TokReadKey},
		{"OIDC never discovered", func(c *PolicyConfig) {
			c.OIDC = &jwt.Config{IssuerURL: "https://idp.example.com", Audiences: []string{"registry"}}
		}, []string{authn.ProblemOIDCDiscoveryFailed}, "", TokStatic},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			cfg := BasePolicy()
			tc.mutate(&cfg)
			p, probs := Compile(cfg, CompileOptions{})
			reasons := make([]string, len(probs))
			for i, pr := range probs {
				reasons[i] = pr.Reason
				g.Expect(pr.Field).NotTo(BeEmpty())
				g.Expect(pr.Message).NotTo(BeEmpty())
				for _, secret := range []string{TokStatic, TokReadKey, TokWriteKey, SessionKey} {
					g.Expect(pr.Message).NotTo(ContainSubstring(secret))
				}
			}
			g.Expect(reasons).To(Equal(tc.wantReasons))
			snap := SnapshotOf(p)
			if tc.tok != "" {
				g.Expect(decideURL(context.Background(), snap, req(tc.tok), Now).Allowed()).To(BeFalse(), "refused credential was allowed")
			}
			if tc.okTok != "" {
				g.Expect(decideURL(context.Background(), snap, req(tc.okTok), Now).Allowed()).To(BeTrue(), "the rest of the policy should still work")
			}
		})
	}
}

func TestSnapshotSelection(t *testing.T) {
	g := NewWithT(t)
	a := BasePolicy()
	a.Created = Now.Add(-time.Hour)
	b := BasePolicy()
	b.Name = "other"
	b.Created = Now
	b.Hosts = []string{"Registry.Example.com.", "b.example.com"}
	b.StaticToken.Token.Value = []byte(TokStatic2)
	store := NewStore(StoreOptions{})
	store.Put(CompileOK(t, a))
	store.Put(CompileOK(t, b))
	snap := store.Load()
	g.Expect(snap.Len()).To(Equal(2))
	g.Expect(snap.HostConflicts("team/registry")).To(Equal(map[string][]string{"registry.example.com": {"team/registry", "team/other"}}))

	decide := func(s *Snapshot, policy, url, tok string) Decision {
		return decideURL(context.Background(), s, &request{Policy: policy, OriginalURL: url, Authorization: Bearer(tok)}, Now)
	}
	// A host claimed twice goes to the older policy; the newer one cannot
	// take it, nor block it.
	g.Expect(decide(snap, "", "http://registry.example.com/api/x", TokStatic).Reason).To(Equal(check.ReasonAllowedStaticToken))
	g.Expect(decide(snap, "", "http://registry.example.com/api/x", TokStatic2).Reason).To(Equal(check.ReasonInvalidCredentials))
	// Created at the same second: the first by namespace/name.
	b.Created = a.Created
	tie := NewStore(StoreOptions{})
	tie.Replace(CompileOK(t, a), CompileOK(t, b))
	g.Expect(decide(tie.Load(), "", "http://registry.example.com/api/x", TokStatic2).Reason).To(Equal(check.ReasonAllowedStaticToken), "team/other sorts first")
	g.Expect(decide(snap, "", "http://b.example.com/api/x", TokStatic2).Reason).To(Equal(check.ReasonAllowedStaticToken))
	g.Expect(decide(snap, "", "http://b.example.com/api/x", TokStatic).Reason).To(Equal(check.ReasonInvalidCredentials))
	g.Expect(decide(snap, "team/registry", "http://registry.example.com/api/x", TokStatic).Reason).To(Equal(check.ReasonAllowedStaticToken))

	// Snapshots are immutable: deleting builds a new one.
	gen := snap.Generation()
	store.Delete("team/other")
	g.Expect(snap.Len()).To(Equal(2))
	now := store.Load()
	g.Expect(now.Generation()).To(BeNumerically(">", gen))
	g.Expect(decide(now, "", "http://registry.example.com/api/x", TokStatic).Reason).To(Equal(check.ReasonAllowedStaticToken))
	g.Expect(decide(now, "", "http://b.example.com/api/x", TokStatic2).Reason).To(Equal(check.ReasonNoPolicy))
	g.Expect(decide(now, "team/other", "http://b.example.com/api/x", TokStatic2).Reason).To(Equal(check.ReasonUnknownPolicy))

	// Standalone: plain /validate selects the only policy, whatever the host.
	sa := NewStore(StoreOptions{SelectOnlyPolicy: true})
	g.Expect(decide(sa.Load(), "", "http://any.example/api/x", TokStatic).Reason).To(Equal(check.ReasonNoPolicy))
	sa.Replace(CompileOK(t, a))
	g.Expect(decide(sa.Load(), "", "http://any.example/api/x", TokStatic).Reason).To(Equal(check.ReasonAllowedStaticToken))
}

func TestDigestsNotTokens(t *testing.T) {
	g := NewWithT(t)
	p := CompileOK(t, BasePolicy())
	// The compiled policy keeps digests; the fingerprint is the digest's
	// first 12 hex digits.
	g.Expect(p.Fingerprints().StaticToken).To(Equal(secret.DigestOf([]byte(TokStatic)).Hex()[:12]))
	g.Expect(p.Fingerprints().APIKeys).To(HaveKeyWithValue("ci-read", secret.Fingerprint([]byte(TokReadKey))))
	dump := strings.Join([]string{StaticIdentity(p).Username, string(StaticIdentity(p).JSON())}, " ")
	g.Expect(dump).NotTo(ContainSubstring(TokStatic))
}

// The registry token is compiled with the policy; its problems are the
// policy's, and the decision itself is the same with or without it.
func TestCompileRegistryToken(t *testing.T) {
	g := NewWithT(t)
	p := CompileOK(t, BasePolicy())
	g.Expect(p.RegistryToken()).To(BeNil())
	g.Expect(p.RegistryPath("/api/servers")).To(BeTrue())
	g.Expect(p.RegistryPath("/v0.1/x")).To(BeTrue())
	g.Expect(p.RegistryPath("/mcpserver/mcp")).To(BeFalse())

	cfg := BasePolicy()
	cfg.RegistryToken = &hoptoken.Config{SecretKey: &authn.SecretValue{Value: []byte(SessionKey)}, Mode: hoptoken.ModeAlways}
	p = CompileOK(t, cfg)
	g.Expect(p.RegistryToken().Available()).To(BeTrue())
	g.Expect(p.RegistryToken().Mode()).To(Equal(hoptoken.ModeAlways))

	cfg.RegistryToken = &hoptoken.Config{SecretKey: &authn.SecretValue{Value: []byte("weak")}}
	p, probs := Compile(cfg, CompileOptions{})
	g.Expect(probs).To(ConsistOf(And(HaveField("Reason", authn.ProblemTokenTooWeak), HaveField("Field", hoptoken.FieldSecretKey))))
	g.Expect(p.RegistryToken()).NotTo(BeNil())
	g.Expect(p.RegistryToken().Available()).To(BeFalse())
	d := decideURL(context.Background(), SnapshotOf(p), &request{OriginalURL: "http://registry.example.com/api/servers", Authorization: Bearer(TokStatic)}, Now)
	g.Expect(d.Reason).To(Equal(check.ReasonAllowedStaticToken), "the decision does not mint; the handler refuses")
}

// BenchmarkDecide is the decision alone. static_token_registry_token is the
// static token on a policy that also has a registry token: the decision
// does not look at it (the handler mints after deciding; see
// authserver.BenchmarkHandler for that cost).
func BenchmarkDecide(b *testing.B) {
	withToken := BasePolicy()
	withToken.Name, withToken.Hosts = "hop", []string{"hop.example.com"}
	withToken.RegistryToken = &hoptoken.Config{SecretKey: &authn.SecretValue{Value: []byte(SessionKey)}}
	snap := SnapshotOf(CompileOK(b, BasePolicy()), CompileOK(b, withToken))
	cookie := "mcp_gateway_session=" + SessionCookie(b, "alice", []string{"readers"}, time.Now())
	const u = "http://registry.example.com"
	cases := []struct {
		name string
		req  request
	}{
		{"static_token", request{OriginalURL: u + "/api/servers", OriginalMethod: "GET", Authorization: Bearer(TokStatic)}},
		{"static_token_registry_token", request{OriginalURL: "http://hop.example.com/api/servers", OriginalMethod: "GET", Authorization: Bearer(TokStatic)}},
		{"wrong_static_token", request{OriginalURL: u + "/api/servers", OriginalMethod: "GET", Authorization: Bearer(TokStatic2)}},
		{"api_key", request{OriginalURL: u + "/api/servers", OriginalMethod: "GET", Authorization: Bearer(TokReadKey)}},
		{"session", request{OriginalURL: u + "/mcpserver/mcp", OriginalMethod: "GET", Cookie: []string{cookie}}},
		{"no_credentials", request{OriginalURL: u + "/api/servers", OriginalMethod: "GET"}},
		// Dot segments are refused (bad_path) before any credential is read.
		{"dot_segments", request{OriginalURL: u + "/api/x/../servers", OriginalMethod: "GET", Authorization: Bearer(TokStatic)}},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			ctx := context.Background()
			now := time.Now()
			req, ok := checkRequest(&c.req)
			if !ok {
				b.Fatal("bad original URL")
			}
			b.ReportAllocs()
			for b.Loop() {
				d := Decide(ctx, snap, req, now)
				if d.Reason == "" {
					b.Fatal("no reason")
				}
			}
		})
	}
}

// FuzzCompile compiles policies built from fuzzed values. Compile never
// panics, never loads a secret that fails the checks, and a static token it
// loads never opens a gateway path.
func FuzzCompile(f *testing.F) {
	f.Add(TokStatic, "/api/", "GET", "/api/servers", "registry.example.com", TokReadKey)
	f.Add("short", "api", "BREW", "/api/../x", "BAD_HOST!", "")
	f.Add(" "+TokStatic+"\n", "/v0.1", "head", "/v0.1/x", "a.b", strings.Repeat("x", 40))
	f.Fuzz(func(t *testing.T, token, prefix, method, keyPrefix, host, apiKey string) {
		cfg := PolicyConfig{
			Namespace: "ns", Name: "p",
			Hosts:                []string{host},
			RegistryPathPrefixes: []string{prefix},
			StaticToken:          &statictoken.Config{Enabled: true, Token: authn.SecretValue{Value: []byte(token)}},
			APIKeys: []apikey.Config{{
				Name: "k", Key: authn.SecretValue{Value: []byte(apiKey)},
				PathPrefixes: []string{keyPrefix}, Methods: []string{method},
			}},
		}
		p, probs := Compile(cfg, CompileOptions{})
		for _, pr := range probs {
			if pr.Reason == "" || pr.Field == "" || pr.Message == "" {
				t.Fatalf("incomplete problem %+v", pr)
			}
		}
		cleaned := secret.Clean([]byte(token))
		if fp := p.Fingerprints().StaticToken; fp != "" {
			if !secret.Usable(cleaned) {
				t.Fatalf("weak token loaded")
			}
			if fp != secret.Fingerprint(cleaned) {
				t.Fatalf("fingerprint %s is not the cleaned token's", fp)
			}
			d := decideURL(context.Background(), SnapshotOf(p), &request{
				Policy: "ns/p", OriginalURL: "http://h/mcpserver/mcp", Authorization: Bearer(string(cleaned)),
			}, Now)
			if d.Allowed() && !pathnorm.HasPrefix("/mcpserver/mcp", RegistryPrefixes(p)) {
				t.Fatalf("static token allowed on a gateway path (prefixes %v)", RegistryPrefixes(p))
			}
		}
		for _, pre := range RegistryPrefixes(p) {
			if n, err := pathnorm.Normalize(pre); err != nil || n != pre {
				t.Fatalf("prefix %q kept but not normal", pre)
			}
		}
	})
}

// A session signing key is an HMAC key: the bearer-only rules (printable
// ASCII without spaces, not shaped like a JWT) do not apply to it, the
// strength rules do, and an empty one says what it turns off.
func TestSessionKeyRules(t *testing.T) {
	jwtShaped := "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.c2lnbmF0dXJlLXBhcnQ"
	for _, tc := range []struct {
		name, key  string
		wantReason string // "" when the key is used
		wantMsg    string
	}{
		{"shaped like a JWT", jwtShaped, "", ""},
		{"with an inner space", "a long passphrase with spaces in it 7d9f1b3d", "", ""},
		{"empty", " \n", authn.ProblemTokenEmpty, "session cookies signed with it are not accepted"},
		{"short", "short-key", authn.ProblemTokenTooWeak, "at least"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			cfg := BasePolicy()
			cfg.Session = &session.Config{SecretKeys: []authn.SecretValue{{Value: []byte(tc.key)}}}
			p, probs := Compile(cfg, CompileOptions{})
			if tc.wantReason == "" {
				g.Expect(probs).To(BeEmpty())
				g.Expect(HasSession(p)).To(BeTrue())
				return
			}
			g.Expect(probs).To(HaveLen(1))
			g.Expect(probs[0].Reason).To(Equal(tc.wantReason))
			g.Expect(probs[0].Message).To(ContainSubstring(tc.wantMsg))
			g.Expect(probs[0].Message).NotTo(ContainSubstring("static token"))
			g.Expect(HasSession(p)).To(BeFalse())
		})
	}
	// The bearer rules still hold for a static token.
	cfg := BasePolicy()
	cfg.StaticToken.Token.Value = []byte(jwtShaped)
	_, probs := Compile(cfg, CompileOptions{})
	NewWithT(t).Expect(probs).To(ContainElement(HaveField("Reason", authn.ProblemTokenTooWeak)))
}

// The federation token counts on the federation and peers API only, before
// the static token and the API keys; anything else it does not match goes
// on to them.
func TestDecideFederationToken(t *testing.T) {
	const tokFed = "fd-4c6e8a0b2d4f6a8c0e2f4b6d8f0a2c4e"
	const tokFedOld = "fd-9b7d5f3a1c9e7b5d3f1a9c7e5b3d1f9a"
	cfg := BasePolicy()
	cfg.FederationToken = &federation.Config{
		Enabled:  true,
		Token:    authn.SecretValue{Value: []byte(tokFed)},
		Previous: []secret.PreviousDigest{{Digest: secret.DigestOf([]byte(tokFedOld)), ExpiresAt: Now.Add(time.Minute)}},
	}
	snap := SnapshotOf(CompileOK(t, cfg))
	validCookie := "mcp_gateway_session=" + SessionCookie(t, "alice", []string{"readers"}, Now.Add(-time.Hour))
	const u = "http://registry.example.com"
	cases := []struct {
		name       string
		req        request
		want       check.Reason
		mismatched bool
	}{
		{"on the federation API", request{OriginalURL: u + "/api/federation/servers", Authorization: Bearer(tokFed)}, check.ReasonAllowedFederation, false},
		{"on /api/peers", request{OriginalURL: u + "/api/peers", Authorization: Bearer(tokFed)}, check.ReasonAllowedFederation, false},
		{"under /api/peers/", request{OriginalURL: u + "/api/peers/peer-1/sync", Authorization: Bearer(tokFed)}, check.ReasonAllowedFederation, false},
		{"via X-Authorization", request{OriginalURL: u + "/api/peers", XAuthorization: Bearer(tokFed)}, check.ReasonAllowedFederation, false},
		{"the previous token in its window", request{OriginalURL: u + "/api/peers", Authorization: Bearer(tokFedOld)}, check.ReasonAllowedFederationPrevious, false},
		{"/api/peersX is no peers path", request{OriginalURL: u + "/api/peersX", Authorization: Bearer(tokFed)}, check.ReasonFederationTokenOffPath, false},
		{"another Registry API path", request{OriginalURL: u + "/api/servers", Authorization: Bearer(tokFed)}, check.ReasonFederationTokenOffPath, false},
		{"a gateway path", request{OriginalURL: u + "/mcpserver/mcp", Authorization: Bearer(tokFed)}, check.ReasonFederationTokenOffPath, false},
		{"dot segments into the federation API", request{OriginalURL: u + "/api/servers/../federation/x", Authorization: Bearer(tokFed)}, check.ReasonBadPath, false},
		{"the static token on the federation API", request{OriginalURL: u + "/api/federation/servers", Authorization: Bearer(TokStatic)}, check.ReasonAllowedStaticToken, false},
		{"an API key on the peers API", request{OriginalURL: u + "/api/peers", OriginalMethod: "GET", Authorization: Bearer(TokReadKey)}, check.ReasonAllowedAPIKey, false},
		{"a wrong token is a failed attempt", request{OriginalURL: u + "/api/peers", Authorization: Bearer(TokStatic2)}, check.ReasonInvalidCredentials, true},
		{"with the session cookie, the session decides", request{OriginalURL: u + "/api/peers", Authorization: Bearer(tokFed), Cookie: []string{validCookie}}, check.ReasonAllowedSession, false},
		{"no credentials", request{OriginalURL: u + "/api/peers"}, check.ReasonNoCredentials, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			d := decideURL(context.Background(), snap, &tc.req, Now)
			g.Expect(d.Reason).To(Equal(tc.want))
			g.Expect(d.SecretMismatch).To(Equal(tc.mismatched))
			if tc.want == check.ReasonAllowedFederation || tc.want == check.ReasonAllowedFederationPrevious {
				id := d.Identity
				g.Expect(id.Username).To(Equal("federation-peer"))
				g.Expect(id.ClientID).To(Equal("federation-static"))
				g.Expect(id.Method).To(Equal(check.MethodFederation))
				g.Expect(id.Scopes).To(Equal([]string{"federation/read"}))
				g.Expect(id.Groups).To(BeEmpty())
			}
		})
	}
	// Throttled clients are refused before the federation token is compared.
	req, _ := checkRequest(&request{OriginalURL: u + "/api/peers", Authorization: Bearer(tokFed)})
	req.Throttled = true
	g := NewWithT(t)
	g.Expect(Decide(context.Background(), snap, req, Now).Reason).To(Equal(check.ReasonTooManyFailures))
	g.Expect(CompileOK(t, cfg).Fingerprints().FederationToken).To(Equal(secret.Fingerprint([]byte(tokFed))))

	// What the compile step refuses.
	for _, tc := range []struct {
		name   string
		mutate func(*federation.Config)
		reason string
	}{
		{"a weak token", func(c *federation.Config) { c.Token = authn.SecretValue{Value: []byte("short")} }, authn.ProblemTokenTooWeak},
		{"an empty token", func(c *federation.Config) { c.Token = authn.SecretValue{} }, authn.ProblemTokenEmpty},
		{"a prefix outside the Registry API", func(c *federation.Config) { c.PathPrefixes = []string{"/peers"} }, authn.ProblemInvalidSpec},
		{"a prefix that is not normal", func(c *federation.Config) { c.PathPrefixes = []string{"/api//peers"} }, authn.ProblemInvalidSpec},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			c := BasePolicy()
			fc := *cfg.FederationToken
			tc.mutate(&fc)
			c.FederationToken = &fc
			p, probs := Compile(c, CompileOptions{})
			g.Expect(probs).To(HaveLen(1))
			g.Expect(probs[0].Reason).To(Equal(tc.reason))
			g.Expect(probs[0].Field).To(HavePrefix("spec.federationToken"))
			g.Expect(p.Fingerprints().FederationToken).To(BeEmpty())
			// Left out means refused; the rest of the policy works.
			d := decideURL(context.Background(), SnapshotOf(p), &request{OriginalURL: u + "/api/peers", Authorization: Bearer(tokFed)}, Now)
			g.Expect(d.Allowed()).To(BeFalse())
			d = decideURL(context.Background(), SnapshotOf(p), &request{OriginalURL: u + "/api/peers", Authorization: Bearer(TokStatic)}, Now)
			g.Expect(d.Reason).To(Equal(check.ReasonAllowedStaticToken))
		})
	}
}

// What a policy with a delegate hands on, and what it keeps.
func TestDecideDelegate(t *testing.T) {
	cfg := BasePolicy()
	cfg.Delegate = &DelegateConfig{URL: "http://auth-server:8888/validate"}
	withDelegate := SnapshotOf(CompileOK(t, cfg))
	gw := cfg
	gw.Delegate = &DelegateConfig{URL: "http://auth-server:8888/validate", GatewayPaths: true}
	gateway := SnapshotOf(CompileOK(t, gw))
	without := SnapshotOf(CompileOK(t, BasePolicy()))

	legacy := "mcp_gateway_session=" + SessionCookie(t, "alice", []string{"readers"}, Now.Add(-time.Hour))
	// Today's cookie holds a session id, signed with a key this service may
	// not even have.
	today := "mcp_gateway_session=.eJwzNDRIMTFKMjVONTA0NjQ0NjUxMjA3tDAwMA.Zx1Hbg.c2lnbmF0dXJlLW9mLWFub3RoZXIta2V5"
	upstreamJWT := authtest.UnsignedJWT(map[string]any{"iss": "mcp-auth-server", "aud": "mcp-registry", "sub": "dave"})
	const u = "http://registry.example.com"
	for _, tc := range []struct {
		name    string
		snap    *Snapshot
		req     request
		want    check.Reason
		without check.Reason
	}{
		{"today's session cookie", withDelegate, request{OriginalURL: u + "/api/servers", Cookie: []string{today}}, check.ReasonDelegate, check.ReasonSessionInvalid},
		{"a legacy session cookie stays here", withDelegate, request{OriginalURL: u + "/api/servers", Cookie: []string{legacy}}, check.ReasonAllowedSession, check.ReasonAllowedSession},
		{"a token of the upstream auth server", withDelegate, request{OriginalURL: u + "/api/servers", Authorization: Bearer(upstreamJWT)}, check.ReasonDelegate, check.ReasonJWTNotConfigured},
		{"the static token stays here", withDelegate, request{OriginalURL: u + "/api/servers", Authorization: Bearer(TokStatic)}, check.ReasonAllowedStaticToken, check.ReasonAllowedStaticToken},
		{"a wrong opaque token stays here", withDelegate, request{OriginalURL: u + "/api/servers", Authorization: Bearer(TokStatic2)}, check.ReasonInvalidCredentials, check.ReasonInvalidCredentials},
		{"no credentials stay here", withDelegate, request{OriginalURL: u + "/mcpserver/mcp"}, check.ReasonNoCredentials, check.ReasonNoCredentials},
		{"a bad path is refused before", withDelegate, request{OriginalURL: u + "/api/../x", Cookie: []string{today}}, check.ReasonBadPath, check.ReasonBadPath},
		{"gatewayPaths: every gateway path", gateway, request{OriginalURL: u + "/mcpserver/mcp", Authorization: Bearer(TokStatic)}, check.ReasonDelegate, check.ReasonRegistryCredOnGateway},
		{"gatewayPaths: no credentials on a gateway path", gateway, request{OriginalURL: u + "/mcpserver/mcp"}, check.ReasonDelegate, check.ReasonNoCredentials},
		{"gatewayPaths: Registry API paths stay here", gateway, request{OriginalURL: u + "/api/servers", Authorization: Bearer(TokStatic)}, check.ReasonAllowedStaticToken, check.ReasonAllowedStaticToken},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			g.Expect(decideURL(context.Background(), tc.snap, &tc.req, Now).Reason).To(Equal(tc.want))
			g.Expect(decideURL(context.Background(), without, &tc.req, Now).Reason).To(Equal(tc.without), "without a delegate")
		})
	}

	// A delegate URL that is not one is a problem; what would have gone
	// there is refused, and the URL (which may hold a secret) is not echoed.
	g := NewWithT(t)
	bad := BasePolicy()
	bad.Delegate = &DelegateConfig{URL: "http://user:hunter2-secret@auth-server/validate"}
	p, probs := Compile(bad, CompileOptions{})
	g.Expect(probs).To(HaveLen(1))
	g.Expect(probs[0].Field).To(Equal("spec.delegate"))
	g.Expect(probs[0].Message).NotTo(ContainSubstring("hunter2"))
	g.Expect(p.Delegate()).To(BeNil())
	g.Expect(decideURL(context.Background(), SnapshotOf(p), &request{OriginalURL: u + "/api/servers", Cookie: []string{today}}, Now).Allowed()).To(BeFalse())
	bad.Delegate = &DelegateConfig{URL: "http://auth-server/validate", Timeout: time.Minute}
	_, probs = Compile(bad, CompileOptions{})
	g.Expect(probs).To(HaveLen(1))
	g.Expect(probs[0].Message).To(ContainSubstring("timeout"))
}

// An expiresAt ends a static token or API key at that instant, without a
// recompile: before it the credential allows, from it on (the instant
// itself included) it is refused with credential_expired, whichever of its
// values (current or previous) is sent, and never counted as a mismatch.
func TestDecideExpiry(t *testing.T) {
	cfg := BasePolicy()
	exp := Now.Add(time.Hour)
	cfg.StaticToken.ExpiresAt = exp
	cfg.StaticToken.Previous = []secret.PreviousDigest{{Digest: secret.DigestOf([]byte(TokStatic2)), ExpiresAt: Now.Add(2 * time.Hour)}}
	cfg.APIKeys[0].ExpiresAt = exp
	p := CompileOK(t, cfg)
	snap := SnapshotOf(p)
	const u = "http://registry.example.com"
	cases := []struct {
		name string
		tok  string
		url  string
		now  time.Time
		want check.Reason
	}{
		{"static before", TokStatic, u + "/api/servers", exp.Add(-time.Nanosecond), check.ReasonAllowedStaticToken},
		{"static at expiresAt", TokStatic, u + "/api/servers", exp, check.ReasonCredentialExpired},
		{"static after", TokStatic, u + "/api/servers", exp.Add(time.Minute), check.ReasonCredentialExpired},
		{"static previous before", TokStatic2, u + "/api/servers", exp.Add(-time.Second), check.ReasonAllowedStaticTokenPrevious},
		{"static previous after", TokStatic2, u + "/api/servers", exp.Add(time.Second), check.ReasonCredentialExpired},
		{"static expired on gateway path", TokStatic, u + "/mcpserver/mcp", exp, check.ReasonCredentialExpired},
		{"key before", TokReadKey, u + "/api/servers", exp.Add(-time.Nanosecond), check.ReasonAllowedAPIKey},
		{"key at expiresAt", TokReadKey, u + "/api/servers", exp, check.ReasonCredentialExpired},
		{"key long after", TokReadKey, u + "/api/servers", exp.Add(time.Hour), check.ReasonCredentialExpired},
		{"key without expiry", TokWriteKey, u + "/api/servers", exp.Add(24 * time.Hour), check.ReasonAllowedAPIKey},
		{"wrong token after", "not-a-token-of-this-policy-0123456789", u + "/api/servers", exp, check.ReasonInvalidCredentials},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			g := NewWithT(t)
			d := decideURL(context.Background(), snap, &request{OriginalURL: c.url, OriginalMethod: "GET", Authorization: Bearer(c.tok)}, c.now)
			g.Expect(d.Reason).To(Equal(c.want))
			if c.want == check.ReasonCredentialExpired {
				g.Expect(d.Allowed()).To(BeFalse())
				g.Expect(d.Identity).To(BeNil())
				g.Expect(d.SecretMismatch).To(BeFalse())
				g.Expect(d.Status()).To(Equal(401))
			}
		})
	}
	g := NewWithT(t)
	g.Expect(p.Expiries().StaticToken).To(Equal(exp))
	g.Expect(p.Expiries().APIKeys).To(Equal(map[string]time.Time{"ci-read": exp}))
	g.Expect(decideURL(context.Background(), snap, &request{OriginalURL: u + "/api/servers", OriginalMethod: "GET", Authorization: Bearer(TokReadKey)}, exp).CredentialName).To(Equal("ci-read"))
}
