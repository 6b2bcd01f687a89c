package extauthz_test

import (
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/registryauth/registry-auth-operator/authserver"
	"github.com/registryauth/registry-auth-operator/authserver/check"
	"github.com/registryauth/registry-auth-operator/authserver/frontend/extauthz"
)

// FuzzParse maps arbitrary attributes (what a misconfigured or hostile
// peer could send) and checks what the decision may then rely on: a check
// that is not refused has a valid method, an http(s) scheme, a normalised
// host and a path that begins with '/' and holds no query; the credential
// headers are exactly the ones sent; a delegate never gets a pseudo-header,
// a client's X-Original-URL or a value net/http would refuse to send.
func FuzzParse(f *testing.F) {
	f.Add("GET", "http", "registry.example.com", "/api/servers?x=1", "authorization", "Bearer abc", "", false)
	f.Add("POST", "https", "REGISTRY.example.com:8443", "//api//servers", "cookie", "mcp_gateway_session=x", "team/registry", true)
	f.Add("GET", "HTTP", "registry.example.com/api", "/x", "x-original-url", "http://registry.example.com/api/", "", false)
	f.Add("GET ", "ftp", "u@h", "*", ":authority", "h", "a/b/c", true)
	f.Add("OPTIONS", "", "[::1]:80", "/%2e%2e/api", "x-authorization", "Bearer \x00", "", true)
	f.Fuzz(func(t *testing.T, method, scheme, host, path, hname, hvalue, policy string, raw bool) {
		h := &authv3.AttributeContext_HttpRequest{Method: method, Scheme: scheme, Host: host, Path: path}
		if raw {
			h.HeaderMap = &corev3.HeaderMap{Headers: []*corev3.HeaderValue{{Key: hname, RawValue: []byte(hvalue)}}}
		} else {
			h.Headers = map[string]string{hname: hvalue}
		}
		req := &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
			Request:           &authv3.AttributeContext_Request{Http: h},
			ContextExtensions: map[string]string{extauthz.PolicyExtension: policy},
		}}
		var c authserver.Check
		hdr := extauthz.Parse(req, &c)
		if c.Req.Policy != policy {
			t.Fatalf("policy %q from the extension %q", c.Req.Policy, policy)
		}
		name := strings.ToLower(hname)
		if name == "authorization" && (len(c.Req.Authorization) != 1 || c.Req.Authorization[0] != hvalue) {
			t.Fatalf("authorization %q from %q", c.Req.Authorization, hvalue)
		}
		if name != "authorization" && len(c.Req.Authorization) != 0 {
			t.Fatalf("authorization %q from header %q", c.Req.Authorization, hname)
		}
		if name == "x-registry-api-auth" && c.TokenRequested != (hvalue != "") {
			t.Fatalf("token requested %v from %q", c.TokenRequested, hvalue)
		}
		for k, vs := range extauthz.DelegateHeader(hdr) {
			if strings.HasPrefix(k, ":") || k == "X-Original-Url" || k == "X-Original-Method" {
				t.Fatalf("the delegate would get %q", k)
			}
			for _, v := range vs {
				if strings.ContainsAny(v, "\r\n\x00") {
					t.Fatalf("the delegate would get %q: %q", k, v)
				}
			}
		}
		if c.Deny != "" {
			if c.Deny != check.ReasonBadOriginalURL {
				t.Fatalf("deny %q", c.Deny)
			}
			return
		}
		r := c.Req
		if !check.ValidMethod(r.Method) || r.Method != method {
			t.Fatalf("method %q from %q", r.Method, method)
		}
		if r.Scheme != "http" && r.Scheme != "https" {
			t.Fatalf("scheme %q from %q", r.Scheme, scheme)
		}
		if r.Host == "" || strings.ContainsAny(r.Host, "/?#@ ") || r.Host != strings.ToLower(r.Host) {
			t.Fatalf("host %q from %q", r.Host, host)
		}
		if !strings.HasPrefix(r.Path, "/") || strings.Contains(r.Path, "?") || !strings.HasPrefix(path, r.Path) {
			t.Fatalf("path %q from %q", r.Path, path)
		}
	})
}
