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
	checker  *Checker
	clientIP func(*http.Request) string
	env      frontend.Env
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
	return NewHandlerFor(NewChecker(store, opts), opts)
}

// NewHandlerFor returns the HTTP front-ends' handler for a Checker that
// other front-ends share (opts.TrustedProxies and opts.ClientIP are read;
// the rest configures the Checker).
func NewHandlerFor(c *Checker, opts HandlerOptions) *Handler {
	trusted := opts.TrustedProxies
	if trusted == nil {
		trusted = frontend.DefaultTrustedProxies
	}
	h := &Handler{checker: c, clientIP: opts.ClientIP, env: frontend.Env{Trusted: trusted}}
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
	c := Check{
		Req: check.Request{
			Authorization:  r.Header["Authorization"],
			XAuthorization: r.Header["X-Authorization"],
			Cookie:         r.Header["Cookie"],
			MethodOverride: r.Header["X-Http-Method-Override"] != nil || r.Header["X-Http-Method"] != nil || r.Header["X-Method-Override"] != nil,
		},
		TokenRequested: TokenRequested(r.Header[hoptoken.RequestHeader]),
		HTTP:           r,
		httpClientIP:   h.clientIP,
	}
	var ok bool
	c.Deny, ok = fe.Parse(r, &c.Req, &h.env)
	if !ok {
		http.NotFound(w, r)
		return
	}
	res := h.checker.Check(r.Context(), &c, start)
	if res.Token != nil {
		w.Header()[hoptoken.Header] = res.Token
	}
	fe.Write(w, r, res.Answer)
	h.checker.Done(&c, &res, start)
}
