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
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	authv1alpha1 "github.com/registryauth/registry-auth-operator/api/v1alpha1"
	"github.com/registryauth/registry-auth-operator/authserver/authn"
	"github.com/registryauth/registry-auth-operator/authserver/check"
	"github.com/registryauth/registry-auth-operator/authserver/policy"
	"github.com/registryauth/registry-auth-operator/authserver/secret"
)

// inForce is how long a change may take to reach the auth service: the
// operator promises one second.
const inForce = time.Second

func createSecret(t *testing.T, ns, name, token string) {
	t.Helper()
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: optedIn()}, StringData: map[string]string{"token": token}}
	if err := adminClient.Create(context.Background(), s); err != nil {
		t.Fatal(err)
	}
}

func createPolicy(t *testing.T, ns, name, secret string, mutate ...func(*authv1alpha1.RegistryAuthPolicy)) *authv1alpha1.RegistryAuthPolicy {
	t.Helper()
	p := &authv1alpha1.RegistryAuthPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: authv1alpha1.RegistryAuthPolicySpec{
			StaticToken: &authv1alpha1.StaticTokenSpec{Enabled: true, SecretRef: &authv1alpha1.SecretKeySelector{Name: secret}},
		},
	}
	for _, m := range mutate {
		m(p)
	}
	if err := adminClient.Create(context.Background(), p); err != nil {
		t.Fatal(err)
	}
	return p
}

func getPolicy(g Gomega, ns, name string) *authv1alpha1.RegistryAuthPolicy {
	var p authv1alpha1.RegistryAuthPolicy
	g.Expect(adminClient.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: name}, &p)).To(Succeed())
	return &p
}

func readyCondition(g Gomega, ns, name string) *metav1.Condition {
	p := getPolicy(g, ns, name)
	c := meta.FindStatusCondition(p.Status.Conditions, authv1alpha1.ConditionReady)
	g.Expect(c).NotTo(BeNil(), "no Ready condition yet")
	g.Expect(c.ObservedGeneration).To(Equal(p.Generation))
	return c
}

// optedIn are the labels of a Secret that opts in as a credential.
func optedIn() map[string]string { return map[string]string{LabelCredential: "true"} }

// optInManifest adds the opt-in label to a rendered Secret manifest (the
// output of kubectl create secret --dry-run=client -o yaml).
func optInManifest(manifest string) string {
	return strings.Replace(manifest, "metadata:\n", "metadata:\n  labels:\n    "+LabelCredential+": \"true\"\n", 1)
}

func fp(token string) string { return secret.Fingerprint([]byte(token)) }

func events(g Gomega, ns, name string) []eventsv1.Event {
	var list eventsv1.EventList
	g.Expect(adminClient.List(context.Background(), &list, client.InNamespace(ns))).To(Succeed())
	var out []eventsv1.Event
	for _, e := range list.Items {
		if e.Regarding.Name == name {
			out = append(out, e)
		}
	}
	return out
}

func hasEvent(evs []eventsv1.Event, reason, noteContains string) bool {
	for _, e := range evs {
		if e.Reason == reason && strings.Contains(e.Note, noteContains) {
			return true
		}
	}
	return false
}

func TestPolicyLoadedAndReady(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	tok := randomToken(t)
	createSecret(t, ns, "api-token", tok)
	createPolicy(t, ns, "registry", "api-token")
	m := startManager(t, managerOpts{})

	g.Eventually(func() bool { return m.allows(ns, "registry", tok) }, 10*time.Second, 20*time.Millisecond).Should(BeTrue())
	g.Expect(m.allows(ns, "registry", tok+"x")).To(BeFalse())
	g.Expect(m.decide(ns, "registry", "/mcpserver/mcp", tok).Allowed()).To(BeFalse(), "static token on a gateway path")
	g.Expect(m.store.Load().Policy(ns + "/registry").Fingerprints().StaticToken).To(Equal(fp(tok)))

	g.Eventually(func(g Gomega) {
		c := readyCondition(g, ns, "registry")
		g.Expect(c.Status).To(Equal(metav1.ConditionTrue))
		g.Expect(c.Reason).To(Equal(authv1alpha1.ReasonLoaded))
		p := getPolicy(g, ns, "registry")
		g.Expect(p.Status.StaticToken).NotTo(BeNil())
		g.Expect(p.Status.StaticToken.Fingerprint).To(Equal(fp(tok)))
		g.Expect(p.Status.StaticToken.RotatedAt).NotTo(BeNil())
		g.Expect(p.Status.ObservedGeneration).To(Equal(p.Generation))
	}, 10*time.Second, 50*time.Millisecond).Should(Succeed())
	g.Eventually(func() bool { return m.ready() == nil }, 5*time.Second).Should(BeTrue())
}

// rotateWith rotates a Secret's token with kubectl in one of the ways people
// do it.
func rotateWith(t *testing.T, how, ns, secret, token string) {
	switch how {
	case "apply":
		manifest := kubectl(t, "", nil, "create", "secret", "generic", secret, "-n", ns,
			"--from-literal=token="+token, "--dry-run=client", "-o", "yaml")
		kubectl(t, optInManifest(manifest), nil, "apply", "-f", "-")
	case "patch":
		patch := fmt.Sprintf(`{"data":{"token":%q}}`, base64.StdEncoding.EncodeToString([]byte(token)))
		kubectl(t, "", nil, "patch", "secret", secret, "-n", ns, "--type=merge", "-p", patch)
	case "edit":
		// kubectl edit with an editor that rewrites the data field.
		dir := t.TempDir()
		editor := filepath.Join(dir, "editor.sh")
		script := fmt.Sprintf("#!/bin/sh\nsed -i 's|^  token: .*|  token: %s|' \"$1\"\n", base64.StdEncoding.EncodeToString([]byte(token)))
		if err := os.WriteFile(editor, []byte(script), 0o700); err != nil {
			t.Fatal(err)
		}
		kubectl(t, "", []string{"KUBE_EDITOR=" + editor, "EDITOR=" + editor}, "edit", "secret", secret, "-n", ns, "-o", "yaml")
	default:
		t.Fatalf("unknown rotation %q", how)
	}
}

func TestRotationWithKubectl(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	tok := randomToken(t)
	// Created with kubectl apply, so later applies patch it the usual way.
	rotateWith(t, "apply", ns, "api-token", tok)
	createPolicy(t, ns, "registry", "api-token")
	m := startManager(t, managerOpts{})
	g.Eventually(func() bool { return m.allows(ns, "registry", tok) }, 10*time.Second, 20*time.Millisecond).Should(BeTrue())

	for _, how := range []string{"apply", "patch", "edit"} {
		t.Run(how, func(t *testing.T) {
			g := NewWithT(t)
			old := tok
			tok = randomToken(t)
			rotateWith(t, how, ns, "api-token", tok)
			start := time.Now()
			g.Eventually(func() bool { return m.allows(ns, "registry", tok) && !m.allows(ns, "registry", old) },
				inForce, 5*time.Millisecond).Should(BeTrue(), "new token allowed and old refused within %v", inForce)
			t.Logf("%s: in force after %v", how, time.Since(start))
			g.Eventually(func(g Gomega) {
				p := getPolicy(g, ns, "registry")
				g.Expect(p.Status.StaticToken.Fingerprint).To(Equal(fp(tok)))
				g.Expect(p.Status.StaticToken.PreviousFingerprint).To(BeEmpty(), "no grace period: no previous token")
				var rotated *eventsv1.Event
				for _, e := range events(g, ns, "registry") {
					if e.Reason == EventTokenRotated && strings.Contains(e.Note, fp(old)+" to "+fp(tok)) {
						rotated = &e
					}
				}
				g.Expect(rotated).NotTo(BeNil(), "a TokenRotated event for this rotation")
				// The event names the Secret that changed.
				g.Expect(rotated.Related).NotTo(BeNil())
				g.Expect(rotated.Related.Kind).To(Equal("Secret"))
				g.Expect(rotated.Related.Name).To(Equal("api-token"))
			}, 5*time.Second, 50*time.Millisecond).Should(Succeed())
		})
	}
}

