package authserver

import (
	"net/http"
	"strings"
	"testing"

	. "github.com/onsi/gomega"

	"github.com/registryauth/registry-auth-operator/authserver/check"
	"github.com/registryauth/registry-auth-operator/authserver/frontend"
	. "github.com/registryauth/registry-auth-operator/authserver/internal/policytest"
)

// traefikIngressNginxCheck is the auth request of Traefik's ingress-nginx
// provider for an Ingress with nginx.ingress.kubernetes.io/auth-url: a GET
// to the auth-url with every header of the client's request copied, then
// X-Forwarded-For, -Method, -Proto, -Host and -Uri set from the request
// (traefik v3.7.13, pkg/middlewares/ingressnginx/snippet/snippet.go,
// executeForwardAuth and writeHeader, which "deliberately does not strip
// incoming X-Forwarded-* headers" and copies the rest, X-Original-URL
// included). authURL is the annotation's path.
func traefikIngressNginxCheck(authURL string, r proxyRow, client string) wireRequest {
	r = r.withDefaults()
	w := wireRequest{method: http.MethodGet, target: authURL, host: proxyAuthServiceHost}
	w.addRaw(r.header)
	w.set("X-Forwarded-For", client)
	w.set("X-Forwarded-Method", r.method)
	w.set("X-Forwarded-Proto", r.scheme)
	w.set("X-Forwarded-Host", r.host)
	w.set("X-Forwarded-Uri", r.target)
	return w
}

// ngfCheck is NGINX Gateway Fabric's auth subrequest for an HTTPRoute
// ExternalAuth filter with protocol HTTP (nginx-gateway-fabric main,
// internal/controller/nginx/config/servers.go,
// extractExternalAuthInternalLocations): an internal location that proxies
// to <backend><http.path> (the path is not appended) with
// proxy_pass_request_headers off, so only the headers it sets reach the
// auth service: Host ($gw_api_compliant_host, the client's Host), Path
// ($request_uri), Method ($request_method), Authorization
// ($http_authorization: the first of repeated ones), and each of
// http.allowedHeaders as $http_<name> (here the sample's: cookie,
// x-authorization and the method-override headers). nginx leaves out a
// header whose value is empty, and auth_request subrequests are GET.
func ngfCheck(authPath string, r proxyRow) wireRequest {
	r = r.withDefaults()
	w := wireRequest{method: http.MethodGet, target: authPath, host: r.host}
	first := func(name string) string {
		for _, l := range r.header {
			n, v, _ := strings.Cut(l, ":")
			if strings.EqualFold(n, name) {
				return strings.TrimSpace(v)
			}
		}
		return ""
	}
	w.add("Path", r.target)
	w.add("Method", r.method)
	for _, name := range []string{"Authorization", "Cookie", "X-Authorization", "X-HTTP-Method-Override", "X-HTTP-Method", "X-Method-Override"} {
		if v := first(name); v != "" {
			w.add(name, v)
		}
	}
	w.add("Connection", "close")
	return w
}

// NGINX Gateway Fabric: every row of the proxy decision table that sends
// no header twice gets the same answer through /ngf-auth as through the
// other front-ends (nginx passes only the first of repeated headers).
func TestNGFDecisionTable(t *testing.T) {
	env := newProxyEnv(t, HandlerOptions{})
	n := 0
	for _, row := range proxyRows(t) {
		if repeatsHeader(row.header) {
			continue
		}
		n++
		t.Run(row.name, func(t *testing.T) {
			path := "/ngf-auth?format=json"
			if row.policy != "" {
				path = "/ngf-auth/" + row.policy + "?format=json"
			}
			w := ngfCheck(path, row)
			got, dec := env.serve(t, w, proxyTrustedPeer)
			checkProxyWant(t, "ngf", row.withDefaults(), got, false)
			if dec == nil {
				t.Fatal("no decision observed")
			}
			overTCP := env.exchange(t, w)
			if !equalProxyOutcome(got, overTCP, false) {
				t.Errorf("in-process %+v, over TCP %+v", got, overTCP)
			}
		})
	}
	if n < 30 {
		t.Fatalf("only %d rows", n)
	}

	t.Run("what cannot be believed", func(t *testing.T) {
		g := NewWithT(t)
		ok := ngfCheck("/ngf-auth", proxyStaticRow)
		got, _ := env.serve(t, ok, proxyTrustedPeer)
		g.Expect(got.status).To(Equal(200))
		for name, w := range map[string]wireRequest{
			"no Path":            func() wireRequest { w := ok; w.header = nil; w.add("Method", "GET"); return w }(),
			"a Path without a /": func() wireRequest { w := ngfCheck("/ngf-auth", proxyStaticRow); w.set("Path", "api/servers"); return w }(),
			"two Path headers": func() wireRequest {
				w := ngfCheck("/ngf-auth", proxyStaticRow)
				w.add("Path", "/mcpserver/mcp")
				return w
			}(),
			"a Method with a tab": func() wireRequest { w := ngfCheck("/ngf-auth", proxyStaticRow); w.set("Method", "GET\tX"); return w }(),
		} {
			got, _ := env.serve(t, w, proxyTrustedPeer)
			g.Expect(proxyReason(got)).To(Equal(string(check.ReasonBadOriginalURL)), name)
		}
		// The route is exactly http.path: an appended path is no NGF route.
		got, _ = env.serve(t, ngfCheck("/ngf-auth/team/registry/api/servers", proxyStaticRow), proxyTrustedPeer)
		g.Expect(got.status).To(Equal(http.StatusNotFound))
	})

	t.Run("the client is NGF's nginx, whatever X-Real-IP says", func(t *testing.T) {
		g := NewWithT(t)
		w := ngfCheck("/ngf-auth", proxyStaticRow)
		w.add("X-Real-IP", "198.51.100.7") // an allowedHeaders entry: the client's own
		req := env.parse(t, w, proxyTrustedPeer)
		var c check.Request
		_, ok := (frontend.NGF{}).Parse(req, &c, &env.h.env)
		g.Expect(ok).To(BeTrue())
		g.Expect(c.ClientIP).To(Equal("10.42.0.17"))
	})
}

