package jwt

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"

	"github.com/registryauth/registry-auth-operator/authserver/authn"
	"github.com/registryauth/registry-auth-operator/authserver/authtest"
	"github.com/registryauth/registry-auth-operator/authserver/check"
)

// Claim rules and mappings, table-tested against tokens of a real issuer
// shaped like GitHub Actions' (authtest.WithGitHubShape: its discovery
// document, its JWKS path and its claim set), verified by the production
// code.

// wiEnv is the policy environment of the tests: Registry API prefixes and a
// group map for CI groups.
var wiEnv = authn.Env{
	RegistryPrefixes: []string{"/api/", "/v0.1/"},
	GroupScopes:      map[string][]string{"ci-acme": {"mcp-servers-unrestricted/read"}},
	TokenCacheSize:   authn.DefaultTokenCacheSize,
}

// wiDecide asks a for a bearer token on path.
func wiDecide(a *Authenticator, token, path string, now time.Time) authn.Result {
	in := authn.Input{Method: http.MethodGet, Path: path, Now: now}
	in.Bearer, in.Scheme = authn.ParseBearer("Bearer " + token)
	return a.Authenticate(context.Background(), in)
}

func TestClaimRules(t *testing.T) {
	t.Parallel()
	gh := authtest.NewIssuer(t, authtest.WithGitHubShape())
	_, iss := oidcResolve(t, gh)
	now := oidcNow()
	token := func(repo, ref string, edit func(map[string]any)) string {
		c := gh.GitHubActionsClaims("https://registry.example.com", repo, ref, time.Hour)
		c["iat"], c["nbf"], c["exp"] = now.Unix(), now.Unix(), now.Add(time.Hour).Unix()
		if edit != nil {
			edit(c)
		}
		return gh.Sign(c)
	}
	main := token("acme/registry-sync", "refs/heads/main", nil)
	branch := token("acme/registry-sync", "refs/heads/feature", nil)
	other := token("evil/registry-sync", "refs/heads/main", nil)
	noEnv := main
	withEnv := token("acme/registry-sync", "refs/heads/main", func(c map[string]any) { c["environment"] = "prod" })
	// 400 groups: a quadratic rule over them costs 160,000 iterations.
	many := make([]any, 400)
	for i := range many {
		many[i] = fmt.Sprintf("g%d", i)
	}
	manyGroups := token("acme/registry-sync", "refs/heads/main", func(c map[string]any) { c["groups"] = many })
	fewGroups := token("acme/registry-sync", "refs/heads/main", func(c map[string]any) { c["groups"] = many[:10] })

	const quadratic = `claims.groups.all(a, claims.groups.all(b, a == b || a != b))`
	cases := []struct {
		name     string
		rules    []string
		username string
		groups   string
		token    string
		want     check.Reason // "" for allowed
		wantUser string
		wantGrp  []string
	}{
		{name: "no rules", token: main, wantUser: "repo:acme/registry-sync:ref:refs/heads/main"},
		{name: "rule holds", rules: []string{`claims.repository == "acme/registry-sync" && claims.ref == "refs/heads/main"`}, token: main},
		{name: "rule fails: branch", rules: []string{`claims.repository == "acme/registry-sync" && claims.ref == "refs/heads/main"`}, token: branch, want: check.ReasonClaimRuleFailed},
		{name: "rule fails: repository", rules: []string{`claims.repository_owner == "acme"`}, token: other, want: check.ReasonClaimRuleFailed},
		{name: "every rule must hold", rules: []string{`claims.repository_owner == "acme"`, `claims.event_name == "workflow_dispatch"`}, token: main, want: check.ReasonClaimRuleFailed},
		{name: "absent claim is an error, so the rule fails", rules: []string{`claims.environment == "prod"`}, token: noEnv, want: check.ReasonClaimRuleFailed},
		{name: "absent claim guarded", rules: []string{`!has(claims.environment) || claims.environment == "prod"`}, token: noEnv},
		{name: "present claim", rules: []string{`has(claims.environment) && claims.environment == "prod"`}, token: withEnv},
		{name: "string functions", rules: []string{`claims.job_workflow_ref.startsWith("acme/registry-sync/.github/workflows/")`}, token: main},
		{name: "ext strings", rules: []string{`claims.sub.split(":")[1] == "acme/registry-sync"`}, token: main},
		{name: "rule evaluating to a non-bool value at run time fails", rules: []string{`claims.repository`}, token: main, want: check.ReasonClaimRuleFailed},
		{name: "cost limit: quadratic rule over 400 groups is aborted", rules: []string{quadratic}, token: manyGroups, want: check.ReasonClaimRuleFailed},
		{name: "cost limit: same rule over 10 groups passes", rules: []string{quadratic}, token: fewGroups},
		{name: "username by expression", username: `claims.repository + "@" + claims.ref`, token: main, wantUser: "acme/registry-sync@refs/heads/main"},
		{name: "username expression to empty", username: `""`, token: main, want: check.ReasonJWTNoUsername},
		{name: "groups by expression: constant", groups: `["ci-" + claims.repository_owner]`, token: main, wantGrp: []string{"ci-acme"}},
		{name: "groups by expression: a string", groups: `claims.repository_owner`, token: main, wantGrp: []string{"acme"}},
		{name: "groups expression failing refuses", groups: `[claims.missing]`, token: main, want: check.ReasonClaimRuleFailed},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			g := NewWithT(t)
			cfg := &Config{Name: "github", Field: "spec.issuers[github]", IssuerURL: gh.URL(), Issuer: iss,
				Audiences: []string{"https://registry.example.com"}, Preset: PresetGitHubActions,
				UsernameExpression: c.username, GroupsExpression: c.groups}
			for _, r := range c.rules {
				cfg.Rules = append(cfg.Rules, Rule{Expression: r})
			}
			a, probs := CompileAll([]*Config{cfg}, &wiEnv)
			g.Expect(probs).To(BeEmpty())
			res := wiDecide(a, c.token, "/api/servers", now)
			if c.want != "" {
				g.Expect(res.Reason).To(Equal(c.want))
				g.Expect(res.Outcome).NotTo(Equal(authn.Allow))
				g.Expect(res.Foreign).To(BeFalse())
				g.Expect(res.Reason.Status()).To(BeNumerically(">=", 401))
				return
			}
			g.Expect(res.Outcome).To(Equal(authn.Allow), "reason %s", res.Reason)
			g.Expect(res.Identity.Method).To(Equal(check.Method("github")), "X-Auth-Method names the issuer entry")
			if c.wantUser != "" {
				g.Expect(res.Identity.Username).To(Equal(c.wantUser))
			}
			if c.wantGrp != nil {
				g.Expect(res.Identity.Groups).To(Equal(c.wantGrp))
			}
		})
	}
	// The verdict and its status.
	g := NewWithT(t)
	g.Expect(check.ReasonClaimRuleFailed.Status()).To(Equal(403))
	g.Expect(string(check.ReasonClaimRuleFailed)).To(Equal("claim_rule_failed"))
}

