package authserver

import (
	"context"
	"net/http"
	"testing"

	"github.com/registryauth/registry-auth-operator/authserver/authtest"
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
//     first compared with the static token, then falls through to the JWT.
//
// bench/README.md explains how these compare with BenchmarkDecide.
func BenchmarkDecideOIDC(b *testing.B) {
	idp, err := authtest.StartIssuer()
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(idp.Close)
	_, iss := oidcResolve(b, idp)
	oc := OIDCConfig{IssuerURL: idp.URL(), Issuer: iss, Audiences: []string{"registry-bench"}}
	cached := oidcCompile(b, "cached", oc, CompileOptions{})
	uncached := oidcCompile(b, "uncached", oc, CompileOptions{TokenCacheSize: -1})
	withStatic := oidcConfig("static", oc)
	withStatic.StaticToken = &StaticTokenConfig{Enabled: true, Token: SecretValue{Value: []byte(tokStatic)}}
	static := compileOK(b, withStatic)
	snap := snapshotOf(cached, uncached, static)

	now := oidcNow()
	token := idp.Sign(oidcClaims(idp, now, "registry-bench", "alice", []string{"dev"}))
	request := func(p *Policy) Request {
		return Request{
			OriginalURL:    "https://" + p.Hosts()[0] + "/mcpserver/mcp",
			OriginalMethod: http.MethodGet,
			Authorization:  []string{"Bearer " + token},
			ClientIP:       "192.0.2.10",
		}
	}
	cases := []struct {
		name string
		req  Request
	}{
		{"jwt_cached", request(cached)},
		{"jwt_uncached", request(uncached)},
		{"jwt_cached_static_policy", request(static)},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			ctx := context.Background()
			// The first decision fills the cache (where there is one) and
			// proves the token is accepted.
			if d := Decide(ctx, snap, &c.req, now); d.Reason != ReasonAllowedOIDC {
				b.Fatalf("reason %q, want %q", d.Reason, ReasonAllowedOIDC)
			}
			b.ReportAllocs()
			for b.Loop() {
				d := Decide(ctx, snap, &c.req, now)
				if d.Identity == nil {
					b.Fatal("denied")
				}
			}
		})
	}
}
