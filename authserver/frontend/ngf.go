package frontend

import (
	"net/http"
	"strings"

	"github.com/registryauth/registry-auth-operator/authserver/check"
)

// routeNGF is NGINX Gateway Fabric's ExternalAuth route.
const routeNGF = "/ngf-auth"

// NGF is NGINX Gateway Fabric's HTTP form of the Gateway API ExternalAuth
// filter (GEP-1494). Unlike Envoy-based implementations it does not append
// the original path: its auth_request location proxies to
// <backend><http.path> exactly, with proxy_pass_request_headers off and
// these headers set (internal/controller/nginx/config/servers.go,
// extractExternalAuthInternalLocations):
//
//	Host:          $gw_api_compliant_host (the client's Host)
//	Path:          $request_uri           (the original path and query)
//	Method:        $request_method
//	Authorization: $http_authorization
//	<each of http.allowedHeaders>: $http_<name>
//
// So http.path must be /ngf-auth or /ngf-auth/{namespace}/{name}. No header
// tells the client's address but the client's own (X-Real-IP or
// X-Forwarded-For would be $http_x_real_ip, what the client sent): the
// client counts as the peer, NGF's nginx.
type NGF struct{}

// Name implements HTTP.
func (NGF) Name() string { return "nginx-gateway-fabric" }

// Match implements HTTP.
func (NGF) Match(path string) bool { return routeMatch(path, routeNGF) }

// Parse implements HTTP.
func (NGF) Parse(r *http.Request, req *check.Request, _ *Env) (check.Reason, bool) {
	key, ok := policyKeyFrom(strings.TrimPrefix(r.URL.Path, routeNGF))
	if !ok {
		return "", false
	}
	req.Policy = key
	if p := PeerAddr(r.RemoteAddr); p.IsValid() {
		req.ClientIP = p.String()
	}
	path, ok1 := single(r.Header, "Path")
	method, ok2 := single(r.Header, "Method")
	if !ok1 || !ok2 || !check.ValidMethod(method) || !strings.HasPrefix(path, "/") || r.Host == "" || strings.ContainsAny(r.Host, "/?#") {
		return check.ReasonBadOriginalURL, true
	}
	req.Method = method
	req.Scheme = "http"
	if req.Host, req.Path, ok = check.SplitTarget(r.Host + path); !ok {
		return check.ReasonBadOriginalURL, true
	}
	return "", true
}

// Write implements HTTP: as nginx's, no body unless asked for.
func (NGF) Write(w http.ResponseWriter, r *http.Request, a Answer) {
	Nginx{}.Write(w, r, a)
}
