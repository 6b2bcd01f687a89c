package jwt

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/google/cel-go/interpreter"

	"github.com/registryauth/registry-auth-operator/authserver/authn"
	"github.com/registryauth/registry-auth-operator/authserver/check"
	"github.com/registryauth/registry-auth-operator/authserver/pathnorm"
	"github.com/registryauth/registry-auth-operator/authserver/secret"
)

// Config configures one issuer of JWT bearer tokens: the policy's spec.oidc,
// or one entry of spec.issuers.
type Config struct {
	// Name names an entry of spec.issuers: it is the X-Auth-Method of the
	// entry's users. "" for spec.oidc, whose users carry the preset's name.
	Name string
	// Field is the policy field the entry's problems name; "" means Field
	// (spec.oidc).
	Field         string
	IssuerURL     string
	Audiences     []string
	UsernameClaim string
	GroupsClaim   string
	// UsernameExpression and GroupsExpression, when set, map the claims to
	// the username (a string) and the groups (a string or a list of
	// strings) with CEL instead of a claim name.
	UsernameExpression string
	GroupsExpression   string
	// Rules must all evaluate to true for a verified token to be accepted;
	// a token that fails one is refused with claim_rule_failed (403).
	Rules []Rule
	// RegistryOnly limits the entry's identities to the policy's Registry
	// API paths, like the static token: elsewhere its tokens are refused
	// (jwt_registry_paths_only, 403).
	RegistryOnly bool
	Preset       string
	// Issuer is the discovered issuer (see Issuers.Resolve). Nil means
	// discovery has not succeeded yet: JWTs are refused. Problem then says
	// why.
	Issuer  *Issuer
	Problem *authn.Problem
	// CostLimit overrides ExpressionCostLimit (tests); 0 means the default.
	CostLimit uint64
}

// Field is the policy field the JWT issuer's problems name.
const Field = "spec.oidc"

func (c *Config) field() string {
	if c.Field == "" {
		return Field
	}
	return c.Field
}

// state is what an issuer entry can do with a JWT.
type state uint8

const (
	// unavailable: the issuer was never discovered; JWTs cannot be
	// verified.
	unavailable state = iota + 1
	// broken: a claim rule or mapping does not compile; the entry's JWTs
	// are refused (claim_rule_failed), as no token can be shown to pass.
	broken
	// verifying: JWTs are verified with the issuer's keys.
	verifying
)

// Authenticator verifies JWT bearer tokens for one compiled policy, against
// each of its issuer entries. Every policy has one: without an issuer it
// only says why a JWT is refused.
type Authenticator struct {
	entries []*entry
	// registryPrefixes are the policy's Registry API prefixes, for entries
	// limited to them.
	registryPrefixes []string
	cache            *authn.TokenCache
}

// entry is one issuer entry, compiled.
type entry struct {
	state state
	// configuredURL is the issuer URL as configured (for an entry never
	// discovered, the only one known).
	configuredURL  string
	verifier       *oidc.IDTokenVerifier
	issuers        []string
	audiences      []string
	preset         string
	usernameClaims []string
	groupsClaims   []string
	clientClaims   []string
	usernameExpr   *program
	groupsExpr     *program
	rules          []*program
	registryOnly   bool
	method         check.Method
	groupScopes    map[string][]string
	leeway         time.Duration
}

// jwtLeeway is the clock skew allowed on exp and nbf.
const jwtLeeway = 30 * time.Second

// Compile builds the policy's JWT authenticator for one issuer (cfg may be
// nil: none). It never returns nil: a policy without a usable issuer still
// refuses JWTs with the reason why.
func Compile(cfg *Config, env *authn.Env) (*Authenticator, []authn.Problem) {
	if cfg == nil {
		return CompileAll(nil, env)
	}
	return CompileAll([]*Config{cfg}, env)
}

// CompileAll builds the policy's JWT authenticator for several issuer
// entries, tried in order. An entry that cannot be put in force refuses its
// own tokens and reports why; the others work.
func CompileAll(cfgs []*Config, env *authn.Env) (*Authenticator, []authn.Problem) {
	a := &Authenticator{registryPrefixes: env.RegistryPrefixes}
	var probs []authn.Problem
	for _, cfg := range cfgs {
		e, p := compileEntry(cfg, env)
		probs = append(probs, p...)
		if e != nil {
			a.entries = append(a.entries, e)
		}
	}
	for _, e := range a.entries {
		if e.state == verifying {
			a.cache = authn.NewTokenCache(env.TokenCacheSize)
			break
		}
	}
	return a, probs
}

