package jwt

import (
	"context"
	"slices"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"

	"github.com/registryauth/registry-auth-operator/authserver/authn"
	"github.com/registryauth/registry-auth-operator/authserver/check"
	"github.com/registryauth/registry-auth-operator/authserver/secret"
)

// Config configures IdP JWT bearer tokens.
type Config struct {
	IssuerURL     string
	Audiences     []string
	UsernameClaim string
	GroupsClaim   string
	Preset        string
	// Issuer is the discovered issuer (see Issuers.Resolve). Nil means
	// discovery has not succeeded yet: JWTs are refused. Problem then says
	// why.
	Issuer  *Issuer
	Problem *authn.Problem
}

// Field is the policy field the JWT issuer's problems name.
const Field = "spec.oidc"

// state is what an Authenticator can do with a JWT.
type state uint8

const (
	// notConfigured: the policy names no issuer (or an unusable one).
	notConfigured state = iota
	// unavailable: the issuer was never discovered; JWTs cannot be
	// verified.
	unavailable
	// verifying: JWTs are verified with the issuer's keys.
	verifying
)

// Authenticator verifies JWT bearer tokens for one compiled policy. Every
// policy has one: without an issuer it only says why a JWT is refused.
type Authenticator struct {
	state state
	// configuredURL is the issuer URL of an issuer never discovered.
	configuredURL  string
	verifier       *oidc.IDTokenVerifier
	issuers        []string
	audiences      []string
	preset         string
	usernameClaims []string
	groupsClaims   []string
	clientClaims   []string
	method         check.Method
	groupScopes    map[string][]string
	leeway         time.Duration
	cache          *authn.TokenCache
}

// noOIDC is the Authenticator of every policy without OIDC: it refuses
// nothing and accepts nothing.
var noOIDC = &Authenticator{}

// jwtLeeway is the clock skew allowed on exp and nbf.
const jwtLeeway = 30 * time.Second

// Compile builds the policy's JWT authenticator. It never returns nil: a
// policy without a usable issuer still refuses JWTs with the reason why.
func Compile(cfg *Config, env *authn.Env) (*Authenticator, []authn.Problem) {
	switch {
	case cfg == nil:
		// Shared: an Authenticator is never modified, and one per policy
		// without OIDC would be 2 MB at 10,000 policies.
		return noOIDC, nil
	case len(cfg.Audiences) == 0:
		return &Authenticator{}, []authn.Problem{{Reason: authn.ProblemInvalidSpec, Field: Field + ".audiences", Message: "at least one audience is required"}}
	case cfg.Issuer == nil:
		prob := authn.Problem{Reason: authn.ProblemOIDCDiscoveryFailed, Field: Field, Message: "issuer " + cfg.IssuerURL + " has not been discovered"}
		if cfg.Problem != nil {
			prob = *cfg.Problem
		}
		return &Authenticator{state: unavailable, configuredURL: cfg.IssuerURL}, []authn.Problem{prob}
	}
	a := newAuthenticator(cfg, env.GroupScopes, env.TokenCacheSize)
	if cfg.Problem != nil {
		// Discovery failed but an earlier one succeeded: keep verifying
		// with it, and report.
		return a, []authn.Problem{*cfg.Problem}
	}
	return a, nil
}

func newAuthenticator(cfg *Config, groupScopes map[string][]string, cacheSize int) *Authenticator {
	preset := cfg.Preset
	if preset == "" {
		preset = PresetGeneric
	}
	claims := presetDefaults(preset)
	if cfg.UsernameClaim != "" {
		claims.username = []string{cfg.UsernameClaim}
	}
	if cfg.GroupsClaim != "" {
		claims.groups = []string{cfg.GroupsClaim}
	}
	issuers := []string{cfg.Issuer.url}
	if preset == PresetEntra {
		if v1 := entraV1Issuer(cfg.Issuer.url); v1 != "" {
			issuers = append(issuers, v1)
		}
	}
	v := oidc.NewVerifier(cfg.Issuer.url, cfg.Issuer.keys, &oidc.Config{
		SupportedSigningAlgs: cfg.Issuer.algs,
		// Checked below, with the preset's rules and a leeway.
		SkipClientIDCheck: true,
		SkipExpiryCheck:   true,
		SkipIssuerCheck:   true,
	})
	return &Authenticator{
		state:          verifying,
		verifier:       v,
		issuers:        issuers,
		audiences:      append([]string(nil), cfg.Audiences...),
		preset:         preset,
		usernameClaims: claims.username,
		groupsClaims:   claims.groups,
		clientClaims:   claims.client,
		method:         presetMethod(preset),
		groupScopes:    groupScopes,
		leeway:         jwtLeeway,
		cache:          authn.NewTokenCache(cacheSize),
	}
}

