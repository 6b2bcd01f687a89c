package authserver

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/registryauth/registry-auth-operator/authserver/secret"

	"github.com/registryauth/registry-auth-operator/authserver/pathnorm"

	. "github.com/onsi/gomega"
)

// Test secrets. They are long and random-looking enough to pass the
// strength checks; nothing here is a real credential.
const (
	tokStatic   = "st-9f3c1a7e5b2d4f6081a3c5e7092b4d6f"
	tokStatic2  = "st-2b4d6f8091a3c5e7f9e1d3c5b7a90817"
	tokReadKey  = "rk-6e8a0c2e4f6a8c0e2f4a6c8e0a2c4e6f"
	tokWriteKey = "wk-1357924680acefbdacefbd1357924680"
	sessionKey  = "session-key-7d9f1b3d5f7a9c1e3a5c7e9b1d3f5a7c"
	// jwtShapedKey is long and random but has a JWT's shape.
	jwtShapedKey = "eyJ9f3c1a7e5b2d4f6081.a3c5e7092b4d6f2b4d6f.8091a3c5e7f9e1d3c5b7"
)

var testNow = time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)

// basePolicy is a policy with a static token, two API keys and sessions.
func basePolicy() PolicyConfig {
	return PolicyConfig{
		Namespace: "team",
		Name:      "registry",
		Hosts:     []string{"registry.example.com"},
		StaticToken: &StaticTokenConfig{
			Enabled: true,
			Token:   SecretValue{Value: []byte(tokStatic + "\n")}, // trailing newline, as from a file
		},
		APIKeys: []APIKeyConfig{
			{Name: "ci-read", Key: SecretValue{Value: []byte(tokReadKey)}, Groups: []string{"readers"}, Methods: []string{"GET", "HEAD"}},
			{Name: "ci-write", Key: SecretValue{Value: []byte(tokWriteKey)}, Groups: []string{"writers"}, PathPrefixes: []string{"/api/servers"}},
		},
		Session: &SessionConfig{SecretKeys: []SecretValue{{Value: []byte(sessionKey)}}},
		GroupScopes: map[string][]string{
			"readers":            {"registry/read"},
			"writers":            {"registry/read", "registry/write"},
			"mcp-registry-admin": {"mcp-registry-admin"},
		},
	}
}

func compileOK(t testing.TB, cfg PolicyConfig) *Policy {
	t.Helper()
	p, probs := Compile(cfg, CompileOptions{})
	if len(probs) > 0 {
		t.Fatalf("unexpected problems: %v", probs)
	}
	return p
}

func snapshotOf(ps ...*Policy) *Snapshot {
	s := NewStore(StoreOptions{})
	s.Replace(ps...)
	return s.Load()
}

func sessionCookie(t testing.TB, username string, groups []string, signedAt time.Time) string {
	t.Helper()
	payload, err := json.Marshal(map[string]any{"username": username, "groups": groups, "auth_method": "oauth2", "provider": "keycloak"})
	if err != nil {
		t.Fatal(err)
	}
	return makeSessionCookie([]byte(sessionKey), payload, uint64(signedAt.Unix()), true)
}

func bearer(tok string) []string { return []string{"Bearer " + tok} }

