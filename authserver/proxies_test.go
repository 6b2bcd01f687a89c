package authserver

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	. "github.com/onsi/gomega"

	"github.com/registryauth/registry-auth-operator/authserver/authn"
	"github.com/registryauth/registry-auth-operator/authserver/authn/statictoken"
	"github.com/registryauth/registry-auth-operator/authserver/check"
	. "github.com/registryauth/registry-auth-operator/authserver/internal/policytest"
	"github.com/registryauth/registry-auth-operator/authserver/policy"
)

// The proxy contract: one decision table, written in the proxy's terms
// (the request the client sent), run through the three proxy adapters of
// proxies.go. Every row must get the same answer from all three: the same
// status, identity headers and JSON body, and the same decision (policy,
// normalised path, reason).
//
// Each adapter builds the check request the proxy writes to the auth service,
// as bytes on the wire. Every request is served twice: parsed with
// http.ReadRequest and handed to the Handler with a chosen peer address, and
// sent over a TCP connection to an httptest.Server on 127.0.0.1, so that the
// raw request target (dot segments, percent-encoding, double slashes) reaches
// the handler exactly as the proxy sent it.

// proxyAuthServiceHost is the Host nginx and Traefik send: the auth Service.
const proxyAuthServiceHost = "registry-auth-auth-service.registry-auth-system.svc.cluster.local:8888"

// proxyRow is one client request, proxy-neutral, and the outcome every proxy
// must get for it.
type proxyRow struct {
	name   string
	method string // the client's method; "" is GET
	scheme string // "" is http
	host   string // the client's Host; "" is registry.example.com
	target string // raw path and query, exactly as on the client's request line
	policy string // "namespace/name" when the route names the policy
	header []string
	want   proxyWant
}

// proxyWant is the expected outcome of a row.
type proxyWant struct {
	status int
	user   string       // X-User and X-Username, when allowed
	method check.Method // X-Auth-Method, when allowed
	reason check.Reason // the JSON reason, when denied
}

func (r proxyRow) withDefaults() proxyRow {
	if r.method == "" {
		r.method = http.MethodGet
	}
	if r.scheme == "" {
		r.scheme = "http"
	}
	if r.host == "" {
		r.host = "registry.example.com"
	}
	return r
}

// wireRequest is a check request as a proxy writes it.
type wireRequest struct {
	method string
	target string // the request target, byte for byte
	host   string
	header [][2]string
}

func (w *wireRequest) add(name, value string) { w.header = append(w.header, [2]string{name, value}) }

// addRaw adds "Name: value" lines.
func (w *wireRequest) addRaw(lines []string) {
	for _, l := range lines {
		name, value, ok := strings.Cut(l, ":")
		if !ok {
			panic("bad header line " + l)
		}
		w.add(name, strings.TrimSpace(value))
	}
}

func (w *wireRequest) del(name string) {
	kept := w.header[:0]
	for _, h := range w.header {
		if !strings.EqualFold(h[0], name) {
			kept = append(kept, h)
		}
	}
	w.header = kept
}

func (w *wireRequest) set(name, value string) {
	w.del(name)
	w.add(name, value)
}

func (w wireRequest) bytes() []byte {
	var b bytes.Buffer
	b.WriteString(w.method + " " + w.target + " HTTP/1.1\r\n")
	b.WriteString("Host: " + w.host + "\r\n")
	for _, h := range w.header {
		b.WriteString(h[0] + ": " + h[1] + "\r\n")
	}
	b.WriteString("Connection: close\r\n\r\n")
	return b.Bytes()
}

// proxyAdapter turns a row into the check request one proxy sends. client is
// the client address the proxy saw.
type proxyAdapter struct {
	name  string
	build func(r proxyRow, client string) wireRequest
}

var proxyAdapters = []proxyAdapter{
	{"nginx", nginxCheck},
	{"traefik", traefikCheck},
	{"envoy", envoyCheck},
}

// nginxCheck is ingress-nginx's auth subrequest (auth-url): always GET, the
// original request in X-Original-URL ($scheme://$http_host$request_uri) and
// X-Original-Method, the client address in X-Real-IP and X-Forwarded-For,
// and the client's own headers.
func nginxCheck(r proxyRow, client string) wireRequest {
	r = r.withDefaults()
	target := "/validate"
	if r.policy != "" {
		target += "/" + r.policy
	}
	// The table reads the JSON answers (TestProxyAnswerBodies checks what
	// is sent without it).
	target += "?format=json"
	w := wireRequest{method: http.MethodGet, target: target, host: proxyAuthServiceHost}
	w.addRaw(r.header)
	w.add("X-Original-URL", r.scheme+"://"+r.host+r.target)
	w.add("X-Original-Method", r.method)
	w.add("X-Sent-From", "nginx-ingress-controller")
	w.add("X-Real-IP", client)
	w.add("X-Forwarded-For", client)
	return w
}

// traefikCheck is Traefik's ForwardAuth with trustForwardHeader: false: a GET
// to the configured address carrying the client's headers, with every
// X-Forwarded-* header replaced by Traefik's own (X-Forwarded-For is the
// client address).
func traefikCheck(r proxyRow, client string) wireRequest {
	r = r.withDefaults()
	target := "/forward-auth"
	if r.policy != "" {
		target += "/" + r.policy
	}
	target += "?format=json"
	w := wireRequest{method: http.MethodGet, target: target, host: proxyAuthServiceHost}
	w.addRaw(r.header)
	w.add("X-Forwarded-For", client)
	w.add("X-Forwarded-Method", r.method)
	w.add("X-Forwarded-Proto", r.scheme)
	w.add("X-Forwarded-Port", map[string]string{"http": "80", "https": "443"}[r.scheme])
	w.add("X-Forwarded-Host", r.host)
	w.add("X-Forwarded-Uri", r.target)
	return w
}

// envoyCheck is Envoy's HTTP ext_authz check as Envoy Gateway configures it
// (and Istio's envoyExtAuthzHttp provider with pathPrefix and
// includeRequestHeadersInCheck, kgateway's httpService with pathPrefix and
// headersToForward, and the Gateway API ExternalAuth filter's HTTP form in
// Envoy-based Cilium and agentgateway: the same filter, path_prefix and
// allowed_headers; config/samples has each):
// the original method and Host, the configured path prefix followed by the
// original :path (path and query), the allowed headers (authorization,
// x-authorization, cookie, x-forwarded-for with the client address Envoy
// appended) and Content-Length: 0.
func envoyCheck(r proxyRow, client string) wireRequest {
	r = r.withDefaults()
	target := "/ext-authz" + r.target
	if r.policy != "" {
		target = "/ext-authz-policy/" + r.policy + r.target
	}
	w := wireRequest{method: r.method, target: target, host: r.host}
	w.addRaw(r.header)
	w.add("X-Forwarded-For", client)
	w.add("Content-Length", "0")
	return w
}

