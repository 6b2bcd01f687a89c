package hoptoken_test

import (
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
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"

	"github.com/registryauth/registry-auth-operator/authserver/authn"
	"github.com/registryauth/registry-auth-operator/authserver/authtest"
	"github.com/registryauth/registry-auth-operator/authserver/check"
	"github.com/registryauth/registry-auth-operator/authserver/hoptoken"
)

// Tokens are checked with authtest.RegistryVerifier, which is written from
// the registry's contract with the standard library only: neither go-jose
// nor this package.

const secretKey = "registry-secret-3f9a1c7e5b2d4f6081a3c5e7092b4d6f"

var t0 = time.Unix(1_800_000_000, 0)

func hs256(key string, mutate ...func(*hoptoken.Config)) *hoptoken.Signer {
	cfg := &hoptoken.Config{SecretKey: &authn.SecretValue{Value: []byte(key)}}
	for _, m := range mutate {
		m(cfg)
	}
	s, probs := hoptoken.Compile(cfg)
	if len(probs) > 0 {
		panic(probs)
	}
	return s
}

func ecKeyPEM(t testing.TB) ([]byte, *ecdsa.PrivateKey) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), k
}

func pkcs8PEM(t testing.TB, k any) []byte {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

func es256(t testing.TB, keyPEM []byte, mutate ...func(*hoptoken.Config)) *hoptoken.Signer {
	t.Helper()
	cfg := &hoptoken.Config{SigningKey: &authn.SecretValue{Value: keyPEM}}
	for _, m := range mutate {
		m(cfg)
	}
	s, probs := hoptoken.Compile(cfg)
	if len(probs) > 0 {
		t.Fatal(probs)
	}
	return s
}

// parts decodes a compact JWS's header and payload, as bytes.
func parts(t testing.TB, tok string) (header, payload []byte) {
	t.Helper()
	p := strings.Split(tok, ".")
	if len(p) != 3 {
		t.Fatalf("token has %d parts", len(p))
	}
	h, err1 := base64.RawURLEncoding.DecodeString(p[0])
	b, err2 := base64.RawURLEncoding.DecodeString(p[1])
	if err1 != nil || err2 != nil {
		t.Fatalf("token parts are not base64url: %v %v", err1, err2)
	}
	return h, b
}

func mint(t testing.TB, s *hoptoken.Signer, id *check.Identity, now time.Time) string {
	t.Helper()
	v, err := s.Mint(id, now)
	if err != nil {
		t.Fatal(err)
	}
	if len(v) != 1 || v[0] == "" {
		t.Fatalf("Mint gave %q", v)
	}
	return v[0]
}

func TestMintClaims(t *testing.T) {
	static := check.NewIdentity("network-user", "network-trusted", []string{"mcp-registry-admin"}, []string{"mcp-registry-admin"}, check.MethodNetworkTrusted)
	apiKey := check.NewIdentity("ci-read", "ci-read", []string{"readers"}, nil, check.MethodNetworkTrusted)
	session := check.NewIdentity("alice", "alice", []string{"dev", "ops"}, nil, check.MethodSession)
	oidc := check.NewIdentity("alice", "web-ui", nil, nil, check.MethodOIDC)
	oidc.Subject = "f3b1-alice"
	upstreamSession := check.NewIdentity("bob", "", []string{"dev"}, nil, "session_cookie")
	keycloak := check.NewIdentity("carol", "cli", []string{"admins"}, nil, "keycloak")
	keycloak.Subject = "sub-carol"

	cases := []struct {
		name string
		id   *check.Identity
		want map[string]any // besides iss, aud, token_use, iat, exp, session_id, scopes
	}{
		{"static token", static, map[string]any{"sub": "network-user", "groups": []any{"mcp-registry-admin"},
			"auth_method": "network-trusted", "client_id": "network-trusted", "egress_user": ""}},
		{"API key (api-key)", apiKey, map[string]any{"sub": "ci-read", "groups": []any{"readers"},
			"auth_method": "network-trusted", "client_id": "ci-read", "egress_user": ""}},
		{"session cookie (session)", session, map[string]any{"sub": "alice", "groups": []any{"dev", "ops"},
			"auth_method": "oauth2", "client_id": "alice", "egress_user": ""}},
		{"IdP JWT (oidc), no groups: []", oidc, map[string]any{"sub": "alice", "groups": []any{},
			"auth_method": "oauth2", "client_id": "web-ui", "egress_user": "f3b1-alice"}},
		{"session cookie (session_cookie)", upstreamSession, map[string]any{"sub": "bob", "groups": []any{"dev"},
			"auth_method": "oauth2", "client_id": "", "egress_user": ""}},
		{"IdP JWT (keycloak)", keycloak, map[string]any{"sub": "carol", "groups": []any{"admins"},
			"auth_method": "oauth2", "client_id": "cli", "egress_user": "sub-carol"}},
	}
	s := hs256(secretKey)
	v := &authtest.RegistryVerifier{SecretKey: []byte(secretKey)}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			g := NewWithT(t)
			tok := mint(t, s, c.id, t0)
			header, payload := parts(t, tok)
			g.Expect(string(header)).To(Equal(`{"alg":"HS256","typ":"JWT"}`), "upstream's header bytes, no kid")

			claims, err := v.Verify(tok, t0)
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(claims).To(HaveLen(12), "exactly upstream's claims")

			var got map[string]any
			g.Expect(json.Unmarshal(payload, &got)).To(Succeed())
			want := map[string]any{
				"iss": "mcp-auth-server", "aud": "mcp-registry-ui", "token_use": "mcp-registry-ui",
				"iat": float64(t0.Unix()), "exp": float64(t0.Unix() + 30),
				"session_id": "", "scopes": []any{},
			}
			for k, x := range c.want {
				want[k] = x
			}
			g.Expect(got).To(Equal(want))
			g.Expect(string(payload)).NotTo(ContainSubstring("null"))
		})
	}
}