func TestDecideTable(t *testing.T) {
	validCookie := "mcp_gateway_session=" + sessionCookie(t, "alice", []string{"readers"}, testNow.Add(-time.Hour))
	expiredCookie := "mcp_gateway_session=" + sessionCookie(t, "alice", []string{"readers"}, testNow.Add(-9*time.Hour))
	const u = "http://registry.example.com"

	type want struct {
		reason   Reason
		username string
		method   Method
	}
	allowStatic := want{ReasonAllowedStaticToken, "network-user", MethodNetworkTrusted}
	cases := []struct {
		name string
		req  Request
		want want
	}{
		// Rule 1: static token on Registry API paths.
		{"static on /api/", Request{OriginalURL: u + "/api/servers", Authorization: bearer(tokStatic)}, allowStatic},
		{"static on /v0.1/", Request{OriginalURL: u + "/v0.1/servers?limit=5", Authorization: bearer(tokStatic)}, allowStatic},
		{"static with lower-case scheme", Request{OriginalURL: u + "/api/x", Authorization: []string{"bearer " + tokStatic}}, allowStatic},
		{"static with upper-case scheme", Request{OriginalURL: u + "/api/x", Authorization: []string{"BEARER " + tokStatic}}, allowStatic},
		{"static with extra spaces after scheme", Request{OriginalURL: u + "/api/x", Authorization: []string{"Bearer    " + tokStatic}}, allowStatic},
		{"static via X-Authorization", Request{OriginalURL: u + "/api/x", XAuthorization: bearer(tokStatic)}, allowStatic},
		{"static in both headers, same value", Request{OriginalURL: u + "/api/x", Authorization: bearer(tokStatic), XAuthorization: bearer(tokStatic)}, allowStatic},
		{"static with https and port", Request{OriginalURL: "https://REGISTRY.example.com:8443/api/x", Authorization: bearer(tokStatic)}, allowStatic},
		{"static on gateway path", Request{OriginalURL: u + "/mcpserver/mcp", Authorization: bearer(tokStatic)}, want{reason: ReasonRegistryCredOnGateway}},
		{"static on /api without slash", Request{OriginalURL: u + "/api", Authorization: bearer(tokStatic)}, want{reason: ReasonRegistryCredOnGateway}},
		{"static on /apix", Request{OriginalURL: u + "/apix/servers", Authorization: bearer(tokStatic)}, want{reason: ReasonRegistryCredOnGateway}},
		{"static on upper-case /API/", Request{OriginalURL: u + "/API/servers", Authorization: bearer(tokStatic)}, want{reason: ReasonRegistryCredOnGateway}},
		{"static, query names /api/", Request{OriginalURL: u + "/mcpserver/mcp?next=/api/servers", Authorization: bearer(tokStatic)}, want{reason: ReasonRegistryCredOnGateway}},
		// Dot segments are refused: nginx resolves them but forwards the raw
		// URI, which the upstream may read differently.
		{"static, dot-dot out of /api/", Request{OriginalURL: u + "/api/../mcpserver/mcp", Authorization: bearer(tokStatic)}, want{reason: ReasonBadPath}},
		{"static, encoded dot-dot out of /api/", Request{OriginalURL: u + "/api/%2e%2e/mcpserver/mcp", Authorization: bearer(tokStatic)}, want{reason: ReasonBadPath}},
		{"static, encoded slash and dot-dot", Request{OriginalURL: u + "/api/..%2fmcpserver/mcp", Authorization: bearer(tokStatic)}, want{reason: ReasonBadPath}},
		{"static, dot-dot into /api/", Request{OriginalURL: u + "/mcpserver/../api/servers", Authorization: bearer(tokStatic)}, want{reason: ReasonBadPath}},
		{"static, encoded slashes and dot-dot inside /api/", Request{OriginalURL: u + "/api/servers%2F..%2Fagents", Authorization: bearer(tokStatic)}, want{reason: ReasonBadPath}},
		{"static, dot segment inside /api/", Request{OriginalURL: u + "/api/./servers", Authorization: bearer(tokStatic)}, want{reason: ReasonBadPath}},
		{"static, double slash", Request{OriginalURL: u + "//api//servers", Authorization: bearer(tokStatic)}, allowStatic},
		{"static, leading double slash", Request{OriginalURL: u + "//api/servers", Authorization: bearer(tokStatic)}, allowStatic},
		{"static, inner double slash", Request{OriginalURL: u + "/api//servers", Authorization: bearer(tokStatic)}, allowStatic},
		{"static, three dots is no dot segment", Request{OriginalURL: u + "/api/.../servers", Authorization: bearer(tokStatic)}, allowStatic},
		{"static, semicolon parameter", Request{OriginalURL: u + "/api;x=1/servers", Authorization: bearer(tokStatic)}, want{reason: ReasonRegistryCredOnGateway}},
		{"static, unicode look-alike a", Request{OriginalURL: u + "/\u0430pi/servers", Authorization: bearer(tokStatic)}, want{reason: ReasonRegistryCredOnGateway}},
		{"wrong static token falls through", Request{OriginalURL: u + "/api/servers", Authorization: bearer(tokStatic2)}, want{reason: ReasonInvalidCredentials}},
		{"token differs in last byte", Request{OriginalURL: u + "/api/servers", Authorization: bearer(tokStatic[:len(tokStatic)-1] + "0")}, want{reason: ReasonInvalidCredentials}},
		{"token prefix only", Request{OriginalURL: u + "/api/servers", Authorization: bearer(tokStatic[:len(tokStatic)-1])}, want{reason: ReasonInvalidCredentials}},
		{"token with extra byte", Request{OriginalURL: u + "/api/servers", Authorization: bearer(tokStatic + "0")}, want{reason: ReasonInvalidCredentials}},

		// The session cookie skips the static path.
		{"static with session cookie goes the session way", Request{OriginalURL: u + "/api/servers", Authorization: bearer(tokStatic), Cookie: []string{validCookie}}, want{ReasonAllowedSession, "alice", MethodSession}},
		{"static with invalid session cookie", Request{OriginalURL: u + "/api/servers", Authorization: bearer(tokStatic), Cookie: []string{"mcp_gateway_session=garbage"}}, want{reason: ReasonInvalidCredentials}},
		{"static with empty session cookie", Request{OriginalURL: u + "/api/servers", Authorization: bearer(tokStatic), Cookie: []string{"mcp_gateway_session="}}, want{reason: ReasonInvalidCredentials}},
		{"static with other cookies", Request{OriginalURL: u + "/api/servers", Authorization: bearer(tokStatic), Cookie: []string{"theme=dark; lang=en"}}, allowStatic},

		// Rule 2: API keys.
		{"read key GET", Request{OriginalURL: u + "/api/servers", OriginalMethod: "GET", Authorization: bearer(tokReadKey)}, want{ReasonAllowedAPIKey, "ci-read", MethodAPIKey}},
		{"read key head lower-case", Request{OriginalURL: u + "/v0.1/servers", OriginalMethod: "head", Authorization: bearer(tokReadKey)}, want{ReasonAllowedAPIKey, "ci-read", MethodAPIKey}},
		{"read key POST", Request{OriginalURL: u + "/api/servers", OriginalMethod: "POST", Authorization: bearer(tokReadKey)}, want{reason: ReasonAPIKeyForbidden}},
		{"read key without method", Request{OriginalURL: u + "/api/servers", Authorization: bearer(tokReadKey)}, want{reason: ReasonAPIKeyForbidden}},
		{"write key in its prefix", Request{OriginalURL: u + "/api/servers/x", OriginalMethod: "POST", Authorization: bearer(tokWriteKey)}, want{ReasonAllowedAPIKey, "ci-write", MethodAPIKey}},
		{"write key outside its prefix", Request{OriginalURL: u + "/api/agents", OriginalMethod: "POST", Authorization: bearer(tokWriteKey)}, want{reason: ReasonAPIKeyForbidden}},
		{"write key prefix needs segment boundary", Request{OriginalURL: u + "/api/serversx", OriginalMethod: "GET", Authorization: bearer(tokWriteKey)}, want{reason: ReasonAPIKeyForbidden}},
		{"write key, dot-dot into its prefix", Request{OriginalURL: u + "/api/agents/x/../../servers/foo", OriginalMethod: "POST", Authorization: bearer(tokWriteKey)}, want{reason: ReasonBadPath}},
		{"write key, the same path without dots", Request{OriginalURL: u + "/api/servers/foo", OriginalMethod: "POST", Authorization: bearer(tokWriteKey)}, want{ReasonAllowedAPIKey, "ci-write", MethodAPIKey}},
		{"write key, double slashes into its prefix", Request{OriginalURL: u + "//api//servers/foo", OriginalMethod: "POST", Authorization: bearer(tokWriteKey)}, want{ReasonAllowedAPIKey, "ci-write", MethodAPIKey}},
		{"write key, dot-dot out of its prefix", Request{OriginalURL: u + "/api/servers/../agents", OriginalMethod: "POST", Authorization: bearer(tokWriteKey)}, want{reason: ReasonBadPath}},
		{"API key on gateway path", Request{OriginalURL: u + "/mcpserver/mcp", OriginalMethod: "GET", Authorization: bearer(tokReadKey)}, want{reason: ReasonRegistryCredOnGateway}},
		{"API key with session cookie", Request{OriginalURL: u + "/api/servers", OriginalMethod: "GET", Authorization: bearer(tokReadKey), Cookie: []string{validCookie}}, want{ReasonAllowedSession, "alice", MethodSession}},

		// Rule 3: session cookie.
		{"session on gateway path", Request{OriginalURL: u + "/mcpserver/mcp", Cookie: []string{validCookie}}, want{ReasonAllowedSession, "alice", MethodSession}},
		{"session among other cookies", Request{OriginalURL: u + "/mcpserver/mcp", Cookie: []string{"a=b; " + validCookie + "; c=d"}}, want{ReasonAllowedSession, "alice", MethodSession}},
		{"session in second Cookie header", Request{OriginalURL: u + "/mcpserver/mcp", Cookie: []string{"a=b", validCookie}}, want{ReasonAllowedSession, "alice", MethodSession}},
		// Which of two values counts differs between frameworks (Starlette
		// takes the last): neither is used.
		{"session cookie twice, different values", Request{OriginalURL: u + "/mcpserver/mcp", Cookie: []string{validCookie + "; " + expiredCookie}}, want{reason: ReasonSessionInvalid}},
		{"session cookie twice, the valid one last", Request{OriginalURL: u + "/mcpserver/mcp", Cookie: []string{expiredCookie, validCookie}}, want{reason: ReasonSessionInvalid}},
		{"session cookie twice, same value", Request{OriginalURL: u + "/mcpserver/mcp", Cookie: []string{validCookie + "; " + validCookie}}, want{ReasonAllowedSession, "alice", MethodSession}},
		{"static with the session cookie twice still skips the static path", Request{OriginalURL: u + "/api/servers", Authorization: bearer(tokStatic), Cookie: []string{validCookie, expiredCookie}}, want{reason: ReasonInvalidCredentials}},
		{"expired session", Request{OriginalURL: u + "/mcpserver/mcp", Cookie: []string{expiredCookie}}, want{reason: ReasonSessionInvalid}},
		{"tampered session", Request{OriginalURL: u + "/mcpserver/mcp", Cookie: []string{validCookie[:len(validCookie)-2] + "AA"}}, want{reason: ReasonSessionInvalid}},
		{"session, dot segment", Request{OriginalURL: u + "/mcpserver/./mcp", Cookie: []string{validCookie}}, want{reason: ReasonBadPath}},
		{"no credentials, dot-dot", Request{OriginalURL: u + "/mcpserver/../api/servers"}, want{reason: ReasonBadPath}},

		// Nothing / malformed.
		{"no credentials", Request{OriginalURL: u + "/api/servers"}, want{reason: ReasonNoCredentials}},
		{"no credentials on gateway", Request{OriginalURL: u + "/mcpserver/mcp"}, want{reason: ReasonNoCredentials}},
		{"empty bearer", Request{OriginalURL: u + "/api/servers", Authorization: []string{"Bearer "}}, want{reason: ReasonMalformedAuthorization}},
		{"bearer only", Request{OriginalURL: u + "/api/servers", Authorization: []string{"Bearer"}}, want{reason: ReasonMalformedAuthorization}},
		{"bearer with tab", Request{OriginalURL: u + "/api/servers", Authorization: []string{"Bearer\t" + tokStatic}}, want{reason: ReasonMalformedAuthorization}},
		{"bearer token with inner space", Request{OriginalURL: u + "/api/servers", Authorization: []string{"Bearer " + tokStatic[:10] + " " + tokStatic[10:]}}, want{reason: ReasonMalformedAuthorization}},
		{"bearer with non-ASCII", Request{OriginalURL: u + "/api/servers", Authorization: []string{"Bearer " + tokStatic + "\xff"}}, want{reason: ReasonMalformedAuthorization}},
		{"bearer with NUL", Request{OriginalURL: u + "/api/servers", Authorization: []string{"Bearer " + tokStatic + "\x00"}}, want{reason: ReasonMalformedAuthorization}},
		{"basic scheme", Request{OriginalURL: u + "/api/servers", Authorization: []string{"Basic dXNlcjpwYXNz"}}, want{reason: ReasonUnsupportedAuthzScheme}},
		{"two Authorization headers", Request{OriginalURL: u + "/api/servers", Authorization: []string{"Bearer " + tokStatic, "Bearer " + tokStatic}}, want{reason: ReasonAmbiguousAuthorization}},
		{"Authorization and X-Authorization differ", Request{OriginalURL: u + "/api/servers", Authorization: bearer(tokStatic), XAuthorization: bearer(tokStatic2)}, want{reason: ReasonAmbiguousAuthorization}},
		{"JWT-shaped bearer without OIDC", Request{OriginalURL: u + "/api/servers", Authorization: bearer("eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln")}, want{reason: ReasonJWTNotConfigured}},
		{"huge bearer", Request{OriginalURL: u + "/api/servers", Authorization: bearer(strings.Repeat("a", 60000))}, want{reason: ReasonInvalidCredentials}},

		// Original URL and path.
		{"missing X-Original-URL", Request{Authorization: bearer(tokStatic)}, want{reason: ReasonBadOriginalURL}},
		{"relative X-Original-URL", Request{OriginalURL: "/api/servers", Authorization: bearer(tokStatic)}, want{reason: ReasonBadOriginalURL}},
		{"ftp X-Original-URL", Request{OriginalURL: "ftp://registry.example.com/api/servers", Authorization: bearer(tokStatic)}, want{reason: ReasonBadOriginalURL}},
		{"userinfo in X-Original-URL", Request{OriginalURL: "http://user@registry.example.com/api/servers", Authorization: bearer(tokStatic)}, want{reason: ReasonBadOriginalURL}},
		{"host only", Request{OriginalURL: u, Authorization: bearer(tokStatic)}, want{reason: ReasonRegistryCredOnGateway}},
		{"dot-dot above root", Request{OriginalURL: u + "/../api/servers", Authorization: bearer(tokStatic)}, want{reason: ReasonBadPath}},
		{"bad percent-encoding", Request{OriginalURL: u + "/api/%zz", Authorization: bearer(tokStatic)}, want{reason: ReasonBadPath}},
		{"encoded NUL", Request{OriginalURL: u + "/api/%00", Authorization: bearer(tokStatic)}, want{reason: ReasonBadPath}},
		{"raw fragment", Request{OriginalURL: u + "/api/x#/../../mcpserver", Authorization: bearer(tokStatic)}, want{reason: ReasonBadPath}},
		{"encoded question mark", Request{OriginalURL: u + "/api/x%3F/../../mcpserver", Authorization: bearer(tokStatic)}, want{reason: ReasonBadPath}},
		{"control character", Request{OriginalURL: u + "/api/x\x01", Authorization: bearer(tokStatic)}, want{reason: ReasonBadPath}},
		{"unknown host", Request{OriginalURL: "http://other.example.com/api/servers", Authorization: bearer(tokStatic)}, want{reason: ReasonNoPolicy}},
		{"unknown policy by name", Request{Policy: "team/nope", OriginalURL: u + "/api/servers", Authorization: bearer(tokStatic)}, want{reason: ReasonUnknownPolicy}},
		{"policy by name ignores host", Request{Policy: "team/registry", OriginalURL: "http://other.example.com/api/servers", Authorization: bearer(tokStatic)}, allowStatic},
	}
	p := compileOK(t, basePolicy())
	snap := snapshotOf(p)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			d := Decide(context.Background(), snap, &tc.req, testNow)
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
	snap := snapshotOf(compileOK(t, basePolicy()))
	const u = "http://registry.example.com"

	d := Decide(context.Background(), snap, &Request{OriginalURL: u + "/api/servers", Authorization: bearer(tokStatic)}, testNow)
	id := d.Identity
	g.Expect(id.Username).To(Equal("network-user"))
	g.Expect(id.ClientID).To(Equal("network-trusted"))
	g.Expect(id.Groups).To(Equal([]string{"mcp-registry-admin"}))
	g.Expect(id.Scopes).To(Equal([]string{"mcp-registry-admin", "mcp-servers-unrestricted/read", "mcp-servers-unrestricted/execute"}))
	g.Expect(id.Method).To(Equal(MethodNetworkTrusted))

	d = Decide(context.Background(), snap, &Request{OriginalURL: u + "/api/servers", OriginalMethod: "GET", Authorization: bearer(tokWriteKey)}, testNow)
	g.Expect(d.Identity.ClientID).To(Equal("ci-write"))
	g.Expect(d.Identity.Groups).To(Equal([]string{"writers"}))
	g.Expect(d.Identity.Scopes).To(Equal([]string{"registry/read", "registry/write"}))
	g.Expect(d.CredentialName).To(Equal("ci-write"))

	c := "mcp_gateway_session=" + sessionCookie(t, "bob", []string{"readers", "x,mcp-registry-admin", "writers"}, testNow)
	d = Decide(context.Background(), snap, &Request{OriginalURL: u + "/mcpserver/mcp", Cookie: []string{c}}, testNow)
	g.Expect(d.Identity.Username).To(Equal("bob"))
	// A group with a comma would turn into two groups at the upstream.
	g.Expect(d.Identity.Groups).To(Equal([]string{"readers", "writers"}))
	g.Expect(d.Identity.Scopes).To(Equal([]string{"registry/read", "registry/write"}))
}

