package jwt

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	. "github.com/onsi/gomega"
	"golang.org/x/time/rate"

	"github.com/registryauth/registry-auth-operator/authserver/authn"
	"github.com/registryauth/registry-auth-operator/authserver/authtest"
	"github.com/registryauth/registry-auth-operator/authserver/check"
	"github.com/registryauth/registry-auth-operator/authserver/secret"
)

// OIDC tests. Every token here is verified by the production code path
// (OIDCIssuers.Resolve, Compile, Decide, the keySet) against a real issuer
// served over HTTP on 127.0.0.1 by authtest: discovery, JWKS fetches, key
// rotation and outages are real. Time is controlled by passing explicit `now`
// values to Decide and by replacing the nowFn clocks and the unknown-kid
// limiter, so no test sleeps for a rate-limit window.

// oidcGroupScopes is the GroupScopes mapping of every test policy.
var oidcGroupScopes = map[string][]string{
	"dev":    {"mcp-servers/read"},
	"admins": {"mcp-registry-admin", "mcp-servers/read"},
}

// oidcNow is a whole second (JWT times are whole seconds), so leeway
// boundaries are exact.
func oidcNow() time.Time { return time.Unix(time.Now().Unix(), 0) }

func oidcCtx(tb testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	tb.Cleanup(cancel)
	return ctx
}

// oidcResolve discovers idp through a fresh registry, like the operator does.
func oidcResolve(tb testing.TB, idp *authtest.Issuer) (*Issuers, *Issuer) {
	tb.Helper()
	reg := NewIssuers(nil)
	iss, err := reg.Resolve(oidcCtx(tb), idp.URL())
	if err != nil || iss == nil {
		tb.Fatalf("resolving %s: issuer %v, error %v", idp.URL(), iss, err)
	}
	return reg, iss
}

// oidcResolveURL discovers issuerURL (served by idp) through a fresh registry.
func oidcResolveURL(tb testing.TB, idp *authtest.Issuer, issuerURL string) (*Issuers, *Issuer) {
	tb.Helper()
	reg := NewIssuers(nil)
	iss, err := reg.Resolve(oidcCtx(tb), issuerURL)
	if err != nil || iss == nil {
		tb.Fatalf("resolving %s: issuer %v, error %v", issuerURL, iss, err)
	}
	return reg, iss
}

// oidcPolicy is the JWT authenticator of the policy "team/<name>",
// answering for <name>.example.com.
type oidcPolicy struct {
	*Authenticator
	name string
}

// Key is the policy's key, "team/<name>".
func (p *oidcPolicy) Key() string { return "team/" + p.name }

// Hosts are the hosts the policy would answer for.
func (p *oidcPolicy) Hosts() []string { return []string{p.name + ".example.com"} }

// oidcOptions are the compile options of a test policy: the policy-wide
// settings the JWT kind compiles in.
type oidcOptions struct {
	// TokenCacheSize: 0 means authn.DefaultTokenCacheSize, negative
	// disables the cache (as policy.CompileOptions).
	TokenCacheSize int
}

// oidcCompileProblems compiles oc as the JWT part of the policy
// "team/<name>", with its problems.
func oidcCompileProblems(name string, oc Config, opts oidcOptions) (*oidcPolicy, []authn.Problem) {
	size := opts.TokenCacheSize
	if size == 0 {
		size = authn.DefaultTokenCacheSize
	}
	a, probs := Compile(&oc, &authn.Env{GroupScopes: oidcGroupScopes, TokenCacheSize: size})
	return &oidcPolicy{Authenticator: a, name: name}, probs
}

// oidcCompile compiles oc and fails the test on any Problem.
func oidcCompile(tb testing.TB, name string, oc Config, opts oidcOptions) *oidcPolicy {
	tb.Helper()
	p, probs := oidcCompileProblems(name, oc, opts)
	if len(probs) != 0 {
		tb.Fatalf("compiling %s: unexpected problems %v", name, probs)
	}
	if p.firstState() != verifying {
		tb.Fatalf("compiling %s: no JWT authentication in the policy", name)
	}
	return p
}

// oidcDecision is what the policy would decide with the JWT kind alone.
type oidcDecision struct {
	Reason   check.Reason
	Identity *check.Identity
}

func (d oidcDecision) Allowed() bool { return d.Identity != nil }
func (d oidcDecision) Status() int   { return d.Reason.Status() }

// oidcDecide asks p about a bearer token, as the policy does: the input it
// builds for a bearer token, and invalid_credentials when the kind neither
// allows nor says why not (a bearer that is not a JWT).
func oidcDecide(p *oidcPolicy, token string, now time.Time) oidcDecision {
	return oidcDecideCtx(context.Background(), p, token, now)
}

// oidcDecideCtx is oidcDecide for a request with context ctx.
func oidcDecideCtx(ctx context.Context, p *oidcPolicy, token string, now time.Time) oidcDecision {
	in := authn.Input{Method: http.MethodGet, Path: "/v0.1/servers", Registry: true, Now: now}
	in.Bearer, in.Scheme = authn.ParseBearer("Bearer " + token)
	res := p.Authenticate(ctx, in)
	switch {
	case res.Outcome == authn.Allow:
		return oidcDecision{Reason: res.Reason, Identity: res.Identity}
	case res.Reason != "":
		return oidcDecision{Reason: res.Reason}
	}
	return oidcDecision{Reason: check.ReasonInvalidCredentials}
}

// oidcClaims is authtest's typical claim set with iat = nbf = now and
// exp = now + 1h.
func oidcClaims(idp *authtest.Issuer, now time.Time, aud, user string, groups []string) map[string]any {
	c := idp.Claims(aud, user, groups, time.Hour)
	c["iat"], c["nbf"], c["exp"] = now.Unix(), now.Unix(), now.Add(time.Hour).Unix()
	return c
}

func oidcSegment(tb testing.TB, v any) string {
	tb.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		tb.Fatalf("encoding %v: %v", v, err)
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

// oidcCraft builds a compact JWS by hand: header and claims as given, and the
// signature computed by sign over "header.payload" (nil: empty signature).
func oidcCraft(tb testing.TB, header, claims map[string]any, sign func(input string) []byte) string {
	tb.Helper()
	input := oidcSegment(tb, header) + "." + oidcSegment(tb, claims)
	var sig []byte
	if sign != nil {
		sig = sign(input)
	}
	return input + "." + base64.RawURLEncoding.EncodeToString(sig)
}

// oidcReplacePayload keeps token's header and signature and swaps in claims.
func oidcReplacePayload(tb testing.TB, token string, claims map[string]any) string {
	tb.Helper()
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		tb.Fatalf("not a compact JWS: %q", token)
	}
	return parts[0] + "." + oidcSegment(tb, claims) + "." + parts[2]
}

// oidcKid returns the kid in token's header.
func oidcKid(tb testing.TB, token string) string {
	tb.Helper()
	h, err := base64.RawURLEncoding.DecodeString(strings.Split(token, ".")[0])
	if err != nil {
		tb.Fatalf("decoding header: %v", err)
	}
	var hdr struct {
		Kid string `json:"kid"`
	}
	if err := json.Unmarshal(h, &hdr); err != nil {
		tb.Fatalf("decoding header: %v", err)
	}
	return hdr.Kid
}

// oidcAttackerRSA is an RSA key the issuer never published (one for all
// tests: RSA key generation is slow under -race).
var oidcAttackerRSA = sync.OnceValues(func() (*rsa.PrivateKey, error) {
	return rsa.GenerateKey(rand.Reader, 2048)
})

// oidcForge signs claims with a key the issuer does not know, under any kid
// the attacker likes ("" for no kid).
func oidcForge(tb testing.TB, alg jose.SignatureAlgorithm, kid string, claims map[string]any) string {
	tb.Helper()
	var key any
	switch alg {
	case jose.RS256:
		k, err := oidcAttackerRSA()
		if err != nil {
			tb.Fatal(err)
		}
		key = k
	case jose.ES256:
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			tb.Fatal(err)
		}
		key = k
	default:
		tb.Fatalf("oidcForge: unsupported alg %s", alg)
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: jose.JSONWebKey{Key: key, KeyID: kid}},
		(&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		tb.Fatal(err)
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		tb.Fatal(err)
	}
	jws, err := signer.Sign(payload)
	if err != nil {
		tb.Fatal(err)
	}
	s, err := jws.CompactSerialize()
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

// oidcWithdrawOldKeys rotates the issuer's key, withdraws every older key from
// its JWKS and makes the key set fetch it, so tokens signed before can no
// longer be verified: any that still pass come from the token cache.
func oidcWithdrawOldKeys(g Gomega, ctx context.Context, idp *authtest.Issuer, iss *Issuer) {
	idp.RotateKey()
	idp.DropOldKeys()
	g.Expect(iss.keys.fetch(ctx, time.Now())).To(Succeed())
	g.Expect(iss.keys.cur.Load().keys).To(HaveLen(1))
}

// oidcRefillLimiter stands for unknownKidRefetchEvery having passed: the
// unknown-kid limiter gets its one token back. The replacement has the real
// limiter's burst of one but a window that cannot pass during a test, so the
// steps that must fall "within the window" do not depend on how fast the
// machine is. TestJWTUnknownKidRefetchLimiter checks the real limiter. Only
// call it when no verification runs concurrently.
func oidcRefillLimiter(ks *keySet) {
	ks.limiter = rate.NewLimiter(rate.Every(time.Hour), 1)
}

// oidcSkewedClock returns a clock running skew (read atomically, so tests
// may move it while background goroutines read the clock) ahead of time.Now.
func oidcSkewedClock(skew *atomic.Int64) func() time.Time {
	return func() time.Time { return time.Now().Add(time.Duration(skew.Load())) }
}

// oidcWaitBackground waits until ks has no background refresh running.
func oidcWaitBackground(g Gomega, ks *keySet) {
	g.Eventually(ks.bgBusy.Load).WithTimeout(5 * time.Second).WithPolling(time.Millisecond).Should(BeFalse())
}

