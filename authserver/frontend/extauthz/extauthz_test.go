package extauthz_test

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	. "github.com/onsi/gomega"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"

	"github.com/registryauth/registry-auth-operator/authserver"
	"github.com/registryauth/registry-auth-operator/authserver/authn"
	"github.com/registryauth/registry-auth-operator/authserver/check"
	"github.com/registryauth/registry-auth-operator/authserver/frontend/extauthz"
	"github.com/registryauth/registry-auth-operator/authserver/hoptoken"
	. "github.com/registryauth/registry-auth-operator/authserver/internal/policytest"
	"github.com/registryauth/registry-auth-operator/authserver/policy"
)

// Served is a gRPC server of the Authorization service on a real 127.0.0.1
// listener, and a client connected to it as Envoy connects: HTTP/2 without
// TLS.
type served struct {
	client authv3.AuthorizationClient
	health healthpb.HealthClient
	conn   *grpc.ClientConn
}

func serve(t testing.TB, store *policy.Store, opts authserver.HandlerOptions, dialOpts ...grpc.DialOption) *served {
	t.Helper()
	if opts.Now == nil {
		opts.Now = func() time.Time { return Now }
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv, _ := extauthz.NewServer(extauthz.NewService(authserver.NewChecker(store, opts), opts.TrustedProxies))
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(srv.Stop)
	conn, err := grpc.NewClient(ln.Addr().String(), append([]grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}, dialOpts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return &served{client: authv3.NewAuthorizationClient(conn), health: healthpb.NewHealthClient(conn), conn: conn}
}

func baseStore(t testing.TB, cfgs ...policy.PolicyConfig) *policy.Store {
	store := policy.NewStore(policy.StoreOptions{})
	store.Put(CompileOK(t, BasePolicy()))
	for _, c := range cfgs {
		store.Put(CompileOK(t, c))
	}
	return store
}

// envoyRequest is a CheckRequest as Envoy's ext_authz filter builds it
// (source/extensions/filters/common/ext_authz/check_request_utils.cc,
// setHttpRequest): the method, scheme, host (:authority) and path (:path,
// with the query) of the original request, and every request header with a
// lower-case name, the pseudo-headers included, values of a repeated header
// joined with ",".
func envoyRequest(method, host, path string, hdr ...string) *authv3.CheckRequest {
	h := map[string]string{":authority": host, ":method": method, ":path": path, ":scheme": "http",
		"user-agent": "curl/8.5.0", "x-forwarded-proto": "http", "x-request-id": "8d5e8c3a-6c3c-4f2b-9a3a-0c1d2e3f4a5b"}
	for i := 0; i+1 < len(hdr); i += 2 {
		k := strings.ToLower(hdr[i])
		if v, ok := h[k]; ok {
			h[k] = v + "," + hdr[i+1]
		} else {
			h[k] = hdr[i+1]
		}
	}
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Source: &authv3.AttributeContext_Peer{Address: &corev3.Address{Address: &corev3.Address_SocketAddress{
			SocketAddress: &corev3.SocketAddress{Address: "192.0.2.10", PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 51234}}}}},
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Id: "1234", Method: method, Headers: h, Path: path, Host: host, Scheme: "http", Protocol: "HTTP/1.1",
		}},
	}}
}

func headerMap(opts []*corev3.HeaderValueOption) map[string]string {
	m := map[string]string{}
	for _, o := range opts {
		m[o.GetHeader().GetKey()] = o.GetHeader().GetValue()
	}
	return m
}

