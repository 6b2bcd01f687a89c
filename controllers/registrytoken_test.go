/*
Copyright 2026 The registry-auth-operator Authors.

Licensed under the Apache License, Version 2.0 (the "License");
you may not use this file except in compliance with the License.
You may obtain a copy of the License at

    http://www.apache.org/licenses/LICENSE-2.0

Unless required by applicable law or agreed to in writing, software
distributed under the License is distributed on an "AS IS" BASIS,
WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
See the License for the specific language governing permissions and
limitations under the License.
*/

package controllers

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	authv1alpha1 "github.com/registryauth/registry-auth-operator/api/v1alpha1"
	"github.com/registryauth/registry-auth-operator/authserver"
	"github.com/registryauth/registry-auth-operator/authserver/authn"
	"github.com/registryauth/registry-auth-operator/authserver/authtest"
	"github.com/registryauth/registry-auth-operator/authserver/check"
	"github.com/registryauth/registry-auth-operator/authserver/hoptoken"
)

// The registry's hop token in operator mode: spec.registryToken with the
// Secrets it names, hot-reloaded like every credential. Tokens are checked
// with authtest.RegistryVerifier, which shares no code with the minting; the
// JWKS is fetched from the auth handler, as a registry would.

// validate asks the manager's store through the auth handler, as nginx
// does, asking for a registry token.
func (m *manager) validate(ns, name, path, token string) *http.Response {
	r := httptest.NewRequest(http.MethodGet, "/validate/"+ns+"/"+name, nil)
	r.Header.Set("X-Original-URL", "http://registry.test"+path)
	r.Header.Set("Authorization", "Bearer "+token)
	r.Header.Set("X-Registry-Api-Auth", "1")
	w := httptest.NewRecorder()
	authserver.NewHandler(m.store, authserver.HandlerOptions{}).ServeHTTP(w, r)
	return w.Result()
}

// registryToken is the hop token of an allowed static-token request, "" when
// the answer had none.
func (m *manager) registryToken(ns, name, token string) string {
	resp := m.validate(ns, name, "/api/servers", token)
	defer resp.Body.Close()
	return resp.Header.Get(hoptoken.Header)
}

// jwks fetches the policy's key set from the auth handler.
func (m *manager) jwks(ns, name string) ([]byte, error) {
	r := httptest.NewRequest(http.MethodGet, "/.well-known/internal-jwks.json/"+ns+"/"+name, nil)
	w := httptest.NewRecorder()
	authserver.NewHandler(m.store, authserver.HandlerOptions{}).ServeHTTP(w, r)
	resp := w.Result()
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("JWKS: %d %s", resp.StatusCode, body)
	}
	return body, nil
}

func tokenKid(tok string) string {
	h, err := base64.RawURLEncoding.DecodeString(strings.Split(tok, ".")[0])
	if err != nil {
		return ""
	}
	var header struct{ Kid string }
	_ = json.Unmarshal(h, &header)
	return header.Kid
}

func newSigningKey(t *testing.T) (pemBytes []byte, kid string) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalECPrivateKey(k)
	pemBytes = pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der})
	kid, err = hoptoken.SigningKeyID(pemBytes)
	if err != nil {
		t.Fatal(err)
	}
	return pemBytes, kid
}

// applySigningKey creates or replaces a Secret holding key.pem with kubectl,
// the way people do: a manifest from `create --dry-run`, then `apply`.
func applySigningKey(t *testing.T, ns, name string, pemBytes []byte) {
	t.Helper()
	file := filepath.Join(t.TempDir(), "key.pem")
	if err := os.WriteFile(file, pemBytes, 0o600); err != nil {
		t.Fatal(err)
	}
	manifest := kubectl(t, "", nil, "create", "secret", "generic", name, "-n", ns, "--from-file=key.pem="+file, "--dry-run=client", "-o", "yaml")
	kubectl(t, optInManifest(manifest), nil, "apply", "-f", "-")
}

