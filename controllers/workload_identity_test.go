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
	"slices"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"

	authv1alpha1 "github.com/registryauth/registry-auth-operator/api/v1alpha1"
	"github.com/registryauth/registry-auth-operator/authserver/authn"
	"github.com/registryauth/registry-auth-operator/authserver/check"
	"github.com/registryauth/registry-auth-operator/authserver/policy"
)

// decideAt asks the manager's store at a given time.
func (m *manager) decideAt(ns, name, path, token string, now time.Time) policy.Decision {
	req := &check.Request{
		Policy: ns + "/" + name,
		Scheme: "http", Host: "registry.test", Path: path,
		Method:        "GET",
		Authorization: []string{"Bearer " + token},
	}
	return policy.Decide(context.Background(), m.store.Load(), req, now)
}

// createToken asks the real API server for a ServiceAccount token
// (TokenRequest) with the built kubectl, as a CI user would.
func createToken(t *testing.T, ns, sa string, args ...string) string {
	t.Helper()
	return strings.TrimSpace(kubectl(t, "", nil, append([]string{"create", "token", sa, "-n", ns}, args...)...))
}

// This cluster's ServiceAccount tokens, end to end: the API server issues
// them (TokenRequest through kubectl create token), the operator discovers
// the cluster's issuer through the API server with its own credentials (the
// install's issuer discovery binding), and the store decides.
func TestKubernetesServiceAccountTokens(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	ns := newNamespace(t)
	other := newNamespace(t)
	for _, n := range []string{ns, other} {
		g.Expect(adminClient.Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: n, Name: "registry-sync"}})).To(Succeed())
	}
	const aud = "https://registry.test"
	createSecret(t, ns, "api-token", randomToken(t))
	createPolicy(t, ns, "ci", "api-token", func(p *authv1alpha1.RegistryAuthPolicy) {
		p.Spec.GroupScopes = map[string][]string{"ci": {"mcp-servers-unrestricted/read"}}
		p.Spec.Issuers = []authv1alpha1.IssuerSpec{{
			Name:         "cluster-ci",
			Preset:       authv1alpha1.PresetKubernetes,
			Audiences:    []string{aud},
			RegistryOnly: true,
			ClaimMappings: &authv1alpha1.ClaimMappingsSpec{
				Groups: &authv1alpha1.ClaimOrExpression{Expression: `["ci"]`},
			},
			ClaimValidationRules: []authv1alpha1.ClaimValidationRule{{
				Expression: `claims["kubernetes.io"].namespace == "` + ns + `" && claims["kubernetes.io"].serviceaccount.name == "registry-sync"`,
				Message:    "the registry-sync ServiceAccount of the CI namespace only",
			}},
		}}
	})
	m := startManager(t, managerOpts{})
	g.Eventually(func(g Gomega) {
		c := readyCondition(g, ns, "ci")
		g.Expect(c.Status).To(Equal(metav1.ConditionTrue), c.Message)
	}, 30*time.Second, 100*time.Millisecond).Should(Succeed())

	tok := createToken(t, ns, "registry-sync", "--audience", aud)
	d := m.decide(ns, "ci", "/api/servers", tok)
	g.Expect(d.Reason).To(Equal(check.ReasonAllowedOIDC))
	g.Expect(d.Identity.Username).To(Equal("system:serviceaccount:" + ns + ":registry-sync"))
	g.Expect(d.Identity.Method).To(Equal(check.Method("cluster-ci")))
	g.Expect(d.Identity.Scopes).To(Equal([]string{"mcp-servers-unrestricted/read"}))

	// Not on MCP gateway paths.
	d = m.decide(ns, "ci", "/mcpserver/mcp", tok)
	g.Expect(d.Reason).To(Equal(check.ReasonJWTRegistryOnly))
	g.Expect(d.Status()).To(Equal(403))

	// Another audience, and the API server's own (kubectl's default).
	d = m.decide(ns, "ci", "/api/servers", createToken(t, ns, "registry-sync", "--audience", "https://other.test"))
	g.Expect(d.Reason).To(Equal(check.ReasonJWTAudience))
	d = m.decide(ns, "ci", "/api/servers", createToken(t, ns, "registry-sync"))
	g.Expect(d.Reason).To(Equal(check.ReasonJWTAudience), "a token for the API server is no registry credential")

	// Another namespace's ServiceAccount of the same name: the rule says no.
	d = m.decide(ns, "ci", "/api/servers", createToken(t, other, "registry-sync", "--audience", aud))
	g.Expect(d.Reason).To(Equal(check.ReasonClaimRuleFailed))
	g.Expect(d.Status()).To(Equal(403))

	// Expired: the shortest TokenRequest is 10 minutes; decide after it.
	short := createToken(t, ns, "registry-sync", "--audience", aud, "--duration", "10m")
	g.Expect(m.decide(ns, "ci", "/api/servers", short).Allowed()).To(BeTrue())
	d = m.decideAt(ns, "ci", "/api/servers", short, time.Now().Add(11*time.Minute))
	g.Expect(d.Reason).To(Equal(check.ReasonJWTExpired))

	// The ServiceAccount deleted: JWKS verification cannot see it, so the
	// token stays valid until its exp (the documented window), while the
	// API server's TokenReview already refuses it.
	fresh := createToken(t, ns, "registry-sync", "--audience", aud)
	review := func() bool {
		tr := &authenticationv1.TokenReview{Spec: authenticationv1.TokenReviewSpec{Token: fresh, Audiences: []string{aud}}}
		g.Expect(adminClient.Create(ctx, tr)).To(Succeed())
		return tr.Status.Authenticated
	}
	g.Expect(review()).To(BeTrue())
	// What a TokenReview per token would cost: the API server's answer
	// time on this machine (logged; see docs/ci-without-shared-secrets.md).
	var took []time.Duration
	for range 20 {
		start := time.Now()
		review()
		took = append(took, time.Since(start))
	}
	slices.Sort(took)
	t.Logf("TokenReview round trip: median %v, max %v (20 calls)", took[len(took)/2], took[len(took)-1])
	g.Expect(adminClient.Delete(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "registry-sync"}})).To(Succeed())
	// The API server caches a successful token authentication for 10s.
	deleted := time.Now()
	g.Eventually(review, 30*time.Second, 100*time.Millisecond).Should(BeFalse())
	t.Logf("TokenReview refused the deleted ServiceAccount's token after %v", time.Since(deleted).Round(100*time.Millisecond))
	g.Expect(m.decide(ns, "ci", "/api/servers", fresh).Allowed()).To(BeTrue(),
		"JWKS-only verification accepts a deleted ServiceAccount's token until it expires")
}

