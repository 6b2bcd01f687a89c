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
	"testing"
	"time"

	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/workqueue"
	"sigs.k8s.io/controller-runtime/pkg/controller/priorityqueue"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	authv1alpha1 "github.com/registryauth/registry-auth-operator/api/v1alpha1"
)

// The status reconciler hears of a load after the delay, once per policy
// however many loads happened in the meantime; with the controller's queue
// (controller-runtime's priority queue) and with client-go's.
func TestStatusFollowsTheLoaderAfterTheDelay(t *testing.T) {
	queues := map[string]func() workqueue.TypedRateLimitingInterface[reconcile.Request]{
		"priorityqueue": func() workqueue.TypedRateLimitingInterface[reconcile.Request] {
			return priorityqueue.New[reconcile.Request]("status-delay-test")
		},
		"client-go": func() workqueue.TypedRateLimitingInterface[reconcile.Request] {
			return workqueue.NewTypedRateLimitingQueue(workqueue.DefaultTypedControllerRateLimiter[reconcile.Request]())
		},
	}
	for name, newQueue := range queues {
		t.Run(name, func(t *testing.T) {
			g := NewWithT(t)
			q := newQueue()
			defer q.ShutDown()
			const delay = 400 * time.Millisecond
			h := enqueueAfter(delay)
			pol := func(name string) event.GenericEvent {
				return event.GenericEvent{Object: &authv1alpha1.RegistryAuthPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: "team", Name: name}}}
			}
			start := time.Now()
			for range 3 {
				h.Generic(context.Background(), pol("a"), q)
			}
			h.Generic(context.Background(), pol("b"), q)
			g.Consistently(q.Len, delay/2, 10*time.Millisecond).Should(BeZero(), "nothing before the delay")
			g.Eventually(q.Len, 5*time.Second, 10*time.Millisecond).Should(Equal(2), "one entry per policy")
			g.Expect(time.Since(start)).To(BeNumerically(">=", delay))
			got := map[types.NamespacedName]bool{}
			for range 2 {
				r, _ := q.Get()
				got[r.NamespacedName] = true
				q.Done(r)
			}
			g.Expect(got).To(HaveKey(types.NamespacedName{Namespace: "team", Name: "a"}))
			g.Expect(got).To(HaveKey(types.NamespacedName{Namespace: "team", Name: "b"}))
			g.Consistently(q.Len, delay, 20*time.Millisecond).Should(BeZero(), "the three loads of a made one entry")
		})
	}
}