func TestRegistryTokenHS256(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	tok := randomToken(t)
	createSecret(t, ns, "api-token", tok)
	// The registry's SECRET_KEY as `kubectl create secret --from-file`
	// stores it: with the file's trailing newline. The registry's
	// Deployment passes the same bytes as its SECRET_KEY.
	secretKey := randomToken(t) + "\n"
	g.Expect(adminClient.Create(context.Background(), &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "registry-secret", Labels: optedIn()},
		Data:       map[string][]byte{"SECRET_KEY": []byte(secretKey)},
	})).To(Succeed())
	createPolicy(t, ns, "registry", "api-token", func(p *authv1alpha1.RegistryAuthPolicy) {
		p.Spec.RegistryToken = &authv1alpha1.RegistryTokenSpec{
			SecretKeyRef: &authv1alpha1.SecretKeySelector{Name: "registry-secret", Key: "SECRET_KEY"},
		}
	})
	m := startManager(t, managerOpts{})
	verifier := &authtest.RegistryVerifier{SecretKey: []byte(secretKey)}
	g.Eventually(func() error {
		t := m.registryToken(ns, "registry", tok)
		_, err := verifier.Verify(t, time.Now())
		return err
	}, 10*time.Second, 20*time.Millisecond).Should(Succeed(), "a token the registry verifies with its raw SECRET_KEY")
	claims, err := verifier.Verify(m.registryToken(ns, "registry", tok), time.Now())
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(claims).To(HaveKeyWithValue("sub", "network-user"))
	g.Expect(claims).To(HaveKeyWithValue("auth_method", "network-trusted"))
	exp, _ := claims["exp"].(json.Number).Int64()
	iat, _ := claims["iat"].(json.Number).Int64()
	g.Expect(exp-iat).To(Equal(int64(30)), "the API server's default ttl")

	g.Eventually(func(g Gomega) {
		st := getPolicy(g, ns, "registry").Status
		g.Expect(st.RegistryToken).NotTo(BeNil())
		g.Expect(st.RegistryToken.Algorithm).To(Equal("HS256"))
		g.Expect(st.RegistryToken.KeyID).To(Equal(fp(secretKey)), "the fingerprint of the key as stored")
		g.Expect(readyCondition(g, ns, "registry").Message).To(ContainSubstring("registry token HS256 " + fp(secretKey)))
	}, 10*time.Second, 50*time.Millisecond).Should(Succeed())

	// A weak key: the problem is the policy's condition and a warning
	// event; a request that asks for a token is refused, one that does
	// not is answered as before.
	var s corev1.Secret
	g.Expect(adminClient.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: "registry-secret"}, &s)).To(Succeed())
	s.Data["SECRET_KEY"] = []byte("short")
	g.Expect(adminClient.Update(context.Background(), &s)).To(Succeed())
	g.Eventually(func() int {
		resp := m.validate(ns, "registry", "/api/servers", tok)
		defer resp.Body.Close()
		return resp.StatusCode
	}, inForce, 5*time.Millisecond).Should(Equal(http.StatusForbidden))
	resp := m.validate(ns, "registry", "/api/servers", tok)
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	g.Expect(resp.Header.Get("X-Auth-Reason")).To(Equal(string(check.ReasonRegistryTokenUnavailable)))
	g.Expect(resp.Header.Get(hoptoken.Header)).To(BeEmpty())
	g.Expect(m.allows(ns, "registry", tok)).To(BeTrue(), "the decision itself still allows")
	g.Eventually(func(g Gomega) {
		c := readyCondition(g, ns, "registry")
		g.Expect(c.Status).To(Equal(metav1.ConditionFalse))
		g.Expect(c.Reason).To(Equal(authn.ProblemTokenTooWeak))
		g.Expect(c.Message).To(ContainSubstring(hoptoken.FieldSecretKey))
		g.Expect(getPolicy(g, ns, "registry").Status.RegistryToken).To(BeNil())
		g.Expect(hasEvent(events(g, ns, "registry"), authn.ProblemTokenTooWeak, hoptoken.FieldSecretKey)).To(BeTrue())
	}, 10*time.Second, 50*time.Millisecond).Should(Succeed())
}