func TestDecideCustomIdentityAndPrefixes(t *testing.T) {
	g := NewWithT(t)
	cfg := basePolicy()
	cfg.RegistryPathPrefixes = []string{"/registry/", "/v1"}
	cfg.SessionCookieName = "ui_session"
	cfg.APIKeys = nil
	cfg.StaticToken.Identity = IdentityConfig{Username: "ci", ClientID: "pipeline", Groups: []string{}, Scopes: []string{"read"}}
	snap := snapshotOf(compileOK(t, cfg))
	const u = "http://registry.example.com"
	decide := func(path string, cookies ...string) Decision {
		return Decide(context.Background(), snap, &Request{OriginalURL: u + path, Authorization: bearer(tokStatic), Cookie: cookies}, testNow)
	}
	d := decide("/registry/servers")
	g.Expect(d.Reason).To(Equal(ReasonAllowedStaticToken))
	g.Expect(d.Identity.Username).To(Equal("ci"))
	g.Expect(d.Identity.ClientID).To(Equal("pipeline"))
	g.Expect(d.Identity.Groups).To(BeEmpty())
	g.Expect(d.Identity.Scopes).To(Equal([]string{"read"}))
	g.Expect(decide("/v1").Reason).To(Equal(ReasonAllowedStaticToken))
	g.Expect(decide("/v1/x").Reason).To(Equal(ReasonAllowedStaticToken))
	g.Expect(decide("/v10").Reason).To(Equal(ReasonRegistryCredOnGateway))
	g.Expect(decide("/api/servers").Reason).To(Equal(ReasonRegistryCredOnGateway))
	// The configured cookie name skips; the default one no longer does.
	g.Expect(decide("/registry/servers", "ui_session=x").Reason).To(Equal(ReasonInvalidCredentials))
	g.Expect(decide("/registry/servers", "mcp_gateway_session=x").Reason).To(Equal(ReasonAllowedStaticToken))
}