func TestRotationGracePeriodSurvivesRestart(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	oldTok, newTok := randomToken(t), randomToken(t)
	createSecret(t, ns, "api-token", oldTok)
	const grace = 6 * time.Second
	createPolicy(t, ns, "registry", "api-token", func(p *authv1alpha1.RegistryAuthPolicy) {
		p.Spec.StaticToken.RotationGracePeriod = &metav1.Duration{Duration: grace}
	})
	m := startManager(t, managerOpts{leaderElect: true})
	g.Eventually(func(g Gomega) {
		g.Expect(m.allows(ns, "registry", oldTok)).To(BeTrue())
		g.Expect(getPolicy(g, ns, "registry").Status.StaticToken).NotTo(BeNil())
	}, 15*time.Second, 20*time.Millisecond).Should(Succeed())
	// Someone labels the state Secret; the operator's next write keeps it.
	g.Eventually(func(g Gomega) {
		var st corev1.Secret
		g.Expect(adminClient.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: stateSecretName("registry")}, &st)).To(Succeed())
		st.Labels["team"] = "payments"
		g.Expect(adminClient.Update(context.Background(), &st)).To(Succeed())
	}, 10*time.Second, 50*time.Millisecond).Should(Succeed())

	rotateWith(t, "patch", ns, "api-token", newTok)
	rotated := time.Now()
	g.Eventually(func() bool { return m.allows(ns, "registry", newTok) }, inForce, 5*time.Millisecond).Should(BeTrue())
	g.Expect(m.allows(ns, "registry", oldTok)).To(BeTrue(), "old token must stay valid during the grace period")
	g.Expect(m.decide(ns, "registry", "/api/servers", oldTok).Reason).To(Equal(check.ReasonAllowedStaticTokenPrevious))

	var expires time.Time
	g.Eventually(func(g Gomega) {
		st := getPolicy(g, ns, "registry").Status.StaticToken
		g.Expect(st.Fingerprint).To(Equal(fp(newTok)))
		g.Expect(st.PreviousFingerprint).To(Equal(fp(oldTok)))
		g.Expect(st.PreviousExpiresAt).NotTo(BeNil())
		expires = st.PreviousExpiresAt.Time
	}, 5*time.Second, 50*time.Millisecond).Should(Succeed())
	g.Expect(expires).To(BeTemporally("~", rotated.Add(grace), 2*time.Second))

	// The state Secret holds digests, never a token.
	var state corev1.Secret
	g.Expect(adminClient.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: stateSecretName("registry")}, &state)).To(Succeed())
	g.Expect(string(state.Data[stateSecretKey])).To(ContainSubstring(secret.DigestOf([]byte(oldTok)).Hex()))
	g.Expect(string(state.Data[stateSecretKey])).NotTo(ContainSubstring(oldTok))
	g.Expect(string(state.Data[stateSecretKey])).NotTo(ContainSubstring(newTok))
	// Written again after the rotation, it is still the policy's own, so
	// it goes away with the policy and the next load trusts it.
	owner := metav1.GetControllerOf(&state)
	g.Expect(owner).NotTo(BeNil())
	g.Expect(owner.UID).To(Equal(getPolicy(g, ns, "registry").UID))
	g.Expect(state.Labels).To(HaveKeyWithValue("auth.registryauth.io/policy", "registry"))
	g.Expect(state.Labels).To(HaveKeyWithValue("team", "payments"), "a label someone added")

	// Restart the operator inside the window: the old token is still valid.
	m.stop()
	m2 := startManager(t, managerOpts{leaderElect: true})
	g.Eventually(func() bool { return m2.allows(ns, "registry", newTok) }, 10*time.Second, 20*time.Millisecond).Should(BeTrue())
	if time.Now().Before(expires.Add(-500 * time.Millisecond)) {
		g.Expect(m2.allows(ns, "registry", oldTok)).To(BeTrue(), "after restart, inside the window")
	}
	// The window ends, then the old token is refused, without a reload.
	g.Eventually(func() bool { return m2.allows(ns, "registry", oldTok) }, grace+2*time.Second, 20*time.Millisecond).Should(BeFalse())
	g.Expect(time.Now()).To(BeTemporally(">=", expires.Add(-time.Second)), "refused too early")
	g.Expect(m2.allows(ns, "registry", newTok)).To(BeTrue())
	g.Eventually(func(g Gomega) {
		st := getPolicy(g, ns, "registry").Status.StaticToken
		g.Expect(st.PreviousFingerprint).To(BeEmpty())
	}, 5*time.Second, 50*time.Millisecond).Should(Succeed())

	// A restart after the window does not bring the old token back.
	m2.stop()
	m3 := startManager(t, managerOpts{})
	g.Eventually(func() bool { return m3.allows(ns, "registry", newTok) }, 10*time.Second, 20*time.Millisecond).Should(BeTrue())
	g.Expect(m3.allows(ns, "registry", oldTok)).To(BeFalse())
}

func TestTwoReplicas(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	tok := randomToken(t)
	createSecret(t, ns, "api-token", tok)
	createPolicy(t, ns, "registry", "api-token")
	a := startManager(t, managerOpts{name: "replica-a", leaderElect: true})
	b := startManager(t, managerOpts{name: "replica-b", leaderElect: true})
	for _, m := range []*manager{a, b} {
		g.Eventually(func() bool { return m.allows(ns, "registry", tok) }, 15*time.Second, 20*time.Millisecond).Should(BeTrue(), m.name)
	}
	var leader, follower *manager
	g.Eventually(func() bool {
		switch {
		case a.isLeader() && !b.isLeader():
			leader, follower = a, b
		case b.isLeader() && !a.isLeader():
			leader, follower = b, a
		default:
			return false
		}
		return true
	}, 15*time.Second, 50*time.Millisecond).Should(BeTrue(), "exactly one leader")

	for i := range 3 {
		old := tok
		tok = randomToken(t)
		rotateWith(t, "patch", ns, "api-token", tok)
		for _, m := range []*manager{a, b} {
			g.Eventually(func() bool { return m.allows(ns, "registry", tok) && !m.allows(ns, "registry", old) },
				inForce, 5*time.Millisecond).Should(BeTrue(), "rotation %d on %s", i, m.name)
		}
	}
	g.Eventually(func(g Gomega) {
		g.Expect(getPolicy(g, ns, "registry").Status.StaticToken.Fingerprint).To(Equal(fp(tok)))
	}, 5*time.Second, 50*time.Millisecond).Should(Succeed())

	// Only the leader wrote status: managedFields name the writer by user
	// agent.
	p := getPolicy(g, ns, "registry")
	var statusWriters []string
	for _, mf := range p.ManagedFields {
		if mf.Subresource == "status" {
			statusWriters = append(statusWriters, mf.Manager)
		}
	}
	g.Expect(statusWriters).To(ConsistOf(leader.name))
	g.Expect(statusWriters).NotTo(ContainElement(follower.name))

	// The leader goes away: the follower takes the lease and brings status
	// up to date after the next rotation.
	leader.stop()
	old := tok
	tok = randomToken(t)
	rotateWith(t, "patch", ns, "api-token", tok)
	g.Eventually(func() bool { return follower.allows(ns, "registry", tok) && !follower.allows(ns, "registry", old) },
		inForce, 5*time.Millisecond).Should(BeTrue(), "the follower serves the rotation at once, leader or not")
	g.Eventually(follower.isLeader, 15*time.Second, 50*time.Millisecond).Should(BeTrue())
	g.Eventually(func(g Gomega) {
		p := getPolicy(g, ns, "registry")
		g.Expect(p.Status.StaticToken.Fingerprint).To(Equal(fp(tok)))
		var writers []string
		for _, mf := range p.ManagedFields {
			if mf.Subresource == "status" {
				writers = append(writers, mf.Manager)
			}
		}
		g.Expect(writers).To(ContainElement(follower.name))
	}, 15*time.Second, 50*time.Millisecond).Should(Succeed())
}