func TestCheckAllowAndDeny(t *testing.T) {
	s := serve(t, baseStore(t), authserver.HandlerOptions{})
	ctx := context.Background()

	t.Run("allowed: the identity headers overwrite the client's, a client's hop token is removed", func(t *testing.T) {
		g := NewWithT(t)
		resp, err := s.client.Check(ctx, envoyRequest("GET", "registry.example.com", "/api/servers?limit=5",
			"Authorization", "Bearer "+TokStatic, "X-User", "admin", "X-Internal-Token-Registry", "forged"))
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(resp.GetStatus().GetCode()).To(Equal(int32(codes.OK)))
		ok := resp.GetOkResponse()
		g.Expect(ok).NotTo(BeNil())
		h := headerMap(ok.GetHeaders())
		g.Expect(h).To(HaveKeyWithValue("x-user", "network-user"))
		g.Expect(h).To(HaveKeyWithValue("x-username", "network-user"))
		g.Expect(h).To(HaveKeyWithValue("x-auth-method", "network-trusted"))
		g.Expect(h).To(HaveKey("x-groups"))
		g.Expect(h).To(HaveKey("x-scopes"))
		g.Expect(h).To(HaveKey("x-client-id"))
		for _, o := range ok.GetHeaders() {
			g.Expect(o.GetAppendAction()).To(Equal(corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD), o.GetHeader().GetKey())
		}
		g.Expect(ok.GetHeadersToRemove()).To(ConsistOf("x-internal-token-registry"))
	})

	t.Run("no credentials: 401 with the challenge, the reason and the JSON body", func(t *testing.T) {
		g := NewWithT(t)
		resp, err := s.client.Check(ctx, envoyRequest("GET", "registry.example.com", "/mcpserver/mcp"))
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(resp.GetStatus().GetCode()).To(Equal(int32(codes.Unauthenticated)))
		d := resp.GetDeniedResponse()
		g.Expect(d.GetStatus().GetCode()).To(BeEquivalentTo(http.StatusUnauthorized))
		h := headerMap(d.GetHeaders())
		g.Expect(h).To(HaveKeyWithValue("www-authenticate", `Bearer realm="registry"`))
		g.Expect(h).To(HaveKeyWithValue("x-auth-reason", "no_credentials"))
		g.Expect(h).To(HaveKeyWithValue("content-type", "application/json"))
		g.Expect(h).To(HaveKeyWithValue("cache-control", "no-store"))
		var body map[string]any
		g.Expect(json.Unmarshal([]byte(d.GetBody()), &body)).To(Succeed())
		g.Expect(body).To(HaveKeyWithValue("reason", "no_credentials"))
	})

	t.Run("a static token on a gateway path: 401, not allowed", func(t *testing.T) {
		g := NewWithT(t)
		resp, err := s.client.Check(ctx, envoyRequest("POST", "registry.example.com", "/mcpserver/mcp", "Authorization", "Bearer "+TokStatic))
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(resp.GetDeniedResponse().GetStatus().GetCode()).To(BeEquivalentTo(http.StatusUnauthorized))
		g.Expect(headerMap(resp.GetDeniedResponse().GetHeaders())).To(HaveKeyWithValue("x-auth-reason", string(check.ReasonRegistryCredOnGateway)))
	})

	t.Run("a read-only key on POST: 403 without a challenge", func(t *testing.T) {
		g := NewWithT(t)
		resp, err := s.client.Check(ctx, envoyRequest("POST", "registry.example.com", "/api/servers", "Authorization", "Bearer "+TokReadKey))
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(resp.GetStatus().GetCode()).To(Equal(int32(codes.PermissionDenied)))
		d := resp.GetDeniedResponse()
		g.Expect(d.GetStatus().GetCode()).To(BeEquivalentTo(http.StatusForbidden))
		g.Expect(headerMap(d.GetHeaders())).NotTo(HaveKey("www-authenticate"))
		g.Expect(headerMap(d.GetHeaders())).To(HaveKeyWithValue("x-auth-reason", string(check.ReasonAPIKeyForbidden)))
	})

	t.Run("the policy named in the context extension, whatever the host", func(t *testing.T) {
		g := NewWithT(t)
		req := envoyRequest("GET", "elsewhere.example", "/api/servers", "Authorization", "Bearer "+TokStatic)
		g.Expect(outcome(t, s, req)).To(Equal("403 no_policy"))
		req.Attributes.ContextExtensions = map[string]string{extauthz.PolicyExtension: "team/registry"}
		resp, err := s.client.Check(ctx, req)
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(resp.GetOkResponse()).NotTo(BeNil())
		req.Attributes.ContextExtensions = map[string]string{extauthz.PolicyExtension: "team/missing"}
		g.Expect(outcome(t, s, req)).To(Equal("403 unknown_policy"))
	})

	t.Run("what Envoy sends that cannot be believed: bad_original_url", func(t *testing.T) {
		g := NewWithT(t)
		for name, mutate := range map[string]func(*authv3.AttributeContext_HttpRequest){
			"no http attributes":        nil,
			"a host with a slash":       func(h *authv3.AttributeContext_HttpRequest) { h.Host = "registry.example.com/api" },
			"a host with a query":       func(h *authv3.AttributeContext_HttpRequest) { h.Host = "registry.example.com?x" },
			"an empty host":             func(h *authv3.AttributeContext_HttpRequest) { h.Host = "" },
			"a path without a slash":    func(h *authv3.AttributeContext_HttpRequest) { h.Path = "*" },
			"a scheme pasted in a path": func(h *authv3.AttributeContext_HttpRequest) { h.Scheme = "http://registry.example.com/api/servers?" },
			"a method with a space":     func(h *authv3.AttributeContext_HttpRequest) { h.Method = "GET /api" },
			"user information":          func(h *authv3.AttributeContext_HttpRequest) { h.Host = "u@registry.example.com" },
		} {
			req := envoyRequest("GET", "registry.example.com", "/api/servers", "Authorization", "Bearer "+TokStatic)
			if mutate == nil {
				req.Attributes.Request.Http = nil
			} else {
				mutate(req.Attributes.Request.Http)
			}
			g.Expect(outcome(t, s, req)).To(Equal("403 bad_original_url"), name)
		}
	})

	t.Run("raw headers (encode_raw_headers): repeated headers stay apart", func(t *testing.T) {
		g := NewWithT(t)
		req := envoyRequest("GET", "registry.example.com", "/api/servers")
		req.Attributes.Request.Http.Headers = nil
		req.Attributes.Request.Http.HeaderMap = &corev3.HeaderMap{Headers: []*corev3.HeaderValue{
			{Key: ":path", RawValue: []byte("/api/servers")},
			{Key: "authorization", RawValue: []byte("Bearer " + TokStatic)},
		}}
		g.Expect(outcome(t, s, req)).To(Equal("200 static_token"))
		req.Attributes.Request.Http.HeaderMap.Headers = append(req.Attributes.Request.Http.HeaderMap.Headers,
			&corev3.HeaderValue{Key: "authorization", RawValue: []byte("Bearer " + TokStatic)})
		g.Expect(outcome(t, s, req)).To(Equal("401 ambiguous_authorization"))
	})

	t.Run("health: SERVING for the server and the Authorization service", func(t *testing.T) {
		g := NewWithT(t)
		for _, svc := range []string{"", extauthz.ServiceName} {
			resp, err := s.health.Check(ctx, &healthpb.HealthCheckRequest{Service: svc})
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(resp.GetStatus()).To(Equal(healthpb.HealthCheckResponse_SERVING))
		}
	})
}