func TestDecidePreviousTokens(t *testing.T) {
	g := NewWithT(t)
	cfg := basePolicy()
	cfg.StaticToken.Token = SecretValue{Value: []byte(tokStatic2)}
	cfg.StaticToken.Previous = []secret.PreviousDigest{{Digest: secret.DigestOf([]byte(tokStatic)), ExpiresAt: testNow.Add(time.Minute)}}
	snap := snapshotOf(compileOK(t, cfg))
	req := func(tok string) *Request {
		return &Request{OriginalURL: "http://registry.example.com/api/servers", Authorization: bearer(tok)}
	}
	g.Expect(Decide(context.Background(), snap, req(tokStatic2), testNow).Reason).To(Equal(ReasonAllowedStaticToken))
	g.Expect(Decide(context.Background(), snap, req(tokStatic), testNow).Reason).To(Equal(ReasonAllowedStaticTokenPrevious))
	g.Expect(Decide(context.Background(), snap, req(tokStatic), testNow.Add(59*time.Second)).Reason).To(Equal(ReasonAllowedStaticTokenPrevious))
	// The window ends exactly at ExpiresAt, without a recompile.
	g.Expect(Decide(context.Background(), snap, req(tokStatic), testNow.Add(time.Minute)).Reason).To(Equal(ReasonInvalidCredentials))
	g.Expect(Decide(context.Background(), snap, req(tokStatic2), testNow.Add(time.Hour)).Reason).To(Equal(ReasonAllowedStaticToken))

	// A previous digest equal to the current one is current, not previous.
	cfg.StaticToken.Previous = []secret.PreviousDigest{{Digest: secret.DigestOf([]byte(tokStatic2)), ExpiresAt: testNow.Add(time.Minute)}}
	snap = snapshotOf(compileOK(t, cfg))
	g.Expect(Decide(context.Background(), snap, req(tokStatic2), testNow.Add(time.Hour)).Reason).To(Equal(ReasonAllowedStaticToken))
}

