package nginxtest

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"

	. "github.com/onsi/gomega"
)

// authCall is what the fake auth service saw for one subrequest.
type authCall struct {
	Method           string
	URI              string
	Host             string
	Header           http.Header
	Body             []byte
	ContentLength    int64
	TransferEncoding []string
}

// fakeAuth is a stand-in for the real auth service, only here to prove the
// harness: the client's X-Test-Auth header picks the answer.
type fakeAuth struct {
	srv      *httptest.Server
	mu       sync.Mutex
	calls    []authCall
	newConns atomic.Int64
}

const (
	testAuthHeader  = "X-Test-Auth"
	wwwAuthenticate = `Bearer realm="http://auth.example.test/token",service="registry"`
	deniedBody      = "denied by fake auth"
	forbiddenBody   = "forbidden by fake auth"
)

func startFakeAuth(t *testing.T) *fakeAuth {
	t.Helper()
	fa := &fakeAuth{}
	fa.srv = httptest.NewUnstartedServer(http.HandlerFunc(fa.serve))
	fa.srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			fa.newConns.Add(1)
		}
	}
	fa.srv.Start()
	t.Cleanup(fa.srv.Close)
	return fa
}

func (fa *fakeAuth) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	fa.mu.Lock()
	fa.calls = append(fa.calls, authCall{
		Method:           r.Method,
		URI:              r.RequestURI,
		Host:             r.Host,
		Header:           r.Header.Clone(),
		Body:             body,
		ContentLength:    r.ContentLength,
		TransferEncoding: r.TransferEncoding,
	})
	fa.mu.Unlock()

	h := w.Header()
	switch r.Header.Get(testAuthHeader) {
	case "allow":
		h.Set("X-User", "alice")
		h.Set("X-Username", "alice")
		h.Set("X-Client-Id", "ci-bot")
		h.Set("X-Scopes", "repository:library/alpine:pull,push")
		h.Set("X-Groups", "devs,ops")
		h.Set("X-Auth-Method", "basic")
		h.Set("Set-Cookie", "session=abc123; Path=/; HttpOnly")
		w.WriteHeader(http.StatusOK)
	case "allow-minimal":
		h.Set("X-User", "alice")
		w.WriteHeader(http.StatusOK)
	case "allow-204":
		h.Set("X-User", "bob")
		w.WriteHeader(http.StatusNoContent)
	case "forbid":
		w.WriteHeader(http.StatusForbidden)
		_, _ = io.WriteString(w, forbiddenBody)
	case "error":
		w.WriteHeader(http.StatusInternalServerError)
		_, _ = io.WriteString(w, "boom")
	case "notfound":
		http.NotFound(w, r)
	case "redirect":
		http.Redirect(w, r, "http://login.example.test/", http.StatusFound)
	default:
		h.Set("WWW-Authenticate", wwwAuthenticate)
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = io.WriteString(w, deniedBody)
	}
}

func (fa *fakeAuth) url(path string) string { return fa.srv.URL + path }

func (fa *fakeAuth) Calls() []authCall {
	fa.mu.Lock()
	defer fa.mu.Unlock()
	return append([]authCall(nil), fa.calls...)
}

func newRequest(t *testing.T, method, target string, body io.Reader, auth string) *http.Request {
	t.Helper()
	req, err := http.NewRequest(method, target, body)
	if err != nil {
		t.Fatal(err)
	}
	if auth != "" {
		req.Header.Set(testAuthHeader, auth)
	}
	return req
}

