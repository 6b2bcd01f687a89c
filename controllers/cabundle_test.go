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
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	authv1alpha1 "github.com/registryauth/registry-auth-operator/api/v1alpha1"
	"github.com/registryauth/registry-auth-operator/authserver/authn"
	"github.com/registryauth/registry-auth-operator/authserver/authtest"
	"github.com/registryauth/registry-auth-operator/authserver/check"
)

// A private IdP: an https issuer whose certificate no system root trusts.
// Its CA bundle comes from a ConfigMap (no opt-in label: public data) or
// an opted-in Secret; a bundle that does not trust the issuer, or that
// cannot be read, leaves the issuer unused and says so in status.
func TestIssuerCABundle(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	ns := newNamespace(t)
	iss := authtest.NewIssuer(t, authtest.WithTLS())
	otherCA := selfSignedCA(t) // a CA that does not trust the issuer
	g.Expect(otherCA).NotTo(Equal(iss.CAPEM()))
	g.Expect(iss.URL()).To(HavePrefix("https://127.0.0.1:"))

	const aud = "https://registry.test"
	createSecret(t, ns, "api-token", randomToken(t))
	caConfigMap := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "issuer-ca"},
		Data: map[string]string{"ca.crt": string(iss.CAPEM())}}
	g.Expect(adminClient.Create(ctx, caConfigMap)).To(Succeed())
	withIssuer := func(ref *authv1alpha1.CABundleRef) func(*authv1alpha1.RegistryAuthPolicy) {
		return func(p *authv1alpha1.RegistryAuthPolicy) {
			p.Spec.GroupScopes = map[string][]string{"dev": {"mcp-servers-unrestricted/read"}}
			p.Spec.Issuers = []authv1alpha1.IssuerSpec{{Name: "private", Preset: "generic", IssuerURL: iss.URL(), Audiences: []string{aud}, CABundleRef: ref}}
		}
	}
	cmRef := func(name, key string) *authv1alpha1.CABundleRef {
		return &authv1alpha1.CABundleRef{ConfigMapKeyRef: &authv1alpha1.CABundleKeySelector{Name: name, Key: key}}
	}
	secretRef := func(name string) *authv1alpha1.CABundleRef {
		return &authv1alpha1.CABundleRef{SecretKeyRef: &authv1alpha1.CABundleKeySelector{Name: name, Key: "ca.crt"}}
	}
	createPolicy(t, ns, "no-ca", "api-token", withIssuer(nil))
	createPolicy(t, ns, "ca", "api-token", withIssuer(cmRef("issuer-ca", "ca.crt")))
	createPolicy(t, ns, "missing", "api-token", withIssuer(cmRef("no-such-ca", "ca.crt")))
	createPolicy(t, ns, "no-key", "api-token", withIssuer(cmRef("issuer-ca", "bundle.pem")))
	g.Expect(adminClient.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "not-pem"},
		Data: map[string]string{"ca.crt": "not a certificate", "empty": ""}})).To(Succeed())
	createPolicy(t, ns, "not-pem", "api-token", withIssuer(cmRef("not-pem", "ca.crt")))
	// Empty is no bundle, not the system roots.
	createPolicy(t, ns, "empty", "api-token", withIssuer(cmRef("not-pem", "empty")))
	// A Secret follows the credential opt-in rule.
	g.Expect(adminClient.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "ca-opted-in", Labels: optedIn()},
		Data: map[string][]byte{"ca.crt": iss.CAPEM()}})).To(Succeed())
	g.Expect(adminClient.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "ca-not-opted-in"},
		Data: map[string][]byte{"ca.crt": iss.CAPEM()}})).To(Succeed())
	createPolicy(t, ns, "secret-ca", "api-token", withIssuer(secretRef("ca-opted-in")))
	createPolicy(t, ns, "secret-not-opted-in", "api-token", withIssuer(secretRef("ca-not-opted-in")))

	m := startManager(t, managerOpts{})
	tok := iss.Sign(iss.Claims(aud, "alice", []string{"dev"}, time.Hour))
	notReady := func(name, reason, field string) {
		t.Helper()
		g.Eventually(func(g Gomega) {
			c := readyCondition(g, ns, name)
			g.Expect(c.Status).To(Equal(metav1.ConditionFalse))
			g.Expect(c.Reason).To(Equal(reason), c.Message)
			g.Expect(c.Message).To(ContainSubstring(field))
			g.Expect(c.Message).NotTo(ContainSubstring("BEGIN CERTIFICATE"))
		}, 20*time.Second, 100*time.Millisecond).Should(Succeed())
		d := m.decide(ns, name, "/api/servers", tok)
		g.Expect(d.Allowed()).To(BeFalse(), "%s: %s", name, d.Reason)
	}
	allowed := func(name string) {
		t.Helper()
		g.Eventually(func(g Gomega) {
			c := readyCondition(g, ns, name)
			g.Expect(c.Status).To(Equal(metav1.ConditionTrue), c.Message)
			g.Expect(m.decide(ns, name, "/api/servers", tok).Reason).To(Equal(check.ReasonAllowedOIDC))
		}, 20*time.Second, 100*time.Millisecond).Should(Succeed())
	}

	// Without a bundle the system roots do not trust it: https on loopback
	// is allowed, but discovery fails.
	notReady("no-ca", authn.ProblemOIDCDiscoveryFailed, "spec.issuers[private]")
	allowed("ca")
	allowed("secret-ca")
	notReady("missing", authn.ProblemInvalidSpec, "spec.issuers[private].caBundleRef")
	notReady("no-key", authn.ProblemInvalidSpec, "spec.issuers[private].caBundleRef")
	notReady("not-pem", authn.ProblemInvalidSpec, "spec.issuers[private].caBundleRef")
	notReady("empty", authn.ProblemInvalidSpec, "spec.issuers[private].caBundleRef")
	notReady("secret-not-opted-in", authn.ProblemSecretNotOptedIn, "spec.issuers[private].caBundleRef")

	// The bundle changes to a CA that does not trust the issuer: the
	// issuer is discovered again with it, fails, and its tokens are
	// refused.
	caConfigMap.Data["ca.crt"] = string(otherCA)
	g.Expect(adminClient.Update(ctx, caConfigMap)).To(Succeed())
	g.Eventually(func(g Gomega) {
		g.Expect(m.decide(ns, "ca", "/api/servers", tok).Allowed()).To(BeFalse())
	}, 20*time.Second, 100*time.Millisecond).Should(Succeed())
	notReady("ca", authn.ProblemOIDCDiscoveryFailed, "spec.issuers[private]")

	// And back: the right bundle again.
	caConfigMap.Data["ca.crt"] = string(iss.CAPEM())
	g.Expect(adminClient.Update(ctx, caConfigMap)).To(Succeed())
	allowed("ca")

	// The ConfigMap deleted: refused, and status says which field.
	g.Expect(adminClient.Delete(ctx, caConfigMap)).To(Succeed())
	notReady("ca", authn.ProblemInvalidSpec, "spec.issuers[private].caBundleRef")

	// Created at last: the ConfigMap watch brings the policy back.
	g.Expect(adminClient.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "no-such-ca"},
		Data: map[string]string{"ca.crt": string(iss.CAPEM())}})).To(Succeed())
	allowed("missing")
}