func repeatsHeader(lines []string) bool {
	seen := map[string]bool{}
	for _, l := range lines {
		n, _, _ := strings.Cut(l, ":")
		n = strings.ToLower(n)
		if seen[n] {
			return true
		}
		seen[n] = true
	}
	return false
}

// nicCheck is F5 NGINX Ingress Controller's auth subrequest for an
// externalAuth Policy (nginx/kubernetes-ingress main,
// internal/configs/virtualserver.go generateExternalAuthLocation): GET to
// <service><authURI> with every header of the client's request
// (proxy_pass_request_headers on), Host: $host (lower case, no port),
// X-Scheme: $scheme and Content-Length: 0. With the sample's authSnippets
// it also sets X-Original-URL, X-Original-Method, X-Real-IP and
// X-Forwarded-For, replacing any the client sent.
func nicCheck(authURI string, r proxyRow, client string, snippet bool) wireRequest {
	r = r.withDefaults()
	host := strings.ToLower(r.host)
	if h, _, ok := strings.Cut(host, ":"); ok {
		host = h
	}
	w := wireRequest{method: http.MethodGet, target: authURI, host: host}
	w.addRaw(r.header)
	w.set("X-Scheme", r.scheme)
	w.set("Content-Length", "0")
	if snippet {
		w.set("X-Original-URL", r.scheme+"://"+r.host+r.target)
		w.set("X-Original-Method", r.method)
		w.set("X-Real-IP", client)
		w.set("X-Forwarded-For", client)
	}
	return w
}

// F5 NGINX Ingress Controller with the sample's snippet answers every row of
// the decision table as ingress-nginx does; without it the client's own
// X-Original-URL decides, which is why the snippet is required.
func TestNICExternalAuth(t *testing.T) {
	env := newProxyEnv(t, HandlerOptions{})
	for _, row := range proxyRows(t) {
		t.Run(row.name, func(t *testing.T) {
			uri := "/validate?format=json"
			if row.policy != "" {
				uri = "/validate/" + row.policy + "?format=json"
			}
			got, _ := env.serve(t, nicCheck(uri, row, "192.0.2.10", true), proxyTrustedPeer)
			checkProxyWant(t, "nic", row.withDefaults(), got, false)
		})
	}
	t.Run("why the snippet is required", func(t *testing.T) {
		g := NewWithT(t)
		attack := proxyRow{method: "POST", target: "/mcpserver/mcp", header: []string{"Authorization: Bearer " + TokStatic,
			"X-Original-URL: http://registry.example.com/api/servers", "X-Original-Method: GET"}}
		got, _ := env.serve(t, nicCheck("/validate", attack, "192.0.2.10", false), proxyTrustedPeer)
		g.Expect(got.status).To(Equal(200), "without the snippet the client's X-Original-URL is decided on")
		got, _ = env.serve(t, nicCheck("/validate", attack, "192.0.2.10", true), proxyTrustedPeer)
		g.Expect(got.status).To(Equal(401))
		g.Expect(proxyReason(got)).To(Equal(string(check.ReasonRegistryCredOnGateway)))
		got, _ = env.serve(t, nicCheck("/validate", proxyRow{target: "/api/servers", header: []string{"Authorization: Bearer " + TokStatic}}, "192.0.2.10", false), proxyTrustedPeer)
		g.Expect(proxyReason(got)).To(Equal(string(check.ReasonBadOriginalURL)), "without the snippet and a client's header: refused")
	})
}