func TestCompileProblems(t *testing.T) {
	req := func(tok string) *Request {
		return &Request{OriginalURL: "http://registry.example.com/api/servers", OriginalMethod: "GET", Authorization: bearer(tok)}
	}
	cases := []struct {
		name        string
		mutate      func(*PolicyConfig)
		wantReasons []string
		// tok is refused after compile; okTok is still allowed.
		tok, okTok string
	}{
		{"empty token falls back", func(c *PolicyConfig) { c.StaticToken.Token.Value = []byte("  \n") }, []string{ProblemTokenEmpty}, tokStatic, tokReadKey},
		{"short token", func(c *PolicyConfig) { c.StaticToken.Token.Value = []byte("abc123") }, []string{ProblemTokenTooWeak}, "abc123", tokReadKey},
		{"31 characters", func(c *PolicyConfig) { c.StaticToken.Token.Value = []byte(tokStatic[:31]) }, []string{ProblemTokenTooWeak}, tokStatic[:31], tokReadKey},
		{"placeholder", func(c *PolicyConfig) { c.StaticToken.Token.Value = []byte("your-generated-token-0123456789abcdef") }, []string{ProblemTokenTooWeak}, "your-generated-token-0123456789abcdef", tokReadKey},
		{"changeme repeated", func(c *PolicyConfig) { c.StaticToken.Token.Value = []byte(strings.Repeat("changeme", 5)) }, []string{ProblemTokenTooWeak}, strings.Repeat("changeme", 5), tokReadKey},
		{"low diversity", func(c *PolicyConfig) { c.StaticToken.Token.Value = []byte(strings.Repeat("ab", 20)) }, []string{ProblemTokenTooWeak}, strings.Repeat("ab", 20), tokReadKey},
		{"inner space", func(c *PolicyConfig) { c.StaticToken.Token.Value = []byte(tokStatic[:20] + " " + tokStatic[20:]) }, []string{ProblemTokenTooWeak}, tokStatic, tokReadKey},
		{"secret not found", func(c *PolicyConfig) {
			c.StaticToken.Token = SecretValue{Problem: &Problem{Reason: ProblemSecretNotFound, Message: "Secret x not found"}}
		}, []string{ProblemSecretNotFound}, tokStatic, tokReadKey},
		{"weak API key", func(c *PolicyConfig) { c.APIKeys[0].Key.Value = []byte("short") }, []string{ProblemTokenTooWeak}, "short", tokStatic},
		// A JWT-shaped secret would skip the failure limit (JWT-shaped
		// bearers go to the JWT check): it is refused.
		{"JWT-shaped API key", func(c *PolicyConfig) { c.APIKeys[0].Key.Value = []byte(jwtShapedKey) }, []string{ProblemTokenTooWeak}, jwtShapedKey, tokStatic},
		{"API key prefix outside Registry API", func(c *PolicyConfig) { c.APIKeys[0].PathPrefixes = []string{"/mcpserver/"} }, []string{ProblemInvalidSpec}, tokReadKey, tokStatic},
		{"API key prefix not normal", func(c *PolicyConfig) { c.APIKeys[0].PathPrefixes = []string{"/api/../mcpserver/"} }, []string{ProblemInvalidSpec}, tokReadKey, tokStatic},
		{"API key bad method", func(c *PolicyConfig) { c.APIKeys[0].Methods = []string{"BREW"} }, []string{ProblemInvalidSpec}, tokReadKey, tokStatic},
		{"duplicate API key name", func(c *PolicyConfig) { c.APIKeys[1].Name = "ci-read" }, []string{ProblemInvalidSpec}, tokWriteKey, tokReadKey},
		{"bad registry prefix", func(c *PolicyConfig) { c.RegistryPathPrefixes = []string{"api/"} }, []string{ProblemInvalidSpec, ProblemInvalidSpec}, tokStatic, ""},
		{"static identity username with a control character", func(c *PolicyConfig) { c.StaticToken.Identity.Username = "ci\r\nX-Groups: x" }, []string{ProblemInvalidSpec}, tokStatic, tokReadKey},
		{"static identity username with a trailing space", func(c *PolicyConfig) { c.StaticToken.Identity.Username = "admin " }, []string{ProblemInvalidSpec}, tokStatic, tokReadKey},
		{"static identity client id with a leading space", func(c *PolicyConfig) { c.StaticToken.Identity.ClientID = " ci" }, []string{ProblemInvalidSpec}, tokStatic, tokReadKey},
		{"OIDC never discovered", func(c *PolicyConfig) {
			c.OIDC = &OIDCConfig{IssuerURL: "https://idp.example.com", Audiences: []string{"registry"}}
		}, []string{ProblemOIDCDiscoveryFailed}, "", tokStatic},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			cfg := basePolicy()
			tc.mutate(&cfg)
			p, probs := Compile(cfg, CompileOptions{})
			reasons := make([]string, len(probs))
			for i, pr := range probs {
				reasons[i] = pr.Reason
				g.Expect(pr.Field).NotTo(BeEmpty())
				g.Expect(pr.Message).NotTo(BeEmpty())
				for _, secret := range []string{tokStatic, tokReadKey, tokWriteKey, sessionKey} {
					g.Expect(pr.Message).NotTo(ContainSubstring(secret))
				}
			}
			g.Expect(reasons).To(Equal(tc.wantReasons))
			snap := snapshotOf(p)
			if tc.tok != "" {
				g.Expect(Decide(context.Background(), snap, req(tc.tok), testNow).Allowed()).To(BeFalse(), "refused credential was allowed")
			}
			if tc.okTok != "" {
				g.Expect(Decide(context.Background(), snap, req(tc.okTok), testNow).Allowed()).To(BeTrue(), "the rest of the policy should still work")
			}
		})
	}
}