// spec.oidc takes a CA bundle too.
func TestOIDCCABundle(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	ns := newNamespace(t)
	iss := authtest.NewIssuer(t, authtest.WithTLS())
	createSecret(t, ns, "api-token", randomToken(t))
	g.Expect(adminClient.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "idp-ca"},
		Data: map[string]string{"ca.crt": string(iss.CAPEM())}})).To(Succeed())
	createPolicy(t, ns, "oidc", "api-token", func(p *authv1alpha1.RegistryAuthPolicy) {
		p.Spec.GroupScopes = map[string][]string{"dev": {"mcp-servers-unrestricted/read"}}
		p.Spec.OIDC = &authv1alpha1.OIDCSpec{IssuerURL: iss.URL(), Audiences: []string{"registry"}, Preset: "generic",
			CABundleRef: &authv1alpha1.CABundleRef{ConfigMapKeyRef: &authv1alpha1.CABundleKeySelector{Name: "idp-ca", Key: "ca.crt"}}}
	})
	m := startManager(t, managerOpts{})
	tok := iss.Sign(iss.Claims("registry", "alice", []string{"dev"}, time.Hour))
	g.Eventually(func(g Gomega) {
		c := readyCondition(g, ns, "oidc")
		g.Expect(c.Status).To(Equal(metav1.ConditionTrue), c.Message)
		g.Expect(m.decide(ns, "oidc", "/api/servers", tok).Reason).To(Equal(check.ReasonAllowedOIDC))
	}, 20*time.Second, 100*time.Millisecond).Should(Succeed())
}

// selfSignedCA is the PEM certificate of a fresh CA (httptest's TLS servers
// all share one certificate, so another authtest issuer is no other CA).
func selfSignedCA(t *testing.T) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "other CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}