func compileEntry(cfg *Config, env *authn.Env) (*entry, []authn.Problem) {
	field := cfg.field()
	if len(cfg.Audiences) == 0 {
		if cfg.Problem != nil && cfg.Problem.Field == field+".audiences" {
			return nil, []authn.Problem{*cfg.Problem} // the loader dropped them, and says why
		}
		return nil, []authn.Problem{{Reason: authn.ProblemInvalidSpec, Field: field + ".audiences", Message: "at least one audience is required"}}
	}
	e := &entry{configuredURL: cfg.IssuerURL}
	var probs []authn.Problem
	compile := func(src string, kind exprKind, f string) *program {
		if src == "" {
			return nil
		}
		p, err := compileExpression(src, kind, cfg.CostLimit)
		if err != nil {
			e.state = broken
			probs = append(probs, authn.Problem{Reason: authn.ProblemClaimRuleInvalid, Field: f,
				Message: fmt.Sprintf("the CEL expression %q does not compile: %v; the issuer's tokens are refused", src, err)})
		}
		return p
	}
	e.usernameExpr = compile(cfg.UsernameExpression, exprString, field+".claimMappings.username.expression")
	e.groupsExpr = compile(cfg.GroupsExpression, exprStrings, field+".claimMappings.groups.expression")
	for i, r := range cfg.Rules {
		e.rules = append(e.rules, compile(r.Expression, exprBool, fmt.Sprintf("%s.claimValidationRules[%d]", field, i)))
	}
	if e.state == broken {
		return e, probs
	}
	if cfg.Issuer == nil {
		prob := authn.Problem{Reason: authn.ProblemOIDCDiscoveryFailed, Field: field, Message: "issuer " + cfg.IssuerURL + " has not been discovered"}
		if cfg.Problem != nil {
			prob = *cfg.Problem
		}
		e.state = unavailable
		return e, append(probs, prob)
	}
	fillEntry(e, cfg, env.GroupScopes)
	if cfg.Problem != nil {
		// Discovery failed but an earlier one succeeded: keep verifying
		// with it, and report.
		probs = append(probs, *cfg.Problem)
	}
	return e, probs
}

func fillEntry(e *entry, cfg *Config, groupScopes map[string][]string) {
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
	method := presetMethod(preset)
	if cfg.Name != "" {
		method = check.Method(cfg.Name)
	}
	e.state = verifying
	e.verifier = v
	e.issuers = issuers
	e.audiences = append([]string(nil), cfg.Audiences...)
	e.preset = preset
	e.usernameClaims = claims.username
	e.groupsClaims = claims.groups
	e.clientClaims = claims.client
	e.registryOnly = cfg.RegistryOnly
	e.method = method
	e.groupScopes = groupScopes
	e.leeway = jwtLeeway
}

// Authenticate verifies a bearer token shaped like a JWT. Any other request
// is not its concern.
func (a *Authenticator) Authenticate(ctx context.Context, in authn.Input) authn.Result {
	if in.Scheme != authn.SchemeBearer || !secret.LooksLikeJWT(in.Bearer) {
		return authn.Result{}
	}
	if len(a.entries) == 0 {
		return authn.Result{Reason: check.ReasonJWTNotConfigured, Foreign: true}
	}
	d := secret.DigestString(in.Bearer)
	if id, tag := a.cache.GetTagged(&d, in.Now); id != nil {
		return a.allow(a.entries[tag], id, in.Path)
	}
	iss := unverifiedIssuer(in.Bearer)
	// The entries that may have issued it: those naming its iss, in order
	// (two entries may share an issuer, with other audiences or rules).
	// The first that accepts it decides; when none does, the most specific
	// failure is the answer.
	var reason check.Reason
	own := false
	for i, e := range a.entries {
		if !e.owns(iss) {
			continue
		}
		own = true
		var r check.Reason
		switch e.state {
		case unavailable:
			r = check.ReasonOIDCIssuerNotDiscovered
		case broken:
			r = check.ReasonClaimRuleFailed
		default:
			var id *check.Identity
			var until time.Time
			id, r, until = e.verify(ctx, in.Bearer, in.Now)
			if id != nil {
				if until.After(in.Now) {
					if maxUntil := in.Now.Add(authn.MaxCachedTTL); until.After(maxUntil) {
						until = maxUntil
					}
					a.cache.PutTagged(&d, id, i, until, in.Now)
				}
				return a.allow(e, id, in.Path)
			}
		}
		if rank(r) > rank(reason) {
			reason = r
		}
	}
	if reason == check.ReasonClaimRuleFailed {
		return authn.DenyWith(reason)
	}
	if own {
		return authn.Result{Reason: reason}
	}
	// A token of another issuer (the upstream auth server's own, say) is
	// not ours to refuse for good.
	reason = check.ReasonJWTInvalid
	for _, e := range a.entries {
		if e.state == unavailable {
			reason = check.ReasonOIDCIssuerNotDiscovered
		}
	}
	return authn.Result{Reason: reason, Foreign: true}
}