func TestAuthSubrequestMirrorsIngressNginx(t *testing.T) {
	t.Parallel()
	g := NewWithT(t)
	fa := startFakeAuth(t)
	n := Start(t, Options{AuthURL: fa.url("/validate")})

	const uri = "/v2/library/alpine/manifests/latest?n=10&last=a%2Fb&x=%20y"
	req := newRequest(t, http.MethodGet, "http://registry.example.test"+uri, nil, "allow")
	req.Header.Set("Authorization", "Basic YWxpY2U6c2VjcmV0")
	req.Header.Set("Cookie", "a=1; b=2")
	req.Header.Set("X-Forwarded-For", "203.0.113.7")
	req.Header.Set("X-Forwarded-Proto", "https")
	req.Header.Set("X-Request-ID", "req-123")

	status, echo, body, err := n.Do(req)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(status).To(Equal(http.StatusOK), string(body))
	g.Expect(echo).NotTo(BeNil())

	calls := fa.Calls()
	g.Expect(calls).To(HaveLen(1))
	c := calls[0]
	// auth_request subrequests are GET; proxy_pass $target with a URI
	// replaces the request URI by the auth URL's.
	g.Expect(c.Method).To(Equal(http.MethodGet))
	g.Expect(c.URI).To(Equal("/validate"))
	// Host is the auth URL's hostname, without the port (authreq).
	g.Expect(c.Host).To(Equal("127.0.0.1"))
	g.Expect(c.Header.Get("X-Original-URL")).To(Equal("http://registry.example.test" + uri))
	g.Expect(c.Header.Get("X-Original-Method")).To(Equal(http.MethodGet))
	g.Expect(c.Header.Get("X-Sent-From")).To(Equal("nginx-ingress-controller"))
	g.Expect(c.Header.Get("X-Real-IP")).To(Equal("127.0.0.1"))
	// The client's X-Forwarded-For is replaced by $remote_addr.
	g.Expect(c.Header.Values("X-Forwarded-For")).To(Equal([]string{"127.0.0.1"}))
	g.Expect(c.Header.Get("X-Auth-Request-Redirect")).To(Equal(uri))
	g.Expect(c.Header.Get("X-Request-ID")).To(Equal("req-123"))
	// The client's own headers are passed through...
	g.Expect(c.Header.Get("Authorization")).To(Equal("Basic YWxpY2U6c2VjcmV0"))
	g.Expect(c.Header.Get("Cookie")).To(Equal("a=1; b=2"))
	g.Expect(c.Header.Get(testAuthHeader)).To(Equal("allow"))
	// ...except X-Forwarded-Proto, which is cleared.
	g.Expect(c.Header).NotTo(HaveKey("X-Forwarded-Proto"))
	g.Expect(c.Header).NotTo(HaveKey("Content-Length"))
	g.Expect(c.Body).To(BeEmpty())

	// The upstream got the original request.
	g.Expect(echo.Method).To(Equal(http.MethodGet))
	g.Expect(echo.URI).To(Equal(uri))
	g.Expect(echo.Host).To(Equal("registry.example.test"))
	g.Expect(echo.Header.Get("Authorization")).To(Equal("Basic YWxpY2U6c2VjcmV0"))
	g.Expect(echo.Header.Get("X-Real-IP")).To(Equal("127.0.0.1"))
	g.Expect(echo.Header.Get("X-Forwarded-For")).To(Equal("127.0.0.1"))
	g.Expect(echo.Header.Get("X-Original-Forwarded-For")).To(Equal("203.0.113.7"))
	g.Expect(echo.Header.Get("X-Forwarded-Host")).To(Equal("registry.example.test"))
	g.Expect(echo.Header.Get("X-Forwarded-Proto")).To(Equal("http"))
	g.Expect(echo.Header.Get("X-Request-ID")).To(Equal("req-123"))
	g.Expect(n.UpstreamHits()).To(Equal(int64(1)))
}

func TestRequestIDIsGeneratedAndShared(t *testing.T) {
	t.Parallel()
	g := NewWithT(t)
	fa := startFakeAuth(t)
	n := Start(t, Options{AuthURL: fa.url("/validate")})

	status, echo, _, err := n.Do(newRequest(t, http.MethodGet, "http://registry.example.test/v2/", nil, "allow"))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(status).To(Equal(http.StatusOK))
	id := echo.Header.Get("X-Request-ID")
	g.Expect(id).To(MatchRegexp(`^[0-9a-f]{32}$`))
	g.Expect(fa.Calls()).To(HaveLen(1))
	g.Expect(fa.Calls()[0].Header.Get("X-Request-ID")).To(Equal(id))
}

func TestAuthResponseHeadersAreCopiedToUpstream(t *testing.T) {
	t.Parallel()
	g := NewWithT(t)
	fa := startFakeAuth(t)
	n := Start(t, Options{AuthURL: fa.url("/validate")})

	req := newRequest(t, http.MethodGet, "http://registry.example.test/v2/", nil, "allow")
	resp, err := n.Client().Do(withURL(t, req, n.URL()+"/v2/"))
	g.Expect(err).NotTo(HaveOccurred())
	resp.Body.Close()
	g.Expect(resp.StatusCode).To(Equal(http.StatusOK))
	// auth_request_set $auth_cookie $upstream_http_set_cookie; add_header Set-Cookie.
	g.Expect(resp.Header.Values("Set-Cookie")).To(Equal([]string{"session=abc123; Path=/; HttpOnly"}))

	status, echo, _, err := n.Do(newRequest(t, http.MethodGet, "http://registry.example.test/v2/", nil, "allow"))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(status).To(Equal(http.StatusOK))
	g.Expect(echo.Header.Values("X-User")).To(Equal([]string{"alice"}))
	g.Expect(echo.Header.Values("X-Username")).To(Equal([]string{"alice"}))
	g.Expect(echo.Header.Values("X-Client-Id")).To(Equal([]string{"ci-bot"}))
	g.Expect(echo.Header.Values("X-Scopes")).To(Equal([]string{"repository:library/alpine:pull,push"}))
	g.Expect(echo.Header.Values("X-Groups")).To(Equal([]string{"devs,ops"}))
	g.Expect(echo.Header.Values("X-Auth-Method")).To(Equal([]string{"basic"}))
}

