package authserver

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/registryauth/registry-auth-operator/authserver/authn/jwt"
	"github.com/registryauth/registry-auth-operator/authserver/authtest"
	"github.com/registryauth/registry-auth-operator/authserver/check"
	. "github.com/registryauth/registry-auth-operator/authserver/internal/policytest"
	"github.com/registryauth/registry-auth-operator/authserver/policy"
)

// mcpPolicy is BasePolicy with an IdP, the well-known public path and the
// protected resource metadata of the MCP authorization spec.
func mcpPolicy(t *testing.T, idp *authtest.Issuer) policy.PolicyConfig {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	iss, err := jwt.NewIssuers(nil).Resolve(ctx, idp.URL())
	if err != nil {
		t.Fatal(err)
	}
	cfg := BasePolicy()
	cfg.OIDC = &jwt.Config{IssuerURL: idp.URL(), Issuer: iss, Audiences: []string{"mcp-gateway"}}
	cfg.PublicPaths = []string{"/.well-known/oauth-protected-resource"}
	cfg.ProtectedResource = &policy.ProtectedResourceConfig{
		MetadataURL: "{scheme}://{host}/.well-known/oauth-protected-resource{path}",
		Scopes:      []string{"mcp:tools", "openid"},
	}
	return cfg
}

// nginxAsk is ingress-nginx's auth request for a client request.
func nginxAsk(method, url string, hdr ...string) *http.Request {
	r := httptest.NewRequest(http.MethodGet, "/validate", nil)
	r.RemoteAddr = "10.0.0.1:5555"
	r.Header.Set("X-Original-URL", url)
	r.Header.Set("X-Original-Method", method)
	for i := 0; i+1 < len(hdr); i += 2 {
		r.Header.Add(hdr[i], hdr[i+1])
	}
	return r
}

// The request sequence of an MCP client (MCP authorization spec
// 2025-06-18, "Authorization Flow Steps"; the TypeScript SDK's
// client/auth.ts): the MCP request without a token gets 401 and a
// resource_metadata pointer; the client fetches that URL, which passes
// without credentials; it gets a token from the authorization server the
// metadata names and sends the MCP request again: 200.
func TestMCPClientSequence(t *testing.T) {
	idp := authtest.NewIssuer(t)
	store := policy.NewStore(policy.StoreOptions{})
	store.Put(CompileOK(t, mcpPolicy(t, idp)))
	m := NewMetrics()
	reg := prometheus.NewRegistry()
	NewWithT(t).Expect(m.Register(reg)).To(Succeed())
	h := NewHandler(store, HandlerOptions{Observer: m, Failures: NewFailureLimiter(FailureLimitOptions{MaxFailures: 2, Window: time.Minute})})
	serve := func(r *http.Request) *httptest.ResponseRecorder {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w
	}
	g := NewWithT(t)
	const mcpURL = "https://registry.example.com/mcpserver/fininfo/mcp"

	// 1. POST the MCP initialize without a token: 401 with the pointer.
	w := serve(nginxAsk("POST", mcpURL))
	g.Expect(w.Code).To(Equal(http.StatusUnauthorized))
	challenge := w.Header().Get("Www-Authenticate")
	g.Expect(challenge).To(Equal(`Bearer realm="registry", resource_metadata="https://registry.example.com/.well-known/oauth-protected-resource/mcpserver/fininfo/mcp", scope="mcp:tools openid"`))

	// 2. GET the metadata: public, no identity headers.
	w = serve(nginxAsk("GET", "https://registry.example.com/.well-known/oauth-protected-resource/mcpserver/fininfo/mcp", "Accept", "application/json"))
	g.Expect(w.Code).To(Equal(http.StatusOK))
	g.Expect(w.Header().Get("X-Auth-Reason")).To(Equal("public"))
	for _, k := range identityHeaderNames() {
		g.Expect(w.Header()).NotTo(HaveKey(k))
	}

	// 3. The token from the authorization server: 200 as its user.
	now := time.Now()
	c := idp.Claims("mcp-gateway", "alice", []string{"readers"}, time.Hour)
	c["iat"], c["nbf"], c["exp"] = now.Unix(), now.Unix(), now.Add(time.Hour).Unix()
	w = serve(nginxAsk("POST", mcpURL, "Authorization", "Bearer "+idp.Sign(c)))
	g.Expect(w.Code).To(Equal(http.StatusOK))
	g.Expect(w.Header().Get("X-User")).To(Equal("alice"))

	// An expired token gets the same pointer (the client starts again).
	c["exp"] = now.Add(-time.Minute).Unix()
	w = serve(nginxAsk("POST", mcpURL, "Authorization", "Bearer "+idp.Sign(c)))
	g.Expect(w.Code).To(Equal(http.StatusUnauthorized))
	g.Expect(w.Header().Get("X-Auth-Reason")).To(Equal(string(check.ReasonJWTExpired)))
	g.Expect(w.Header().Get("Www-Authenticate")).To(ContainSubstring(`resource_metadata="https://registry.example.com/.well-known/oauth-protected-resource/mcpserver/fininfo/mcp"`))

	counts := gathered(t, reg, "registry_auth_decisions_total")
	g.Expect(counts).To(HaveKeyWithValue("method=public,policy=team/registry,reason=public,result=allow", 1.0))
}

