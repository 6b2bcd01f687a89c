package authserver

import (
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/registryauth/registry-auth-operator/authserver/authtest"
	"github.com/registryauth/registry-auth-operator/authserver/check"
	. "github.com/registryauth/registry-auth-operator/authserver/internal/policytest"
	"github.com/registryauth/registry-auth-operator/authserver/policy"
)

// testDelegate is a small stand-in for the upstream auth server's
// /validate, written for these tests: it answers by the credential it gets
// and records what it was sent.
type testDelegate struct {
	srv   *httptest.Server
	mu    sync.Mutex
	seen  []http.Header
	hold  chan struct{} // when not nil, every answer waits for it
	calls atomic.Int64
}

func newTestDelegate(t *testing.T) *testDelegate {
	d := &testDelegate{}
	d.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		d.calls.Add(1)
		d.mu.Lock()
		d.seen = append(d.seen, r.Header.Clone())
		hold := d.hold
		d.mu.Unlock()
		if hold != nil {
			<-hold
		}
		switch {
		case strings.Contains(r.Header.Get("Cookie"), "mcp_gateway_session=good"):
			w.Header().Set("X-User", "carol")
			w.Header().Set("X-Username", "carol")
			w.Header().Set("X-Auth-Method", "session_cookie")
			w.Header().Set("X-Groups", "mcp-registry-admin")
			w.Header().Set("X-Internal-Token-Registry", "eyJhbGciOiJIUzI1NiJ9.from-upstream.sig")
			w.Header().Set("X-Internal-Token", "eyJhbGciOiJIUzI1NiJ9.mcp-proxy.sig")
			w.Header().Set("Set-Cookie", "not=relayed")
			_, _ = w.Write([]byte(`{"valid":true}`))
		case strings.Contains(r.Header.Get("Cookie"), "mcp_gateway_session=throttled"):
			w.Header().Set("X-RateLimit-Throttled", "1")
			w.Header().Set("Retry-After", "30")
			w.WriteHeader(http.StatusForbidden)
		case strings.Contains(r.Header.Get("Cookie"), "mcp_gateway_session=broken"):
			w.WriteHeader(http.StatusInternalServerError)
		default:
			w.Header().Set("WWW-Authenticate", `Bearer realm="mcp", resource_metadata="https://registry.example.com/.well-known/oauth-protected-resource"`)
			w.WriteHeader(http.StatusUnauthorized)
		}
	}))
	t.Cleanup(d.srv.Close)
	return d
}

func (d *testDelegate) last() http.Header {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.seen[len(d.seen)-1]
}

// delegatingPolicy is BasePolicy with the session key left out (today's
// registry keeps sessions in its own store) and d as the delegate.
func delegatingPolicy(t *testing.T, url string, mutate ...func(*policy.DelegateConfig)) *policy.Store {
	cfg := BasePolicy()
	cfg.Session = nil
	dc := &policy.DelegateConfig{URL: url, Timeout: 500 * time.Millisecond}
	for _, m := range mutate {
		m(dc)
	}
	cfg.Delegate = dc
	store := policy.NewStore(policy.StoreOptions{})
	store.Put(CompileOK(t, cfg))
	return store
}

func delegateRequest(path string, hdr ...string) *http.Request {
	r := httptest.NewRequest(http.MethodGet, "/validate", nil)
	r.RemoteAddr = "10.0.0.1:5555"
	r.Header.Set("X-Original-URL", "http://registry.example.com"+path)
	r.Header.Set("X-Original-Method", "GET")
	for i := 0; i+1 < len(hdr); i += 2 {
		r.Header.Add(hdr[i], hdr[i+1])
	}
	return r
}