// Expressions that do not compile leave the entry out (its tokens are
// refused) and name the rule in the problem's field.
func TestClaimRuleCompileErrors(t *testing.T) {
	t.Parallel()
	gh := authtest.NewIssuer(t, authtest.WithGitHubShape())
	_, iss := oidcResolve(t, gh)
	now := oidcNow()
	c := gh.GitHubActionsClaims("registry", "acme/x", "refs/heads/main", time.Hour)
	c["iat"], c["nbf"], c["exp"] = now.Unix(), now.Unix(), now.Add(time.Hour).Unix()
	tok := gh.Sign(c)
	cases := []struct {
		name      string
		cfg       Config
		field     string
		msgSubstr string
	}{
		{"syntax", Config{Rules: []Rule{{Expression: `claims.ref == "a"`}, {Expression: `claims.repository ==`}}}, "spec.issuers[gh].claimValidationRules[1]", "Syntax error"},
		{"undeclared variable", Config{Rules: []Rule{{Expression: `token.repository == "a"`}}}, "spec.issuers[gh].claimValidationRules[0]", "undeclared reference"},
		{"rule of the wrong type", Config{Rules: []Rule{{Expression: `"yes"`}}}, "spec.issuers[gh].claimValidationRules[0]", "want bool"},
		{"empty rule", Config{Rules: []Rule{{Expression: "  "}}}, "spec.issuers[gh].claimValidationRules[0]", "empty"},
		{"too long", Config{Rules: []Rule{{Expression: strings.Repeat("true && ", 600) + "true"}}}, "spec.issuers[gh].claimValidationRules[0]", "longer than"},
		{"username mapping of the wrong type", Config{UsernameExpression: `1 + 2`}, "spec.issuers[gh].claimMappings.username.expression", "want string"},
		{"groups mapping of the wrong type", Config{GroupsExpression: `true`}, "spec.issuers[gh].claimMappings.groups.expression", "want a string or a list of strings"},
		{"unknown function", Config{Rules: []Rule{{Expression: `claims.ref.frobnicate()`}}}, "spec.issuers[gh].claimValidationRules[0]", "frobnicate"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			cfg := tc.cfg
			cfg.Name, cfg.Field, cfg.IssuerURL, cfg.Issuer, cfg.Audiences = "gh", "spec.issuers[gh]", gh.URL(), iss, []string{"registry"}
			a, probs := CompileAll([]*Config{&cfg}, &wiEnv)
			g.Expect(probs).To(HaveLen(1))
			g.Expect(probs[0].Reason).To(Equal(authn.ProblemClaimRuleInvalid))
			g.Expect(probs[0].Field).To(Equal(tc.field))
			g.Expect(probs[0].Message).To(ContainSubstring(tc.msgSubstr))
			res := wiDecide(a, tok, "/api/servers", now)
			g.Expect(res.Outcome).To(Equal(authn.Deny), "a token of an issuer whose rules do not compile is refused")
			g.Expect(res.Reason).To(Equal(check.ReasonClaimRuleFailed))
		})
	}
}

