package authserver

import (
	"container/list"
	"net"
	"net/http"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/registryauth/registry-auth-operator/authserver/check"
)

// DefaultMaxIdleConns bounds the idle keep-alive connections of the auth
// service. An idle net/http connection holds its read and write buffers and
// its goroutine: under 20 KiB (TestIdleConnectionMemory measures it), so
// 1,024 of them stay under 20 MiB of a pod's memory, whatever a
// misconfigured proxy opens.
const DefaultMaxIdleConns = 1024

// ConnTracker counts the auth service's connections and keeps at most
// maxIdle of them idle: past that, the connection idle longest is closed (a
// proxy reconnects when it needs one). Hook it to http.Server.ConnState.
type ConnTracker struct {
	maxIdle int

	mu   sync.Mutex
	idle *list.List // of net.Conn, longest idle first
	at   map[net.Conn]*list.Element

	accepted atomic.Int64
	open     atomic.Int64
	evicted  atomic.Int64
}

// NewConnTracker returns a tracker that keeps at most maxIdle idle
// connections (0 means DefaultMaxIdleConns).
func NewConnTracker(maxIdle int) *ConnTracker {
	if maxIdle <= 0 {
		maxIdle = DefaultMaxIdleConns
	}
	return &ConnTracker{maxIdle: maxIdle, idle: list.New(), at: map[net.Conn]*list.Element{}}
}

// Register registers the connection metrics with reg.
func (t *ConnTracker) Register(reg prometheus.Registerer) error {
	for _, c := range []prometheus.Collector{
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "registry_auth_connections_accepted_total",
			Help: "Connections the auth service accepted. With upstream keepalive a proxy needs a handful; one per check means its connections are not reused.",
		}, func() float64 { return float64(t.accepted.Load()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "registry_auth_connections_open",
			Help: "Connections of the auth service open now.",
		}, func() float64 { return float64(t.open.Load()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "registry_auth_connections_idle",
			Help: "Idle keep-alive connections of the auth service now.",
		}, func() float64 { return float64(t.Idle()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "registry_auth_connections_idle_closed_total",
			Help: "Idle keep-alive connections closed because more than --max-idle-connections were idle.",
		}, func() float64 { return float64(t.evicted.Load()) }),
		refusedCounter(ReasonMalformedRequest, &refused.malformed),
		refusedCounter(ReasonRequestHeaderTooLarge, &refused.tooLarge),
	} {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}

// refusedCounter counts the requests the auth service's connections refused
// before any handler ran (see refusal); they are not decisions.
func refusedCounter(reason check.Reason, n *atomic.Int64) prometheus.Collector {
	return prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name:        "registry_auth_refused_requests_total",
		Help:        "Requests refused before the auth check because net/http could not read them (reason malformed_request, or request_header_too_large past the 64 KiB header limit), answered 401; in this process, whatever listener.",
		ConstLabels: prometheus.Labels{"reason": string(reason)},
	}, func() float64 { return float64(n.Load()) })
}

// Track makes srv report its connections to t.
func (t *ConnTracker) Track(srv *http.Server) { srv.ConnState = t.connState }

func (t *ConnTracker) connState(c net.Conn, s http.ConnState) {
	switch s {
	case http.StateNew:
		t.accepted.Add(1)
		t.open.Add(1)
	case http.StateIdle:
		var evict []net.Conn
		t.mu.Lock()
		if _, ok := t.at[c]; !ok {
			t.at[c] = t.idle.PushBack(c)
		}
		for t.idle.Len() > t.maxIdle {
			oldest := t.idle.Remove(t.idle.Front()).(net.Conn)
			delete(t.at, oldest)
			evict = append(evict, oldest)
		}
		t.mu.Unlock()
		for _, o := range evict {
			t.evicted.Add(1)
			_ = o.Close() // net/http sees the close and reports StateClosed
		}
	case http.StateActive:
		t.forget(c)
	case http.StateClosed, http.StateHijacked:
		t.forget(c)
		t.open.Add(-1)
	}
}

func (t *ConnTracker) forget(c net.Conn) {
	t.mu.Lock()
	if e, ok := t.at[c]; ok {
		t.idle.Remove(e)
		delete(t.at, c)
	}
	t.mu.Unlock()
}

// Idle is the number of idle connections now.
func (t *ConnTracker) Idle() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.idle.Len()
}

// Accepted is the number of connections accepted so far.
func (t *ConnTracker) Accepted() int64 { return t.accepted.Load() }