func TestJWTGoodToken(t *testing.T) {
	t.Parallel()
	idp := authtest.NewIssuer(t)
	_, iss := oidcResolve(t, idp)
	p := oidcCompile(t, "good", Config{IssuerURL: idp.URL(), Issuer: iss, Audiences: []string{"registry", "registry-cli"}}, oidcOptions{})
	now := oidcNow()

	cases := []struct {
		name       string
		mutate     func(c map[string]any)
		wantUser   string
		wantClient string
		wantGroups []string
		wantScopes []string
		// wantSubject is the sub claim, "sub-alice" when empty.
		wantSubject string
	}{
		{
			name:     "username from preferred_username, client from aud",
			wantUser: "alice", wantClient: "registry",
			wantGroups: []string{"dev", "ops"}, wantScopes: []string{"mcp-servers/read"},
		},
		{
			name:     "username from sub when preferred_username is missing",
			mutate:   func(c map[string]any) { delete(c, "preferred_username") },
			wantUser: "sub-alice", wantClient: "registry",
			wantGroups: []string{"dev", "ops"}, wantScopes: []string{"mcp-servers/read"},
		},
		{
			name:     "username from sub when preferred_username is empty",
			mutate:   func(c map[string]any) { c["preferred_username"] = "" },
			wantUser: "sub-alice", wantClient: "registry",
			wantGroups: []string{"dev", "ops"}, wantScopes: []string{"mcp-servers/read"},
		},
		{
			name:     "username from sub when preferred_username is not a string",
			mutate:   func(c map[string]any) { c["preferred_username"] = 42 },
			wantUser: "sub-alice", wantClient: "registry",
			wantGroups: []string{"dev", "ops"}, wantScopes: []string{"mcp-servers/read"},
		},
		{
			name:     "client from azp before client_id",
			mutate:   func(c map[string]any) { c["azp"], c["client_id"] = "web-ui", "cli" },
			wantUser: "alice", wantClient: "web-ui",
			wantGroups: []string{"dev", "ops"}, wantScopes: []string{"mcp-servers/read"},
		},
		{
			name:     "client from client_id",
			mutate:   func(c map[string]any) { c["client_id"] = "cli" },
			wantUser: "alice", wantClient: "cli",
			wantGroups: []string{"dev", "ops"}, wantScopes: []string{"mcp-servers/read"},
		},
		{
			name:     "client from the first aud of a list holding a configured audience",
			mutate:   func(c map[string]any) { c["aud"] = []string{"registry-cli", "other-api"} },
			wantUser: "alice", wantClient: "registry-cli",
			wantGroups: []string{"dev", "ops"}, wantScopes: []string{"mcp-servers/read"},
		},
		{
			name:     "groups as a single string, scopes merged without duplicates",
			mutate:   func(c map[string]any) { c["groups"] = "admins" },
			wantUser: "alice", wantClient: "registry",
			wantGroups: []string{"admins"}, wantScopes: []string{"mcp-registry-admin", "mcp-servers/read"},
		},
		{
			name:     "several mapped groups",
			mutate:   func(c map[string]any) { c["groups"] = []string{"dev", "admins"} },
			wantUser: "alice", wantClient: "registry",
			wantGroups: []string{"dev", "admins"}, wantScopes: []string{"mcp-servers/read", "mcp-registry-admin"},
		},
		{
			name:     "no groups claim",
			mutate:   func(c map[string]any) { delete(c, "groups") },
			wantUser: "alice", wantClient: "registry",
		},
		{
			name:     "no sub claim: no subject",
			mutate:   func(c map[string]any) { delete(c, "sub") },
			wantUser: "alice", wantClient: "registry", wantSubject: "-",
			wantGroups: []string{"dev", "ops"}, wantScopes: []string{"mcp-servers/read"},
		},
		{
			name: "non-string group entries are ignored",
			mutate: func(c map[string]any) {
				c["groups"] = []any{"dev", 7, nil, map[string]any{"admins": true}, []string{"admins"}}
			},
			wantUser: "alice", wantClient: "registry",
			wantGroups: []string{"dev"}, wantScopes: []string{"mcp-servers/read"},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			c := oidcClaims(idp, now, "registry", "alice", []string{"dev", "ops"})
			if tc.mutate != nil {
				tc.mutate(c)
			}
			d := oidcDecide(p, idp.Sign(c), now)
			g.Expect(d.Reason).To(Equal(check.ReasonAllowedOIDC))
			g.Expect(d.Allowed()).To(BeTrue())
			g.Expect(d.Status()).To(Equal(http.StatusOK))
			id := d.Identity
			g.Expect(id.Username).To(Equal(tc.wantUser))
			g.Expect(id.ClientID).To(Equal(tc.wantClient))
			g.Expect(id.Method).To(Equal(check.MethodOIDC))
			switch tc.wantSubject {
			case "":
				g.Expect(id.Subject).To(Equal("sub-alice"), "the sub claim, for the hop token's egress_user")
			case "-":
				g.Expect(id.Subject).To(BeEmpty())
			default:
				g.Expect(id.Subject).To(Equal(tc.wantSubject))
			}
			if tc.wantGroups == nil {
				g.Expect(id.Groups).To(BeEmpty())
			} else {
				g.Expect(id.Groups).To(Equal(tc.wantGroups))
			}
			if tc.wantScopes == nil {
				g.Expect(id.Scopes).To(BeEmpty())
			} else {
				g.Expect(id.Scopes).To(Equal(tc.wantScopes))
			}
		})
	}

}

func TestJWTRejected(t *testing.T) {
	t.Parallel()
	idp := authtest.NewIssuer(t)
	_, iss := oidcResolve(t, idp)
	// Cache disabled: every case is verified, none is answered from an
	// earlier case's cache entry.
	p := oidcCompile(t, "rejected", Config{IssuerURL: idp.URL(), Issuer: iss, Audiences: []string{"registry"}}, oidcOptions{TokenCacheSize: -1})
	now := oidcNow()
	kid := idp.CurrentKeyID()
	pub := iss.keys.cur.Load().keys[0]
	pubDER, err := x509.MarshalPKIXPublicKey(pub.Key)
	if err != nil {
		t.Fatal(err)
	}
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER})
	pubJWK, err := pub.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	hs256 := func(secret []byte) func(string) []byte {
		return func(input string) []byte {
			m := hmac.New(sha256.New, secret)
			m.Write([]byte(input))
			return m.Sum(nil)
		}
	}
	claims := func() map[string]any { return oidcClaims(idp, now, "registry", "alice", []string{"dev"}) }
	signed := func(mutate func(c map[string]any)) func() string {
		return func() string {
			c := claims()
			mutate(c)
			return idp.Sign(c)
		}
	}
	at := func(d time.Duration) int64 { return now.Add(d).Unix() }

	cases := []struct {
		name  string
		token func() string
		want  check.Reason
	}{
		{"control: good token", signed(func(map[string]any) {}), check.ReasonAllowedOIDC},

		{"wrong audience", signed(func(c map[string]any) { c["aud"] = "another-app" }), check.ReasonJWTAudience},
		{"audience list without a configured one", signed(func(c map[string]any) { c["aud"] = []string{"a", "b"} }), check.ReasonJWTAudience},
		{"no audience", signed(func(c map[string]any) { delete(c, "aud") }), check.ReasonJWTAudience},
		{"azp alone does not stand for aud (generic preset)", signed(func(c map[string]any) { c["aud"], c["azp"] = "account", "registry" }), check.ReasonJWTAudience},

		{"expired beyond the leeway", signed(func(c map[string]any) { c["exp"] = at(-time.Minute) }), check.ReasonJWTExpired},
		{"expired exactly at the leeway", signed(func(c map[string]any) { c["exp"] = at(-jwtLeeway) }), check.ReasonJWTExpired},
		{"expired within the leeway is accepted", signed(func(c map[string]any) { c["exp"] = at(-jwtLeeway + time.Second) }), check.ReasonAllowedOIDC},
		{"exp now is accepted (leeway)", signed(func(c map[string]any) { c["exp"] = at(0) }), check.ReasonAllowedOIDC},
		{"missing exp", signed(func(c map[string]any) { delete(c, "exp") }), check.ReasonJWTExpired},
		{"exp zero", signed(func(c map[string]any) { c["exp"] = 0 }), check.ReasonJWTExpired},
		{"exp not a number", signed(func(c map[string]any) { c["exp"] = "tomorrow" }), check.ReasonJWTInvalid},

		{"nbf beyond the leeway", signed(func(c map[string]any) { c["nbf"] = at(time.Minute) }), check.ReasonJWTInvalid},
		{"nbf just beyond the leeway", signed(func(c map[string]any) { c["nbf"] = at(jwtLeeway + time.Second) }), check.ReasonJWTInvalid},
		{"nbf within the leeway is accepted", signed(func(c map[string]any) { c["nbf"] = at(jwtLeeway) }), check.ReasonAllowedOIDC},
		// Out of range, a date would overflow int64 and wrap into the past.
		{"nbf 1e300", signed(func(c map[string]any) { c["nbf"] = 1e300 }), check.ReasonJWTInvalid},
		{"nbf -1e300", signed(func(c map[string]any) { c["nbf"] = -1e300 }), check.ReasonJWTInvalid},
		{"exp 1e300", signed(func(c map[string]any) { c["exp"] = 1e300 }), check.ReasonJWTInvalid},
		{"iat 1e19", signed(func(c map[string]any) { c["iat"] = 1e19 }), check.ReasonJWTInvalid},
		{"nbf not a number", signed(func(c map[string]any) { c["nbf"] = "now" }), check.ReasonJWTInvalid},

		{"another issuer, same keys", signed(func(c map[string]any) { c["iss"] = "https://idp.attacker.example" }), check.ReasonJWTInvalid},
		{"issuer with a trailing slash", signed(func(c map[string]any) { c["iss"] = idp.URL() + "/" }), check.ReasonJWTInvalid},
		{"no issuer", signed(func(c map[string]any) { delete(c, "iss") }), check.ReasonJWTInvalid},
		{"entra v1 issuer under the generic preset", signed(func(c map[string]any) { c["iss"] = "https://sts.windows.net/x/" }), check.ReasonJWTInvalid},

		{"no username claim", signed(func(c map[string]any) { delete(c, "preferred_username"); delete(c, "sub") }), check.ReasonJWTNoUsername},

		{"alg none with the issuer's kid", func() string {
			return oidcCraft(t, map[string]any{"alg": "none", "typ": "JWT", "kid": kid}, claims(), nil)
		}, check.ReasonJWTInvalid},
		{"alg none without kid", func() string {
			return oidcCraft(t, map[string]any{"alg": "none"}, claims(), nil)
		}, check.ReasonJWTInvalid},
		{"alg None (case variant)", func() string {
			return oidcCraft(t, map[string]any{"alg": "None", "kid": kid}, claims(), nil)
		}, check.ReasonJWTInvalid},
		{"HS256 keyed with the issuer's public key (PEM)", func() string {
			return oidcCraft(t, map[string]any{"alg": "HS256", "typ": "JWT", "kid": kid}, claims(), hs256(pubPEM))
		}, check.ReasonJWTInvalid},
		{"HS256 keyed with the issuer's public JWK", func() string {
			return oidcCraft(t, map[string]any{"alg": "HS256", "kid": kid}, claims(), hs256(pubJWK))
		}, check.ReasonJWTInvalid},
		{"RS256 header, empty signature", func() string {
			return oidcCraft(t, map[string]any{"alg": "RS256", "kid": kid}, claims(), nil)
		}, check.ReasonJWTInvalid},
		{"RS256 signed by another key under the issuer's kid", func() string {
			return oidcForge(t, jose.RS256, kid, claims())
		}, check.ReasonJWTInvalid},
		{"RS256 signed by another key, no kid", func() string {
			return oidcForge(t, jose.RS256, "", claims())
		}, check.ReasonJWTInvalid},
		{"ES256 (not advertised by the issuer) under the issuer's kid", func() string {
			return oidcForge(t, jose.ES256, kid, claims())
		}, check.ReasonJWTInvalid},
		{"valid signature, tampered payload", func() string {
			good := idp.Sign(claims())
			c := claims()
			c["preferred_username"], c["groups"] = "admin", []string{"admins"}
			return oidcReplacePayload(t, good, c)
		}, check.ReasonJWTInvalid},
		{"valid signature, payload re-encoded with padding", func() string {
			good := idp.Sign(claims())
			parts := strings.Split(good, ".")
			b, _ := base64.RawURLEncoding.DecodeString(parts[1])
			return parts[0] + "." + base64.URLEncoding.EncodeToString(b) + "." + parts[2]
		}, check.ReasonJWTInvalid},
		{"valid signature, tampered header (kid removed)", func() string {
			good := idp.Sign(claims())
			parts := strings.Split(good, ".")
			return oidcSegment(t, map[string]any{"alg": "RS256", "typ": "JWT"}) + "." + parts[1] + "." + parts[2]
		}, check.ReasonJWTInvalid},
		{"signature of another token", func() string {
			a := strings.Split(idp.Sign(claims()), ".")
			c := claims()
			c["sub"] = "someone-else"
			b := strings.Split(idp.Sign(c), ".")
			return a[0] + "." + a[1] + "." + b[2]
		}, check.ReasonJWTInvalid},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			d := oidcDecide(p, tc.token(), now)
			g.Expect(d.Reason).To(Equal(tc.want))
			if tc.want == check.ReasonAllowedOIDC {
				g.Expect(d.Allowed()).To(BeTrue())
				return
			}
			g.Expect(d.Allowed()).To(BeFalse())
			g.Expect(d.Identity).To(BeNil())
			g.Expect(d.Status()).To(Equal(http.StatusUnauthorized))
		})
	}
}