// proxyOutcome is what the proxy gets back.
type proxyOutcome struct {
	status int
	header map[string][]string // the headers a proxy acts on
	body   string
}

var proxyOutcomeHeaders = append(identityHeaderNames(), "Www-Authenticate", "Content-Type", "Cache-Control", "X-Auth-Reason")

func proxyOutcomeOf(resp *http.Response) proxyOutcome {
	b, _ := io.ReadAll(resp.Body)
	o := proxyOutcome{status: resp.StatusCode, header: map[string][]string{}, body: string(b)}
	for _, k := range proxyOutcomeHeaders {
		if v := resp.Header.Values(k); len(v) > 0 {
			o.header[k] = v
		}
	}
	return o
}

// observedDecision is what the Observer saw of one decision.
type observedDecision struct {
	reason check.Reason
	policy string
	path   string
}

type decisionRecorder struct {
	mu   sync.Mutex
	last *observedDecision
}

func (d *decisionRecorder) ObserveDecision(dec policy.Decision, _ time.Duration) {
	o := &observedDecision{reason: dec.Reason, path: dec.Path}
	if dec.Policy != nil {
		o.policy = dec.Policy.Key()
	}
	d.mu.Lock()
	d.last = o
	d.mu.Unlock()
}

func (d *decisionRecorder) take() *observedDecision {
	d.mu.Lock()
	defer d.mu.Unlock()
	o := d.last
	d.last = nil
	return o
}

// proxyEnv is a Store with two policies, a Handler served in-process (with a
// decision recorder) and the same Store behind a real listener.
type proxyEnv struct {
	store *policy.Store
	h     *Handler
	obs   *decisionRecorder
	addr  string
}

// proxyOtherPolicy is a second policy, team/other for other.example.com, with its
// own static token and identity.
func proxyOtherPolicy() policy.PolicyConfig {
	return policy.PolicyConfig{
		Namespace: "team",
		Name:      "other",
		Hosts:     []string{"other.example.com"},
		StaticToken: &statictoken.Config{
			Enabled:  true,
			Token:    authn.SecretValue{Value: []byte(TokStatic2)},
			Identity: statictoken.IdentityConfig{Username: "other-user"},
		},
	}
}

func newProxyEnv(t *testing.T, opts HandlerOptions) *proxyEnv {
	t.Helper()
	store := policy.NewStore(policy.StoreOptions{})
	store.Put(CompileOK(t, BasePolicy()))
	store.Put(CompileOK(t, proxyOtherPolicy()))
	return newProxyEnvFor(t, store, opts)
}

func newProxyEnvFor(t *testing.T, store *policy.Store, opts HandlerOptions) *proxyEnv {
	t.Helper()
	if opts.Now == nil {
		opts.Now = func() time.Time { return Now }
	}
	obs := &decisionRecorder{}
	inProcess := opts
	inProcess.Observer = obs
	srv := httptest.NewServer(NewHandler(store, opts))
	t.Cleanup(srv.Close)
	if host, _, _ := net.SplitHostPort(srv.Listener.Addr().String()); host != "127.0.0.1" {
		t.Fatalf("test server listens on %s, want 127.0.0.1", host)
	}
	return &proxyEnv{store: store, h: NewHandler(store, inProcess), obs: obs, addr: srv.Listener.Addr().String()}
}

// parse reads w as the server would.
func (e *proxyEnv) parse(t *testing.T, w wireRequest, peer string) *http.Request {
	t.Helper()
	req, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(w.bytes())))
	if err != nil {
		t.Fatalf("parsing %q: %v", w.bytes(), err)
	}
	if req.RequestURI != w.target {
		t.Fatalf("RequestURI %q, want the raw target %q", req.RequestURI, w.target)
	}
	req.RemoteAddr = peer
	return req
}

// serve hands w to the in-process Handler as coming from peer.
func (e *proxyEnv) serve(t *testing.T, w wireRequest, peer string) (proxyOutcome, *observedDecision) {
	t.Helper()
	req := e.parse(t, w, peer)
	rec := httptest.NewRecorder()
	e.obs.take()
	e.h.ServeHTTP(rec, req)
	return proxyOutcomeOf(rec.Result()), e.obs.take()
}

// exchange sends w over a TCP connection from 127.0.0.1.
func (e *proxyEnv) exchange(t *testing.T, w wireRequest) proxyOutcome {
	t.Helper()
	conn, err := net.DialTimeout("tcp", e.addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close() }()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := conn.Write(w.bytes()); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), &http.Request{Method: w.method})
	if err != nil {
		t.Fatalf("reading the response to %q: %v", w.bytes(), err)
	}
	defer func() { _ = resp.Body.Close() }()
	return proxyOutcomeOf(resp)
}

// proxyTrustedPeer is the proxy's address as the auth service sees it: a pod IP,
// inside frontend.DefaultTrustedProxies.
const proxyTrustedPeer = "10.42.0.17:41234"

