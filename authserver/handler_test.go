package authserver

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr/funcr"
	. "github.com/onsi/gomega"

	"github.com/registryauth/registry-auth-operator/authserver/authn/jwt"
	"github.com/registryauth/registry-auth-operator/authserver/authtest"
	"github.com/registryauth/registry-auth-operator/authserver/check"
	. "github.com/registryauth/registry-auth-operator/authserver/internal/policytest"
	"github.com/registryauth/registry-auth-operator/authserver/policy"
)

func TestHandlerContract(t *testing.T) {
	store := policy.NewStore(policy.StoreOptions{})
	store.Put(CompileOK(t, BasePolicy()))
	var logs []string
	log := funcr.New(func(prefix, args string) { logs = append(logs, args) }, funcr.Options{Verbosity: 1})
	srv := httptest.NewServer(NewHandler(store, HandlerOptions{Log: log}))
	defer srv.Close()

	do := func(method, path string, hdr map[string][]string) (*http.Response, map[string]any) {
		t.Helper()
		req, err := http.NewRequest(method, srv.URL+path+"?format=json", nil)
		if err != nil {
			t.Fatal(err)
		}
		for k, vs := range hdr {
			for _, v := range vs {
				req.Header.Add(k, v)
			}
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		var body map[string]any
		if len(b) > 0 && resp.Header.Get("Content-Type") == "application/json" {
			if err := json.Unmarshal(b, &body); err != nil {
				t.Fatalf("body %q: %v", b, err)
			}
		}
		return resp, body
	}

	t.Run("allowed", func(t *testing.T) {
		g := NewWithT(t)
		resp, body := do("GET", "/validate", map[string][]string{
			"X-Original-URL":    {"http://registry.example.com/api/servers"},
			"X-Original-Method": {"GET"},
			"Authorization":     {"Bearer " + TokStatic},
		})
		g.Expect(resp.StatusCode).To(Equal(http.StatusOK))
		g.Expect(resp.Header.Get("X-User")).To(Equal("network-user"))
		g.Expect(resp.Header.Get("X-Username")).To(Equal("network-user"))
		g.Expect(resp.Header.Get("X-Client-Id")).To(Equal("network-trusted"))
		g.Expect(resp.Header.Get("X-Scopes")).To(Equal("mcp-registry-admin mcp-servers-unrestricted/read mcp-servers-unrestricted/execute"))
		g.Expect(resp.Header.Get("X-Groups")).To(Equal("mcp-registry-admin"))
		g.Expect(resp.Header.Get("X-Auth-Method")).To(Equal("network-trusted"))
		g.Expect(resp.Header.Get("Cache-Control")).To(Equal("no-store"))
		g.Expect(body).To(Equal(map[string]any{
			"valid": true, "username": "network-user", "client_id": "network-trusted",
			"scopes": []any{"mcp-registry-admin", "mcp-servers-unrestricted/read", "mcp-servers-unrestricted/execute"},
			"groups": []any{"mcp-registry-admin"}, "method": "network-trusted",
		}))
	})
	t.Run("allowed by policy name", func(t *testing.T) {
		g := NewWithT(t)
		resp, _ := do("GET", "/validate/team/registry", map[string][]string{
			"X-Original-URL": {"http://elsewhere/v0.1/servers"},
			"Authorization":  {"Bearer " + TokStatic},
		})
		g.Expect(resp.StatusCode).To(Equal(http.StatusOK))
	})
	t.Run("no credentials", func(t *testing.T) {
		g := NewWithT(t)
		resp, body := do("GET", "/validate", map[string][]string{"X-Original-URL": {"http://registry.example.com/api/servers"}})
		g.Expect(resp.StatusCode).To(Equal(http.StatusUnauthorized))
		g.Expect(resp.Header.Get("WWW-Authenticate")).To(HavePrefix("Bearer"))
		g.Expect(resp.Header.Get("X-User")).To(BeEmpty())
		g.Expect(body).To(HaveKeyWithValue("valid", false))
		g.Expect(body).To(HaveKeyWithValue("reason", "no_credentials"))
		g.Expect(body["message"]).NotTo(BeEmpty())
	})
	t.Run("static token on gateway path never echoes the token", func(t *testing.T) {
		g := NewWithT(t)
		resp, body := do("GET", "/validate", map[string][]string{
			"X-Original-URL": {"http://registry.example.com/mcpserver/mcp"},
			"Authorization":  {"Bearer " + TokStatic},
		})
		g.Expect(resp.StatusCode).To(Equal(http.StatusUnauthorized))
		g.Expect(body).To(HaveKeyWithValue("reason", string(check.ReasonRegistryCredOnGateway)))
		g.Expect(body["message"]).NotTo(ContainSubstring(TokStatic))
	})
	t.Run("forbidden", func(t *testing.T) {
		g := NewWithT(t)
		resp, body := do("GET", "/validate", map[string][]string{
			"X-Original-URL":    {"http://registry.example.com/api/servers"},
			"X-Original-Method": {"DELETE"},
			"Authorization":     {"Bearer " + TokReadKey},
		})
		g.Expect(resp.StatusCode).To(Equal(http.StatusForbidden))
		g.Expect(resp.Header.Get("WWW-Authenticate")).To(BeEmpty())
		g.Expect(body).To(HaveKeyWithValue("reason", string(check.ReasonAPIKeyForbidden)))
	})
	t.Run("no policy", func(t *testing.T) {
		g := NewWithT(t)
		resp, body := do("GET", "/validate", map[string][]string{
			"X-Original-URL": {"http://unknown.example.com/api/servers"},
			"Authorization":  {"Bearer " + TokStatic},
		})
		g.Expect(resp.StatusCode).To(Equal(http.StatusForbidden))
		g.Expect(body).To(HaveKeyWithValue("reason", string(check.ReasonNoPolicy)))
	})
	t.Run("HEAD has no body", func(t *testing.T) {
		g := NewWithT(t)
		resp, body := do("HEAD", "/validate", map[string][]string{
			"X-Original-URL": {"http://registry.example.com/api/servers"},
			"Authorization":  {"Bearer " + TokStatic},
		})
		g.Expect(resp.StatusCode).To(Equal(http.StatusOK))
		g.Expect(body).To(BeNil())
	})
	t.Run("other paths are 404", func(t *testing.T) {
		g := NewWithT(t)
		for _, p := range []string{"/", "/validatex", "/validate/team", "/validate/team/registry/x", "/metrics"} {
			resp, _ := do("GET", p, nil)
			g.Expect(resp.StatusCode).To(Equal(http.StatusNotFound), p)
		}
	})
	t.Run("denials are logged at debug without secrets", func(t *testing.T) {
		g := NewWithT(t)
		g.Expect(logs).NotTo(BeEmpty())
		for _, l := range logs {
			g.Expect(l).To(ContainSubstring(`"reason"`))
			g.Expect(l).NotTo(ContainSubstring(TokStatic))
			g.Expect(l).NotTo(ContainSubstring(TokReadKey))
		}
	})
}

// An IdP user's identity reaches the proxy in the identity headers: the
// client from azp, groups comma-joined, scopes from the group map.
func TestHandlerOIDCIdentityHeaders(t *testing.T) {
	g := NewWithT(t)
	idp := authtest.NewIssuer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	iss, err := jwt.NewIssuers(nil).Resolve(ctx, idp.URL())
	g.Expect(err).NotTo(HaveOccurred())
	store := policy.NewStore(policy.StoreOptions{})
	store.Put(CompileOK(t, policy.PolicyConfig{
		Namespace: "team", Name: "good", Hosts: []string{"good.example.com"},
		OIDC: &jwt.Config{IssuerURL: idp.URL(), Issuer: iss, Audiences: []string{"registry", "registry-cli"}},
		GroupScopes: map[string][]string{
			"dev":    {"mcp-servers/read"},
			"admins": {"mcp-registry-admin", "mcp-servers/read"},
		},
	}))
	now := time.Unix(time.Now().Unix(), 0)
	c := idp.Claims("registry", "alice", []string{"dev", "admins"}, time.Hour)
	c["iat"], c["nbf"], c["exp"] = now.Unix(), now.Unix(), now.Add(time.Hour).Unix()
	c["azp"] = "web-ui"

	h := NewHandler(store, HandlerOptions{Now: func() time.Time { return now }})
	r := httptest.NewRequest(http.MethodGet, "/validate?format=json", nil)
	r.Header.Set("X-Original-URL", "https://good.example.com/v0/servers")
	r.Header.Set("X-Original-Method", http.MethodGet)
	r.Header.Set("Authorization", "Bearer "+idp.Sign(c))
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	g.Expect(w.Code).To(Equal(http.StatusOK))
	g.Expect(w.Header().Get("X-Auth-Method")).To(Equal("oidc"))
	g.Expect(w.Header().Get("X-User")).To(Equal("alice"))
	g.Expect(w.Header().Get("X-Username")).To(Equal("alice"))
	g.Expect(w.Header().Get("X-Client-Id")).To(Equal("web-ui"))
	g.Expect(w.Header().Get("X-Groups")).To(Equal("dev admins"))
	g.Expect(w.Header().Get("X-Scopes")).To(Equal("mcp-servers/read mcp-registry-admin"))
	g.Expect(w.Body.String()).To(MatchJSON(`{"valid":true,"username":"alice","client_id":"web-ui",
		"scopes":["mcp-servers/read","mcp-registry-admin"],"groups":["dev","admins"],"method":"oidc"}`))
}

// A header folded into the previous one (obs-fold: a line that starts with a
// space) is joined to it by net/http. Folded into X-Original-URL or
// X-Original-Method, the next header (a bearer token) must neither be
// decided on nor reach the logs.
func TestObsFoldNotLogged(t *testing.T) {
	store := policy.NewStore(policy.StoreOptions{})
	store.Put(CompileOK(t, BasePolicy()))
	var mu sync.Mutex
	var logs []string
	log := funcr.New(func(prefix, args string) {
		mu.Lock()
		logs = append(logs, args)
		mu.Unlock()
	}, funcr.Options{Verbosity: 1})
	srv := httptest.NewServer(NewHandler(store, HandlerOptions{Log: log}))
	defer srv.Close()
	for _, tc := range []struct {
		name, head string
		reason     check.Reason
	}{
		{"into the URL", "X-Original-URL: http://registry.example.com/api/servers\r\n Authorization: Bearer " + TokStatic + "\r\nX-Original-Method: GET\r\n", check.ReasonBadPath},
		{"into the method", "X-Original-URL: http://registry.example.com/api/servers\r\nX-Original-Method: GET\r\n Authorization: Bearer " + TokStatic + "\r\n", check.ReasonBadOriginalURL},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			c, err := net.Dial("tcp", strings.TrimPrefix(srv.URL, "http://"))
			g.Expect(err).NotTo(HaveOccurred())
			defer func() { _ = c.Close() }()
			_, err = io.WriteString(c, "GET /validate HTTP/1.1\r\nHost: auth.test\r\n"+tc.head+"Connection: close\r\n\r\n")
			g.Expect(err).NotTo(HaveOccurred())
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			g.Expect(err).NotTo(HaveOccurred())
			_ = resp.Body.Close()
			g.Expect(resp.StatusCode).To(Equal(http.StatusForbidden))
			g.Expect(resp.Header.Get("X-Auth-Reason")).To(Equal(string(tc.reason)))
			mu.Lock()
			defer mu.Unlock()
			g.Expect(logs).NotTo(BeEmpty())
			for _, l := range logs {
				g.Expect(l).NotTo(ContainSubstring(TokStatic))
			}
		})
	}
}
