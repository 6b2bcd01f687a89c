package authserver

import (
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"
)

// FailureLimiter limits guessing of static tokens and API keys. Each client
// address has a token bucket of MaxFailures failed attempts that refills over
// Window; once it is empty, the client's static tokens and API keys are
// refused without being compared (ReasonTooManyFailures, 403) until the bucket
// has refilled a little. Session cookies and JWTs are never limited: they are
// not guessable secrets the service compares.
//
// Memory is bounded: at most maxClients addresses are tracked; when full,
// addresses whose buckets are full again are dropped first, then arbitrary
// ones (an attacker rotating addresses gains little: each new address starts
// with MaxFailures attempts anyway).
type FailureLimiter struct {
	limit  rate.Limit
	burst  int
	window time.Duration

	mu      sync.Mutex
	clients map[string]*rate.Limiter
	swept   time.Time
	// tracked mirrors len(clients), so the request path can skip working
	// out the client's address while nobody has failed.
	tracked atomic.Int64
}

// tracking reports whether any client has failed recently (a nil limiter
// tracks nobody).
func (f *FailureLimiter) tracking() bool { return f != nil && f.tracked.Load() > 0 }

// FailureLimitOptions configure a FailureLimiter.
type FailureLimitOptions struct {
	// MaxFailures is the number of failed attempts allowed per Window; 0
	// disables limiting.
	MaxFailures int
	// Window is the time over which MaxFailures are allowed.
	Window time.Duration
}

const maxClients = 100_000

// NewFailureLimiter returns a limiter, or nil (no limiting) when
// opts.MaxFailures is 0.
func NewFailureLimiter(opts FailureLimitOptions) *FailureLimiter {
	if opts.MaxFailures <= 0 || opts.Window <= 0 {
		return nil
	}
	return &FailureLimiter{
		limit:   rate.Limit(float64(opts.MaxFailures) / opts.Window.Seconds()),
		burst:   opts.MaxFailures,
		window:  opts.Window,
		clients: map[string]*rate.Limiter{},
	}
}

// Throttled reports whether client has no failed attempts left.
func (f *FailureLimiter) Throttled(client string, now time.Time) bool {
	if f == nil || client == "" {
		return false
	}
	f.mu.Lock()
	l := f.clients[client]
	if now.Sub(f.swept) > f.window {
		// Forget clients whose bucket is full again, so that once
		// failures stop, the request path stops looking.
		f.swept = now
		for k, c := range f.clients {
			if c.TokensAt(now) >= float64(f.burst) {
				delete(f.clients, k)
			}
		}
		f.tracked.Store(int64(len(f.clients)))
	}
	f.mu.Unlock()
	return l != nil && l.TokensAt(now) < 1
}

// Failed records a failed attempt by client.
func (f *FailureLimiter) Failed(client string, now time.Time) {
	if f == nil || client == "" {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	l := f.clients[client]
	if l == nil {
		if len(f.clients) >= maxClients {
			f.evict(now)
		}
		l = rate.NewLimiter(f.limit, f.burst)
		f.clients[client] = l
	}
	l.AllowN(now, 1)
	f.tracked.Store(int64(len(f.clients)))
}

// evict drops clients that are back to a full bucket, and if that frees too
// little, an eighth of the table.
func (f *FailureLimiter) evict(now time.Time) {
	for k, l := range f.clients {
		if l.TokensAt(now) >= float64(f.burst) {
			delete(f.clients, k)
		}
	}
	for k := range f.clients {
		if len(f.clients) < maxClients-maxClients/8 {
			break
		}
		delete(f.clients, k)
	}
	f.tracked.Store(int64(len(f.clients)))
}

// ClientIPFunc returns how the handler finds a request's client address.
// The ingress's X-Real-IP (or the last X-Forwarded-For entry) is believed
// only when the connection comes from a trusted proxy; otherwise the peer
// address counts, so a client cannot pick its own address to escape the
// failure limit.
func ClientIPFunc(trusted []netip.Prefix) func(*http.Request) string {
	return func(r *http.Request) string {
		peer := peerAddr(r.RemoteAddr)
		if !isTrusted(peer, trusted) {
			return peer.String()
		}
		if v := strings.TrimSpace(r.Header.Get("X-Real-Ip")); v != "" {
			if a, err := netip.ParseAddr(v); err == nil {
				return a.Unmap().String()
			}
		}
		if v := r.Header.Values("X-Forwarded-For"); len(v) > 0 {
			last := v[len(v)-1]
			if i := strings.LastIndexByte(last, ','); i >= 0 {
				last = last[i+1:]
			}
			if a, err := netip.ParseAddr(strings.TrimSpace(last)); err == nil {
				return a.Unmap().String()
			}
		}
		return peer.String()
	}
}

// DefaultTrustedProxies are loopback and private ranges: where an ingress
// controller's pods connect from in a cluster.
var DefaultTrustedProxies = []netip.Prefix{
	netip.MustParsePrefix("127.0.0.0/8"),
	netip.MustParsePrefix("10.0.0.0/8"),
	netip.MustParsePrefix("172.16.0.0/12"),
	netip.MustParsePrefix("192.168.0.0/16"),
	netip.MustParsePrefix("100.64.0.0/10"),
	netip.MustParsePrefix("::1/128"),
	netip.MustParsePrefix("fc00::/7"),
}

// ParsePrefixes parses a comma-separated list of CIDRs or addresses.
func ParsePrefixes(s string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		if !strings.Contains(part, "/") {
			a, err := netip.ParseAddr(part)
			if err != nil {
				return nil, err
			}
			out = append(out, netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()))
			continue
		}
		p, err := netip.ParsePrefix(part)
		if err != nil {
			return nil, err
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

func peerAddr(remote string) netip.Addr {
	host, _, err := net.SplitHostPort(remote)
	if err != nil {
		host = remote
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return netip.Addr{}
	}
	return a.Unmap()
}

func isTrusted(a netip.Addr, trusted []netip.Prefix) bool {
	if !a.IsValid() {
		return false
	}
	for _, p := range trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}