// The ES256 signing key rotated with kubectl: tokens are signed with the new
// key within a second; the replaced public key stays in the policy's JWKS
// for jwksOverlap (across a restart of the operator: the state Secret keeps
// it), so tokens it signed still verify; lowering the overlap to 0s ends it.
func TestRegistryTokenSigningKeyRotation(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	tok := randomToken(t)
	createSecret(t, ns, "api-token", tok)
	pemA, kidA := newSigningKey(t)
	pemB, kidB := newSigningKey(t)
	applySigningKey(t, ns, "signing-key", pemA)
	const overlap = 60 * time.Second
	createPolicy(t, ns, "registry", "api-token", func(p *authv1alpha1.RegistryAuthPolicy) {
		p.Spec.RegistryToken = &authv1alpha1.RegistryTokenSpec{
			SigningKeyRef: &authv1alpha1.SecretKeySelector{Name: "signing-key", Key: "key.pem"},
			JWKSOverlap:   &metav1.Duration{Duration: overlap},
			TTL:           &metav1.Duration{Duration: 20 * time.Second},
		}
	})
	m := startManager(t, managerOpts{leaderElect: true})
	verifier := func(m *manager) *authtest.RegistryVerifier {
		return &authtest.RegistryVerifier{RejectHS256: true, JWKS: func() ([]byte, error) { return m.jwks(ns, "registry") }}
	}
	var tokA string
	g.Eventually(func() string { tokA = m.registryToken(ns, "registry", tok); return tokenKid(tokA) },
		15*time.Second, 20*time.Millisecond).Should(Equal(kidA))
	_, err := verifier(m).Verify(tokA, time.Now())
	g.Expect(err).NotTo(HaveOccurred())
	g.Eventually(func(g Gomega) {
		st := getPolicy(g, ns, "registry").Status.RegistryToken
		g.Expect(st).NotTo(BeNil())
		g.Expect(st.Algorithm).To(Equal("ES256"))
		g.Expect(st.KeyID).To(Equal(kidA))
		g.Expect(st.PreviousKeys).To(BeEmpty())
	}, 10*time.Second, 50*time.Millisecond).Should(Succeed())

	applySigningKey(t, ns, "signing-key", pemB)
	rotated := time.Now()
	g.Eventually(func() string { return tokenKid(m.registryToken(ns, "registry", tok)) },
		inForce, 5*time.Millisecond).Should(Equal(kidB), "tokens signed with the new key within %v", inForce)
	t.Logf("new signing key in force after %v", time.Since(rotated))
	keys, err := m.jwks(ns, "registry")
	g.Expect(err).NotTo(HaveOccurred())
	parsed, err := authtest.ParseRegistryJWKS(keys)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(parsed).To(HaveKey(kidA), "the replaced key stays published")
	g.Expect(parsed).To(HaveKey(kidB))
	_, err = verifier(m).Verify(tokA, time.Now())
	g.Expect(err).NotTo(HaveOccurred(), "a token in flight, signed with the replaced key")

	var expires time.Time
	g.Eventually(func(g Gomega) {
		st := getPolicy(g, ns, "registry").Status.RegistryToken
		g.Expect(st.KeyID).To(Equal(kidB))
		g.Expect(st.RotatedAt).NotTo(BeNil())
		g.Expect(st.PreviousKeys).To(HaveLen(1))
		g.Expect(st.PreviousKeys[0].KeyID).To(Equal(kidA))
		expires = st.PreviousKeys[0].ExpiresAt.Time
		g.Expect(hasEvent(events(g, ns, "registry"), EventSigningKeyRotated, kidA+" to "+kidB)).To(BeTrue())
	}, 10*time.Second, 50*time.Millisecond).Should(Succeed())
	g.Expect(expires).To(BeTemporally("~", rotated.Add(overlap), 3*time.Second))

	// The state Secret keeps public keys, never the private ones.
	var state corev1.Secret
	g.Eventually(func(g Gomega) {
		g.Expect(adminClient.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: stateSecretName("registry")}, &state)).To(Succeed())
		g.Expect(string(state.Data[stateSecretKey])).To(ContainSubstring(credSigningKey))
	}, 10*time.Second, 50*time.Millisecond).Should(Succeed())
	st := decodeState(state.Data[stateSecretKey])
	g.Expect(st.PublicKeys).To(HaveLen(2))
	for _, jwk := range st.PublicKeys {
		var k map[string]any
		g.Expect(json.Unmarshal(jwk, &k)).To(Succeed())
		g.Expect(k).NotTo(HaveKey("d"), "no private part")
	}
	for _, p := range [][]byte{pemA, pemB} {
		g.Expect(string(state.Data[stateSecretKey])).NotTo(ContainSubstring(strings.Split(string(p), "\n")[1]))
	}

	// A restart inside the overlap: the replaced key is still published.
	m.stop()
	m2 := startManager(t, managerOpts{leaderElect: true})
	g.Eventually(func() string { return tokenKid(m2.registryToken(ns, "registry", tok)) },
		15*time.Second, 20*time.Millisecond).Should(Equal(kidB))
	_, err = verifier(m2).Verify(tokA, time.Now())
	g.Expect(err).NotTo(HaveOccurred(), "after a restart, inside the overlap")

	// Ending the overlap withdraws the replaced key.
	p := getPolicy(g, ns, "registry")
	p.Spec.RegistryToken.JWKSOverlap = &metav1.Duration{}
	g.Expect(adminClient.Update(context.Background(), p)).To(Succeed())
	g.Eventually(func() (map[string]*ecdsa.PublicKey, error) {
		b, err := m2.jwks(ns, "registry")
		if err != nil {
			return nil, err
		}
		return authtest.ParseRegistryJWKS(b)
	}, inForce, 5*time.Millisecond).Should(And(HaveLen(1), HaveKey(kidB)))
	_, err = verifier(m2).Verify(tokA, time.Now())
	g.Expect(err).To(MatchError(authtest.ErrTokenInvalid))
	g.Eventually(func(g Gomega) {
		g.Expect(getPolicy(g, ns, "registry").Status.RegistryToken.PreviousKeys).To(BeEmpty())
	}, 10*time.Second, 50*time.Millisecond).Should(Succeed())

	// A value that does not parse: tokens are refused, the JWKS is empty,
	// the condition says why.
	applySigningKey(t, ns, "signing-key", []byte("not a key"))
	g.Eventually(func() int {
		resp := m2.validate(ns, "registry", "/api/servers", tok)
		defer resp.Body.Close()
		return resp.StatusCode
	}, inForce, 5*time.Millisecond).Should(Equal(http.StatusForbidden))
	b, err := m2.jwks(ns, "registry")
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(string(b)).To(MatchJSON(`{"keys":[]}`))
	g.Eventually(func(g Gomega) {
		c := readyCondition(g, ns, "registry")
		g.Expect(c.Reason).To(Equal(authv1alpha1.ReasonSigningKeyInvalid))
	}, 10*time.Second, 50*time.Millisecond).Should(Succeed())
}