// rank orders the failures of a token's entries: the answer is the most
// specific one.
func rank(r check.Reason) int {
	switch r {
	case "":
		return 0
	case check.ReasonOIDCIssuerNotDiscovered:
		return 1
	case check.ReasonJWTInvalid:
		return 2
	case check.ReasonClaimRuleFailed:
		return 4
	}
	return 3
}

// allow answers for a verified identity of entry e on path.
func (a *Authenticator) allow(e *entry, id *check.Identity, path string) authn.Result {
	if e.registryOnly && !pathnorm.HasPrefix(path, a.registryPrefixes) {
		return authn.DenyWith(check.ReasonJWTRegistryOnly)
	}
	return authn.AllowAs(check.ReasonAllowedOIDC, id)
}

// owns reports whether an unverified token's iss names this entry's issuer.
// It only decides which entry verifies the token and whether someone else
// may; nothing is accepted on it.
func (e *entry) owns(iss string) bool {
	if iss == "" {
		return false
	}
	if e.state != verifying {
		return iss == e.configuredURL
	}
	return contains(e.issuers, iss)
}

// verify verifies a JWT and returns the identity and until when it may be
// cached, or a deny reason.
func (e *entry) verify(ctx context.Context, raw string, now time.Time) (*check.Identity, check.Reason, time.Time) {
	unknownKey := false
	tok, err := e.verifier.Verify(context.WithValue(ctx, unknownKeyFlag{}, &unknownKey), raw)
	if err != nil {
		if unknownKey {
			return nil, check.ReasonJWTUnknownKey, time.Time{}
		}
		return nil, check.ReasonJWTInvalid, time.Time{}
	}
	var claims map[string]any
	if err := tok.Claims(&claims); err != nil {
		return nil, check.ReasonJWTInvalid, time.Time{}
	}
	if !contains(e.issuers, tok.Issuer) {
		return nil, check.ReasonJWTInvalid, time.Time{}
	}
	// Every date must be a date: go-oidc converts them to int64 without
	// a range check.
	for _, c := range []string{"exp", "nbf", "iat"} {
		if _, present := claims[c]; present {
			if _, ok := numericClaim(claims, c); !ok {
				return nil, check.ReasonJWTInvalid, time.Time{}
			}
		}
	}
	if tok.Expiry.IsZero() || !now.Before(tok.Expiry.Add(e.leeway)) {
		return nil, check.ReasonJWTExpired, time.Time{}
	}
	if _, present := claims["nbf"]; present {
		nbf, ok := numericClaim(claims, "nbf")
		if !ok || now.Add(e.leeway).Before(nbf) {
			return nil, check.ReasonJWTInvalid, time.Time{}
		}
	}
	if !e.audienceOK(tok.Audience, claims) {
		return nil, check.ReasonJWTAudience, time.Time{}
	}
	var act interpreter.Activation
	if len(e.rules) > 0 || e.usernameExpr != nil || e.groupsExpr != nil {
		act = activation(claims)
	}
	for _, r := range e.rules {
		if !r.evalBool(act) {
			return nil, check.ReasonClaimRuleFailed, time.Time{}
		}
	}
	username := ""
	if e.usernameExpr != nil {
		username = e.usernameExpr.evalString(act)
	} else {
		for _, c := range e.usernameClaims {
			if s, ok := lookupClaim(claims, c).(string); ok && s != "" {
				username = s
				break
			}
		}
	}
	if username == "" || !check.HeaderSafe(username) {
		return nil, check.ReasonJWTNoUsername, time.Time{}
	}
	var groups []string
	if e.groupsExpr != nil {
		var ok bool
		if groups, ok = e.groupsExpr.evalStrings(act); !ok {
			// A mapping that fails must not quietly give fewer groups
			// than intended, nor more: the token is refused.
			return nil, check.ReasonClaimRuleFailed, time.Time{}
		}
	} else {
		for _, c := range e.groupsClaims {
			if groups = stringList(lookupClaim(claims, c)); len(groups) > 0 {
				break
			}
		}
	}
	groups = check.SafeList(groups)
	clientID := firstString(claims, e.clientClaims...)
	if clientID == "" {
		for _, aud := range tok.Audience {
			if contains(e.audiences, aud) {
				clientID = aud
				break
			}
		}
	}
	if !check.HeaderSafe(clientID) {
		clientID = ""
	}
	id := check.NewIdentity(username, clientID, groups, check.ScopesFor(groups, e.groupScopes), e.method)
	id.Subject = tok.Subject
	// Whatever the entry is called, its users are IdP users to the
	// registry (the contract's canonical auth_method).
	id.HopMethod = check.CanonicalOAuth2
	return id, check.ReasonAllowedOIDC, tok.Expiry
}

func contains(list []string, s string) bool { return slices.Contains(list, s) }

// firstState is the state of the first entry, 0 when there is none (tests).
func (a *Authenticator) firstState() state {
	if len(a.entries) == 0 {
		return 0
	}
	return a.entries[0].state
}
