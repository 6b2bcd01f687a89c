package authserver

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	. "github.com/onsi/gomega"

	"github.com/registryauth/registry-auth-operator/authserver/authn"
	"github.com/registryauth/registry-auth-operator/authserver/authn/jwt"
	"github.com/registryauth/registry-auth-operator/authserver/authtest"
	"github.com/registryauth/registry-auth-operator/authserver/check"
	"github.com/registryauth/registry-auth-operator/authserver/hoptoken"
	. "github.com/registryauth/registry-auth-operator/authserver/internal/policytest"
	"github.com/registryauth/registry-auth-operator/authserver/policy"
)

// registryKey is the registry's SECRET_KEY in these tests.
const registryKey = "registry-secret-key-5c7e9b1d3f5a7c9e1b3d5f7a9c1e3b5d"

// withToken is BasePolicy with a registry token keyed with key in mode.
func withToken(name, key string, mode hoptoken.Mode) policy.PolicyConfig {
	cfg := BasePolicy()
	cfg.Name = name
	cfg.Hosts = []string{name + ".example.com"}
	cfg.RegistryToken = &hoptoken.Config{SecretKey: &authn.SecretValue{Value: []byte(key)}, Mode: mode}
	return cfg
}

// TestRegistryTokenAnswer is when an answer carries the hop token, through
// each HTTP front-end: on an allow when the auth request asks for it
// (X-Registry-Api-Auth non-empty) or, in mode always, on Registry API
// paths; never on a denial; and a request that needs a token the policy
// cannot mint is refused.
func TestRegistryTokenAnswer(t *testing.T) {
	now := time.Unix(time.Now().Unix(), 0)
	store := policy.NewStore(policy.StoreOptions{})
	store.Put(CompileOK(t, withToken("onrequest", registryKey, hoptoken.ModeOnRequest)))
	store.Put(CompileOK(t, withToken("always", registryKey, hoptoken.ModeAlways)))
	plain := BasePolicy()
	plain.Name, plain.Hosts = "plain", []string{"plain.example.com"}
	store.Put(CompileOK(t, plain))
	broken, probs := policy.Compile(withToken("broken", "too-short", hoptoken.ModeOnRequest), policy.CompileOptions{})
	if len(probs) != 1 || probs[0].Reason != authn.ProblemTokenTooWeak {
		t.Fatalf("want one TokenTooWeak problem, got %v", probs)
	}
	store.Put(broken)
	brokenAlways, _ := policy.Compile(withToken("broken-always", "", hoptoken.ModeAlways), policy.CompileOptions{})
	store.Put(brokenAlways)
	h := NewHandler(store, HandlerOptions{Now: func() time.Time { return now }})
	verifier := &authtest.RegistryVerifier{SecretKey: []byte(registryKey)}
	session := "mcp_gateway_session=" + SessionCookie(t, "alice", []string{"readers"}, now)

	type want struct {
		status int
		reason check.Reason // for denials
		token  bool
		sub    string
		method string
	}
	cases := []struct {
		name   string
		policy string
		path   string
		hdr    map[string]string
		want   want
	}{
		{"static token, asked", "onrequest", "/api/servers", map[string]string{"Authorization": "Bearer " + TokStatic, "X-Registry-Api-Auth": "1"},
			want{status: 200, token: true, sub: "network-user", method: "network-trusted"}},
		{"static token, any non-empty value asks", "onrequest", "/api/servers", map[string]string{"Authorization": "Bearer " + TokStatic, "X-Registry-Api-Auth": "yes"},
			want{status: 200, token: true, sub: "network-user", method: "network-trusted"}},
		{"static token, not asked", "onrequest", "/api/servers", map[string]string{"Authorization": "Bearer " + TokStatic},
			want{status: 200}},
		{"static token, empty value does not ask", "onrequest", "/api/servers", map[string]string{"Authorization": "Bearer " + TokStatic, "X-Registry-Api-Auth": ""},
			want{status: 200}},
		{"API key, asked", "onrequest", "/api/servers", map[string]string{"Authorization": "Bearer " + TokReadKey, "X-Registry-Api-Auth": "1"},
			want{status: 200, token: true, sub: "ci-read", method: "network-trusted"}},
		{"session on a gateway path, asked", "onrequest", "/mcpserver/mcp", map[string]string{"Cookie": session, "X-Registry-Api-Auth": "1"},
			want{status: 200, token: true, sub: "alice", method: "oauth2"}},
		{"denied, asked: no token", "onrequest", "/api/servers", map[string]string{"Authorization": "Bearer " + TokStatic2, "X-Registry-Api-Auth": "1"},
			want{status: 401, reason: check.ReasonInvalidCredentials}},
		{"denied on a gateway path, asked: no token", "onrequest", "/mcpserver/mcp", map[string]string{"Authorization": "Bearer " + TokStatic, "X-Registry-Api-Auth": "1"},
			want{status: 401, reason: check.ReasonRegistryCredOnGateway}},
		{"always: Registry API path, not asked", "always", "/v0.1/servers", map[string]string{"Authorization": "Bearer " + TokStatic},
			want{status: 200, token: true, sub: "network-user", method: "network-trusted"}},
		{"always: gateway path, not asked", "always", "/mcpserver/mcp", map[string]string{"Cookie": session},
			want{status: 200}},
		{"always: gateway path, asked", "always", "/mcpserver/mcp", map[string]string{"Cookie": session, "X-Registry-Api-Auth": "1"},
			want{status: 200, token: true, sub: "alice", method: "oauth2"}},
		{"no token configured, asked", "plain", "/api/servers", map[string]string{"Authorization": "Bearer " + TokStatic, "X-Registry-Api-Auth": "1"},
			want{status: 200}},
		{"weak key, asked: refused", "broken", "/api/servers", map[string]string{"Authorization": "Bearer " + TokStatic, "X-Registry-Api-Auth": "1"},
			want{status: 403, reason: check.ReasonRegistryTokenUnavailable}},
		{"weak key, not asked: no token needed", "broken", "/api/servers", map[string]string{"Authorization": "Bearer " + TokStatic},
			want{status: 200}},
		{"weak key, asked, denied anyway", "broken", "/api/servers", map[string]string{"Authorization": "Bearer " + TokStatic2, "X-Registry-Api-Auth": "1"},
			want{status: 401, reason: check.ReasonInvalidCredentials}},
		{"empty key, always, Registry API path: refused", "broken-always", "/api/servers", map[string]string{"Authorization": "Bearer " + TokStatic},
			want{status: 403, reason: check.ReasonRegistryTokenUnavailable}},
		{"empty key, always, gateway path: no token needed", "broken-always", "/mcpserver/mcp", map[string]string{"Cookie": session},
			want{status: 200}},
	}
	// Each front-end's form of the same check.
	frontends := []struct {
		name string
		make func(pol, path string) *http.Request
	}{
		{"nginx", func(pol, path string) *http.Request {
			r := httptest.NewRequest(http.MethodGet, "/validate", nil)
			r.Header.Set("X-Original-URL", "http://"+pol+".example.com"+path)
			r.Header.Set("X-Original-Method", http.MethodGet)
			return r
		}},
		{"traefik", func(pol, path string) *http.Request {
			r := httptest.NewRequest(http.MethodGet, "/forward-auth/team/"+pol, nil)
			r.RemoteAddr = "10.0.0.7:40000"
			r.Header.Set("X-Forwarded-Proto", "https")
			r.Header.Set("X-Forwarded-Host", pol+".example.com")
			r.Header.Set("X-Forwarded-Uri", path)
			r.Header.Set("X-Forwarded-Method", http.MethodGet)
			return r
		}},
		{"envoy", func(pol, path string) *http.Request {
			r := httptest.NewRequest(http.MethodGet, "/ext-authz"+path, nil)
			r.Host = pol + ".example.com"
			return r
		}},
	}
	for _, fe := range frontends {
		for _, c := range cases {
			t.Run(fe.name+"/"+c.name, func(t *testing.T) {
				g := NewWithT(t)
				r := fe.make(c.policy, c.path)
				for k, v := range c.hdr {
					r.Header[http.CanonicalHeaderKey(k)] = []string{v}
				}
				w := httptest.NewRecorder()
				h.ServeHTTP(w, r)
				g.Expect(w.Code).To(Equal(c.want.status), w.Body.String())
				if c.want.reason != "" {
					g.Expect(w.Header().Get("X-Auth-Reason")).To(Equal(string(c.want.reason)))
				}
				tok := w.Header().Values(hoptoken.Header)
				if !c.want.token {
					g.Expect(tok).To(BeEmpty())
					return
				}
				g.Expect(tok).To(HaveLen(1))
				claims, err := verifier.Verify(tok[0], now)
				g.Expect(err).NotTo(HaveOccurred())
				g.Expect(claims["sub"]).To(Equal(c.want.sub))
				g.Expect(claims["auth_method"]).To(Equal(c.want.method))
				g.Expect(w.Header().Get("X-User")).To(Equal(c.want.sub), "the identity headers are still sent")
			})
		}
	}
}