func TestCustomResponseHeaderList(t *testing.T) {
	t.Parallel()
	g := NewWithT(t)
	fa := startFakeAuth(t)
	n := Start(t, Options{AuthURL: fa.url("/validate"), ResponseHeaders: []string{"X-User"}})
	g.Expect(n.Config()).To(ContainSubstring("auth_request_set $authHeader0 $upstream_http_x_user;"))
	g.Expect(n.Config()).NotTo(ContainSubstring("$authHeader1"))

	status, echo, _, err := n.Do(newRequest(t, http.MethodGet, "http://registry.example.test/v2/", nil, "allow"))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(status).To(Equal(http.StatusOK))
	g.Expect(echo.Header.Values("X-User")).To(Equal([]string{"alice"}))
	// Not in the list: never copied.
	g.Expect(echo.Header).NotTo(HaveKey("X-Auth-Method"))
	g.Expect(echo.Header).NotTo(HaveKey("X-Groups"))
}

func TestClientCannotSpoofAuthResponseHeaders(t *testing.T) {
	t.Parallel()
	g := NewWithT(t)
	fa := startFakeAuth(t)
	n := Start(t, Options{AuthURL: fa.url("/validate")})

	req := newRequest(t, http.MethodGet, "http://registry.example.test/v2/", nil, "allow-minimal")
	req.Header.Set("X-User", "mallory")
	req.Header.Set("X-Groups", "admins")
	req.Header.Set("X-Auth-Method", "spoofed")
	status, echo, _, err := n.Do(req)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(status).To(Equal(http.StatusOK))
	g.Expect(echo.Header.Values("X-User")).To(Equal([]string{"alice"}))
	// proxy_set_header '<name>' $authHeaderN drops the client's header even
	// when the auth service did not send one (empty value: not sent).
	g.Expect(echo.Header).NotTo(HaveKey("X-Groups"))
	g.Expect(echo.Header).NotTo(HaveKey("X-Auth-Method"))
	// The auth service itself does see what the client sent.
	g.Expect(fa.Calls()[0].Header.Get("X-User")).To(Equal("mallory"))
}

func TestAny2xxFromAuthAllows(t *testing.T) {
	t.Parallel()
	g := NewWithT(t)
	fa := startFakeAuth(t)
	n := Start(t, Options{AuthURL: fa.url("/validate")})

	status, echo, _, err := n.Do(newRequest(t, http.MethodGet, "http://registry.example.test/v2/", nil, "allow-204"))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(status).To(Equal(http.StatusOK))
	g.Expect(echo).NotTo(BeNil())
	g.Expect(echo.Header.Values("X-User")).To(Equal([]string{"bob"}))
}