// TestJWTUnknownKeyReason: a token signed with a key the issuer does not
// publish is refused with check.ReasonJWTUnknownKey.
func TestJWTUnknownKeyReason(t *testing.T) {
	t.Parallel()
	g := NewWithT(t)
	idp := authtest.NewIssuer(t)
	_, iss := oidcResolve(t, idp)
	p := oidcCompile(t, "unknownkey", Config{IssuerURL: idp.URL(), Issuer: iss, Audiences: []string{"registry"}}, oidcOptions{})
	now := oidcNow()
	tok := idp.SignWithUnpublishedKey(oidcClaims(idp, now, "registry", "alice", nil))

	// The key set itself reports the unknown key precisely...
	_, err := iss.keys.VerifySignature(context.Background(), tok)
	g.Expect(err).To(MatchError(errUnknownKey))

	// ...and the decision must say so (status 401).
	d := oidcDecide(p, tok, now)
	g.Expect(d.Allowed()).To(BeFalse())
	g.Expect(d.Status()).To(Equal(http.StatusUnauthorized))
	g.Expect(d.Reason).To(Equal(check.ReasonJWTUnknownKey),
		"BUG oidc.go:416-419: go-oidc wraps KeySet errors with %%v (\"failed to verify signature: %%v\"), so errors.Is(err, errUnknownKey) never matches")
}

func TestJWTKeyRotation(t *testing.T) {
	t.Parallel()
	g := NewWithT(t)
	idp := authtest.NewIssuer(t)
	_, iss := oidcResolve(t, idp)
	p := oidcCompile(t, "rotation", Config{IssuerURL: idp.URL(), Issuer: iss, Audiences: []string{"registry"}}, oidcOptions{TokenCacheSize: -1})
	now := oidcNow()
	g.Expect(idp.JWKSRequests()).To(Equal(int64(1)), "discovery fetches the JWKS once")

	oldTok := idp.Sign(oidcClaims(idp, now, "registry", "old", nil))
	g.Expect(oidcDecide(p, oldTok, now).Reason).To(Equal(check.ReasonAllowedOIDC))
	g.Expect(idp.JWKSRequests()).To(Equal(int64(1)), "a known kid needs no fetch")

	// Unknown until now: refused without touching the keys in use.
	unpublished := idp.SignWithUnpublishedKey(oidcClaims(idp, now, "registry", "mallory", nil))
	g.Expect(oidcDecide(p, unpublished, now).Allowed()).To(BeFalse())
	g.Expect(idp.JWKSRequests()).To(Equal(int64(2)), "the unknown kid caused one refetch")

	// The issuer rotates. The previous attempt used the limiter's only
	// token, so the window is taken to have passed.
	oidcRefillLimiter(iss.keys)
	idp.RotateKey()
	newTok := idp.Sign(oidcClaims(idp, now, "registry", "new", nil))
	g.Expect(oidcKid(t, newTok)).NotTo(Equal(oidcKid(t, oldTok)))
	d := oidcDecide(p, newTok, now)
	g.Expect(d.Reason).To(Equal(check.ReasonAllowedOIDC))
	g.Expect(d.Identity.Username).To(Equal("new"))
	g.Expect(idp.JWKSRequests()).To(Equal(int64(3)), "the new kid caused one refetch")

	// Both keys are published: old tokens keep working, no further fetch.
	g.Expect(oidcDecide(p, oldTok, now).Reason).To(Equal(check.ReasonAllowedOIDC))
	g.Expect(oidcDecide(p, idp.Sign(oidcClaims(idp, now, "registry", "new2", nil)), now).Reason).To(Equal(check.ReasonAllowedOIDC))
	g.Expect(idp.JWKSRequests()).To(Equal(int64(3)))
}

// TestJWTUnknownKidRefetchLimiter: tokens naming unknown keys cannot make the
// service hammer the issuer. This also documents the policy: the limiter has a
// burst of one, so a genuine rotation right after a refused unknown-kid attempt
// is refused until unknownKidRefetchEvery has passed (any later refetch,
// whoever triggers it, picks the new key up).
func TestJWTUnknownKidRefetchLimiter(t *testing.T) {
	t.Parallel()
	g := NewWithT(t)
	idp := authtest.NewIssuer(t)
	_, iss := oidcResolve(t, idp)
	p := oidcCompile(t, "limiter", Config{IssuerURL: idp.URL(), Issuer: iss, Audiences: []string{"registry"}}, oidcOptions{TokenCacheSize: -1})
	now := oidcNow()

	g.Expect(iss.keys.limiter.Limit()).To(Equal(rate.Every(unknownKidRefetchEvery)))
	g.Expect(iss.keys.limiter.Burst()).To(Equal(1))
	g.Expect(unknownKidRefetchEvery).To(Equal(5 * time.Second))

	// Made-up kids (all different) and the issuer's unpublished key, in a
	// row, far faster than one per 5 s: exactly one refetch.
	var junk []string
	for i := range 30 {
		c := oidcClaims(idp, now, "registry", fmt.Sprintf("attacker-%d", i), nil)
		if i%2 == 0 {
			junk = append(junk, oidcForge(t, jose.RS256, fmt.Sprintf("made-up-kid-%d", i), c))
		} else {
			junk = append(junk, idp.SignWithUnpublishedKey(c))
		}
	}
	base := idp.JWKSRequests()
	start := time.Now()
	for _, tok := range junk {
		g.Expect(oidcDecide(p, tok, now).Allowed()).To(BeFalse())
	}
	g.Expect(time.Since(start)).To(BeNumerically("<", unknownKidRefetchEvery), "the loop must fit in one limiter window")
	g.Expect(idp.JWKSRequests() - base).To(Equal(int64(1)))

	// From here on the limiter has the same burst but a window that cannot
	// pass during the test (see oidcRefillLimiter). One unknown kid spends
	// its token.
	oidcRefillLimiter(iss.keys)
	g.Expect(oidcDecide(p, junk[0], now).Allowed()).To(BeFalse())
	g.Expect(idp.JWKSRequests() - base).To(Equal(int64(2)))

	// Concurrent unknown kids: no fetch at all while the limiter is empty.
	burst := make([]string, 12)
	for i := range burst {
		burst[i] = oidcForge(t, jose.RS256, fmt.Sprintf("burst-%d", i), oidcClaims(idp, now, "registry", "x", nil))
	}
	var wg sync.WaitGroup
	for _, tok := range burst {
		wg.Go(func() {
			_, _ = iss.keys.VerifySignature(context.Background(), tok)
		})
	}
	wg.Wait()
	g.Expect(idp.JWKSRequests() - base).To(Equal(int64(2)))

	// A genuine rotation inside the same window is refused (what the code
	// does; see the doc comment).
	idp.RotateKey()
	rotated := idp.Sign(oidcClaims(idp, now, "registry", "alice", nil))
	d := oidcDecide(p, rotated, now)
	g.Expect(d.Allowed()).To(BeFalse())
	g.Expect(idp.JWKSRequests() - base).To(Equal(int64(2)))

	// Once the window has passed, the next request refetches and verifies.
	oidcRefillLimiter(iss.keys)
	d = oidcDecide(p, rotated, now)
	g.Expect(d.Reason).To(Equal(check.ReasonAllowedOIDC))
	g.Expect(idp.JWKSRequests() - base).To(Equal(int64(3)))

	// Concurrent callers with the same new kid share one fetch.
	oidcRefillLimiter(iss.keys)
	idp.RotateKey()
	rotated2 := idp.Sign(oidcClaims(idp, now, "registry", "bob", nil))
	var allowed atomic.Int32
	for range 8 {
		wg.Go(func() {
			if oidcDecide(p, rotated2, now).Allowed() {
				allowed.Add(1)
			}
		})
	}
	wg.Wait()
	g.Expect(allowed.Load()).To(Equal(int32(8)))
	g.Expect(idp.JWKSRequests() - base).To(Equal(int64(4)))
}

// TestJWTRefetchOutlivesCancelledRequest: the unknown-kid refetch spends the
// limiter's token, so it must not die with the request that started it. An
// attacker who sends a token with an unknown kid and drops the connection at
// once (every unknownKidRefetchEvery) would otherwise abort each refetch
// before it reached the issuer, and tokens of a newly rotated key would be
// refused until the background refresh, 15 minutes later.
func TestJWTRefetchOutlivesCancelledRequest(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name    string
		trigger func(tb testing.TB, idp *authtest.Issuer, now time.Time) string
	}{
		{"made-up kid", func(tb testing.TB, idp *authtest.Issuer, now time.Time) string {
			return oidcForge(tb, jose.RS256, "made-up-kid", oidcClaims(idp, now, "registry", "mallory", nil))
		}},
		{"the new kid", func(_ testing.TB, idp *authtest.Issuer, now time.Time) string {
			return idp.Sign(oidcClaims(idp, now, "registry", "first", nil))
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			g := NewWithT(t)
			idp := authtest.NewIssuer(t)
			_, iss := oidcResolve(t, idp)
			p := oidcCompile(t, "cancelled", Config{IssuerURL: idp.URL(), Issuer: iss, Audiences: []string{"registry"}}, oidcOptions{TokenCacheSize: -1})
			now := oidcNow()
			oidcRefillLimiter(iss.keys) // one token, and no new one during the test
			base := idp.JWKSRequests()

			idp.RotateKey()
			gone, cancel := context.WithCancel(context.Background())
			cancel() // the client has already dropped the connection
			_ = oidcDecideCtx(gone, p, tc.trigger(t, idp, now), now)

			// A client with a token of the new key, within the same
			// limiter window: the refetch above must have reached the
			// issuer (or still be on its way), not been cancelled.
			d := oidcDecide(p, idp.Sign(oidcClaims(idp, now, "registry", "alice", nil)), now)
			g.Expect(d.Reason).To(Equal(check.ReasonAllowedOIDC))
			g.Expect(d.Identity.Username).To(Equal("alice"))
			g.Expect(idp.JWKSRequests()-base).To(Equal(int64(1)), "one refetch, shared")
		})
	}
}

// oidcGate is an http.RoundTripper that holds JWKS requests while closed: an
// issuer that answers slowly. Requests give up when their context ends.
type oidcGate struct {
	mu      sync.Mutex
	closed  chan struct{} // nil while requests pass
	waiting atomic.Int32  // JWKS requests being held
}

func (gt *oidcGate) hold() {
	gt.mu.Lock()
	defer gt.mu.Unlock()
	gt.closed = make(chan struct{})
}

func (gt *oidcGate) release() {
	gt.mu.Lock()
	defer gt.mu.Unlock()
	if gt.closed != nil {
		close(gt.closed)
		gt.closed = nil
	}
}

func (gt *oidcGate) RoundTrip(r *http.Request) (*http.Response, error) {
	gt.mu.Lock()
	closed := gt.closed
	gt.mu.Unlock()
	if closed != nil && strings.HasSuffix(r.URL.Path, authtest.JWKSPath) {
		gt.waiting.Add(1)
		defer gt.waiting.Add(-1)
		select {
		case <-closed:
		case <-r.Context().Done():
			return nil, r.Context().Err()
		}
	}
	return http.DefaultTransport.RoundTrip(r)
}

