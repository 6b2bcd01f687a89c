package authserver

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestFailureLimit(t *testing.T) {
	g := NewWithT(t)
	store := NewStore(StoreOptions{})
	store.Put(compileOK(t, basePolicy()))
	now := testNow
	m := NewMetrics()
	g.Expect(m.Register(prometheus.NewRegistry())).To(Succeed())
	h := NewHandler(store, HandlerOptions{
		Now:      func() time.Time { return now },
		Observer: m,
		Failures: NewFailureLimiter(FailureLimitOptions{MaxFailures: 5, Window: time.Minute}),
	})
	validCookie := "mcp_gateway_session=" + sessionCookie(t, "alice", []string{"readers"}, testNow)
	send := func(ip, tok, cookie string) (int, Reason) {
		r := httptest.NewRequest("GET", "/validate", nil)
		r.RemoteAddr = "10.0.0.1:5555" // the ingress: trusted by default
		r.Header.Set("X-Real-IP", ip)
		r.Header.Set("X-Original-URL", "http://registry.example.com/api/servers")
		if tok != "" {
			r.Header.Set("Authorization", "Bearer "+tok)
		}
		if cookie != "" {
			r.Header.Set("Cookie", cookie)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, r)
		return rec.Code, reasonOf(rec)
	}

	for i := range 5 {
		code, reason := send("192.0.2.7", fmt.Sprintf("guess-%02d-0123456789abcdef0123456789", i), "")
		g.Expect(code).To(Equal(http.StatusUnauthorized))
		g.Expect(reason).To(Equal(ReasonInvalidCredentials))
	}
	// The bucket is empty: even the right token is refused, uncompared.
	code, reason := send("192.0.2.7", tokStatic, "")
	g.Expect(code).To(Equal(http.StatusForbidden))
	g.Expect(reason).To(Equal(ReasonTooManyFailures))
	g.Expect(testutil.ToFloat64(m.bruteRefusals.WithLabelValues("team/registry"))).To(Equal(1.0))
	// Other clients are not affected.
	code, _ = send("192.0.2.8", tokStatic, "")
	g.Expect(code).To(Equal(http.StatusOK))
	// Session traffic of the throttled client is not limited.
	code, reason = send("192.0.2.7", "", validCookie)
	g.Expect(code).To(Equal(http.StatusOK), string(reason))
	// After the bucket refills (one failure's worth: Window/MaxFailures).
	now = now.Add(13 * time.Second)
	code, _ = send("192.0.2.7", tokStatic, "")
	g.Expect(code).To(Equal(http.StatusOK))
	// JWT-shaped bearers are not counted as guesses of static tokens.
	for range 10 {
		send("192.0.2.9", "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln", "")
	}
	code, _ = send("192.0.2.9", tokStatic, "")
	g.Expect(code).To(Equal(http.StatusOK))
}

func reasonOf(rec *httptest.ResponseRecorder) Reason {
	for r, d := range denyReasons {
		if string(d.body) == rec.Body.String() {
			return r
		}
	}
	return ""
}

func TestFailureLimiterDisabledAndBounded(t *testing.T) {
	g := NewWithT(t)
	g.Expect(NewFailureLimiter(FailureLimitOptions{MaxFailures: 0, Window: time.Minute})).To(BeNil())
	var off *FailureLimiter
	off.Failed("x", testNow)
	g.Expect(off.Throttled("x", testNow)).To(BeFalse())

	f := NewFailureLimiter(FailureLimitOptions{MaxFailures: 1, Window: time.Hour})
	for i := range maxClients + 100 {
		f.Failed(fmt.Sprint(i), testNow)
	}
	g.Expect(len(f.clients)).To(BeNumerically("<=", maxClients))
	g.Expect(f.Throttled(fmt.Sprint(maxClients+99), testNow)).To(BeTrue(), "the newest client is tracked")

	// Once failures stop and buckets refill, clients are forgotten and
	// the request path stops looking up addresses.
	g.Expect(f.tracking()).To(BeTrue())
	later := testNow.Add(2 * time.Hour)
	g.Expect(f.Throttled("anyone", later)).To(BeFalse())
	g.Expect(f.tracking()).To(BeFalse())
}

func TestClientIPTrust(t *testing.T) {
	g := NewWithT(t)
	ip := ClientIPFunc([]netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")})
	req := func(remote string, hdr map[string]string) *http.Request {
		r := httptest.NewRequest("GET", "/validate", nil)
		r.RemoteAddr = remote
		for k, v := range hdr {
			r.Header.Set(k, v)
		}
		return r
	}
	g.Expect(ip(req("10.1.2.3:80", map[string]string{"X-Real-IP": "198.51.100.4"}))).To(Equal("198.51.100.4"))
	g.Expect(ip(req("10.1.2.3:80", map[string]string{"X-Forwarded-For": "203.0.113.9, 198.51.100.5"}))).To(Equal("198.51.100.5"))
	g.Expect(ip(req("10.1.2.3:80", map[string]string{"X-Real-IP": "not-an-ip"}))).To(Equal("10.1.2.3"))
	// An untrusted peer cannot choose its address.
	g.Expect(ip(req("203.0.113.1:80", map[string]string{"X-Real-IP": "198.51.100.4"}))).To(Equal("203.0.113.1"))
	g.Expect(ip(req("[::ffff:10.0.0.5]:80", map[string]string{"X-Real-IP": "::ffff:198.51.100.4"}))).To(Equal("198.51.100.4"))

	ps, err := ParsePrefixes("10.0.0.0/8, 192.168.1.1 ,fd00::/8")
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(ps).To(HaveLen(3))
	_, err = ParsePrefixes("10.0.0.0/33")
	g.Expect(err).To(HaveOccurred())
}
