package authserver

import (
	"context"
	"net/http"
	"time"

	"github.com/go-logr/logr"

	"github.com/registryauth/registry-auth-operator/authserver/check"
	"github.com/registryauth/registry-auth-operator/authserver/frontend"
	"github.com/registryauth/registry-auth-operator/authserver/hoptoken"
	"github.com/registryauth/registry-auth-operator/authserver/policy"
)

// Checker is the auth check every front-end calls, whatever its protocol
// (the HTTP Handler, Envoy's gRPC ext_authz in frontend/extauthz): the
// failure limit, policy.Decide, the delegation of what a policy does not
// own, and the answer stage (the registry's hop token), then metrics and the
// debug log. It knows no proxy: a front-end maps its request to a Check and
// the Result back to its answer.
type Checker struct {
	store     *policy.Store
	delegator *Delegator
	log       logr.Logger
	now       func() time.Time
	observer  Observer
	failures  *FailureLimiter
}

// NewChecker returns the check reading from store. opts.TrustedProxies and
// opts.ClientIP are the HTTP front-ends' and not used here.
func NewChecker(store *policy.Store, opts HandlerOptions) *Checker {
	return &Checker{store: store, delegator: opts.Delegator, log: opts.Log, now: opts.Now, observer: opts.Observer, failures: opts.Failures}
}

// Check is one auth check as a front-end describes it.
type Check struct {
	// Req is the original request, as the front-end mapped it.
	Req check.Request
	// Deny, when set, refuses the check without a decision: what the proxy
	// sent cannot be believed (bad_original_url, untrusted_proxy, ...).
	Deny check.Reason
	// TokenRequested: the auth request asks for the registry's hop token (a
	// non-empty X-Registry-Api-Auth).
	TokenRequested bool
	// HTTP is the auth request of an HTTP front-end: its headers go to a
	// policy's delegate, and the client address is found in it (only when
	// something needs it: the failure limit, the debug log of a denial).
	// Front-ends of other protocols set Req.ClientIP and DelegateHeader.
	HTTP         *http.Request
	httpClientIP func(*http.Request) string
	// DelegateHeader returns the headers a policy's delegate is sent, for a
	// front-end that is not HTTP; called only to delegate.
	DelegateHeader func() http.Header
}

// client is the client's address, worked out once.
func (c *Check) client() string {
	if c.Req.ClientIP == "" && c.HTTP != nil && c.httpClientIP != nil {
		c.Req.ClientIP = c.httpClientIP(c.HTTP)
	}
	return c.Req.ClientIP
}

// delegateHeader is what a delegate is sent.
func (c *Check) delegateHeader() http.Header {
	switch {
	case c.HTTP != nil:
		return c.HTTP.Header
	case c.DelegateHeader != nil:
		return c.DelegateHeader()
	}
	return http.Header{}
}

// Result is the outcome of a check: the decision (for metrics and logs) and
// what the front-end answers with.
type Result struct {
	Decision policy.Decision
	Answer   frontend.Answer
	// Token is the registry's hop token (X-Internal-Token-Registry) to
	// answer with, nil when none.
	Token []string
}

// Check decides c. start is when the front-end received the request.
func (k *Checker) Check(ctx context.Context, c *Check, start time.Time) Result {
	var res Result
	d := &res.Decision
	if c.Deny != "" {
		d.Reason = c.Deny
		res.Answer.Reason = c.Deny
		return res
	}
	req := &c.Req
	now := start // one clock read serves both, unless a test sets Now
	if k.now != nil {
		now = k.now()
	}
	if k.failures.tracking() && (len(req.Authorization) > 0 || len(req.XAuthorization) > 0) {
		req.Throttled = k.failures.Throttled(c.client(), now)
	}
	*d = policy.Decide(ctx, k.store.Load(), req, now)
	if d.SecretMismatch {
		k.failures.Failed(c.client(), now)
	}
	if d.Reason == check.ReasonDelegate && k.delegator != nil && d.Policy != nil && d.Policy.Delegate() != nil {
		da := k.delegator.ask(ctx, c.delegateHeader(), req, d.Policy)
		d.Reason, res.Answer.Relayed = da.reason, da.header
	} else if d.Identity != nil {
		// The answer stage: the decision is made; the hop token, if this
		// request needs one, goes with the answer.
		tok, err := registryToken(c.TokenRequested, d, now)
		switch {
		case err != nil:
			*d = policy.Decision{Reason: check.ReasonRegistryTokenUnavailable, Policy: d.Policy, Path: d.Path, CredentialName: d.CredentialName}
		case tok != nil:
			res.Token = tok
		}
	}
	res.Answer.Reason, res.Answer.Identity = d.Reason, d.Identity
	if !d.Allowed() && d.Policy != nil {
		res.Answer.Challenge = d.Policy.Challenge(req, d.Path, d.Reason)
	}
	return res
}

// Done records a check once it is answered: metrics, and the debug log of a
// denial.
func (k *Checker) Done(c *Check, res *Result, start time.Time) {
	d := &res.Decision
	if k.observer != nil {
		k.observer.ObserveDecision(*d, time.Since(start))
	}
	if !d.Allowed() {
		if log := k.log.V(1); log.Enabled() {
			key := ""
			if d.Policy != nil {
				key = d.Policy.Key()
			}
			log.Info("request denied", "policy", key, "reason", d.Reason, "status", d.Status(),
				"path", d.Path, "method", c.Req.Method, "client", c.client(), "credential", d.CredentialName)
		}
	}
}

// registryToken is the hop token an allowed request is answered with, nil
// when it needs none: the policy has a registry token, and the auth request
// asks for one (a non-empty X-Registry-Api-Auth, as upstream's nginx sends
// from the registry's /api/ locations) or the policy's mode is "always"
// and the path is a Registry API path. An error means the request needs a
// token that cannot be minted (the key is not loaded): it must be refused,
// not sent on without one.
func registryToken(requested bool, d *policy.Decision, now time.Time) ([]string, error) {
	s := d.Policy.RegistryToken()
	if s == nil {
		return nil, nil
	}
	if !requested && (s.Mode() != hoptoken.ModeAlways || !d.Policy.RegistryPath(d.Path)) {
		return nil, nil
	}
	return s.Mint(d.Identity, now)
}

// TokenRequested reports whether X-Registry-Api-Auth values ask for the hop
// token: any non-empty one does.
func TokenRequested(values []string) bool {
	for _, v := range values {
		if v != "" {
			return true
		}
	}
	return false
}
