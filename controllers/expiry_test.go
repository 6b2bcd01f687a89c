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
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	authv1alpha1 "github.com/registryauth/registry-auth-operator/api/v1alpha1"
	"github.com/registryauth/registry-auth-operator/authserver"
	"github.com/registryauth/registry-auth-operator/authserver/check"
	"github.com/registryauth/registry-auth-operator/authserver/policy"
)

// A static token that expires in a few seconds and an API key already past
// its expiresAt: the store the manager feeds refuses the key
// (credential_expired) and, at its instant and without any change to the
// policy, the token; the leader reports CredentialExpiring, then
// CredentialExpired, with Warning events, by name only; the expiry gauge
// is there for both.
func TestCredentialExpiry(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	tok, oldKey, key := randomToken(t), randomToken(t), randomToken(t)
	createSecret(t, ns, "api-token", tok)
	createSecret(t, ns, "old-key", oldKey)
	createSecret(t, ns, "ci-key", key)
	tokenExpires := metav1.NewTime(time.Now().Add(6 * time.Second).Truncate(time.Second))
	keyExpired := metav1.NewTime(time.Now().Add(-time.Hour).Truncate(time.Second))
	createPolicy(t, ns, "registry", "api-token", func(p *authv1alpha1.RegistryAuthPolicy) {
		p.Spec.StaticToken.ExpiresAt = &tokenExpires
		p.Spec.APIKeys = []authv1alpha1.APIKeySpec{
			{Name: "old", SecretRef: authv1alpha1.SecretKeySelector{Name: "old-key"}, ExpiresAt: &keyExpired},
			{Name: "ci", SecretRef: authv1alpha1.SecretKeySelector{Name: "ci-key"}},
		}
	})
	m := startManager(t, managerOpts{leaderElect: true})
	reg := prometheus.NewRegistry()
	metrics := authserver.NewMetrics()
	g.Expect(metrics.Register(reg)).To(Succeed())
	m.store.OnPublish(metrics.ObserveSnapshot)
	metrics.ObserveSnapshot(m.store.Load())

	g.Eventually(func() bool { return m.allows(ns, "registry", tok) }, 10*time.Second, 20*time.Millisecond).Should(BeTrue())
	g.Expect(m.allows(ns, "registry", key)).To(BeTrue(), "a key without expiresAt")
	d := m.decide(ns, "registry", "/api/servers", oldKey)
	g.Expect(d.Allowed()).To(BeFalse())
	g.Expect(d.Reason).To(Equal(check.ReasonCredentialExpired))
	g.Expect(d.Status()).To(Equal(401))

	cond := func(g Gomega, typ string) *metav1.Condition {
		c := meta.FindStatusCondition(getPolicy(g, ns, "registry").Status.Conditions, typ)
		g.Expect(c).NotTo(BeNil(), "no %s condition", typ)
		return c
	}
	g.Eventually(func(g Gomega) {
		c := cond(g, authv1alpha1.ConditionCredentialExpiring)
		g.Expect(c.Status).To(Equal(metav1.ConditionTrue))
		g.Expect(c.Reason).To(Equal(authv1alpha1.ReasonExpiresSoon))
		g.Expect(c.Message).To(ContainSubstring("static token expires at " + tokenExpires.UTC().Format(time.RFC3339)))
		c = cond(g, authv1alpha1.ConditionCredentialExpired)
		g.Expect(c.Status).To(Equal(metav1.ConditionTrue))
		g.Expect(c.Message).To(ContainSubstring(`API key "old" expired at`))
		g.Expect(c.Message).NotTo(ContainSubstring("static token"))
		evs := events(g, ns, "registry")
		g.Expect(hasEvent(evs, EventCredentialExpiring, "static token expires at")).To(BeTrue())
		g.Expect(hasEvent(evs, EventCredentialExpired, `API key "old" expired at`)).To(BeTrue())
	}, 10*time.Second, 50*time.Millisecond).Should(Succeed())

	expiry := gathered(g, reg, "registry_auth_credential_expiry_seconds")
	g.Expect(expiry).To(HaveKeyWithValue("credential=static,policy="+ns+"/registry", BeNumerically("~", time.Until(tokenExpires.Time).Seconds(), 2)))
	g.Expect(expiry).To(HaveKeyWithValue("credential=old,policy="+ns+"/registry", BeNumerically("<", -3500)))
	g.Expect(expiry).NotTo(HaveKey("credential=ci,policy=" + ns + "/registry"))

	// At the instant, with no reload: refused, and the leader's requeue
	// flips the condition.
	// The snapshot in force before the expiry refuses it by itself.
	snap := m.store.Load()
	req := &check.Request{Policy: ns + "/registry", Scheme: "http", Host: "registry.example.com", Path: "/api/servers", Method: "GET", Authorization: []string{"Bearer " + tok}}
	g.Expect(policy.Decide(context.Background(), snap, req, time.Now()).Allowed()).To(BeTrue(), "not expired yet")
	g.Eventually(func() check.Reason { return policy.Decide(context.Background(), snap, req, time.Now()).Reason }, 10*time.Second, 10*time.Millisecond).
		Should(Equal(check.ReasonCredentialExpired))
	g.Expect(time.Now()).To(BeTemporally(">=", tokenExpires.Time))
	g.Expect(m.decide(ns, "registry", "/api/servers", tok).Reason).To(Equal(check.ReasonCredentialExpired))
	g.Eventually(func(g Gomega) {
		c := cond(g, authv1alpha1.ConditionCredentialExpired)
		g.Expect(c.Message).To(ContainSubstring("static token expired at"))
		g.Expect(cond(g, authv1alpha1.ConditionCredentialExpiring).Status).To(Equal(metav1.ConditionFalse))
		g.Expect(hasEvent(events(g, ns, "registry"), EventCredentialExpired, "static token expired at")).To(BeTrue())
	}, 5*time.Second, 50*time.Millisecond).Should(Succeed())
	g.Expect(m.allows(ns, "registry", key)).To(BeTrue())

	// Nothing of a value in status or events.
	p := getPolicy(g, ns, "registry")
	for _, c := range p.Status.Conditions {
		for _, v := range []string{tok, oldKey, key} {
			g.Expect(c.Message).NotTo(ContainSubstring(v))
		}
	}
	for _, e := range events(g, ns, "registry") {
		for _, v := range []string{tok, oldKey, key} {
			g.Expect(strings.Contains(e.Note, v)).To(BeFalse())
		}
	}
}

