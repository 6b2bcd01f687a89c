package authtest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	jose "github.com/go-jose/go-jose/v4"
	. "github.com/onsi/gomega"
)

const testAudience = "registry-auth"

// clientCtx returns a context carrying an HTTP client with a timeout, so a
// misbehaving issuer cannot hang a test (go-oidc otherwise uses
// http.DefaultClient, which has no timeout).
func clientCtx(t *testing.T) context.Context {
	t.Helper()
	c := &http.Client{Timeout: 5 * time.Second}
	t.Cleanup(c.CloseIdleConnections)
	return oidc.ClientContext(t.Context(), c)
}

func newProvider(t *testing.T, g Gomega, iss *Issuer) *oidc.Provider {
	t.Helper()
	p, err := oidc.NewProvider(clientCtx(t), iss.URL())
	g.Expect(err).NotTo(HaveOccurred())
	return p
}

type userClaims struct {
	Subject           string   `json:"sub"`
	PreferredUsername string   `json:"preferred_username"`
	Groups            []string `json:"groups"`
}

// getJSON fetches url directly and decodes it into v, returning the response.
func getJSON(t *testing.T, g Gomega, url string, v any) *http.Response {
	t.Helper()
	resp, err := http.Get(url)
	g.Expect(err).NotTo(HaveOccurred())
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(resp.StatusCode).To(Equal(http.StatusOK), string(body))
	g.Expect(json.Unmarshal(body, v)).To(Succeed())
	return resp
}

// eventuallyVerify polls v.Verify(token) for up to a second.
//
// It is needed right after go-oidc refetched its JWKS: RemoteKeySet wakes the
// waiting Verify (inflight.done) before it stores the new keys and clears the
// in-flight fetch, so an immediately following Verify can still see the old
// cache and join the already completed, stale fetch. The window is tiny but
// real (seen under -race); assertions about go-oidc's converged state must
// therefore poll.
func eventuallyVerify(g Gomega, ctx context.Context, v *oidc.IDTokenVerifier, token string) AsyncAssertion {
	return g.Eventually(func() error {
		_, err := v.Verify(ctx, token)
		return err
	}).WithTimeout(time.Second).WithPolling(5 * time.Millisecond)
}

func tokenHeader(g Gomega, token string) jose.Header {
	jws, err := jose.ParseSignedCompact(token, []jose.SignatureAlgorithm{
		jose.RS256, jose.RS384, jose.RS512, jose.PS256, jose.PS384, jose.PS512,
		jose.ES256, jose.ES384, jose.ES512, jose.EdDSA,
	})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(jws.Signatures).To(HaveLen(1))
	return jws.Signatures[0].Header
}

func TestDiscoveryAndVerify(t *testing.T) {
	g := NewWithT(t)
	iss := NewIssuer(t)

	g.Expect(iss.URL()).To(HavePrefix("http://127.0.0.1:"))
	g.Expect(iss.DiscoveryIssuer()).To(Equal(iss.URL()))
	g.Expect(iss.Algorithm()).To(Equal(jose.RS256))

	p := newProvider(t, g, iss)
	g.Expect(iss.DiscoveryRequests()).To(Equal(int64(1)))
	g.Expect(p.Endpoint().AuthURL).To(HavePrefix(iss.URL()))
	g.Expect(p.Endpoint().TokenURL).To(HavePrefix(iss.URL()))

	var meta struct {
		JWKSURI string   `json:"jwks_uri"`
		Algs    []string `json:"id_token_signing_alg_values_supported"`
	}
	g.Expect(p.Claims(&meta)).To(Succeed())
	g.Expect(meta.JWKSURI).To(Equal(iss.JWKSURL()))
	g.Expect(meta.Algs).To(Equal([]string{"RS256"}))

	v := p.Verifier(&oidc.Config{ClientID: testAudience})
	g.Expect(iss.JWKSRequests()).To(BeZero(), "go-oidc fetches the JWKS lazily")

	token := iss.Sign(iss.Claims(testAudience, "alice", []string{"devs", "ops"}, time.Hour))
	hdr := tokenHeader(g, token)
	g.Expect(hdr.KeyID).To(Equal(iss.CurrentKeyID()))
	g.Expect(hdr.Algorithm).To(Equal("RS256"))

	idt, err := v.Verify(t.Context(), token)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(idt.Issuer).To(Equal(iss.URL()))
	g.Expect(idt.Audience).To(Equal([]string{testAudience}))
	g.Expect(idt.Subject).To(Equal("sub-alice"))
	g.Expect(idt.Expiry).To(BeTemporally("~", time.Now().Add(time.Hour), 5*time.Second))
	var c userClaims
	g.Expect(idt.Claims(&c)).To(Succeed())
	g.Expect(c.PreferredUsername).To(Equal("alice"))
	g.Expect(c.Groups).To(Equal([]string{"devs", "ops"}))
	g.Expect(iss.JWKSRequests()).To(Equal(int64(1)))

	// Known kid: served from go-oidc's cache, no refetch.
	_, err = v.Verify(t.Context(), iss.Sign(iss.Claims(testAudience, "bob", nil, time.Hour)))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(iss.JWKSRequests()).To(Equal(int64(1)))
	g.Expect(iss.DiscoveryRequests()).To(Equal(int64(1)))
}

