package authserver

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/registryauth/registry-auth-operator/authserver/check"
	. "github.com/registryauth/registry-auth-operator/authserver/internal/policytest"
	"github.com/registryauth/registry-auth-operator/authserver/policy"
	"github.com/registryauth/registry-auth-operator/authserver/secret"
)

func TestMetricsCountKnownTraffic(t *testing.T) {
	g := NewWithT(t)
	reg := prometheus.NewRegistry()
	m := NewMetrics()
	g.Expect(m.Register(reg)).To(Succeed())
	store := policy.NewStore(policy.StoreOptions{})
	store.OnPublish(m.ObserveSnapshot)

	cfg := BasePolicy()
	cfg.StaticToken.Token.Value = []byte(TokStatic2)
	cfg.StaticToken.Previous = []secret.PreviousDigest{{Digest: secret.DigestOf([]byte(TokStatic)), ExpiresAt: time.Now().Add(time.Hour)}}
	store.Put(CompileOK(t, cfg))
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
	send(3, "/api/servers", "GET", TokStatic2)  // allowed, current token
	send(2, "/api/servers", "GET", TokStatic)   // allowed, previous token
	send(4, "/api/servers", "GET", "")          // no credentials
	send(1, "/api/servers", "POST", TokReadKey) // api key forbidden
	send(5, "/api/servers", "GET", TokReadKey)  // api key allowed
	send(1, "/mcpserver/mcp", "GET", TokStatic2)

	const key = "team/registry"
	count := func(method, result string, reason check.Reason) float64 {
		return gathered(t, reg, "registry_auth_decisions_total")[fmt.Sprintf("method=%s,policy=%s,reason=%s,result=%s", method, key, reason, result)]
	}
	g.Expect(count("network-trusted", "allow", check.ReasonAllowedStaticToken)).To(Equal(3.0))
	g.Expect(count("network-trusted", "allow", check.ReasonAllowedStaticTokenPrevious)).To(Equal(2.0))
	g.Expect(count("", "deny", check.ReasonNoCredentials)).To(Equal(4.0))
	g.Expect(count("", "deny", check.ReasonAPIKeyForbidden)).To(Equal(1.0))
	g.Expect(count("network-trusted", "allow", check.ReasonAllowedAPIKey)).To(Equal(5.0))
	g.Expect(count("", "deny", check.ReasonRegistryCredOnGateway)).To(Equal(1.0))
	g.Expect(testutil.ToFloat64(m.previousUses.WithLabelValues(key, "static"))).To(Equal(2.0))
	g.Expect(testutil.CollectAndCount(m.duration)).To(Equal(2)) // allow and deny series
	g.Expect(testutil.ToFloat64(m.generation)).To(Equal(float64(store.Load().Generation())))
	g.Expect(testutil.ToFloat64(m.policies)).To(Equal(1.0))
	g.Expect(gathered(t, reg, "registry_auth_policy_last_load_timestamp_seconds")).To(
		HaveKeyWithValue("policy="+key, BeNumerically("~", float64(time.Now().Unix()), 5)))
	// Only the reasons counted have series.
	g.Expect(gathered(t, reg, "registry_auth_decisions_total")).To(HaveLen(6))

	// The exposition never holds a secret.
	body := scrape(t, reg)
	for _, s := range []string{TokStatic, TokStatic2, TokReadKey, SessionKey} {
		g.Expect(body).NotTo(ContainSubstring(s))
	}
	g.Expect(body).To(ContainSubstring(`registry_auth_decisions_total{method="network-trusted",policy="team/registry",reason="static_token",result="allow"} 3`))

	// A reload keeps the counts and moves the load time.
	before := gathered(t, reg, "registry_auth_policy_last_load_timestamp_seconds")["policy="+key]
	time.Sleep(10 * time.Millisecond)
	store.Put(CompileOK(t, cfg))
	g.Expect(count("network-trusted", "allow", check.ReasonAllowedStaticToken)).To(Equal(3.0))
	g.Expect(gathered(t, reg, "registry_auth_policy_last_load_timestamp_seconds")["policy="+key]).To(BeNumerically(">", before))

	// A removed policy's series go away.
	store.Delete(key)
	g.Expect(gathered(t, reg, "registry_auth_decisions_total")).To(BeEmpty())
	g.Expect(gathered(t, reg, "registry_auth_policy_last_load_timestamp_seconds")).To(BeEmpty())
	g.Expect(testutil.CollectAndCount(m.previousUses)).To(Equal(0))
	g.Expect(testutil.ToFloat64(m.policies)).To(Equal(0.0))

	// A decision made on the snapshot before the removal, counted after
	// it, is gone again with the next snapshot, with the series of a
	// previous token's use.
	old := CompileOK(t, cfg)
	m.ObserveDecision(policy.Decision{Policy: old, Reason: check.ReasonAllowedStaticTokenPrevious, Identity: &check.Identity{}}, time.Microsecond)
	g.Expect(gathered(t, reg, "registry_auth_decisions_total")).To(HaveLen(1))
	g.Expect(testutil.CollectAndCount(m.previousUses)).To(Equal(1))
	other := BasePolicy()
	other.Name = "other"
	other.Hosts = []string{"other.example.com"}
	store.Put(CompileOK(t, other))
	g.Expect(gathered(t, reg, "registry_auth_decisions_total")).To(BeEmpty())
	g.Expect(testutil.CollectAndCount(m.previousUses)).To(Equal(0))
	g.Expect(gathered(t, reg, "registry_auth_policy_last_load_timestamp_seconds")).To(HaveLen(1))
}

