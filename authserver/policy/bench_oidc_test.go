package policy_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/registryauth/registry-auth-operator/authserver/authn"
	"github.com/registryauth/registry-auth-operator/authserver/authn/jwt"
	"github.com/registryauth/registry-auth-operator/authserver/authn/statictoken"
	"github.com/registryauth/registry-auth-operator/authserver/authtest"
	"github.com/registryauth/registry-auth-operator/authserver/check"
	. "github.com/registryauth/registry-auth-operator/authserver/internal/policytest"
	"github.com/registryauth/registry-auth-operator/authserver/policy"
)

// BenchmarkDecideOIDC measures the decision for an IdP JWT (RS256, from a
// real local issuer, discovered and verified with the production code):
//
//   - jwt_cached: the same token again, answered from the policy's token
//     cache (what a client that reuses its access token costs);
//   - jwt_uncached: the policy has no token cache, so every decision parses
//     the JWS, verifies the RSA signature and decodes the claims;
//   - jwt_cached_static_policy: jwt_cached on a policy that also has a
//     static token, as in `make bench`'s standalone server: the bearer is
//     first compared with the static token, then falls through to the JWT;
//   - jwt_cached_api: jwt_cached on a Registry API path;
//   - jwt_cached_rules: the same token through a spec.issuers entry with
//     two CEL claim rules, a CEL groups mapping and registryOnly, on a
//     Registry API path (issue 23: within 1.2x of jwt_cached_api). Rules
//     are evaluated when a token is verified; a cached token costs the
//     path check only;
//   - jwt_uncached_rules: jwt_uncached through that entry: verification
//     plus the rules' evaluation.
//
// bench/README.md explains how these compare with BenchmarkDecide.
func BenchmarkDecideOIDC(b *testing.B) {
	idp, err := authtest.StartIssuer()
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(idp.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	iss, err := jwt.NewIssuers(nil).Resolve(ctx, idp.URL())
	if err != nil {
		b.Fatal(err)
	}
	oc := jwt.Config{IssuerURL: idp.URL(), Issuer: iss, Audiences: []string{"registry-bench"}}
	config := func(name string) policy.PolicyConfig {
		o := oc
		return policy.PolicyConfig{Namespace: "team", Name: name, Hosts: []string{name + ".example.com"}, OIDC: &o}
	}
	cached := CompileOK(b, config("cached"))
	uncachedCfg := config("uncached")
	uncached, probs := policy.Compile(uncachedCfg, policy.CompileOptions{TokenCacheSize: -1})
	if len(probs) > 0 {
		b.Fatal(probs)
	}
	withStatic := config("static")
	withStatic.StaticToken = &statictoken.Config{Enabled: true, Token: authn.SecretValue{Value: []byte(TokStatic)}}
	static := CompileOK(b, withStatic)
	ruled := func(name string) policy.PolicyConfig {
		return policy.PolicyConfig{Namespace: "team", Name: name, Hosts: []string{name + ".example.com"},
			Issuers: []jwt.Config{{Name: "ci", Field: "spec.issuers[ci]", IssuerURL: idp.URL(), Issuer: iss, Audiences: []string{"registry-bench"},
				RegistryOnly: true, GroupsExpression: `["ci-" + claims.sub]`,
				Rules: []jwt.Rule{{Expression: `claims.preferred_username == "alice"`}, {Expression: `"dev" in claims.groups`}}}}}
	}
	rules := CompileOK(b, ruled("rules"))
	uncachedRules, probs := policy.Compile(ruled("uncachedrules"), policy.CompileOptions{TokenCacheSize: -1})
	if len(probs) > 0 {
		b.Fatal(probs)
	}
	snap := SnapshotOf(cached, uncached, static, rules, uncachedRules)

	now := time.Unix(time.Now().Unix(), 0)
	claims := idp.Claims("registry-bench", "alice", []string{"dev"}, time.Hour)
	claims["iat"], claims["nbf"], claims["exp"] = now.Unix(), now.Unix(), now.Add(time.Hour).Unix()
	token := idp.Sign(claims)
	requestAt := func(p *policy.Policy, path string) check.Request {
		return check.Request{
			Scheme: "https", Host: p.Hosts()[0], Path: path,
			Method:        http.MethodGet,
			Authorization: []string{"Bearer " + token},
			ClientIP:      "192.0.2.10",
		}
	}
	request := func(p *policy.Policy) check.Request { return requestAt(p, "/mcpserver/mcp") }
	cases := []struct {
		name string
		req  check.Request
	}{
		{"jwt_cached", request(cached)},
		{"jwt_uncached", request(uncached)},
		{"jwt_cached_static_policy", request(static)},
		{"jwt_cached_api", requestAt(cached, "/api/servers")},
		{"jwt_cached_rules", requestAt(rules, "/api/servers")},
		{"jwt_uncached_rules", requestAt(uncachedRules, "/api/servers")},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			ctx := context.Background()
			// The first decision fills the cache (where there is one) and
			// proves the token is accepted.
			if d := policy.Decide(ctx, snap, &c.req, now); d.Reason != check.ReasonAllowedOIDC {
				b.Fatalf("reason %q, want %q", d.Reason, check.ReasonAllowedOIDC)
			}
			b.ReportAllocs()
			for b.Loop() {
				d := policy.Decide(ctx, snap, &c.req, now)
				if d.Identity == nil {
					b.Fatal("denied")
				}
			}
		})
	}
}