func proxyRows(t *testing.T) []proxyRow {
	validCookie := "mcp_gateway_session=" + SessionCookie(t, "alice", []string{"readers"}, Now.Add(-time.Hour))
	expiredCookie := "mcp_gateway_session=" + SessionCookie(t, "alice", []string{"readers"}, Now.Add(-9*time.Hour))
	authz := func(tok string) string { return "Authorization: Bearer " + tok }
	static := proxyWant{status: 200, user: "network-user", method: check.MethodNetworkTrusted}
	session := proxyWant{status: 200, user: "alice", method: check.MethodSession}
	readKey := proxyWant{status: 200, user: "ci-read", method: check.MethodNetworkTrusted}
	writeKey := proxyWant{status: 200, user: "ci-write", method: check.MethodNetworkTrusted}
	deny := func(status int, r check.Reason) proxyWant { return proxyWant{status: status, reason: r} }
	onGateway := deny(401, check.ReasonRegistryCredOnGateway)

	return []proxyRow{
		// Static token on Registry API paths.
		{name: "static token on /api/", target: "/api/servers", header: []string{authz(TokStatic)}, want: static},
		{name: "static token on /v0.1/ with a query", target: "/v0.1/servers?limit=5&cursor=abc", header: []string{authz(TokStatic)}, want: static},
		{name: "static token on POST", method: "POST", target: "/api/servers", header: []string{authz(TokStatic)}, want: static},
		{name: "static token, https, upper-case host with port", scheme: "https", host: "REGISTRY.example.com:8443", target: "/api/servers", header: []string{authz(TokStatic)}, want: static},

		// Static token on gateway paths.
		{name: "static token on gateway path", target: "/mcpserver/mcp", header: []string{authz(TokStatic)}, want: onGateway},
		{name: "static token on /api without slash", target: "/api", header: []string{authz(TokStatic)}, want: onGateway},
		{name: "static token on /apix/", target: "/apix/servers", header: []string{authz(TokStatic)}, want: onGateway},
		{name: "static token on /", target: "/", header: []string{authz(TokStatic)}, want: onGateway},

		// Path tricks: slashes are merged as nginx does; dot segments,
		// which nginx resolves but forwards raw, are refused.
		{name: "dot-dot out of /api/", target: "/api/../mcpserver/mcp", header: []string{authz(TokStatic)}, want: deny(403, check.ReasonBadPath)},
		{name: "encoded dot-dot out of /api/", target: "/api/%2e%2e/mcpserver/mcp", header: []string{authz(TokStatic)}, want: deny(403, check.ReasonBadPath)},
		{name: "upper-case encoded dot-dot out of /api/", target: "/api/%2E%2E/mcpserver/mcp", header: []string{authz(TokStatic)}, want: deny(403, check.ReasonBadPath)},
		{name: "dot-dot and encoded slash out of /api/", target: "/api/..%2fmcpserver/mcp", header: []string{authz(TokStatic)}, want: deny(403, check.ReasonBadPath)},
		{name: "dot-dot into /api/", target: "/mcpserver/../api/servers", header: []string{authz(TokStatic)}, want: deny(403, check.ReasonBadPath)},
		{name: "dot segment inside /api/", target: "/api/./servers", header: []string{authz(TokStatic)}, want: deny(403, check.ReasonBadPath)},
		{name: "double slashes to /api/", target: "//api//servers", header: []string{authz(TokStatic)}, want: static},
		{name: "double slashes to the gateway", target: "//mcpserver//mcp", header: []string{authz(TokStatic)}, want: onGateway},
		{name: "dot-dot above the root", target: "/api/../../mcpserver/mcp", header: []string{authz(TokStatic)}, want: deny(403, check.ReasonBadPath)},
		{name: "encoded NUL", target: "/api/servers%00", header: []string{authz(TokStatic)}, want: deny(403, check.ReasonBadPath)},

		// Query strings never change the decision.
		{name: "query names /api/", target: "/mcpserver/mcp?next=/api/servers", header: []string{authz(TokStatic)}, want: onGateway},
		{name: "query is /api/", target: "/mcpserver/mcp?/api/servers", header: []string{authz(TokStatic)}, want: onGateway},
		{name: "query with dot-dot on a Registry API path", target: "/api/servers?x=/../../mcpserver/mcp", header: []string{authz(TokStatic)}, want: static},

		// API keys and their method limits.
		{name: "read key GET", target: "/api/servers", header: []string{authz(TokReadKey)}, want: readKey},
		{name: "read key HEAD", method: "HEAD", target: "/v0.1/servers", header: []string{authz(TokReadKey)}, want: readKey},
		{name: "read key POST", method: "POST", target: "/api/servers", header: []string{authz(TokReadKey)}, want: deny(403, check.ReasonAPIKeyForbidden)},
		{name: "read key DELETE", method: "DELETE", target: "/api/servers/x", header: []string{authz(TokReadKey)}, want: deny(403, check.ReasonAPIKeyForbidden)},
		{name: "write key POST in its prefix", method: "POST", target: "/api/servers/x", header: []string{authz(TokWriteKey)}, want: writeKey},
		{name: "write key PUT outside its prefix", method: "PUT", target: "/api/agents/x", header: []string{authz(TokWriteKey)}, want: deny(403, check.ReasonAPIKeyForbidden)},
		{name: "write key dot-dot out of its prefix", method: "POST", target: "/api/servers/../agents", header: []string{authz(TokWriteKey)}, want: deny(403, check.ReasonBadPath)},
		{name: "write key dot-dot into its prefix", method: "POST", target: "/api/agents/x/../../servers/foo", header: []string{authz(TokWriteKey)}, want: deny(403, check.ReasonBadPath)},
		{name: "read key on gateway path", target: "/mcpserver/mcp", header: []string{authz(TokReadKey)}, want: onGateway},

		// The session cookie, and the static-token skip.
		{name: "session on gateway path", target: "/mcpserver/mcp", header: []string{"Cookie: " + validCookie}, want: session},
		{name: "session among other cookies", method: "POST", target: "/mcpserver/mcp", header: []string{"Cookie: theme=dark; " + validCookie + "; lang=en"}, want: session},
		{name: "session cookie skips the static token", target: "/api/servers", header: []string{authz(TokStatic), "Cookie: " + validCookie}, want: session},
		{name: "invalid session cookie still skips the static token", target: "/api/servers", header: []string{authz(TokStatic), "Cookie: mcp_gateway_session=garbage"}, want: deny(401, check.ReasonInvalidCredentials)},
		{name: "expired session", target: "/mcpserver/mcp", header: []string{"Cookie: " + expiredCookie}, want: deny(401, check.ReasonSessionInvalid)},

		// No, wrong and oddly sent credentials.
		{name: "no credentials on /api/", target: "/api/servers", want: deny(401, check.ReasonNoCredentials)},
		{name: "no credentials on gateway path", target: "/mcpserver/mcp", want: deny(401, check.ReasonNoCredentials)},
		{name: "wrong token", target: "/api/servers", header: []string{authz(TokStatic2)}, want: deny(401, check.ReasonInvalidCredentials)},
		{name: "Basic authorization", target: "/api/servers", header: []string{"Authorization: Basic dXNlcjpwYXNz"}, want: deny(401, check.ReasonUnsupportedAuthzScheme)},
		{name: "Bearer without token", target: "/api/servers", header: []string{"Authorization: Bearer"}, want: deny(401, check.ReasonMalformedAuthorization)},
		{name: "lower-case bearer", target: "/api/servers", header: []string{"Authorization: bearer " + TokStatic}, want: static},
		{name: "two Authorization headers", target: "/api/servers", header: []string{authz(TokStatic), authz(TokStatic)}, want: deny(401, check.ReasonAmbiguousAuthorization)},
		{name: "two Authorization values joined by a comma", target: "/api/servers", header: []string{authz(TokStatic + ", Bearer " + TokStatic2)}, want: deny(401, check.ReasonMalformedAuthorization)},
		{name: "X-Authorization", target: "/api/servers", header: []string{"X-Authorization: Bearer " + TokStatic}, want: static},
		{name: "X-Authorization on gateway path", target: "/mcpserver/mcp", header: []string{"X-Authorization: Bearer " + TokStatic}, want: onGateway},
		// As upstream (#988): a non-empty X-Authorization carries the
		// registry credential, Authorization may be a backend's.
		// A limited key refuses what could get round its limits.
		{name: "read key GET with X-HTTP-Method-Override", target: "/api/servers", header: []string{authz(TokReadKey), "X-HTTP-Method-Override: DELETE"}, want: deny(403, check.ReasonAPIKeyForbidden)},
		{name: "read key GET with X-HTTP-Method", target: "/api/servers", header: []string{authz(TokReadKey), "X-HTTP-Method: DELETE"}, want: deny(403, check.ReasonAPIKeyForbidden)},
		{name: "read key GET with X-Method-Override", target: "/api/servers", header: []string{authz(TokReadKey), "X-Method-Override: PUT"}, want: deny(403, check.ReasonAPIKeyForbidden)},
		{name: "write key with a path parameter", method: "POST", target: "/api/servers;v=1/x", header: []string{authz(TokWriteKey)}, want: deny(403, check.ReasonAPIKeyForbidden)},
		{name: "write key with ..; into its prefix", method: "POST", target: "/api/servers/..;/agents", header: []string{authz(TokWriteKey)}, want: deny(403, check.ReasonAPIKeyForbidden)},
		{name: "static token is not limited: an override header does not matter", target: "/api/servers", header: []string{authz(TokStatic), "X-HTTP-Method-Override: DELETE"}, want: static},
		{name: "X-Authorization wins over Authorization", target: "/api/servers", header: []string{authz(TokStatic2), "X-Authorization: Bearer " + TokStatic}, want: static},
		{name: "X-Authorization wins even when it fails", target: "/api/servers", header: []string{authz(TokStatic), "X-Authorization: Bearer " + TokStatic2}, want: deny(401, check.ReasonInvalidCredentials)},
		{name: "two X-Authorization headers", target: "/api/servers", header: []string{"X-Authorization: Bearer " + TokStatic, "X-Authorization: Bearer " + TokStatic}, want: deny(401, check.ReasonAmbiguousAuthorization)},

		// Policy selection.
		{name: "unknown host", host: "unknown.example.com", target: "/api/servers", header: []string{authz(TokStatic)}, want: deny(403, check.ReasonNoPolicy)},
		{name: "second policy by host", host: "other.example.com", target: "/api/servers", header: []string{authz(TokStatic2)}, want: proxyWant{status: 200, user: "other-user", method: check.MethodNetworkTrusted}},
		{name: "second policy refuses the first policy's token", host: "other.example.com", target: "/api/servers", header: []string{authz(TokStatic)}, want: deny(401, check.ReasonInvalidCredentials)},
		{name: "named policy, any host", policy: "team/registry", host: "elsewhere.example", target: "/api/servers", header: []string{authz(TokStatic)}, want: static},
		{name: "named policy wins over host", policy: "team/other", target: "/api/servers", header: []string{authz(TokStatic2)}, want: proxyWant{status: 200, user: "other-user", method: check.MethodNetworkTrusted}},
		{name: "named policy refuses another policy's token", policy: "team/other", target: "/api/servers", header: []string{authz(TokStatic)}, want: deny(401, check.ReasonInvalidCredentials)},
		{name: "named policy, dot-dot out of /api/", policy: "team/registry", target: "/api/../mcpserver/mcp", header: []string{authz(TokStatic)}, want: deny(403, check.ReasonBadPath)},
		{name: "named policy, session on gateway path", policy: "team/registry", target: "/mcpserver/mcp?x=1", header: []string{"Cookie: " + validCookie}, want: session},
		{name: "unknown named policy", policy: "team/missing", target: "/api/servers", header: []string{authz(TokStatic)}, want: deny(403, check.ReasonUnknownPolicy)},
	}
}

