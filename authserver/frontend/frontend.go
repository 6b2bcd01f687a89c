// Package frontend maps each proxy's way of asking for an auth check to the
// proxy-neutral check.Request, and the decision back to the answer that proxy
// reads. The decision (package policy) is the same for all of them; only the
// description of the original request and the shape of the answer differ.
//
//	nginx auth_request / ingress-nginx auth-url (nginx.go):
//	    GET /validate[/{namespace}/{name}]
//	    X-Original-URL: scheme://host/path?query, X-Original-Method
//
//	Traefik ForwardAuth (traefik.go):
//	    GET /forward-auth[/{namespace}/{name}]
//	    X-Forwarded-Proto, X-Forwarded-Host, X-Forwarded-Uri, X-Forwarded-Method
//	    Believed only from trusted proxies: Traefik passes client-sent
//	    X-Forwarded-* through when trustForwardHeader is on.
//
//	Envoy / Envoy Gateway HTTP ext_authz (envoy.go):
//	    {method} /ext-authz{original path}?{query}                 (policy by Host)
//	    {method} /ext-authz-policy/{namespace}/{name}{original path}
//	    The original path is appended to the configured path prefix; the
//	    check request keeps the original method and Host.
//
//	NGINX Gateway Fabric, Gateway API ExternalAuth over HTTP (ngf.go):
//	    GET /ngf-auth[/{namespace}/{name}]      (exactly http.path)
//	    Path: original URI, Method: original method, the client's Host
//
// A new proxy that speaks HTTP is a type implementing HTTP, added to
// HTTPFrontends.
package frontend

import (
	"net/http"
	"net/netip"
	"strings"

	"github.com/registryauth/registry-auth-operator/authserver/check"
)

// HTTP is a front-end for a proxy that asks over HTTP.
type HTTP interface {
	// Name names the front-end in logs and docs ("nginx").
	Name() string
	// Match reports whether an auth request for path is this front-end's.
	Match(path string) bool
	// Parse fills the parts of req that depend on the proxy (the credential
	// headers are filled already). It returns false for a path that is no
	// auth route of this front-end (404), and a deny reason when the route
	// is known but what the proxy sent cannot be believed.
	Parse(r *http.Request, req *check.Request, env *Env) (deny check.Reason, ok bool)
	// Write answers the proxy: 200 with the identity, or the deny reason's
	// status.
	Write(w http.ResponseWriter, r *http.Request, a Answer)
}

// Answer is what a front-end answers with. It is passed by value: an
// interface call with a pointer would move every answer to the heap.
type Answer struct {
	// Reason says why; its status is the answer's (200 for an allow).
	Reason check.Reason
	// Identity is set when the request is allowed here.
	Identity *check.Identity
	// Relayed are answer headers another auth server gave (the policy's
	// delegate): they are sent as they came, instead of the identity.
	Relayed http.Header
	// Challenge, when set, is the WWW-Authenticate of a 401 or 403 (the
	// policy's protected resource metadata, for MCP clients); a relayed
	// one wins.
	Challenge string
}

// Env is what front-ends need to know of the deployment.
type Env struct {
	// Trusted are the proxies whose X-Forwarded-* headers are believed.
	Trusted []netip.Prefix
}

// HTTPFrontends are the HTTP front-ends, in the order their routes are
// matched.
var HTTPFrontends = []HTTP{Nginx{}, Traefik{}, EnvoyHTTP{}, NGF{}}

// Lookup returns the front-end whose route path is, or nil.
func Lookup(path string) HTTP {
	for _, f := range HTTPFrontends {
		if f.Match(path) {
			return f
		}
	}
	return nil
}

// routeMatch reports whether path is route or under route + "/".
func routeMatch(path, route string) bool {
	return path == route || strings.HasPrefix(path, route+"/")
}

// single returns a header's only value. More than one value is refused:
// which one a proxy meant is anybody's guess, and a proxy that appends rather
// than replaces would let the client choose.
func single(h http.Header, key string) (string, bool) {
	v := h[key]
	switch len(v) {
	case 0:
		return "", true
	case 1:
		return v[0], true
	}
	return "", false
}

// policyKeyFrom parses "" or "/" (no policy named) and "/{ns}/{name}[/]".
func policyKeyFrom(rest string) (string, bool) {
	if rest == "" || rest == "/" {
		return "", true
	}
	rest = strings.TrimSuffix(strings.TrimPrefix(rest, "/"), "/")
	ns, name, ok := strings.Cut(rest, "/")
	if !ok || ns == "" || name == "" || strings.Contains(name, "/") {
		return "", false
	}
	return rest, true
}