func TestProblemsFailClosed(t *testing.T) {
	cases := []struct {
		name       string
		setup      func(t *testing.T, ns string) // creates the Secret (or not)
		wantReason string
		refused    string
		fix        func(t *testing.T, ns string) string // returns the token that then works
	}{
		{
			name:       "secret not found",
			setup:      func(t *testing.T, ns string) {},
			wantReason: authv1alpha1.ReasonSecretNotFound,
			fix: func(t *testing.T, ns string) string {
				tok := randomToken(t)
				createSecret(t, ns, "api-token", tok)
				return tok
			},
		},
		{
			name: "key missing",
			setup: func(t *testing.T, ns string) {
				s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "api-token", Labels: optedIn()}, StringData: map[string]string{"other": randomToken(t)}}
				if err := adminClient.Create(context.Background(), s); err != nil {
					t.Fatal(err)
				}
			},
			wantReason: authv1alpha1.ReasonKeyMissing,
			fix: func(t *testing.T, ns string) string {
				tok := randomToken(t)
				rotateWith(t, "patch", ns, "api-token", tok)
				return tok
			},
		},
		{
			name:       "weak token",
			setup:      func(t *testing.T, ns string) { createSecret(t, ns, "api-token", "changeme") },
			wantReason: authv1alpha1.ReasonTokenTooWeak,
			refused:    "changeme",
			fix: func(t *testing.T, ns string) string {
				tok := randomToken(t)
				rotateWith(t, "patch", ns, "api-token", tok)
				return tok
			},
		},
		{
			name:       "empty token",
			setup:      func(t *testing.T, ns string) { createSecret(t, ns, "api-token", "") },
			wantReason: authv1alpha1.ReasonTokenEmpty,
			fix: func(t *testing.T, ns string) string {
				tok := randomToken(t)
				rotateWith(t, "patch", ns, "api-token", tok)
				return tok
			},
		},
	}
	m := startManager(t, managerOpts{leaderElect: true})
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			ns := newNamespace(t)
			tc.setup(t, ns)
			createPolicy(t, ns, "registry", "api-token")
			g.Eventually(func(g Gomega) {
				c := readyCondition(g, ns, "registry")
				g.Expect(c.Status).To(Equal(metav1.ConditionFalse))
				g.Expect(c.Reason).To(Equal(tc.wantReason))
				g.Expect(getPolicy(g, ns, "registry").Status.StaticToken).To(BeNil())
				g.Expect(hasEvent(events(g, ns, "registry"), tc.wantReason, "")).To(BeTrue(), "a Warning event")
			}, 15*time.Second, 50*time.Millisecond).Should(Succeed())
			g.Eventually(func() *policy.Policy { return m.store.Load().Policy(ns + "/registry") }, 5*time.Second, 10*time.Millisecond).ShouldNot(BeNil())
			if tc.refused != "" {
				g.Expect(m.allows(ns, "registry", tc.refused)).To(BeFalse())
			}
			g.Expect(m.decide(ns, "registry", "/api/servers", "").Allowed()).To(BeFalse())

			tok := tc.fix(t, ns)
			g.Eventually(func() bool { return m.allows(ns, "registry", tok) }, 5*time.Second, 10*time.Millisecond).Should(BeTrue(), "fixing the Secret restores access without restart")
			g.Eventually(func(g Gomega) {
				g.Expect(readyCondition(g, ns, "registry").Status).To(Equal(metav1.ConditionTrue))
			}, 10*time.Second, 50*time.Millisecond).Should(Succeed())
		})
	}
}

func TestRevocationByDeletingSecret(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	tok := randomToken(t)
	createSecret(t, ns, "api-token", tok)
	createPolicy(t, ns, "registry", "api-token", func(p *authv1alpha1.RegistryAuthPolicy) {
		// Even with a grace period, deleting the Secret revokes at once.
		p.Spec.StaticToken.RotationGracePeriod = &metav1.Duration{Duration: time.Hour}
	})
	m := startManager(t, managerOpts{leaderElect: true})
	g.Eventually(func() bool { return m.allows(ns, "registry", tok) }, 10*time.Second, 20*time.Millisecond).Should(BeTrue())

	kubectl(t, "", nil, "delete", "secret", "api-token", "-n", ns)
	g.Eventually(func() bool { return m.allows(ns, "registry", tok) }, inForce, 5*time.Millisecond).Should(BeFalse())
	g.Eventually(func(g Gomega) {
		c := readyCondition(g, ns, "registry")
		g.Expect(c.Status).To(Equal(metav1.ConditionFalse))
		g.Expect(c.Reason).To(Equal(authv1alpha1.ReasonSecretNotFound))
	}, 10*time.Second, 50*time.Millisecond).Should(Succeed())
	g.Consistently(func() bool { return m.allows(ns, "registry", tok) }, time.Second, 50*time.Millisecond).Should(BeFalse())
}

// TestRevocationByRecreatingSecret: a Secret deleted and created again at
// once, faster than the operator can load the deletion, still revokes the
// deleted token, grace period or not (the Secret's UID changed).
func TestRevocationByRecreatingSecret(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	old := randomToken(t)
	createSecret(t, ns, "api-token", old)
	createPolicy(t, ns, "registry", "api-token", func(p *authv1alpha1.RegistryAuthPolicy) {
		p.Spec.StaticToken.RotationGracePeriod = &metav1.Duration{Duration: time.Hour}
	})
	m := startManager(t, managerOpts{leaderElect: true})
	g.Eventually(func(g Gomega) {
		g.Expect(m.allows(ns, "registry", old)).To(BeTrue())
		g.Expect(getPolicy(g, ns, "registry").Status.StaticToken).NotTo(BeNil())
	}, 10*time.Second, 20*time.Millisecond).Should(Succeed())

	tok := randomToken(t)
	g.Expect(adminClient.Delete(context.Background(), &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "api-token"}})).To(Succeed())
	createSecret(t, ns, "api-token", tok)
	g.Eventually(func() bool { return m.allows(ns, "registry", tok) }, inForce, 5*time.Millisecond).Should(BeTrue())
	g.Expect(m.allows(ns, "registry", old)).To(BeFalse(), "the deleted Secret's token is not a previous token")
	g.Eventually(func(g Gomega) {
		st := getPolicy(g, ns, "registry").Status.StaticToken
		g.Expect(st).NotTo(BeNil())
		g.Expect(st.Fingerprint).To(Equal(fp(tok)))
		g.Expect(st.PreviousFingerprint).To(BeEmpty())
	}, 10*time.Second, 50*time.Millisecond).Should(Succeed())
	g.Consistently(func() bool { return m.allows(ns, "registry", old) }, time.Second, 50*time.Millisecond).Should(BeFalse())
}

func TestPolicyDeleted(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	tok := randomToken(t)
	createSecret(t, ns, "api-token", tok)
	p := createPolicy(t, ns, "registry", "api-token")
	m := startManager(t, managerOpts{leaderElect: true})
	g.Eventually(func() bool { return m.allows(ns, "registry", tok) }, 10*time.Second, 20*time.Millisecond).Should(BeTrue())
	// A rotation, so that the policy has a rotations series.
	rotations := func() float64 {
		return testutil.ToFloat64(rotationsTotal.WithLabelValues(ns+"/registry", "static"))
	}
	g.Eventually(func(g Gomega) { g.Expect(readyCondition(g, ns, "registry").Status).To(Equal(metav1.ConditionTrue)) },
		10*time.Second, 20*time.Millisecond).Should(Succeed())
	tok = randomToken(t)
	rotateWith(t, "patch", ns, "api-token", tok)
	g.Eventually(rotations, 10*time.Second, 20*time.Millisecond).Should(BeEquivalentTo(1))

	g.Expect(adminClient.Delete(context.Background(), p)).To(Succeed())
	g.Eventually(func() *policy.Policy { return m.store.Load().Policy(ns + "/registry") }, inForce, 5*time.Millisecond).Should(BeNil())
	g.Expect(m.decide(ns, "registry", "/api/servers", tok).Reason).To(Equal(check.ReasonUnknownPolicy))
	// The deleted policy's series are gone, not left at their last value.
	g.Eventually(func() int { return seriesOf(rotationsTotal, ns+"/registry") }, inForce, 5*time.Millisecond).Should(BeZero())
}