// outcome is "status reason" of a check.
func outcome(t testing.TB, s *served, req *authv3.CheckRequest) string {
	t.Helper()
	resp, err := s.client.Check(context.Background(), req)
	if err != nil {
		t.Fatalf("Check: %v", err)
	}
	if ok := resp.GetOkResponse(); ok != nil {
		if resp.GetStatus().GetCode() != int32(codes.OK) {
			t.Fatalf("an OK response with status %v", resp.GetStatus())
		}
		return "200 " + allowReason(ok)
	}
	d := resp.GetDeniedResponse()
	h := headerMap(d.GetHeaders())
	return strings.TrimSpace(strings.Join([]string{strconv.Itoa(int(d.GetStatus().GetCode())), h["x-auth-reason"]}, " "))
}

// allowReason tells the allow reasons of the tests apart by identity.
func allowReason(ok *authv3.OkHttpResponse) string {
	h := headerMap(ok.GetHeaders())
	switch {
	case h["x-auth-method"] == "network-trusted" && h["x-user"] == "network-user":
		return "static_token"
	case h["x-auth-method"] == "network-trusted":
		return "api_key"
	case h["x-auth-method"] != "":
		return h["x-auth-method"]
	}
	return "no-identity"
}

// The registry's hop token goes with an allowed check as it does over HTTP.
func TestCheckRegistryToken(t *testing.T) {
	g := NewWithT(t)
	cfg := BasePolicy()
	cfg.Name = "hop"
	cfg.Hosts = []string{"hop.example.com"}
	cfg.RegistryToken = &hoptoken.Config{SecretKey: &authn.SecretValue{Value: []byte("registry-secret-key-0f1e2d3c4b5a69788796a5b4c3d2e1f0")}, Mode: hoptoken.ModeAlways}
	s := serve(t, baseStore(t, cfg), authserver.HandlerOptions{})
	resp, err := s.client.Check(context.Background(), envoyRequest("GET", "hop.example.com", "/api/servers", "Authorization", "Bearer "+TokStatic))
	g.Expect(err).NotTo(HaveOccurred())
	ok := resp.GetOkResponse()
	g.Expect(ok).NotTo(BeNil())
	tok := headerMap(ok.GetHeaders())["x-internal-token-registry"]
	g.Expect(strings.Count(tok, ".")).To(Equal(2), "a JWT")
	g.Expect(ok.GetHeadersToRemove()).To(BeEmpty())

	// Asked for on a gateway path with X-Registry-Api-Auth, as over HTTP;
	// not minted on a gateway path without.
	cookie := "mcp_gateway_session=" + SessionCookie(t, "alice", []string{"readers"}, Now.Add(-time.Hour))
	resp, err = s.client.Check(context.Background(), envoyRequest("GET", "hop.example.com", "/mcpserver/mcp", "Cookie", cookie))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(headerMap(resp.GetOkResponse().GetHeaders())).NotTo(HaveKey("x-internal-token-registry"))
	g.Expect(resp.GetOkResponse().GetHeadersToRemove()).To(ConsistOf("x-internal-token-registry"))
	resp, err = s.client.Check(context.Background(), envoyRequest("GET", "hop.example.com", "/mcpserver/mcp", "Cookie", cookie, "X-Registry-Api-Auth", "1"))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(headerMap(resp.GetOkResponse().GetHeaders())).To(HaveKey("x-internal-token-registry"))
}