// TestJWTRefetchSlowIssuer: while an unknown-kid refetch waits for a slow
// issuer, a caller whose context ends returns at once without aborting the
// fetch, callers with known kids are not held up, and callers with the new kid
// wait for the same fetch and are allowed once it completes.
func TestJWTRefetchSlowIssuer(t *testing.T) {
	t.Parallel()
	g := NewWithT(t)
	idp := authtest.NewIssuer(t)
	gate := &oidcGate{}
	t.Cleanup(gate.release)
	iss, err := NewIssuers(&http.Client{Transport: gate}).Resolve(oidcCtx(t), idp.URL())
	g.Expect(err).NotTo(HaveOccurred())
	p := oidcCompile(t, "slow", Config{IssuerURL: idp.URL(), Issuer: iss, Audiences: []string{"registry"}}, oidcOptions{TokenCacheSize: -1})
	now := oidcNow()
	oidcRefillLimiter(iss.keys)
	oldTok := idp.Sign(oidcClaims(idp, now, "registry", "old", nil))
	idp.RotateKey()
	newTok := idp.Sign(oidcClaims(idp, now, "registry", "new", nil))
	base := idp.JWKSRequests()
	gate.hold()

	// The first caller starts the refetch, which the issuer holds; then
	// the caller goes away.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	first := make(chan oidcDecision, 1)
	go func() { first <- oidcDecideCtx(ctx, p, newTok, now) }()
	g.Eventually(gate.waiting.Load).WithTimeout(5 * time.Second).WithPolling(time.Millisecond).Should(Equal(int32(1)))
	cancel()
	var d oidcDecision
	g.Eventually(first).WithTimeout(time.Second).Should(Receive(&d), "a cancelled caller does not wait for the fetch")
	g.Expect(d.Reason).To(Equal(check.ReasonJWTUnknownKey))
	g.Expect(gate.waiting.Load()).To(Equal(int32(1)), "the fetch goes on without the caller")

	// Known kids need no fetch and no lock.
	g.Expect(oidcDecide(p, oldTok, now).Reason).To(Equal(check.ReasonAllowedOIDC))

	// Callers with the new kid wait for the running fetch.
	var wg sync.WaitGroup
	var allowed atomic.Int32
	for range 4 {
		wg.Go(func() {
			if oidcDecide(p, newTok, now).Allowed() {
				allowed.Add(1)
			}
		})
	}
	time.Sleep(20 * time.Millisecond) // let them reach the wait (not required for the outcome)
	gate.release()
	wg.Wait()
	g.Expect(allowed.Load()).To(Equal(int32(4)))
	g.Expect(idp.JWKSRequests()-base).To(Equal(int64(1)), "one refetch for all of them")
}

func TestJWTIssuerDown(t *testing.T) {
	t.Parallel()
	g := NewWithT(t)
	idp := authtest.NewIssuer(t)
	_, iss := oidcResolve(t, idp)
	// No cache: every token below is verified with the cached keys.
	p := oidcCompile(t, "down", Config{IssuerURL: idp.URL(), Issuer: iss, Audiences: []string{"registry"}}, oidcOptions{TokenCacheSize: -1})
	now := oidcNow()
	oidcRefillLimiter(iss.keys)

	idp.SetDown(true)
	base := idp.JWKSRequests()
	for i := range 3 {
		fresh := idp.Sign(oidcClaims(idp, now, "registry", fmt.Sprintf("user-%d", i), nil))
		d := oidcDecide(p, fresh, now)
		g.Expect(d.Reason).To(Equal(check.ReasonAllowedOIDC))
		g.Expect(d.Identity.Username).To(Equal(fmt.Sprintf("user-%d", i)))
	}
	g.Expect(idp.JWKSRequests()).To(Equal(base), "known keys need the issuer for nothing")

	// Unknown key while down: one (failed) refetch attempt, refused, and the
	// cached keys survive the failure.
	gen := iss.keys.cur.Load().gen
	g.Expect(oidcDecide(p, idp.SignWithUnpublishedKey(oidcClaims(idp, now, "registry", "x", nil)), now).Allowed()).To(BeFalse())
	g.Expect(idp.JWKSRequests()).To(Equal(base + 1))
	g.Expect(iss.keys.cur.Load().gen).To(Equal(gen))
	g.Expect(oidcDecide(p, idp.Sign(oidcClaims(idp, now, "registry", "after", nil)), now).Reason).To(Equal(check.ReasonAllowedOIDC))

	// The issuer rotates while down: the new key cannot be fetched.
	idp.RotateKey()
	rotated := idp.Sign(oidcClaims(idp, now, "registry", "rotated", nil))
	oidcRefillLimiter(iss.keys)
	g.Expect(oidcDecide(p, rotated, now).Allowed()).To(BeFalse())
	g.Expect(idp.JWKSRequests()).To(Equal(base + 2))

	// Back up. Within the limiter window the new kid is still refused (the
	// limiter was spent on the failed attempt)...
	idp.SetDown(false)
	g.Expect(oidcDecide(p, rotated, now).Allowed()).To(BeFalse())
	g.Expect(idp.JWKSRequests()).To(Equal(base + 2))
	// ...and after it recovery is automatic, nothing to restart.
	oidcRefillLimiter(iss.keys)
	d := oidcDecide(p, rotated, now)
	g.Expect(d.Reason).To(Equal(check.ReasonAllowedOIDC))
	g.Expect(d.Identity.Username).To(Equal("rotated"))
	g.Expect(idp.JWKSRequests()).To(Equal(base + 3))
	g.Expect(iss.keys.cur.Load().gen).To(Equal(gen + 1))
}

// TestJWTBackgroundRefresh: keys older than keysRefreshAfter are refetched in
// the background, which drops keys the issuer has withdrawn.
func TestJWTBackgroundRefresh(t *testing.T) {
	t.Parallel()
	g := NewWithT(t)
	idp := authtest.NewIssuer(t)
	_, iss := oidcResolve(t, idp)
	var skew atomic.Int64
	iss.keys.nowFn = oidcSkewedClock(&skew)
	p := oidcCompile(t, "bgrefresh", Config{IssuerURL: idp.URL(), Issuer: iss, Audiences: []string{"registry"}}, oidcOptions{TokenCacheSize: -1})
	now := oidcNow()

	oldTok := idp.Sign(oidcClaims(idp, now, "registry", "alice", nil))
	idp.RotateKey()
	idp.DropOldKeys() // the issuer withdraws the old key
	g.Expect(oidcDecide(p, oldTok, now).Reason).To(Equal(check.ReasonAllowedOIDC), "fresh keys: no refetch yet")
	g.Expect(idp.JWKSRequests()).To(Equal(int64(1)))

	// Keys are now older than keysRefreshAfter: the next verification still
	// uses them and starts one background refetch.
	skew.Store(int64(keysRefreshAfter + time.Minute))
	g.Expect(oidcDecide(p, oldTok, now).Reason).To(Equal(check.ReasonAllowedOIDC))
	oidcWaitBackground(g, iss.keys)
	g.Expect(idp.JWKSRequests()).To(Equal(int64(2)))
	g.Expect(oidcDecide(p, oldTok, now).Allowed()).To(BeFalse(), "the withdrawn key is gone")
	g.Expect(oidcDecide(p, idp.Sign(oidcClaims(idp, now, "registry", "bob", nil)), now).Reason).To(Equal(check.ReasonAllowedOIDC))
}

// TestJWTBackgroundRefreshBackoff: while the issuer fails, keys older than
// keysRefreshAfter must not turn every request into a JWKS request. The
// trigger needs no valid token: any JWT-shaped bearer with a supported alg
// reaches VerifySignature.
func TestJWTBackgroundRefreshBackoff(t *testing.T) {
	t.Parallel()
	g := NewWithT(t)
	idp := authtest.NewIssuer(t)
	_, iss := oidcResolve(t, idp)
	var skew atomic.Int64
	iss.keys.nowFn = oidcSkewedClock(&skew)
	p := oidcCompile(t, "backoff", Config{IssuerURL: idp.URL(), Issuer: iss, Audiences: []string{"registry"}}, oidcOptions{TokenCacheSize: -1})
	now := oidcNow()

	skew.Store(int64(keysRefreshAfter + time.Minute))
	idp.SetDown(true)
	// Forged, with the issuer's kid: a known kid, so the unknown-kid limiter
	// is not involved.
	forged := oidcForge(t, jose.RS256, idp.CurrentKeyID(), oidcClaims(idp, now, "registry", "mallory", nil))
	base := idp.JWKSRequests()
	const requests = 20
	for range requests {
		g.Expect(oidcDecide(p, forged, now).Allowed()).To(BeFalse())
		oidcWaitBackground(g, iss.keys)
	}
	g.Expect(idp.JWKSRequests()-base).To(BeNumerically("<=", 2),
		"BUG oidc.go:272-274,309-321: a failed background refresh leaves fetchedAt old and records no attempt time, "+
			"so each request starts another JWKS fetch (%d requests)", requests)
}

func TestOIDCIssuerDiscoveryFailure(t *testing.T) {
	t.Parallel()
	g := NewWithT(t)
	ctx := oidcCtx(t)
	idp := authtest.NewIssuer(t)
	idp.SetDown(true)
	reg := NewIssuers(nil)

	iss, err := reg.Resolve(ctx, idp.URL())
	g.Expect(err).To(HaveOccurred())
	g.Expect(iss).To(BeNil())
	g.Expect(idp.DiscoveryRequests()).To(Equal(int64(1)))

	// The operator compiles the policy with the discovery problem.
	prob := &authn.Problem{Reason: authn.ProblemOIDCDiscoveryFailed, Field: "spec.oidc.issuerURL", Message: err.Error()}
	cfg := Config{IssuerURL: idp.URL(), Audiences: []string{"registry"}, Problem: prob}
	p, probs := oidcCompileProblems("nodisc", cfg, oidcOptions{})
	g.Expect(probs).To(Equal([]authn.Problem{*prob}))
	g.Expect(p.firstState()).NotTo(Equal(verifying))
	g.Expect(p.firstState()).To(Equal(unavailable))

	// Without a Problem, Compile reports one itself.
	cfg2 := Config{IssuerURL: idp.URL(), Audiences: []string{"registry"}}
	_, probs2 := oidcCompileProblems("nodisc2", cfg2, oidcOptions{})
	g.Expect(probs2).To(HaveLen(1))
	g.Expect(probs2[0].Reason).To(Equal(authn.ProblemOIDCDiscoveryFailed))
	g.Expect(probs2[0].Field).To(Equal("spec.oidc"))

	now := oidcNow()
	tok := idp.Sign(oidcClaims(idp, now, "registry", "alice", nil))
	idp.SetDown(false)
	d := oidcDecide(p, tok, now)
	g.Expect(d.Allowed()).To(BeFalse())
	g.Expect(d.Reason).To(Equal(check.ReasonOIDCIssuerNotDiscovered))
	g.Expect(d.Status()).To(Equal(http.StatusUnauthorized))
	// Decide never discovers: the request path does no I/O for it.
	g.Expect(idp.DiscoveryRequests()).To(Equal(int64(1)))
	// A bearer that is not a JWT is simply invalid.
	g.Expect(oidcDecide(p, "opaque-token-value-0123456789", now).Reason).To(Equal(check.ReasonInvalidCredentials))

	// The failure is remembered for RetryDiscoveryAfter: within it, no
	// request goes out (reconciles of many policies do not each wait for
	// a timeout) ...
	_, err = reg.Resolve(ctx, idp.URL())
	g.Expect(err).To(HaveOccurred())
	g.Expect(idp.DiscoveryRequests()).To(Equal(int64(1)))
	// ... after it, discovery succeeds and the recompiled policy accepts
	// the token.
	var skew atomic.Int64
	reg.nowFn = oidcSkewedClock(&skew)
	skew.Store(int64(RetryDiscoveryAfter + time.Second))
	iss, err = reg.Resolve(ctx, idp.URL())
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(iss).NotTo(BeNil())
	g.Expect(iss.URL()).To(Equal(idp.URL()))
	p2 := oidcCompile(t, "nodisc", Config{IssuerURL: idp.URL(), Issuer: iss, Audiences: []string{"registry"}}, oidcOptions{})
	g.Expect(oidcDecide(p2, tok, now).Reason).To(Equal(check.ReasonAllowedOIDC))
}