// A policy being deleted stops working at once, not when the last finalizer
// (someone else's, or foreground deletion) lets it go.
func TestPolicyBeingDeleted(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	tok := randomToken(t)
	createSecret(t, ns, "api-token", tok)
	p := createPolicy(t, ns, "registry", "api-token", func(p *authv1alpha1.RegistryAuthPolicy) {
		p.Finalizers = []string{"example.com/hold"}
	})
	t.Cleanup(func() {
		var cur authv1alpha1.RegistryAuthPolicy
		if adminClient.Get(context.Background(), client.ObjectKeyFromObject(p), &cur) == nil {
			cur.Finalizers = nil
			_ = adminClient.Update(context.Background(), &cur)
		}
	})
	m := startManager(t, managerOpts{leaderElect: true})
	g.Eventually(func() bool { return m.allows(ns, "registry", tok) }, 10*time.Second, 20*time.Millisecond).Should(BeTrue())

	g.Expect(adminClient.Delete(context.Background(), p)).To(Succeed())
	g.Eventually(func() *policy.Policy { return m.store.Load().Policy(ns + "/registry") }, inForce, 5*time.Millisecond).Should(BeNil())
	g.Expect(m.decide(ns, "registry", "/api/servers", tok).Reason).To(Equal(check.ReasonUnknownPolicy))
	g.Expect(adminClient.Get(context.Background(), client.ObjectKeyFromObject(p), p)).To(Succeed(), "the finalizer still holds the policy")
	g.Expect(p.DeletionTimestamp.IsZero()).To(BeFalse())
	// Nothing brings it back while it waits.
	g.Consistently(func() bool { return m.allows(ns, "registry", tok) }, 500*time.Millisecond, 20*time.Millisecond).Should(BeFalse())
}

// seriesOf counts the series of c whose policy label is policy.
func seriesOf(c prometheus.Collector, policy string) int {
	ch := make(chan prometheus.Metric)
	go func() { c.Collect(ch); close(ch) }()
	n := 0
	for m := range ch {
		var d dto.Metric
		if err := m.Write(&d); err != nil {
			panic(err)
		}
		for _, l := range d.GetLabel() {
			if l.GetName() == "policy" && l.GetValue() == policy {
				n++
			}
		}
	}
	return n
}

func TestAPIKeysAndHosts(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	// Hosts are cluster-wide: one per test run (namespaces of earlier runs
	// stay in envtest, there is no namespace controller).
	host := ns + ".registry.test"
	readKey, tok := randomToken(t), randomToken(t)
	createSecret(t, ns, "api-token", tok)
	createSecret(t, ns, "ci-read", readKey)
	createPolicy(t, ns, "registry", "api-token", func(p *authv1alpha1.RegistryAuthPolicy) {
		p.Spec.Hosts = []string{host}
		p.Spec.APIKeys = []authv1alpha1.APIKeySpec{{
			Name: "ci-read", SecretRef: authv1alpha1.SecretKeySelector{Name: "ci-read"},
			Groups: []string{"readers"}, Methods: []string{"GET", "HEAD"},
		}}
		p.Spec.GroupScopes = map[string][]string{"readers": {"registry/read"}}
	})
	m := startManager(t, managerOpts{leaderElect: true})
	byHost := func(token, method string) policy.Decision {
		return policy.Decide(context.Background(), m.store.Load(), &check.Request{
			Scheme: "http", Host: host, Path: "/api/servers", Method: method, Authorization: []string{"Bearer " + token},
		}, time.Now())
	}
	g.Eventually(func() bool { return byHost(readKey, "GET").Allowed() }, 10*time.Second, 20*time.Millisecond).Should(BeTrue())
	d := byHost(readKey, "GET")
	g.Expect(d.Identity.Username).To(Equal("ci-read"))
	g.Expect(d.Identity.Scopes).To(Equal([]string{"registry/read"}))
	g.Expect(byHost(readKey, "POST").Status()).To(Equal(403))
	g.Expect(byHost(tok, "POST").Allowed()).To(BeTrue())
	g.Eventually(func(g Gomega) {
		p := getPolicy(g, ns, "registry")
		g.Expect(p.Status.APIKeys).To(HaveLen(1))
		g.Expect(p.Status.APIKeys[0].Name).To(Equal("ci-read"))
		g.Expect(p.Status.APIKeys[0].Fingerprint).To(Equal(fp(readKey)))
	}, 10*time.Second, 50*time.Millisecond).Should(Succeed())

	// A second, newer policy claiming the same host reports the conflict
	// and answers only by name; the older one keeps the host, undisturbed.
	time.Sleep(1100 * time.Millisecond) // creation times have whole seconds
	otherTok := randomToken(t)
	createSecret(t, ns, "other-token", otherTok)
	createPolicy(t, ns, "other", "other-token", func(p *authv1alpha1.RegistryAuthPolicy) {
		p.Spec.Hosts = []string{host}
	})
	g.Eventually(func(g Gomega) {
		c := readyCondition(g, ns, "other")
		g.Expect(c.Reason).To(Equal(authv1alpha1.ReasonHostConflict))
		g.Expect(c.Message).To(ContainSubstring(`held by the older policy "registry"`))
	}, 10*time.Second, 50*time.Millisecond).Should(Succeed())
	g.Consistently(func(g Gomega) {
		g.Expect(readyCondition(g, ns, "registry").Status).To(Equal(metav1.ConditionTrue))
		g.Expect(byHost(tok, "GET").Allowed()).To(BeTrue())
		g.Expect(byHost(otherTok, "GET").Allowed()).To(BeFalse())
	}, time.Second, 100*time.Millisecond).Should(Succeed())
	g.Expect(m.allows(ns, "other", otherTok)).To(BeTrue(), "by name the newer policy works")
	// The older policy gone, the newer one takes the host over.
	g.Expect(adminClient.Delete(context.Background(), getPolicy(g, ns, "registry"))).To(Succeed())
	g.Eventually(func() bool { return byHost(otherTok, "GET").Allowed() }, inForce, 10*time.Millisecond).Should(BeTrue())
	g.Eventually(func(g Gomega) {
		g.Expect(readyCondition(g, ns, "other").Status).To(Equal(metav1.ConditionTrue))
	}, 10*time.Second, 50*time.Millisecond).Should(Succeed())
}