func TestSnapshotSelection(t *testing.T) {
	g := NewWithT(t)
	a := basePolicy()
	b := basePolicy()
	b.Name = "other"
	b.Hosts = []string{"Registry.Example.com.", "b.example.com"}
	b.StaticToken.Token.Value = []byte(tokStatic2)
	store := NewStore(StoreOptions{})
	store.Put(compileOK(t, a))
	store.Put(compileOK(t, b))
	snap := store.Load()
	g.Expect(snap.Len()).To(Equal(2))
	g.Expect(snap.HostConflicts("team/registry")).To(Equal(map[string][]string{"registry.example.com": {"team/other", "team/registry"}}))

	decide := func(s *Snapshot, policy, url, tok string) Decision {
		return Decide(context.Background(), s, &Request{Policy: policy, OriginalURL: url, Authorization: bearer(tok)}, testNow)
	}
	// A host claimed twice selects nothing (403), never either policy.
	g.Expect(decide(snap, "", "http://registry.example.com/api/x", tokStatic).Reason).To(Equal(ReasonHostConflict))
	g.Expect(decide(snap, "", "http://b.example.com/api/x", tokStatic2).Reason).To(Equal(ReasonAllowedStaticToken))
	g.Expect(decide(snap, "", "http://b.example.com/api/x", tokStatic).Reason).To(Equal(ReasonInvalidCredentials))
	g.Expect(decide(snap, "team/registry", "http://registry.example.com/api/x", tokStatic).Reason).To(Equal(ReasonAllowedStaticToken))

	// Snapshots are immutable: deleting builds a new one.
	gen := snap.Generation()
	store.Delete("team/other")
	g.Expect(snap.Len()).To(Equal(2))
	now := store.Load()
	g.Expect(now.Generation()).To(BeNumerically(">", gen))
	g.Expect(decide(now, "", "http://registry.example.com/api/x", tokStatic).Reason).To(Equal(ReasonAllowedStaticToken))
	g.Expect(decide(now, "", "http://b.example.com/api/x", tokStatic2).Reason).To(Equal(ReasonNoPolicy))
	g.Expect(decide(now, "team/other", "http://b.example.com/api/x", tokStatic2).Reason).To(Equal(ReasonUnknownPolicy))

	// Standalone: plain /validate selects the only policy, whatever the host.
	sa := NewStore(StoreOptions{SelectOnlyPolicy: true})
	g.Expect(decide(sa.Load(), "", "http://any.example/api/x", tokStatic).Reason).To(Equal(ReasonNoPolicy))
	sa.Replace(compileOK(t, a))
	g.Expect(decide(sa.Load(), "", "http://any.example/api/x", tokStatic).Reason).To(Equal(ReasonAllowedStaticToken))
}