func TestOIDCIssuerLastGoodOnRediscoveryFailure(t *testing.T) {
	t.Parallel()
	g := NewWithT(t)
	ctx := oidcCtx(t)
	idp := authtest.NewIssuer(t)
	reg, iss1 := oidcResolve(t, idp)
	var skew atomic.Int64
	reg.nowFn = oidcSkewedClock(&skew)
	now := oidcNow()
	tok := idp.Sign(oidcClaims(idp, now, "registry", "alice", nil))

	// Within RediscoverAfter: the same issuer, no request.
	again, err := reg.Resolve(ctx, idp.URL())
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(again).To(BeIdenticalTo(iss1))
	g.Expect(idp.DiscoveryRequests()).To(Equal(int64(1)))

	// Past it, with the issuer down: the last good issuer and an error.
	skew.Store(int64(RediscoverAfter + time.Minute))
	idp.SetDown(true)
	last, err := reg.Resolve(ctx, idp.URL())
	g.Expect(err).To(HaveOccurred())
	g.Expect(last).To(BeIdenticalTo(iss1))
	g.Expect(idp.DiscoveryRequests()).To(Equal(int64(2)))

	// A policy compiled with both keeps verifying, and reports.
	prob := &authn.Problem{Reason: authn.ProblemOIDCDiscoveryFailed, Field: "spec.oidc.issuerURL", Message: err.Error()}
	p, probs := oidcCompileProblems("lastgood", Config{IssuerURL: idp.URL(), Issuer: last, Problem: prob, Audiences: []string{"registry"}}, oidcOptions{TokenCacheSize: -1})
	g.Expect(probs).To(Equal([]authn.Problem{*prob}))
	g.Expect(p.firstState()).To(Equal(verifying))
	g.Expect(p.firstState()).NotTo(Equal(unavailable))
	g.Expect(oidcDecide(p, tok, now).Reason).To(Equal(check.ReasonAllowedOIDC))

	// Recovery, once the failure is old enough to retry: a new issuer,
	// discovered later, with the same warm key set.
	idp.SetDown(false)
	skew.Add(int64(RetryDiscoveryAfter + time.Second))
	iss2, err := reg.Resolve(ctx, idp.URL())
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(iss2).NotTo(BeIdenticalTo(iss1))
	g.Expect(iss2.discoveredAt).To(BeTemporally(">", iss1.discoveredAt))
	g.Expect(iss2.keys).To(BeIdenticalTo(iss1.keys))
	again, err = reg.Resolve(ctx, idp.URL())
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(again).To(BeIdenticalTo(iss2))
	g.Expect(idp.DiscoveryRequests()).To(Equal(int64(3)))
}

func TestOIDCIssuerMismatch(t *testing.T) {
	t.Parallel()
	// ES256: the algorithm is irrelevant here and its keys are fast to make.
	es := authtest.WithAlgorithm(jose.ES256)
	withPath := authtest.NewIssuer(t, es, authtest.WithPath("/realms/test"))
	plain := authtest.NewIssuer(t, es)
	cases := []struct {
		name    string
		idp     *authtest.Issuer
		url     string
		wantErr string
	}{
		{"advertised issuer is another host", authtest.NewIssuer(t, es, authtest.WithIssuerOverride("https://login.example.com/realms/test")), "", "does not match"},
		{"advertised issuer has a trailing slash", authtest.NewIssuer(t, es, authtest.WithIssuerOverride(authtest.IssuerURLPlaceholder+"/")), "", "does not match"},
		{"configured URL has a trailing slash", plain, plain.URL() + "/", "does not match"},
		{"configured URL lacks the realm path", withPath, strings.TrimSuffix(withPath.URL(), "/realms/test"), "404"},
		{"not an http(s) URL", nil, "ftp://127.0.0.1/x", "not an http(s) URL"},
		{"no scheme", nil, "127.0.0.1:8443", "not an http(s) URL"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			u := tc.url
			if u == "" {
				u = tc.idp.URL()
			}
			iss, err := NewIssuers(nil).Resolve(oidcCtx(t), u)
			g.Expect(err).To(MatchError(ContainSubstring(tc.wantErr)))
			g.Expect(iss).To(BeNil())
		})
	}
}

// TestOIDCIssuerKeysWarmAcrossRediscovery: rediscovery keeps the key set when
// jwks_uri is unchanged, so policies compiled before and after share it.
func TestOIDCIssuerKeysWarmAcrossRediscovery(t *testing.T) {
	t.Parallel()
	g := NewWithT(t)
	ctx := oidcCtx(t)
	idp := authtest.NewIssuer(t)
	reg, iss1 := oidcResolve(t, idp)
	var skew atomic.Int64
	reg.nowFn = oidcSkewedClock(&skew)
	now := oidcNow()
	before := oidcCompile(t, "before", Config{IssuerURL: idp.URL(), Issuer: iss1, Audiences: []string{"registry"}}, oidcOptions{TokenCacheSize: -1})

	idp.RotateKey()
	skew.Store(int64(RediscoverAfter + time.Minute))
	iss2, err := reg.Resolve(ctx, idp.URL())
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(iss2).NotTo(BeIdenticalTo(iss1))
	g.Expect(iss2.keys).To(BeIdenticalTo(iss1.keys))
	g.Expect(iss2.keys.jwksURL).To(Equal(idp.JWKSURL()))
	after := oidcCompile(t, "after", Config{IssuerURL: idp.URL(), Issuer: iss2, Audiences: []string{"registry"}}, oidcOptions{TokenCacheSize: -1})

	// A token of the rotated key verifies under both policies, and the key
	// set learnt it (at most) once for both.
	tok := idp.Sign(oidcClaims(idp, now, "registry", "alice", nil))
	base := idp.JWKSRequests()
	g.Expect(oidcDecide(after, tok, now).Reason).To(Equal(check.ReasonAllowedOIDC))
	g.Expect(oidcDecide(before, tok, now).Reason).To(Equal(check.ReasonAllowedOIDC))
	g.Expect(idp.JWKSRequests() - base).To(BeNumerically("<=", 1))
}

// TestOIDCIssuerAlgorithmsOnRediscovery: the algorithms advertised by a
// rediscovery are the ones verification accepts. A discovery front (a plain
// HTTP server serving only the discovery document) points jwks_uri at a real
// ES256 issuer and changes its advertised algorithms.
func TestOIDCIssuerAlgorithmsOnRediscovery(t *testing.T) {
	t.Parallel()
	g := NewWithT(t)
	ctx := oidcCtx(t)
	idp := authtest.NewIssuer(t, authtest.WithAlgorithm(jose.ES256))
	var algs atomic.Pointer[[]string]
	algs.Store(&[]string{"RS256"})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	g.Expect(err).NotTo(HaveOccurred())
	front := httptest.NewUnstartedServer(nil)
	_ = front.Listener.Close()
	front.Listener = l
	frontURL := "http://" + l.Addr().String()
	front.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != authtest.DiscoveryPath {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{
			"issuer": frontURL, "jwks_uri": idp.JWKSURL(), "id_token_signing_alg_values_supported": *algs.Load(),
		})
	})
	front.Start()
	t.Cleanup(front.Close)

	reg := NewIssuers(nil)
	var skew atomic.Int64
	reg.nowFn = oidcSkewedClock(&skew)
	now := oidcNow()
	c := oidcClaims(idp, now, "registry", "alice", nil)
	c["iss"] = frontURL
	tok := idp.Sign(c)

	iss1, err := reg.Resolve(ctx, frontURL)
	g.Expect(err).NotTo(HaveOccurred())
	p1 := oidcCompile(t, "algs1", Config{IssuerURL: frontURL, Issuer: iss1, Audiences: []string{"registry"}}, oidcOptions{TokenCacheSize: -1})
	g.Expect(oidcDecide(p1, tok, now).Allowed()).To(BeFalse(), "ES256 is not advertised yet")

	// The issuer now advertises ES256; rediscovery picks that up.
	algs.Store(&[]string{"ES256"})
	skew.Store(int64(RediscoverAfter + time.Minute))
	iss2, err := reg.Resolve(ctx, frontURL)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(iss2.algs).To(Equal([]string{"ES256"}))
	p2 := oidcCompile(t, "algs2", Config{IssuerURL: frontURL, Issuer: iss2, Audiences: []string{"registry"}}, oidcOptions{TokenCacheSize: -1})
	g.Expect(oidcDecide(p2, tok, now).Reason).To(Equal(check.ReasonAllowedOIDC),
		"BUG oidc.go:101-104: rediscovery keeps the old keySet, whose algs (%v) were fixed at the first discovery", iss2.keys.algs)
}

func TestPresetKeycloak(t *testing.T) {
	t.Parallel()
	idp := authtest.NewIssuer(t, authtest.WithPath("/realms/test"))
	_, iss := oidcResolve(t, idp)
	oc := Config{IssuerURL: idp.URL(), Issuer: iss, Audiences: []string{"registry-web"}}
	generic := oidcCompile(t, "generic", oc, oidcOptions{TokenCacheSize: -1})
	oc.Preset = PresetKeycloak
	keycloak := oidcCompile(t, "keycloak", oc, oidcOptions{TokenCacheSize: -1})
	now := oidcNow()

	cases := []struct {
		name        string
		mutate      func(c map[string]any)
		wantKC      check.Reason
		wantGeneric check.Reason
		wantClient  string
	}{
		{"access token: aud account, azp our client", func(c map[string]any) { c["aud"], c["azp"] = "account", "registry-web" },
			check.ReasonAllowedOIDC, check.ReasonJWTAudience, "registry-web"},
		{"access token without aud, azp our client", func(c map[string]any) { delete(c, "aud"); c["azp"] = "registry-web" },
			check.ReasonAllowedOIDC, check.ReasonJWTAudience, "registry-web"},
		{"access token of another client", func(c map[string]any) { c["aud"], c["azp"] = "account", "other-client" },
			check.ReasonJWTAudience, check.ReasonJWTAudience, ""},
		{"id token: aud our client", func(c map[string]any) { c["aud"], c["azp"] = "registry-web", "registry-web" },
			check.ReasonAllowedOIDC, check.ReasonAllowedOIDC, "registry-web"},
		{"client_id does not stand for aud", func(c map[string]any) { c["aud"], c["client_id"] = "account", "registry-web" },
			check.ReasonJWTAudience, check.ReasonJWTAudience, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			c := oidcClaims(idp, now, "registry-web", "alice", []string{"dev"})
			tc.mutate(c)
			tok := idp.Sign(c)
			d := oidcDecide(keycloak, tok, now)
			g.Expect(d.Reason).To(Equal(tc.wantKC))
			if d.Allowed() {
				g.Expect(d.Identity.Username).To(Equal("alice"))
				g.Expect(d.Identity.ClientID).To(Equal(tc.wantClient))
				g.Expect(d.Identity.Groups).To(Equal([]string{"dev"}))
				g.Expect(d.Identity.Method).To(Equal(check.Method("keycloak")))
			}
			if gd := oidcDecide(generic, tok, now); gd.Reason == check.ReasonAllowedOIDC {
				g.Expect(gd.Identity.Method).To(Equal(check.MethodOIDC))
			}
			g.Expect(oidcDecide(generic, tok, now).Reason).To(Equal(tc.wantGeneric))
		})
	}
}