// TestSecretCacheHoldsNoData checks the cache restriction: Secrets are cached
// as metadata only, and without annotations, since kubectl apply copies the
// whole Secret, data included, into last-applied-configuration. (Without
// the credential Secret cache: with it, opted-in Secrets are not in the
// manager's cache at all, see TestCredentialSecretCache.)
func TestSecretCacheHoldsNoData(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	tok := randomToken(t)
	rotateWith(t, "apply", ns, "api-token", tok) // kubectl apply: annotation holds the data
	var raw corev1.Secret
	g.Expect(adminClient.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: "api-token"}, &raw)).To(Succeed())
	g.Expect(raw.Annotations["kubectl.kubernetes.io/last-applied-configuration"]).To(ContainSubstring(base64.StdEncoding.EncodeToString([]byte(tok))))

	createPolicy(t, ns, "registry", "api-token")
	m := startManager(t, managerOpts{noCredentialCache: true})
	g.Eventually(func() bool { return m.allows(ns, "registry", tok) }, 10*time.Second, 20*time.Millisecond).Should(BeTrue())

	var pom metav1.PartialObjectMetadata
	pom.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("Secret"))
	g.Expect(m.mgr.GetCache().Get(context.Background(), types.NamespacedName{Namespace: ns, Name: "api-token"}, &pom)).To(Succeed())
	g.Expect(pom.Annotations).To(BeEmpty())
	g.Expect(pom.ManagedFields).To(BeEmpty())
	g.Expect(fmt.Sprintf("%+v", pom)).NotTo(ContainSubstring(base64.StdEncoding.EncodeToString([]byte(tok))))

	// Reading a full Secret through the manager's client goes to the API
	// server (no Secret informer is started).
	var s corev1.Secret
	g.Expect(m.mgr.GetClient().Get(context.Background(), types.NamespacedName{Namespace: ns, Name: "api-token"}, &s)).To(Succeed())
	err := m.mgr.GetCache().Get(context.Background(), types.NamespacedName{Namespace: ns, Name: "api-token"}, &s)
	var notCached *cache.ErrResourceNotCached
	g.Expect(errors.As(err, &notCached)).To(BeTrue(), "a typed Secret informer must not exist, got %v", err)
}

// TestRotationReadsFromTheWatchCache checks what a rotation costs the API
// server: the loader learns of the change from the metadata watch, looks up
// versions in its cache, and reads the token Secret with a resourceVersion,
// so the API server answers from its watch cache rather than with a quorum
// read from etcd, once for the change itself (one more at most). With a
// grace period of 0 there is no state Secret to read or write (see
// TestRotationGracePeriodSurvivesRestart for one). Replicas multiply
// whatever this costs.
func TestRotationReadsFromTheWatchCache(t *testing.T) {
	// The credential Secret cache would answer every read: this is the
	// path without it (--credential-secret-selector=""), and the path of
	// Secrets it does not select.
	for _, grace := range []time.Duration{0, time.Hour} {
		t.Run(grace.String(), func(t *testing.T) { testRotationReads(t, grace) })
	}
}

func testRotationReads(t *testing.T, grace time.Duration) {
	g := NewWithT(t)
	ns := newNamespace(t)
	tok := randomToken(t)
	createSecret(t, ns, "api-token", tok)
	createPolicy(t, ns, "registry", "api-token", func(p *authv1alpha1.RegistryAuthPolicy) {
		p.Spec.StaticToken.RotationGracePeriod = &metav1.Duration{Duration: grace}
	})
	reqs := &requestLog{}
	m := startManager(t, managerOpts{requests: reqs, noCredentialCache: true})
	g.Eventually(func(g Gomega) {
		g.Expect(m.allows(ns, "registry", tok)).To(BeTrue())
		g.Expect(readyCondition(g, ns, "registry").Status).To(Equal(metav1.ConditionTrue))
	}, 10*time.Second, 20*time.Millisecond).Should(Succeed())
	if grace > 0 {
		// Start-up's reads are not the point: wait until the leader's
		// write of the state Secret has been loaded and nothing reads any
		// more.
		g.Eventually(func(g Gomega) {
			var st corev1.Secret
			g.Expect(adminClient.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: stateSecretName("registry")}, &st)).To(Succeed())
		}, 10*time.Second, 20*time.Millisecond).Should(Succeed())
	}
	g.Eventually(func() int { return len(reqs.take()) }, 10*time.Second, 500*time.Millisecond).Should(BeZero())

	const rotations = 3
	for i := range rotations {
		old := tok
		tok = randomToken(t)
		var s corev1.Secret
		g.Expect(adminClient.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: "api-token"}, &s)).To(Succeed())
		s.Data = map[string][]byte{"token": []byte(tok)}
		g.Expect(adminClient.Update(context.Background(), &s)).To(Succeed())
		g.Eventually(func(g Gomega) {
			g.Expect(m.allows(ns, "registry", tok)).To(BeTrue())
			if grace == 0 {
				g.Expect(m.allows(ns, "registry", old)).To(BeFalse())
			}
			g.Expect(getPolicy(g, ns, "registry").Status.StaticToken.Fingerprint).To(Equal(fp(tok)))
		}, inForce, 5*time.Millisecond).Should(Succeed(), "rotation %d", i)
	}

	secretsPath := "/api/v1/namespaces/" + ns + "/secrets/"
	tokenReads, stateReads := 0, 0
	for _, r := range reqs.take() {
		if r.method != http.MethodGet || !strings.HasPrefix(r.url.Path, secretsPath) || r.url.Query().Get("watch") == "true" {
			continue
		}
		name := strings.TrimPrefix(r.url.Path, secretsPath)
		g.Expect(r.accept).NotTo(ContainSubstring("PartialObjectMetadata"),
			"Secret metadata is read from the cache, not the API server: GET %s", r.url)
		g.Expect(r.url.Query().Get("resourceVersion")).NotTo(BeEmpty(),
			"Secret %s read without a resourceVersion: a quorum read from etcd", name)
		switch name {
		case "api-token":
			tokenReads++
		case stateSecretName("registry"):
			stateReads++
		}
	}
	g.Expect(tokenReads).To(BeNumerically(">=", rotations), "each rotation reads the token Secret")
	g.Expect(tokenReads).To(BeNumerically("<=", rotations+1), "once per rotation: the leader's state write must not bring a second read")
	if grace == 0 {
		g.Expect(stateReads).To(BeZero(), "no grace period, no state Secret")
	} else {
		g.Expect(stateReads).To(BeNumerically("<=", 1), "the leader knows the state Secret it wrote")
	}
}

func TestNamespaceRestriction(t *testing.T) {
	g := NewWithT(t)
	watched, other := newNamespace(t), newNamespace(t)
	tok := randomToken(t)
	for _, ns := range []string{watched, other} {
		createSecret(t, ns, "api-token", tok)
		createPolicy(t, ns, "registry", "api-token")
	}
	m := startManager(t, managerOpts{namespaces: []string{watched}})
	g.Eventually(func() bool { return m.allows(watched, "registry", tok) }, 10*time.Second, 20*time.Millisecond).Should(BeTrue())
	g.Consistently(func() bool { return m.allows(other, "registry", tok) }, time.Second, 100*time.Millisecond).Should(BeFalse())
}

// With --namespace, the operator needs its ClusterRole in the watched
// namespaces only (RoleBindings, as the Helm chart renders with
// watchNamespaces): loads, status, events, rotation state and the recovery
// resync's lists all stay inside them.
func TestNamespacedRBAC(t *testing.T) {
	g := NewWithT(t)
	a, b := newNamespace(t), newNamespace(t)
	toks := map[string]string{}
	for _, ns := range []string{a, b} {
		bindNamespaced(t, ns)
		toks[ns] = randomToken(t)
		createSecret(t, ns, "api-token", toks[ns])
		// A grace period: the leader writes a state Secret.
		createPolicy(t, ns, "registry", "api-token", func(p *authv1alpha1.RegistryAuthPolicy) {
			p.Spec.StaticToken.RotationGracePeriod = &metav1.Duration{Duration: time.Hour}
		})
	}
	// The user really has no cluster-wide access to Secrets.
	c, err := client.New(namespacedConfig, client.Options{Scheme: scheme})
	g.Expect(err).NotTo(HaveOccurred())
	var all corev1.SecretList
	g.Expect(apierrors.IsForbidden(c.List(context.Background(), &all))).To(BeTrue(), "a cluster-wide list must be refused")

	m := startManager(t, managerOpts{namespaces: []string{a, b}, leaderElect: true, namespacedRBAC: true})
	for _, ns := range []string{a, b} {
		g.Eventually(func(g Gomega) {
			g.Expect(m.allows(ns, "registry", toks[ns])).To(BeTrue())
			g.Expect(readyCondition(g, ns, "registry").Status).To(Equal(metav1.ConditionTrue))
			var st corev1.Secret
			g.Expect(adminClient.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: stateSecretName("registry")}, &st)).To(Succeed())
		}, 15*time.Second, 50*time.Millisecond).Should(Succeed())
	}
	// A rotation, as a user would do it.
	next := randomToken(t)
	rotateWith(t, "patch", a, "api-token", next)
	g.Eventually(func() bool { return m.allows(a, "registry", next) }, inForce, 5*time.Millisecond).Should(BeTrue())
	g.Eventually(func(g Gomega) {
		g.Expect(hasEvent(events(g, a, "registry"), EventTokenRotated, fp(toks[a])+" to "+fp(next))).To(BeTrue())
	}, 10*time.Second, 50*time.Millisecond).Should(Succeed())
	// The recovery resync's lists, as its user.
	for _, ns := range []string{a, b} {
		secrets := func() client.ObjectList {
			l := &metav1.PartialObjectMetadataList{}
			l.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("SecretList"))
			return l
		}
		policies := func() client.ObjectList { return &authv1alpha1.RegistryAuthPolicyList{} }
		g.Expect(listPages(context.Background(), m.mgr.GetAPIReader(), time.Second, secrets, ns, func(client.ObjectList) {})).To(Succeed())
		g.Expect(listPages(context.Background(), m.mgr.GetAPIReader(), time.Second, policies, ns, func(client.ObjectList) {})).To(Succeed())
	}
}

