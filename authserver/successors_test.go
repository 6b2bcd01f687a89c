package authserver

import (
	"net/http"
	"testing"

	. "github.com/onsi/gomega"

	"github.com/registryauth/registry-auth-operator/authserver/check"
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