// gathered maps the label pairs of each series of a metric family to its
// value.
func gathered(g Gomega, reg *prometheus.Registry, name string) map[string]float64 {
	mfs, err := reg.Gather()
	g.Expect(err).NotTo(HaveOccurred())
	out := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, s := range mf.GetMetric() {
			var labels []string
			for _, l := range s.GetLabel() {
				labels = append(labels, l.GetName()+"="+l.GetValue())
			}
			out[strings.Join(labels, ",")] = s.GetGauge().GetValue()
		}
	}
	return out
}

// The conditions and the time to come back, at the edges of the warning
// window and of the expiry.
func TestSetExpiryConditions(t *testing.T) {
	exp := time.Date(2027, 3, 1, 0, 0, 0, 0, time.UTC)
	warn := 48 * time.Hour
	e := policy.Expiries{APIKeys: map[string]time.Time{"ci": exp}}
	cases := []struct {
		name              string
		now               time.Time
		expiring, expired metav1.ConditionStatus
		recheck           time.Duration
	}{
		{"before the window", exp.Add(-warn - time.Second), metav1.ConditionFalse, metav1.ConditionFalse, time.Second},
		{"window opens", exp.Add(-warn), metav1.ConditionTrue, metav1.ConditionFalse, warn},
		{"just before expiry", exp.Add(-time.Nanosecond), metav1.ConditionTrue, metav1.ConditionFalse, time.Nanosecond},
		{"at expiry", exp, metav1.ConditionFalse, metav1.ConditionTrue, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			g := NewWithT(t)
			pol := &authv1alpha1.RegistryAuthPolicy{Spec: authv1alpha1.RegistryAuthPolicySpec{ExpiryWarning: &metav1.Duration{Duration: warn}}}
			g.Expect(setExpiryConditions(pol, e, c.now)).To(Equal(c.recheck))
			g.Expect(meta.FindStatusCondition(pol.Status.Conditions, authv1alpha1.ConditionCredentialExpiring).Status).To(Equal(c.expiring))
			g.Expect(meta.FindStatusCondition(pol.Status.Conditions, authv1alpha1.ConditionCredentialExpired).Status).To(Equal(c.expired))
		})
	}
	// No expiry at all: no conditions (removed if there were).
	g := NewWithT(t)
	pol := &authv1alpha1.RegistryAuthPolicy{}
	setExpiryConditions(pol, e, exp)
	g.Expect(pol.Status.Conditions).To(HaveLen(2))
	g.Expect(setExpiryConditions(pol, policy.Expiries{}, exp)).To(BeZero())
	g.Expect(pol.Status.Conditions).To(BeEmpty())
	// The default warning is 7 days.
	setExpiryConditions(pol, e, exp.Add(-DefaultExpiryWarning))
	g.Expect(meta.IsStatusConditionTrue(pol.Status.Conditions, authv1alpha1.ConditionCredentialExpiring)).To(BeTrue())
}