func TestReadinessWaitsForFirstSync(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	const n = 30
	tok := randomToken(t)
	createSecret(t, ns, "api-token", tok)
	for i := range n {
		createPolicy(t, ns, fmt.Sprintf("p%02d", i), "api-token")
	}
	m := startManager(t, managerOpts{})
	g.Expect(m.ready()).To(HaveOccurred(), "not ready before the first sync")
	g.Eventually(m.ready, 15*time.Second, 10*time.Millisecond).Should(Succeed())
	// Ready means every policy that existed at start is loaded.
	for i := range n {
		g.Expect(m.allows(ns, fmt.Sprintf("p%02d", i), tok)).To(BeTrue())
	}
}

func TestStateSecretNotTakenOver(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	tok := randomToken(t)
	createSecret(t, ns, "api-token", tok)
	// A user's Secret with the state Secret's name is left alone.
	createSecret(t, ns, stateSecretName("registry"), "user data that must survive")
	createPolicy(t, ns, "registry", "api-token", func(p *authv1alpha1.RegistryAuthPolicy) {
		p.Spec.StaticToken.RotationGracePeriod = &metav1.Duration{Duration: time.Hour}
	})
	m := startManager(t, managerOpts{leaderElect: true})
	g.Eventually(func() bool { return m.allows(ns, "registry", tok) }, 10*time.Second, 20*time.Millisecond).Should(BeTrue())
	g.Eventually(func(g Gomega) {
		g.Expect(hasEvent(events(g, ns, "registry"), EventStateConflict, "")).To(BeTrue())
	}, 10*time.Second, 50*time.Millisecond).Should(Succeed())
	var s corev1.Secret
	g.Expect(adminClient.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: stateSecretName("registry")}, &s)).To(Succeed())
	g.Expect(string(s.Data["token"])).To(Equal("user data that must survive"))
}

// A policy whose token is its own state Secret: once the leader has written
// that Secret, the reference is refused, and the state stops changing
// (before, every write was a new token for the next load: a rotation every
// 100 ms, for ever).
func TestOwnStateSecretIsNoToken(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	createPolicy(t, ns, "registry", stateSecretName("registry"), func(p *authv1alpha1.RegistryAuthPolicy) {
		p.Spec.StaticToken.SecretRef.Key = stateSecretKey
		p.Spec.StaticToken.RotationGracePeriod = &metav1.Duration{Duration: time.Hour}
	})
	startManager(t, managerOpts{leaderElect: true})
	key := types.NamespacedName{Namespace: ns, Name: stateSecretName("registry")}
	g.Eventually(func(g Gomega) {
		c := readyCondition(g, ns, "registry")
		g.Expect(c.Reason).To(Equal(authn.ProblemInvalidSpec))
		g.Expect(c.Message).To(ContainSubstring("rotation state"))
		var st corev1.Secret
		g.Expect(adminClient.Get(context.Background(), key, &st)).To(Succeed())
	}, 15*time.Second, 50*time.Millisecond).Should(Succeed())
	var st corev1.Secret
	g.Expect(adminClient.Get(context.Background(), key, &st)).To(Succeed())
	rv := st.ResourceVersion
	g.Consistently(func(g Gomega) {
		g.Expect(adminClient.Get(context.Background(), key, &st)).To(Succeed())
		g.Expect(st.ResourceVersion).To(Equal(rv), "the state Secret keeps changing")
	}, 2*time.Second, 100*time.Millisecond).Should(Succeed())
	g.Expect(hasEvent(events(g, ns, "registry"), EventTokenRotated, "")).To(BeFalse())
}

// A state Secret that cannot be written does not hold back the status: it
// says what is in force, which does not depend on the state. A full
// ResourceQuota refuses the state Secret (envtest runs no quota controller,
// so the test writes the quota's usage itself).
func TestStatusWrittenWhenStateSecretIsNot(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	tok := randomToken(t)
	createSecret(t, ns, "api-token", tok)
	quota := &corev1.ResourceQuota{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "secrets"},
		Spec: corev1.ResourceQuotaSpec{Hard: corev1.ResourceList{"count/secrets": resource.MustParse("1")}}}
	g.Expect(adminClient.Create(context.Background(), quota)).To(Succeed())
	quota.Status = corev1.ResourceQuotaStatus{Hard: quota.Spec.Hard, Used: corev1.ResourceList{"count/secrets": resource.MustParse("1")}}
	g.Expect(adminClient.Status().Update(context.Background(), quota)).To(Succeed())
	// A grace period: the policy needs a state Secret.
	createPolicy(t, ns, "registry", "api-token", func(p *authv1alpha1.RegistryAuthPolicy) {
		p.Spec.StaticToken.RotationGracePeriod = &metav1.Duration{Duration: time.Hour}
	})
	m := startManager(t, managerOpts{leaderElect: true})
	g.Eventually(func(g Gomega) {
		g.Expect(m.allows(ns, "registry", tok)).To(BeTrue())
		g.Expect(readyCondition(g, ns, "registry").Status).To(Equal(metav1.ConditionTrue))
		g.Expect(getPolicy(g, ns, "registry").Status.StaticToken).NotTo(BeNil())
		g.Expect(hasEvent(events(g, ns, "registry"), EventStateWriteFailed, "")).To(BeTrue())
	}, 10*time.Second, 50*time.Millisecond).Should(Succeed())
	var s corev1.Secret
	err := adminClient.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: stateSecretName("registry")}, &s)
	g.Expect(apierrors.IsNotFound(err)).To(BeTrue(), "the quota refused the state Secret: %v", err)

	// Room again: the write is retried, with nothing else happening.
	g.Expect(adminClient.Delete(context.Background(), quota)).To(Succeed())
	g.Eventually(func() error {
		return adminClient.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: stateSecretName("registry")}, &s)
	}, 2*retryMax, 50*time.Millisecond).Should(Succeed())
}