func TestVerifyRefuses(t *testing.T) {
	s := hs256(secretKey)
	id := check.NewIdentity("network-user", "network-trusted", []string{"mcp-registry-admin"}, nil, check.MethodNetworkTrusted)
	tok := mint(t, s, id, t0)
	good := &authtest.RegistryVerifier{SecretKey: []byte(secretKey)}

	// resign builds an HS256 token with the claims changed, signed with the
	// right key by hand (crypto/hmac), so only the changed claim is wrong.
	resign := func(change func(map[string]any)) string {
		_, payload := parts(t, tok)
		var c map[string]any
		if err := json.Unmarshal(payload, &c); err != nil {
			t.Fatal(err)
		}
		change(c)
		b, _ := json.Marshal(c)
		input := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"HS256","typ":"JWT"}`)) + "." + base64.RawURLEncoding.EncodeToString(b)
		mac := hmac.New(sha256.New, []byte(secretKey))
		mac.Write([]byte(input))
		return input + "." + base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
	}
	g := NewWithT(t)
	// The hand-signed copy of an unchanged token verifies: the negative
	// cases below fail for the claim they change, not for the signing.
	_, err := good.Verify(resign(func(map[string]any) {}), t0)
	g.Expect(err).NotTo(HaveOccurred())

	cases := []struct {
		name    string
		v       *authtest.RegistryVerifier
		tok     string
		now     time.Time
		expired bool
	}{
		{"wrong key", &authtest.RegistryVerifier{SecretKey: []byte(secretKey + "x")}, tok, t0, false},
		{"expired: exp + 5 s leeway passed", good, tok, t0.Add(35 * time.Second), true},
		{"iat in the future beyond the leeway", good, tok, t0.Add(-6 * time.Second), false},
		{"wrong audience", good, resign(func(c map[string]any) { c["aud"] = "mcp-registry" }), t0, false},
		{"audience missing", good, resign(func(c map[string]any) { delete(c, "aud") }), t0, false},
		{"wrong issuer", good, resign(func(c map[string]any) { c["iss"] = "someone-else" }), t0, false},
		{"wrong token_use", good, resign(func(c map[string]any) { c["token_use"] = "access" }), t0, false},
		{"tampered claims, old signature", good, func() string {
			p := strings.Split(resign(func(c map[string]any) { c["sub"] = "admin" }), ".")
			return p[0] + "." + p[1] + "." + strings.Split(tok, ".")[2]
		}(), t0, false},
		{"HS256 refused (REJECT_HS256_TOKENS)", &authtest.RegistryVerifier{SecretKey: []byte(secretKey), RejectHS256: true}, tok, t0, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			g := NewWithT(t)
			_, err := c.v.Verify(c.tok, c.now)
			g.Expect(err).To(HaveOccurred())
			if c.expired {
				g.Expect(err).To(MatchError(authtest.ErrTokenExpired))
			} else {
				g.Expect(err).To(MatchError(authtest.ErrTokenInvalid))
			}
		})
	}
	// Inside the leeway both ways the token is good.
	for _, now := range []time.Time{t0.Add(34 * time.Second), t0.Add(-5 * time.Second)} {
		_, err := good.Verify(tok, now)
		g.Expect(err).NotTo(HaveOccurred(), "at %v", now.Sub(t0))
	}
}

// The registry keys its verifier with SECRET_KEY's raw environment value;
// the token is keyed with the value as given, white space included.
func TestRawSecretKey(t *testing.T) {
	g := NewWithT(t)
	raw := secretKey + "\n"
	tok := mint(t, hs256(raw), check.NewIdentity("u", "", nil, nil, check.MethodOIDC), t0)
	_, err := (&authtest.RegistryVerifier{SecretKey: []byte(raw)}).Verify(tok, t0)
	g.Expect(err).NotTo(HaveOccurred())
	_, err = (&authtest.RegistryVerifier{SecretKey: []byte(secretKey)}).Verify(tok, t0)
	g.Expect(err).To(MatchError(authtest.ErrTokenInvalid), "a trimmed key is another key")
}

func TestTTLAndMode(t *testing.T) {
	id := check.NewIdentity("u", "", nil, nil, check.MethodOIDC)
	for _, c := range []struct {
		ttl  time.Duration
		mode hoptoken.Mode
		want int64
	}{
		{0, "", 30},
		{3 * time.Second, hoptoken.ModeOnRequest, 5},
		{5 * time.Second, hoptoken.ModeAlways, 5},
		{7900 * time.Millisecond, "", 7},
		{time.Hour, "", 3600},
		{48 * time.Hour, "", 86400},
	} {
		g := NewWithT(t)
		s := hs256(secretKey, func(cfg *hoptoken.Config) { cfg.TTL, cfg.Mode = c.ttl, c.mode })
		_, payload := parts(t, mint(t, s, id, t0))
		var got struct{ Iat, Exp int64 }
		g.Expect(json.Unmarshal(payload, &got)).To(Succeed())
		g.Expect(got.Iat).To(Equal(t0.Unix()))
		g.Expect(got.Exp-got.Iat).To(Equal(c.want), "TTL %v", c.ttl)
		g.Expect(s.TTL()).To(Equal(time.Duration(c.want) * time.Second))
		want := c.mode
		if want == "" {
			want = hoptoken.ModeOnRequest
		}
		g.Expect(s.Mode()).To(Equal(want))
	}
	_, probs := hoptoken.Compile(&hoptoken.Config{SecretKey: &authn.SecretValue{Value: []byte(secretKey)}, Mode: "sometimes"})
	NewWithT(t).Expect(probs).To(ConsistOf(HaveField("Field", hoptoken.FieldMode)))
}

func TestMintCache(t *testing.T) {
	g := NewWithT(t)
	s := hs256(secretKey)
	id := check.NewIdentity("u", "", nil, nil, check.MethodOIDC)
	a, err := s.Mint(id, t0)
	g.Expect(err).NotTo(HaveOccurred())
	b, _ := s.Mint(id, t0.Add(999*time.Millisecond))
	g.Expect(&b[0]).To(BeIdenticalTo(&a[0]), "the same second: the cached token")
	c, _ := s.Mint(id, t0.Add(time.Second))
	g.Expect(c[0]).NotTo(Equal(a[0]), "the next second: a new token")
	// A new signer (a key change, any configuration change) does not
	// answer from the old one's slot, even with the same key.
	s2 := hs256(secretKey + "-rotated")
	d, _ := s2.Mint(id, t0.Add(time.Second))
	g.Expect(d[0]).NotTo(Equal(c[0]))
	_, err = (&authtest.RegistryVerifier{SecretKey: []byte(secretKey + "-rotated")}).Verify(d[0], t0.Add(time.Second))
	g.Expect(err).NotTo(HaveOccurred(), "signed with the new key")
	// Another identity in the same second has its own token.
	e, _ := s2.Mint(check.NewIdentity("v", "", nil, nil, check.MethodOIDC), t0.Add(time.Second))
	g.Expect(e[0]).NotTo(Equal(d[0]))
}

// An identity built without NewIdentity may have nil groups: the claim is
// still a list.
func TestMintNilGroups(t *testing.T) {
	g := NewWithT(t)
	_, payload := parts(t, mint(t, hs256(secretKey), &check.Identity{Username: "u", Method: check.MethodOIDC}, t0))
	g.Expect(string(payload)).To(ContainSubstring(`"groups":[]`))
	g.Expect(string(payload)).To(ContainSubstring(`"scopes":[]`))
}

func TestMintRefuses(t *testing.T) {
	g := NewWithT(t)
	_, err := hs256(secretKey).Mint(check.NewIdentity("", "c", nil, nil, check.MethodOIDC), t0)
	g.Expect(err).To(MatchError(hoptoken.ErrNoSubject))
	_, err = hs256(secretKey).Mint(nil, t0)
	g.Expect(err).To(MatchError(hoptoken.ErrNoSubject))
}

func TestCompileProblems(t *testing.T) {
	ecPEM, _ := ecKeyPEM(t)
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	sv := func(b []byte) *authn.SecretValue { return &authn.SecretValue{Value: b} }
	cases := []struct {
		name   string
		cfg    *hoptoken.Config
		reason string
		field  string
	}{
		{"no key at all", &hoptoken.Config{}, authn.ProblemInvalidSpec, hoptoken.FieldSecretKey},
		{"empty secret key", &hoptoken.Config{SecretKey: sv([]byte(" \n"))}, authn.ProblemTokenEmpty, hoptoken.FieldSecretKey},
		{"short secret key", &hoptoken.Config{SecretKey: sv([]byte("short-key"))}, authn.ProblemTokenTooWeak, hoptoken.FieldSecretKey},
		{"placeholder secret key", &hoptoken.Config{SecretKey: sv([]byte("change-me-please-0123456789abcdefghij"))}, authn.ProblemTokenTooWeak, hoptoken.FieldSecretKey},
		{"secret not found", &hoptoken.Config{SecretKey: &authn.SecretValue{Problem: &authn.Problem{Reason: authn.ProblemSecretNotFound, Message: "Secret x not found"}}},
			authn.ProblemSecretNotFound, hoptoken.FieldSecretKey},
		{"signing key not found", &hoptoken.Config{SigningKey: &authn.SecretValue{Problem: &authn.Problem{Reason: authn.ProblemKeyMissing, Message: "no key"}}},
			authn.ProblemKeyMissing, hoptoken.FieldSigningKey},
		{"signing key is not PEM", &hoptoken.Config{SigningKey: sv([]byte(secretKey))}, authn.ProblemSigningKeyInvalid, hoptoken.FieldSigningKey},
		{"signing key is RSA", &hoptoken.Config{SigningKey: sv(pkcs8PEM(t, rsaKey))}, authn.ProblemSigningKeyInvalid, hoptoken.FieldSigningKey},
		{"signing key is P-384", &hoptoken.Config{SigningKey: sv(pkcs8PEM(t, p384))}, authn.ProblemSigningKeyInvalid, hoptoken.FieldSigningKey},
		{"signing key is encrypted", &hoptoken.Config{SigningKey: sv(pem.EncodeToMemory(&pem.Block{Type: "ENCRYPTED PRIVATE KEY", Bytes: []byte{1}}))},
			authn.ProblemSigningKeyInvalid, hoptoken.FieldSigningKey},
		{"signing key is a public key", &hoptoken.Config{SigningKey: sv(func() []byte {
			k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
			der, _ := x509.MarshalPKIXPublicKey(&k.PublicKey)
			return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
		}())}, authn.ProblemSigningKeyInvalid, hoptoken.FieldSigningKey},
		{"signing key cut short", &hoptoken.Config{SigningKey: sv(ecPEM[:len(ecPEM)/2])}, authn.ProblemSigningKeyInvalid, hoptoken.FieldSigningKey},
	}
	id := check.NewIdentity("u", "", nil, nil, check.MethodOIDC)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			g := NewWithT(t)
			s, probs := hoptoken.Compile(c.cfg)
			g.Expect(probs).To(HaveLen(1))
			g.Expect(probs[0].Reason).To(Equal(c.reason))
			g.Expect(probs[0].Field).To(Equal(c.field))
			g.Expect(probs[0].Message).NotTo(ContainSubstring(secretKey))
			g.Expect(s).NotTo(BeNil(), "configured: a signer that refuses, not none")
			g.Expect(s.Available()).To(BeFalse())
			_, err := s.Mint(id, t0)
			g.Expect(err).To(MatchError(hoptoken.ErrUnavailable))
		})
	}
	g := NewWithT(t)
	s, probs := hoptoken.Compile(nil)
	g.Expect(s).To(BeNil())
	g.Expect(probs).To(BeEmpty())
}

func TestES256(t *testing.T) {
	g := NewWithT(t)
	keyPEM, key := ecKeyPEM(t)
	s := es256(t, keyPEM)
	g.Expect(s.Algorithm()).To(Equal(hoptoken.ES256))
	g.Expect(s.KeyID()).To(HavePrefix("es256-"))
	g.Expect(s.KeyID()).To(HaveLen(len("es256-") + 43))

	// PKCS #8 and SEC 1 with its EC PARAMETERS block: the same key.
	g.Expect(es256(t, pkcs8PEM(t, key)).KeyID()).To(Equal(s.KeyID()))
	params := pem.EncodeToMemory(&pem.Block{Type: "EC PARAMETERS", Bytes: []byte{0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07}})
	g.Expect(es256(t, append(params, keyPEM...)).KeyID()).To(Equal(s.KeyID()))

	id := check.NewIdentity("alice", "web", []string{"dev"}, nil, check.MethodOIDC)
	tok := mint(t, s, id, t0)
	header, _ := parts(t, tok)
	g.Expect(string(header)).To(Equal(`{"alg":"ES256","kid":"` + s.KeyID() + `","typ":"JWT"}`))

	jwks := s.JWKS(t0)
	v := &authtest.RegistryVerifier{JWKS: func() ([]byte, error) { return jwks, nil }, RejectHS256: true}
	claims, err := v.Verify(tok, t0)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(claims["sub"]).To(Equal("alice"))
	keys, err := authtest.ParseRegistryJWKS(jwks)
	g.Expect(err).NotTo(HaveOccurred(), "the kid is the RFC 7638 thumbprint, computed independently")
	g.Expect(keys).To(HaveLen(1))
	g.Expect(keys[s.KeyID()].Equal(&key.PublicKey)).To(BeTrue())

	// Another key's JWKS does not verify it; nor does a verifier that only
	// knows the HS256 secret.
	otherPEM, _ := ecKeyPEM(t)
	other := es256(t, otherPEM).JWKS(t0)
	_, err = (&authtest.RegistryVerifier{JWKS: func() ([]byte, error) { return other, nil }}).Verify(tok, t0)
	g.Expect(err).To(MatchError(authtest.ErrTokenInvalid))
	_, err = (&authtest.RegistryVerifier{SecretKey: []byte(secretKey)}).Verify(tok, t0)
	g.Expect(err).To(MatchError(authtest.ErrTokenInvalid))

	// HS256 publishes an empty set.
	g.Expect(string(hs256(secretKey).JWKS(t0))).To(Equal(`{"keys":[]}`))
	// With both keys configured, ES256 signs.
	both, probs := hoptoken.Compile(&hoptoken.Config{SecretKey: &authn.SecretValue{Value: []byte(secretKey)}, SigningKey: &authn.SecretValue{Value: keyPEM}})
	g.Expect(probs).To(BeEmpty())
	g.Expect(both.Algorithm()).To(Equal(hoptoken.ES256))
}

// After a rotation the replaced public key stays in the JWKS until its
// expiry, so tokens it signed still verify at a registry that refreshes its
// key set; then it is gone.
func TestES256Overlap(t *testing.T) {
	g := NewWithT(t)
	oldPEM, oldKey := ecKeyPEM(t)
	newPEM, _ := ecKeyPEM(t)
	old := es256(t, oldPEM)
	id := check.NewIdentity("alice", "", nil, nil, check.MethodOIDC)
	oldTok := mint(t, old, id, t0)

	prev, err := hoptoken.PublicKeyOf(&oldKey.PublicKey)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(prev.KeyID).To(Equal(old.KeyID()))
	prev.ExpiresAt = t0.Add(10 * time.Minute)
	cur := es256(t, newPEM, func(c *hoptoken.Config) { c.Previous = []hoptoken.PublicKey{prev} })
	newTok := mint(t, cur, id, t0.Add(time.Second))

	at := func(now time.Time) *authtest.RegistryVerifier {
		return &authtest.RegistryVerifier{JWKS: func() ([]byte, error) { return cur.JWKS(now), nil }}
	}
	_, err = at(t0.Add(2*time.Second)).Verify(oldTok, t0.Add(2*time.Second))
	g.Expect(err).NotTo(HaveOccurred(), "a token in flight, signed with the old key")
	_, err = at(t0.Add(2*time.Second)).Verify(newTok, t0.Add(2*time.Second))
	g.Expect(err).NotTo(HaveOccurred())
	keys, _ := authtest.ParseRegistryJWKS(cur.JWKS(t0))
	g.Expect(keys).To(HaveLen(2))
	g.Expect(cur.Previous(t0)).To(HaveLen(1))

	end := t0.Add(10 * time.Minute)
	keys, _ = authtest.ParseRegistryJWKS(cur.JWKS(end))
	g.Expect(keys).To(HaveLen(1), "the old key leaves at its expiry")
	g.Expect(keys).To(HaveKey(cur.KeyID()))
	g.Expect(cur.Previous(end)).To(BeEmpty())

	// Rotated back: the previous key is the current one, listed once.
	back := es256(t, oldPEM, func(c *hoptoken.Config) { c.Previous = []hoptoken.PublicKey{prev} })
	keys, err = authtest.ParseRegistryJWKS(back.JWKS(t0))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(keys).To(HaveLen(1))

	// A previous key whose JWK does not match its kid is not published.
	bad := prev
	bad.KeyID = cur.KeyID()
	s, probs := hoptoken.Compile(&hoptoken.Config{SigningKey: &authn.SecretValue{Value: oldPEM}, Previous: []hoptoken.PublicKey{bad}})
	g.Expect(probs).To(ConsistOf(HaveField("Field", hoptoken.FieldPrevious)))
	g.Expect(s.Previous(t0)).To(BeEmpty())
	g.Expect(s.Available()).To(BeTrue())
}

func TestParsePublicJWK(t *testing.T) {
	g := NewWithT(t)
	_, key := ecKeyPEM(t)
	pk, err := hoptoken.PublicKeyOf(&key.PublicKey)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(string(pk.JWK)).NotTo(ContainSubstring(`"d"`), "public only")
	back, err := hoptoken.ParsePublicJWK(pk.JWK)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(back.KeyID).To(Equal(pk.KeyID))
	g.Expect(back.JWK).To(MatchJSON(pk.JWK))
	var m map[string]any
	g.Expect(json.Unmarshal(pk.JWK, &m)).To(Succeed())
	thumb, ok := hoptoken.ThumbprintOf(pk.KeyID)
	g.Expect(ok).To(BeTrue())
	g.Expect(hoptoken.KeyIDOfThumbprint(thumb)).To(Equal(pk.KeyID))
	for _, bad := range []string{"", "es256-", "rsa-" + pk.KeyID[6:], pk.KeyID + "A", "es256-!!"} {
		_, ok := hoptoken.ThumbprintOf(bad)
		g.Expect(ok).To(BeFalse(), bad)
	}
	m["kid"] = "es256-forged"
	forged, _ := json.Marshal(m)
	_, err = hoptoken.ParsePublicJWK(forged)
	g.Expect(err).To(HaveOccurred())
}

// BenchmarkMint is the answer stage on its own: a cached token (the same
// identity again in the same second, the common case under load) and one
// minted afresh.
func BenchmarkMint(b *testing.B) {
	keyPEM, _ := ecKeyPEM(b)
	for _, c := range []struct {
		name string
		s    *hoptoken.Signer
	}{{"hs256", hs256(secretKey)}, {"es256", es256(b, keyPEM)}} {
		id := check.NewIdentity("network-user", "network-trusted", []string{"mcp-registry-admin"}, nil, check.MethodNetworkTrusted)
		b.Run(c.name+"/cached", func(b *testing.B) {
			now := time.Now()
			b.ReportAllocs()
			for b.Loop() {
				if _, err := c.s.Mint(id, now); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(c.name+"/uncached", func(b *testing.B) {
			now := time.Now()
			b.ReportAllocs()
			i := int64(0)
			for b.Loop() {
				i++
				if _, err := c.s.Mint(id, now.Add(time.Duration(i)*time.Second)); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
