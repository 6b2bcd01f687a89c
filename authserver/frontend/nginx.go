package frontend

import (
	"net/http"
	"strings"

	"github.com/registryauth/registry-auth-operator/authserver/check"
)

// routeValidate is nginx's auth route.
const routeValidate = "/validate"

// Nginx is nginx's auth_request, as ingress-nginx's auth-url renders it: the
// original request in X-Original-URL and X-Original-Method.
type Nginx struct{}

// Name implements HTTP.
func (Nginx) Name() string { return "nginx" }

// Match implements HTTP.
func (Nginx) Match(path string) bool { return routeMatch(path, routeValidate) }

// Parse implements HTTP.
func (Nginx) Parse(r *http.Request, req *check.Request, _ *Env) (check.Reason, bool) {
	key, ok := policyKeyFrom(strings.TrimPrefix(r.URL.Path, routeValidate))
	if !ok {
		return "", false
	}
	req.Policy = key
	u, ok1 := single(r.Header, "X-Original-Url")
	method, ok2 := single(r.Header, "X-Original-Method")
	if !ok1 || !ok2 || !check.ValidMethod(method) {
		return check.ReasonBadOriginalURL, true
	}
	req.Method = method
	if req.Scheme, req.Host, req.Path, ok = check.SplitURL(u); !ok {
		return check.ReasonBadOriginalURL, true
	}
	if !agreesWithForwarded(r.Header, req) {
		return check.ReasonConflictingOriginal, true
	}
	return "", true
}

// agreesWithForwarded reports whether the X-Forwarded-* headers of an auth
// request, when it has X-Forwarded-Uri, describe the request X-Original-URL
// and -Method describe: the same path, and the same host and method where
// X-Forwarded-Host and -Method are sent.
//
// nginx sets X-Original-URL itself and passes the client's other headers
// on, so behind ingress-nginx X-Forwarded-* are the client's, and a client
// that sends ones that disagree only gets itself refused. Traefik's
// ingress-nginx provider turns auth-url into a ForwardAuth: it sets
// X-Forwarded-Uri, -Host and -Method from the request and passes the
// client's headers on, X-Original-URL and -Method included; without this
// check the client would choose the URL and method decided on (a static
// token allowed on a gateway path by naming a Registry API path). That
// provider must call /forward-auth, which reads what Traefik sets; this
// refuses what it would get wrong on /validate. X-Forwarded-Host alone is
// not compared: load balancers in front of nginx set it, to a host that may
// differ from the one the client asked nginx for.
func agreesWithForwarded(h http.Header, req *check.Request) bool {
	uris := h["X-Forwarded-Uri"]
	if len(uris) == 0 {
		return true
	}
	if len(uris) != 1 || !strings.HasPrefix(uris[0], "/") {
		return false
	}
	path := uris[0]
	if i := strings.IndexByte(path, '?'); i >= 0 {
		path = path[:i]
	}
	if path != req.Path {
		return false
	}
	if hosts := h["X-Forwarded-Host"]; len(hosts) > 0 {
		if len(hosts) != 1 {
			return false
		}
		host, _, ok := check.SplitTarget(hosts[0])
		if !ok || host != req.Host || strings.ContainsAny(hosts[0], "/?#") {
			return false
		}
	}
	if methods := h["X-Forwarded-Method"]; len(methods) > 0 {
		if len(methods) != 1 || methods[0] != req.Method {
			return false
		}
	}
	return true
}

// Write implements HTTP.
func (Nginx) Write(w http.ResponseWriter, r *http.Request, a Answer) {
	bodies := BodiesNone
	if askedForJSON(r) {
		bodies = BodiesAll
	}
	WriteHTTP(w, r, a, bodies)
}