// An IdP user's token carries the JWT's sub as egress_user.
func TestRegistryTokenOIDC(t *testing.T) {
	g := NewWithT(t)
	idp := authtest.NewIssuer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	iss, err := jwt.NewIssuers(nil).Resolve(ctx, idp.URL())
	g.Expect(err).NotTo(HaveOccurred())
	store := policy.NewStore(policy.StoreOptions{})
	store.Put(CompileOK(t, policy.PolicyConfig{
		Namespace: "team", Name: "good", Hosts: []string{"good.example.com"},
		OIDC:          &jwt.Config{IssuerURL: idp.URL(), Issuer: iss, Audiences: []string{"registry"}},
		RegistryToken: &hoptoken.Config{SecretKey: &authn.SecretValue{Value: []byte(registryKey)}},
	}))
	now := time.Unix(time.Now().Unix(), 0)
	c := idp.Claims("registry", "alice", []string{"dev"}, time.Hour)
	c["iat"], c["nbf"], c["exp"] = now.Unix(), now.Unix(), now.Add(time.Hour).Unix()
	c["azp"] = "web-ui"
	h := NewHandler(store, HandlerOptions{Now: func() time.Time { return now }})
	r := httptest.NewRequest(http.MethodGet, "/validate", nil)
	r.Header.Set("X-Original-URL", "https://good.example.com/api/servers")
	r.Header.Set("Authorization", "Bearer "+idp.Sign(c))
	r.Header.Set("X-Registry-Api-Auth", "1")
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	g.Expect(w.Code).To(Equal(http.StatusOK))
	claims, err := (&authtest.RegistryVerifier{SecretKey: []byte(registryKey)}).Verify(w.Header().Get(hoptoken.Header), now)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(claims).To(HaveKeyWithValue("sub", "alice"))
	g.Expect(claims).To(HaveKeyWithValue("egress_user", "sub-alice"))
	g.Expect(claims).To(HaveKeyWithValue("client_id", "web-ui"))
	g.Expect(claims).To(HaveKeyWithValue("auth_method", "oauth2"))
	g.Expect(claims).To(HaveKeyWithValue("groups", []any{"dev"}))
}

