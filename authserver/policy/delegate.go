package policy

import (
	"fmt"
	"net/url"
	"time"
)

// DelegateConfig names the upstream auth server a policy hands what it does
// not own: browser sessions kept in the registry's own store, tokens of
// issuers it does not know (the upstream auth server's own), and, with
// GatewayPaths, every path outside the Registry API. Static credentials and
// JWTs of the policy's issuers are still decided here.
type DelegateConfig struct {
	// URL is the upstream auth server's auth endpoint, e.g.
	// http://auth-server:8888/validate. It gets the same auth request, with
	// the same method and headers.
	URL string
	// Timeout bounds one delegated check (default DefaultDelegateTimeout).
	Timeout time.Duration
	// GatewayPaths sends every request on a path outside the Registry API
	// prefixes to the delegate, whatever it carries: the registry routes MCP
	// traffic through the upstream auth server, which mints that hop's token.
	GatewayPaths bool
	// MaxConcurrent bounds the delegated checks in flight per delegate URL;
	// past it a request is refused at once (delegate_unavailable) rather
	// than queued. 0 means DefaultDelegateMaxConcurrent.
	MaxConcurrent int
}

// Delegate defaults.
const (
	DefaultDelegateTimeout       = 5 * time.Second
	DefaultDelegateMaxConcurrent = 256
	// maxDelegateTimeout stays under nginx's default auth subrequest
	// timeout (proxy_read_timeout 60 s) and our WriteTimeout.
	maxDelegateTimeout = 10 * time.Second
)

// Delegate is a compiled DelegateConfig.
type Delegate struct {
	URL           string
	Timeout       time.Duration
	GatewayPaths  bool
	MaxConcurrent int
}

// compileDelegate checks a delegate's configuration.
func compileDelegate(cfg *DelegateConfig) (*Delegate, error) {
	u, err := url.Parse(cfg.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil || u.Fragment != "" || u.RawQuery != "" {
		// The value is not repeated: user information may hold a secret.
		return nil, fmt.Errorf("the delegate URL must be an http(s) URL with a host, without user information, query or fragment (e.g. http://auth-server:8888/validate)")
	}
	d := &Delegate{URL: u.String(), Timeout: cfg.Timeout, GatewayPaths: cfg.GatewayPaths, MaxConcurrent: cfg.MaxConcurrent}
	if d.Timeout <= 0 {
		d.Timeout = DefaultDelegateTimeout
	}
	if d.Timeout > maxDelegateTimeout {
		return nil, fmt.Errorf("delegate timeout %v is over %v", d.Timeout, maxDelegateTimeout)
	}
	if d.MaxConcurrent <= 0 {
		d.MaxConcurrent = DefaultDelegateMaxConcurrent
	}
	return d, nil
}