func TestProxyDecisionTable(t *testing.T) {
	env := newProxyEnv(t, HandlerOptions{})
	rows := proxyRows(t)
	if len(rows) < 30 {
		t.Fatalf("only %d rows", len(rows))
	}
	names := map[string]bool{}
	for _, row := range rows {
		if names[row.name] {
			t.Fatalf("duplicate row %q", row.name)
		}
		names[row.name] = true
		t.Run(row.name, func(t *testing.T) {
			var ref proxyOutcome
			var refDecision *observedDecision
			for i, a := range proxyAdapters {
				w := a.build(row, "192.0.2.10")
				head := w.method == http.MethodHead
				got, dec := env.serve(t, w, proxyTrustedPeer)
				checkProxyWant(t, a.name, row.withDefaults(), got, head)

				// The same bytes over a real connection.
				overTCP := env.exchange(t, w)
				if !equalProxyOutcome(got, overTCP, false) {
					t.Errorf("%s: in-process %+v, over TCP %+v", a.name, got, overTCP)
				}

				if dec == nil {
					t.Fatalf("%s: no decision observed", a.name)
				}
				if i == 0 {
					ref, refDecision = got, dec
					continue
				}
				// Envoy's allows carry no body (its query is the
				// client's: no format=json there).
				if !equalProxyOutcome(withoutBody(ref), withoutBody(got), true) {
					t.Errorf("%s answered differently from %s:\n got  %+v\n want %+v", a.name, proxyAdapters[0].name, got, ref)
				}
				if *dec != *refDecision {
					t.Errorf("%s decided %+v, %s decided %+v", a.name, *dec, proxyAdapters[0].name, *refDecision)
				}
			}
		})
	}
}

// equalProxyOutcome compares two outcomes; headOnly skips the body (a HEAD check
// request has none).
func equalProxyOutcome(a, b proxyOutcome, headOnly bool) bool {
	if a.status != b.status || len(a.header) != len(b.header) {
		return false
	}
	for k, v := range a.header {
		if strings.Join(v, "\x00") != strings.Join(b.header[k], "\x00") {
			return false
		}
	}
	return headOnly || a.body == b.body
}

// withoutBody is an outcome without its body and Content-Type.
func withoutBody(o proxyOutcome) proxyOutcome {
	h := map[string][]string{}
	for k, v := range o.header {
		if k != "Content-Type" {
			h[k] = v
		}
	}
	return proxyOutcome{status: o.status, header: h}
}

