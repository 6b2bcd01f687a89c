package authserver

import (
	"net/http"
	"net/netip"
	"strings"
)

// The same decision, reached from three proxies. Each adapter turns the
// proxy's way of describing the original request into a Request; Decide and
// the answer are shared.
//
//	nginx auth_request / ingress-nginx auth-url:
//	    GET /validate[/{namespace}/{name}]
//	    X-Original-URL: scheme://host/path?query, X-Original-Method
//
//	Traefik ForwardAuth:
//	    GET /forward-auth[/{namespace}/{name}]
//	    X-Forwarded-Proto, X-Forwarded-Host, X-Forwarded-Uri, X-Forwarded-Method
//	    Believed only from --trusted-proxies: Traefik passes client-sent
//	    X-Forwarded-* through when trustForwardHeader is on.
//
//	Envoy / Envoy Gateway HTTP ext_authz:
//	    {method} /ext-authz{original path}?{query}                 (policy by Host)
//	    {method} /ext-authz-policy/{namespace}/{name}{original path}
//	    The original path is appended to the configured path prefix; the
//	    check request keeps the original method and Host.

// Route prefixes.
const (
	routeValidate     = "/validate"
	routeForwardAuth  = "/forward-auth"
	routeExtAuthz     = "/ext-authz"
	routeExtAuthzName = "/ext-authz-policy/"
)

// ReasonUntrustedProxy: X-Forwarded-* headers from a peer that is not a
// trusted proxy.
const ReasonUntrustedProxy Reason = "untrusted_proxy"

func init() {
	defineDeny(ReasonUntrustedProxy, http.StatusForbidden, "X-Forwarded-* headers are only believed from a trusted proxy (--trusted-proxies)")
}

// parseRoute fills the parts of req that depend on the proxy. It returns
// false for a path that is no auth route (404), and a deny reason when the
// route is known but cannot be believed.
func (h *Handler) parseRoute(r *http.Request, req *Request) (Reason, bool) {
	p := r.URL.Path
	switch {
	case p == routeValidate || strings.HasPrefix(p, routeValidate+"/"):
		key, ok := policyKeyFrom(strings.TrimPrefix(p, routeValidate))
		if !ok {
			return "", false
		}
		req.Policy = key
		var ok1, ok2 bool
		req.OriginalURL, ok1 = single(r.Header, "X-Original-Url")
		req.OriginalMethod, ok2 = single(r.Header, "X-Original-Method")
		if !ok1 || !ok2 {
			return ReasonBadOriginalURL, true
		}
		return "", true

	case p == routeForwardAuth || strings.HasPrefix(p, routeForwardAuth+"/"):
		key, ok := policyKeyFrom(strings.TrimPrefix(p, routeForwardAuth))
		if !ok {
			return "", false
		}
		req.Policy = key
		if !isTrusted(peerAddr(r.RemoteAddr), h.trusted) {
			return ReasonUntrustedProxy, true
		}
		proto, ok1 := single(r.Header, "X-Forwarded-Proto")
		host, ok2 := single(r.Header, "X-Forwarded-Host")
		uri, ok3 := single(r.Header, "X-Forwarded-Uri")
		method, ok4 := single(r.Header, "X-Forwarded-Method")
		if !ok1 || !ok2 || !ok3 || !ok4 {
			return ReasonBadOriginalURL, true
		}
		scheme, ok := forwardedScheme(proto)
		if !ok {
			return ReasonBadOriginalURL, true
		}
		// A host holding "/" would move part of it into the path.
		if host != "" && !strings.Contains(host, "/") && strings.HasPrefix(uri, "/") {
			req.OriginalURL = scheme + "://" + host + uri
		}
		req.OriginalMethod = method
		return "", true

	case strings.HasPrefix(p, routeExtAuthzName):
		// /ext-authz-policy/{ns}/{name}/original/path: the raw request
		// target, so the original path is seen as the client sent it. A
		// target that does not begin with the prefix as written (absolute
		// form, an encoded prefix) has no original path to take.
		rest, ok := strings.CutPrefix(r.RequestURI, routeExtAuthzName)
		if !ok {
			return ReasonBadOriginalURL, true
		}
		ns, rest, ok1 := strings.Cut(rest, "/")
		name, orig, ok2 := strings.Cut(rest, "/")
		if !ok1 || !ok2 || ns == "" || name == "" {
			return "", false
		}
		req.Policy = ns + "/" + name
		req.OriginalURL = "http://" + r.Host + "/" + orig
		req.OriginalMethod = r.Method
		return "", true

	case p == routeExtAuthz || strings.HasPrefix(p, routeExtAuthz+"/"):
		orig, ok := strings.CutPrefix(r.RequestURI, routeExtAuthz)
		if !ok {
			return ReasonBadOriginalURL, true
		}
		if orig == "" || orig[0] == '?' {
			orig = "/" + orig
		}
		req.OriginalURL = "http://" + r.Host + orig
		req.OriginalMethod = r.Method
		return "", true
	}
	return "", false
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

// trustedFrom is the handler's trusted proxy list (for ForwardAuth).
func trustedFrom(opts HandlerOptions) []netip.Prefix {
	if opts.TrustedProxies != nil {
		return opts.TrustedProxies
	}
	return DefaultTrustedProxies
}
