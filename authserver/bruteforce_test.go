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

	"github.com/registryauth/registry-auth-operator/authserver/check"
	"github.com/registryauth/registry-auth-operator/authserver/frontend"
	. "github.com/registryauth/registry-auth-operator/authserver/internal/policytest"
	"github.com/registryauth/registry-auth-operator/authserver/policy"
)

func TestFailureLimit(t *testing.T) {
	g := NewWithT(t)
	store := policy.NewStore(policy.StoreOptions{})
	store.Put(CompileOK(t, BasePolicy()))
	now := Now
	m := NewMetrics()
	g.Expect(m.Register(prometheus.NewRegistry())).To(Succeed())
	h := NewHandler(store, HandlerOptions{
		Now:      func() time.Time { return now },
		Observer: m,
		Failures: NewFailureLimiter(FailureLimitOptions{MaxFailures: 5, Window: time.Minute}),
	})
	validCookie := "mcp_gateway_session=" + SessionCookie(t, "alice", []string{"readers"}, Now)
	send := func(ip, tok, cookie string) (int, check.Reason) {
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
		g.Expect(reason).To(Equal(check.ReasonInvalidCredentials))
	}
	// The bucket is empty: even the right token is refused, uncompared.
	code, reason := send("192.0.2.7", TokStatic, "")
	g.Expect(code).To(Equal(http.StatusForbidden))
	g.Expect(reason).To(Equal(check.ReasonTooManyFailures))
	g.Expect(testutil.ToFloat64(m.bruteRefusals.WithLabelValues("team/registry"))).To(Equal(1.0))
	// Other clients are not affected.
	code, _ = send("192.0.2.8", TokStatic, "")
	g.Expect(code).To(Equal(http.StatusOK))
	// Session traffic of the throttled client is not limited.
	code, reason = send("192.0.2.7", "", validCookie)
	g.Expect(code).To(Equal(http.StatusOK), string(reason))
	// After the bucket refills (one failure's worth: Window/MaxFailures).
	now = now.Add(13 * time.Second)
	code, _ = send("192.0.2.7", TokStatic, "")
	g.Expect(code).To(Equal(http.StatusOK))
	// JWT-shaped bearers are not counted as guesses of static tokens.
	for range 10 {
		send("192.0.2.9", "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln", "")
	}
	code, _ = send("192.0.2.9", TokStatic, "")
	g.Expect(code).To(Equal(http.StatusOK))
}

func reasonOf(rec *httptest.ResponseRecorder) check.Reason {
	return check.Reason(rec.Header().Get("X-Auth-Reason"))
}

func TestFailureLimiterDisabledAndBounded(t *testing.T) {
	g := NewWithT(t)
	g.Expect(NewFailureLimiter(FailureLimitOptions{MaxFailures: 0, Window: time.Minute})).To(BeNil())
	var off *FailureLimiter
	off.Failed("x", Now)
	g.Expect(off.Throttled("x", Now)).To(BeFalse())

	f := NewFailureLimiter(FailureLimitOptions{MaxFailures: 1, Window: time.Hour})
	for i := range maxClients + 100 {
		f.Failed(fmt.Sprint(i), Now)
	}
	g.Expect(len(f.clients)).To(BeNumerically("<=", maxClients))
	g.Expect(f.Throttled(fmt.Sprint(maxClients+99), Now)).To(BeTrue(), "the newest client is tracked")

	// Once failures stop and buckets refill, clients are forgotten and
	// the request path stops looking up addresses.
	g.Expect(f.tracking()).To(BeTrue())
	later := Now.Add(2 * time.Hour)
	g.Expect(f.Throttled("anyone", later)).To(BeFalse())
	g.Expect(f.tracking()).To(BeFalse())
}

