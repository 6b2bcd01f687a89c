// Package extauthz is the front-end for Envoy's gRPC external authorization,
// envoy.service.auth.v3.Authorization/Check: what Envoy Gateway
// (SecurityPolicy extAuth.grpc), Istio (envoyExtAuthzGrpc), kgateway
// (GatewayExtension extAuth), Contour and the Gateway API ExternalAuth filter
// with protocol GRPC call. It maps a CheckRequest to the same check the HTTP
// front-ends make (authserver.Checker: failure limit, policy.Decide,
// delegation, the registry's hop token) and the result back to a
// CheckResponse:
//
//	request:  attributes.request.http: method, scheme, host (:authority),
//	          path (:path, the query included), headers (or header_map when
//	          Envoy encodes raw headers); the policy by host, or named in the
//	          context extension "registry-auth-policy" ("namespace/name");
//	          the client: attributes.source.address when the gRPC peer is a
//	          trusted proxy, else the peer.
//	allow:    OK, OkHttpResponse: the identity headers (and the hop token)
//	          overwriting what the client sent; the identity headers an
//	          answer does not set are removed from the upstream request.
//	deny:     UNAUTHENTICATED or PERMISSION_DENIED, DeniedHttpResponse with
//	          401 or 403, WWW-Authenticate, X-Auth-Reason and the JSON reason.
//
// Check never returns a gRPC error: Envoy turns an error into its
// failure_mode_allow or status_on_error answer, and a policy must not depend
// on how that is set.
package extauthz

import (
	"context"
	"net/http"
	"net/netip"
	"strings"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"golang.org/x/net/http/httpguts"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"

	"github.com/registryauth/registry-auth-operator/authserver"
	"github.com/registryauth/registry-auth-operator/authserver/check"
	"github.com/registryauth/registry-auth-operator/authserver/frontend"
	"github.com/registryauth/registry-auth-operator/authserver/hoptoken"
)

// PolicyExtension is the context extension that names the policy
// ("namespace/name"); without it the policy is chosen by host, as on
// /ext-authz. Context extensions are set on Envoy's routes
// (ExtAuthzPerRoute.check_settings.context_extensions in Envoy's own
// configuration), never by the client.
const PolicyExtension = "registry-auth-policy"

// MaxCheckTime bounds one check when Envoy sends no deadline (Envoy's
// ext_authz timeout is 200 ms by default and travels as the gRPC deadline).
const MaxCheckTime = authserver.WriteTimeout

// Service implements envoy.service.auth.v3.Authorization.
type Service struct {
	authv3.UnimplementedAuthorizationServer
	checker *authserver.Checker
	trusted []netip.Prefix
}

// NewService returns the service deciding with checker. trusted are the
// peers (Envoy's pods) whose account of the client address is believed; nil
// means frontend.DefaultTrustedProxies.
func NewService(checker *authserver.Checker, trusted []netip.Prefix) *Service {
	if trusted == nil {
		trusted = frontend.DefaultTrustedProxies
	}
	return &Service{checker: checker, trusted: trusted}
}

// Check implements envoy.service.auth.v3.AuthorizationServer.
func (s *Service) Check(ctx context.Context, req *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	start := time.Now()
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, MaxCheckTime)
		defer cancel()
	}
	var c authserver.Check
	hdr := Parse(req, &c)
	c.Req.ClientIP = s.clientIP(ctx, req)
	c.DelegateHeader = func() http.Header { return DelegateHeader(hdr) }
	res := s.checker.Check(ctx, &c, start)
	resp := Answer(&res)
	s.checker.Done(&c, &res, start)
	return resp, nil
}

// clientIP is the client's address: Envoy's downstream address when the
// gRPC peer is a trusted proxy, the peer's own otherwise.
func (s *Service) clientIP(ctx context.Context, req *authv3.CheckRequest) string {
	var p netip.Addr
	if pr, ok := peer.FromContext(ctx); ok && pr.Addr != nil {
		p = frontend.PeerAddr(pr.Addr.String())
	}
	if frontend.IsTrusted(p, s.trusted) {
		src := req.GetAttributes().GetSource().GetAddress().GetSocketAddress().GetAddress()
		if a, err := netip.ParseAddr(src); err == nil {
			return a.Unmap().String()
		}
	}
	if !p.IsValid() {
		return ""
	}
	return p.String()
}

