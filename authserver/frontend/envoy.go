package frontend

import (
	"net/http"
	"strings"

	"github.com/registryauth/registry-auth-operator/authserver/check"
)

// Envoy's HTTP ext_authz routes.
const (
	routeExtAuthz     = "/ext-authz"
	routeExtAuthzName = "/ext-authz-policy/"
)

// EnvoyHTTP is Envoy's HTTP ext_authz filter (and Envoy Gateway's
// SecurityPolicy extAuth.http): the original path appended to the
// configured path prefix, the original method and Host kept.
type EnvoyHTTP struct{}

// Name implements HTTP.
func (EnvoyHTTP) Name() string { return "envoy-http" }

// Match implements HTTP.
func (EnvoyHTTP) Match(path string) bool {
	return strings.HasPrefix(path, routeExtAuthzName) || routeMatch(path, routeExtAuthz)
}

// Parse implements HTTP.
func (EnvoyHTTP) Parse(r *http.Request, req *check.Request, _ *Env) (check.Reason, bool) {
	var target string
	if strings.HasPrefix(r.URL.Path, routeExtAuthzName) {
		// /ext-authz-policy/{ns}/{name}/original/path: the raw request
		// target, so the original path is seen as the client sent it. A
		// target that does not begin with the prefix as written (absolute
		// form, an encoded prefix) has no original path to take.
		rest, ok := strings.CutPrefix(r.RequestURI, routeExtAuthzName)
		if !ok {
			return check.ReasonBadOriginalURL, true
		}
		ns, rest, ok1 := strings.Cut(rest, "/")
		name, orig, ok2 := strings.Cut(rest, "/")
		if !ok1 || !ok2 || ns == "" || name == "" {
			return "", false
		}
		req.Policy = ns + "/" + name
		target = "/" + orig
	} else {
		orig, ok := strings.CutPrefix(r.RequestURI, routeExtAuthz)
		if !ok {
			return check.ReasonBadOriginalURL, true
		}
		if orig == "" || orig[0] == '?' {
			orig = "/" + orig
		}
		target = orig
	}
	req.Method = r.Method
	req.Scheme = "http"
	var ok bool
	if req.Host, req.Path, ok = check.SplitTarget(r.Host + target); !ok {
		return check.ReasonBadOriginalURL, true
	}
	return "", true
}

// Write implements HTTP.
func (EnvoyHTTP) Write(w http.ResponseWriter, r *http.Request, a Answer) {
	WriteHTTP(w, r, a, BodiesOnDenial)
}
