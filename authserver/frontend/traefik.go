package frontend

import (
	"net/http"
	"strings"

	"github.com/registryauth/registry-auth-operator/authserver/check"
)

// routeForwardAuth is Traefik's auth route.
const routeForwardAuth = "/forward-auth"

// Traefik is Traefik's ForwardAuth middleware: the original request in
// X-Forwarded-Proto, -Host, -Uri and -Method, believed only from a trusted
// proxy.
type Traefik struct{}

// Name implements HTTP.
func (Traefik) Name() string { return "traefik" }

// Match implements HTTP.
func (Traefik) Match(path string) bool { return routeMatch(path, routeForwardAuth) }

// Parse implements HTTP.
func (Traefik) Parse(r *http.Request, req *check.Request, env *Env) (check.Reason, bool) {
	key, ok := policyKeyFrom(strings.TrimPrefix(r.URL.Path, routeForwardAuth))
	if !ok {
		return "", false
	}
	req.Policy = key
	if !IsTrusted(PeerAddr(r.RemoteAddr), env.Trusted) {
		return check.ReasonUntrustedProxy, true
	}
	proto, ok1 := single(r.Header, "X-Forwarded-Proto")
	host, ok2 := single(r.Header, "X-Forwarded-Host")
	uri, ok3 := single(r.Header, "X-Forwarded-Uri")
	method, ok4 := single(r.Header, "X-Forwarded-Method")
	if !ok1 || !ok2 || !ok3 || !ok4 || !check.ValidMethod(method) {
		return check.ReasonBadOriginalURL, true
	}
	scheme, ok := forwardedScheme(proto)
	if !ok {
		return check.ReasonBadOriginalURL, true
	}
	req.Method = method
	// A host holding "/" would move part of it into the path.
	if host == "" || strings.Contains(host, "/") || !strings.HasPrefix(uri, "/") {
		return check.ReasonBadOriginalURL, true
	}
	req.Scheme = scheme
	if req.Host, req.Path, ok = check.SplitTarget(host + uri); !ok {
		return check.ReasonBadOriginalURL, true
	}
	return "", true
}

// Write implements HTTP.
func (Traefik) Write(w http.ResponseWriter, r *http.Request, a Answer) {
	bodies := BodiesOnDenial
	if askedForJSON(r) {
		bodies = BodiesAll
	}
	WriteHTTP(w, r, a, bodies)
}

// forwardedScheme is the original URL's scheme for X-Forwarded-Proto: http or
// https in any case, ws and wss (Traefik's values for WebSocket upgrades) as
// http and https, and http when the header is absent or empty. Anything else
// is refused: the value is pasted in front of "://" + host + uri, so a value
// such as "http://registry.example.com/api/servers?" would choose the host
// and path the decision is made on.
func forwardedScheme(proto string) (string, bool) {
	switch {
	case proto == "" || strings.EqualFold(proto, "http") || strings.EqualFold(proto, "ws"):
		return "http", true
	case strings.EqualFold(proto, "https") || strings.EqualFold(proto, "wss"):
		return "https", true
	}
	return "", false
}
