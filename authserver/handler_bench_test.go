package authserver

import (
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/registryauth/registry-auth-operator/authserver/authn/statictoken"
	"github.com/registryauth/registry-auth-operator/authserver/hoptoken"
	. "github.com/registryauth/registry-auth-operator/authserver/internal/policytest"
	"github.com/registryauth/registry-auth-operator/authserver/policy"
	"github.com/registryauth/registry-auth-operator/authserver/secret"
)

// discardWriter is a ResponseWriter that keeps nothing, so the benchmark
// measures the handler, not a recorder.
type discardWriter struct{ h http.Header }

func (d *discardWriter) Header() http.Header         { return d.h }
func (d *discardWriter) Write(b []byte) (int, error) { return len(b), nil }
func (d *discardWriter) WriteHeader(int)             {}

// BenchmarkHandler is one /validate request through the Handler as the
// binary configures it (metrics, failure limit), without net/http's own
// parsing and writing:
//
//   - static_token, wrong_token: a policy without a registry token;
//   - static_token_hop_not_asked: the same request to a policy with an
//     HS256 registry token, when the auth request does not ask for one;
//   - static_token_hop: asked (X-Registry-Api-Auth: 1): the token is minted
//     once per identity and second and then answered from the identity's
//     slot, which is what a steady stream of requests costs;
//   - static_token_hop_uncached: every request in a new second, so every
//     one mints and signs (the worst case: one request per identity per
//     second).
func BenchmarkHandler(b *testing.B) {
	store := policy.NewStore(policy.StoreOptions{})
	store.Put(CompileOK(b, BasePolicy()))
	store.Put(CompileOK(b, withToken("hop", registryKey, hoptoken.ModeOnRequest)))
	m := NewMetrics()
	if err := m.Register(prometheus.NewRegistry()); err != nil {
		b.Fatal(err)
	}
	newHandler := func(now func() time.Time) *Handler {
		return NewHandler(store, HandlerOptions{
			Observer: m,
			Failures: NewFailureLimiter(FailureLimitOptions{MaxFailures: 10, Window: time.Minute}),
			Now:      now,
		})
	}
	var tick atomic.Int64
	tick.Store(time.Now().Unix())
	for _, c := range []struct {
		name, host, tok string
		ask             bool
		now             func() time.Time
	}{
		{"static_token", "registry.example.com", TokStatic, false, nil},
		{"wrong_token", "registry.example.com", TokStatic2, false, nil},
		{"static_token_hop_not_asked", "hop.example.com", TokStatic, false, nil},
		{"static_token_hop", "hop.example.com", TokStatic, true, nil},
		{"static_token_hop_uncached", "hop.example.com", TokStatic, true, func() time.Time { return time.Unix(tick.Add(1), 0) }},
	} {
		b.Run(c.name, func(b *testing.B) {
			h := newHandler(c.now)
			r := httptest.NewRequest("GET", "/validate", nil)
			r.RemoteAddr = "10.1.2.3:4567"
			r.Header.Set("X-Original-URL", "http://"+c.host+"/api/servers")
			r.Header.Set("X-Original-Method", "GET")
			r.Header.Set("X-Real-IP", "192.0.2.1")
			r.Header.Set("Authorization", "Bearer "+c.tok)
			if c.ask {
				r.Header.Set(hoptoken.RequestHeader, "1")
			}
			w := &discardWriter{h: http.Header{}}
			h.ServeHTTP(w, r)
			if got := len(w.h[hoptoken.Header]); got != map[bool]int{false: 0, true: 1}[c.ask] {
				b.Fatalf("%d hop tokens in the answer", got)
			}
			b.ReportAllocs()
			for b.Loop() {
				clear(w.h)
				h.ServeHTTP(w, r)
			}
		})
	}
}

// copyingWriter reads every header value and body byte it is given, as
// net/http does when it writes them, so the benchmark pays for where the
// answer lies in memory.
type copyingWriter struct {
	h   http.Header
	buf []byte
}

func (c *copyingWriter) Header() http.Header { return c.h }
func (c *copyingWriter) WriteHeader(int) {
	for k, vv := range c.h {
		c.buf = append(c.buf, k...)
		for _, v := range vv {
			c.buf = append(c.buf, v...)
		}
	}
}
func (c *copyingWriter) Write(b []byte) (int, error) {
	c.buf = append(c.buf, b...)
	return len(b), nil
}

// BenchmarkHandlerPolicies is an allowed static-token request to a random
// one of n loaded policies, each with its own token and host, as in the
// scale phase of make bench: with 1,000 policies their answers do not stay
// in the CPU caches.
func BenchmarkHandlerPolicies(b *testing.B) {
	for _, n := range []int{1, 1000} {
		b.Run(strconv.Itoa(n), func(b *testing.B) {
			store := policy.NewStore(policy.StoreOptions{})
			var reqs []*http.Request
			for i := range n {
				cfg := BasePolicy()
				cfg.Namespace, cfg.Name = "bench", fmt.Sprintf("p%04d", i)
				host := cfg.Name + ".example.com"
				cfg.Hosts = []string{host}
				tok := secret.DigestOf([]byte(cfg.Name)).Hex()
				cfg.StaticToken.Token.Value = []byte(tok)
				cfg.StaticToken.Identity = statictoken.IdentityConfig{Username: "ci-" + cfg.Name, Groups: []string{"mcp-registry-admin"}}
				store.Put(CompileOK(b, cfg))
				r := httptest.NewRequest("GET", "/validate/bench/"+cfg.Name, nil)
				r.Header.Set("X-Original-URL", "http://"+host+"/api/servers")
				r.Header.Set("Authorization", "Bearer "+tok)
				reqs = append(reqs, r)
			}
			m := NewMetrics()
			if err := m.Register(prometheus.NewRegistry()); err != nil {
				b.Fatal(err)
			}
			store.OnPublish(m.ObserveSnapshot)
			m.ObserveSnapshot(store.Load())
			h := NewHandler(store, HandlerOptions{Observer: m})
			order := rand.New(rand.NewPCG(1, 2)).Perm(max(n, 4096))
			w := &copyingWriter{h: http.Header{}}
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				clear(w.h)
				w.buf = w.buf[:0]
				h.ServeHTTP(w, reqs[order[i%len(order)]%n])
				i++
			}
			if n := len(w.buf); n < 200 {
				b.Fatalf("the last answer was %d bytes", n)
			}
		})
	}
}