func TestDeniedRequestsNeverReachUpstream(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, auth string
		status     int
		authBody   string
	}{
		{name: "401 without credentials", auth: "", status: http.StatusUnauthorized, authBody: deniedBody},
		{name: "401 explicit", auth: "deny", status: http.StatusUnauthorized, authBody: deniedBody},
		{name: "403", auth: "forbid", status: http.StatusForbidden, authBody: forbiddenBody},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			g := NewWithT(t)
			fa := startFakeAuth(t)
			n := Start(t, Options{AuthURL: fa.url("/validate")})

			req := newRequest(t, http.MethodGet, "http://registry.example.test/v2/", nil, tc.auth)
			resp, err := n.Client().Do(withURL(t, req, n.URL()+"/v2/"))
			g.Expect(err).NotTo(HaveOccurred())
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			g.Expect(resp.StatusCode).To(Equal(tc.status))
			g.Expect(resp.Header.Get(echoMarker)).To(BeEmpty())
			// nginx answers with its own error page, not the auth body.
			g.Expect(string(body)).NotTo(ContainSubstring(tc.authBody))
			g.Expect(string(body)).To(ContainSubstring(fmt.Sprintf("<title>%d ", tc.status)))
			if tc.status == http.StatusUnauthorized {
				// ngx_http_auth_request copies WWW-Authenticate on 401.
				g.Expect(resp.Header.Get("WWW-Authenticate")).To(Equal(wwwAuthenticate))
			} else {
				g.Expect(resp.Header.Get("WWW-Authenticate")).To(BeEmpty())
			}
			g.Expect(resp.Header.Values("Set-Cookie")).To(BeEmpty())

			status, echo, _, err := n.Do(newRequest(t, http.MethodPut, "http://registry.example.test/v2/x/blobs/uploads/", strings.NewReader("data"), tc.auth))
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(status).To(Equal(tc.status))
			g.Expect(echo).To(BeNil())

			g.Expect(fa.Calls()).To(HaveLen(2))
			g.Expect(n.UpstreamHits()).To(BeZero())
		})
	}
}

func TestAuthFailuresBecome500(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ name, auth string }{
		{name: "auth 500", auth: "error"},
		{name: "auth 404", auth: "notfound"},
		{name: "auth 302", auth: "redirect"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			g := NewWithT(t)
			fa := startFakeAuth(t)
			n := Start(t, Options{AuthURL: fa.url("/validate")})

			status, echo, body, err := n.Do(newRequest(t, http.MethodGet, "http://registry.example.test/v2/", nil, tc.auth))
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(status).To(Equal(http.StatusInternalServerError), string(body))
			g.Expect(echo).To(BeNil())
			g.Expect(fa.Calls()).To(HaveLen(1))
			g.Expect(n.UpstreamHits()).To(BeZero())
		})
	}

	t.Run("auth unreachable", func(t *testing.T) {
		t.Parallel()
		g := NewWithT(t)
		l, err := net.Listen("tcp", "127.0.0.1:0")
		g.Expect(err).NotTo(HaveOccurred())
		addr := l.Addr().String()
		g.Expect(l.Close()).To(Succeed())

		n := Start(t, Options{AuthURL: "http://" + addr + "/validate"})
		status, echo, _, err := n.Do(newRequest(t, http.MethodGet, "http://registry.example.test/v2/", nil, "allow"))
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(status).To(Equal(http.StatusInternalServerError))
		g.Expect(echo).To(BeNil())
		g.Expect(n.UpstreamHits()).To(BeZero())
		g.Expect(n.ErrorLog()).To(ContainSubstring("connect() failed"))
	})
}

func TestRequestBodyGoesToUpstreamOnly(t *testing.T) {
	t.Parallel()
	big := bytes.Repeat([]byte("0123456789abcdef"), 64<<10/16) // > client_body_buffer_size: temp file
	for _, tc := range []struct {
		name    string
		body    []byte
		chunked bool
	}{
		{name: "small", body: []byte("hello registry")},
		{name: "chunked", body: []byte("chunk chunk chunk"), chunked: true},
		{name: "64KiB via client_body_temp_path", body: big},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			g := NewWithT(t)
			fa := startFakeAuth(t)
			n := Start(t, Options{AuthURL: fa.url("/validate")})

			var r io.Reader = bytes.NewReader(tc.body)
			if tc.chunked {
				r = io.MultiReader(r) // unknown length: Go sends it chunked
			}
			req := newRequest(t, http.MethodPost, "http://registry.example.test/v2/x/blobs/uploads/?digest=sha256:abc", r, "allow")
			if tc.chunked {
				g.Expect(req.ContentLength).To(BeZero())
			}
			status, echo, body, err := n.Do(req)
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(status).To(Equal(http.StatusOK), string(body))
			g.Expect(echo.Method).To(Equal(http.MethodPost))
			g.Expect(echo.URI).To(Equal("/v2/x/blobs/uploads/?digest=sha256:abc"))
			g.Expect(echo.Body).To(Equal(string(tc.body)))
			g.Expect(echo.Header.Values("X-User")).To(Equal([]string{"alice"}))

			calls := fa.Calls()
			g.Expect(calls).To(HaveLen(1))
			g.Expect(calls[0].Method).To(Equal(http.MethodGet))
			g.Expect(calls[0].Header.Get("X-Original-Method")).To(Equal(http.MethodPost))
			g.Expect(calls[0].Body).To(BeEmpty())
			g.Expect(calls[0].ContentLength).To(BeZero())
			g.Expect(calls[0].TransferEncoding).To(BeEmpty())
			g.Expect(calls[0].Header).NotTo(HaveKey("Content-Length"))
		})
	}
}

