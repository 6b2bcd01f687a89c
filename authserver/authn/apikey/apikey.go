// Package apikey is named API keys: several static secrets, each with its
// own name, groups and optional method and path limits, on Registry API
// paths only.
package apikey

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/registryauth/registry-auth-operator/authserver/authn"
	"github.com/registryauth/registry-auth-operator/authserver/check"
	"github.com/registryauth/registry-auth-operator/authserver/pathnorm"
	"github.com/registryauth/registry-auth-operator/authserver/secret"
)

// Config configures one named API key.
type Config struct {
	Name     string
	Key      authn.SecretValue
	Previous []secret.PreviousDigest
	Groups   []string
	// PathPrefixes narrows the key; each must be under a Registry API
	// prefix. Empty means all Registry API paths.
	PathPrefixes []string
	// Methods narrows the key to these HTTP methods. Empty means all.
	Methods []string
	// ExpiresAt, when not zero, is when the key stops being accepted: from
	// that instant on, a request with it (current or previous value) is
	// refused with check.ReasonCredentialExpired.
	ExpiresAt time.Time
}

// Authenticator accepts the loaded API keys.
type Authenticator struct {
	keys         []key
	fingerprints map[string]string
	expiries     map[string]time.Time
}

type key struct {
	name     string
	digests  secret.Digests
	prefixes []string // nil: all Registry API paths
	methods  []string // nil: all methods
	identity *check.Identity
	expires  time.Time // zero: never
}

// Compile loads the API keys. Each key that cannot be loaded is left out and
// reported; it returns nil when no key was loaded.
func Compile(cfgs []Config, env *authn.Env) (*Authenticator, []authn.Problem) {
	var probs []authn.Problem
	add := func(field, format string, args ...any) {
		probs = append(probs, authn.Problem{Reason: authn.ProblemInvalidSpec, Field: field, Message: fmt.Sprintf(format, args...)})
	}
	a := &Authenticator{fingerprints: map[string]string{}, expiries: map[string]time.Time{}}
	seen := map[string]bool{}
	for i, k := range cfgs {
		field := fmt.Sprintf("spec.apiKeys[%s]", k.Name)
		if k.Name == "" || !check.HeaderSafe(k.Name) || strings.ContainsAny(k.Name, " ,") {
			add(fmt.Sprintf("spec.apiKeys[%d]", i), "API key name %q is empty or has spaces, commas or control characters", k.Name)
			continue
		}
		if seen[k.Name] {
			add(field, "API key name %q is used twice; names must be unique", k.Name)
			continue
		}
		seen[k.Name] = true
		ak, err := compileLimits(k, env.RegistryPrefixes)
		if err != nil {
			add(field, "%v", err)
			continue
		}
		d, prob := authn.LoadDigest(k.Key, field)
		if prob != nil {
			probs = append(probs, *prob)
			continue
		}
		if other := a.named(d); other != "" {
			// The holder's identity would depend on the order of the keys.
			add(field, "API key %q has the same value as API key %q; each key must be different", k.Name, other)
			continue
		}
		ak.digests = secret.Digests{Current: d, Previous: authn.ClonePrevious(k.Previous, d)}
		groups := check.SafeList(k.Groups)
		ak.identity = check.NewIdentity(k.Name, k.Name, groups, check.ScopesFor(groups, env.GroupScopes), check.MethodNetworkTrusted)
		ak.expires = k.ExpiresAt
		a.keys = append(a.keys, ak)
		a.fingerprints[k.Name] = d.Fingerprint()
		if !k.ExpiresAt.IsZero() {
			a.expiries[k.Name] = k.ExpiresAt
		}
	}
	if len(a.keys) == 0 {
		return nil, probs
	}
	return a, probs
}

// named returns the name of the loaded key whose current value has digest d,
// or "".
func (a *Authenticator) named(d secret.Digest) string {
	for i := range a.keys {
		if a.keys[i].digests.Current == d {
			return a.keys[i].name
		}
	}
	return ""
}

// Fingerprints maps each loaded key's name to its fingerprint.
func (a *Authenticator) Fingerprints() map[string]string { return a.fingerprints }

// Expiries maps the name of each loaded key that has an expiry to it.
func (a *Authenticator) Expiries() map[string]time.Time { return a.expiries }

func compileLimits(k Config, registry []string) (key, error) {
	ak := key{name: k.Name}
	for _, pre := range k.PathPrefixes {
		if err := pathnorm.CheckPrefix(pre); err != nil {
			return ak, err
		}
		// A narrower prefix must lie under a Registry API prefix: API keys
		// never count on gateway paths.
		if !pathnorm.HasPrefix(pre, registry) && !slices.Contains(registry, pre) {
			return ak, fmt.Errorf("path prefix %q is not under the Registry API prefixes %v", pre, registry)
		}
		ak.prefixes = append(ak.prefixes, pre)
	}
	for _, m := range k.Methods {
		m = strings.ToUpper(m)
		switch m {
		case "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS":
		default:
			return ak, fmt.Errorf("method %q is not one of GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS", m)
		}
		if !slices.Contains(ak.methods, m) {
			ak.methods = append(ak.methods, m)
		}
	}
	return ak, nil
}

// Authenticate compares a static bearer token with every key.
func (a *Authenticator) Authenticate(_ context.Context, in authn.Input) authn.Result {
	if !in.Static {
		return authn.Result{}
	}
	if in.Throttled {
		return authn.DenyWith(check.ReasonTooManyFailures)
	}
	k, prev := a.match(&in.Digest, in.Now)
	if k == nil {
		return authn.Result{Mismatch: true}
	}
	res := authn.Result{Outcome: authn.Deny, Credential: k.name}
	switch {
	case authn.Expired(k.expires, in.Now):
		// The holder proved they have the key: telling them it expired
		// (rather than invalid_credentials) says what to do, and tells
		// nobody else anything.
		res.Reason = check.ReasonCredentialExpired
	case !in.Registry:
		res.Reason = check.ReasonRegistryCredOnGateway
	case !k.allows(in):
		res.Reason = check.ReasonAPIKeyForbidden
	default:
		res.Outcome, res.Reason, res.Identity = authn.Allow, check.ReasonAllowedAPIKey, k.identity
		if prev {
			res.Reason = check.ReasonAllowedAPIKeyPrevious
		}
	}
	return res
}

// match compares d with every key, current and previous, without an early
// exit, so the time taken does not tell which key (if any) matched.
func (a *Authenticator) match(d *secret.Digest, now time.Time) (*key, bool) {
	match, prev := -1, false
	for i := range a.keys {
		if ok, pv := a.keys[i].digests.Match(d, now); ok && match < 0 {
			match, prev = i, pv
		}
	}
	if match < 0 {
		return nil, false
	}
	return &a.keys[match], prev
}

// allows reports whether the key's method and path limits admit the
// request. A limited key refuses what could get round its limits: a
// method-override header (the application may act on that method instead),
// and ';' path parameters (some servers strip them, so "/api/servers;x/../y"
// may reach another path than the one checked).
func (k *key) allows(in authn.Input) bool {
	if k.methods == nil && k.prefixes == nil {
		return true
	}
	if in.MethodOverride || strings.IndexByte(in.Path, ';') >= 0 {
		return false
	}
	if k.methods != nil && !slices.Contains(k.methods, strings.ToUpper(in.Method)) {
		return false
	}
	return k.prefixes == nil || pathnorm.HasPrefix(in.Path, k.prefixes)
}
