// Package authserver is the auth service: it serves the proxies' auth checks
// over HTTP (Handler, with the front-ends of package frontend), with the
// server limits, the listener that keeps malformed requests from becoming
// 400s, the metrics and the failure limiter. The decision is package policy's;
// the credential kinds are under authn/.
package authserver

import (
	"net/http"
	"net/netip"
	"time"

	"github.com/go-logr/logr"

	"github.com/registryauth/registry-auth-operator/authserver/check"
	"github.com/registryauth/registry-auth-operator/authserver/frontend"
	"github.com/registryauth/registry-auth-operator/authserver/hoptoken"
	"github.com/registryauth/registry-auth-operator/authserver/policy"
)

// Observer is told about every decision (metrics). It must not block.
type Observer interface {
	// The decision is passed by value: an interface call with a pointer
	// would move every request's Decision to the heap.
	ObserveDecision(d policy.Decision, elapsed time.Duration)
}

// Handler serves the ingress auth check for every HTTP front-end (see
// package frontend): nginx (/validate), Traefik (/forward-auth) and Envoy
// (/ext-authz). Any method is accepted (nginx's auth subrequests are GET;
// other proxies forward the original method). It answers 200 with identity
// headers, or 401/403 with a reason; never another status, because nginx's
// auth_request turns anything else into a 500 for the client.
//
// After an allowing decision it adds the registry's hop token when the
// policy has one and the request needs it (see registryToken), and it
// serves the policies' public keys for that token at
// /.well-known/internal-jwks.json (jwks.go).
type Handler struct {
	store     *policy.Store
	delegator *Delegator
	log       logr.Logger
	now       func() time.Time
	observer  Observer
	clientIP  func(*http.Request) string
	failures  *FailureLimiter
	env       frontend.Env
}

// HandlerOptions configure a Handler.
type HandlerOptions struct {
	Log logr.Logger
	// Now, when set, replaces the clock of decisions (tests).
	Now func() time.Time
	// Observer may be nil.
	Observer Observer
	// TrustedProxies are the peers whose X-Real-IP, X-Forwarded-For and
	// (Traefik) X-Forwarded-* headers are believed; nil means
	// frontend.DefaultTrustedProxies.
	TrustedProxies []netip.Prefix
	// ClientIP extracts the client address; defaults to
	// frontend.ClientIPFunc(TrustedProxies).
	ClientIP func(*http.Request) string
	// Failures limits failed static token and API key attempts per client;
	// nil disables the limit.
	Failures *FailureLimiter
	// Delegator asks policies' delegates; nil means requests that belong to
	// a delegate are refused (delegate).
	Delegator *Delegator
}

// NewHandler returns the auth check handler reading from store.
func NewHandler(store *policy.Store, opts HandlerOptions) *Handler {
	trusted := opts.TrustedProxies
	if trusted == nil {
		trusted = frontend.DefaultTrustedProxies
	}
	h := &Handler{store: store, delegator: opts.Delegator, log: opts.Log, now: opts.Now, observer: opts.Observer, clientIP: opts.ClientIP,
		failures: opts.Failures, env: frontend.Env{Trusted: trusted}}
	if h.clientIP == nil {
		h.clientIP = frontend.ClientIPFunc(trusted)
	}
	return h
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	fe := frontend.Lookup(r.URL.Path)
	if fe == nil {
		if isJWKSPath(r.URL.Path) {
			h.serveJWKS(w, r)
			return
		}
		http.NotFound(w, r)
		return
	}
	req := check.Request{
		Authorization:  r.Header["Authorization"],
		XAuthorization: r.Header["X-Authorization"],
		Cookie:         r.Header["Cookie"],
		MethodOverride: r.Header["X-Http-Method-Override"] != nil || r.Header["X-Http-Method"] != nil || r.Header["X-Method-Override"] != nil,
	}
	deny, ok := fe.Parse(r, &req, &h.env)
	if !ok {
		http.NotFound(w, r)
		return
	}
	var d policy.Decision
	ans := frontend.Answer{}
	if deny != "" {
		d.Reason = deny
	} else {
		now := start // one clock read serves both, unless a test sets Now
		if h.now != nil {
			now = h.now()
		}
		if h.failures.tracking() && (len(req.Authorization) > 0 || len(req.XAuthorization) > 0) {
			req.Throttled = h.failures.Throttled(h.client(r, &req), now)
		}
		d = policy.Decide(r.Context(), h.store.Load(), &req, now)
		if d.SecretMismatch {
			h.failures.Failed(h.client(r, &req), now)
		}
		if d.Reason == check.ReasonDelegate && h.delegator != nil && d.Policy != nil && d.Policy.Delegate() != nil {
			da := h.delegator.ask(r.Context(), r, &req, d.Policy)
			d.Reason, ans.Relayed = da.reason, da.header
		} else if d.Identity != nil {
			// The answer stage: the decision is made; the hop token, if
			// this request needs one, goes with the answer.
			tok, err := registryToken(r, &d, now)
			switch {
			case err != nil:
				d = policy.Decision{Reason: check.ReasonRegistryTokenUnavailable, Policy: d.Policy, Path: d.Path, CredentialName: d.CredentialName}
			case tok != nil:
				w.Header()[hoptoken.Header] = tok
			}
		}
	}
	ans.Reason, ans.Identity = d.Reason, d.Identity
	fe.Write(w, r, ans)
	if h.observer != nil {
		h.observer.ObserveDecision(d, time.Since(start))
	}
	if !d.Allowed() {
		if log := h.log.V(1); log.Enabled() {
			key := ""
			if d.Policy != nil {
				key = d.Policy.Key()
			}
			log.Info("request denied", "policy", key, "reason", d.Reason, "status", d.Status(),
				"path", d.Path, "method", req.Method, "client", h.client(r, &req), "credential", d.CredentialName)
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
func registryToken(r *http.Request, d *policy.Decision, now time.Time) ([]string, error) {
	s := d.Policy.RegistryToken()
	if s == nil {
		return nil, nil
	}
	if !tokenRequested(r.Header[hoptoken.RequestHeader]) && (s.Mode() != hoptoken.ModeAlways || !d.Policy.RegistryPath(d.Path)) {
		return nil, nil
	}
	return s.Mint(d.Identity, now)
}

func tokenRequested(values []string) bool {
	for _, v := range values {
		if v != "" {
			return true
		}
	}
	return false
}

// client works out the client's address only when something needs it (the
// failure limit while it tracks anyone or after a failure, the debug log of
// a denial), once per request.
func (h *Handler) client(r *http.Request, req *check.Request) string {
	if req.ClientIP == "" {
		req.ClientIP = h.clientIP(r)
	}
	return req.ClientIP
}
