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
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	clientevents "k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	authv1alpha1 "github.com/registryauth/registry-auth-operator/api/v1alpha1"
	"github.com/registryauth/registry-auth-operator/authserver/authn"
)

// The readiness event follows the status write it reports: a write refused
// with a conflict (retried 100 ms later) records nothing, so the retry does
// not tell the same change twice. A policy's first Ready=True is told by its
// status alone. One reconcile branch: a fake client.
func TestReadinessEventAfterStatusWrite(t *testing.T) {
	for _, first := range []bool{false, true} {
		name := "problem solved"
		if first {
			name = "first load"
		}
		t.Run(name, func(t *testing.T) { testReadinessEvent(t, first) })
	}
}

func testReadinessEvent(t *testing.T, first bool) {
	g := NewWithT(t)
	now := time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC)
	pol := rotationPolicy.DeepCopy()
	if !first {
		// Not ready before: the Secret was missing.
		meta.SetStatusCondition(&pol.Status.Conditions, metav1.Condition{Type: authv1alpha1.ConditionReady,
			Status: metav1.ConditionFalse, Reason: authn.ProblemSecretNotFound, Message: "Secret \"tok\" not found"})
	}
	tok := tokenSecret("2", "uid-tok", "0123456789abcdef0123456789abcdef", now.Add(-time.Hour), time.Time{})
	api := secretReader{"tok": tok}
	res := resolveRotation(g, rotationResolver(api, api, func() time.Time { return now }))

	conflicts := 1
	c := fake.NewClientBuilder().WithScheme(scheme).WithObjects(pol).WithStatusSubresource(pol).
		WithInterceptorFuncs(interceptor.Funcs{
			SubResourcePatch: func(ctx context.Context, cl client.Client, sub string, obj client.Object, patch client.Patch, opts ...client.SubResourcePatchOption) error {
				if conflicts > 0 {
					conflicts--
					return apierrors.NewConflict(schema.GroupResource{Resource: "registryauthpolicies"}, obj.GetName(), nil)
				}
				return cl.SubResource(sub).Patch(ctx, obj, patch, opts...)
			},
		}).Build()
	var stored = pol.DeepCopy()
	g.Expect(c.Get(context.Background(), client.ObjectKeyFromObject(pol), stored)).To(Succeed())
	res.generation, res.uid = stored.Generation, stored.UID
	res.creds = nil // no rotation state to write: this test is about the status
	ready := newReadiness()
	ready.isReady = true
	rec := clientevents.NewFakeRecorder(10)
	s := &StatusReconciler{client: c, loader: &PolicyLoader{latest: map[string]*resolution{"ns/p": res}},
		recorder: rec, leader: AlwaysLeader(), ready: ready}
	req := ctrl.Request{NamespacedName: client.ObjectKeyFromObject(pol)}
	drain := func() (out []string) {
		for {
			select {
			case e := <-rec.Events:
				out = append(out, e)
			default:
				return out
			}
		}
	}

	result, err := s.Reconcile(context.Background(), req)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(result.RequeueAfter).To(Equal(100*time.Millisecond), "the conflict is retried")
	g.Expect(drain()).To(BeEmpty(), "nothing was written, nothing is told")

	result, err = s.Reconcile(context.Background(), req)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(result.RequeueAfter).To(BeZero())
	evs := drain()
	if first {
		g.Expect(evs).To(BeEmpty(), "a first Ready=True has no event")
	} else {
		g.Expect(evs).To(HaveLen(1))
		g.Expect(strings.Contains(evs[0], EventPolicyLoaded)).To(BeTrue(), evs[0])
	}
	g.Expect(c.Get(context.Background(), client.ObjectKeyFromObject(pol), stored)).To(Succeed())
	g.Expect(meta.IsStatusConditionTrue(stored.Status.Conditions, authv1alpha1.ConditionReady)).To(BeTrue(), "the status is written")

	_, err = s.Reconcile(context.Background(), req)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(drain()).To(BeEmpty(), "the status is as stored: nothing new to tell")
}

// A first start writes one thing per policy: its status. No rotation state
// Secret while there is nothing to remember (no grace period, no window
// running), and no event for a policy that simply became Ready. A policy
// with a grace period gets its state Secret, and a problem is told by an
// event.
func TestFirstStartWritesOnlyStatus(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	const n = 20
	for i := range n {
		name := fmt.Sprintf("p%d", i)
		createSecret(t, ns, name+"-token", randomToken(t))
		createPolicy(t, ns, name, name+"-token", func(p *authv1alpha1.RegistryAuthPolicy) {
			p.Spec.Hosts = []string{name + ".example.com"}
		})
	}
	createSecret(t, ns, "grace-token", randomToken(t))
	createPolicy(t, ns, "grace", "grace-token", func(p *authv1alpha1.RegistryAuthPolicy) {
		p.Spec.Hosts = []string{"grace.example.com"}
		p.Spec.StaticToken.RotationGracePeriod = &metav1.Duration{Duration: time.Hour}
	})
	createPolicy(t, ns, "broken", "missing-token", func(p *authv1alpha1.RegistryAuthPolicy) {
		p.Spec.Hosts = []string{"broken.example.com"}
	})
	reqs := &requestLog{}
	startManager(t, managerOpts{requests: reqs, leaderElect: true})
	g.Eventually(func(g Gomega) {
		var list authv1alpha1.RegistryAuthPolicyList
		g.Expect(adminClient.List(context.Background(), &list, client.InNamespace(ns))).To(Succeed())
		g.Expect(list.Items).To(HaveLen(n + 2))
		for _, p := range list.Items {
			c := meta.FindStatusCondition(p.Status.Conditions, authv1alpha1.ConditionReady)
			g.Expect(c).NotTo(BeNil(), p.Name)
			g.Expect(c.Status == metav1.ConditionTrue).To(Equal(p.Name != "broken"), p.Name)
		}
		var st corev1.Secret
		g.Expect(adminClient.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: stateSecretName("grace")}, &st)).To(Succeed())
		g.Expect(hasEvent(events(g, ns, "broken"), authn.ProblemSecretNotFound, "")).To(BeTrue())
	}, 20*time.Second, 100*time.Millisecond).Should(Succeed())
	// Anything late would show now.
	time.Sleep(2 * StatusDelay)

	// Writes the API server took: a status patch refused with a conflict
	// (the cache behind the leader's own write) is retried, and is no
	// write.
	writes := map[string]int{}
	for _, r := range reqs.take() {
		if r.method == http.MethodGet || !strings.Contains(r.url.Path, "/namespaces/"+ns+"/") || r.code == http.StatusConflict {
			continue
		}
		writes[r.method+" "+strings.TrimPrefix(r.url.Path, "/apis/auth.registryauth.io/v1alpha1")]++
	}
	want := map[string]int{
		"POST /api/v1/namespaces/" + ns + "/secrets":               1, // grace's state Secret
		"POST /apis/events.k8s.io/v1/namespaces/" + ns + "/events": 1, // broken's problem
	}
	for i := range n {
		want[fmt.Sprintf("PATCH /namespaces/%s/registryauthpolicies/p%d/status", ns, i)] = 1
	}
	want["PATCH /namespaces/"+ns+"/registryauthpolicies/grace/status"] = 1
	want["PATCH /namespaces/"+ns+"/registryauthpolicies/broken/status"] = 1
	g.Expect(writes).To(Equal(want))
}