// Credentials in one Secret, rotated by one update: an event each, told apart
// by the related object's field path (the events recorder would otherwise
// fold them into one series that shows only the first note).
func TestRotationEventsPerCredential(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	tok, ci, deploy := randomToken(t), randomToken(t), randomToken(t)
	sec := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "creds", Labels: optedIn()},
		Data: map[string][]byte{"token": []byte(tok), "ci": []byte(ci), "deploy": []byte(deploy)}}
	g.Expect(adminClient.Create(context.Background(), sec)).To(Succeed())
	createPolicy(t, ns, "registry", "creds", func(p *authv1alpha1.RegistryAuthPolicy) {
		p.Spec.APIKeys = []authv1alpha1.APIKeySpec{
			{Name: "ci", SecretRef: authv1alpha1.SecretKeySelector{Name: "creds", Key: "ci"}},
			{Name: "deploy", SecretRef: authv1alpha1.SecretKeySelector{Name: "creds", Key: "deploy"}},
		}
	})
	startManager(t, managerOpts{})
	g.Eventually(func(g Gomega) {
		st := getPolicy(g, ns, "registry").Status.StaticToken
		g.Expect(st).NotTo(BeNil())
		g.Expect(st.Fingerprint).To(Equal(fp(tok)))
	}, 10*time.Second, 50*time.Millisecond).Should(Succeed())

	newTok, newCI, newDeploy := randomToken(t), randomToken(t), randomToken(t)
	sec.Data = map[string][]byte{"token": []byte(newTok), "ci": []byte(newCI), "deploy": []byte(newDeploy)}
	g.Expect(adminClient.Update(context.Background(), sec)).To(Succeed())

	want := map[string]string{ // field path -> note
		"data[token]":  "static token rotated from " + fp(tok) + " to " + fp(newTok),
		"data[ci]":     `API key "ci" rotated from ` + fp(ci) + " to " + fp(newCI),
		"data[deploy]": `API key "deploy" rotated from ` + fp(deploy) + " to " + fp(newDeploy),
	}
	g.Eventually(func(g Gomega) {
		got := map[string]string{}
		for _, e := range events(g, ns, "registry") {
			if e.Reason == EventTokenRotated && e.Related != nil && e.Related.Name == "creds" {
				got[e.Related.FieldPath] = e.Note
			}
		}
		g.Expect(got).To(HaveLen(3), "one event per credential")
		for path, note := range want {
			g.Expect(got[path]).To(ContainSubstring(note), path)
		}
	}, 10*time.Second, 50*time.Millisecond).Should(Succeed())
}

// The federation token, from its Secret: allowed on the peers API only, in
// status by fingerprint, and rotated with kubectl into a grace window like
// the static token.
func TestFederationToken(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	tok, fed := randomToken(t), randomToken(t)
	createSecret(t, ns, "api-token", tok)
	rotateWith(t, "apply", ns, "federation-token", fed)
	createPolicy(t, ns, "registry", "api-token", func(p *authv1alpha1.RegistryAuthPolicy) {
		p.Spec.FederationToken = &authv1alpha1.FederationTokenSpec{
			Enabled:             true,
			SecretRef:           &authv1alpha1.SecretKeySelector{Name: "federation-token"},
			Groups:              []string{"federation-service"},
			RotationGracePeriod: &metav1.Duration{Duration: time.Hour},
		}
	})
	m := startManager(t, managerOpts{})
	peers := func(token string) policy.Decision { return m.decide(ns, "registry", "/api/peers", token) }
	g.Eventually(func() check.Reason { return peers(fed).Reason }, 10*time.Second, 20*time.Millisecond).Should(Equal(check.ReasonAllowedFederation))
	d := peers(fed)
	g.Expect(d.Identity.Username).To(Equal("federation-peer"))
	g.Expect(d.Identity.Groups).To(Equal([]string{"federation-service"}))
	g.Expect(m.decide(ns, "registry", "/api/servers", fed).Reason).To(Equal(check.ReasonFederationTokenOffPath))
	g.Expect(peers(tok).Reason).To(Equal(check.ReasonAllowedStaticToken), "the static token still counts on the peers API")
	g.Eventually(func(g Gomega) {
		st := getPolicy(g, ns, "registry").Status.FederationToken
		g.Expect(st).NotTo(BeNil())
		g.Expect(st.Fingerprint).To(Equal(fp(fed)))
	}, 10*time.Second, 50*time.Millisecond).Should(Succeed())

	next := randomToken(t)
	rotateWith(t, "apply", ns, "federation-token", next)
	g.Eventually(func() check.Reason { return peers(next).Reason }, inForce, 5*time.Millisecond).Should(Equal(check.ReasonAllowedFederation))
	g.Expect(peers(fed).Reason).To(Equal(check.ReasonAllowedFederationPrevious), "the previous token in its grace window")
	g.Eventually(func(g Gomega) {
		st := getPolicy(g, ns, "registry").Status.FederationToken
		g.Expect(st.Fingerprint).To(Equal(fp(next)))
		g.Expect(st.PreviousFingerprint).To(Equal(fp(fed)))
		g.Expect(hasEvent(events(g, ns, "registry"), EventTokenRotated, "federation token rotated from "+fp(fed)+" to "+fp(next))).To(BeTrue())
	}, 10*time.Second, 50*time.Millisecond).Should(Succeed())
}

// A Secret is read as a credential only when it opts in with the label
// registryauth.io/credential=true: a policy author who cannot read Secrets
// must not turn one into an API key, nor learn its length or fingerprint
// from status and events.
func TestSecretNotOptedIn(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	tok := randomToken(t)
	weak := "hunter2"
	for name, v := range map[string]string{"db-creds": tok, "weak-password": weak} {
		g.Expect(adminClient.Create(context.Background(), &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, StringData: map[string]string{"token": v},
		})).To(Succeed())
	}
	createPolicy(t, ns, "registry", "db-creds", func(p *authv1alpha1.RegistryAuthPolicy) {
		p.Spec.APIKeys = []authv1alpha1.APIKeySpec{{Name: "guess", SecretRef: authv1alpha1.SecretKeySelector{Name: "weak-password"}}}
	})
	m := startManager(t, managerOpts{})
	g.Eventually(func(g Gomega) {
		c := readyCondition(g, ns, "registry")
		g.Expect(c.Status).To(Equal(metav1.ConditionFalse))
		g.Expect(c.Reason).To(Equal(authn.ProblemSecretNotOptedIn))
		p := getPolicy(g, ns, "registry")
		g.Expect(p.Status.StaticToken).To(BeNil())
		g.Expect(p.Status.APIKeys).To(BeEmpty())
		for _, text := range append([]string{c.Message}, eventNotes(g, ns, "registry")...) {
			g.Expect(text).NotTo(ContainSubstring(fp(tok)))
			g.Expect(text).NotTo(ContainSubstring(fp(weak)))
			g.Expect(text).NotTo(ContainSubstring("characters"), "nothing about the value's length")
			g.Expect(text).NotTo(ContainSubstring("TokenTooWeak"))
		}
	}, 10*time.Second, 50*time.Millisecond).Should(Succeed())
	g.Expect(m.allows(ns, "registry", tok)).To(BeFalse())

	// Labelled, it is a credential at once.
	kubectl(t, "", nil, "label", "secret", "db-creds", "-n", ns, LabelCredential+"=true")
	g.Eventually(func() bool { return m.allows(ns, "registry", tok) }, inForce, 5*time.Millisecond).Should(BeTrue())
	// And the label taken off revokes it.
	kubectl(t, "", nil, "label", "secret", "db-creds", "-n", ns, LabelCredential+"-")
	g.Eventually(func() bool { return m.allows(ns, "registry", tok) }, inForce, 5*time.Millisecond).Should(BeFalse())
}

// eventNotes are the notes of the events about a policy.
func eventNotes(g Gomega, ns, name string) []string {
	var out []string
	for _, e := range events(g, ns, name) {
		out = append(out, e.Note)
	}
	return out
}