// A rule's runtime cost is bounded by the cost limit, whatever the claims.
func TestClaimRuleCostLimit(t *testing.T) {
	t.Parallel()
	g := NewWithT(t)
	p, err := compileExpression(`claims.groups.all(a, claims.groups.all(b, a == b || a != b))`, exprBool, 1000)
	g.Expect(err).NotTo(HaveOccurred())
	few := []any{"a", "b", "c"}
	g.Expect(p.evalBool(activation(map[string]any{"groups": few}))).To(BeTrue())
	many := make([]any, 100)
	for i := range many {
		many[i] = fmt.Sprint(i)
	}
	g.Expect(p.evalBool(activation(map[string]any{"groups": many}))).To(BeFalse(), "10,000 iterations exceed a limit of 1,000")
	// The same rule with the default limit passes 100 groups.
	p, err = compileExpression(`claims.groups.all(a, claims.groups.all(b, a == b || a != b))`, exprBool, 0)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(p.evalBool(activation(map[string]any{"groups": many}))).To(BeTrue())
}

// Several issuers per policy: each token goes to the entry naming its
// issuer; X-Auth-Method names the entry; registryOnly keeps an entry's
// identities to Registry API paths; two entries may share an issuer with
// different rules.
func TestSeveralIssuers(t *testing.T) {
	t.Parallel()
	g := NewWithT(t)
	idp := authtest.NewIssuer(t)
	gh := authtest.NewIssuer(t, authtest.WithGitHubShape())
	_, idpIss := oidcResolve(t, idp)
	_, ghIss := oidcResolve(t, gh)
	now := oidcNow()
	ghToken := func(repo string) string {
		c := gh.GitHubActionsClaims("registry-ci", repo, "refs/heads/main", time.Hour)
		c["iat"], c["nbf"], c["exp"] = now.Unix(), now.Unix(), now.Add(time.Hour).Unix()
		return gh.Sign(c)
	}
	cfgs := []*Config{
		{IssuerURL: idp.URL(), Issuer: idpIss, Audiences: []string{"registry"}, Preset: PresetKeycloak},
		{Name: "sync-ci", Field: "spec.issuers[sync-ci]", IssuerURL: gh.URL(), Issuer: ghIss, Audiences: []string{"registry-ci"},
			Preset: PresetGitHubActions, RegistryOnly: true, GroupsExpression: `["ci-" + claims.repository_owner]`,
			Rules: []Rule{{Expression: `claims.repository == "acme/registry-sync"`}}},
		{Name: "deploy-ci", Field: "spec.issuers[deploy-ci]", IssuerURL: gh.URL(), Issuer: ghIss, Audiences: []string{"registry-ci"},
			Preset: PresetGitHubActions, Rules: []Rule{{Expression: `claims.repository == "acme/deploy"`}}},
	}
	a, probs := CompileAll(cfgs, &wiEnv)
	g.Expect(probs).To(BeEmpty())

	// The IdP's users: every path, X-Auth-Method of the preset.
	user := idp.Sign(oidcClaims(idp, now, "registry", "alice", []string{"dev"}))
	res := wiDecide(a, user, "/mcpserver/mcp", now)
	g.Expect(res.Outcome).To(Equal(authn.Allow))
	g.Expect(res.Identity.Method).To(Equal(check.Method("keycloak")))

	// sync-ci: Registry API only, its groups mapped to scopes.
	sync := ghToken("acme/registry-sync")
	for range 2 { // verified, then cached: the same answers
		res = wiDecide(a, sync, "/api/servers", now)
		g.Expect(res.Outcome).To(Equal(authn.Allow))
		g.Expect(res.Identity.Method).To(Equal(check.Method("sync-ci")))
		// To the registry (the hop token's auth_method) an IdP user.
		g.Expect(res.Identity.HopAuthMethod()).To(Equal(check.CanonicalOAuth2))
		g.Expect(res.Identity.Groups).To(Equal([]string{"ci-acme"}))
		g.Expect(res.Identity.Scopes).To(Equal([]string{"mcp-servers-unrestricted/read"}))
		g.Expect(res.Identity.ClientID).To(Equal("registry-ci"))
		res = wiDecide(a, sync, "/mcpserver/mcp", now)
		g.Expect(res.Outcome).To(Equal(authn.Deny))
		g.Expect(res.Reason).To(Equal(check.ReasonJWTRegistryOnly))
		g.Expect(res.Reason.Status()).To(Equal(403))
	}

	// deploy-ci: the second entry of the same issuer, with its own rule,
	// and no path limit.
	deploy := ghToken("acme/deploy")
	res = wiDecide(a, deploy, "/mcpserver/mcp", now)
	g.Expect(res.Outcome).To(Equal(authn.Allow), "reason %s", res.Reason)
	g.Expect(res.Identity.Method).To(Equal(check.Method("deploy-ci")))

	// A repository neither entry admits.
	res = wiDecide(a, ghToken("evil/registry-sync"), "/api/servers", now)
	g.Expect(res.Outcome).To(Equal(authn.Deny))
	g.Expect(res.Reason).To(Equal(check.ReasonClaimRuleFailed))

	// A token for another audience is not a rule failure.
	c := gh.GitHubActionsClaims("someone-else", "acme/registry-sync", "refs/heads/main", time.Hour)
	c["iat"], c["nbf"], c["exp"] = now.Unix(), now.Unix(), now.Add(time.Hour).Unix()
	res = wiDecide(a, gh.Sign(c), "/api/servers", now)
	g.Expect(res.Outcome).To(Equal(authn.Next))
	g.Expect(res.Reason).To(Equal(check.ReasonJWTAudience))
	g.Expect(res.Foreign).To(BeFalse())

	// Expired, and a token of an issuer no entry names.
	res = wiDecide(a, sync, "/api/servers", now.Add(2*time.Hour))
	g.Expect(res.Reason).To(Equal(check.ReasonJWTExpired))
	stranger := authtest.NewIssuer(t)
	res = wiDecide(a, stranger.Sign(oidcClaims(stranger, now, "registry-ci", "x", nil)), "/api/servers", now)
	g.Expect(res.Outcome).To(Equal(authn.Next))
	g.Expect(res.Foreign).To(BeTrue())
	g.Expect(res.Reason).To(Equal(check.ReasonJWTInvalid))
}

// Without Registry API prefixes (none could be loaded), a registryOnly
// entry's identities count nowhere.
func TestRegistryOnlyWithoutPrefixes(t *testing.T) {
	t.Parallel()
	g := NewWithT(t)
	gh := authtest.NewIssuer(t, authtest.WithGitHubShape())
	_, iss := oidcResolve(t, gh)
	now := oidcNow()
	c := gh.GitHubActionsClaims("registry-ci", "acme/x", "refs/heads/main", time.Hour)
	c["iat"], c["nbf"], c["exp"] = now.Unix(), now.Unix(), now.Add(time.Hour).Unix()
	env := wiEnv
	env.RegistryPrefixes = nil
	a, probs := CompileAll([]*Config{{Name: "ci", IssuerURL: gh.URL(), Issuer: iss, Audiences: []string{"registry-ci"}, RegistryOnly: true}}, &env)
	g.Expect(probs).To(BeEmpty())
	res := wiDecide(a, gh.Sign(c), "/api/servers", now)
	g.Expect(res.Reason).To(Equal(check.ReasonJWTRegistryOnly))
}
