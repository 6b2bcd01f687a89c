package authserver_test

import (
	"context"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	. "github.com/onsi/gomega"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/registryauth/registry-auth-operator/authserver"
	"github.com/registryauth/registry-auth-operator/authserver/check"
	"github.com/registryauth/registry-auth-operator/authserver/frontend/extauthz"
	. "github.com/registryauth/registry-auth-operator/authserver/internal/policytest"
	"github.com/registryauth/registry-auth-operator/authserver/policy"
)

// grpcClient serves store's checks over gRPC on a real 127.0.0.1 listener.
func grpcClient(t *testing.T, store *policy.Store, opts authserver.HandlerOptions) authv3.AuthorizationClient {
	t.Helper()
	if opts.Now == nil {
		opts.Now = func() time.Time { return Now }
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv, _ := extauthz.NewServer(extauthz.NewService(authserver.NewChecker(store, opts), nil))
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(srv.Stop)
	conn, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return authv3.NewAuthorizationClient(conn)
}

// grpcCheckRequest is the CheckRequest Envoy's ext_authz filter sends for a
// client request (source/extensions/filters/common/ext_authz/
// check_request_utils.cc, setHttpRequest and setRequestHeader): the method,
// scheme, host and :path, and the headers, either merged per name with ","
// in the headers map or, with encode_raw_headers, one entry per header in
// header_map. The policy, when named, is the route's context extension.
func grpcCheckRequest(c authserver.ProxyCase, raw bool) *authv3.CheckRequest {
	h := &authv3.AttributeContext_HttpRequest{Method: c.Method, Scheme: c.Scheme, Host: c.Host, Path: c.Target, Protocol: "HTTP/1.1"}
	pairs := [][2]string{{":authority", c.Host}, {":method", c.Method}, {":path", c.Target}, {":scheme", c.Scheme}, {"x-forwarded-for", "192.0.2.10"}}
	for _, l := range c.Header {
		name, value, _ := strings.Cut(l, ":")
		pairs = append(pairs, [2]string{strings.ToLower(name), strings.TrimSpace(value)})
	}
	if raw {
		h.HeaderMap = &corev3.HeaderMap{}
		for _, p := range pairs {
			h.HeaderMap.Headers = append(h.HeaderMap.Headers, &corev3.HeaderValue{Key: p[0], RawValue: []byte(p[1])})
		}
	} else {
		h.Headers = map[string]string{}
		for _, p := range pairs {
			if v, ok := h.Headers[p[0]]; ok {
				h.Headers[p[0]] = v + "," + p[1]
			} else {
				h.Headers[p[0]] = p[1]
			}
		}
	}
	req := &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{Http: h}}}
	if c.Policy != "" {
		req.Attributes.ContextExtensions = map[string]string{extauthz.PolicyExtension: c.Policy}
	}
	return req
}

// repeats reports whether a case sends a header name twice.
func repeats(c authserver.ProxyCase) bool {
	seen := map[string]bool{}
	for _, l := range c.Header {
		name, _, _ := strings.Cut(l, ":")
		name = strings.ToLower(name)
		if seen[name] {
			return true
		}
		seen[name] = true
	}
	return false
}

// TestGRPCDecisionTable runs the decision table every HTTP front-end
// answers (TestProxyDecisionTable) through the gRPC front-end: the same
// status, identity and reason for every row. With Envoy's default headers
// map two Authorization headers arrive joined by "," and are refused as
// malformed rather than ambiguous (401 either way); with raw headers the
// reason is the same as over HTTP.
func TestGRPCDecisionTable(t *testing.T) {
	client := grpcClient(t, authserver.ProxyStore(t), authserver.HandlerOptions{})
	cases := authserver.ProxyCases(t)
	if len(cases) < 30 {
		t.Fatalf("only %d cases", len(cases))
	}
	for _, c := range cases {
		for _, raw := range []bool{false, true} {
			name := c.Name + map[bool]string{false: " (headers)", true: " (header_map)"}[raw]
			t.Run(name, func(t *testing.T) {
				g := NewWithT(t)
				resp, err := client.Check(context.Background(), grpcCheckRequest(c, raw))
				g.Expect(err).NotTo(HaveOccurred())
				if c.Status == http.StatusOK {
					ok := resp.GetOkResponse()
					g.Expect(ok).NotTo(BeNil(), "denied: %v", resp.GetDeniedResponse())
					h := map[string]string{}
					for _, o := range ok.GetHeaders() {
						h[o.GetHeader().GetKey()] = o.GetHeader().GetValue()
					}
					g.Expect(h).To(HaveKeyWithValue("x-user", c.User))
					g.Expect(h).To(HaveKeyWithValue("x-username", c.User))
					g.Expect(h).To(HaveKeyWithValue("x-auth-method", string(c.AuthMethod)))
					return
				}
				d := resp.GetDeniedResponse()
				g.Expect(d).NotTo(BeNil(), "allowed: %v", resp.GetOkResponse())
				g.Expect(int(d.GetStatus().GetCode())).To(Equal(c.Status))
				reason := ""
				for _, o := range d.GetHeaders() {
					if o.GetHeader().GetKey() == "x-auth-reason" {
						reason = o.GetHeader().GetValue()
					}
				}
				want := string(c.Reason)
				if !raw && repeats(c) && c.Reason == check.ReasonAmbiguousAuthorization {
					want = string(check.ReasonMalformedAuthorization)
				}
				g.Expect(reason).To(Equal(want))
			})
		}
	}
}