// A policy author names URLs the operator's pods call. Unchecked, that is a
// way to reach any address of the cluster network and read the outcome back
// in status (SSRF). Issuers must be https (http only on loopback, with the
// admin's flag); what discovery met stays in the operator's log; delegates
// must be hosts the admin allows.
func TestURLsPoliciesMayName(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	createSecret(t, ns, "api-token", randomToken(t))
	// A closed port on loopback: "connection refused" is what a prober
	// would read back.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	g.Expect(err).NotTo(HaveOccurred())
	closed := l.Addr().String()
	g.Expect(l.Close()).To(Succeed())
	// Something listening where an https issuer is named: the manager's
	// request shows whether it was contacted.
	var hits atomic.Int64
	probe := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { hits.Add(1); w.WriteHeader(http.StatusNotFound) }))
	defer probe.Close()
	oidc := func(url string) func(*authv1alpha1.RegistryAuthPolicy) {
		return func(p *authv1alpha1.RegistryAuthPolicy) {
			p.Spec.OIDC = &authv1alpha1.OIDCSpec{IssuerURL: url, Audiences: []string{"registry"}, Preset: "generic"}
		}
	}
	createPolicy(t, ns, "plain-http", "api-token", oidc(probe.URL+"/realms/x"))
	createPolicy(t, ns, "https-closed", "api-token", oidc("https://"+closed+"/realms/x"))
	createPolicy(t, ns, "delegate", "api-token", func(p *authv1alpha1.RegistryAuthPolicy) {
		p.Spec.Delegate = &authv1alpha1.DelegateSpec{URL: "http://10.0.0.1:8888/validate"}
	})
	startManager(t, managerOpts{targets: TargetRules{DelegateHosts: []string{"auth-server.registry.svc:8888"}}})

	cond := func(g Gomega, name string) *metav1.Condition {
		c := readyCondition(g, ns, name)
		g.Expect(c.Status).To(Equal(metav1.ConditionFalse))
		return c
	}
	g.Eventually(func(g Gomega) {
		c := cond(g, "plain-http")
		g.Expect(c.Reason).To(Equal(authn.ProblemInvalidSpec))
		g.Expect(c.Message).To(ContainSubstring("must be https"))
	}, 10*time.Second, 50*time.Millisecond).Should(Succeed())
	g.Expect(hits.Load()).To(BeZero(), "a plain http issuer is not contacted")
	g.Eventually(func(g Gomega) {
		c := cond(g, "https-closed")
		g.Expect(c.Reason).To(Equal(authn.ProblemOIDCDiscoveryFailed))
		g.Expect(c.Message).To(ContainSubstring("the operator's log has the details"))
		for _, text := range append([]string{c.Message}, eventNotes(g, ns, "https-closed")...) {
			g.Expect(text).NotTo(ContainSubstring("refused"))
			g.Expect(text).NotTo(ContainSubstring(closed))
		}
	}, 10*time.Second, 50*time.Millisecond).Should(Succeed())
	g.Eventually(func(g Gomega) {
		c := cond(g, "delegate")
		g.Expect(c.Reason).To(Equal(authn.ProblemInvalidSpec))
		g.Expect(c.Message).To(ContainSubstring("--allowed-delegate-hosts"))
	}, 10*time.Second, 50*time.Millisecond).Should(Succeed())
}

func TestTargetRules(t *testing.T) {
	g := NewWithT(t)
	strict := TargetRules{DelegateHosts: []string{"auth-server.registry.svc:8888", "*.auth.example"}}
	loose := TargetRules{AllowLoopbackHTTP: true}
	for _, tc := range []struct {
		rules  TargetRules
		issuer string
		want   bool
	}{
		{strict, "https://idp.example/realms/x", true},
		{strict, "http://idp.example/realms/x", false},
		{strict, "http://127.0.0.1:8080/realms/x", false},
		{loose, "http://127.0.0.1:8080/realms/x", true},
		{loose, "http://[::1]:8080/", true},
		{loose, "http://localhost:8080/", true},
		{loose, "http://10.0.0.1/", false},
		{loose, "https://user:pw@idp.example/", false},
		{loose, "ftp://idp.example/", false},
	} {
		g.Expect(tc.rules.issuerAllowed(tc.issuer)).To(Equal(tc.want), tc.issuer)
	}
	for _, tc := range []struct {
		url  string
		want bool
	}{
		{"http://auth-server.registry.svc:8888/validate", true},
		{"http://auth-server.registry.svc:9999/validate", false},
		{"http://auth-server.other.svc:8888/validate", false},
		{"https://a.auth.example/validate", true},
		{"https://auth.example/validate", false},
		{"http://127.0.0.1:8888/validate", false},
	} {
		g.Expect(strict.delegateAllowed(tc.url)).To(Equal(tc.want), tc.url)
	}
	g.Expect(loose.delegateAllowed("http://127.0.0.1:8888/validate")).To(BeTrue())
}

// Only namespaces the cluster admin granted a host may answer for it: a
// policy elsewhere that lists it can neither block the owner (even when it
// is older) nor take the host over when the owner's policy is gone.
func TestHostGrants(t *testing.T) {
	g := NewWithT(t)
	owner, intruder := newNamespace(t), newNamespace(t)
	host := "registry.grants.example.com"
	grants, err := ParseHostGrants(owner + "=" + host + ";*=*.shared.example.com")
	g.Expect(err).NotTo(HaveOccurred())
	tokB, tokA := randomToken(t), randomToken(t)
	// The intruder's policy comes first: age alone does not make a claim.
	createSecret(t, intruder, "api-token", tokB)
	createPolicy(t, intruder, "registry", "api-token", func(p *authv1alpha1.RegistryAuthPolicy) { p.Spec.Hosts = []string{host} })
	time.Sleep(1100 * time.Millisecond)
	createSecret(t, owner, "api-token", tokA)
	createPolicy(t, owner, "registry", "api-token", func(p *authv1alpha1.RegistryAuthPolicy) { p.Spec.Hosts = []string{host} })
	m := startManager(t, managerOpts{grants: &grants})
	byHost := func(tok string) policy.Decision {
		return policy.Decide(context.Background(), m.store.Load(), &check.Request{
			Scheme: "http", Host: host, Path: "/api/servers", Method: "GET", Authorization: []string{"Bearer " + tok},
		}, time.Now())
	}
	g.Eventually(func() bool { return byHost(tokA).Allowed() }, 10*time.Second, 20*time.Millisecond).Should(BeTrue())
	g.Expect(byHost(tokB).Allowed()).To(BeFalse())
	g.Eventually(func(g Gomega) {
		c := readyCondition(g, intruder, "registry")
		g.Expect(c.Reason).To(Equal(authn.ProblemHostNotGranted))
		g.Expect(c.Message).To(ContainSubstring(host))
		g.Expect(readyCondition(g, owner, "registry").Status).To(Equal(metav1.ConditionTrue), "the owner is not disturbed")
	}, 10*time.Second, 50*time.Millisecond).Should(Succeed())
	g.Expect(m.allows(intruder, "registry", tokB)).To(BeTrue(), "by name the intruder's policy still works for its own clients")

	// The owner's policy deleted (a GitOps prune, a rename): the host is
	// nobody's, the intruder does not get it.
	g.Expect(adminClient.Delete(context.Background(), getPolicy(g, owner, "registry"))).To(Succeed())
	g.Eventually(func() check.Reason { return byHost(tokA).Reason }, inForce, 10*time.Millisecond).Should(Equal(check.ReasonNoPolicy))
	g.Consistently(func() bool { return byHost(tokB).Allowed() }, time.Second, 100*time.Millisecond).Should(BeFalse())

	// A wildcard grant to every namespace.
	intruderPol := getPolicy(g, intruder, "registry")
	intruderPol.Spec.Hosts = []string{"b.shared.example.com"}
	g.Expect(adminClient.Update(context.Background(), intruderPol)).To(Succeed())
	g.Eventually(func(g Gomega) {
		g.Expect(readyCondition(g, intruder, "registry").Status).To(Equal(metav1.ConditionTrue))
	}, 10*time.Second, 50*time.Millisecond).Should(Succeed())

	// The flag's syntax.
	for _, bad := range []string{"team-a", "=x.example.com", "team-a="} {
		_, err := ParseHostGrants(bad)
		g.Expect(err).To(HaveOccurred(), bad)
	}
	none, err := ParseHostGrants("")
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(none.Allows("default", "x.example.com")).To(BeFalse())
}