// Okta's custom authorization servers (https://{domain}/oauth2/default) issue
// access tokens with aud "api://default" (the server's audience), the user in
// sub, the client in cid, the scopes in scp and groups in a "groups" claim
// when the server adds one.
func TestPresetOkta(t *testing.T) {
	t.Parallel()
	idp := authtest.NewIssuer(t, authtest.WithPath("/oauth2/default"))
	_, iss := oidcResolve(t, idp)
	oc := Config{IssuerURL: idp.URL(), Issuer: iss, Audiences: []string{"api://default"}, Preset: PresetOkta}
	okta := oidcCompile(t, "okta", oc, oidcOptions{TokenCacheSize: -1})
	now := oidcNow()
	oktaClaims := func() map[string]any {
		return map[string]any{
			"ver": 1, "jti": "AT.abc", "iss": idp.URL(), "aud": "api://default",
			"iat": now.Unix(), "exp": now.Add(time.Hour).Unix(),
			"cid": "0oa-registry-cli", "uid": "00u123", "scp": []string{"openid", "registry"},
			"sub": "alice@example.com", "groups": []string{"mcp-registry-admin", "Everyone"},
		}
	}
	g := NewWithT(t)
	d := oidcDecide(okta, idp.Sign(oktaClaims()), now)
	g.Expect(d.Reason).To(Equal(check.ReasonAllowedOIDC))
	g.Expect(d.Identity.Username).To(Equal("alice@example.com"))
	g.Expect(d.Identity.ClientID).To(Equal("0oa-registry-cli"))
	g.Expect(d.Identity.Groups).To(Equal([]string{"mcp-registry-admin", "Everyone"}))
	g.Expect(d.Identity.Method).To(Equal(check.Method("okta")))

	// Another authorization server's audience is refused.
	c := oktaClaims()
	c["aud"] = "api://other"
	g.Expect(oidcDecide(okta, idp.Sign(c), now).Reason).To(Equal(check.ReasonJWTAudience))
	// Without cid, azp names the client.
	c = oktaClaims()
	delete(c, "cid")
	c["azp"] = "0oa-web"
	g.Expect(oidcDecide(okta, idp.Sign(c), now).Identity.ClientID).To(Equal("0oa-web"))
}

// Auth0 issues access tokens from https://{tenant}.auth0.com/ (the issuer
// ends in a slash) with aud a list (the API identifier and the userinfo
// endpoint), the user in sub ("auth0|..."), the client in azp, groups in a
// namespaced custom claim or, with Auth0 RBAC, in permissions.
func TestPresetAuth0(t *testing.T) {
	t.Parallel()
	idp := authtest.NewIssuer(t, authtest.WithIssuerOverride(authtest.IssuerURLPlaceholder+"/"))
	issuerURL := idp.URL() + "/"
	_, iss := oidcResolveURL(t, idp, issuerURL)
	oc := Config{IssuerURL: issuerURL, Issuer: iss, Audiences: []string{"https://registry.example.com/api"}, Preset: PresetAuth0}
	auth0 := oidcCompile(t, "auth0", oc, oidcOptions{TokenCacheSize: -1})
	now := oidcNow()
	auth0Claims := func() map[string]any {
		return map[string]any{
			"iss": issuerURL, "sub": "auth0|64f1c0ffee", "azp": "registry-cli-client",
			"aud": []string{"https://registry.example.com/api", issuerURL + "userinfo"},
			"iat": now.Unix(), "exp": now.Add(time.Hour).Unix(), "scope": "openid profile",
			Auth0GroupsClaim: []string{"mcp-registry-admin"},
		}
	}
	g := NewWithT(t)
	d := oidcDecide(auth0, idp.Sign(auth0Claims()), now)
	g.Expect(d.Reason).To(Equal(check.ReasonAllowedOIDC))
	g.Expect(d.Identity.Username).To(Equal("auth0|64f1c0ffee"))
	g.Expect(d.Identity.ClientID).To(Equal("registry-cli-client"))
	g.Expect(d.Identity.Groups).To(Equal([]string{"mcp-registry-admin"}))
	g.Expect(d.Identity.Method).To(Equal(check.Method("auth0")))

	// With a nickname claim (ID tokens, or a rule that adds it), it is the
	// username; without the namespaced claim, RBAC permissions are the groups.
	c := auth0Claims()
	c["nickname"] = "alice"
	delete(c, Auth0GroupsClaim)
	c["permissions"] = []string{"read:servers"}
	d = oidcDecide(auth0, idp.Sign(c), now)
	g.Expect(d.Identity.Username).To(Equal("alice"))
	g.Expect(d.Identity.Groups).To(Equal([]string{"read:servers"}))
	// The issuer without its slash is another issuer.
	c = auth0Claims()
	c["iss"] = idp.URL()
	g.Expect(oidcDecide(auth0, idp.Sign(c), now).Allowed()).To(BeFalse())
}

func TestPresetEntra(t *testing.T) {
	t.Parallel()
	const (
		tenant = "72f988bf-86f1-41af-91ab-2d7cd011db47"
		app    = "6e74172b-be56-4843-9ff4-e66a39bb12e3"
	)
	idp := authtest.NewIssuer(t, authtest.WithPath("/"+tenant+"/v2.0"))
	_, iss := oidcResolve(t, idp)
	g0 := NewWithT(t)
	g0.Expect(entraV1Issuer(idp.URL())).To(Equal("https://sts.windows.net/" + tenant + "/"))
	oc := Config{IssuerURL: idp.URL(), Issuer: iss, Audiences: []string{app, "api://registry"}}
	generic := oidcCompile(t, "generic", oc, oidcOptions{TokenCacheSize: -1})
	oc.Preset = PresetEntra
	entra := oidcCompile(t, "entra", oc, oidcOptions{TokenCacheSize: -1})
	now := oidcNow()

	v1 := func(c map[string]any) {
		c["iss"] = "https://sts.windows.net/" + tenant + "/"
		c["ver"] = "1.0"
		c["aud"] = "api://registry"
		c["appid"] = "cli-app"
		c["upn"] = "alice@contoso.com"
		c["unique_name"] = "alice-unique@contoso.com"
		delete(c, "preferred_username")
	}
	cases := []struct {
		name        string
		mutate      func(c map[string]any)
		wantEntra   check.Reason
		wantGeneric check.Reason
		wantUser    string
		wantClient  string
	}{
		{"v2 token", func(c map[string]any) {
			c["ver"], c["azp"], c["preferred_username"] = "2.0", "cli-app", "alice@contoso.com"
		}, check.ReasonAllowedOIDC, check.ReasonAllowedOIDC, "alice@contoso.com", "cli-app"},
		{"v2 token without preferred_username: upn", func(c map[string]any) {
			delete(c, "preferred_username")
			c["upn"] = "alice@contoso.com"
		}, check.ReasonAllowedOIDC, check.ReasonAllowedOIDC, "alice@contoso.com", app},
		{"v1 token (sts.windows.net issuer)", v1, check.ReasonAllowedOIDC, check.ReasonJWTInvalid, "alice@contoso.com", "cli-app"},
		{"v1 token without upn: unique_name", func(c map[string]any) {
			v1(c)
			delete(c, "upn")
		}, check.ReasonAllowedOIDC, check.ReasonJWTInvalid, "alice-unique@contoso.com", "cli-app"},
		{"v1 token of another tenant", func(c map[string]any) {
			v1(c)
			c["iss"] = "https://sts.windows.net/00000000-0000-0000-0000-000000000000/"
		}, check.ReasonJWTInvalid, check.ReasonJWTInvalid, "", ""},
		{"v1 issuer without trailing slash", func(c map[string]any) {
			v1(c)
			c["iss"] = "https://sts.windows.net/" + tenant
		}, check.ReasonJWTInvalid, check.ReasonJWTInvalid, "", ""},
		{"v1 token for another audience", func(c map[string]any) {
			v1(c)
			c["aud"] = "api://other"
		}, check.ReasonJWTAudience, check.ReasonJWTInvalid, "", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			c := oidcClaims(idp, now, app, "alice", []string{"dev"})
			tc.mutate(c)
			tok := idp.Sign(c)
			d := oidcDecide(entra, tok, now)
			g.Expect(d.Reason).To(Equal(tc.wantEntra))
			if d.Allowed() {
				g.Expect(d.Identity.Username).To(Equal(tc.wantUser))
				g.Expect(d.Identity.ClientID).To(Equal(tc.wantClient))
				g.Expect(d.Identity.Groups).To(Equal([]string{"dev"}))
			}
			dg := oidcDecide(generic, tok, now)
			g.Expect(dg.Reason).To(Equal(tc.wantGeneric))
		})
	}
}

func TestPresetCognito(t *testing.T) {
	t.Parallel()
	const client = "3n4b5urk1ft4fl3mg5e62d9ado"
	idp := authtest.NewIssuer(t, authtest.WithPath("/eu-west-1_AbCdEf123"))
	_, iss := oidcResolve(t, idp)
	oc := Config{IssuerURL: idp.URL(), Issuer: iss, Audiences: []string{client}}
	generic := oidcCompile(t, "generic", oc, oidcOptions{TokenCacheSize: -1})
	oc.Preset = PresetCognito
	cognito := oidcCompile(t, "cognito", oc, oidcOptions{TokenCacheSize: -1})
	now := oidcNow()

	// Cognito tokens carry neither preferred_username nor groups.
	access := func(c map[string]any) {
		delete(c, "aud")
		delete(c, "preferred_username")
		delete(c, "groups")
		c["client_id"] = client
		c["token_use"] = "access"
		c["username"] = "alice"
		c["cognito:groups"] = []string{"admins", "dev"}
		c["scope"] = "openid profile"
	}
	id := func(c map[string]any) {
		delete(c, "preferred_username")
		delete(c, "groups")
		c["aud"] = client
		c["token_use"] = "id"
		c["cognito:username"] = "bob"
		c["cognito:groups"] = []string{"dev"}
	}
	cases := []struct {
		name        string
		mutate      func(c map[string]any)
		want        check.Reason
		wantGeneric check.Reason
		wantUser    string
		wantGroups  []string
		wantScopes  []string
	}{
		{"access token", access, check.ReasonAllowedOIDC, check.ReasonJWTAudience,
			"alice", []string{"admins", "dev"}, []string{"mcp-registry-admin", "mcp-servers/read"}},
		{"id token", id, check.ReasonAllowedOIDC, check.ReasonAllowedOIDC,
			"bob", []string{"dev"}, []string{"mcp-servers/read"}},
		{"id token use with client_id and no aud", func(c map[string]any) {
			id(c)
			delete(c, "aud")
			c["client_id"] = client
		}, check.ReasonJWTAudience, check.ReasonJWTAudience, "", nil, nil},
		{"access token without token_use", func(c map[string]any) {
			access(c)
			delete(c, "token_use")
		}, check.ReasonJWTAudience, check.ReasonJWTAudience, "", nil, nil},
		{"access token of another app client", func(c map[string]any) {
			access(c)
			c["client_id"] = "another-app-client"
		}, check.ReasonJWTAudience, check.ReasonJWTAudience, "", nil, nil},
		{"access token without username: sub", func(c map[string]any) {
			access(c)
			delete(c, "username")
		}, check.ReasonAllowedOIDC, check.ReasonJWTAudience, "sub-alice", []string{"admins", "dev"}, []string{"mcp-registry-admin", "mcp-servers/read"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			c := oidcClaims(idp, now, client, "alice", nil)
			tc.mutate(c)
			tok := idp.Sign(c)
			d := oidcDecide(cognito, tok, now)
			g.Expect(d.Reason).To(Equal(tc.want))
			if d.Allowed() {
				g.Expect(d.Identity.Username).To(Equal(tc.wantUser))
				g.Expect(d.Identity.ClientID).To(Equal(client))
				g.Expect(d.Identity.Groups).To(Equal(tc.wantGroups))
				g.Expect(d.Identity.Scopes).To(Equal(tc.wantScopes))
			}
			g.Expect(oidcDecide(generic, tok, now).Reason).To(Equal(tc.wantGeneric))
		})
	}
}