func TestProxyBodySize(t *testing.T) {
	t.Parallel()
	payload := bytes.Repeat([]byte("x"), 2<<20)

	t.Run("default 1m rejects before auth", func(t *testing.T) {
		t.Parallel()
		g := NewWithT(t)
		fa := startFakeAuth(t)
		n := Start(t, Options{AuthURL: fa.url("/validate")})
		status, echo, _, err := n.Do(newRequest(t, http.MethodPut, "http://registry.example.test/v2/x/blobs/uploads/1", bytes.NewReader(payload), "allow"))
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(status).To(Equal(http.StatusRequestEntityTooLarge))
		g.Expect(echo).To(BeNil())
		g.Expect(fa.Calls()).To(BeEmpty())
		g.Expect(n.UpstreamHits()).To(BeZero())
	})

	t.Run("0 disables the limit", func(t *testing.T) {
		t.Parallel()
		g := NewWithT(t)
		fa := startFakeAuth(t)
		n := Start(t, Options{AuthURL: fa.url("/validate"), ProxyBodySize: "0"})
		status, echo, _, err := n.Do(newRequest(t, http.MethodPut, "http://registry.example.test/v2/x/blobs/uploads/1", bytes.NewReader(payload), "allow"))
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(status).To(Equal(http.StatusOK))
		g.Expect(echo.Body).To(HaveLen(len(payload)))
		g.Expect(fa.Calls()).To(HaveLen(1))
	})
}

func TestAuthURLPathAndQueryAreKept(t *testing.T) {
	t.Parallel()
	g := NewWithT(t)
	fa := startFakeAuth(t)
	n := Start(t, Options{AuthURL: fa.url("/validate/default/registry?scope=push")})

	status, _, _, err := n.Do(newRequest(t, http.MethodGet, "http://registry.example.test/v2/_catalog?n=5", nil, "allow"))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(status).To(Equal(http.StatusOK))
	g.Expect(fa.Calls()).To(HaveLen(1))
	g.Expect(fa.Calls()[0].URI).To(Equal("/validate/default/registry?scope=push"))
	g.Expect(fa.Calls()[0].Header.Get("X-Original-URL")).To(Equal("http://registry.example.test/v2/_catalog?n=5"))
}

func TestKeepalive(t *testing.T) {
	t.Parallel()
	const requests = 5

	run := func(t *testing.T, keepalive bool) (*fakeAuth, *Nginx) {
		g := NewWithT(t)
		fa := startFakeAuth(t)
		n := Start(t, Options{AuthURL: fa.url("/validate"), Keepalive: keepalive})
		for i := 0; i < requests; i++ {
			status, echo, body, err := n.Do(newRequest(t, http.MethodGet, "http://registry.example.test/v2/", nil, "allow"))
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(status).To(Equal(http.StatusOK), string(body))
			g.Expect(echo.Header.Values("X-User")).To(Equal([]string{"alice"}))
		}
		calls := fa.Calls()
		g.Expect(calls).To(HaveLen(requests))
		return fa, n
	}

	t.Run("on", func(t *testing.T) {
		t.Parallel()
		g := NewWithT(t)
		fa, n := run(t, true)
		g.Expect(n.Config()).To(ContainSubstring("upstream _-external-auth-Lw-Prefix {"))
		g.Expect(n.Config()).To(ContainSubstring("set $target http://_-external-auth-Lw-Prefix/validate;"))
		for _, c := range fa.Calls() {
			g.Expect(c.Host).To(Equal("127.0.0.1"))
			g.Expect(c.URI).To(Equal("/validate"))
			g.Expect(c.Header).NotTo(HaveKey("Connection"))
			g.Expect(c.Header.Get("X-Sent-From")).To(Equal("nginx-ingress-controller"))
		}
		// One connection for all subrequests: the upstream keepalive pool
		// is used (empty 200 responses).
		g.Expect(fa.newConns.Load()).To(Equal(int64(1)))

		status, echo, _, err := n.Do(newRequest(t, http.MethodGet, "http://registry.example.test/v2/", nil, "deny"))
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(status).To(Equal(http.StatusUnauthorized))
		g.Expect(echo).To(BeNil())
		status, echo, _, err = n.Do(newRequest(t, http.MethodGet, "http://registry.example.test/v2/", nil, "forbid"))
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(status).To(Equal(http.StatusForbidden))
		g.Expect(echo).To(BeNil())
		status, _, _, err = n.Do(newRequest(t, http.MethodGet, "http://registry.example.test/v2/", nil, "error"))
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(status).To(Equal(http.StatusInternalServerError))
		g.Expect(n.UpstreamHits()).To(Equal(int64(requests)))
	})

	t.Run("off", func(t *testing.T) {
		t.Parallel()
		g := NewWithT(t)
		fa, n := run(t, false)
		g.Expect(n.Config()).NotTo(ContainSubstring("external-auth-Lw-Prefix {\n        server"))
		for _, c := range fa.Calls() {
			g.Expect(c.Header.Get("Connection")).To(Equal("close"))
		}
		g.Expect(fa.newConns.Load()).To(Equal(int64(requests)))
	})
}