// Delegation works from gRPC: the delegate gets an auth request built from
// the gRPC attributes (the client's headers, X-Original-URL and
// X-Original-Method from the check, never the client's own), and its
// answer headers reach the upstream (an allow) or the client (a denial).
func TestGRPCDelegation(t *testing.T) {
	url, last := authserver.StartTestDelegate(t)
	cfg := BasePolicy()
	cfg.Delegate = &policy.DelegateConfig{URL: url}
	store := policy.NewStore(policy.StoreOptions{})
	store.Put(CompileOK(t, cfg))
	client := grpcClient(t, store, authserver.HandlerOptions{Delegator: authserver.NewDelegator(nil)})
	c := authserver.ProxyCase{Method: "POST", Scheme: "https", Host: "registry.example.com", Target: "/api/servers?x=1",
		Header: []string{"Cookie: mcp_gateway_session=good", "X-Original-URL: http://registry.example.com/api/forged", "X-Original-Method: GET"}}

	g := NewWithT(t)
	resp, err := client.Check(context.Background(), grpcCheckRequest(c, false))
	g.Expect(err).NotTo(HaveOccurred())
	ok := resp.GetOkResponse()
	g.Expect(ok).NotTo(BeNil(), "denied: %v", resp.GetDeniedResponse())
	h := map[string]string{}
	for _, o := range ok.GetHeaders() {
		h[o.GetHeader().GetKey()] = o.GetHeader().GetValue()
	}
	g.Expect(h).To(HaveKeyWithValue("x-user", "carol"))
	g.Expect(h).To(HaveKeyWithValue("x-internal-token-registry", "eyJhbGciOiJIUzI1NiJ9.from-upstream.sig"))
	// The delegate set no X-Client-Id nor X-Scopes: a client's are removed.
	g.Expect(ok.GetHeadersToRemove()).To(ContainElements("x-client-id", "x-scopes"))
	g.Expect(ok.GetHeadersToRemove()).NotTo(ContainElement("x-user"))
	seen := http.Header(last())
	g.Expect(seen.Get("X-Original-Url")).To(Equal("https://registry.example.com/api/servers"))
	g.Expect(seen.Values("X-Original-Url")).To(HaveLen(1))
	g.Expect(seen.Get("X-Original-Method")).To(Equal("POST"))
	g.Expect(seen.Get("Cookie")).To(Equal("mcp_gateway_session=good"))
	for k := range seen {
		g.Expect(k).NotTo(HavePrefix(":"))
	}

	// A refusal: the delegate's 401 and its challenge reach the client.
	c.Header = []string{"Cookie: mcp_gateway_session=stale"}
	resp, err = client.Check(context.Background(), grpcCheckRequest(c, false))
	g.Expect(err).NotTo(HaveOccurred())
	d := resp.GetDeniedResponse()
	g.Expect(d.GetStatus().GetCode()).To(BeEquivalentTo(http.StatusUnauthorized))
	var challenges []string
	for _, o := range d.GetHeaders() {
		if o.GetHeader().GetKey() == "www-authenticate" {
			challenges = append(challenges, o.GetHeader().GetValue())
		}
	}
	g.Expect(challenges).To(Equal([]string{`Bearer realm="mcp", resource_metadata="https://registry.example.com/.well-known/oauth-protected-resource"`}))
}