func TestClaimsAreCheckedByVerifier(t *testing.T) {
	g := NewWithT(t)
	iss := NewIssuer(t)
	v := newProvider(t, g, iss).Verifier(&oidc.Config{ClientID: testAudience})

	// Wrong audience.
	_, err := v.Verify(t.Context(), iss.Sign(iss.Claims("someone-else", "alice", nil, time.Hour)))
	g.Expect(err).To(MatchError(ContainSubstring("expected audience")))

	// Expired (negative ttl).
	_, err = v.Verify(t.Context(), iss.Sign(iss.Claims(testAudience, "alice", nil, -time.Minute)))
	var expired *oidc.TokenExpiredError
	g.Expect(errors.As(err, &expired)).To(BeTrue(), "got %v", err)

	// Foreign issuer claim, valid signature.
	c := iss.Claims(testAudience, "alice", nil, time.Hour)
	c["iss"] = "https://evil.example.com"
	_, err = v.Verify(t.Context(), iss.Sign(c))
	g.Expect(err).To(MatchError(ContainSubstring("issued by a different provider")))

	// Nil groups are encoded as [] and Claims returns fresh maps.
	c1 := iss.Claims(testAudience, "alice", nil, time.Hour)
	g.Expect(c1["groups"]).To(Equal([]string{}))
	c1["sub"] = "changed"
	g.Expect(iss.Claims(testAudience, "alice", nil, time.Hour)["sub"]).To(Equal("sub-alice"))
	g.Expect(c1["iat"]).To(Equal(c1["nbf"]))
}

func TestUnknownKidRefused(t *testing.T) {
	g := NewWithT(t)
	iss := NewIssuer(t)
	v := newProvider(t, g, iss).Verifier(&oidc.Config{ClientID: testAudience})

	_, err := v.Verify(t.Context(), iss.Sign(iss.Claims(testAudience, "alice", nil, time.Hour)))
	g.Expect(err).NotTo(HaveOccurred())
	before := iss.JWKSRequests()

	bad := iss.SignWithUnpublishedKey(iss.Claims(testAudience, "mallory", nil, time.Hour))
	g.Expect(tokenHeader(g, bad).KeyID).NotTo(Equal(iss.CurrentKeyID()))
	_, err = v.Verify(t.Context(), bad)
	g.Expect(err).To(MatchError(ContainSubstring("failed to verify signature")))
	// go-oidc refetches the JWKS on an unknown kid before refusing (polled:
	// a Verify right after a fetch may join that completed fetch instead).
	g.Eventually(func() int64 {
		_, err := v.Verify(t.Context(), bad)
		g.Expect(err).To(HaveOccurred())
		return iss.JWKSRequests()
	}).WithTimeout(time.Second).WithPolling(5 * time.Millisecond).Should(BeNumerically(">", before))

	// The unpublished key is stable and stays unpublished after a rotation.
	iss.RotateKey()
	bad2 := iss.SignWithUnpublishedKey(iss.Claims(testAudience, "mallory", nil, time.Hour))
	g.Expect(tokenHeader(g, bad2).KeyID).To(Equal(tokenHeader(g, bad).KeyID))
	_, err = v.Verify(t.Context(), bad2)
	g.Expect(err).To(HaveOccurred())

	// The unpublished kid never appears in the JWKS.
	var jwks jose.JSONWebKeySet
	getJSON(t, g, iss.JWKSURL(), &jwks)
	for _, k := range jwks.Keys {
		g.Expect(k.KeyID).NotTo(Equal(tokenHeader(g, bad).KeyID))
	}
}

