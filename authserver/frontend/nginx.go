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
	return "", true
}

// Write implements HTTP.
func (Nginx) Write(w http.ResponseWriter, r *http.Request, a Answer) {
	bodies := BodiesNone
	if askedForJSON(r) {
		bodies = BodiesAll
	}
	WriteHTTP(w, r, a, bodies)
}