func TestDigestsNotTokens(t *testing.T) {
	g := NewWithT(t)
	p := compileOK(t, basePolicy())
	// The compiled policy keeps digests; the fingerprint is the digest's
	// first 12 hex digits.
	g.Expect(p.Fingerprints().StaticToken).To(Equal(secret.DigestOf([]byte(tokStatic)).Hex()[:12]))
	g.Expect(p.Fingerprints().APIKeys).To(HaveKeyWithValue("ci-read", secret.Fingerprint([]byte(tokReadKey))))
	dump := strings.Join([]string{p.static.identity.Username, string(p.static.identity.body)}, " ")
	g.Expect(dump).NotTo(ContainSubstring(tokStatic))
}

func BenchmarkDecide(b *testing.B) {
	snap := snapshotOf(compileOK(b, basePolicy()))
	cookie := "mcp_gateway_session=" + sessionCookie(b, "alice", []string{"readers"}, time.Now())
	const u = "http://registry.example.com"
	cases := []struct {
		name string
		req  Request
	}{
		{"static_token", Request{OriginalURL: u + "/api/servers", OriginalMethod: "GET", Authorization: bearer(tokStatic)}},
		{"wrong_static_token", Request{OriginalURL: u + "/api/servers", OriginalMethod: "GET", Authorization: bearer(tokStatic2)}},
		{"api_key", Request{OriginalURL: u + "/api/servers", OriginalMethod: "GET", Authorization: bearer(tokReadKey)}},
		{"session", Request{OriginalURL: u + "/mcpserver/mcp", OriginalMethod: "GET", Cookie: []string{cookie}}},
		{"no_credentials", Request{OriginalURL: u + "/api/servers", OriginalMethod: "GET"}},
		// Dot segments are refused (bad_path) before any credential is read.
		{"dot_segments", Request{OriginalURL: u + "/api/x/../servers", OriginalMethod: "GET", Authorization: bearer(tokStatic)}},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			ctx := context.Background()
			now := time.Now()
			b.ReportAllocs()
			for b.Loop() {
				d := Decide(ctx, snap, &c.req, now)
				if d.Reason == "" {
					b.Fatal("no reason")
				}
			}
		})
	}
}