// The JWKS of one policy never holds another's keys.
func TestRegistryTokenJWKSPerPolicy(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	tok := randomToken(t)
	createSecret(t, ns, "api-token", tok)
	kids := map[string]string{}
	for _, name := range []string{"team-a", "team-b"} {
		pemBytes, kid := newSigningKey(t)
		kids[name] = kid
		applySigningKey(t, ns, name+"-key", pemBytes)
		createPolicy(t, ns, name, "api-token", func(p *authv1alpha1.RegistryAuthPolicy) {
			p.Spec.RegistryToken = &authv1alpha1.RegistryTokenSpec{
				SigningKeyRef: &authv1alpha1.SecretKeySelector{Name: name + "-key", Key: "key.pem"},
				Mode:          authv1alpha1.RegistryTokenAlways,
			}
		})
	}
	m := startManager(t, managerOpts{})
	for name, kid := range kids {
		g.Eventually(func() (map[string]*ecdsa.PublicKey, error) {
			b, err := m.jwks(ns, name)
			if err != nil {
				return nil, err
			}
			return authtest.ParseRegistryJWKS(b)
		}, 10*time.Second, 20*time.Millisecond).Should(And(HaveLen(1), HaveKey(kid)), name)
	}
	// team-a's token does not verify with team-b's key set.
	tokA := m.registryToken(ns, "team-a", tok)
	_, err := (&authtest.RegistryVerifier{JWKS: func() ([]byte, error) { return m.jwks(ns, "team-b") }}).Verify(tokA, time.Now())
	g.Expect(err).To(MatchError(authtest.ErrTokenInvalid))
	_, err = (&authtest.RegistryVerifier{JWKS: func() ([]byte, error) { return m.jwks(ns, "team-a") }}).Verify(tokA, time.Now())
	g.Expect(err).NotTo(HaveOccurred())
	w := httptest.NewRecorder()
	authserver.NewHandler(m.store, authserver.HandlerOptions{}).ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/.well-known/internal-jwks.json", nil))
	g.Expect(w.Code).To(Equal(http.StatusNotFound), "no union of every policy's keys at the plain path")
}