func TestClientIPTrust(t *testing.T) {
	g := NewWithT(t)
	ip := frontend.ClientIPFunc([]netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")})
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

	ps, err := frontend.ParsePrefixes("10.0.0.0/8, 192.168.1.1 ,fd00::/8")
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(ps).To(HaveLen(3))
	_, err = frontend.ParsePrefixes("10.0.0.0/33")
	g.Expect(err).To(HaveOccurred())
}

// TestFailureLimitKeys: IPv4 clients are counted per address, IPv6 clients
// per /64 (one host or site usually has a whole /64, and would otherwise get
// a new budget with every address), an IPv4-mapped IPv6 address as the IPv4
// address, and a client that is no address by its string.
func TestFailureLimitKeys(t *testing.T) {
	cases := []struct {
		name          string
		first, second string
		shared        bool
	}{
		{"one IPv6 /64", "2001:db8:1:2::1", "2001:db8:1:2:ffff:ffff:ffff:ffff", true},
		{"one IPv6 /64, privacy addresses", "2001:db8:1:2:a4c1:9f2e:11b3:7d40", "2001:db8:1:2:5e0:3bb1:c2d9:e8f7", true},
		{"one IPv6 address, two spellings", "2001:db8:1:2::1", "2001:DB8:1:2:0:0:0:1", true},
		{"one link-local /64, zones", "fe80::1%eth0", "fe80::2%eth1", true},
		{"neighbouring IPv6 /64s", "2001:db8:1:2::1", "2001:db8:1:3::1", false},
		{"IPv6 /64s of one /48", "2001:db8:1:2::1", "2001:db8:1:ffff::1", false},
		{"IPv4-mapped IPv6 is IPv4", "::ffff:192.0.2.7", "192.0.2.7", true},
		{"IPv4 per address", "192.0.2.7", "192.0.2.8", false},
		{"IPv4 mapped, per address", "::ffff:192.0.2.7", "::ffff:192.0.2.8", false},
		{"IPv4 and IPv4-compatible IPv6", "192.0.2.7", "::c000:207", false},
		{"NAT64 well-known prefix: per IPv4 client", "64:ff9b::192.0.2.7", "64:ff9b::192.0.2.8", false},
		{"NAT64 well-known prefix is the IPv4 client", "64:ff9b::c000:207", "192.0.2.7", true},
		{"NAT64 local-use prefix, /96 layout: per client", "64:ff9b:1::192.0.2.7", "64:ff9b:1::192.0.2.8", false},
		{"NAT64 local-use prefix, /48 layout: per client", "64:ff9b:1:c000:2:700::", "64:ff9b:1:c000:2:800::", false},
		{"names", "client-a", "client-b", false},
		{"one name", "client-a", "client-a", true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			f := NewFailureLimiter(FailureLimitOptions{MaxFailures: 3, Window: time.Hour})
			for range 3 {
				g.Expect(f.Throttled(tc.first, Now)).To(BeFalse())
				f.Failed(tc.first, Now)
			}
			g.Expect(f.Throttled(tc.first, Now)).To(BeTrue())
			g.Expect(f.Throttled(tc.second, Now)).To(Equal(tc.shared))
			if tc.shared {
				g.Expect(f.clients).To(HaveLen(1))
			} else {
				f.Failed(tc.second, Now)
				g.Expect(f.clients).To(HaveLen(2))
				g.Expect(f.Throttled(tc.second, Now)).To(BeFalse())
			}
		})
	}
}