// AuthSelf: nginx answers the auth subrequest itself; requests reach the
// upstream without any auth service. Launch runs it without a test.
func TestAuthSelfWithLaunch(t *testing.T) {
	t.Parallel()
	Require(t)
	g := NewWithT(t)
	n, err := Launch(Options{AuthSelf: true}, t.TempDir(), t.Logf)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(n.Config()).To(ContainSubstring("return 200;"))
	g.Expect(n.Config()).NotTo(ContainSubstring("proxy_pass $target;"))
	for range 3 {
		status, echo, body, err := n.Do(newRequest(t, http.MethodGet, "http://registry.example.test/v2/", nil, "deny"))
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(status).To(Equal(http.StatusOK), string(body))
		g.Expect(echo).NotTo(BeNil())
	}
	g.Expect(n.UpstreamHits()).To(Equal(int64(3)))
	pid := n.Pid()
	n.Close()
	// The master is gone after Close.
	g.Eventually(func() error { return syscall.Kill(pid, 0) }).Should(HaveOccurred())
}

func TestNewConfDataValidation(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		opts Options
	}{
		{name: "no url", opts: Options{}},
		{name: "hostname", opts: Options{AuthURL: "http://localhost:8080/validate"}},
		{name: "nginx variable", opts: Options{AuthURL: "http://127.0.0.1:8080/validate?x=$host"}},
		{name: "semicolon", opts: Options{AuthURL: "http://127.0.0.1:8080/validate;return"}},
		{name: "scheme", opts: Options{AuthURL: "ftp://127.0.0.1/validate"}},
		{name: "header", opts: Options{AuthURL: "http://127.0.0.1/validate", ResponseHeaders: []string{"X-User'; evil"}}},
		{name: "body size", opts: Options{AuthURL: "http://127.0.0.1/validate", ProxyBodySize: "1m; evil"}},
		{name: "self and url", opts: Options{AuthSelf: true, AuthURL: "http://127.0.0.1/validate"}},
		{name: "self and keepalive", opts: Options{AuthSelf: true, Keepalive: true}},
		{name: "negative pool", opts: Options{AuthURL: "http://127.0.0.1/validate", Keepalive: true, KeepaliveConnections: -1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := newConfData(tc.opts)
			NewWithT(t).Expect(err).To(HaveOccurred())
		})
	}

	g := NewWithT(t)
	d, err := newConfData(Options{AuthURL: "http://[::1]/validate", ResponseHeaders: []string{"X-Auth-Request-User"}})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(d.AuthPath).To(Equal("/_external-auth-Lw-Prefix"))
	g.Expect(d.AuthHost).To(Equal("::1"))
	g.Expect(d.AuthHostPort).To(Equal("[::1]:80"))
	g.Expect(d.ResponseHeaders).To(Equal([]responseHeader{{Index: 0, Name: "X-Auth-Request-User", Var: "x_auth_request_user"}}))
	g.Expect(d.BodySize).To(Equal("1m"))
	g.Expect(d.KeepaliveConnections).To(Equal(32))

	d, err = newConfData(Options{AuthURL: "http://127.0.0.1/validate", Keepalive: true, KeepaliveConnections: 64})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(d.KeepaliveConnections).To(Equal(64))
}

// withURL returns a copy of req sent to target, keeping req.Host.
func withURL(t *testing.T, req *http.Request, target string) *http.Request {
	t.Helper()
	r, err := http.NewRequest(req.Method, target, req.Body)
	if err != nil {
		t.Fatal(err)
	}
	r.Header = req.Header.Clone()
	r.Host = req.Host
	return r
}
