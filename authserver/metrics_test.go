package authserver

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestMetricsCountKnownTraffic(t *testing.T) {
	g := NewWithT(t)
	reg := prometheus.NewRegistry()
	m := NewMetrics()
	g.Expect(m.Register(reg)).To(Succeed())
	store := NewStore(StoreOptions{})
	store.OnPublish(m.ObserveSnapshot)

	cfg := basePolicy()
	cfg.StaticToken.Token.Value = []byte(tokStatic2)
	cfg.StaticToken.Previous = []PreviousDigest{{Digest: DigestOf([]byte(tokStatic)), ExpiresAt: time.Now().Add(time.Hour)}}
	store.Put(compileOK(t, cfg))
	h := NewHandler(store, HandlerOptions{Observer: m})

	send := func(n int, path, method, tok string) {
		for range n {
			r := httptest.NewRequest("GET", "/validate", nil)
			r.Header.Set("X-Original-URL", "http://registry.example.com"+path)
			r.Header.Set("X-Original-Method", method)
			if tok != "" {
				r.Header.Set("Authorization", "Bearer "+tok)
			}
			h.ServeHTTP(httptest.NewRecorder(), r)
		}
	}
	send(3, "/api/servers", "GET", tokStatic2)  // allowed, current token
	send(2, "/api/servers", "GET", tokStatic)   // allowed, previous token
	send(4, "/api/servers", "GET", "")          // no credentials
	send(1, "/api/servers", "POST", tokReadKey) // api key forbidden
	send(5, "/api/servers", "GET", tokReadKey)  // api key allowed
	send(1, "/mcpserver/mcp", "GET", tokStatic2)

	const key = "team/registry"
	count := func(method, result string, reason Reason) float64 {
		return testutil.ToFloat64(m.decisions.WithLabelValues(key, method, result, string(reason)))
	}
	g.Expect(count("network-trusted", "allow", ReasonAllowedStaticToken)).To(Equal(3.0))
	g.Expect(count("network-trusted", "allow", ReasonAllowedStaticTokenPrevious)).To(Equal(2.0))
	g.Expect(count("", "deny", ReasonNoCredentials)).To(Equal(4.0))
	g.Expect(count("", "deny", ReasonAPIKeyForbidden)).To(Equal(1.0))
	g.Expect(count("api-key", "allow", ReasonAllowedAPIKey)).To(Equal(5.0))
	g.Expect(count("", "deny", ReasonRegistryCredOnGateway)).To(Equal(1.0))
	g.Expect(testutil.ToFloat64(m.previousUses.WithLabelValues(key, "static"))).To(Equal(2.0))
	g.Expect(testutil.CollectAndCount(m.duration)).To(Equal(2)) // allow and deny series
	g.Expect(testutil.ToFloat64(m.generation)).To(Equal(float64(store.Load().Generation())))
	g.Expect(testutil.ToFloat64(m.policies)).To(Equal(1.0))
	g.Expect(testutil.ToFloat64(m.lastLoad.WithLabelValues(key))).To(BeNumerically("~", float64(time.Now().Unix()), 5))

	// The exposition never holds a secret.
	body := scrape(t, reg)
	for _, s := range []string{tokStatic, tokStatic2, tokReadKey, sessionKey} {
		g.Expect(body).NotTo(ContainSubstring(s))
	}
	g.Expect(body).To(ContainSubstring(`registry_auth_decisions_total{method="network-trusted",policy="team/registry",reason="static_token",result="allow"} 3`))

	// A removed policy's series go away.
	store.Delete(key)
	g.Expect(testutil.CollectAndCount(m.decisions)).To(Equal(0))
	g.Expect(testutil.CollectAndCount(m.lastLoad)).To(Equal(0))
	g.Expect(testutil.ToFloat64(m.policies)).To(Equal(0.0))
}

// scrape returns the text exposition of reg, as Prometheus reads it.
func scrape(t *testing.T, reg *prometheus.Registry) string {
	t.Helper()
	rec := httptest.NewRecorder()
	promhttp.HandlerFor(reg, promhttp.HandlerOpts{}).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	return rec.Body.String()
}
