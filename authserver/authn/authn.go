// Package authn is what every credential kind shares: the Authenticator
// interface a kind implements, the Input it decides on, the Result it gives,
// the Env it compiles in, and the Problem it reports when part of its
// configuration cannot be put in force.
//
// Each kind lives in a package of its own under authn/ (statictoken, apikey,
// session, jwt). It compiles its own part of a policy, returning its own
// problems, and decides its own part of a request. The policy (package
// policy) lists the kinds in the order a request tries them; no kind knows
// another.
package authn

import (
	"context"
	"time"

	"github.com/registryauth/registry-auth-operator/authserver/check"
	"github.com/registryauth/registry-auth-operator/authserver/secret"
)

// Authenticator decides one credential kind's part of a request.
//
// It must be safe for concurrent use and must not keep in to itself. in is
// passed by value: an interface call with a pointer would move every
// request's Input to the heap.
type Authenticator interface {
	Authenticate(ctx context.Context, in Input) Result
}

// Scheme is the kind of credential the Authorization header carries.
type Scheme uint8

const (
	// SchemeNone: no Authorization header.
	SchemeNone Scheme = iota
	// SchemeBearer: "Bearer <token>".
	SchemeBearer
	// SchemeOther: another scheme, e.g. Basic.
	SchemeOther
	// SchemeMalformed: "Bearer" without a usable token. The policy refuses
	// such a request before any authenticator sees it.
	SchemeMalformed
)

// Input is a request as an authenticator sees it. The policy builds it once
// per request.
type Input struct {
	// Method is the original request's method, as sent.
	Method string
	// MethodOverride: the request carries a method-override header.
	MethodOverride bool
	// Path is the normalised path.
	Path string
	// Registry reports whether Path is under the policy's Registry API
	// prefixes, where static credentials count.
	Registry bool
	// Scheme and Bearer are the parsed credential header; Bearer is set
	// only for SchemeBearer.
	Scheme Scheme
	Bearer string
	// Static is set when Bearer may be a static credential (a static token,
	// an API key): it is not shaped like a JWT, and the request carries no
	// session cookie (which skips static credentials). Digest is then
	// Bearer's digest, computed once for every kind that compares it.
	Static bool
	Digest secret.Digest
	// Cookie is every value of the Cookie header.
	Cookie []string
	// Throttled: the client has failed too often; static credentials are
	// refused without being compared.
	Throttled bool
	// Now is the time of the decision.
	Now time.Time
}

// Outcome is what an authenticator made of a request.
type Outcome uint8

const (
	// Next: not this kind's credential, or not a match; the next kind
	// decides.
	Next Outcome = iota
	// Allow: the request may pass as Result.Identity.
	Allow
	// Deny: the request is refused with Result.Reason, whatever later
	// kinds would say.
	Deny
)

// Result is an authenticator's answer.
type Result struct {
	Outcome Outcome
	// Reason is the reason of an Allow or a Deny. With Next it may be set:
	// it is then the reason to deny with if no later kind allows (the most
	// specific failure seen so far, e.g. an expired session).
	Reason check.Reason
	// Identity is set with Allow.
	Identity *check.Identity
	// Credential names the credential that matched (an API key's name), for
	// logs and metrics.
	Credential string
	// Mismatch is set when a static credential was compared and matched
	// nothing: a failed attempt, for brute-force limiting.
	Mismatch bool
	// Foreign is set with Next when the credential may be someone else's
	// to decide: a session cookie this kind does not accept (the upstream
	// auth server keeps its sessions in its own store), a JWT of an issuer
	// this kind does not know. A policy with a delegate sends the request
	// there when nothing else allows or denies it.
	Foreign bool
}

// AllowAs is an Allow result.
func AllowAs(reason check.Reason, id *check.Identity) Result {
	return Result{Outcome: Allow, Reason: reason, Identity: id}
}

// DenyWith is a Deny result.
func DenyWith(reason check.Reason) Result { return Result{Outcome: Deny, Reason: reason} }

// FailWith is a Next result that sets the reason to deny with.
func FailWith(reason check.Reason) Result { return Result{Outcome: Next, Reason: reason} }

// Env is what a kind's compile step gets besides its own configuration: the
// policy-wide settings it may depend on, already checked.
type Env struct {
	// RegistryPrefixes are the policy's Registry API prefixes, normalised.
	// Empty means none could be loaded: nothing is a Registry API path.
	RegistryPrefixes []string
	// GroupScopes maps a group to the scopes its members get.
	GroupScopes map[string][]string
	// TokenCacheSize is the number of verified tokens a kind may cache
	// (see NewTokenCache); not positive disables caching.
	TokenCacheSize int
}

// Expired reports whether a credential that expires at expires (zero: never)
// has expired at now: from the instant itself on, as a JWT's exp.
func Expired(expires, now time.Time) bool {
	return !expires.IsZero() && !now.Before(expires)
}