func TestRotateKey(t *testing.T) {
	g := NewWithT(t)
	iss := NewIssuer(t)
	v := newProvider(t, g, iss).Verifier(&oidc.Config{ClientID: testAudience})

	oldKid := iss.CurrentKeyID()
	oldToken := iss.Sign(iss.Claims(testAudience, "alice", nil, time.Hour))
	_, err := v.Verify(t.Context(), oldToken)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(iss.JWKSRequests()).To(Equal(int64(1)))

	iss.RotateKey()
	newKid := iss.CurrentKeyID()
	g.Expect(newKid).NotTo(Equal(oldKid))

	var jwks jose.JSONWebKeySet
	getJSON(t, g, iss.JWKSURL(), &jwks)
	g.Expect(jwks.Keys).To(HaveLen(2))
	g.Expect(jwks.Keys[0].KeyID).To(Equal(newKid))
	g.Expect(jwks.Keys[1].KeyID).To(Equal(oldKid))
	for _, k := range jwks.Keys {
		g.Expect(k.IsPublic()).To(BeTrue(), "JWKS must never contain private keys")
		g.Expect(k.Algorithm).To(Equal("RS256"))
		g.Expect(k.Use).To(Equal("sig"))
	}
	afterDirect := iss.JWKSRequests() // == 2 (our direct GET)

	newToken := iss.Sign(iss.Claims(testAudience, "alice", nil, time.Hour))
	g.Expect(tokenHeader(g, newToken).KeyID).To(Equal(newKid))
	eventuallyVerify(g, t.Context(), v, newToken).Should(Succeed(), "go-oidc must refetch the JWKS on an unknown kid")
	g.Expect(iss.JWKSRequests()).To(BeNumerically(">", afterDirect))

	// Old token still valid while its key is published.
	_, err = v.Verify(t.Context(), oldToken)
	g.Expect(err).NotTo(HaveOccurred())

	iss.DropOldKeys()
	getJSON(t, g, iss.JWKSURL(), &jwks)
	g.Expect(jwks.Keys).To(HaveLen(1))
	g.Expect(jwks.Keys[0].KeyID).To(Equal(newKid))

	// A fresh provider (empty key cache) refuses the old token.
	fresh := newProvider(t, g, iss).Verifier(&oidc.Config{ClientID: testAudience})
	_, err = fresh.Verify(t.Context(), oldToken)
	g.Expect(err).To(MatchError(ContainSubstring("failed to verify signature")))
	_, err = fresh.Verify(t.Context(), newToken)
	g.Expect(err).NotTo(HaveOccurred())

	// go-oidc behaviour worth knowing: the existing verifier still has the
	// dropped key cached and keeps accepting the old token until something
	// (an unknown kid) triggers a refetch.
	_, err = v.Verify(t.Context(), oldToken)
	g.Expect(err).NotTo(HaveOccurred())
	_, _ = v.Verify(t.Context(), iss.SignWithUnpublishedKey(iss.Claims(testAudience, "x", nil, time.Hour)))
	eventuallyVerify(g, t.Context(), v, oldToken).Should(MatchError(ContainSubstring("failed to verify signature")))
}