func TestDelegation(t *testing.T) {
	d := newTestDelegate(t)
	m := NewMetrics()
	reg := prometheus.NewRegistry()
	NewWithT(t).Expect(m.Register(reg)).To(Succeed())
	rec := &decisionRecorder{}
	h := NewHandler(delegatingPolicy(t, d.srv.URL+"/validate"), HandlerOptions{
		Observer:  observers{m, rec},
		Delegator: NewDelegator(m.ObserveDelegated),
		Failures:  NewFailureLimiter(FailureLimitOptions{MaxFailures: 3, Window: time.Minute}),
	})
	serve := func(r *http.Request) *httptest.ResponseRecorder {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w
	}

	t.Run("a session of the registry's store: allowed by the delegate, its headers relayed", func(t *testing.T) {
		g := NewWithT(t)
		w := serve(delegateRequest("/api/servers", "Cookie", "mcp_gateway_session=good", "X-Registry-Api-Auth", "1"))
		g.Expect(w.Code).To(Equal(http.StatusOK))
		g.Expect(w.Header().Get("X-User")).To(Equal("carol"))
		g.Expect(w.Header().Get("X-Auth-Method")).To(Equal("session_cookie"))
		g.Expect(w.Header().Get("X-Internal-Token-Registry")).To(Equal("eyJhbGciOiJIUzI1NiJ9.from-upstream.sig"))
		g.Expect(w.Header().Get("X-Internal-Token")).To(Equal("eyJhbGciOiJIUzI1NiJ9.mcp-proxy.sig"))
		g.Expect(w.Header()).NotTo(HaveKey("Set-Cookie"), "only the answer headers a proxy acts on are relayed")
		g.Expect(rec.take().reason).To(Equal(check.ReasonDelegatedAllowed))
		// The delegate got the auth request as the proxy sent it.
		seen := d.last()
		g.Expect(seen.Get("Cookie")).To(Equal("mcp_gateway_session=good"))
		g.Expect(seen.Get("X-Original-Url")).To(Equal("http://registry.example.com/api/servers"))
		g.Expect(seen.Get("X-Registry-Api-Auth")).To(Equal("1"))
	})

	t.Run("a session the delegate refuses: its 401 and challenge relayed", func(t *testing.T) {
		g := NewWithT(t)
		w := serve(delegateRequest("/mcpserver/mcp", "Cookie", "mcp_gateway_session=stale"))
		g.Expect(w.Code).To(Equal(http.StatusUnauthorized))
		g.Expect(w.Header().Values("Www-Authenticate")).To(Equal([]string{`Bearer realm="mcp", resource_metadata="https://registry.example.com/.well-known/oauth-protected-resource"`}))
		g.Expect(rec.take().reason).To(Equal(check.ReasonDelegatedUnauthorized))
	})

	t.Run("the delegate's throttling: 403 and its rate-limit headers", func(t *testing.T) {
		g := NewWithT(t)
		w := serve(delegateRequest("/mcpserver/mcp", "Cookie", "mcp_gateway_session=throttled"))
		g.Expect(w.Code).To(Equal(http.StatusForbidden))
		g.Expect(w.Header().Get("X-Ratelimit-Throttled")).To(Equal("1"))
		g.Expect(w.Header().Get("Retry-After")).To(Equal("30"))
	})

	t.Run("a 500 of the delegate is a 403 here, never a 500 that nginx passes on", func(t *testing.T) {
		g := NewWithT(t)
		w := serve(delegateRequest("/api/servers", "Cookie", "mcp_gateway_session=broken"))
		g.Expect(w.Code).To(Equal(http.StatusForbidden))
		g.Expect(reasonOf(w)).To(Equal(check.ReasonDelegateUnavailable))
	})

	t.Run("a token of the upstream auth server (iss mcp-auth-server) goes to the delegate", func(t *testing.T) {
		g := NewWithT(t)
		calls := d.calls.Load()
		tok := authtest.UnsignedJWT(map[string]any{"iss": "mcp-auth-server", "aud": "mcp-registry", "sub": "dave"})
		w := serve(delegateRequest("/api/servers", "Authorization", "Bearer "+tok))
		g.Expect(w.Code).To(Equal(http.StatusUnauthorized))
		g.Expect(d.calls.Load()).To(Equal(calls + 1))
		g.Expect(d.last().Get("Authorization")).To(Equal("Bearer " + tok))
	})

	t.Run("static credentials stay here", func(t *testing.T) {
		g := NewWithT(t)
		calls := d.calls.Load()
		w := serve(delegateRequest("/api/servers", "Authorization", "Bearer "+TokStatic))
		g.Expect(w.Code).To(Equal(http.StatusOK))
		g.Expect(w.Header().Get("X-User")).To(Equal("network-user"))
		// A wrong one is refused here, counted as a failure, not delegated.
		for range 3 {
			g.Expect(serve(delegateRequest("/api/servers", "Authorization", "Bearer "+TokStatic2)).Code).To(Equal(http.StatusUnauthorized))
		}
		g.Expect(reasonOf(serve(delegateRequest("/api/servers", "Authorization", "Bearer "+TokStatic)))).To(Equal(check.ReasonTooManyFailures))
		g.Expect(d.calls.Load()).To(Equal(calls))
	})

	t.Run("delegated denials are no failed attempts", func(t *testing.T) {
		g := NewWithT(t)
		r := func() *http.Request {
			r := delegateRequest("/api/servers", "Cookie", "mcp_gateway_session=stale", "X-Real-IP", "192.0.2.77")
			return r
		}
		for range 5 {
			g.Expect(serve(r()).Code).To(Equal(http.StatusUnauthorized))
		}
		ok := delegateRequest("/api/servers", "Authorization", "Bearer "+TokStatic, "X-Real-IP", "192.0.2.77")
		g.Expect(serve(ok).Code).To(Equal(http.StatusOK))
	})

	g := NewWithT(t)
	counts := gathered(t, reg, "registry_auth_delegated_checks_total")
	g.Expect(counts).To(HaveKeyWithValue("outcome=allowed,policy=team/registry", 1.0))
	g.Expect(counts).To(HaveKeyWithValue("outcome=bad_response,policy=team/registry", 1.0))
	g.Expect(counts["outcome=denied,policy=team/registry"]).To(BeNumerically(">=", 7.0))
}

