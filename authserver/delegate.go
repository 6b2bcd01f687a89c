package authserver

import (
	"context"
	"errors"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/registryauth/registry-auth-operator/authserver/check"
	"github.com/registryauth/registry-auth-operator/authserver/policy"
)

// Delegator asks a policy's delegate (the upstream auth server) about the
// requests the policy does not own, and relays its answer. It keeps one
// pooled keep-alive client per delegate URL, with at most the policy's
// MaxConcurrent checks in flight to it: past that, a request is refused at
// once rather than queued behind a delegate that is already slow.
//
// A delegate that is down, slow, overloaded or answers anything but 2xx, 401
// or 403 gets the request refused (delegate_unavailable, 403): never an
// allow, and never a 5xx that nginx would turn into a 500.
type Delegator struct {
	transport http.RoundTripper

	mu      sync.Mutex
	byURL   map[string]*delegateTarget
	outcome func(policyKey, outcome string)
}

type delegateTarget struct {
	inFlight chan struct{} // a slot per check in flight
}

// Delegate outcomes, for metrics and logs.
const (
	DelegateAllowed     = "allowed"
	DelegateDenied      = "denied"
	DelegateError       = "error"
	DelegateTimeout     = "timeout"
	DelegateOverloaded  = "overloaded"
	DelegateBadResponse = "bad_response"
)

// NewDelegator returns a delegator. outcome, if not nil, is told the outcome
// of every delegated check (metrics).
func NewDelegator(outcome func(policyKey, outcome string)) *Delegator {
	t := &http.Transport{
		Proxy:                 nil, // the delegate is a peer service: no environment proxy
		DialContext:           (&net.Dialer{Timeout: 2 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:          512,
		MaxIdleConnsPerHost:   256,
		IdleConnTimeout:       90 * time.Second,
		ResponseHeaderTimeout: policy.DefaultDelegateTimeout,
		DisableCompression:    true,
	}
	return &Delegator{transport: t, byURL: map[string]*delegateTarget{}, outcome: outcome}
}

func (d *Delegator) target(del *policy.Delegate) *delegateTarget {
	d.mu.Lock()
	defer d.mu.Unlock()
	t := d.byURL[del.URL]
	if t == nil || cap(t.inFlight) != del.MaxConcurrent {
		t = &delegateTarget{inFlight: make(chan struct{}, del.MaxConcurrent)}
		d.byURL[del.URL] = t
	}
	return t
}

// delegatedRequestHeaders are not passed on: hop-by-hop headers and the
// length of a body the auth request never carries.
var delegatedRequestHeaders = map[string]bool{
	"Connection": true, "Keep-Alive": true, "Proxy-Connection": true, "Proxy-Authorization": true,
	"Te": true, "Trailer": true, "Transfer-Encoding": true, "Upgrade": true, "Content-Length": true,
	"Host": true,
}

// relayedAnswerHeaders are the delegate's answer headers the proxy acts on:
// the identity headers, the hop tokens, the upstream's rate-limit headers and
// its challenge.
var relayedAnswerHeaders = []string{
	"X-User", "X-Username", "X-Client-Id", "X-Scopes", "X-Groups", "X-Auth-Method",
	"X-Server-Name", "X-Tool-Name", "X-Internal-Token", "X-Internal-Token-Registry",
	"X-Ratelimit-Throttled", "X-Ratelimit-Limit", "X-Ratelimit-Remaining", "X-Ratelimit-Reset", "Retry-After",
	"Www-Authenticate",
}

// delegateAnswer is what the delegate said.
type delegateAnswer struct {
	reason check.Reason
	header http.Header // the relayed answer headers
}

// ask sends the auth request (its headers as the proxy sent them, the
// original request described by req) to the delegate of p and returns the
// answer to relay.
func (d *Delegator) ask(ctx context.Context, header http.Header, req *check.Request, p *policy.Policy) delegateAnswer {
	del := p.Delegate()
	outcome := DelegateError
	defer func() {
		if d.outcome != nil {
			d.outcome(p.Key(), outcome)
		}
	}()
	t := d.target(del)
	select {
	case t.inFlight <- struct{}{}:
		defer func() { <-t.inFlight }()
	default:
		outcome = DelegateOverloaded
		return delegateAnswer{reason: check.ReasonDelegateUnavailable}
	}
	ctx, cancel := context.WithTimeout(ctx, del.Timeout)
	defer cancel()
	out, err := http.NewRequestWithContext(ctx, http.MethodGet, del.URL, http.NoBody)
	if err != nil {
		return delegateAnswer{reason: check.ReasonDelegateUnavailable}
	}
	for k, vs := range header {
		if !delegatedRequestHeaders[k] {
			out.Header[k] = vs
		}
	}
	// The upstream auth server reads the original request from
	// X-Original-URL and X-Original-Method, as nginx sends them; other
	// proxies describe it otherwise.
	if out.Header.Get("X-Original-Url") == "" {
		out.Header.Set("X-Original-Url", req.Scheme+"://"+req.Host+req.Path)
	}
	if out.Header.Get("X-Original-Method") == "" && req.Method != "" {
		out.Header.Set("X-Original-Method", req.Method)
	}
	resp, err := d.transport.RoundTrip(out)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) || errors.Is(ctx.Err(), context.DeadlineExceeded) {
			outcome = DelegateTimeout
		}
		return delegateAnswer{reason: check.ReasonDelegateUnavailable}
	}
	// Only the head matters; a small body is drained so the connection can
	// be reused, a large one is not read.
	drain(resp)
	ans := delegateAnswer{header: http.Header{}}
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		ans.reason, outcome = check.ReasonDelegatedAllowed, DelegateAllowed
	case resp.StatusCode == http.StatusUnauthorized:
		ans.reason, outcome = check.ReasonDelegatedUnauthorized, DelegateDenied
	case resp.StatusCode == http.StatusForbidden:
		ans.reason, outcome = check.ReasonDelegatedForbidden, DelegateDenied
	default:
		outcome = DelegateBadResponse
		return delegateAnswer{reason: check.ReasonDelegateUnavailable}
	}
	for _, k := range relayedAnswerHeaders {
		if vs := resp.Header[k]; len(vs) > 0 && headerValuesSafe(vs) {
			ans.header[k] = vs
		}
	}
	return ans
}

// drain reads what is left of a small body and closes it.
func drain(resp *http.Response) {
	buf := make([]byte, 4096)
	for range 4 {
		if _, err := resp.Body.Read(buf); err != nil {
			break
		}
	}
	_ = resp.Body.Close()
}

// headerValuesSafe reports whether header values can be relayed as they
// are (net/http refuses CR and LF in values when it reads them; this
// guards against anything else a delegate might send).
func headerValuesSafe(vs []string) bool {
	for _, v := range vs {
		if strings.ContainsAny(v, "\r\n\x00") {
			return false
		}
	}
	return true
}