func TestSetDown(t *testing.T) {
	g := NewWithT(t)
	iss := NewIssuer(t)

	// Provider discovered while up; JWKS not fetched yet.
	v := newProvider(t, g, iss).Verifier(&oidc.Config{ClientID: testAudience})
	token := iss.Sign(iss.Claims(testAudience, "alice", nil, time.Hour))

	iss.SetDown(true)
	_, err := oidc.NewProvider(clientCtx(t), iss.URL())
	g.Expect(err).To(MatchError(ContainSubstring("503")))
	g.Expect(iss.DiscoveryRequests()).To(Equal(int64(2)))

	_, err = v.Verify(t.Context(), token)
	g.Expect(err).To(MatchError(ContainSubstring("503")))
	g.Expect(iss.JWKSRequests()).To(Equal(int64(1)))

	resp, err := http.Get(iss.URL() + "/anything")
	g.Expect(err).NotTo(HaveOccurred())
	resp.Body.Close()
	g.Expect(resp.StatusCode).To(Equal(http.StatusServiceUnavailable))

	iss.SetDown(false)
	p := newProvider(t, g, iss)
	_, err = p.Verifier(&oidc.Config{ClientID: testAudience}).Verify(t.Context(), token)
	g.Expect(err).NotTo(HaveOccurred())
	eventuallyVerify(g, t.Context(), v, token).Should(Succeed(), "the failed fetch is not cached by go-oidc")
}

func TestWithPath(t *testing.T) {
	g := NewWithT(t)
	iss := NewIssuer(t, WithPath("realms/test/"))
	g.Expect(iss.URL()).To(MatchRegexp(`^http://127\.0\.0\.1:\d+/realms/test$`))

	p := newProvider(t, g, iss)
	_, err := p.Verifier(&oidc.Config{ClientID: testAudience}).
		Verify(t.Context(), iss.Sign(iss.Claims(testAudience, "alice", nil, time.Hour)))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(iss.JWKSURL()).To(HavePrefix(iss.URL() + "/"))

	// Discovery is only served under the path.
	root := strings.TrimSuffix(iss.URL(), "/realms/test")
	_, err = oidc.NewProvider(clientCtx(t), root)
	g.Expect(err).To(MatchError(ContainSubstring("404")))
}

func TestAlgorithms(t *testing.T) {
	for _, alg := range []jose.SignatureAlgorithm{
		jose.ES256, jose.ES384, jose.ES512, jose.PS256, jose.RS512, jose.EdDSA,
	} {
		t.Run(string(alg), func(t *testing.T) {
			g := NewWithT(t)
			iss := NewIssuer(t, WithAlgorithm(alg))
			g.Expect(iss.Algorithm()).To(Equal(alg))
			p := newProvider(t, g, iss)

			var meta struct {
				Algs []string `json:"id_token_signing_alg_values_supported"`
			}
			g.Expect(p.Claims(&meta)).To(Succeed())
			g.Expect(meta.Algs).To(Equal([]string{string(alg)}))

			token := iss.Sign(iss.Claims(testAudience, "alice", nil, time.Hour))
			g.Expect(tokenHeader(g, token).Algorithm).To(Equal(string(alg)))

			// Algorithms taken from discovery.
			idt, err := p.Verifier(&oidc.Config{ClientID: testAudience}).Verify(t.Context(), token)
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(idt.Subject).To(Equal("sub-alice"))

			// A verifier restricted to RS256 refuses it.
			_, err = p.Verifier(&oidc.Config{ClientID: testAudience, SupportedSigningAlgs: []string{oidc.RS256}}).
				Verify(t.Context(), token)
			g.Expect(err).To(HaveOccurred())

			// Rotation works with this algorithm too.
			iss.RotateKey()
			eventuallyVerify(g, t.Context(), p.Verifier(&oidc.Config{ClientID: testAudience}),
				iss.Sign(iss.Claims(testAudience, "alice", nil, time.Hour))).Should(Succeed())

			_, err = p.Verifier(&oidc.Config{ClientID: testAudience}).
				Verify(t.Context(), iss.SignWithUnpublishedKey(iss.Claims(testAudience, "alice", nil, time.Hour)))
			g.Expect(err).To(HaveOccurred())
		})
	}
}