func checkProxyWant(t *testing.T, adapter string, row proxyRow, got proxyOutcome, head bool) {
	t.Helper()
	g := NewWithT(t)
	desc := adapter + " " + row.method + " " + row.target
	g.Expect(got.status).To(Equal(row.want.status), desc+": "+got.body)
	g.Expect(got.header["Cache-Control"]).To(Equal([]string{"no-store"}), desc)
	wantReason := string(row.want.reason)
	if row.want.status == http.StatusOK {
		wantReason = got.header["X-Auth-Reason"][0] // an allow reason; checked below through the method
		g.Expect(check.Reason(wantReason).Denies()).To(BeFalse(), desc)
	}
	g.Expect(got.header["X-Auth-Reason"]).To(Equal([]string{wantReason}), desc)
	if adapter == "envoy" && row.want.status == http.StatusOK {
		head = true // no body on Envoy's allows
	}
	if head {
		g.Expect(got.body).To(BeEmpty(), desc)
	} else {
		g.Expect(got.header["Content-Type"]).To(Equal([]string{"application/json"}), desc)
	}
	var body map[string]any
	if !head {
		g.Expect(json.Unmarshal([]byte(got.body), &body)).To(Succeed(), desc)
	}
	if row.want.status == http.StatusOK {
		g.Expect(got.header["X-User"]).To(Equal([]string{row.want.user}), desc)
		g.Expect(got.header["X-Username"]).To(Equal([]string{row.want.user}), desc)
		g.Expect(got.header["X-Auth-Method"]).To(Equal([]string{string(row.want.method)}), desc)
		for _, k := range identityHeaderNames() {
			g.Expect(got.header).To(HaveKey(k), desc)
		}
		g.Expect(got.header).NotTo(HaveKey("Www-Authenticate"), desc)
		if !head {
			g.Expect(body).To(HaveKeyWithValue("valid", true), desc)
			g.Expect(body).To(HaveKeyWithValue("username", row.want.user), desc)
			g.Expect(body).To(HaveKeyWithValue("method", string(row.want.method)), desc)
		}
		return
	}
	for _, k := range identityHeaderNames() {
		g.Expect(got.header).NotTo(HaveKey(k), desc)
	}
	if row.want.status == http.StatusUnauthorized {
		g.Expect(got.header["Www-Authenticate"]).To(Equal([]string{`Bearer realm="registry"`}), desc)
	} else {
		g.Expect(got.header).NotTo(HaveKey("Www-Authenticate"), desc)
	}
	if !head {
		g.Expect(body).To(HaveKeyWithValue("valid", false), desc)
		g.Expect(body).To(HaveKeyWithValue("reason", string(row.want.reason)), desc)
	}
}

// proxyReason is the deny reason of an outcome, "" for an allow.
func proxyReason(o proxyOutcome) string {
	if v := o.header["X-Auth-Reason"]; len(v) == 1 && check.Reason(v[0]).Denies() {
		return v[0]
	}
	return ""
}

var proxyStaticRow = proxyRow{name: "static", target: "/api/servers", header: []string{"Authorization: Bearer " + TokStatic}}

func TestProxyTraefikUntrustedPeer(t *testing.T) {
	g := NewWithT(t)
	env := newProxyEnv(t, HandlerOptions{})
	w := traefikCheck(proxyStaticRow, "192.0.2.10")

	// The control: from the proxy's pod address the token is accepted.
	got, _ := env.serve(t, w, proxyTrustedPeer)
	g.Expect(got.status).To(Equal(http.StatusOK))
	got, _ = env.serve(t, w, "[::ffff:10.42.0.17]:41234")
	g.Expect(got.status).To(Equal(http.StatusOK), "an IPv4-mapped trusted address is trusted")

	for _, peer := range []string{"203.0.113.7:5555", "[2001:db8::1]:5555", "not-an-address"} {
		got, dec := env.serve(t, w, peer)
		g.Expect(got.status).To(Equal(http.StatusForbidden), peer)
		g.Expect(proxyReason(got)).To(Equal(string(check.ReasonUntrustedProxy)), peer)
		g.Expect(got.header).NotTo(HaveKey("X-User"), peer)
		// No policy is consulted (the observer, if told, sees only the
		// refusal).
		if dec != nil {
			g.Expect(*dec).To(Equal(observedDecision{reason: check.ReasonUntrustedProxy}), peer)
		}
	}

	// Over a real connection: the peer is 127.0.0.1, which this handler
	// does not trust.
	strict := newProxyEnv(t, HandlerOptions{TrustedProxies: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}})
	got = strict.exchange(t, w)
	g.Expect(got.status).To(Equal(http.StatusForbidden))
	g.Expect(proxyReason(got)).To(Equal(string(check.ReasonUntrustedProxy)))
	// The other proxies' routes do not depend on X-Forwarded-* and are
	// decided from any peer.
	g.Expect(strict.exchange(t, nginxCheck(proxyStaticRow, "192.0.2.10")).status).To(Equal(http.StatusOK))
	g.Expect(strict.exchange(t, envoyCheck(proxyStaticRow, "192.0.2.10")).status).To(Equal(http.StatusOK))
}

func TestProxyTraefikBadForwardedHeaders(t *testing.T) {
	env := newProxyEnv(t, HandlerOptions{})
	cases := []struct {
		name   string
		mutate func(w *wireRequest)
		status int
		reason check.Reason
	}{
		{"complete", func(*wireRequest) {}, http.StatusOK, ""},
		{"no X-Forwarded-Proto means http", func(w *wireRequest) { w.del("X-Forwarded-Proto") }, http.StatusOK, ""},
		{"no X-Forwarded-Host", func(w *wireRequest) { w.del("X-Forwarded-Host") }, http.StatusForbidden, check.ReasonBadOriginalURL},
		{"empty X-Forwarded-Host", func(w *wireRequest) { w.set("X-Forwarded-Host", "") }, http.StatusForbidden, check.ReasonBadOriginalURL},
		{"no X-Forwarded-Uri", func(w *wireRequest) { w.del("X-Forwarded-Uri") }, http.StatusForbidden, check.ReasonBadOriginalURL},
		{"neither", func(w *wireRequest) { w.del("X-Forwarded-Host"); w.del("X-Forwarded-Uri") }, http.StatusForbidden, check.ReasonBadOriginalURL},
		{"relative X-Forwarded-Uri", func(w *wireRequest) { w.set("X-Forwarded-Uri", "api/servers") }, http.StatusForbidden, check.ReasonBadOriginalURL},
		{"absolute X-Forwarded-Uri", func(w *wireRequest) { w.set("X-Forwarded-Uri", "http://registry.example.com/api/servers") }, http.StatusForbidden, check.ReasonBadOriginalURL},
		{"X-Forwarded-Host with a path", func(w *wireRequest) { w.set("X-Forwarded-Host", "registry.example.com/api") }, http.StatusForbidden, check.ReasonBadOriginalURL},
		{"X-Forwarded-Host with user info", func(w *wireRequest) { w.set("X-Forwarded-Host", "evil@registry.example.com") }, http.StatusForbidden, check.ReasonBadOriginalURL},
		{"X-Forwarded-Proto not http(s)", func(w *wireRequest) { w.set("X-Forwarded-Proto", "ftp") }, http.StatusForbidden, check.ReasonBadOriginalURL},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			w := traefikCheck(proxyStaticRow, "192.0.2.10")
			tc.mutate(&w)
			for _, got := range []proxyOutcome{outcomeOnly(env.serve(t, w, proxyTrustedPeer)), env.exchange(t, w)} {
				g.Expect(got.status).To(Equal(tc.status), got.body)
				if tc.reason != "" {
					g.Expect(proxyReason(got)).To(Equal(string(tc.reason)))
				}
			}
		})
	}
}

