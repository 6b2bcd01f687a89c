package authserver

import (
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"
)

// FailureLimiter limits guessing of static tokens and API keys. Each client
// (an IPv4 address, or the /64 an IPv6 address is in: see keyOf) has a token
// bucket of MaxFailures failed attempts that refills over
// Window; once it is empty, the client's static tokens and API keys are
// refused without being compared (ReasonTooManyFailures, 403) until the bucket
// has refilled a little. Session cookies and JWTs are never limited: they are
// not guessable secrets the service compares.
//
// Memory is bounded: at most maxClients clients are tracked; when full,
// clients whose buckets are full again are dropped first, then clients with
// attempts left, and clients that are locked out only as a last resort (see
// evict).
type FailureLimiter struct {
	limit  rate.Limit
	burst  int
	window time.Duration

	mu      sync.Mutex
	clients map[clientKey]*rate.Limiter
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
		clients: map[clientKey]*rate.Limiter{},
	}
}

// clientKey is what the failure limit counts by: an IPv4 address, the /64
// network of an IPv6 address, or, for a client that is no address (a custom
// HandlerOptions.ClientIP), its string.
type clientKey struct {
	addr netip.Addr
	name string
}

// keyOf returns client's key. An IPv6 client is counted by its /64: a single
// host or site usually has a whole /64 (SLAAC, privacy addresses), so per
// address it would have a new budget for every address it cares to use. An
// IPv4-mapped IPv6 address is the IPv4 address. keyOf does not allocate.
func keyOf(client string) clientKey {
	a, err := netip.ParseAddr(client)
	if err != nil {
		return clientKey{name: client}
	}
	a = a.Unmap()
	if a.Is6() {
		if k, ok := nat64IPv4(a); ok {
			return clientKey{addr: k}
		}
		p, _ := a.Prefix(64) // drops the zone too
		a = p.Addr()
	}
	return clientKey{addr: a}
}

// NAT64 prefixes (RFC 6052's well-known prefix, RFC 8215's local-use one):
// behind a NAT64 or SIIT edge every IPv4 client appears inside them, so
// counting them per /64 would put all those clients in one budget.
var (
	nat64WellKnown = netip.MustParsePrefix("64:ff9b::/96")
	nat64LocalUse  = netip.MustParsePrefix("64:ff9b:1::/48")
)

// nat64IPv4 is the key of a NAT64 client: in the well-known prefix, the
// IPv4 address in its last 32 bits (its only embedding); in the local-use
// prefix, whose embedding the operator of the translator chooses (RFC 6052
// allows /48 to /96), the whole address, which the translator assigns and
// the client cannot choose.
func nat64IPv4(a netip.Addr) (netip.Addr, bool) {
	switch {
	case nat64WellKnown.Contains(a):
		b := a.As16()
		return netip.AddrFrom4([4]byte{b[12], b[13], b[14], b[15]}), true
	case nat64LocalUse.Contains(a):
		return a.WithZone(""), true
	}
	return netip.Addr{}, false
}

// Throttled reports whether client has no failed attempts left.
func (f *FailureLimiter) Throttled(client string, now time.Time) bool {
	if f == nil || client == "" {
		return false
	}
	key := keyOf(client)
	f.mu.Lock()
	l := f.clients[key]
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
	key := keyOf(client)
	f.mu.Lock()
	defer f.mu.Unlock()
	l := f.clients[key]
	if l == nil {
		if len(f.clients) >= maxClients {
			f.evict(now)
		}
		l = rate.NewLimiter(f.limit, f.burst)
		f.clients[key] = l
	}
	l.AllowN(now, 1)
	f.tracked.Store(int64(len(f.clients)))
}

// evict makes room in a full table. Each call frees at least an eighth of it,
// so the scans cost a bounded amount per new client (at most three passes
// over maxClients entries every maxClients/8 new clients), in this order:
//
//  1. clients whose bucket is full again (forgetting them loses nothing);
//  2. clients with attempts left, in map order (arbitrary);
//  3. clients that are locked out (no attempt left), in map order, and only
//     while fewer than maxClients/8 clients have gone in 1 and 2.
//
// So a locked-out client is never evicted while an eighth of the table holds
// clients that are not locked out: filling the table with new addresses does
// not release a client that is locked out. Only when nearly all of the
// table is locked out do some locked-out clients go (arbitrary ones); freeing
// fewer there would make every new client pay a full scan.
func (f *FailureLimiter) evict(now time.Time) {
	const target = maxClients - maxClients/8
	for k, l := range f.clients {
		if l.TokensAt(now) >= float64(f.burst) {
			delete(f.clients, k)
		}
	}
	for pass := 0; pass < 2 && len(f.clients) >= target; pass++ {
		for k, l := range f.clients {
			if len(f.clients) < target {
				break
			}
			if pass == 1 || l.TokensAt(now) >= 1 {
				delete(f.clients, k)
			}
		}
	}
	f.tracked.Store(int64(len(f.clients)))
}
