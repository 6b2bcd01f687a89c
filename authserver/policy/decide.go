// Package policy is the decision: it compiles a policy's configuration into
// an immutable Policy (Compile, a loop over the credential kinds), keeps every
// compiled policy in an immutable Snapshot that a Store swaps whole, and
// decides a proxy-neutral check.Request against a snapshot (Decide). It does
// no I/O of its own and imports no net/http.
package policy

import (
	"context"
	"time"

	"github.com/registryauth/registry-auth-operator/authserver/authn"
	"github.com/registryauth/registry-auth-operator/authserver/check"
	"github.com/registryauth/registry-auth-operator/authserver/pathnorm"
	"github.com/registryauth/registry-auth-operator/authserver/secret"
)

// Decision is the outcome of one request.
type Decision struct {
	// Reason says why; its Status is the HTTP status to answer.
	Reason check.Reason
	// Identity is set when the request is allowed.
	Identity *check.Identity
	// Policy is the policy that decided, nil when none was selected.
	Policy *Policy
	// Path is the normalised path (for logs), "" when it could not be
	// normalised.
	Path string
	// CredentialName names the API key that matched (for logs and metrics).
	CredentialName string
	// SecretMismatch is set when a bearer token was compared with the
	// static token and API keys and matched none: a failed attempt, for
	// brute-force limiting.
	SecretMismatch bool
}

// Allowed reports whether the request may pass: with an identity, because
// the policy's delegate said so, or on a public path.
func (d Decision) Allowed() bool {
	return d.Identity != nil || d.Reason == check.ReasonDelegatedAllowed || d.Reason == check.ReasonPublic
}

// Status is the HTTP status to answer: 200, 401 or 403.
func (d Decision) Status() int { return d.Reason.Status() }

// Decide is the auth decision: a pure function of the snapshot, the request
// and the time (JWT verification may fetch the issuer's keys when a token
// names an unknown key; ctx bounds that).
func Decide(ctx context.Context, snap *Snapshot, r *check.Request, now time.Time) Decision {
	p, reason := snap.selectPolicy(r.Policy, r.Host)
	if p == nil {
		return Decision{Reason: reason}
	}
	path, err := pathnorm.Normalize(r.Path)
	if err != nil {
		return Decision{Reason: check.ReasonBadPath, Policy: p}
	}
	if p.public(r.Method, path) {
		// Not evaluated: a token sent along is neither compared nor
		// counted, and nothing is delegated.
		return Decision{Reason: check.ReasonPublic, Policy: p, Path: path}
	}
	d := p.decide(ctx, r, path, now)
	d.Policy = p
	d.Path = path
	return d
}

// decide parses the credentials once and asks each credential kind in turn
// (see kinds): the first Allow or Deny decides. When none does, the request
// is denied with the most specific failure a kind reported, or else with what
// the credential header alone says.
func (p *Policy) decide(ctx context.Context, r *check.Request, path string, now time.Time) Decision {
	authz, refused := authn.SelectCredential(r.Authorization, r.XAuthorization, pathnorm.HasPrefix(path, p.agentPrefixes))
	if refused != "" {
		return Decision{Reason: refused}
	}
	bearer, scheme := authn.ParseBearer(authz)
	if scheme == authn.SchemeMalformed {
		return Decision{Reason: check.ReasonMalformedAuthorization}
	}

	// fail is the reason to deny with if nothing below allows.
	fail := check.ReasonNoCredentials
	switch scheme {
	case authn.SchemeOther:
		fail = check.ReasonUnsupportedAuthzScheme
	case authn.SchemeBearer:
		fail = check.ReasonInvalidCredentials
	}

	in := authn.Input{
		Method:         r.Method,
		MethodOverride: r.MethodOverride,
		Path:           path,
		Scheme:         scheme,
		Bearer:         bearer,
		Cookie:         r.Cookie,
		Throttled:      r.Throttled,
		Now:            now,
	}
	// Static credentials: an opaque bearer (a JWT-shaped one never is one,
	// Compile refuses such secrets) without the session cookie, which skips
	// them. Hashed once here for every kind that compares it.
	if p.static && scheme == authn.SchemeBearer && !secret.LooksLikeJWT(bearer) && !authn.HasCookie(r.Cookie, p.skipCookie) {
		in.Static = true
		in.Registry = pathnorm.HasPrefix(path, p.registryPrefixes)
		in.Digest = secret.DigestString(bearer)
	}
	if p.delegate != nil && p.delegate.GatewayPaths && !pathnorm.HasPrefix(path, p.registryPrefixes) {
		return Decision{Reason: check.ReasonDelegate}
	}

	mismatch, foreign := false, false
	for _, a := range p.authenticators {
		res := a.Authenticate(ctx, in)
		switch res.Outcome {
		case authn.Allow:
			return Decision{Reason: res.Reason, Identity: res.Identity, CredentialName: res.Credential}
		case authn.Deny:
			return Decision{Reason: res.Reason, CredentialName: res.Credential}
		}
		if res.Reason != "" {
			fail = res.Reason
		}
		mismatch = mismatch || res.Mismatch
		foreign = foreign || res.Foreign
	}
	// The registry's session cookie that no kind accepted (none here may
	// know it: today's registry keeps sessions in its own store) is the
	// delegate's, like anything a kind calls foreign.
	if p.delegate != nil && (foreign || authn.HasCookie(r.Cookie, p.skipCookie)) {
		return Decision{Reason: check.ReasonDelegate, SecretMismatch: mismatch}
	}
	return Decision{Reason: fail, SecretMismatch: mismatch}
}
