package frontend

import (
	"net"
	"net/http"
	"net/netip"
	"strings"
)

// Which peers are proxies whose account of the client is believed.

// ClientIPFunc returns how the handler finds a request's client address.
// The ingress's X-Real-IP (or the last X-Forwarded-For entry) is believed
// only when the connection comes from a trusted proxy; otherwise the peer
// address counts, so a client cannot pick its own address to escape the
// failure limit.
func ClientIPFunc(trusted []netip.Prefix) func(*http.Request) string {
	return func(r *http.Request) string {
		peer := PeerAddr(r.RemoteAddr)
		if !IsTrusted(peer, trusted) {
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

// PeerAddr is the address of a connection's peer (http.Request.RemoteAddr),
// or the zero address.
func PeerAddr(remote string) netip.Addr {
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

// IsTrusted reports whether a is in one of the trusted prefixes.
func IsTrusted(a netip.Addr, trusted []netip.Prefix) bool {
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