func TestPresetCustomClaims(t *testing.T) {
	t.Parallel()
	idp := authtest.NewIssuer(t, authtest.WithPath("/realms/test"))
	_, iss := oidcResolve(t, idp)
	p := oidcCompile(t, "custom", Config{
		IssuerURL: idp.URL(), Issuer: iss, Audiences: []string{"registry"}, Preset: PresetKeycloak,
		GroupsClaim: "realm_access.roles", UsernameClaim: "email",
	}, oidcOptions{TokenCacheSize: -1})
	now := oidcNow()

	cases := []struct {
		name       string
		mutate     func(c map[string]any)
		want       check.Reason
		wantUser   string
		wantGroups []string
	}{
		{"nested roles", func(c map[string]any) {
			c["realm_access"] = map[string]any{"roles": []string{"admins", "offline_access"}}
		}, check.ReasonAllowedOIDC, "alice@example.com", []string{"admins", "offline_access"}},
		{"the groups claim is not used", func(c map[string]any) {
			c["groups"] = []string{"admins"}
		}, check.ReasonAllowedOIDC, "alice@example.com", nil},
		{"a flat claim with the dotted name wins", func(c map[string]any) {
			c["realm_access.roles"] = []string{"dev"}
			c["realm_access"] = map[string]any{"roles": []string{"admins"}}
		}, check.ReasonAllowedOIDC, "alice@example.com", []string{"dev"}},
		{"realm_access is not an object", func(c map[string]any) {
			c["realm_access"] = []string{"admins"}
		}, check.ReasonAllowedOIDC, "alice@example.com", nil},
		{"roles is not a list", func(c map[string]any) {
			c["realm_access"] = map[string]any{"roles": map[string]any{"admins": true}}
		}, check.ReasonAllowedOIDC, "alice@example.com", nil},
		{"deeper path does not match", func(c map[string]any) {
			c["realm_access"] = map[string]any{"roles": map[string]any{"x": []string{"admins"}}}
		}, check.ReasonAllowedOIDC, "alice@example.com", nil},
		{"no email: the username claim replaces the defaults, no fallback to sub", func(c map[string]any) {
			delete(c, "email")
		}, check.ReasonJWTNoUsername, "", nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			c := oidcClaims(idp, now, "registry", "alice", nil)
			delete(c, "groups")
			c["email"] = "alice@example.com"
			tc.mutate(c)
			d := oidcDecide(p, idp.Sign(c), now)
			g.Expect(d.Reason).To(Equal(tc.want))
			if !d.Allowed() {
				return
			}
			g.Expect(d.Identity.Username).To(Equal(tc.wantUser))
			if tc.wantGroups == nil {
				g.Expect(d.Identity.Groups).To(BeEmpty())
			} else {
				g.Expect(d.Identity.Groups).To(Equal(tc.wantGroups))
			}
		})
	}
}

// TestJWTCacheSkipsVerification: a token seen before is answered from the
// cache (its signing key may since have been withdrawn), for at most
// authn.MaxCachedTTL.
func TestJWTCacheSkipsVerification(t *testing.T) {
	t.Parallel()
	g := NewWithT(t)
	ctx := oidcCtx(t)
	idp := authtest.NewIssuer(t)
	_, iss := oidcResolve(t, idp)
	oc := Config{IssuerURL: idp.URL(), Issuer: iss, Audiences: []string{"registry"}}
	cached := oidcCompile(t, "cached", oc, oidcOptions{})
	uncached := oidcCompile(t, "uncached", oc, oidcOptions{TokenCacheSize: -1})
	g.Expect(uncached.cache).To(BeNil())
	now := oidcNow()

	tokA := idp.Sign(oidcClaims(idp, now, "registry", "alice", []string{"dev"}))
	tokB := idp.Sign(oidcClaims(idp, now, "registry", "bob", []string{"dev"}))
	first := oidcDecide(cached, tokA, now)
	g.Expect(first.Reason).To(Equal(check.ReasonAllowedOIDC))
	g.Expect(cached.cache.Len()).To(Equal(1))
	g.Expect(oidcDecide(uncached, tokA, now).Reason).To(Equal(check.ReasonAllowedOIDC))

	// Denials are not cached.
	g.Expect(oidcDecide(cached, idp.Sign(oidcClaims(idp, now, "elsewhere", "eve", nil)), now).Reason).To(Equal(check.ReasonJWTAudience))
	g.Expect(cached.cache.Len()).To(Equal(1))

	oidcWithdrawOldKeys(g, ctx, idp, iss)
	// tokB was never cached: verification now fails; so does tokA without
	// a cache.
	g.Expect(oidcDecide(cached, tokB, now).Allowed()).To(BeFalse())
	g.Expect(oidcDecide(uncached, tokA, now).Allowed()).To(BeFalse())
	// tokA is answered from the cache: the very same identity.
	second := oidcDecide(cached, tokA, now.Add(time.Minute))
	g.Expect(second.Reason).To(Equal(check.ReasonAllowedOIDC))
	g.Expect(second.Identity).To(BeIdenticalTo(first.Identity))
	g.Expect(oidcDecide(cached, tokA, now.Add(authn.MaxCachedTTL-time.Second)).Identity).To(BeIdenticalTo(first.Identity))

	// The entry lives authn.MaxCachedTTL at most, although exp is 1h away.
	g.Expect(authn.MaxCachedTTL).To(Equal(5 * time.Minute))
	g.Expect(oidcDecide(cached, tokA, now.Add(authn.MaxCachedTTL)).Allowed()).To(BeFalse())
}

// TestJWTCacheRespectsExpiry: a cached token is not accepted past its exp
// (plus the leeway, which only a real verification grants).
func TestJWTCacheRespectsExpiry(t *testing.T) {
	t.Parallel()
	g := NewWithT(t)
	ctx := oidcCtx(t)
	idp := authtest.NewIssuer(t)
	_, iss := oidcResolve(t, idp)
	p := oidcCompile(t, "expiry", Config{IssuerURL: idp.URL(), Issuer: iss, Audiences: []string{"registry"}}, oidcOptions{})
	now := oidcNow()
	c := oidcClaims(idp, now, "registry", "alice", nil)
	c["exp"] = now.Add(2 * time.Second).Unix()
	tok := idp.Sign(c)
	d := secret.DigestString(tok)

	g.Expect(oidcDecide(p, tok, now).Reason).To(Equal(check.ReasonAllowedOIDC))
	g.Expect(p.cache.Len()).To(Equal(1))
	g.Expect(p.cache.Get(&d, now.Add(2*time.Second-time.Nanosecond))).NotTo(BeNil())
	g.Expect(p.cache.Get(&d, now.Add(2*time.Second))).To(BeNil())

	// Past exp + leeway: expired, although the entry is still in the cache.
	later := now.Add(2*time.Second + jwtLeeway)
	g.Expect(oidcDecide(p, tok, later).Reason).To(Equal(check.ReasonJWTExpired))
	g.Expect(p.cache.Len()).To(Equal(1))

	// With the key withdrawn, what passes comes from the cache: before exp
	// it does, from exp on it does not (the cache grants no leeway).
	oidcWithdrawOldKeys(g, ctx, idp, iss)
	g.Expect(oidcDecide(p, tok, now.Add(time.Second)).Reason).To(Equal(check.ReasonAllowedOIDC))
	g.Expect(oidcDecide(p, tok, now.Add(2*time.Second)).Allowed()).To(BeFalse())

	// A token accepted only thanks to the leeway is not cached.
	c2 := oidcClaims(idp, now, "registry", "bob", nil)
	c2["exp"] = now.Add(-10 * time.Second).Unix()
	g.Expect(oidcDecide(p, idp.Sign(c2), now).Reason).To(Equal(check.ReasonAllowedOIDC))
	g.Expect(p.cache.Len()).To(Equal(1))
}

func TestJWTCacheNewPerCompile(t *testing.T) {
	t.Parallel()
	g := NewWithT(t)
	ctx := oidcCtx(t)
	idp := authtest.NewIssuer(t)
	_, iss := oidcResolve(t, idp)
	oc := Config{IssuerURL: idp.URL(), Issuer: iss, Audiences: []string{"registry"}}
	p1 := oidcCompile(t, "recompile", oc, oidcOptions{})
	now := oidcNow()
	tok := idp.Sign(oidcClaims(idp, now, "registry", "alice", nil))
	g.Expect(oidcDecide(p1, tok, now).Reason).To(Equal(check.ReasonAllowedOIDC))
	g.Expect(p1.cache.Len()).To(Equal(1))

	p2 := oidcCompile(t, "recompile", oc, oidcOptions{})
	g.Expect(p2.cache).NotTo(BeIdenticalTo(p1.cache))
	g.Expect(p2.cache.Len()).To(Equal(0))

	oidcWithdrawOldKeys(g, ctx, idp, iss)
	g.Expect(oidcDecide(p1, tok, now).Reason).To(Equal(check.ReasonAllowedOIDC), "the old policy answers from its cache")
	g.Expect(oidcDecide(p2, tok, now).Allowed()).To(BeFalse(), "the new policy verifies again")
	g.Expect(oidcDecide(p2, tok, now).Allowed()).To(BeFalse())
}