func TestPublicPathsAndChallenges(t *testing.T) {
	idp := authtest.NewIssuer(t)
	cfg := mcpPolicy(t, idp)
	store := policy.NewStore(policy.StoreOptions{})
	store.Put(CompileOK(t, cfg))
	h := NewHandler(store, HandlerOptions{Failures: NewFailureLimiter(FailureLimitOptions{MaxFailures: 1, Window: time.Hour})})
	serve := func(r *http.Request) *httptest.ResponseRecorder {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w
	}
	const base = "https://registry.example.com"
	const wellKnown = base + "/.well-known/oauth-protected-resource"

	t.Run("a static token or key sent to a public path is not evaluated", func(t *testing.T) {
		g := NewWithT(t)
		for range 3 { // a wrong token three times: no failure counted
			w := serve(nginxAsk("GET", wellKnown, "Authorization", "Bearer "+TokStatic2, "X-Real-IP", "192.0.2.50"))
			g.Expect(w.Code).To(Equal(http.StatusOK))
			g.Expect(w.Header().Get("X-Auth-Reason")).To(Equal("public"))
		}
		w := serve(nginxAsk("GET", base+"/api/servers", "Authorization", "Bearer "+TokStatic, "X-Real-IP", "192.0.2.50"))
		g.Expect(w.Code).To(Equal(http.StatusOK), "the client was not throttled")
		// The right token gets no identity there either.
		w = serve(nginxAsk("GET", wellKnown, "Authorization", "Bearer "+TokStatic))
		g.Expect(w.Header()).NotTo(HaveKey("X-User"))
	})

	t.Run("matched on the normalised path, at a segment boundary", func(t *testing.T) {
		g := NewWithT(t)
		for url, want := range map[string]int{
			wellKnown:                          200,
			wellKnown + "/mcpserver/x/mcp?x=1": 200,
			base + "//.well-known//oauth-protected-resource":                   200,
			base + "/.well-known/oauth-protected-resource%2Fmcpserver":         200,
			base + "/.well-known/oauth-protected-resourcex":                    401,
			base + "/.well-known/oauth-protected-resource/../../mcpserver/mcp": 403, // bad_path
			base + "/mcpserver/.well-known/oauth-protected-resource":           401,
		} {
			g.Expect(serve(nginxAsk("GET", url)).Code).To(Equal(want), url)
		}
	})

	t.Run("only GET, HEAD and OPTIONS are public", func(t *testing.T) {
		g := NewWithT(t)
		for _, m := range []string{"GET", "HEAD", "OPTIONS"} {
			g.Expect(serve(nginxAsk(m, wellKnown)).Code).To(Equal(http.StatusOK), m)
		}
		for _, m := range []string{"POST", "PUT", "DELETE", ""} {
			g.Expect(serve(nginxAsk(m, wellKnown)).Code).To(Equal(http.StatusUnauthorized), m)
		}
	})

	t.Run("challenges: gateway paths only unless asked for, 403 insufficient_scope", func(t *testing.T) {
		g := NewWithT(t)
		w := serve(nginxAsk("GET", base+"/api/servers"))
		g.Expect(w.Header().Get("Www-Authenticate")).To(Equal(`Bearer realm="registry"`), "Registry API paths keep the plain challenge")
		w = serve(nginxAsk("GET", base+"/mcpserver/a%22b/mcp"))
		g.Expect(w.Header().Get("Www-Authenticate")).To(ContainSubstring(`resource_metadata="https://registry.example.com/.well-known/oauth-protected-resource/mcpserver/a%22b/mcp"`), "a quote in the path is escaped")
		w = serve(nginxAsk("GET", base+"/mcpserver/x/mcp", "Authorization", "Bearer "+TokStatic))
		g.Expect(w.Code).To(Equal(http.StatusUnauthorized))
		g.Expect(w.Header().Get("Www-Authenticate")).To(HavePrefix(`Bearer realm="registry", resource_metadata=`))

		cfg := mcpPolicy(t, idp)
		cfg.Name, cfg.Hosts = "api", []string{"api.example.com"}
		cfg.ProtectedResource.RegistryPaths = true
		cfg.ProtectedResource.MetadataURL = "https://auth.example.com:8443/.well-known/oauth-protected-resource"
		cfg.ProtectedResource.Scopes = nil
		store.Put(CompileOK(t, cfg))
		w = serve(nginxAsk("GET", "https://api.example.com/api/servers"))
		g.Expect(w.Header().Get("Www-Authenticate")).To(Equal(`Bearer realm="registry", resource_metadata="https://auth.example.com:8443/.well-known/oauth-protected-resource"`))
		w = serve(nginxAsk("POST", "https://api.example.com/api/servers", "Authorization", "Bearer "+TokReadKey))
		g.Expect(w.Code).To(Equal(http.StatusForbidden))
		g.Expect(w.Header().Get("X-Auth-Reason")).To(Equal(string(check.ReasonAPIKeyForbidden)))
		g.Expect(w.Header().Get("Www-Authenticate")).To(Equal(`Bearer realm="registry", error="insufficient_scope", resource_metadata="https://auth.example.com:8443/.well-known/oauth-protected-resource"`))
		w = serve(nginxAsk("GET", "https://api.example.com/api/../x"))
		g.Expect(w.Code).To(Equal(http.StatusForbidden))
		g.Expect(w.Header()).NotTo(HaveKey("Www-Authenticate"), "a 403 that is no scope matter")
	})
}