// Decisions made before a policy was chosen count under policy "".
func TestMetricsCountWithoutPolicy(t *testing.T) {
	g := NewWithT(t)
	reg := prometheus.NewRegistry()
	m := NewMetrics()
	g.Expect(m.Register(reg)).To(Succeed())
	store := policy.NewStore(policy.StoreOptions{})
	store.OnPublish(m.ObserveSnapshot)
	h := NewHandler(store, HandlerOptions{Observer: m})
	for range 2 {
		r := httptest.NewRequest("GET", "/validate", nil)
		r.Header.Set("X-Original-URL", "http://nobody.example.com/api/servers")
		h.ServeHTTP(httptest.NewRecorder(), r)
	}
	g.Expect(gathered(t, reg, "registry_auth_decisions_total")).To(Equal(map[string]float64{
		"method=,policy=,reason=no_policy,result=deny": 2,
	}))
	// Not deleted by a snapshot: it belongs to no policy.
	store.Put(CompileOK(t, BasePolicy()))
	g.Expect(gathered(t, reg, "registry_auth_decisions_total")).To(HaveKeyWithValue("method=,policy=,reason=no_policy,result=deny", 2.0))
}

// A reason missing from allReasons is still counted, under "unlisted".
func TestMetricsCountUnlistedReason(t *testing.T) {
	g := NewWithT(t)
	reg := prometheus.NewRegistry()
	m := NewMetrics()
	g.Expect(m.Register(reg)).To(Succeed())
	m.ObserveDecision(policy.Decision{Reason: "made_up"}, time.Microsecond)
	g.Expect(gathered(t, reg, "registry_auth_decisions_total")).To(Equal(map[string]float64{
		"method=,policy=,reason=unlisted,result=deny": 1,
	}))
}

// gathered returns the series of one metric family of reg, by their labels
// ("name=value" joined with commas, sorted by name).
func gathered(t *testing.T, reg *prometheus.Registry, name string) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, mt := range mf.GetMetric() {
			var labels []string
			for _, lp := range mt.GetLabel() {
				labels = append(labels, lp.GetName()+"="+lp.GetValue())
			}
			v := mt.GetCounter().GetValue() + mt.GetGauge().GetValue()
			out[strings.Join(labels, ",")] = v
		}
	}
	return out
}