// FuzzParseAuthorization checks the credential header parsing: it never
// panics, and a token it accepts is the header's tail, without white space
// or control characters.
func FuzzParseAuthorization(f *testing.F) {
	for _, s := range []string{"Bearer abc", "bearer  abc", "Bearer\tabc", "Bearer ", "Basic x", "", "BEARER x y", "Bearerx", "Bearer \xff"} {
		f.Add(s, "")
	}
	f.Add("Bearer a", "Bearer b")
	f.Fuzz(func(t *testing.T, authz, xauthz string) {
		var a, x []string
		if authz != "" {
			a = []string{authz}
		}
		if xauthz != "" {
			x = []string{xauthz}
		}
		h, ambiguous := authorizationValue(a, x)
		if ambiguous {
			if authz == "" || xauthz == "" || authz == xauthz {
				t.Fatalf("ambiguous for %q / %q", authz, xauthz)
			}
			return
		}
		tok, scheme := parseBearer(h)
		if scheme != schemeBearer {
			if tok != "" {
				t.Fatalf("token %q returned with scheme %d", tok, scheme)
			}
			return
		}
		if tok == "" || !strings.HasSuffix(h, tok) || !strings.EqualFold(h[:6], "bearer") {
			t.Fatalf("%q -> %q", h, tok)
		}
		for i := 0; i < len(tok); i++ {
			if tok[i] <= ' ' || tok[i] >= 0x7f {
				t.Fatalf("%q -> %q holds byte %#x", h, tok, tok[i])
			}
		}
	})
}

// FuzzCompile compiles policies built from fuzzed values. Compile never
// panics, never loads a secret that fails the checks, and a static token it
// loads never opens a gateway path.
func FuzzCompile(f *testing.F) {
	f.Add(tokStatic, "/api/", "GET", "/api/servers", "registry.example.com", tokReadKey)
	f.Add("short", "api", "BREW", "/api/../x", "BAD_HOST!", "")
	f.Add(" "+tokStatic+"\n", "/v0.1", "head", "/v0.1/x", "a.b", strings.Repeat("x", 40))
	f.Fuzz(func(t *testing.T, token, prefix, method, keyPrefix, host, apiKey string) {
		cfg := PolicyConfig{
			Namespace: "ns", Name: "p",
			Hosts:                []string{host},
			RegistryPathPrefixes: []string{prefix},
			StaticToken:          &StaticTokenConfig{Enabled: true, Token: SecretValue{Value: []byte(token)}},
			APIKeys: []APIKeyConfig{{
				Name: "k", Key: SecretValue{Value: []byte(apiKey)},
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
			d := Decide(context.Background(), snapshotOf(p), &Request{
				Policy: "ns/p", OriginalURL: "http://h/mcpserver/mcp", Authorization: bearer(string(cleaned)),
			}, testNow)
			if d.Allowed() && !pathnorm.HasPrefix("/mcpserver/mcp", p.registryPrefixes) {
				t.Fatalf("static token allowed on a gateway path (prefixes %v)", p.registryPrefixes)
			}
		}
		for _, pre := range p.registryPrefixes {
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
		{"empty", " \n", ProblemTokenEmpty, "session cookies signed with it are not accepted"},
		{"short", "short-key", ProblemTokenTooWeak, "at least"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			cfg := basePolicy()
			cfg.Session = &SessionConfig{SecretKeys: []SecretValue{{Value: []byte(tc.key)}}}
			p, probs := Compile(cfg, CompileOptions{})
			if tc.wantReason == "" {
				g.Expect(probs).To(BeEmpty())
				g.Expect(p.session).NotTo(BeNil())
				return
			}
			g.Expect(probs).To(HaveLen(1))
			g.Expect(probs[0].Reason).To(Equal(tc.wantReason))
			g.Expect(probs[0].Message).To(ContainSubstring(tc.wantMsg))
			g.Expect(probs[0].Message).NotTo(ContainSubstring("static token"))
			g.Expect(p.session).To(BeNil())
		})
	}
	// The bearer rules still hold for a static token.
	cfg := basePolicy()
	cfg.StaticToken.Token.Value = []byte(jwtShaped)
	_, probs := Compile(cfg, CompileOptions{})
	NewWithT(t).Expect(probs).To(ContainElement(HaveField("Reason", ProblemTokenTooWeak)))
}