func TestProtectedResourceConfigRefused(t *testing.T) {
	for _, bad := range []policy.ProtectedResourceConfig{
		{MetadataURL: "/.well-known/oauth-protected-resource"},
		{MetadataURL: "ftp://{host}/x"},
		{MetadataURL: "https://{host}/{query}"},
		{MetadataURL: "https://{host}/x\", evil=\"1"},
		{MetadataURL: "https://user@{host}/x"},
		{MetadataURL: "{path}"},
		{MetadataURL: "https://{host}/x", Scopes: []string{"a b"}},
		{MetadataURL: "https://{host}/x", Scopes: []string{`a"`}},
	} {
		cfg := BasePolicy()
		cfg.ProtectedResource = &bad
		p, probs := policy.Compile(cfg, policy.CompileOptions{})
		if len(probs) != 1 || !strings.Contains(probs[0].Field, "spec.protectedResource") {
			t.Errorf("%+v: problems %v, want one on spec.protectedResource", bad, probs)
		}
		if c := p.Challenge(&check.Request{Scheme: "https", Host: "h"}, "/mcpserver/x", check.ReasonNoCredentials); c != "" {
			t.Errorf("%+v: challenge %q from a refused configuration", bad, c)
		}
	}
	cfg := BasePolicy()
	cfg.PublicPaths = []string{"/ok", "relative", "/a/../b", "/x//y"}
	_, probs := policy.Compile(cfg, policy.CompileOptions{})
	if len(probs) != 3 {
		t.Errorf("public paths: problems %v, want 3", probs)
	}
}