func TestJWTHeaderSafety(t *testing.T) {
	t.Parallel()
	idp := authtest.NewIssuer(t)
	_, iss := oidcResolve(t, idp)
	p := oidcCompile(t, "headers", Config{IssuerURL: idp.URL(), Issuer: iss, Audiences: []string{"registry"}}, oidcOptions{})
	now := oidcNow()

	cases := []struct {
		name       string
		mutate     func(c map[string]any)
		want       check.Reason
		wantUser   string
		wantClient string
		wantGroups []string
	}{
		{"CRLF in preferred_username", func(c map[string]any) { c["preferred_username"] = "alice\r\nX-Groups: mcp-registry-admin" }, check.ReasonJWTNoUsername, "", "", nil},
		{"LF in preferred_username", func(c map[string]any) { c["preferred_username"] = "alice\n" }, check.ReasonJWTNoUsername, "", "", nil},
		{"NUL in preferred_username", func(c map[string]any) { c["preferred_username"] = "ali\x00ce" }, check.ReasonJWTNoUsername, "", "", nil},
		{"DEL in preferred_username", func(c map[string]any) { c["preferred_username"] = "ali\x7fce" }, check.ReasonJWTNoUsername, "", "", nil},
		{"tab in preferred_username", func(c map[string]any) { c["preferred_username"] = "\talice" }, check.ReasonJWTNoUsername, "", "", nil},
		{"ESC in preferred_username", func(c map[string]any) { c["preferred_username"] = "alice\x1b[31m" }, check.ReasonJWTNoUsername, "", "", nil},
		{"an unsafe username does not fall back to sub", func(c map[string]any) { c["preferred_username"] = "a\rb" }, check.ReasonJWTNoUsername, "", "", nil},
		{"CRLF in sub when it is the username", func(c map[string]any) {
			delete(c, "preferred_username")
			c["sub"] = "x\r\nSet-Cookie: a=b"
		}, check.ReasonJWTNoUsername, "", "", nil},
		{"a leading space in preferred_username", func(c map[string]any) { c["preferred_username"] = " admin" }, check.ReasonJWTNoUsername, "", "", nil},
		{"a trailing space in preferred_username", func(c map[string]any) { c["preferred_username"] = "admin " }, check.ReasonJWTNoUsername, "", "", nil},
		{"a username of spaces", func(c map[string]any) { c["preferred_username"] = "   " }, check.ReasonJWTNoUsername, "", "", nil},
		{"a client id with a trailing space is blanked", func(c map[string]any) { c["azp"] = "web " }, check.ReasonAllowedOIDC, "alice", "", []string{"dev"}},
		{"space and non-ASCII are fine", func(c map[string]any) { c["preferred_username"] = "Zoë Doe" }, check.ReasonAllowedOIDC, "Zoë Doe", "registry", []string{"dev"}},
		{"groups with commas, white space or controls are dropped", func(c map[string]any) {
			c["groups"] = []string{"dev", "x,mcp-registry-admin", "with space", "tab\there", "nl\nx", "", "dev", "ops", "del\x7f"}
		}, check.ReasonAllowedOIDC, "alice", "registry", []string{"dev", "ops"}},
		{"a single group string with a comma is dropped", func(c map[string]any) { c["groups"] = "dev,admins" }, check.ReasonAllowedOIDC, "alice", "registry", nil},
		{"an unsafe client id is blanked", func(c map[string]any) { c["azp"] = "web\r\nX-Injected: 1" }, check.ReasonAllowedOIDC, "alice", "", []string{"dev"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			c := oidcClaims(idp, now, "registry", "alice", []string{"dev"})
			tc.mutate(c)
			tok := idp.Sign(c)
			d := oidcDecide(p, tok, now)
			g.Expect(d.Reason).To(Equal(tc.want))
			if !d.Allowed() {
				g.Expect(d.Status()).To(Equal(http.StatusUnauthorized))
				return
			}
			g.Expect(d.Identity.Username).To(Equal(tc.wantUser))
			g.Expect(d.Identity.ClientID).To(Equal(tc.wantClient))
			if tc.wantGroups == nil {
				g.Expect(d.Identity.Groups).To(BeEmpty())
			} else {
				g.Expect(d.Identity.Groups).To(Equal(tc.wantGroups))
			}
			// What the upstream receives: the identity's header values.
			vals := d.Identity.HeaderValues()
			for i := range check.NumIdentityHeaders {
				k, v := check.IdentityHeader(i), vals[i][0]
				if k == "X-Groups" {
					g.Expect(v).To(Equal(strings.Join(tc.wantGroups, " ")))
				}
				g.Expect(v).NotTo(ContainSubstring("\n"), k)
				g.Expect(v).NotTo(ContainSubstring("\r"), k)
			}
		})
	}
}

func TestJWTAlgorithms(t *testing.T) {
	t.Parallel()
	for _, alg := range []jose.SignatureAlgorithm{jose.ES256, jose.EdDSA} {
		t.Run(string(alg), func(t *testing.T) {
			t.Parallel()
			g := NewWithT(t)
			idp := authtest.NewIssuer(t, authtest.WithAlgorithm(alg))
			_, iss := oidcResolve(t, idp)
			g.Expect(iss.algs).To(Equal([]string{string(alg)}))
			p := oidcCompile(t, "algs", Config{IssuerURL: idp.URL(), Issuer: iss, Audiences: []string{"registry"}}, oidcOptions{TokenCacheSize: -1})
			now := oidcNow()
			c := oidcClaims(idp, now, "registry", "alice", nil)
			g.Expect(oidcDecide(p, idp.Sign(c), now).Reason).To(Equal(check.ReasonAllowedOIDC))
			// An algorithm the issuer does not advertise is refused, even
			// under the issuer's kid.
			g.Expect(oidcDecide(p, oidcForge(t, jose.RS256, idp.CurrentKeyID(), c), now).Reason).To(Equal(check.ReasonJWTInvalid))
		})
	}
}

// TestJWTConcurrentDecidesDuringRotation runs Decides with good and bad
// tokens from 8 goroutines while the issuer rotates its key (run with -race).
// The unknown-kid limiter is lifted so refetches (caused by bad tokens with
// unknown kids and by the new keys) really race with verifications; each new
// key is first presented by the rotating goroutine, as the first client after
// a rotation would, before the workers use tokens signed with it.
func TestJWTConcurrentDecidesDuringRotation(t *testing.T) {
	t.Parallel()
	g := NewWithT(t)
	idp := authtest.NewIssuer(t, authtest.WithAlgorithm(jose.ES256))
	_, iss := oidcResolve(t, idp)
	iss.keys.limiter = rate.NewLimiter(rate.Inf, 1)
	oc := Config{IssuerURL: idp.URL(), Issuer: iss, Audiences: []string{"registry"}}
	cached := oidcCompile(t, "cached", oc, oidcOptions{})
	uncached := oidcCompile(t, "uncached", oc, oidcOptions{TokenCacheSize: -1})
	policies := []*oidcPolicy{cached, uncached}
	now := oidcNow()

	type good struct {
		token, user string
	}
	var (
		mu   sync.RWMutex
		pool []good
	)
	sign := func(i int) good {
		u := fmt.Sprintf("user-%d", i)
		return good{idp.Sign(oidcClaims(idp, now, "registry", u, []string{"dev"})), u}
	}
	for i := range 4 {
		pool = append(pool, sign(i))
	}
	initialKid := idp.CurrentKeyID()
	expired := oidcClaims(idp, now, "registry", "eve", nil)
	expired["exp"] = now.Add(-time.Hour).Unix()
	bad := []string{
		idp.SignWithUnpublishedKey(oidcClaims(idp, now, "registry", "eve", nil)),
		oidcForge(t, jose.ES256, "made-up-kid", oidcClaims(idp, now, "registry", "eve", nil)),
		oidcForge(t, jose.ES256, initialKid, oidcClaims(idp, now, "registry", "eve", nil)),
		idp.Sign(oidcClaims(idp, now, "other-app", "eve", nil)),
		idp.Sign(expired),
		oidcReplacePayload(t, pool[0].token, oidcClaims(idp, now, "registry", "admin", []string{"admins"})),
		oidcCraft(t, map[string]any{"alg": "none", "kid": initialKid}, oidcClaims(idp, now, "registry", "eve", nil), nil),
	}

	const workers, perWorker, rotations = 8, 200, 6
	var (
		wg       sync.WaitGroup
		failures = make(chan string, workers*perWorker+rotations)
		done     atomic.Bool
		goodN    atomic.Int64
		badN     atomic.Int64
	)
	wg.Go(func() {
		defer done.Store(true)
		for r := range rotations {
			idp.RotateKey()
			gt := sign(100 + r)
			// The first client after a rotation may, rarely, be refused
			// once: it can coalesce onto a refetch that started before the
			// key was published (see keySet.startRefetch). It
			// retries, as clients do.
			allowed := false
			for range 5 {
				if allowed = oidcDecide(uncached, gt.token, now).Allowed(); allowed {
					break
				}
				time.Sleep(time.Millisecond)
			}
			if !allowed {
				failures <- fmt.Sprintf("rotation %d: token of the new key denied 5 times", r)
				continue
			}
			mu.Lock()
			pool = append(pool, gt)
			mu.Unlock()
			time.Sleep(5 * time.Millisecond)
		}
	})
	for w := range workers {
		wg.Go(func() {
			for i := range perWorker {
				p := policies[(w+i)%len(policies)]
				if i%3 == 0 {
					tok := bad[(w+i)%len(bad)]
					badN.Add(1)
					if d := oidcDecide(p, tok, now); d.Allowed() {
						failures <- fmt.Sprintf("worker %d: bad token %d allowed under %s", w, (w+i)%len(bad), p.Key())
					}
					continue
				}
				mu.RLock()
				gt := pool[(w*31+i)%len(pool)]
				mu.RUnlock()
				goodN.Add(1)
				d := oidcDecide(p, gt.token, now)
				if !d.Allowed() || d.Identity.Username != gt.user {
					failures <- fmt.Sprintf("worker %d: good token of %s under %s: %s", w, gt.user, p.Key(), d.Reason)
				}
			}
		})
	}
	wg.Wait()
	close(failures)
	var msgs []string
	for m := range failures {
		msgs = append(msgs, m)
	}
	g.Expect(msgs).To(BeEmpty())
	g.Expect(done.Load()).To(BeTrue())
	g.Expect(goodN.Load() + badN.Load()).To(Equal(int64(workers * perWorker)))
	g.Expect(pool).To(HaveLen(4 + rotations))
	g.Expect(idp.JWKSRequests()).To(BeNumerically(">", int64(rotations)), "refetches happened during the run")
}

// A JWT this kind cannot verify is someone else's (Foreign) only when it
// names another issuer: one of ours that fails is refused for good.
func TestJWTForeign(t *testing.T) {
	t.Parallel()
	g := NewWithT(t)
	idp := authtest.NewIssuer(t)
	_, iss := oidcResolve(t, idp)
	p := oidcCompile(t, "foreign", Config{IssuerURL: idp.URL(), Issuer: iss, Audiences: []string{"registry"}}, oidcOptions{TokenCacheSize: -1})
	now := oidcNow()
	in := func(tok string) authn.Input {
		return authn.Input{Scheme: authn.SchemeBearer, Bearer: tok, Now: now}
	}
	upstream := authtest.UnsignedJWT(map[string]any{"iss": "mcp-auth-server", "sub": "dave"})
	res := p.Authenticate(context.Background(), in(upstream))
	g.Expect(res.Outcome).To(Equal(authn.Next))
	g.Expect(res.Foreign).To(BeTrue())

	forged := authtest.UnsignedJWT(oidcClaims(idp, now, "registry", "eve", nil))
	res = p.Authenticate(context.Background(), in(forged))
	g.Expect(res.Foreign).To(BeFalse(), "a token naming our issuer is ours to refuse")
	g.Expect(res.Reason).To(Equal(check.ReasonJWTInvalid))

	expired := oidcClaims(idp, now, "registry", "eve", nil)
	expired["exp"] = now.Add(-time.Hour).Unix()
	g.Expect(p.Authenticate(context.Background(), in(idp.Sign(expired))).Foreign).To(BeFalse())

	none, _ := Compile(nil, &authn.Env{})
	g.Expect(none.Authenticate(context.Background(), in(upstream)).Foreign).To(BeTrue(), "without an issuer, every JWT is someone else's")
	undiscovered, _ := Compile(&Config{IssuerURL: idp.URL(), Audiences: []string{"registry"}}, &authn.Env{})
	g.Expect(undiscovered.Authenticate(context.Background(), in(forged)).Foreign).To(BeFalse())
	g.Expect(undiscovered.Authenticate(context.Background(), in(upstream)).Foreign).To(BeTrue())
}