func outcomeOnly[A, B any](a A, _ B) A { return a }

func TestProxyEnvoyOriginalPath(t *testing.T) {
	env := newProxyEnv(t, HandlerOptions{})
	cases := []struct {
		target string // the check request's target
		policy string // the policy that decides
		path   string // the original path as decided
		status int
		reason check.Reason
	}{
		// No original part: the original path is "/", a gateway path.
		{"/ext-authz", "team/registry", "/", 401, check.ReasonRegistryCredOnGateway},
		{"/ext-authz?next=/api/servers", "team/registry", "/", 401, check.ReasonRegistryCredOnGateway},
		{"/ext-authz/", "team/registry", "/", 401, check.ReasonRegistryCredOnGateway},
		{"/ext-authz-policy/team/registry/", "team/registry", "/", 401, check.ReasonRegistryCredOnGateway},
		{"/ext-authz-policy/team/registry/?/api/", "team/registry", "/", 401, check.ReasonRegistryCredOnGateway},
		{"/ext-authz/api/servers", "team/registry", "/api/servers", 200, ""},
		{"/ext-authz-policy/team/registry/api/servers?limit=1", "team/registry", "/api/servers", 200, ""},
		// Dot segments in the original path of the named route are refused
		// by the policy the route names: they cannot reach the policy name.
		{"/ext-authz-policy/team/registry/api/../mcpserver/mcp", "team/registry", "", 403, check.ReasonBadPath},
		{"/ext-authz-policy/team/registry/api/%2e%2e/mcpserver/mcp", "team/registry", "", 403, check.ReasonBadPath},
		{"/ext-authz-policy/team/registry/mcpserver/../api/servers", "team/registry", "", 403, check.ReasonBadPath},
		{"/ext-authz-policy/team/registry//api//servers", "team/registry", "/api/servers", 200, ""},
		{"/ext-authz-policy/team/other/../registry/api/servers", "team/other", "", 403, check.ReasonBadPath},
		{"/ext-authz-policy/team/other/%2e%2e/registry/api/servers", "team/other", "", 403, check.ReasonBadPath},
		{"/ext-authz/../validate/team/registry", "team/registry", "", 403, check.ReasonBadPath},
	}
	for _, tc := range cases {
		t.Run(tc.target, func(t *testing.T) {
			g := NewWithT(t)
			w := wireRequest{method: http.MethodGet, target: tc.target, host: "registry.example.com"}
			w.add("Authorization", "Bearer "+TokStatic)
			got, dec := env.serve(t, w, proxyTrustedPeer)
			g.Expect(got.status).To(Equal(tc.status), got.body)
			g.Expect(proxyReason(got)).To(Equal(string(tc.reason)))
			g.Expect(dec).NotTo(BeNil())
			g.Expect(dec.policy).To(Equal(tc.policy))
			g.Expect(dec.path).To(Equal(tc.path))
			overTCP := env.exchange(t, w)
			g.Expect(equalProxyOutcome(got, overTCP, false)).To(BeTrue(), "over TCP: %+v", overTCP)
		})
	}
}

// TestProxyEnvoyRawTarget: the Envoy routes read the original path from the
// raw request target, so it must begin with the route prefix exactly as
// written. Envoy always sends origin-form targets; a target in another form
// is refused rather than decided on a made-up URL. The store selects its only
// policy whatever the host (standalone mode), so a made-up host cannot hide
// a made-up path.
func TestProxyEnvoyRawTarget(t *testing.T) {
	store := policy.NewStore(policy.StoreOptions{SelectOnlyPolicy: true})
	store.Put(CompileOK(t, BasePolicy()))
	env := newProxyEnvFor(t, store, HandlerOptions{})
	for _, target := range []string{
		"http://api/ext-authz/servers",          // absolute-form
		"http://registry.example.com/ext-authz", // absolute-form
		"/ext-auth%7a/api/servers",              // the prefix percent-encoded
		"/ext-authz%2fapi/servers",              // an encoded slash after the prefix
		"http://api/ext-authz-policy/team/registry/api/servers",
		"/ext-authz-polic%79/team/registry/api/servers",
	} {
		t.Run(target, func(t *testing.T) {
			g := NewWithT(t)
			w := wireRequest{method: http.MethodGet, target: target, host: "registry.example.com"}
			w.add("Authorization", "Bearer "+TokStatic)
			for _, got := range []proxyOutcome{outcomeOnly(env.serve(t, w, proxyTrustedPeer)), env.exchange(t, w)} {
				g.Expect(got.status).To(Equal(http.StatusForbidden), got.body)
				g.Expect(proxyReason(got)).To(Equal(string(check.ReasonBadOriginalURL)))
			}
		})
	}
	// The control: the same store decides an origin-form target.
	w := wireRequest{method: http.MethodGet, target: "/ext-authz/api/servers", host: "any.example"}
	w.add("Authorization", "Bearer "+TokStatic)
	NewWithT(t).Expect(env.exchange(t, w).status).To(Equal(http.StatusOK))
	// A target net/http cannot parse (bad percent-encoding) never reaches
	// the handler; the check is still denied, with 400.
	t.Run("bad percent-encoding", func(t *testing.T) {
		g := NewWithT(t)
		w := wireRequest{method: http.MethodGet, target: "/ext-authz/api/%zz/servers", host: "registry.example.com"}
		w.add("Authorization", "Bearer "+TokStatic)
		got := env.exchange(t, w)
		g.Expect(got.status).To(Equal(http.StatusBadRequest))
		g.Expect(got.header).NotTo(HaveKey("X-User"))
	})
}