// observers tells several observers.
type observers []Observer

func (o observers) ObserveDecision(d policy.Decision, elapsed time.Duration) {
	for _, x := range o {
		x.ObserveDecision(d, elapsed)
	}
}

// A delegate that is down, slow or busy gets the request refused, in time.
func TestDelegateUnavailable(t *testing.T) {
	t.Run("down", func(t *testing.T) {
		g := NewWithT(t)
		l, err := net.Listen("tcp", "127.0.0.1:0")
		g.Expect(err).NotTo(HaveOccurred())
		addr := l.Addr().String()
		g.Expect(l.Close()).To(Succeed())
		h := NewHandler(delegatingPolicy(t, "http://"+addr+"/validate"), HandlerOptions{Delegator: NewDelegator(nil)})
		w := httptest.NewRecorder()
		h.ServeHTTP(w, delegateRequest("/api/servers", "Cookie", "mcp_gateway_session=good"))
		g.Expect(w.Code).To(Equal(http.StatusForbidden))
		g.Expect(reasonOf(w)).To(Equal(check.ReasonDelegateUnavailable))
	})

	t.Run("slow", func(t *testing.T) {
		g := NewWithT(t)
		d := newTestDelegate(t)
		d.hold = make(chan struct{})
		defer close(d.hold)
		var outcome atomic.Value
		h := NewHandler(delegatingPolicy(t, d.srv.URL, func(c *policy.DelegateConfig) { c.Timeout = 200 * time.Millisecond }),
			HandlerOptions{Delegator: NewDelegator(func(_, o string) { outcome.Store(o) })})
		w := httptest.NewRecorder()
		start := time.Now()
		h.ServeHTTP(w, delegateRequest("/api/servers", "Cookie", "mcp_gateway_session=good"))
		g.Expect(time.Since(start)).To(BeNumerically("<", 2*time.Second))
		g.Expect(w.Code).To(Equal(http.StatusForbidden))
		g.Expect(reasonOf(w)).To(Equal(check.ReasonDelegateUnavailable))
		g.Expect(outcome.Load()).To(Equal(DelegateTimeout))
	})

	t.Run("overloaded", func(t *testing.T) {
		g := NewWithT(t)
		d := newTestDelegate(t)
		d.hold = make(chan struct{})
		var outcomes sync.Map
		h := NewHandler(delegatingPolicy(t, d.srv.URL, func(c *policy.DelegateConfig) { c.MaxConcurrent = 1; c.Timeout = 5 * time.Second }),
			HandlerOptions{Delegator: NewDelegator(func(_, o string) { outcomes.Store(o, true) })})
		first := make(chan int, 1)
		go func() {
			w := httptest.NewRecorder()
			h.ServeHTTP(w, delegateRequest("/api/servers", "Cookie", "mcp_gateway_session=good"))
			first <- w.Code
		}()
		g.Eventually(d.calls.Load).Should(Equal(int64(1)), "the first check is at the delegate")
		w := httptest.NewRecorder()
		start := time.Now()
		h.ServeHTTP(w, delegateRequest("/api/servers", "Cookie", "mcp_gateway_session=good"))
		g.Expect(time.Since(start)).To(BeNumerically("<", time.Second), "refused at once, not queued")
		g.Expect(w.Code).To(Equal(http.StatusForbidden))
		_, over := outcomes.Load(DelegateOverloaded)
		g.Expect(over).To(BeTrue())
		close(d.hold)
		g.Eventually(first).Should(Receive(Equal(http.StatusOK)))
	})
}