// Header is one request header as Envoy sent it: a lower-case name and its
// value (values of a repeated header are joined with "," in the headers map,
// kept apart in header_map).
type Header struct{ Name, Value string }

// Parse maps a CheckRequest to c (c.Req, c.Deny, c.TokenRequested) and
// returns the request headers, for a delegate. It never fails: what cannot
// be believed is a deny reason (bad_original_url).
func Parse(req *authv3.CheckRequest, c *authserver.Check) []Header {
	attrs := req.GetAttributes()
	h := attrs.GetRequest().GetHttp()
	if h == nil {
		c.Deny = check.ReasonBadOriginalURL
		return nil
	}
	hdr := headersOf(h)
	r := &c.Req
	for _, kv := range hdr {
		switch kv.Name {
		case "authorization":
			r.Authorization = append(r.Authorization, kv.Value)
		case "x-authorization":
			r.XAuthorization = append(r.XAuthorization, kv.Value)
		case "cookie":
			r.Cookie = append(r.Cookie, kv.Value)
		case "x-http-method-override", "x-http-method", "x-method-override":
			r.MethodOverride = true
		case "x-registry-api-auth":
			c.TokenRequested = c.TokenRequested || kv.Value != ""
		}
	}
	r.Policy = attrs.GetContextExtensions()[PolicyExtension]

	scheme, ok := schemeOf(h.GetScheme())
	host, path := h.GetHost(), h.GetPath()
	// The host is pasted in front of the path: one holding a '/', '?', '#'
	// (or anything SplitTarget refuses) would move part of it into the
	// path. The path is Envoy's :path, which begins with '/'.
	if !ok || !check.ValidMethod(h.GetMethod()) || host == "" || strings.ContainsAny(host, "/?#") || !strings.HasPrefix(path, "/") {
		c.Deny = check.ReasonBadOriginalURL
		return hdr
	}
	r.Method, r.Scheme = h.GetMethod(), scheme
	if r.Host, r.Path, ok = check.SplitTarget(host + path); !ok {
		c.Deny = check.ReasonBadOriginalURL
	}
	return hdr
}

// headersOf lists the request headers, from header_map when Envoy sends raw
// headers, else from the headers map. Names are lower-cased (Envoy's are
// already).
func headersOf(h *authv3.AttributeContext_HttpRequest) []Header {
	if hm := h.GetHeaderMap().GetHeaders(); len(hm) > 0 {
		out := make([]Header, 0, len(hm))
		for _, hv := range hm {
			v := hv.GetValue()
			if v == "" && len(hv.GetRawValue()) > 0 {
				v = string(hv.GetRawValue())
			}
			out = append(out, Header{lower(hv.GetKey()), v})
		}
		return out
	}
	out := make([]Header, 0, len(h.GetHeaders()))
	for k, v := range h.GetHeaders() {
		out = append(out, Header{lower(k), v})
	}
	return out
}

func lower(s string) string {
	for i := 0; i < len(s); i++ {
		if 'A' <= s[i] && s[i] <= 'Z' {
			return strings.ToLower(s)
		}
	}
	return s
}

// schemeOf is the original request's scheme: http or https in any case, and
// http when Envoy sends none.
func schemeOf(s string) (string, bool) {
	switch {
	case s == "" || strings.EqualFold(s, "http"):
		return "http", true
	case strings.EqualFold(s, "https"):
		return "https", true
	}
	return "", false
}

// DelegateHeader is the auth request a policy's delegate gets, built from the
// gRPC attributes: every request header but the HTTP/2 pseudo-headers
// (:authority, :path, ...) and what cannot be sent in an HTTP/1.1 header.
// The delegate reads the original request from X-Original-URL and
// X-Original-Method, which the delegation adds from the check.
func DelegateHeader(hdr []Header) http.Header {
	out := make(http.Header, len(hdr))
	for _, kv := range hdr {
		if strings.HasPrefix(kv.Name, ":") || !httpguts.ValidHeaderFieldName(kv.Name) || !httpguts.ValidHeaderFieldValue(kv.Value) {
			continue
		}
		k := http.CanonicalHeaderKey(kv.Name)
		// A client's own X-Original-URL or -Method would choose what the
		// delegate decides on: the check's are set instead.
		if k == "X-Original-Url" || k == "X-Original-Method" {
			continue
		}
		out[k] = append(out[k], kv.Value)
	}
	return out
}