// TestFailureLimitIPv6Subnet: through the handler, a client guessing from
// many addresses of its /64 shares one budget; another /64 has its own.
func TestFailureLimitIPv6Subnet(t *testing.T) {
	g := NewWithT(t)
	store := policy.NewStore(policy.StoreOptions{})
	store.Put(CompileOK(t, BasePolicy()))
	h := NewHandler(store, HandlerOptions{
		Now:      func() time.Time { return Now },
		Failures: NewFailureLimiter(FailureLimitOptions{MaxFailures: 5, Window: time.Minute}),
	})
	send := func(ip, tok string) (int, check.Reason) {
		r := httptest.NewRequest("GET", "/validate", nil)
		r.RemoteAddr = "10.0.0.1:5555" // the ingress: trusted by default
		r.Header.Set("X-Real-IP", ip)
		r.Header.Set("X-Original-URL", "http://registry.example.com/api/servers")
		r.Header.Set("Authorization", "Bearer "+tok)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, r)
		return rec.Code, reasonOf(rec)
	}
	for i := range 5 {
		code, reason := send(fmt.Sprintf("2001:db8:77:1::%x", 0x1000+i), fmt.Sprintf("guess-%02d-0123456789abcdef0123456789", i))
		g.Expect(code).To(Equal(http.StatusUnauthorized))
		g.Expect(reason).To(Equal(check.ReasonInvalidCredentials))
	}
	code, reason := send("2001:db8:77:1:dead:beef:0:1", TokStatic)
	g.Expect(code).To(Equal(http.StatusForbidden), "a fresh address of the same /64")
	g.Expect(reason).To(Equal(check.ReasonTooManyFailures))
	code, _ = send("2001:db8:77:2::1000", TokStatic)
	g.Expect(code).To(Equal(http.StatusOK), "another /64")
}

// TestFailureLimiterEvictionKeepsLockedOut: filling the table with other
// clients does not release clients that are locked out; only a table nearly
// all locked out gives some of them up (an eighth of the table at once, so
// that new clients do not each pay a scan).
func TestFailureLimiterEvictionKeepsLockedOut(t *testing.T) {
	g := NewWithT(t)
	fill := func(i int) string { return netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}).String() }
	f := NewFailureLimiter(FailureLimitOptions{MaxFailures: 3, Window: time.Hour})

	// 1,000 clients locked out, one IPv4 and one IPv6 among them.
	locked := []string{"198.51.100.7", "2001:db8:bad::1"}
	for i := len(locked); i < 1000; i++ {
		locked = append(locked, fmt.Sprintf("2001:db8:%x::1", 0x1000+i))
	}
	for _, c := range locked {
		for range 3 {
			f.Failed(c, Now)
		}
	}
	// One and a half tables of clients with attempts left (one failure
	// each).
	for i := range maxClients + maxClients/2 {
		f.Failed(fill(i), Now)
	}
	g.Expect(len(f.clients)).To(BeNumerically("<=", maxClients))
	for _, c := range locked {
		g.Expect(f.Throttled(c, Now)).To(BeTrue(), c)
	}
	g.Expect(f.Throttled("2001:db8:bad::2", Now)).To(BeTrue(), "the locked-out /64")
	g.Expect(f.Throttled(fill(maxClients+maxClients/2-1), Now)).To(BeFalse())
	g.Expect(f.clients[keyOf(fill(maxClients+maxClients/2-1))]).NotTo(BeNil(), "the newest client is tracked")

	// A table of locked-out clients only: the next new client makes an
	// eighth of them go.
	f = NewFailureLimiter(FailureLimitOptions{MaxFailures: 1, Window: time.Hour})
	for i := range maxClients {
		f.Failed(fill(i), Now)
	}
	g.Expect(len(f.clients)).To(Equal(maxClients))
	f.Failed("198.51.100.7", Now)
	g.Expect(len(f.clients)).To(Equal(maxClients-maxClients/8), "down to seven eighths, then the new client")
	g.Expect(f.Throttled("198.51.100.7", Now)).To(BeTrue())

	// Clients whose buckets are full again go first, then those with
	// attempts left; the locked-out ones stay.
	f = NewFailureLimiter(FailureLimitOptions{MaxFailures: 2, Window: time.Hour})
	for i := range maxClients - 10 {
		f.Failed(fill(i), Now) // one attempt left
	}
	for _, c := range locked[:10] {
		f.Failed(c, Now)
		f.Failed(c, Now)
	}
	g.Expect(len(f.clients)).To(Equal(maxClients))
	f.Failed("192.0.2.1", Now.Add(time.Hour/4)) // no bucket is full yet
	g.Expect(len(f.clients)).To(Equal(maxClients-maxClients/8), "down to seven eighths, then the new client")
	for _, c := range locked[:10] {
		g.Expect(f.Throttled(c, Now.Add(time.Hour/4))).To(BeTrue(), c)
	}
}