// Keepalive pings as often as Envoy may send them (connection_keepalive
// interval of a few seconds) do not get the connection closed with
// too_many_pings, as grpc-go's default enforcement (5 minutes) would.
func TestKeepalivePingsAllowed(t *testing.T) {
	if testing.Short() {
		t.Skip("takes 12 s")
	}
	g := NewWithT(t)
	s := serve(t, baseStore(t), authserver.HandlerOptions{},
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: extauthz.KeepaliveMinTime, Timeout: 2 * time.Second, PermitWithoutStream: true}))
	req := envoyRequest("GET", "registry.example.com", "/api/servers", "Authorization", "Bearer "+TokStatic)
	g.Expect(outcome(t, s, req)).To(Equal("200 static_token"))
	time.Sleep(12 * time.Second) // two pings without streams
	g.Expect(outcome(t, s, req)).To(Equal("200 static_token"))
	g.Expect(s.conn.GetState().String()).To(Equal("READY"))
}

// MCP clients over gRPC: the public path passes with the identity headers
// and the hop token removed (Envoy would otherwise pass a client's own), and
// a 401 carries the policy's resource_metadata challenge.
func TestCheckPublicPathAndChallenge(t *testing.T) {
	g := NewWithT(t)
	cfg := BasePolicy()
	cfg.PublicPaths = []string{"/.well-known/oauth-protected-resource"}
	cfg.ProtectedResource = &policy.ProtectedResourceConfig{MetadataURL: "https://{host}/.well-known/oauth-protected-resource{path}", Scopes: []string{"mcp:tools"}}
	store := policy.NewStore(policy.StoreOptions{})
	store.Put(CompileOK(t, cfg))
	s := serve(t, store, authserver.HandlerOptions{})

	resp, err := s.client.Check(context.Background(), envoyRequest("GET", "registry.example.com", "/.well-known/oauth-protected-resource/mcpserver/x/mcp", "X-User", "admin"))
	g.Expect(err).NotTo(HaveOccurred())
	ok := resp.GetOkResponse()
	g.Expect(ok).NotTo(BeNil())
	g.Expect(ok.GetHeaders()).To(BeEmpty())
	g.Expect(ok.GetHeadersToRemove()).To(ConsistOf("x-user", "x-username", "x-client-id", "x-scopes", "x-groups", "x-auth-method", "x-internal-token-registry"))

	resp, err = s.client.Check(context.Background(), envoyRequest("POST", "registry.example.com", "/mcpserver/x/mcp"))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(headerMap(resp.GetDeniedResponse().GetHeaders())).To(HaveKeyWithValue("www-authenticate",
		`Bearer realm="registry", resource_metadata="https://registry.example.com/.well-known/oauth-protected-resource/mcpserver/x/mcp", scope="mcp:tools"`))
}