func TestProxyUnknownRoutes(t *testing.T) {
	env := newProxyEnv(t, HandlerOptions{})
	for _, target := range []string{
		"/", "/validatex", "/validate/team", "/validate/team/registry/x",
		"/forward-authx", "/forward-authx/team/registry", "/forward-auth/team", "/forward-auth/team/registry/x",
		"/ext-authzx", "/ext-authzx/api/servers", "/Ext-Authz/api/servers", "/ext-authz-policyx/team/registry/api/servers",
		"/ext-authz-policy", "/ext-authz-policy/", "/ext-authz-policy/team", "/ext-authz-policy/team/registry",
		"/ext-authz-policy//registry/api/servers", "/ext-authz-policy/team//api/servers",
		"/healthz", "/metrics",
	} {
		t.Run(target, func(t *testing.T) {
			g := NewWithT(t)
			// A request any adapter would accept, were the route known.
			w := wireRequest{method: http.MethodGet, target: target, host: "registry.example.com"}
			w.add("Authorization", "Bearer "+TokStatic)
			w.add("X-Original-URL", "http://registry.example.com/api/servers")
			w.add("X-Forwarded-Host", "registry.example.com")
			w.add("X-Forwarded-Uri", "/api/servers")
			for _, got := range []proxyOutcome{outcomeOnly(env.serve(t, w, proxyTrustedPeer)), env.exchange(t, w)} {
				g.Expect(got.status).To(Equal(http.StatusNotFound), got.body)
				g.Expect(got.header).NotTo(HaveKey("X-User"))
			}
		})
	}
}

// TestProxyClientIP checks which address the failure limit counts for each
// proxy: X-Real-IP from nginx, the last X-Forwarded-For entry from Traefik and
// Envoy, believed only from a trusted peer.
func TestProxyClientIP(t *testing.T) {
	const (
		clientA = "198.51.100.1"
		clientB = "198.51.100.2"
	)
	wrong := proxyRow{name: "wrong", target: "/api/servers", header: []string{"Authorization: Bearer " + TokStatic2}}

	// The client tried to pick its address by sending X-Real-IP and
	// X-Forwarded-For itself. nginx overwrites both; Traefik
	// (trustForwardHeader: false) drops both and sets X-Forwarded-For; Envoy
	// does not pass X-Real-IP (not in headersToExtAuth) and appends the
	// address it saw to X-Forwarded-For.
	spoofed := func(adapter string, w *wireRequest, client string) {
		if adapter == "envoy" {
			w.set("X-Forwarded-For", "203.0.113.200, "+client)
		}
	}

	for _, a := range proxyAdapters {
		t.Run(a.name, func(t *testing.T) {
			g := NewWithT(t)
			env := newProxyEnv(t, HandlerOptions{
				Failures: NewFailureLimiter(FailureLimitOptions{MaxFailures: 2, Window: time.Hour}),
			})
			build := func(r proxyRow, client string) wireRequest {
				w := a.build(r, client)
				spoofed(a.name, &w, client)
				return w
			}
			send := func(r proxyRow, client, peer string) proxyOutcome {
				got, _ := env.serve(t, build(r, client), peer)
				return got
			}

			// The address the handler takes, directly.
			g.Expect(env.h.clientIP(env.parse(t, build(proxyStaticRow, clientA), proxyTrustedPeer))).To(Equal(clientA))
			g.Expect(env.h.clientIP(env.parse(t, build(proxyStaticRow, clientA), "203.0.113.5:999"))).To(Equal("203.0.113.5"))

			// Two failures from A use up A's attempts, not B's.
			for range 2 {
				got := send(wrong, clientA, proxyTrustedPeer)
				g.Expect(got.status).To(Equal(http.StatusUnauthorized), got.body)
				g.Expect(proxyReason(got)).To(Equal(string(check.ReasonInvalidCredentials)))
			}
			got := send(proxyStaticRow, clientA, proxyTrustedPeer)
			g.Expect(got.status).To(Equal(http.StatusForbidden), got.body)
			g.Expect(proxyReason(got)).To(Equal(string(check.ReasonTooManyFailures)))
			g.Expect(send(proxyStaticRow, clientB, proxyTrustedPeer).status).To(Equal(http.StatusOK))
			// Another proxy pod relaying A is still A.
			g.Expect(proxyReason(send(proxyStaticRow, clientA, "10.42.3.9:5000"))).To(Equal(string(check.ReasonTooManyFailures)))

			if a.name == "traefik" {
				// From an untrusted peer nothing is decided, so nothing
				// is counted either.
				for range 3 {
					g.Expect(proxyReason(send(wrong, clientB, "203.0.113.5:999"))).To(Equal(string(check.ReasonUntrustedProxy)))
				}
				g.Expect(send(proxyStaticRow, clientB, proxyTrustedPeer).status).To(Equal(http.StatusOK))
				return
			}
			// From an untrusted peer the headers are not believed: the
			// peer is the client, whatever address it claims.
			for range 2 {
				g.Expect(send(wrong, "192.0.2.50", "203.0.113.5:999").status).To(Equal(http.StatusUnauthorized))
			}
			got = send(proxyStaticRow, "192.0.2.51", "203.0.113.5:999")
			g.Expect(proxyReason(got)).To(Equal(string(check.ReasonTooManyFailures)), "a new claimed address from the same peer")
			g.Expect(send(proxyStaticRow, "192.0.2.50", proxyTrustedPeer).status).To(Equal(http.StatusOK), "the claimed address was never counted")
		})
	}
}