// identityNames are the identity headers as Envoy names them (lower case).
var identityNames = func() (n [check.NumIdentityHeaders]string) {
	for i := range check.NumIdentityHeaders {
		n[i] = strings.ToLower(check.IdentityHeader(i))
	}
	return n
}()

var tokenName = strings.ToLower(hoptoken.Header)

func option(name, value string) *corev3.HeaderValueOption {
	return &corev3.HeaderValueOption{
		Header:       &corev3.HeaderValue{Key: name, Value: value},
		AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD,
	}
}

// Answer is the CheckResponse for a check's result.
func Answer(res *authserver.Result) *authv3.CheckResponse {
	a := res.Answer
	status := a.Reason.Status()
	if a.Identity != nil || a.Reason == check.ReasonDelegatedAllowed || a.Reason == check.ReasonPublic {
		status = http.StatusOK
	} else if status == http.StatusOK {
		// No identity and no deny reason: a bug. Never allow without one.
		status = http.StatusForbidden
	}
	if status == http.StatusOK {
		return allow(res)
	}
	return deny(res, status)
}

func allow(res *authserver.Result) *authv3.CheckResponse {
	a := res.Answer
	ok := &authv3.OkHttpResponse{}
	set := map[string]bool{}
	if id := a.Identity; id != nil {
		vals := id.HeaderValues()
		ok.Headers = make([]*corev3.HeaderValueOption, 0, check.NumIdentityHeaders+1)
		for i := range check.NumIdentityHeaders {
			ok.Headers = append(ok.Headers, option(identityNames[i], vals[i][0]))
		}
		if res.Token != nil {
			ok.Headers = append(ok.Headers, option(tokenName, res.Token[0]))
		} else {
			ok.HeadersToRemove = []string{tokenName}
		}
		return &authv3.CheckResponse{Status: &rpcstatus.Status{Code: int32(codes.OK)}, HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: ok}}
	}
	// A delegate's allow (its answer headers) or a public path (none): the
	// identity headers and the token it does not set are removed, so a
	// client's own cannot reach the upstream.
	for k, vs := range a.Relayed {
		if len(vs) == 0 || strings.EqualFold(k, "Www-Authenticate") {
			continue
		}
		name := strings.ToLower(k)
		set[name] = true
		ok.Headers = append(ok.Headers, option(name, vs[0]))
	}
	for _, name := range append(identityNames[:], tokenName) {
		if !set[name] {
			ok.HeadersToRemove = append(ok.HeadersToRemove, name)
		}
	}
	return &authv3.CheckResponse{Status: &rpcstatus.Status{Code: int32(codes.OK)}, HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: ok}}
}

func deny(res *authserver.Result, status int) *authv3.CheckResponse {
	a := res.Answer
	d := &authv3.DeniedHttpResponse{
		Status: &typev3.HttpStatus{Code: typev3.StatusCode(status)},
		Body:   string(frontend.DenyBody(a.Reason)),
	}
	challenged := false
	for k, vs := range a.Relayed {
		for _, v := range vs {
			d.Headers = append(d.Headers, &corev3.HeaderValueOption{Header: &corev3.HeaderValue{Key: strings.ToLower(k), Value: v}, AppendAction: corev3.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD})
		}
		challenged = challenged || strings.EqualFold(k, "Www-Authenticate")
	}
	if !challenged {
		if a.Challenge != "" {
			d.Headers = append(d.Headers, option("www-authenticate", a.Challenge))
		} else if status == http.StatusUnauthorized {
			d.Headers = append(d.Headers, option("www-authenticate", frontend.DefaultChallenge))
		}
	}
	d.Headers = append(d.Headers,
		option("x-auth-reason", string(a.Reason)),
		option("content-type", "application/json"),
		option("cache-control", "no-store"))
	code := codes.PermissionDenied
	if status == http.StatusUnauthorized {
		code = codes.Unauthenticated
	}
	return &authv3.CheckResponse{
		Status:       &rpcstatus.Status{Code: int32(code), Message: string(a.Reason)},
		HttpResponse: &authv3.CheckResponse_DeniedResponse{DeniedResponse: d},
	}
}