func TestUnsupportedAlgorithm(t *testing.T) {
	g := NewWithT(t)
	iss, err := StartIssuer(WithAlgorithm(jose.HS256))
	g.Expect(err).To(MatchError(ContainSubstring("unsupported signing algorithm")))
	g.Expect(iss).To(BeNil())
}

func TestIssuerOverrideMismatch(t *testing.T) {
	g := NewWithT(t)
	const other = "https://login.example.com/tenant/v2.0"
	iss := NewIssuer(t, WithIssuerOverride(other))
	g.Expect(iss.DiscoveryIssuer()).To(Equal(other))

	_, err := oidc.NewProvider(clientCtx(t), iss.URL())
	var mismatch *oidc.IssuerMismatchError
	g.Expect(errors.As(err, &mismatch)).To(BeTrue(), "got %v", err)
	g.Expect(mismatch.Provided).To(Equal(iss.URL()))
	g.Expect(mismatch.Discovered).To(Equal(other))
}

// TestIssuerOverrideEntraStyle emulates Microsoft Entra ID: discovery is fetched
// from one URL and advertises a v2 issuer, while tokens carry a v1 issuer.
func TestIssuerOverrideEntraStyle(t *testing.T) {
	g := NewWithT(t)
	iss := NewIssuer(t, WithPath("/tenant-id/v2.0"), WithIssuerOverride(IssuerURLPlaceholder+"/"))
	g.Expect(iss.DiscoveryIssuer()).To(Equal(iss.URL() + "/"))

	// Trailing-slash difference is already a mismatch.
	_, err := oidc.NewProvider(clientCtx(t), iss.URL())
	g.Expect(err).To(BeAssignableToTypeOf(&oidc.IssuerMismatchError{}))

	const v1 = "https://sts.windows.net/tenant-id/"
	p, err := oidc.NewProvider(oidc.InsecureIssuerURLContext(clientCtx(t), v1), iss.URL())
	g.Expect(err).NotTo(HaveOccurred())
	v := p.Verifier(&oidc.Config{ClientID: testAudience})

	c := iss.Claims(testAudience, "alice", nil, time.Hour)
	c["iss"] = v1
	_, err = v.Verify(t.Context(), iss.Sign(c))
	g.Expect(err).NotTo(HaveOccurred())

	_, err = v.Verify(t.Context(), iss.Sign(iss.Claims(testAudience, "alice", nil, time.Hour)))
	g.Expect(err).To(MatchError(ContainSubstring("issued by a different provider")))
}

func TestHTTPDetails(t *testing.T) {
	g := NewWithT(t)

	plain := NewIssuer(t, WithAlgorithm(jose.ES256))
	var jwks jose.JSONWebKeySet
	resp := getJSON(t, g, plain.JWKSURL(), &jwks)
	g.Expect(resp.Header.Get("Cache-Control")).To(BeEmpty())
	g.Expect(resp.Header.Get("Content-Type")).To(Equal("application/json"))
	g.Expect(plain.JWKSRequests()).To(Equal(int64(1)))

	iss := NewIssuer(t, WithAlgorithm(jose.ES256), WithJWKSCacheControl("public, max-age=300"))
	resp = getJSON(t, g, iss.JWKSURL(), &jwks)
	g.Expect(resp.Header.Get("Cache-Control")).To(Equal("public, max-age=300"))

	var disc map[string]any
	getJSON(t, g, iss.URL()+DiscoveryPath, &disc)
	g.Expect(disc).To(HaveKeyWithValue("issuer", iss.URL()))
	g.Expect(disc).To(HaveKeyWithValue("jwks_uri", iss.JWKSURL()))
	g.Expect(disc).To(HaveKey("authorization_endpoint"))
	g.Expect(disc).To(HaveKey("token_endpoint"))
	g.Expect(iss.DiscoveryRequests()).To(Equal(int64(1)))

	r, err := http.Post(iss.JWKSURL(), "application/json", nil)
	g.Expect(err).NotTo(HaveOccurred())
	r.Body.Close()
	g.Expect(r.StatusCode).To(Equal(http.StatusMethodNotAllowed))

	r, err = http.Get(iss.URL() + "/nope")
	g.Expect(err).NotTo(HaveOccurred())
	r.Body.Close()
	g.Expect(r.StatusCode).To(Equal(http.StatusNotFound))

	iss.Close()
	iss.Close() // idempotent
	_, err = http.Get(iss.URL() + DiscoveryPath)
	g.Expect(err).To(HaveOccurred())
}