// TestProxyTraefikForwardedProto: X-Forwarded-Proto is pasted in front of
// "://" + X-Forwarded-Host + X-Forwarded-Uri, so only a scheme is accepted:
// http and https in any case, and ws and wss, which Traefik sends for
// WebSocket upgrades (decided as http and https). Anything else is refused
// with bad_original_url; a value holding "://" would otherwise choose the host
// and path the decision is made on.
func TestProxyTraefikForwardedProto(t *testing.T) {
	env := newProxyEnv(t, HandlerOptions{})
	validCookie := "mcp_gateway_session=" + SessionCookie(t, "alice", []string{"readers"}, Now.Add(-time.Hour))
	static := proxyStaticRow
	gateway := proxyRow{name: "static token on the gateway", target: "/mcpserver/mcp", header: []string{"Authorization: Bearer " + TokStatic}}
	session := proxyRow{name: "session on the gateway", target: "/mcpserver/mcp", header: []string{"Cookie: " + validCookie}}
	cases := []struct {
		proto  string
		row    proxyRow
		status int
		reason check.Reason
		path   string // the path decided on; "" when nothing was decided
	}{
		{"http", static, http.StatusOK, "", "/api/servers"},
		{"https", static, http.StatusOK, "", "/api/servers"},
		{"HTTPS", static, http.StatusOK, "", "/api/servers"},
		{"Http", gateway, http.StatusUnauthorized, check.ReasonRegistryCredOnGateway, "/mcpserver/mcp"},
		{"ws", session, http.StatusOK, "", "/mcpserver/mcp"},
		{"wss", session, http.StatusOK, "", "/mcpserver/mcp"},
		{"WSS", session, http.StatusOK, "", "/mcpserver/mcp"},
		{"Ws", static, http.StatusOK, "", "/api/servers"},
		{"wss", gateway, http.StatusUnauthorized, check.ReasonRegistryCredOnGateway, "/mcpserver/mcp"},
		// Injection: the client asked for /mcpserver/mcp, where the static
		// token does not count.
		{"http://registry.example.com/api/servers?", gateway, http.StatusForbidden, check.ReasonBadOriginalURL, ""},
		{"https://registry.example.com/api/servers#", gateway, http.StatusForbidden, check.ReasonBadOriginalURL, ""},
		{"http://other.example.com/api/servers?", session, http.StatusForbidden, check.ReasonBadOriginalURL, ""},
		{"http:", static, http.StatusForbidden, check.ReasonBadOriginalURL, ""},
		{"https,http", static, http.StatusForbidden, check.ReasonBadOriginalURL, ""},
		{"ftp", static, http.StatusForbidden, check.ReasonBadOriginalURL, ""},
		{"wss2", session, http.StatusForbidden, check.ReasonBadOriginalURL, ""},
		{"h2", static, http.StatusForbidden, check.ReasonBadOriginalURL, ""},
	}
	for _, tc := range cases {
		t.Run(tc.proto+" "+tc.row.name, func(t *testing.T) {
			g := NewWithT(t)
			w := traefikCheck(tc.row, "192.0.2.10")
			w.set("X-Forwarded-Proto", tc.proto)
			got, dec := env.serve(t, w, proxyTrustedPeer)
			g.Expect(got.status).To(Equal(tc.status), got.body)
			g.Expect(proxyReason(got)).To(Equal(string(tc.reason)))
			g.Expect(dec).NotTo(BeNil())
			g.Expect(dec.path).To(Equal(tc.path))
			if tc.reason == check.ReasonBadOriginalURL {
				g.Expect(got.header).NotTo(HaveKey("X-User"))
				g.Expect(dec.policy).To(BeEmpty())
			}
			overTCP := env.exchange(t, w)
			g.Expect(equalProxyOutcome(got, overTCP, false)).To(BeTrue(), "over TCP: %+v", overTCP)
		})
	}
}

// identityHeaderNames are the identity headers' canonical names.
func identityHeaderNames() []string {
	names := make([]string, check.NumIdentityHeaders)
	for i := range names {
		names[i] = check.IdentityHeader(i)
	}
	return names
}

// What each front-end sends in the body. nginx reads only the head of an
// auth answer and cannot reuse a connection whose answer has a body, so its
// answers have none (Content-Length: 0) unless ?format=json asks for it;
// the client's Accept header, which nginx passes on, does not. Traefik and
// Envoy hand a denial to the client as it is: denials keep the JSON reason.
// X-Auth-Reason names the reason on every answer.
func TestProxyAnswerBodies(t *testing.T) {
	env := newProxyEnv(t, HandlerOptions{})
	allow := proxyRow{name: "allow", target: "/api/servers", header: []string{"Authorization: Bearer " + TokStatic}}
	unauthorized := proxyRow{name: "401", target: "/api/servers"}
	forbidden := proxyRow{name: "403", target: "/api/servers", method: "DELETE", header: []string{"Authorization: Bearer " + TokReadKey}}
	stripQuery := func(w wireRequest) wireRequest {
		w.target = strings.TrimSuffix(w.target, "?format=json")
		return w
	}
	withAccept := func(w wireRequest) wireRequest {
		w.add("Accept", "application/json")
		return w
	}
	type want struct {
		allowBody, denyBody bool
	}
	for _, tc := range []struct {
		name  string
		build func(proxyRow, string) wireRequest
		want  want
	}{
		{"nginx", func(r proxyRow, c string) wireRequest { return stripQuery(nginxCheck(r, c)) }, want{false, false}},
		{"nginx, client sends Accept: application/json", func(r proxyRow, c string) wireRequest { return withAccept(stripQuery(nginxCheck(r, c))) }, want{false, false}},
		{"nginx ?format=json", nginxCheck, want{true, true}},
		{"traefik", func(r proxyRow, c string) wireRequest { return stripQuery(traefikCheck(r, c)) }, want{false, true}},
		{"traefik ?format=json", traefikCheck, want{true, true}},
		{"envoy", envoyCheck, want{false, true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, row := range []struct {
				row    proxyRow
				status int
				reason string
				body   bool
			}{
				{allow, 200, string(check.ReasonAllowedStaticToken), tc.want.allowBody},
				{unauthorized, 401, string(check.ReasonNoCredentials), tc.want.denyBody},
				{forbidden, 403, string(check.ReasonAPIKeyForbidden), tc.want.denyBody},
			} {
				g := NewWithT(t)
				w := tc.build(row.row, "192.0.2.10")
				conn, err := net.DialTimeout("tcp", env.addr, 5*time.Second)
				g.Expect(err).NotTo(HaveOccurred())
				_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
				_, err = conn.Write(w.bytes())
				g.Expect(err).NotTo(HaveOccurred())
				resp, err := http.ReadResponse(bufio.NewReader(conn), &http.Request{Method: w.method})
				g.Expect(err).NotTo(HaveOccurred())
				b, _ := io.ReadAll(resp.Body)
				_ = resp.Body.Close()
				_ = conn.Close()
				g.Expect(resp.StatusCode).To(Equal(row.status), row.row.name)
				g.Expect(resp.Header.Get("X-Auth-Reason")).To(Equal(row.reason), row.row.name)
				if row.body {
					g.Expect(resp.Header.Get("Content-Type")).To(Equal("application/json"), row.row.name)
					g.Expect(string(b)).To(HavePrefix(`{"valid":`), row.row.name)
					continue
				}
				g.Expect(b).To(BeEmpty(), row.row.name)
				g.Expect(resp.ContentLength).To(BeZero(), row.row.name)
				g.Expect(resp.Header.Values("Content-Length")).To(Equal([]string{"0"}), row.row.name)
				g.Expect(resp.Header.Get("Content-Type")).To(BeEmpty(), row.row.name)
			}
		})
	}
}
