// Package check is the proxy-neutral vocabulary of an auth check: the request
// as every proxy front-end describes it (Request), why a decision went the way
// it did (Reason) and who an allowed request is (Identity).
//
// Each proxy describes the original request its own way (nginx's
// X-Original-URL, Traefik's X-Forwarded-*, Envoy's path prefix and Host); a
// front-end maps that description to a Request, and maps the decision back to
// the proxy's answer. The decision itself (package policy) sees only this
// package's types. Nothing here imports net/http.
package check

import (
	"strings"

	"github.com/registryauth/registry-auth-operator/authserver/pathnorm"
)

// Request is one auth check: the original request, as far as the decision
// needs it. Front-ends fill it from what the proxy sends without interpreting
// credentials; the decision does all parsing, so its table tests cover it.
type Request struct {
	// Policy is "namespace/name" when the route names the policy, or "" to
	// choose the policy by Host.
	Policy string
	// Method is the original request's method, as sent.
	Method string
	// Scheme is the original request's scheme, "http" or "https".
	Scheme string
	// Host is the original request's host, normalised (pathnorm.Host).
	Host string
	// Path is the original request's path as sent, without the query. The
	// decision normalises it.
	Path string
	// Authorization and XAuthorization are every value of the Authorization
	// and X-Authorization headers.
	Authorization  []string
	XAuthorization []string
	// Cookie is every value of the Cookie header.
	Cookie []string
	// MethodOverride is set when the request carries a method-override
	// header (X-HTTP-Method-Override, X-HTTP-Method, X-Method-Override):
	// an application may act on another method than Method.
	MethodOverride bool
	// ClientIP is the client address as far as the trusted proxy tells it.
	ClientIP string
	// Throttled is set when the client has failed too often: its static
	// tokens and API keys are then refused without being compared. Sessions
	// and JWTs are not affected.
	Throttled bool
}

// SplitURL takes an original URL apart: it must be an absolute http or https
// URL with a host (what ingress-nginx sends in X-Original-URL:
// $scheme://$http_host$request_uri). It returns the scheme in lower case,
// the normalised host and the raw path without the query.
func SplitURL(u string) (scheme, host, path string, ok bool) {
	var rest string
	switch {
	case len(u) > 7 && strings.EqualFold(u[:7], "http://"):
		scheme, rest = "http", u[7:]
	case len(u) > 8 && strings.EqualFold(u[:8], "https://"):
		scheme, rest = "https", u[8:]
	default:
		return "", "", "", false
	}
	host, path, ok = SplitTarget(rest)
	if !ok {
		return "", "", "", false
	}
	return scheme, host, path, true
}

// SplitTarget takes "authority/path?query" apart (an original URL without
// its scheme). The authority ends at the first '/', '?' or '#'; it must be a
// plausible host, with no user information. A target without a path
// ("host" or "host?q") has the path "/". It returns the normalised host and
// the raw path without the query.
func SplitTarget(rest string) (host, path string, ok bool) {
	end := strings.IndexAny(rest, "/?#")
	if end < 0 {
		end = len(rest)
	}
	authority := rest[:end]
	if authority == "" || strings.ContainsAny(authority, "@ ") {
		return "", "", false
	}
	host = pathnorm.Host(authority)
	if host == "" {
		return "", "", false
	}
	path = rest[end:]
	if path == "" || path[0] != '/' {
		path = "/" + path
	}
	if q := strings.IndexByte(path, '?'); q >= 0 {
		path = path[:q]
	}
	return host, path, true
}

// ValidMethod reports whether m can be a request method: empty (unknown), or
// an HTTP token of at most 32 characters. Anything else is not a method a
// client sent, but something like a header folded into the method's
// (obs-fold), which must not reach the decision or the logs.
func ValidMethod(m string) bool {
	if len(m) > 32 {
		return false
	}
	for i := 0; i < len(m); i++ {
		if !tchar[m[i]] {
			return false
		}
	}
	return true
}

// tchar are the bytes of an HTTP token (RFC 9110, section 5.6.2).
var tchar = func() (t [256]bool) {
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c], t[c-'a'+'A'] = true, true
	}
	for _, c := range "!#$%&'*+-.^_`|~" {
		t[c] = true
	}
	return t
}()
