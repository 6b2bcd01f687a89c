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
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	authv1alpha1 "github.com/registryauth/registry-auth-operator/api/v1alpha1"
	"github.com/registryauth/registry-auth-operator/authserver/authtest"
	"github.com/registryauth/registry-auth-operator/authserver/check"
	"github.com/registryauth/registry-auth-operator/authserver/policy"
)

// decideCookie asks the manager's store about a request with a session
// cookie signed with key.
func (m *manager) decideCookie(ns, name, key string) policy.Decision {
	cookie := authtest.SessionCookie([]byte(key), map[string]any{"username": "alice", "groups": []string{"g"}}, time.Now())
	req := &check.Request{
		Policy: ns + "/" + name,
		Scheme: "http", Host: "registry.test", Path: "/api/servers",
		Method: "GET",
		Cookie: []string{authtest.SessionCookieName + "=" + cookie},
	}
	return policy.Decide(context.Background(), m.store.Load(), req, time.Now())
}

// TestSessionKeyGracePeriod rotates the web app's SECRET_KEY Secret with
// the real API server: cookies of the previous key are accepted until the
// window ends, never after; a replica that starts inside the window never
// saw the previous key and refuses them; the key never leaves memory; with
// no grace the previous key is refused at once.
func TestSessionKeyGracePeriod(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	oldKey, newKey := randomToken(t), randomToken(t)
	createSecret(t, ns, "api-token", randomToken(t))
	createSecret(t, ns, "web-secret", oldKey)
	const grace = 6 * time.Second
	createPolicy(t, ns, "registry", "api-token", func(p *authv1alpha1.RegistryAuthPolicy) {
		p.Spec.Session = &authv1alpha1.SessionSpec{
			SecretKeyRef:        authv1alpha1.SecretKeySelector{Name: "web-secret"},
			RotationGracePeriod: &metav1.Duration{Duration: grace},
		}
	})
	m := startManager(t, managerOpts{leaderElect: true})
	g.Eventually(func() check.Reason { return m.decideCookie(ns, "registry", oldKey).Reason },
		15*time.Second, 20*time.Millisecond).Should(Equal(check.ReasonAllowedSession))
	g.Expect(m.decideCookie(ns, "registry", newKey).Allowed()).To(BeFalse(), "not yet the key")

	rotateWith(t, "patch", ns, "web-secret", newKey)
	rotated := time.Now()
	g.Eventually(func() check.Reason { return m.decideCookie(ns, "registry", newKey).Reason },
		inForce, 5*time.Millisecond).Should(Equal(check.ReasonAllowedSession))
	g.Expect(m.decideCookie(ns, "registry", oldKey).Reason).To(Equal(check.ReasonAllowedSessionPrevious),
		"the previous key's cookies stay valid in the window")

	// The leader records the rotation: an event with fingerprints, and the
	// state Secret with digests; neither holds a key.
	g.Eventually(func(g Gomega) {
		found := false
		for _, e := range events(g, ns, "registry") {
			if e.Reason == EventTokenRotated && strings.Contains(e.Note, "session signing key rotated from "+fp(oldKey)+" to "+fp(newKey)) {
				found = true
				g.Expect(e.Note).To(ContainSubstring("accepted until"))
				g.Expect(e.Related).NotTo(BeNil())
				g.Expect(e.Related.Name).To(Equal("web-secret"))
			}
			g.Expect(e.Note).NotTo(ContainSubstring(oldKey))
			g.Expect(e.Note).NotTo(ContainSubstring(newKey))
		}
		g.Expect(found).To(BeTrue(), "a TokenRotated event for the session key")
		var pol authv1alpha1.RegistryAuthPolicy
		g.Expect(adminClient.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: "registry"}, &pol)).To(Succeed())
		g.Expect(pol.Status.Session).NotTo(BeNil(), "status.session")
		g.Expect(pol.Status.Session.Fingerprint).To(Equal(fp(newKey)), "status.session shows the key in force")
		var state corev1.Secret
		g.Expect(adminClient.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: stateSecretName("registry")}, &state)).To(Succeed())
		g.Expect(string(state.Data[stateSecretKey])).To(ContainSubstring(credSessionKey))
		for _, v := range state.Data {
			g.Expect(string(v)).NotTo(ContainSubstring(oldKey))
			g.Expect(string(v)).NotTo(ContainSubstring(newKey))
		}
	}, 5*time.Second, 50*time.Millisecond).Should(Succeed())

	// A replica started inside the window knows the window (from the state
	// Secret) but never held the previous key: it refuses its cookies.
	m2 := startManager(t, managerOpts{})
	g.Eventually(func() check.Reason { return m2.decideCookie(ns, "registry", newKey).Reason },
		10*time.Second, 20*time.Millisecond).Should(Equal(check.ReasonAllowedSession))
	g.Expect(m2.decideCookie(ns, "registry", oldKey).Allowed()).To(BeFalse(), "a replica that never saw the previous key")
	m2.stop()

	// The window ends: refused, without a reload, and not before.
	g.Eventually(func() bool { return m.decideCookie(ns, "registry", oldKey).Allowed() },
		grace+2*time.Second, 20*time.Millisecond).Should(BeFalse())
	g.Expect(time.Now()).To(BeTemporally(">=", rotated.Add(grace-time.Second)), "refused too early")
	g.Expect(m.decideCookie(ns, "registry", oldKey).Reason).To(Equal(check.ReasonSessionInvalid))
	g.Expect(m.decideCookie(ns, "registry", newKey).Reason).To(Equal(check.ReasonAllowedSession))

	// Grace 0: the next rotation refuses the previous key at once.
	g.Eventually(func(g Gomega) {
		p := getPolicy(g, ns, "registry")
		p.Spec.Session.RotationGracePeriod = &metav1.Duration{}
		g.Expect(adminClient.Update(context.Background(), p)).To(Succeed())
	}, 5*time.Second, 50*time.Millisecond).Should(Succeed())
	thirdKey := randomToken(t)
	g.Eventually(func(g Gomega) {
		g.Expect(getPolicy(g, ns, "registry").Status.ObservedGeneration).To(BeNumerically(">=", 2))
	}, 5*time.Second, 20*time.Millisecond).Should(Succeed())
	rotateWith(t, "patch", ns, "web-secret", thirdKey)
	g.Eventually(func() check.Reason { return m.decideCookie(ns, "registry", thirdKey).Reason },
		inForce, 5*time.Millisecond).Should(Equal(check.ReasonAllowedSession))
	g.Expect(m.decideCookie(ns, "registry", newKey).Allowed()).To(BeFalse(), "no grace: the previous key is refused at once")

	// A deleted Secret revokes every key.
	g.Expect(adminClient.Delete(context.Background(), &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "web-secret"}})).To(Succeed())
	g.Eventually(func() bool { return m.decideCookie(ns, "registry", thirdKey).Allowed() },
		inForce, 5*time.Millisecond).Should(BeFalse())
}