// Authenticate verifies a bearer token shaped like a JWT. Any other request
// is not its concern.
func (a *Authenticator) Authenticate(ctx context.Context, in authn.Input) authn.Result {
	if in.Scheme != authn.SchemeBearer || !secret.LooksLikeJWT(in.Bearer) {
		return authn.Result{}
	}
	switch a.state {
	case notConfigured:
		return authn.Result{Reason: check.ReasonJWTNotConfigured, Foreign: true}
	case unavailable:
		return authn.Result{Reason: check.ReasonOIDCIssuerNotDiscovered, Foreign: !a.ownIssuer(in.Bearer)}
	}
	id, reason := a.verify(ctx, in.Bearer, in.Now)
	if id != nil {
		return authn.AllowAs(reason, id)
	}
	// A token of another issuer (the upstream auth server's own, say) is
	// not ours to refuse for good.
	return authn.Result{Reason: reason, Foreign: !a.ownIssuer(in.Bearer)}
}

// ownIssuer reports whether an unverified token names one of this kind's
// issuers in iss. It only decides whether someone else may verify the token;
// nothing is accepted on it.
func (a *Authenticator) ownIssuer(raw string) bool {
	iss := unverifiedIssuer(raw)
	if a.state == unavailable {
		return iss != "" && iss == a.configuredURL
	}
	return iss != "" && contains(a.issuers, iss)
}

// verify verifies a JWT and returns the identity, or a deny reason.
func (a *Authenticator) verify(ctx context.Context, raw string, now time.Time) (*check.Identity, check.Reason) {
	d := secret.DigestString(raw)
	if id := a.cache.Get(&d, now); id != nil {
		return id, check.ReasonAllowedOIDC
	}
	unknownKey := false
	tok, err := a.verifier.Verify(context.WithValue(ctx, unknownKeyFlag{}, &unknownKey), raw)
	if err != nil {
		if unknownKey {
			return nil, check.ReasonJWTUnknownKey
		}
		return nil, check.ReasonJWTInvalid
	}
	var claims map[string]any
	if err := tok.Claims(&claims); err != nil {
		return nil, check.ReasonJWTInvalid
	}
	if !contains(a.issuers, tok.Issuer) {
		return nil, check.ReasonJWTInvalid
	}
	// Every date must be a date: go-oidc converts them to int64 without
	// a range check.
	for _, c := range []string{"exp", "nbf", "iat"} {
		if _, present := claims[c]; present {
			if _, ok := numericClaim(claims, c); !ok {
				return nil, check.ReasonJWTInvalid
			}
		}
	}
	if tok.Expiry.IsZero() || !now.Before(tok.Expiry.Add(a.leeway)) {
		return nil, check.ReasonJWTExpired
	}
	if _, present := claims["nbf"]; present {
		nbf, ok := numericClaim(claims, "nbf")
		if !ok || now.Add(a.leeway).Before(nbf) {
			return nil, check.ReasonJWTInvalid
		}
	}
	if !a.audienceOK(tok.Audience, claims) {
		return nil, check.ReasonJWTAudience
	}
	username := ""
	for _, c := range a.usernameClaims {
		if s, ok := lookupClaim(claims, c).(string); ok && s != "" {
			username = s
			break
		}
	}
	if username == "" || !check.HeaderSafe(username) {
		return nil, check.ReasonJWTNoUsername
	}
	var groups []string
	for _, c := range a.groupsClaims {
		if groups = stringList(lookupClaim(claims, c)); len(groups) > 0 {
			break
		}
	}
	groups = check.SafeList(groups)
	clientID := firstString(claims, a.clientClaims...)
	if clientID == "" {
		for _, aud := range tok.Audience {
			if contains(a.audiences, aud) {
				clientID = aud
				break
			}
		}
	}
	if !check.HeaderSafe(clientID) {
		clientID = ""
	}
	id := check.NewIdentity(username, clientID, groups, check.ScopesFor(groups, a.groupScopes), a.method)
	id.Subject = tok.Subject
	if until := tok.Expiry; until.After(now) {
		if maxUntil := now.Add(authn.MaxCachedTTL); until.After(maxUntil) {
			until = maxUntil
		}
		a.cache.Put(&d, id, until, now)
	}
	return id, check.ReasonAllowedOIDC
}

func contains(list []string, s string) bool { return slices.Contains(list, s) }