func ecPEM(t *testing.T) []byte {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalECPrivateKey(k)
	return pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der})
}

// Each policy's public keys at its own JWKS path; a union would let one
// tenant's key sign for another's registry.
func TestJWKSEndpoint(t *testing.T) {
	now := time.Unix(time.Now().Unix(), 0)
	es := func(name string) policy.PolicyConfig {
		cfg := BasePolicy()
		cfg.Name = name
		cfg.Hosts = nil
		cfg.RegistryToken = &hoptoken.Config{SigningKey: &authn.SecretValue{Value: ecPEM(t)}}
		return cfg
	}
	a, b := CompileOK(t, es("a")), CompileOK(t, es("b"))
	get := func(h http.Handler, method, path string) (*http.Response, string) {
		r := httptest.NewRequest(method, path, nil)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		resp := w.Result()
		body, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		return resp, string(body)
	}
	t.Run("operator", func(t *testing.T) {
		g := NewWithT(t)
		store := policy.NewStore(policy.StoreOptions{})
		store.Replace(a, b, CompileOK(t, BasePolicy()))
		h := NewHandler(store, HandlerOptions{Now: func() time.Time { return now }})
		for _, pol := range []*policy.Policy{a, b} {
			for _, suffix := range []string{"", "/"} {
				resp, body := get(h, http.MethodGet, "/.well-known/internal-jwks.json/"+pol.Key()+suffix)
				g.Expect(resp.StatusCode).To(Equal(http.StatusOK))
				g.Expect(resp.Header.Get("Content-Type")).To(Equal("application/json"))
				g.Expect(resp.Header.Get("Cache-Control")).To(Equal("public, max-age=300"))
				keys, err := authtest.ParseRegistryJWKS([]byte(body))
				g.Expect(err).NotTo(HaveOccurred())
				g.Expect(keys).To(HaveLen(1), "this policy's key only")
				g.Expect(keys).To(HaveKey(pol.RegistryToken().KeyID()))
			}
		}
		resp, body := get(h, http.MethodGet, "/.well-known/internal-jwks.json/team/registry")
		g.Expect(resp.StatusCode).To(Equal(http.StatusOK))
		g.Expect(body).To(MatchJSON(`{"keys":[]}`), "a policy without an ES256 key")
		for _, path := range []string{"/.well-known/internal-jwks.json", "/.well-known/internal-jwks.json/team/nope",
			"/.well-known/internal-jwks.json/team", "/.well-known/internal-jwks.json/team/a/b"} {
			resp, _ := get(h, http.MethodGet, path)
			g.Expect(resp.StatusCode).To(Equal(http.StatusNotFound), path)
		}
		resp, body = get(h, http.MethodHead, "/.well-known/internal-jwks.json/team/a")
		g.Expect(resp.StatusCode).To(Equal(http.StatusOK))
		g.Expect(body).To(BeEmpty())
		resp, _ = get(h, http.MethodPost, "/.well-known/internal-jwks.json/team/a")
		g.Expect(resp.StatusCode).To(Equal(http.StatusMethodNotAllowed))
		g.Expect(resp.Header.Get("Allow")).To(Equal("GET, HEAD"))
	})
	t.Run("standalone", func(t *testing.T) {
		g := NewWithT(t)
		store := policy.NewStore(policy.StoreOptions{SelectOnlyPolicy: true})
		store.Replace(a)
		h := NewHandler(store, HandlerOptions{})
		resp, body := get(h, http.MethodGet, "/.well-known/internal-jwks.json")
		g.Expect(resp.StatusCode).To(Equal(http.StatusOK))
		keys, err := authtest.ParseRegistryJWKS([]byte(body))
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(keys).To(HaveKey(a.RegistryToken().KeyID()))
	})
}
