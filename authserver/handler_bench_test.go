package authserver

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// discardWriter is a ResponseWriter that keeps nothing, so the benchmark
// measures the handler, not a recorder.
type discardWriter struct{ h http.Header }

func (d *discardWriter) Header() http.Header         { return d.h }
func (d *discardWriter) Write(b []byte) (int, error) { return len(b), nil }
func (d *discardWriter) WriteHeader(int)             {}

// BenchmarkHandler is one /validate request through the Handler as the
// binary configures it (metrics, failure limit), without net/http's own
// parsing and writing.
func BenchmarkHandler(b *testing.B) {
	store := NewStore(StoreOptions{})
	store.Put(compileOK(b, basePolicy()))
	m := NewMetrics()
	if err := m.Register(prometheus.NewRegistry()); err != nil {
		b.Fatal(err)
	}
	h := NewHandler(store, HandlerOptions{
		Observer: m,
		Failures: NewFailureLimiter(FailureLimitOptions{MaxFailures: 10, Window: time.Minute}),
	})
	for _, c := range []struct{ name, tok string }{{"static_token", tokStatic}, {"wrong_token", tokStatic2}} {
		b.Run(c.name, func(b *testing.B) {
			r := httptest.NewRequest("GET", "/validate", nil)
			r.RemoteAddr = "10.1.2.3:4567"
			r.Header.Set("X-Original-URL", "http://registry.example.com/api/servers")
			r.Header.Set("X-Original-Method", "GET")
			r.Header.Set("X-Real-IP", "192.0.2.1")
			r.Header.Set("Authorization", "Bearer "+c.tok)
			w := &discardWriter{h: http.Header{}}
			b.ReportAllocs()
			for b.Loop() {
				clear(w.h)
				h.ServeHTTP(w, r)
			}
		})
	}
}
