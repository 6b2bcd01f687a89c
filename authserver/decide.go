package authserver

import (
	"context"
	"strings"
	"time"

	"github.com/registryauth/registry-auth-operator/authserver/secret"

	"github.com/registryauth/registry-auth-operator/authserver/pathnorm"
)

// Request is what the ingress tells the auth service about one request. The
// handler fills it from headers without interpreting them; Decide does all
// parsing, so the table tests of Decide cover it.
type Request struct {
	// Policy is "namespace/name" from /validate/{namespace}/{name}, or ""
	// for plain /validate (the policy is then chosen by host).
	Policy string
	// OriginalURL is X-Original-URL: scheme://host/path?query as the client
	// sent it.
	OriginalURL string
	// OriginalMethod is X-Original-Method.
	OriginalMethod string
	// Authorization and XAuthorization are every value of the Authorization
	// and X-Authorization headers.
	Authorization  []string
	XAuthorization []string
	// Cookie is every value of the Cookie header.
	Cookie []string
	// ClientIP is the client address as far as the trusted proxy tells it.
	ClientIP string
	// Throttled is set when the client has failed too often (see
	// FailureLimiter): its static tokens and API keys are then refused
	// without being compared. Sessions and JWTs are not affected.
	Throttled bool
}

// Decision is the outcome of one request.
type Decision struct {
	// Reason says why; its Status is the HTTP status to answer.
	Reason Reason
	// Identity is set when the request is allowed.
	Identity *Identity
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

// Allowed reports whether the request may pass.
func (d Decision) Allowed() bool { return d.Identity != nil }

// Status is the HTTP status to answer: 200, 401 or 403.
func (d Decision) Status() int { return d.Reason.Status() }

// Decide is the auth decision: a pure function of the snapshot, the request
// and the time (JWT verification may fetch the issuer's keys when a token
// names an unknown key; ctx bounds that).
func Decide(ctx context.Context, snap *Snapshot, r *Request, now time.Time) Decision {
	host, rawPath, ok := splitOriginalURL(r.OriginalURL)
	if !ok {
		return Decision{Reason: ReasonBadOriginalURL}
	}
	p, reason := snap.selectPolicy(r.Policy, host)
	if p == nil {
		return Decision{Reason: reason}
	}
	path, err := pathnorm.Normalize(rawPath)
	if err != nil {
		return Decision{Reason: ReasonBadPath, Policy: p}
	}
	d := p.decide(ctx, r, path, now)
	d.Policy = p
	d.Path = path
	return d
}

// decide applies the policy's rules, in order:
//
//  1. static token, on Registry API paths, when no session cookie is sent;
//  2. named API keys, likewise;
//  3. the session cookie;
//  4. an IdP JWT bearer token.
//
// A bearer token that is not the static token or an API key falls through to
// the JWT check, so IdP tokens keep working on Registry API paths. On gateway
// paths static tokens and API keys never count.
func (p *Policy) decide(ctx context.Context, r *Request, path string, now time.Time) Decision {
	authz, ambiguous := authorizationValue(r.Authorization, r.XAuthorization)
	if ambiguous {
		return Decision{Reason: ReasonAmbiguousAuthorization}
	}
	bearer, scheme := parseBearer(authz)
	if scheme == schemeMalformed {
		return Decision{Reason: ReasonMalformedAuthorization}
	}

	// fail is the reason to deny with if nothing below allows.
	fail := ReasonNoCredentials
	switch scheme {
	case schemeOther:
		fail = ReasonUnsupportedAuthzScheme
	case schemeBearer:
		fail = ReasonInvalidCredentials
	}

	// Static tokens and API keys. A JWT-shaped bearer is never one (Compile
	// refuses such secrets), so it goes straight to the JWT check.
	mismatch := false
	if scheme == schemeBearer && !secret.LooksLikeJWT(bearer) && (p.static != nil || len(p.apiKeys) > 0) && !hasCookie(r.Cookie, p.skipCookie) {
		if r.Throttled {
			return Decision{Reason: ReasonTooManyFailures}
		}
		registry := pathnorm.HasPrefix(path, p.registryPrefixes)
		d := secret.DigestString(bearer)
		if p.static != nil {
			if ok, prev := p.static.digests.Match(&d, now); ok {
				if !registry {
					return Decision{Reason: ReasonRegistryCredOnGateway}
				}
				reason := ReasonAllowedStaticToken
				if prev {
					reason = ReasonAllowedStaticTokenPrevious
				}
				return Decision{Reason: reason, Identity: p.static.identity}
			}
		}
		if k, prev := p.matchAPIKey(&d, now); k != nil {
			if !registry {
				return Decision{Reason: ReasonRegistryCredOnGateway, CredentialName: k.name}
			}
			if !k.allows(r.OriginalMethod, path) {
				return Decision{Reason: ReasonAPIKeyForbidden, CredentialName: k.name}
			}
			reason := ReasonAllowedAPIKey
			if prev {
				reason = ReasonAllowedAPIKeyPrevious
			}
			return Decision{Reason: reason, Identity: k.identity, CredentialName: k.name}
		}
		mismatch = true
	}

	if p.session != nil {
		if cookie, found, ambiguous := cookieValue(r.Cookie, p.session.cookie); found {
			if !ambiguous {
				if id := p.session.authenticate(cookie, now); id != nil {
					return Decision{Reason: ReasonAllowedSession, Identity: id}
				}
			}
			if scheme == schemeNone {
				fail = ReasonSessionInvalid
			}
		}
	}

	if scheme == schemeBearer && secret.LooksLikeJWT(bearer) {
		switch {
		case p.jwt != nil:
			id, reason := p.jwt.authenticate(ctx, bearer, now)
			if id != nil {
				return Decision{Reason: reason, Identity: id}
			}
			fail = reason
		case p.jwtUnavailable:
			fail = ReasonOIDCIssuerNotDiscovered
		default:
			fail = ReasonJWTNotConfigured
		}
	}
	return Decision{Reason: fail, SecretMismatch: mismatch}
}

// matchAPIKey compares d with every key, current and previous, without an
// early exit, so the time taken does not tell which key (if any) matched.
func (p *Policy) matchAPIKey(d *secret.Digest, now time.Time) (*apiKeyAuth, bool) {
	match, prev := -1, false
	for i := range p.apiKeys {
		if ok, pv := p.apiKeys[i].digests.Match(d, now); ok && match < 0 {
			match, prev = i, pv
		}
	}
	if match < 0 {
		return nil, false
	}
	return &p.apiKeys[match], prev
}

// allows reports whether the key's method and path limits admit the request.
func (k *apiKeyAuth) allows(method, path string) bool {
	if k.methods != nil && !containsString(k.methods, strings.ToUpper(method)) {
		return false
	}
	return k.prefixes == nil || pathnorm.HasPrefix(path, k.prefixes)
}

// splitOriginalURL takes X-Original-URL apart: it must be an absolute http or
// https URL with a host (what ingress-nginx sends: $scheme://$http_host
// $request_uri). It returns the normalised host and the raw path without the
// query.
func splitOriginalURL(u string) (host, path string, ok bool) {
	var rest string
	switch {
	case len(u) > 7 && strings.EqualFold(u[:7], "http://"):
		rest = u[7:]
	case len(u) > 8 && strings.EqualFold(u[:8], "https://"):
		rest = u[8:]
	default:
		return "", "", false
	}
	// The authority ends at the first '/', '?' or '#'. A URL without a
	// path ("http://host" or "http://host?q") has the path "/".
	end := strings.IndexAny(rest, "/?#")
	if end < 0 {
		end = len(rest)
	}
	authority := rest[:end]
	if authority == "" || strings.ContainsAny(authority, "@ ") {
		return "", "", false
	}
	host = pathnorm.Host(authority)
	if host == "" {
		return "", "", false
	}
	rest = rest[end:]
	if rest == "" || rest[0] != '/' {
		rest = "/" + rest
	}
	slash := 0
	path = rest[slash:]
	if q := strings.IndexByte(path, '?'); q >= 0 {
		path = path[:q]
	}
	return host, path, true
}

// authorizationValue picks the credential header. The original server
// accepts X-Authorization where a proxy strips Authorization. More than one
// value, or both headers with different values, is ambiguous and refused:
// proxies and applications disagree on which of several values counts.
func authorizationValue(authz, xauthz []string) (string, bool) {
	if len(authz) > 1 || len(xauthz) > 1 {
		return "", true
	}
	switch {
	case len(authz) == 1 && len(xauthz) == 1:
		if authz[0] != xauthz[0] {
			return "", true
		}
		return authz[0], false
	case len(authz) == 1:
		return authz[0], false
	case len(xauthz) == 1:
		return xauthz[0], false
	}
	return "", false
}

type authScheme int

const (
	schemeNone      authScheme = iota // no Authorization header
	schemeBearer                      // "Bearer <token>"
	schemeOther                       // another scheme, e.g. Basic
	schemeMalformed                   // "Bearer" without a usable token
)

// parseBearer parses "Bearer <token>" (RFC 6750): the scheme is
// case-insensitive and followed by one or more spaces; the token is the rest
// and must be printable ASCII without white space. Tabs, an empty token or a
// token with inner spaces are malformed.
func parseBearer(h string) (string, authScheme) {
	if h == "" {
		return "", schemeNone
	}
	sp := strings.IndexByte(h, ' ')
	scheme := h
	if sp >= 0 {
		scheme = h[:sp]
	}
	if !strings.EqualFold(scheme, "bearer") {
		if strings.HasPrefix(strings.ToLower(h), "bearer") {
			return "", schemeMalformed // "Bearer\t...", "Bearerabc"
		}
		return "", schemeOther
	}
	if sp < 0 {
		return "", schemeMalformed
	}
	tok := strings.TrimLeft(h[sp:], " ")
	if tok == "" {
		return "", schemeMalformed
	}
	for i := 0; i < len(tok); i++ {
		if c := tok[i]; c <= ' ' || c >= 0x7f {
			return "", schemeMalformed
		}
	}
	return tok, schemeBearer
}

// cookieValue returns the value of the named cookie from Cookie header
// values, without allocating; quotes around the value are removed. A cookie
// sent more than once with different values is ambiguous: frameworks differ
// on which one counts (most take the first, Starlette the last), so an
// upstream that reads the cookie itself could act on another one than the
// one verified here. It is then not used.
func cookieValue(headers []string, name string) (v string, found, ambiguous bool) {
	for _, h := range headers {
		for len(h) > 0 {
			var part string
			if i := strings.IndexByte(h, ';'); i >= 0 {
				part, h = h[:i], h[i+1:]
			} else {
				part, h = h, ""
			}
			part = strings.TrimSpace(part)
			eq := strings.IndexByte(part, '=')
			if eq < 0 || part[:eq] != name {
				continue
			}
			val := part[eq+1:]
			if len(val) >= 2 && val[0] == '"' && val[len(val)-1] == '"' {
				val = val[1 : len(val)-1]
			}
			switch {
			case !found:
				v, found = val, true
			case val != v:
				return "", true, true
			}
		}
	}
	return v, found, false
}

// hasCookie reports whether the named cookie is present, whatever its value.
func hasCookie(headers []string, name string) bool {
	_, found, _ := cookieValue(headers, name)
	return found
}