// The API server's own audience is refused in the policy, with a problem
// naming the field; a rule that does not compile is named in status.
func TestKubernetesIssuerProblems(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	ns := newNamespace(t)
	g.Expect(adminClient.Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "ci"}})).To(Succeed())
	createSecret(t, ns, "api-token", randomToken(t))
	m := startManager(t, managerOpts{})

	// kubectl create token without --audience: the API server's default
	// audience, which envtest's API server takes from its issuer URL.
	apiTok := createToken(t, ns, "ci")
	apiAud := unverifiedAudience(t, apiTok)
	createPolicy(t, ns, "api-aud", "api-token", func(p *authv1alpha1.RegistryAuthPolicy) {
		p.Spec.Issuers = []authv1alpha1.IssuerSpec{{Name: "k8s", Preset: authv1alpha1.PresetKubernetes, Audiences: []string{apiAud}}}
	})
	g.Eventually(func(g Gomega) {
		c := readyCondition(g, ns, "api-aud")
		g.Expect(c.Status).To(Equal(metav1.ConditionFalse))
		g.Expect(c.Reason).To(Equal(authn.ProblemInvalidSpec))
		g.Expect(c.Message).To(ContainSubstring("spec.issuers[k8s].audiences"))
		g.Expect(c.Message).To(ContainSubstring("the API server's own"))
	}, 30*time.Second, 100*time.Millisecond).Should(Succeed())
	g.Expect(m.decide(ns, "api-aud", "/api/servers", apiTok).Allowed()).To(BeFalse())

	createPolicy(t, ns, "bad-rule", "api-token", func(p *authv1alpha1.RegistryAuthPolicy) {
		p.Spec.Issuers = []authv1alpha1.IssuerSpec{{Name: "k8s", Preset: authv1alpha1.PresetKubernetes, Audiences: []string{"https://registry.test"},
			ClaimValidationRules: []authv1alpha1.ClaimValidationRule{
				{Expression: `claims.sub.startsWith("system:serviceaccount:")`},
				{Expression: `claims["kubernetes.io"].namespace ==`},
			}}}
	})
	g.Eventually(func(g Gomega) {
		c := readyCondition(g, ns, "bad-rule")
		g.Expect(c.Status).To(Equal(metav1.ConditionFalse))
		g.Expect(c.Reason).To(Equal(authv1alpha1.ReasonClaimRuleInvalid))
		g.Expect(c.Message).To(ContainSubstring("spec.issuers[k8s].claimValidationRules[1]"))
		g.Expect(eventNotes(g, ns, "bad-rule")).To(ContainElement(ContainSubstring("claimValidationRules[1]")))
	}, 30*time.Second, 100*time.Millisecond).Should(Succeed())
	d := m.decide(ns, "bad-rule", "/api/servers", createToken(t, ns, "ci", "--audience", "https://registry.test"))
	g.Expect(d.Reason).To(Equal(check.ReasonClaimRuleFailed), "an issuer whose rules do not compile refuses its tokens")
}

// unverifiedAudience is the first aud of a token (decoded, not verified).
func unverifiedAudience(t *testing.T, tok string) string {
	t.Helper()
	auds := ownTokenAudiences(&rest.Config{BearerToken: tok})
	if len(auds) == 0 {
		t.Fatal("the token has no audience")
	}
	return auds[0]
}
