// Package session is the registry web app's browser session cookie: an
// itsdangerous-signed, self-contained record of the user (verifier.go), cached
// once verified (session.go).
package session

import (
	"context"
	"time"

	"github.com/registryauth/registry-auth-operator/authserver/authn"
	"github.com/registryauth/registry-auth-operator/authserver/check"
	"github.com/registryauth/registry-auth-operator/authserver/secret"
)

// Defaults of the registry web app.
const (
	DefaultCookieName = "mcp_gateway_session"
	DefaultMaxAge     = 8 * time.Hour
)

// Config configures browser session cookies.
type Config struct {
	CookieName string
	// SecretKeys verify the cookie signature; more than one while the web
	// app's SECRET_KEY is being rotated.
	SecretKeys []authn.SecretValue
	MaxAge     time.Duration
	// Previous are signing keys replaced by a rotation, kept until the end
	// of the rotation grace window: cookies they signed are accepted until
	// then (reason session_previous), never after. The web app signs with
	// the key in force only, and so does the registry's hop token.
	Previous []PreviousKey
}

// PreviousKey is a replaced session signing key and the end of its grace
// window. It is secret material: it is never logged nor reported.
type PreviousKey struct {
	Value     []byte
	ExpiresAt time.Time
}

// Field is the policy field the session's problems name.
const Field = "spec.session"

// Authenticator accepts the registry web app's session cookie.
type Authenticator struct {
	cookie   string
	verifier *sessionVerifier
	scopes   map[string][]string
	cache    *authn.TokenCache
}

// Compile loads the session signing keys. It returns nil when sessions are
// not configured or no key could be loaded (then with the problems).
func Compile(cfg *Config, env *authn.Env) (*Authenticator, []authn.Problem) {
	if cfg == nil {
		return nil, nil
	}
	var probs []authn.Problem
	var keys [][]byte
	for _, sv := range cfg.SecretKeys {
		v, prob := authn.LoadSecret(sv, Field+".secretKeyRef", false)
		if prob != nil {
			probs = append(probs, *prob)
			continue
		}
		keys = append(keys, v)
	}
	if len(keys) == 0 {
		return nil, probs
	}
	maxAge := cfg.MaxAge
	if maxAge <= 0 {
		maxAge = DefaultMaxAge
	}
	name := cfg.CookieName
	if name == "" {
		name = DefaultCookieName
	}
	return &Authenticator{cookie: name, verifier: newSessionVerifierWithPrevious(keys, cfg.Previous, maxAge), scopes: env.GroupScopes,
		cache: authn.NewTokenCache(env.TokenCacheSize)}, probs
}

// Authenticate verifies the session cookie, if the request carries one. A
// cookie that does not verify denies a request that has no other credential
// (session_invalid); with a bearer token, the token decides.
func (a *Authenticator) Authenticate(_ context.Context, in authn.Input) authn.Result {
	cookie, found, ambiguous := authn.CookieValue(in.Cookie, a.cookie)
	if !found {
		return authn.Result{}
	}
	if !ambiguous {
		if id, previous := a.authenticate(cookie, in.Now); id != nil {
			if previous {
				return authn.AllowAs(check.ReasonAllowedSessionPrevious, id)
			}
			return authn.AllowAs(check.ReasonAllowedSession, id)
		}
	}
	// Not a cookie of ours (today's registry keeps a session id in it, and
	// the session in its own store), or not a valid one: the delegate, if
	// any, may know it.
	res := authn.Result{Foreign: !ambiguous}
	if in.Scheme == authn.SchemeNone {
		res.Reason = check.ReasonSessionInvalid
	}
	return res
}

// authenticate verifies a session cookie and returns its identity, or nil,
// and whether a previous key (in its grace window) signed it. Cookies
// verified with a key in force are cached by digest until they expire (at
// most authn.MaxCachedTTL), as JWTs are; those of a previous key are not,
// so that none outlives its key's window and each is counted as previous.
func (a *Authenticator) authenticate(cookie string, now time.Time) (*check.Identity, bool) {
	d := secret.DigestString(cookie)
	if id := a.cache.Get(&d, now); id != nil {
		return id, false
	}
	claims, _, previous, ok := a.verifier.verifyKey(cookie, now)
	if !ok {
		return nil, false
	}
	groups := check.SafeList(claims.Groups)
	id := check.NewIdentity(claims.Username, claims.Username, groups, check.ScopesFor(groups, a.scopes), check.MethodSession)
	if !previous.IsZero() {
		return id, true
	}
	if until := a.verifier.expiry(cookie); until.After(now) {
		if limit := now.Add(authn.MaxCachedTTL); until.After(limit) {
			until = limit
		}
		a.cache.Put(&d, id, until, now)
	}
	return id, false
}
