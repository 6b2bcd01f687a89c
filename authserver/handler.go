package authserver

import (
	"net/http"
	"net/netip"
	"time"

	"github.com/go-logr/logr"
)

// Observer is told about every decision (metrics). It must not block.
type Observer interface {
	// The decision is passed by value: an interface call with a pointer
	// would move every request's Decision to the heap.
	ObserveDecision(d Decision, elapsed time.Duration)
}

// Handler serves the ingress auth check for nginx (/validate), Traefik
// (/forward-auth) and Envoy (/ext-authz); see proxies.go:
//
//	GET /validate                     policy chosen by the host of X-Original-URL
//	GET /validate/{namespace}/{name}  policy chosen by name
//
// Any method is accepted (nginx's auth subrequests are GET; other proxies
// forward the original method). It answers 200 with identity headers and a
// JSON body, or 401/403 with a JSON reason; never another status, because
// nginx's auth_request turns anything else into a 500 for the client.
type Handler struct {
	store    *Store
	log      logr.Logger
	now      func() time.Time
	observer Observer
	clientIP func(*http.Request) string
	failures *FailureLimiter
	trusted  []netip.Prefix
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
	// DefaultTrustedProxies.
	TrustedProxies []netip.Prefix
	// ClientIP extracts the client address; defaults to
	// ClientIPFunc(TrustedProxies).
	ClientIP func(*http.Request) string
	// Failures limits failed static token and API key attempts per client;
	// nil disables the limit.
	Failures *FailureLimiter
}

// NewHandler returns the auth check handler reading from store.
func NewHandler(store *Store, opts HandlerOptions) *Handler {
	h := &Handler{store: store, log: opts.Log, now: opts.Now, observer: opts.Observer, clientIP: opts.ClientIP, failures: opts.Failures, trusted: trustedFrom(opts)}
	if h.clientIP == nil {
		h.clientIP = ClientIPFunc(h.trusted)
	}
	return h
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	req := Request{
		Authorization:  r.Header["Authorization"],
		XAuthorization: r.Header["X-Authorization"],
		Cookie:         r.Header["Cookie"],
	}
	deny, ok := h.parseRoute(r, &req)
	if !ok {
		http.NotFound(w, r)
		return
	}
	var d Decision
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
		d = Decide(r.Context(), h.store.Load(), &req, now)
		if d.SecretMismatch {
			h.failures.Failed(h.client(r, &req), now)
		}
	}
	h.write(w, r, &d)
	if h.observer != nil {
		h.observer.ObserveDecision(d, time.Since(start))
	}
	if !d.Allowed() {
		if log := h.log.V(1); log.Enabled() {
			policy := ""
			if d.Policy != nil {
				policy = d.Policy.key
			}
			log.Info("request denied", "policy", policy, "reason", d.Reason, "status", d.Status(),
				"path", d.Path, "method", req.OriginalMethod, "client", h.client(r, &req), "credential", d.CredentialName)
		}
	}
}

// client works out the client's address only when something needs it (the
// failure limit while it tracks anyone or after a failure, the debug log of
// a denial), once per request.
func (h *Handler) client(r *http.Request, req *Request) string {
	if req.ClientIP == "" {
		req.ClientIP = h.clientIP(r)
	}
	return req.ClientIP
}

func (h *Handler) write(w http.ResponseWriter, r *http.Request, d *Decision) {
	hdr := w.Header()
	hdr["Content-Type"] = jsonContentType
	hdr["Cache-Control"] = noStore
	var body []byte
	if id := d.Identity; id != nil {
		for i, k := range identityHeaders {
			hdr[k] = id.headers[i]
		}
		body = id.body
		w.WriteHeader(http.StatusOK)
	} else {
		dr := denyReasons[d.Reason]
		if dr.status == http.StatusUnauthorized {
			hdr["Www-Authenticate"] = wwwAuthenticate
		}
		body = dr.body
		w.WriteHeader(dr.status)
	}
	if r.Method != http.MethodHead {
		_, _ = w.Write(body)
	}
}

var (
	jsonContentType = []string{"application/json"}
	noStore         = []string{"no-store"}
	wwwAuthenticate = []string{`Bearer realm="registry"`}
)