// scrape returns the text exposition of reg, as Prometheus reads it.
func scrape(t *testing.T, reg *prometheus.Registry) string {
	t.Helper()
	rec := httptest.NewRecorder()
	promhttp.HandlerFor(reg, promhttp.HandlerOpts{}).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	return rec.Body.String()
}

// The credential lifecycle series: seconds to expiry per static credential
// with an expiresAt, computed at scrape, and the last use of each credential
// that allowed a request, by name only; a credential removed from the policy
// loses its series.
func TestMetricsCredentialLifecycle(t *testing.T) {
	g := NewWithT(t)
	reg := prometheus.NewRegistry()
	m := NewMetrics()
	g.Expect(m.Register(reg)).To(Succeed())
	store := policy.NewStore(policy.StoreOptions{})
	store.OnPublish(m.ObserveSnapshot)

	cfg := BasePolicy()
	cfg.StaticToken.ExpiresAt = time.Now().Add(time.Hour)
	cfg.APIKeys[0].ExpiresAt = time.Now().Add(-time.Minute) // ci-read: expired
	store.Put(CompileOK(t, cfg))
	h := NewHandler(store, HandlerOptions{Observer: m})
	send := func(tok string) int {
		r := httptest.NewRequest("GET", "/validate", nil)
		r.Header.Set("X-Original-URL", "http://registry.example.com/api/servers")
		r.Header.Set("X-Original-Method", "GET")
		r.Header.Set("Authorization", "Bearer "+tok)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w.Code
	}
	const key = "team/registry"
	expiry := gathered(t, reg, "registry_auth_credential_expiry_seconds")
	g.Expect(expiry).To(HaveLen(2))
	g.Expect(expiry).To(HaveKeyWithValue("credential=static,policy="+key, BeNumerically("~", 3600, 5)))
	g.Expect(expiry).To(HaveKeyWithValue("credential=ci-read,policy="+key, BeNumerically("~", -60, 5)))

	g.Expect(gathered(t, reg, "registry_auth_credential_last_used_timestamp_seconds")).To(BeEmpty())
	g.Expect(send(TokStatic)).To(Equal(200))
	g.Expect(send(TokWriteKey)).To(Equal(200))
	g.Expect(send(TokReadKey)).To(Equal(401), "expired: refused, and not a use")
	used := gathered(t, reg, "registry_auth_credential_last_used_timestamp_seconds")
	g.Expect(used).To(HaveLen(2))
	g.Expect(used).To(HaveKeyWithValue("credential=static,policy="+key, BeNumerically("~", float64(time.Now().Unix()), 2)))
	g.Expect(used).To(HaveKeyWithValue("credential=ci-write,policy="+key, BeNumerically("~", float64(time.Now().Unix()), 2)))

	body := scrape(t, reg)
	for _, s := range []string{TokStatic, TokReadKey, TokWriteKey} {
		g.Expect(body).NotTo(ContainSubstring(s))
	}

	// ci-write removed, and no expiry any more: their series go.
	cfg.APIKeys = cfg.APIKeys[:1]
	cfg.StaticToken.ExpiresAt = time.Time{}
	store.Put(CompileOK(t, cfg))
	g.Expect(gathered(t, reg, "registry_auth_credential_last_used_timestamp_seconds")).To(HaveLen(1))
	expiry = gathered(t, reg, "registry_auth_credential_expiry_seconds")
	g.Expect(expiry).To(HaveLen(1))
	g.Expect(expiry).To(HaveKey("credential=ci-read,policy=" + key))
	store.Delete(key)
	g.Expect(gathered(t, reg, "registry_auth_credential_last_used_timestamp_seconds")).To(BeEmpty())
	g.Expect(gathered(t, reg, "registry_auth_credential_expiry_seconds")).To(BeEmpty())
}