// With gatewayPaths every path outside the Registry API goes to the
// delegate, static credentials included; Registry API paths stay here.
func TestDelegateGatewayPaths(t *testing.T) {
	g := NewWithT(t)
	d := newTestDelegate(t)
	h := NewHandler(delegatingPolicy(t, d.srv.URL, func(c *policy.DelegateConfig) { c.GatewayPaths = true }),
		HandlerOptions{Delegator: NewDelegator(nil)})
	w := httptest.NewRecorder()
	h.ServeHTTP(w, delegateRequest("/mcpserver/mcp", "Cookie", "mcp_gateway_session=good"))
	g.Expect(w.Code).To(Equal(http.StatusOK))
	g.Expect(w.Header().Get("X-Internal-Token")).NotTo(BeEmpty())
	calls := d.calls.Load()
	w = httptest.NewRecorder()
	h.ServeHTTP(w, delegateRequest("/mcpserver/mcp", "Authorization", "Bearer "+TokStatic))
	g.Expect(w.Code).To(Equal(http.StatusUnauthorized), "the delegate refuses static tokens on MCP paths too")
	g.Expect(d.calls.Load()).To(Equal(calls + 1))
	w = httptest.NewRecorder()
	h.ServeHTTP(w, delegateRequest("/api/servers", "Authorization", "Bearer "+TokStatic))
	g.Expect(w.Code).To(Equal(http.StatusOK))
	g.Expect(d.calls.Load()).To(Equal(calls+1), "Registry API paths are decided here")
}

// Without a delegator (or a delegate), what would be delegated is refused.
func TestDelegateNotConfigured(t *testing.T) {
	g := NewWithT(t)
	d := newTestDelegate(t)
	h := NewHandler(delegatingPolicy(t, d.srv.URL), HandlerOptions{})
	w := httptest.NewRecorder()
	h.ServeHTTP(w, delegateRequest("/api/servers", "Cookie", "mcp_gateway_session=good"))
	g.Expect(w.Code).To(Equal(http.StatusForbidden))
	g.Expect(reasonOf(w)).To(Equal(check.ReasonDelegate))
	g.Expect(d.calls.Load()).To(BeZero())
}
