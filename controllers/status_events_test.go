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
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
	clientevents "k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"
)

// The readiness event follows the status write it reports: a write refused
// with a conflict (retried 100 ms later) records nothing, so the retry does
// not tell the same change twice. One reconcile branch: a fake client.
func TestReadinessEventAfterStatusWrite(t *testing.T) {
	g := NewWithT(t)
	now := time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC)
	pol := rotationPolicy.DeepCopy()
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
	g.Expect(evs).To(HaveLen(1))
	g.Expect(strings.Contains(evs[0], EventPolicyLoaded)).To(BeTrue(), evs[0])

	_, err = s.Reconcile(context.Background(), req)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(drain()).To(BeEmpty(), "the status is as stored: nothing new to tell")
}