func TestStartIssuerWithoutTB(t *testing.T) {
	g := NewWithT(t)
	iss, err := StartIssuer()
	g.Expect(err).NotTo(HaveOccurred())
	defer iss.Close()
	_, err = newProvider(t, g, iss).Verifier(&oidc.Config{ClientID: testAudience}).
		Verify(t.Context(), iss.Sign(iss.Claims(testAudience, "alice", nil, time.Hour)))
	g.Expect(err).NotTo(HaveOccurred())
}

// TestConcurrentRotation verifies tokens from many goroutines while keys are
// rotated; run with -race.
func TestConcurrentRotation(t *testing.T) {
	g := NewWithT(t)
	iss := NewIssuer(t, WithAlgorithm(jose.ES256)) // fast keygen
	v := newProvider(t, g, iss).Verifier(&oidc.Config{ClientID: testAudience})

	const workers, perWorker, rotations = 8, 25, 10
	var wg sync.WaitGroup
	var firstAttemptFailures atomic.Int64
	errs := make(chan error, workers*perWorker)
	stop := make(chan struct{})
	for range workers {
		wg.Go(func() {
			for range perWorker {
				tok := iss.Sign(iss.Claims(testAudience, "alice", []string{"g"}, time.Hour))
				if _, err := v.Verify(t.Context(), tok); err == nil {
					continue
				}
				// go-oidc deduplicates concurrent JWKS fetches: a Verify that
				// meets an unknown kid may join a fetch that was sent before
				// the rotation published that kid (or one that has just
				// completed), and fail. The issuer itself must still be
				// consistent: the kid is in the JWKS served now and its key
				// verifies the token; and go-oidc recovers on a later fetch.
				firstAttemptFailures.Add(1)
				if err := verifyAgainstServedJWKS(iss, tok); err != nil {
					errs <- err
					continue
				}
				var err error
				for range 50 {
					if _, err = v.Verify(t.Context(), tok); err == nil {
						break
					}
					time.Sleep(5 * time.Millisecond)
				}
				if err != nil {
					errs <- err
				}
			}
		})
	}
	var rot sync.WaitGroup
	rot.Go(func() {
		for range rotations {
			select {
			case <-stop:
				return
			default:
			}
			iss.RotateKey()
			time.Sleep(time.Millisecond)
		}
	})
	wg.Wait()
	close(stop)
	rot.Wait()
	close(errs)
	for err := range errs {
		g.Expect(err).NotTo(HaveOccurred())
	}
	g.Expect(iss.JWKSRequests()).To(BeNumerically(">=", 1))
	t.Logf("JWKS requests: %d, discovery requests: %d, first-attempt go-oidc failures (stale in-flight JWKS fetch): %d",
		iss.JWKSRequests(), iss.DiscoveryRequests(), firstAttemptFailures.Load())
}

// verifyAgainstServedJWKS fetches the JWKS from the issuer and verifies the
// token's signature with the published key of the same kid, without go-oidc.
func verifyAgainstServedJWKS(iss *Issuer, token string) error {
	jws, err := jose.ParseSignedCompact(token, []jose.SignatureAlgorithm{iss.Algorithm()})
	if err != nil {
		return err
	}
	resp, err := http.Get(iss.JWKSURL())
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var set jose.JSONWebKeySet
	if err := json.NewDecoder(resp.Body).Decode(&set); err != nil {
		return err
	}
	kid := jws.Signatures[0].Header.KeyID
	keys := set.Key(kid)
	if len(keys) != 1 {
		return fmt.Errorf("kid %q published %d times in the JWKS", kid, len(keys))
	}
	_, err = jws.Verify(keys[0])
	return err
}