// The attack: through Traefik's ingress-nginx provider, a client sends its
// own X-Original-URL naming a Registry API path, and a static token, while
// it requests a gateway path. /validate would decide on the client's URL
// and allow the token on the gateway. It is refused; /forward-auth decides
// on what Traefik says.
func TestTraefikIngressNginxProviderOriginalURL(t *testing.T) {
	env := newProxyEnv(t, HandlerOptions{})
	static := "Authorization: Bearer " + TokStatic
	attack := proxyRow{method: "POST", target: "/mcpserver/mcp", header: []string{static,
		"X-Original-URL: http://registry.example.com/api/servers", "X-Original-Method: GET"}}

	for _, tc := range []struct {
		name   string
		w      wireRequest
		status int
		reason check.Reason
	}{
		{"the attack on /validate", traefikIngressNginxCheck("/validate", attack, "192.0.2.10"), 403, check.ReasonConflictingOriginal},
		{"the attack on /validate/{ns}/{name}", traefikIngressNginxCheck("/validate/team/registry", attack, "192.0.2.10"), 403, check.ReasonConflictingOriginal},
		{"the same request on /forward-auth: decided on Traefik's URL", traefikIngressNginxCheck("/forward-auth", attack, "192.0.2.10"), 401, check.ReasonRegistryCredOnGateway},
		{"another host in X-Original-URL", traefikIngressNginxCheck("/validate", proxyRow{host: "other.example.com", target: "/api/servers", header: []string{static,
			"X-Original-URL: http://registry.example.com/api/servers", "X-Original-Method: GET"}}, "192.0.2.10"), 403, check.ReasonConflictingOriginal},
		{"another method in X-Original-Method (a read-only key on POST)", traefikIngressNginxCheck("/validate", proxyRow{method: "POST", target: "/api/servers", header: []string{"Authorization: Bearer " + TokReadKey,
			"X-Original-URL: http://registry.example.com/api/servers", "X-Original-Method: GET"}}, "192.0.2.10"), 403, check.ReasonConflictingOriginal},
		{"no X-Original-URL: nothing to decide on", traefikIngressNginxCheck("/validate", proxyRow{target: "/api/servers", header: []string{static}}, "192.0.2.10"), 403, check.ReasonBadOriginalURL},
		{"an X-Original-URL that agrees: decided as Traefik sees it", traefikIngressNginxCheck("/validate", proxyRow{target: "/api/servers?limit=1", header: []string{static,
			"X-Original-URL: http://registry.example.com/api/servers?limit=1", "X-Original-Method: GET"}}, "192.0.2.10"), 200, ""},
		{"the same request through /forward-auth", traefikIngressNginxCheck("/forward-auth", proxyRow{target: "/api/servers", header: []string{static}}, "192.0.2.10"), 200, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			got, _ := env.serve(t, tc.w, proxyTrustedPeer)
			g.Expect(got.status).To(Equal(tc.status), got.body)
			if tc.reason != "" {
				g.Expect(got.header["X-Auth-Reason"]).To(Equal([]string{string(tc.reason)}))
			} else {
				g.Expect(got.header["X-User"]).To(Equal([]string{"network-user"}))
			}
		})
	}

	// Behind ingress-nginx, X-Forwarded-* are the client's own: ones that
	// agree (or none) change nothing, ones that disagree only refuse the
	// client that sent them.
	t.Run("ingress-nginx with client-sent X-Forwarded-*", func(t *testing.T) {
		g := NewWithT(t)
		row := proxyRow{target: "/api/servers", header: []string{static}}
		w := nginxCheck(row, "192.0.2.10")
		got, _ := env.serve(t, w, proxyTrustedPeer)
		g.Expect(got.status).To(Equal(200))
		w.add("X-Forwarded-Host", "lb.example.net") // a load balancer's, alone: not compared
		got, _ = env.serve(t, w, proxyTrustedPeer)
		g.Expect(got.status).To(Equal(200))
		w.add("X-Forwarded-Uri", "/mcpserver/mcp")
		got, _ = env.serve(t, w, proxyTrustedPeer)
		g.Expect(got.status).To(Equal(403))
		g.Expect(proxyReason(got)).To(Equal(string(check.ReasonConflictingOriginal)))
	})
}
